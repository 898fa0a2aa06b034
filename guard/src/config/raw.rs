//! Every key of `guard run` as it is written, before validation: the
//! flags and the TOML file share [`RawConfig`], so a key is defined (name,
//! type, help text) once, and clap and serde both read it. The value enums
//! derive clap's `ValueEnum` here for the same reason; the command tree
//! itself is the CLI's.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The numeric defaults, one place (the enums' are their `#[default]`
/// variants; the tables' sizes are `guard_common::maps`'). The help text
/// repeats them; a test checks it does.
pub mod defaults {
    /// Per source, per second, and the burst: TCP SYN, new UDP flows, ICMP
    /// queries, new flows of other IP protocols (few hosts open many).
    pub const SOURCE: [(u64, u32); 4] = [(50, 100), (50, 100), (5, 10), (5, 10)];
    /// Per prefix.
    pub const PREFIX: [(u64, u32); 4] = [(500, 1000), (500, 1000), (50, 100), (50, 100)];
    /// The global new-flow budget: 0 = no limit until the controller sets one.
    pub const GLOBAL: (u64, u32) = (0, 0);
    pub const EVENTS: (u64, u32) = (100, 100);
    pub const SOURCE_PREFIX_V4: u8 = 32;
    pub const SOURCE_PREFIX_V6: u8 = 64;
    pub const PREFIX_V4: u8 = 24;
    pub const PREFIX_V6: u8 = 48;
    /// As nf_conntrack_udp_timeout.
    pub const UDP_FLOW_IDLE_SECS: u64 = 30;
    pub const BAN_THRESHOLD: u32 = 500;
    pub const BAN_WINDOW_SECS: u64 = 10;
    pub const BAN_DURATION_SECS: u64 = 60;
    pub const SUMMARY_INTERVAL_SECS: u64 = 5;
    /// Fill of the conntrack table the controller keeps below, in percent.
    pub const CONNTRACK_TARGET: u8 = 80;
    /// Seconds of calm before the controller steps down a level.
    pub const CALM_SECS: u64 = 30;
    /// SYNPROXY's usual MSS: a full Ethernet frame's.
    pub const COOKIE_MSS: u16 = 1460;
    /// The window scale of Linux's default buffers (a 6 MiB
    /// `net.ipv4.tcp_rmem` maximum), until `guard run` reads the host's.
    pub const LINUX_WSCALE: u8 = 7;
    /// Five minutes: longer than a flood wave, short enough that a
    /// verified address reused by someone else soon loses the privilege.
    pub const VERIFIED_SECS: u64 = 300;
    /// `tcp_synack_retries` while a port is armed. The spoofed SYNs the
    /// budget admits before cookies come on hold the server's SYN queue for
    /// their SYN-ACK retransmissions (the kernel gives a full queue's old
    /// requests two, about 7 s), and while it is full the server answers
    /// SYNPROXY's SYNs with cookies of its own, whose options it reads from
    /// SYNPROXY's shifted timestamp echo (`model::nft::synproxy_script`): a
    /// window scale that is not the client's. With one retransmission the
    /// queue was free within about 2 s by hand (BENCHMARKS.md). The armed
    /// ports' clients get their SYN-ACKs from XDP and SYNPROXY, whose
    /// handshakes with the server are local and lose nothing.
    pub const SYNACK_RETRIES: u8 = 1;
    /// Where `--metrics` alone serves: loopback, a port of its own.
    pub const METRICS: &str = "127.0.0.1:9369";
    /// The fleet's key-value bucket.
    pub const FLEET_BUCKET: &str = "guard";
    /// Bans taken from peers a second (a reconnect's backlog waits its turn).
    pub const FLEET_RATE: u32 = 100;
}

/// `--conntrack-buckets`: how the hash table is sized at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketPolicy {
    /// At least a quarter of the highest nf_conntrack_max the memory allows
    /// (chains of four at worst).
    #[default]
    Quarter,
    /// At least as many buckets as that nf_conntrack_max (chains of one).
    Equal,
    /// Leave the hash table alone.
    Keep,
}

/// `--xdp-mode`: how to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeChoice {
    /// Native (driver) mode if the driver supports it, otherwise skb mode;
    /// skb mode on a veth, where native mode would drop SYN cookies'
    /// replies unless the peer runs an XDP program.
    #[default]
    Auto,
    /// Native mode only: fail if the driver has no XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, after the kernel allocated an skb.
    Skb,
}

