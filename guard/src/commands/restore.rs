//! `guard restore`: puts back what a guard that died left changed.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::{
    dataplane::pins::{self, Layout},
    error::usage,
    host::{
        lock::HostLock,
        preflight,
        restore::{Record, restore},
    },
    model::paths::{RUNTIME_DIR, STATE_FILE},
};

/// `guard restore`.
pub fn command(discard: bool) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let dir = Path::new(RUNTIME_DIR);
    // Held while restoring, so no guard starts meanwhile; a running guard
    // restores by itself.
    let _lock = HostLock::acquire(dir).map_err(|e| {
        usage(anyhow!(
            "{e}; it restores what it changed when it stops (send it SIGTERM)"
        ))
    })?;
    // With the lock held no guard runs: pins left in bpffs are a dead one's.
    for (_, _, pins) in Layout::default().list() {
        match pins::remove_dir(&pins) {
            Ok(()) => println!(
                "removed the pins of a guard that is gone: {}",
                pins.display()
            ),
            Err(e) => eprintln!("guard: {e}"),
        }
    }
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
