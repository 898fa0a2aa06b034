//! Attack fingerprints: the traits of a new-flow packet as one fixed
//! vector, and signatures (masks and values over it) the XDP program
//! drops on before any per-source state is touched.
//!
//! Both sides build the same [`Fingerprint`]: the XDP program from the
//! packet it holds (and sends a sample of them to userspace), userspace
//! from a frame ([`Fingerprint::of`], for the reference model and tests).
//! A signature learned from the samples therefore matches in XDP exactly
//! what it matched in the learner.
//!
//! Layout (bytes as on the wire, big-endian fields):
//!
//! | bytes | field | IPv4 | IPv6 |
//! |---|---|---|---|
//! | 0 | family | [`crate::key::AF_INET`] | [`crate::key::AF_INET6`] |
//! | 1 | transport | 6, 17, 1 | 6, 17, 58 |
//! | 2 | TTL | TTL | hop limit |
//! | 3 | TOS | TOS | traffic class |
//! | 4..6 | IP ID | identification | flow label, low 16 bits |
//! | 6..8 | IP length | total length | 40 + payload length |
//!
//! then by transport:
//!
//! | bytes | TCP | UDP | ICMP echo |
//! |---|---|---|---|
//! | 8..10 | source port | source port | type, code |
//! | 10..12 | destination port | destination port | identifier |
//! | 12..14 | window | length | sequence |
//! | 14 | flags | 0 | 0 |
//! | 15 | header length (bytes) | 8 | 8 |
//! | 16..32 | the 16 bytes after the fixed 20-byte header: options, then data | payload | payload |
//!
//! Bytes past the IP packet's end (a short payload) are zero.

use crate::{
    dissect::{ICMP_MIN_HLEN, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, TCP_MIN_HLEN, UDP_HLEN},
    key::{AF_INET, AF_INET6},
};

pub const FP_LEN: usize = 32;
pub const FP_WORDS: usize = FP_LEN / 8;

pub const FP_FAMILY: usize = 0;
pub const FP_PROTO: usize = 1;
pub const FP_TTL: usize = 2;
pub const FP_TOS: usize = 3;
pub const FP_IP_ID: usize = 4;
pub const FP_IP_LEN: usize = 6;
pub const FP_SPORT: usize = 8;
pub const FP_DPORT: usize = 10;
pub const FP_WINDOW: usize = 12;
pub const FP_TCP_FLAGS: usize = 14;
pub const FP_L4_HLEN: usize = 15;
pub const FP_PAYLOAD: usize = 16;
/// Payload bytes in a fingerprint.
pub const FP_PAYLOAD_LEN: usize = FP_LEN - FP_PAYLOAD;

/// The traits of one packet, as the words a [`Signature`] masks (the
/// bytes of the layout in memory order: [`Fingerprint::bytes`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub words: [u64; FP_WORDS],
}

impl Fingerprint {
    pub const ZERO: Self = Self {
        words: [0; FP_WORDS],
    };

    #[must_use]
    pub fn from_bytes(b: &[u8; FP_LEN]) -> Self {
        let mut words = [0u64; FP_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *w = u64::from_ne_bytes(word);
        }
        Self { words }
    }

