//! Conntrack: the kernel's connection-tracking table as typed values, and
//! the names of its sysctls. Plain data: the policy works on it without a
//! kernel; `host::conntrack` reads and changes the real one.
//! (The kernel facts guard is built around are in `host::conntrack`.)

use std::{collections::BTreeMap, fmt};

use super::as_f64;

pub const MAX: &str = "net.netfilter.nf_conntrack_max";
/// 1: a lone ACK of an unknown connection creates an entry ("picked up
/// mid-stream"); 0: it is invalid. Per namespace.
pub const TCP_LOOSE: &str = "net.netfilter.nf_conntrack_tcp_loose";
pub const BUCKETS: &str = "net.netfilter.nf_conntrack_buckets";
pub const COUNT: &str = "net.netfilter.nf_conntrack_count";

/// The sysctl name of a timeout.
#[must_use]
pub fn timeout_key(t: Timeout) -> String {
    format!("net.netfilter.nf_conntrack_{}", t.name())
}

/// A conntrack timeout sysctl (`net.netfilter.nf_conntrack_<name>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timeout {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpUnacknowledged,
    Udp,
    UdpStream,
    Icmp,
    Icmpv6,
    Generic,
}

pub const TIMEOUTS: usize = 13;

impl Timeout {
    pub const ALL: [Self; TIMEOUTS] = [
        Self::TcpSynSent,
        Self::TcpSynRecv,
        Self::TcpEstablished,
        Self::TcpFinWait,
        Self::TcpCloseWait,
        Self::TcpLastAck,
        Self::TcpTimeWait,
        Self::TcpUnacknowledged,
        Self::Udp,
        Self::UdpStream,
        Self::Icmp,
        Self::Icmpv6,
        Self::Generic,
    ];

