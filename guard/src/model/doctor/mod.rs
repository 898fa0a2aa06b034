//! `guard doctor`'s rules: the field guides' conntrack diagnosis, from
//! facts read once (by `commands::doctor`, through `host::files`) to
//! findings, each with its fix. Pure: the tests feed it facts.
//!
//! The facts come from, under `--root` (`/` by default, so tests can point it at a
//! fake tree):
//! - every `proc/sys/net/netfilter/nf_conntrack_*` sysctl, shown grouped
//!   (sizing, TCP timeouts, other timeouts, behaviour);
//! - `sys/kernel/slab/nf_conntrack/object_size` and `proc/meminfo`, for the
//!   memory the current `nf_conntrack_max` implies (max × entry size +
//!   buckets × 8) and the field guides' max for this RAM (one entry per
//!   32 KiB, as [`Budget`] computes it for `guard run` and `guard tune`);
//! - `proc/net/stat/nf_conntrack`, the kernel's per-CPU statistics, parsed
//!   by the names in its header line and summed over CPUs;
//! - `dev/kmsg`, the kernel log, for "nf_conntrack: table full, dropping
//!   packet" lines (a lower bound: the kernel rate-limits them, and the log
//!   is a ring);
//! - `proc/sys/net/ipv4/tcp_syncookies`;
//! - `sys/kernel/btf/vmlinux`.
//!
//! Live-only checks (XDP programs on interfaces, bpffs, privileges, a
//! running guard) look at this host, not at `--root`: they are reported as
//! SKIP unless `--root` is `/`.
//!
//! Rules (each finding is OK, WARN or CRIT; a WARN or CRIT names its fix):
//! - `conntrack` CRIT: no `nf_conntrack_max`, the module is not loaded
//!   (`modprobe nf_conntrack`). The other conntrack checks need it.
//! - `table-full` CRIT: the `drop` statistic is above 0, or the kernel log
//!   has "table full" lines: the table has been full and new connections
//!   were dropped.
//! - `fill` CRIT at a count of 90% of max or more (a burst away from
//!   dropping), WARN at 70% (where guard's controller goes to its high
//!   level); WARN for a max of 0, which the kernel takes as no limit: a
//!   flood can take all memory.
//! - `early-drop` WARN: `early_drop` > 0, the table was full and the
//!   kernel evicted entries to make room.
//! - `insert-failed` WARN: `insert_failed` > 0, new entries dropped on a
//!   clash or an over-long hash chain.
//! - `chains` WARN: `chainlength` (the kernel's chaintoolong counter) > 0,
//!   hash chains grew past the kernel's limit.
//! - `max` WARN: `nf_conntrack_max` below the field guides' value for this
//!   RAM at the real entry size.
//! - `buckets` WARN: fewer buckets than max / 4, so chains average more
//!   than four entries when the table is full.
//! - `established` WARN: `tcp_timeout_established` above a day (the
//!   kernel's five days keep the entries of peers that left without a FIN).
//! - `tcp-loose` WARN: `nf_conntrack_tcp_loose` = 1, a lone ACK creates an
//!   entry, and guard's XDP program limits SYNs, not ACKs. The host's RST
//!   removes it at once; one forwarded to a host that stays silent lives
//!   300 s.
//! - `syncookies` WARN: `net.ipv4.tcp_syncookies` = 0, a listener whose
//!   SYN queue a flood filled drops every new SYN, a user's and SYNPROXY's
//!   own, until the spoofed requests time out.
//! - `btf` WARN: no `/sys/kernel/btf/vmlinux`; guard needs a kernel with
//!   BTF.
//! - live: `bpffs` WARN when /sys/fs/bpf is not a bpf filesystem,
//!   `privileges` WARN when this process could not run guard, `guard` WARN
//!   when pinned maps are left by a guard that no longer runs (`guard
//!   restore`); `xdp` only reports which program each interface has.
//!
//! With `--netns NAME` the namespace's own facts are read (its conntrack
//! count, statistics, timeouts, `tcp_loose` and `tcp_syncookies`, its
//! interfaces, firewall and guard), the global ones (max, buckets, memory,
//! the kernel log, BTF, bpffs) as for the host, and the fixes that act on
//! the namespace name it.
//!
//! A check that cannot be evaluated (its file is missing) is SKIP. Exit
//! codes follow the Nagios convention, unlike the rest of guard: 0 when the
//! worst finding is OK (or SKIP), 1 for WARN, 2 for CRIT.

