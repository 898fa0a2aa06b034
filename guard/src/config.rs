//! `guard run`'s configuration: flags and a TOML file with the same keys.
//!
//! [`RawConfig`] is parsed twice, once by clap from the command line and
//! once by serde from `--config FILE`; every field is optional there. A
//! flag overrides the file's value for the same key (a list replaces the
//! file's list). [`Settings::resolve`] then fills in defaults and validates
//! everything into typed [`Settings`]; an error names the key, the value,
//! where it came from, and why it is wrong, before anything on the host is
//! touched.

use std::{
    collections::HashSet,
    fmt, fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use guard_common::{
    DataplaneConfig, FlowClass, Limit,
    bucket::{MAX_BURST, MAX_RATE, NANOS_PER_SEC},
    config::{
        BUDGET_SHARE_PERCENT, DENY_V4, DENY_V6, FLOW_CLASSES, LISTS_V4, LISTS_V6, MODE_ENFORCE,
        MODE_MONITOR,
    },
    maps::{DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, DEFAULT_MAX_UDP_FLOWS, MAX_LIST_ENTRIES},
    ports::PORT_SLOTS,
};
use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

use crate::loader::ModeChoice;

/// Defaults, one place. The help text repeats them; a test checks it does.
pub mod defaults {
    /// Per source, per second, and the burst: TCP SYN, new UDP flows, ICMP echo.
    pub const SOURCE: [(u64, u32); 3] = [(50, 100), (50, 100), (5, 10)];
    /// Per prefix.
    pub const PREFIX: [(u64, u32); 3] = [(500, 1000), (500, 1000), (50, 100)];
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
    /// SYNPROXY's usual options: a full Ethernet MSS, window scale 7.
    pub const COOKIE_MSS: u16 = 1460;
    pub const COOKIE_WSCALE: u8 = 7;
    /// Five minutes: longer than a flood wave, short enough that a
    /// verified address reused by someone else soon loses the privilege.
    pub const VERIFIED_SECS: u64 = 300;
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

/// The conntrack controller's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ConntrackSettings {
    /// Keep the table's fill below this, in percent.
    pub target: f64,
    /// Memory the table may use; None: the field guides' default.
    pub memory_mib: Option<u64>,
    pub buckets: BucketPolicy,
    pub calm: Duration,
    /// Decide and log, change nothing.
    pub dry_run: bool,
    /// Ports conntrack skips while guard runs.
    pub notrack_ports: Vec<u16>,
}

/// `--syn-cookies`: whether SYNs to listening ports are answered from XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieMode {
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

impl fmt::Display for CookieMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Auto => "auto",
            Self::Never => "never",
        })
    }
}

/// SYN cookies: what XDP answers and what the kernel's SYNPROXY completes.
#[derive(Clone, Debug, PartialEq)]
pub struct CookieSettings {
    pub mode: CookieMode,
    /// `--cookie-port`: only these listening ports may get cookies; empty:
    /// every listening port of the protected namespace.
    pub ports: Vec<u16>,
    /// MSS advertised over IPv4; IPv6 gets 20 bytes less.
    pub mss: u16,
    pub wscale: u8,
    /// How long a source proven real stays verified.
    pub verified: Duration,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Count what would be dropped; drop nothing.
    #[default]
    Monitor,
    /// Drop.
    Enforce,
}

impl fmt::Display for Mode {
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
    /// Ten times the configured limits while the table is calm, as
    /// configured from the elevated level on: a busy source (a NAT, a flash
    /// crowd) is not limited while the table has room; a flooding one is.
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
/// (`syn-rate = 50`). All optional here; see [`Settings`] for the defaults.
#[derive(Clone, Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    /// Interface to protect; repeat the flag for several.
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
    pub xdp_mode: Option<ModeChoice>,

    /// Protect interfaces inside this network namespace (a name from
    /// `ip netns list`) instead of the host's.
    #[arg(long, value_name = "NAME", help_heading = "Attachment")]
    pub netns: Option<String>,

    /// Replace an XDP program that someone else attached to an interface.
    #[arg(long, help_heading = "Attachment")]
    #[serde(default)]
    pub force: bool,

    /// monitor: count what would be dropped, drop nothing; enforce: drop
    /// [default: monitor].
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Limits")]
    pub mode: Option<Mode>,

    /// How the per-source and per-prefix limits follow conntrack pressure:
    /// pressure, ten times the configured ones while the table is calm and
    /// as configured from the controller's elevated level on (a busy NAT
    /// passes, a flooding source does not); always, as configured at every
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
    /// ICMP/ICMPv6 echo requests per second from one source; 0 = no limit
    /// [default: 5].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub icmp_rate: Option<u64>,
    /// Burst of echo requests from one source [default: 10].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub icmp_burst: Option<u32>,

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
    /// Echo requests per second from one prefix; 0 = no limit [default: 50].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_icmp_rate: Option<u64>,
    /// Burst of echo requests from one prefix [default: 100].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub prefix_icmp_burst: Option<u32>,

    /// New flows per second from all sources together; 0 = no limit
    /// [default: 0].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub global_rate: Option<u64>,
    /// Burst of the global new-flow budget [default: 0; must be at least 1
    /// when global-rate is set].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub global_burst: Option<u32>,

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
    /// Seconds without a packet after which a UDP 5-tuple counts as a new
    /// flow again [default: 30].
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

