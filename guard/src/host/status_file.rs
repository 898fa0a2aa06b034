//! The status file: the controller's [`Status`], written after every tick
//! (atomically: readers never see half of it) and removed when guard
//! stops. A failure to write is logged, not fatal: the status is for
//! people watching, the controller goes on.

use std::{fs, path::Path};

use super::atomic;
use crate::model::{paths::STATUS_FILE, status::Status};

/// Writes `status` into the runtime directory `dir`.
pub fn publish(dir: &Path, status: &Status) {
    let written = serde_json::to_vec(status)
        .map_err(std::io::Error::other)
        .and_then(|json| atomic::write(&dir.join(STATUS_FILE), &json, 0o644));
    if let Err(e) = written {
        tracing::debug!("publishing the controller status: {e}");
    }
}

/// The status of a running guard, if it publishes one.
#[must_use]
pub fn read(dir: &Path) -> Option<Status> {
    let text = fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn remove(dir: &Path) {
    let _ = fs::remove_file(dir.join(STATUS_FILE));
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::{
        config::Rate,
        model::{conntrack::Stats, level::Level, status::LoggedDecision},
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
            }; 3],
            cookie_ports: Vec::new(),
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
