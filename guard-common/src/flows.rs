//! The datagram flow tables: IPv4 UDP flows (`GUARD_UDP_FLOW4`), an array
//! of [`FlowSet`]s, and IPv6 UDP flows with the flows of other protocols
//! of both families (`GUARD_UDP_FLOWS`), an array of [`FlowSet6`]s; each
//! set holds [`FLOW_WAYS`] flows. A flow has one set, chosen by a hash of
//! its key seeded at load ([`crate::DataplaneConfig::slot_seed`]), and
//! takes the way that holds its key, or else the way not written or
//! refreshed last: the set forgets its older flow, as an LRU hash forgets
//! the table's.
//!
//! Why not the LRU hashes they were: every UDP datagram looks its flow
//! up, and a flood's datagrams all miss. A hash map's lookup is a helper
//! call that hashes the key and walks a bucket; a set is an inlined array
//! index and two compares in one or two cache lines (`cargo xtask bench`:
//! a known IPv4 flow cost 3.0x the trivial program in the hash, 1.85x in
//! a set, an IPv6 one 3.3x and 2.0x; a new flow's write 6.9x and 4.1x).
//!
//! Why two ways, not one: a flow is written once it is admitted, so a
//! flood the budget admits writes sets at the budget's rate. With one way
//! a legitimate flow's slot would go to the next flood flow that hashes
//! there, however lately the legitimate one was seen, and its next
//! datagram would be a new flow again, under the flood's budget. With two
//! the flood's older flow goes first: a flow is forgotten only once its
//! set has seen two flows since it last refreshed its time
//! ([`crate::config::UDP_FLOW_REFRESH_NS`]).
//!
//! Why tags beside the sets (`GUARD_UDP4_TAGS`, `GUARD_UDP_TAGS`: 16 bits
//! a way, [`SetTags`], in [`crate::slots::TagLine`]s, a sixteenth of the
//! IPv4 table): a flood's datagrams are new flows, and each looked its set
//! up, a cache miss in megabytes of table (66% of the program's samples
//! with the budget spent, `cargo xtask bench --profile udp-spent`). A tag
//! that is not the flow's proves the way holds another flow, as a
//! source's tag does its slot ([`crate::slots::TagLine`]), so the datagram
//! reads a line of the small array and not the set. Unlike a time stamp, a
//! tag says so in a table full of flows seen lately, too.
//!
//! Why the older way is marked in the tags ([`SetTags`]), not found from
//! the ways' times: a new flow that is admitted is written, and choosing
//! its way by the times read the set, a cache miss (56% of the program's
//! samples, `cargo xtask bench --profile udp-new`), where a store does
//! not wait. With the tags saying which way was written or refreshed
//! last, a flow whose tag is in neither way is written without its set
//! being read.

use crate::{
    dissect::IPPROTO_UDP,
    key::{AF_INET6, FlowKey, FlowKey4, addr_words, flow_words},
    slots::{TAGS_PER_LINE, tag_lines},
};

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
    /// The way holding the key of `words` ([`FlowKey4::words`]), if any.
    #[inline(always)]
    #[must_use]
    pub fn find(&self, words: &[u32; 3]) -> Option<usize> {
        find(self.ways.each_ref().map(|w| &w.key), words)
    }
}

/// One flow of an IPv6 (or other protocol's) set: its key as words
/// ([`FlowKey::words`]) and when it was last seen, as in [`FlowWay`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowWay6 {
    pub key: [u64; 5],
    pub last: u64,
}

impl FlowWay6 {
    /// The flow this way holds.
    #[must_use]
    pub fn flow(&self) -> FlowKey {
        FlowKey::from_words(self.key)
    }
}

/// A set of IPv6 (or other protocols') flows: two cache lines.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet6 {
    pub ways: [FlowWay6; FLOW_WAYS],
    pub pad: [u64; 4],
}

