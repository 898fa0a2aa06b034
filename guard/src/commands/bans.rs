//! `guard bans`: every source banned now, on every guarded interface, with
//! the time left and why; and the deny entries given a time or a reason
//! (`guard deny add --for/--reason`, CrowdSec, fail2ban), which hold on
//! every interface.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use super::{
    lists::describe_note,
    stats::{StatsOptions, take_sample},
};
use crate::{
    dataplane::pins::Layout,
    host::{clock::unix_now_secs, kept_lists},
    model::{as_f64, lists::Store, stats::snapshot},
};

/// Why the data plane bans a source: the one rule it has.
const REASON: &str = "kept exceeding its limits (ban-threshold drops within ban-window)";

/// One banned source or range.
#[derive(Debug, Serialize)]
pub struct Ban {
    /// `limits` (the data plane banned it) or `deny` (a deny entry).
    pub by: &'static str,
    /// None for a deny entry: it holds on every interface.
    pub iface: Option<String>,
    pub netns: Option<String>,
    pub source: String,
    /// None: for good.
    pub seconds_left: Option<f64>,
    /// Its new flows dropped so far (a ban's; a deny entry's are counted
    /// with all the list's, in drop_denylist).
    pub dropped: Option<u64>,
    pub reason: String,
}

/// `guard bans [--json]`; an error (exit 1) if no guard runs.
pub fn command(json: bool) -> Result<()> {
    let opts = StatsOptions {
        iface: None,
        netns: None,
        json,
        top: 0,
        interval: 0,
    };
    let sample = take_sample(&Layout::default(), &opts)?;
    let snap = snapshot(None, &sample, 0, None);
    let mut bans: Vec<Ban> = snap
        .interfaces
        .iter()
        .flat_map(|i| {
            i.bans.iter().map(|row| Ban {
                by: "limits",
                iface: Some(i.iface.clone()),
                netns: i.netns.clone(),
                source: row.source.clone(),
                seconds_left: Some(row.banned_secs.unwrap_or(0.0)),
                dropped: Some(row.dropped),
                reason: REASON.to_owned(),
            })
        })
        .collect();
    match kept_lists::load_store() {
        Ok(store) => bans.extend(noted_denies(&store, unix_now_secs())),
        Err(e) => eprintln!("guard: the kept deny entries are left out: {e:#}"),
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&bans)?);
    } else {
        print!("{}", render(&bans));
    }
    Ok(())
}

/// The kept deny entries that carry a time or a reason.
fn noted_denies(store: &Store, now: u64) -> Vec<Ban> {
    let all = store.all();
    all.lists
        .deny
        .iter()
        .filter_map(|net| {
            let note = all.notes.get(net)?;
            Some(Ban {
                by: "deny",
                iface: None,
                netns: None,
                source: net.to_string(),
                seconds_left: note.left(now).map(as_f64),
                dropped: None,
                reason: note
                    .reason
                    .clone()
                    .unwrap_or_else(|| describe_note(note, now)),
            })
        })
        .collect()
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
        let iface = match (&b.netns, &b.iface) {
            (Some(ns), Some(iface)) => format!("{ns}/{iface}"),
            (None, Some(iface)) => iface.clone(),
            (_, None) => "all (deny)".to_owned(),
        };
        let left = b
            .seconds_left
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.0}s"));
        let dropped = b.dropped.map_or_else(|| "-".to_owned(), |d| d.to_string());
        let _ = writeln!(
            out,
            "{iface:<16} {:<40} {left:>8} {dropped:>10}  {}",
            b.source, b.reason
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
        let text = render(&[
            Ban {
                by: "limits",
                iface: Some("eth0".into()),
                netns: Some("edge".into()),
                source: "198.18.0.7".into(),
                seconds_left: Some(41.6),
                dropped: Some(1234),
                reason: REASON.to_owned(),
            },
            Ban {
                by: "deny",
                iface: None,
                netns: None,
                source: "198.18.9.0/24".into(),
                seconds_left: None,
                dropped: None,
                reason: "spamhaus-drop".into(),
            },
        ]);
        assert!(text.starts_with("interface"), "{text}");
        assert!(
            text.contains("edge/eth0        198.18.0.7")
                && text.contains("42s       1234  kept exceeding"),
            "{text}"
        );
        assert!(
            text.contains("all (deny)       198.18.9.0/24")
                && text.contains("-          -  spamhaus-drop"),
            "{text}"
        );
    }

    #[test]
    fn deny_entries_with_a_time_or_a_reason_are_bans() {
        use crate::model::lists::{Edit, List, Note};
        let mut store = Store::default();
        let net = |t: &str| t.parse().unwrap();
        let timed = Note {
            expires: Some(1_100),
            reason: None,
        };
        store.apply(
            List::Deny,
            Edit::Add,
            &[net("198.18.0.7/32")],
            &timed,
            false,
        );
        store.apply(
            List::Deny,
            Edit::Add,
            &[net("198.18.0.8/32")],
            &Note::default(),
            true,
        );
        let bans = noted_denies(&store, 1_000);
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].source, "198.18.0.7/32");
        assert_eq!(bans[0].seconds_left, Some(100.0));
        assert_eq!(bans[0].reason, "1m left");
    }
}
