//! What guard changed on the host, and putting it back.
//!
//! Before its first change the controller writes every original value to
//! the state file (mode 0600, atomically). A clean exit restores them and
//! removes the file; after a crash or SIGKILL, `guard restore` (or the next
//! `guard run`) does. The file lives in /run, which a reboot empties along
//! with every sysctl guard could have changed.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    atomic,
    conntrack::knobs::{KnobError, Knobs},
    netns::Scope,
    notrack, synproxy,
};
use crate::model::{
    conntrack::{COUNT, MAX},
    nft::{RUN_NOTRACK_TABLE, SYNPROXY_TABLE},
    paths::STATE_FILE,
};

#[derive(Debug, Error)]
pub enum RecordError {
    #[error(
        "the state file {path} is corrupt ({reason}); nothing was changed. Check the conntrack sysctls by hand, then remove it with `guard restore --discard`"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot {what} the state file {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Original values of everything guard may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The guard that wrote it.
    pub pid: u32,
    /// The namespace whose knobs are in `local` (None: the host's).
    pub netns: Option<String>,
    /// sysctl -> original value, for knobs of the initial namespace.
    pub global: BTreeMap<String, u64>,
    /// sysctl -> original value, for knobs of `netns`.
    pub local: BTreeMap<String, u64>,
    /// guard installed notrack rules in `netns`.
    #[serde(default)]
    pub notrack: bool,
    /// guard installed SYNPROXY rules (SYN cookies) in `netns`.
    #[serde(default)]
    pub synproxy: bool,
}

impl Record {
    /// Reads the record in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>, RecordError> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RecordError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RecordError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the record to `dir`, readable by root only, replacing any
    /// earlier one atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_string_pretty(self).map_err(|e| RecordError::Io {
            what: "encode",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        atomic::write(&path, json.as_bytes(), 0o600).map_err(|source| RecordError::Io {
            what: "write",
            path,
            source,
        })
    }

    /// Removes the record from `dir` (missing is fine), and what a write
    /// of it cut short by a kill left.
    pub fn remove(dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(STATE_FILE);
        atomic::remove_leftovers(&path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RecordError::Io {
                what: "remove",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// `key old -> original` for every value written back.
    pub restored: Vec<String>,
    /// Values that could not be put back exactly, and why.
    pub problems: Vec<String>,
}

impl RestoreReport {
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Puts every recorded value back, in the namespace the record names (a
/// guard that is gone). `nf_conntrack_max` never goes below the live
/// count plus a margin: that would drop new connections, the outage guard
/// exists to prevent; the report says so instead.
#[must_use]
pub fn restore(record: &Record) -> RestoreReport {
    match Scope::open(record.netns.as_deref()) {
        Ok(scope) => put_back(record, Some(&scope), RestoreReport::default()),
        // Not a problem: the namespace's timeouts and rules went with it,
        // and a record kept for it would never be put back.
        Err(e) => put_back(
            record,
            None,
            RestoreReport {
                restored: vec![format!(
                    "nothing in the namespace: {e}, and its timeouts and rules went with it"
                )],
                problems: Vec::new(),
            },
        ),
    }
}

/// As [`restore`], in `scope`: the namespace the running guard holds,
/// which a new namespace of the same name may have replaced by now.
#[must_use]
pub fn restore_in(record: &Record, scope: &Scope) -> RestoreReport {
    put_back(record, Some(scope), RestoreReport::default())
}

fn put_back(record: &Record, scope: Option<&Scope>, mut report: RestoreReport) -> RestoreReport {
    let host = Scope::Host;
    let host_knobs = Knobs::open(&host);
    let knobs = scope.map(Knobs::open);
    let mut put = |key: &str, original: u64, local: bool| {
        let knobs = if local {
            knobs.as_ref()
        } else {
            Some(&host_knobs)
        };
        let Some(Ok(knobs)) = knobs else {
            report
                .problems
                .push(format!("{key}: conntrack is not there to restore"));
            return;
        };
        let current = if local {
            knobs.local(key)
        } else {
            knobs.global(key)
        };
        let mut value = original;
        if key == MAX {
            let count = [knobs.global(COUNT), knobs.local(COUNT)]
                .into_iter()
                .filter_map(Result::ok)
                .max()
                .unwrap_or(0);
            let floor = count + (count / 10).max(1024);
            if original < count {
                value = floor;
                report.problems.push(format!(
                    "{key} left at {value}, not {original}: {count} entries are live; set it by hand once they expire"
                ));
            }
        }
        match current {
            Ok(now) if now == value => {}
            Ok(now) => {
                let written = if local {
                    knobs.set_local(key, value)
                } else {
                    knobs.set_global(key, value)
                };
                match written {
                    Ok(()) => report.restored.push(format!("{key} {now} -> {value}")),
                    Err(e) => report.problems.push(problem(&e)),
                }
            }
            Err(e) => report.problems.push(problem(&e)),
        }
    };
    for (key, original) in &record.global {
        put(key, *original, false);
    }
    if let Some(scope) = scope {
        for (key, original) in &record.local {
            put(key, *original, true);
        }
        if record.notrack {
            match notrack::remove(scope, RUN_NOTRACK_TABLE) {
                Ok(()) => report.restored.push(format!(
                    "notrack rules removed (table inet {RUN_NOTRACK_TABLE})"
                )),
                Err(e) => report.problems.push(format!("{e:#}")),
            }
        }
        if record.synproxy {
            match synproxy::remove(scope) {
                Ok(()) => report.restored.push(format!(
                    "SYNPROXY rules removed (table inet {SYNPROXY_TABLE})"
                )),
                Err(e) => report.problems.push(format!("{e:#}")),
            }
        }
    }
    report
}

fn problem(e: &KnobError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "guard-record-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_record_round_trips_and_is_private() {
        let dir = dir();
        let record = Record {
            pid: 42,
            netns: Some("edge".into()),
            global: BTreeMap::from([(MAX.into(), 262_144)]),
            local: BTreeMap::from([("net.netfilter.nf_conntrack_udp_timeout".into(), 30)]),
            notrack: true,
            synproxy: true,
        };
        record.save(&dir).unwrap();
        let mode = fs::metadata(dir.join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Record::load(&dir).unwrap(), Some(record));
        Record::remove(&dir).unwrap();
        assert_eq!(Record::load(&dir).unwrap(), None);
        Record::remove(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_record_is_an_error_that_says_what_to_do() {
        let dir = dir();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), "{\"pid\": 1, \"global\": ").unwrap();
        let err = Record::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("is corrupt") && err.contains("guard restore --discard"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
