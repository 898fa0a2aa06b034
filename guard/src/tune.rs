//! `guard tune`: the field guides' manual procedure, done right, as one
//! command. It shows the current and the recommended sizing with the reason
//! for each; `--apply` writes it; `--persist` makes it survive a reboot.

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::TuneArgs,
    conntrack::{
        Timeout,
        knobs::{self, BUCKETS, Knobs, MAX, timeout_key},
    },
    controller::Budget,
    exit::usage,
    netns::Scope,
    preflight,
};

/// Where `--persist` writes.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-guard-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/guard-conntrack.conf";

/// An established entry lives a day, as kube-proxy sets it: five days keeps
/// the entries of peers that vanished without a FIN.
const ESTABLISHED_SECS: u64 = 86_400;

/// One recommended value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub key: String,
    /// Of the initial namespace (max, buckets) or the protected one.
    pub global: bool,
    pub current: u64,
    pub recommended: u64,
    pub why: String,
}

impl Recommendation {
    #[must_use]
    pub fn changes(&self) -> bool {
        self.current != self.recommended
    }
}

/// The sizing the field guides arrive at, computed from the real entry size
/// and RAM, never smaller than what is set.
#[must_use]
pub fn recommend(
    max: u64,
    buckets: u64,
    established: u64,
    ram_bytes: u64,
    entry_bytes: u64,
) -> Vec<Recommendation> {
    let budget = Budget::new(None, ram_bytes, entry_bytes, buckets);
    let new_max = max.max(budget.ceiling);
    let new_buckets = buckets.max(new_max.div_ceil(4));
    vec![
        Recommendation {
            key: MAX.to_owned(),
            global: true,
            current: max,
            recommended: new_max,
            why: if new_max == max {
                "already at or above one entry per 32 KiB of RAM".to_owned()
            } else {
                format!(
                    "one entry per 32 KiB of RAM (the field guides' RAM/16384/2 on 64-bit): {} MiB at {entry_bytes} bytes an entry",
                    (new_max * entry_bytes).div_ceil(1024 * 1024)
                )
            },
        },
        Recommendation {
            key: BUCKETS.to_owned(),
            global: true,
            current: buckets,
            recommended: new_buckets,
            why: if new_buckets == buckets {
                "already at least a quarter of nf_conntrack_max".to_owned()
            } else {
                "a quarter of nf_conntrack_max: hash chains of four at most when full".to_owned()
            },
        },
        Recommendation {
            key: timeout_key(Timeout::TcpEstablished),
            global: false,
            current: established,
            recommended: established.min(ESTABLISHED_SECS),
            why: if established <= ESTABLISHED_SECS {
                "already a day or less".to_owned()
            } else {
                "a day, as kube-proxy sets it: five days keeps the entries of peers that left without a FIN".to_owned()
            },
        },
    ]
}

pub fn command(args: &TuneArgs) -> Result<()> {
    if args.persist && args.netns.is_some() {
        return Err(usage(anyhow::anyhow!(
            "--persist writes /etc, which sets the host's sysctls at boot, not a namespace's: drop --netns"
        )));
    }
    if args.apply || args.persist {
        preflight::check_privileges().map_err(usage)?;
    }
    let scope = Scope::open(args.netns.as_deref()).map_err(usage)?;
    let knobs = Knobs::open(&scope).map_err(usage)?;
    let entry_bytes = knobs::entry_size().unwrap_or(320);
    let recs = recommend(
        knobs.global(MAX).map_err(usage)?,
        knobs.global(BUCKETS).map_err(usage)?,
        knobs
            .local(&timeout_key(Timeout::TcpEstablished))
            .map_err(usage)?,
        knobs::ram_bytes().context("reading MemTotal")?,
        entry_bytes,
    );
    print!("{}", render(&recs));
    if args.apply {
        apply(&knobs, &recs)?;
    }
    if args.persist {
        persist(Path::new(SYSCTL_FILE), Path::new(MODPROBE_FILE), &recs)?;
    }
    if !args.apply && !args.persist && recs.iter().any(Recommendation::changes) {
        println!("\nguard tune --apply writes these now; --persist makes them survive a reboot.");
    }
    Ok(())
}

/// The table printed by `guard tune`.
#[must_use]
pub fn render(recs: &[Recommendation]) -> String {
    let mut out = format!(
        "{:<52} {:>12} {:>12}  why\n",
        "sysctl", "current", "recommended"
    );
    for r in recs {
        let mark = if r.changes() { "*" } else { " " };
        let _ = writeln!(
            out,
            "{:<52} {:>12} {:>11}{mark}  {}",
            r.key, r.current, r.recommended, r.why
        );
    }
    out
}

fn apply(knobs: &Knobs<'_>, recs: &[Recommendation]) -> Result<()> {
    let mut failed = 0;
    for r in recs.iter().filter(|r| r.changes()) {
        let written = if r.global {
            knobs.set_global(&r.key, r.recommended)
        } else {
            knobs.set_local(&r.key, r.recommended)
        };
        match written {
            Ok(()) => println!("set {} {} -> {}", r.key, r.current, r.recommended),
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
/// module option sizes the table before any entry exists.
pub fn persist(sysctl_file: &Path, modprobe_file: &Path, recs: &[Recommendation]) -> Result<()> {
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
    fs::write(sysctl_file, sysctl).with_context(|| format!("writing {}", sysctl_file.display()))?;
    println!("wrote {}", sysctl_file.display());
    if let Some(buckets) = hashsize {
        fs::write(
            modprobe_file,
            format!("# Written by `guard tune --persist`: the conntrack hash size.\noptions nf_conntrack hashsize={buckets}\n"),
        )
        .with_context(|| format!("writing {}", modprobe_file.display()))?;
        println!("wrote {}", modprobe_file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn a_small_table_on_a_big_machine_is_raised_with_buckets_and_timeout() {
        let recs = recommend(65_536, 16_384, 432_000, 24 * GIB, 248);
        assert_eq!(recs[0].recommended, 786_432);
        assert!(
            recs[0].why.contains("186 MiB at 248 bytes"),
            "{}",
            recs[0].why
        );
        assert_eq!(recs[1].recommended, 196_608);
        assert_eq!(recs[2].recommended, 86_400);
        assert!(recs.iter().all(Recommendation::changes));
    }

    #[test]
    fn a_table_already_larger_is_left_alone() {
        let recs = recommend(2_000_000, 1_000_000, 3_600, 24 * GIB, 248);
        assert!(recs.iter().all(|r| !r.changes()), "{recs:?}");
        assert!(render(&recs).contains("already at or above"));
    }

    #[test]
    fn persist_writes_sysctls_and_the_hash_size_apart() {
        let dir = std::env::temp_dir().join(format!("guard-tune-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (s, m) = (dir.join("sysctl.conf"), dir.join("modprobe.conf"));
        persist(&s, &m, &recommend(65_536, 16_384, 432_000, 24 * GIB, 248)).unwrap();
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
