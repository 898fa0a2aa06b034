//! The attack lab's two programs around the spoofed range (198.19.0.0/16,
//! IPv4, untagged frames).
//!
//! `sink`, on the attacker's end: what the Internet does with the replies
//! to a spoofed flood. Frames to the range are dropped, so the victim's
//! answers (SYN-ACKs, ICMP errors) cost the shared machine next to nothing;
//! everything else passes. Running at all also puts the veth end in NAPI
//! mode, which it needs to receive what the victim's XDP sends back.
//!
//! `oracle`, on the victim's interface: the lab's floor, not a defence.
//! Frames from the range are dropped, knowing the attack as no real
//! defence can. A flood against it costs what the generator, the link and
//! the least an XDP program can do cost; what a defence costs above that
//! is its own.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
/// Offsets in the frame of the IPv4 source and destination addresses.
const SRC: usize = 14 + 12;
const DST: usize = 14 + 16;

#[xdp]
pub fn sink(ctx: XdpContext) -> u32 {
    drop_spoofed(&ctx, DST)
}

#[xdp]
pub fn oracle(ctx: XdpContext) -> u32 {
    drop_spoofed(&ctx, SRC)
}

/// Drops an IPv4 frame whose address at `at` is in 198.19.0.0/16.
#[inline(always)]
fn drop_spoofed(ctx: &XdpContext, at: usize) -> u32 {
    let start = ctx.data();
    if start + DST + 4 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: every byte read lies before data_end, checked above
    // (`at` + 2 <= DST + 4).
    let (ethertype, net) = unsafe {
        let p = start as *const u8;
        ([*p.add(12), *p.add(13)], [*p.add(at), *p.add(at + 1)])
    };
    if ethertype == ETH_P_IP && net == [198, 19] {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