impl FlowSet6 {
    /// The way holding the key of `words` ([`FlowKey::words`]), if any.
    #[inline(always)]
    #[must_use]
    pub fn find(&self, words: &[u64; 5]) -> Option<usize> {
        find(self.ways.each_ref().map(|w| &w.key), words)
    }
}

/// The way whose key is `words`, if any: compared word by word with the
/// differences ORed together (an array's `==` may become a call to a
/// byte-by-byte `bcmp` in the XDP program).
#[inline(always)]
fn find<T, const N: usize>(keys: [&[T; N]; FLOW_WAYS], words: &[T; N]) -> Option<usize>
where
    T: Copy + Default + Eq + core::ops::BitXor<Output = T> + core::ops::BitOr<Output = T>,
{
    let same = |key: &[T; N]| {
        let mut diff = T::default();
        for i in 0..N {
            diff = diff | (key[i] ^ words[i]);
        }
        diff == T::default()
    };
    if same(keys[0]) {
        Some(0)
    } else if same(keys[1]) {
        Some(1)
    } else {
        None
    }
}

/// The bit of a way's tag that marks the way of its set written or
/// refreshed last; the tag itself is the other 15 bits.
pub const NEWER: u16 = 0x8000;

/// A set's ways' tags, as the tag array holds them: each way's flow's tag
/// ([`flow_place`]; 0: no flow yet), [`NEWER`] on the way written or
/// refreshed last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetTags(pub [u16; FLOW_WAYS]);

impl SetTags {
    /// Whether a way may hold the flow tagged `tag`: else the set holds
    /// another flow in each way, and need not be read.
    #[inline(always)]
    #[must_use]
    pub const fn may_hold(self, tag: u16) -> bool {
        self.0[0] & !NEWER == tag || self.0[1] & !NEWER == tag
    }

    /// The way a flow the set does not hold takes: the one not written or
    /// refreshed last (the first when no way, or both, say so: a set
    /// never written, or two CPUs writing it at once).
    #[inline(always)]
    #[must_use]
    pub const fn older(self) -> usize {
        (self.0[0] & NEWER != 0 && self.0[1] & NEWER == 0) as usize
    }

    /// The tags once way `way` is written with the flow tagged `tag`, or
    /// refreshed (its own tag): the way written last.
    #[inline(always)]
    #[must_use]
    pub const fn touched(self, way: usize, tag: u16) -> Self {
        let mut tags = [self.0[0] & !NEWER, self.0[1] & !NEWER];
        tags[way % FLOW_WAYS] = tag | NEWER;
        Self(tags)
    }
}

/// The way the flow tagged `tag` is written into: the way holding its key
/// (`find` reads the set, and is called only if a tag may be the flow's),
/// or else the older way ([`SetTags::older`]).
#[inline(always)]
pub fn way_for(tags: SetTags, tag: u16, find: impl FnOnce() -> Option<usize>) -> usize {
    let own = if tags.may_hold(tag) { find() } else { None };
    match own {
        Some(way) => way,
        None => tags.older(),
    }
}

/// DHCPv6's ports (RFC 8415): a client's, and a server's or relay agent's.
pub const DHCP6_CLIENT_PORT: u16 = 546;
pub const DHCP6_SERVER_PORT: u16 = 547;

/// All_DHCP_Relay_Agents_and_Servers (`ff02::1:2`), where a DHCPv6 client
/// sends its messages.
pub const ALL_DHCP6_SERVERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];

