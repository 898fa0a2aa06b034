//! The data plane's configuration, as the loader (and later the controller)
//! writes it into the single-entry `GUARD_CONFIG` array. The XDP program
//! reads it through one accessor; changing it needs no reload.

use crate::{
    bucket::Limit,
    counters::Counter,
    ports::{PORT_OPEN_TCP, PORT_OPEN_UDP},
};

/// Index of a new-flow class in the per-class limit arrays and in
/// [`crate::state::SourceState::tat`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowClass {
    /// TCP SYN without ACK.
    Syn = 0,
    /// The first UDP packet of a 5-tuple not seen within `udp_flow_idle_ns`.
    Udp = 1,
    /// An ICMP or ICMPv6 query conntrack opens an entry for: an echo,
    /// timestamp, information or address mask request; an ICMPv6 echo
    /// request or node information query.
    Icmp = 2,
    /// The first datagram of any other IP protocol (GRE, ESP, SCTP, ...)
    /// between two addresses (and, where conntrack keys them by ports,
    /// two ports) not seen within `udp_flow_idle_ns`: conntrack opens an
    /// entry for it too. Apart from UDP, so a flood of a protocol few
    /// hosts use cannot take UDP clients' share of the budget.
    Other = 3,
}

pub const FLOW_CLASSES: usize = 4;

/// The global budget's buckets: one for each [`FlowClass`], then one for
/// the SYNs and one for the datagrams sent to closed ports
/// ([`FlowClass::closed_budget`]).
pub const BUDGETS: usize = FLOW_CLASSES + 2;

/// The global budget's split among its buckets, in percent of its rate
/// and burst: each class has a bucket of its own, so a UDP flood cannot
/// starve handshakes, nor a SYN flood UDP clients; and SYNs and datagrams
/// to ports nothing here serves have theirs, so a flood aimed at closed
/// ports cannot spend what the clients of the open ones need.
pub const BUDGET_SHARE_PERCENT: [u32; BUDGETS] = [45, 30, 10, 5, 5, 5];

/// The drop reason of the global budget's bucket `budget`: a class's, or
/// closed ports'.
#[must_use]
#[inline(always)]
pub const fn budget_drop(budget: usize) -> Counter {
    if budget < FLOW_CLASSES {
        Counter::DropGlobalBudget
    } else {
        Counter::DropClosedPort
    }
}

impl FlowClass {
    pub const ALL: [Self; FLOW_CLASSES] = [Self::Syn, Self::Udp, Self::Icmp, Self::Other];

    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The bucket of the global budget that new flows of the class to a
    /// closed port take (a port with no [`crate::ports::PORT_OPEN_TCP`],
    /// or `_UDP`, bit, once [`OPEN_MARKED_TCP`], or `_UDP`, says the bits
    /// are set): SYNs' and UDP's; `None` for the classes that have no
    /// ports.
    #[must_use]
    #[inline(always)]
    pub const fn closed_budget(self) -> Option<usize> {
        match self {
            Self::Syn => Some(FLOW_CLASSES),
            Self::Udp => Some(FLOW_CLASSES + 1),
            Self::Icmp | Self::Other => None,
        }
    }

    /// The closed ports' bucket a new flow of the class takes, to a port
    /// whose `GUARD_PORTS` entry is `entry`, under the configuration's
    /// port bits `ports` ([`DataplaneConfig::ports`]): `None` where the
    /// class has no ports, its protocol's open ports are not marked, or
    /// the entry says the port is open. The program's and the model's
    /// one rule.
    #[must_use]
    #[inline(always)]
    pub fn closed_port_budget(self, ports: u8, entry: u32) -> Option<usize> {
        let closed = self.closed_budget()?;
        let (marked, open) = if self == Self::Syn {
            (OPEN_MARKED_TCP, PORT_OPEN_TCP)
        } else {
            (OPEN_MARKED_UDP, PORT_OPEN_UDP)
        };
        (ports & marked != 0 && entry & open == 0).then_some(closed)
    }

    /// The name used in config keys (`syn-rate`), stats and events.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Other => "other",
        }
    }
}

/// A known UDP flow's last-seen time is rewritten at most this often, so a
/// busy flow does not write its map entry on every packet. A flow is known
/// while `now - last_seen <= udp_flow_idle_ns`.
pub const UDP_FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// Socket lookups a CPU makes for the ACK check in a second, at most
/// (while the budget binds, for ACKs from unverified sources that answer
/// no SYN-ACK the host remembers). A lookup that misses, as a spoofed
/// ACK's does, is the dearest step of any packet (BENCHMARKS.md: 500-850
/// ns here), so a spoofed ACK flood beside a SYN flood would cost that per
/// packet; 50,000 a second is at most a few percent of a CPU. A real
/// client sends many ACKs, and its handshake's is checked by the SYN-ACK
/// it answers, which is not rationed.
pub const ACK_LOOKUPS_PER_SEC: u32 = 50_000;

