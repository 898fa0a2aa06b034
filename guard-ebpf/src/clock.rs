//! The time limits are measured in.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;

use crate::maps::{SCRATCH, Scratch, TEST_CLOCK_NS};

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
/// Its helper is called once a jiffy on each CPU
/// ([`crate::tick_clock::TickClock`], kept in the CPU's scratch value).
#[inline(always)]
pub fn now() -> u64 {
    match SCRATCH.get_ptr_mut(0) {
        Some(scratch) => now_in(scratch),
        // SAFETY: a helper with no arguments.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// [`now`], with this CPU's scratch value already looked up.
#[inline(always)]
pub fn now_in(scratch: *mut Scratch) -> u64 {
    // SAFETY: reading a plain static; volatile so the compiler does not
    // fold the value the loader patches.
    if unsafe { core::ptr::read_volatile(&raw const TEST_CLOCK) } != 0 {
        return TEST_CLOCK_NS.get(0).copied().unwrap_or(0);
    }
    // SAFETY: this CPU's scratch value; XDP is not preempted.
    unsafe { (*scratch).clock.now() }
}
