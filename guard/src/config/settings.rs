//! The validated configuration of `guard run`, what the XDP program gets
//! from it, and which keys a running guard can change.

use std::{fmt, time::Duration};

use guard_common::{
    DataplaneConfig, FlowClass, Limit,
    bucket::NANOS_PER_SEC,
    config::{
        BUDGET_SHARE_PERCENT, BUDGETS, DENY_V4, DENY_V6, FLOW_CLASSES, HAS_LISTS_V4, HAS_LISTS_V6,
        HOST_MACS, MODE_ENFORCE, MODE_MONITOR, REJECT_RST, SAMPLE_ON,
    },
};
use ipnet::IpNet;
use serde::Deserialize;

use super::raw::{
    BucketPolicy, Enforcement, Fingerprints, Reject, SourceLimits, SynCookies, XdpModeChoice,
};

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

/// SYN cookies: what XDP answers and what the kernel's SYNPROXY completes.
#[derive(Clone, Debug, PartialEq)]
pub struct CookieSettings {
    pub mode: SynCookies,
    /// `--cookie-port`: only these ports may get cookies; empty: every
    /// listening and every published port of the protected namespace.
    pub ports: Vec<u16>,
    /// MSS advertised over IPv4; IPv6 gets 20 bytes less.
    pub mss: u16,
    /// `--cookie-wscale`; `None`: the server's own ([`Self::host_wscale`]).
    pub wscale: Option<u8>,
    /// The window scale the protected namespace's listeners advertise
    /// (`model::tcp::server_wscale`): a fact of the host, which `guard run`
    /// reads at start; until then Linux's default.
    pub host_wscale: u8,
    /// Whether that namespace's TCP checks a handshake's last ACK against
    /// its SYN-ACKs' timestamps (`model::tcp::checks_tsecr`): a fact of the
    /// host, which `guard run` reads at start; until then no.
    pub tsecr_checked: bool,
    /// How long a source proven real stays verified.
    pub verified: Duration,
    /// `--synack-retries`: `net.ipv4.tcp_synack_retries` at most this
    /// while a port is armed.
    pub synack_retries: u8,
}

impl CookieSettings {
    /// The window scale the cookie SYN-ACK and SYNPROXY advertise.
    #[must_use]
    pub fn wscale(&self) -> u8 {
        self.wscale.unwrap_or(self.host_wscale)
    }
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

    /// A global budget split into its buckets (one per class, and closed
    /// ports'), each its [`BUDGET_SHARE_PERCENT`] of the rate and burst (at
    /// least 1 of each).
    #[must_use]
    pub fn per_class(self) -> [Limit; BUDGETS] {
        if self.rate == 0 {
            return [Limit::UNLIMITED; BUDGETS];
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
    pub xdp_mode: XdpModeChoice,
    pub netns: Option<String>,
    pub force: bool,
    pub mode: Enforcement,
    pub source_limits: SourceLimits,
    /// Per source and per prefix, by [`FlowClass`].
    pub source: [Rate; FLOW_CLASSES],
    pub prefix: [Rate; FLOW_CLASSES],
    pub global: Rate,
    pub open_ports: DeclaredOpen,
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
    pub list_capacity: u32,
    pub summary_interval: Duration,
    pub metrics: Option<std::net::SocketAddr>,
    pub conntrack: ConntrackSettings,
    pub cookies: CookieSettings,
    pub reject: Reject,
    pub fingerprints: Fingerprints,
    /// `--fleet`: off when `None`.
    pub fleet: Option<FleetSettings>,
}

/// `--open-port`: ports counted open whatever guard finds listening, by
/// protocol, as inclusive ranges (`model::ports::OpenPorts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeclaredOpen {
    pub tcp: Vec<(u16, u16)>,
    pub udp: Vec<(u16, u16)>,
}

/// Joining a fleet through NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    pub server: String,
    pub creds: Option<std::path::PathBuf>,
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// This member's name.
    pub member: String,
    pub bucket: String,
    pub allow: Vec<IpNet>,
    pub rate: u32,
}

/// Samples a second per CPU of each group (new flows; contrast) for the
/// fingerprint learner: enough for its windows (`model::fingerprint`),
/// few enough to cost nothing to read.
pub const SAMPLE_RATE: u32 = 500;

