//! The allow and deny lists as guard keeps them: in the kept lists file,
//! in a running guard's tries, and in the edits the list commands make.

use std::collections::{BTreeMap, HashSet};

use guard_common::key::{LIST_ALLOW, LIST_DENY};
use ipnet::IpNet;

use crate::config::{list_overflow, parse_cidr};

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

    /// Applies one edit to each of `nets`; returns how many were added
    /// anew or, for a delete, were there. Adding to one list takes the
    /// range out of the other: a range is allowed or denied, never both.
    /// Sets, not scans: a 20,000-entry blocklist loads in one pass.
    pub fn apply(&mut self, list: List, edit: Edit, nets: &[IpNet]) -> usize {
        let given: HashSet<IpNet> = nets.iter().copied().collect();
        match edit {
            Edit::Add => {
                self.entries_mut(list.other())
                    .retain(|n| !given.contains(n));
                let entries = self.entries_mut(list);
                let mut have: HashSet<IpNet> = entries.iter().copied().collect();
                let before = entries.len();
                entries.extend(nets.iter().filter(|n| have.insert(**n)));
                entries.len() - before
            }
            Edit::Del => {
                let entries = self.entries_mut(list);
                let before = entries.len();
                entries.retain(|n| !given.contains(n));
                before - entries.len()
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
    pub fn check_capacity(&self, capacity: u32) -> Result<(), String> {
        match list_overflow(&self.allow, &self.deny, capacity) {
            None => Ok(()),
            Some((family, n, _)) => Err(format!(
                "{n} {family} allow and deny entries: a trie holds {capacity} (list-capacity)"
            )),
        }
    }

    /// The config's lists with the kept ones added. A kept entry that the
    /// config puts on the other list is left out (the config wins), and so
    /// is an allow entry also kept as a deny entry (deny wins: a file
    /// edited by hand may hold both); the ones left out are returned, for
    /// a warning.
    #[must_use]
    pub fn merged(config: &Self, kept: &Self) -> (Self, Vec<IpNet>) {
        let set = |nets: &[IpNet]| nets.iter().copied().collect::<HashSet<IpNet>>();
        let (config_allow, config_deny) = (set(&config.allow), set(&config.deny));
        let kept_deny = set(&kept.deny);
        let mut skipped = Vec::new();
        let mut out = config.clone();
        let mut allow = config_allow.clone();
        for net in &kept.allow {
            if config_deny.contains(net) || (kept_deny.contains(net) && !config_allow.contains(net))
            {
                skipped.push(*net);
            } else if allow.insert(*net) {
                out.allow.push(*net);
            }
        }
        let mut deny = config_deny;
        for net in &kept.deny {
            if config_allow.contains(net) {
                skipped.push(*net);
            } else if deny.insert(*net) {
                out.deny.push(*net);
            }
        }
        (out, skipped)
    }
}

/// Entries from a file, one per line: the first word of each line, so
/// plain lists, `ADDR # comment` and Spamhaus' `CIDR ; SBL123` all read;
/// blank lines and lines starting with `#` or `;` are skipped. An error
/// names the line (`source:N`).
pub fn parse_entries(text: &str, source: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        if word.starts_with('#') || word.starts_with(';') {
            continue;
        }
        let word = word.trim_end_matches([';', ',']);
        nets.push(parse_cidr(word).map_err(|e| format!("{source}:{}: `{word}`: {e}", n + 1))?);
    }
    Ok(nets)
}

/// What a list command said about an entry: until when it holds (unix
/// seconds; none is for good) and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Note {
    pub expires: Option<u64>,
    pub reason: Option<String>,
}

impl Note {
    /// Seconds left at `now`, if it expires.
    #[must_use]
    pub fn left(&self, now: u64) -> Option<u64> {
        self.expires.map(|at| at.saturating_sub(now))
    }
}

/// Entries kept by the list commands, each with its note.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    pub lists: Lists,
    pub notes: BTreeMap<IpNet, Note>,
}

impl Kept {
    /// Applies an edit; an added entry takes `note` (a re-add renews it),
    /// a deleted one loses its note. Returns what [`Lists::apply`] does.
    pub fn apply(&mut self, list: List, edit: Edit, nets: &[IpNet], note: &Note) -> usize {
        let n = self.lists.apply(list, edit, nets);
        for net in nets {
            if edit == Edit::Add && *note != Note::default() {
                self.notes.insert(*net, note.clone());
            } else {
                self.notes.remove(net);
            }
        }
        n
    }

