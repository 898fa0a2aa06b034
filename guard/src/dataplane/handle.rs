//! [`Dataplane`]: the one reader and writer of the XDP program's pinned
//! maps. `guard run` holds one per attachment (taken from the object it
//! loaded); `guard stats`, the list commands and metrics open one from the
//! pins. Every write goes through here, and every read-modify-write holds
//! the host's map-write lock (`model::paths::MAPS_LOCK`), so the
//! controller, a SIGHUP and list commands in other shells never undo each
//! other's changes.
//!
//! `guard run` waits for the lock at most [`DAEMON_LOCK_WAIT`]: a writer
//! holds it for milliseconds, so one holding it longer is stopped (a
//! suspended shell) or hung, and the daemon writes without it rather than
//! stop protecting. Commands wait as long as it takes (Ctrl-C ends them).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::MapError,
    maps::{Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, PerCpuArray, lpm_trie::Key},
};
use guard_common::{
    CounterBlock, DataplaneConfig, Marks, PortCounts, SourceKey, SourceState,
    bucket::NANOS_PER_SEC,
    config::{HOST_MACS, mac_word},
    fingerprint::SigTable,
    key::{LIST_DENY, ROUTE_ELSEWHERE, ROUTE_LOCAL},
    maps::{
        CONFIG, COUNTERS, GLOBAL, LISTS_V4, LISTS_V6, LOCAL_V4, LOCAL_V6, MARKED, MARKS,
        PORT_COUNTS, PORTS, PREFIXES, SIGS, SOURCES,
    },
    marked::{MARKED_ENTRIES, MARKED_WORDS, REFRESH_AT_BITS, half_start, marked_bit},
    slots::{Slot, slot_index},
};
use ipnet::IpNet;

use crate::{
    config::list_bits,
    host::lock::FileLock,
    model::{
        devices::Mac,
        lists::Lists,
        paths::{MAPS_LOCK, RUNTIME_DIR},
    },
};

/// A source whose ban was lifted, with the seconds that were left; `None`
/// if it was not banned.
pub type Unbanned = Option<(SourceKey, u64)>;

/// How long `guard run` waits for the map-write lock before it writes
/// without it.
pub const DAEMON_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The maps of one attachment (pinned once attached).
pub struct Dataplane {
    config: Array<MapData, DataplaneConfig>,
    lists_v4: LpmTrie<MapData, [u8; 4], u8>,
    lists_v6: LpmTrie<MapData, [u8; 16], u8>,
    ports: Array<MapData, u32>,
    port_counts: PerCpuArray<MapData, PortCounts>,
    counters: PerCpuArray<MapData, CounterBlock>,
    sources: Array<MapData, Slot>,
    marks: HashMap<MapData, SourceKey, Marks>,
    marked: Array<MapData, u64>,
    prefixes: Array<MapData, Slot>,
    global: Array<MapData, u64>,
    sigs: Array<MapData, SigTable>,
    /// The local-route tries: only in the handle taken from the object
    /// (they are not pinned; only `guard run` writes them).
    local: Option<LocalTries>,
    /// The daemon's handle waits for the write lock at most
    /// [`DAEMON_LOCK_WAIT`]; a command's, as long as it takes.
    bounded_wait: bool,
}

/// `GUARD_LOCAL_V4`/`V6`, and what was written into them.
struct LocalTries {
    v4: LpmTrie<MapData, [u8; 4], u8>,
    v6: LpmTrie<MapData, [u8; 16], u8>,
    written: BTreeMap<IpNet, u8>,
}

/// Where a map comes from: a loaded object, or a pin.
trait Source {
    fn map(&mut self, name: &str) -> Result<Map>;
}

impl Source for Ebpf {
    fn map(&mut self, name: &str) -> Result<Map> {
        self.take_map(name)
            .ok_or_else(|| anyhow!("the XDP object has no map {name} (or it was taken)"))
    }
}

/// A pin directory, with the kind of each map (a pin does not say).
struct Pins<'a>(&'a Path);

