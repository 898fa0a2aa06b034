//! Seeded random frames, valid and broken, and attack signatures near
//! them, for the differential and robustness runs. A seed reproduces a run
//! exactly.

use std::{
    iter,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use guard_common::fingerprint::{
    FP_DPORT, FP_FAMILY, FP_IP_ID, FP_IP_LEN, FP_L4_HLEN, FP_LEN, FP_PAYLOAD, FP_PROTO, FP_SPORT,
    FP_TCP_FLAGS, FP_TOS, FP_TTL, FP_WINDOW, Fingerprint, Signature,
};

use crate::packet::{
    Ext, Frag, L4, Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TPID_8021AD, TPID_8021Q, arp,
};

/// SplitMix64: small, fast, and good enough to pick test cases.
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index into a slice of length `n` (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("index fits usize")
    }

    /// One of `items` (non-empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    pub fn port(&mut self) -> u16 {
        u16::try_from(1024 + self.below(64_000)).expect("port fits u16")
    }
}

/// A pool of sources: IPv4 from 198.19.0.0/16 over a few /24s, IPv6 from
/// 2001:db8::/32 over a few /48s and /64s (some sharing a /64).
#[must_use]
pub fn sources(rng: &mut Rng, v4: usize, v6: usize) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(v4 + v6);
    for _ in 0..v4 {
        let net = u8::try_from(rng.below(4)).expect("small");
        out.push(IpAddr::V4(Ipv4Addr::new(198, 19, net, rng.byte())));
    }
    for _ in 0..v6 {
        let site = u16::try_from(rng.below(3)).expect("small");
        let subnet = u16::try_from(rng.below(4)).expect("small");
        let host = u16::try_from(rng.below(6)).expect("small");
        out.push(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            site,
            subnet,
            0,
            0,
            0,
            host + 1,
        )));
    }
    out
}

/// The victim address of the source's family.
#[must_use]
pub fn victim(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2)),
    }
}

/// A well-formed frame of a random kind from `src`: SYNs most often, then
/// UDP (from a few ports, so flows repeat), echo requests and replies, the
/// other ICMP queries, established-flow TCP, fragments, VLAN tags and IPv6
/// extension headers.
pub fn valid(rng: &mut Rng, src: IpAddr) -> Vec<u8> {
    let dst = victim(src);
    let mut packet = match rng.below(10) {
        0..=3 => Packet::tcp(src, dst, rng.port(), 80, TCP_SYN),
        4 | 5 => {
            let sport = 5000 + u16::try_from(rng.below(4)).expect("small");
            Packet::udp(src, dst, sport, 53, &[0x42; 12])
        }
        6 => Packet::echo(src, dst, u16::try_from(rng.below(3)).expect("small")),
        7 => {
            let flags = [TCP_ACK, TCP_ACK | TCP_FIN, TCP_RST, TCP_SYN | TCP_ACK][rng.index(4)];
            Packet::tcp(src, dst, rng.port(), 80, flags)
        }
        8 => {
            // An echo reply (no new flow), or another query conntrack
            // opens an entry for (a new flow).
            let kinds: &[u8] = if src.is_ipv4() {
                &[0, 13, 15, 17]
            } else {
                &[129, 139]
            };
            Packet::icmp(src, dst, kinds[rng.index(kinds.len())], 1)
        }
        // GRE, ESP, a protocol conntrack has no handler for: flows by
        // addresses and protocol; SCTP, by ports too (a few, so flows
        // repeat).
        _ => {
            let sport = u8::try_from(rng.below(3)).expect("small");
            Packet::new(
                src,
                dst,
                L4::Raw {
                    proto: [47, 50, 132, 253][rng.index(4)],
                    bytes: vec![0, sport, 0, 80, 0, 0, 0, 0],
                },
            )
        }
    };
    if rng.percent(15) {
        packet = packet.vlan(TPID_8021Q);
        if rng.percent(30) {
            packet.vlans.insert(0, TPID_8021AD);
        }
    }
    if src.is_ipv6() && rng.percent(20) {
        packet = packet.ext([Ext::HopByHop, Ext::DestOpts, Ext::Routing][rng.index(3)]);
    }
    if rng.percent(5) {
        let first = rng.percent(50);
        if src.is_ipv4() {
            packet = packet.fragment(Frag {
                offset: if first { 0 } else { 24 },
                more: first,
                len: 24,
            });
        } else {
            packet = packet.ext(Ext::Fragment {
                offset: if first { 0 } else { 64 },
                more: true,
            });
        }
    }
    packet.frame()
}

