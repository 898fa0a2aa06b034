//! The kept lists (`/var/lib/guard/lists.toml`): allow and deny entries
//! that `guard allow|deny add|del` keep for the next `guard run`, in the
//! config file's keys. Written atomically; read and changed under a lock.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{atomic, lock::FileLock};
use crate::{config::parse_cidr, model::paths::LISTS_FILE};

/// The lists file: the same keys as the config file's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeptLists {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl KeptLists {
    /// Reads `path`; a missing file is empty lists.
    pub fn load(path: &Path) -> Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("{} is not a valid lists file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the file atomically: a crash mid-write leaves the old one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# Kept by `guard allow|deny add|del`: loaded by `guard run` at every start,\n\
             # in addition to the allow and deny keys of its config.\n{}",
            toml::to_string(self).context("encoding the lists")?
        );
        atomic::write(path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The lock that serialises everyone who reads the file to change it
    /// or to apply it to a running guard: held from the read to the last
    /// write, so two list commands (or one and a reload) lose nothing.
    pub fn lock(path: &Path) -> Result<FileLock> {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let lock = path.with_file_name(format!(".{name}.lock"));
        FileLock::exclusive(&lock).with_context(|| format!("locking {}", path.display()))
    }

    /// Parsed entries, each checked.
    pub fn nets(&self) -> Result<(Vec<IpNet>, Vec<IpNet>)> {
        let parse = |list: &[String], name: &str| {
            list.iter()
                .map(|c| parse_cidr(c).map_err(|e| anyhow!("{LISTS_FILE}: `{name} = {c}`: {e}")))
                .collect::<Result<Vec<_>>>()
        };
        Ok((parse(&self.allow, "allow")?, parse(&self.deny, "deny")?))
    }

    /// The entries of the allow list or the deny list.
    pub fn list_mut(&mut self, deny: bool) -> &mut Vec<String> {
        if deny {
            &mut self.deny
        } else {
            &mut self.allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_file_round_trips() {
        let path =
            std::env::temp_dir().join(format!("guard-lists-{}/lists.toml", std::process::id()));
        let saved = KeptLists {
            allow: vec!["198.18.0.0/24".into()],
            deny: vec!["2001:db8:bad::/48".into()],
        };
        saved.save(&path).unwrap();
        assert_eq!(KeptLists::load(&path).unwrap(), saved);
        let (allow, deny) = saved.nets().unwrap();
        assert_eq!((allow.len(), deny.len()), (1, 1));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(KeptLists::load(&path).unwrap(), KeptLists::default());
    }

    #[test]
    fn a_bad_entry_in_the_file_names_it() {
        let saved = KeptLists {
            allow: vec!["198.18.0.1/24".into()],
            deny: Vec::new(),
        };
        let err = saved.nets().unwrap_err().to_string();
        assert!(
            err.contains("`allow = 198.18.0.1/24`") && err.contains("host bits"),
            "{err}"
        );
    }
}