impl Source for Pins<'_> {
    fn map(&mut self, name: &str) -> Result<Map> {
        let path = self.0.join(name);
        let data =
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(match name {
            CONFIG | PORTS | GLOBAL | SIGS | SOURCES | PREFIXES | MARKED => Map::Array(data),
            LISTS_V4 | LISTS_V6 => Map::LpmTrie(data),
            PORT_COUNTS | COUNTERS => Map::PerCpuArray(data),
            _ => Map::LruHashMap(data),
        })
    }
}

impl LocalTries {
    /// Sets `net`'s entry to `value`, or removes it (`None`; one missing
    /// is no error).
    fn write(&mut self, net: &IpNet, value: Option<u8>) -> Result<()> {
        let len = u32::from(net.prefix_len());
        let result = match (net, value) {
            (IpNet::V4(n), Some(v)) => self.v4.insert(&Key::new(len, n.network().octets()), v, 0),
            (IpNet::V6(n), Some(v)) => self.v6.insert(&Key::new(len, n.network().octets()), v, 0),
            (IpNet::V4(n), None) => self.v4.remove(&Key::new(len, n.network().octets())),
            (IpNet::V6(n), None) => self.v6.remove(&Key::new(len, n.network().octets())),
        };
        match result {
            Err(MapError::KeyNotFound) if value.is_none() => Ok(()),
            other => other.with_context(|| format!("writing {net} into the local-route tries")),
        }
    }
}

/// What the local-route tries hold for the namespace's `local` routes:
/// each [`ROUTE_LOCAL`], and each family's /0 [`ROUTE_ELSEWHERE`] (unless
/// a `local` route is that /0 itself), so that a destination no route
/// holds is another's rather than unknown.
#[must_use]
pub fn local_entries(local: &BTreeSet<IpNet>) -> BTreeMap<IpNet, u8> {
    let mut entries: BTreeMap<IpNet, u8> = ["0.0.0.0/0", "::/0"]
        .into_iter()
        .map(|n| (n.parse().expect("a prefix"), ROUTE_ELSEWHERE))
        .collect();
    entries.extend(local.iter().map(|n| (n.trunc(), ROUTE_LOCAL)));
    entries
}

fn typed<T: TryFrom<Map, Error = MapError>>(source: &mut impl Source, name: &str) -> Result<T> {
    T::try_from(source.map(name)?).with_context(|| format!("{name} has the wrong type"))
}

