//! `guard doctor`: the field guides' conntrack diagnosis as one command.
//!
//! It reads, under `--root` (`/` by default, so tests can point it at a
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
//!   entry, and guard's XDP program limits SYNs, not ACKs.
//! - `btf` WARN: no `/sys/kernel/btf/vmlinux`; guard needs a kernel with
//!   BTF.
//! - live: `bpffs` WARN when /sys/fs/bpf is not a bpf filesystem,
//!   `privileges` WARN when this process could not run guard, `guard` WARN
//!   when pinned maps are left by a guard that no longer runs (`guard
//!   restore`); `xdp` only reports which program each interface has.
//!
//! A check that cannot be evaluated (its file is missing) is SKIP. Exit
//! codes follow the Nagios convention, unlike the rest of guard: 0 when the
//! worst finding is OK (or SKIP), 1 for WARN, 2 for CRIT.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    fs,
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    conntrack::percent,
    controller::Budget,
    iface::{self, Attachment},
    loader, pins, preflight,
};

/// Diagnose the conntrack table the way the field guides do: settings,
/// memory, statistics, kernel log, and what to fix.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes follow the Nagios convention: 0 all OK, 1 a WARN, 2 a CRIT (or an error)."
)]
pub struct DoctorArgs {
    /// Read /proc, /sys and /dev/kmsg under this directory instead of /;
    /// the live-only checks (XDP, bpffs, privileges, running guard) are then
    /// skipped.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Print the settings and the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The kernel's log line when the table is full (nf_conntrack_core.c).
const TABLE_FULL: &str = "nf_conntrack: table full, dropping packet";
/// What the controller assumes when the slab allocator does not say.
const ASSUMED_ENTRY_BYTES: u64 = 320;
/// Bytes per hash bucket (a pointer).
const BUCKET_BYTES: u64 = 8;
/// What `guard tune` sets the established timeout to, as kube-proxy does.
const DAY_SECS: u64 = 86_400;
const MIB: u64 = 1024 * 1024;

/// The live-only checks, skipped when `--root` is not `/`.
pub const LIVE_CHECKS: [&str; 4] = ["xdp", "bpffs", "privileges", "guard"];

const FIX_FULL: &str =
    "run guard (guard run --iface IF) or raise nf_conntrack_max (guard tune --apply)";

/// How bad a finding is. SKIP (not evaluated) sorts below OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Skip,
    Ok,
    Warn,
    Crit,
}

impl Level {
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

impl fmt::Display for Level {
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
    pub level: Level,
    pub check: &'static str,
    pub reason: String,
    /// A command or guard subcommand; present for WARN and CRIT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Level::Ok, check, reason.into(), None)
    }

    fn skip(check: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Level::Skip, check, reason.into(), None)
    }

    fn warn(check: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Level::Warn, check, reason.into(), Some(fix.into()))
    }

    fn crit(check: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Level::Crit, check, reason.into(), Some(fix.into()))
    }

    const fn new(level: Level, check: &'static str, reason: String, fix: Option<String>) -> Self {
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
const SIZING: [&str; 4] = ["max", "buckets", "count", "expect_max"];

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

/// The kernel's conntrack statistics, from `/proc/net/stat/nf_conntrack`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Lines read, one per possible CPU.
    pub cpus: usize,
    /// Every column by its header name, summed over CPUs (`entries`, the
    /// table's count printed on every line, is taken once).
    pub counters: BTreeMap<String, u64>,
}

impl CpuStats {
    #[must_use]
    pub fn get(&self, column: &str) -> Option<u64> {
        self.counters.get(column).copied()
    }
}

/// Parses `/proc/net/stat/nf_conntrack`: a header line naming the columns,
/// then one line of hex values per CPU. Columns are found by name, so ones
/// this version does not know are kept without breaking the rest.
pub fn parse_stats(text: &str) -> Result<CpuStats, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split_whitespace()
        .collect();
    let mut stats = CpuStats::default();
    for (n, line) in lines.enumerate() {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(format!(
                "CPU line {} has {} columns, the header names {}",
                n + 1,
                values.len(),
                header.len()
            ));
        }
        for (name, value) in header.iter().zip(values) {
            let value = u64::from_str_radix(value, 16)
                .map_err(|_| format!("CPU line {}: `{value}` is not hex", n + 1))?;
            let slot = stats.counters.entry((*name).to_owned()).or_insert(0);
            *slot = if *name == "entries" {
                (*slot).max(value)
            } else {
                *slot + value
            };
        }
        stats.cpus += 1;
    }
    Ok(stats)
}

