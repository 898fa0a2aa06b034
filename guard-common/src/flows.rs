//! The IPv4 UDP flow table (`GUARD_UDP_FLOW4`): an array of [`FlowSet`]s
//! of [`FLOW_WAYS`] flows each. A flow has one set, chosen by a hash of
//! its key seeded at load ([`crate::DataplaneConfig::slot_seed`]), and
//! takes the way that holds its key, or else the way seen least lately:
//! the set forgets its oldest flow, as an LRU hash forgets the table's.
//!
//! Why not the LRU hash it was: every UDP datagram looks its flow up, and
//! a flood's datagrams all miss. A hash map's lookup is a helper call
//! that hashes the key and walks a bucket; a set is an inlined array index
//! and two compares in one cache line (`cargo xtask bench`: a known flow
//! cost 3.0x the trivial program in the hash, 1.85x in a set; a new
//! flow's write 6.9x and 4.1x).
//!
//! Why two ways, not one: a flow is written once it is admitted, so a
//! flood the budget admits writes sets at the budget's rate. With one way
//! a legitimate flow's slot would go to the next flood flow that hashes
//! there, however lately the legitimate one was seen, and its next
//! datagram would be a new flow again, under the flood's budget. With two
//! the flood's older flow goes first: a flow is forgotten only once its
//! set has seen two flows since it last refreshed its time
//! ([`crate::config::UDP_FLOW_REFRESH_NS`]).

use crate::key::FlowKey4;

/// Flows per set.
pub const FLOW_WAYS: usize = 2;

/// One flow of a set: its key as words ([`FlowKey4::words`], compared as
/// such) and when it was last seen (0: never used; a zero key is no
/// datagram's, and a time of 0 is past any idle time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowWay {
    pub key: [u32; 3],
    pub pad: u32,
    pub last: u64,
}

impl FlowWay {
    /// The flow this way holds.
    #[must_use]
    pub const fn flow(&self) -> FlowKey4 {
        FlowKey4::from_words(self.key)
    }
}

/// A set of flows: one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet {
    pub ways: [FlowWay; FLOW_WAYS],
    pub pad: [u64; 2],
}

impl FlowSet {
    /// The way holding `key`, if any.
    #[inline(always)]
    #[must_use]
    pub fn find(&self, key: &FlowKey4) -> Option<usize> {
        let key = key.words();
        if self.ways[0].key == key {
            Some(0)
        } else if self.ways[1].key == key {
            Some(1)
        } else {
            None
        }
    }

    /// The way `key` is written into: its own, or else the one seen least
    /// lately (the first of two seen at the same time).
    #[inline(always)]
    #[must_use]
    pub fn way_for(&self, key: &FlowKey4) -> usize {
        match self.find(key) {
            Some(way) => way,
            None => usize::from(self.ways[1].last < self.ways[0].last),
        }
    }
}

/// Sets for a table of `flows` flows.
#[must_use]
pub const fn flow_sets(flows: u32) -> u32 {
    flows.div_ceil(FLOW_WAYS as u32)
}

/// `key`'s set in a table of `sets` sets, for `seed`: a multiplicative
/// hash of the key's three words with the seed mixed in before the first
/// product, mapped onto the table by the product's high half (as
/// [`crate::slots::slot_index`] maps a source).
#[inline(always)]
#[must_use]
pub const fn set_index(key: &FlowKey4, seed: u64, sets: u32) -> u32 {
    let [a, d, p] = key.words();
    let x = ((a as u64 | (d as u64) << 32) ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p as u64;
    let x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = x ^ (x >> 31);
    (((x >> 32) * sets as u64) >> 32) as u32
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays only, no implicit padding
// (explicit `pad`s; sizes checked below).
unsafe impl aya::Pod for FlowSet {}

const _: () = assert!(size_of::<FlowWay>() == 24);
const _: () = assert!(size_of::<FlowSet>() == 64);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn key(i: u32) -> FlowKey4 {
        FlowKey4 {
            saddr: (0xc613_0000 | i).to_be_bytes(),
            daddr: [198, 18, 0, 2],
            sport: 40_000,
            dport: 53,
        }
    }

    fn way(key: FlowKey4, last: u64) -> FlowWay {
        FlowWay {
            key: key.words(),
            pad: 0,
            last,
        }
    }

    #[test]
    fn a_flow_keeps_its_way_and_a_new_one_takes_the_older() {
        let mut set = FlowSet::default();
        assert_eq!((set.find(&key(1)), set.way_for(&key(1))), (None, 0));
        set.ways[0] = way(key(1), 10);
        assert_eq!(set.way_for(&key(2)), 1, "the empty way, never seen");
        set.ways[1] = way(key(2), 20);
        assert_eq!(set.find(&key(2)), Some(1));
        assert_eq!(set.ways[1].flow(), key(2));
        assert_eq!(FlowKey4::from_words(key(5).words()), key(5));
        assert_eq!(set.way_for(&key(1)), 0);
        assert_eq!(set.way_for(&key(2)), 1, "its own, though the newer");
        assert_eq!(set.way_for(&key(3)), 0, "the older goes");
        set.ways[0].last = 30;
        assert_eq!(set.way_for(&key(3)), 1, "refreshed, the other is older");
        set.ways[1].last = 30;
        assert_eq!(set.way_for(&key(3)), 0, "a tie: the first");
    }

    #[test]
    fn sets_spread_keys_and_the_seed_moves_them() {
        let sets = flow_sets(131_072);
        assert_eq!(sets, 65_536);
        assert_eq!(flow_sets(1025), 513);
        let spread: HashSet<u32> = (0..4096).map(|i| set_index(&key(i), 7, sets)).collect();
        assert!(spread.len() > 3900, "{} sets of 4096 keys", spread.len());
        assert!((0..4096).all(|i| set_index(&key(i), 7, 513) < 513));
        let moved = (0..256)
            .filter(|&i| set_index(&key(i), 7, sets) != set_index(&key(i), 8, sets))
            .count();
        assert!(moved > 250, "{moved} of 256 moved by another seed");
        let ports = |sport| FlowKey4 { sport, ..key(1) };
        assert_ne!(
            set_index(&ports(1), 7, sets),
            set_index(&ports(2), 7, sets),
            "ports are hashed"
        );
    }
}
