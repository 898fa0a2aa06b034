//! The controller's status: what it last saw and did, published for other
//! processes (`guard stats`, `--watch`, metrics) by `host::status_file`
//! after every tick.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{conntrack::Stats, level::Level};
use crate::config::Rate;

/// Decision lines kept in the status.
pub const RECENT: usize = 8;

/// One decision the controller logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedDecision {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub line: String,
}

/// What the controller last saw and did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// Seconds since the Unix epoch, at the last tick.
    pub updated: f64,
    pub netns: Option<String>,
    pub count: u64,
    pub max: u64,
    /// Percent.
    pub fill: f64,
    /// The fill the controller keeps below, percent.
    pub target: f64,
    pub level: Level,
    pub dry_run: bool,
    /// The XDP global budget applied (per interface), if any yet.
    pub global: Option<Rate>,
    /// Per-source limits applied, by class (syn, udp, icmp).
    pub source: [Rate; 3],
    /// SYN cookies are answering SYNs to these ports (empty: off).
    #[serde(default)]
    pub cookie_ports: Vec<u16>,
    /// The kernel's statistics, cumulative.
    pub stats: Stats,
    /// The last decisions, oldest first.
    pub recent: VecDeque<LoggedDecision>,
}
