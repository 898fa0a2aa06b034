//! Global kernel knobs a test changes: saved first, restored on every exit
//! path (Drop runs when a test panics) or, after a kill, by the next run,
//! and checked restored.

use std::fs;

/// `/proc/sys` path of a dotted sysctl name.
fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Reads a sysctl of the initial namespace.
#[must_use]
pub fn sysctl(key: &str) -> u64 {
    let text = fs::read_to_string(path(key)).unwrap_or_else(|e| panic!("reading {key}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{key} holds {text:?}: {e}"))
}

/// Writes a sysctl of the initial namespace.
pub fn set_sysctl(key: &str, value: u64) {
    fs::write(path(key), value.to_string())
        .unwrap_or_else(|e| panic!("writing {value} to {key}: {e}"));
}

/// Where [`Saved`] keeps each original value until it is put back, so a run
/// killed outright (SIGKILL, a lost VM session) is undone by the next one.
/// Under /run: a reboot clears it and the sysctls alike.
const RECORD_DIR: &str = "/run/guard-tests/saved-sysctls";

fn record(key: &str) -> std::path::PathBuf {
    std::path::Path::new(RECORD_DIR).join(key)
}

/// Saved global sysctls, put back when dropped.
pub struct Saved {
    values: Vec<(String, u64)>,
}

impl Saved {
    /// Saves `keys`. A record left by a run that never got to restore wins
    /// over the current value: that value is the dead run's, not the host's.
    #[must_use]
    pub fn new(keys: &[&str]) -> Self {
        fs::create_dir_all(RECORD_DIR).unwrap_or_else(|e| panic!("creating {RECORD_DIR}: {e}"));
        let values = keys
            .iter()
            .map(|k| {
                let file = record(k);
                let left = fs::read_to_string(&file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                let original = if let Some(value) = left {
                    eprintln!("{k}: restoring {value}, left changed by a run that was killed");
                    set_sysctl(k, value);
                    value
                } else {
                    let value = sysctl(k);
                    fs::write(&file, value.to_string())
                        .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
                    value
                };
                ((*k).to_owned(), original)
            })
            .collect();
        Self { values }
    }

    /// The saved value of `key`.
    #[must_use]
    pub fn original(&self, key: &str) -> u64 {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| panic!("{key} was not saved"), |(_, v)| *v)
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (key, value) in &self.values {
            if sysctl(key) != *value {
                set_sysctl(key, *value);
            }
            // Only once the value is back: a failed write keeps the record.
            let _ = fs::remove_file(record(key));
        }
    }
}

/// The kept lists file `guard allow|deny` writes (guard's
/// `model::paths::LISTS_FILE`).
pub const LISTS_FILE: &str = guard::model::paths::LISTS_FILE;

/// The runtime lists file (`--no-save`).
pub const RUNTIME_LISTS_FILE: &str = guard::model::paths::RUNTIME_LISTS_FILE;

/// The lists files are host state: moved aside for a test and put back
/// when dropped, whatever happens.
pub struct KeptLists([Option<Vec<u8>>; 2]);

impl KeptLists {
    #[must_use]
    pub fn save() -> Self {
        Self([LISTS_FILE, RUNTIME_LISTS_FILE].map(|path| {
            let old = fs::read(path).ok();
            let _ = fs::remove_file(path);
            old
        }))
    }
}

impl Drop for KeptLists {
    fn drop(&mut self) {
        for (path, old) in [LISTS_FILE, RUNTIME_LISTS_FILE].iter().zip(&self.0) {
            match old {
                Some(bytes) => {
                    let _ = fs::write(path, bytes);
                }
                None => {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}
