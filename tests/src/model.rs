//! The userspace reference model of guard's XDP program.
//!
//! [`Model`] holds everything the program keeps between packets (the
//! counters, the per-source and per-prefix maps, the UDP flow map and the
//! two global buckets) plus the events it sends and the attack signatures
//! it is given, and [`Model::packet`] applies the verdict policy written in
//! `guard-ebpf/src/main.rs` to one frame ([`Model::sent`], the egress
//! program's datagram flows to one the host sends); [`dissect`] follows
//! the parsing rules of `guard-ebpf/src/dissect.rs`. The differential tests run the
//! same frames at the same instants through the real program
//! (BPF_PROG_TEST_RUN with the test clock) and through the model, and
//! require the same verdicts and the same final state.
//!
//! The model is written independently of the eBPF code, in safe Rust over a
//! byte slice, so that a slip in one shows up as a difference from the
//! other. What both sides must agree on by construction comes from
//! guard-common: the token bucket ([`Limit::admit`]), the key masking
//! ([`SourceKey`]), the fingerprint ([`Fingerprint::of`]) and the
//! signature matcher ([`SigTable::find`]), the map types, the counters and
//! the constants. The model's part of the signature check is where it
//! stands in the verdict and what it counts.
//!
//! It models one CPU (a bucket's update never meets another CPU's, so
//! `bucket_contention` stays 0), the source and prefix tables as the
//! program's direct-mapped slots (a key takes its slot over from the key
//! that held it, `guard_common::slots`), the other maps as maps that never
//! evict, a ring buffer that never fills, and one clock reading per
//! packet. It takes no samples for the learner.

use std::{collections::HashMap, net::IpAddr};

use guard_common::{
    Counter, CounterBlock, DataplaneConfig, Event, FlowClass, FlowKey, Limit, Marks, SourceKey,
    SourceState,
    config::{
        DENY_V4, DENY_V6, HAS_LISTS_V4, HAS_LISTS_V6, MODE_ENFORCE, UDP_FLOW_REFRESH_NS,
        budget_drop,
    },
    counters::SIG_HIT_SLOT,
    dissect::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ICMP_MIN_HLEN, IPPROTO_AH,
        IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_MH, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV6_FRAG_HLEN,
        IPV6_HLEN, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, PORTS_LEN, TCP_FLAG_ACK, TCP_FLAG_FIN,
        TCP_FLAG_RST, TCP_FLAG_SYN, TCP_MIN_HLEN, UDP_HLEN, VLAN_HLEN, icmp_opens_flow,
        ipv6_ext_header, keyed_by_ports,
    },
    fingerprint::{Fingerprint, SigTable},
    flows::{
        ALL_DHCP6_SERVERS, DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, FLOW_WAYS, SetTags, flow_place,
        flow_place6, flow_sets, way_for,
    },
    key::{AF_INET, AF_INET6, LIST_ALLOW, LIST_DENY},
    maps::{DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, DEFAULT_MAX_UDP_FLOWS},
    slots::slot_index,
    state::{EVENT_BANNED, EVENT_LIMITED, GLOBAL_BUDGET, GLOBAL_EVENTS, GLOBAL_SLOTS},
};

/// The flow a DHCPv4 transaction is kept as, from the first 8 bytes of
/// its messages (`op`, `htype`, `hlen`, `hops`, `xid`): from the `xid`,
/// as an IPv4 address, to 0.0.0.0, from port 67 to 68.
fn dhcp4_transaction(message: &[u8]) -> FlowKey {
    let mut saddr = [0; 16];
    saddr[..4].copy_from_slice(&message[4..8]);
    FlowKey {
        family: AF_INET,
        proto: IPPROTO_UDP,
        sport: 67,
        dport: 68,
        pad: 0,
        saddr,
        daddr: [0; 16],
    }
}

/// An allow/deny entry of the LPM tries, as `Dataplane::replace_lists`
/// writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// [`AF_INET`] or [`AF_INET6`]: the trie that holds it.
    pub family: u8,
    /// At most 32 (IPv4) or 128 (IPv6), as the tries accept.
    pub prefix_len: u8,
    /// IPv4 in the first four bytes. Bits past `prefix_len` are ignored, as
    /// the trie ignores them.
    pub addr: [u8; 16],
    /// [`LIST_ALLOW`] or [`LIST_DENY`].
    pub action: u8,
}

impl ListEntry {
    /// `net/prefix_len` with `action`.
    #[must_use]
    pub fn new(net: IpAddr, prefix_len: u8, action: u8) -> Self {
        let (family, addr) = match net {
            IpAddr::V4(a) => (AF_INET, v4_in_16(a.octets())),
            IpAddr::V6(a) => (AF_INET6, a.octets()),
        };
        Self {
            family,
            prefix_len,
            addr,
            action,
        }
    }

    /// Whether the entry's prefix holds `addr` of `family`.
    fn covers(&self, family: u8, addr: &[u8; 16]) -> bool {
        if self.family != family {
            return false;
        }
        // The same masking as the source keys: equal masked addresses.
        if family == AF_INET {
            SourceKey::v4(first4(&self.addr), self.prefix_len)
                == SourceKey::v4(first4(addr), self.prefix_len)
        } else {
            SourceKey::v6(self.addr, self.prefix_len) == SourceKey::v6(*addr, self.prefix_len)
        }
    }
}

/// What the program does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

/// What the dissect step says about one frame.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one field per attribute bit of the program's dissect step"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dissected {
    /// Exactly one of [`Counter::CLASSES`].
    pub class: Counter,
    /// A VLAN tag was seen (also on a frame that is then malformed).
    pub vlan: bool,
    /// The EtherType is IPv6 (also when the IPv6 header is then malformed).
    pub ipv6: bool,
    /// An IPv4 or IPv6 fragment, first or later.
    pub fragment: bool,
    /// An ICMP or ICMPv6 query that opens a flow (an echo request, ...).
    pub query: bool,
    /// [`AF_INET`] or [`AF_INET6`] once the IP header is valid, else 0.
    pub family: u8,
    /// Source and destination addresses once the IP header is valid; IPv4
    /// in the first four bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Ports of a packet of class TCP or UDP, else 0.
    pub sport: u16,
    pub dport: u16,
    /// Valid for the classes TCP, UDP and ICMP: the offsets in the frame of
    /// the IP header, of the transport header and of the IP packet's end
    /// (bytes past it are link padding), and the transport protocol (past
    /// any IPv6 extension headers).
    pub l3: usize,
    pub l4: usize,
    pub l3_end: usize,
    pub proto: u8,
}

impl Dissected {
    /// The key of this datagram's flow (UDP, or another protocol's, by
    /// addresses, protocol and, where conntrack keys them by ports, ports)
    /// in `GUARD_UDP_FLOWS`; the program keeps IPv4 UDP flows in
    /// `GUARD_UDP_FLOW4`.
    #[must_use]
    pub fn flow_key(&self) -> FlowKey {
        let ported = keyed_by_ports(self.proto);
        FlowKey {
            family: self.family,
            proto: self.proto,
            sport: if ported { self.sport } else { 0 },
            dport: if ported { self.dport } else { 0 },
            pad: 0,
            saddr: self.src,
            daddr: self.dst,
        }
    }

    /// The source's key in `GUARD_SOURCES` (`source_prefix_*`) or
    /// `GUARD_PREFIXES` (`prefix_*`): the address masked to `v4_len` or
    /// `v6_len`.
    #[must_use]
    pub fn source_key(&self, v4_len: u8, v6_len: u8) -> SourceKey {
        if self.family == AF_INET {
            SourceKey::v4(first4(&self.src), v4_len)
        } else {
            SourceKey::v6(self.src, v6_len)
        }
    }

    /// A packet that may open a flow: a TCP SYN, UDP, an ICMP query, or a
    /// datagram of another protocol that is not a later fragment (conntrack
    /// tracks it by addresses and protocol).
    #[must_use]
    pub fn may_open_flow(&self) -> bool {
        match self.class {
            Counter::TcpSyn | Counter::Udp => true,
            Counter::Icmp => self.query,
            Counter::IpOther => self.l4 != 0,
            _ => false,
        }
    }

    /// The fingerprint the program takes of this packet (`frame`'s): none
    /// for a packet that cannot open a flow, nor for another protocol's,
    /// which a fingerprint has no fields for.
    #[must_use]
    pub fn fingerprint(&self, frame: &[u8]) -> Option<Fingerprint> {
        if !self.may_open_flow() || self.class == Counter::IpOther {
            return None;
        }
        Fingerprint::of(&frame[self.l3..], self.l4 - self.l3, self.proto)
    }
}

/// Dissects one Ethernet frame (the rules are in `guard-ebpf/src/dissect.rs`).
#[must_use]
pub fn dissect(frame: &[u8]) -> Dissected {
    let mut d = Dissected {
        class: Counter::Malformed,
        vlan: false,
        ipv6: false,
        fragment: false,
        query: false,
        family: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        l3: 0,
        l4: 0,
        l3_end: 0,
        proto: 0,
    };
    // `None` from the parsers means malformed; attributes found before the
    // fault stay set, as the program counts them.
    d.class = ethernet(frame, &mut d).unwrap_or(Counter::Malformed);
    d
}

/// `N` bytes of `buf` from `at`, if they are all there.
fn read<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn read16(buf: &[u8], at: usize) -> Option<u16> {
    read(buf, at).map(u16::from_be_bytes)
}

fn first4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[0], addr[1], addr[2], addr[3]]
}

fn v4_in_16(addr: [u8; 4]) -> [u8; 16] {
    let mut a = [0; 16];
    a[..4].copy_from_slice(&addr);
    a
}

fn ethernet(frame: &[u8], d: &mut Dissected) -> Option<Counter> {
    let mut ethertype = read16(frame, ETH_HLEN - 2)?;
    let mut l3 = ETH_HLEN;
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        d.vlan = true;
        if tags == MAX_VLAN_TAGS {
            return None;
        }
        // The tag is the TPID just read, the TCI, then the next EtherType.
        ethertype = read16(frame, l3 + 2)?;
        l3 += VLAN_HLEN;
        tags += 1;
    }
    match ethertype {
        ETH_P_IP => ipv4(frame, l3, d),
        ETH_P_IPV6 => {
            d.ipv6 = true;
            ipv6(frame, l3, d)
        }
        _ => Some(Counter::NonIp),
    }
}