mod report;

use std::{collections::BTreeMap, fmt, path::PathBuf};

use guard_common::maps::PROGRAM;
use serde::Serialize;

use super::{
    conntrack::{CpuStats, TCP_LOOSE, percent},
    duration::DAY_SECS,
    firewall,
    paths::BPFFS,
    sizing::{self, Budget, ESTABLISHED_SECS},
    status::{AttachedStatus, RunStatus},
    tcp::{SYNCOOKIES, SYNCOOKIES_OFF},
    xdp::{XdpAttachMode, XdpAttachment},
};
use crate::config::Enforcement;

/// The kernel's log line when the table is full (nf_conntrack_core.c).
const TABLE_FULL: &str = "nf_conntrack: table full, dropping packet";

/// The live-only checks, skipped when `--root` is not `/`.
pub const LIVE_CHECKS: [&str; 6] = [
    "xdp",
    "bpffs",
    "privileges",
    "guard",
    "enforcing",
    "firewall",
];

/// The namespace the facts are of, as the fixes name it.
#[derive(Clone, Copy, Debug)]
struct Place<'a>(Option<&'a str>);

impl Place<'_> {
    /// ` --netns NAME` after a guard subcommand, or nothing.
    fn flag(self) -> String {
        self.0
            .map_or_else(String::new, |ns| format!(" --netns {ns}"))
    }

    /// `ip netns exec NAME ` before a command, or nothing.
    fn exec(self) -> String {
        self.0
            .map_or_else(String::new, |ns| format!("ip netns exec {ns} "))
    }

    fn fix_full(self) -> String {
        format!(
            "run guard (guard run{} --iface IF) or raise nf_conntrack_max (guard tune --apply)",
            self.flag()
        )
    }
}

/// How bad a finding is. SKIP (not evaluated) sorts below OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Skip,
    Ok,
    Warn,
    Crit,
}

impl Severity {
    /// The Nagios exit code.
    #[must_use]
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Skip | Self::Ok => 0,
            Self::Warn => 1,
            Self::Crit => 2,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Skip => "SKIP",
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Crit => "CRIT",
        })
    }
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Severity,
    pub check: &'static str,
    pub reason: String,
    /// A command or guard subcommand; present for WARN and CRIT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Severity::Ok, check, reason.into(), None)
    }

    fn skip(check: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Severity::Skip, check, reason.into(), None)
    }

    fn warn(check: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Severity::Warn, check, reason.into(), Some(fix.into()))
    }

    fn crit(check: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Severity::Crit, check, reason.into(), Some(fix.into()))
    }

    const fn new(
        level: Severity,
        check: &'static str,
        reason: String,
        fix: Option<String>,
    ) -> Self {
        Self {
            level,
            check,
            reason,
            fix,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}: {}", self.level, self.check, self.reason)?;
        match &self.fix {
            Some(fix) => write!(f, " — {fix}"),
            None => Ok(()),
        }
    }
}

/// The sizing sysctls, in report order (the other groups are sorted).
pub(super) const SIZING: [&str; 4] = ["max", "buckets", "count", "expect_max"];

/// How the sysctls are grouped in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Sizing,
    TcpTimeouts,
    OtherTimeouts,
    Behaviour,
}

impl Group {
    pub const ALL: [Self; 4] = [
        Self::Sizing,
        Self::TcpTimeouts,
        Self::OtherTimeouts,
        Self::Behaviour,
    ];

    /// The group of a sysctl, by its name after `nf_conntrack_`.
    #[must_use]
    pub fn of(name: &str) -> Self {
        match name {
            n if SIZING.contains(&n) => Self::Sizing,
            n if n.starts_with("tcp_timeout_") => Self::TcpTimeouts,
            n if n.contains("timeout") => Self::OtherTimeouts,
            _ => Self::Behaviour,
        }
    }

    const fn title(self) -> &'static str {
        match self {
            Self::Sizing => "sizing",
            Self::TcpTimeouts => "TCP timeouts (seconds)",
            Self::OtherTimeouts => "other timeouts (seconds)",
            Self::Behaviour => "behaviour",
        }
    }

    const fn key(self) -> &'static str {
        match self {
            Self::Sizing => "sizing",
            Self::TcpTimeouts => "tcp_timeouts",
            Self::OtherTimeouts => "other_timeouts",
            Self::Behaviour => "behaviour",
        }
    }
}