/// Option blocks of a SYN: none, MSS alone, Linux's (MSS, SACK permitted,
/// timestamps, window scale), Windows' (MSS, NOP, window scale, NOPs, SACK
/// permitted).
const SYN_OPTIONS: [&[u8]; 4] = [
    &[],
    &[2, 4, 5, 0xb4],
    &[
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ],
    &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2],
];

/// A well-formed frame that may open a flow (what the signature check
/// fingerprints), in the shapes a fingerprint tells apart: SYNs with option
/// blocks or random options, some with data; UDP and echo requests; the
/// fingerprint's IP fields, ports and payloads from a few values each, so
/// that a signature taken from one frame matches others. VLAN tags, IPv4
/// options, up to seven IPv6 extension headers (a SYN with more than 12
/// bytes of options then has its fingerprinted bytes past what the program
/// copies, and no fingerprint), first fragments.
pub fn opener(rng: &mut Rng, src: IpAddr) -> Vec<u8> {
    let dst = victim(src);
    let mut packet = match rng.below(10) {
        0..=3 => {
            let dport = [80, 443][rng.index(2)];
            let mut p = Packet::tcp(src, dst, rng.port(), dport, TCP_SYN);
            if let L4::Tcp { options, .. } = &mut p.l4 {
                *options = if rng.percent(15) {
                    // Up to the 40 bytes a header holds.
                    (0..rng.index(41)).map(|_| rng.byte()).collect()
                } else {
                    SYN_OPTIONS[rng.index(SYN_OPTIONS.len())].to_vec()
                };
            }
            if rng.percent(15) {
                // Data after the options, as TCP Fast Open sends.
                let mut bytes = p.l4_bytes();
                bytes.extend(payload(rng));
                p.l4 = L4::Raw { proto: 6, bytes };
            }
            p
        }
        4..=7 => {
            let sport = 5000 + u16::try_from(rng.below(4)).expect("small");
            let dport = [53, 123, 5353][rng.index(3)];
            Packet::udp(src, dst, sport, dport, &payload(rng))
        }
        _ => Packet::echo(src, dst, u16::try_from(rng.below(3)).expect("small")),
    };
    if rng.percent(15) {
        packet = packet.vlan(TPID_8021Q);
    }
    if src.is_ipv4() && rng.percent(15) {
        // NOPs, up to the 40 bytes the header holds.
        packet.ipv4_options = vec![1; 4 * (1 + rng.index(10))];
    }
    if src.is_ipv6() && rng.percent(30) {
        for _ in 0..=rng.below(7) {
            packet = packet.ext([Ext::HopByHop, Ext::DestOpts, Ext::Routing][rng.index(3)]);
        }
    }
    if rng.percent(5) {
        packet = if src.is_ipv4() {
            packet.fragment(Frag {
                offset: 0,
                more: true,
                len: 64,
            })
        } else {
            packet.ext(Ext::Fragment {
                offset: 0,
                more: true,
            })
        };
    }
    let mut frame = packet.frame();
    vary_ip(rng, &mut frame);
    frame
}