    #[must_use]
    pub fn bytes(&self) -> [u8; FP_LEN] {
        let mut b = [0u8; FP_LEN];
        for (i, w) in self.words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    /// The fingerprint of an IP packet (`ip`: from the IP header to the
    /// end of the frame, link padding included) whose transport header
    /// starts `l4` bytes in; `proto` is the transport (IPv6: after the
    /// extension headers). `None` if a header the layout needs is not
    /// there.
    #[must_use]
    pub fn of(ip: &[u8], l4: usize, proto: u8) -> Option<Self> {
        let mut bytes = [0u8; FP_LEN];
        let b = &mut bytes;
        let version = ip.first()? >> 4;
        let end = if version == 4 {
            let h = ip.get(..20)?;
            b[FP_FAMILY] = AF_INET;
            b[FP_TTL] = h[8];
            b[FP_TOS] = h[1];
            b[FP_IP_ID..FP_IP_ID + 2].copy_from_slice(&h[4..6]);
            b[FP_IP_LEN..FP_IP_LEN + 2].copy_from_slice(&h[2..4]);
            usize::from(u16::from_be_bytes([h[2], h[3]]))
        } else {
            let h = ip.get(..40)?;
            b[FP_FAMILY] = AF_INET6;
            b[FP_TTL] = h[7];
            b[FP_TOS] = (h[0] << 4) | (h[1] >> 4);
            b[FP_IP_ID..FP_IP_ID + 2].copy_from_slice(&h[2..4]);
            let len = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            b[FP_IP_LEN..FP_IP_LEN + 2].copy_from_slice(&(len as u16).to_be_bytes());
            len
        };
        b[FP_PROTO] = proto;
        let end = end.min(ip.len());
        match proto {
            IPPROTO_TCP => {
                let t = ip.get(l4..l4 + TCP_MIN_HLEN)?;
                b[FP_SPORT..FP_SPORT + 4].copy_from_slice(&t[0..4]);
                b[FP_WINDOW..FP_WINDOW + 2].copy_from_slice(&t[14..16]);
                b[FP_TCP_FLAGS] = t[13];
                b[FP_L4_HLEN] = (t[12] >> 4) * 4;
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                let t = ip.get(l4..l4 + ICMP_MIN_HLEN)?;
                b[FP_SPORT..FP_SPORT + 2].copy_from_slice(&t[0..2]);
                b[FP_DPORT..FP_DPORT + 4].copy_from_slice(&t[4..8]);
                b[FP_L4_HLEN] = ICMP_MIN_HLEN as u8;
            }
            _ => {
                let t = ip.get(l4..l4 + UDP_HLEN)?;
                b[FP_SPORT..FP_SPORT + 6].copy_from_slice(&t[0..6]);
                b[FP_L4_HLEN] = UDP_HLEN as u8;
            }
        }
        let start = l4 + reads::fixed_len(proto);
        let mut i = 0;
        while i < FP_PAYLOAD_LEN && start + i < end {
            b[FP_PAYLOAD + i] = ip[start + i];
            i += 1;
        }
        Some(Self::from_bytes(&bytes))
    }
}

/// The fingerprint's words from the words the XDP program reads of a
/// packet: eight bytes each, in memory order as a little-endian load
/// gives them, so a field is a shift and a mask away. One read per word
/// instead of one per byte; [`Fingerprint::of`] is the reference the
/// tests hold these to.
pub mod reads {
    use super::FP_PAYLOAD_LEN;
    use crate::{
        dissect::{ICMP_MIN_HLEN, IPPROTO_TCP, IPPROTO_UDP, TCP_MIN_HLEN, UDP_HLEN},
        key::{AF_INET, AF_INET6},
    };

    /// Word 0 (family to IP length) from the IP header's first 16 bytes,
    /// the transport (`proto`, after any IPv6 extension headers) and the
    /// datagram's length.
    #[inline(always)]
    #[must_use]
    pub const fn ip(v4: bool, ip: [u64; 2], proto: u8, ip_len: u16) -> u64 {
        let (family, ttl, tos, id) = if v4 {
            (
                AF_INET,
                ip[1] & 0xff,
                (ip[0] >> 8) & 0xff,
                (ip[0] >> 32) & 0xffff,
            )
        } else {
            // The traffic class straddles the first two bytes.
            (
                AF_INET6,
                ip[0] >> 56,
                ((ip[0] << 4) & 0xf0) | ((ip[0] >> 12) & 0x0f),
                (ip[0] >> 16) & 0xffff,
            )
        };
        family as u64
            | (proto as u64) << 8
            | ttl << 16
            | tos << 24
            | id << 32
            | (ip_len.swap_bytes() as u64) << 48
    }

