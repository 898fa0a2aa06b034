//! The kept lists: allow and deny entries that `guard allow|deny add|del`
//! keep for the next `guard run`, in the config file's keys, with a note
//! (expiry and reason) per entry that has one. Two files of one format:
//! `/var/lib/guard/lists.toml` (saved) and `/run/guard/lists.toml`
//! (`--no-save`). Written atomically; read and changed under one lock.

use std::{collections::BTreeMap, fs, path::Path, time::SystemTime};

use anyhow::{Context as _, Result, anyhow};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{atomic, lock::FileLock};
use crate::{
    config::parse_cidr,
    model::{
        lists::{Kept, Lists, Note, Store},
        paths::{LISTS_FILE, RUNTIME_LISTS_FILE},
    },
};

/// A lists file as written: the same keys as the config file's, and the
/// notes keyed by entry.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct File {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    notes: BTreeMap<String, FileNote>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileNote {
    /// RFC 3339, UTC: read at a glance, and right after a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Reads `path`; a missing file is empty lists. An entry that is not a
/// valid CIDR, or a note that is not readable, is an error naming it.
pub fn load(path: &Path) -> Result<Kept> {
    let file: File = match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("{} is not a valid lists file", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let cidr = |c: &str, name: &str| {
        parse_cidr(c).map_err(|e| anyhow!("{}: `{name} = {c}`: {e}", path.display()))
    };
    let parse = |list: &[String], name: &str| {
        list.iter()
            .map(|c| cidr(c, name))
            .collect::<Result<Vec<_>>>()
    };
    let mut notes = BTreeMap::new();
    for (c, note) in file.notes {
        let expires = note
            .expires
            .map(|at| {
                humantime::parse_rfc3339(&at)
                    .map(unix_secs)
                    .map_err(|e| anyhow!("{}: notes.\"{c}\".expires `{at}`: {e}", path.display()))
            })
            .transpose()?;
        notes.insert(
            cidr(&c, "notes")?,
            Note {
                expires,
                reason: note.reason,
            },
        );
    }
    Ok(Kept {
        lists: Lists {
            allow: parse(&file.allow, "allow")?,
            deny: parse(&file.deny, "deny")?,
        },
        notes,
    })
}

/// Replaces the file atomically: a crash mid-write leaves the old one.
pub fn save(path: &Path, kept: &Kept) -> Result<()> {
    let strings = |nets: &[IpNet]| nets.iter().map(ToString::to_string).collect();
    let file = File {
        allow: strings(&kept.lists.allow),
        deny: strings(&kept.lists.deny),
        notes: kept
            .notes
            .iter()
            .map(|(net, note)| {
                let expires = note.expires.map(|at| {
                    humantime::format_rfc3339_seconds(
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at),
                    )
                    .to_string()
                });
                (
                    net.to_string(),
                    FileNote {
                        expires,
                        reason: note.reason.clone(),
                    },
                )
            })
            .collect(),
    };
    let text = format!(
        "# Kept by `guard allow|deny add|del`: loaded by `guard run` at every start\n\
         # and SIGHUP, in addition to the allow and deny keys of its config; an\n\
         # entry with `expires` is taken out by guard at that time.\n{}",
        toml::to_string(&file).context("encoding the lists")?
    );
    atomic::write(path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// Both files.
pub fn load_store() -> Result<Store> {
    Ok(Store {
        saved: load(Path::new(LISTS_FILE))?,
        runtime: load(Path::new(RUNTIME_LISTS_FILE))?,
    })
}

/// Writes whichever of the two files `store` changed from `before`.
pub fn save_store(before: &Store, store: &Store) -> Result<()> {
    if store.saved != before.saved {
        save(Path::new(LISTS_FILE), &store.saved)?;
    }
    if store.runtime != before.runtime {
        save(Path::new(RUNTIME_LISTS_FILE), &store.runtime)?;
    }
    Ok(())
}

/// What the files look like now (modification time and length of each),
/// to notice that another process changed them.
#[must_use]
pub fn stamp() -> [Option<(SystemTime, u64)>; 2] {
    [LISTS_FILE, RUNTIME_LISTS_FILE].map(|p| {
        fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

/// The lock that serialises everyone who reads the files to change them
/// or to apply them to a running guard: held from the read to the last
/// write, so two list commands (or one and a reload) lose nothing.
pub fn lock() -> Result<FileLock> {
    FileLock::exclusive(&lock_path()).context("locking the kept lists")
}

/// [`lock`], if it can be had within `wait`.
pub fn lock_within(wait: std::time::Duration) -> Result<Option<FileLock>> {
    FileLock::exclusive_within(&lock_path(), wait).context("locking the kept lists")
}

fn lock_path() -> std::path::PathBuf {
    let path = Path::new(LISTS_FILE);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.lock"))
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lists::{Edit, List};

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("guard-lists-{name}-{}", std::process::id()))
    }

    #[test]
    fn the_lists_file_round_trips_with_its_notes() {
        let path = dir("trip").join("lists.toml");
        let mut kept = Kept::default();
        kept.apply(
            List::Allow,
            Edit::Add,
            &["198.18.0.0/24".parse().unwrap()],
            &Note::default(),
        );
        kept.apply(
            List::Deny,
            Edit::Add,
            &["2001:db8:bad::/48".parse().unwrap()],
            &Note {
                expires: Some(1_796_198_118),
                reason: Some("crowdsec: ssh-bf".into()),
            },
        );
        save(&path, &kept).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("expires = \"2026-12-02T07:55:18Z\""),
            "{text}"
        );
        assert_eq!(load(&path).unwrap(), kept);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(load(&path).unwrap(), Kept::default());
    }

    #[test]
    fn a_bad_entry_or_note_in_the_file_names_it() {
        let path = dir("bad").join("lists.toml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "allow = [\"198.18.0.1/24\"]\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("`allow = 198.18.0.1/24`") && err.contains("host bits"),
            "{err}"
        );
        fs::write(
            &path,
            "deny = [\"198.18.0.1/32\"]\n[notes.\"198.18.0.1/32\"]\nexpires = \"soon\"\n",
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("expires `soon`"), "{err}");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
