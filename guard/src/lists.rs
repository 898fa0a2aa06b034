//! Live list management: `guard allow|deny add|del|list` and `guard unban`
//! act on a running guard through its pinned maps and take effect with the
//! next packet. Allow and deny changes are also kept in
//! [`LISTS_FILE`], which `guard run` loads at every start, so a restart
//! keeps them.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{HashMap, LpmTrie, Map, MapData, lpm_trie::Key};
use guard_common::{
    SourceKey, SourceState,
    config::{DENY_V4, DENY_V6, LISTS_V4 as HAS_V4, LISTS_V6 as HAS_V6},
    key::{LIST_ALLOW, LIST_DENY},
    maps::{CONFIG, LISTS_V4, LISTS_V6, SOURCES},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    cli::{ListAction, ListArgs, UnbanArgs},
    config::parse_cidr,
    exit::usage,
    maps,
    pins::Layout,
    preflight,
    stats::monotonic_ns,
};

/// Where live list changes are kept between runs.
pub const LISTS_FILE: &str = "/var/lib/guard/lists.toml";

/// Which list a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Allow,
    Deny,
}

impl List {
    const fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    const fn action(self) -> u8 {
        match self {
            Self::Allow => LIST_ALLOW,
            Self::Deny => LIST_DENY,
        }
    }
}

/// The lists file: the same keys as the config file's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Saved {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Saved {
    /// Reads `path`; a missing file is empty lists.
    pub fn load(path: &Path) -> Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("{} is not a valid lists file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = format!(
            "# Kept by `guard allow|deny add|del`: loaded by `guard run` at every start,\n\
             # in addition to the allow and deny keys of its config.\n{}",
            toml::to_string(self).context("encoding the lists")?
        );
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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

    fn list_mut(&mut self, list: List) -> &mut Vec<String> {
        match list {
            List::Allow => &mut self.allow,
            List::Deny => &mut self.deny,
        }
    }
}

/// `guard allow|deny add|del|list`.
pub fn command(list: List, args: &ListArgs) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let file = PathBuf::from(LISTS_FILE);
    let dirs: Vec<PathBuf> = Layout::default()
        .list()
        .into_iter()
        .map(|(_, _, dir)| dir)
        .collect();
    match args.action {
        ListAction::List => {
            show(list, &dirs, &file);
            return Ok(());
        }
        ListAction::Add | ListAction::Del => {}
    }
    let text = args.cidr.as_deref().ok_or_else(|| {
        usage(anyhow!(
            "give the CIDR to {}",
            if args.action == ListAction::Add {
                "add"
            } else {
                "delete"
            }
        ))
    })?;
    let net = parse_cidr(text).map_err(|e| usage(anyhow!("`{text}`: {e}")))?;
    let mut saved = Saved::load(&file).map_err(usage)?;
    let canonical = net.to_string();
    let other = if list == List::Allow {
        List::Deny
    } else {
        List::Allow
    };
    match args.action {
        ListAction::Add => {
            saved
                .list_mut(other)
                .retain(|c| parse_cidr(c).ok() != Some(net));
            if !saved
                .list_mut(list)
                .iter()
                .any(|c| parse_cidr(c).ok() == Some(net))
            {
                saved.list_mut(list).push(canonical.clone());
            }
        }
        ListAction::Del => saved
            .list_mut(list)
            .retain(|c| parse_cidr(c).ok() != Some(net)),
        ListAction::List => unreachable!("handled above"),
    }
    for dir in &dirs {
        let changed = apply(dir, &net, list, args.action)
            .with_context(|| format!("updating the lists pinned in {}", dir.display()))?;
        let verb = match (args.action, changed) {
            (ListAction::Add, _) => format!("{} {canonical} to the {}list", "added", list.name()),
            (ListAction::Del, true) => format!("deleted {canonical} from the {}list", list.name()),
            (ListAction::Del, false) => format!("{canonical} was not in the {}list", list.name()),
            (ListAction::List, _) => unreachable!("handled above"),
        };
        println!("{verb} of {}: in effect now", dir.display());
    }
    saved.save(&file)?;
    if dirs.is_empty() {
        println!("no guard is running: kept in {LISTS_FILE} for the next start");
    } else {
        println!("kept in {LISTS_FILE}, which guard run loads at every start");
    }
    if args.action == ListAction::Del {
        println!(
            "(an entry that also stands in guard run's --config or flags comes back at the next start)"
        );
    }
    Ok(())
}

