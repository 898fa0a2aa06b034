//! `guard tune`: the field guides' manual procedure, done right, as one
//! command. It shows the current and the recommended sizing with the reason
//! for each; `--apply` writes it; `--persist` makes it survive a reboot.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    error::usage,
    host::{atomic, conntrack::knobs::Knobs, files::HostFiles, netns::Scope, preflight},
    model::{
        conntrack::{BUCKETS, MAX, Timeout, timeout_key},
        paths::{MODPROBE_FILE, MODULES_LOAD_FILE, SYSCTL_FILE},
        sizing::{self, Recommendation, recommend, render},
    },
};

/// What `guard tune` was asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct TuneOptions<'a> {
    pub apply: bool,
    pub persist: bool,
    pub netns: Option<&'a str>,
    /// The recommendations as JSON, on stdout.
    pub json: bool,
}

/// `guard tune [--apply] [--persist] [--netns NAME] [--json]`.
pub fn command(opts: TuneOptions<'_>) -> Result<()> {
    let TuneOptions {
        apply: apply_now,
        persist: persist_now,
        netns,
        json,
    } = opts;
    if persist_now && netns.is_some() {
        return Err(usage(anyhow!(
            "--persist writes /etc, which sets the host's sysctls at boot, not a namespace's: drop --netns"
        )));
    }
    if apply_now || persist_now {
        preflight::check_privileges().map_err(usage)?;
    }
    let scope = Scope::open(netns).map_err(usage)?;
    let knobs = Knobs::open(&scope).map_err(usage)?;
    let host = HostFiles::live();
    let recs = recommend(
        knobs.global(MAX).map_err(usage)?,
        knobs.global(BUCKETS).map_err(usage)?,
        knobs
            .local(&timeout_key(Timeout::TcpEstablished))
            .map_err(usage)?,
        host.ram_bytes()
            .map_err(|e| anyhow!(e))
            .context("reading MemTotal")?,
        sizing::entry_bytes(host.conntrack_entry_bytes()),
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&recs)?);
    } else {
        print!("{}", render(&recs));
    }
    // With --json, stdout holds the JSON alone: what was done goes to
    // stderr.
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    if apply_now {
        apply(&knobs, &recs, say)?;
    }
    if persist_now {
        persist(
            &Persisted {
                sysctl: Path::new(SYSCTL_FILE),
                modprobe: Path::new(MODPROBE_FILE),
                modules_load: Path::new(MODULES_LOAD_FILE),
            },
            &recs,
            say,
        )?;
    }
    if !json && !apply_now && !persist_now && recs.iter().any(Recommendation::changes) {
        println!("\nguard tune --apply writes these now; --persist makes them survive a reboot.");
    }
    Ok(())
}

fn apply(knobs: &Knobs<'_>, recs: &[Recommendation], say: impl Fn(String)) -> Result<()> {
    let mut failed = 0;
    for r in recs.iter().filter(|r| r.changes()) {
        let written = if r.global {
            knobs.set_global(&r.key, r.recommended)
        } else {
            knobs.set_local(&r.key, r.recommended)
        };
        match written {
            Ok(()) => say(format!("set {} {} -> {}", r.key, r.current, r.recommended)),
            Err(e) => {
                eprintln!("guard: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} value(s) could not be written");
    }
    Ok(())
}

/// Writes the sysctl.d and modprobe.d files. The hash size goes to
/// modprobe.d: nf_conntrack can load after systemd-sysctl runs, and a
/// module option sizes the table before any entry exists. modules-load.d
/// loads nf_conntrack before systemd-sysctl runs, so that its sysctls exist
/// when they are applied. Each file written is told to `say`.
pub fn persist(files: &Persisted<'_>, recs: &[Recommendation], say: impl Fn(String)) -> Result<()> {
    let (sysctl_file, modprobe_file) = (files.sysctl, files.modprobe);
    let mut sysctl = String::from(
        "# Written by `guard tune --persist`: conntrack sizing. Remove this file to go back to the kernel's defaults.\n",
    );
    let mut hashsize = None;
    for r in recs {
        if r.key == BUCKETS {
            hashsize = Some(r.recommended);
        } else {
            let _ = writeln!(sysctl, "{} = {}", r.key, r.recommended);
        }
    }
    atomic::write(sysctl_file, sysctl.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", sysctl_file.display()))?;
    say(format!("wrote {}", sysctl_file.display()));
    if let Some(buckets) = hashsize {
        let text = format!(
            "# Written by `guard tune --persist`: the conntrack hash size.\noptions nf_conntrack hashsize={buckets}\n"
        );
        atomic::write(modprobe_file, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", modprobe_file.display()))?;
        say(format!("wrote {}", modprobe_file.display()));
    }
    atomic::write(
        files.modules_load,
        b"# Written by `guard tune --persist`: load conntrack before its sysctls are applied.\nnf_conntrack\n",
        0o644,
    )
    .with_context(|| format!("writing {}", files.modules_load.display()))?;
    say(format!("wrote {}", files.modules_load.display()));
    Ok(())
}

/// Where `--persist` writes.
pub struct Persisted<'a> {
    pub sysctl: &'a Path,
    pub modprobe: &'a Path,
    pub modules_load: &'a Path,
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn persist_writes_sysctls_and_the_hash_size_apart() {
        let dir = std::env::temp_dir().join(format!("guard-tune-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (s, m, l) = (
            dir.join("sysctl.conf"),
            dir.join("modprobe.conf"),
            dir.join("modules-load.conf"),
        );
        let files = Persisted {
            sysctl: &s,
            modprobe: &m,
            modules_load: &l,
        };
        persist(
            &files,
            &recommend(65_536, 16_384, 432_000, 24 * GIB, 248),
            drop,
        )
        .unwrap();
        let sysctl = fs::read_to_string(&s).unwrap();
        assert!(
            sysctl.contains("net.netfilter.nf_conntrack_max = 786432\n"),
            "{sysctl}"
        );
        assert!(sysctl.contains("net.netfilter.nf_conntrack_tcp_timeout_established = 86400\n"));
        assert!(!sysctl.contains("buckets"));
        assert!(
            fs::read_to_string(&m)
                .unwrap()
                .contains("options nf_conntrack hashsize=196608\n")
        );
        let modules = fs::read_to_string(&l).unwrap();
        assert!(modules.ends_with("\nnf_conntrack\n"), "{modules}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
