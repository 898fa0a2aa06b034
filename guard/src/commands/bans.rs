//! `guard bans`: every source banned now, on every guarded interface, with
//! the time left and why.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use super::stats::{Options, take_sample};
use crate::{dataplane::pins::Layout, model::stats::snapshot};

/// Why the data plane bans a source: the one rule it has.
const REASON: &str = "kept exceeding its limits (ban-threshold drops within ban-window)";

/// One banned source.
#[derive(Debug, Serialize)]
pub struct Ban {
    pub iface: String,
    pub netns: Option<String>,
    pub source: String,
    pub seconds_left: f64,
    /// Its new flows dropped so far.
    pub dropped: u64,
    pub reason: &'static str,
}

/// `guard bans [--json]`; an error (exit 1) if no guard runs.
pub fn command(json: bool) -> Result<()> {
    let opts = Options {
        iface: None,
        netns: None,
        json,
        top: 0,
        interval: 0,
    };
    let sample = take_sample(&Layout::default(), &opts)?;
    let snap = snapshot(None, &sample, 0, None);
    let bans: Vec<Ban> = snap
        .interfaces
        .iter()
        .flat_map(|i| {
            i.bans.iter().map(|row| Ban {
                iface: i.iface.clone(),
                netns: i.netns.clone(),
                source: row.source.clone(),
                seconds_left: row.banned_secs.unwrap_or(0.0),
                dropped: row.dropped,
                reason: REASON,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&bans)?);
    } else {
        print!("{}", render(&bans));
    }
    Ok(())
}

fn render(bans: &[Ban]) -> String {
    if bans.is_empty() {
        return "no source is banned\n".to_owned();
    }
    let mut out = format!(
        "{:<16} {:<40} {:>8} {:>10}  why\n",
        "interface", "source", "left", "dropped"
    );
    for b in bans {
        let iface = b
            .netns
            .as_ref()
            .map_or_else(|| b.iface.clone(), |ns| format!("{ns}/{}", b.iface));
        let _ = writeln!(
            out,
            "{iface:<16} {:<40} {:>7.0}s {:>10}  {}",
            b.source, b.seconds_left, b.dropped, b.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_read_at_a_glance() {
        assert_eq!(render(&[]), "no source is banned\n");
        let text = render(&[Ban {
            iface: "eth0".into(),
            netns: Some("edge".into()),
            source: "198.18.0.7".into(),
            seconds_left: 41.6,
            dropped: 1234,
            reason: REASON,
        }]);
        assert!(text.starts_with("interface"), "{text}");
        assert!(
            text.contains("edge/eth0        198.18.0.7")
                && text.contains("42s       1234  kept exceeding"),
            "{text}"
        );
    }
}
