//! Limits of the packet parser, shared by the XDP program and the userspace
//! reference model so both call the same packets malformed.

/// VLAN tags (802.1Q, 802.1ad) the parser walks. A third tag makes the
/// packet malformed: the kernel's own receive path strips at most what
/// configured VLAN devices expect, and no legitimate edge traffic stacks three.
pub const MAX_VLAN_TAGS: usize = 2;

/// IPv6 extension headers the parser walks before it calls a packet
/// malformed. Real traffic carries one or two; the bound keeps the program's
/// loop finite for the verifier, and calling longer chains malformed (rather
/// than passing them unclassified) closes the bypass an attacker would get by
/// padding SYNs with extension headers.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_DCCP: u8 = 33;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_MH: u8 = 135;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// An IPv4 header without options, and IPv6's fixed header.
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
/// An IPv6 fragment header, and an 802.1Q or 802.1ad tag.
pub const IPV6_FRAG_HLEN: usize = 8;
pub const VLAN_HLEN: usize = 4;

/// Minimum transport header bytes the parser needs in the packet (and, for
/// a first fragment, in that fragment) before it classifies it.
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const ICMP_MIN_HLEN: usize = 8;
/// A source and a destination port, the first bytes of the transport
/// header of every protocol [`keyed_by_ports`] names.
pub const PORTS_LEN: usize = 4;

/// Whether conntrack keys a flow of `proto` by its ports as well as its
/// addresses (UDP, UDP-Lite, SCTP, DCCP: each has its own handler); any
/// other protocol but TCP and ICMP it keys by the addresses alone, so one
/// source can open an entry per port pair only with these.
#[must_use]
pub const fn keyed_by_ports(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    )
}

/// Whether `next` names an IPv6 extension header (the ones a packet
/// walks past to its transport header), not a transport protocol.
#[must_use]
pub const fn ipv6_ext_header(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_DSTOPTS
            | IPPROTO_MH
            | IPPROTO_AH
            | IPPROTO_FRAGMENT
    )
}

/// TCP header flags, in the byte at offset 13.
pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;
pub const TCP_FLAG_ECE: u8 = 0x40;
pub const TCP_FLAG_CWR: u8 = 0x80;

pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIMESTAMP_REQUEST: u8 = 13;
pub const ICMP_INFO_REQUEST: u8 = 15;
pub const ICMP_ADDRESS_MASK_REQUEST: u8 = 17;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_NODE_INFO_QUERY: u8 = 139;

/// Whether an ICMP (`v4`) or ICMPv6 message of type `kind` opens a
/// conntrack entry, so a new flow: the queries conntrack tracks
/// (`valid_new` in the kernel's nf_conntrack_proto_icmp.c and
/// nf_conntrack_proto_icmpv6.c), echo requests and the rest. A flood of
/// timestamp requests fills the table as echo requests do.
#[must_use]
pub const fn icmp_opens_flow(v4: bool, kind: u8) -> bool {
    if v4 {
        matches!(
            kind,
            ICMP_ECHO_REQUEST
                | ICMP_TIMESTAMP_REQUEST
                | ICMP_INFO_REQUEST
                | ICMP_ADDRESS_MASK_REQUEST
        )
    } else {
        matches!(kind, ICMPV6_ECHO_REQUEST | ICMPV6_NODE_INFO_QUERY)
    }
}