impl Dataplane {
    /// Takes the maps out of a freshly loaded object (the program keeps
    /// them: it holds its own references).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut dataplane = Self::from_source(ebpf, true)?;
        dataplane.local = Some(LocalTries {
            v4: typed(ebpf, LOCAL_V4)?,
            v6: typed(ebpf, LOCAL_V6)?,
            written: BTreeMap::new(),
        });
        Ok(dataplane)
    }

    /// Opens the maps a running guard pinned in `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        Self::from_source(&mut Pins(dir), false)
    }

    /// The same, for the daemon's own tasks: it waits for the write lock
    /// at most [`DAEMON_LOCK_WAIT`], as the handle it loaded does.
    pub fn open_pinned_daemon(dir: &Path) -> Result<Self> {
        Self::from_source(&mut Pins(dir), true)
    }

    fn from_source(s: &mut impl Source, bounded_wait: bool) -> Result<Self> {
        Ok(Self {
            config: typed(s, CONFIG)?,
            lists_v4: typed(s, LISTS_V4)?,
            lists_v6: typed(s, LISTS_V6)?,
            ports: typed(s, PORTS)?,
            port_counts: typed(s, PORT_COUNTS)?,
            counters: typed(s, COUNTERS)?,
            sources: typed(s, SOURCES)?,
            marks: typed(s, MARKS)?,
            marked: typed(s, MARKED)?,
            prefixes: typed(s, PREFIXES)?,
            global: typed(s, GLOBAL)?,
            sigs: typed(s, SIGS)?,
            local: None,
            bounded_wait,
        })
    }

    /// The map-write lock; `None` when the daemon gave up waiting.
    fn write_lock(&self) -> Result<Option<FileLock>> {
        let path = Path::new(RUNTIME_DIR).join(MAPS_LOCK);
        if !self.bounded_wait {
            return Ok(Some(
                FileLock::exclusive(&path).context("taking the map-write lock")?,
            ));
        }
        let lock = FileLock::exclusive_within(&path, DAEMON_LOCK_WAIT)
            .context("taking the map-write lock")?;
        if lock.is_none() {
            tracing::warn!(
                "{} has been held for over {DAEMON_LOCK_WAIT:?} (a stopped `guard allow|deny|unban`?): writing the maps without it",
                path.display()
            );
        }
        Ok(lock)
    }

    /// Pins every map in `dir`, for other processes.
    pub fn pin(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let maps = [
            (CONFIG, self.config.map()),
            (LISTS_V4, self.lists_v4.map()),
            (LISTS_V6, self.lists_v6.map()),
            (PORTS, self.ports.map()),
            (PORT_COUNTS, self.port_counts.map()),
            (COUNTERS, self.counters.map()),
            (SOURCES, self.sources.map()),
            (MARKS, self.marks.map()),
            (MARKED, self.marked.map()),
            (PREFIXES, self.prefixes.map()),
            (GLOBAL, self.global.map()),
            (SIGS, self.sigs.map()),
        ];
        for (name, map) in maps {
            let path = dir.join(name);
            map.pin(&path)
                .with_context(|| format!("pinning {name} at {}", path.display()))?;
        }
        Ok(())
    }

    /// The configuration the program reads now.
    pub fn config(&self) -> Result<DataplaneConfig> {
        self.config.get(&0, 0).context("reading GUARD_CONFIG")
    }

    /// Changes the configuration: read, `change`, write, under the write
    /// lock, so no other writer's change in between is lost.
    pub fn update_config(&mut self, change: impl FnOnce(&mut DataplaneConfig)) -> Result<()> {
        let _lock = self.write_lock()?;
        self.update_config_locked(change)
    }

    fn update_config_locked(&mut self, change: impl FnOnce(&mut DataplaneConfig)) -> Result<()> {
        let mut config = self.config()?;
        change(&mut config);
        self.config
            .set(0, config, 0)
            .context("writing GUARD_CONFIG")
    }

    /// The attack signatures the program checks.
    pub fn sigs(&self) -> Result<SigTable> {
        self.sigs.get(&0, 0).context("reading GUARD_SIGS")
    }

    /// Changes the signature table: read, `edit`, write, under the write
    /// lock (operators' commands and the daemon both write it).
    pub fn edit_sigs<R>(&mut self, edit: impl FnOnce(&mut SigTable) -> R) -> Result<R> {
        let _lock = self.write_lock()?;
        let mut table = self.sigs()?;
        let out = edit(&mut table);
        self.sigs.set(0, table, 0).context("writing GUARD_SIGS")?;
        Ok(out)
    }

    /// The allow and deny entries in the tries, sorted.
    pub fn lists(&self) -> Result<Lists> {
        let mut lists = Lists::default();
        read_trie(&self.lists_v4, &mut lists).context("reading GUARD_LISTS_V4")?;
        read_trie(&self.lists_v6, &mut lists).context("reading GUARD_LISTS_V6")?;
        lists.allow.sort();
        lists.deny.sort();
        Ok(lists)
    }

    /// Makes the tries hold exactly `lists`, and the configuration's list
    /// bits say so: entries no longer listed stop matching at once.
    pub fn replace_lists(&mut self, lists: &Lists) -> Result<()> {
        let _lock = self.write_lock()?;
        let have = self.lists()?;
        self.replace_lists_locked(&have, lists)
    }

    /// Reads the lists, lets `edit` change them, and writes the result, all
    /// under the write lock: two editors in two processes both land.
    pub fn edit_lists<R>(&mut self, edit: impl FnOnce(&mut Lists) -> R) -> Result<R> {
        let _lock = self.write_lock()?;
        let have = self.lists()?;
        let mut lists = have.clone();
        let out = edit(&mut lists);
        self.replace_lists_locked(&have, &lists)?;
        Ok(out)
    }

    /// From `have` (what the tries hold) to `wanted`: the entries that go
    /// first (so a trie near its capacity still takes the new ones), then
    /// the new and changed ones, then the bits that make the program look
    /// them up. An entry that stays is never missing. If a write fails,
    /// the tries are put back to `have`, as far as the kernel lets.
    fn replace_lists_locked(&mut self, have: &Lists, wanted: &Lists) -> Result<()> {
        wanted
            .check_capacity(self.list_capacity()?)
            .map_err(anyhow::Error::msg)?;
        let (have_by, want_by) = (have.by_net(), wanted.by_net());
        let changes = have_by
            .keys()
            .filter(|n| !want_by.contains_key(n))
            .map(|n| (*n, None))
            .chain(
                want_by
                    .iter()
                    .filter(|(n, a)| have_by.get(n) != Some(a))
                    .map(|(n, a)| (*n, Some(*a))),
            )
            .collect::<Vec<_>>();
        let mut done = Vec::new();
        let mut result = Ok(());
        for (net, to) in changes {
            result = match to {
                Some(action) => self.insert_list_entry(&net, action),
                None => self.remove_list_entry(&net),
            };
            if result.is_err() {
                break;
            }
            done.push(net);
        }
        if let Err(e) = result {
            for net in done {
                let back = match have_by.get(&net) {
                    Some(action) => self.insert_list_entry(&net, *action),
                    None => self.remove_list_entry(&net),
                };
                if let Err(undo) = back {
                    tracing::error!("putting the lists back: {undo:#}");
                }
            }
            return Err(e);
        }
        let bits = list_bits(&wanted.allow, &wanted.deny);
        self.update_config_locked(|c| c.lists = bits)
    }

    /// Entries each trie holds, as the running program was loaded with.
    pub fn list_capacity(&self) -> Result<u32> {
        Ok(self
            .lists_v4
            .map()
            .info()
            .context("reading GUARD_LISTS_V4's size")?
            .max_entries())
    }

    fn insert_list_entry(&mut self, net: &IpNet, action: u8) -> Result<()> {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => self
                .lists_v4
                .insert(&Key::new(len, n.network().octets()), action, 0),
            IpNet::V6(n) => self
                .lists_v6
                .insert(&Key::new(len, n.network().octets()), action, 0),
        }
        .with_context(|| format!("adding {net} to the allow/deny lists"))
    }

    fn remove_list_entry(&mut self, net: &IpNet) -> Result<()> {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => self.lists_v4.remove(&Key::new(len, n.network().octets())),
            IpNet::V6(n) => self.lists_v6.remove(&Key::new(len, n.network().octets())),
        }
        .with_context(|| format!("removing {net} from the allow/deny lists"))
    }

    /// Makes the local-route tries hold `local` (the namespace's `local`
    /// routes, `host::local`) and the catch-alls ([`local_entries`]);
    /// `Ok(false)` when they held it already. The new answers go in before
    /// a route gone is taken out, so a destination that stays the host's is
    /// never taken for another's. If a write fails the catch-alls are
    /// taken out: every destination is then the host's, as before the
    /// tries were filled. Only the handle `guard run` loaded has them.
    pub fn set_local_routes(&mut self, local: &BTreeSet<IpNet>) -> Result<bool> {
        let tries = self
            .local
            .as_mut()
            .context("the local-route tries are only in the loading guard's handle")?;
        let wanted = local_entries(local);
        if wanted == tries.written {
            return Ok(false);
        }
        let mut changes: Vec<(IpNet, u8)> = wanted
            .iter()
            .filter(|(n, v)| tries.written.get(n) != Some(v))
            .map(|(n, v)| (*n, *v))
            .collect();
        changes.sort_by_key(|(_, v)| *v != ROUTE_LOCAL);
        let gone: Vec<IpNet> = tries
            .written
            .keys()
            .filter(|n| !wanted.contains_key(n))
            .copied()
            .collect();
        let result = changes
            .iter()
            .try_for_each(|(net, v)| tries.write(net, Some(*v)))
            .and_then(|()| gone.iter().try_for_each(|net| tries.write(net, None)));
        if let Err(e) = result {
            for net in ["0.0.0.0/0", "::/0"] {
                let _ = tries.write(&net.parse().expect("a prefix"), None);
            }
            tries.written.clear();
            return Err(e);
        }
        tries.written = wanted;
        Ok(true)
    }

    /// Writes the link-layer addresses whose frames are this namespace's
    /// (`model::devices`; none: every frame is). Returns whether the
    /// configuration changed.
    pub fn set_host_macs(&mut self, macs: &[Mac]) -> Result<bool> {
        let mut words = [0; HOST_MACS];
        let len = if macs.len() > HOST_MACS {
            0
        } else {
            for (w, mac) in words.iter_mut().zip(macs) {
                *w = mac_word(*mac);
            }
            macs.len()
        };
        let config = self.config()?;
        if config.host_macs_len as usize == len && config.host_macs == words {
            return Ok(false);
        }
        self.update_config(|c| {
            c.host_macs_len = len as u32;
            c.host_macs = words;
        })?;
        Ok(true)
    }

    /// Writes one port's `GUARD_PORTS` entry (0: no listener).
    pub fn write_port(&mut self, port: u16, entry: u32) -> Result<()> {
        self.ports
            .set(u32::from(port), entry, 0)
            .with_context(|| format!("writing port {port} into GUARD_PORTS"))
    }

    /// One port slot's counters, summed over the CPUs.
    pub fn port_counts(&self, slot: u32) -> Result<PortCounts> {
        let per_cpu = self
            .port_counts
            .get(&slot, 0)
            .with_context(|| format!("reading slot {slot} of GUARD_PORT_COUNTS"))?;
        let mut total = PortCounts::ZERO;
        for c in per_cpu.iter() {
            total.accumulate(c);
        }
        Ok(total)
    }

    /// The counters, summed over the CPUs.
    pub fn counters(&self) -> Result<CounterBlock> {
        Ok(CounterBlock::total(&self.counters_per_cpu()?))
    }

    /// Each CPU's counters, by CPU number (the program's
    /// `bpf_get_smp_processor_id`).
    pub fn counters_per_cpu(&self) -> Result<Vec<CounterBlock>> {
        let per_cpu = self.counters.get(&0, 0).context("reading GUARD_COUNTERS")?;
        Ok(per_cpu.iter().copied().collect())
    }

    /// Every source the program holds: those of `GUARD_SOURCES`, and the
    /// verified or banned ones a flood churned out of it, which `GUARD_MARKS`
    /// keeps (the program restores them at their next packet).
    pub fn sources(&self) -> Result<Vec<(SourceKey, SourceState)>> {
        let mut sources = used(&self.sources).context("reading GUARD_SOURCES")?;
        let held: std::collections::HashSet<SourceKey> = sources.iter().map(|(k, _)| *k).collect();
        for entry in &self.marks {
            let (key, marks) = entry.context("reading GUARD_MARKS")?;
            if !held.contains(&key) {
                sources.push((key, marks.state()));
            }
        }
        Ok(sources)
    }

    /// The slot of `key` in `GUARD_SOURCES`.
    pub fn source_slot(&self, key: &SourceKey) -> Result<u32> {
        Ok(self.slot_of(key, &self.config()?))
    }

    /// The same, with the configuration (its seed) already read.
    fn slot_of(&self, key: &SourceKey, config: &DataplaneConfig) -> u32 {
        slot_index(key, config.slot_seed, self.sources.len())
    }

    /// Every prefix the program remembers.
    pub fn prefixes(&self) -> Result<Vec<(SourceKey, SourceState)>> {
        used(&self.prefixes).context("reading GUARD_PREFIXES")
    }

    /// The global budget's buckets, by slot (GCRA state).
    pub fn global(&self) -> Result<Vec<u64>> {
        self.global
            .iter()
            .collect::<Result<_, _>>()
            .context("reading GUARD_GLOBAL")
    }

    /// Lifts the ban of the source holding `addr` (grouped as the program
    /// groups sources); returns the seconds that were left, if it was
    /// banned at `now_ns`.
    pub fn unban(&mut self, addr: IpAddr, now_ns: u64) -> Result<Unbanned> {
        let config = self.config()?;
        let key = match addr {
            IpAddr::V4(a) => SourceKey::v4(a.octets(), config.source_prefix_v4),
            IpAddr::V6(a) => SourceKey::v6(a.octets(), config.source_prefix_v6),
        };
        self.unban_keys(&[key], now_ns)?.pop().unwrap_or(Ok(None))
    }

    /// Lifts the bans of `keys` (keys as the program groups sources),
    /// under one lock and one mapping of the table: for each key, in
    /// order, the seconds that were left if it was banned at `now_ns`, or
    /// why it could not be lifted.
    pub fn unban_keys(&mut self, keys: &[SourceKey], now_ns: u64) -> Result<Vec<Result<Unbanned>>> {
        let _lock = self.write_lock()?;
        let config = self.config()?;
        let slots = Slots::map(&self.sources, true).context("mapping GUARD_SOURCES")?;
        let mut lifted = Vec::with_capacity(keys.len());
        for key in keys {
            let index = self.slot_of(key, &config);
            let left = self.lift(&slots, index, key, now_ns);
            lifted.push(left.map(|left| left.map(|left| (*key, left))));
        }
        Ok(lifted)
    }

    /// Whether each of `keys` is banned at `now_ns`, in its slot or its
    /// marks, under one mapping of the table.
    pub fn banned_keys(&self, keys: &[SourceKey], now_ns: u64) -> Result<Vec<bool>> {
        let slots = Slots::map(&self.sources, false).context("mapping GUARD_SOURCES")?;
        let config = self.config()?;
        keys.iter()
            .map(|key| Ok(self.ban_of(&slots, self.slot_of(key, &config), key)?.0 > now_ns))
            .collect()
    }

    /// When `key`'s ban ends (0: none), the later of its slot's, if slot
    /// `index` holds it, and its marks'; and its marks.
    fn ban_of(&self, slots: &Slots, index: u32, key: &SourceKey) -> Result<(u64, Option<Marks>)> {
        let slot = slots.get(index)?;
        let in_slot = if slot.key.same(key) {
            slot.state.banned_until_ns
        } else {
            0
        };
        let marks = match self.marks.get(key, 0) {
            Ok(marks) => Some(marks),
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(e).context("reading GUARD_MARKS"),
        };
        let until = in_slot.max(marks.map_or(0, |m| m.banned_until_ns));
        Ok((until, marks))
    }

    /// Lifts `key`'s ban (slot `index`); the seconds that were left.
    fn lift(
        &mut self,
        slots: &Slots,
        index: u32,
        key: &SourceKey,
        now_ns: u64,
    ) -> Result<Option<u64>> {
        let (until, marks) = self.ban_of(slots, index, key)?;
        if until <= now_ns {
            return Ok(None);
        }
        // Both copies: the one in GUARD_MARKS would ban it again once a
        // flood churned its GUARD_SOURCES entry out. The marks first: the
        // program may bring them back into the slot until they are
        // cleared, so the slot is cleared after, whoever held it before.
        if let Some(mut m) = marks {
            m.banned_until_ns = 0;
            self.marks
                .insert(key, m, 0)
                .context("writing GUARD_MARKS")?;
        }
        slots.clear_ban(index, key)?;
        Ok(Some((until - now_ns) / NANOS_PER_SEC))
    }
}