/// Socket lookups a CPU makes in a second, at most, for SYNs to a cookie
/// port from sources not verified lately (whether a connection the host
/// holds in TIME_WAIT names the SYN's 4-tuple: the kernel reopens it). A
/// verified source's SYN is always looked up: only a source that had a
/// connection can have one in TIME_WAIT, and the egress program verifies
/// every client the host sends data to. This catches the rest while a
/// port is calm (a connection made before guard started, a verification
/// whose slot another source took) at under a millisecond of a CPU a
/// second; a spoofed flood spends it at once, and pays no more lookups.
pub const SYN_LOOKUPS_PER_SEC: u32 = 1_000;

/// `monitor` counts what would be dropped and drops nothing.
pub const MODE_MONITOR: u32 = 0;
/// `enforce` drops.
pub const MODE_ENFORCE: u32 = 1;

/// [`DataplaneConfig::lists`] bits: which allow/deny tries hold entries, so
/// the program skips lookups in empty ones.
pub const HAS_LISTS_V4: u32 = 1;
pub const HAS_LISTS_V6: u32 = 1 << 1;
/// The family's trie holds a deny entry: look up every packet of that
/// family, not only new flows, so a denied source never gets a packet in.
pub const DENY_V4: u32 = 1 << 2;
pub const DENY_V6: u32 = 1 << 3;

/// [`DataplaneConfig::ports`]: some port in `GUARD_PORTS` is armed, so
/// ACKs to ports are looked up there too (SYNs always are).
pub const PORTS_ARMED: u8 = 1;
/// [`DataplaneConfig::ports`]: `GUARD_PORTS` marks every port open for
/// TCP (`PORT_OPEN_TCP`), so a SYN to a port without the bit is to a
/// closed one ([`FlowClass::closed_budget`]). Off until the controller
/// has read the listeners and the nat rules, and while a nat rule may
/// rewrite any port.
pub const OPEN_MARKED_TCP: u8 = 2;
/// The same for UDP (`PORT_OPEN_UDP`).
pub const OPEN_MARKED_UDP: u8 = 4;

/// [`DataplaneConfig::verify`]: the global budget has been dropping new
/// flows, so an ACK from a source not yet verified is looked up among the
/// host's sockets (a returning client proves itself real). Off while the
/// budget has room, so ACKs cost nothing extra then.
pub const VERIFY_ACKS: u8 = 1;

/// [`DataplaneConfig::reject`]: an over-limit SYN from a verified source
/// is answered with a RST (under [`DataplaneConfig::rst`]) rather than
/// dropped in silence. Never for an unverified source: it may be spoofed,
/// and the RST would be backscatter.
pub const REJECT_RST: u32 = 1;

/// [`DataplaneConfig::sample`]: send samples of new flows (and, for
/// contrast, of verified sources' new flows and known UDP flows) to the
/// `GUARD_SAMPLES` ring, under [`DataplaneConfig::sample_rate`] a second
/// per CPU for new flows and as many for the contrast.
pub const SAMPLE_ON: u32 = 1;

/// The link-layer addresses [`DataplaneConfig::host_macs`] holds at most:
/// the interface's own and those of the devices stacked on it in its
/// namespace (a VLAN or macvlan device with an address of its own).
pub const HOST_MACS: usize = 4;

