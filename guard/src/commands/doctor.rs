//! `guard doctor`: reads the facts once, under `--root`, through
//! `host::files` (and, on the live host, the interfaces, bpffs, privileges
//! and a running guard), hands them to `model::doctor`'s rules, prints the
//! diagnosis and returns its Nagios exit code.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::{
    dataplane::pins::Layout,
    host::{
        files::HostFiles,
        iface,
        instances::{self, Instance},
        netns::Scope,
        nft, preflight, status_file, xtables,
    },
    model::{
        doctor::{Diagnosis, Facts, Live, count_table_full, evaluate},
        firewall::{AckState, drops_before_synproxy},
    },
};

/// Reads everything under `root` and evaluates it. The live-only checks run
/// when `root` is `/`. With `netns`, the namespace's own facts are read
/// in it (`root` must be `/` then).
pub fn diagnose(root: &Path, netns: Option<&str>) -> Result<Diagnosis> {
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let live = HostFiles::under(root)
        .is_live()
        .with_context(|| format!("resolving --root {}", root.display()))?;
    if let (Some(ns), false) = (netns, live) {
        bail!(
            "--netns {ns} reads a live namespace and --root {} a copy of /proc and /sys: give one of them",
            root.display()
        );
    }
    // The live host's files by `/`: its /proc/net is then the calling
    // thread's namespace's (`HostFiles::net_path`).
    let files = if live {
        HostFiles::live()
    } else {
        HostFiles::under(root)
    };
    let scope = Scope::open(netns)?;
    let (sysctls, stats, syncookies) = scope.run(|| {
        (
            files.conntrack_sysctls(),
            files.conntrack_stats(),
            files.tcp_syncookies(),
        )
    })?;
    let facts = Facts {
        sysctls,
        entry_bytes: files.conntrack_entry_bytes(),
        ram_bytes: files.ram_bytes().ok(),
        stats,
        table_full_lines: files.kernel_log().map(|log| count_table_full(&log)),
        syncookies,
        btf: files.has_btf(),
        netns: netns.map(str::to_owned),
        live: if live {
            Some(gather_live(&scope)?)
        } else {
            None
        },
    };
    let findings = evaluate(&facts);
    Ok(Diagnosis {
        root: root.to_path_buf(),
        facts,
        findings,
    })
}

/// `guard doctor`: prints the diagnosis and returns its exit code (Nagios:
/// 0 OK, 1 WARN, 2 CRIT).
pub fn command(root: &Path, netns: Option<&str>, json: bool) -> Result<u8> {
    let diagnosis = diagnose(root, netns)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&diagnosis.json())?);
    } else {
        print!("{}", diagnosis.render());
    }
    Ok(diagnosis.exit_code())
}

/// The live facts: of the namespace `scope` names (its interfaces,
/// firewall and guard), else of the host and any guard.
fn gather_live(scope: &Scope) -> Result<Live> {
    let netns = scope.name();
    let xdp = scope.run(|| {
        iface::all()
            .into_iter()
            .map(|i| {
                let found = iface::xdp_attachment(&i).map_err(|e| e.to_string());
                (i.name, found)
            })
            .collect()
    })?;
    let (guard_pid, run) = match netns {
        Some(ns) => {
            let its = Instance::at(Some(ns.to_owned()));
            (its.pid, status_file::read_run(&its.dir))
        }
        None => (
            instances::all().into_iter().find_map(|i| i.pid),
            instances::choose(None)
                .ok()
                .and_then(|dir| status_file::read_run(&dir)),
        ),
    };
    Ok(Live {
        xdp,
        bpffs: Layout::check_bpffs().map_err(|e| e.to_string()),
        privileges: preflight::check_privileges().map_err(|e| e.to_string()),
        guard_pid,
        pinned: Layout::default()
            .list()
            .into_iter()
            .filter(|(ns, _, _)| netns.is_none() || ns.as_deref() == netns)
            .map(|(ns, iface, _)| match ns {
                Some(ns) => format!("netns {ns}/{iface}"),
                None => iface,
            })
            .collect(),
        run,
        firewall: xtables::legacy(scope, &["mangle"])
            .and_then(|legacy| {
                let (json, listing) = nft::ruleset(scope)?;
                Ok(drops_before_synproxy(
                    &json,
                    &listing,
                    &legacy,
                    &[AckState::Invalid, AckState::Untracked],
                ))
            })
            .map_err(|e| format!("{e:#}")),
    })
}