/// A table of slots (`GUARD_SOURCES`, `GUARD_PREFIXES`) through a shared
/// mapping (`BPF_F_MMAPABLE`): the program updates slots' buckets and
/// counters meanwhile, which a write of a whole slot (the map update
/// syscall) would put back to what was read.
struct Slots {
    mapping: Mapping,
    len: usize,
}

impl Slots {
    fn map(table: &Array<MapData, Slot>, writable: bool) -> Result<Self> {
        let len = usize::try_from(table.len())?;
        let mapping = Mapping::of(table.map().fd().as_fd(), len * size_of::<Slot>(), writable)?;
        Ok(Self { mapping, len })
    }

    fn at(&self, index: u32) -> Result<*mut Slot> {
        let i = usize::try_from(index)?;
        anyhow::ensure!(i < self.len, "slot {i} of {}", self.len);
        // SAFETY: slot i lies inside the mapping: the array's values start
        // at its offset 0, each `size_of::<Slot>()` bytes (a multiple of
        // 8, the kernel's stride).
        Ok(unsafe { self.mapping.0.cast::<Slot>().cast_mut().add(i) })
    }

    /// Slot `index`, read volatile: the program writes it meanwhile.
    fn get(&self, index: u32) -> Result<Slot> {
        // SAFETY: `at` checked the index; a slot read mid-write is a
        // statistic a moment old, as a syscall's copy would be.
        Ok(unsafe { self.at(index)?.read_volatile() })
    }

