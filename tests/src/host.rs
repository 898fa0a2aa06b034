//! Global kernel knobs a test changes: saved first, restored on every exit
//! path (Drop runs when a test panics), and checked restored.

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

/// Saved global sysctls, put back when dropped.
pub struct Saved {
    values: Vec<(String, u64)>,
}

impl Saved {
    #[must_use]
    pub fn new(keys: &[&str]) -> Self {
        Self {
            values: keys.iter().map(|k| ((*k).to_owned(), sysctl(k))).collect(),
        }
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
        }
    }
}