    /// Bytes of the transport header [`transport`] reads: TCP's first 16,
    /// UDP's and ICMP's 8.
    #[inline(always)]
    #[must_use]
    pub const fn transport_len(proto: u8) -> usize {
        if proto == IPPROTO_TCP { 16 } else { 8 }
    }

    /// The transport header's fixed length, where the fingerprint's
    /// payload starts: TCP's 20 bytes (options are not payload), UDP's
    /// and ICMP's 8.
    #[inline(always)]
    #[must_use]
    pub const fn fixed_len(proto: u8) -> usize {
        match proto {
            IPPROTO_TCP => TCP_MIN_HLEN,
            IPPROTO_UDP => UDP_HLEN,
            _ => ICMP_MIN_HLEN,
        }
    }

    /// Word 1 (ports to header length) from the transport header's first
    /// bytes ([`transport_len`]; `l4[1]` is TCP's alone).
    #[inline(always)]
    #[must_use]
    pub const fn transport(proto: u8, l4: [u64; 2]) -> u64 {
        if proto == IPPROTO_TCP {
            // Ports; the window; the flags; the data offset in bytes,
            // (byte 12 >> 4) * 4.
            (l4[0] & 0xffff_ffff)
                | (l4[1] >> 48) << 32
                | ((l4[1] >> 40) & 0xff) << 48
                | ((l4[1] >> 32) & 0xf0) << 54
        } else if proto == IPPROTO_UDP {
            (l4[0] & 0xffff_ffff_ffff) | (UDP_HLEN as u64) << 56
        } else {
            // Type and code, then identifier and sequence past the checksum.
            (l4[0] & 0xffff) | (l4[0] >> 32) << 16 | (ICMP_MIN_HLEN as u64) << 56
        }
    }

    /// Words 2 and 3 from the 16 bytes at the payload's start, of which
    /// the datagram has `avail`: the rest (link padding, or whatever the
    /// frame holds next) are zeroed.
    #[inline(always)]
    #[must_use]
    pub const fn payload(w: [u64; 2], avail: usize) -> [u64; 2] {
        [
            w[0] & low_bytes(avail),
            w[1] & low_bytes(avail.saturating_sub(8)),
        ]
    }

    /// A mask of a word's low `n` bytes (all of it from 8 on).
    #[inline(always)]
    const fn low_bytes(n: usize) -> u64 {
        if n >= 8 {
            u64::MAX
        } else {
            (1u64 << ((8 * n) & 63)) - 1
        }
    }

    const _: () = assert!(FP_PAYLOAD_LEN == 16);
}

/// Signatures the table holds; a slot's hits are counted in
/// [`crate::counters::SIG_HIT_SLOT`]` + slot`.
pub const MAX_SIGS: usize = 8;

/// One signature: a packet matches when its fingerprint's bits under
/// `mask` equal `value` (`value` has no bit outside `mask`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Signature {
    pub mask: [u64; FP_WORDS],
    pub value: [u64; FP_WORDS],
}

impl Signature {
    /// Matches every packet: never installed (the table refuses it).
    pub const EMPTY: Self = Self {
        mask: [0; FP_WORDS],
        value: [0; FP_WORDS],
    };

    /// A signature from byte masks and values (as the fingerprint's
    /// layout). The value is masked.
    #[must_use]
    pub fn from_bytes(mask: &[u8; FP_LEN], value: &[u8; FP_LEN]) -> Self {
        let mut v = [0u8; FP_LEN];
        for (i, b) in v.iter_mut().enumerate() {
            *b = value[i] & mask[i];
        }
        Self {
            mask: Fingerprint::from_bytes(mask).words,
            value: Fingerprint::from_bytes(&v).words,
        }
    }