    /// Clears the ban fields of slot `index`, if it holds `key`. Each
    /// field is written alone, volatile, as the program writes them
    /// (plain stores: a lost update between the two is a ban statistic,
    /// `SourceState` says why that is harmless).
    fn clear_ban(&self, index: u32, key: &SourceKey) -> Result<()> {
        let slot = self.at(index)?;
        // SAFETY: `at` checked the index; the mapping is writable (only
        // `unban_keys` clears).
        unsafe {
            if !(&raw const (*slot).key).read_volatile().same(key) {
                return Ok(());
            }
            (&raw mut (*slot).state.banned_until_ns).write_volatile(0);
            (&raw mut (*slot).state.window_drops).write_volatile(0);
            (&raw mut (*slot).state.limited).write_volatile(0);
        }
        Ok(())
    }
}

impl Dataplane {
    /// The words of `GUARD_MARKED`, both halves, through a shared mapping:
    /// the program sets bits in them meanwhile, with atomic ORs.
    fn with_marked<R>(&self, f: impl FnOnce(&[AtomicU64]) -> R) -> Result<R> {
        let words = MARKED_ENTRIES as usize;
        let mapping = Mapping::of(
            self.marked.map().fd().as_fd(),
            words * size_of::<u64>(),
            true,
        )
        .context("mapping GUARD_MARKED")?;
        // SAFETY: the mapping holds `words` u64s (an array's values start
        // at its offset 0, 8 bytes each) and outlives `f`; AtomicU64 has
        // u64's layout, and every writer (the program, this) writes them
        // atomically.
        let words = unsafe { std::slice::from_raw_parts(mapping.0.cast::<AtomicU64>(), words) };
        Ok(f(words))
    }