/// Changes one pinned interface's tries; returns whether the entry was
/// there (for a delete). Keeps the config's list bits in step, so the
/// program looks up only what holds entries.
fn apply(dir: &Path, net: &IpNet, list: List, action: ListAction) -> Result<bool> {
    let open = |name: &str| -> Result<Map> {
        let data = MapData::from_pin(dir.join(name)).with_context(|| format!("opening {name}"))?;
        Ok(Map::LpmTrie(data))
    };
    let (mut v4, mut v6) = (open(LISTS_V4)?, open(LISTS_V6)?);
    let len = u32::from(net.prefix_len());
    let existed = match (net, action) {
        (IpNet::V4(n), ListAction::Add) => {
            LpmTrie::<_, [u8; 4], u8>::try_from(&mut v4)?.insert(
                &Key::new(len, n.network().octets()),
                list.action(),
                0,
            )?;
            true
        }
        (IpNet::V6(n), ListAction::Add) => {
            LpmTrie::<_, [u8; 16], u8>::try_from(&mut v6)?.insert(
                &Key::new(len, n.network().octets()),
                list.action(),
                0,
            )?;
            true
        }
        (IpNet::V4(n), _) => remove(
            &mut LpmTrie::<_, [u8; 4], u8>::try_from(&mut v4)?,
            &Key::new(len, n.network().octets()),
            list,
        )?,
        (IpNet::V6(n), _) => remove(
            &mut LpmTrie::<_, [u8; 16], u8>::try_from(&mut v6)?,
            &Key::new(len, n.network().octets()),
            list,
        )?,
    };
    let (flags4, flags6) = (
        bits(&LpmTrie::<_, [u8; 4], u8>::try_from(&v4)?, HAS_V4, DENY_V4)?,
        bits(&LpmTrie::<_, [u8; 16], u8>::try_from(&v6)?, HAS_V6, DENY_V6)?,
    );
    let mut config_map =
        Map::Array(MapData::from_pin(dir.join(CONFIG)).context("opening GUARD_CONFIG")?);
    let mut config = maps::read_config(&config_map)?;
    config.lists = flags4 | flags6;
    maps::write_config(&mut config_map, &config)?;
    Ok(existed)
}

/// Removes the entry if it is exactly there and in `list`; returns
/// whether it was. (A lookup would answer with the longest match instead.)
fn remove<K: aya::Pod + PartialEq>(
    trie: &mut LpmTrie<&mut MapData, K, u8>,
    key: &Key<K>,
    list: List,
) -> Result<bool> {
    let found = trie.iter().filter_map(Result::ok).any(|(k, action)| {
        k.prefix_len() == key.prefix_len() && k.data() == key.data() && action == list.action()
    });
    if found {
        trie.remove(key)?;
    }
    Ok(found)
}

/// The config bits for a trie: `has` if it holds anything, `deny` if it
/// holds a deny entry.
fn bits<K: aya::Pod>(trie: &LpmTrie<&MapData, K, u8>, has: u32, deny: u32) -> Result<u32> {
    let mut flags = 0;
    for entry in trie {
        let (_, action) = entry?;
        flags |= has;
        if action == LIST_DENY {
            flags |= deny;
        }
    }
    Ok(flags)
}

