//! Map keys and how addresses become keys.
//!
//! A source is an IPv4 address or an IPv6 /64 (both prefix lengths are
//! configurable); a prefix (the second tier) is an IPv4 /24 or IPv6 /48 by
//! default. Both are a [`SourceKey`]: the address masked to the prefix
//! length, with the family and the length in the key so that no two
//! granularities or families ever share an entry.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;

/// Key of the per-source and per-prefix tables (20 bytes). Aligned to 4
/// so that it reads as five words ([`SourceKey::words`]).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    pub prefix_len: u8,
    pub pad: [u8; 2],
    /// The masked address; IPv4 in the first four bytes, the rest zero.
    pub addr: [u8; 16],
}

impl SourceKey {
    /// `addr/prefix_len` (prefix lengths above 32 are taken as 32).
    #[inline(always)]
    #[must_use]
    pub fn v4(addr: [u8; 4], prefix_len: u8) -> Self {
        Self::v4_word(u32::from_ne_bytes(addr), prefix_len)
    }

    /// [`SourceKey::v4`] of the address's four bytes read as one word in
    /// memory order, as the XDP program carries it.
    #[inline(always)]
    #[must_use]
    pub fn v4_word(addr: u32, prefix_len: u8) -> Self {
        let len = if prefix_len > 32 { 32 } else { prefix_len };
        // Built as words: built field by field, the address's zero tail
        // becomes a call to a byte-wise `memset` in the XDP program.
        Self::from_words([
            u32::from_ne_bytes([AF_INET, len, 0, 0]),
            addr & ne_mask32(len),
            0,
            0,
            0,
        ])
    }

    /// The key whose [`SourceKey::words`] are `words`.
    #[inline(always)]
    #[must_use]
    pub const fn from_words(words: [u32; 5]) -> Self {
        // SAFETY: 20 bytes each, and any bytes are a SourceKey (u8 fields
        // only); the key's alignment (4) is the words'.
        unsafe { core::mem::transmute::<[u32; 5], Self>(words) }
    }

    /// The key as five native-endian words: what the XDP program compares
    /// (an array `==` there is a byte-wise call).
    #[inline(always)]
    #[must_use]
    pub const fn words(&self) -> [u32; 5] {
        // SAFETY: 20 bytes each, any bytes are words, and the key's
        // alignment is the words'. Read as words: assembled from bytes,
        // the XDP program loads each byte apart and keeps them in registers
        // (and spills) for every other use of the key.
        unsafe { core::mem::transmute::<Self, [u32; 5]>(*self) }
    }

    /// Equality as five word compares: in the XDP program `==` on the
    /// address arrays is a call to a byte-wise `bcmp`.
    #[inline(always)]
    #[must_use]
    pub const fn same(&self, other: &Self) -> bool {
        let (a, b) = (self.words(), other.words());
        a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
    }

    /// `addr/prefix_len` (prefix lengths above 128 are taken as 128).
    #[inline(always)]
    #[must_use]
    pub fn v6(addr: [u8; 16], prefix_len: u8) -> Self {
        Self::v6_words(addr_words(&addr), prefix_len)
    }

    /// [`SourceKey::v6`] of the address's sixteen bytes read as four words
    /// in memory order, as the XDP program carries it.
    #[inline(always)]
    #[must_use]
    pub fn v6_words(a: [u32; 4], prefix_len: u8) -> Self {
        let len = if prefix_len > 128 { 128 } else { prefix_len };
        // As words, as `v4`, each masked in the address's own byte order:
        // no byte swaps of the address in the XDP program.
        // Bits of the prefix in each word. As branches: written as
        // `saturating_sub(..).min(32)` the verdict is 200 BPF instructions
        // longer.
        let bits = |word: u8| {
            let from = word * 32;
            if len <= from {
                0
            } else if len - from >= 32 {
                32
            } else {
                len - from
            }
        };
        Self::from_words([
            u32::from_ne_bytes([AF_INET6, len, 0, 0]),
            a[0] & ne_mask32(bits(0)),
            a[1] & ne_mask32(bits(1)),
            a[2] & ne_mask32(bits(2)),
            a[3] & ne_mask32(bits(3)),
        ])
    }