    /// Sources tracked at once (LRU: the least recently seen is forgotten)
    /// [default: 131072].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_sources: Option<u32>,
    /// Prefixes tracked at once [default: 32768].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_prefixes: Option<u32>,
    /// UDP flows tracked at once [default: 131072].
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_udp_flows: Option<u32>,
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
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default;
    /// bind to loopback, e.g. 127.0.0.1:9369, unless others should scrape).
    #[arg(long, value_name = "ADDR", help_heading = "Output")]
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
    /// the raw table, both directions, TCP and UDP); repeatable.
    #[arg(long, value_name = "PORT", help_heading = "Conntrack")]
    pub notrack_port: Option<Vec<u16>>,

    /// Answer SYNs to listening ports from XDP with SYN cookies: always,
    /// auto (per port, for the ports under a random-source SYN flood),
    /// never [default: auto]. The kernel's SYNPROXY (nftables rules guard
    /// installs) completes the handshakes; needs enforce mode.
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "SYN cookies")]
    pub syn_cookies: Option<CookieMode>,
    /// Only this TCP port may get SYN cookies; repeatable. Without it every
    /// port with a listening socket in the protected namespace may (found
    /// through sock_diag and kept current); a port without a local listener
    /// (forwarded, DNAT'ed) never gets cookies.
    #[arg(long, value_name = "PORT", help_heading = "SYN cookies")]
    pub cookie_port: Option<Vec<u16>>,
    /// MSS the SYN-ACK advertises over IPv4 (IPv6: 20 less) [default: 1460].
    #[arg(long, value_name = "BYTES", help_heading = "SYN cookies")]
    pub cookie_mss: Option<u16>,
    /// Window scale the SYN-ACK advertises [default: 7].
    #[arg(long, value_name = "N", help_heading = "SYN cookies")]
    pub cookie_wscale: Option<u8>,
    /// Seconds a source proven real (a completed cookie handshake, or an
    /// ACK of a connection this host knows) stays verified: its new flows
    /// skip the global budget [default: 300].
    #[arg(long, value_name = "SECS", help_heading = "SYN cookies")]
    pub verified_for: Option<u64>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{key} = {value}` ({origin}): {reason}")]
    Invalid {
        key: String,
        value: String,
        origin: String,
        reason: String,
    },
    #[error("no interface to protect: give --iface IF, or `iface = [\"IF\"]` in the config file")]
    NoInterface,
}

/// A rate and burst; `rate == 0` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Rate {
    pub rate: u64,
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const OFF: Self = Self { rate: 0, burst: 0 };

    #[must_use]
    pub const fn limit(self) -> Limit {
        Limit::new(self.rate, self.burst)
    }

    /// A global budget split into one bucket per class, each its
    /// [`BUDGET_SHARE_PERCENT`] of the rate and burst (at least 1 of each).
    #[must_use]
    pub fn per_class(self) -> [Limit; FLOW_CLASSES] {
        if self.rate == 0 {
            return [Limit::UNLIMITED; FLOW_CLASSES];
        }
        BUDGET_SHARE_PERCENT.map(|pct| {
            let share = |n: u64| (n * u64::from(pct) / 100).max(1);
            Limit::new(
                share(self.rate),
                u32::try_from(share(u64::from(self.burst))).unwrap_or(u32::MAX),
            )
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rate == 0 {
            f.write_str("no limit")
        } else {
            write!(f, "{}/s burst {}", self.rate, self.burst)
        }
    }
}

/// Validated, defaulted configuration of `guard run`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub ifaces: Vec<String>,
    pub xdp_mode: ModeChoice,
    pub netns: Option<String>,
    pub force: bool,
    pub mode: Mode,
    pub source_limits: SourceLimits,
    /// Per source and per prefix, by [`FlowClass`].
    pub source: [Rate; FLOW_CLASSES],
    pub prefix: [Rate; FLOW_CLASSES],
    pub global: Rate,
    pub events: Rate,
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub udp_flow_idle: Duration,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub ban_threshold: u32,
    pub ban_window: Duration,
    pub ban_duration: Duration,
    pub max_sources: u32,
    pub max_prefixes: u32,
    pub max_udp_flows: u32,
    pub summary_interval: Duration,
    pub metrics: Option<std::net::SocketAddr>,
    pub conntrack: ConntrackSettings,
    pub cookies: CookieSettings,
}

/// Where a value came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    Default,
    Flag(&'static str),
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::Flag(key) => write!(f, "from --{key}"),
            Self::File(path) => write!(f, "from {}", path.display()),
        }
    }
}

/// The flags over the file: one value per key, with its origin.
struct Layers<'a> {
    flags: &'a RawConfig,
    file: Option<(&'a RawConfig, &'a Path)>,
}

impl Layers<'_> {
    fn get<T>(
        &self,
        key: &'static str,
        field: impl Fn(&RawConfig) -> Option<T>,
    ) -> Option<(T, Origin)> {
        if let Some(v) = field(self.flags) {
            return Some((v, Origin::Flag(key)));
        }
        let (file, path) = self.file?;
        field(file).map(|v| (v, Origin::File(path.to_path_buf())))
    }

    fn or<T>(
        &self,
        key: &'static str,
        field: impl Fn(&RawConfig) -> Option<T>,
        default: T,
    ) -> (T, Origin) {
        self.get(key, field).unwrap_or((default, Origin::Default))
    }
}

