//! The kept lists (`/var/lib/guard/lists.toml`): allow and deny entries
//! that `guard allow|deny add|del` keep for the next `guard run`, in the
//! config file's keys. Written atomically; read and changed under a lock.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{atomic, lock::FileLock};
use crate::{config::parse_cidr, model::lists::Lists};

/// The lists file as written: the same keys as the config file's.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct File {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Reads `path`; a missing file is empty lists. An entry that is not a
/// valid CIDR is an error naming it.
pub fn load(path: &Path) -> Result<Lists> {
    let file: File = match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("{} is not a valid lists file", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let parse = |list: &[String], name: &str| {
        list.iter()
            .map(|c| parse_cidr(c).map_err(|e| anyhow!("{}: `{name} = {c}`: {e}", path.display())))
            .collect::<Result<Vec<_>>>()
    };
    Ok(Lists {
        allow: parse(&file.allow, "allow")?,
        deny: parse(&file.deny, "deny")?,
    })
}

/// Replaces the file atomically: a crash mid-write leaves the old one.
pub fn save(path: &Path, lists: &Lists) -> Result<()> {
    let strings = |nets: &[IpNet]| nets.iter().map(ToString::to_string).collect();
    let file = File {
        allow: strings(&lists.allow),
        deny: strings(&lists.deny),
    };
    let text = format!(
        "# Kept by `guard allow|deny add|del`: loaded by `guard run` at every start,\n\
         # in addition to the allow and deny keys of its config.\n{}",
        toml::to_string(&file).context("encoding the lists")?
    );
    atomic::write(path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// The lock that serialises everyone who reads the file to change it or to
/// apply it to a running guard: held from the read to the last write, so
/// two list commands (or one and a reload) lose nothing.
pub fn lock(path: &Path) -> Result<FileLock> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let lock = path.with_file_name(format!(".{name}.lock"));
    FileLock::exclusive(&lock).with_context(|| format!("locking {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("guard-lists-{name}-{}", std::process::id()))
    }

    #[test]
    fn the_lists_file_round_trips() {
        let path = dir("trip").join("lists.toml");
        let lists = Lists {
            allow: vec!["198.18.0.0/24".parse().unwrap()],
            deny: vec!["2001:db8:bad::/48".parse().unwrap()],
        };
        save(&path, &lists).unwrap();
        assert_eq!(load(&path).unwrap(), lists);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(load(&path).unwrap(), Lists::default());
    }

    #[test]
    fn a_bad_entry_in_the_file_names_it() {
        let path = dir("bad").join("lists.toml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "allow = [\"198.18.0.1/24\"]\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("`allow = 198.18.0.1/24`") && err.contains("host bits"),
            "{err}"
        );
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
