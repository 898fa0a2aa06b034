//! The datagram flows seen lately (`GUARD_UDP_FLOW4`, `GUARD_UDP_FLOWS`):
//! UDP's, and those of the other protocols conntrack tracks alike. A
//! datagram on a flow seen within `udp_flow_idle` is not a new flow.
//!
//! Two programs write them: the XDP program remembers a flow it admitted
//! and refreshes one it sees again (`verdict.rs`); the egress program
//! remembers the flows this host opens, keyed as their replies arrive
//! (`egress.rs`). A reply to the host's own datagram (its resolver's
//! answer, its NTP server's) opens no conntrack entry, since the
//! datagram made it: counted as new, such replies drew on the budget
//! with a flood's and met the resolver's own limit. A DHCP client's
//! message goes to a multicast or broadcast address, and its answer comes
//! from the server's own: a new flow, which the flow its message left (a
//! DHCPv6 client's) or the transaction it opened (a DHCPv4 client's, kept
//! here by its id) lets past the budget (`Flow::answers_dhcp`).

use aya_ebpf::{maps::Array, programs::XdpContext};
use guard_common::{
    FlowKey4,
    config::UDP_FLOW_REFRESH_NS,
    dissect::{IPPROTO_UDP, UDP_HLEN, keyed_by_ports},
    flows::{
        BOOTP_HEAD, FLOW_WAYS, SetTags, dhcp4_asked, dhcp4_reply_ports, dhcp6_asked, flow_place,
        flow_place6, flow_sets, tag_position, way_for,
    },
    key::{AF_INET, flow_words},
    maps::DEFAULT_MAX_UDP_FLOWS,
    slots::TagLine,
};

use crate::{
    dissect::Headers,
    maps::{UDP_FLOWS, UDP_FLOWS4, UDP_TAGS, UDP_TAGS4},
    packet::load,
    verdict::Addr,
};

/// Each flow table's size in sets (both hold `max-udp-flows` flows), set
/// by the loader with their `max_entries` (.rodata: a constant to the
/// verifier and the JIT).
#[unsafe(no_mangle)]
static FLOW_SETS: u32 = flow_sets(DEFAULT_MAX_UDP_FLOWS);

/// Where a datagram's flow is keyed, as words (`guard_common::flows`): an
/// IPv4 UDP flow's in a set of `GUARD_UDP_FLOW4`; an IPv6 UDP flow's, or
/// another protocol's (addresses and protocol, no ports) of either
/// family, in a set of `GUARD_UDP_FLOWS`. The caller gives the place (the
/// verdict's is in the scratch value: on the stack it would pass the
/// verifier's 512 bytes).
#[derive(Default)]
pub(crate) struct FlowPlace {
    key4: [u32; 3],
    key6: [u64; 5],
    set: u32,
    /// The flow's tag (`guard_common::flows`), kept beside its set's way.
    tag: u16,
    /// Whether the flow is an IPv4 UDP flow: `key4` in `GUARD_UDP_FLOW4`,
    /// else `key6` in `GUARD_UDP_FLOWS`.
    v4: bool,
}

/// A datagram's flow, keyed in its place. A reference alone, so that an
/// `Option` of it is a pointer: LLVM stored an `Option`'s undefined
/// payload (a key, a flag) from registers a helper call had just
/// clobbered, and packed an enum's tag beside a pointer and shifted the
/// pointer, both of which the verifier refuses.
#[derive(Clone, Copy)]
pub(crate) struct Flow<'a>(&'a FlowPlace);

/// A flow's addresses and ports, as a datagram that arrives carries them.
pub(crate) struct Ends {
    pub family: u8,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// 0 unless conntrack keys the protocol's flows by ports
    /// (`guard_common::dissect::keyed_by_ports`).
    pub sport: u16,
    pub dport: u16,
}

