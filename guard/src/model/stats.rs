//! What `guard stats` shows, computed from raw readings: a [`Sample`] is
//! one reading of the maps; [`snapshot`] turns one (or two, for rates) into
//! what `guard stats` prints, `--json` emits and `--watch` draws. The
//! periodic log line is here too. Pure: the readings come from
//! `dataplane`, the clock from `host::clock`.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, time::Duration};

use guard_common::{
    Counter, CounterBlock, SourceKey, SourceState, bucket::NANOS_PER_SEC, fingerprint::SigTable,
};
use serde::Serialize;

use super::{as_f64 as f, fingerprint::describe, status::Status};

/// One reading of every guarded interface the filters select.
#[derive(Clone, Debug)]
pub struct Sample {
    /// CLOCK_MONOTONIC, ns.
    pub at_ns: u64,
    pub interfaces: Vec<InterfaceSample>,
}

#[derive(Clone, Debug)]
pub struct InterfaceSample {
    pub iface: String,
    pub netns: Option<String>,
    pub pin_dir: PathBuf,
    pub counters: CounterBlock,
    pub sources: Vec<(SourceKey, SourceState)>,
    pub prefixes: Vec<(SourceKey, SourceState)>,
    pub sigs: SigTable,
}

/// What `guard stats` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Seconds the rates are measured over; 0 when there are none.
    pub interval_secs: f64,
    pub interfaces: Vec<InterfaceStats>,
    /// The controller's status, if it runs.
    pub conntrack: Option<Status>,
}

/// One guarded interface.
#[derive(Clone, Debug, Serialize)]
pub struct InterfaceStats {
    pub iface: String,
    pub netns: Option<String>,
    pub pin_dir: String,
    /// Every counter by its stable name.
    pub counters: BTreeMap<&'static str, u64>,
    /// Per second over the interval (empty without one).
    pub rates: BTreeMap<&'static str, f64>,
    /// Sources with the most drops.
    pub top_sources: Vec<SourceRow>,
    /// Sources with the most new flows per second (over the interval).
    pub top_new_flow_sources: Vec<SourceRow>,
    /// Prefixes with the most drops.
    pub top_prefixes: Vec<SourceRow>,
    /// Sources banned now, longest ban first.
    pub bans: Vec<SourceRow>,
    /// Sources verified now (a cookie handshake, an ACK of a connection the
    /// host knows, or data the host sent them): they skip the global budget.
    pub verified_sources: usize,
    /// The attack signatures installed.
    pub signatures: Vec<SigRow>,
}

/// One attack signature.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SigRow {
    pub id: u32,
    /// `learned` or `operator`.
    pub origin: &'static str,
    /// `drop` or `monitor`.
    pub action: &'static str,
    /// Whether it stays (an operator's, or a learned one pinned) rather
    /// than expiring once its flood is over.
    pub pinned: bool,
    /// Packets matched since it was installed.
    pub hits: u64,
    /// Over the interval, if there is one.
    pub hits_per_sec: Option<f64>,
    pub signature: String,
}

/// The signature rows of a reading, with rates against `before`.
fn sig_rows(now: &InterfaceSample, before: Option<&InterfaceSample>, interval: f64) -> Vec<SigRow> {
    let t = &now.sigs;
    t.slots()
        .map(|slot| {
            let meta = &t.meta[slot];
            let hits = now.counters.sig_hits(slot);
            let earlier = before
                .filter(|b| b.sigs.active & (1 << slot) != 0 && b.sigs.meta[slot].id == meta.id)
                .map(|b| b.counters.sig_hits(slot));
            SigRow {
                id: meta.id,
                origin: t.origin_name(slot),
                action: t.action_name(slot),
                pinned: meta.pinned != 0,
                hits: t.hits(slot, &now.counters),
                hits_per_sec: earlier
                    .filter(|_| interval > 0.0)
                    .map(|e| f(hits.wrapping_sub(e)) / interval),
                signature: describe(&t.sigs[slot]),
            }
        })
        .collect()
}

/// One source or prefix.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceRow {
    pub source: String,
    pub new_flows: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Over the interval, if there is one.
    pub new_flows_per_sec: Option<f64>,
    pub last_seen_secs_ago: f64,
    /// Seconds left of a ban, if banned.
    pub banned_secs: Option<f64>,
    /// Seconds left of its verification, if verified.
    pub verified_secs: Option<f64>,
}

fn secs(ns: u64) -> f64 {
    f(ns) / f(NANOS_PER_SEC)
}

