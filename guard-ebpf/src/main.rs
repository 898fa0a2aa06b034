//! guard's XDP program.
//!
//! Verdict policy (this issue: count only):
//! - every packet is dissected once (see [`dissect`]) and counted: one
//!   `Packets`, one class, and its attributes, in a per-CPU block;
//! - every packet is passed, malformed ones included; the kernel's own
//!   checks drop what it cannot use.
#![no_std]
#![no_main]

mod dissect;

use aya_ebpf::{
    bindings::xdp_action, macros::map, macros::xdp, maps::PerCpuArray, programs::XdpContext,
};
use guard_common::{Counter, CounterBlock};

use crate::dissect::{F_FRAGMENT, F_IPV6, F_VLAN, Headers};

#[map(name = "GUARD_COUNTERS")]
static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn guard(ctx: XdpContext) -> u32 {
    let headers = dissect::dissect(&ctx);
    count(&headers);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(h: &Headers) {
    let Some(block) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map value is this CPU's block; XDP runs with preemption
    // (and migration) disabled, so nothing else writes it meanwhile.
    let slots = unsafe { &mut (*block).slots };
    bump(slots, Counter::Packets);
    bump(slots, h.class);
    if h.flags & F_VLAN != 0 {
        bump(slots, Counter::Vlan);
    }
    if h.flags & F_IPV6 != 0 {
        bump(slots, Counter::Ipv6);
    }
    if h.flags & F_FRAGMENT != 0 {
        bump(slots, Counter::Fragments);
    }
}

#[inline(always)]
fn bump(slots: &mut [u64], counter: Counter) {
    if let Some(slot) = slots.get_mut(counter.slot()) {
        *slot = slot.wrapping_add(1);
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path here.
    loop {}
}
