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

/// Declares [`Counter`], [`Counter::ALL`] and [`Counter::name`] from one
/// list, so that no counter can be left out of either.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident = $slot:literal => $name:literal,)*) => {
        /// Index of a counter in a [`CounterBlock`]. Both sides change together.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Counter {
            $($(#[$doc])* $variant = $slot,)*
        }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: [Self; [$($slot),*].len()] = [$(Self::$variant),*];

            /// Stable snake_case name, used in `guard stats --json` and metrics.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// Every packet the program saw: the classes' sum ([`CounterBlock::get`]).
    Packets = 0 => "packets",
    /// Class: TCP with SYN set and ACK clear (a connection attempt).
    TcpSyn = 1 => "tcp_syn",
    /// Class: any other TCP segment.
    TcpOther = 2 => "tcp_other",
    /// Class: UDP.
    Udp = 3 => "udp",
    /// Class: ICMP and ICMPv6.
    Icmp = 4 => "icmp",
    /// Class: IP whose transport header is not in this packet: other
    /// protocols (GRE, ESP, ...) and fragments after the first.
    IpOther = 5 => "ip_other",
    /// Class: not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp = 6 => "non_ip",
    /// Class: a header is truncated or inconsistent, or the packet goes past
    /// what the parser walks (more than two VLAN tags, or more IPv6
    /// extension headers than [`crate::dissect::MAX_IPV6_EXT_HEADERS`]).
    Malformed = 7 => "malformed",
    /// Attribute: an IPv4 or IPv6 fragment (first or later).
    Fragments = 8 => "fragments",
    /// Attribute: carried one or two VLAN tags.
    Vlan = 9 => "vlan",
    /// Attribute: IPv6.
    Ipv6 = 10 => "ipv6",
    /// Attribute: opens a flow (SYN, a new UDP 5-tuple, an ICMP query).
    NewFlows = 11 => "new_flows",
    /// Pass reason: a new flow from an allowlisted source.
    PassAllowlist = 12 => "pass_allowlist",
    /// Pass reason: a new flow within every limit.
    PassLimits = 13 => "pass_limits",
    /// Passed only because of monitor mode (counted under a drop reason too).
    PassMonitor = 14 => "pass_monitor",
    /// Drop reason: the source is on the denylist.
    DropDenylist = 15 => "drop_denylist",
    /// Drop reason: the source is banned.
    DropBanned = 16 => "drop_banned",
    /// Drop reason: over the source's limit for the class.
    DropSourceLimit = 17 => "drop_source_limit",
    /// Drop reason: over the prefix's limit for the class.
    DropPrefixLimit = 18 => "drop_prefix_limit",
    /// Drop reason: over the global new-flow budget.
    DropGlobalBudget = 19 => "drop_global_budget",
    /// Drop reason: malformed (see the class).
    DropMalformed = 20 => "drop_malformed",
    /// A ring-buffer event was sent.
    EventsSent = 21 => "events_sent",
    /// An event was not sent: over the event rate, or the ring was full.
    EventsSuppressed = 22 => "events_suppressed",
    /// A compare-and-swap on a shared bucket lost to another CPU's update
    /// (retried, or made an atomic add: no arrival is dropped for it).
    BucketContention = 23 => "bucket_contention",
    /// A SYN to a cookie port answered from XDP with a SYN cookie
    /// (`XDP_TX`); it never reaches the kernel.
    CookieSynAck = 24 => "cookie_synack",
    /// An ACK that completes a cookie handshake: a valid cookie, passed to
    /// the kernel's SYNPROXY (unless the source's limits drop it).
    CookieAckValid = 25 => "cookie_ack_valid",
    /// Drop reason: an ACK to a cookie port with neither a valid cookie nor
    /// a connection (forged, or too late).
    DropCookieInvalid = 26 => "drop_cookie_invalid",
    /// A source seen for the first time (its state was created).
    NewSources = 27 => "new_sources",
    /// A source verified by an ACK of a connection the host knows (a
    /// socket past its handshake: established or closing), while the
    /// global budget binds.
    VerifiedAck = 28 => "verified_ack",
    /// A RST sent from XDP so a real client fails fast: to an over-limit
    /// SYN from a verified source (`reject = "rst"`), or to a cookie
    /// handshake's ACK over its source's limit; also counted as its drop
    /// reason.
    RstSent = 29 => "rst_sent",
    /// Drop reason: the packet matched an attack signature
    /// ([`crate::fingerprint`]); each signature's hits are counted too, in
    /// [`SIG_HIT_SLOT`]` + its slot`.
    DropSignature = 30 => "drop_signature",
    /// An ACK not checked against the host's sockets: this CPU had made
    /// its [`crate::config::ACK_LOOKUPS_PER_SEC`] lookups this second.
    AckLookupsSkipped = 31 => "ack_lookups_skipped",
    /// A source verified because the host sent it data or a FIN of a TCP
    /// connection (the egress program: only a completed handshake makes
    /// either), whether or not the budget binds. Kept in the source's slot.
    VerifiedReply = 32 => "verified_reply",
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
    CookieUnanswered = 33 => "cookie_unanswered",
    /// A SYN or a new UDP flow to a port conntrack skips
    /// (`--notrack-port`): passed as no new flow, no limit applies (it
    /// opens no conntrack entry). A denylisted source's is still dropped.
    PassUntracked = 34 => "pass_untracked",
    /// A new flow in a frame for another device's link-layer address (a
    /// macvlan container's, a macvtap VM's: not in
    /// [`crate::DataplaneConfig::host_macs`]): it never reaches this
    /// namespace's conntrack, so it passes with no limit, no cookie, no
    /// signature and no sample. A denylisted source's is still dropped.
    PassOtherDevice = 35 => "pass_other_device",
    /// Drop reason: a SYN or a new UDP flow to a closed port (no socket
    /// here listens on it, no nat rule rewrites it) over the closed ports'
    /// bucket of the global budget ([`crate::FlowClass::closed_budget`]):
    /// a flood aimed there cannot spend the open ports' buckets.
    DropClosedPort = 36 => "drop_closed_port",
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