/// The flow a DHCPv6 client of this host left when it sent its message
/// to [`ALL_DHCP6_SERVERS`] (the egress program keys it as its replies
/// would arrive: from that address), if the datagram of flow `words`
/// ([`FlowKey::words`]) answers such a message: IPv6 UDP from port 547 to
/// 546, from a link-local address.
///
/// Why: the answer comes from the server's own address, which the message
/// did not name, so its flow is no flow the host opened, and a flood
/// that spends the budget would drop it with the flood's (measured: a
/// real `dhclient -6` got no lease in 40 s). Looked up by the flow the
/// message left, it is one. Only from a link-local source (`fe80::/10`),
/// which no router forwards: a flood from beyond the link cannot send it,
/// and one on the link is a single source to guard (`fe80::/64`), under
/// its own limit.
#[inline(always)]
#[must_use]
pub const fn dhcp6_asked(words: &[u64; 5]) -> Option<[u64; 5]> {
    let answer = flow_words(
        AF_INET6,
        IPPROTO_UDP,
        DHCP6_SERVER_PORT,
        DHCP6_CLIENT_PORT,
        &[0; 4],
        &[0; 4],
    )[0];
    // The source's first two bytes, as the words hold them (native-endian).
    let src = (words[1] as u32).to_ne_bytes();
    if words[0] != answer || src[0] != 0xfe || src[1] & 0xc0 != 0x80 {
        return None;
    }
    let [a, b, c, d] = addr_words(&ALL_DHCP6_SERVERS);
    Some([
        words[0],
        a as u64 | (b as u64) << 32,
        c as u64 | (d as u64) << 32,
        words[3],
        words[4],
    ])
}

/// DHCPv4's ports (RFC 2131): a client's, and a server's or relay agent's.
pub const DHCP4_CLIENT_PORT: u16 = 68;
pub const DHCP4_SERVER_PORT: u16 = 67;

/// The first bytes of a DHCPv4 (BOOTP) message that the rules below read:
/// `op` (1 a request, 2 a reply), `htype`, `hlen`, `hops`, then `xid`,
/// the transaction's id.
pub const BOOTP_HEAD: usize = 8;
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;

/// The ports word ([`FlowKey4::words`]) of a datagram from a DHCPv4
/// server's port to a client's.
const DHCP4_REPLY_PORTS: u32 = DHCP4_SERVER_PORT as u32 | (DHCP4_CLIENT_PORT as u32) << 16;

/// Whether an IPv4 UDP datagram of flow `words` ([`FlowKey4::words`])
/// goes from a DHCPv4 server's port to a client's: only then is its
/// message read for [`dhcp4_asked`].
#[inline(always)]
#[must_use]
pub const fn dhcp4_reply_ports(words: &[u32; 3]) -> bool {
    words[2] == DHCP4_REPLY_PORTS
}

/// The key ([`FlowKey4::words`]) a DHCPv4 transaction of this host is
/// kept by in the IPv4 flow table, if the datagram leaving from port
/// `sport` to `dport`, whose message starts `head`, is a client's request
/// (from port 68 to 67, `op` 1). The egress program remembers it as it
/// does a flow; [`dhcp4_asked`] finds it.
///
/// Why: a client without a lease (or rebinding one) broadcasts, and the
/// server answers from its own address to the address it offers or to
/// the broadcast address, so the answer's flow is no flow the host
/// opened, and a flood that spends the budget drops it with the flood's
/// (measured: a real `dhclient` got no lease). Nor can the answer be told
/// by where it comes from, as a DHCPv6 server's is: IPv4 has no
/// link-local source to require. What the answer carries is the client's
/// `xid`, which it picks at random for each transaction: a flood that
/// does not see the request cannot name it. The transaction is kept as a
/// flow from the `xid` as an address to 0.0.0.0, which no datagram is
/// sent to, with an answer's ports.
#[inline(always)]
#[must_use]
pub const fn dhcp4_asking(sport: u16, dport: u16, head: [u8; BOOTP_HEAD]) -> Option<[u32; 3]> {
    if sport != DHCP4_CLIENT_PORT || dport != DHCP4_SERVER_PORT || head[0] != BOOTREQUEST {
        return None;
    }
    Some(dhcp4_transaction(head))
}

/// The transaction ([`dhcp4_asking`]) an IPv4 UDP datagram of flow
/// `words` ([`FlowKey4::words`]), whose message starts `head`, answers:
/// a reply (`op` 2) from port 67 to 68.
#[inline(always)]
#[must_use]
pub const fn dhcp4_asked(words: &[u32; 3], head: [u8; BOOTP_HEAD]) -> Option<[u32; 3]> {
    if !dhcp4_reply_ports(words) || head[0] != BOOTREPLY {
        return None;
    }
    Some(dhcp4_transaction(head))
}