impl fmt::Display for XdpModeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Skb => "skb",
        })
    }
}

/// `--reject`: how an over-limit SYN from a verified source is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reject {
    /// Dropped in silence: the client retransmits.
    #[default]
    Drop,
    /// Answered with a RST from XDP, so the client fails at once.
    Rst,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drop => "drop",
            Self::Rst => "rst",
        })
    }
}

/// `--fingerprints`: what guard does with the attack signatures it learns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fingerprints {
    /// Learns nothing and samples nothing; operators' signatures still
    /// apply.
    Off,
    /// Learns and installs signatures that only count their matches.
    Monitor,
    /// Learns and installs signatures that drop their matches.
    #[default]
    Enforce,
}

impl fmt::Display for Fingerprints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        })
    }
}

/// `--syn-cookies`: whether SYNs to listening ports are answered from XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynCookies {
    /// From the start, for every protected port, while guard runs
    /// (enforce mode).
    Always,
    /// Per port: on for a port under a random-source SYN flood that fills
    /// the table, off again when it is over.
    #[default]
    Auto,
    /// Never.
    Never,
}

impl fmt::Display for SynCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Auto => "auto",
            Self::Never => "never",
        })
    }
}

/// `--mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Count what would be dropped; drop nothing.
    #[default]
    Monitor,
    /// Drop.
    Enforce,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        })
    }
}

/// `--source-limits`: how the per-source and per-prefix limits follow the
/// conntrack controller's level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceLimits {
    /// Ten times the configured limits while the table is calm (also while
    /// a flood XDP holds back raises the level), as configured once the
    /// table itself reaches the elevated level: a busy source (a NAT, a
    /// flash crowd) is not limited while the table has room; a flooding
    /// one is.
    #[default]
    Pressure,
    /// As configured at every level.
    Always,
}

impl fmt::Display for SourceLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pressure => "pressure",
            Self::Always => "always",
        })
    }
}