    /// Whether `key`'s bit is set in the half of `GUARD_MARKED` the
    /// program reads.
    pub fn marked(&self, key: &SourceKey) -> Result<bool> {
        let read = half_start(self.config()?.marked_half) as usize;
        let (word, bit) = marked_bit(key);
        self.with_marked(|w| w[read + word as usize].load(Ordering::Relaxed) & bit != 0)
    }

    /// Sets `key`'s bit in the half of `GUARD_MARKED` the program reads,
    /// or clears it, as the program never does: for tests that show what
    /// the bit decides.
    pub fn set_marked(&self, key: &SourceKey, on: bool) -> Result<()> {
        let read = half_start(self.config()?.marked_half) as usize;
        let (word, bit) = marked_bit(key);
        self.with_marked(|w| {
            let w = &w[read + word as usize];
            if on {
                w.fetch_or(bit, Ordering::Relaxed);
            } else {
                w.fetch_and(!bit, Ordering::Relaxed);
            }
        })
    }

    /// Sets every bit of both halves: every source is then looked up in
    /// `GUARD_MARKS` (the bench's contrast, the refresh tests' start).
    pub fn mark_all(&self) -> Result<()> {
        self.with_marked(|w| {
            for x in w {
                x.store(u64::MAX, Ordering::Relaxed);
            }
        })
    }

