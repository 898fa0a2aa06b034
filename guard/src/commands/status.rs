//! `guard status`: at a glance, what the running guard is and whether it
//! drops: per interface its mode, XDP attach mode, program, SYN cookies and
//! the controller's level, with the config file and the uptime; and the
//! attack signatures installed.

use anyhow::Result;

use super::sigs;
use crate::{
    host::{clock::unix_now, instances, status_file},
    model::status::StatusReport,
};

/// `guard status [--json] [--netns NAME]`; an error (exit 1) if no guard
/// runs.
pub fn command(json: bool, netns: Option<&str>) -> Result<()> {
    let (dir, run) = instances::running(netns, "start one with `guard run`")?;
    let mut report = StatusReport::new(run, status_file::read(&dir).as_ref(), unix_now());
    // The pins may be gone between the files and here (a guard stopping).
    report.signatures = sigs::rows()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.netns.as_deref() == netns)
        .map(|r| {
            format!(
                "sig {} on {} ({} {}, {}, {} hits): {}",
                r.id,
                r.iface,
                r.origin,
                r.action,
                r.effect(),
                r.hits,
                r.signature
            )
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
