//! The egress half of the returning-client check, on every packet the
//! interface sends.
//!
//! - A TCP segment that carries data or a FIN (and no SYN or RST) verifies
//!   its destination, whether or not the budget binds
//!   (`verdict::verify_reply`, `verified_reply`): only a connection whose
//!   handshake completed sends either (a request socket sends SYN-ACKs and
//!   pure ACKs; TIME_WAIT pure ACKs and RSTs), and its client proved its
//!   address by acknowledging the SYN-ACK. So clients that were served
//!   before a flood skip the global budget from its first packet, also
//!   those of a port the nat rules send to a container, which gets no
//!   cookies and has no local socket for the ACK check. (TCP Fast Open's
//!   server side sends data before the handshake's ACK, but only to a
//!   client with a cookie for its address, unless the host turns cookies
//!   off.)
//! - While the global budget binds, the SYN-ACKs this host sends are
//!   remembered (`GUARD_SYNACKS`: the client, the ports, the
//!   acknowledgement its ACK must carry). An ACK that carries it proves its
//!   source received the SYN-ACK, which a spoofed source never does: the
//!   same proof as a SYN cookie, for handshakes the host's stack answers.
//!   The XDP program checks it (`verdict::returning_client`) beside the
//!   socket lookup, which finds no local socket for a connection the nat
//!   rules send elsewhere and proves nothing for a half-open one.
//!
//! Headers are read with `bpf_skb_load_bytes` (an skb leaving may not be
//! linear).

use aya_ebpf::programs::TcContext;
use guard_common::{
    SynAckKey,
    cookie::{TCP_FLAG_FIN, TCP_FLAG_RST},
    dissect::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, TCP_FLAG_ACK,
        TCP_FLAG_SYN,
    },
    key::{AF_INET, AF_INET6},
};

use crate::{
    clock,
    maps::{CONFIG, COUNTERS, SYNACKS},
    verdict::{source_key, verify_reply},
};

/// Verifies the destination of a segment of an established connection,
/// or remembers a SYN-ACK while the budget binds.
#[inline(always)]
pub fn record(ctx: &TcContext) -> Option<()> {
    let cfg = CONFIG.get(0)?;
    let Segment {
        family,
        client,
        l4,
        tcp,
    } = Segment::read(ctx)?;
    let flags = tcp[13];
    if flags & (TCP_FLAG_SYN | TCP_FLAG_RST) == 0 {
        let header = usize::from(tcp[12] >> 4) * 4;
        // `len` counts the whole skb (all of a GSO packet's segments).
        if flags & TCP_FLAG_FIN != 0 || ctx.len() as usize > l4 + header {
            let block = COUNTERS.get_ptr_mut(0)?;
            // SAFETY: this CPU's counters. Egress runs with bottom halves
            // off, so the XDP program does not run on this CPU meanwhile.
            let slots = unsafe { &mut (*block).slots };
            let key = source_key(cfg, &client, family == AF_INET);
            verify_reply(cfg, slots, &key, clock::now());
        }
        return Some(());
    }
    if !cfg.budget_binds()
        || flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) != TCP_FLAG_SYN | TCP_FLAG_ACK
    {
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

/// A TCP segment leaving: its family, its destination (IPv4 in the first
/// four bytes), where its TCP header starts, and the header's first 14
/// bytes (ports, sequence number, header length, flags).
struct Segment {
    family: u8,
    client: [u8; 16],
    l4: usize,
    tcp: [u8; 14],
}

/// Bytes every TCP frame has: Ethernet, and IPv4 and TCP without options
/// (or Ethernet and IPv6's fixed header).
const HEAD: usize = ETH_HLEN + 40;

impl Segment {
    /// The segment `ctx` sends, if it is TCP. Each `bpf_skb_load_bytes`
    /// costs about 25 ns (`cargo xtask bench`, the egress table), and the
    /// program reads every packet sent: the commonest frames, untagged
    /// IPv4 without options and untagged IPv6, in one read and two.
    #[inline(always)]
    fn read(ctx: &TcContext) -> Option<Self> {
        let head = ctx.load::<[u8; HEAD]>(0).ok()?;
        let ip = ETH_HLEN;
        match u16::from_be_bytes([head[ip - 2], head[ip - 1]]) {
            ETH_P_IP if head[ip] == 0x45 => {
                if !first_tcp_fragment(&head[ip..ip + 20]) {
                    return None;
                }
                let mut tcp = [0u8; 14];
                tcp.copy_from_slice(&head[ip + 20..ip + 34]);
                Some(Self {
                    family: AF_INET,
                    client: v4(&head[ip + 16..ip + 20]),
                    l4: ip + 20,
                    tcp,
                })
            }
            // TCP right after the fixed header, as the stack sends it.
            ETH_P_IPV6 => {
                if head[ip + 6] != IPPROTO_TCP {
                    return None;
                }
                let mut client = [0u8; 16];
                client.copy_from_slice(&head[ip + 24..ip + 40]);
                Some(Self {
                    family: AF_INET6,
                    client,
                    l4: ip + 40,
                    tcp: ctx.load::<[u8; 14]>(ip + 40).ok()?,
                })
            }
            _ => Self::tagged_or_with_options(ctx),
        }
    }

    /// The rest: a VLAN tag, IPv4 options (or not TCP over IPv4).
    #[inline(always)]
    fn tagged_or_with_options(ctx: &TcContext) -> Option<Self> {
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
                if ip[0] >> 4 != 4 || ihl < 20 || !first_tcp_fragment(&ip) {
                    return None;
                }
                (AF_INET, l3 + ihl, v4(&ip[16..20]))
            }
            ETH_P_IPV6 => {
                if ctx.load::<u8>(l3 + 6).ok()? != IPPROTO_TCP {
                    return None;
                }
                (AF_INET6, l3 + 40, ctx.load::<[u8; 16]>(l3 + 24).ok()?)
            }
            _ => return None,
        };
        Some(Self {
            family,
            client,
            l4,
            tcp: ctx.load::<[u8; 14]>(l4).ok()?,
        })
    }
}

/// Whether an IPv4 header carries TCP and its header: not a fragment
/// past the first (a segment is never one as the stack sends it).
#[inline(always)]
fn first_tcp_fragment(ip: &[u8]) -> bool {
    ip.len() >= 20 && ip[9] == IPPROTO_TCP && u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0
}

/// An IPv4 address in the first four bytes of sixteen.
#[inline(always)]
fn v4(addr: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&addr[..4]);
    a
}