    /// When the half of `GUARD_MARKED` the program reads has
    /// [`REFRESH_AT_BITS`] set, rebuilds the other from the marks in force
    /// at `now_ns` (CLOCK_MONOTONIC) and switches the program to it
    /// (`guard_common::marked` says why no mark made meanwhile is lost).
    /// Returns the bits set in the half read before and after, if it did.
    pub fn refresh_marked(&mut self, now_ns: u64) -> Result<Option<(u64, u64)>> {
        // Only this switches halves: the lock is taken only for a rebuild,
        // not at every tick's count.
        let read = half_start(self.config()?.marked_half) as usize;
        let other = MARKED_WORDS as usize - read;
        let before = self.with_marked(|w| ones(&w[read..read + MARKED_WORDS as usize]))?;
        if before < REFRESH_AT_BITS {
            return Ok(None);
        }
        let _lock = self.write_lock()?;
        self.with_marked(|w| {
            for x in &w[other..other + MARKED_WORDS as usize] {
                x.store(0, Ordering::Relaxed);
            }
        })?;
        // The clear before the read of the marks: a mark the read misses
        // set its bit after the clear.
        std::sync::atomic::fence(Ordering::SeqCst);
        // Marks that ended less than a second ago are kept: the program's
        // coarse clock may be a jiffy behind this one.
        let horizon = now_ns.saturating_sub(NANOS_PER_SEC);
        let mut in_force = Vec::new();
        for entry in &self.marks {
            let (key, m) = entry.context("reading GUARD_MARKS")?;
            if m.verified_until_ns > horizon || m.banned_until_ns > horizon {
                in_force.push(key);
            }
        }
        let after = self.with_marked(|w| {
            for key in &in_force {
                let (word, bit) = marked_bit(key);
                w[other + word as usize].fetch_or(bit, Ordering::Relaxed);
            }
            ones(&w[other..other + MARKED_WORDS as usize])
        })?;
        self.update_config_locked(|c| c.marked_half = u32::from(c.marked_half == 0))?;
        Ok(Some((before, after)))
    }
}

