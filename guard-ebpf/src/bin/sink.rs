//! The attack lab's attacker end: what the Internet does with the replies
//! to a spoofed flood. Frames to the spoofed range (198.19.0.0/16, IPv4,
//! untagged) are dropped here, so the victim's answers (SYN-ACKs, ICMP
//! errors) cost the shared machine next to nothing and the lab's CPU
//! figures are the victim's; everything else passes. Running at all also
//! puts the veth end in NAPI mode, which it needs to receive what the
//! victim's XDP sends back.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];

#[xdp]
pub fn sink(ctx: XdpContext) -> u32 {
    // Ethernet (14) + the IPv4 header up to its destination (20).
    let start = ctx.data();
    if start + 34 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 34 bytes read lie before data_end, checked above.
    let (ethertype, dst) = unsafe {
        let p = start as *const u8;
        ([*p.add(12), *p.add(13)], [*p.add(30), *p.add(31)])
    };
    if ethertype == ETH_P_IP && dst == [198, 19] {
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
