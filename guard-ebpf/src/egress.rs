//! The egress program, on every packet the interface sends: what the host
//! sends tells the XDP program who and what it talks to.
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
//! - A datagram of UDP or of another protocol conntrack tracks as flows
//!   (not TCP, not ICMP) remembers its flow as its replies will arrive
//!   (`flows.rs`), so that they are not new flows: the datagram made
//!   their conntrack entry. A datagram that answers one that arrived
//!   refreshes the flow that one made. A flow is a 5-tuple the host
//!   itself sent on, which a spoofed source cannot pick. A DHCPv4
//!   client's request also remembers its transaction, by the random id its
//!   replies carry: they come from an address the request did not name.
//!
//! Headers are read in place from the skb's linear part, where the stack
//! writes them, and with `bpf_skb_load_bytes` when they are not there.

use aya_ebpf::programs::TcContext;
use guard_common::{
    DataplaneConfig, FlowKey4, SynAckKey,
    dissect::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, MAX_VLAN_TAGS, PORTS_LEN, TCP_FLAG_ACK,
        TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, UDP_HLEN, VLAN_HLEN, ipv6_ext_header,
        keyed_by_ports,
    },
    flows::{BOOTP_HEAD, DHCP4_CLIENT_PORT, DHCP4_SERVER_PORT, dhcp4_asking},
    key::{AF_INET, AF_INET6},
};

use crate::{
    clock,
    flows::{Ends, Flow, FlowPlace},
    maps::{CONFIG, COUNTERS, SYNACKS},
    packet::load,
    verdict::{Addr, addr_bytes, source_key, verify_reply},
};

/// The ports of a datagram from a DHCPv4 client's port to a server's, as
/// they lie in the header.
const DHCP4_REQUEST_PORTS: [u8; PORTS_LEN] = {
    let [c0, c1] = DHCP4_CLIENT_PORT.to_be_bytes();
    let [s0, s1] = DHCP4_SERVER_PORT.to_be_bytes();
    [c0, c1, s0, s1]
};

/// What the packet `ctx` sends tells: see the module doc.
#[inline(always)]
pub fn record(ctx: &TcContext) -> Option<()> {
    let leaving = Leaving::read(ctx)?;
    let cfg = CONFIG.get(0)?;
    if leaving.proto == IPPROTO_TCP {
        segment(ctx, cfg, &leaving)
    } else {
        datagram(ctx, &leaving, cfg.slot_seed);
        Some(())
    }
}

/// Verifies the destination of a segment of an established connection,
/// or remembers a SYN-ACK while the budget binds.
#[inline(always)]
fn segment(ctx: &TcContext, cfg: &DataplaneConfig, leaving: &Leaving) -> Option<()> {
    let Leaving {
        family,
        dst: client,
        l4,
        head: tcp,
        ..
    } = *leaving;
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

/// Remembers the flow a datagram leaving opens (or refreshes the one it
/// answers), keyed as its replies arrive: from its destination, to its
/// source, the ports swapped; and a DHCPv4 client's request, the
/// transaction its replies answer (`guard_common::flows::dhcp4_asking`).
/// ICMP is left out: the replies to the host's queries are not queries,
/// and open no flow.
#[inline(always)]
fn datagram(ctx: &TcContext, leaving: &Leaving, seed: u64) {
    let Leaving {
        family,
        proto,
        src,
        dst,
        head,
        ..
    } = *leaving;
    if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
        return;
    }
    let reply = Ends {
        family,
        proto,
        src: dst,
        dst: src,
        sport: u16::from_be_bytes([head[2], head[3]]),
        dport: u16::from_be_bytes([head[0], head[1]]),
    };
    let now = clock::now();
    let mut place = FlowPlace::default();
    Flow::keyed(&reply, seed, &mut place).refresh(now);
    if family == AF_INET && proto == IPPROTO_UDP && head[..PORTS_LEN] == DHCP4_REQUEST_PORTS {
        dhcp4_request(ctx, leaving.l4, seed, now);
    }
}

