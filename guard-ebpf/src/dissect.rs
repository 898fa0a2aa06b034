//! One dissect step: walk the headers once, checking every bound, and say
//! what the packet is.
//!
//! Rules (the userspace reference model implements the same ones):
//! - Ethernet, then up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags; a frame
//!   shorter than its L2 headers, or with a third tag, is malformed.
//! - IPv4: version 4, IHL >= 5, total length >= IHL and within the frame
//!   (bytes past it are link padding and ignored). IPv6: version 6, the
//!   40-byte header and the payload length within the frame. Otherwise
//!   malformed. Header checksums are not verified: the kernel drops such
//!   packets itself, before netfilter.
//! - IPv6 extension headers (hop-by-hop, routing, fragment, destination
//!   options, AH, mobility) are walked, at most [`MAX_IPV6_EXT_HEADERS`] of
//!   them, each within the payload; a longer chain is malformed.
//! - A fragment is an IPv4 packet with MF set or a non-zero offset, or an
//!   IPv6 packet with a fragment header with M set or a non-zero offset.
//!   Fragments after the first carry no transport header: class `IpOther`.
//!   A first fragment must hold the whole transport header (RFC 7112; RFC
//!   1858 for IPv4's tiny-fragment attack), or it is malformed.
//! - Transport headers must fit within the IP payload: TCP 20 bytes and its
//!   data offset (>= 5 words), UDP 8 bytes with a length field between 8
//!   and the payload (a first fragment only needs the 8 bytes), ICMP/ICMPv6
//!   8 bytes; SCTP, DCCP and UDP-Lite their ports (4 bytes), by which
//!   conntrack keys their flows. Other protocols (and ICMP inside IPv6) are
//!   `IpOther`, as are SCTP, DCCP and UDP-Lite.
//! - An ICMP or ICMPv6 query that conntrack opens an entry for (an echo
//!   request and the like: `guard_common::dissect::icmp_opens_flow`) sets
//!   [`F_QUERY`]: it opens a flow.

use aya_ebpf::programs::XdpContext;
use guard_common::{
    Counter,
    dissect::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ICMP_MIN_HLEN, IPPROTO_AH,
        IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_MH, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV6_FRAG_HLEN,
        IPV6_HLEN, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, PORTS_LEN, TCP_FLAG_ACK, TCP_FLAG_SYN,
        TCP_MIN_HLEN, UDP_HLEN, VLAN_HLEN, icmp_opens_flow, ipv6_ext_header, keyed_by_ports,
    },
    key::{AF_INET, AF_INET6},
};

use crate::packet::{at, end, load, read_at, within};

/// Attribute bits of [`Headers::flags`].
pub const F_VLAN: u8 = 1;
pub const F_IPV6: u8 = 2;
pub const F_FRAGMENT: u8 = 4;
/// An ICMP or ICMPv6 query that opens a flow (an echo request, ...).
pub const F_QUERY: u8 = 8;
/// The top bit of `flags`, which the dissect step never sets: free for a
/// call's own use (`fingerprint::SCREEN_VERIFIED`).
pub const F_CALLER: u8 = 0x80;

/// What the dissect step found.
pub struct Headers {
    /// Exactly one of [`Counter::CLASSES`].
    pub class: Counter,
    /// `F_*` attribute bits.
    pub flags: u8,
    /// [`AF_INET`] or [`AF_INET6`] once the IP header is valid, else 0.
    pub family: u8,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header: 0 for a later fragment, and for
    /// the malformed and non-IP classes.
    pub l4: usize,
    /// Offset of the IP packet's end (valid with `l4`): bytes past it are
    /// link padding.
    pub l3_end: usize,
    /// The IP protocol of the transport header (valid with `l4`).
    pub proto: u8,
}

impl Headers {
    /// Class, flags, family and protocol in one scalar, for a global
    /// function's arguments.
    #[inline(always)]
    pub fn packed(&self) -> u32 {
        (self.class as u32)
            | (u32::from(self.flags) << 8)
            | (u32::from(self.family) << 16)
            | (u32::from(self.proto) << 24)
    }

