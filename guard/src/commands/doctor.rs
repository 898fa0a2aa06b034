//! `guard doctor`: reads the facts once, under `--root`, through
//! `host::files` (and, on the live host, the interfaces, bpffs, privileges
//! and a running guard), hands them to `model::doctor`'s rules, prints the
//! diagnosis and returns its Nagios exit code.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::{
    dataplane::pins::Layout,
    host::{
        files::HostFiles, iface, instances, netns::Scope, nft, preflight, status_file, xtables,
    },
    model::{
        doctor::{Diagnosis, Facts, Live, count_table_full, evaluate},
        firewall::{AckState, drops_before_synproxy},
    },
};

/// Reads everything under `root` and evaluates it. The live-only checks run
/// when `root` is `/`.
pub fn diagnose(root: &Path) -> Result<Diagnosis> {
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let files = HostFiles::under(root);
    let live = files
        .is_live()
        .with_context(|| format!("resolving --root {}", root.display()))?;
    let facts = Facts {
        sysctls: files.conntrack_sysctls(),
        entry_bytes: files.conntrack_entry_bytes(),
        ram_bytes: files.ram_bytes().ok(),
        stats: files.conntrack_stats(),
        table_full_lines: files.kernel_log().map(|log| count_table_full(&log)),
        btf: files.has_btf(),
        live: live.then(|| gather_live(&files)),
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
pub fn command(root: &Path, json: bool) -> Result<u8> {
    let diagnosis = diagnose(root)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&diagnosis.json())?);
    } else {
        print!("{}", diagnosis.render());
    }
    Ok(diagnosis.exit_code())
}

fn gather_live(files: &HostFiles) -> Live {
    let xdp = files
        .interfaces()
        .into_iter()
        .map(|name| {
            let found = iface::lookup(&name, "")
                .and_then(|i| iface::xdp_attachment(&i))
                .map_err(|e| e.to_string());
            (name, found)
        })
        .collect();
    Live {
        xdp,
        bpffs: Layout::check_bpffs().map_err(|e| e.to_string()),
        privileges: preflight::check_privileges().map_err(|e| e.to_string()),
        guard_pid: running_guard(files),
        pinned: Layout::default()
            .list()
            .into_iter()
            .map(|(netns, iface, _)| match netns {
                Some(ns) => format!("netns {ns}/{iface}"),
                None => iface,
            })
            .collect(),
        run: instances::choose(None)
            .ok()
            .and_then(|dir| status_file::read_run(&dir)),
        firewall: xtables::legacy(&Scope::Host, &["mangle"])
            .and_then(|legacy| {
                let (json, listing) = nft::ruleset(&Scope::Host)?;
                Ok(drops_before_synproxy(
                    &json,
                    &listing,
                    &legacy,
                    &[AckState::Invalid, AckState::Untracked],
                ))
            })
            .map_err(|e| format!("{e:#}")),
    }
}

/// The pid in the host lock, if that process is alive and is guard.
fn running_guard(files: &HostFiles) -> Option<u32> {
    instances::all()
        .into_iter()
        .filter_map(|i| i.pid)
        .find(|pid| files.process_name(*pid).as_deref() == Some("guard"))
}