fn ipv4(frame: &[u8], l3: usize, d: &mut Dissected) -> Option<Counter> {
    let ip: [u8; IPV4_HLEN] = read(frame, l3)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN || total < ihl {
        return None;
    }
    // Bytes past the total length are link padding, never transport bytes.
    let packet = frame.get(..l3 + total)?;
    (d.l3, d.l3_end) = (l3, packet.len());
    d.family = AF_INET;
    d.src = v4_in_16([ip[12], ip[13], ip[14], ip[15]]);
    d.dst = v4_in_16([ip[16], ip[17], ip[18], ip[19]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    d.fragment = offset != 0 || more;
    if offset != 0 {
        return Some(Counter::IpOther);
    }
    transport(packet, l3 + ihl, ip[9], d)
}

fn ipv6(frame: &[u8], l3: usize, d: &mut Dissected) -> Option<Counter> {
    let ip: [u8; IPV6_HLEN] = read(frame, l3)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let end = l3 + IPV6_HLEN + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let packet = frame.get(..end)?;
    (d.l3, d.l3_end) = (l3, packet.len());
    d.family = AF_INET6;
    d.src.copy_from_slice(&ip[8..24]);
    d.dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut l4 = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH => {
                let [following, units]: [u8; 2] = read(packet, l4)?;
                next = following;
                (usize::from(units) + 1) * 8
            }
            IPPROTO_AH => {
                let [following, units]: [u8; 2] = read(packet, l4)?;
                next = following;
                (usize::from(units) + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                // The whole header within the payload, or nothing of it
                // counts (bytes past the payload are link padding).
                if l4 + IPV6_FRAG_HLEN > end {
                    return None;
                }
                let [following, _, hi, lo]: [u8; 4] = read(packet, l4)?;
                next = following;
                let field = u16::from_be_bytes([hi, lo]);
                let offset = field & 0xfff8;
                d.fragment |= offset != 0 || field & 1 != 0;
                if offset != 0 {
                    // A later fragment: no transport header to look at.
                    return Some(Counter::IpOther);
                }
                IPV6_FRAG_HLEN
            }
            _ => break,
        };
        l4 += len;
        if l4 > end {
            return None;
        }
    }
    if ipv6_ext_header(next) {
        // Longer than the parser walks: a bypass attempt.
        return None;
    }
    transport(packet, l4, next, d)
}

/// The transport header at `l4`; `packet` ends where the IP packet ends,
/// so every header must fit within the IP payload.
fn transport(packet: &[u8], l4: usize, proto: u8, d: &mut Dissected) -> Option<Counter> {
    (d.l4, d.proto) = (l4, proto);
    // ICMP counts only in IPv4 and ICMPv6 only in IPv6; the other is IpOther.
    let v4 = d.family == AF_INET;
    let icmp = if v4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
    if proto == icmp {
        let head: [u8; ICMP_MIN_HLEN] = read(packet, l4)?;
        d.query = icmp_opens_flow(v4, head[0]);
        return Some(Counter::Icmp);
    }
    match proto {
        IPPROTO_TCP => {
            let tcp: [u8; TCP_MIN_HLEN] = read(packet, l4)?;
            let data_offset = usize::from(tcp[12] >> 4) * 4;
            if data_offset < TCP_MIN_HLEN || l4 + data_offset > packet.len() {
                return None;
            }
            d.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
            d.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
            let flags = tcp[13];
            Some(if flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0 {
                Counter::TcpSyn
            } else {
                Counter::TcpOther
            })
        }
        IPPROTO_UDP => {
            let udp: [u8; UDP_HLEN] = read(packet, l4)?;
            let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            // A first fragment holds only part of the datagram its length
            // field describes.
            if len < UDP_HLEN || (!d.fragment && l4 + len > packet.len()) {
                return None;
            }
            d.sport = u16::from_be_bytes([udp[0], udp[1]]);
            d.dport = u16::from_be_bytes([udp[2], udp[3]]);
            Some(Counter::Udp)
        }
        // SCTP, DCCP, UDP-Lite: flows keyed by ports too, which must be
        // there.
        p if keyed_by_ports(p) => {
            let ports: [u8; PORTS_LEN] = read(packet, l4)?;
            d.sport = u16::from_be_bytes([ports[0], ports[1]]);
            d.dport = u16::from_be_bytes([ports[2], ports[3]]);
            Some(Counter::IpOther)
        }
        _ => Some(Counter::IpOther),
    }
}

/// Takes a token from a bucket: `limit.admit`, whose answer the program
/// stores atomically, as one CPU alone would (`verdict::take`).
fn take(tat: &mut u64, limit: &Limit, now: u64) -> bool {
    match limit.admit(*tat, now) {
        Some(next) => {
            *tat = next;
            true
        }
        None => false,
    }
}

/// The bits of `config.lists` for `family`'s trie: it holds entries, it
/// holds a deny entry.
fn list_bits(family: u8) -> (u32, u32) {
    if family == AF_INET {
        (HAS_LISTS_V4, DENY_V4)
    } else {
        (HAS_LISTS_V6, DENY_V6)
    }
}

/// Charges a limit decision to a source's or prefix's statistics.
fn tally(state: &mut SourceState, outcome: Result<(), Counter>) {
    if outcome.is_ok() {
        state.passed = state.passed.wrapping_add(1);
    } else {
        state.dropped = state.dropped.wrapping_add(1);
    }
}

/// `key` into its `slot` of a direct-mapped table, taking the slot over
/// from the key that held it.
fn put(
    table: &mut HashMap<SourceKey, SourceState>,
    owners: &mut HashMap<u32, SourceKey>,
    slot: u32,
    key: SourceKey,
    state: SourceState,
) {
    if let Some(old) = owners.insert(slot, key)
        && old != key
    {
        table.remove(&old);
    }
    table.insert(key, state);
}

/// A flow's set, by table (IPv4 UDP's or the other), in tables of `sets`
/// sets for `seed`, and its tag: where the program files it.
#[must_use]
pub fn flow_set(key: &FlowKey, seed: u64, sets: u32) -> ((bool, u32), u16) {
    if let Some(k4) = key.narrowed() {
        let (set, tag) = flow_place(&k4.words(), seed, sets);
        ((true, set), tag)
    } else {
        let (set, tag) = flow_place6(&key.words(), seed, sets);
        ((false, set), tag)
    }
}

/// A set of a flow table: the flow each way holds, and the ways' tags as
/// the program keeps them (which way was written or refreshed last).
#[derive(Clone, Debug, Default)]
struct FlowWays {
    keys: [Option<FlowKey>; FLOW_WAYS],
    tags: SetTags,
}

/// The program's state, and the model of its verdicts.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: DataplaneConfig,
    /// The entries of both tries (longest prefix wins, whatever the order).
    pub lists: Vec<ListEntry>,
    /// All CPUs' counters summed (the model is one CPU).
    pub counters: CounterBlock,
    /// The keys the tables' slots hold, and their state.
    pub sources: HashMap<SourceKey, SourceState>,
    pub prefixes: HashMap<SourceKey, SourceState>,
    /// The tables' sizes (`--max-sources`, `--max-prefixes`).
    pub source_slots: u32,
    pub prefix_slots: u32,
    /// Which key holds each slot of the two tables.
    source_owners: HashMap<u32, SourceKey>,
    prefix_owners: HashMap<u32, SourceKey>,
    /// `GUARD_MARKS`: the bans, kept apart from the source table (the model
    /// verifies no source).
    pub marks: HashMap<SourceKey, Marks>,
    /// Sources that came back from their marks after losing their slot
    /// (for the tests: the program has no such counter).
    pub recalled: u64,
    /// Datagram flow -> last-seen time: the flows the tables' sets hold.
    pub udp_flows: HashMap<FlowKey, u64>,
    /// Each flow table's sets (`--max-udp-flows` over [`FLOW_WAYS`]), and
    /// the flow each way of a set holds, by table (IPv4 UDP's or not) and
    /// set.
    pub udp_flow_sets: u32,
    flow_ways: HashMap<(bool, u32), FlowWays>,
    /// Bucket states indexed by `GLOBAL_BUDGET` and `GLOBAL_EVENTS`.
    pub global: [u64; GLOBAL_SLOTS as usize],
    /// `GUARD_PORTS` as written: only its open bits are modelled (which
    /// bucket of the budget a new flow takes), not cookies nor the ports
    /// conntrack skips.
    pub ports: HashMap<u16, u32>,
    /// Events in the order the program sends them.
    pub events: Vec<Event>,
    /// `GUARD_SIGS`, as written to the program.
    pub sigs: SigTable,
}

impl Model {
    /// The state of a freshly loaded program given `config` and `lists`.
    #[must_use]
    pub fn new(config: DataplaneConfig, lists: Vec<ListEntry>) -> Self {
        Self {
            config,
            lists,
            counters: CounterBlock::ZERO,
            sources: HashMap::new(),
            prefixes: HashMap::new(),
            source_slots: DEFAULT_MAX_SOURCES,
            prefix_slots: DEFAULT_MAX_PREFIXES,
            source_owners: HashMap::new(),
            prefix_owners: HashMap::new(),
            marks: HashMap::new(),
            recalled: 0,
            udp_flows: HashMap::new(),
            udp_flow_sets: flow_sets(DEFAULT_MAX_UDP_FLOWS),
            flow_ways: HashMap::new(),
            global: [0; GLOBAL_SLOTS as usize],
            ports: HashMap::new(),
            events: Vec::new(),
            sigs: SigTable::EMPTY,
        }
    }

    /// One frame arriving at `now` (ns): updates every piece of state as the
    /// program would and returns its verdict.
    pub fn packet(&mut self, frame: &[u8], now: u64) -> Verdict {
        let d = dissect(frame);
        self.bump(d.class);
        for (set, attribute) in [
            (d.vlan, Counter::Vlan),
            (d.ipv6, Counter::Ipv6),
            (d.fragment, Counter::Fragments),
        ] {
            if set {
                self.bump(attribute);
            }
        }
        match d.class {
            Counter::Malformed => self.reject(Counter::DropMalformed),
            Counter::NonIp => Verdict::Pass,
            _ if frame
                .first_chunk::<6>()
                .is_some_and(|dst| self.config.for_another_device(*dst)) =>
            {
                self.other_device(&d)
            }
            _ => self
                .screen(frame, &d)
                .unwrap_or_else(|| self.ip(frame, &d, now)),
        }
    }

