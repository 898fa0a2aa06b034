//! The marked filter: one bit per hash of a [`SourceKey`], set whenever a
//! source is written into `GUARD_MARKS` (verified or banned). A source
//! whose bit is clear has no marks, so a flood of new sources the budget
//! drops pays no `GUARD_MARKS` lookup: one array word read instead of a
//! hash lookup. A set bit only sends the packet to the lookup, so a bit
//! shared by two keys costs time, never a verdict.
//!
//! Bits accumulate: with `n` sources marked since the bits were last
//! cleared, a new source's bit is set by chance with probability about
//! `1 - exp(-n / MARKED_BITS)`, and such a packet costs what it cost
//! before the filter. So the map holds two halves: the program reads the
//! one `DataplaneConfig::marked_half` names and sets each bit in both.
//! When the half read has [`REFRESH_AT_BITS`] set, `guard run` clears the
//! other, sets in it the bits of the marks in force (read from
//! `GUARD_MARKS`), and switches the program to it. A mark made meanwhile
//! sets its own bit in the half being rebuilt, after the clear, or is in
//! `GUARD_MARKS` before the rebuild reads it: either half, once complete,
//! holds the bit of every mark in force.

use crate::key::SourceKey;

/// Words of 64 bits in a half of `GUARD_MARKED`: 2 Mi bits, 256 KiB.
pub const MARKED_WORDS: u32 = 1 << 15;
/// Bits in one half.
pub const MARKED_BITS: u64 = MARKED_WORDS as u64 * 64;
/// Words in the map: two halves.
pub const MARKED_ENTRIES: u32 = 2 * MARKED_WORDS;
/// Bits set in the half read at which `guard run` rebuilds the other: 1
/// in 16, so a spoofed source pays a `GUARD_MARKS` lookup at most 1 time
/// in 16. The marks in force (at most `MAX_MARKS`, 65,536) set at most
/// 3.1% of the bits: a half this full holds mostly marks gone by.
pub const REFRESH_AT_BITS: u64 = MARKED_BITS / 16;

/// The first word of the half that `DataplaneConfig::marked_half` names
/// (0 or 1): where the program reads, and what `guard run` switches.
#[inline(always)]
#[must_use]
pub const fn half_start(marked_half: u32) -> u32 {
    if marked_half == 0 { 0 } else { MARKED_WORDS }
}

/// Where `key`'s bit is: the word's index in a half and the bit's mask
/// within it.
/// A multiplicative hash of the key's address, prefix length and family;
/// the product's high bits, which every input bit reaches, pick the bit.
#[inline(always)]
#[must_use]
pub const fn marked_bit(key: &SourceKey) -> (u32, u64) {
    // From the key's words, as the XDP program reads them.
    let w = key.words();
    let lo = w[1] as u64 | (w[2] as u64) << 32;
    let hi = w[3] as u64 | (w[4] as u64) << 32;
    let tag = w[0] as u64;
    let x = (lo ^ hi.rotate_left(31) ^ (tag << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let word = (x >> 43) as u32 & (MARKED_WORDS - 1);
    let bit = 1u64 << ((x >> 37) & 63);
    (word, bit)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Distinct keys land on distinct bits about as often as random bits
    /// would: 65,536 IPv4 sources in one /16, and as many IPv6 /64s of one
    /// /48, each set about 65,536 * exp(-1/32) distinct bits.
    #[test]
    fn sources_of_one_range_spread_over_the_bits() {
        let n = 65_536u32;
        let bits = f64::from(u32::try_from(MARKED_BITS).unwrap());
        let expected = f64::from(n) * (-f64::from(n) / bits).exp();
        let v4: HashSet<(u32, u64)> = (0..n)
            .map(|i| marked_bit(&SourceKey::v4([198, 18, (i >> 8) as u8, i as u8], 32)))
            .collect();
        let v6: HashSet<(u32, u64)> = (0..n)
            .map(|i| {
                let mut addr = [0u8; 16];
                addr[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1]);
                addr[6] = (i >> 8) as u8;
                addr[7] = i as u8;
                marked_bit(&SourceKey::v6(addr, 64))
            })
            .collect();
        for (what, set) in [("v4", &v4), ("v6", &v6)] {
            let distinct = f64::from(u32::try_from(set.len()).unwrap());
            assert!(
                distinct > expected * 0.99,
                "{what}: {distinct} distinct bits, {expected:.0} expected"
            );
        }
    }

    /// An address and its prefix, or the same bytes in the other family,
    /// are different keys: their bits differ (here; a shared bit would
    /// only cost a lookup).
    #[test]
    fn the_family_and_the_prefix_length_are_part_of_the_key() {
        let a = marked_bit(&SourceKey::v4([198, 18, 0, 1], 32));
        let b = marked_bit(&SourceKey::v4([198, 18, 0, 1], 24));
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 18, 0, 1]);
        let c = marked_bit(&SourceKey::v6(addr, 128));
        assert!(a != b && a != c && b != c, "{a:?} {b:?} {c:?}");
    }
}