/// The kernel log's "table full" lines.
#[must_use]
pub fn count_table_full(log: &str) -> u64 {
    log.lines().filter(|l| l.contains(TABLE_FULL)).count() as u64
}

/// What this host (or the tree under `--root`) says, read once.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// Every readable `nf_conntrack_*` sysctl, by its name after the
    /// prefix, trimmed.
    pub sysctls: BTreeMap<String, String>,
    /// One entry's size from the slab allocator.
    pub entry_bytes: Option<u64>,
    /// MemTotal.
    pub ram_bytes: Option<u64>,
    /// The statistics, or why they could not be read.
    pub stats: Result<CpuStats, String>,
    /// "table full" lines in the kernel log, or why it could not be read.
    pub table_full_lines: Result<u64, String>,
    /// `net.ipv4.tcp_syncookies`.
    pub syncookies: Option<u64>,
    pub btf: bool,
    /// The network namespace diagnosed (`--netns`); `None` for the host's.
    pub netns: Option<String>,
    /// The live-only facts; `None` when `--root` is not `/`.
    pub live: Option<Live>,
}

impl Facts {
    /// A sysctl as a number.
    #[must_use]
    pub fn number(&self, name: &str) -> Option<u64> {
        self.sysctls.get(name)?.parse().ok()
    }

    /// The memory the table takes at its current max, and what the field
    /// guides would give it; `None` without conntrack.
    #[must_use]
    pub fn memory(&self) -> Option<Memory> {
        let max = self.number("max")?;
        let buckets = self.number("buckets").unwrap_or(0);
        let entry_bytes = sizing::entry_bytes(self.entry_bytes);
        Some(Memory {
            entry_bytes,
            entry_from_slab: self.entry_bytes.is_some(),
            table_bytes: sizing::table_bytes(max, buckets, entry_bytes),
            ram_bytes: self.ram_bytes,
            field_guides_max: self
                .ram_bytes
                .map(|ram| Budget::new(None, ram, entry_bytes, buckets).ceiling),
        })
    }
}

/// What the current sizing costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub entry_bytes: u64,
    /// Whether `entry_bytes` is the slab allocator's or assumed.
    pub entry_from_slab: bool,
    /// max × entry size + buckets × 8.
    pub table_bytes: u64,
    pub ram_bytes: Option<u64>,
    /// One entry per 32 KiB of RAM.
    pub field_guides_max: Option<u64>,
}

/// The live-only facts about this host.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// Every interface and its XDP program, or why it could not be asked.
    pub xdp: Vec<(String, Result<Option<XdpAttachment>, String>)>,
    pub bpffs: Result<(), String>,
    pub privileges: Result<(), String>,
    /// The pid of the guard of the namespace diagnosed (without
    /// `--netns`, of any guard), if one runs.
    pub guard_pid: Option<u32>,
    /// Pinned interface directories (`eth0`, `netns edge/eth0`), of the
    /// namespace diagnosed (without `--netns`, all).
    pub pinned: Vec<String>,
    /// What the running guard published about itself, if one runs.
    pub run: Option<RunStatus>,
    /// The host's chains that drop cookie handshakes' ACKs before guard's
    /// SYNPROXY chain, each with the state it drops (`model::firewall`),
    /// or why the rules could not be read.
    pub firewall: Result<Vec<(String, firewall::AckState)>, String>,
}