/// A MAC address as [`DataplaneConfig::host_macs`] holds it: its six bytes
/// in the low 48 bits of a little-endian word, as the XDP program loads a
/// frame's destination.
#[must_use]
#[inline(always)]
pub const fn mac_word(mac: [u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// Everything the XDP program is told. 376 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// [`MODE_MONITOR`] or [`MODE_ENFORCE`].
    pub mode: u32,
    /// [`HAS_LISTS_V4`], [`HAS_LISTS_V6`], [`DENY_V4`] and [`DENY_V6`] bits.
    pub lists: u32,
    /// Prefix length of a source: IPv4 (normally 32) and IPv6 (normally 64).
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    /// Prefix length of the second tier: IPv4 (24) and IPv6 (48).
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// Over-limit drops within `ban_window_ns` that ban a source; 0: no bans.
    pub ban_threshold: u32,
    /// Per-source limits, by [`FlowClass`].
    pub source: [Limit; FLOW_CLASSES],
    /// Per-prefix limits, by [`FlowClass`].
    pub prefix: [Limit; FLOW_CLASSES],
    /// The global budget: one bucket per [`FlowClass`] (its share of the
    /// table's headroom), so a flood of one class cannot starve another,
    /// then closed ports' ([`FlowClass::closed_budget`]); unlimited
    /// unless the controller sets it.
    pub global: [Limit; BUDGETS],
    /// Ring-buffer events, all sources together.
    pub events: Limit,
    pub udp_flow_idle_ns: u64,
    pub ban_window_ns: u64,
    pub ban_duration_ns: u64,
    /// How long a source proven real (a completed cookie handshake, or an
    /// ACK of a connection this host knows) stays verified: its new flows
    /// skip the global budget meanwhile.
    pub verified_ns: u64,
    /// MSS advertised in the SYN-ACK, IPv4 and IPv6: what the kernel's
    /// SYNPROXY rule says, since it completes the handshake.
    pub cookie_mss4: u16,
    pub cookie_mss6: u16,
    /// Window scale advertised in the SYN-ACK (SYNPROXY's `wscale`).
    pub cookie_wscale: u8,
    /// TTL / hop limit of the SYN-ACK.
    pub cookie_ttl: u8,
    /// [`PORTS_ARMED`], [`OPEN_MARKED_TCP`] and [`OPEN_MARKED_UDP`]: what
    /// the port table holds.
    pub ports: u8,
    /// `VERIFY_*` bits.
    pub verify: u8,
    /// `REJECT_*` bits.
    pub reject: u32,
    /// `SAMPLE_*` bits.
    pub sample: u32,
    /// The RSTs sent from XDP ([`REJECT_RST`]'s and those refusing cookie
    /// handshakes' ACKs), all sources together.
    pub rst: Limit,
    /// Samples per second and CPU of each group (new flows; contrast).
    pub sample_rate: u32,
    /// A packet is considered for a sample when this CPU's count of its
    /// class has no bit of the mask set (0: every packet): under a flood
    /// most packets then skip the fingerprint.
    pub sample_mask: u32,
    /// The seed of [`crate::slots::slot_index`]: chosen at random when the
    /// program is loaded, and kept for its life (the tables' slots depend
    /// on it).
    pub slot_seed: u64,
    /// The half of `GUARD_MARKED` the program reads (0 or 1;
    /// [`crate::marked`]): `guard run`'s to switch, when it has rebuilt
    /// the other.
    pub marked_half: u32,
    /// How many of [`Self::host_macs`] are set; 0: every frame is taken
    /// as this namespace's.
    pub host_macs_len: u32,
    /// The unicast addresses ([`mac_word`]) whose frames can reach this
    /// namespace's conntrack: the interface's, and its stacked devices'
    /// here. A unicast frame for any other (a macvlan container's, a
    /// macvtap VM's) is another device's: `ip_rcv` drops it as
    /// `PACKET_OTHERHOST` before conntrack, or the macvlan port takes it
    /// into another namespace. Set only for an interface that is no
    /// bridge, bond or switch port (whose bridged frames netfilter may
    /// see: `br_netfilter`, the bridge family's conntrack).
    pub host_macs: [u64; HOST_MACS],
}

impl DataplaneConfig {
    /// Counts only, limits nothing: the base the reference model and the
    /// tests build their configurations on.
    pub const PASSIVE: Self = Self {
        mode: MODE_MONITOR,
        lists: 0,
        source_prefix_v4: 32,
        source_prefix_v6: 64,
        prefix_v4: 24,
        prefix_v6: 48,
        ban_threshold: 0,
        source: [Limit::UNLIMITED; FLOW_CLASSES],
        prefix: [Limit::UNLIMITED; FLOW_CLASSES],
        global: [Limit::UNLIMITED; BUDGETS],
        events: Limit::UNLIMITED,
        udp_flow_idle_ns: 0,
        ban_window_ns: 0,
        ban_duration_ns: 0,
        verified_ns: 0,
        cookie_mss4: 1460,
        cookie_mss6: 1440,
        cookie_wscale: 7,
        cookie_ttl: 64,
        ports: 0,
        verify: 0,
        reject: 0,
        sample: 0,
        rst: Limit::UNLIMITED,
        sample_rate: 0,
        sample_mask: 0,
        slot_seed: 0,
        marked_half: 0,
        host_macs_len: 0,
        host_macs: [0; HOST_MACS],
    };

    /// Whether the program drops what it rejects ([`MODE_ENFORCE`]); in
    /// monitor mode it passes everything and counts.
    #[must_use]
    #[inline(always)]
    pub const fn enforcing(&self) -> bool {
        self.mode == MODE_ENFORCE
    }

    /// Whether the global budget binds now: the controller says it has
    /// been dropping, and it limits some class. Then returning clients are
    /// worth verifying.
    #[must_use]
    #[inline(always)]
    pub fn budget_binds(&self) -> bool {
        if self.verify & VERIFY_ACKS == 0 {
            return false;
        }
        let mut i = 0;
        while i < BUDGETS {
            if !self.global[i].is_unlimited() {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Whether a frame for `dst` is another device's: a unicast address
    /// not in [`Self::host_macs`] (none there: every frame is this
    /// namespace's).
    #[must_use]
    #[inline(always)]
    pub fn for_another_device(&self, dst: [u8; 6]) -> bool {
        // A group address (broadcast, multicast) reaches every device.
        if self.host_macs_len == 0 || dst[0] & 1 != 0 {
            return false;
        }
        let dst = mac_word(dst);
        let mut i = 0;
        while i < HOST_MACS {
            if (i as u32) < self.host_macs_len && self.host_macs[i] == dst {
                return false;
            }
            i += 1;
        }
        true
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, laid out without implicit padding (the
// size check below would catch a change).
unsafe impl aya::Pod for DataplaneConfig {}

const _: () = assert!(size_of::<DataplaneConfig>() == 376);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each class with ports has a closed ports' bucket of its own, past
    /// the classes', whose drops are told apart.
    #[test]
    fn closed_ports_have_buckets_of_their_own() {
        let syn = FlowClass::Syn.closed_budget().unwrap();
        let udp = FlowClass::Udp.closed_budget().unwrap();
        assert!(syn >= FLOW_CLASSES && udp >= FLOW_CLASSES && syn != udp);
        assert!(syn < BUDGETS && udp < BUDGETS);
        for c in FlowClass::ALL {
            assert_eq!(budget_drop(c.index()), Counter::DropGlobalBudget);
        }
        assert_eq!(budget_drop(syn), Counter::DropClosedPort);
        assert_eq!(budget_drop(udp), Counter::DropClosedPort);
    }

    /// A flow to a port takes the closed ports' bucket only where its
    /// protocol's open ports are marked and its port is not one of them.
    #[test]
    fn a_port_is_closed_only_where_its_protocols_open_ports_are_marked() {
        let (syn, udp) = (FlowClass::Syn, FlowClass::Udp);
        let both = OPEN_MARKED_TCP | OPEN_MARKED_UDP;
        assert_eq!(syn.closed_port_budget(both, 0), syn.closed_budget());
        assert_eq!(udp.closed_port_budget(both, 0), udp.closed_budget());
        assert_eq!(syn.closed_port_budget(both, PORT_OPEN_TCP), None);
        assert_eq!(udp.closed_port_budget(both, PORT_OPEN_UDP), None);
        // Open for the other protocol alone: closed for this one.
        assert_eq!(
            syn.closed_port_budget(both, PORT_OPEN_UDP),
            syn.closed_budget()
        );
        assert_eq!(udp.closed_port_budget(OPEN_MARKED_TCP, 0), None);
        assert_eq!(syn.closed_port_budget(OPEN_MARKED_UDP, 0), None);
        assert_eq!(FlowClass::Icmp.closed_port_budget(both, 0), None);
    }

    const NIC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SHIM: [u8; 6] = [0x02, 0x42, 0, 0, 0, 3];

    /// The interface's address and its shim's are the host's, any other
    /// unicast address another device's; a group address reaches every
    /// device; with none known, every frame is the host's.
    #[test]
    fn a_frame_is_another_devices_only_for_a_unicast_address_not_listed() {
        let mut cfg = DataplaneConfig::PASSIVE;
        assert!(!cfg.for_another_device([0x02, 0, 0, 0, 0, 0x50]));
        cfg.host_macs_len = 2;
        cfg.host_macs[0] = mac_word(NIC);
        cfg.host_macs[1] = mac_word(SHIM);
        assert!(!cfg.for_another_device(NIC));
        assert!(!cfg.for_another_device(SHIM));
        assert!(cfg.for_another_device([0x02, 0, 0, 0, 0, 0x50]));
        assert!(!cfg.for_another_device([0xff; 6]));
        assert!(!cfg.for_another_device([0x33, 0x33, 0, 0, 0, 1]));
        assert!(!cfg.for_another_device([0x01, 0x00, 0x5e, 0, 0, 0xfb]));
        // Past the count, a word is not read: a stale address is no host's.
        cfg.host_macs_len = 1;
        assert!(cfg.for_another_device(SHIM));
        assert_eq!(mac_word(NIC) >> 48, 0);
    }
}