/// Remembers the transaction of a DHCPv4 client's request leaving (a UDP
/// datagram from port 68 to 67 whose transport header is at `l4`), if its
/// message is one (`guard_common::flows::dhcp4_asking`). Not inlined, and
/// the message read by the helper wherever it lies: a subprogram for
/// these datagrams only, which keeps its code off every other packet's
/// path.
#[inline(never)]
fn dhcp4_request(ctx: &TcContext, l4: usize, seed: u64, now: u64) {
    let Ok(message) = ctx.load::<[u8; BOOTP_HEAD]>(l4 + UDP_HLEN) else {
        return;
    };
    let Some(asking) = dhcp4_asking(DHCP4_CLIENT_PORT, DHCP4_SERVER_PORT, message) else {
        return;
    };
    let asking = FlowKey4::from_words(asking);
    let transaction = Ends {
        family: AF_INET,
        proto: IPPROTO_UDP,
        src: [u32::from_ne_bytes(asking.saddr), 0, 0, 0],
        dst: [u32::from_ne_bytes(asking.daddr), 0, 0, 0],
        sport: asking.sport,
        dport: asking.dport,
    };
    let mut place = FlowPlace::default();
    Flow::keyed(&transaction, seed, &mut place).refresh(now);
}

/// A packet leaving: its family and protocol, its addresses (IPv4 in the
/// first word), where its transport header starts, and that header's
/// first 14 bytes for TCP (ports, sequence number, header length, flags),
/// its ports for a protocol whose flows are keyed by them, zeros
/// otherwise.
#[derive(Clone, Copy)]
struct Leaving {
    family: u8,
    proto: u8,
    src: Addr,
    dst: Addr,
    l4: usize,
    head: [u8; 14],
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

impl Leaving {
    /// The IP packet `ctx` sends, if the program looks at it.
    #[inline(always)]
    fn read(ctx: &TcContext) -> Option<Self> {
        match Self::parse(&InPlace(ctx)) {
            Ok(leaving) => leaving,
            Err(Short) => Self::parse(&Copied(ctx)).ok().flatten(),
        }
    }

    /// `Ok(None)`: not a packet the program looks at.
    #[inline(always)]
    fn parse(r: &impl Reader) -> Result<Option<Self>, Short> {
        let mut l3 = ETH_HLEN;
        let mut ethertype = u16::from_be_bytes(r.get::<[u8; 2]>(l3 - 2)?);
        // As many tags as XDP walks: what one program verifies or
        // remembers, the other must find.
        for _ in 0..MAX_VLAN_TAGS {
            if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
                break;
            }
            l3 += VLAN_HLEN;
            ethertype = u16::from_be_bytes(r.get::<[u8; 2]>(l3 - 2)?);
        }
        let (family, proto, l4, src, dst) = match ethertype {
            ETH_P_IP => {
                let ip = r.get::<[u8; IPV4_HLEN]>(l3)?;
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                // A later fragment has no transport header.
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                if ip[0] >> 4 != 4 || ihl < IPV4_HLEN || frag != 0 {
                    return Ok(None);
                }
                let word =
                    |at: usize| u32::from_ne_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
                (
                    AF_INET,
                    ip[9],
                    l3 + ihl,
                    [word(12), 0, 0, 0],
                    [word(16), 0, 0, 0],
                )
            }
            ETH_P_IPV6 => {
                // The transport right after the fixed header, as the
                // stack sends it; past an extension header (a fragment's)
                // the program does not look.
                let next = r.get::<u8>(l3 + 6)?;
                if ipv6_ext_header(next) {
                    return Ok(None);
                }
                (
                    AF_INET6,
                    next,
                    l3 + IPV6_HLEN,
                    r.get::<Addr>(l3 + 8)?,
                    r.get::<Addr>(l3 + 24)?,
                )
            }
            _ => return Ok(None),
        };
        let mut head = [0; 14];
        if proto == IPPROTO_TCP {
            head = r.get::<[u8; 14]>(l4)?;
        } else if keyed_by_ports(proto) {
            let ports = r.get::<[u8; PORTS_LEN]>(l4)?;
            head[..PORTS_LEN].copy_from_slice(&ports);
        }
        Ok(Some(Self {
            family,
            proto,
            src,
            dst,
            l4,
            head,
        }))
    }
}
