//! Reading the XDP counters, from a loaded map or from the pins of a
//! running guard, and presenting them.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData, PerCpuArray};
use guard_common::{
    Counter, CounterBlock, SourceKey, SourceState,
    bucket::NANOS_PER_SEC,
    maps::{PREFIXES, SOURCES},
};
use serde::Serialize;

use crate::{cli::StatsArgs, maps, pins::Layout};

/// `guard stats`: the counters of every interface a running guard pinned.
pub fn command(args: &StatsArgs) -> Result<()> {
    let layout = Layout::default();
    let mut found = Vec::new();
    for (netns, iface, dir) in layout.list() {
        if args
            .netns
            .as_ref()
            .is_some_and(|want| netns.as_ref() != Some(want))
            || args.iface.as_ref().is_some_and(|want| *want != iface)
        {
            continue;
        }
        let block = read_pinned(&dir)?;
        let mut stats = InterfaceStats::new(iface, netns, &dir, &block);
        let now = monotonic_ns();
        stats.top_sources = top(&read_pinned_sources(&dir, SOURCES)?, args.top, now);
        stats.top_prefixes = top(&read_pinned_sources(&dir, PREFIXES)?, args.top, now);
        found.push(stats);
    }
    if found.is_empty() {
        bail!(
            "no guard is running{}: nothing is pinned under {} (start one with `guard run`)",
            filter_suffix(args),
            layout.root().display()
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "interfaces": found }))?
        );
    } else {
        for stats in &found {
            print!("{}", stats.render());
        }
    }
    Ok(())
}

fn filter_suffix(args: &StatsArgs) -> String {
    let mut s = String::new();
    if let Some(iface) = &args.iface {
        let _ = write!(s, " on {iface}");
    }
    if let Some(ns) = &args.netns {
        let _ = write!(s, " in netns {ns}");
    }
    s
}

/// Reads a pinned per-source or per-prefix map.
fn read_pinned_sources(dir: &Path, name: &str) -> Result<Vec<(SourceKey, SourceState)>> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    maps::read_sources(&Map::LruHashMap(data))
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock of the XDP program's times.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * NANOS_PER_SEC + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// One source or prefix in `guard stats`.
#[derive(Debug, Serialize, PartialEq)]
pub struct SourceRow {
    pub source: String,
    pub new_flows: u64,
    pub passed: u64,
    pub dropped: u64,
    pub last_seen_secs_ago: f64,
    /// Seconds left of a ban, if banned.
    pub banned_secs: Option<f64>,
}

/// The `n` entries with the most drops (then the most new flows).
#[must_use]
pub fn top(entries: &[(SourceKey, SourceState)], n: usize, now_ns: u64) -> Vec<SourceRow> {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|(ka, a), (kb, b)| {
        (b.dropped, b.new_flows(), ka).cmp(&(a.dropped, a.new_flows(), kb))
    });
    #[expect(clippy::cast_precision_loss, reason = "seconds for people to read")]
    let secs = |ns: u64| ns as f64 / NANOS_PER_SEC as f64;
    sorted
        .into_iter()
        .take(n)
        .map(|(key, st)| SourceRow {
            source: key.to_string(),
            new_flows: st.new_flows(),
            passed: st.passed,
            dropped: st.dropped,
            last_seen_secs_ago: secs(now_ns.saturating_sub(st.last_seen_ns)),
            banned_secs: (st.banned_until_ns > now_ns).then(|| secs(st.banned_until_ns - now_ns)),
        })
        .collect()
}

/// Sums the per-CPU counter blocks of a `GUARD_COUNTERS` map.
pub fn sum_counters(map: &Map) -> Result<CounterBlock> {
    let array = PerCpuArray::<_, CounterBlock>::try_from(map)
        .context("GUARD_COUNTERS is not a per-CPU array of counter blocks")?;
    let per_cpu = array.get(&0, 0).context("reading GUARD_COUNTERS")?;
    let mut total = CounterBlock::ZERO;
    for block in per_cpu.iter() {
        total.accumulate(block);
    }
    Ok(total)
}

/// Reads the counters a running guard pinned in `dir`.
pub fn read_pinned(dir: &Path) -> Result<CounterBlock> {
    let path = dir.join(guard_common::maps::COUNTERS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    sum_counters(&Map::PerCpuArray(data))
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
    #[expect(
        clippy::cast_precision_loss,
        reason = "a rate for people to read; exact up to 2^53 packets"
    )]
    let rate = delta as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
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