    /// The network address.
    #[must_use]
    pub fn ip(&self) -> IpAddr {
        if self.family == AF_INET {
            let a = self.addr;
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }
}

impl core::fmt::Display for SourceKey {
    /// `198.18.0.1` for a full-length key, `198.18.0.0/24` otherwise.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let full = if self.family == AF_INET { 32 } else { 128 };
        if self.prefix_len == full {
            write!(f, "{}", self.ip())
        } else {
            write!(f, "{}/{}", self.ip(), self.prefix_len)
        }
    }
}

/// The top `len` bits set (len <= 32).
#[inline(always)]
#[must_use]
pub const fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

/// [`mask32`] for a word read in native byte order from four bytes in
/// network order.
#[inline(always)]
const fn ne_mask32(len: u8) -> u32 {
    u32::from_ne_bytes(mask32(len).to_be_bytes())
}

/// A 16-byte address as four native-endian words (the layout of the
/// kernel's `__u32 [4]` address fields).
#[must_use]
#[inline(always)]
pub const fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// A datagram's flow: the 5-tuple as the packet carries it (40 bytes), or
/// another protocol's addresses and protocol; `GUARD_UDP_FLOWS`' ways hold
/// it as five words ([`Self::words`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub pad: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// A [`FlowKey`]'s five words, as the flow table stores and hashes them
/// ([`crate::flows`]): the family, protocol and ports, then the addresses
/// as native-endian words ([`addr_words`]), two to a word.
#[inline(always)]
#[must_use]
pub const fn flow_words(
    family: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    src: &[u32; 4],
    dst: &[u32; 4],
) -> [u64; 5] {
    [
        family as u64 | (proto as u64) << 8 | (sport as u64) << 16 | (dport as u64) << 32,
        src[0] as u64 | (src[1] as u64) << 32,
        src[2] as u64 | (src[3] as u64) << 32,
        dst[0] as u64 | (dst[1] as u64) << 32,
        dst[2] as u64 | (dst[3] as u64) << 32,
    ]
}

impl FlowKey {
    /// The key as the flow table's words ([`flow_words`]).
    #[must_use]
    pub const fn words(&self) -> [u64; 5] {
        flow_words(
            self.family,
            self.proto,
            self.sport,
            self.dport,
            &addr_words(&self.saddr),
            &addr_words(&self.daddr),
        )
    }

    /// The key of [`Self::words`].
    #[must_use]
    pub fn from_words(w: [u64; 5]) -> Self {
        let addr = |a: u64, b: u64| {
            let mut bytes = [0; 16];
            for (i, word) in [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32]
                .iter()
                .enumerate()
            {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
            }
            bytes
        };
        Self {
            family: w[0] as u8,
            proto: (w[0] >> 8) as u8,
            sport: (w[0] >> 16) as u16,
            dport: (w[0] >> 32) as u16,
            pad: 0,
            saddr: addr(w[1], w[2]),
            daddr: addr(w[3], w[4]),
        }
    }

    /// The same flow as a [`FlowKey4`], if it is an IPv4 UDP flow (the
    /// flows `GUARD_UDP_FLOW4` holds).
    #[must_use]
    pub fn narrowed(&self) -> Option<FlowKey4> {
        if self.family != AF_INET || self.proto != crate::dissect::IPPROTO_UDP {
            return None;
        }
        let mut saddr = [0; 4];
        let mut daddr = [0; 4];
        saddr.copy_from_slice(&self.saddr[..4]);
        daddr.copy_from_slice(&self.daddr[..4]);
        Some(FlowKey4 {
            saddr,
            daddr,
            sport: self.sport,
            dport: self.dport,
        })
    }
}

/// An IPv4 UDP datagram's addresses and ports as it carries them (12
/// bytes): the flows of `GUARD_UDP_FLOW4`, whose ways hold them as three
/// words ([`Self::words`]) where [`FlowKey`]'s take five.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey4 {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey4 {
    /// The key as three words: the addresses as they lie in memory, then
    /// both ports (what the flow table stores and hashes,
    /// [`crate::flows`]).
    #[inline(always)]
    #[must_use]
    pub const fn words(&self) -> [u32; 3] {
        [
            u32::from_ne_bytes(self.saddr),
            u32::from_ne_bytes(self.daddr),
            self.sport as u32 | (self.dport as u32) << 16,
        ]
    }

    /// The key of [`Self::words`].
    #[inline(always)]
    #[must_use]
    pub const fn from_words(w: [u32; 3]) -> Self {
        Self {
            saddr: w[0].to_ne_bytes(),
            daddr: w[1].to_ne_bytes(),
            sport: w[2] as u16,
            dport: (w[2] >> 16) as u16,
        }
    }

    /// The same flow as a [`FlowKey`] (UDP, IPv4).
    #[must_use]
    pub fn widened(&self) -> FlowKey {
        let wide = |a: [u8; 4]| {
            let mut w = [0; 16];
            w[..4].copy_from_slice(&a);
            w
        };
        FlowKey {
            family: AF_INET,
            proto: crate::dissect::IPPROTO_UDP,
            sport: self.sport,
            dport: self.dport,
            pad: 0,
            saddr: wide(self.saddr),
            daddr: wide(self.daddr),
        }
    }
}

