//! `guard generate`: shell completions and man pages, straight from the
//! clap definitions, so they can never disagree with `--help`.

use std::{fmt::Write as _, fs, io, path::Path};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use super::{Cli, Generate, GenerateArgs};
use crate::model::paths::{
    BPFFS, HOST_LOCK, LISTS_FILE, MAPS_LOCK, MODPROBE_FILE, MODULES_LOAD_FILE, PIN_ROOT, RUN_FILE,
    RUNTIME_DIR, STATE_FILE, STATUS_FILE, SYSCTL_FILE,
};

pub fn command(args: &GenerateArgs) -> Result<()> {
    match &args.what {
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "guard", &mut io::stdout());
            Ok(())
        }
        Generate::Man { dir } => man_pages(dir),
    }
}

/// guard's man pages are in section 8: it is a system administration
/// command, run as root.
pub const SECTION: &str = "8";

/// `guard.8`, and `guard-<sub>.8` for every subcommand, whose synopsis
/// reads `guard <sub>`. `guard.8` ends with the sections a daemon's page
/// needs: exit status, files, signals, environment.
pub fn man_pages(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    write_page(dir, "guard", cmd.clone(), &daemon_sections())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("guard-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("guard {}", sub.get_name()));
        write_page(dir, &name, page, "")?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command, extra: &str) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(SECTION)
        .render(&mut page)
        .with_context(|| format!("rendering {name}.{SECTION}"))?;
    page.extend_from_slice(extra.as_bytes());
    let path = dir.join(format!("{name}.{SECTION}"));
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}

/// EXIT STATUS, FILES, SIGNALS and ENVIRONMENT, in roff.
fn daemon_sections() -> String {
    let runtime = |name: &str| format!("{RUNTIME_DIR}/{name}");
    let files = [
        (
            "/etc/guard/guard.toml".to_owned(),
            "The configuration the systemd unit passes with --config: the long flag names as keys.",
        ),
        (
            runtime(HOST_LOCK),
            "The instance lock: one guard per network namespace; holds its pid. A guard of --netns NAME keeps these files in /run/guard/netns/NAME instead.",
        ),
        (
            runtime(STATE_FILE),
            "Every conntrack value guard changed, as it was, until restored (guard restore).",
        ),
        (
            runtime(RUN_FILE),
            "What the running guard is: mode, interfaces, XDP modes (guard status).",
        ),
        (
            runtime(STATUS_FILE),
            "What its controller last saw and did (guard stats, metrics).",
        ),
        (
            runtime(MAPS_LOCK),
            "Held around every read-modify-write of the maps.",
        ),
        (
            LISTS_FILE.to_owned(),
            "Allow and deny entries kept by guard allow|deny, loaded at every start and reload.",
        ),
        (
            format!("{BPFFS}/{PIN_ROOT}/"),
            "The pinned maps, one directory per interface (host/IF, netns/NAME/IF).",
        ),
        (
            format!("{SYSCTL_FILE}, {MODPROBE_FILE}, {MODULES_LOAD_FILE}"),
            "Written by guard tune --persist.",
        ),
    ];
    let mut roff = String::from(
        ".SH \"EXIT STATUS\"\n\
         .TP\n0\nDid what was asked.\n\
         .TP\n1\nFailed while running; guard stats or status with no guard running; a restore that could not put everything back.\n\
         .TP\n2\nCould not start: a bad flag or config, a missing interface or namespace, no privileges, another guard, a foreign XDP program, a verifier rejection. Nothing was left changed. The systemd unit does not restart on it.\n\
         .TP\n3\nguard doctor only: it could not check, or its command line was wrong (Nagios UNKNOWN). Its other codes are Nagios's: 0 OK, 1 WARNING, 2 CRITICAL.\n\
         .SH FILES\n",
    );
    for (path, what) in files {
        let _ = write!(roff, ".TP\n\\fI{path}\\fR\n{what}\n");
    }
    roff.push_str(
        ".SH SIGNALS\n\
         .TP\nSIGTERM, SIGINT\nguard run restores every conntrack value it changed, detaches and removes its pins, then exits 0.\n\
         .TP\nSIGHUP\nguard run reads its --config file again and applies it; an invalid file changes nothing, and keys that need a restart keep their values (both logged).\n\
         .SH ENVIRONMENT\n\
         .TP\nGUARD_LOG\nThe log filter (tracing's EnvFilter syntax); default info.\n\
         .TP\nGUARD_XDP_OBJECT\nLoad this XDP object instead of the embedded one (for development).\n\
         .TP\nNOTIFY_SOCKET\nSet by systemd (Type=notify): guard reports ready, reloading and stopping there.\n\
         .TP\nJOURNAL_STREAM\nSet by systemd: guard then logs to the journal natively, with each line's priority and fields.\n",
    );
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_man_page() {
        let dir = std::env::temp_dir().join(format!("guard-man-{}", std::process::id()));
        man_pages(&dir).unwrap();
        for page in [
            "guard.8",
            "guard-run.8",
            "guard-stats.8",
            "guard-status.8",
            "guard-restore.8",
            "guard-doctor.8",
        ] {
            let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.contains(".TH"), "{page} is not a man page");
        }
        assert!(!dir.join("guard-help.8").exists());
        let run = fs::read_to_string(dir.join("guard-run.8")).unwrap();
        assert!(run.contains("syn\\-rate"), "guard-run.8 lacks --syn-rate");
        assert!(run.contains(".TH guard-run 8"), "{run}");
        assert!(
            run.contains("\\fBguard run\\fR"),
            "the synopsis is `guard run`: {run}"
        );
        let main = fs::read_to_string(dir.join("guard.8")).unwrap();
        for section in ["EXIT STATUS", "FILES", "SIGNALS", "ENVIRONMENT"] {
            assert!(
                main.contains(&format!(".SH {section}"))
                    || main.contains(&format!(".SH \"{section}\"")),
                "no {section}"
            );
        }
        assert!(
            main.contains("guard\\-allow(8)"),
            "subcommands point at their pages"
        );
        assert!(main.contains("/var/lib/guard/lists.toml"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
