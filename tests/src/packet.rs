//! Crafting Ethernet frames byte by byte, valid or deliberately broken.
//!
//! Written by hand rather than with a packet crate so that every field, bad
//! IHLs and bogus extension chains included, is under the test's control.

use std::net::IpAddr;

pub const ETH_P_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The transport part of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// Raw option bytes; padded to a multiple of 4.
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// An ICMP message (ICMPv6 under IPv6) of type `kind` with an
    /// identifier and sequence number, as echo and timestamp requests
    /// have: checksummed.
    Icmp { kind: u8, id: u16, seq: u16 },
    /// Any protocol, bytes as given (no checksum).
    Raw { proto: u8, bytes: Vec<u8> },
}

/// An IPv6 extension header placed before the transport header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    DestOpts,
    Routing,
    /// A fragment header: offset in bytes (multiple of 8), more-fragments.
    Fragment {
        offset: u16,
        more: bool,
    },
}

/// Fragmenting an IPv4 packet: this frame carries `len` bytes of the
/// transport data starting at `offset` (a multiple of 8).
#[derive(Clone, Copy, Debug)]
pub struct Frag {
    pub offset: u16,
    pub more: bool,
    pub len: usize,
}

/// A packet to build into a frame.
#[derive(Clone, Debug)]
pub struct Packet {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN TPIDs, outermost first.
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub ipv4_options: Vec<u8>,
    pub ipv6_ext: Vec<Ext>,
    pub frag: Option<Frag>,
}

