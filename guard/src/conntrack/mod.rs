//! Conntrack: the kernel's connection-tracking table, as typed values, and
//! the I/O that reads and changes it.
//!
//! Types here are plain data (the policy works on them without a kernel);
//! [`knobs`] reads and writes the sysctls, [`ctnetlink`] reads the per-CPU
//! statistics and deletes entries.
//!
//! Kernel facts this is built around (nf_conntrack_core.c,
//! nf_conntrack_standalone.c, Linux 6.x):
//! - `nf_conntrack_max` and `nf_conntrack_buckets` are global and read-only
//!   outside the initial network namespace; the timeouts are per namespace.
//! - Since 5.15 `nf_conntrack_max` defaults to the bucket count. Writing
//!   `nf_conntrack_buckets` takes every bucket lock and rehashes the whole
//!   table, so guard sizes it only at start-up, never under pressure.
//! - A lowered timeout does not shorten entries that exist; each takes the
//!   new value on its next packet. A spoofed SYN's entry never sees another.
//! - When the table is full, early_drop evicts only non-ASSURED entries from
//!   a few buckets before giving up with "table full, dropping packet".

pub mod ctnetlink;
pub mod knobs;

use std::fmt;

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
    /// a one-packet UDP flow or an unanswered echo costs the table.
    #[must_use]
    pub fn new_flow_lifetime(&self) -> u32 {
        [
            Timeout::TcpSynSent,
            Timeout::TcpSynRecv,
            Timeout::Udp,
            Timeout::Icmp,
            Timeout::Icmpv6,
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
    #[expect(
        clippy::cast_precision_loss,
        reason = "a percentage for people and thresholds"
    )]
    let p = part as f64 * 100.0 / whole as f64;
    p
}
