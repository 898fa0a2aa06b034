//! The benchmark's yardsticks: the least an XDP program that counts can do,
//! and the same on egress (`baseline_tc`, beside guard's SYN-ACK
//! recorder). Each bumps one per-CPU counter and passes, so `cargo xtask
//! bench` can report guard's cost as a ratio to it, measured in the same
//! run.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};

#[map(name = "BASELINE_COUNT")]
static COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn baseline(_ctx: XdpContext) -> u32 {
    if let Some(count) = COUNT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; XDP runs with preemption disabled.
        unsafe { *count += 1 };
    }
    xdp_action::XDP_PASS
}

#[classifier]
pub fn baseline_tc(_ctx: TcContext) -> i32 {
    if let Some(count) = COUNT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; a tc program runs with preemption
        // disabled.
        unsafe { *count += 1 };
    }
    TC_ACT_UNSPEC
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
