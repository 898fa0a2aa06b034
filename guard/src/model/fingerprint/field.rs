//! The fields of a fingerprint a predicate can fix, where each sits in
//! the layout, and how a value is read, written and masked.

use guard_common::fingerprint::{
    FP_DPORT, FP_FAMILY, FP_IP_ID, FP_IP_LEN, FP_L4_HLEN, FP_LEN, FP_PAYLOAD, FP_PROTO, FP_SPORT,
    FP_TCP_FLAGS, FP_TOS, FP_TTL, FP_WINDOW,
};

/// A field of the fingerprint a predicate can fix: one of the layout's,
/// or a 4-byte chunk of its payload. Ordered as the layout (ties in
/// learning are broken in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Family,
    Proto,
    Ttl,
    Tos,
    IpId,
    IpLen,
    Sport,
    Dport,
    /// TCP window, UDP length, ICMP sequence.
    Window,
    TcpFlags,
    /// Transport header length in bytes (UDP and ICMP: always 8).
    L4Hlen,
    /// Payload bytes `4k..4k + 4`, `k` < 4 (TCP: options first).
    Payload(u8),
}

impl Field {
    /// Every field, in layout order.
    pub const ALL: [Self; 15] = [
        Self::Family,
        Self::Proto,
        Self::Ttl,
        Self::Tos,
        Self::IpId,
        Self::IpLen,
        Self::Sport,
        Self::Dport,
        Self::Window,
        Self::TcpFlags,
        Self::L4Hlen,
        Self::Payload(0),
        Self::Payload(1),
        Self::Payload(2),
        Self::Payload(3),
    ];

    /// Where the field starts in the layout.
    #[must_use]
    pub const fn offset(self) -> usize {
        match self {
            Self::Family => FP_FAMILY,
            Self::Proto => FP_PROTO,
            Self::Ttl => FP_TTL,
            Self::Tos => FP_TOS,
            Self::IpId => FP_IP_ID,
            Self::IpLen => FP_IP_LEN,
            Self::Sport => FP_SPORT,
            Self::Dport => FP_DPORT,
            Self::Window => FP_WINDOW,
            Self::TcpFlags => FP_TCP_FLAGS,
            Self::L4Hlen => FP_L4_HLEN,
            Self::Payload(k) => FP_PAYLOAD + 4 * k as usize,
        }
    }

    /// Its width in bytes.
    #[must_use]
    pub const fn width(self) -> usize {
        match self {
            Self::Family | Self::Proto | Self::Ttl | Self::Tos | Self::TcpFlags | Self::L4Hlen => 1,
            Self::IpId | Self::IpLen | Self::Sport | Self::Dport | Self::Window => 2,
            Self::Payload(_) => 4,
        }
    }

    pub(super) const fn bits(self) -> u32 {
        8 * self.width() as u32
    }

    /// The mask of every bit of the field.
    pub(super) const fn full(self) -> u32 {
        prefix(self.bits(), self.bits())
    }

    /// How many bits learning takes off the mask at a time. Family and
    /// protocol are names, not quantities: a range of them means nothing.
    /// Payload is bytes: a whole byte or none.
    pub(super) const fn step(self) -> u32 {
        match self {
            Self::Family | Self::Proto => self.bits(),
            Self::Payload(_) => 8,
            _ => 1,
        }
    }

    /// The field's bytes as a big-endian number.
    pub(super) fn read(self, b: &[u8; FP_LEN]) -> u32 {
        b[self.offset()..self.offset() + self.width()]
            .iter()
            .fold(0, |n, &byte| n << 8 | u32::from(byte))
    }

    pub(super) fn write(self, b: &mut [u8; FP_LEN], n: u32) {
        let w = self.width();
        for (i, byte) in b[self.offset()..self.offset() + w].iter_mut().enumerate() {
            *byte = (n >> (8 * (w - 1 - i))) as u8;
        }
    }
}

/// The `n` high bits of a `bits`-wide field.
pub(super) const fn prefix(bits: u32, n: u32) -> u32 {
    let all = (1u64 << bits) - 1;
    (all ^ (all >> n)) as u32
}