    /// The part after `nf_conntrack_` in the sysctl name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TcpSynSent => "tcp_timeout_syn_sent",
            Self::TcpSynRecv => "tcp_timeout_syn_recv",
            Self::TcpEstablished => "tcp_timeout_established",
            Self::TcpFinWait => "tcp_timeout_fin_wait",
            Self::TcpCloseWait => "tcp_timeout_close_wait",
            Self::TcpLastAck => "tcp_timeout_last_ack",
            Self::TcpTimeWait => "tcp_timeout_time_wait",
            Self::TcpUnacknowledged => "tcp_timeout_unacknowledged",
            Self::Udp => "udp_timeout",
            Self::UdpStream => "udp_timeout_stream",
            Self::Icmp => "icmp_timeout",
            Self::Icmpv6 => "icmpv6_timeout",
            Self::Generic => "generic_timeout",
        }
    }

    /// A short name for log lines.
    #[must_use]
    pub const fn short(self) -> &'static str {
        match self {
            Self::TcpSynSent => "syn_sent",
            Self::TcpSynRecv => "syn_recv",
            Self::TcpEstablished => "established",
            Self::TcpFinWait => "fin_wait",
            Self::TcpCloseWait => "close_wait",
            Self::TcpLastAck => "last_ack",
            Self::TcpTimeWait => "time_wait",
            Self::TcpUnacknowledged => "unacknowledged",
            Self::Udp => "udp",
            Self::UdpStream => "udp_stream",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
            Self::Generic => "generic",
        }
    }

    /// The kernel's default, in seconds.
    #[must_use]
    pub const fn default_secs(self) -> u32 {
        match self {
            Self::TcpSynSent | Self::TcpFinWait | Self::TcpTimeWait | Self::UdpStream => 120,
            Self::TcpSynRecv | Self::TcpCloseWait => 60,
            Self::TcpEstablished => 432_000,
            Self::TcpLastAck | Self::Udp | Self::Icmp | Self::Icmpv6 => 30,
            Self::TcpUnacknowledged => 300,
            Self::Generic => 600,
        }
    }

    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Every timeout, in seconds, indexed by [`Timeout::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts(pub [u32; TIMEOUTS]);

impl Timeouts {
    /// The kernel's defaults.
    #[must_use]
    pub fn defaults() -> Self {
        Self(Timeout::ALL.map(Timeout::default_secs))
    }

    #[must_use]
    pub const fn get(&self, t: Timeout) -> u32 {
        self.0[t.index()]
    }

    pub fn set(&mut self, t: Timeout, secs: u32) {
        self.0[t.index()] = secs;
    }

    /// The longest an unreplied new flow's entry lives: what a spoofed SYN,
    /// a one-packet UDP flow, an unanswered ICMP query or another
    /// protocol's datagram costs the table.
    #[must_use]
    pub fn new_flow_lifetime(&self) -> u32 {
        [
            Timeout::TcpSynSent,
            Timeout::TcpSynRecv,
            Timeout::Udp,
            Timeout::Icmp,
            Timeout::Icmpv6,
            Timeout::Generic,
        ]
        .iter()
        .map(|t| self.get(*t))
        .max()
        .unwrap_or(0)
    }

    /// `name old->new` for every timeout that differs from `other`.
    #[must_use]
    pub fn diff(&self, other: &Self) -> Vec<String> {
        Timeout::ALL
            .iter()
            .filter(|t| self.get(**t) != other.get(**t))
            .map(|t| format!("{} {}->{}", t.short(), self.get(*t), other.get(*t)))
            .collect()
    }
}

/// The kernel's conntrack statistics, summed over CPUs (monotonic counters,
/// per network namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    /// "table full, dropping packet".
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    pub search_restart: u64,
    pub clash_resolve: u64,
    /// A hash chain grew too long (an attack on the hash, or too few buckets).
    pub chaintoolong: u64,
}

impl Stats {
    /// Counters that mean the table is failing someone: drops, early drops,
    /// failed inserts, over-long chains.
    #[must_use]
    pub const fn distress(&self) -> u64 {
        self.drop
            .wrapping_add(self.early_drop)
            .wrapping_add(self.insert_failed)
            .wrapping_add(self.chaintoolong)
    }

    /// Field by field `self - earlier` (counters only grow; a reset reads 0).
    #[must_use]
    pub const fn since(&self, earlier: &Self) -> Self {
        Self {
            found: self.found.saturating_sub(earlier.found),
            invalid: self.invalid.saturating_sub(earlier.invalid),
            insert: self.insert.saturating_sub(earlier.insert),
            insert_failed: self.insert_failed.saturating_sub(earlier.insert_failed),
            drop: self.drop.saturating_sub(earlier.drop),
            early_drop: self.early_drop.saturating_sub(earlier.early_drop),
            error: self.error.saturating_sub(earlier.error),
            search_restart: self.search_restart.saturating_sub(earlier.search_restart),
            clash_resolve: self.clash_resolve.saturating_sub(earlier.clash_resolve),
            chaintoolong: self.chaintoolong.saturating_sub(earlier.chaintoolong),
        }
    }
}

/// One reading of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub count: u64,
    pub max: u64,
    pub buckets: u64,
    pub timeouts: Timeouts,
    pub stats: Stats,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count {} / max {} ({:.0}%), buckets {}",
            self.count,
            self.max,
            percent(self.count, self.max),
            self.buckets
        )
    }
}

/// `part / whole` in percent (0 for an empty whole).
#[must_use]
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    as_f64(part) * 100.0 / as_f64(whole)
}

/// The kernel's conntrack statistics, from `/proc/net/stat/nf_conntrack`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Lines read, one per possible CPU.
    pub cpus: usize,
    /// Every column by its header name, summed over CPUs (`entries`, the
    /// table's count printed on every line, is taken once).
    pub counters: BTreeMap<String, u64>,
}

impl CpuStats {
    #[must_use]
    pub fn get(&self, column: &str) -> Option<u64> {
        self.counters.get(column).copied()
    }
}

/// Parses `/proc/net/stat/nf_conntrack`: a header line naming the columns,
/// then one line of hex values per CPU. Columns are found by name, so ones
/// this version does not know are kept without breaking the rest.
pub fn parse_stats(text: &str) -> Result<CpuStats, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split_whitespace()
        .collect();
    let mut stats = CpuStats::default();
    for (n, line) in lines.enumerate() {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(format!(
                "CPU line {} has {} columns, the header names {}",
                n + 1,
                values.len(),
                header.len()
            ));
        }
        for (name, value) in header.iter().zip(values) {
            let value = u64::from_str_radix(value, 16)
                .map_err(|_| format!("CPU line {}: `{value}` is not hex", n + 1))?;
            let slot = stats.counters.entry((*name).to_owned()).or_insert(0);
            *slot = if *name == "entries" {
                (*slot).max(value)
            } else {
                *slot + value
            };
        }
        stats.cpus += 1;
    }
    Ok(stats)
}

/// A 6.18 kernel's statistics file, two CPUs.
#[cfg(test)]
pub(crate) const STAT_6_18: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000002a  00000001 00000010 00000000 00000002 00000000 00000000 00000000 00000100 00000001 0000000a 00000003 00000000  00000000 00000000 00000000 00000001
0000002a  00000002 00000020 00000000 00000000 00000000 00000000 00000004 00000200 00000000 000000f0 00000000 00000000  00000000 00000000 00000000 00000000
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_summed_over_cpus_by_header_name() {
        let s = parse_stats(STAT_6_18).unwrap();
        assert_eq!(s.cpus, 2);
        assert_eq!(s.get("drop"), Some(0xfa));
        assert_eq!(s.get("found"), Some(0x30));
        assert_eq!(s.get("insert"), Some(0x300));
        assert_eq!(s.get("early_drop"), Some(3));
        assert_eq!(s.get("chainlength"), Some(4));
        // The count is on every line: taken once, not summed.
        assert_eq!(s.get("entries"), Some(42));
        assert_eq!(s.get("chaintoolong"), None);
    }

    #[test]
    fn unknown_columns_are_kept_and_do_not_shift_known_ones() {
        let s = parse_stats("future drop entries\n00000009 00000001 00000005\nff 2 5\n").unwrap();
        assert_eq!(s.get("drop"), Some(3));
        assert_eq!(s.get("future"), Some(0x108));
        assert_eq!(s.get("entries"), Some(5));
    }

    #[test]
    fn malformed_stats_say_where() {
        assert_eq!(parse_stats(""), Err("empty file".to_owned()));
        assert_eq!(
            parse_stats("drop early_drop\n1\n"),
            Err("CPU line 1 has 1 columns, the header names 2".to_owned())
        );
        assert_eq!(
            parse_stats("drop\n1\nzz\n"),
            Err("CPU line 2: `zz` is not hex".to_owned())
        );
        assert_eq!(parse_stats("drop\n").unwrap().cpus, 0);
    }
}
