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
    let (running, gone) = running_and_gone(instances::all());
    for (instance, pid) in running {
        println!(
            "{}: guard pid {pid} runs, and restores what it changed when it stops",
            instance.describe()
        );
    }
    for instance in gone {
        if instance.netns.is_some() {
            println!("{}:", instance.describe());
        }
        restore_one(instance.netns.as_deref(), discard)?;
    }
    Ok(())
}

/// The guards that run (each restores by itself, and holds the lock
/// `restore_one` needs) apart from those gone, the host's first as
/// `instances::all` lists it: a running host guard does not stop the
/// namespaces' dead ones from being restored.
fn running_and_gone(all: Vec<Instance>) -> (Vec<(Instance, u32)>, Vec<Instance>) {
    let mut running = Vec::new();
    let mut gone = Vec::new();
    for instance in all {
        match instance.pid {
            Some(pid) => running.push((instance, pid)),
            None => gone.push(instance),
        }
    }
    (running, gone)
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_running_host_guard_leaves_the_dead_namespaces_to_restore() {
        let at = |netns: Option<&str>, pid| Instance {
            netns: netns.map(str::to_owned),
            dir: PathBuf::from("/run/guard"),
            pid,
        };
        let (running, gone) = running_and_gone(vec![
            at(None, Some(10)),
            at(Some("a"), None),
            at(Some("b"), Some(11)),
        ]);
        let running: Vec<_> = running
            .iter()
            .map(|(i, pid)| (i.describe(), *pid))
            .collect();
        let gone: Vec<_> = gone.iter().map(Instance::describe).collect();
        assert_eq!(
            running,
            [("the host".to_owned(), 10), ("netns b".to_owned(), 11)]
        );
        assert_eq!(gone, ["netns a"]);
    }
}