impl<'a> Flow<'a> {
    /// The flow of the datagram the XDP program sees, from `src`; `seed`
    /// is the configuration's `slot_seed`.
    #[inline(always)]
    pub(crate) fn of(
        ctx: &XdpContext,
        h: &Headers,
        src: &Addr,
        seed: u64,
        place: &'a mut FlowPlace,
    ) -> Option<Self> {
        let (sport, dport) = if keyed_by_ports(h.proto) {
            let ports = load::<[u8; 4]>(ctx, h.l4)?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            )
        } else {
            (0, 0)
        };
        let dst = if h.family == AF_INET {
            [load::<u32>(ctx, h.l3 + 16)?, 0, 0, 0]
        } else {
            load::<Addr>(ctx, h.l3 + 24)?
        };
        let ends = Ends {
            family: h.family,
            proto: h.proto,
            src: *src,
            dst,
            sport,
            dport,
        };
        Some(Self::keyed(&ends, seed, place))
    }

    /// The flow of `ends`, in the table that holds its kind.
    #[inline(always)]
    pub(crate) fn keyed(ends: &Ends, seed: u64, place: &'a mut FlowPlace) -> Self {
        place.v4 = ends.family == AF_INET && ends.proto == IPPROTO_UDP;
        // SAFETY: reading a plain static; volatile so the compiler does not
        // fold the value the loader patches.
        let sets = unsafe { core::ptr::read_volatile(&raw const FLOW_SETS) };
        if place.v4 {
            place.key4 = FlowKey4 {
                saddr: ends.src[0].to_ne_bytes(),
                daddr: ends.dst[0].to_ne_bytes(),
                sport: ends.sport,
                dport: ends.dport,
            }
            .words();
            (place.set, place.tag) = flow_place(&place.key4, seed, sets);
        } else {
            place.key6 = flow_words(
                ends.family,
                ends.proto,
                ends.sport,
                ends.dport,
                &ends.src,
                &ends.dst,
            );
            (place.set, place.tag) = flow_place6(&place.key6, seed, sets);
        }
        Self(place)
    }

    /// The flow's way, if its set holds it: the way's time, the set's tags
    /// and the way. The set is read only when a way's tag may be the
    /// flow's. Each family's branch looks its own maps up: one call site
    /// for two maps would be a helper call, where the verifier inlines an
    /// array's lookup for a call site of one map.
    #[inline(always)]
    fn held(&self) -> Option<(*mut u64, *mut u16, usize)> {
        let place = self.0;
        if place.v4 {
            held4(place.set, place.tag, &place.key4)
        } else {
            held6(place.set, place.tag, &place.key6)
        }
    }

    /// Whether the UDP datagram (`h`, in `ctx`) answers a DHCP message this
    /// host sent within `idle` ns ([`answers_dhcp6`], [`answers_dhcp4`]);
    /// `seed` is the configuration's `slot_seed`. An IPv4 datagram's message
    /// is read only if it goes from a DHCPv4 server's port to a client's.
    #[inline(always)]
    pub(crate) fn answers_dhcp(
        &self,
        ctx: &XdpContext,
        h: &Headers,
        seed: u64,
        now: u64,
        idle: u64,
    ) -> bool {
        let place = self.0;
        if !place.v4 {
            return answers_dhcp6(&place.key6, seed, now, idle);
        }
        dhcp4_reply_ports(&place.key4)
            && load::<[u8; BOOTP_HEAD]>(ctx, h.l4 + UDP_HLEN)
                .is_some_and(|head| answers_dhcp4(&place.key4, head, seed, now, idle))
    }

    /// Whether the flow was seen within `idle` ns; refreshes its time, and
    /// marks its way the set's newer.
    #[inline(always)]
    pub(crate) fn known(&self, now: u64, idle: u64) -> bool {
        let Some((last, tags, way)) = self.held() else {
            return false;
        };
        // SAFETY: a way's time in a flow table's value.
        let last = unsafe { &mut *last };
        let age = now.saturating_sub(*last);
        if age > idle {
            return false;
        }
        if age > UDP_FLOW_REFRESH_NS {
            *last = now;
            // SAFETY: the set's tags ([`tags`]).
            unsafe { write_tags(tags, read_tags(tags).touched(way, self.0.tag)) };
        }
        true
    }

    /// Remembers the flow as seen `now`: in its set, in its own way or
    /// the older ([`guard_common::flows::way_for`]: the set is read only
    /// if a tag may be the flow's), its tag beside the way (each family
    /// with its own lookups, as in [`Self::held`]).
    #[inline(always)]
    pub(crate) fn remember(&self, now: u64) {
        let place = self.0;
        // SAFETY (all): a flow table's value, read only through `find`,
        // and the fields of one of its ways, valid for this run; the
        // set's tags.
        if place.v4 {
            let (Some(set), Some(tags)) = (
                UDP_FLOWS4.get_ptr_mut(place.set),
                tags(&UDP_TAGS4, place.set),
            ) else {
                return;
            };
            let before = read_tags(tags);
            let i = way_for(before, place.tag, || unsafe { (*set).find(&place.key4) }) % FLOW_WAYS;
            let way = unsafe { &mut (*set).ways[i] };
            unsafe {
                write_way(&raw mut way.key, &raw mut way.last, place.key4, now);
                write_tags(tags, before.touched(i, place.tag));
            }
        } else {
            let (Some(set), Some(tags)) =
                (UDP_FLOWS.get_ptr_mut(place.set), tags(&UDP_TAGS, place.set))
            else {
                return;
            };
            let before = read_tags(tags);
            let i = way_for(before, place.tag, || unsafe { (*set).find(&place.key6) }) % FLOW_WAYS;
            let way = unsafe { &mut (*set).ways[i] };
            unsafe {
                write_way(&raw mut way.key, &raw mut way.last, place.key6, now);
                write_tags(tags, before.touched(i, place.tag));
            }
        }
    }

    /// Remembers the flow as seen `now` unless it was within
    /// `UDP_FLOW_REFRESH_NS`: a lookup for each datagram, a write once a
    /// second at most.
    #[inline(always)]
    pub(crate) fn refresh(&self, now: u64) {
        if !self.known(now, UDP_FLOW_REFRESH_NS) {
            self.remember(now);
        }
    }
}