/// Every rule, in report order.
#[must_use]
pub fn evaluate(facts: &Facts) -> Vec<Finding> {
    let at = Place(facts.netns.as_deref());
    let mut out = Vec::new();
    match facts.number("max") {
        None => out.push(Finding::crit(
            "conntrack",
            "nf_conntrack is not loaded (no nf_conntrack_max): nothing is tracked, and guard's controller has nothing to drive",
            "modprobe nf_conntrack",
        )),
        Some(max) => {
            out.push(Finding::ok(
                "conntrack",
                format!("nf_conntrack is loaded ({} settings)", facts.sysctls.len()),
            ));
            out.push(table_full(&facts.stats, &facts.table_full_lines, at));
            out.push(fill(facts.number("count"), max, at));
            out.push(counter(
                &facts.stats,
                "early-drop",
                "early_drop",
                "the table was full and the kernel evicted not-yet-assured entries to make room",
                &at.fix_full(),
            ));
            out.push(counter(
                &facts.stats,
                "insert-failed",
                "insert_failed",
                "new entries were dropped on insertion: a clash with an entry for the same tuple, or an over-long hash chain",
                "guard tune --apply (more buckets: shorter chains)",
            ));
            out.push(counter(
                &facts.stats,
                "chains",
                "chainlength",
                "hash chains grew past the kernel's limit and inserts were refused: too few buckets, or a flood crafted to collide",
                "guard tune --apply (a quarter of nf_conntrack_max in buckets)",
            ));
            out.push(max_for_ram(max, facts.memory()));
            out.push(buckets(max, facts.number("buckets")));
            out.push(established(facts.number("tcp_timeout_established"), at));
            out.push(tcp_loose(facts.number("tcp_loose"), at));
        }
    }
    out.push(syncookies(facts.syncookies, at));
    out.push(btf(facts.btf));
    match &facts.live {
        Some(live) => {
            out.push(xdp(&live.xdp));
            out.push(bpffs(&live.bpffs));
            out.push(privileges(&live.privileges));
            out.push(running(live.guard_pid, &live.pinned, at));
            out.push(enforcing(live.run.as_ref()));
            out.push(firewall(&live.firewall));
        }
        None => out.extend(LIVE_CHECKS.map(|c| Finding::skip(c, "live-only: --root is not /"))),
    }
    out
}

fn table_full(stats: &Result<CpuStats, String>, log: &Result<u64, String>, at: Place) -> Finding {
    let drop = stats.as_ref().ok().and_then(|s| s.get("drop"));
    let lines = log.as_ref().ok().copied();
    let stat = match (stats, drop) {
        (Ok(_), Some(d)) => format!("drop={d} since boot"),
        (Ok(_), None) => "no drop column in the statistics".to_owned(),
        (Err(e), _) => format!("no statistics ({e})"),
    };
    let log = match log {
        Ok(n) => format!("{n} \"table full\" lines in the kernel log"),
        Err(e) => format!("kernel log not readable ({e})"),
    };
    let reason = format!("{stat}, {log}");
    if drop.unwrap_or(0) > 0 || lines.unwrap_or(0) > 0 {
        Finding::crit("table-full", reason, at.fix_full())
    } else if drop.is_none() && lines.is_none() {
        Finding::skip("table-full", reason)
    } else {
        Finding::ok("table-full", reason)
    }
}

fn fill(count: Option<u64>, max: u64, at: Place) -> Finding {
    let Some(count) = count else {
        return Finding::skip("fill", "no nf_conntrack_count");
    };
    if max == 0 {
        return Finding::warn(
            "fill",
            format!("count={count}, nf_conntrack_max=0: no limit, a flood can take all memory"),
            "guard tune --apply",
        );
    }
    let pct = percent(count, max);
    let reason = format!("count={count} of max={max} ({pct:.0}%)");
    if pct >= 90.0 {
        Finding::crit(
            "fill",
            format!("{reason}: new connections are about to be dropped"),
            at.fix_full(),
        )
    } else if pct >= 70.0 {
        Finding::warn("fill", format!("{reason}: little headroom"), at.fix_full())
    } else {
        Finding::ok("fill", reason)
    }
}

/// A statistics counter that should stay 0.
fn counter(
    stats: &Result<CpuStats, String>,
    check: &'static str,
    column: &str,
    meaning: &str,
    fix: &str,
) -> Finding {
    match stats.as_ref().map(|s| s.get(column)) {
        Err(e) => Finding::skip(check, format!("no statistics ({e})")),
        Ok(None) => Finding::skip(check, format!("no {column} column in the statistics")),
        Ok(Some(0)) => Finding::ok(check, format!("{column}=0 since boot")),
        Ok(Some(n)) => Finding::warn(check, format!("{column}={n} since boot: {meaning}"), fix),
    }
}

fn max_for_ram(max: u64, memory: Option<Memory>) -> Finding {
    let Some(m) = memory else {
        return Finding::skip("max", "no nf_conntrack_max");
    };
    let Some(guides) = m.field_guides_max else {
        return Finding::skip("max", "no MemTotal in /proc/meminfo");
    };
    if max == 0 {
        return Finding::skip("max", "nf_conntrack_max=0: no limit (see fill)");
    }
    let source = if m.entry_from_slab { "" } else { ", assumed" };
    let now = format!(
        "max={max} takes {} MiB ({} B an entry{source}, with the buckets)",
        m.table_bytes.div_ceil(sizing::MIB),
        m.entry_bytes
    );
    let ram = m.ram_bytes.unwrap_or(0) / sizing::MIB;
    if max < guides {
        Finding::warn(
            "max",
            format!(
                "{now}: below the field guides' {guides} for {ram} MiB of RAM (one entry per {} KiB)",
                sizing::RAM_PER_ENTRY / 1024
            ),
            "guard tune --apply",
        )
    } else {
        Finding::ok(
            "max",
            format!("{now}: at or above the field guides' {guides} for {ram} MiB of RAM"),
        )
    }
}