    /// A frame the host sends, through the egress program. A TCP segment
    /// that only a connection past its handshake sends (no SYN, no RST;
    /// a FIN, or bytes past the TCP header in the frame) verifies its
    /// destination for `verified_ns`, in its slot (taken over, a source
    /// taken back getting its marks back), unless verified already; the
    /// SYN-ACKs the ACK check remembers are not modelled. A UDP
    /// datagram, or another protocol's that conntrack tracks as flows,
    /// remembers its flow as its replies will arrive (from its
    /// destination, to its source, the ports swapped), unless that flow
    /// was seen within `UDP_FLOW_REFRESH_NS`. A DHCPv4 request (IPv4 UDP
    /// from port 68 to 67, BOOTP `op` 1) also remembers its transaction
    /// the same way, as the flow from its `xid` (as an address) to
    /// 0.0.0.0, from port 67 to 68. For the frames the tests send: whole
    /// datagrams, no extension headers.
    pub fn sent(&mut self, frame: &[u8], now: u64) {
        let d = dissect(frame);
        if matches!(d.class, Counter::TcpSyn | Counter::TcpOther) && !d.fragment {
            let flags = frame[d.l4 + 13];
            let header = usize::from(frame[d.l4 + 12] >> 4) * 4;
            if flags & (TCP_FLAG_SYN | TCP_FLAG_RST) == 0
                && (flags & TCP_FLAG_FIN != 0 || frame.len() > d.l4 + header)
            {
                self.verify_reply(&d, now);
            }
            return;
        }
        if !matches!(d.class, Counter::Udp | Counter::IpOther) || d.fragment {
            return;
        }
        let mut reply = d.flow_key();
        std::mem::swap(&mut reply.saddr, &mut reply.daddr);
        std::mem::swap(&mut reply.sport, &mut reply.dport);
        let mut keys = vec![reply];
        if (d.family, d.proto, d.sport, d.dport) == (AF_INET, IPPROTO_UDP, 68, 67)
            && let Some(message) = frame.get(d.l4 + UDP_HLEN..d.l4 + UDP_HLEN + 8)
            && message[0] == 1
        {
            keys.push(dhcp4_transaction(message));
        }
        for key in keys {
            if !self.udp_flow_known(&key, now, UDP_FLOW_REFRESH_NS) {
                self.remember_key(key, now);
            }
        }
    }

    /// The destination of a segment the host sent, verified (see `sent`).
    fn verify_reply(&mut self, d: &Dissected, now: u64) {
        let cfg = self.config;
        let key =
            Dissected { src: d.dst, ..*d }.source_key(cfg.source_prefix_v4, cfg.source_prefix_v6);
        let mut source = if let Some(known) = self.sources.get(&key) {
            *known
        } else {
            self.bump(Counter::NewSources);
            self.marks.get(&key).map_or(SourceState::ZERO, |m| {
                self.recalled += 1;
                m.state()
            })
        };
        if source.verified_until_ns <= now {
            source.verified_until_ns = now.saturating_add(cfg.verified_ns);
            self.bump(Counter::VerifiedReply);
        }
        let slot = slot_index(&key, cfg.slot_seed, self.source_slots);
        put(
            &mut self.sources,
            &mut self.source_owners,
            slot,
            key,
            source,
        );
    }

    /// A frame for another device's link-layer address: only the deny
    /// entries apply; a new flow is counted as passed for it.
    fn other_device(&mut self, d: &Dissected) -> Verdict {
        let (_, deny) = list_bits(d.family);
        if self.config.lists & deny != 0 && self.longest_match(d) == Some(LIST_DENY) {
            return self.reject(Counter::DropDenylist);
        }
        if d.may_open_flow() {
            self.bump(Counter::PassOtherDevice);
        }
        Verdict::Pass
    }

    fn bump(&mut self, counter: Counter) {
        let slot = &mut self.counters.slots[counter.slot()];
        *slot = slot.wrapping_add(1);
    }

    /// A drop decision: counted under `reason` in both modes, carried out
    /// only in enforce mode.
    fn reject(&mut self, reason: Counter) -> Verdict {
        self.bump(reason);
        if self.config.mode == MODE_ENFORCE {
            Verdict::Drop
        } else {
            self.bump(Counter::PassMonitor);
            Verdict::Pass
        }
    }

    /// Step 3-, the signature check: the first signature by slot that
    /// matches the packet's fingerprint counts a hit in its slot, and drops
    /// the packet unless the slot's monitor bit is set or the source is on
    /// the allow list. `None` leaves the verdict to the steps after it,
    /// which a dropped packet never reaches (no new flow, no source state).
    /// The program's samples are not modelled: their one write, a UDP
    /// flow's refresh, is the one the verdict's lookup makes next anyway.
    fn screen(&mut self, frame: &[u8], d: &Dissected) -> Option<Verdict> {
        let slot = self.sigs.find(&d.fingerprint(frame)?)?;
        let hits = &mut self.counters.slots[SIG_HIT_SLOT + slot];
        *hits = hits.wrapping_add(1);
        // Looked up whenever the family's trie holds entries: whether the
        // packet is a new flow is not known yet.
        let (any, _) = list_bits(d.family);
        let allowed = self.config.lists & any != 0 && self.longest_match(d) == Some(LIST_ALLOW);
        if self.sigs.monitor & (1 << slot) != 0 || allowed {
            return None;
        }
        Some(self.reject(Counter::DropSignature))
    }

    /// Steps 4 to 7 of the policy, for a well-formed IP packet.
    fn ip(&mut self, frame: &[u8], d: &Dissected, now: u64) -> Verdict {
        let class = self.new_flow(d, now);
        let answer = class == Some(FlowClass::Udp)
            && (self.answers_dhcp6(d, now) || self.answers_dhcp4(frame, d, now));
        let action = self.list_action(d, class.is_some());
        if class.is_some() {
            self.bump(Counter::NewFlows);
        }
        if action == Some(LIST_DENY) {
            return self.reject(Counter::DropDenylist);
        }
        let Some(class) = class else {
            return Verdict::Pass;
        };
        if action == Some(LIST_ALLOW) {
            self.bump(Counter::PassAllowlist);
            self.remember_flow(d, class, now);
            return Verdict::Pass;
        }
        match self.limit(d, class, answer, now) {
            Ok(()) => {
                self.bump(Counter::PassLimits);
                self.remember_flow(d, class, now);
                Verdict::Pass
            }
            Err(reason) => self.reject(reason),
        }
    }

    /// The new-flow class of the packet, if it opens one. Looking a UDP
    /// flow up refreshes its time, whatever happens to the packet next.
    fn new_flow(&mut self, d: &Dissected, now: u64) -> Option<FlowClass> {
        match d.class {
            Counter::TcpSyn => Some(FlowClass::Syn),
            Counter::Icmp if d.query => Some(FlowClass::Icmp),
            // Other protocols' datagrams: flows as UDP's, a class apart.
            Counter::Udp | Counter::IpOther
                if d.may_open_flow()
                    && !self.udp_flow_known(&d.flow_key(), now, self.config.udp_flow_idle_ns) =>
            {
                Some(if d.class == Counter::Udp {
                    FlowClass::Udp
                } else {
                    FlowClass::Other
                })
            }
            _ => None,
        }
    }

    /// The bucket of the global budget a new flow of `class` takes: the
    /// closed ports' for a SYN or a datagram to a port the table does not
    /// mark open, once the configuration says it marks them (the model
    /// routes nothing on: every destination is the host's).
    fn budget(&self, d: &Dissected, class: FlowClass) -> usize {
        let entry = self.ports.get(&d.dport).copied().unwrap_or(0);
        match class.closed_port_budget(self.config.ports, entry) {
            Some(closed) if !d.fragment => closed,
            _ => class.index(),
        }
    }

    /// Whether a DHCPv6 server's answer (IPv6 UDP from port 547 to 546,
    /// from a link-local source, `fe80::/10`) answers a message the host
    /// sent within `udp_flow_idle_ns`: its client's message to
    /// `ff02::1:2` left the flow from there to the answer's destination,
    /// the same ports. Looked up without refreshing it.
    fn answers_dhcp6(&self, d: &Dissected, now: u64) -> bool {
        let link_local = d.src[0] == 0xfe && d.src[1] & 0xc0 == 0x80;
        if d.family != AF_INET6
            || d.proto != IPPROTO_UDP
            || (d.sport, d.dport) != (DHCP6_SERVER_PORT, DHCP6_CLIENT_PORT)
            || !link_local
        {
            return false;
        }
        let asked = FlowKey {
            saddr: ALL_DHCP6_SERVERS,
            ..d.flow_key()
        };
        self.udp_flows
            .get(&asked)
            .is_some_and(|last| now.saturating_sub(*last) <= self.config.udp_flow_idle_ns)
    }

    /// Whether a DHCPv4 server's reply (IPv4 UDP from port 67 to 68, BOOTP
    /// `op` 2) answers a request the host sent within `udp_flow_idle_ns`:
    /// its transaction ([`Self::sent`]), by the reply's `xid`, looked up
    /// without refreshing it.
    fn answers_dhcp4(&self, frame: &[u8], d: &Dissected, now: u64) -> bool {
        if (d.family, d.proto, d.sport, d.dport) != (AF_INET, IPPROTO_UDP, 67, 68) {
            return false;
        }
        frame
            .get(d.l4 + UDP_HLEN..d.l4 + UDP_HLEN + 8)
            .filter(|message| message[0] == 2)
            .and_then(|message| self.udp_flows.get(&dhcp4_transaction(message)))
            .is_some_and(|last| now.saturating_sub(*last) <= self.config.udp_flow_idle_ns)
    }

