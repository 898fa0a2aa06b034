//! Every map of the program. Names and value types come from guard-common
//! (`guard_common::maps`), which the loader uses too.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use guard_common::{
    CounterBlock, DataplaneConfig, Marks, PortCounts, SourceKey, SynAckKey,
    cookie::SYNACK_MAX_OPTIONS,
    dissect::{IPV6_HLEN, TCP_MIN_HLEN},
    fingerprint::SigTable,
    flows::{FlowSet, FlowSet6, flow_sets, flow_tag_lines},
    maps::{
        DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, DEFAULT_MAX_UDP_FLOWS,
        EVENTS_BYTES, MAX_LOCAL_ROUTES, MAX_MARKS, MAX_SYNACKS, SAMPLES_BYTES,
    },
    marked::MARKED_ENTRIES,
    ports::{PORT_ENTRIES, PORT_SLOTS},
    slots::{Slot, TagLine, tag_lines},
    state::GLOBAL_SLOTS,
};

use crate::packet::Words;

#[map(name = "GUARD_COUNTERS")]
pub static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "GUARD_CONFIG")]
pub static CONFIG: Array<DataplaneConfig> = Array::with_max_entries(1, 0);

// Both tables are mappable: `guard stats` and metrics read every slot,
// which one syscall per slot would take a quarter of a second to do.
#[map(name = "GUARD_SOURCES")]
pub static SOURCES: Array<Slot> = Array::with_max_entries(DEFAULT_MAX_SOURCES, BPF_F_MMAPABLE);

#[map(name = "GUARD_MARKS")]
pub static MARKS: LruHashMap<SourceKey, Marks> = LruHashMap::with_max_entries(MAX_MARKS, 0);

#[map(name = "GUARD_MARKED")]
// Mappable: `guard run` clears and sets bits of the half it rebuilds with
// atomic operations, which another CPU's atomic OR here does not undo.
pub static MARKED: Array<u64> = Array::with_max_entries(MARKED_ENTRIES, BPF_F_MMAPABLE);

#[map(name = "GUARD_PREFIXES")]
pub static PREFIXES: Array<Slot> = Array::with_max_entries(DEFAULT_MAX_PREFIXES, BPF_F_MMAPABLE);

// The sources' tags (`guard_common::slots::TagLine`), read before a slot.
#[map(name = "GUARD_SOURCE_TAGS")]
pub static SOURCE_TAGS: Array<TagLine> = Array::with_max_entries(tag_lines(DEFAULT_MAX_SOURCES), 0);

// The kernel requires BPF_F_NO_PREALLOC for LPM tries.
#[map(name = "GUARD_LISTS_V4")]
pub static LISTS_V4: LpmTrie<[u8; 4], u8> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "GUARD_LISTS_V6")]
pub static LISTS_V6: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "GUARD_LOCAL_V4")]
pub static LOCAL_V4: LpmTrie<[u8; 4], u8> =
    LpmTrie::with_max_entries(MAX_LOCAL_ROUTES, BPF_F_NO_PREALLOC);

#[map(name = "GUARD_LOCAL_V6")]
pub static LOCAL_V6: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(MAX_LOCAL_ROUTES, BPF_F_NO_PREALLOC);

#[map(name = "GUARD_GLOBAL")]
pub static GLOBAL: Array<u64> = Array::with_max_entries(GLOBAL_SLOTS, 0);

#[map(name = "GUARD_PORTS")]
pub static PORTS: Array<u32> = Array::with_max_entries(PORT_ENTRIES, 0);

#[map(name = "GUARD_PORT_COUNTS")]
pub static PORT_COUNTS: PerCpuArray<PortCounts> = PerCpuArray::with_max_entries(PORT_SLOTS, 0);

#[map(name = "GUARD_UDP_FLOWS")]
pub static UDP_FLOWS: Array<FlowSet6> =
    Array::with_max_entries(flow_sets(DEFAULT_MAX_UDP_FLOWS), 0);

#[map(name = "GUARD_UDP_FLOW4")]
pub static UDP_FLOWS4: Array<FlowSet> =
    Array::with_max_entries(flow_sets(DEFAULT_MAX_UDP_FLOWS), 0);

// The flows' tags (`guard_common::flows`), read before a set.
#[map(name = "GUARD_UDP4_TAGS")]
pub static UDP_TAGS4: Array<TagLine> =
    Array::with_max_entries(flow_tag_lines(flow_sets(DEFAULT_MAX_UDP_FLOWS)), 0);

#[map(name = "GUARD_UDP_TAGS")]
pub static UDP_TAGS: Array<TagLine> =
    Array::with_max_entries(flow_tag_lines(flow_sets(DEFAULT_MAX_UDP_FLOWS)), 0);

#[map(name = "GUARD_SYNACKS")]
pub static SYNACKS: LruHashMap<SynAckKey, u32> = LruHashMap::with_max_entries(MAX_SYNACKS, 0);

#[map(name = "GUARD_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "GUARD_SIGS")]
pub static SIGS: Array<SigTable> = Array::with_max_entries(1, 0);

#[map(name = "GUARD_SAMPLES")]
pub static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLES_BYTES, 0);

#[map(name = "GUARD_TEST_CLOCK")]
pub static TEST_CLOCK_NS: Array<u64> = Array::with_max_entries(1, 0);

/// The longest IP + TCP part of a SYN-ACK.
pub const MAX_L34: usize = IPV6_HLEN + TCP_MIN_HLEN + SYNACK_MAX_OPTIONS;

/// This CPU's working space: header copies for the SYN-cookie path (see
/// `cookie.rs`), the sample budget, the clock's reading, the verdict's
/// keys and the route lookup's parameters.
#[repr(C)]
pub struct Scratch {
    /// The SYN's (or ACK's) TCP header.
    pub syn: Words<{ guard_common::cookie::TCP_MAX_HLEN }>,
    /// Its IP header.
    pub ip: Words<IPV6_HLEN>,
    /// The SYN-ACK's IP and TCP headers, as built.
    pub out: Words<MAX_L34>,
    /// The SYN-ACK's TCP options.
    pub opts: [u8; SYNACK_MAX_OPTIONS],
    /// This CPU's sample budget (`fingerprint.rs`).
    pub samples: SampleBudget,
    /// This CPU's reading of the clock (`clock.rs`).
    pub clock: crate::tick_clock::TickClock,
    /// The source's key and a datagram's flow's in the verdict
    /// (`verdict.rs`): on the stack they would pass the verifier's 512
    /// bytes.
    pub source: SourceKey,
    pub flow: crate::flows::FlowPlace,
    /// The SYN-ACK an ACK answers, looked up in `GUARD_SYNACKS`.
    pub synack: SynAckKey,
    /// This CPU's socket lookups for the ACK check, and for SYNs to a
    /// cookie port from sources not verified lately (`verdict.rs`).
    pub ack_lookups: LookupBudget,
    pub syn_lookups: LookupBudget,
    /// The FIB lookups and their answers (`route.rs`).
    pub routes: crate::route::Routes,
}

#[repr(C)]
pub struct LookupBudget {
    /// The second (CLOCK_MONOTONIC_COARSE) the count is of.
    pub second: u64,
    pub used: u64,
}

#[repr(C)]
pub struct SampleBudget {
    /// The second (CLOCK_MONOTONIC_COARSE) the counts are of.
    pub second: u64,
    pub new: u32,
    pub contrast: u32,
}

#[map(name = "GUARD_SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