/// A payload of a few lengths around the fingerprint's 16 bytes: a fixed
/// pattern, a fixed prefix then random bytes, or random bytes.
fn payload(rng: &mut Rng) -> Vec<u8> {
    let len = [0, 1, 3, 4, 8, 12, 15, 16, 17, 24, 40][rng.index(11)];
    match rng.below(3) {
        0 => vec![0x42; len],
        1 => [0xde, 0xad, 0xbe, 0xef]
            .into_iter()
            .chain(iter::repeat_with(|| rng.byte()))
            .take(len)
            .collect(),
        _ => (0..len).map(|_| rng.byte()).collect(),
    }
}

/// Gives the IP header's fields in a fingerprint (TTL or hop limit, TOS or
/// traffic class, IPv4's ID or the flow label's low bits) one of a few
/// values each. The IPv4 checksum is left stale: nothing checks it here.
fn vary_ip(rng: &mut Rng, f: &mut [u8]) {
    let l3 = l3_offset(f);
    let ttl = [64, 128, 255, 1][rng.index(4)];
    let tos: u8 = [0, 0x10, 0xb8][rng.index(3)];
    let id = match rng.below(3) {
        0 => 0x1234u16,
        1 => 0,
        _ => u16::from_le_bytes([rng.byte(), rng.byte()]),
    };
    if f[l3] >> 4 == 4 {
        f[l3 + 1] = tos;
        f[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
        f[l3 + 8] = ttl;
    } else {
        f[l3] = 0x60 | tos >> 4;
        f[l3 + 1] = (tos << 4) | (f[l3 + 1] & 0x0f);
        f[l3 + 2..l3 + 4].copy_from_slice(&id.to_be_bytes());
        f[l3 + 7] = ttl;
    }
}

/// The fields of the fingerprint's layout (offset, bytes), the payload in
/// four-byte pieces.
const FIELDS: [(usize, usize); 15] = [
    (FP_FAMILY, 1),
    (FP_PROTO, 1),
    (FP_TTL, 1),
    (FP_TOS, 1),
    (FP_IP_ID, 2),
    (FP_IP_LEN, 2),
    (FP_SPORT, 2),
    (FP_DPORT, 2),
    (FP_WINDOW, 2),
    (FP_TCP_FLAGS, 1),
    (FP_L4_HLEN, 1),
    (FP_PAYLOAD, 4),
    (FP_PAYLOAD + 4, 4),
    (FP_PAYLOAD + 8, 4),
    (FP_PAYLOAD + 12, 4),
];

/// A signature near `fp`: two to four of its fields, now and then only
/// some bits of one. It matches `fp`, and the frames that share those
/// fields, but for one in five, whose value has a bit flipped under the
/// mask (it matches what differs from `fp` there, if anything).
pub fn signature(rng: &mut Rng, fp: &Fingerprint) -> Signature {
    let mut mask = [0u8; FP_LEN];
    for _ in 0..2 + rng.below(3) {
        let (at, len) = FIELDS[rng.index(FIELDS.len())];
        let bits = if rng.percent(20) {
            rng.byte() | 1
        } else {
            0xff
        };
        mask[at..at + len].fill(bits);
    }
    let mut value = fp.bytes();
    if rng.percent(20) {
        let masked: Vec<usize> = (0..FP_LEN).filter(|&i| mask[i] != 0).collect();
        let i = masked[rng.index(masked.len())];
        // The lowest bit under the mask.
        value[i] ^= mask[i] & mask[i].wrapping_neg();
    }
    Signature::from_bytes(&mask, &value)
}

/// Where a frame of [`mixed`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    /// One of [`oddities`].
    Oddity,
    /// Random bytes.
    Noise,
    /// A frame of `make` [`broken`].
    Broken,
    /// A frame of `make` as it is.
    Valid,
}

