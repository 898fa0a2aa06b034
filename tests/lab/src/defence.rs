//! The defences every attack is measured against, from nothing to guard.
//! Each is set up on a fresh [`Topology`] and torn down with it; the global
//! knobs a defence writes (`nf_conntrack_max`, the hash size) are saved by
//! the runner before the first run and put back after the last.

use std::{fmt, time::Duration};

use guard_tests::{guard_proc::Guard, host};

use crate::{
    peer::PassThrough,
    scenario::Scenario,
    topology::{TCP_PORT, Topology, UDP_PORT},
};

pub const MAX: &str = "net.netfilter.nf_conntrack_max";
pub const BUCKETS: &str = "net.netfilter.nf_conntrack_buckets";
/// guard learns a flood's signature in two seconds (one to learn, one to
/// check it on a fresh sample) and installs it at the next tick: "within
/// a few seconds".
pub const LEARN_WITHIN: Duration = Duration::from_secs(4);

/// Fails the test unless a signature was installed within
/// [`LEARN_WITHIN`] of the flood's start (`learned_after`); `log` is
/// guard's.
pub fn assert_learned(learned_after: Option<Duration>, log: &str) {
    let learned = learned_after.unwrap_or_else(|| panic!("no signature was learned:\n{log}"));
    assert!(
        learned <= LEARN_WITHIN,
        "the signature came after {learned:?}:\n{log}"
    );
}

/// The field guides' static timeouts (seconds): what a hardened
/// sysctl.conf sets.
const STATIC_TIMEOUTS: [(&str, u64); 9] = [
    ("tcp_timeout_established", 3600),
    ("tcp_timeout_syn_sent", 30),
    ("tcp_timeout_syn_recv", 30),
    ("tcp_timeout_fin_wait", 30),
    ("tcp_timeout_close_wait", 30),
    ("tcp_timeout_last_ack", 30),
    ("tcp_timeout_time_wait", 30),
    ("udp_timeout", 10),
    ("udp_timeout_stream", 60),
];

/// The per-source limits both nftables and guard apply: guard's defaults.
const SOURCE_RATE: u32 = 50;
const SOURCE_BURST: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Defence {
    /// The kernel as it boots: nothing changed.
    Defaults,
    /// The field guides' manual tuning: max raised four times, hash size
    /// max/4, shorter timeouts.
    Static,
    /// The kernel-native best practice: an nftables per-source meter on new
    /// flows, and SYNPROXY with the SYNs untracked.
    Nftables,
    /// guard counting only (its conntrack controller still acts).
    GuardMonitor,
    /// guard dropping, without SYN cookies.
    GuardEnforce,
    /// guard dropping, with SYN cookies for the TCP port when a
    /// random-source SYN flood is under way.
    GuardCookies,
    /// guard as a new user starts it: `--mode enforce` and nothing else
    /// (no memory budget, no port: cookies for every listener).
    GuardDefaults,
    /// guard-defaults with a source map 64 times too small for a
    /// random-source flood (`--max-sources 1024`): what LRU churn costs.
    GuardSmallMap,
    /// guard-defaults without attack fingerprints (`--fingerprints off`):
    /// what the limits and the budget do alone.
    GuardNoFingerprints,
    /// Not a defence: the floor of the spoofed floods' per-frame cost, an
    /// XDP program that drops the spoofed range, knowing it.
    Oracle,
}

