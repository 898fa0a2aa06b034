//! The time limits are measured in.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::{SCRATCH, TEST_CLOCK_NS};

/// Set to 1 by the loader only for the differential tests: time then comes
/// from the `GUARD_TEST_CLOCK` map, which the test sets before each packet,
/// so the program and the reference model see the same instants. It lives
/// in .rodata, which the kernel freezes: for the verifier it is a constant,
/// and in production the branch below is removed before the JIT.
#[unsafe(no_mangle)]
static TEST_CLOCK: u8 = 0;

/// CLOCK_MONOTONIC_COARSE in nanoseconds: it advances once a jiffy (1 to
/// 4 ms), and costs a fraction of the precise clock (about 24 ns less per
/// new flow in a VM, where the precise one reads kvmclock). GCRA keeps the
/// long-run rate exact with a coarse clock; bursts line up with ticks.
///
/// Read once a jiffy on each CPU, and kept in the CPU's scratch value: the
/// coarse clock changes only at a tick, when the jiffies do, and reading
/// the jiffies costs a few ns against 30-40 for the coarse clock's helper
/// (`cargo xtask bench`, the floor rows). A reader that sees a tick's new
/// jiffy before its new time keeps the old time for that jiffy: one tick
/// late, as the coarse clock itself can be.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: reading a plain static; volatile so the compiler does not
    // fold the value the loader patches.
    if unsafe { core::ptr::read_volatile(&raw const TEST_CLOCK) } != 0 {
        return TEST_CLOCK_NS.get(0).copied().unwrap_or(0);
    }
    // SAFETY: helpers with no arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        // SAFETY: as above.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's scratch value; XDP is not preempted.
    let cache = unsafe { &mut (*scratch).clock };
    if cache.jiffies != jiffies || cache.ns == 0 {
        cache.jiffies = jiffies;
        // SAFETY: as above.
        cache.ns = unsafe { bpf_ktime_get_coarse_ns() };
    }
    cache.ns
}