/// One frame of a robustness run from `sources`: an oddity (one in ten),
/// noise (one in ten), a frame of `make` broken (half) or as it is.
pub fn mixed(
    rng: &mut Rng,
    sources: &[IpAddr],
    make: fn(&mut Rng, IpAddr) -> Vec<u8>,
) -> (Made, Vec<u8>) {
    match rng.below(10) {
        0 => {
            let mut all = oddities();
            (Made::Oddity, all.swap_remove(rng.index(all.len())))
        }
        1 => {
            // At least an Ethernet header.
            let len = 14 + rng.index(120);
            (Made::Noise, (0..len).map(|_| rng.byte()).collect())
        }
        2..=6 => {
            let src = rng.pick(sources);
            let frame = make(rng, src);
            (Made::Broken, broken(rng, &frame))
        }
        _ => {
            let src = rng.pick(sources);
            (Made::Valid, make(rng, src))
        }
    }
}

/// `frame`, [`broken`] one time in twenty.
#[must_use]
pub fn sometimes_broken(rng: &mut Rng, frame: Vec<u8>) -> Vec<u8> {
    if rng.percent(5) {
        broken(rng, &frame)
    } else {
        frame
    }
}

/// `frame` broken in one of the ways an attacker (or a bug) breaks frames:
/// cut at or near a header boundary, a bad IHL, a bogus IPv6 extension
/// chain, a total length that lies, a zero-length payload, random bytes.
/// Never shorter than an Ethernet header: the kernel refuses shorter XDP
/// input, and no NIC delivers it.
pub fn broken(rng: &mut Rng, frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let l3 = l3_offset(&f);
    match rng.below(7) {
        0 => {
            // Cut at every kind of boundary: L2, L3, L4, inside each.
            let cuts = [
                l3,
                l3 + 1,
                l3 + 9,
                l3 + 19,
                l3 + 20,
                l3 + 39,
                l3 + 40,
                l3 + 47,
                f.len() - 1,
            ];
            f.truncate(cuts[rng.index(cuts.len())].clamp(14, f.len()));
        }
        1 if f.len() > l3 => {
            // IHL below 5 or pointing past the packet; or a wrong version.
            f[l3] = [0x40, 0x44, 0x4f, 0x65, 0x00][rng.index(5)];
        }
        2 if f.len() > l3 + 6 && f[l3] >> 4 == 6 => {
            // A chain of extension headers longer than the parser walks, or
            // one that runs past the payload.
            let n = 9 + rng.index(4);
            let mut chain = Vec::new();
            for _ in 0..n {
                chain.extend_from_slice(&[0, u8::from(rng.percent(20)) * 200, 1, 4, 0, 0, 0, 0]);
            }
            f[l3 + 6] = 0;
            f.truncate(l3 + 40);
            f.extend_from_slice(&chain);
            let plen = u16::try_from(chain.len()).expect("short chain");
            f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        3 if f.len() > l3 + 4 => {
            // A length field that lies.
            let at = if f[l3] >> 4 == 6 { l3 + 4 } else { l3 + 2 };
            let lie = u16::try_from(rng.below(3000)).expect("small");
            f[at..at + 2].copy_from_slice(&lie.to_be_bytes());
        }
        4 => {
            // Headers only: the transport payload removed, lengths kept.
            let keep = (l3 + 28).min(f.len());
            f.truncate(keep);
        }
        _ => {
            // A few random bytes anywhere past the MAC addresses.
            for _ in 0..=rng.below(4) {
                let at = 12 + rng.index(f.len() - 12);
                f[at] = rng.byte();
            }
        }
    }
    f
}

/// Offset of the IP header, past any VLAN tags.
fn l3_offset(f: &[u8]) -> usize {
    let mut off = 12;
    while off + 4 <= f.len() && matches!(u16::from_be_bytes([f[off], f[off + 1]]), 0x8100 | 0x88a8)
    {
        off += 4;
    }
    off + 2
}

/// Frames no parser state should survive: the non-IP and odd cases.
#[must_use]
pub fn oddities() -> Vec<Vec<u8>> {
    vec![arp(), vec![0xff; 14], vec![0; 60]]
}