/// Whether the IPv6 datagram of flow `key6` answers a DHCPv6 message this
/// host sent within `idle` ns ([`guard_common::flows::dhcp6_asked`]): the
/// flow the message left, looked up and not refreshed (answers must not
/// keep the host's message alive). Not inlined: a subprogram the verdict
/// calls for new IPv6 UDP flows only, which keeps its lookup out of the
/// verdict's other paths.
#[inline(never)]
fn answers_dhcp6(key6: &[u64; 5], seed: u64, now: u64, idle: u64) -> bool {
    let Some(asked) = dhcp6_asked(key6) else {
        return false;
    };
    // SAFETY: as in `Flow::keyed`.
    let sets = unsafe { core::ptr::read_volatile(&raw const FLOW_SETS) };
    let (set, tag) = flow_place6(&asked, seed, sets);
    // SAFETY: a way's time in a flow table's value.
    held6(set, tag, &asked).is_some_and(|(last, _, _)| now.saturating_sub(unsafe { *last }) <= idle)
}

/// Whether the IPv4 datagram of flow `key4`, whose DHCPv4 message starts
/// `head`, answers a request this host sent within `idle` ns
/// ([`guard_common::flows::dhcp4_asked`]): the transaction the request
/// left, looked up and not refreshed, as in [`answers_dhcp6`].
#[inline(never)]
fn answers_dhcp4(key4: &[u32; 3], head: [u8; BOOTP_HEAD], seed: u64, now: u64, idle: u64) -> bool {
    let Some(asked) = dhcp4_asked(key4, head) else {
        return false;
    };
    // SAFETY: as in `Flow::keyed`.
    let sets = unsafe { core::ptr::read_volatile(&raw const FLOW_SETS) };
    let (set, tag) = flow_place(&asked, seed, sets);
    // SAFETY: a way's time in a flow table's value.
    held4(set, tag, &asked).is_some_and(|(last, _, _)| now.saturating_sub(unsafe { *last }) <= idle)
}

