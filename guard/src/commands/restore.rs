//! `guard restore`: puts back what a guard that died left changed.

use anyhow::{Result, anyhow};

use crate::{
    dataplane::pins::{self, Layout},
    error::usage,
    host::{
        instances::{self, Instance},
        lock::PidLock,
        preflight,
        restore::{Record, restore},
    },
    model::paths::{STATE_FILE, runtime_dir},
};

/// `guard restore [--netns NAME]`: the guard of that namespace; without
/// it, every guard that is gone and left a record (or pins) behind.
pub fn command(discard: bool, netns: Option<&str>) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    if netns.is_some() {
        return restore_one(netns, discard);
    }
    let gone: Vec<Instance> = instances::all()
        .into_iter()
        .filter(|i| i.netns.is_none() || i.pid.is_none())
        .collect();
    for instance in gone {
        if instance.netns.is_some() {
            println!("{}:", instance.describe());
        }
        restore_one(instance.netns.as_deref(), discard)?;
    }
    Ok(())
}

fn restore_one(netns: Option<&str>, discard: bool) -> Result<()> {
    let dir = &runtime_dir(netns);
    // Held while restoring, so no guard starts meanwhile; a running guard
    // restores by itself.
    let _lock = PidLock::instance(dir).map_err(|e| {
        usage(anyhow!(
            "{e}; it restores what it changed when it stops (send it SIGTERM)"
        ))
    })?;
    // With the lock held no guard runs in this namespace: its pins left
    // in bpffs are a dead one's.
    for (_, _, pins) in Layout::default()
        .list()
        .into_iter()
        .filter(|(ns, _, _)| ns.as_deref() == netns)
    {
        match pins::remove_dir(&pins) {
            Ok(()) => println!(
                "removed the pins of a guard that is gone: {}",
                pins.display()
            ),
            Err(e) => eprintln!("guard: {e}"),
        }
    }
    put_back(dir, discard)?;
    if netns.is_some() {
        instances::remove(dir);
    } else {
        instances::remove_published(dir);
    }
    Ok(())
}

/// Restores (or discards) the record in `dir`.
fn put_back(dir: &std::path::Path, discard: bool) -> Result<()> {
    if discard {
        Record::remove(dir)?;
        println!("removed {}", dir.join(STATE_FILE).display());
        return Ok(());
    }
    let Some(record) = Record::load(dir).map_err(usage)? else {
        println!(
            "nothing to restore: no guard left changes behind ({} does not exist)",
            dir.join(STATE_FILE).display()
        );
        return Ok(());
    };
    let report = restore(&record);
    for line in &report.restored {
        println!("restored {line}");
    }
    if report.restored.is_empty() {
        println!("every recorded value was already in place");
    }
    if !report.is_complete() {
        return Err(anyhow!(
            "could not restore everything (the state file is kept; run `guard restore` again later):\n  {}",
            report.problems.join("\n  ")
        ));
    }
    Record::remove(dir)?;
    Ok(())
}
