//! What a running guard publishes for other processes (`guard status`,
//! `guard stats`, `--watch`, metrics, doctor) through `host::status_file`:
//! [`RunStatus`], what it is (written at start and at every SIGHUP), and
//! [`Status`], what its controller last saw and did (every tick).

use std::{collections::VecDeque, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::{
    conntrack::Stats,
    duration::DAY_SECS,
    level::Level,
    ports::{OpenRanges, port_list},
    xdp::XdpAttachMode,
};
use guard_common::config::FLOW_CLASSES;

use crate::config::{Enforcement, Rate};

/// Decision lines kept in the status.
pub const RECENT: usize = 8;

/// One decision the controller logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedDecision {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub line: String,
}

/// What the controller last saw and did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// Seconds since the Unix epoch, at the last tick.
    pub updated: f64,
    pub netns: Option<String>,
    pub count: u64,
    pub max: u64,
    /// Percent.
    pub fill: f64,
    /// The fill the controller keeps below, percent.
    pub target: f64,
    pub level: Level,
    pub dry_run: bool,
    /// The XDP global budget applied (per interface), if any yet.
    pub global: Option<Rate>,
    /// Per-source limits applied, by class (syn, udp, icmp, other).
    pub source: [Rate; FLOW_CLASSES],
    /// SYN cookies are answering SYNs to these ports (empty: off).
    #[serde(default)]
    pub cookie_ports: Vec<u16>,
    /// The ports counted open: a SYN or new UDP flow to any other takes
    /// the closed ports' share of the budget.
    #[serde(default)]
    pub open_ports: OpenRanges,
    /// guard's nftables tables found gone (a `flush ruleset`) and
    /// installed again, since start.
    #[serde(default)]
    pub nft_reinstalled: u64,
    /// The kernel's statistics, cumulative.
    pub stats: Stats,
    /// The last decisions, oldest first.
    pub recent: VecDeque<LoggedDecision>,
}

/// What a running guard is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub pid: u32,
    pub version: String,
    /// Seconds since the Unix epoch, when it started.
    pub started: f64,
    /// The `--config` file, if it was given one.
    pub config: Option<String>,
    pub mode: Enforcement,
    pub interfaces: Vec<AttachedStatus>,
}

/// One interface guard is attached to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachedStatus {
    pub iface: String,
    pub netns: Option<String>,
    pub xdp_mode: XdpAttachMode,
    pub prog_id: u32,
    /// The egress program (what the host sends: the clients it verifies,
    /// the SYN-ACKs and datagram flows it remembers), if the kernel took
    /// its tcx link; none in a status file from before it.
    #[serde(default)]
    pub egress_prog_id: Option<u32>,
    /// Whether this attachment can answer SYNs with cookies (not a veth in
    /// native mode).
    pub cookies_possible: bool,
    /// The interface was deleted while guard ran: nothing is attached under
    /// its name until one of that name comes back (guard attaches again).
    #[serde(default)]
    pub gone: bool,
}

/// `guard status --json`: what is running and enforcing, in one document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub run: RunStatus,
    pub uptime_secs: f64,
    /// The controller's level; none without conntrack (no controller).
    pub level: Option<Level>,
    /// Ports whose SYNs are answered with cookies now.
    pub cookie_ports: Vec<u16>,
    /// The attack signatures installed, one line each (`guard sigs list`
    /// has them in full).
    pub signatures: Vec<String>,
}

impl StatusReport {
    /// The report of `run`, with the controller's `status` if it publishes
    /// one, at `now` (seconds since the Unix epoch).
    #[must_use]
    pub fn new(run: RunStatus, status: Option<&Status>, now: f64) -> Self {
        Self {
            uptime_secs: (now - run.started).max(0.0),
            level: status.map(|s| s.level),
            cookie_ports: status.map(|s| s.cookie_ports.clone()).unwrap_or_default(),
            signatures: Vec::new(),
            run,
        }
    }