/// Bytes of MemTotal in `/proc/meminfo`.
#[must_use]
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The kernel log's "table full" lines.
#[must_use]
pub fn count_table_full(log: &str) -> u64 {
    log.lines().filter(|l| l.contains(TABLE_FULL)).count() as u64
}

/// What this host (or the tree under `--root`) says, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub btf: bool,
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
        let entry_bytes = self.entry_bytes.unwrap_or(ASSUMED_ENTRY_BYTES);
        Some(Memory {
            entry_bytes,
            entry_from_slab: self.entry_bytes.is_some(),
            table_bytes: max * entry_bytes + buckets * BUCKET_BYTES,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// Every interface and its XDP program, or why it could not be asked.
    pub xdp: Vec<(String, Result<Option<Attachment>, String>)>,
    pub bpffs: Result<(), String>,
    pub privileges: Result<(), String>,
    /// The pid of the guard holding the host lock, if one runs.
    pub guard_pid: Option<u32>,
    /// Pinned interface directories (`eth0`, `netns edge/eth0`).
    pub pinned: Vec<String>,
}

/// Every rule, in report order.
#[must_use]
pub fn evaluate(facts: &Facts) -> Vec<Finding> {
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
            out.push(table_full(&facts.stats, &facts.table_full_lines));
            out.push(fill(facts.number("count"), max));
            out.push(counter(
                &facts.stats,
                "early-drop",
                "early_drop",
                "the table was full and the kernel evicted not-yet-assured entries to make room",
                FIX_FULL,
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
            out.push(established(facts.number("tcp_timeout_established")));
            out.push(tcp_loose(facts.number("tcp_loose")));
        }
    }
    out.push(btf(facts.btf));
    match &facts.live {
        Some(live) => {
            out.push(xdp(&live.xdp));
            out.push(bpffs(&live.bpffs));
            out.push(privileges(&live.privileges));
            out.push(running(live.guard_pid, &live.pinned));
        }
        None => out.extend(LIVE_CHECKS.map(|c| Finding::skip(c, "live-only: --root is not /"))),
    }
    out
}

fn table_full(stats: &Result<CpuStats, String>, log: &Result<u64, String>) -> Finding {
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
        Finding::crit("table-full", reason, FIX_FULL)
    } else if drop.is_none() && lines.is_none() {
        Finding::skip("table-full", reason)
    } else {
        Finding::ok("table-full", reason)
    }
}