/// Every key of `guard run`, as a flag (`--syn-rate 50`) and as a TOML key
/// (`syn-rate = 50`). All optional here: `resolve` fills in the defaults
/// ([`defaults`]) and checks the values.
#[derive(Clone, Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    /// Interface to protect; repeat the flag for several.
    ///
    /// An Ethernet device: a tun, WireGuard or GRE device is refused, and
    /// on a bridge guard sees only the frames for this host. guard follows
    /// it by name: once deleted it is shown gone, and guard attaches again
    /// to the next interface of that name.
    #[arg(
        long = "iface",
        short = 'i',
        value_name = "IF",
        help_heading = "Attachment"
    )]
    pub iface: Option<Vec<String>>,

    /// How to attach: native (driver) XDP, generic skb XDP, or native with a
    /// fallback to skb, and skb on a veth so SYN cookies' replies reach a
    /// peer without an XDP program [default: auto].
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Attachment")]
    pub xdp_mode: Option<XdpModeChoice>,

    /// Protect interfaces inside this network namespace (a name from
    /// `ip netns list`) instead of the host's [default: NAME under `ip
    /// netns exec NAME`].
    #[arg(long, value_name = "NAME", help_heading = "Attachment")]
    pub netns: Option<String>,

    /// Replace an XDP program that someone else attached to an interface.
    #[arg(long, help_heading = "Attachment")]
    #[serde(default)]
    pub force: bool,

    /// monitor: count what would be dropped, drop nothing; enforce: drop
    /// [default: monitor].
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Limits")]
    pub mode: Option<Enforcement>,

    /// How the per-source and per-prefix limits follow conntrack pressure:
    /// pressure, ten times the configured ones while the table is calm and
    /// as configured once its fill or growth reaches the controller's
    /// elevated level (a busy NAT passes, a flooding source does not); always, as configured at every
    /// level [default: pressure]. Without the controller (no conntrack,
    /// --dry-run) they are as configured.
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "Limits")]
    pub source_limits: Option<SourceLimits>,

    /// New TCP connections (SYN) per second from one source; 0 = no limit
    /// [default: 50].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub syn_rate: Option<u64>,
    /// SYNs a source may send at once before the rate applies [default: 100].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub syn_burst: Option<u32>,
    /// New UDP flows per second from one source; 0 = no limit [default: 50].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub udp_rate: Option<u64>,
    /// Burst of new UDP flows from one source [default: 100].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub udp_burst: Option<u32>,
    /// ICMP/ICMPv6 queries (echo, timestamp, ... requests: those conntrack
    /// tracks) per second from one source; 0 = no limit [default: 5].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub icmp_rate: Option<u64>,
    /// Burst of ICMP queries from one source [default: 10].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub icmp_burst: Option<u32>,
    /// New flows of other IP protocols (GRE, ESP, SCTP, ...: conntrack
    /// opens an entry for each) per second from one source; 0 = no limit
    /// [default: 5].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub other_rate: Option<u64>,
    /// Burst of new flows of other protocols from one source [default: 10].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub other_burst: Option<u32>,

    /// SYNs per second from one prefix (see --prefix-v4/v6); 0 = no limit
    /// [default: 500].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_syn_rate: Option<u64>,
    /// Burst of SYNs from one prefix [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_syn_burst: Option<u32>,
    /// New UDP flows per second from one prefix; 0 = no limit [default: 500].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_udp_rate: Option<u64>,
    /// Burst of new UDP flows from one prefix [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_udp_burst: Option<u32>,
    /// ICMP queries per second from one prefix; 0 = no limit [default: 50].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_icmp_rate: Option<u64>,
    /// Burst of ICMP queries from one prefix [default: 100].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_icmp_burst: Option<u32>,
    /// New flows of other protocols per second from one prefix; 0 = no
    /// limit [default: 50].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_other_rate: Option<u64>,
    /// Burst of new flows of other protocols from one prefix [default: 100].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_other_burst: Option<u32>,

    /// How a SYN from a verified source (one that completed a handshake
    /// lately) over its own limit is refused: drop, or rst (a RST sent from
    /// XDP, at most 100 a second in all, so a real client fails fast
    /// instead of retransmitting). An unverified source is always dropped:
    /// it may be spoofed, and a RST would be backscatter [default: drop].
    #[arg(long, value_enum, value_name = "HOW", help_heading = "Limits")]
    pub reject: Option<Reject>,

    /// Attack fingerprints: while there is a flood, learn what its new
    /// flows share that normal traffic does not (a fixed length, TTL, IP
    /// ID, port, payload prefix, TCP options...) and drop on it before any
    /// per-source state, as a signature that expires when it stops
    /// matching. monitor installs them to count only; off learns nothing
    /// (`guard sigs add` still works) [default: enforce].
    #[arg(long, value_enum, value_name = "WHAT", help_heading = "Limits")]
    pub fingerprints: Option<Fingerprints>,

    /// New flows per second from all sources together, split among SYN
    /// 45%, UDP 30%, ICMP 10%, other 5%, and SYNs and UDP flows to closed
    /// ports 5% each: a ceiling on the budget the conntrack controller sets
    /// from the table's headroom; 0 = no ceiling but that budget (and no
    /// budget at all where the controller does not run: --dry-run, no
    /// conntrack) [default: 0].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub global_rate: Option<u64>,
    /// Burst of the global new-flow budget [default: 0; must be at least 1
    /// when global-rate is set].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub global_burst: Option<u32>,

    /// A port to count as open whatever guard finds listening on it:
    /// PORT or LOW-HIGH, for TCP and UDP, or with /tcp or /udp for one;
    /// repeatable. A SYN or new UDP flow to a closed port (no socket here
    /// listens on it, no nat rule rewrites it) takes the closed ports'
    /// share of the global budget; name here a port served some other
    /// way (IPVS, an eBPF load balancer, TPROXY). 1-65535 counts every
    /// port open.
    #[arg(long, value_name = "PORTS", help_heading = "Limits")]
    pub open_port: Option<Vec<String>>,

    /// Prefix length that makes one IPv4 source [default: 32].
    #[arg(long, value_name = "LEN", help_heading = "Grouping")]
    pub source_prefix_v4: Option<u8>,
    /// Prefix length that makes one IPv6 source [default: 64].
    #[arg(long, value_name = "LEN", help_heading = "Grouping")]
    pub source_prefix_v6: Option<u8>,
    /// Prefix length of the IPv4 prefix tier [default: 24].
    #[arg(long, value_name = "LEN", help_heading = "Grouping")]
    pub prefix_v4: Option<u8>,
    /// Prefix length of the IPv6 prefix tier [default: 48].
    #[arg(long, value_name = "LEN", help_heading = "Grouping")]
    pub prefix_v6: Option<u8>,
    /// Seconds without a packet after which a UDP 5-tuple (or another
    /// protocol's flow) counts as a new flow again [default: 30].
    #[arg(long, value_name = "SECS", help_heading = "Grouping")]
    pub udp_flow_idle: Option<u64>,

    /// Always pass new flows from this CIDR (or address); no limit applies.
    /// Repeatable. The longest matching allow/deny prefix wins.
    #[arg(long, value_name = "CIDR", help_heading = "Lists")]
    pub allow: Option<Vec<String>>,
    /// Always drop packets from this CIDR (or address). Repeatable.
    #[arg(long, value_name = "CIDR", help_heading = "Lists")]
    pub deny: Option<Vec<String>>,

    /// Over-limit drops within --ban-window that ban a source; 0 = never ban
    /// [default: 500].
    #[arg(long, value_name = "N", help_heading = "Bans")]
    pub ban_threshold: Option<u32>,
    /// Seconds over which over-limit drops are counted [default: 10].
    #[arg(long, value_name = "SECS", help_heading = "Bans")]
    pub ban_window: Option<u64>,
    /// Seconds a ban lasts; it expires by itself [default: 60].
    #[arg(long, value_name = "SECS", help_heading = "Bans")]
    pub ban_duration: Option<u64>,

    /// Sources tracked at once (one slot each, chosen by a hash: a new
    /// source takes its slot over from the one there) [default: 131072].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_sources: Option<u32>,
    /// Prefixes tracked at once [default: 32768].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_prefixes: Option<u32>,
    /// UDP flows tracked at once, per address family, in sets of two where
    /// a new flow takes the way seen least lately (other protocols' flows
    /// share the IPv6 table) [default: 131072].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_udp_flows: Option<u32>,
    /// Allow and deny entries per address family: the config's, the kept
    /// lists' and live adds together [default: 65536].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub list_capacity: Option<u32>,
    /// Events ("source limited", "source banned") per second, all sources
    /// together; 0 = no limit [default: 100].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub event_rate: Option<u64>,
    /// Burst of events [default: 100].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub event_burst: Option<u32>,

    /// Seconds between summary lines; 0 turns them off [default: 5].
    #[arg(long, value_name = "SECS", help_heading = "Output")]
    pub summary_interval: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics; `--metrics` alone
    /// serves them at 127.0.0.1:9369 (off without the flag; bind to
    /// loopback unless others should scrape).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = defaults::METRICS,
        help_heading = "Output"
    )]
    pub metrics: Option<std::net::SocketAddr>,

    /// Keep the conntrack table below this fill, in percent [default: 80].
    #[arg(long, value_name = "PCT", help_heading = "Conntrack")]
    pub conntrack_target: Option<u8>,
    /// Memory the conntrack table may use, in MiB: the controller never
    /// raises nf_conntrack_max past what it pays for [default: the field
    /// guides' one entry per 32 KiB of RAM, at the real entry size].
    #[arg(long, value_name = "MIB", help_heading = "Conntrack")]
    pub conntrack_memory: Option<u64>,
    /// Hash buckets at start-up, for the highest nf_conntrack_max the memory
    /// allows [default: quarter].
    #[arg(long, value_enum, value_name = "HOW", help_heading = "Conntrack")]
    pub conntrack_buckets: Option<BucketPolicy>,
    /// Seconds of calm before the controller steps down a level [default: 30].
    #[arg(long, value_name = "SECS", help_heading = "Conntrack")]
    pub calm: Option<u64>,
    /// Log every decision of the controller but change nothing: no sysctl,
    /// no hash size, no XDP limit.
    #[arg(long, help_heading = "Conntrack")]
    #[serde(default)]
    pub dry_run: bool,
    /// A stateless port conntrack should skip while guard runs (NOTRACK in
    /// the raw table, both directions, TCP and UDP, table inet
    /// guard_run_notrack); repeatable. Its SYNs and UDP datagrams open no
    /// entry, so they pass without limits (a denied source's are
    /// dropped), and it gets no SYN cookies, whose SYNPROXY needs
    /// conntrack; so do the ports of `guard notrack` and of other NOTRACK
    /// rules guard can read.
    #[arg(long, value_name = "PORT", help_heading = "Conntrack")]
    pub notrack_port: Option<Vec<u16>>,

    /// Answer SYNs to listening ports from XDP with SYN cookies: always,
    /// auto (per port, for the ports under a random-source SYN flood),
    /// never [default: auto]. The kernel's SYNPROXY (nftables rules guard
    /// installs) completes the handshakes; needs enforce mode.
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "SYN cookies")]
    pub syn_cookies: Option<SynCookies>,
    /// Only this TCP port may get SYN cookies; repeatable. Without it every
    /// port with a listening socket in the protected namespace may (found
    /// through sock_diag and kept current), and every published port (one
    /// the nat rules rewrite on the prerouting and the output hooks, as
    /// Docker's and kube-proxy's do); a port only routed on, or rewritten
    /// on the prerouting hook alone, never gets cookies.
    #[arg(long, value_name = "PORT", help_heading = "SYN cookies")]
    pub cookie_port: Option<Vec<u16>>,
    /// MSS the SYN-ACK advertises over IPv4 (IPv6: 20 less) [default: 1460].
    #[arg(long, value_name = "BYTES", help_heading = "SYN cookies")]
    pub cookie_mss: Option<u16>,
    /// Window scale the SYN-ACK advertises [default: the server's own,
    /// from net.ipv4.tcp_rmem and net.core.rmem_max in its namespace].
    #[arg(long, value_name = "N", help_heading = "SYN cookies")]
    pub cookie_wscale: Option<u8>,
    /// Seconds a source proven real (a completed cookie handshake, an ACK
    /// of a connection this host knows, data or a FIN this host sent it)
    /// stays verified: its new flows skip the global budget while it
    /// binds, unless the source itself goes over its limit [default: 300].
    #[arg(long, value_name = "SECS", help_heading = "SYN cookies")]
    pub verified_for: Option<u64>,
    /// While SYN cookies are on for a port, net.ipv4.tcp_synack_retries in
    /// the protected namespace is at most N (restored when they go off),
    /// so the spoofed requests a flood puts in the server's SYN queue
    /// before cookies come on leave it within seconds; other ports'
    /// clients get N SYN-ACK retransmissions meanwhile. The host's own
    /// value (5 unless set) or more leaves it alone [default: 1].
    #[arg(long, value_name = "N", help_heading = "SYN cookies")]
    pub synack_retries: Option<u8>,

    /// Join a fleet through this NATS server (nats://HOST:PORT, tls://
    /// for TLS; several comma-separated): share bans and pressure with
    /// the other guards of the fleet. Off without it.
    #[arg(long, value_name = "URL", help_heading = "Fleet")]
    pub fleet: Option<String>,
    /// NATS credentials file (a user JWT and its NKey seed).
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    pub fleet_creds: Option<std::path::PathBuf>,
    /// CA certificate(s) the NATS server's certificate must chain to; TLS
    /// is then required.
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    pub fleet_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate for mutual TLS (with --fleet-tls-key).
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    pub fleet_tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    pub fleet_tls_key: Option<std::path::PathBuf>,
    /// This guard's name in the fleet: the origin of its bans [default:
    /// the host name, with `-NETNS` for a guard of a named namespace].
    #[arg(long, value_name = "NAME", help_heading = "Fleet")]
    pub fleet_name: Option<String>,
    /// The JetStream key-value bucket the fleet shares: bans in
    /// `BUCKET-decisions`, members' reports in `BUCKET-members`; nothing
    /// outside them is applied [default: guard].
    #[arg(long, value_name = "NAME", help_heading = "Fleet")]
    pub fleet_bucket: Option<String>,
    /// Never apply a peer's ban that overlaps this CIDR; repeatable. A
    /// guard's own config, so one bad member cannot blackhole it.
    #[arg(long, value_name = "CIDR", help_heading = "Fleet")]
    pub fleet_allow: Option<Vec<String>>,
    /// Bans taken from peers a second, at most; the rest wait their turn
    /// [default: 100].
    #[arg(long, value_name = "N", help_heading = "Fleet")]
    pub fleet_rate: Option<u32>,
}