fn show(list: List, dirs: &[PathBuf], file: &Path) {
    for dir in dirs {
        println!("{} (running, {}):", list.name(), dir.display());
        for net in pinned(dir, list).unwrap_or_default() {
            println!("  {net}");
        }
    }
    if dirs.is_empty() {
        println!("no guard is running");
    }
    match Saved::load(file) {
        Ok(saved) => {
            let entries = match list {
                List::Allow => saved.allow,
                List::Deny => saved.deny,
            };
            println!(
                "{} (kept in {}, loaded at start): {}",
                list.name(),
                file.display(),
                if entries.is_empty() {
                    "none".to_owned()
                } else {
                    entries.join(", ")
                }
            );
        }
        Err(e) => println!("{e:#}"),
    }
}

/// The entries of `list` in a running guard's tries.
fn pinned(dir: &Path, list: List) -> Result<Vec<IpNet>> {
    let mut nets = trie_entries::<[u8; 4]>(&dir.join(LISTS_V4), list)?;
    nets.extend(trie_entries::<[u8; 16]>(&dir.join(LISTS_V6), list)?);
    nets.sort();
    Ok(nets)
}

/// The entries of one pinned trie (IPv4 or IPv6 keys) that belong to
/// `list`.
fn trie_entries<K: aya::Pod + Into<IpAddr>>(pin: &Path, list: List) -> Result<Vec<IpNet>> {
    let map = Map::LpmTrie(MapData::from_pin(pin)?);
    let mut nets = Vec::new();
    for entry in &LpmTrie::<_, K, u8>::try_from(&map)? {
        let (key, action) = entry?;
        if action == list.action() {
            nets.push(IpNet::new(
                key.data().into(),
                u8::try_from(key.prefix_len())?,
            )?);
        }
    }
    Ok(nets)
}

/// `guard unban ADDR`: lifts a ban at once, on every guarded interface.
pub fn unban(args: &UnbanArgs) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let addr: IpAddr = args
        .addr
        .parse()
        .map_err(|_| usage(anyhow!("`{}` is not an IPv4 or IPv6 address", args.addr)))?;
    let dirs: Vec<PathBuf> = Layout::default()
        .list()
        .into_iter()
        .map(|(_, _, dir)| dir)
        .collect();
    if dirs.is_empty() {
        return Err(anyhow!("no guard is running: nothing to unban"));
    }
    let now = monotonic_ns();
    let mut lifted = false;
    for dir in &dirs {
        let config = maps::read_config(&Map::Array(MapData::from_pin(dir.join(CONFIG))?))?;
        let key = match addr {
            IpAddr::V4(a) => SourceKey::v4(a.octets(), config.source_prefix_v4),
            IpAddr::V6(a) => SourceKey::v6(a.octets(), config.source_prefix_v6),
        };
        let mut map = Map::LruHashMap(MapData::from_pin(dir.join(SOURCES))?);
        let mut sources = HashMap::<_, SourceKey, SourceState>::try_from(&mut map)?;
        let Ok(mut state) = sources.get(&key, 0) else {
            continue;
        };
        if state.banned_until_ns <= now {
            continue;
        }
        let left = (state.banned_until_ns - now) / guard_common::bucket::NANOS_PER_SEC;
        state.banned_until_ns = 0;
        state.window_drops = 0;
        state.limited = 0;
        sources.insert(key, state, 0)?;
        println!("unbanned {key} on {} ({left}s were left)", dir.display());
        lifted = true;
    }
    if !lifted {
        println!("{addr} is not banned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_file_round_trips() {
        let path =
            std::env::temp_dir().join(format!("guard-lists-{}/lists.toml", std::process::id()));
        let saved = Saved {
            allow: vec!["198.18.0.0/24".into()],
            deny: vec!["2001:db8:bad::/48".into()],
        };
        saved.save(&path).unwrap();
        assert_eq!(Saved::load(&path).unwrap(), saved);
        let (allow, deny) = saved.nets().unwrap();
        assert_eq!((allow.len(), deny.len()), (1, 1));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(Saved::load(&path).unwrap(), Saved::default());
    }

    #[test]
    fn a_bad_entry_in_the_file_names_it() {
        let saved = Saved {
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