/// One guarded interface in `guard stats` output.
#[derive(Debug, Serialize)]
pub struct InterfaceStats {
    pub iface: String,
    pub netns: Option<String>,
    pub pin_dir: String,
    /// Every counter by its stable name.
    pub counters: std::collections::BTreeMap<&'static str, u64>,
    /// Sources with the most drops.
    pub top_sources: Vec<SourceRow>,
    /// Prefixes with the most drops.
    pub top_prefixes: Vec<SourceRow>,
}

impl InterfaceStats {
    #[must_use]
    pub fn new(iface: String, netns: Option<String>, pin_dir: &Path, block: &CounterBlock) -> Self {
        Self {
            iface,
            netns,
            pin_dir: pin_dir.display().to_string(),
            counters: Counter::ALL
                .iter()
                .map(|c| (c.name(), block.get(*c)))
                .collect(),
            top_sources: Vec::new(),
            top_prefixes: Vec::new(),
        }
    }

    /// The human form: a header line, then one counter per line.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = self.iface.clone();
        if let Some(ns) = &self.netns {
            let _ = write!(out, " (netns {ns})");
        }
        let _ = writeln!(out, "  [{}]", self.pin_dir);
        for counter in Counter::ALL {
            let _ = writeln!(
                out,
                "  {:<18} {:>14}",
                counter.name(),
                self.counters[counter.name()]
            );
        }
        for (title, rows) in [
            ("sources", &self.top_sources),
            ("prefixes", &self.top_prefixes),
        ] {
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  top {title} by drops:");
            for row in rows {
                let _ = write!(
                    out,
                    "    {:<24} new {:>10}  passed {:>10}  dropped {:>10}  seen {:.1}s ago",
                    row.source, row.new_flows, row.passed, row.dropped, row.last_seen_secs_ago
                );
                if let Some(left) = row.banned_secs {
                    let _ = write!(out, "  BANNED {left:.0}s");
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

    #[test]
    fn summary_has_rate_classes_and_attributes() {
        let prev = block(&[(Counter::Packets, 100)]);
        let now = block(&[
            (Counter::Packets, 150),
            (Counter::TcpSyn, 7),
            (Counter::Vlan, 2),
        ]);
        let line = summary_line("veth0", &now, &prev, Duration::from_secs(5));
        assert!(line.starts_with("veth0: 150 pkts (10.0/s) |"), "{line}");
        assert!(line.contains(" tcp_syn 7 "), "{line}");
        assert!(line.ends_with("| fragments 0 vlan 2 ipv6 0"), "{line}");
    }

    #[test]
    fn render_lists_every_counter() {
        let stats = InterfaceStats::new(
            "eth0".into(),
            Some("edge".into()),
            Path::new("/sys/fs/bpf/guard/netns/edge/eth0"),
            &block(&[(Counter::Udp, 3)]),
        );
        let text = stats.render();
        assert!(text.starts_with("eth0 (netns edge)  [/sys/fs/bpf/guard/netns/edge/eth0]\n"));
        assert_eq!(text.lines().count(), 1 + Counter::ALL.len());
        assert!(
            text.contains("\n  udp                             3\n"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod top_tests {
    use super::*;

    #[test]
    fn top_orders_by_drops_and_reports_bans() {
        let s = |dropped, passed, banned_until_ns| SourceState {
            dropped,
            passed,
            last_seen_ns: 9 * NANOS_PER_SEC,
            banned_until_ns,
            ..SourceState::ZERO
        };
        let entries = [
            (SourceKey::v4([198, 18, 0, 1], 32), s(5, 10, 0)),
            (
                SourceKey::v4([198, 18, 0, 2], 32),
                s(50, 60, 20 * NANOS_PER_SEC),
            ),
            (SourceKey::v4([198, 18, 0, 3], 32), s(5, 30, 0)),
        ];
        let rows = top(&entries, 2, 10 * NANOS_PER_SEC);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].source, "198.18.0.2");
        assert_eq!(rows[0].banned_secs, Some(10.0));
        assert_eq!(rows[1].source, "198.18.0.3");
        assert!((rows[1].last_seen_secs_ago - 1.0).abs() < 1e-9);
        assert_eq!(rows[1].banned_secs, None);
    }
}