    /// Whether the flow was seen within `idle` ns; a known flow's time is
    /// rewritten once it is more than `UDP_FLOW_REFRESH_NS` old, and its
    /// way is then its set's newer.
    fn udp_flow_known(&mut self, key: &FlowKey, now: u64, idle: u64) -> bool {
        let Some(last) = self.udp_flows.get_mut(key) else {
            return false;
        };
        let age = now.saturating_sub(*last);
        if age > idle {
            return false;
        }
        if age > UDP_FLOW_REFRESH_NS {
            *last = now;
            let (place, tag) = flow_set(key, self.config.slot_seed, self.udp_flow_sets);
            let ways = self.flow_ways.get_mut(&place).expect("a known flow's set");
            let way = ways.keys.iter().position(|k| k == &Some(*key));
            ways.tags = ways.tags.touched(way.expect("a known flow's way"), tag);
        }
        true
    }

    /// A passed new flow of UDP or another protocol is known from now on.
    /// It takes its way of its set (`guard_common::flows`: an IPv4 UDP
    /// flow's in the IPv4 table, any other's in the other; its own way,
    /// else the one not written or refreshed last), and the flow that held
    /// the way is forgotten.
    fn remember_flow(&mut self, d: &Dissected, class: FlowClass, now: u64) {
        if matches!(class, FlowClass::Udp | FlowClass::Other) {
            self.remember_key(d.flow_key(), now);
        }
    }

    /// Flow `key`, seen `now`, takes its way of its set.
    fn remember_key(&mut self, key: FlowKey, now: u64) {
        let (place, tag) = flow_set(&key, self.config.slot_seed, self.udp_flow_sets);
        let ways = self.flow_ways.entry(place).or_default();
        let way = way_for(ways.tags, tag, || {
            ways.keys.iter().position(|k| k == &Some(key))
        });
        ways.tags = ways.tags.touched(way, tag);
        if let Some(old) = ways.keys[way].replace(key)
            && old != key
        {
            self.udp_flows.remove(&old);
        }
        self.udp_flows.insert(key, now);
    }

    /// The action of the longest prefix holding the source, when the
    /// family's trie is consulted for this packet: always if it holds a
    /// deny entry, else only for a new flow, and only if it holds entries.
    /// The tries are consulted per `config.lists`, as the program does,
    /// whatever `lists` holds.
    fn list_action(&self, d: &Dissected, new_flow: bool) -> Option<u8> {
        let (any, deny) = list_bits(d.family);
        let lists = self.config.lists;
        if lists & deny == 0 && !(new_flow && lists & any != 0) {
            return None;
        }
        self.longest_match(d)
    }

    /// The action of the longest prefix in `lists` holding the source.
    fn longest_match(&self, d: &Dissected) -> Option<u8> {
        // `max_by_key` keeps the last of equal maxima: a later entry for the
        // same prefix replaces an earlier one, as a map update does.
        self.lists
            .iter()
            .filter(|e| e.covers(d.family, &d.src))
            .max_by_key(|e| e.prefix_len)
            .map(|e| e.action)
    }

    /// The source tier; then, for a source not verified and a flow that
    /// is no DHCPv6 `answer` to the host, whether the global budget has a
    /// token (a look, no take: a packet it drops
    /// never reaches the prefix); then the prefix tier (unless its limit
    /// for the class is off) and the budget's token; `Err` is the drop
    /// reason. The outcome is charged to the source, and to the prefix
    /// when its tier was reached (only then is its entry made).
    fn limit(
        &mut self,
        d: &Dissected,
        class: FlowClass,
        answer: bool,
        now: u64,
    ) -> Result<(), Counter> {
        let cfg = self.config;
        let source_key = d.source_key(cfg.source_prefix_v4, cfg.source_prefix_v6);
        // A source out of the table but with marks comes back with them,
        // and is known from then on.
        let known = self.sources.get(&source_key).copied().or_else(|| {
            let m = self.marks.get(&source_key)?;
            self.counters.slots[Counter::NewSources.slot()] += 1;
            self.recalled += 1;
            Some(m.state())
        });
        let mut source = known.unwrap_or(SourceState::ZERO);
        let mut outcome = self.source_tier(&mut source, source_key, class, now);
        let c = class.index();
        // A verified source skips the budget while it binds and the source
        // keeps within its own limit, as the program's (the model sends no
        // cookies and knows no sockets: a source is verified here by the
        // host's replies, `sent`, or by its marks); before it binds, a
        // spent budget, with at most a tenth of its burst drawn. So does a
        // DHCPv6 server's `answer` to the host, always. Each class has a
        // bucket of its own.
        let verified =
            source.verified_until_ns > now && !source.over_limit_within(cfg.ban_window_ns, now);
        let b = self.budget(d, class);
        let slot = GLOBAL_BUDGET as usize + b;
        let spent = cfg.global[b].admit(self.global[slot], now).is_none();
        let skips = answer
            || (verified
                && (cfg.budget_binds()
                    || (spent && cfg.source[c].at_most_a_tenth_drawn(source.tat[c], now))));
        let budget = |global: &mut u64| skips || take(global, &cfg.global[b], now);
        let room = skips || !spent;
        if outcome.is_ok() && !room {
            outcome = Err(budget_drop(b));
        } else if outcome.is_ok() && cfg.prefix[c].is_unlimited() {
            // The prefix tier is off for this class: no entry, straight to
            // the global budget.
            if !budget(&mut self.global[slot]) {
                outcome = Err(budget_drop(b));
            }
        } else if outcome.is_ok() {
            let prefix_key = d.source_key(cfg.prefix_v4, cfg.prefix_v6);
            let mut prefix = self
                .prefixes
                .get(&prefix_key)
                .copied()
                .unwrap_or(SourceState::ZERO);
            prefix.last_seen_ns = now;
            outcome = if !take(&mut prefix.tat[c], &cfg.prefix[c], now) {
                Err(Counter::DropPrefixLimit)
            } else if !budget(&mut self.global[slot]) {
                Err(budget_drop(b))
            } else {
                Ok(())
            };
            tally(&mut prefix, outcome);
            let slot = slot_index(&prefix_key, cfg.slot_seed, self.prefix_slots);
            put(
                &mut self.prefixes,
                &mut self.prefix_owners,
                slot,
                prefix_key,
                prefix,
            );
        }
        // A new source's entry is made only when the prefix tier and the
        // budget admit it (its own tier always does: a full bucket, no
        // ban): a flood the budget drops costs the program no insert.
        if known.is_none() {
            outcome?;
            self.counters.slots[Counter::NewSources.slot()] += 1;
        }
        tally(&mut source, outcome);
        let slot = slot_index(&source_key, cfg.slot_seed, self.source_slots);
        put(
            &mut self.sources,
            &mut self.source_owners,
            slot,
            source_key,
            source,
        );
        outcome
    }

    /// What `guard stats` reads as the sources: the table's, and the
    /// marked ones it no longer holds (their marks alone).
    #[must_use]
    pub fn sources_held(&self) -> HashMap<SourceKey, SourceState> {
        let mut held = self.sources.clone();
        for (key, m) in &self.marks {
            held.entry(*key).or_insert(m.state());
        }
        held
    }

    /// The ban check and the source's bucket for `class`.
    fn source_tier(
        &mut self,
        source: &mut SourceState,
        key: SourceKey,
        class: FlowClass,
        now: u64,
    ) -> Result<(), Counter> {
        source.last_seen_ns = now;
        if source.banned_until_ns > now {
            // No token is taken and nothing is added to the ban accounting.
            return Err(Counter::DropBanned);
        }
        let c = class.index();
        if take(&mut source.tat[c], &self.config.source[c], now) {
            // The episode is over: the next time over the limit sends an event.
            source.limited = 0;
            return Ok(());
        }
        self.over_source_limit(source, key, class, now);
        Err(Counter::DropSourceLimit)
    }

    /// Ban accounting, and one "limited" event per episode.
    fn over_source_limit(
        &mut self,
        source: &mut SourceState,
        key: SourceKey,
        class: FlowClass,
        now: u64,
    ) {
        // A window opens at the first over-limit drop after the last closed.
        if !source.over_limit_within(self.config.ban_window_ns, now) {
            source.window_start_ns = now;
            source.window_drops = 0;
        }
        source.window_drops = source.window_drops.saturating_add(1);
        let threshold = self.config.ban_threshold;
        if threshold != 0 && source.window_drops >= threshold {
            source.banned_until_ns = now.saturating_add(self.config.ban_duration_ns);
            source.window_drops = 0;
            self.marks.insert(
                key,
                Marks {
                    verified_until_ns: source.verified_until_ns,
                    banned_until_ns: source.banned_until_ns,
                },
            );
            // Being banned is being limited: no "limited" event on top.
            source.limited = 1;
            self.event(EVENT_BANNED, class, key, now, source.banned_until_ns);
        } else if source.limited == 0 {
            source.limited = 1;
            self.event(EVENT_LIMITED, class, key, now, 0);
        }
    }

