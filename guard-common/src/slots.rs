//! The per-source and per-prefix tables (`GUARD_SOURCES`,
//! `GUARD_PREFIXES`): direct-mapped arrays of [`Slot`]s. A key has one
//! slot, chosen by a hash of the key seeded at load
//! ([`crate::DataplaneConfig::slot_seed`]); the slot holds the key it
//! belongs to and that key's state. A key whose slot holds another key
//! takes the slot over with fresh state: the other key is forgotten, as
//! an LRU hash forgets its oldest entry, but by collision rather than age.
//!
//! Why not a hash map: the XDP program finds a slot with an inlined array
//! index and a compare of the key, where a hash map's lookup is a helper
//! call that hashes 20 bytes and walks a bucket. On the floor program
//! (`cargo xtask bench`) two slots and three compare-and-swaps cost
//! 2.2-2.5 baselines, two LRU lookups and the same swaps 4.7-4.8
//! (BENCHMARKS.md).
//!
//! What a collision costs: the evicted source's buckets start full again
//! when it comes back, and its counters restart. Its verification and ban
//! are kept in `GUARD_MARKS`, which only they write into, and come back
//! with its next new flow. The seed keeps a sender from choosing which
//! keys collide.

use crate::{key::SourceKey, state::SourceState};

/// One entry of the tables: the key that owns it (family 0: never
/// used) and its state. 112 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub key: SourceKey,
    pub pad: u32,
    pub state: SourceState,
}

impl Slot {
    /// Whether the slot holds a key (a table entry never written has
    /// family 0).
    #[must_use]
    pub const fn used(&self) -> bool {
        self.key.family != 0
    }
}

/// The slot of `key` in a table of `entries` slots, for `seed`: a
/// multiplicative hash of the key's address, prefix length and family
/// (its words) with the seed mixed in before the first product, mapped
/// onto the table by the product's high half (no division, any table
/// size).
#[inline(always)]
#[must_use]
pub const fn slot_index(key: &SourceKey, seed: u64, entries: u32) -> u32 {
    slot_place(key, seed, entries).0
}

/// `key`'s slot ([`slot_index`]) and its tag: 16 bits of one more
/// product of the same hash, whose high half takes every bit of it (the
/// slot's index is the hash's high bits, so keys that share a slot share
/// those), never 0 (no key).
#[inline(always)]
#[must_use]
pub const fn slot_place(key: &SourceKey, seed: u64, entries: u32) -> (u32, u16) {
    // From the key's words: the XDP program reads them as such.
    let w = key.words();
    let lo = w[1] as u64 | (w[2] as u64) << 32;
    let hi = w[3] as u64 | (w[4] as u64) << 32;
    let x = (lo ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi;
    let x = (x ^ ((w[0] as u64) << 32)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = x ^ (x >> 31);
    let index = (((x >> 32) * entries as u64) >> 32) as u32;
    let tag = (x.wrapping_mul(0x94d0_49bb_1331_11eb) >> 48) as u16 | 1;
    (index, tag)
}

/// Tags in a [`TagLine`].
pub const TAGS_PER_LINE: u32 = 32;

/// 32 consecutive slots' tags ([`slot_place`]; 0: no key), one cache line
/// of `GUARD_SOURCE_TAGS`. The program reads a source's tag before its
/// slot, and a tag that differs means the slot holds another source: a
/// flood of new sources, which the global budget drops before any
/// prefix, reads a line of the small tag array (a 56th of the table),
/// where the 112-byte slots it would miss in are spread over the whole
/// table. A tag that matches only sends the program on to compare the
/// key. Prefixes have no tags: the program looks a prefix up only to
/// take a token from it, so it reads or takes over the slot either way.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagLine {
    pub tags: [u16; TAGS_PER_LINE as usize],
}

/// Lines of tags for a table of `entries` slots.
#[must_use]
pub const fn tag_lines(entries: u32) -> u32 {
    entries.div_ceil(TAGS_PER_LINE)
}

/// The pairs of tags within each group (the keys of one slot, or of one
/// flow set), and how many of them are equal: for tests of how seldom
/// keys that share a place share a tag.
#[cfg(test)]
pub(crate) fn shared_tags<'a>(groups: impl IntoIterator<Item = &'a Vec<u16>>) -> (u64, u64) {
    let (mut pairs, mut same) = (0, 0);
    for tags in groups {
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                pairs += 1;
                same += u64::from(a == b);
            }
        }
    }
    (pairs, same)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays only, no implicit padding
// (explicit `pad`; size checked below).
unsafe impl aya::Pod for Slot {}
#[cfg(feature = "user")]
// SAFETY: an array of integers.
unsafe impl aya::Pod for TagLine {}