fn invalid(
    key: &str,
    value: impl fmt::Display,
    origin: &Origin,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The limit keys: per source, per prefix, global, events.
struct Limits {
    source: [Rate; FLOW_CLASSES],
    prefix: [Rate; FLOW_CLASSES],
    global: Rate,
    events: Rate,
}

/// The grouping keys: prefix lengths.
struct Grouping {
    source_prefix_v4: u8,
    source_prefix_v6: u8,
    prefix_v4: u8,
    prefix_v6: u8,
}

impl Settings {
    /// Flags over the file over the defaults, validated.
    pub fn resolve(
        flags: &RawConfig,
        file: Option<(&RawConfig, &Path)>,
    ) -> Result<Self, ConfigError> {
        let l = Layers { flags, file };
        let ifaces = interfaces(&l)?;
        let limits = limits(&l)?;
        let grouping = grouping(&l)?;
        let (allow, deny) = lists(&l)?;
        Ok(Self {
            ifaces,
            xdp_mode: l.or("xdp-mode", |r| r.xdp_mode, ModeChoice::Auto).0,
            netns: l.get("netns", |r| r.netns.clone()).map(|(v, _)| v),
            force: flags.force || file.is_some_and(|(f, _)| f.force),
            mode: l.or("mode", |r| r.mode, Mode::Monitor).0,
            source_limits: l
                .or("source-limits", |r| r.source_limits, SourceLimits::Pressure)
                .0,
            source: limits.source,
            prefix: limits.prefix,
            global: limits.global,
            events: limits.events,
            source_prefix_v4: grouping.source_prefix_v4,
            source_prefix_v6: grouping.source_prefix_v6,
            prefix_v4: grouping.prefix_v4,
            prefix_v6: grouping.prefix_v6,
            udp_flow_idle: seconds(
                &l,
                "udp-flow-idle",
                |r| r.udp_flow_idle,
                defaults::UDP_FLOW_IDLE_SECS,
                1..=86_400,
            )?,
            allow,
            deny,
            ban_threshold: l
                .or(
                    "ban-threshold",
                    |r| r.ban_threshold,
                    defaults::BAN_THRESHOLD,
                )
                .0,
            ban_window: seconds(
                &l,
                "ban-window",
                |r| r.ban_window,
                defaults::BAN_WINDOW_SECS,
                1..=86_400,
            )?,
            ban_duration: seconds(
                &l,
                "ban-duration",
                |r| r.ban_duration,
                defaults::BAN_DURATION_SECS,
                1..=7 * 86_400,
            )?,
            max_sources: capacity(&l, "max-sources", |r| r.max_sources, DEFAULT_MAX_SOURCES)?,
            max_prefixes: capacity(&l, "max-prefixes", |r| r.max_prefixes, DEFAULT_MAX_PREFIXES)?,
            max_udp_flows: capacity(
                &l,
                "max-udp-flows",
                |r| r.max_udp_flows,
                DEFAULT_MAX_UDP_FLOWS,
            )?,
            summary_interval: seconds(
                &l,
                "summary-interval",
                |r| r.summary_interval,
                defaults::SUMMARY_INTERVAL_SECS,
                0..=3600,
            )?,
            metrics: l.get("metrics", |r| r.metrics).map(|(addr, _)| addr),
            conntrack: conntrack(&l, flags.dry_run || file.is_some_and(|(f, _)| f.dry_run))?,
            cookies: cookies(&l)?,
        })
    }

    /// Keys a reload cannot apply to a running guard, with their old and new
    /// values, for the warning.
    #[must_use]
    pub fn restart_needed(&self, new: &Self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut check = |key: &str, old: String, new: String| {
            if old != new {
                keys.push(format!("{key} ({old} -> {new})"));
            }
        };
        check("iface", self.ifaces.join(","), new.ifaces.join(","));
        check(
            "xdp-mode",
            self.xdp_mode.to_string(),
            new.xdp_mode.to_string(),
        );
        check(
            "netns",
            format!("{:?}", self.netns),
            format!("{:?}", new.netns),
        );
        check(
            "max-sources",
            self.max_sources.to_string(),
            new.max_sources.to_string(),
        );
        check(
            "max-prefixes",
            self.max_prefixes.to_string(),
            new.max_prefixes.to_string(),
        );
        check(
            "max-udp-flows",
            self.max_udp_flows.to_string(),
            new.max_udp_flows.to_string(),
        );
        check(
            "conntrack-memory",
            format!("{:?}", self.conntrack.memory_mib),
            format!("{:?}", new.conntrack.memory_mib),
        );
        check(
            "conntrack-buckets",
            format!("{:?}", self.conntrack.buckets),
            format!("{:?}", new.conntrack.buckets),
        );
        check(
            "notrack-port",
            format!("{:?}", self.conntrack.notrack_ports),
            format!("{:?}", new.conntrack.notrack_ports),
        );
        check(
            "dry-run",
            self.conntrack.dry_run.to_string(),
            new.conntrack.dry_run.to_string(),
        );
        check(
            "metrics",
            format!("{:?}", self.metrics),
            format!("{:?}", new.metrics),
        );
        // The SYNPROXY rules and the controller's switching follow these.
        check(
            "syn-cookies/cookie-port/cookie-mss/cookie-wscale/verified-for",
            format!("{:?}", self.cookies),
            format!("{:?}", new.cookies),
        );
        keys
    }

    /// Adds entries kept from live list changes (`guard allow|deny add`),
    /// which `source` names in errors. The config's own entries win a
    /// conflict only by being refused: the same range cannot be both.
    pub fn merge_lists(
        &mut self,
        allow: Vec<IpNet>,
        deny: Vec<IpNet>,
        source: &Path,
    ) -> Result<(), ConfigError> {
        for net in allow {
            if !self.allow.contains(&net) {
                self.allow.push(net);
            }
        }
        for net in deny {
            if !self.deny.contains(&net) {
                self.deny.push(net);
            }
        }
        if let Some(both) = self.allow.iter().find(|n| self.deny.contains(n)) {
            return Err(invalid(
                "allow/deny",
                both,
                &Origin::File(source.to_path_buf()),
                "both allowed and denied once the config and the kept lists are merged: `guard allow del` or `guard deny del` it",
            ));
        }
        Ok(())
    }

    /// The configuration the XDP program reads.
    #[must_use]
    pub fn dataplane(&self) -> DataplaneConfig {
        let mut lists = 0;
        for (net, deny) in self
            .allow
            .iter()
            .map(|n| (n, false))
            .chain(self.deny.iter().map(|n| (n, true)))
        {
            lists |= match (net, deny) {
                (IpNet::V4(_), false) => LISTS_V4,
                (IpNet::V4(_), true) => LISTS_V4 | DENY_V4,
                (IpNet::V6(_), false) => LISTS_V6,
                (IpNet::V6(_), true) => LISTS_V6 | DENY_V6,
            };
        }
        DataplaneConfig {
            mode: match self.mode {
                Mode::Monitor => MODE_MONITOR,
                Mode::Enforce => MODE_ENFORCE,
            },
            lists,
            source_prefix_v4: self.source_prefix_v4,
            source_prefix_v6: self.source_prefix_v6,
            prefix_v4: self.prefix_v4,
            prefix_v6: self.prefix_v6,
            ban_threshold: self.ban_threshold,
            source: self.source.map(Rate::limit),
            prefix: self.prefix.map(Rate::limit),
            global: self.global.per_class(),
            events: self.events.limit(),
            udp_flow_idle_ns: nanos(self.udp_flow_idle),
            ban_window_ns: nanos(self.ban_window),
            ban_duration_ns: nanos(self.ban_duration),
            verified_ns: nanos(self.cookies.verified),
            cookie_mss4: self.cookies.mss,
            cookie_mss6: self.cookies.mss - 20,
            cookie_wscale: self.cookies.wscale,
            cookie_ttl: 64,
            // Ports are armed by the controller (the port table), together
            // with the SYNPROXY rules that complete the handshakes.
            cookies: 0,
            verify: 0,
        }
    }

    /// One line saying what guard will do, for the start-up log.
    #[must_use]
    pub fn describe(&self) -> String {
        let per = |rates: &[Rate; FLOW_CLASSES]| {
            FlowClass::ALL
                .iter()
                .map(|c| format!("{} {}", c.name(), rates[c.index()]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let bans = if self.ban_threshold == 0 {
            "off".to_owned()
        } else {
            format!(
                "{} drops in {}s -> {}s",
                self.ban_threshold,
                self.ban_window.as_secs(),
                self.ban_duration.as_secs()
            )
        };
        format!(
            "mode {}; per source (/{} /{}): {}; per prefix (/{} /{}): {}; applied {}; global: {}; bans: {}; allow {} deny {}",
            self.mode,
            self.source_prefix_v4,
            self.source_prefix_v6,
            per(&self.source),
            self.prefix_v4,
            self.prefix_v6,
            per(&self.prefix),
            match self.source_limits {
                SourceLimits::Pressure => "x10 while conntrack is calm",
                SourceLimits::Always => "always",
            },
            if self.global.rate == 0 {
                "budgeted by the conntrack controller".to_owned()
            } else {
                format!(
                    "{}, or less if the conntrack controller says so",
                    self.global
                )
            },
            bans,
            self.allow.len(),
            self.deny.len()
        )
    }
}

fn interfaces(l: &Layers<'_>) -> Result<Vec<String>, ConfigError> {
    let (ifaces, origin) = l
        .get("iface", |r| r.iface.clone())
        .ok_or(ConfigError::NoInterface)?;
    if ifaces.is_empty() {
        return Err(ConfigError::NoInterface);
    }
    let mut seen = HashSet::new();
    for iface in &ifaces {
        if !seen.insert(iface) {
            return Err(invalid(
                "iface",
                iface,
                &origin,
                "listed twice: list each interface once",
            ));
        }
    }
    Ok(ifaces)
}

fn limits(l: &Layers<'_>) -> Result<Limits, ConfigError> {
    Ok(Limits {
        source: [
            rate_pair(l, "syn-rate", "syn-burst", defaults::SOURCE[0], |r| {
                (r.syn_rate, r.syn_burst)
            })?,
            rate_pair(l, "udp-rate", "udp-burst", defaults::SOURCE[1], |r| {
                (r.udp_rate, r.udp_burst)
            })?,
            rate_pair(l, "icmp-rate", "icmp-burst", defaults::SOURCE[2], |r| {
                (r.icmp_rate, r.icmp_burst)
            })?,
        ],
        prefix: [
            rate_pair(
                l,
                "prefix-syn-rate",
                "prefix-syn-burst",
                defaults::PREFIX[0],
                |r| (r.prefix_syn_rate, r.prefix_syn_burst),
            )?,
            rate_pair(
                l,
                "prefix-udp-rate",
                "prefix-udp-burst",
                defaults::PREFIX[1],
                |r| (r.prefix_udp_rate, r.prefix_udp_burst),
            )?,
            rate_pair(
                l,
                "prefix-icmp-rate",
                "prefix-icmp-burst",
                defaults::PREFIX[2],
                |r| (r.prefix_icmp_rate, r.prefix_icmp_burst),
            )?,
        ],
        global: rate_pair(l, "global-rate", "global-burst", defaults::GLOBAL, |r| {
            (r.global_rate, r.global_burst)
        })?,
        events: rate_pair(l, "event-rate", "event-burst", defaults::EVENTS, |r| {
            (r.event_rate, r.event_burst)
        })?,
    })
}

fn grouping(l: &Layers<'_>) -> Result<Grouping, ConfigError> {
    let (source_prefix_v4, s4) = prefix_len(
        l,
        "source-prefix-v4",
        |r| r.source_prefix_v4,
        defaults::SOURCE_PREFIX_V4,
        32,
    )?;
    let (source_prefix_v6, s6) = prefix_len(
        l,
        "source-prefix-v6",
        |r| r.source_prefix_v6,
        defaults::SOURCE_PREFIX_V6,
        128,
    )?;
    let (prefix_v4, _) = prefix_len(l, "prefix-v4", |r| r.prefix_v4, defaults::PREFIX_V4, 32)?;
    let (prefix_v6, _) = prefix_len(l, "prefix-v6", |r| r.prefix_v6, defaults::PREFIX_V6, 128)?;
    for (source, origin, prefix, skey, pkey) in [
        (
            source_prefix_v4,
            s4,
            prefix_v4,
            "source-prefix-v4",
            "prefix-v4",
        ),
        (
            source_prefix_v6,
            s6,
            prefix_v6,
            "source-prefix-v6",
            "prefix-v6",
        ),
    ] {
        if source < prefix {
            return Err(invalid(
                skey,
                source,
                &origin,
                format!(
                    "shorter than {pkey} = {prefix}: a source must be at least as specific as its prefix"
                ),
            ));
        }
    }
    Ok(Grouping {
        source_prefix_v4,
        source_prefix_v6,
        prefix_v4,
        prefix_v6,
    })
}

fn lists(l: &Layers<'_>) -> Result<(Vec<IpNet>, Vec<IpNet>), ConfigError> {
    let allow = cidrs(l, "allow", |r| r.allow.clone())?;
    let deny = cidrs(l, "deny", |r| r.deny.clone())?;
    if let Some(both) = allow.iter().find(|net| deny.contains(net)) {
        let (_, origin) = l.or("deny", |r| r.deny.clone(), Vec::new());
        return Err(invalid(
            "deny",
            both,
            &origin,
            "also in allow: an address range is either allowed or denied",
        ));
    }
    for v4 in [true, false] {
        let n = allow
            .iter()
            .chain(&deny)
            .filter(|net| matches!(net, IpNet::V4(_)) == v4)
            .count();
        if n > MAX_LIST_ENTRIES as usize {
            let (_, origin) = l.or("allow", |r| r.allow.clone(), Vec::new());
            return Err(invalid(
                "allow",
                format!("{n} IPv{} entries", if v4 { 4 } else { 6 }),
                &origin,
                format!(
                    "allow and deny together hold at most {MAX_LIST_ENTRIES} entries per family"
                ),
            ));
        }
    }
    Ok((allow, deny))
}

fn conntrack(l: &Layers<'_>, dry_run: bool) -> Result<ConntrackSettings, ConfigError> {
    let (target, origin) = l.or(
        "conntrack-target",
        |r| r.conntrack_target,
        defaults::CONNTRACK_TARGET,
    );
    if !(50..=95).contains(&target) {
        return Err(invalid(
            "conntrack-target",
            target,
            &origin,
            "must be between 50 and 95 percent: the controller needs room to act before the table is full",
        ));
    }
    let memory_mib = match l.get("conntrack-memory", |r| r.conntrack_memory) {
        Some((0, origin)) => {
            return Err(invalid(
                "conntrack-memory",
                0,
                &origin,
                "a table needs at least 1 MiB",
            ));
        }
        other => other.map(|(mib, _)| mib),
    };
    let notrack_ports = match l.get("notrack-port", |r| r.notrack_port.clone()) {
        Some((ports, origin)) => {
            if let Some(zero) = ports.iter().find(|p| **p == 0) {
                return Err(invalid(
                    "notrack-port",
                    zero,
                    &origin,
                    "port 0 is not a port",
                ));
            }
            ports
        }
        None => Vec::new(),
    };
    Ok(ConntrackSettings {
        notrack_ports,
        target: f64::from(target),
        memory_mib,
        buckets: l
            .or(
                "conntrack-buckets",
                |r| r.conntrack_buckets,
                BucketPolicy::Quarter,
            )
            .0,
        calm: seconds(l, "calm", |r| r.calm, defaults::CALM_SECS, 1..=3600)?,
        dry_run,
    })
}

fn cookies(l: &Layers<'_>) -> Result<CookieSettings, ConfigError> {
    let (mode, _) = l.or("syn-cookies", |r| r.syn_cookies, CookieMode::Auto);
    let ports = match l.get("cookie-port", |r| r.cookie_port.clone()) {
        Some((ports, origin)) => {
            if let Some(zero) = ports.iter().find(|p| **p == 0) {
                return Err(invalid(
                    "cookie-port",
                    zero,
                    &origin,
                    "port 0 is not a port",
                ));
            }
            let mut ports = ports;
            ports.sort_unstable();
            ports.dedup();
            if ports.len() > PORT_SLOTS as usize {
                return Err(invalid(
                    "cookie-port",
                    format!("{} ports", ports.len()),
                    &origin,
                    format!(
                        "at most {PORT_SLOTS} ports: the XDP program counts SYNs per port in that many slots"
                    ),
                ));
            }
            ports
        }
        None => Vec::new(),
    };
    let (mss, origin) = l.or("cookie-mss", |r| r.cookie_mss, defaults::COOKIE_MSS);
    if !(1240..=9000).contains(&mss) {
        return Err(invalid(
            "cookie-mss",
            mss,
            &origin,
            "must be between 1240 (IPv6's minimum MTU, less headers) and 9000 (jumbo frames)",
        ));
    }
    let (wscale, origin) = l.or(
        "cookie-wscale",
        |r| r.cookie_wscale,
        defaults::COOKIE_WSCALE,
    );
    if wscale > 14 {
        return Err(invalid(
            "cookie-wscale",
            wscale,
            &origin,
            "TCP window scale is at most 14",
        ));
    }
    Ok(CookieSettings {
        mode,
        ports,
        mss,
        wscale,
        verified: seconds(
            l,
            "verified-for",
            |r| r.verified_for,
            defaults::VERIFIED_SECS,
            1..=86_400,
        )?,
    })
}

fn nanos(d: Duration) -> u64 {
    d.as_secs().saturating_mul(NANOS_PER_SEC)
}

fn rate_pair(
    l: &Layers<'_>,
    rate_key: &'static str,
    burst_key: &'static str,
    (default_rate, default_burst): (u64, u32),
    field: impl Fn(&RawConfig) -> (Option<u64>, Option<u32>),
) -> Result<Rate, ConfigError> {
    let (rate, rate_origin) = l.or(rate_key, |r| field(r).0, default_rate);
    let (burst, burst_origin) = l.or(burst_key, |r| field(r).1, default_burst);
    if rate > MAX_RATE {
        return Err(invalid(
            rate_key,
            rate,
            &rate_origin,
            format!(
                "more than {MAX_RATE}/s (one per nanosecond) cannot be expressed; 0 means no limit"
            ),
        ));
    }
    if burst == 0 && !matches!(burst_origin, Origin::Default) && rate == 0 {
        return Err(invalid(
            &format!("{rate_key} = 0, {burst_key}"),
            burst,
            &burst_origin,
            format!(
                "a rate of 0 means no limit but a burst of 0 admits nothing; to not limit, set {rate_key} = 0 alone; to drop a source, use deny"
            ),
        ));
    }
    if burst == 0 && rate > 0 {
        return Err(invalid(
            burst_key,
            burst,
            &burst_origin,
            format!("a burst of 0 admits nothing; it must be between 1 and {MAX_BURST}"),
        ));
    }
    Ok(Rate { rate, burst })
}

fn prefix_len(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u8>,
    default: u8,
    max: u8,
) -> Result<(u8, Origin), ConfigError> {
    let (len, origin) = l.or(key, field, default);
    if len == 0 || len > max {
        return Err(invalid(
            key,
            len,
            &origin,
            format!("a prefix length must be between 1 and {max}"),
        ));
    }
    Ok((len, origin))
}

fn seconds(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let (secs, origin) = l.or(key, field, default);
    if !range.contains(&secs) {
        return Err(invalid(
            key,
            secs,
            &origin,
            format!(
                "must be between {} and {} seconds",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn capacity(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u32>,
    default: u32,
) -> Result<u32, ConfigError> {
    const RANGE: std::ops::RangeInclusive<u32> = 1024..=16_777_216;
    let (n, origin) = l.or(key, field, default);
    if !RANGE.contains(&n) {
        return Err(invalid(
            key,
            n,
            &origin,
            format!(
                "must be between {} and {} entries",
                RANGE.start(),
                RANGE.end()
            ),
        ));
    }
    Ok(n)
}

fn cidrs(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<Vec<String>>,
) -> Result<Vec<IpNet>, ConfigError> {
    let Some((texts, origin)) = l.get(key, field) else {
        return Ok(Vec::new());
    };
    let mut nets = Vec::with_capacity(texts.len());
    for text in &texts {
        let net = parse_cidr(text).map_err(|reason| invalid(key, text, &origin, reason))?;
        if nets.contains(&net) {
            return Err(invalid(key, text, &origin, "listed twice"));
        }
        nets.push(net);
    }
    Ok(nets)
}

/// `198.18.0.0/24`, `2001:db8::/48`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length `{len}` is not between 0 and {max}"))?,
    };
    let net = IpNet::new(addr, len).map_err(|e| e.to_string())?;
    if net.network() != addr {
        return Err(format!(
            "host bits are set after /{len}: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;
    use crate::cli::{Cli, Command};

    fn flags(extra: &[&str]) -> RawConfig {
        let mut argv = vec!["guard", "run"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
        {
            Command::Run(run) => run.settings,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::resolve(&flags(args), None)
    }

    fn resolve_toml(toml: &str, args: &[&str]) -> Result<Settings, ConfigError> {
        let file: RawConfig = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}"));
        Settings::resolve(&flags(args), Some((&file, Path::new("/etc/guard.toml"))))
    }

    fn error(args: &[&str]) -> String {
        resolve(args).unwrap_err().to_string()
    }

    #[test]
    fn cookies_protect_every_listener_unless_narrowed() {
        let s = resolve(&["-i", "eth0", "--syn-cookies", "always"]).unwrap();
        assert!(s.cookies.ports.is_empty(), "always needs no port list");
        let s = resolve(&["-i", "eth0", "--cookie-port", "443", "--cookie-port", "80"]).unwrap();
        assert_eq!(s.cookies.ports, vec![80, 443]);
        let mut args = vec!["-i", "eth0"];
        let ports: Vec<String> = (1..=300).map(|p: u16| p.to_string()).collect();
        for p in &ports {
            args.extend(["--cookie-port", p.as_str()]);
        }
        let err = error(&args);
        assert!(
            err.contains("cookie-port") && err.contains("300 ports"),
            "{err}"
        );
        assert!(error(&["-i", "eth0", "--cookie-port", "0"]).contains("port 0"));
    }

    #[test]
    fn the_global_budget_is_split_among_the_classes() {
        let per = Rate {
            rate: 1000,
            burst: 200,
        }
        .per_class();
        assert_eq!(per[FlowClass::Syn.index()], Limit::new(500, 100));
        assert_eq!(per[FlowClass::Udp.index()], Limit::new(400, 80));
        assert_eq!(per[FlowClass::Icmp.index()], Limit::new(100, 20));
        // Never a zero rate (which would mean "no limit") from a small budget.
        let tiny = Rate { rate: 1, burst: 1 }.per_class();
        assert!(tiny.iter().all(|l| *l == Limit::new(1, 1)));
        assert!(Rate::OFF.per_class().iter().all(Limit::is_unlimited));
    }

    #[test]
    fn defaults_are_monitor_mode_with_the_documented_limits() {
        let s = resolve(&["-i", "eth0"]).unwrap();
        assert_eq!(s.mode, Mode::Monitor);
        assert_eq!(
            s.source[FlowClass::Syn.index()],
            Rate {
                rate: 50,
                burst: 100
            }
        );
        assert_eq!(
            s.prefix[FlowClass::Icmp.index()],
            Rate {
                rate: 50,
                burst: 100
            }
        );
        assert_eq!(s.global.rate, 0);
        let dp = s.dataplane();
        assert_eq!(dp.mode, MODE_MONITOR);
        assert_eq!(dp.source[0], Limit::new(50, 100));
        assert!(!dp.budget_binds());
        assert_eq!(dp.lists, 0);
        assert_eq!(
            (
                dp.source_prefix_v4,
                dp.source_prefix_v6,
                dp.prefix_v4,
                dp.prefix_v6
            ),
            (32, 64, 24, 48)
        );
        assert_eq!(dp.udp_flow_idle_ns, 30 * NANOS_PER_SEC);
    }

    #[test]
    fn help_states_every_default() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").unwrap();
        let help = run.render_long_help().to_string();
        let mut expected: Vec<String> = Vec::new();
        for (rate, burst) in defaults::SOURCE.iter().chain(&defaults::PREFIX) {
            expected.push(format!("[default: {rate}]"));
            expected.push(format!("[default: {burst}]"));
        }
        for n in [
            u64::from(defaults::SOURCE_PREFIX_V4),
            u64::from(defaults::SOURCE_PREFIX_V6),
            u64::from(defaults::PREFIX_V4),
            u64::from(defaults::PREFIX_V6),
            defaults::UDP_FLOW_IDLE_SECS,
            u64::from(defaults::BAN_THRESHOLD),
            defaults::BAN_WINDOW_SECS,
            defaults::BAN_DURATION_SECS,
            defaults::SUMMARY_INTERVAL_SECS,
            u64::from(DEFAULT_MAX_SOURCES),
            u64::from(DEFAULT_MAX_PREFIXES),
            u64::from(DEFAULT_MAX_UDP_FLOWS),
            defaults::EVENTS.0,
        ] {
            expected.push(format!("[default: {n}]"));
        }
        for e in expected {
            assert!(help.contains(&e), "help lacks {e}:\n{help}");
        }
    }

    #[test]
    fn flags_override_the_file_and_lists_replace() {
        let toml = r#"
            iface = ["eth0", "eth1"]
            mode = "enforce"
            syn-rate = 10
            syn-burst = 20
            allow = ["198.18.0.0/24"]
            deny = ["2001:db8:bad::/48"]
        "#;
        let s = resolve_toml(toml, &["--syn-rate", "30", "--allow", "198.19.0.1"]).unwrap();
        assert_eq!(s.ifaces, ["eth0", "eth1"]);
        assert_eq!(s.mode, Mode::Enforce);
        assert_eq!(
            s.source[0],
            Rate {
                rate: 30,
                burst: 20
            }
        );
        assert_eq!(s.allow, ["198.19.0.1/32".parse::<IpNet>().unwrap()]);
        let dp = s.dataplane();
        assert_eq!(dp.lists, LISTS_V4 | LISTS_V6 | DENY_V6);
    }

    #[test]
    fn rate_zero_with_burst_zero_is_refused_with_both_keys() {
        let msg = error(&["-i", "eth0", "--syn-rate", "0", "--syn-burst", "0"]);
        assert_eq!(
            msg,
            "`syn-rate = 0, syn-burst = 0` (from --syn-burst): a rate of 0 means no limit but a burst \
             of 0 admits nothing; to not limit, set syn-rate = 0 alone; to drop a source, use deny"
        );
        // Rate 0 alone turns the limit off.
        let s = resolve(&["-i", "eth0", "--syn-rate", "0"]).unwrap();
        assert!(s.dataplane().source[0].is_unlimited());
    }

    #[test]
    fn burst_zero_is_refused() {
        assert_eq!(
            error(&["-i", "eth0", "--prefix-udp-burst", "0"]),
            "`prefix-udp-burst = 0` (from --prefix-udp-burst): a burst of 0 admits nothing; it must \
             be between 1 and 4294967295"
        );
        assert!(
            error(&["-i", "eth0", "--global-rate", "1000"])
                .starts_with("`global-burst = 0` (the default)")
        );
    }

    #[test]
    fn rate_above_one_per_nanosecond_is_refused() {
        assert!(
            error(&["-i", "x", "--udp-rate", "1000000001"])
                .starts_with("`udp-rate = 1000000001` (from --udp-rate): more than")
        );
    }

    #[test]
    fn prefix_lengths_are_range_checked() {
        assert_eq!(
            error(&["-i", "x", "--source-prefix-v6", "129"]),
            "`source-prefix-v6 = 129` (from --source-prefix-v6): a prefix length must be between 1 and 128"
        );
        assert_eq!(
            error(&["-i", "x", "--prefix-v4", "0"]),
            "`prefix-v4 = 0` (from --prefix-v4): a prefix length must be between 1 and 32"
        );
        assert_eq!(
            error(&["-i", "x", "--source-prefix-v4", "16"]),
            "`source-prefix-v4 = 16` (from --source-prefix-v4): shorter than prefix-v4 = 24: a source \
             must be at least as specific as its prefix"
        );
    }

    #[test]
    fn malformed_cidrs_are_refused_with_the_reason() {
        let cases = [
            (
                "198.18.0.0/33",
                "prefix length `33` is not between 0 and 32",
            ),
            (
                "2001:db8::/129",
                "prefix length `129` is not between 0 and 128",
            ),
            (
                "198.18.0.300",
                "`198.18.0.300` is not an IPv4 or IPv6 address",
            ),
            (
                "198.18.0.1/24",
                "host bits are set after /24: did you mean 198.18.0.0/24?",
            ),
            ("bogus/8", "`bogus` is not an IPv4 or IPv6 address"),
        ];
        for (cidr, reason) in cases {
            assert_eq!(
                error(&["-i", "x", "--deny", cidr]),
                format!("`deny = {cidr}` (from --deny): {reason}")
            );
        }
    }

    #[test]
    fn the_same_range_in_allow_and_deny_is_refused() {
        let msg = error(&[
            "-i",
            "x",
            "--allow",
            "198.18.0.0/24",
            "--deny",
            "198.18.0.0/24",
        ]);
        assert!(msg.contains("also in allow"), "{msg}");
    }

    #[test]
    fn an_interface_twice_or_none_is_refused() {
        assert_eq!(
            error(&["-i", "eth0", "-i", "eth1", "-i", "eth0"]),
            "`iface = eth0` (from --iface): listed twice: list each interface once"
        );
        assert!(matches!(resolve(&[]), Err(ConfigError::NoInterface)));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_with_the_key() {
        let err = toml::from_str::<RawConfig>("iface = [\"eth0\"]\nsyn-rat = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown field `syn-rat`") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_value_of_the_wrong_type_names_the_key() {
        let err = toml::from_str::<RawConfig>("syn-burst = -1\n").unwrap_err();
        assert!(err.to_string().contains("syn-burst"), "{err}");
    }

    #[test]
    fn errors_from_the_file_name_the_file() {
        let err = resolve_toml("iface = [\"eth0\"]\nban-window = 0\n", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`ban-window = 0` (from /etc/guard.toml): must be between 1 and 86400 seconds"
        );
    }

    #[test]
    fn source_limits_default_to_pressure_and_take_a_flag_or_a_key() {
        assert_eq!(
            resolve(&["-i", "eth0"]).unwrap().source_limits,
            SourceLimits::Pressure
        );
        let s = resolve_toml("iface = [\"eth0\"]\nsource-limits = \"always\"\n", &[]).unwrap();
        assert_eq!(s.source_limits, SourceLimits::Always);
        let s = resolve_toml(
            "iface = [\"eth0\"]\nsource-limits = \"always\"\n",
            &["--source-limits", "pressure"],
        )
        .unwrap();
        assert_eq!(s.source_limits, SourceLimits::Pressure, "the flag wins");
        assert!(s.describe().contains("applied x10 while conntrack is calm"));
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guard.example.toml");
        let raw = read_file(&path).unwrap();
        let s = Settings::resolve(&RawConfig::default(), Some((&raw, &path))).unwrap();
        assert_eq!(s.mode, Mode::Monitor, "a fresh install must not drop");
        assert_eq!(s.ifaces, ["eth0"]);
    }
}