/// Bits set in `words`.
fn ones(words: &[AtomicU64]) -> u64 {
    words
        .iter()
        .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
        .sum()
}

/// The keys and states of a table's used slots, read through a read-only
/// mapping of the table (`BPF_F_MMAPABLE`): one syscall per slot would
/// take a quarter of a second for the default 131,072.
fn used(table: &Array<MapData, Slot>) -> Result<Vec<(SourceKey, SourceState)>> {
    let slots = Slots::map(table, false)?;
    let mut entries = Vec::new();
    for i in 0..table.len() {
        let slot = slots.get(i)?;
        if slot.used() {
            entries.push((slot.key, slot.state));
        }
    }
    Ok(entries)
}

/// A shared mapping of a BPF map's values, unmapped on drop.
struct Mapping(*const libc::c_void, usize);

impl Mapping {
    /// `len` bytes of the map behind `fd`, read-only unless `writable`.
    fn of(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of `len` bytes of the map; the kernel
        // checks `len` against the map's size.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the table");
        }
        Ok(Self(p, len))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `of`, unmapped once.
        unsafe { libc::munmap(self.0.cast_mut(), self.1) };
    }
}

/// Adds the entries of one trie (IPv4 or IPv6 keys) to `lists`.
fn read_trie<K: aya::Pod + Into<IpAddr>>(
    trie: &LpmTrie<MapData, K, u8>,
    lists: &mut Lists,
) -> Result<()> {
    for entry in trie {
        let (key, action) = entry?;
        let net = IpNet::new(key.data().into(), u8::try_from(key.prefix_len())?)?;
        match action {
            LIST_DENY => lists.deny.push(net),
            _ => lists.allow.push(net),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> BTreeSet<IpNet> {
        list.iter().map(|n| n.parse().expect("a prefix")).collect()
    }

    /// The host's routes say local, anything else elsewhere; a `local`
    /// route with host bits (as the kernel never writes, but a trie key
    /// must not have) is taken by its network.
    #[test]
    fn local_routes_and_the_catch_alls() {
        let entries = local_entries(&nets(&[
            "198.18.0.1/32",
            "198.18.5.7/24",
            "2001:db8::1/128",
        ]));
        let expect: BTreeMap<IpNet, u8> = [
            ("0.0.0.0/0", ROUTE_ELSEWHERE),
            ("::/0", ROUTE_ELSEWHERE),
            ("198.18.0.1/32", ROUTE_LOCAL),
            ("198.18.5.0/24", ROUTE_LOCAL),
            ("2001:db8::1/128", ROUTE_LOCAL),
        ]
        .into_iter()
        .map(|(n, v)| (n.parse().expect("a prefix"), v))
        .collect();
        assert_eq!(entries, expect);
    }

    /// `ip route add local 0.0.0.0/0 dev lo` makes every IPv4 destination
    /// the host's: the /0 says so, and IPv6 keeps its catch-all.
    #[test]
    fn a_local_default_route_is_the_hosts() {
        let entries = local_entries(&nets(&["0.0.0.0/0"]));
        assert_eq!(
            entries[&"0.0.0.0/0".parse().expect("a prefix")],
            ROUTE_LOCAL
        );
        assert_eq!(entries[&"::/0".parse().expect("a prefix")], ROUTE_ELSEWHERE);
    }
}