    /// The headers again from [`Headers::packed`] and the offsets, with
    /// the bounds a global function's verifier needs (its arguments are
    /// any u32): masked, not compared, since LLVM drops a mask it can
    /// prove redundant and the verifier then loses the bound on a copy.
    #[inline(always)]
    pub fn unpacked(l3: u32, l4: u32, l3_end: u32, packed: u32) -> Self {
        let class = match packed & 0xff {
            c if c == Counter::TcpSyn as u32 => Counter::TcpSyn,
            c if c == Counter::TcpOther as u32 => Counter::TcpOther,
            c if c == Counter::Udp as u32 => Counter::Udp,
            c if c == Counter::Icmp as u32 => Counter::Icmp,
            c if c == Counter::IpOther as u32 => Counter::IpOther,
            c if c == Counter::NonIp as u32 => Counter::NonIp,
            _ => Counter::Malformed,
        };
        Self {
            class,
            flags: (packed >> 8) as u8,
            family: (packed >> 16) as u8,
            l3: (l3 & MAX_OFFSET) as usize,
            l4: (l4 & MAX_OFFSET) as usize,
            l3_end: (l3_end & MAX_OFFSET) as usize,
            proto: (packed >> 24) as u8,
        }
    }

    /// A packet that may open a flow: a TCP SYN, UDP, an ICMP query, or
    /// a datagram of another protocol (not a later fragment), which
    /// conntrack tracks by its addresses and protocol (GRE, ESP, SCTP,
    /// any protocol it has no handler for).
    #[inline(always)]
    pub fn may_open_flow(&self) -> bool {
        match self.class {
            Counter::TcpSyn | Counter::Udp => true,
            Counter::Icmp => self.flags & F_QUERY != 0,
            Counter::IpOther => self.l4 != 0,
            _ => false,
        }
    }

    /// A packet the signature check and the sampling look at: one that
    /// may open a flow of TCP, UDP or ICMP, which a fingerprint describes.
    #[inline(always)]
    pub fn screened(&self) -> bool {
        self.class != Counter::IpOther && self.may_open_flow()
    }
}

/// The largest header offset the program deals in, as a mask: 16 KiB,
/// past any jumbo frame's headers, and small enough that an offset plus a
/// header's length stays under the verifier's 64 KiB bound on packet
/// offsets (past it, a bounds check proves nothing to the verifier).
pub const MAX_OFFSET: u32 = 0x3fff;

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
pub fn dissect(ctx: &XdpContext) -> Headers {
    if let Some(h) = plain(ctx) {
        return h;
    }
    let mut h = Headers {
        class: Counter::Malformed,
        flags: 0,
        family: 0,
        l3: 0,
        l4: 0,
        l3_end: 0,
        proto: 0,
    };
    let Some(eth_type) = load::<[u8; 2]>(ctx, ETH_HLEN - 2) else {
        return h;
    };
    let mut proto = be16(eth_type);
    let mut l3 = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        h.flags |= F_VLAN;
        // The tag is TCI (2 bytes) then the encapsulated EtherType.
        let Some(inner) = load::<[u8; 2]>(ctx, l3 + 2) else {
            return h;
        };
        proto = be16(inner);
        l3 += VLAN_HLEN;
    }
    h.l3 = l3;
    match proto {
        ETH_P_IP => ipv4(ctx, l3, &mut h),
        ETH_P_IPV6 => {
            h.flags |= F_IPV6;
            ipv6(ctx, l3, &mut h);
        }
        // A third tag: leave it malformed.
        ETH_P_8021Q | ETH_P_8021AD => {}
        _ => h.class = Counter::NonIp,
    }
    h
}

/// The commonest frames, untagged TCP or UDP over IPv4 without options or
/// over IPv6 without extension headers, not fragments, in a few loads
/// after two bounds checks; `None` for any other frame, and
/// for one of these that breaks a rule, which the general walk then takes
/// (it gives the same headers for the frames this takes). LLVM compiles
/// the general walk into a chain of bounds checks that stores its partial
/// results before each one; these frames skip all of that.
#[inline(always)]
fn plain(ctx: &XdpContext) -> Option<Headers> {
    let p = at(ctx, 0);
    if p + PLAIN_LEN > end(ctx) {
        return None;
    }
    // SAFETY: within the first PLAIN_LEN bytes, checked above on the same
    // pointer (as are `plain4`'s and `plain6`'s reads of the IP header).
    // A word's first byte in memory is its lowest (little-endian): the
    // EtherType's bytes, then the IP header's first.
    let head = unsafe { read_at::<8>(p + ETH_HLEN - 2) };
    match head as u16 {
        0x0008 => plain4(ctx, p, head),
        0xdd86 => plain6(ctx, p),
        _ => None,
    }
}

