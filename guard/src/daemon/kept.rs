//! The kept lists in a running guard. At start and at SIGHUP the entries
//! of the kept files join the config's ([`merge`]); then, every second,
//! [`KeptLists::tick`] keeps the tries in step with the files: an entry
//! whose `--for` is up is taken out of its file and of the tries, with a
//! log line, and a change another process made to the files (a list
//! command, CrowdSec, an editor) is applied. The config's own entries
//! always stay: it wins over the kept lists.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use ipnet::IpNet;

use crate::{
    config::Settings,
    dataplane::loader::Attached,
    host::{clock::unix_now_secs, kept_lists},
    model::{
        fleet::overlap,
        lists::{Edit, List, Lists, Store},
        paths::{LISTS_FILE, RUNTIME_LISTS_FILE},
    },
};

/// How long a tick waits for the lists' lock before trying again next
/// second (a list command holds it for a moment).
const LOCK_WAIT: Duration = Duration::from_millis(100);

/// What the run loop keeps to follow the kept files.
#[derive(Debug)]
pub struct KeptLists {
    /// The config's own lists, which the kept entries are added to.
    config: Lists,
    stamp: [Option<(std::time::SystemTime, u64)>; 2],
    next_due: Option<u64>,
    /// The last problem reported, so a broken file is said once.
    reported: Option<String>,
    /// The files as last applied.
    store: Store,
    /// Their deny entries that expire, as [`KeptLists::timed_denies`]
    /// gives them: found when the files are applied, not every second.
    timed: BTreeMap<IpNet, (u64, Option<String>)>,
    /// Peers' bans in force (`--fleet`): deny entries under the config's
    /// and the files'.
    fleet: Vec<IpNet>,
}

/// Adds the kept entries not yet expired to `settings`' lists (which hold
/// the config's); returns what the run loop needs to follow the files.
/// The kept lists must never stop guard from starting (a restart loop at
/// boot): unreadable, corrupt or too long, guard starts with the config's
/// lists and says so. Writes nothing: `guard check-config` calls it too.
pub fn merge(settings: &mut Settings) -> KeptLists {
    let config = Lists {
        allow: settings.allow.clone(),
        deny: settings.deny.clone(),
    };
    let mut kept = KeptLists {
        config,
        stamp: kept_lists::stamp(),
        next_due: None,
        reported: None,
        store: Store::default(),
        timed: BTreeMap::new(),
        fleet: Vec::new(),
    };
    let merged = kept_lists::load_store().and_then(|mut store| {
        store.expire(unix_now_secs());
        kept.apply_to(settings, store)
    });
    if let Err(e) = merged {
        kept.report(&format!(
            "{e:#}: the kept lists are left out, the config's apply (fix the file, or remove it)"
        ));
    }
    kept
}

impl KeptLists {
    /// Once a second: applies the files when they changed or an entry's
    /// time is up; a no-op otherwise (two `stat`s).
    pub fn tick(&mut self, settings: &mut Settings, attached: &mut [Attached]) {
        let now = unix_now_secs();
        let stamp = kept_lists::stamp();
        if stamp == self.stamp && self.next_due.is_none_or(|at| now < at) {
            return;
        }
        // Another process holds the lock: it is changing the files, and
        // the next tick sees its change.
        let Ok(Some(_lock)) = kept_lists::lock_within(LOCK_WAIT) else {
            return;
        };
        if let Err(e) = self.sync(settings, attached, now) {
            self.report(&format!("{e:#}: the running lists stay as they are"));
        }
        self.stamp = kept_lists::stamp();
    }

    fn sync(&mut self, settings: &mut Settings, attached: &mut [Attached], now: u64) -> Result<()> {
        let before = kept_lists::load_store()?;
        let mut store = before.clone();
        for (list, net, note) in store.expire(now) {
            let why = note
                .reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" ({r})"));
            tracing::info!("{} {net}{why}: its time is up, taken out", list.name());
        }
        kept_lists::save_store(&before, &store)?;
        self.put(settings, attached, store)?;
        self.reported = None;
        Ok(())
    }

    /// Makes `settings`' lists the config's plus `store`'s entries, and
    /// notes when the next of them expires and which of them are timed
    /// denies.
    fn apply_to(&mut self, settings: &mut Settings, store: Store) -> Result<()> {
        self.store = store;
        let all = self.store.all();
        self.next_due = all.next_expiry();
        self.timed = all
            .lists
            .entries(List::Deny)
            .iter()
            .filter_map(|net| {
                let note = all.notes.get(net)?;
                Some((*net, (note.expires?, note.reason.clone())))
            })
            .collect();
        let (mut lists, skipped) = Lists::merged(&self.config, &all.lists);
        // Peers' bans join the denies last, and never where the allow list
        // is: an allow entry wins over the fleet (the fleet lifts such a
        // ban at its next tick; until then it is left out here).
        let fleet: Vec<IpNet> = self
            .fleet
            .iter()
            .filter(|net| overlap(&lists.allow, net).is_none())
            .copied()
            .collect();
        lists.apply(List::Deny, Edit::Add, &fleet);
        lists
            .check_capacity(settings.list_capacity)
            .map_err(|e| {
                anyhow::anyhow!(
                    "the config's lists, the kept ones ({LISTS_FILE}, {RUNTIME_LISTS_FILE}) and the fleet's bans together: {e}"
                )
            })?;
        for net in skipped {
            warn_skipped(net);
        }
        settings.allow = lists.allow;
        settings.deny = lists.deny;
        Ok(())
    }

    /// Makes the peers' bans in force `nets`, in the lists and the tries.
    pub fn set_fleet(
        &mut self,
        nets: Vec<IpNet>,
        settings: &mut Settings,
        attached: &mut [Attached],
    ) -> Result<()> {
        self.fleet = nets;
        let store = std::mem::take(&mut self.store);
        self.put(settings, attached, store)
    }

    /// Makes `settings`' lists the config's plus `store`'s and the
    /// fleet's, and the running tries those lists.
    fn put(
        &mut self,
        settings: &mut Settings,
        attached: &mut [Attached],
        store: Store,
    ) -> Result<()> {
        self.apply_to(settings, store)?;
        for a in attached.iter_mut() {
            a.set_lists(&Lists {
                allow: settings.allow.clone(),
                deny: settings.deny.clone(),
            })?;
        }
        Ok(())
    }

    /// The deny entries of the files that expire: until when (unix
    /// seconds), and why. The fleet shares them.
    #[must_use]
    pub const fn timed_denies(&self) -> &BTreeMap<IpNet, (u64, Option<String>)> {
        &self.timed
    }

    fn report(&mut self, problem: &str) {
        if self.reported.as_deref() != Some(problem) {
            tracing::warn!("{problem}");
            self.reported = Some(problem.to_owned());
        }
    }
}

fn warn_skipped(net: IpNet) {
    tracing::warn!(
        "{net} is kept on the other list than the config puts it (or on both): the config (or deny) wins"
    );
}
