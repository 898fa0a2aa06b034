//! Finding and taking over slots of the direct-mapped tables
//! (`guard_common::slots` says why they are arrays, and why a source's
//! slot has its tag kept apart while a prefix's has none).

use aya_ebpf::maps::Array;
use guard_common::{
    SourceKey, SourceState,
    maps::{DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES},
    slots::{Slot, TAGS_PER_LINE, TagLine, slot_place},
};

use crate::maps::{PREFIXES, SOURCE_TAGS, SOURCES};

/// The tables' sizes, set by the loader with their `max_entries` (.rodata:
/// constants to the verifier and the JIT).
#[unsafe(no_mangle)]
static SOURCE_SLOTS: u32 = DEFAULT_MAX_SOURCES;
#[unsafe(no_mangle)]
static PREFIX_SLOTS: u32 = DEFAULT_MAX_PREFIXES;

/// `GUARD_SOURCES` or `GUARD_PREFIXES`.
#[derive(Clone, Copy)]
pub enum Table {
    Sources,
    Prefixes,
}

/// A key's slot, where the slot's tag is (null: a table without tags),
/// and the key's tag: what [`take_over`] needs of a slot that holds
/// another key (or none).
pub struct Place {
    slot: *mut Slot,
    tag: *mut u16,
    value: u16,
}

impl Table {
    /// `key`'s slot, its tag's place and the key's tag. The slot's memory
    /// is not read here.
    #[inline(always)]
    fn place(self, key: &SourceKey, seed: u64) -> Option<Place> {
        // SAFETY: reading plain statics; volatile so the compiler does not
        // fold the values the loader patches.
        let (map, tags, entries): (&Array<Slot>, Option<&Array<TagLine>>, u32) = match self {
            Self::Sources => (&SOURCES, Some(&SOURCE_TAGS), unsafe {
                core::ptr::read_volatile(&raw const SOURCE_SLOTS)
            }),
            Self::Prefixes => (&PREFIXES, None, unsafe {
                core::ptr::read_volatile(&raw const PREFIX_SLOTS)
            }),
        };
        let (index, value) = slot_place(key, seed, entries);
        let tag = match tags {
            Some(tags) => {
                let line = tags.get_ptr_mut(index / TAGS_PER_LINE)?;
                // SAFETY: a map value of the tag array, valid for this
                // run; the index is masked into the line.
                unsafe { &raw mut (*line).tags[(index % TAGS_PER_LINE) as usize] }
            }
            None => core::ptr::null_mut(),
        };
        Some(Place {
            slot: map.get_ptr_mut(index)?,
            tag,
            value,
        })
    }

    /// `key`'s slot: `Ok` with the key's state when the slot holds it,
    /// `Err` when it holds another key (or none), for [`take_over`]. A
    /// slot with a tag is read only when its tag is the key's.
    #[inline(always)]
    pub fn lookup(self, key: &SourceKey, seed: u64) -> Option<Result<*mut SourceState, Place>> {
        let place = self.place(key, seed)?;
        // SAFETY: map values, valid for this run; volatile because other
        // CPUs write the tag.
        let held = (place.tag.is_null()
            || unsafe { core::ptr::read_volatile(place.tag) } == place.value)
            && unsafe { &(*place.slot).key }.same(key);
        Some(if held {
            // SAFETY: as above.
            Ok(unsafe { &raw mut (*place.slot).state })
        } else {
            Err(place)
        })
    }

    /// `key`'s state, if its slot holds it.
    #[inline(always)]
    pub fn find(self, key: &SourceKey, seed: u64) -> Option<*mut SourceState> {
        self.lookup(key, seed)?.ok()
    }

    /// `key`'s state, its slot taken over unless it holds `key` already;
    /// and whether it was taken over.
    #[inline(always)]
    pub fn claim(self, key: &SourceKey, seed: u64) -> Option<(*mut SourceState, bool)> {
        Some(match self.lookup(key, seed)? {
            Ok(state) => (state, false),
            Err(place) => (take_over(&place, key), true),
        })
    }
}

/// The slot of `place`, which [`Table::lookup`] found holding another
/// key, taken over for `key`: the key and its tag written, the state
/// zeroed. Two CPUs taking one slot at once may mix their writes: the
/// state is a rate limiter's, which such a race leaves fresh, and a tag
/// left not matching the key only makes the next packet take the slot
/// over again.
#[inline(always)]
pub fn take_over(place: &Place, key: &SourceKey) -> *mut SourceState {
    // SAFETY: a map value of the table, valid for this run; other CPUs
    // may write it meanwhile (see above).
    let slot = unsafe { &mut *place.slot };
    // Word by word, volatile: a plain copy from the per-CPU scratch value,
    // which may alias the slot as far as LLVM knows, is a byte-wise
    // `memmove`.
    let dst = (&raw mut slot.key).cast::<u32>();
    for (i, word) in key.words().into_iter().enumerate() {
        // SAFETY: the key's five words, in the slot; SourceKey is aligned
        // to 4 (`guard_common::key`).
        unsafe { core::ptr::write_volatile(dst.add(i), word) };
    }
    clear(&mut slot.state);
    if !place.tag.is_null() {
        // SAFETY: a u16 of the tag array, valid for this run.
        unsafe { core::ptr::write_volatile(place.tag, place.value) };
    }
    &raw mut slot.state
}

/// Fresh state, field by field, with volatile stores: LLVM would merge
/// plain ones into a call to a byte-wise `memset` (the BPF target has no
/// other), which also costs stack the verdict does not have.
#[inline(always)]
fn clear(st: &mut SourceState) {
    let zero = |p: *mut u64| {
        // SAFETY: `p` points into `st`, a slot's state.
        unsafe { core::ptr::write_volatile(p, 0) }
    };
    for tat in &mut st.tat {
        zero(tat);
    }
    zero(&raw mut st.passed);
    zero(&raw mut st.dropped);
    zero(&raw mut st.last_seen_ns);
    zero(&raw mut st.window_start_ns);
    // The two u32 counters together.
    // SAFETY: `window_drops` and `limited` are adjacent u32s at an 8-byte
    // offset of a repr(C) struct (`guard_common::state` checks the size).
    zero((&raw mut st.window_drops).cast::<u64>());
    zero(&raw mut st.banned_until_ns);
    zero(&raw mut st.verified_until_ns);
}
