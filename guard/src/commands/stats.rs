//! `guard stats`: reads a running guard from a second process (its pinned
//! maps and its status file) once or twice, and prints the snapshot
//! `model::stats` makes of the readings.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Result, bail};

use crate::{
    dataplane::{handle::Dataplane, pins::Layout},
    host::{
        clock::{monotonic_ns, unix_now},
        instances, status_file,
    },
    model::{
        paths::runtime_dir,
        stats::{InterfaceSample, Sample, snapshot},
    },
};

/// What `guard stats` was asked for.
#[derive(Clone, Debug)]
pub struct StatsOptions {
    /// Only the interface with this name.
    pub iface: Option<String>,
    /// Only interfaces in this network namespace.
    pub netns: Option<String>,
    pub json: bool,
    /// Rows in each top list.
    pub top: usize,
    /// Seconds between the two readings; 0 reads once.
    pub interval: u64,
}

/// `guard stats` (`--watch` is [`super::watch`]).
pub fn command(opts: &StatsOptions) -> Result<()> {
    let layout = Layout::default();
    let first = take_sample(&layout, opts)?;
    let second = if opts.interval > 0 {
        std::thread::sleep(Duration::from_secs(opts.interval));
        Some(take_sample(&layout, opts)?)
    } else {
        None
    };
    let (prev, now) = match second {
        Some(second) => (Some(&first), second),
        None => (None, first.clone()),
    };
    let snap = snapshot(
        prev,
        &now,
        opts.top,
        status_file::read(&instances::choose(opts.netns.as_deref())?),
    );
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else {
        print!("{}", snap.render(unix_now()));
    }
    Ok(())
}

/// Reads the pins of a running guard, the interfaces `opts` selects; an
/// error if there are none.
pub fn take_sample(layout: &Layout, opts: &StatsOptions) -> Result<Sample> {
    let mut interfaces = Vec::new();
    let mut dead = Vec::new();
    for (netns, iface, dir) in layout.list() {
        let other_ns = opts
            .netns
            .as_ref()
            .is_some_and(|want| netns.as_ref() != Some(want));
        if other_ns || opts.iface.as_ref().is_some_and(|want| *want != iface) {
            continue;
        }
        // A killed guard's pins stay, its counters frozen, until `guard
        // restore` or the next `guard run` removes them.
        if instances::holder(&runtime_dir(netns.as_deref())).is_none() {
            dead.push(dir.display().to_string());
            continue;
        }
        let dataplane = Dataplane::open_pinned(&dir)?;
        interfaces.push(InterfaceSample {
            counters: dataplane.counters()?,
            sources: dataplane.sources()?,
            prefixes: dataplane.prefixes()?,
            sigs: dataplane.sigs()?,
            iface,
            netns,
            pin_dir: dir,
        });
    }
    if interfaces.is_empty() {
        if !dead.is_empty() {
            bail!(
                "no guard is running{}: the pins at {} are a guard's that is gone (`guard restore` removes them and puts back what it changed)",
                filter_suffix(opts),
                dead.join(", ")
            );
        }
        bail!(
            "no guard is running{}: {} (start one with `guard run`)",
            filter_suffix(opts),
            layout.nothing_pinned()
        );
    }
    Ok(Sample {
        at_ns: monotonic_ns(),
        interfaces,
    })
}

fn filter_suffix(opts: &StatsOptions) -> String {
    let mut s = String::new();
    if let Some(iface) = &opts.iface {
        let _ = write!(s, " on {iface}");
    }
    if let Some(ns) = &opts.netns {
        let _ = write!(s, " in netns {ns}");
    }
    s
}