/// A transaction's key, from its message's head ([`dhcp4_asking`]).
#[inline(always)]
const fn dhcp4_transaction(head: [u8; BOOTP_HEAD]) -> [u32; 3] {
    FlowKey4 {
        saddr: [head[4], head[5], head[6], head[7]],
        daddr: [0; 4],
        sport: DHCP4_SERVER_PORT,
        dport: DHCP4_CLIENT_PORT,
    }
    .words()
}

/// Sets for a table of `flows` flows.
#[must_use]
pub const fn flow_sets(flows: u32) -> u32 {
    flows.div_ceil(FLOW_WAYS as u32)
}

/// Lines of tags for a table of `sets` sets: a tag per way.
#[must_use]
pub const fn flow_tag_lines(sets: u32) -> u32 {
    tag_lines(sets * FLOW_WAYS as u32)
}

/// Where a set's ways' tags are: its line of the tag array, and the first
/// way's tag in the line (the second's follows it).
#[inline(always)]
#[must_use]
pub const fn tag_position(set: u32) -> (u32, usize) {
    const SETS_PER_LINE: u32 = TAGS_PER_LINE / FLOW_WAYS as u32;
    (
        set / SETS_PER_LINE,
        (set % SETS_PER_LINE) as usize * FLOW_WAYS,
    )
}

