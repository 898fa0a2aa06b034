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
//! Headers are read in place from the skb's linear part, where the stack
//! writes them, and with `bpf_skb_load_bytes` when they are not there.

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
    packet::load,
    verdict::{Addr, addr_bytes, source_key, verify_reply},
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
        addr_bytes(&client),
        u16::from_be_bytes([tcp[2], tcp[3]]),
        u16::from_be_bytes([tcp[0], tcp[1]]),
    );
    let ack = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]).wrapping_add(1);
    SYNACKS.insert(&key, &ack, 0).ok()
}

/// A TCP segment leaving: its family, its destination (IPv4 in the first
/// word), where its TCP header starts, and the header's first 14
/// bytes (ports, sequence number, header length, flags).
struct Segment {
    family: u8,
    client: Addr,
    l4: usize,
    tcp: [u8; 14],
}

/// A read past the skb's linear part (or its end).
struct Short;

/// Reads `T` at an offset of the frame leaving.
trait Reader {
    fn get<T: Copy>(&self, offset: usize) -> Result<T, Short>;
}

/// In place, from the linear part, where the stack writes the headers
/// of what it sends: a few instructions a read.
struct InPlace<'a>(&'a TcContext);

impl Reader for InPlace<'_> {
    #[inline(always)]
    fn get<T: Copy>(&self, offset: usize) -> Result<T, Short> {
        load(self.0, offset).ok_or(Short)
    }
}

/// By `bpf_skb_load_bytes`, from anywhere in the skb: about 25 ns a read
/// (`cargo xtask bench`, the egress table), so only when a header is not
/// in the linear part.
struct Copied<'a>(&'a TcContext);

impl Reader for Copied<'_> {
    #[inline(always)]
    fn get<T: Copy>(&self, offset: usize) -> Result<T, Short> {
        self.0.load::<T>(offset).map_err(|_| Short)
    }
}

impl Segment {
    /// The segment `ctx` sends, if it is TCP.
    #[inline(always)]
    fn read(ctx: &TcContext) -> Option<Self> {
        match Self::parse(&InPlace(ctx)) {
            Ok(segment) => segment,
            Err(Short) => Self::parse(&Copied(ctx)).ok().flatten(),
        }
    }

    /// `Ok(None)`: not a TCP segment the program looks at.
    #[inline(always)]
    fn parse(r: &impl Reader) -> Result<Option<Self>, Short> {
        let mut l3 = ETH_HLEN;
        let mut proto = u16::from_be_bytes(r.get::<[u8; 2]>(l3 - 2)?);
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            l3 += 4;
            proto = u16::from_be_bytes(r.get::<[u8; 2]>(l3 - 2)?);
        }
        let (family, l4, client) = match proto {
            ETH_P_IP => {
                let ip = r.get::<[u8; 20]>(l3)?;
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                // A segment is never a fragment past the first as the
                // stack sends it.
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_TCP || frag != 0 {
                    return Ok(None);
                }
                let client = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
                (AF_INET, l3 + ihl, [client, 0, 0, 0])
            }
            ETH_P_IPV6 => {
                // TCP right after the fixed header, as the stack sends it.
                if r.get::<u8>(l3 + 6)? != IPPROTO_TCP {
                    return Ok(None);
                }
                (AF_INET6, l3 + 40, r.get::<Addr>(l3 + 24)?)
            }
            _ => return Ok(None),
        };
        Ok(Some(Self {
            family,
            client,
            l4,
            tcp: r.get::<[u8; 14]>(l4)?,
        }))
    }
}