    /// Takes out every entry whose time is up at `now`; returns them. One
    /// pass over each list, however many expire at once (a blocklist
    /// added with `--for` expires whole).
    pub fn expire(&mut self, now: u64) -> Vec<(List, IpNet, Note)> {
        let mut due = BTreeMap::new();
        self.notes.retain(|net, note| {
            let up = note.expires.is_some_and(|at| at <= now);
            if up {
                due.insert(*net, note.clone());
            }
            !up
        });
        let mut gone = Vec::new();
        for list in [List::Allow, List::Deny] {
            self.lists
                .entries_mut(list)
                .retain(|net| match due.get(net) {
                    Some(note) => {
                        gone.push((list, *net, note.clone()));
                        false
                    }
                    None => true,
                });
        }
        gone
    }

    /// When the next entry expires (unix seconds).
    #[must_use]
    pub fn next_expiry(&self) -> Option<u64> {
        self.notes.values().filter_map(|n| n.expires).min()
    }
}

/// The two places list commands keep entries: saved (read at every start,
/// for good) and runtime (`--no-save`: the running guards and their
/// restarts until the runtime directory goes at reboot; the unit keeps it
/// across a stop). An entry lives in one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    pub saved: Kept,
    pub runtime: Kept,
}

impl Store {
    /// An add goes where `save` says and leaves the other place; a delete
    /// takes the entry out of both.
    pub fn apply(&mut self, list: List, edit: Edit, nets: &[IpNet], note: &Note, save: bool) {
        let (to, other) = if save {
            (&mut self.saved, &mut self.runtime)
        } else {
            (&mut self.runtime, &mut self.saved)
        };
        match edit {
            Edit::Add => {
                for l in [List::Allow, List::Deny] {
                    other.apply(l, Edit::Del, nets, &Note::default());
                }
                to.apply(list, edit, nets, note);
            }
            Edit::Del => {
                to.apply(list, edit, nets, note);
                other.apply(list, edit, nets, note);
            }
        }
    }

    /// Both places as one.
    #[must_use]
    pub fn all(&self) -> Kept {
        let mut all = self.saved.clone();
        for list in [List::Allow, List::Deny] {
            all.lists
                .apply(list, Edit::Add, self.runtime.lists.entries(list));
        }
        all.notes.extend(
            self.runtime
                .notes
                .iter()
                .map(|(net, note)| (*net, note.clone())),
        );
        all
    }

    /// [`Kept::expire`] in both places.
    pub fn expire(&mut self, now: u64) -> Vec<(List, IpNet, Note)> {
        let mut gone = self.saved.expire(now);
        gone.extend(self.runtime.expire(now));
        gone
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
        assert_eq!(
            lists.apply(List::Deny, Edit::Add, &[net("198.18.0.0/24")]),
            1
        );
        assert!(lists.allow.is_empty());
        assert_eq!(lists.deny, [net("198.18.5.0/24"), net("198.18.0.0/24")]);
        assert_eq!(
            lists.apply(List::Deny, Edit::Del, &[net("198.18.5.0/24")]),
            1
        );
        assert_eq!(
            lists.apply(List::Deny, Edit::Del, &[net("198.18.5.0/24")]),
            0
        );
        assert_eq!(lists.deny, [net("198.18.0.0/24")]);
    }

    #[test]
    fn a_bulk_add_keeps_order_and_drops_repeats() {
        let mut lists = Lists::default();
        let nets = [
            net("198.18.0.1/32"),
            net("198.18.0.2/32"),
            net("198.18.0.1/32"),
        ];
        assert_eq!(lists.apply(List::Deny, Edit::Add, &nets), 2);
        assert_eq!(lists.apply(List::Deny, Edit::Add, &nets), 0);
        assert_eq!(lists.deny, nets[..2]);
    }

    #[test]
    fn entry_files_read_the_first_word_of_each_line() {
        let text =
            "# firehol\n198.18.0.1\n\n198.18.4.0/24 ; SBL123\n  2001:db8::/48  # v6\n; end\n";
        assert_eq!(
            parse_entries(text, "-").unwrap(),
            [
                net("198.18.0.1/32"),
                net("198.18.4.0/24"),
                net("2001:db8::/48")
            ]
        );
        let err = parse_entries("198.18.0.1\n198.18.0.300\n", "bl.txt").unwrap_err();
        assert!(err.starts_with("bl.txt:2: `198.18.0.300`"), "{err}");
    }

