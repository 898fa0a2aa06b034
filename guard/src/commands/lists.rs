//! Live list management: `guard allow|deny add|del|list` and `guard unban`
//! act on a running guard through its pinned maps and take effect with the
//! next packet. Allow and deny changes are also kept in the lists file,
//! which `guard run` loads at every start (and at SIGHUP), so a restart
//! keeps them. The file and every running guard's tries are changed under
//! the file's lock, so two commands racing from two shells both land.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use ipnet::IpNet;

use crate::{
    config::parse_cidr,
    dataplane::{
        handle::{Dataplane, Lists},
        pins::Layout,
    },
    error::usage,
    host::{clock::monotonic_ns, kept_lists::KeptLists, preflight},
    model::paths::LISTS_FILE,
};

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

    const fn other(self) -> Self {
        match self {
            Self::Allow => Self::Deny,
            Self::Deny => Self::Allow,
        }
    }

    fn entries(self, lists: &mut Lists) -> &mut Vec<IpNet> {
        match self {
            Self::Allow => &mut lists.allow,
            Self::Deny => &mut lists.deny,
        }
    }
}

/// What to do with a CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    Add,
    Del,
}

fn pinned_dirs() -> Vec<PathBuf> {
    Layout::default()
        .list()
        .into_iter()
        .map(|(_, _, dir)| dir)
        .collect()
}

/// `guard allow|deny add|del CIDR`.
pub fn edit(list: List, edit: Edit, text: &str) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let net = parse_cidr(text).map_err(|e| usage(anyhow!("`{text}`: {e}")))?;
    let file = Path::new(LISTS_FILE);
    let _lock = KeptLists::lock(file)?;
    let mut kept = KeptLists::load(file).map_err(usage)?;
    let canonical = net.to_string();
    let same = |c: &String| parse_cidr(c).ok() == Some(net);
    match edit {
        Edit::Add => {
            kept.list_mut(list.other() == List::Deny)
                .retain(|c| !same(c));
            let entries = kept.list_mut(list == List::Deny);
            if !entries.iter().any(same) {
                entries.push(canonical.clone());
            }
        }
        Edit::Del => kept.list_mut(list == List::Deny).retain(|c| !same(c)),
    }
    let dirs = pinned_dirs();
    for dir in &dirs {
        let there = Dataplane::open_pinned(dir)
            .and_then(|mut d| d.edit_lists(|lists| apply(lists, list, edit, net)))
            .with_context(|| format!("updating the lists pinned in {}", dir.display()))?;
        let what = match (edit, there) {
            (Edit::Add, _) => format!("added {canonical} to the {}list", list.name()),
            (Edit::Del, true) => format!("deleted {canonical} from the {}list", list.name()),
            (Edit::Del, false) => format!("{canonical} was not in the {}list", list.name()),
        };
        println!("{what} of {}: in effect now", dir.display());
    }
    kept.save(file)?;
    if dirs.is_empty() {
        println!("no guard is running: kept in {LISTS_FILE} for the next start");
    } else {
        println!("kept in {LISTS_FILE}, which guard run loads at every start");
    }
    if edit == Edit::Del {
        println!(
            "(an entry that also stands in guard run's --config or flags comes back at the next start)"
        );
    }
    Ok(())
}

/// Applies one edit to a running guard's lists; returns whether a deleted
/// entry was there. Adding to one list takes the range out of the other.
fn apply(lists: &mut Lists, list: List, edit: Edit, net: IpNet) -> bool {
    match edit {
        Edit::Add => {
            list.other().entries(lists).retain(|n| *n != net);
            let entries = list.entries(lists);
            if !entries.contains(&net) {
                entries.push(net);
            }
            true
        }
        Edit::Del => {
            let entries = list.entries(lists);
            let there = entries.contains(&net);
            entries.retain(|n| *n != net);
            there
        }
    }
}

/// `guard allow|deny list`.
pub fn show(list: List) {
    let dirs = pinned_dirs();
    for dir in &dirs {
        println!("{} (running, {}):", list.name(), dir.display());
        let mut running = Dataplane::open_pinned(dir)
            .and_then(|d| d.lists())
            .unwrap_or_default();
        for net in list.entries(&mut running).iter() {
            println!("  {net}");
        }
    }
    if dirs.is_empty() {
        println!("no guard is running");
    }
    let file = Path::new(LISTS_FILE);
    match KeptLists::load(file) {
        Ok(mut kept) => {
            let entries = kept.list_mut(list == List::Deny);
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

/// `guard unban ADDR`: lifts a ban at once, on every guarded interface.
pub fn unban(text: &str) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let addr: IpAddr = text
        .parse()
        .map_err(|_| usage(anyhow!("`{text}` is not an IPv4 or IPv6 address")))?;
    let dirs = pinned_dirs();
    if dirs.is_empty() {
        return Err(anyhow!("no guard is running: nothing to unban"));
    }
    let now = monotonic_ns();
    let mut lifted = false;
    for dir in &dirs {
        if let Some((key, left)) = Dataplane::open_pinned(dir)?.unban(addr, now)? {
            println!("unbanned {key} on {} ({left}s were left)", dir.display());
            lifted = true;
        }
    }
    if !lifted {
        println!("{addr} is not banned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn adding_to_one_list_takes_the_range_out_of_the_other() {
        let mut lists = Lists {
            allow: vec![net("198.18.0.0/24")],
            deny: vec![net("198.18.5.0/24")],
        };
        assert!(apply(
            &mut lists,
            List::Deny,
            Edit::Add,
            net("198.18.0.0/24")
        ));
        assert!(lists.allow.is_empty());
        assert_eq!(lists.deny, [net("198.18.5.0/24"), net("198.18.0.0/24")]);
        assert!(apply(
            &mut lists,
            List::Deny,
            Edit::Del,
            net("198.18.5.0/24")
        ));
        assert!(!apply(
            &mut lists,
            List::Deny,
            Edit::Del,
            net("198.18.5.0/24")
        ));
        assert_eq!(lists.deny, [net("198.18.0.0/24")]);
    }
}