/// The headers of a frame whose IP header of `ip_len` bytes [`plain4`] or
/// [`plain6`] took (the IP packet ends at `l3_end`; `proto` follows it),
/// if it carries a whole TCP or UDP header. Inlined with constant
/// arguments, so each family's path keeps its own offsets. The bounds are
/// checked on `p`: the verifier knows them for that pointer only.
#[inline(always)]
fn plain_ip(
    ctx: &XdpContext,
    p: usize,
    family: u8,
    ip_len: usize,
    l3_end: usize,
    proto: u8,
) -> Option<Headers> {
    let l4 = ETH_HLEN + ip_len;
    let class = match proto {
        IPPROTO_TCP => {
            if p + l4 + TCP_MIN_HLEN > end(ctx) {
                return None;
            }
            // SAFETY: within the bytes checked just above.
            let off_flags = unsafe { read_at::<2>(p + l4 + 12) };
            let doff = usize::from(off_flags as u8 >> 4) * 4;
            if doff < TCP_MIN_HLEN || l4 + doff > l3_end {
                return None;
            }
            tcp_class((off_flags >> 8) as u8)
        }
        IPPROTO_UDP => {
            if p + l4 + UDP_HLEN > end(ctx) {
                return None;
            }
            // SAFETY: as above.
            let len = unsafe { read_at::<2>(p + l4 + 4) };
            let ulen = usize::from(be16([len as u8, (len >> 8) as u8]));
            if ulen < UDP_HLEN || l4 + ulen > l3_end {
                return None;
            }
            Counter::Udp
        }
        _ => return None,
    };
    if !within(ctx, l3_end) {
        return None;
    }
    Some(Headers {
        class,
        flags: if family == AF_INET6 { F_IPV6 } else { 0 },
        family,
        l3: ETH_HLEN,
        l4,
        l3_end,
        proto,
    })
}

/// The bytes every frame [`plain`] takes has: an IPv4 header without
/// options and a UDP header (a small datagram is not padded on a veth).
const PLAIN_LEN: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN;
const _: () = assert!(
    ETH_P_IP.to_be() == 0x0008 && ETH_P_IPV6.to_be() == 0xdd86,
    "the EtherTypes as the little-endian word reads them"
);

/// IPv4 for [`plain`] (`head` the word it read at the EtherType): version
/// 4 without options and not a fragment.
#[inline(always)]
fn plain4(ctx: &XdpContext, p: usize, head: u64) -> Option<Headers> {
    // SAFETY: within the bytes `plain` checked on `p`.
    let frag_proto = unsafe { read_at::<4>(p + ETH_HLEN + 6) };
    // Version 4 and IHL 5; no fragment offset nor MF.
    if (head >> 16) as u8 != 0x45 || frag_proto & 0xff3f != 0 {
        return None;
    }
    let tot_len = usize::from(be16([(head >> 32) as u8, (head >> 40) as u8]));
    let proto = (frag_proto >> 24) as u8;
    plain_ip(ctx, p, AF_INET, IPV4_HLEN, ETH_HLEN + tot_len, proto)
}

/// IPv6 for [`plain`]: version 6, the next header TCP or UDP.
#[inline(always)]
fn plain6(ctx: &XdpContext, p: usize) -> Option<Headers> {
    // SAFETY: within the bytes `plain` checked on `p`.
    let ip = unsafe { read_at::<8>(p + ETH_HLEN) };
    if ip as u8 >> 4 != 6 {
        return None;
    }
    let payload = usize::from(be16([(ip >> 32) as u8, (ip >> 40) as u8]));
    let (l3_end, proto) = (ETH_HLEN + IPV6_HLEN + payload, (ip >> 48) as u8);
    plain_ip(ctx, p, AF_INET6, IPV6_HLEN, l3_end, proto)
}