fn fill(count: Option<u64>, max: u64) -> Finding {
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
            FIX_FULL,
        )
    } else if pct >= 70.0 {
        Finding::warn("fill", format!("{reason}: little headroom"), FIX_FULL)
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
        m.table_bytes.div_ceil(MIB),
        m.entry_bytes
    );
    let ram = m.ram_bytes.unwrap_or(0) / MIB;
    if max < guides {
        Finding::warn(
            "max",
            format!(
                "{now}: below the field guides' {guides} for {ram} MiB of RAM (one entry per 32 KiB)"
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
    if buckets.saturating_mul(4) < max {
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

fn established(secs: Option<u64>) -> Finding {
    let Some(secs) = secs else {
        return Finding::skip("established", "no nf_conntrack_tcp_timeout_established");
    };
    let reason = format!("tcp_timeout_established={secs}s ({})", human_secs(secs));
    if secs > DAY_SECS {
        Finding::warn(
            "established",
            format!("{reason}: entries of peers that left without a FIN stay that long"),
            "guard tune --apply (a day)",
        )
    } else {
        Finding::ok("established", format!("{reason}: a day or less"))
    }
}

fn tcp_loose(loose: Option<u64>) -> Finding {
    match loose {
        None => Finding::skip("tcp-loose", "no nf_conntrack_tcp_loose"),
        Some(0) => Finding::ok("tcp-loose", "tcp_loose=0: only a SYN opens a TCP entry"),
        Some(v) => Finding::warn(
            "tcp-loose",
            format!(
                "tcp_loose={v}: a lone ACK of a connection conntrack does not know creates an entry, so an ACK flood fills the table past guard's SYN limits"
            ),
            "sysctl -w net.netfilter.nf_conntrack_tcp_loose=0 (trade-off: connections established before a conntrack flush, a module reload or a firewall failover are then invalid instead of picked up mid-stream; keep 1 where failover of established flows matters)",
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

fn xdp(ifaces: &[(String, Result<Option<Attachment>, String>)]) -> Finding {
    let attached: Vec<String> = ifaces
        .iter()
        .filter_map(|(name, found)| match found {
            Ok(None) => None,
            Ok(Some(a)) if a.prog_name.as_deref() == Some(loader::PROGRAM) => {
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
        Ok(()) => Finding::ok("bpffs", format!("{} is a bpf filesystem", pins::BPFFS)),
        Err(e) => Finding::warn(
            "bpffs",
            e.clone(),
            format!("mount -t bpf bpf {}", pins::BPFFS),
        ),
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

fn running(pid: Option<u32>, pinned: &[String]) -> Finding {
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
            "guard restore",
        ),
    }
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
pub struct Report {
    pub root: PathBuf,
    pub facts: Facts,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst level found.
    #[must_use]
    pub fn worst(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// 0, 1 or 2, as Nagios reads it.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        self.worst().exit_code()
    }

    /// The human report: the settings grouped, memory, statistics, kernel
    /// log, then one line per finding.
    #[must_use]
    pub fn render(&self) -> String {
        let f = &self.facts;
        let mut out = format!(
            "conntrack under {}: net.netfilter.nf_conntrack_*\n",
            self.root.display()
        );
        for group in Group::ALL {
            let mut entries: Vec<_> = f
                .sysctls
                .iter()
                .filter(|(k, _)| Group::of(k) == group)
                .collect();
            if entries.is_empty() {
                continue;
            }
            entries.sort_by_key(|(k, _)| SIZING.iter().position(|s| s == k));
            let _ = writeln!(out, "  {}", group.title());
            for (k, v) in entries {
                let _ = writeln!(out, "    {k:<36} {v}");
            }
        }
        if let Some(m) = f.memory() {
            let _ = writeln!(out, "memory");
            let source = if m.entry_from_slab {
                "slab"
            } else {
                "assumed: no slab object_size"
            };
            let _ = writeln!(out, "    {:<36} {} B ({source})", "entry", m.entry_bytes);
            let _ = writeln!(
                out,
                "    {:<36} {} MiB",
                "table at max, with buckets",
                m.table_bytes.div_ceil(MIB)
            );
            if let (Some(ram), Some(guides)) = (m.ram_bytes, m.field_guides_max) {
                let _ = writeln!(out, "    {:<36} {} MiB", "RAM", ram / MIB);
                let _ = writeln!(
                    out,
                    "    {:<36} {guides} (one entry per 32 KiB of RAM)",
                    "field guides' max"
                );
            }
        }
        match &f.stats {
            Ok(s) => {
                let _ = writeln!(out, "statistics since boot ({} CPUs)", s.cpus);
                for (k, v) in &s.counters {
                    let _ = writeln!(out, "    {k:<36} {v}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "statistics: {e}");
            }
        }
        let _ = match &f.table_full_lines {
            Ok(n) => writeln!(out, "kernel log: {n} \"table full\" lines"),
            Err(e) => writeln!(out, "kernel log: not readable ({e})"),
        };
        let _ = writeln!(out, "\nfindings");
        for finding in &self.findings {
            let _ = writeln!(out, "{finding}");
        }
        let _ = writeln!(out, "\nworst: {} (exit {})", self.worst(), self.exit_code());
        out
    }

    /// The report as JSON: settings by group, memory, statistics, kernel
    /// log, findings, worst level and exit code.
    #[must_use]
    pub fn json(&self) -> Value {
        let f = &self.facts;
        let settings: serde_json::Map<String, Value> = Group::ALL
            .iter()
            .map(|group| {
                let values: serde_json::Map<String, Value> = f
                    .sysctls
                    .iter()
                    .filter(|(k, _)| Group::of(k) == *group)
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.parse::<u64>().map_or_else(|_| json!(v), Value::from),
                        )
                    })
                    .collect();
                (group.key().to_owned(), Value::Object(values))
            })
            .collect();
        let memory = f.memory().map(|m| {
            json!({
                "entry_bytes": m.entry_bytes,
                "entry_bytes_from_slab": m.entry_from_slab,
                "table_bytes": m.table_bytes,
                "ram_bytes": m.ram_bytes,
                "field_guides_max": m.field_guides_max,
            })
        });
        let stats = match &f.stats {
            Ok(s) => json!({ "cpus": s.cpus, "counters": s.counters }),
            Err(e) => json!({ "error": e }),
        };
        let kernel_log = match &f.table_full_lines {
            Ok(n) => json!({ "readable": true, "table_full_lines": n }),
            Err(e) => json!({ "readable": false, "error": e }),
        };
        json!({
            "root": self.root,
            "settings": settings,
            "memory": memory,
            "stats": stats,
            "kernel_log": kernel_log,
            "findings": self.findings,
            "worst": self.worst(),
            "exit": self.exit_code(),
        })
    }
}

/// Reads everything under `root` and evaluates it. The live-only checks run
/// when `root` is `/`.
pub fn diagnose(root: &Path) -> Result<Report> {
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let live = fs::canonicalize(root)
        .with_context(|| format!("resolving --root {}", root.display()))?
        == Path::new("/");
    let facts = Facts {
        sysctls: read_sysctls(&root.join("proc/sys/net/netfilter")),
        entry_bytes: fs::read_to_string(root.join("sys/kernel/slab/nf_conntrack/object_size"))
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        ram_bytes: fs::read_to_string(root.join("proc/meminfo"))
            .ok()
            .and_then(|s| parse_mem_total(&s)),
        stats: read_stats(&root.join("proc/net/stat/nf_conntrack")),
        table_full_lines: read_kernel_log(&root.join("dev/kmsg")).map(|log| count_table_full(&log)),
        btf: root.join("sys/kernel/btf/vmlinux").exists(),
        live: live.then(gather_live),
    };
    let findings = evaluate(&facts);
    Ok(Report {
        root: root.to_path_buf(),
        facts,
        findings,
    })
}

/// `guard doctor`: prints the report and returns its exit code (Nagios: 0
/// OK, 1 WARN, 2 CRIT).
pub fn command(args: &DoctorArgs) -> Result<u8> {
    let report = diagnose(&args.root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.exit_code())
}

/// Every readable `nf_conntrack_*` file of the directory (none when it is
/// missing: conntrack is not loaded).
fn read_sysctls(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e
                .file_name()
                .into_string()
                .ok()?
                .strip_prefix("nf_conntrack_")?
                .to_owned();
            let value = fs::read_to_string(e.path()).ok()?;
            Some((name, value.trim().to_owned()))
        })
        .collect()
}

fn read_stats(path: &Path) -> Result<CpuStats, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_stats(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The whole kernel log. `/dev/kmsg` returns one record per read and
/// EAGAIN at the end when opened non-blocking, EPIPE when a record was
/// overwritten meanwhile; a regular file (the fake tree's) just ends.
fn read_kernel_log(path: &Path) -> Result<String, String> {
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(fail)?;
    // A kmsg read fails with EINVAL when the record does not fit; records
    // are at most 8 KiB.
    let mut buf = vec![0; 16 * 1024];
    let mut log = Vec::new();
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => log.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(String::from_utf8_lossy(&log).into_owned())
}

fn gather_live() -> Live {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let xdp = names
        .into_iter()
        .map(|name| {
            let found = iface::lookup(&name, "")
                .and_then(|i| iface::xdp_attachment(&i))
                .map_err(|e| e.to_string());
            (name, found)
        })
        .collect();
    Live {
        xdp,
        bpffs: pins::Layout::check_bpffs().map_err(|e| e.to_string()),
        privileges: preflight::check_privileges().map_err(|e| e.to_string()),
        guard_pid: running_guard(Path::new(pins::RUNTIME_DIR)),
        pinned: pins::Layout::default()
            .list()
            .into_iter()
            .map(|(netns, iface, _)| match netns {
                Some(ns) => format!("netns {ns}/{iface}"),
                None => iface,
            })
            .collect(),
    }
}

/// The pid in the host lock, if that process is alive and is guard. Read
/// rather than locked: taking the lock, even for a moment, could make a
/// guard starting then fail.
fn running_guard(runtime_dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(runtime_dir.join("guard.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "guard").then_some(pid)
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, Command};

    use super::*;
    use crate::iface::AttachMode;

    const GIB: u64 = 1024 * 1024 * 1024;

    const STAT_6_18: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000002a  00000001 00000010 00000000 00000002 00000000 00000000 00000000 00000100 00000001 0000000a 00000003 00000000  00000000 00000000 00000000 00000001
0000002a  00000002 00000020 00000000 00000000 00000000 00000000 00000004 00000200 00000000 000000f0 00000000 00000000  00000000 00000000 00000000 00000000
";

    fn facts(sysctls: &[(&str, &str)]) -> Facts {
        Facts {
            sysctls: sysctls
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            entry_bytes: Some(248),
            ram_bytes: Some(16 * GIB),
            stats: parse_stats(STAT_6_18),
            table_full_lines: Ok(0),
            btf: true,
            live: None,
        }
    }

    fn stats(pairs: &[(&str, u64)]) -> CpuStats {
        CpuStats {
            cpus: 1,
            counters: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
        findings.iter().find(|f| f.check == check).unwrap()
    }

    #[test]
    fn stats_are_summed_over_cpus_by_header_name() {
        let s = parse_stats(STAT_6_18).unwrap();
        assert_eq!(s.cpus, 2);
        assert_eq!(s.get("drop"), Some(0xfa));
        assert_eq!(s.get("found"), Some(0x30));
        assert_eq!(s.get("insert"), Some(0x300));
        assert_eq!(s.get("early_drop"), Some(3));
        assert_eq!(s.get("chainlength"), Some(4));
        // The count is on every line: taken once, not summed.
        assert_eq!(s.get("entries"), Some(42));
        assert_eq!(s.get("chaintoolong"), None);
    }

    #[test]
    fn unknown_columns_are_kept_and_do_not_shift_known_ones() {
        let s = parse_stats("future drop entries\n00000009 00000001 00000005\nff 2 5\n").unwrap();
        assert_eq!(s.get("drop"), Some(3));
        assert_eq!(s.get("future"), Some(0x108));
        assert_eq!(s.get("entries"), Some(5));
    }

    #[test]
    fn malformed_stats_say_where() {
        assert_eq!(parse_stats(""), Err("empty file".to_owned()));
        assert_eq!(
            parse_stats("drop early_drop\n1\n"),
            Err("CPU line 1 has 1 columns, the header names 2".to_owned())
        );
        assert_eq!(
            parse_stats("drop\n1\nzz\n"),
            Err("CPU line 2: `zz` is not hex".to_owned())
        );
        assert_eq!(parse_stats("drop\n").unwrap().cpus, 0);
    }

    #[test]
    fn mem_total_is_in_kib() {
        assert_eq!(
            parse_mem_total("MemTotal:       16318412 kB\nMemFree: 1 kB\n"),
            Some(16_318_412 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn table_full_lines_are_counted_in_kmsg_records() {
        let log = "4,100,5,-;nf_conntrack: nf_conntrack: table full, dropping packet\n\
                   6,101,6,-;eth0: link up\n\
                   4,102,7,-;nf_conntrack: nf_conntrack: table full, dropping packet\n";
        assert_eq!(count_table_full(log), 2);
        assert_eq!(count_table_full(""), 0);
    }

    #[test]
    fn sysctls_are_grouped() {
        assert_eq!(Group::of("max"), Group::Sizing);
        assert_eq!(Group::of("expect_max"), Group::Sizing);
        assert_eq!(Group::of("tcp_timeout_established"), Group::TcpTimeouts);
        assert_eq!(Group::of("udp_timeout_stream"), Group::OtherTimeouts);
        assert_eq!(Group::of("generic_timeout"), Group::OtherTimeouts);
        assert_eq!(Group::of("tcp_loose"), Group::Behaviour);
        assert_eq!(Group::of("acct"), Group::Behaviour);
    }

    #[test]
    fn without_conntrack_the_fix_is_modprobe() {
        let findings = evaluate(&facts(&[]));
        let f = find(&findings, "conntrack");
        assert_eq!(f.level, Level::Crit);
        assert_eq!(f.fix.as_deref(), Some("modprobe nf_conntrack"));
        assert!(findings.iter().all(|f| f.check != "fill"));
    }

    #[test]
    fn drops_or_log_lines_mean_the_table_was_full() {
        let crit = table_full(&Ok(stats(&[("drop", 12_345)])), &Ok(0));
        assert_eq!(crit.level, Level::Crit);
        assert!(crit.reason.starts_with("drop=12345 since boot"), "{crit}");
        assert_eq!(crit.fix.as_deref(), Some(FIX_FULL));
        assert_eq!(
            table_full(&Ok(stats(&[("drop", 0)])), &Ok(3)).level,
            Level::Crit
        );
        let unreadable = table_full(&Ok(stats(&[("drop", 0)])), &Err("EPERM".into()));
        assert_eq!(unreadable.level, Level::Ok);
        assert!(
            unreadable
                .reason
                .contains("kernel log not readable (EPERM)")
        );
        assert_eq!(
            table_full(&Err("missing".into()), &Err("EPERM".into())).level,
            Level::Skip
        );
    }

    #[test]
    fn fill_is_crit_at_90_and_warn_at_70_percent() {
        assert_eq!(fill(Some(95), 100).level, Level::Crit);
        assert_eq!(fill(Some(90), 100).level, Level::Crit);
        assert_eq!(fill(Some(70), 100).level, Level::Warn);
        let ok = fill(Some(69), 100);
        assert_eq!(ok.level, Level::Ok);
        assert_eq!(ok.reason, "count=69 of max=100 (69%)");
        assert_eq!(fill(Some(5), 0).level, Level::Warn);
        assert_eq!(fill(None, 100).level, Level::Skip);
    }

    #[test]
    fn counters_that_should_stay_zero_warn() {
        let s = Ok(stats(&[("early_drop", 7), ("insert_failed", 0)]));
        let early = counter(&s, "early-drop", "early_drop", "evicted", FIX_FULL);
        assert_eq!(early.level, Level::Warn);
        assert_eq!(early.reason, "early_drop=7 since boot: evicted");
        assert_eq!(
            counter(&s, "insert-failed", "insert_failed", "", "").level,
            Level::Ok
        );
        assert_eq!(
            counter(&s, "chains", "chainlength", "", "").level,
            Level::Skip
        );
        let from_6_18 = evaluate(&facts(&[("max", "1000")]));
        assert_eq!(find(&from_6_18, "chains").level, Level::Warn);
        assert_eq!(find(&from_6_18, "insert-failed").level, Level::Warn);
    }

    #[test]
    fn max_below_the_field_guides_warns() {
        let f = facts(&[("max", "65536"), ("buckets", "16384")]);
        let low = max_for_ram(65_536, f.memory());
        assert_eq!(low.level, Level::Warn);
        assert!(
            low.reason
                .contains("below the field guides' 524288 for 16384 MiB"),
            "{low}"
        );
        assert_eq!(low.fix.as_deref(), Some("guard tune --apply"));
        let f = facts(&[("max", "524288"), ("buckets", "131072")]);
        assert_eq!(max_for_ram(524_288, f.memory()).level, Level::Ok);
        let mut no_ram = f.clone();
        no_ram.ram_bytes = None;
        assert_eq!(max_for_ram(524_288, no_ram.memory()).level, Level::Skip);
    }

    #[test]
    fn memory_is_entries_plus_buckets_at_the_slab_size() {
        let mut f = facts(&[("max", "262144"), ("buckets", "65536")]);
        let m = f.memory().unwrap();
        assert_eq!(m.table_bytes, 262_144 * 248 + 65_536 * 8);
        assert_eq!(m.field_guides_max, Some(524_288));
        f.entry_bytes = None;
        let m = f.memory().unwrap();
        assert!(!m.entry_from_slab);
        assert_eq!(m.entry_bytes, ASSUMED_ENTRY_BYTES);
    }

    #[test]
    fn fewer_buckets_than_a_quarter_of_max_warn() {
        let few = buckets(65_536, Some(8_192));
        assert_eq!(few.level, Level::Warn);
        assert!(few.reason.contains("chains of 8 entries"), "{few}");
        assert_eq!(buckets(65_536, Some(16_384)).level, Level::Ok);
        assert_eq!(buckets(65_536, None).level, Level::Skip);
    }

    #[test]
    fn established_over_a_day_warns() {
        let five_days = established(Some(432_000));
        assert_eq!(five_days.level, Level::Warn);
        assert!(
            five_days
                .reason
                .starts_with("tcp_timeout_established=432000s (5d)")
        );
        assert_eq!(established(Some(86_400)).level, Level::Ok);
        assert_eq!(established(None).level, Level::Skip);
    }

    #[test]
    fn tcp_loose_warns_and_names_the_trade_off() {
        let loose = tcp_loose(Some(1));
        assert_eq!(loose.level, Level::Warn);
        let fix = loose.fix.unwrap();
        assert!(fix.starts_with("sysctl -w net.netfilter.nf_conntrack_tcp_loose=0"));
        assert!(fix.contains("trade-off"));
        assert_eq!(tcp_loose(Some(0)).level, Level::Ok);
    }

    #[test]
    fn btf_missing_warns() {
        assert_eq!(btf(false).level, Level::Warn);
        assert_eq!(btf(true).level, Level::Ok);
    }

    #[test]
    fn live_checks_are_skipped_off_root_and_evaluated_on_it() {
        let f = facts(&[("max", "524288")]);
        let skipped = evaluate(&f);
        for check in LIVE_CHECKS {
            assert_eq!(find(&skipped, check).level, Level::Skip);
        }
        let live = Live {
            xdp: vec![
                ("eth0".into(), Ok(None)),
                (
                    "eth1".into(),
                    Ok(Some(Attachment {
                        mode: AttachMode::Native,
                        prog_id: 7,
                        prog_name: Some("xdp_lb".into()),
                        link_id: None,
                    })),
                ),
            ],
            bpffs: Err("not mounted".into()),
            privileges: Err("no caps".into()),
            guard_pid: None,
            pinned: vec!["eth1".into()],
        };
        let findings = evaluate(&Facts {
            live: Some(live),
            ..f
        });
        let x = find(&findings, "xdp");
        assert_eq!(x.level, Level::Ok);
        assert!(x.reason.starts_with("eth1: program id 7 `xdp_lb`"), "{x}");
        assert!(x.reason.contains("needs --force"));
        assert_eq!(
            find(&findings, "bpffs").fix.as_deref(),
            Some("mount -t bpf bpf /sys/fs/bpf")
        );
        assert_eq!(find(&findings, "privileges").level, Level::Warn);
        assert_eq!(
            find(&findings, "guard").fix.as_deref(),
            Some("guard restore")
        );
        assert_eq!(running(Some(9), &["eth1".into()]).level, Level::Ok);
        assert_eq!(running(None, &[]).level, Level::Ok);
    }

    #[test]
    fn the_worst_level_is_the_nagios_exit_code() {
        assert_eq!(Level::Skip.exit_code(), 0);
        assert_eq!(Level::Ok.exit_code(), 0);
        assert_eq!(Level::Warn.exit_code(), 1);
        assert_eq!(Level::Crit.exit_code(), 2);
        assert!(Level::Skip < Level::Ok && Level::Warn < Level::Crit);
    }

    #[test]
    fn a_finding_is_one_line_with_its_fix() {
        let f = Finding::crit("table-full", "drop=12345 since boot", FIX_FULL);
        assert_eq!(
            f.to_string(),
            format!("CRIT  table-full: drop=12345 since boot — {FIX_FULL}")
        );
        assert_eq!(Finding::ok("btf", "there").to_string(), "OK    btf: there");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(432_000), "5d");
        assert_eq!(human_secs(3_600), "1h");
        assert_eq!(human_secs(90), "90s");
    }

    #[test]
    fn help_states_the_nagios_exit_codes() {
        let mut cmd = DoctorArgs::augment_args(Command::new("doctor"));
        let help = cmd.render_help().to_string();
        assert!(help.contains("Nagios"), "{help}");
        assert!(help.contains("--root <DIR>"), "{help}");
    }
}
