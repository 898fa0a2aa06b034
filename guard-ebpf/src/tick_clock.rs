//! The coarse clock with its helper called once a jiffy: a per-CPU value
//! remembers the jiffy it last read the clock in. Apart from `clock.rs`
//! (which keeps it in guard's scratch map) so that the bench's floor
//! program measures the same code.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

/// The coarse clock as this CPU last read it, and the jiffy it read it in.
#[repr(C)]
pub struct TickClock {
    pub jiffies: u64,
    pub ns: u64,
}

impl TickClock {
    /// CLOCK_MONOTONIC_COARSE in nanoseconds. It changes only at a tick,
    /// when the jiffies do, and reading the jiffies costs a few ns against
    /// 12-45 for the coarse clock's helper (`cargo xtask bench`, the floor
    /// rows): the helper is called only in a new jiffy. A reader that sees
    /// a tick's new jiffy before its new time keeps the old time for that
    /// jiffy: one tick late, as the coarse clock itself can be.
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        // SAFETY: a helper with no arguments.
        let jiffies = unsafe { bpf_jiffies64() };
        if self.jiffies != jiffies || self.ns == 0 {
            self.jiffies = jiffies;
            // SAFETY: as above.
            self.ns = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.ns
    }
}
