//! What the lab records: one [`Second`] per second of every run, and the
//! [`Run`] that holds them. Plain data, serialised to JSON in the report
//! directory so a report can be rebuilt or re-plotted without re-running.

use serde::{Deserialize, Serialize};

/// One second of one run, read at its end. Counters marked cumulative are
/// totals since the run started; the others cover this second only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run started (the attack starts at
    /// [`Run::attack_start`]).
    pub t: f64,
    /// Entries in the victim's conntrack table.
    pub count: u64,
    /// `nf_conntrack_max` at that moment (a defence may change it).
    pub max: u64,
    /// The kernel's `drop` statistic, cumulative: new connections dropped
    /// because the table was full.
    pub drop: u64,
    /// `early_drop`, cumulative: entries evicted to make room.
    pub early_drop: u64,
    /// `insert_failed`, cumulative.
    pub insert_failed: u64,
    /// The TCP users' connections that completed (connect, echo) in this
    /// second.
    pub legit_ok: u32,
    /// The TCP users' connections that failed or timed out in this second.
    pub legit_failed: u32,
    /// Connect latencies of this second's successful legitimate
    /// connections, in milliseconds.
    pub legit_connect_ms: Vec<f64>,
    /// The DNS-like users' queries answered in this second.
    #[serde(default)]
    pub legit_udp_ok: u32,
    /// The DNS-like users' queries left unanswered in this second.
    #[serde(default)]
    pub legit_udp_failed: u32,
    /// Packets the attacker sent, cumulative (frames for generated floods,
    /// connection attempts for a connection flood).
    pub attack_sent: u64,
    /// guard's XDP counters, cumulative: packets passed and dropped (in
    /// monitor mode, would have dropped). `None` when guard is not running.
    pub xdp_passed: Option<u64>,
    pub xdp_dropped: Option<u64>,
    /// SYNs guard's XDP answered with a SYN cookie, cumulative.
    #[serde(default)]
    pub xdp_cookies: Option<u64>,
    /// Of `xdp_dropped`, the packets a signature matched, cumulative.
    #[serde(default)]
    pub xdp_sig_dropped: Option<u64>,
    /// Learned signatures installed at the reading; `None` without guard.
    #[serde(default)]
    pub sigs: Option<u32>,
    /// CPU seconds spent in softirq during this second, all CPUs: where the
    /// victim's receive path runs (it includes the attacker's own transmit
    /// softirq: one machine runs both).
    pub softirq_secs: f64,
    /// CPU seconds guard's process used in this second; `None` without
    /// guard.
    pub guard_cpu_secs: Option<f64>,
    /// guard's resident memory (VmRSS), KiB; `None` without guard.
    #[serde(default)]
    pub guard_rss_kib: Option<u64>,
    /// What guard's BPF maps take (the kernel's memlock of each map guard
    /// holds, once per map), KiB; `None` without guard.
    #[serde(default)]
    pub guard_maps_kib: Option<u64>,
}

impl Second {
    /// Fill of the table in percent.
    #[must_use]
    pub fn fill(&self) -> f64 {
        if self.max == 0 {
            0.0
        } else {
            count_f64(self.count) * 100.0 / count_f64(self.max)
        }
    }

    /// Share of this second's TCP users' connections that succeeded, in
    /// percent; `None` when none were attempted.
    #[must_use]
    pub fn legit_success(&self) -> Option<f64> {
        let total = self.legit_ok + self.legit_failed;
        (total > 0).then(|| f64::from(self.legit_ok) * 100.0 / f64::from(total))
    }
}

/// One scenario against one defence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub scenario: String,
    pub defence: String,
    /// When the attack started and stopped, in seconds since the run
    /// started.
    pub attack_start: f64,
    pub attack_end: f64,
    /// `nf_conntrack_max` the run started with.
    pub table: u64,
    pub samples: Vec<Second>,
    /// Anything the reader of the report should know about this run (a
    /// generator that fell short of its packet count, a defence that could
    /// not be set up).
    pub notes: Vec<String>,
    /// The conntrack controller's decisions guard logged, by minute of the
    /// clock (minutes with none left out); empty without guard.
    #[serde(default)]
    pub decisions_by_minute: Vec<u32>,
}

/// A count as a float, for percentages and plots (counts here stay far
/// below 2^53).
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "lab counts are far below 2^53")]
pub const fn count_f64(n: u64) -> f64 {
    n as f64
}
