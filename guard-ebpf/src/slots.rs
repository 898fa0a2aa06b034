//! Finding and taking over slots of the direct-mapped tables
//! (`guard_common::slots` says why they are arrays).

use aya_ebpf::maps::Array;
use guard_common::{
    SourceKey, SourceState,
    maps::{DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES},
    slots::{Slot, slot_index},
};

use crate::maps::{PREFIXES, SOURCES};

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

impl Table {
    #[inline(always)]
    fn slot(self, key: &SourceKey, seed: u64) -> Option<*mut Slot> {
        // SAFETY: reading plain statics; volatile so the compiler does not
        // fold the values the loader patches.
        let (map, entries): (&Array<Slot>, u32) = match self {
            Self::Sources => (&SOURCES, unsafe {
                core::ptr::read_volatile(&raw const SOURCE_SLOTS)
            }),
            Self::Prefixes => (&PREFIXES, unsafe {
                core::ptr::read_volatile(&raw const PREFIX_SLOTS)
            }),
        };
        map.get_ptr_mut(slot_index(key, seed, entries))
    }

    /// `key`'s slot: `Ok` with the key's state when the slot holds it,
    /// `Err` with the slot when it holds another key (or none), for
    /// [`take_over`].
    #[inline(always)]
    pub fn lookup(self, key: &SourceKey, seed: u64) -> Option<Result<*mut SourceState, *mut Slot>> {
        let slot = self.slot(key, seed)?;
        // SAFETY: a map value of the table, valid for this run.
        Some(if unsafe { &(*slot).key }.same(key) {
            Ok(unsafe { &raw mut (*slot).state })
        } else {
            Err(slot)
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
            Err(slot) => (take_over(slot, key), true),
        })
    }
}

/// `slot`, which [`Table::lookup`] found holding another key, taken over
/// for `key`: the key written, the state zeroed. Two CPUs taking one slot
/// at once may mix their writes: the state is a rate limiter's, which such
/// a race leaves fresh.
#[inline(always)]
pub fn take_over(slot: *mut Slot, key: &SourceKey) -> *mut SourceState {
    // SAFETY: a map value of the table, valid for this run; other CPUs
    // may write it meanwhile (see above).
    let slot = unsafe { &mut *slot };
    // Through words: a plain copy from the per-CPU scratch value, which
    // may alias the slot as far as LLVM knows, is a byte-wise `memmove`.
    slot.key = SourceKey::from_words(key.words());
    clear(&mut slot.state);
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