impl Packet {
    #[must_use]
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Self {
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            vlans: Vec::new(),
            src,
            dst,
            l4,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            frag: None,
        }
    }

    #[must_use]
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                sport,
                dport,
                flags,
                seq: 1000,
                ack: if flags & TCP_ACK != 0 { 2000 } else { 0 },
                options: Vec::new(),
            },
        )
    }

    /// This TCP segment with `data` after its header, as raw transport
    /// bytes: the IP lengths count them, the TCP checksum does not (the
    /// egress program, which such segments are for, does not read it).
    #[must_use]
    pub fn with_data(self, data: &[u8]) -> Self {
        let mut bytes = self.l4_bytes();
        bytes.extend_from_slice(data);
        Self {
            l4: L4::Raw { proto: 6, bytes },
            ..self
        }
    }

    #[must_use]
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Self {
        Self::new(
            src,
            dst,
            L4::Udp {
                sport,
                dport,
                payload: payload.to_vec(),
            },
        )
    }

    #[must_use]
    pub fn echo(src: IpAddr, dst: IpAddr, id: u16) -> Self {
        let kind = if src.is_ipv4() { 8 } else { 128 };
        Self::icmp(src, dst, kind, id)
    }

    /// An ICMP message of type `kind` (ICMPv6 for IPv6 addresses).
    #[must_use]
    pub fn icmp(src: IpAddr, dst: IpAddr, kind: u8, id: u16) -> Self {
        Self::new(src, dst, L4::Icmp { kind, id, seq: 1 })
    }

    #[must_use]
    pub fn vlan(mut self, tpid: u16) -> Self {
        self.vlans.push(tpid);
        self
    }

    #[must_use]
    pub fn ext(mut self, ext: Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    #[must_use]
    pub fn fragment(mut self, frag: Frag) -> Self {
        self.frag = Some(frag);
        self
    }

    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The transport header and data, checksummed.
    #[must_use]
    pub fn l4_bytes(&self) -> Vec<u8> {
        let proto = self.proto();
        let mut b = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
                options,
            } => {
                let mut opts = options.clone();
                while !opts.len().is_multiple_of(4) {
                    opts.push(0);
                }
                let doff = u8::try_from((20 + opts.len()) / 4).expect("TCP options too long");
                let mut b = Vec::with_capacity(20 + opts.len());
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ack.to_be_bytes());
                b.extend_from_slice(&[doff << 4, *flags]);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                b.extend_from_slice(&opts);
                b
            }
            L4::Udp {
                sport,
                dport,
                payload,
            } => {
                let len = u16::try_from(8 + payload.len()).expect("UDP payload too long");
                let mut b = Vec::with_capacity(8 + payload.len());
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(payload);
                b
            }
            L4::Icmp { kind, id, seq } => {
                let mut b = vec![*kind, 0, 0, 0];
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(b"guard-echo");
                b
            }
            L4::Raw { bytes, .. } => return bytes.clone(),
        };
        let csum_at = match self.l4 {
            L4::Tcp { .. } => 16,
            L4::Udp { .. } => 6,
            L4::Icmp { .. } => 2,
            L4::Raw { .. } => unreachable!("returned above"),
        };
        let pseudo = matches!(self.l4, L4::Tcp { .. } | L4::Udp { .. }) || self.src.is_ipv6();
        let sum = if pseudo {
            checksum(&[&pseudo_header(self.src, self.dst, proto, b.len()), &b])
        } else {
            checksum(&[&b])
        };
        b[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
        b
    }

    fn proto(&self) -> u8 {
        match (&self.l4, self.src) {
            (L4::Tcp { .. }, _) => 6,
            (L4::Udp { .. }, _) => 17,
            (L4::Icmp { .. }, IpAddr::V4(_)) => 1,
            (L4::Icmp { .. }, IpAddr::V6(_)) => 58,
            (L4::Raw { proto, .. }, _) => *proto,
        }
    }

    /// The whole Ethernet frame.
    #[must_use]
    pub fn frame(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let (ethertype, l3) = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                (0x0800, self.ipv4(src.octets(), dst.octets(), &l4))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                (0x86dd, self.ipv6(src.octets(), dst.octets(), &l4))
            }
            _ => panic!("mixed address families"),
        };
        ether(self.dst_mac, self.src_mac, &self.vlans, ethertype, &l3)
    }

    fn ipv4(&self, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let data = self.frag.map_or(l4, |f| {
            let start = usize::from(f.offset).min(l4.len());
            &l4[start..(start + f.len).min(l4.len())]
        });
        let mut opts = self.ipv4_options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hlen = 20 + opts.len();
        let total = u16::try_from(hlen + data.len()).expect("IPv4 packet too long");
        let frag_field = self
            .frag
            .map_or(0x4000, |f| (f.offset / 8) | if f.more { 0x2000 } else { 0 });
        let ihl = u8::try_from(hlen / 4).expect("IPv4 options too long");
        let mut h = vec![0x40 | ihl, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&0x1234u16.to_be_bytes());
        h.extend_from_slice(&frag_field.to_be_bytes());
        h.extend_from_slice(&[64, self.proto(), 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&opts);
        let sum = checksum(&[&h]);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(data);
        h
    }

    fn ipv6(&self, src: [u8; 16], dst: [u8; 16], l4: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        let mut kinds: Vec<u8> = self
            .ipv6_ext
            .iter()
            .map(|e| match e {
                Ext::HopByHop => 0,
                Ext::Routing => 43,
                Ext::Fragment { .. } => 44,
                Ext::DestOpts => 60,
            })
            .collect();
        kinds.push(self.proto());
        for (ext, next) in self.ipv6_ext.iter().zip(kinds.iter().skip(1)) {
            match ext {
                Ext::HopByHop | Ext::DestOpts => {
                    // PadN filling the 8 bytes.
                    payload.extend_from_slice(&[*next, 0, 1, 4, 0, 0, 0, 0]);
                }
                Ext::Routing => {
                    // Type 0 routing header with no addresses, segments left 0.
                    payload.extend_from_slice(&[*next, 0, 0, 0, 0, 0, 0, 0]);
                }
                Ext::Fragment { offset, more } => {
                    let field = (offset & 0xfff8) | u16::from(*more);
                    payload.extend_from_slice(&[*next, 0]);
                    payload.extend_from_slice(&field.to_be_bytes());
                    payload.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
                }
            }
        }
        payload.extend_from_slice(l4);
        let plen = u16::try_from(payload.len()).expect("IPv6 payload too long");
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&plen.to_be_bytes());
        h.extend_from_slice(&[kinds[0], 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&payload);
        h
    }
}

/// An Ethernet frame around `payload`, with the VLAN tags given (TPIDs,
/// outermost first; VIDs 100, 101, ...).
#[must_use]
pub fn ether(dst: [u8; 6], src: [u8; 6], vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, tpid) in vlans.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + u16::try_from(i).unwrap_or(0)).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A minimal ARP request frame: the non-IP case.
#[must_use]
pub fn arp() -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 198, 18, 0, 1]);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    ether([0xff; 6], [0x02, 0, 0, 0, 0, 1], &[], ETH_P_ARP, &body)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
#[must_use]
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let p = Packet::tcp(
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
            1234,
            80,
            TCP_SYN,
        );
        let f = p.frame();
        assert_eq!(checksum(&[&f[14..34]]), 0);
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(f[14 + 20 + 13], TCP_SYN);
    }

    #[test]
    fn fragments_cut_the_transport_bytes() {
        let p = Packet::udp(
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
            1,
            2,
            &[7; 40],
        );
        let second = p.clone().fragment(Frag {
            offset: 16,
            more: false,
            len: 100,
        });
        let f = second.frame();
        assert_eq!(f.len(), 14 + 20 + 32);
        assert_eq!(u16::from_be_bytes([f[20], f[21]]), 2);
    }
}