/// Builds the snapshot of `now`, with rates against `prev` if given.
#[must_use]
pub fn snapshot(
    prev: Option<&Sample>,
    now: &Sample,
    top: usize,
    conntrack: Option<Status>,
) -> Snapshot {
    let interval = prev.map_or(0.0, |p| secs(now.at_ns.saturating_sub(p.at_ns)));
    let interfaces = now
        .interfaces
        .iter()
        .map(|i| {
            let before = prev.and_then(|p| {
                p.interfaces
                    .iter()
                    .find(|b| b.iface == i.iface && b.netns == i.netns)
            });
            interface_stats(i, before, interval, top, now.at_ns)
        })
        .collect();
    Snapshot {
        interval_secs: interval,
        interfaces,
        conntrack,
    }
}

fn interface_stats(
    now: &InterfaceSample,
    before: Option<&InterfaceSample>,
    interval: f64,
    top: usize,
    now_ns: u64,
) -> InterfaceStats {
    let counters = Counter::ALL
        .iter()
        .map(|c| (c.name(), now.counters.get(*c)))
        .collect();
    let rates = match before {
        Some(b) if interval > 0.0 => Counter::ALL
            .iter()
            .map(|c| {
                let delta = now.counters.get(*c).wrapping_sub(b.counters.get(*c));
                (c.name(), f(delta) / interval)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let earlier: BTreeMap<&SourceKey, &SourceState> = before
        .map(|b| b.sources.iter().map(|(k, v)| (k, v)).collect())
        .unwrap_or_default();
    let row = |(key, st): &(SourceKey, SourceState)| SourceRow {
        source: key.to_string(),
        new_flows: st.new_flows(),
        passed: st.passed,
        dropped: st.dropped,
        new_flows_per_sec: (interval > 0.0).then(|| {
            let old = earlier.get(key).map_or(0, |s| s.new_flows());
            f(st.new_flows().saturating_sub(old)) / interval
        }),
        last_seen_secs_ago: secs(now_ns.saturating_sub(st.last_seen_ns)),
        banned_secs: (st.banned_until_ns > now_ns).then(|| secs(st.banned_until_ns - now_ns)),
        verified_secs: (st.verified_until_ns > now_ns).then(|| secs(st.verified_until_ns - now_ns)),
    };
    let rows: Vec<SourceRow> = now.sources.iter().map(row).collect();
    let by = |key: fn(&SourceRow) -> (f64, u64), rows: &[SourceRow]| {
        let mut sorted = rows.to_vec();
        sorted.sort_by(|a, b| {
            key(b)
                .partial_cmp(&key(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.source.cmp(&b.source))
        });
        sorted.truncate(top);
        sorted
    };
    let prefix_rows: Vec<SourceRow> = now.prefixes.iter().map(row).collect();
    let mut bans: Vec<SourceRow> = rows
        .iter()
        .filter(|r| r.banned_secs.is_some())
        .cloned()
        .collect();
    bans.sort_by(|a, b| {
        b.banned_secs
            .partial_cmp(&a.banned_secs)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.source.cmp(&b.source))
    });
    InterfaceStats {
        iface: now.iface.clone(),
        netns: now.netns.clone(),
        pin_dir: now.pin_dir.display().to_string(),
        counters,
        rates,
        top_sources: by(|r| (f(r.dropped), r.new_flows), &rows),
        top_new_flow_sources: if interval > 0.0 {
            by(|r| (r.new_flows_per_sec.unwrap_or(0.0), r.dropped), &rows)
        } else {
            Vec::new()
        },
        top_prefixes: by(|r| (f(r.dropped), r.new_flows), &prefix_rows),
        bans,
        verified_sources: now
            .sources
            .iter()
            .filter(|(_, st)| st.verified_until_ns > now_ns)
            .count(),
        signatures: sig_rows(now, before, interval),
    }
}

/// One line for the periodic log: totals, and the packet rate since `prev`.
#[must_use]
pub fn summary_line(
    iface: &str,
    now: &CounterBlock,
    prev: &CounterBlock,
    elapsed: Duration,
) -> String {
    let packets = now.get(Counter::Packets);
    let delta = packets.wrapping_sub(prev.get(Counter::Packets));
    let rate = f(delta) / elapsed.as_secs_f64().max(f64::EPSILON);
    let mut line = format!("{iface}: {packets} pkts ({rate:.1}/s) |");
    for counter in Counter::CLASSES {
        let _ = write!(line, " {} {}", counter.name(), now.get(counter));
    }
    line.push_str(" |");
    for counter in Counter::ATTRIBUTES {
        let _ = write!(line, " {} {}", counter.name(), now.get(counter));
    }
    line
}

impl Snapshot {
    /// The text form of `guard stats`; `now` (seconds since the Unix
    /// epoch) dates the controller's decisions.
    #[must_use]
    pub fn render(&self, now: f64) -> String {
        let mut out = String::new();
        if let Some(ct) = &self.conntrack {
            let _ = writeln!(
                out,
                "conntrack{}: {} / {} entries ({:.1}%), level {}, keeping below {:.0}%{}",
                ct.netns
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" (netns {n})")),
                ct.count,
                ct.max,
                ct.fill,
                ct.level,
                ct.target,
                if ct.dry_run { ", dry run" } else { "" }
            );
            if let Some(g) = ct.global {
                let _ = writeln!(
                    out,
                    "  xdp global budget {g}, per source syn {} udp {} icmp {}",
                    ct.source[0], ct.source[1], ct.source[2]
                );
            }
            let _ = writeln!(
                out,
                "  kernel: drop {} early_drop {} insert_failed {} chaintoolong {}",
                ct.stats.drop, ct.stats.early_drop, ct.stats.insert_failed, ct.stats.chaintoolong
            );
            if !ct.cookie_ports.is_empty() {
                let _ = writeln!(
                    out,
                    "  SYN cookies on for ports {:?} (XDP answers SYNs, SYNPROXY completes)",
                    ct.cookie_ports
                );
            }
            let _ = writeln!(
                out,
                "  open ports: {} (new flows to the others share the closed ports' budget)",
                ct.open_ports
            );
            for d in &ct.recent {
                let _ = writeln!(out, "  {:>6.0}s ago: {}", (now - d.at).max(0.0), d.line);
            }
        }
        for i in &self.interfaces {
            out.push_str(&i.render());
        }
        out
    }
}

impl InterfaceStats {
    /// The human form: a header line, one counter per line (with its rate),
    /// then the top sources and the bans.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = self.iface.clone();
        if let Some(ns) = &self.netns {
            let _ = write!(out, " (netns {ns})");
        }
        let _ = writeln!(out, "  [{}]", self.pin_dir);
        for counter in Counter::ALL {
            let name = counter.name();
            let _ = write!(out, "  {name:<18} {:>14}", self.counters[name]);
            if let Some(rate) = self.rates.get(name) {
                let _ = write!(out, " {rate:>12.1}/s");
            }
            out.push('\n');
        }
        if self.verified_sources > 0 {
            let _ = writeln!(
                out,
                "  verified sources   {:>14}  (a cookie handshake, an ACK of a known connection, or data sent to it)",
                self.verified_sources
            );
        }
        if !self.signatures.is_empty() {
            let _ = writeln!(out, "  attack signatures:");
            for r in &self.signatures {
                let _ = write!(
                    out,
                    "    sig {} ({} {}): {} hits",
                    r.id, r.origin, r.action, r.hits
                );
                if let Some(rate) = r.hits_per_sec {
                    let _ = write!(out, " ({rate:.1}/s)");
                }
                let _ = writeln!(out, ": {}", r.signature);
            }
        }
        let tables = [
            ("sources by drops", &self.top_sources),
            ("sources by new flows/s", &self.top_new_flow_sources),
            ("prefixes by drops", &self.top_prefixes),
            ("banned", &self.bans),
        ];
        for (title, rows) in tables {
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  top {title}:");
            for row in rows {
                let _ = write!(
                    out,
                    "    {:<24} new flows {:>10}  passed {:>10}  dropped {:>10}",
                    row.source, row.new_flows, row.passed, row.dropped
                );
                if let Some(r) = row.new_flows_per_sec {
                    let _ = write!(out, "  {r:>8.1}/s");
                }
                let _ = write!(out, "  seen {:.1}s ago", row.last_seen_secs_ago);
                if let Some(left) = row.banned_secs {
                    let _ = write!(out, "  BANNED {left:.0}s");
                }
                if let Some(left) = row.verified_secs {
                    let _ = write!(out, "  verified {left:.0}s");
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(Counter, u64)]) -> CounterBlock {
        let mut b = CounterBlock::ZERO;
        for (c, v) in pairs {
            b.slots[c.slot()] = *v;
        }
        b
    }

    fn sample(
        at_secs: u64,
        counters: &[(Counter, u64)],
        sources: Vec<(SourceKey, SourceState)>,
    ) -> Sample {
        Sample {
            at_ns: at_secs * NANOS_PER_SEC,
            interfaces: vec![InterfaceSample {
                iface: "eth0".into(),
                netns: Some("edge".into()),
                pin_dir: PathBuf::from("/sys/fs/bpf/guard/netns/edge/eth0"),
                counters: block(counters),
                sources,
                prefixes: Vec::new(),
                sigs: SigTable::EMPTY,
            }],
        }
    }

    fn state(
        passed: u64,
        dropped: u64,
        last_seen_secs: u64,
        banned_until_secs: u64,
    ) -> SourceState {
        SourceState {
            passed,
            dropped,
            last_seen_ns: last_seen_secs * NANOS_PER_SEC,
            banned_until_ns: banned_until_secs * NANOS_PER_SEC,
            ..SourceState::ZERO
        }
    }

    #[test]
    fn summary_has_rate_classes_and_attributes() {
        // 150 packets: the classes' sum.
        let prev = block(&[(Counter::TcpOther, 100)]);
        let now = block(&[
            (Counter::TcpOther, 143),
            (Counter::TcpSyn, 7),
            (Counter::Vlan, 2),
        ]);
        let line = summary_line("veth0", &now, &prev, Duration::from_secs(5));
        assert!(line.starts_with("veth0: 150 pkts (10.0/s) |"), "{line}");
        assert!(line.contains(" tcp_syn 7 "), "{line}");
        assert!(line.ends_with("| fragments 0 vlan 2 ipv6 0"), "{line}");
    }

    #[test]
    fn rates_and_tops_come_from_two_samples() {
        let (a, b, c) = (
            SourceKey::v4([198, 18, 0, 1], 32),
            SourceKey::v4([198, 18, 0, 2], 32),
            SourceKey::v4([198, 18, 0, 3], 32),
        );
        let before = sample(
            10,
            &[(Counter::TcpOther, 100), (Counter::DropSourceLimit, 10)],
            vec![(a, state(5, 0, 9, 0)), (b, state(5, 100, 9, 0))],
        );
        let now = sample(
            12,
            &[(Counter::TcpOther, 300), (Counter::DropSourceLimit, 50)],
            vec![
                (a, state(45, 0, 12, 0)),
                (b, state(5, 120, 11, 40)),
                (c, state(1, 0, 12, 0)),
            ],
        );
        let snap = snapshot(Some(&before), &now, 2, None);
        let i = &snap.interfaces[0];
        assert!((snap.interval_secs - 2.0).abs() < 1e-9);
        assert!((i.rates["packets"] - 100.0).abs() < 1e-9);
        assert!((i.rates["drop_source_limit"] - 20.0).abs() < 1e-9);
        assert_eq!(
            i.top_sources
                .iter()
                .map(|r| r.source.as_str())
                .collect::<Vec<_>>(),
            ["198.18.0.2", "198.18.0.1"]
        );
        assert_eq!(i.top_new_flow_sources[0].source, "198.18.0.1");
        assert_eq!(i.top_new_flow_sources[0].new_flows_per_sec, Some(20.0));
        assert_eq!(i.bans.len(), 1);
        assert_eq!(i.bans[0].banned_secs, Some(28.0));
        let text = snap.render(0.0);
        assert!(
            text.contains("  packets                       300        100.0/s\n"),
            "{text}"
        );
        assert!(text.contains("BANNED 28s"), "{text}");
    }

    /// A verified source's row says how long it stays verified, and the
    /// interface counts it; a source whose verification ran out does not.
    #[test]
    fn verified_sources_are_shown_with_the_time_they_have_left() {
        let (a, b) = (
            SourceKey::v4([198, 18, 0, 1], 32),
            SourceKey::v6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0],
                64,
            ),
        );
        let verified = |until_secs: u64| SourceState {
            verified_until_ns: until_secs * NANOS_PER_SEC,
            ..state(3, 0, 11, 0)
        };
        let now = sample(12, &[], vec![(a, verified(300)), (b, verified(12))]);
        let snap = snapshot(None, &now, 10, None);
        let i = &snap.interfaces[0];
        assert_eq!(i.verified_sources, 1);
        let row = |addr: &str| i.top_sources.iter().find(|r| r.source == addr).unwrap();
        assert_eq!(row("198.18.0.1").verified_secs, Some(288.0));
        assert_eq!(row("2001:db8:0:7::/64").verified_secs, None);
        let text = snap.render(0.0);
        assert!(
            text.contains(
                "    198.18.0.1               new flows          3  passed          3  dropped          0  seen 1.0s ago  verified 288s\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  verified sources                1  ("),
            "{text}"
        );
    }

    #[test]
    fn one_sample_has_no_rates() {
        let now = sample(5, &[(Counter::Udp, 3)], Vec::new());
        let snap = snapshot(None, &now, 10, None);
        assert!(snap.interfaces[0].rates.is_empty());
        assert!(snap.interfaces[0].top_new_flow_sources.is_empty());
        let text = snap.render(0.0);
        assert!(
            text.starts_with("eth0 (netns edge)  [/sys/fs/bpf/guard/netns/edge/eth0]\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  udp                             3\n"),
            "{text}"
        );
    }
}