/// Key of the SYN-ACK map (`GUARD_SYNACKS`): a SYN-ACK this host sent, by
/// the client it went to and the ports, as its ACK names them. 24 bytes.
/// The value is the acknowledgement number the client's ACK must carry
/// (the SYN-ACK's sequence number plus one), which only a host that
/// received the SYN-ACK knows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SynAckKey {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    pub pad: u8,
    /// The client's port and this host's, in host byte order.
    pub client_port: u16,
    pub server_port: u16,
    pub pad2: u16,
    /// The client's address; IPv4 in the first four bytes, the rest zero.
    pub client: [u8; 16],
}

impl SynAckKey {
    #[inline(always)]
    #[must_use]
    pub const fn new(family: u8, client: [u8; 16], client_port: u16, server_port: u16) -> Self {
        Self {
            family,
            pad: 0,
            client_port,
            server_port,
            pad2: 0,
            client,
        }
    }
}

/// Data of the allow/deny LPM tries: the action for the longest match.
pub const LIST_ALLOW: u8 = 1;
pub const LIST_DENY: u8 = 2;

/// Data of the local-route LPM tries (`maps::LOCAL_V4`, `LOCAL_V6`): a
/// destination of this host's, or (the catch-all /0) another's. A
/// destination with no match (the tries not filled) is taken as this
/// host's, as before they existed.
pub const ROUTE_LOCAL: u8 = 1;
pub const ROUTE_ELSEWHERE: u8 = 2;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C) structs of integers and byte arrays with explicit
    // padding fields: every bit pattern is valid and there are no implicit
    // padding bytes.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above (two 4-byte arrays, two u16s: no padding).
    unsafe impl aya::Pod for super::FlowKey4 {}
    // SAFETY: as above (two u8s, three u16s, 16 bytes: no padding).
    unsafe impl aya::Pod for super::SynAckKey {}
}

const _: () = assert!(size_of::<SynAckKey>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_masks_and_keeps_the_family() {
        let k = SourceKey::v4([198, 18, 7, 9], 24);
        assert_eq!(k.addr[..4], [198, 18, 7, 0]);
        assert!(k.addr[4..].iter().all(|b| *b == 0));
        assert_eq!((k.family, k.prefix_len), (AF_INET, 24));
        assert_eq!(k.to_string(), "198.18.7.0/24");
        assert_eq!(SourceKey::v4([198, 18, 7, 9], 32).to_string(), "198.18.7.9");
    }

    #[test]
    fn v6_masks_across_word_boundaries() {
        let addr = [0xff; 16];
        let masked = |len| SourceKey::v6(addr, len).addr;
        assert_eq!(masked(0), [0; 16]);
        assert_eq!(masked(128), addr);
        let m = masked(68);
        assert_eq!(m[..8], [0xff; 8]);
        assert_eq!(m[8], 0xf0);
        assert!(m[9..].iter().all(|b| *b == 0));
        let m = masked(12);
        assert_eq!(m[..2], [0xff, 0xf0]);
        assert!(m[2..].iter().all(|b| *b == 0));
        let m = masked(32);
        assert_eq!(m[..4], [0xff; 4]);
        assert!(m[4..].iter().all(|b| *b == 0));
    }

    #[test]
    fn families_never_collide() {
        let v4 = SourceKey::v4([0, 0, 0, 0], 32);
        let v6 = SourceKey::v6([0; 16], 32);
        assert_ne!(v4, v6);
    }

    #[test]
    fn same_prefix_same_key() {
        let a = SourceKey::v6(
            "2001:db8:1:2:aaaa::1".parse::<Ipv6Addr>().unwrap().octets(),
            64,
        );
        let b = SourceKey::v6(
            "2001:db8:1:2:bbbb::7".parse::<Ipv6Addr>().unwrap().octets(),
            64,
        );
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }
}