const _: () = assert!(size_of::<Slot>() == 112);
const _: () = assert!(size_of::<TagLine>() == 64);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// 65,536 sources of one /16 in a table of as many slots fill at least
    /// the 1 - 1/e of it that random slots would (a multiplicative hash
    /// spreads a run of addresses more evenly than that).
    #[test]
    fn sources_of_one_range_spread_over_the_slots() {
        let n = 65_536u32;
        for seed in [0, 1, 0x0123_4567_89ab_cdef] {
            let mut used = vec![false; n as usize];
            for i in 0..n {
                let key = SourceKey::v4([198, 18, (i >> 8) as u8, i as u8], 32);
                used[slot_index(&key, seed, n) as usize] = true;
            }
            let filled = f64::from(u32::try_from(used.iter().filter(|u| **u).count()).unwrap())
                / f64::from(n);
            let expected = 1.0 - (-1.0f64).exp();
            assert!(
                filled > expected - 0.01,
                "seed {seed}: {filled:.3} of the slots used, {expected:.3} expected"
            );
        }
    }

    /// IPv6 /64s of one /48 and IPv4 /24s of one /15 spread at least as
    /// well as random slots would, and no slot takes many keys.
    #[test]
    fn prefixes_spread_over_the_slots() {
        let n = 16_384u32;
        let v6 = (0..n).map(|i| {
            let mut addr = [0u8; 16];
            addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, (i >> 8) as u8, i as u8]);
            SourceKey::v6(addr, 64)
        });
        let v4 = (0..n / 32).map(|i| SourceKey::v4([198, 18 + (i >> 8) as u8, i as u8, 0], 24));
        for (what, keys, expected) in [
            ("v6", v6.collect::<Vec<_>>(), 1.0 - (-1.0f64).exp()),
            ("v4", v4.collect(), 1.0 - (-1.0f64 / 32.0).exp()),
        ] {
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for key in &keys {
                *counts.entry(slot_index(key, 7, n)).or_default() += 1;
            }
            let filled = f64::from(u32::try_from(counts.len()).unwrap()) / f64::from(n);
            assert!(
                filled > expected - 0.01 && counts.values().all(|c| *c < 10),
                "{what}: {filled:.3} of the slots used, {expected:.3} expected"
            );
        }
    }

    /// Every index is inside the table, whatever its size.
    #[test]
    fn indexes_stay_inside_the_table() {
        for entries in [1, 2, 3, 1000, 131_072, u32::MAX] {
            for i in 0..1000u32 {
                let key = SourceKey::v4(i.to_be_bytes(), 32);
                assert!(slot_index(&key, u64::from(i) * 77, entries) < entries);
            }
        }
    }

    /// Keys that share a slot almost never share a tag (a 15-bit tag:
    /// 1 in 32,768 for random keys), and no tag is 0.
    #[test]
    fn keys_that_share_a_slot_have_their_own_tags() {
        let n = 1 << 17;
        let mut by_slot: HashMap<u32, Vec<u16>> = HashMap::new();
        for i in 0..(1u32 << 20) {
            let key = SourceKey::v4((0xc612_0000 ^ i).to_be_bytes(), 32);
            let (slot, tag) = slot_place(&key, 3, n);
            assert_ne!(tag, 0);
            by_slot.entry(slot).or_default().push(tag);
        }
        let (pairs, same) = shared_tags(by_slot.values());
        assert!(
            pairs > 100_000 && same * 4096 < pairs,
            "{same} of {pairs} pairs share a tag"
        );
    }

    /// The seed decides which keys share a slot.
    #[test]
    fn the_seed_moves_the_collisions() {
        let n = 1024u32;
        let keys: Vec<SourceKey> = (0..4096u32)
            .map(|i| SourceKey::v4([198, 18, (i >> 8) as u8, i as u8], 32))
            .collect();
        let pairs = |seed: u64| -> Vec<(usize, usize)> {
            let mut by_slot: HashMap<u32, usize> = HashMap::new();
            let mut pairs = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                if let Some(j) = by_slot.insert(slot_index(k, seed, n), i) {
                    pairs.push((j, i));
                }
            }
            pairs
        };
        let (a, b) = (pairs(1), pairs(2));
        let shared = a.iter().filter(|p| b.contains(p)).count();
        assert!(
            shared * 20 < a.len(),
            "{shared} of {} collisions kept",
            a.len()
        );
    }

    /// A key of another family or prefix length with the same bytes is
    /// another key, in another slot (here).
    #[test]
    fn the_family_and_the_prefix_length_are_part_of_the_key() {
        let n = 1 << 20;
        let a = slot_index(&SourceKey::v4([198, 18, 0, 1], 32), 5, n);
        let b = slot_index(&SourceKey::v4([198, 18, 0, 1], 24), 5, n);
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 18, 0, 1]);
        let c = slot_index(&SourceKey::v6(addr, 128), 5, n);
        assert!(a != b && a != c && b != c, "{a} {b} {c}");
    }
}
