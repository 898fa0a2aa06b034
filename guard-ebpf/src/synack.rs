//! The egress half of the returning-client check: while the global budget
//! binds, the SYN-ACKs this host sends on the interface are remembered
//! (`GUARD_SYNACKS`: the client, the ports, the acknowledgement its ACK
//! must carry). An ACK that carries it proves its source received the
//! SYN-ACK, which a spoofed source never does: the same proof as a SYN
//! cookie, for handshakes the host's stack answers. The XDP program checks
//! it (`verdict::returning_client`) beside the socket lookup, which finds
//! no local socket for a connection the nat rules send elsewhere (a
//! container's published port) and proves nothing for a half-open one.
//!
//! Runs on every packet the interface sends, so it returns at once while
//! the budget has room, and reads the headers with `bpf_skb_load_bytes`
//! (an skb leaving may not be linear).

use aya_ebpf::programs::TcContext;
use guard_common::{
    SynAckKey,
    cookie::TCP_FLAG_RST,
    dissect::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, TCP_FLAG_ACK,
        TCP_FLAG_SYN,
    },
    key::{AF_INET, AF_INET6},
};

use crate::maps::{CONFIG, SYNACKS};

/// Remembers the SYN-ACK `ctx` sends, if it is one and the budget binds.
#[inline(always)]
pub fn record(ctx: &TcContext) -> Option<()> {
    if !CONFIG.get(0)?.budget_binds() {
        return None;
    }
    let mut l3 = ETH_HLEN;
    let mut proto = u16::from_be_bytes(ctx.load::<[u8; 2]>(l3 - 2).ok()?);
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        l3 += 4;
        proto = u16::from_be_bytes(ctx.load::<[u8; 2]>(l3 - 2).ok()?);
    }
    let (family, l4, client) = match proto {
        ETH_P_IP => {
            let ip = ctx.load::<[u8; 20]>(l3).ok()?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // A SYN-ACK is never a fragment past the first.
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_TCP || frag != 0 {
                return None;
            }
            let mut client = [0u8; 16];
            client[..4].copy_from_slice(&ip[16..20]);
            (AF_INET, l3 + ihl, client)
        }
        ETH_P_IPV6 => {
            // TCP right after the fixed header, as the stack sends it.
            if ctx.load::<u8>(l3 + 6).ok()? != IPPROTO_TCP {
                return None;
            }
            (AF_INET6, l3 + 40, ctx.load::<[u8; 16]>(l3 + 24).ok()?)
        }
        _ => return None,
    };
    // Ports, sequence number, and the flags' byte.
    let tcp = ctx.load::<[u8; 14]>(l4).ok()?;
    if tcp[13] & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) != TCP_FLAG_SYN | TCP_FLAG_ACK {
        return None;
    }
    let key = SynAckKey::new(
        family,
        client,
        u16::from_be_bytes([tcp[2], tcp[3]]),
        u16::from_be_bytes([tcp[0], tcp[1]]),
    );
    let ack = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]).wrapping_add(1);
    SYNACKS.insert(&key, &ack, 0).ok()
}
