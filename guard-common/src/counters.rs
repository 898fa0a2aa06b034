//! Per-CPU packet counters.
//!
//! The XDP program keeps one [`CounterBlock`] per CPU in a single-entry
//! per-CPU array, so a packet costs one map lookup however many counters it
//! bumps. Userspace sums the blocks of all CPUs.
//!
//! Every packet increments exactly one *class* counter
//! ([`Counter::CLASSES`]), so [`Counter::Packets`] is their sum, which
//! [`CounterBlock::get`] computes: the program does not count it too (an
//! increment less on every packet), and its slot is left unused.
//! *Attribute* counters ([`Counter::ATTRIBUTES`]) are counted in addition.
//!
//! Verdicts: every decision to drop is counted under its reason
//! ([`Counter::DROP_REASONS`]), in monitor mode too, where the packet then
//! passes and is also counted in [`Counter::PassMonitor`]. So monitor's drop
//! counters are exactly what enforce would have dropped.

/// Slots in a [`CounterBlock`]. Larger than the number of counters so that
/// new counters do not change the map's value size.
pub const COUNTER_SLOTS: usize = 48;

/// Index of a counter in a [`CounterBlock`]. Both sides change together.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Every packet the program saw: the classes' sum ([`CounterBlock::get`]).
    Packets = 0,
    /// Class: TCP with SYN set and ACK clear (a connection attempt).
    TcpSyn = 1,
    /// Class: any other TCP segment.
    TcpOther = 2,
    /// Class: UDP.
    Udp = 3,
    /// Class: ICMP and ICMPv6.
    Icmp = 4,
    /// Class: IP whose transport header is not in this packet: other
    /// protocols (GRE, ESP, ...) and fragments after the first.
    IpOther = 5,
    /// Class: not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp = 6,
    /// Class: a header is truncated or inconsistent, or the packet goes past
    /// what the parser walks (more than two VLAN tags, or more IPv6
    /// extension headers than [`crate::dissect::MAX_IPV6_EXT_HEADERS`]).
    Malformed = 7,
    /// Attribute: an IPv4 or IPv6 fragment (first or later).
    Fragments = 8,
    /// Attribute: carried one or two VLAN tags.
    Vlan = 9,
    /// Attribute: IPv6.
    Ipv6 = 10,
    /// Attribute: opens a flow (SYN, a new UDP 5-tuple, an ICMP query).
    NewFlows = 11,
    /// Pass reason: a new flow from an allowlisted source.
    PassAllowlist = 12,
    /// Pass reason: a new flow within every limit.
    PassLimits = 13,
    /// Passed only because of monitor mode (counted under a drop reason too).
    PassMonitor = 14,
    /// Drop reason: the source is on the denylist.
    DropDenylist = 15,
    /// Drop reason: the source is banned.
    DropBanned = 16,
    /// Drop reason: over the source's limit for the class.
    DropSourceLimit = 17,
    /// Drop reason: over the prefix's limit for the class.
    DropPrefixLimit = 18,
    /// Drop reason: over the global new-flow budget.
    DropGlobalBudget = 19,
    /// Drop reason: malformed (see the class).
    DropMalformed = 20,
    /// A ring-buffer event was sent.
    EventsSent = 21,
    /// An event was not sent: over the event rate, or the ring was full.
    EventsSuppressed = 22,
    /// A compare-and-swap on a shared bucket lost to another CPU's update
    /// (retried, or made an atomic add: no arrival is dropped for it).
    BucketContention = 23,
    /// A SYN to a cookie port answered from XDP with a SYN cookie
    /// (`XDP_TX`); it never reaches the kernel.
    CookieSynAck = 24,
    /// An ACK that completes a cookie handshake: a valid cookie, passed to
    /// the kernel's SYNPROXY (unless the source's limits drop it).
    CookieAckValid = 25,
    /// Drop reason: an ACK to a cookie port with neither a valid cookie nor
    /// a connection (forged, or too late).
    DropCookieInvalid = 26,
    /// A source seen for the first time (its state was created).
    NewSources = 27,
    /// A source verified by an ACK of a connection the host knows (a
    /// socket past its handshake: established or closing), while the
    /// global budget binds.
    VerifiedAck = 28,
    /// A RST sent from XDP so a real client fails fast: to an over-limit
    /// SYN from a verified source (`reject = "rst"`), or to a cookie
    /// handshake's ACK over its source's limit; also counted as its drop
    /// reason.
    RstSent = 29,
    /// Drop reason: the packet matched an attack signature
    /// ([`crate::fingerprint`]); each signature's hits are counted too, in
    /// [`SIG_HIT_SLOT`]` + its slot`.
    DropSignature = 30,
    /// An ACK not checked against the host's sockets: this CPU had made
    /// its [`crate::config::ACK_LOOKUPS_PER_SEC`] lookups this second.
    AckLookupsSkipped = 31,
    /// A source verified because the host sent it data or a FIN of a TCP
    /// connection (the egress program: only a completed handshake makes
    /// either), whether or not the budget binds. Kept in the source's slot.
    VerifiedReply = 32,
    /// A SYN to a port armed for cookies, in enforce mode, that the cookie
    /// path could not answer from its headers (IPv4 options, IPv6
    /// extension headers, data, a wrong IPv4 header checksum; or the frame
    /// could not grow to the reply's length): it went the ordinary way,
    /// to the limits and the kernel's SYNPROXY. Also a SYN for a
    /// connection the host still holds (in TIME_WAIT, the server having
    /// closed first), which the kernel reopens (looked up for a source
    /// verified lately, or within
    /// [`crate::config::SYN_LOOKUPS_PER_SEC`]). A fragment is not looked
    /// up in the port table, so not counted here.
    CookieUnanswered = 33,
    /// A SYN or a new UDP flow to a port conntrack skips
    /// (`--notrack-port`): passed as no new flow, no limit applies (it
    /// opens no conntrack entry). A denylisted source's is still dropped.
    PassUntracked = 34,
    /// A new flow in a frame for another device's link-layer address (a
    /// macvlan container's, a macvtap VM's: not in
    /// [`crate::DataplaneConfig::host_macs`]): it never reaches this
    /// namespace's conntrack, so it passes with no limit, no cookie, no
    /// signature and no sample. A denylisted source's is still dropped.
    PassOtherDevice = 35,
    /// Drop reason: a SYN or a new UDP flow to a closed port (no socket
    /// here listens on it, no nat rule rewrites it) over the closed ports'
    /// bucket of the global budget ([`crate::FlowClass::closed_budget`]):
    /// a flood aimed there cannot spend the open ports' buckets.
    DropClosedPort = 36,
}