    /// The mask and value as bytes of the fingerprint's layout.
    #[must_use]
    pub fn to_bytes(&self) -> ([u8; FP_LEN], [u8; FP_LEN]) {
        (
            Fingerprint { words: self.mask }.bytes(),
            Fingerprint { words: self.value }.bytes(),
        )
    }

    #[must_use]
    #[inline(always)]
    pub fn matches(&self, fp: &Fingerprint) -> bool {
        let w = &fp.words;
        (w[0] & self.mask[0]) == self.value[0]
            && (w[1] & self.mask[1]) == self.value[1]
            && (w[2] & self.mask[2]) == self.value[2]
            && (w[3] & self.mask[3]) == self.value[3]
    }
}

/// Where a signature came from ([`SigMeta::origin`]).
pub const SIG_LEARNED: u8 = 1;
pub const SIG_OPERATOR: u8 = 2;

/// What userspace keeps with a signature; the XDP program reads only
/// [`SigTable::active`], [`SigTable::monitor`] and the signatures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigMeta {
    /// A number that names it in logs and `guard sigs` (never reused
    /// while guard runs).
    pub id: u32,
    /// [`SIG_LEARNED`] or [`SIG_OPERATOR`].
    pub origin: u8,
    /// 1: never expires (an operator's, or one pinned).
    pub pinned: u8,
    pub pad: u16,
    /// Installed at (Unix time, ms).
    pub since_ms: u64,
    /// The slot's hit counter when it was installed.
    pub hits_base: u64,
    /// What it matched when learned, in parts per million of the new flows
    /// sampled (0 for an operator's).
    pub share_ppm: u32,
    pub pad2: u32,
}

/// The single entry of `GUARD_SIGS`: one lookup gives the XDP program the
/// whole table. 776 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigTable {
    /// Bit `i`: slot `i` holds a signature.
    pub active: u32,
    /// Bit `i`: slot `i` only counts its hits (monitor), drops nothing.
    pub monitor: u32,
    pub sigs: [Signature; MAX_SIGS],
    pub meta: [SigMeta; MAX_SIGS],
}

impl SigTable {
    pub const EMPTY: Self = Self {
        active: 0,
        monitor: 0,
        sigs: [Signature::EMPTY; MAX_SIGS],
        meta: [SigMeta {
            id: 0,
            origin: 0,
            pinned: 0,
            pad: 0,
            since_ms: 0,
            hits_base: 0,
            share_ppm: 0,
            pad2: 0,
        }; MAX_SIGS],
    };

    /// Installs `sig` in the first free slot with `meta`, unless an active
    /// slot holds the same signature: the slot, or `None` when full (or a
    /// duplicate, or [`Signature::EMPTY`], which would match everything).
    pub fn install(&mut self, sig: Signature, meta: SigMeta, monitor: bool) -> Option<usize> {
        if sig.mask == Signature::EMPTY.mask {
            return None;
        }
        if (0..MAX_SIGS).any(|i| self.active & (1 << i) != 0 && self.sigs[i] == sig) {
            return None;
        }
        let slot = self.free_slot()?;
        self.sigs[slot] = sig;
        self.meta[slot] = meta;
        self.active |= 1 << slot;
        if monitor {
            self.monitor |= 1 << slot;
        } else {
            self.monitor &= !(1 << slot);
        }
        Some(slot)
    }

    /// Takes out the signature numbered `id`: its slot, if one held it.
    pub fn remove(&mut self, id: u32) -> Option<usize> {
        let slot = self.slots().find(|&i| self.meta[i].id == id)?;
        self.active &= !(1 << slot);
        self.monitor &= !(1 << slot);
        self.sigs[slot] = Signature::EMPTY;
        self.meta[slot] = Self::EMPTY.meta[slot];
        Some(slot)
    }

