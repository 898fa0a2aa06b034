//! The benchmark's floor for a limiter with guard's state: what any XDP
//! program pays that keeps an exact bucket per source and per prefix and a
//! global one, with nothing else. For an IPv4 TCP frame without VLAN tags
//! it reads the source address at its fixed offset, looks up the source's
//! entry and the /24's in LRU hashes of guard's key and value types
//! (inserting them the first time), or with [`ARRAY`] in direct-mapped
//! slots as guard keeps them now, and takes a token from each of the
//! three buckets by compare-and-swap. No parsing, no counters, no config,
//! no clock but guard's (the coarse clock, read once a jiffy per CPU).
//! `cargo xtask bench` reports it beside guard's known-source SYN: the part
//! of guard's cost that is its state, and, with [`PARTS`], how that part
//! divides.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

// guard's own compare-and-swap.
#[path = "../atomic.rs"]
#[expect(dead_code, reason = "the floor sets no marked bits: no `or`")]
mod atomic;
#[path = "../tick_clock.rs"]
mod tick_clock;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use guard_common::{
    SourceKey, SourceState,
    config::FLOW_CLASSES,
    floor::{ARRAY, CAS, COARSE, NO_CLOCK, NO_LOOKUP, PLAIN, PREFIX},
    slots::{Slot, slot_index},
};
use tick_clock::TickClock;

/// What the program does, set by the loader (.rodata, a constant to the
/// verifier): the bits of `guard_common::floor`.
#[unsafe(no_mangle)]
static PARTS: u8 = PREFIX | CAS;

/// The first bucket of `key`'s entry in `$map`, created if missing: the
/// same code for the LRU and the plain hash, which share no trait.
macro_rules! bucket_of {
    ($map:expr, $key:expr) => {{
        let p = match $map.get_ptr_mut($key) {
            Some(p) => Some(p),
            None => {
                let _ = $map.insert($key, &SourceState::ZERO, u64::from(BPF_NOEXIST));
                $map.get_ptr_mut($key)
            }
        };
        // SAFETY: a map value, valid for this run.
        p.map(|p| unsafe { &raw mut (*p).tat[0] })
    }};
}

/// Entries of each kind of table: sources and prefixes.
const SOURCE_ENTRIES: u32 = 65_536;
const PREFIX_ENTRIES: u32 = 16_384;

#[map(name = "FLOOR_SOURCES")]
static SOURCES: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(SOURCE_ENTRIES, 0);

#[map(name = "FLOOR_PREFIXES")]
static PREFIXES: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(PREFIX_ENTRIES, 0);

#[map(name = "FLOOR_SLOT_SOURCES")]
static SLOT_SOURCES: Array<Slot> = Array::with_max_entries(SOURCE_ENTRIES, 0);

#[map(name = "FLOOR_SLOT_PREFIXES")]
static SLOT_PREFIXES: Array<Slot> = Array::with_max_entries(PREFIX_ENTRIES, 0);

/// The first bucket of `key`'s slot, as guard finds it
/// (`guard_common::slots`), taken over when it holds another key.
#[inline(always)]
fn slot_bucket(map: &Array<Slot>, key: &SourceKey, entries: u32) -> Option<*mut u64> {
    // SAFETY: a map value, valid for this run.
    let slot = unsafe { &mut *map.get_ptr_mut(slot_index(key, 0, entries))? };
    if !slot.key.same(key) {
        slot.key = *key;
        slot.state.tat = [0; FLOW_CLASSES];
    }
    Some(&raw mut slot.state.tat[0])
}

#[map(name = "FLOOR_PLAIN_SOURCES")]
static PLAIN_SOURCES: HashMap<SourceKey, SourceState> =
    HashMap::with_max_entries(SOURCE_ENTRIES, 0);

#[map(name = "FLOOR_PLAIN_PREFIXES")]
static PLAIN_PREFIXES: HashMap<SourceKey, SourceState> =
    HashMap::with_max_entries(PREFIX_ENTRIES, 0);

/// This CPU's jiffy and the coarse clock read in it, as guard keeps them.
#[map(name = "FLOOR_CLOCK")]
static CLOCK: PerCpuArray<TickClock> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "FLOOR_GLOBAL")]
static GLOBAL: Array<u64> = Array::with_max_entries(1, 0);

/// One token a microsecond: never binds in the bench.
const INTERVAL_NS: u64 = 1_000;

#[xdp]
pub fn floor(ctx: XdpContext) -> u32 {
    // SAFETY: reading a plain static; volatile so the compiler does not
    // fold the value the loader patches.
    let parts = unsafe { core::ptr::read_volatile(&raw const PARTS) };
    // Ethernet (14) then IPv4: the source address at 26.
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 30 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked above.
    let src = unsafe { *((start + 26) as *const [u8; 4]) };
    let now = if parts & NO_CLOCK != 0 {
        1
    } else if parts & COARSE != 0 {
        // SAFETY: a helper with no arguments.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        cached_clock()
    };
    let (source, prefix) = (SourceKey::v4(src, 32), SourceKey::v4(src, 24));
    if parts & NO_LOOKUP != 0 {
        // Kept, so the compiler cannot leave out what came before.
        return if source.addr[0] == prefix.addr[1] && now == 0 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        };
    }
    let bucket = |prefix: bool, key: &SourceKey| {
        if parts & ARRAY != 0 {
            if prefix {
                slot_bucket(&SLOT_PREFIXES, key, PREFIX_ENTRIES)
            } else {
                slot_bucket(&SLOT_SOURCES, key, SOURCE_ENTRIES)
            }
        } else if parts & PLAIN != 0 {
            if prefix {
                bucket_of!(PLAIN_PREFIXES, key)
            } else {
                bucket_of!(PLAIN_SOURCES, key)
            }
        } else if prefix {
            bucket_of!(PREFIXES, key)
        } else {
            bucket_of!(SOURCES, key)
        }
    };
    let take = |p: Option<*mut u64>| p.is_some_and(|p| parts & CAS == 0 || take(p, now));
    let admitted = take(bucket(false, &source))
        && (parts & PREFIX == 0 || take(bucket(true, &prefix)))
        && (parts & CAS == 0 || take(GLOBAL.get_ptr_mut(0)));
    if admitted {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// The coarse clock as guard reads it: its helper once a jiffy per CPU.
#[inline(always)]
fn cached_clock() -> u64 {
    match CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's value; XDP is not preempted.
        Some(c) => unsafe { (*c).now() },
        // SAFETY: a helper with no arguments.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// A GCRA bucket's token, by compare-and-swap.
#[inline(always)]
fn take(p: *mut u64, now: u64) -> bool {
    // SAFETY: p points to a u64 in a map value; other CPUs write it.
    let seen = unsafe { core::ptr::read_volatile(p) };
    let next = if seen > now { seen } else { now } + INTERVAL_NS;
    // SAFETY: as above.
    unsafe { atomic::cmpxchg(p, seen, next) == seen }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