fn buckets(max: u64, buckets: Option<u64>) -> Finding {
    let Some(buckets) = buckets else {
        return Finding::skip("buckets", "no nf_conntrack_buckets");
    };
    let reason = format!("buckets={buckets} for max={max}");
    if buckets < sizing::quarter(max) {
        Finding::warn(
            "buckets",
            format!(
                "{reason}: hash chains of {} entries on average when full (a quarter of max keeps them at 4)",
                max.div_ceil(buckets.max(1))
            ),
            "guard tune --apply (it rehashes the whole table under locks: do it when calm)",
        )
    } else {
        Finding::ok("buckets", format!("{reason}: at least a quarter of max"))
    }
}

fn established(secs: Option<u64>, at: Place) -> Finding {
    let Some(secs) = secs else {
        return Finding::skip("established", "no nf_conntrack_tcp_timeout_established");
    };
    let reason = format!("tcp_timeout_established={secs}s ({})", human_secs(secs));
    if secs > ESTABLISHED_SECS {
        Finding::warn(
            "established",
            format!("{reason}: entries of peers that left without a FIN stay that long"),
            format!("guard tune --apply{} (a day)", at.flag()),
        )
    } else {
        Finding::ok("established", format!("{reason}: a day or less"))
    }
}

fn tcp_loose(loose: Option<u64>, at: Place) -> Finding {
    match loose {
        None => Finding::skip("tcp-loose", "no nf_conntrack_tcp_loose"),
        Some(0) => Finding::ok("tcp-loose", "tcp_loose=0: only a SYN opens a TCP entry"),
        Some(v) => Finding::warn(
            "tcp-loose",
            format!(
                "tcp_loose={v}: a lone ACK of a connection conntrack does not know creates an entry; the RST this host (or a forwarded-to host) answers removes it at once, but an ACK flood this host forwards to a destination that stays silent fills the table past guard's SYN limits, 300 s an entry"
            ),
            format!(
                "{}sysctl -w {TCP_LOOSE}=0 (trade-off: connections established before a conntrack flush, a module reload or a firewall failover are then invalid instead of picked up mid-stream; keep 1 where failover of established flows matters)",
                at.exec()
            ),
        ),
    }
}

fn syncookies(value: Option<u64>, at: Place) -> Finding {
    match value {
        None => Finding::skip("syncookies", "no net.ipv4.tcp_syncookies"),
        Some(0) => Finding::warn(
            "syncookies",
            format!("tcp_syncookies=0: {SYNCOOKIES_OFF}"),
            format!("{}sysctl -w {SYNCOOKIES}=1", at.exec()),
        ),
        Some(1) => Finding::ok(
            "syncookies",
            "tcp_syncookies=1: a listener whose SYN queue is full answers with SYN cookies",
        ),
        Some(v) => Finding::ok(
            "syncookies",
            format!("tcp_syncookies={v}: every listener answers with SYN cookies"),
        ),
    }
}

fn btf(present: bool) -> Finding {
    if present {
        Finding::ok("btf", "/sys/kernel/btf/vmlinux exists")
    } else {
        Finding::warn(
            "btf",
            "no /sys/kernel/btf/vmlinux: the kernel has no BTF, which guard needs",
            "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (distributions' stock kernels are)",
        )
    }
}

fn xdp(ifaces: &[(String, Result<Option<XdpAttachment>, String>)]) -> Finding {
    let attached: Vec<String> = ifaces
        .iter()
        .filter_map(|(name, found)| match found {
            Ok(None) => None,
            Ok(Some(a)) if a.prog_name.as_deref() == Some(PROGRAM) => {
                Some(format!("{name}: guard's {a}"))
            }
            Ok(Some(a)) => Some(format!(
                "{name}: {a} (guard run --iface {name} needs --force to replace it)"
            )),
            Err(e) => Some(format!("{name}: not queried ({e})")),
        })
        .collect();
    if attached.is_empty() {
        Finding::ok(
            "xdp",
            format!("no XDP program on any of {} interfaces", ifaces.len()),
        )
    } else {
        Finding::ok("xdp", attached.join("; "))
    }
}