/// Slot of signature 0's hit counter (matches, in monitor mode too); the
/// table's [`crate::fingerprint::MAX_SIGS`] slots follow.
pub const SIG_HIT_SLOT: usize = 40;
const _: () = assert!(SIG_HIT_SLOT + crate::fingerprint::MAX_SIGS <= COUNTER_SLOTS);
const _: () = assert!(Counter::ALL.len() <= SIG_HIT_SLOT);

impl Counter {
    /// The mutually exclusive classes; exactly one per packet.
    pub const CLASSES: [Self; 7] = [
        Self::TcpSyn,
        Self::TcpOther,
        Self::Udp,
        Self::Icmp,
        Self::IpOther,
        Self::NonIp,
        Self::Malformed,
    ];

    /// Counted in addition to the class.
    pub const ATTRIBUTES: [Self; 3] = [Self::Fragments, Self::Vlan, Self::Ipv6];

    /// Why a packet was (or in monitor mode would have been) dropped.
    pub const DROP_REASONS: [Self; 9] = [
        Self::DropSignature,
        Self::DropDenylist,
        Self::DropBanned,
        Self::DropSourceLimit,
        Self::DropPrefixLimit,
        Self::DropGlobalBudget,
        Self::DropClosedPort,
        Self::DropMalformed,
        Self::DropCookieInvalid,
    ];

    /// Why a new flow passed.
    pub const PASS_REASONS: [Self; 3] = [Self::PassAllowlist, Self::PassLimits, Self::PassMonitor];

    /// Every counter, in slot order.
    pub const ALL: [Self; 37] = [
        Self::Packets,
        Self::TcpSyn,
        Self::TcpOther,
        Self::Udp,
        Self::Icmp,
        Self::IpOther,
        Self::NonIp,
        Self::Malformed,
        Self::Fragments,
        Self::Vlan,
        Self::Ipv6,
        Self::NewFlows,
        Self::PassAllowlist,
        Self::PassLimits,
        Self::PassMonitor,
        Self::DropDenylist,
        Self::DropBanned,
        Self::DropSourceLimit,
        Self::DropPrefixLimit,
        Self::DropGlobalBudget,
        Self::DropMalformed,
        Self::EventsSent,
        Self::EventsSuppressed,
        Self::BucketContention,
        Self::CookieSynAck,
        Self::CookieAckValid,
        Self::DropCookieInvalid,
        Self::NewSources,
        Self::VerifiedAck,
        Self::RstSent,
        Self::DropSignature,
        Self::AckLookupsSkipped,
        Self::VerifiedReply,
        Self::CookieUnanswered,
        Self::PassUntracked,
        Self::PassOtherDevice,
        Self::DropClosedPort,
    ];