/// The RSTs of `reject = "rst"`, all sources together: a second's worth
/// of refused clients, never a reflector.
pub const RST_RATE: u64 = 100;
pub const RST_BURST: u32 = 100;

impl Settings {
    /// A reload: the new settings with every restart key kept at its
    /// running value, and those keys that differ, old and new, for the
    /// warning.
    #[must_use]
    pub fn reload(&self, new: Self) -> Reload {
        let mut applied = new;
        // Facts of the host, read at start, not of the file.
        applied.cookies.host_wscale = self.cookies.host_wscale;
        applied.cookies.tsecr_checked = self.cookies.tsecr_checked;
        let mut kept = Vec::new();
        for key in RESTART_KEYS {
            let (old, new) = ((key.show)(self), (key.show)(&applied));
            if old != new {
                kept.push(format!("{} ({old} -> {new})", key.name));
                (key.keep)(&mut applied, self);
            }
        }
        Reload { applied, kept }
    }

    /// The configuration the XDP program reads.
    #[must_use]
    pub fn dataplane(&self) -> DataplaneConfig {
        DataplaneConfig {
            mode: match self.mode {
                Enforcement::Monitor => MODE_MONITOR,
                Enforcement::Enforce => MODE_ENFORCE,
            },
            lists: list_bits(&self.allow, &self.deny),
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
            cookie_wscale: self.cookies.wscale(),
            cookie_ttl: 64,
            // Ports are armed by the controller (the port table), together
            // with the SYNPROXY rules that complete the handshakes; it marks
            // the open ones once it has read them.
            ports: 0,
            verify: 0,
            reject: match self.reject {
                Reject::Drop => 0,
                Reject::Rst => REJECT_RST,
            },
            sample: if self.fingerprints == Fingerprints::Off {
                0
            } else {
                SAMPLE_ON
            },
            rst: Limit::new(RST_RATE, RST_BURST),
            sample_rate: SAMPLE_RATE,
            sample_mask: 0,
            // The loader's, for the program's life.
            slot_seed: 0,
            // `guard run`'s to switch (`Dataplane::refresh_marked`).
            marked_half: 0,
            // `guard run`'s, per interface (`Dataplane::set_host_macs`).
            host_macs_len: 0,
            host_macs: [0; HOST_MACS],
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
            "mode {}; per source (/{} /{}): {}; per prefix (/{} /{}): {}; applied {}; global: {}; bans: {}; reject: {}; fingerprints: {}; allow {} deny {}",
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
            match self.reject {
                Reject::Drop => "drop",
                Reject::Rst => "RST to verified sources (100/s)",
            },
            match (self.fingerprints, self.mode) {
                // A learned signature that would drop only counts its
                // matches while guard itself is in monitor mode.
                (Fingerprints::Enforce, Enforcement::Monitor) =>
                    "enforce (counting only: mode monitor)".to_owned(),
                (f, _) => f.to_string(),
            },
            self.allow.len(),
            self.deny.len()
        )
    }
}

/// A key a running guard cannot change (the interfaces, the maps' sizes,
/// what the controller set up at start): how to show its value, and how to
/// keep the running one when a reload brings another. The one list of them.
struct RestartKey {
    name: &'static str,
    show: fn(&Settings) -> String,
    keep: fn(&mut Settings, &Settings),
}

