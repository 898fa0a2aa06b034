//! The allow and deny lists as guard keeps them: in the kept lists file,
//! in a running guard's tries, and in the edits the list commands make.

use std::collections::BTreeMap;

use guard_common::{
    key::{LIST_ALLOW, LIST_DENY},
    maps::MAX_LIST_ENTRIES,
};
use ipnet::IpNet;

use crate::config::list_overflow;

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Allow,
    Deny,
}

impl List {
    #[must_use]
    pub const fn name(self) -> &'static str {
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
}

/// What to do with a CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    Add,
    Del,
}

/// Allow and deny entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Lists {
    #[must_use]
    pub fn entries(&self, list: List) -> &[IpNet] {
        match list {
            List::Allow => &self.allow,
            List::Deny => &self.deny,
        }
    }

    fn entries_mut(&mut self, list: List) -> &mut Vec<IpNet> {
        match list {
            List::Allow => &mut self.allow,
            List::Deny => &mut self.deny,
        }
    }

    /// Applies one edit; returns whether a deleted entry was there. Adding
    /// to one list takes the range out of the other: a range is allowed or
    /// denied, never both.
    pub fn apply(&mut self, list: List, edit: Edit, net: IpNet) -> bool {
        match edit {
            Edit::Add => {
                self.entries_mut(list.other()).retain(|n| *n != net);
                let entries = self.entries_mut(list);
                if !entries.contains(&net) {
                    entries.push(net);
                }
                true
            }
            Edit::Del => {
                let entries = self.entries_mut(list);
                let there = entries.contains(&net);
                entries.retain(|n| *n != net);
                there
            }
        }
    }

    /// Each entry with its trie value (allow or deny).
    #[must_use]
    pub fn by_net(&self) -> BTreeMap<IpNet, u8> {
        self.allow
            .iter()
            .map(|n| (*n, LIST_ALLOW))
            .chain(self.deny.iter().map(|n| (*n, LIST_DENY)))
            .collect()
    }

    /// An error if a family has more entries than its trie holds.
    pub fn check_capacity(&self) -> Result<(), String> {
        match list_overflow(&self.allow, &self.deny) {
            None => Ok(()),
            Some((family, n)) => Err(format!(
                "{n} {family} allow and deny entries: a trie holds {MAX_LIST_ENTRIES}"
            )),
        }
    }
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
        assert!(lists.apply(List::Deny, Edit::Add, net("198.18.0.0/24")));
        assert!(lists.allow.is_empty());
        assert_eq!(lists.deny, [net("198.18.5.0/24"), net("198.18.0.0/24")]);
        assert!(lists.apply(List::Deny, Edit::Del, net("198.18.5.0/24")));
        assert!(!lists.apply(List::Deny, Edit::Del, net("198.18.5.0/24")));
        assert_eq!(lists.deny, [net("198.18.0.0/24")]);
    }

    #[test]
    fn capacity_is_per_family() {
        let mut lists = Lists {
            allow: (0..=MAX_LIST_ENTRIES)
                .map(|i| IpNet::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).unwrap())
                .collect(),
            deny: Vec::new(),
        };
        assert!(lists.check_capacity().unwrap_err().contains("IPv4"));
        lists.allow.pop();
        lists.deny.push(net("2001:db8::/48"));
        lists.check_capacity().unwrap();
    }
}