    /// Stable snake_case name, used in `guard stats --json` and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Packets => "packets",
            Self::TcpSyn => "tcp_syn",
            Self::TcpOther => "tcp_other",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::IpOther => "ip_other",
            Self::NonIp => "non_ip",
            Self::Malformed => "malformed",
            Self::Fragments => "fragments",
            Self::Vlan => "vlan",
            Self::Ipv6 => "ipv6",
            Self::NewFlows => "new_flows",
            Self::PassAllowlist => "pass_allowlist",
            Self::PassLimits => "pass_limits",
            Self::PassMonitor => "pass_monitor",
            Self::DropDenylist => "drop_denylist",
            Self::DropBanned => "drop_banned",
            Self::DropSourceLimit => "drop_source_limit",
            Self::DropPrefixLimit => "drop_prefix_limit",
            Self::DropGlobalBudget => "drop_global_budget",
            Self::DropClosedPort => "drop_closed_port",
            Self::DropMalformed => "drop_malformed",
            Self::EventsSent => "events_sent",
            Self::EventsSuppressed => "events_suppressed",
            Self::BucketContention => "bucket_contention",
            Self::CookieSynAck => "cookie_synack",
            Self::CookieAckValid => "cookie_ack_valid",
            Self::DropCookieInvalid => "drop_cookie_invalid",
            Self::NewSources => "new_sources",
            Self::VerifiedAck => "verified_ack",
            Self::RstSent => "rst_sent",
            Self::DropSignature => "drop_signature",
            Self::AckLookupsSkipped => "ack_lookups_skipped",
            Self::VerifiedReply => "verified_reply",
            Self::CookieUnanswered => "cookie_unanswered",
            Self::PassUntracked => "pass_untracked",
            Self::PassOtherDevice => "pass_other_device",
        }
    }

    #[must_use]
    pub const fn slot(self) -> usize {
        self as usize
    }
}

/// One CPU's counters, indexed by [`Counter::slot`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterBlock {
    pub slots: [u64; COUNTER_SLOTS],
}

impl CounterBlock {
    pub const ZERO: Self = Self {
        slots: [0; COUNTER_SLOTS],
    };

    /// `counter`'s count; [`Counter::Packets`] the classes' sum.
    #[must_use]
    pub const fn get(&self, counter: Counter) -> u64 {
        if !matches!(counter, Counter::Packets) {
            return self.slots[counter.slot()];
        }
        let mut sum = 0u64;
        let mut i = 0;
        while i < Counter::CLASSES.len() {
            sum = sum.wrapping_add(self.slots[Counter::CLASSES[i].slot()]);
            i += 1;
        }
        sum
    }

    /// The hits of the signature in table slot `slot`.
    #[must_use]
    pub const fn sig_hits(&self, slot: usize) -> u64 {
        self.slots[SIG_HIT_SLOT + slot]
    }

    /// Adds another block slot by slot (summing the CPUs). Wrapping, like
    /// the kernel side's increments.
    pub fn accumulate(&mut self, other: &Self) {
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// The CPUs' blocks summed.
    #[must_use]
    pub fn total(per_cpu: &[Self]) -> Self {
        let mut sum = Self::ZERO;
        for block in per_cpu {
            sum.accumulate(block);
        }
        sum
    }
}

impl Default for CounterBlock {
    fn default() -> Self {
        Self::ZERO
    }
}

// SAFETY: CounterBlock is repr(C), Copy, and made of u64s only: no padding,
// every bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for CounterBlock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_unique_and_fit() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.slot(), i, "{counter:?} is out of order");
        }
        assert!(Counter::ALL.len() <= COUNTER_SLOTS);
    }

    #[test]
    fn groups_do_not_overlap() {
        let mut seen = [false; COUNTER_SLOTS];
        let groups = Counter::CLASSES
            .iter()
            .chain(Counter::ATTRIBUTES.iter())
            .chain(Counter::DROP_REASONS.iter())
            .chain(Counter::PASS_REASONS.iter());
        for c in groups {
            assert!(!seen[c.slot()], "{c:?} listed twice");
            seen[c.slot()] = true;
        }
    }

    #[test]
    fn packets_are_the_classes_sum() {
        let mut b = CounterBlock::ZERO;
        b.slots[Counter::TcpSyn.slot()] = 3;
        b.slots[Counter::Malformed.slot()] = u64::MAX;
        b.slots[Counter::Vlan.slot()] = 9;
        b.slots[Counter::Packets.slot()] = 1000;
        // An attribute is not a class, and the slot is not read.
        assert_eq!(b.get(Counter::Packets), 2);
    }

    #[test]
    fn names_are_unique() {
        for a in Counter::ALL {
            for b in Counter::ALL {
                assert!(a == b || a.name() != b.name());
            }
        }
    }

    #[test]
    fn accumulate_sums_and_wraps() {
        let mut a = CounterBlock::ZERO;
        a.slots[1] = u64::MAX;
        let mut b = CounterBlock::ZERO;
        b.slots[1] = 2;
        b.slots[2] = 5;
        a.accumulate(&b);
        assert_eq!(a.slots[1], 1);
        assert_eq!(a.get(Counter::TcpOther), 5);
    }
}