    /// Pins the signature numbered `id` (it no longer expires): its
    /// slot, if one held it.
    pub fn pin(&mut self, id: u32) -> Option<usize> {
        let slot = self.slots().find(|&i| self.meta[i].id == id)?;
        self.meta[slot].pinned = 1;
        Some(slot)
    }

    /// The slot [`SigTable::install`] takes next, if any is free.
    #[must_use]
    pub fn free_slot(&self) -> Option<usize> {
        (0..MAX_SIGS).find(|i| self.active & (1 << i) == 0)
    }

    /// How a slot's signature came: `learned` or `operator`.
    #[must_use]
    pub fn origin_name(&self, slot: usize) -> &'static str {
        if self.meta[slot].origin == SIG_LEARNED {
            "learned"
        } else {
            "operator"
        }
    }

    /// What a slot's signature does: `drop`, or `monitor` (counts only).
    #[must_use]
    pub fn action_name(&self, slot: usize) -> &'static str {
        if self.monitor & (1 << slot) == 0 {
            "drop"
        } else {
            "monitor"
        }
    }

    /// The packets slot `slot`'s signature matched since it was installed:
    /// the slot's counter in `counters` less its value then.
    #[must_use]
    pub const fn hits(&self, slot: usize, counters: &crate::CounterBlock) -> u64 {
        counters
            .sig_hits(slot)
            .wrapping_sub(self.meta[slot].hits_base)
    }

    /// The active slots, in order.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_SIGS).filter(|i| self.active & (1 << i) != 0)
    }

    /// A number no active signature has.
    #[must_use]
    pub fn next_id(&self) -> u32 {
        self.slots().map(|i| self.meta[i].id).max().unwrap_or(0) + 1
    }

    /// The first active signature that matches, by slot.
    #[must_use]
    #[inline(always)]
    pub fn find(&self, fp: &Fingerprint) -> Option<usize> {
        let mut i = 0;
        while i < MAX_SIGS {
            if self.active & (1 << i) != 0 && self.sigs[i].matches(fp) {
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

impl Default for SigTable {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// [`Sample::kind`]: a new flow from a source not verified (the attack
/// sample while there is a flood, and the picture of normal new flows
/// while there is none).
pub const SAMPLE_NEW: u32 = 1;
/// A new flow from a verified source: a signature must never match one.
pub const SAMPLE_VERIFIED: u32 = 2;
/// A packet of a known UDP flow (contrast).
pub const SAMPLE_ESTABLISHED: u32 = 3;

/// A record of the `GUARD_SAMPLES` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub kind: u32,
    /// The CPU that took it: each CPU has its own sample budget, so the
    /// learner weighs a CPU's samples by what that CPU saw.
    pub cpu: u32,
    pub fp: Fingerprint,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers and byte arrays only, no implicit padding
    // (sizes checked below).
    unsafe impl aya::Pod for super::SigTable {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Sample {}
}

const _: () = assert!(size_of::<Signature>() == 64);
const _: () = assert!(size_of::<SigMeta>() == 32);
const _: () = assert!(size_of::<SigTable>() == 8 + 64 * MAX_SIGS + 32 * MAX_SIGS);
const _: () = assert!(size_of::<Sample>() == 40);
const _: () = assert!(FP_PAYLOAD + FP_PAYLOAD_LEN == FP_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let len = 20 + 8 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0x12,
            0x34,
            0,
            0,
            64,
            17,
        ];
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&[0x30, 0x39, 0x14, 0xe9, 0, (8 + payload.len()) as u8, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn udp_fields_land_where_the_layout_says() {
        let mut frame = udp4(&[0xde, 0xad, 0xbe, 0xef]);
        // Link padding past the IP length is not payload.
        frame.extend_from_slice(&[0xff; 8]);
        let fp = Fingerprint::of(&frame, 20, 17).unwrap();
        let b = fp.bytes();
        assert_eq!(b[FP_FAMILY], AF_INET);
        assert_eq!(b[FP_PROTO], 17);
        assert_eq!(b[FP_TTL], 64);
        assert_eq!(&b[FP_IP_ID..FP_IP_ID + 2], &[0x12, 0x34]);
        assert_eq!(&b[FP_IP_LEN..FP_IP_LEN + 2], &[0, 32]);
        assert_eq!(&b[FP_DPORT..FP_DPORT + 2], &5353u16.to_be_bytes());
        assert_eq!(&b[FP_WINDOW..FP_WINDOW + 2], &[0, 12]);
        assert_eq!(b[FP_L4_HLEN], 8);
        assert_eq!(&b[FP_PAYLOAD..FP_PAYLOAD + 5], &[0xde, 0xad, 0xbe, 0xef, 0]);
    }

    #[test]
    fn a_signature_matches_what_its_mask_selects() {
        let fp = Fingerprint::of(&udp4(&[0xde, 0xad, 0xbe, 0xef]), 20, 17).unwrap();
        let mut mask = [0u8; FP_LEN];
        mask[FP_DPORT] = 0xff;
        mask[FP_DPORT + 1] = 0xff;
        mask[FP_PAYLOAD..FP_PAYLOAD + 4].fill(0xff);
        let sig = Signature::from_bytes(&mask, &fp.bytes());
        assert!(sig.matches(&fp));
        let other = Fingerprint::of(&udp4(&[0xde, 0xad, 0xbe, 0xee]), 20, 17).unwrap();
        assert!(!sig.matches(&other));
        assert_eq!(
            Signature::from_bytes(&sig.to_bytes().0, &sig.to_bytes().1),
            sig
        );
        let mut table = SigTable::EMPTY;
        assert_eq!(table.find(&fp), None);
        table.sigs[3] = sig;
        table.active = 1 << 3;
        assert_eq!(table.find(&fp), Some(3));
    }

    #[test]
    fn the_table_installs_removes_and_refuses() {
        let fp = Fingerprint::of(&udp4(&[1, 2, 3, 4]), 20, 17).unwrap();
        let mut mask = [0u8; FP_LEN];
        mask[FP_PAYLOAD..FP_PAYLOAD + 4].fill(0xff);
        let sig = Signature::from_bytes(&mask, &fp.bytes());
        let mut t = SigTable::EMPTY;
        let meta = |id| SigMeta {
            id,
            ..SigMeta::default()
        };
        assert_eq!(t.install(Signature::EMPTY, meta(1), false), None);
        assert_eq!(t.install(sig, meta(t.next_id()), true), Some(0));
        assert_eq!(
            t.install(sig, meta(t.next_id()), false),
            None,
            "a duplicate"
        );
        assert_eq!(t.monitor, 1);
        let mut other = sig;
        for i in 1..MAX_SIGS as u64 {
            other.value[2] = i;
            other.mask[2] = u64::MAX;
            assert_eq!(t.install(other, meta(t.next_id()), false), Some(i as usize));
        }
        assert_eq!(
            t.install(
                Signature {
                    value: [9; 4],
                    mask: [u64::MAX; 4]
                },
                meta(99),
                false
            ),
            None,
            "full"
        );
        assert_eq!(t.next_id(), 9);
        assert_eq!(t.pin(2), Some(1));
        assert_eq!(t.meta[1].pinned, 1);
        assert_eq!(t.pin(99), None);
        assert_eq!(t.remove(1), Some(0));
        assert_eq!(t.remove(1), None);
        assert_eq!((t.active & 1, t.monitor), (0, 0));
        assert_eq!(t.find(&fp), None);
    }

    #[test]
    fn truncated_headers_give_none() {
        let frame = udp4(&[]);
        assert!(Fingerprint::of(&frame[..24], 20, 17).is_none());
        assert!(Fingerprint::of(&frame[..10], 20, 17).is_none());
        assert!(Fingerprint::of(&[], 20, 17).is_none());
    }
}