    #[test]
    fn capacity_is_per_family() {
        let capacity = 1024;
        let mut lists = Lists {
            allow: (0..=capacity)
                .map(|i| IpNet::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).unwrap())
                .collect(),
            deny: Vec::new(),
        };
        let err = lists.check_capacity(capacity).unwrap_err();
        assert!(
            err.contains("IPv4") && err.contains("list-capacity"),
            "{err}"
        );
        lists.allow.pop();
        lists.deny.push(net("2001:db8::/48"));
        lists.check_capacity(capacity).unwrap();
    }

    #[test]
    fn kept_entries_yield_to_the_config_and_deny_wins_within_them() {
        let config = Lists {
            allow: vec![net("198.18.1.0/24")],
            deny: vec![net("198.18.2.0/24")],
        };
        let kept = Lists {
            allow: vec![
                net("198.18.2.0/24"),
                net("198.18.3.0/24"),
                net("198.18.4.0/24"),
            ],
            deny: vec![
                net("198.18.1.0/24"),
                net("198.18.3.0/24"),
                net("198.18.2.0/24"),
            ],
        };
        let (merged, skipped) = Lists::merged(&config, &kept);
        assert_eq!(merged.allow, [net("198.18.1.0/24"), net("198.18.4.0/24")]);
        assert_eq!(merged.deny, [net("198.18.2.0/24"), net("198.18.3.0/24")]);
        assert_eq!(
            skipped,
            [
                net("198.18.2.0/24"),
                net("198.18.3.0/24"),
                net("198.18.1.0/24")
            ]
        );
    }

    #[test]
    fn entries_expire_at_their_time_and_take_their_notes() {
        let mut kept = Kept::default();
        let timed = Note {
            expires: Some(100),
            reason: Some("ssh brute force".into()),
        };
        kept.apply(List::Deny, Edit::Add, &[net("198.18.0.7/32")], &timed);
        kept.apply(
            List::Deny,
            Edit::Add,
            &[net("198.18.0.8/32")],
            &Note::default(),
        );
        assert_eq!(kept.next_expiry(), Some(100));
        assert_eq!(timed.left(40), Some(60));
        assert!(kept.expire(99).is_empty());
        assert_eq!(
            kept.expire(100),
            [(List::Deny, net("198.18.0.7/32"), timed)]
        );
        assert_eq!(kept.lists.deny, [net("198.18.0.8/32")]);
        assert!(kept.notes.is_empty() && kept.next_expiry().is_none());
    }

    #[test]
    fn a_whole_blocklist_expires_at_once() {
        let mut kept = Kept::default();
        let nets: Vec<IpNet> = (0..20_000u32)
            .map(|i| IpNet::new(std::net::Ipv4Addr::from(0xc612_0000 + i).into(), 32).unwrap())
            .collect();
        let timed = Note {
            expires: Some(10),
            reason: Some("blocklist".into()),
        };
        kept.apply(List::Deny, Edit::Add, &nets, &timed);
        kept.apply(
            List::Allow,
            Edit::Add,
            &[net("203.0.113.0/24")],
            &Note::default(),
        );
        let gone = kept.expire(10);
        assert_eq!(gone.len(), 20_000);
        assert!(
            gone.iter()
                .all(|(list, _, note)| *list == List::Deny && *note == timed)
        );
        assert!(kept.lists.deny.is_empty() && kept.notes.is_empty());
        assert_eq!(kept.lists.allow, [net("203.0.113.0/24")]);
    }

    #[test]
    fn an_entry_lives_in_one_place_and_a_delete_takes_it_from_both() {
        let mut store = Store::default();
        let a = [net("198.18.0.7/32")];
        let note = Note {
            expires: Some(50),
            reason: None,
        };
        store.apply(List::Deny, Edit::Add, &a, &note, false);
        assert_eq!(store.runtime.lists.deny, a);
        assert_eq!(store.all().notes[&a[0]], note);
        // Made permanent: it moves, and loses its expiry.
        store.apply(List::Deny, Edit::Add, &a, &Note::default(), true);
        assert!(store.runtime.lists.deny.is_empty() && store.runtime.notes.is_empty());
        assert_eq!(store.saved.lists.deny, a);
        assert!(store.expire(1_000).is_empty());
        store.apply(List::Deny, Edit::Add, &a, &note, false);
        store.apply(List::Deny, Edit::Del, &a, &Note::default(), true);
        assert_eq!(store.all(), Kept::default());
    }
}