fn bpffs(mounted: &Result<(), String>) -> Finding {
    match mounted {
        Ok(()) => Finding::ok("bpffs", format!("{BPFFS} is a bpf filesystem")),
        Err(e) => Finding::warn("bpffs", e.clone(), format!("mount -t bpf bpf {BPFFS}")),
    }
}

fn privileges(checked: &Result<(), String>) -> Finding {
    match checked {
        Ok(()) => Finding::ok(
            "privileges",
            "this user has CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: it can run guard",
        ),
        Err(e) => Finding::warn(
            "privileges",
            format!("this user cannot run guard: {e}"),
            "sudo guard run --iface IF",
        ),
    }
}

fn running(pid: Option<u32>, pinned: &[String], at: Place) -> Finding {
    match (pid, pinned.is_empty()) {
        (Some(pid), true) => Finding::ok("guard", format!("guard runs (pid {pid})")),
        (Some(pid), false) => Finding::ok(
            "guard",
            format!("guard runs (pid {pid}) on {}", pinned.join(", ")),
        ),
        (None, true) => Finding::ok("guard", "no guard running"),
        (None, false) => Finding::warn(
            "guard",
            format!(
                "maps of a guard that no longer runs are pinned ({}): it may have left conntrack values changed",
                pinned.join(", ")
            ),
            format!("guard restore{}", at.flag()),
        ),
    }
}

/// Whether the host's firewall would drop SYN cookies' handshakes: their
/// ACK is invalid to conntrack until SYNPROXY takes it.
fn firewall(found: &Result<Vec<(String, firewall::AckState)>, String>) -> Finding {
    match found {
        Err(e) => Finding::skip(
            "firewall",
            format!("the firewall's rules could not be read ({e})"),
        ),
        Ok(chains) if chains.is_empty() => Finding::ok(
            "firewall",
            "no nftables or iptables-legacy rule drops invalid or untracked packets before guard's SYNPROXY chain",
        ),
        Ok(chains) => Finding::warn(
            "firewall",
            chains
                .iter()
                .map(|(chain, state)| format!("{chain} {}", state.consequence()))
                .collect::<Vec<_>>()
                .join("; "),
            firewall::FIX,
        ),
    }
}

/// Whether the running guard drops, and where it sees packets late.
fn enforcing(run: Option<&RunStatus>) -> Finding {
    let Some(run) = run else {
        return Finding::ok("enforcing", "no guard running");
    };
    let gone = ifaces(run, |a| a.gone);
    if !gone.is_empty() {
        return Finding::crit(
            "enforcing",
            format!("{gone} deleted while guard ran: nothing is guarded there"),
            "bring the interface back under the same name (guard attaches again by itself), or restart guard with the interfaces it should guard",
        );
    }
    if run.mode == Enforcement::Monitor {
        return Finding::warn(
            "enforcing",
            "guard runs in monitor mode: it counts what it would drop and drops nothing",
            "set mode = \"enforce\" in its config and reload (systemctl reload guard), or run it with --mode enforce",
        );
    }
    let skb = ifaces(run, |a| a.xdp_mode == XdpAttachMode::Skb);
    if !skb.is_empty() {
        return Finding::warn(
            "enforcing",
            format!(
                "guard enforces, in skb (generic) XDP mode on {skb}: the kernel builds an skb for every packet before guard sees it (on a veth that is what SYN cookies need)"
            ),
            "--xdp-mode native, where the driver supports it (not on a veth)",
        );
    }
    Finding::ok(
        "enforcing",
        format!(
            "guard enforces in native XDP mode on {}",
            ifaces(run, |_| true)
        ),
    )
}

/// The names of the running guard's interfaces that `which` picks, joined
/// with commas; empty for none.
fn ifaces(run: &RunStatus, which: impl Fn(&AttachedStatus) -> bool) -> String {
    run.interfaces
        .iter()
        .filter(|a| which(a))
        .map(|a| a.iface.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `5d`, `1h`, `90s`.
fn human_secs(secs: u64) -> String {
    if secs >= DAY_SECS && secs.is_multiple_of(DAY_SECS) {
        format!("{}d", secs / DAY_SECS)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// The facts, what the rules make of them, and where they were read.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub root: PathBuf,
    pub facts: Facts,
    pub findings: Vec<Finding>,
}

#[cfg(test)]
mod tests;