    /// Sends an event if the event budget has a token.
    fn event(
        &mut self,
        kind: u32,
        class: FlowClass,
        source: SourceKey,
        now: u64,
        banned_until_ns: u64,
    ) {
        // Bans are not rate-limited: each costs its source the ban threshold.
        if kind == EVENT_BANNED
            || take(
                &mut self.global[GLOBAL_EVENTS as usize],
                &self.config.events,
                now,
            )
        {
            self.events.push(Event {
                kind,
                class: class as u32,
                source,
                monitor: u32::from(self.config.mode != MODE_ENFORCE),
                time_ns: now,
                banned_until_ns,
            });
            self.bump(Counter::EventsSent);
        } else {
            self.bump(Counter::EventsSuppressed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use guard_common::{
        bucket::{MAX_BURST, MAX_RATE},
        config::{BUDGETS, FLOW_CLASSES, MODE_MONITOR, OPEN_MARKED_TCP, OPEN_MARKED_UDP},
        fingerprint::{FP_DPORT, FP_LEN, FP_PAYLOAD, FP_PROTO, SigMeta, Signature},
        ports::{PORT_OPEN_TCP, PORT_OPEN_UDP},
    };

    use super::{
        Verdict::{Drop, Pass},
        *,
    };
    use crate::packet::{self, Ext, Frag, L4, Packet, TCP_ACK, TCP_SYN, TPID_8021AD, TPID_8021Q};

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 100 * SEC;
    const DST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    fn v6(segments: [u16; 8]) -> IpAddr {
        Ipv6Addr::from(segments).into()
    }

    fn src4() -> IpAddr {
        v4(198, 18, 0, 1)
    }

    fn src6() -> IpAddr {
        v6([0x2001, 0xdb8, 1, 2, 0, 0, 0, 1])
    }

    fn dst_for(src: IpAddr) -> IpAddr {
        if src.is_ipv4() {
            DST4.into()
        } else {
            DST6.into()
        }
    }

    fn tcp(src: IpAddr, flags: u8) -> Packet {
        Packet::tcp(src, dst_for(src), 40_000, 80, flags)
    }

    fn syn(src: IpAddr) -> Vec<u8> {
        tcp(src, TCP_SYN).frame()
    }

    fn udp(src: IpAddr, sport: u16) -> Packet {
        Packet::udp(src, dst_for(src), sport, 53, &[7; 40])
    }

    fn raw(src: IpAddr, proto: u8, bytes: &[u8]) -> Packet {
        Packet::new(
            src,
            dst_for(src),
            L4::Raw {
                proto,
                bytes: bytes.to_vec(),
            },
        )
    }

    fn class(frame: &[u8]) -> Counter {
        dissect(frame).class
    }

    /// Enforce mode; the prefix tier on but never the one that says no.
    fn enforce() -> DataplaneConfig {
        DataplaneConfig {
            mode: MODE_ENFORCE,
            prefix: [Limit::new(MAX_RATE, MAX_BURST); FLOW_CLASSES],
            ..DataplaneConfig::PASSIVE
        }
    }

    /// Enforce mode with a SYN limit per source.
    fn syn_limited(rate: u64, burst: u32) -> DataplaneConfig {
        let mut cfg = enforce();
        cfg.source[FlowClass::Syn.index()] = Limit::new(rate, burst);
        cfg
    }

    fn key_of(addr: IpAddr, len: u8) -> SourceKey {
        match addr {
            IpAddr::V4(a) => SourceKey::v4(a.octets(), len),
            IpAddr::V6(a) => SourceKey::v6(a.octets(), len),
        }
    }

    fn run(m: &mut Model, frames: &[Vec<u8>], now: u64) -> Vec<Verdict> {
        frames.iter().map(|f| m.packet(f, now)).collect()
    }

    // Dissect.

    #[test]
    fn tcp_is_a_syn_only_without_ack() {
        let d = dissect(&syn(src4()));
        assert_eq!(d.class, Counter::TcpSyn);
        assert_eq!((d.family, d.sport, d.dport), (AF_INET, 40_000, 80));
        assert_eq!(d.src, v4_in_16([198, 18, 0, 1]));
        assert_eq!(d.dst, v4_in_16(DST4.octets()));
        assert!(!d.vlan && !d.ipv6 && !d.fragment && !d.query);
        assert_eq!(
            class(&tcp(src4(), TCP_SYN | TCP_ACK).frame()),
            Counter::TcpOther
        );
        assert_eq!(class(&tcp(src4(), TCP_ACK).frame()), Counter::TcpOther);
    }

    #[test]
    fn udp_and_icmp_queries() {
        let d = dissect(&udp(src4(), 5353).frame());
        assert_eq!((d.class, d.sport, d.dport), (Counter::Udp, 5353, 53));
        let echo = dissect(&Packet::echo(src4(), dst_for(src4()), 1).frame());
        assert_eq!((echo.class, echo.query), (Counter::Icmp, true));
        let reply = dissect(&raw(src4(), IPPROTO_ICMP, &[0, 0, 0, 0, 0, 1, 0, 1]).frame());
        assert_eq!((reply.class, reply.query), (Counter::Icmp, false));
        // The other queries conntrack opens entries for; errors and
        // replies open none.
        for (kind, opens) in [
            (13, true),
            (14, false),
            (15, true),
            (17, true),
            (3, false),
            (11, false),
        ] {
            let d = dissect(&Packet::icmp(src4(), dst_for(src4()), kind, 1).frame());
            assert_eq!((d.class, d.query), (Counter::Icmp, opens), "type {kind}");
        }
        for (kind, opens) in [
            (139, true),
            (140, false),
            (129, false),
            (1, false),
            (135, false),
        ] {
            let d = dissect(&Packet::icmp(src6(), dst_for(src6()), kind, 1).frame());
            assert_eq!(
                (d.class, d.query),
                (Counter::Icmp, opens),
                "ICMPv6 type {kind}"
            );
        }
        // Shorter than the 8-byte ICMP header.
        assert_eq!(
            class(&raw(src4(), IPPROTO_ICMP, &[8; 7]).frame()),
            Counter::Malformed
        );
        // ICMPv6 inside IPv4 is just another protocol.
        assert_eq!(
            class(&raw(src4(), IPPROTO_ICMPV6, &[128; 8]).frame()),
            Counter::IpOther
        );
        assert_eq!(class(&raw(src4(), 47, &[]).frame()), Counter::IpOther);
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let p = tcp(src6(), TCP_SYN)
            .ext(Ext::HopByHop)
            .ext(Ext::Routing)
            .ext(Ext::DestOpts);
        let d = dissect(&p.frame());
        assert_eq!((d.class, d.family), (Counter::TcpSyn, AF_INET6));
        assert!(d.ipv6 && !d.fragment);
        assert_eq!(IpAddr::from(d.src), src6());
        let echo = dissect(
            &Packet::echo(src6(), dst_for(src6()), 1)
                .ext(Ext::DestOpts)
                .frame(),
        );
        assert_eq!((echo.class, echo.query), (Counter::Icmp, true));
        // ICMP (v4) inside IPv6 is just another protocol.
        assert_eq!(
            class(&raw(src6(), IPPROTO_ICMP, &[8; 8]).frame()),
            Counter::IpOther
        );
        // AH: length in 4-byte units, minus 2.
        let mut ah = vec![IPPROTO_TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ah.extend_from_slice(&tcp(src6(), TCP_SYN).l4_bytes());
        assert_eq!(
            class(&raw(src6(), IPPROTO_AH, &ah).frame()),
            Counter::TcpSyn
        );
    }

    #[test]
    fn an_ipv6_chain_longer_than_the_parser_walks_is_malformed() {
        let chain = |n: usize| {
            (0..n)
                .fold(tcp(src6(), TCP_SYN), |p, _| p.ext(Ext::DestOpts))
                .frame()
        };
        assert_eq!(class(&chain(MAX_IPV6_EXT_HEADERS)), Counter::TcpSyn);
        let d = dissect(&chain(MAX_IPV6_EXT_HEADERS + 1));
        assert_eq!(d.class, Counter::Malformed);
        assert!(d.ipv6);
    }

    #[test]
    fn up_to_two_vlan_tags() {
        let one = dissect(&tcp(src4(), TCP_SYN).vlan(TPID_8021Q).frame());
        assert_eq!((one.class, one.vlan), (Counter::TcpSyn, true));
        let qinq = tcp(src6(), TCP_SYN).vlan(TPID_8021AD).vlan(TPID_8021Q);
        let d = dissect(&qinq.frame());
        assert_eq!((d.class, d.vlan, d.ipv6), (Counter::TcpSyn, true, true));
        let three = dissect(&qinq.vlan(TPID_8021Q).frame());
        assert_eq!(
            (three.class, three.vlan, three.ipv6),
            (Counter::Malformed, true, false)
        );
    }

    #[test]
    fn ipv4_fragments() {
        let first = udp(src4(), 9).fragment(Frag {
            offset: 0,
            more: true,
            len: 16,
        });
        // Its UDP length (48) is more than it carries, as for any first fragment.
        let d = dissect(&first.frame());
        assert_eq!((d.class, d.fragment), (Counter::Udp, true));
        let later = udp(src4(), 9).fragment(Frag {
            offset: 16,
            more: false,
            len: 100,
        });
        let d = dissect(&later.frame());
        assert_eq!((d.class, d.fragment), (Counter::IpOther, true));
        // A first fragment without the whole TCP header (RFC 1858).
        let tiny = tcp(src4(), TCP_SYN).fragment(Frag {
            offset: 0,
            more: true,
            len: 8,
        });
        let d = dissect(&tiny.frame());
        assert_eq!((d.class, d.fragment), (Counter::Malformed, true));
        // Don't-fragment alone is no fragment.
        assert!(!dissect(&syn(src4())).fragment);
    }

    #[test]
    fn ipv6_fragments() {
        let first = dissect(
            &udp(src6(), 9)
                .ext(Ext::Fragment {
                    offset: 0,
                    more: true,
                })
                .frame(),
        );
        assert_eq!((first.class, first.fragment), (Counter::Udp, true));
        let later = udp(src6(), 9).ext(Ext::Fragment {
            offset: 16,
            more: false,
        });
        let d = dissect(&later.frame());
        assert_eq!((d.class, d.fragment), (Counter::IpOther, true));
        let atomic = dissect(
            &udp(src6(), 9)
                .ext(Ext::Fragment {
                    offset: 0,
                    more: false,
                })
                .frame(),
        );
        assert_eq!((atomic.class, atomic.fragment), (Counter::Udp, false));

        // A later fragment whose fragment header is cut short.
        let bare = raw(src6(), 59, &[])
            .ext(Ext::Fragment {
                offset: 16,
                more: false,
            })
            .frame();
        assert_eq!(class(&bare), Counter::IpOther);
        let mut cut = bare.clone();
        cut.truncate(cut.len() - 4);
        cut[18..20].copy_from_slice(&4u16.to_be_bytes());
        let d = dissect(&cut);
        assert_eq!((d.class, d.fragment), (Counter::Malformed, false));
        // The same header entirely in link padding is no header.
        let mut padded = bare;
        padded[18..20].copy_from_slice(&0u16.to_be_bytes());
        let d = dissect(&padded);
        assert_eq!((d.class, d.fragment), (Counter::Malformed, false));
    }

    #[test]
    fn every_truncation_is_malformed_and_padding_is_ignored() {
        let frames = [
            syn(src4()),
            udp(src4(), 1).vlan(TPID_8021Q).frame(),
            Packet::echo(src4(), dst_for(src4()), 1).frame(),
            tcp(src6(), TCP_SYN).ext(Ext::HopByHop).frame(),
            Packet::echo(src6(), dst_for(src6()), 1).frame(),
        ];
        for frame in frames {
            let whole = class(&frame);
            assert_ne!(whole, Counter::Malformed);
            for len in 0..frame.len() {
                assert_eq!(
                    class(&frame[..len]),
                    Counter::Malformed,
                    "{len} of {frame:?}"
                );
            }
            let mut padded = frame.clone();
            padded.extend_from_slice(&[0xff; 16]);
            assert_eq!(class(&padded), whole);
        }
    }

    #[test]
    fn inconsistent_headers_are_malformed() {
        let good = syn(src4());
        let with = |at: usize, byte: u8| {
            let mut f = good.clone();
            f[at] = byte;
            class(&f)
        };
        assert_eq!(with(14, 0x44), Counter::Malformed, "IHL 4");
        assert_eq!(
            with(14, 0x4f),
            Counter::Malformed,
            "IHL past the total length"
        );
        assert_eq!(
            with(14, 0x65),
            Counter::Malformed,
            "version 6 in an IPv4 EtherType"
        );
        assert_eq!(
            with(17, 41),
            Counter::Malformed,
            "total length past the frame"
        );
        assert_eq!(
            with(14 + 20 + 12, 0x40),
            Counter::Malformed,
            "TCP data offset 4"
        );
        assert_eq!(
            with(14 + 20 + 12, 0x60),
            Counter::Malformed,
            "TCP options missing"
        );
        let mut options = tcp(src4(), TCP_SYN);
        options.ipv4_options = vec![1, 1, 1, 1];
        assert_eq!(class(&options.frame()), Counter::TcpSyn);

        let dgram = udp(src4(), 1).frame();
        let udp_len = |len: u16| {
            let mut f = dgram.clone();
            f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&len.to_be_bytes());
            class(&f)
        };
        assert_eq!(udp_len(48), Counter::Udp);
        assert_eq!(udp_len(7), Counter::Malformed);
        assert_eq!(udp_len(49), Counter::Malformed);

        let mut v6 = syn(src6());
        v6[14] = 0x40;
        assert_eq!(
            class(&v6),
            Counter::Malformed,
            "version 4 in an IPv6 EtherType"
        );
    }

    #[test]
    fn non_ip_is_its_own_class() {
        let d = dissect(&packet::arp());
        assert_eq!((d.class, d.family), (Counter::NonIp, 0));
    }

    // Verdicts.

    #[test]
    fn counts_every_packet_once_by_class_and_attributes() {
        let mut m = Model::new(DataplaneConfig::PASSIVE, Vec::new());
        let frames = [
            syn(src4()),
            tcp(src6(), TCP_ACK).vlan(TPID_8021Q).frame(),
            udp(src6(), 1)
                .ext(Ext::Fragment {
                    offset: 8,
                    more: true,
                })
                .frame(),
            packet::arp(),
            vec![0; 10],
        ];
        assert!(run(&mut m, &frames, T0).iter().all(|v| *v == Pass));
        let c = |counter| m.counters.get(counter);
        assert_eq!(c(Counter::Packets), 5);
        assert_eq!(Counter::CLASSES.iter().map(|k| c(*k)).sum::<u64>(), 5);
        for counter in [
            Counter::TcpSyn,
            Counter::TcpOther,
            Counter::IpOther,
            Counter::NonIp,
        ] {
            assert_eq!(c(counter), 1, "{counter:?}");
        }
        assert_eq!(
            (c(Counter::Vlan), c(Counter::Ipv6), c(Counter::Fragments)),
            (1, 2, 1)
        );
        assert_eq!((c(Counter::NewFlows), c(Counter::PassLimits)), (1, 1));
        assert_eq!((c(Counter::DropMalformed), c(Counter::PassMonitor)), (1, 1));
    }

    #[test]
    fn monitor_counts_what_enforce_would_drop() {
        let frames = [vec![0; 10], syn(src4()), syn(src4()), packet::arp()];
        let mut enforce = Model::new(syn_limited(1, 1), Vec::new());
        let mut monitor = Model::new(
            DataplaneConfig {
                mode: MODE_MONITOR,
                ..enforce.config
            },
            Vec::new(),
        );
        assert_eq!(run(&mut enforce, &frames, T0), [Drop, Pass, Drop, Pass]);
        assert_eq!(run(&mut monitor, &frames, T0), [Pass; 4]);
        assert_eq!(monitor.counters.get(Counter::PassMonitor), 2);
        assert_eq!(enforce.counters.get(Counter::PassMonitor), 0);
        let mut counters = monitor.counters;
        counters.slots[Counter::PassMonitor.slot()] = 0;
        assert_eq!(counters, enforce.counters);
        assert_eq!(monitor.sources, enforce.sources);
        // The same events, each saying it was made in monitor mode.
        assert!(!monitor.events.is_empty());
        assert!(monitor.events.iter().all(|e| e.monitor == 1));
        let unmarked: Vec<_> = monitor
            .events
            .iter()
            .map(|e| Event { monitor: 0, ..*e })
            .collect();
        assert_eq!(unmarked, enforce.events);
        assert_eq!(enforce.counters.get(Counter::DropMalformed), 1);
        assert_eq!(enforce.counters.get(Counter::DropSourceLimit), 1);
    }

    #[test]
    fn a_source_over_its_limit_is_limited_then_banned_until_the_ban_ends() {
        let mut cfg = syn_limited(1, 2);
        cfg.ban_threshold = 3;
        cfg.ban_window_ns = 10 * SEC;
        cfg.ban_duration_ns = 5 * SEC;
        let mut m = Model::new(cfg, Vec::new());
        let key = key_of(src4(), 32);
        let f = syn(src4());
        assert_eq!(
            run(&mut m, &[f.clone(), f.clone(), f.clone()], T0),
            [Pass, Pass, Drop]
        );
        let limited = Event {
            kind: EVENT_LIMITED,
            class: FlowClass::Syn as u32,
            source: key,
            monitor: 0,
            time_ns: T0,
            banned_until_ns: 0,
        };
        assert_eq!(m.events, [limited]);
        assert_eq!(m.sources[&key].limited, 1);
        // No second "limited" event in the same episode; the third drop in
        // the window bans.
        assert_eq!(m.packet(&f, T0), Drop);
        assert_eq!(m.events.len(), 1);
        assert_eq!(m.packet(&f, T0), Drop);
        let until = T0 + 5 * SEC;
        let banned = Event {
            kind: EVENT_BANNED,
            banned_until_ns: until,
            ..limited
        };
        assert_eq!(m.events, [limited, banned]);
        let tat = m.sources[&key].tat;
        assert_eq!(m.packet(&f, until - 1), Drop);
        let st = m.sources[&key];
        assert_eq!(st.tat, tat, "a banned source takes no token");
        assert_eq!((st.window_drops, st.last_seen_ns), (0, until - 1));
        assert_eq!(m.counters.get(Counter::DropBanned), 1);
        // The ban ends at `banned_until_ns`; the next admission ends the episode.
        assert_eq!(m.packet(&f, until), Pass);
        let st = m.sources[&key];
        assert_eq!(
            (st.new_flows(), st.passed, st.dropped, st.limited),
            (7, 3, 4, 0)
        );
        assert_eq!(m.counters.get(Counter::DropSourceLimit), 3);
        assert_eq!(m.counters.get(Counter::EventsSent), 2);
        // The prefix saw only what the source tier admitted.
        let prefix = m.prefixes[&key_of(src4(), 24)];
        assert_eq!(
            (prefix.new_flows(), prefix.passed, prefix.dropped),
            (3, 3, 0)
        );
    }

    #[test]
    fn drops_ban_only_within_the_window() {
        for (window, banned) in [(SEC, true), (SEC / 2, false)] {
            let mut cfg = syn_limited(1, 1);
            cfg.ban_threshold = 2;
            cfg.ban_window_ns = window;
            cfg.ban_duration_ns = 60 * SEC;
            let mut m = Model::new(cfg, Vec::new());
            let f = syn(src4());
            m.packet(&f, T0);
            m.packet(&f, T0);
            m.packet(&f, T0 + 9 * SEC / 10);
            let st = m.sources[&key_of(src4(), 32)];
            assert_eq!(st.banned_until_ns > 0, banned, "window {window}");
            let kinds: Vec<u32> = m.events.iter().map(|e| e.kind).collect();
            if banned {
                assert_eq!(kinds, [EVENT_LIMITED, EVENT_BANNED]);
                assert_eq!((st.window_start_ns, st.window_drops), (T0, 0));
            } else {
                assert_eq!(kinds, [EVENT_LIMITED]);
                assert_eq!(
                    (st.window_start_ns, st.window_drops),
                    (T0 + 9 * SEC / 10, 1)
                );
            }
        }
    }

    #[test]
    fn the_prefix_tier_limits_the_sources_of_a_prefix_together() {
        let mut cfg = syn_limited(1, 1);
        cfg.prefix[FlowClass::Syn.index()] = Limit::new(1, 2);
        let mut m = Model::new(cfg, Vec::new());
        let (a, b, c) = (v4(198, 18, 0, 1), v4(198, 18, 0, 2), v4(198, 18, 0, 3));
        let frames = [syn(a), syn(a), syn(b), syn(c), syn(v4(203, 0, 113, 1))];
        assert_eq!(run(&mut m, &frames, T0), [Pass, Drop, Pass, Drop, Pass]);
        let prefix = m.prefixes[&key_of(a, 24)];
        // `a`'s second SYN stopped at its own tier and never reached the prefix.
        assert_eq!(
            (prefix.new_flows(), prefix.passed, prefix.dropped),
            (3, 2, 1)
        );
        assert_eq!(prefix.last_seen_ns, T0);
        // `c` was new and its prefix dropped it: it takes no entry.
        assert!(!m.sources.contains_key(&key_of(c, 32)));
        assert_eq!(m.counters.get(Counter::NewSources), 3);
        assert_eq!(m.counters.get(Counter::DropPrefixLimit), 1);
        assert_eq!(m.events.len(), 1, "only the source limit sends an event");
    }

    #[test]
    fn ipv6_sources_and_prefixes_are_masked() {
        let mut m = Model::new(syn_limited(1, 1), Vec::new());
        let a = v6([0x2001, 0xdb8, 1, 2, 0xaaaa, 0, 0, 1]);
        let b = v6([0x2001, 0xdb8, 1, 2, 0xbbbb, 0, 0, 7]);
        let c = v6([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]);
        let verdicts = run(&mut m, &[syn(a), syn(b), syn(c)], T0);
        assert_eq!(verdicts, [Pass, Drop, Pass]);
        assert_eq!(m.sources.len(), 2);
        assert_eq!(m.sources[&key_of(a, 64)].new_flows(), 2);
        assert_eq!(m.prefixes[&key_of(a, 48)].new_flows(), 2);
        assert_eq!(m.events[0].source, key_of(b, 64));
    }

    #[test]
    fn a_prefix_tier_that_is_off_keeps_no_entries() {
        let mut cfg = syn_limited(1, 1);
        cfg.prefix[FlowClass::Syn.index()] = Limit::UNLIMITED;
        cfg.global = [Limit::new(1, 1); BUDGETS];
        let mut m = Model::new(cfg, Vec::new());
        let (a, b) = (src4(), v4(198, 18, 1, 1));
        assert_eq!(run(&mut m, &[syn(a), syn(b)], T0), [Pass, Drop]);
        assert!(m.prefixes.is_empty());
        assert_eq!(m.counters.get(Counter::DropGlobalBudget), 1);
        assert!(
            !m.sources.contains_key(&key_of(b, 32)),
            "a new source the budget drops takes no entry"
        );
    }

    #[test]
    fn the_global_budget_limits_all_new_flows_of_a_class_together() {
        let mut cfg = enforce();
        cfg.global = [Limit::new(1, 1); BUDGETS];
        let mut m = Model::new(cfg, Vec::new());
        let (a, b) = (src4(), v4(203, 0, 113, 1));
        let frames = [syn(a), syn(b), tcp(b, TCP_ACK).frame()];
        assert_eq!(run(&mut m, &frames, T0), [Pass, Drop, Pass]);
        assert_eq!(m.global[GLOBAL_BUDGET as usize], T0 + SEC);
        assert_eq!(m.counters.get(Counter::DropGlobalBudget), 1);
        assert!(!m.sources.contains_key(&key_of(b, 32)));
        // The budget dropped `b` before its prefix was looked at.
        assert!(!m.prefixes.contains_key(&key_of(b, 24)));
        assert!(m.events.is_empty());
        assert_eq!(m.packet(&syn(b), T0 + SEC), Pass);
    }

    #[test]
    fn a_flood_of_one_class_leaves_the_other_classes_their_budget() {
        let mut cfg = enforce();
        cfg.global = [Limit::new(1, 1); BUDGETS];
        let mut m = Model::new(cfg, Vec::new());
        let (a, b) = (src4(), v4(203, 0, 113, 1));
        // The UDP budget is spent by a's first flow, not the SYN budget.
        let frames = [
            udp(a, 1000).frame(),
            udp(a, 1001).frame(),
            syn(b),
            udp(b, 1000).frame(),
        ];
        assert_eq!(run(&mut m, &frames, T0), [Pass, Drop, Pass, Drop]);
        let udp_slot = (GLOBAL_BUDGET + FlowClass::Udp as u32) as usize;
        let syn_slot = (GLOBAL_BUDGET + FlowClass::Syn as u32) as usize;
        assert_eq!(m.global[udp_slot], T0 + SEC);
        assert_eq!(m.global[syn_slot], T0 + SEC);
        assert_eq!(m.counters.get(Counter::DropGlobalBudget), 2);
    }

    /// Once the port table marks the open ports, SYNs and datagrams to
    /// any other port take the closed ports' buckets: a flood there
    /// leaves the open ports' buckets whole. Before the bits are marked,
    /// every port is taken as open.
    #[test]
    fn closed_ports_spend_buckets_of_their_own() {
        let mut cfg = enforce();
        cfg.global = [Limit::new(1, 1); BUDGETS];
        cfg.ports = OPEN_MARKED_TCP | OPEN_MARKED_UDP;
        let mut m = Model::new(cfg, Vec::new());
        m.ports.insert(53, PORT_OPEN_UDP);
        m.ports.insert(80, PORT_OPEN_TCP);
        let closed_udp = |src, sport| Packet::udp(src, dst_for(src), sport, 9999, &[7; 40]);
        let closed_syn = |src| Packet::tcp(src, dst_for(src), 40_000, 81, TCP_SYN).frame();
        let (first, second, user) = (src4(), v4(203, 0, 113, 1), v4(203, 0, 113, 2));
        let frames = [
            closed_udp(first, 1).frame(),
            closed_udp(second, 1).frame(),
            closed_syn(first),
            closed_syn(second),
            udp(user, 1).frame(),
            syn(user),
        ];
        assert_eq!(
            run(&mut m, &frames, T0),
            [Pass, Drop, Pass, Drop, Pass, Pass]
        );
        assert_eq!(m.counters.get(Counter::DropClosedPort), 2);
        assert_eq!(m.counters.get(Counter::DropGlobalBudget), 0);
        let closed = FlowClass::Udp.closed_budget().unwrap();
        assert_eq!(m.global[GLOBAL_BUDGET as usize + closed], T0 + SEC);

        // Unmarked (the controller has not read the ports), port 9999 is
        // as open as 53: the UDP bucket the user spent drops it.
        m.config.ports = OPEN_MARKED_TCP;
        let third = v4(203, 0, 113, 3);
        assert_eq!(m.packet(&closed_udp(third, 1).frame(), T0), Drop);
        assert_eq!(m.counters.get(Counter::DropGlobalBudget), 1);
    }

    #[test]
    fn allowlisted_sources_bypass_every_limit() {
        let mut cfg = syn_limited(1, 1);
        cfg.source[FlowClass::Udp.index()] = Limit::new(1, 1);
        cfg.lists = HAS_LISTS_V4;
        cfg.udp_flow_idle_ns = 30 * SEC;
        let allow = ListEntry::new(v4(198, 18, 0, 0), 24, LIST_ALLOW);
        let mut m = Model::new(cfg, vec![allow]);
        let frames = [
            syn(src4()),
            syn(src4()),
            syn(src4()),
            udp(src4(), 1).frame(),
        ];
        assert_eq!(run(&mut m, &frames, T0), [Pass; 4]);
        assert_eq!(m.counters.get(Counter::PassAllowlist), 4);
        assert_eq!(m.counters.get(Counter::NewFlows), 4);
        assert!(m.sources.is_empty() && m.prefixes.is_empty());
        let flow = dissect(&udp(src4(), 1).frame()).flow_key();
        assert_eq!(m.udp_flows.get(&flow), Some(&T0));
        // Not on the list: limited.
        let other = v4(198, 18, 1, 1);
        assert_eq!(run(&mut m, &[syn(other), syn(other)], T0), [Pass, Drop]);
    }

    /// A table of one signature on `frame`'s transport and destination
    /// port.
    fn sig_on_dport(frame: &[u8], monitor: bool) -> SigTable {
        let fp = dissect(frame).fingerprint(frame).expect("a fingerprint");
        let mut mask = [0u8; FP_LEN];
        mask[FP_PROTO] = 0xff;
        mask[FP_DPORT..FP_DPORT + 2].fill(0xff);
        let mut table = SigTable::EMPTY;
        let sig = Signature::from_bytes(&mask, &fp.bytes());
        assert_eq!(table.install(sig, SigMeta::default(), monitor), Some(0));
        table
    }

    #[test]
    fn a_signature_drops_before_any_state_and_counts_its_hits() {
        let mut cfg = enforce();
        cfg.udp_flow_idle_ns = 30 * SEC;
        let mut m = Model::new(cfg, Vec::new());
        let flood = udp(src4(), 1000).frame();
        let other = Packet::udp(src4(), dst_for(src4()), 1000, 54, &[7; 40]).frame();
        m.sigs = sig_on_dport(&flood, false);
        assert_eq!(run(&mut m, &[flood.clone(), other], T0), [Drop, Pass]);
        let c = m.counters;
        assert_eq!((c.get(Counter::DropSignature), c.sig_hits(0)), (1, 1));
        assert_eq!(c.get(Counter::NewFlows), 1, "only the other flow");
        assert_eq!((m.sources.len(), m.udp_flows.len()), (1, 1));
        // A monitor bit only counts: the flow goes on to the limits.
        m.sigs = sig_on_dport(&flood, true);
        assert_eq!(m.packet(&flood, T0), Pass);
        let c = m.counters;
        assert_eq!((c.get(Counter::DropSignature), c.sig_hits(0)), (1, 2));
        assert_eq!((c.get(Counter::NewFlows), m.udp_flows.len()), (2, 2));
        // A known flow's packets are checked too.
        m.sigs = sig_on_dport(&flood, false);
        assert_eq!(m.packet(&flood, T0), Drop);
        assert_eq!(m.counters.get(Counter::NewFlows), 2);
    }

    #[test]
    fn the_allow_list_and_monitor_mode_pass_a_match() {
        let flood = udp(src4(), 1000).frame();
        let mut cfg = enforce();
        cfg.lists = HAS_LISTS_V4;
        let allow = ListEntry::new(v4(198, 18, 0, 0), 24, LIST_ALLOW);
        let mut m = Model::new(cfg, vec![allow]);
        m.sigs = sig_on_dport(&flood, false);
        assert_eq!(m.packet(&flood, T0), Pass);
        let c = m.counters;
        assert_eq!(c.sig_hits(0), 1, "the hit is counted");
        assert_eq!(c.get(Counter::DropSignature), 0);
        assert_eq!(c.get(Counter::PassAllowlist), 1);

        cfg.mode = MODE_MONITOR;
        cfg.lists = 0;
        let mut m = Model::new(cfg, Vec::new());
        m.sigs = sig_on_dport(&flood, false);
        assert_eq!(m.packet(&flood, T0), Pass);
        let c = m.counters;
        assert_eq!(c.get(Counter::DropSignature), 1);
        assert_eq!(c.get(Counter::PassMonitor), 1);
        assert_eq!(c.get(Counter::NewFlows), 0, "as enforce: no further");
        assert!(m.sources.is_empty() && m.udp_flows.is_empty());
    }

    #[test]
    fn a_transport_header_deep_behind_extension_headers_is_fingerprinted() {
        let mut p = tcp(src6(), TCP_SYN);
        for _ in 0..7 {
            p = p.ext(Ext::DestOpts);
        }
        // The fingerprinted bytes run to 148, past the first 128 (which
        // the program once copied, and left such a packet unfingerprinted).
        if let L4::Tcp { options, .. } = &mut p.l4 {
            *options = vec![1; 16];
        }
        let f = p.frame();
        let fp = dissect(&f).fingerprint(&f).expect("a fingerprint");
        assert_eq!(fp.bytes()[FP_PAYLOAD..], [1; 16]);
        // Not a packet that opens a flow.
        let f = tcp(src4(), TCP_ACK).frame();
        assert!(dissect(&f).fingerprint(&f).is_none());
    }

    #[test]
    fn a_deny_entry_drops_every_packet_of_its_family() {
        let deny = ListEntry::new(v4(198, 18, 0, 0), 24, LIST_DENY);
        let mut cfg = enforce();
        cfg.lists = HAS_LISTS_V4 | DENY_V4;
        let mut m = Model::new(cfg, vec![deny]);
        let later = udp(src4(), 1).fragment(Frag {
            offset: 16,
            more: false,
            len: 8,
        });
        let frames = [
            tcp(src4(), TCP_ACK).frame(),
            later.frame(),
            syn(src4()),
            tcp(src6(), TCP_ACK).frame(),
            syn(src6()),
        ];
        assert_eq!(run(&mut m, &frames, T0), [Drop, Drop, Drop, Pass, Pass]);
        assert_eq!(m.counters.get(Counter::DropDenylist), 3);
        assert_eq!(m.counters.get(Counter::NewFlows), 2);
        assert!(!m.sources.contains_key(&key_of(src4(), 32)));

        // The program trusts the config's bits: without DENY_V4 only new
        // flows are looked up.
        m.config.lists = HAS_LISTS_V4;
        let frames = [tcp(src4(), TCP_ACK).frame(), syn(src4())];
        assert_eq!(run(&mut m, &frames, T0), [Pass, Drop]);
        m.config.lists = 0;
        assert_eq!(m.packet(&syn(src4()), T0), Pass);
    }

    #[test]
    fn the_longest_prefix_wins() {
        let mut lists = vec![
            ListEntry::new(v4(198, 18, 0, 0), 16, LIST_DENY),
            ListEntry::new(v4(198, 18, 7, 0), 24, LIST_ALLOW),
            ListEntry::new(v4(198, 18, 7, 9), 32, LIST_DENY),
            ListEntry::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, LIST_ALLOW),
            ListEntry::new(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0]), 48, LIST_DENY),
        ];
        let sources = [
            v4(198, 18, 1, 1),
            v4(198, 18, 7, 1),
            v4(198, 18, 7, 9),
            v4(10, 0, 0, 1),
            v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 5]),
            v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 5]),
        ];
        let frames: Vec<Vec<u8>> = sources.into_iter().map(syn).collect();
        let mut cfg = enforce();
        cfg.lists = HAS_LISTS_V4 | HAS_LISTS_V6 | DENY_V4 | DENY_V6;
        let expected = [Drop, Pass, Drop, Pass, Drop, Pass];
        for _ in 0..2 {
            let mut m = Model::new(cfg, lists.clone());
            assert_eq!(run(&mut m, &frames, T0), expected);
            assert_eq!(m.counters.get(Counter::PassAllowlist), 2);
            assert_eq!(m.counters.get(Counter::PassLimits), 1);
            // The order of the entries does not matter.
            lists.reverse();
        }
    }

    #[test]
    fn udp_flows_are_new_after_idle_and_refreshed_at_most_once_a_second() {
        let mut cfg = enforce();
        cfg.udp_flow_idle_ns = 5 * SEC;
        let mut m = Model::new(cfg, Vec::new());
        let p = udp(src4(), 1000);
        let f = p.frame();
        let key = dissect(&f).flow_key();
        let mut step = |now: u64| {
            assert_eq!(m.packet(&f, now), Pass);
            (m.counters.get(Counter::NewFlows), m.udp_flows[&key])
        };
        let t = 10 * SEC;
        assert_eq!(step(t), (1, t));
        assert_eq!(step(t + SEC), (1, t), "not older than the refresh interval");
        assert_eq!(step(t + SEC + 1), (1, t + SEC + 1));
        assert_eq!(step(t + 6 * SEC + 1), (1, t + 6 * SEC + 1), "idle exactly");
        assert_eq!(
            step(t + 11 * SEC + 2),
            (2, t + 11 * SEC + 2),
            "idle for longer"
        );
        // The reverse direction is another flow.
        let reply = Packet::udp(DST4.into(), src4(), 53, 1000, &[]).frame();
        m.packet(&reply, t);
        assert_eq!(m.counters.get(Counter::NewFlows), 3);
    }

    #[test]
    fn other_protocols_open_flows_by_addresses_and_protocol_in_a_class_apart() {
        let mut cfg = enforce();
        cfg.source[FlowClass::Other.index()] = Limit::new(1, 2);
        cfg.udp_flow_idle_ns = 5 * SEC;
        let mut m = Model::new(cfg, Vec::new());
        // GRE, ESP, SCTP and a protocol nothing handles: a flow each.
        let gre = raw(src4(), 47, &[0; 8]).frame();
        let esp = raw(src4(), 50, &[1; 16]).frame();
        let d = dissect(&gre);
        assert!(d.may_open_flow() && d.fingerprint(&gre).is_none());
        assert_eq!(
            run(&mut m, &[gre.clone(), gre.clone(), esp.clone(), gre], T0),
            [Pass; 4],
            "a known flow passes whatever the limit"
        );
        assert_eq!(m.counters.get(Counter::NewFlows), 2);
        let key = d.flow_key();
        assert_eq!((key.proto, key.sport, key.dport), (47, 0, 0));
        assert_eq!(m.udp_flows.get(&key), Some(&T0));
        // The source's burst (2) is spent: a third protocol is not, and
        // UDP, a class apart, still is.
        let sctp = raw(src4(), 132, &[2; 12]).frame();
        assert_eq!(m.packet(&sctp, T0), Drop);
        assert_eq!(m.counters.get(Counter::DropSourceLimit), 1);
        assert_eq!(m.packet(&udp(src4(), 7).frame(), T0), Pass);
        // SCTP, DCCP and UDP-Lite flows are keyed by their ports too, as
        // conntrack keys them: a port pair is a flow.
        let d = dissect(&sctp);
        assert_eq!((d.flow_key().sport, d.flow_key().dport), (0x0202, 0x0202));
        for proto in [33, 132, 136] {
            let d = dissect(&raw(src6(), proto, &[0, 1, 0, 2]).frame());
            assert_eq!((d.class, d.flow_key().dport), (Counter::IpOther, 2));
            let short = raw(src6(), proto, &[0, 1, 0]).frame();
            assert_eq!(class(&short), Counter::Malformed, "protocol {proto}");
        }
        // IPv6 alike; a later fragment opens nothing (conntrack sees the
        // datagram whole).
        let v6 = raw(src6(), 253, &[3; 8]).frame();
        assert_eq!(m.packet(&v6, T0), Pass);
        let later4 = raw(src4(), 253, &[3; 16]).fragment(Frag {
            offset: 8,
            more: false,
            len: 8,
        });
        let later6 = raw(src6(), 253, &[3; 8]).ext(Ext::Fragment {
            offset: 16,
            more: false,
        });
        for later in [later4, later6] {
            let d = dissect(&later.frame());
            assert_eq!((d.class, d.may_open_flow()), (Counter::IpOther, false));
            assert_eq!(m.packet(&later.frame(), T0), Pass);
        }
        assert_eq!(m.counters.get(Counter::NewFlows), 5);
    }

    #[test]
    fn a_dropped_udp_flow_is_not_remembered() {
        let mut cfg = enforce();
        cfg.source[FlowClass::Udp.index()] = Limit::new(1, 1);
        cfg.udp_flow_idle_ns = 5 * SEC;
        for mode in [MODE_ENFORCE, MODE_MONITOR] {
            cfg.mode = mode;
            let mut m = Model::new(cfg, Vec::new());
            let (a, b) = (udp(src4(), 1).frame(), udp(src4(), 2).frame());
            run(&mut m, &[a.clone(), b.clone(), a, b], T0);
            assert_eq!(m.udp_flows.len(), 1);
            assert_eq!(m.counters.get(Counter::NewFlows), 3);
            assert_eq!(m.counters.get(Counter::DropSourceLimit), 2);
        }
    }

    #[test]
    fn bans_are_sent_whatever_the_event_budget() {
        let mut cfg = syn_limited(1, 1);
        cfg.ban_threshold = 2;
        cfg.ban_window_ns = 10 * SEC;
        cfg.ban_duration_ns = 60 * SEC;
        cfg.events = Limit::new(1, 1);
        let mut m = Model::new(cfg, Vec::new());
        let (a, b) = (src4(), v4(198, 18, 0, 2));
        // a: pass, limited (the budget's one event), banned; b the same,
        // with the budget spent: its "limited" is suppressed, its ban is not.
        run(
            &mut m,
            &[syn(a), syn(a), syn(a), syn(b), syn(b), syn(b)],
            T0,
        );
        let kinds: Vec<(u32, SourceKey)> = m.events.iter().map(|e| (e.kind, e.source)).collect();
        assert_eq!(
            kinds,
            [
                (EVENT_LIMITED, key_of(a, 32)),
                (EVENT_BANNED, key_of(a, 32)),
                (EVENT_BANNED, key_of(b, 32))
            ]
        );
        assert_eq!(m.counters.get(Counter::EventsSuppressed), 1);
    }

    #[test]
    fn events_over_the_event_budget_are_suppressed() {
        let mut cfg = syn_limited(1, 1);
        cfg.events = Limit::new(1, 1);
        let mut m = Model::new(cfg, Vec::new());
        let (a, b) = (src4(), v4(198, 18, 0, 2));
        run(&mut m, &[syn(a), syn(a), syn(b), syn(b)], T0);
        assert_eq!(m.events.len(), 1);
        assert_eq!(m.events[0].source, key_of(a, 32));
        assert_eq!(m.counters.get(Counter::EventsSent), 1);
        assert_eq!(m.counters.get(Counter::EventsSuppressed), 1);
        assert_eq!(m.global[GLOBAL_EVENTS as usize], T0 + SEC);
        // The episode started anyway: no event for `b` until it is admitted again.
        assert_eq!(m.sources[&key_of(b, 32)].limited, 1);
        m.packet(&syn(b), T0 + SEC / 2);
        assert_eq!(m.counters.get(Counter::EventsSuppressed), 1);
    }
}
