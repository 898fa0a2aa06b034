//! The conntrack controller's pressure level: what it means for the
//! table's fill, the timeouts and the per-source limits. It crosses
//! processes (the status file, `guard stats`, metrics) as this type, in
//! its lowercase serde form, never as a string matched on its spelling.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::conntrack::{Timeout, Timeouts};

/// Pressure on the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Normal,
    Elevated,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Self; 4] = [Self::Normal, Self::Elevated, Self::High, Self::Critical];

    /// 0 normal, 1 elevated, 2 high, 3 critical: for a gauge.
    #[must_use]
    pub const fn rank(self) -> u8 {
        self as u8
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Elevated => "elevated",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Fill (percent) at which the level starts.
    pub(super) const fn enter_fill(self) -> f64 {
        match self {
            Self::Normal => 0.0,
            Self::Elevated => 50.0,
            Self::High => 70.0,
            Self::Critical => 85.0,
        }
    }

    /// Projected fill (percent, five seconds ahead at the current growth)
    /// at which the level starts.
    pub(super) const fn enter_projected(self) -> f64 {
        match self {
            Self::Normal => 0.0,
            Self::Elevated => 70.0,
            Self::High => 90.0,
            Self::Critical => 100.0,
        }
    }

    pub(super) const fn below(self) -> Self {
        match self {
            Self::Normal | Self::Elevated => Self::Normal,
            Self::High => Self::Elevated,
            Self::Critical => Self::High,
        }
    }

    /// Per-source rates at this level, in percent of the configured ones
    /// (`calm` is the normal level's, see
    /// [`CALM_SCALE`](super::policy::CALM_SCALE)).
    #[must_use]
    pub const fn source_scale(self, calm: u64) -> u64 {
        match self {
            Self::Normal => calm,
            Self::Elevated => 100,
            Self::High => 50,
            Self::Critical => 25,
        }
    }

    /// The graded timeout for `t` at this level (before the original caps it).
    const fn timeout(self, t: Timeout) -> u32 {
        use Timeout as T;
        let [elevated, high, critical] = match t {
            // Another protocol's unreplied datagram (a new flow guard admits
            // under the budget, generic) lives no longer than a half-open
            // TCP one.
            T::TcpSynSent | T::TcpFinWait | T::TcpTimeWait | T::Generic => [60, 30, 10],
            T::TcpSynRecv => [30, 15, 5],
            T::TcpEstablished => [86_400, 3_600, 600],
            T::TcpCloseWait => [30, 15, 10],
            T::TcpLastAck | T::Udp => [20, 10, 5],
            T::TcpUnacknowledged => [120, 60, 30],
            T::UdpStream => [60, 30, 15],
            T::Icmp | T::Icmpv6 => [15, 10, 5],
        };
        match self {
            Self::Normal => u32::MAX,
            Self::Elevated => elevated,
            Self::High => high,
            Self::Critical => critical,
        }
    }

    /// The timeouts at this level: the graded values, never longer than
    /// `original`.
    #[must_use]
    pub fn timeouts(self, original: &Timeouts) -> Timeouts {
        let mut t = *original;
        for kind in Timeout::ALL {
            t.set(kind, original.get(kind).min(self.timeout(kind)));
        }
        t
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
