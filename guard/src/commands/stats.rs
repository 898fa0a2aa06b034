//! `guard stats`: reads a running guard from a second process (its pinned
//! maps and its status file) once or twice, and prints the snapshot
//! `model::stats` makes of the readings.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Result, bail};

use crate::{
    dataplane::{
        handle::Dataplane,
        pins::{self, Layout},
    },
    host::{
        clock::{monotonic_ns, unix_now},
        instances, status_file,
    },
    model::stats::{InterfaceSample, Sample, snapshot},
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

/// Whether `opts` (`--netns`, `--iface`) selects this interface.
fn selected(opts: &StatsOptions, netns: Option<&String>, iface: &str) -> bool {
    opts.netns.as_ref().is_none_or(|want| netns == Some(want))
        && opts.iface.as_ref().is_none_or(|want| want == iface)
}

/// Reads the pins of a running guard, the interfaces `opts` selects; an
/// error if there are none.
pub fn take_sample(layout: &Layout, opts: &StatsOptions) -> Result<Sample> {
    let mut interfaces = Vec::new();
    let (live, dead) = layout.running();
    let dead: Vec<_> = dead
        .into_iter()
        .filter(|(netns, iface, _)| selected(opts, netns.as_ref(), iface))
        .collect();
    for (netns, iface, dir) in live {
        if !selected(opts, netns.as_ref(), &iface) {
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
                "no guard is running{}: {}",
                filter_suffix(opts),
                pins::gone(&dead)
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