/// The key of `words` ([`FlowKey4::words`])'s set in a table of `sets`
/// sets, for `seed`, and its tag: a multiplicative hash of the three words
/// with the seed mixed in before the first product, mapped onto the table
/// by the product's high half, the tag from one more product (as
/// [`crate::slots::slot_place`] places a source).
#[inline(always)]
#[must_use]
pub const fn flow_place(words: &[u32; 3], seed: u64, sets: u32) -> (u32, u16) {
    let [a, d, p] = *words;
    let x = ((a as u64 | (d as u64) << 32) ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p as u64;
    let x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    placed(x ^ (x >> 31), sets)
}

/// The key of `words` ([`FlowKey::words`])'s set and tag: the same hash
/// over five words.
#[inline(always)]
#[must_use]
pub const fn flow_place6(words: &[u64; 5], seed: u64, sets: u32) -> (u32, u16) {
    let x = (words[1] ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ words[2];
    let x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ words[3];
    let x = x.wrapping_mul(0x94d0_49bb_1331_11eb) ^ words[4];
    let x = (x ^ words[0]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    placed(x ^ (x >> 31), sets)
}

/// A hash's set (its high half onto the table: no division, any size) and
/// tag (15 bits of one more product, whose high half takes every bit of
/// the hash: keys of one set share its high bits; never 0, no flow; the
/// 16th bit is [`NEWER`]'s).
#[inline(always)]
const fn placed(x: u64, sets: u32) -> (u32, u16) {
    let set = (((x >> 32) * sets as u64) >> 32) as u32;
    let tag = (x.wrapping_mul(0x94d0_49bb_1331_11eb) >> 49) as u16 | 1;
    (set, tag)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (explicit `pad`s;
// sizes checked below).
unsafe impl aya::Pod for FlowSet {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for FlowSet6 {}

const _: () = assert!(size_of::<FlowWay>() == 24);
const _: () = assert!(size_of::<FlowSet>() == 64);
const _: () = assert!(size_of::<FlowWay6>() == 48);
const _: () = assert!(size_of::<FlowSet6>() == 128);

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::key::{AF_INET, AF_INET6};

    fn key(i: u32) -> [u32; 3] {
        FlowKey4 {
            saddr: (0xc613_0000 | i).to_be_bytes(),
            daddr: [198, 18, 0, 2],
            sport: 40_000,
            dport: 53,
        }
        .words()
    }

    fn key6(i: u16) -> FlowKey {
        let mut saddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        saddr[6..8].copy_from_slice(&i.to_be_bytes());
        FlowKey {
            family: AF_INET6,
            proto: 17,
            sport: 40_000,
            dport: 53,
            pad: 0,
            saddr,
            daddr: [
                0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
            ],
        }
    }

    /// The set of `words`' flow (the IPv4 table's, the other's).
    fn set_index(words: &[u32; 3], seed: u64, sets: u32) -> u32 {
        flow_place(words, seed, sets).0
    }
    fn set_index6(words: &[u64; 5], seed: u64, sets: u32) -> u32 {
        flow_place6(words, seed, sets).0
    }

    fn way(key: [u32; 3], last: u64) -> FlowWay {
        FlowWay { key, pad: 0, last }
    }

    #[test]
    fn a_flow_keeps_its_way_and_a_new_one_takes_the_older() {
        let mut set = FlowSet::default();
        let mut tags = SetTags::default();
        let tag = |k: u32| flow_place(&key(k), 7, 1).1;
        // Writes flow `k` where the set's tags say, as the program does.
        let write = |k: u32, set: &mut FlowSet, tags: &mut SetTags| {
            let i = way_for(*tags, tag(k), || set.find(&key(k)));
            set.ways[i] = way(key(k), 1);
            *tags = tags.touched(i, tag(k));
            i
        };
        assert_eq!(set.find(&key(1)), None);
        assert_eq!(write(1, &mut set, &mut tags), 0, "a set never written");
        assert_eq!(write(2, &mut set, &mut tags), 1, "the way never written");
        assert_eq!(set.find(&key(2)), Some(1));
        assert_eq!(set.ways[1].flow().words(), key(2));
        assert_eq!(
            write(1, &mut set, &mut tags),
            0,
            "its own, though the older"
        );
        assert_eq!(write(3, &mut set, &mut tags), 1, "the older goes");
        assert_eq!(set.find(&key(2)), None);
        tags = tags.touched(0, tag(1));
        assert_eq!(
            write(4, &mut set, &mut tags),
            1,
            "refreshed, the other is older"
        );
        assert_eq!((set.find(&key(1)), set.find(&key(4))), (Some(0), Some(1)));
    }

    /// The set is read only when a tag may be the flow's; a tag the newer
    /// bit marks is still the flow's.
    #[test]
    fn the_tags_say_when_to_read_the_set_and_which_way_is_older() {
        let tags = SetTags::default().touched(0, 5).touched(1, 9);
        assert_eq!(tags, SetTags([5, 9 | NEWER]));
        assert!(tags.may_hold(5) && tags.may_hold(9) && !tags.may_hold(7));
        assert_eq!(tags.older(), 0);
        assert_eq!(tags.touched(0, 5).older(), 1);
        let unread = || -> Option<usize> { panic!("the set was read") };
        assert_eq!(way_for(tags, 7, unread), 0);
        assert_eq!(way_for(tags, 9, || Some(1)), 1, "its own way");
        assert_eq!(way_for(tags, 5, || None), 0, "a tag another flow shares");
        assert_eq!(SetTags([5 | NEWER, 9 | NEWER]).older(), 0, "racing writers");
        assert_eq!(SetTags([0, 0]).older(), 0);
    }

    #[test]
    fn an_ipv6_set_takes_its_flows_alike() {
        let mut set = FlowSet6::default();
        let [a, b, c] = [1, 2, 3].map(|i| key6(i).words());
        set.ways[0] = FlowWay6 { key: a, last: 10 };
        set.ways[1] = FlowWay6 { key: b, last: 20 };
        assert_eq!(
            (set.find(&a), set.find(&b), set.find(&c)),
            (Some(0), Some(1), None)
        );
        assert_eq!(set.ways[1].flow(), key6(2));
        let words_differ_in = |k: FlowKey| k.words() != key6(1).words();
        assert!(words_differ_in(FlowKey {
            sport: 1,
            ..key6(1)
        }));
        assert!(words_differ_in(FlowKey {
            proto: 47,
            ..key6(1)
        }));
        assert!(words_differ_in(FlowKey {
            family: AF_INET,
            ..key6(1)
        }));
        let mut daddr = key6(1).daddr;
        daddr[15] = 3;
        assert!(words_differ_in(FlowKey { daddr, ..key6(1) }));
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
        let ports = |sport| {
            FlowKey4 {
                sport,
                ..FlowKey4::from_words(key(1))
            }
            .words()
        };
        assert_ne!(
            set_index(&ports(1), 7, sets),
            set_index(&ports(2), 7, sets),
            "ports are hashed"
        );
        let spread6: HashSet<u32> = (0..4096)
            .map(|i| set_index6(&key6(i).words(), 7, sets))
            .collect();
        assert!(spread6.len() > 3900, "{} sets of 4096 keys", spread6.len());
        let moved6 = (0..256)
            .filter(|&i| {
                set_index6(&key6(i).words(), 7, sets) != set_index6(&key6(i).words(), 8, sets)
            })
            .count();
        assert!(moved6 > 250, "{moved6} of 256 moved by another seed");
        let sport6 = |sport| FlowKey { sport, ..key6(1) }.words();
        assert_ne!(
            set_index6(&sport6(1), 7, sets),
            set_index6(&sport6(2), 7, sets),
            "ports are hashed"
        );
    }

    /// Flows that share a set seldom share a tag (so a datagram of a new
    /// flow seldom reads the set), no tag is 0 (no flow), and every way
    /// of a table has a tag of its own in the lines.
    #[test]
    fn flows_of_one_set_have_tags_of_their_own() {
        let sets = flow_sets(131_072);
        let mut by_set: HashMap<u32, Vec<u16>> = HashMap::new();
        for i in 0..262_144u32 {
            let words = FlowKey4 {
                sport: 40_000 + (i >> 16) as u16,
                ..FlowKey4::from_words(key(i & 0xffff))
            }
            .words();
            let (set, tag) = flow_place(&words, 7, sets);
            assert!(tag != 0 && tag & NEWER == 0);
            by_set.entry(set).or_default().push(tag);
        }
        for i in 0..=u16::MAX {
            let (set, tag) = flow_place6(&key6(i).words(), 7, sets);
            assert!(tag != 0 && tag & NEWER == 0);
            by_set.entry(set).or_default().push(tag);
        }
        let (pairs, same) = crate::slots::shared_tags(by_set.values());
        // 1 in 16,384 for random 14-bit tags (the last bit is 1): allow
        // four times that.
        assert!(
            same * 4096 < pairs,
            "{same} of {pairs} pairs in a set share a tag"
        );
        let mut seen = HashSet::new();
        for set in 0..sets {
            let (line, first) = tag_position(set);
            assert!(line < flow_tag_lines(sets) && first + 1 < TAGS_PER_LINE as usize);
            assert!(seen.insert((line, first)) && seen.insert((line, first + 1)));
        }
        assert_eq!(flow_tag_lines(513), 33);
    }

    /// A DHCPv6 answer is keyed by the flow its client's message left:
    /// from ff02::1:2, to the same address and ports; any other datagram,
    /// and an answer from beyond the link, is not.
    #[test]
    fn a_dhcp6_answer_is_looked_up_by_the_message_it_answers() {
        let host = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let answer = |saddr, sport, dport| FlowKey {
            family: AF_INET6,
            proto: 17,
            sport,
            dport,
            pad: 0,
            saddr,
            daddr: host,
        };
        let mut server = host;
        server[15] = 1;
        let asked = FlowKey {
            saddr: ALL_DHCP6_SERVERS,
            ..answer(server, 547, 546)
        };
        assert_eq!(
            dhcp6_asked(&answer(server, 547, 546).words()),
            Some(asked.words())
        );
        // fe80::/10 is link-local: fe80:: to febf::.
        let mut edge = server;
        edge[1] = 0xbf;
        assert_eq!(
            dhcp6_asked(&answer(edge, 547, 546).words()),
            Some(asked.words())
        );
        let mut beyond = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(dhcp6_asked(&answer(beyond, 547, 546).words()), None);
        beyond[..2].copy_from_slice(&[0xfe, 0xc0]);
        assert_eq!(
            dhcp6_asked(&answer(beyond, 547, 546).words()),
            None,
            "site-local"
        );
        for (sport, dport) in [(546, 547), (547, 547), (53, 546), (547, 53)] {
            assert_eq!(dhcp6_asked(&answer(server, sport, dport).words()), None);
        }
        let tunnel = FlowKey {
            proto: 136,
            ..answer(server, 547, 546)
        };
        assert_eq!(dhcp6_asked(&tunnel.words()), None, "UDP-Lite");
        let v4 = FlowKey4 {
            saddr: [0xfe, 0x80, 0, 1],
            daddr: [198, 18, 0, 2],
            sport: 547,
            dport: 546,
        };
        assert_eq!(dhcp6_asked(&v4.widened().words()), None, "IPv4");
    }

    /// A DHCPv4 reply is looked up by its request's transaction: the
    /// client's `xid`, whatever the addresses; nothing else is a request
    /// or a reply.
    #[test]
    fn a_dhcp4_reply_is_looked_up_by_the_transaction_it_answers() {
        let xid = [0x9a, 0x3c, 0x01, 0xf7];
        let head = |op| [op, 1, 6, 0, xid[0], xid[1], xid[2], xid[3]];
        let kept = FlowKey4 {
            saddr: xid,
            daddr: [0; 4],
            sport: 67,
            dport: 68,
        }
        .words();
        assert_eq!(dhcp4_asking(68, 67, head(1)), Some(kept));
        let reply = |saddr, daddr, sport, dport| {
            FlowKey4 {
                saddr,
                daddr,
                sport,
                dport,
            }
            .words()
        };
        // To the address offered, to the broadcast address, from a relay.
        for (server, to) in [
            ([198, 18, 0, 2], [198, 18, 0, 140]),
            ([198, 18, 0, 2], [255; 4]),
            ([198, 19, 7, 1], [198, 18, 0, 140]),
        ] {
            let words = reply(server, to, 67, 68);
            assert!(dhcp4_reply_ports(&words));
            assert_eq!(dhcp4_asked(&words, head(2)), Some(kept));
        }
        let mut other = head(2);
        other[7] ^= 1;
        assert_ne!(
            dhcp4_asked(&reply([198, 18, 0, 2], [255; 4], 67, 68), other),
            Some(kept),
            "another transaction"
        );
        assert_eq!(
            dhcp4_asked(&reply([198, 18, 0, 2], [255; 4], 67, 68), head(1)),
            None,
            "a request"
        );
        assert_eq!(dhcp4_asking(68, 67, head(2)), None, "a reply leaving");
        for (sport, dport) in [(68, 67), (67, 67), (53, 68), (67, 53)] {
            let words = reply([198, 18, 0, 2], [198, 18, 0, 140], sport, dport);
            assert!(!dhcp4_reply_ports(&words));
            assert_eq!(dhcp4_asked(&words, head(2)), None);
        }
        for (sport, dport) in [(67, 68), (67, 67), (68, 68), (53, 67)] {
            assert_eq!(dhcp4_asking(sport, dport, head(1)), None);
        }
    }

    #[test]
    fn a_flow_keys_words_come_back_as_the_key() {
        assert_eq!(FlowKey::from_words(key6(4).words()), key6(4));
        let v4 = FlowKey4::from_words(key(4));
        assert_eq!(FlowKey::from_words(v4.widened().words()), v4.widened());
        assert_eq!(FlowKey4::from_words(key(5)).words(), key(5));
    }
}