impl Defence {
    pub const ALL: [Self; 10] = [
        Self::Defaults,
        Self::Static,
        Self::Nftables,
        Self::GuardMonitor,
        Self::GuardEnforce,
        Self::GuardCookies,
        Self::GuardDefaults,
        Self::GuardSmallMap,
        Self::GuardNoFingerprints,
        Self::Oracle,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Defaults => "defaults",
            Self::Static => "static",
            Self::Nftables => "nftables",
            Self::GuardMonitor => "guard-monitor",
            Self::GuardEnforce => "guard-enforce",
            Self::GuardCookies => "guard-cookies",
            Self::GuardDefaults => "guard-defaults",
            Self::GuardSmallMap => "guard-small-map",
            Self::GuardNoFingerprints => "guard-no-fingerprints",
            Self::Oracle => "oracle",
        }
    }

    /// One line for the report.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::Defaults => "kernel defaults: nothing changed",
            Self::Static => {
                "field guides' static tuning: nf_conntrack_max x4, buckets = max/4, established 1 h, handshake and closing states 30 s, UDP 10/60 s"
            }
            Self::Nftables => {
                "nftables: per-source meter 50/s burst 100 on SYNs and new UDP flows; SYNPROXY (mss 1460, wscale 7, timestamps, SACK) on the TCP port with its SYNs notracked; tcp_loose 0"
            }
            Self::GuardMonitor => {
                "guard --mode monitor: XDP counts, drops nothing; its conntrack controller acts (memory budget: 4x the table)"
            }
            Self::GuardEnforce => {
                "guard --mode enforce --syn-cookies never: default limits (50/s burst 100 per source); conntrack controller with a memory budget of 4x the table"
            }
            Self::GuardCookies => {
                "guard --mode enforce --cookie-port 8080, memory budget 4x the table: XDP answers SYNs to that port with cookies (and SYNPROXY completes the handshakes) while a random-source SYN flood aims at it"
            }
            Self::GuardDefaults => {
                "guard --mode enforce and nothing else: cookies per port for every listener, the field guides' memory budget"
            }
            Self::GuardSmallMap => {
                "guard --mode enforce --max-sources 1024: the defaults with a source map far smaller than the flood's sources, so that its entries churn"
            }
            Self::GuardNoFingerprints => {
                "guard --mode enforce --fingerprints off: the defaults without attack signatures, the limits and the budget alone"
            }
            Self::Oracle => {
                "not a defence, the floor: an XDP program that drops every frame from the spoofed range (knowing the attack); what the generator, the link and the least XDP can do cost; run for the spoofed floods only"
            }
        }
    }

    /// Whether `scenario` is measured against this defence: the oracle
    /// knows only the spoofed range.
    #[must_use]
    pub const fn measures(self, scenario: Scenario) -> bool {
        !matches!(self, Self::Oracle) || scenario.spoofed()
    }

    /// Parses a name as [`Self::name`] gives it.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown defence `{name}`: one of {}",
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Defence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A defence in place; dropping it stops guard (which restores what it
/// changed). Namespace state goes with the topology.
pub struct Applied {
    pub guard: Option<Guard>,
    /// The oracle's program, detached when dropped.
    _xdp: Option<PassThrough>,
}

impl Applied {
    const fn nothing() -> Self {
        Self {
            guard: None,
            _xdp: None,
        }
    }
}

/// Sets `defence` up on `topo`, whose table starts at `table` entries.
/// `entry_bytes` sizes guard's memory budget to the same four-fold table
/// the static tuning gets. guard is the binary of `GUARD_BIN`, or the one
/// next to this program.
#[must_use]
pub fn apply(defence: Defence, topo: &Topology, table: u64, entry_bytes: u64) -> Applied {
    match defence {
        Defence::Defaults => Applied::nothing(),
        Defence::Oracle => Applied {
            guard: None,
            _xdp: Some(PassThrough::oracle(&topo.victim, &topo.victim_a)),
        },
        Defence::Static => {
            let max = table * 4;
            host::set_sysctl(BUCKETS, max / 4);
            host::set_sysctl(MAX, max);
            for (name, secs) in STATIC_TIMEOUTS {
                topo.victim_sysctl(
                    &format!("net/netfilter/nf_conntrack_{name}"),
                    &secs.to_string(),
                );
            }
            Applied::nothing()
        }
        Defence::Nftables => {
            topo.victim_sysctl("net/netfilter/nf_conntrack_tcp_loose", "0");
            topo.victim_sysctl("net/ipv4/tcp_syncookies", "1");
            topo.victim_sysctl("net/ipv4/tcp_timestamps", "1");
            topo.victim_nft(&nftables_script());
            Applied::nothing()
        }
        Defence::GuardMonitor
        | Defence::GuardEnforce
        | Defence::GuardCookies
        | Defence::GuardDefaults
        | Defence::GuardSmallMap
        | Defence::GuardNoFingerprints => {
            let mode = if defence == Defence::GuardMonitor {
                "monitor"
            } else {
                "enforce"
            };
            let port = TCP_PORT.to_string();
            let memory_mib =
                (table * 4 * entry_bytes + host::sysctl(BUCKETS) * 8).div_ceil(1 << 20);
            let memory = memory_mib.to_string();
            let mut args = vec![
                "run",
                "--netns",
                &topo.victim,
                "--iface",
                &topo.victim_a,
                "--mode",
                mode,
                "--summary-interval",
                "0",
            ];
            let tuning: &[&str] = match defence {
                Defence::GuardDefaults => &[],
                Defence::GuardSmallMap => &["--max-sources", "1024"],
                Defence::GuardNoFingerprints => &["--fingerprints", "off"],
                Defence::GuardEnforce => &["--conntrack-memory", &memory, "--syn-cookies", "never"],
                Defence::GuardCookies => &["--conntrack-memory", &memory, "--cookie-port", &port],
                _ => &["--conntrack-memory", &memory],
            };
            args.extend_from_slice(tuning);
            // The learner's debug line (what each flood second that
            // installed nothing came to) is in the log a failure prints.
            let log = std::ffi::OsStr::new("info,guard::daemon::fingerprints=debug");
            let mut guard = Guard::start_with_env(&args, &[("GUARD_LOG", log)]);
            guard.wait_for(&topo.guard_pins().join(guard_common::maps::COUNTERS));
            Applied {
                guard: Some(guard),
                _xdp: None,
            }
        }
    }
}

/// The kernel-native defence: per-source meters like guard's limits, and
/// SYNPROXY for the TCP port (the SYN is answered with a cookie by
/// netfilter and tracked only once the handshake completes).
fn nftables_script() -> String {
    let limit = format!("limit rate over {SOURCE_RATE}/second burst {SOURCE_BURST} packets");
    format!(
        "table ip guardlab_native {{
  set syn_meter {{ type ipv4_addr; size 131072; flags dynamic,timeout; timeout 10s; }}
  set udp_meter {{ type ipv4_addr; size 131072; flags dynamic,timeout; timeout 10s; }}
  chain raw {{
    type filter hook prerouting priority raw; policy accept;
    tcp flags & (fin | syn | rst | ack) == syn update @syn_meter {{ ip saddr {limit} }} drop
    tcp dport {TCP_PORT} tcp flags & (fin | syn | rst | ack) == syn notrack
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    meta l4proto udp udp dport {UDP_PORT} ct state new update @udp_meter {{ ip saddr {limit} }} drop
    tcp dport {TCP_PORT} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    ct state invalid drop
  }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Defence::ALL {
            assert_eq!(Defence::parse(d.name()), Ok(d));
        }
        let err = Defence::parse("iptables").unwrap_err();
        assert!(err.contains("guard-enforce"), "{err}");
    }

    #[test]
    fn nftables_limits_match_guards_defaults() {
        let (rate, burst) = guard::config::defaults::SOURCE[0];
        assert_eq!(u64::from(SOURCE_RATE), rate);
        assert_eq!(SOURCE_BURST, burst);
        let script = nftables_script();
        assert!(script.contains("limit rate over 50/second burst 100 packets"));
        assert!(script.contains("synproxy"));
    }
}