    /// `guard status`: a header line, then one line per interface.
    #[must_use]
    pub fn render(&self) -> String {
        let run = &self.run;
        let mut out = format!(
            "guard {} (pid {}), up {}, {}\n",
            run.version,
            run.pid,
            duration(self.uptime_secs),
            run.config
                .as_ref()
                .map_or_else(|| "no config file".to_owned(), |c| format!("config {c}"))
        );
        let level = self.level.map_or_else(
            || "no conntrack controller".to_owned(),
            |l| format!("level {l}"),
        );
        let cookies = if self.cookie_ports.is_empty() {
            "SYN cookies off".to_owned()
        } else {
            format!(
                "SYN cookies on for ports {}",
                port_list(self.cookie_ports.iter().copied())
            )
        };
        for a in &run.interfaces {
            let _ = write!(out, "  {}", a.iface);
            if let Some(ns) = &a.netns {
                let _ = write!(out, " (netns {ns})");
            }
            if a.gone {
                let _ = writeln!(
                    out,
                    ": gone (deleted), nothing guarded; guard attaches again when an interface of this name comes back"
                );
                continue;
            }
            let egress = a.egress_prog_id.map_or_else(
                || ", no egress program (no tcx)".to_owned(),
                |id| format!(" + tcx egress (program {id})"),
            );
            let _ = writeln!(
                out,
                ": {}, {} XDP (program {}){egress}, {level}, {}",
                match run.mode {
                    Enforcement::Enforce => "enforce (drops)",
                    Enforcement::Monitor => "monitor (counts, drops nothing)",
                },
                a.xdp_mode,
                a.prog_id,
                if a.cookies_possible {
                    cookies.clone()
                } else {
                    "no SYN cookies here (a veth in native mode)".to_owned()
                }
            );
        }
        if self.signatures.is_empty() {
            out.push_str("  no attack signatures\n");
        }
        for line in &self.signatures {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `7s`.
fn duration(secs: f64) -> String {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative uptime in whole seconds"
    )]
    let s = secs.max(0.0) as u64;
    let (d, h, m) = (s / DAY_SECS, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {}s", s % 60),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Enforcement) -> RunStatus {
        RunStatus {
            pid: 42,
            version: "0.1.0".into(),
            started: 1000.0,
            config: Some("/etc/guard.toml".into()),
            mode,
            interfaces: vec![
                AttachedStatus {
                    iface: "eth0".into(),
                    netns: None,
                    xdp_mode: XdpAttachMode::Native,
                    prog_id: 57,
                    egress_prog_id: Some(61),
                    cookies_possible: true,
                    gone: false,
                },
                AttachedStatus {
                    iface: "veth1".into(),
                    netns: Some("edge".into()),
                    xdp_mode: XdpAttachMode::Native,
                    prog_id: 58,
                    egress_prog_id: None,
                    cookies_possible: false,
                    gone: false,
                },
            ],
        }
    }

    #[test]
    fn status_says_per_interface_what_enforces_and_how() {
        let report = StatusReport::new(
            run(Enforcement::Enforce),
            None,
            1000.0 + 3.0 * 3600.0 + 120.0,
        );
        assert_eq!(
            report.render(),
            "guard 0.1.0 (pid 42), up 3h 2m, config /etc/guard.toml\n\
             \x20 eth0: enforce (drops), native XDP (program 57) + tcx egress (program 61), no conntrack controller, SYN cookies off\n\
             \x20 veth1 (netns edge): enforce (drops), native XDP (program 58), no egress program (no tcx), no conntrack controller, no SYN cookies here (a veth in native mode)\n\
             \x20 no attack signatures\n"
        );
        let mut with_sig = report.clone();
        with_sig.signatures = vec!["sig 1 on eth0 (learned drop, 9 hits): udp ip4 len 44".into()];
        assert!(
            with_sig
                .render()
                .ends_with("\n  sig 1 on eth0 (learned drop, 9 hits): udp ip4 len 44\n")
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mode"], "enforce");
        assert_eq!(json["interfaces"][0]["xdp_mode"], "native");
        assert_eq!(json["uptime_secs"], 10_920.0);
        let mut gone = run(Enforcement::Enforce);
        gone.interfaces[1].gone = true;
        assert!(
            StatusReport::new(gone, None, 1000.0).render().contains(
                "\n  veth1 (netns edge): gone (deleted), nothing guarded; guard attaches again when an interface of this name comes back\n"
            )
        );
        let monitor = StatusReport::new(run(Enforcement::Monitor), None, 1000.0).render();
        assert!(
            monitor.contains("monitor (counts, drops nothing)"),
            "{monitor}"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(7.9), "7s");
        assert_eq!(duration(250.0), "4m 10s");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0 + 5.0), "3d 4h");
    }
}