const RESTART_KEYS: &[RestartKey] = &[
    RestartKey {
        name: "fingerprints",
        show: |s| s.fingerprints.to_string(),
        keep: |new, old| new.fingerprints = old.fingerprints,
    },
    RestartKey {
        name: "iface",
        show: |s| s.ifaces.join(","),
        keep: |new, old| new.ifaces.clone_from(&old.ifaces),
    },
    RestartKey {
        name: "xdp-mode",
        show: |s| s.xdp_mode.to_string(),
        keep: |new, old| new.xdp_mode = old.xdp_mode,
    },
    RestartKey {
        name: "netns",
        show: |s| format!("{:?}", s.netns),
        keep: |new, old| new.netns.clone_from(&old.netns),
    },
    RestartKey {
        name: "max-sources",
        show: |s| s.max_sources.to_string(),
        keep: |new, old| new.max_sources = old.max_sources,
    },
    RestartKey {
        name: "max-prefixes",
        show: |s| s.max_prefixes.to_string(),
        keep: |new, old| new.max_prefixes = old.max_prefixes,
    },
    RestartKey {
        name: "max-udp-flows",
        show: |s| s.max_udp_flows.to_string(),
        keep: |new, old| new.max_udp_flows = old.max_udp_flows,
    },
    RestartKey {
        name: "list-capacity",
        show: |s| s.list_capacity.to_string(),
        keep: |new, old| new.list_capacity = old.list_capacity,
    },
    RestartKey {
        name: "conntrack-memory",
        show: |s| format!("{:?}", s.conntrack.memory_mib),
        keep: |new, old| new.conntrack.memory_mib = old.conntrack.memory_mib,
    },
    RestartKey {
        name: "conntrack-buckets",
        show: |s| format!("{:?}", s.conntrack.buckets),
        keep: |new, old| new.conntrack.buckets = old.conntrack.buckets,
    },
    RestartKey {
        name: "notrack-port",
        show: |s| format!("{:?}", s.conntrack.notrack_ports),
        keep: |new, old| {
            new.conntrack
                .notrack_ports
                .clone_from(&old.conntrack.notrack_ports);
        },
    },
    RestartKey {
        name: "dry-run",
        show: |s| s.conntrack.dry_run.to_string(),
        keep: |new, old| new.conntrack.dry_run = old.conntrack.dry_run,
    },
    RestartKey {
        name: "metrics",
        show: |s| format!("{:?}", s.metrics),
        keep: |new, old| new.metrics = old.metrics,
    },
    RestartKey {
        name: "fleet/fleet-*",
        show: |s| format!("{:?}", s.fleet),
        keep: |new, old| new.fleet.clone_from(&old.fleet),
    },
    // The SYNPROXY rules and the controller's switching follow these.
    RestartKey {
        name: "syn-cookies/cookie-port/cookie-mss/cookie-wscale/verified-for/synack-retries",
        show: |s| format!("{:?}", s.cookies),
        keep: |new, old| new.cookies.clone_from(&old.cookies),
    },
];

/// What a reload applies, and the restart keys it left as they were.
#[derive(Debug)]
pub struct Reload {
    pub applied: Settings,
    /// `key (old -> new)`, for each restart key the new file changes.
    pub kept: Vec<String>,
}

/// The configuration's list bits: which tries hold entries and which hold
/// a deny entry, so that the program looks up only what can match.
#[must_use]
pub fn list_bits(allow: &[IpNet], deny: &[IpNet]) -> u32 {
    let mut bits = 0;
    for (net, denied) in allow
        .iter()
        .map(|n| (n, false))
        .chain(deny.iter().map(|n| (n, true)))
    {
        bits |= match (net, denied) {
            (IpNet::V4(_), false) => HAS_LISTS_V4,
            (IpNet::V4(_), true) => HAS_LISTS_V4 | DENY_V4,
            (IpNet::V6(_), false) => HAS_LISTS_V6,
            (IpNet::V6(_), true) => HAS_LISTS_V6 | DENY_V6,
        };
    }
    bits
}

/// The first family (`"IPv4"` or `"IPv6"`) whose allow and deny entries
/// together are more than its trie holds (`capacity`), with their number
/// and how many of them are allow's.
#[must_use]
pub fn list_overflow(
    allow: &[IpNet],
    deny: &[IpNet],
    capacity: u32,
) -> Option<(&'static str, usize, usize)> {
    let v4 = |list: &[IpNet]| list.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    let (allow4, deny4) = (v4(allow), v4(deny));
    let (allow6, deny6) = (allow.len() - allow4, deny.len() - deny4);
    [
        ("IPv4", allow4 + deny4, allow4),
        ("IPv6", allow6 + deny6, allow6),
    ]
    .into_iter()
    .find(|(_, n, _)| *n > capacity as usize)
}

fn nanos(d: Duration) -> u64 {
    d.as_secs().saturating_mul(NANOS_PER_SEC)
}