/// A SYN without ACK opens a connection; every other segment is in one.
#[inline(always)]
fn tcp_class(tcp_flags: u8) -> Counter {
    if tcp_flags & TCP_FLAG_SYN != 0 && tcp_flags & TCP_FLAG_ACK == 0 {
        Counter::TcpSyn
    } else {
        Counter::TcpOther
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize, h: &mut Headers) {
    let Some(ip) = load::<[u8; IPV4_HLEN]>(ctx, l3) else {
        return;
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = usize::from(be16([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN || tot_len < ihl {
        return;
    }
    let l3_end = l3 + tot_len;
    if !within(ctx, l3_end) {
        return;
    }
    h.family = AF_INET;
    let frag = be16([ip[6], ip[7]]);
    let first = frag & 0x1fff == 0;
    if !first || frag & 0x2000 != 0 {
        h.flags |= F_FRAGMENT;
    }
    if !first {
        h.class = Counter::IpOther;
        return;
    }
    h.l4 = l3 + ihl;
    h.l3_end = l3_end;
    let proto = ip[9];
    h.proto = proto;
    h.class = if proto == IPPROTO_ICMP {
        icmp(ctx, h, l3_end, true)
    } else {
        transport(ctx, proto, h.l4, l3_end, h.flags)
    };
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize, h: &mut Headers) {
    let Some(ip) = load::<[u8; IPV6_HLEN]>(ctx, l3) else {
        return;
    };
    if ip[0] >> 4 != 6 {
        return;
    }
    let l3_end = l3 + IPV6_HLEN + usize::from(be16([ip[4], ip[5]]));
    if !within(ctx, l3_end) {
        return;
    }
    h.family = AF_INET6;
    let mut next = ip[6];
    let mut off = l3 + IPV6_HLEN;
    let mut walked = 0;
    while walked < MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH => {
                let Some(ext) = load::<[u8; 2]>(ctx, off) else {
                    return;
                };
                next = ext[0];
                (usize::from(ext[1]) + 1) * 8
            }
            IPPROTO_AH => {
                let Some(ext) = load::<[u8; 2]>(ctx, off) else {
                    return;
                };
                next = ext[0];
                (usize::from(ext[1]) + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                // Complete within the payload before any of it counts:
                // bytes past the payload are link padding.
                if off + IPV6_FRAG_HLEN > l3_end {
                    return;
                }
                let Some(ext) = load::<[u8; 4]>(ctx, off) else {
                    return;
                };
                next = ext[0];
                let frag = be16([ext[2], ext[3]]);
                if frag & 0xfff8 != 0 || frag & 1 != 0 {
                    h.flags |= F_FRAGMENT;
                }
                if frag & 0xfff8 != 0 {
                    h.class = Counter::IpOther;
                    return;
                }
                IPV6_FRAG_HLEN
            }
            _ => break,
        };
        off += len;
        if off > l3_end {
            return;
        }
        walked += 1;
    }
    if ipv6_ext_header(next) {
        // Chain longer than the parser walks.
        return;
    }
    h.l4 = off;
    h.l3_end = l3_end;
    h.proto = next;
    h.class = if next == IPPROTO_ICMPV6 {
        icmp(ctx, h, l3_end, false)
    } else {
        transport(ctx, next, off, l3_end, h.flags)
    };
}

/// ICMP (`v4`) or ICMPv6.
#[inline(always)]
fn icmp(ctx: &XdpContext, h: &mut Headers, l3_end: usize, v4: bool) -> Counter {
    let Some(head) = load::<[u8; ICMP_MIN_HLEN]>(ctx, h.l4) else {
        return Counter::Malformed;
    };
    if h.l4 + ICMP_MIN_HLEN > l3_end {
        return Counter::Malformed;
    }
    if icmp_opens_flow(v4, head[0]) {
        h.flags |= F_QUERY;
    }
    Counter::Icmp
}

/// TCP and UDP (and everything else, which is `IpOther`).
#[inline(always)]
fn transport(ctx: &XdpContext, proto: u8, l4: usize, l3_end: usize, flags: u8) -> Counter {
    match proto {
        IPPROTO_TCP => {
            let Some(tcp) = load::<[u8; TCP_MIN_HLEN]>(ctx, l4) else {
                return Counter::Malformed;
            };
            let doff = usize::from(tcp[12] >> 4) * 4;
            if doff < TCP_MIN_HLEN || l4 + doff > l3_end {
                return Counter::Malformed;
            }
            tcp_class(tcp[13])
        }
        IPPROTO_UDP => {
            let Some(udp) = load::<[u8; UDP_HLEN]>(ctx, l4) else {
                return Counter::Malformed;
            };
            let ulen = usize::from(be16([udp[4], udp[5]]));
            // A first fragment holds only part of the datagram its length
            // field describes.
            let fits = flags & F_FRAGMENT != 0 || l4 + ulen <= l3_end;
            if l4 + UDP_HLEN > l3_end || ulen < UDP_HLEN || !fits {
                Counter::Malformed
            } else {
                Counter::Udp
            }
        }
        // SCTP, DCCP, UDP-Lite: their flows are keyed by ports too, which
        // must be there.
        p if keyed_by_ports(p) => {
            if l4 + PORTS_LEN > l3_end {
                Counter::Malformed
            } else {
                Counter::IpOther
            }
        }
        _ => Counter::IpOther,
    }
}
