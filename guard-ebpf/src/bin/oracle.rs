//! The attack lab's floor, on the victim's interface: not a defence. Frames
//! from the spoofed ranges (198.18.0.0/15 and 2001:db8::/32 but the link's
//! own 198.18.0.0/24 and 2001:db8::/64, where the users are; untagged) are
//! dropped, knowing the attack as no real defence can. A flood against
//! it costs what the generator, the link and the least an XDP program can
//! do cost; what a defence costs above that is its own.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// Offsets in the frame of the IPv4 and the IPv6 source address.
const SRC4: usize = 14 + 12;
const SRC6: usize = 14 + 8;
const DOC6: [u8; 4] = [0x20, 0x01, 0x0d, 0xb8];

#[xdp]
pub fn oracle(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + SRC6 + 8 > ctx.data_end() || start + SRC4 + 3 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: every byte read lies before data_end, checked above.
    let spoofed = unsafe {
        let p = start as *const u8;
        let ethertype = [*p.add(12), *p.add(13)];
        if ethertype == ETH_P_IP {
            let (a, b, c) = (*p.add(SRC4), *p.add(SRC4 + 1), *p.add(SRC4 + 2));
            a == 198 && (b == 19 || (b == 18 && c != 0))
        } else if ethertype == ETH_P_IPV6 {
            let doc = [
                *p.add(SRC6),
                *p.add(SRC6 + 1),
                *p.add(SRC6 + 2),
                *p.add(SRC6 + 3),
            ] == DOC6;
            let link = [
                *p.add(SRC6 + 4),
                *p.add(SRC6 + 5),
                *p.add(SRC6 + 6),
                *p.add(SRC6 + 7),
            ] == [0; 4];
            doc && !link
        } else {
            false
        }
    };
    if spoofed {
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