/// The way of set `set` of `GUARD_UDP_FLOW4` that holds the flow of `key`
/// (tagged `tag`), as [`Flow::held`] gives it; the set is read only when a
/// way's tag may be the flow's.
#[inline(always)]
fn held4(set: u32, tag: u16, key: &[u32; 3]) -> Option<(*mut u64, *mut u16, usize)> {
    let tags = tags(&UDP_TAGS4, set)?;
    if !read_tags(tags).may_hold(tag) {
        return None;
    }
    // SAFETY: a map value of the flow table, valid for this run.
    let set = unsafe { &mut *UDP_FLOWS4.get_ptr_mut(set)? };
    let way = set.find(key)? % FLOW_WAYS;
    Some((&raw mut set.ways[way].last, tags, way))
}

/// The way of set `set` of `GUARD_UDP_FLOWS` that holds the flow of
/// `key` (tagged `tag`), as [`Flow::held`] gives it; the set is read only
/// when a way's tag may be the flow's.
#[inline(always)]
fn held6(set: u32, tag: u16, key: &[u64; 5]) -> Option<(*mut u64, *mut u16, usize)> {
    let tags = tags(&UDP_TAGS, set)?;
    if !read_tags(tags).may_hold(tag) {
        return None;
    }
    // SAFETY: a map value of the flow table, valid for this run.
    let set = unsafe { &mut *UDP_FLOWS.get_ptr_mut(set)? };
    let way = set.find(key)? % FLOW_WAYS;
    Some((&raw mut set.ways[way].last, tags, way))
}

/// Where the first of a set's two ways' tags is, in `map`.
#[inline(always)]
fn tags(map: &Array<TagLine>, set: u32) -> Option<*mut u16> {
    let (line, first) = tag_position(set);
    let line = map.get_ptr_mut(line)?;
    // SAFETY: a map value of the tag array, valid for this run; `first` is
    // at most the line's last tag but one.
    Some(unsafe { (&raw mut (*line).tags).cast::<u16>().add(first) })
}

/// A set's tags (at `tags`).
#[inline(always)]
fn read_tags(tags: *mut u16) -> SetTags {
    // SAFETY: the set's two tags ([`tags`]); volatile because other CPUs
    // write them.
    unsafe {
        SetTags([
            core::ptr::read_volatile(tags),
            core::ptr::read_volatile(tags.add(1)),
        ])
    }
}

/// Writes a set's tags, after the way written: a CPU that finds the tag
/// then reads the way finds the flow written. Two CPUs writing one set at
/// once may leave a tag not its way's: that way's flow is then new once
/// more, and written again; or both ways marked newer, or neither: the
/// first way then goes first.
///
/// # Safety
///
/// `tags` are a set's tags in a flow tag array ([`tags`]).
#[inline(always)]
unsafe fn write_tags(tags: *mut u16, value: SetTags) {
    // SAFETY: the caller's.
    unsafe {
        core::ptr::write_volatile(tags, value.0[0]);
        core::ptr::write_volatile(tags.add(1), value.0[1]);
    }
}

/// Writes a way's key and time, the time cleared first: a CPU reading the
/// way meanwhile finds the old flow or the new one unseen, never a flow
/// seen that was not.
///
/// # Safety
///
/// `key` and `last` are the fields of one way of a flow table's value.
#[inline(always)]
unsafe fn write_way<K>(key: *mut K, last: *mut u64, words: K, now: u64) {
    // SAFETY: the caller's.
    unsafe {
        core::ptr::write_volatile(last, 0);
        core::ptr::write_volatile(key, words);
        core::ptr::write_volatile(last, now);
    }
}
