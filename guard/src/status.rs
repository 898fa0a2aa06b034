//! The controller's status, published for other processes (`guard stats`,
//! `guard stats --watch`) in /run/guard/status.json after every tick, and
//! removed when guard stops.

use std::{
    collections::VecDeque,
    fs,
    io::Write as _,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{config::Rate, conntrack::Stats};

/// The status file's name in the runtime directory.
pub const STATUS_FILE: &str = "status.json";

/// Decision lines kept in the status.
pub const RECENT: usize = 8;

/// One logged decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
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
    pub level: String,
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
    pub recent: VecDeque<Decision>,
}

/// Seconds since the Unix epoch, now.
#[must_use]
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Status {
    /// Writes the status atomically; a failure is logged, not fatal: the
    /// status is for people watching, the controller goes on.
    pub fn publish(&self, dir: &Path) {
        let tmp = dir.join(format!(".{STATUS_FILE}.{}", std::process::id()));
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|json| fs::File::create(&tmp)?.write_all(&json))
            .and_then(|()| fs::rename(&tmp, dir.join(STATUS_FILE)));
        if let Err(e) = written {
            tracing::debug!("publishing the controller status: {e}");
        }
    }

    /// The status of a running guard, if it publishes one.
    #[must_use]
    pub fn read(dir: &Path) -> Option<Self> {
        let text = fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn remove(dir: &Path) {
        let _ = fs::remove_file(dir.join(STATUS_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_status_reads_back() {
        let dir = std::env::temp_dir().join(format!("guard-status-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let status = Status {
            pid: 7,
            updated: 1.5,
            netns: None,
            count: 10,
            max: 100,
            fill: 10.0,
            target: 80.0,
            level: "normal".into(),
            dry_run: false,
            global: Some(Rate { rate: 5, burst: 9 }),
            source: [Rate {
                rate: 50,
                burst: 100,
            }; 3],
            cookie_ports: Vec::new(),
            stats: Stats::default(),
            recent: VecDeque::from([Decision {
                at: 1.0,
                line: "level normal".into(),
            }]),
        };
        status.publish(&dir);
        assert_eq!(Status::read(&dir), Some(status));
        Status::remove(&dir);
        assert_eq!(Status::read(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
