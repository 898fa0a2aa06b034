//! Values of the per-source maps and the events the XDP program sends.

use crate::{
    config::{BUDGETS, FLOW_CLASSES},
    key::SourceKey,
};

/// State of one source (or one prefix) in `GUARD_SOURCES` /
/// `GUARD_PREFIXES`. Prefix entries use only the buckets and statistics.
///
/// The buckets are exact for a source its slot holds: they change only by
/// atomic instructions (compare-and-swap, or an atomic add while not full),
/// but for the fresh state of a slot taken over (plain stores: a race
/// there leaves the bucket fresh, `take_over` in the program). The
/// statistics are plain increments (an atomic add costs more than the rest
/// of a known source's path): two CPUs counting the same source in the same
/// instant can lose one count. Every new flow that reaches a tier ends
/// there as passed or dropped, so `passed + dropped` is its new flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Bucket state (GCRA TAT) per [`crate::config::FlowClass`]; taken from
    /// atomically (the XDP program's `verdict::take`).
    pub tat: [u64; FLOW_CLASSES],
    /// New flows passed (in monitor mode: that would have passed).
    pub passed: u64,
    /// New flows dropped (in monitor mode: that would have been dropped).
    pub dropped: u64,
    /// Time of the last new flow (CLOCK_MONOTONIC_COARSE, in ns).
    pub last_seen_ns: u64,
    /// Start of the current ban-accounting window.
    pub window_start_ns: u64,
    /// Over-limit drops in the current window.
    pub window_drops: u32,
    /// 1 from the first over-limit drop until the next admission: a
    /// "limited" event is sent once per episode, not once per packet.
    pub limited: u32,
    /// Banned until this time (0: not banned).
    pub banned_until_ns: u64,
    /// Verified until this time: the source completed a SYN-cookie
    /// handshake or sent an ACK of a connection this host knows, so it is
    /// a real host; its new flows skip the global budget (never the
    /// source's own limits) until then.
    pub verified_until_ns: u64,
}

impl SourceState {
    /// New flows from this source: every one was either passed or dropped.
    #[must_use]
    pub const fn new_flows(&self) -> u64 {
        self.passed.wrapping_add(self.dropped)
    }

    /// Whether the source went over its own limit within the ban window
    /// of `window_ns`: its over-limit drops are still counted in the
    /// current window (a ban starts the count again).
    #[must_use]
    #[inline(always)]
    pub const fn over_limit_within(&self, window_ns: u64, now: u64) -> bool {
        self.window_drops != 0 && now.saturating_sub(self.window_start_ns) <= window_ns
    }

    /// A source seen for the first time: full buckets, no history.
    pub const ZERO: Self = Self {
        tat: [0; FLOW_CLASSES],
        passed: 0,
        dropped: 0,
        last_seen_ns: 0,
        window_start_ns: 0,
        window_drops: 0,
        limited: 0,
        banned_until_ns: 0,
        verified_until_ns: 0,
    };
}

/// What must outlive a source's slot in `GUARD_SOURCES`, which a flood of
/// new sources takes over: until when it is verified and banned. Written
/// when either is set; read back when the source takes a slot again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub verified_until_ns: u64,
    pub banned_until_ns: u64,
}

impl Marks {
    /// The state of a source known by its marks alone: fresh buckets and
    /// counters, its verification and ban.
    #[must_use]
    pub const fn state(&self) -> SourceState {
        SourceState {
            verified_until_ns: self.verified_until_ns,
            banned_until_ns: self.banned_until_ns,
            ..SourceState::ZERO
        }
    }
}

/// Indices of the `GUARD_GLOBAL` array: bucket states shared by all CPUs.
/// The global budget's bucket `b` (of [`crate::config::BUDGETS`]: a
/// [`crate::config::FlowClass`]'s index, or a closed ports' bucket) is at
/// `GLOBAL_BUDGET + b`.
pub const GLOBAL_BUDGET: u32 = 0;
pub const GLOBAL_EVENTS: u32 = BUDGETS as u32;
/// The RST budget of `reject = "rst"`.
pub const GLOBAL_RST: u32 = GLOBAL_EVENTS + 1;
pub const GLOBAL_SLOTS: u32 = GLOBAL_RST + 1;

/// [`Event::kind`] values.
pub const EVENT_LIMITED: u32 = 1;
pub const EVENT_BANNED: u32 = 2;

/// A ring-buffer record: a source started being limited, or was banned.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    /// The [`crate::config::FlowClass`] whose limit it exceeded.
    pub class: u32,
    pub source: SourceKey,
    /// 1 when the program made it in monitor mode: it passed what it would
    /// have dropped, and a ban is not carried out beyond the program's
    /// counters (the source's conntrack entries stay, the fleet is not
    /// told).
    pub monitor: u32,
    pub time_ns: u64,
    /// For [`EVENT_BANNED`]: when the ban ends.
    pub banned_until_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers and byte arrays only, no implicit padding
    // (sizes checked below).
    unsafe impl aya::Pod for super::SourceState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Marks {}
}

const _: () = assert!(size_of::<SourceState>() == 88);
const _: () = assert!(size_of::<Event>() == 48);
const _: () = assert!(size_of::<Marks>() == 16);
