//! The status files in the runtime directory: the run loop's
//! [`RunStatus`] (`guard.json`, at start and at every SIGHUP) and the
//! controller's [`Status`] (`status.json`, after every tick) and the
//! fleet's [`FleetView`] (`fleet.json`, every second with `--fleet`),
//! each written atomically (readers never see half of one) and removed
//! when guard stops (and, after a kill, when the next one starts). A
//! failure to write is logged, not fatal: they are for people and tools
//! watching; guard goes on protecting.

use std::{fs, path::Path};

use serde::{Serialize, de::DeserializeOwned};

use super::atomic;
use crate::model::{
    fleet::FleetView,
    paths::{FLEET_FILE, RUN_FILE, STATUS_FILE},
    status::{RunStatus, Status},
};

fn publish_file(dir: &Path, name: &str, value: &impl Serialize) {
    let written = serde_json::to_vec(value)
        .map_err(std::io::Error::other)
        .and_then(|json| atomic::write(&dir.join(name), &json, 0o644));
    if let Err(e) = written {
        tracing::debug!("publishing {}: {e}", dir.join(name).display());
    }
}

fn read_file<T: DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let text = fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the controller's `status` into the runtime directory `dir`.
pub fn publish(dir: &Path, status: &Status) {
    publish_file(dir, STATUS_FILE, status);
}

/// The controller's status of a running guard, if it publishes one.
#[must_use]
pub fn read(dir: &Path) -> Option<Status> {
    read_file(dir, STATUS_FILE)
}

pub fn remove(dir: &Path) {
    let _ = fs::remove_file(dir.join(STATUS_FILE));
}

/// Writes what the running guard is.
pub fn publish_run(dir: &Path, run: &RunStatus) {
    publish_file(dir, RUN_FILE, run);
}

/// What the running guard is, if one runs.
#[must_use]
pub fn read_run(dir: &Path) -> Option<RunStatus> {
    read_file(dir, RUN_FILE)
}

pub fn remove_run(dir: &Path) {
    let _ = fs::remove_file(dir.join(RUN_FILE));
}

/// Writes what the running guard knows of its fleet.
pub fn publish_fleet(dir: &Path, view: &FleetView) {
    publish_file(dir, FLEET_FILE, view);
}

#[must_use]
pub fn read_fleet(dir: &Path) -> Option<FleetView> {
    read_file(dir, FLEET_FILE)
}

pub fn remove_fleet(dir: &Path) {
    let _ = fs::remove_file(dir.join(FLEET_FILE));
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::{
        config::Rate,
        model::{conntrack::Stats, level::Level, ports::OpenRanges, status::LoggedDecision},
    };

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
            level: Level::Normal,
            dry_run: false,
            global: Some(Rate { rate: 5, burst: 9 }),
            source: [Rate {
                rate: 50,
                burst: 100,
            }; 4],
            cookie_ports: Vec::new(),
            open_ports: OpenRanges::default(),
            nft_reinstalled: 0,
            stats: Stats::default(),
            recent: VecDeque::from([LoggedDecision {
                at: 1.0,
                line: "level normal".into(),
            }]),
        };
        publish(&dir, &status);
        assert_eq!(read(&dir), Some(status));
        remove(&dir);
        assert_eq!(read(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
