//! The conntrack controller: each tick reads the table and the XDP
//! counters, asks the policy what to do, does it (or, in a dry run, only
//! says so), and logs one line per decision. Its changes are recorded before
//! the first one and undone on exit.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow};
use guard_common::{PortCounts, SourceKey};
use ipnet::IpNet;

use crate::{
    config::{BucketPolicy, Rate, Settings, SourceLimits, SynCookies},
    error::usage,
    host::{
        clock::unix_now,
        conntrack::{
            ctnetlink,
            knobs::{KnobError, Knobs},
        },
        files::HostFiles,
        iface::{self, Interface},
        listeners, local,
        lock::PidLock,
        netns::Scope,
        nft, notrack,
        restore::{self, Record},
        status_file, synproxy,
    },
    model::{
        conntrack::{BUCKETS, MAX, TCP_LOOSE, Table, Timeout, percent, timeout_key},
        devices::{self, Mac},
        firewall::AckState,
        level::Level,
        nft::{OwnAck, Proto, RUN_NOTRACK_TABLE, SYNPROXY_TABLE, SynproxyOptions},
        paths::{KNOBS_LOCK, RUNTIME_DIR},
        policy::{self, Action, Observation, PolicyConfig, State, XdpCounts, XdpLimits},
        ports::{OpenPorts, port_list},
        sizing,
        status::{self, LoggedDecision, Status},
        tcp::SYNACK_RETRIES,
    },
};

mod cookies;
use cookies::{Ports, decide_cookies, early_drops, plural};

/// What the run loop must do after a tick.
pub struct Tick {
    pub next: std::time::Duration,
    /// New XDP limits to write into every attachment (global already
    /// divided among them).
    pub limits: Option<XdpLimits>,
}

pub struct Controller<'a> {
    knobs: Knobs<'a>,
    cfg: PolicyConfig,
    state: State,
    record: Record,
    runtime_dir: PathBuf,
    dry_run: bool,
    interfaces: u64,
    started: Instant,
    /// Knobs already reported read-only: said once, then skipped.
    read_only: BTreeSet<String>,
    /// The last decisions, for the published status.
    recent: VecDeque<LoggedDecision>,
    ports: Ports,
    /// Problems already reported once (listeners that cannot be read,
    /// ports past the slots).
    reported: BTreeSet<String>,
    /// Whether conntrack tracked no connection when guard started
    /// (`ctnetlink::tracks_now`): a connection made before may have no
    /// entry, and is given one before conntrack is strict about it
    /// (`Ports::told`).
    conntrack_was_off: bool,
    synproxy: SynproxyOptions,
    /// `--synack-retries`: `tcp_synack_retries` at most this while a port
    /// is armed.
    synack_retries: u64,
    /// Ports the notrack table covers for this run (empty: no table).
    notrack_ports: Vec<u16>,
    /// Tables found gone (a `flush ruleset`) and installed again.
    nft_reinstalled: u64,
    /// The knobs lock, while this guard is the one that drives the global
    /// knobs (`nf_conntrack_max`, the hash size); `None` while another
    /// guard on the host does.
    globals: Option<PidLock>,
    /// The highest level among the fleet's other members (`--fleet`).
    neighbours: Level,
    /// The protected namespace's devices, for the host's MACs, and its
    /// local routes, each read again only once the kernel says they
    /// changed.
    links: iface::LinkCache,
    local_routes: local::LocalCache,
}

/// Takes the host's knobs lock if no other guard holds it; says who does
/// otherwise, if `say`.
fn take_globals(say: bool) -> Option<PidLock> {
    let path = Path::new(RUNTIME_DIR).join(KNOBS_LOCK);
    let taken = PidLock::acquire(&path, "").ok();
    if taken.is_none() && say {
        tracing::info!(
            "nf_conntrack_max and the hash size are global, and another guard here drives them (pid {}): this one drives its namespace's timeouts and its XDP limits, and takes them over if that guard stops",
            PidLock::holder(&path).map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        );
    }
    taken
}

impl<'a> Controller<'a> {
    /// Reads the table, checks the memory budget, records every original
    /// value and sizes the hash buckets (start-up is the only time a resize
    /// is cheap). Nothing is changed in a dry run.
    pub fn start(
        knobs: Knobs<'a>,
        settings: &Settings,
        interfaces: usize,
        runtime_dir: PathBuf,
    ) -> Result<Self> {
        let table = knobs.table().context("reading the conntrack table")?;
        let host = HostFiles::live();
        let entry_bytes = sizing::entry_bytes(host.conntrack_entry_bytes());
        let ram = host
            .ram_bytes()
            .map_err(|e| anyhow!(e))
            .context("reading MemTotal")?;
        let ct = &settings.conntrack;
        let budget = sizing::budget_for(ct.memory_mib, ram, entry_bytes, table.buckets, table.max)
            .map_err(|why| usage(anyhow!(why)))?;
        let globals = take_globals(true);
        let mut record = Record {
            pid: std::process::id(),
            netns: knobs.scope().name().map(str::to_owned),
            global: if globals.is_some() {
                [
                    (MAX.to_owned(), table.max),
                    (BUCKETS.to_owned(), table.buckets),
                ]
                .into()
            } else {
                BTreeMap::new()
            },
            local: Timeout::ALL
                .iter()
                .map(|t| (timeout_key(*t), u64::from(table.timeouts.get(*t))))
                .collect(),
            notrack: !ct.notrack_ports.is_empty(),
            synproxy: false,
        };
        let cookies = decide_cookies(&knobs, settings, true, &mut record);
        let cfg = PolicyConfig {
            target: ct.target,
            ceiling: budget.ceiling,
            original_max: table.max,
            original_timeouts: table.timeouts,
            calm: ct.calm,
            source: settings.source,
            prefix: settings.prefix,
            limits_always: settings.source_limits == SourceLimits::Always,
            global: settings.global,
            cookies,
        };
        tracing::info!(
            "conntrack{}: {table}; ceiling {} entries ({} MiB at {entry_bytes} bytes an entry); keeping fill below {:.0}%{}",
            knobs.scope().suffix(),
            budget.ceiling,
            budget.mib(),
            ct.target,
            if ct.dry_run {
                "; dry run: nothing will be changed"
            } else {
                ""
            }
        );
        let mut controller = Self {
            state: State::initial(&cfg),
            knobs,
            cfg,
            record,
            runtime_dir,
            dry_run: ct.dry_run,
            interfaces: u64::try_from(interfaces.max(1)).unwrap_or(1),
            started: Instant::now(),
            read_only: BTreeSet::new(),
            recent: VecDeque::with_capacity(status::RECENT),
            ports: Ports::new(settings.cookies.ports.clone(), settings.open_ports.clone()),
            reported: BTreeSet::new(),
            conntrack_was_off: false,
            synproxy: SynproxyOptions {
                mss: settings.cookies.mss,
                wscale: settings.cookies.wscale(),
                own_ack: if settings.cookies.tsecr_checked {
                    OwnAck::Strip
                } else {
                    OwnAck::Pass
                },
            },
            synack_retries: u64::from(settings.cookies.synack_retries),
            notrack_ports: Vec::new(),
            nft_reinstalled: 0,
            globals,
            neighbours: Level::Normal,
            links: iface::link_cache(),
            local_routes: local::local_cache(),
        };
        if !controller.dry_run {
            controller.record.save(&controller.runtime_dir)?;
        }
        // Before any table of guard's switches conntrack on; with cookies
        // off too, which a reload to enforce mode may bring on.
        controller.conntrack_was_off = !controller.dry_run && !controller.tracks_now();
        if controller.conntrack_was_off {
            tracing::info!(
                "conntrack tracks no connection{} (nothing here uses it, or not for IPv4 and IPv6 both): a port's connections are given entries before SYN cookies make conntrack strict about them",
                controller.knobs.scope().suffix()
            );
        }
        controller.size_buckets(ct.buckets, table.buckets, budget.ceiling);
        controller.install_notrack(&ct.notrack_ports)?;
        Ok(controller)
    }

    /// `--notrack-port`: conntrack skips these ports while guard runs.
    fn install_notrack(&mut self, ports: &[u16]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            tracing::info!("dry run: would install notrack rules for {ports:?}");
            return Ok(());
        }
        notrack::install(self.knobs.scope(), RUN_NOTRACK_TABLE, ports, Proto::Both)?;
        self.notrack_ports = ports.to_vec();
        // Their SYNs and datagrams open no entry: no new flows to limit.
        self.ports.untracked_own(ports);
        tracing::info!(
            "conntrack skips ports {ports:?}{} (table inet {RUN_NOTRACK_TABLE}): their SYNs and UDP datagrams pass without limits, and they get no SYN cookies",
            self.knobs.scope().suffix(),
        );
        Ok(())
    }

    fn size_buckets(&mut self, policy: BucketPolicy, current: u64, ceiling: u64) {
        let wanted = match policy {
            BucketPolicy::Keep => return,
            BucketPolicy::Quarter => sizing::quarter(ceiling),
            BucketPolicy::Equal => ceiling,
        };
        if current >= wanted {
            return;
        }
        let verb = if self.dry_run { "would size" } else { "sizing" };
        tracing::info!(
            "{verb} nf_conntrack_buckets {current} -> {wanted} at start-up (a resize rehashes the whole table under locks: never under pressure)"
        );
        if !self.dry_run {
            self.write(BUCKETS, wanted, false);
        }
    }

    /// One tick: read, decide, act, log. `port_counts` are the port
    /// table's counters, by port, summed over the attachments;
    /// `write_ports` puts a new port table (port -> `GUARD_PORTS` entry,
    /// and the `OPEN_MARKED_*` bits) into every attachment, so that what is
    /// logged as armed is armed, and says whether every one took it.
    pub fn tick(
        &mut self,
        xdp: XdpCounts,
        port_counts: &BTreeMap<u16, PortCounts>,
        write_ports: &mut dyn FnMut(&BTreeMap<u16, u32>, u8) -> bool,
    ) -> Result<Tick> {
        let table = self.knobs.table().context("reading the conntrack table")?;
        self.refresh_listeners();
        let obs = Observation {
            at: self.started.elapsed(),
            count: table.count,
            max: table.max,
            stats: table.stats,
            // A SYN answered with a cookie makes no entry: not a new flow
            // the table has to hold.
            xdp: XdpCounts {
                new_flows: xdp.new_flows.saturating_sub(xdp.cookies_sent),
                ..xdp
            },
            neighbours: self.neighbours,
        };
        let decision = policy::decide(&self.cfg, &self.state, &obs);
        let level_changed = decision.level != self.state.level;
        if level_changed || !decision.actions.is_empty() {
            let mut line = decision.describe(table.max);
            if self.dry_run {
                line.insert_str(0, "dry run: ");
            }
            self.log_decision(decision.level, line);
        }
        let mut limits = None;
        for action in &decision.actions {
            match action {
                Action::SetMax { to, .. } if !self.dry_run => self.write(MAX, *to, false),
                Action::SetTimeouts { from, to } if !self.dry_run => {
                    for t in Timeout::ALL {
                        if from.get(t) != to.get(t) {
                            self.write(&timeout_key(t), u64::from(to.get(t)), true);
                        }
                    }
                }
                Action::SetXdpLimits(wanted) if !self.dry_run => {
                    let share = |n: u64| (n / self.interfaces).max(1);
                    let global = Rate {
                        rate: share(wanted.global.rate),
                        burst: u32::try_from(share(u64::from(wanted.global.burst)))
                            .unwrap_or(u32::MAX),
                    };
                    limits = Some(XdpLimits { global, ..*wanted });
                }
                _ => {}
            }
        }
        let flood = decision.next.applied.limits.cookies;
        self.state = decision.next;
        self.arm_ports(obs.at, port_counts, flood, obs.count, write_ports);
        self.keep_tables();
        self.publish(&table);
        Ok(Tick {
            next: decision.next_tick,
            limits,
        })
    }

    /// Logs a decision (with the pressure level as a field: journald's
    /// LEVEL) and keeps it for the status.
    fn log_decision(&mut self, level: Level, line: String) {
        tracing::info!(level = level.name(), "{line}");
        if self.recent.len() == status::RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(LoggedDecision {
            at: unix_now(),
            line,
        });
    }

    /// The listening ports of the protected namespace, narrowed by
    /// `--cookie-port`, into the port table, with the open ports of both
    /// protocols. A failed reading of the TCP listeners keeps the last
    /// one; UDP's unread, no UDP port is taken as closed.
    fn refresh_listeners(&mut self) {
        let listening = match read_in(self.knobs.scope(), listeners::listening_ports) {
            Ok(ports) => ports,
            Err(e) => {
                self.report_once(&format!(
                    "reading the listening TCP ports (sock_diag): {e:#}"
                ));
                return;
            }
        };
        let udp = match read_in(self.knobs.scope(), listeners::udp_ports) {
            Ok(udp) => Some(udp.ports),
            Err(e) => {
                self.report_once(&format!(
                    "reading the UDP ports bound (sock_diag): {e:#}: no UDP port is taken as closed"
                ));
                None
            }
        };
        // The ruleset: its nat rules for the ports that may get cookies and
        // the ports published, its notrack rules for the ports whose flows
        // open no entry.
        if !self.dry_run
            && let Some(problem) =
                self.ports
                    .read_nat(self.knobs.scope(), &listening.ports, Instant::now())
            && self.cfg.cookies != SynCookies::Never
        {
            self.report_once(&problem);
        }
        if !self.ports.nat_known
            && let Some(what) = &self.ports.nat_unread
        {
            let line = format!(
                "{what} could not be read: no port counts as closed, since a port the nat rules publish has no socket here"
            );
            self.report_once(&line);
        }
        // Until the nat rules have been read whole (a dry run reads none),
        // no published port is known: none is marked open, and every port
        // stays open as before.
        if self.ports.nat_known {
            let open = OpenPorts::of(
                &listening.ports,
                udp.as_ref(),
                &self.ports.nat,
                &self.ports.declared,
            );
            self.ports.table.set_open(open);
        }
        for problem in self.ports.listening(listening) {
            self.report_once(&problem);
        }
    }

    /// Reads the protected namespace's `local` routes (`host::local`;
    /// again only once a route or an address changed),
    /// which tell the cookie path, and the closed ports' budget, the host's
    /// destinations from a macvlan container's or a bridged VM's, and has
    /// `write` put them into every attachment. A failure is reported once;
    /// the tries keep what they hold (or, after a failed write, take every
    /// destination as the host's).
    pub fn refresh_local_routes(&mut self, write: &mut dyn FnMut(&BTreeSet<IpNet>) -> Result<()>) {
        if self.dry_run {
            return;
        }
        let found = read_in(self.knobs.scope(), || {
            local::watched_local_prefixes(&mut self.local_routes)
        })
        .context("reading the local routes (rtnetlink)");
        if let Err(e) = found.and_then(|routes| write(&routes)) {
            self.report_once(&format!(
                "{e:#}: the cookie path and the closed ports' budget take every destination as this host's"
            ));
        }
    }

    /// Reads the guarded interfaces and the protected namespace's VLAN and
    /// macvlan devices (`host::iface::LinkCache`: again only once one
    /// changed) and has `write` put each
    /// guarded interface's own link-layer addresses (`model::devices`)
    /// into its program, by the interface's place in `ifaces`: frames for
    /// other devices (a macvlan container's, a macvtap VM's) then pass
    /// with no limit. Where the addresses cannot be known, every frame
    /// stays the host's, and the log says why once.
    pub fn refresh_host_macs(
        &mut self,
        ifaces: &[&Interface],
        write: &mut dyn FnMut(usize, &[Mac]) -> Result<()>,
    ) {
        let links = read_in(self.knobs.scope(), || {
            iface::watched_links(&mut self.links, ifaces)
        })
        .context("reading the namespace's devices (rtnetlink)");
        let links = match links {
            Ok(links) => links,
            Err(e) => {
                self.report_once(&format!(
                    "{e:#}: frames for other devices' addresses are limited as the host's"
                ));
                return;
            }
        };
        for (i, iface) in ifaces.iter().enumerate() {
            let macs = devices::host_macs(&links, iface.index).unwrap_or_else(|why| {
                self.note_once(&format!(
                    "{}: frames for other devices' addresses are limited as the host's: {why}",
                    iface.name
                ));
                Vec::new()
            });
            if let Err(e) = write(i, &macs) {
                self.report_once(&format!("{}: {e:#}", iface.name));
            }
        }
    }

    /// Says once, as information, what the controller cannot do here by
    /// the host's design (not a fault).
    fn note_once(&mut self, note: &str) {
        if !self.reported.contains(note) {
            tracing::info!("{note}");
            self.reported.insert(note.to_owned());
        }
    }

    fn report_once(&mut self, problem: &str) {
        if !self.reported.contains(problem) {
            tracing::warn!("{problem}");
            self.reported.insert(problem.to_owned());
        }
    }

    /// Arms and disarms ports, a port in the SYNPROXY rules from before it
    /// is armed until a tick after it is disarmed.
    fn arm_ports(
        &mut self,
        at: std::time::Duration,
        counts: &BTreeMap<u16, PortCounts>,
        flood: bool,
        entries: u64,
        write_ports: &mut dyn FnMut(&BTreeMap<u16, u32>, u8) -> bool,
    ) {
        let mode = if self.dry_run {
            SynCookies::Never
        } else {
            self.cfg.cookies
        };
        // On where it tracked connections when guard started, or since our
        // table went in.
        let conntrack_on = self.record.synproxy || !self.conntrack_was_off;
        // No conntrack entry: no connection of a previous SYNPROXY to carry
        // on, and the table would turn conntrack on where nothing uses it.
        if mode != SynCookies::Never && !self.record.synproxy && entries > 0 {
            self.synproxy_no_port(
                "SYNPROXY table in place, no port yet",
                ": connections SYNPROXY completed before keep working",
            );
        }
        self.ports
            .table
            .step(at, counts, mode, flood, self.cfg.calm);
        let mut armed = self.ports.table.armed();
        let rules: BTreeSet<u16> = armed.union(&self.ports.armed).copied().collect();
        let wild = self.ports.wild(&rules);
        if rules != self.ports.rules || wild != self.ports.wild {
            // The ports whose connections conntrack will not pick up
            // mid-stream: those it is made strict for, or all of them where
            // the host keeps it strict.
            let strict: BTreeSet<u16> = if self.record.local.get(TCP_LOOSE) == Some(&0) {
                rules.clone()
            } else {
                rules.difference(&wild).copied().collect()
            };
            // The table switches conntrack on, and the connections made
            // before have no entry: strict about lone ACKs, conntrack would
            // never pick them up, and the armed ports' rules drop what it
            // does not know. The ports are armed a tick later: a handshake
            // under way meanwhile completes (where conntrack is loose,
            // picked up).
            let switch_on = !conntrack_on && !strict.is_empty();
            if switch_on {
                self.synproxy_no_port(
                    "SYNPROXY table in place, no port yet",
                    &format!(
                        ": conntrack is on from now, and port{} {} get{} cookies a tick later, once conntrack holds the connections made before",
                        plural(strict.len()),
                        port_list(strict.iter().copied()),
                        if strict.len() == 1 { "s" } else { "" },
                    ),
                );
            }
            // Conntrack is told of them wherever it tracked nothing when
            // guard started (also where a guard that stopped took the
            // table, and conntrack's hooks, away and left its entries
            // behind), once for each port.
            let untold: BTreeSet<u16> = strict.difference(&self.ports.told).copied().collect();
            if self.conntrack_was_off && !untold.is_empty() {
                self.track_connections(&untold);
                self.ports.told.extend(untold);
            }
            if rules.is_empty() {
                self.cookies_off();
                self.ports.rules = rules;
            } else if switch_on {
                self.ports.table.keep_armed(&self.ports.rules);
                armed = self.ports.table.armed();
            } else if self.cookies_on(&rules, wild) {
                self.ports.rules = rules;
            } else {
                // Without the rules the handshakes cannot complete: only the
                // ports they already cover stay armed, and the next tick
                // tries again.
                self.ports.table.keep_armed(&self.ports.rules);
                armed = self.ports.table.armed();
            }
        }
        // Kept as written only once every attachment took it: a failed
        // write is tried again at the next tick.
        let written = (self.ports.table.entries(), self.ports.table.marked());
        if written != self.ports.written && write_ports(&written.0, written.1) {
            self.ports.written = written;
        }
        for line in self.ports.changes(&armed, mode) {
            self.log_decision(self.state.level, line);
        }
        self.ports.armed = armed;
    }

    fn publish(&self, table: &Table) {
        let applied = &self.state.applied;
        let status = Status {
            pid: std::process::id(),
            updated: unix_now(),
            netns: self.knobs.scope().name().map(str::to_owned),
            count: table.count,
            max: table.max,
            fill: percent(table.count, table.max),
            target: self.cfg.target,
            level: self.state.level,
            dry_run: self.dry_run,
            global: (applied.limits.global.rate > 0).then_some(applied.limits.global),
            source: applied.limits.source,
            cookie_ports: self.ports.armed.iter().copied().collect(),
            open_ports: self.ports.table.open().ranges(),
            nft_reinstalled: self.nft_reinstalled,
            stats: table.stats,
            recent: self.recent.clone(),
        };
        status_file::publish(&self.runtime_dir, &status);
    }

    /// Installs again a table of guard's that is gone: Debian's
    /// nftables.service, say, runs `flush ruleset` on reload, which would
    /// silently take the notrack rules or SYN cookies' SYNPROXY with it.
    fn keep_tables(&mut self) {
        let wanted = [
            (RUN_NOTRACK_TABLE, !self.notrack_ports.is_empty()),
            // Dormant too: it keeps the connections SYNPROXY made working.
            (SYNPROXY_TABLE, self.record.synproxy),
        ];
        if wanted.iter().all(|(_, on)| !on) {
            return;
        }
        let tables = match nft::inet_tables(self.knobs.scope()) {
            Ok(tables) => tables,
            Err(e) => {
                self.report_once(&format!("listing the nftables tables: {e:#}"));
                return;
            }
        };
        for (table, on) in wanted {
            if !on || tables.iter().any(|t| t == table) {
                continue;
            }
            let installed = if table == RUN_NOTRACK_TABLE {
                notrack::install(
                    self.knobs.scope(),
                    RUN_NOTRACK_TABLE,
                    &self.notrack_ports,
                    Proto::Both,
                )
            } else {
                let (rules, mut wild) = (self.ports.rules.clone(), self.ports.wild.clone());
                let installed = self.install_synproxy(&rules, &mut wild);
                self.ports.wild = wild;
                installed
            };
            let scope = self.knobs.scope();
            match installed {
                Ok(()) => {
                    self.nft_reinstalled += 1;
                    tracing::warn!(
                        "nftables table inet {table}{} was gone (a `flush ruleset`?): installed it again",
                        scope.suffix()
                    );
                }
                Err(e) => tracing::error!("installing table inet {table} again: {e:#}"),
            }
        }
    }

    /// Writes a knob; a read-only one is reported once and skipped after.
    /// A global one only while this guard holds the knobs lock.
    fn write(&mut self, key: &str, value: u64, local: bool) {
        if self.read_only.contains(key) || (!local && !self.own_globals()) {
            return;
        }
        let result = if local {
            self.knobs.set_local(key, value)
        } else {
            self.knobs.set_global(key, value)
        };
        match result {
            Ok(()) => {}
            Err(e @ KnobError::ReadOnly { .. }) => {
                tracing::warn!("{e}: the controller goes on without it");
                self.read_only.insert(key.to_owned());
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Records the SYNPROXY table first: `guard restore` cleans up a crash.
    fn record_synproxy(&mut self) {
        if !self.record.synproxy {
            self.record.synproxy = true;
            if let Err(e) = self.record.save(&self.runtime_dir) {
                tracing::error!("{e}");
            }
        }
    }

    /// The SYNPROXY table with no port in it, kept for the connections
    /// SYNPROXY completed (`model::nft::synproxy_script`); logged as
    /// `head`, the scope, `tail`.
    fn synproxy_no_port(&mut self, head: &str, tail: &str) {
        self.record_synproxy();
        match self.install_synproxy(&BTreeSet::new(), &mut BTreeSet::new()) {
            Ok(()) => tracing::info!(
                "{head}{}{tail} (table inet {SYNPROXY_TABLE})",
                self.knobs.scope().suffix()
            ),
            Err(e) => tracing::error!("installing the SYNPROXY table with no port: {e:#}"),
        }
    }

    /// Installs (or replaces) the SYNPROXY rules for `ports`, of which
    /// `wild` have their cookie ACKs untracked by socket lookup. Where the
    /// rules cannot be installed, their optional parts go one at a time,
    /// each said once and gone from then on: the blanking of SYNPROXY's own
    /// ACK's timestamp (an nft or kernel without `reset tcp option`: the ACK
    /// is dropped instead), then that drop (an nft without TCP option
    /// matches), then the socket lookup (an old kernel without nft_socket;
    /// `wild` is cleared: every port strict).
    fn install_synproxy(&mut self, ports: &BTreeSet<u16>, wild: &mut BTreeSet<u16>) -> Result<()> {
        loop {
            let lookup = self.ports.socket_lookup;
            let Err(e) = synproxy::install(
                self.knobs.scope(),
                ports,
                wild,
                self.ports.table.forwarded(),
                lookup,
                self.synproxy,
            ) else {
                return Ok(());
            };
            let suffix = self.knobs.scope().suffix();
            let said = if self.synproxy.own_ack == OwnAck::Strip {
                self.synproxy.own_ack = OwnAck::Drop;
                format!(
                    "the SYNPROXY rule that blanks the timestamp of SYNPROXY's own ACK to the server could not be installed{suffix} ({e:#}): the rules drop that ACK instead, and a server that speaks first waits for its SYN-ACK's retransmission (a second) on each connection through a cookie"
                )
            } else if self.synproxy.own_ack == OwnAck::Drop {
                self.synproxy.own_ack = OwnAck::Pass;
                format!(
                    "the SYNPROXY rules that drop SYNPROXY's own ACK to the server could not be installed{suffix} ({e:#}): a client's first segment after a cookie's handshake waits, now and then, for the server's SYN-ACK retransmission"
                )
            } else if lookup {
                self.ports.socket_lookup = false;
                wild.clear();
                format!(
                    "nftables' socket expression is unavailable{suffix} ({e:#}): conntrack is strict about lone ACKs (nf_conntrack_tcp_loose 0) while any port is armed"
                )
            } else {
                return Err(e);
            };
            self.report_once(&said);
        }
    }

    /// Installs the SYNPROXY rules for `ports` (`wild`: those whose cookie
    /// ACKs they untrack by socket lookup) before XDP starts answering
    /// SYNs, and makes conntrack strict about lone ACKs while a port not
    /// `wild` is among them; false if it could not.
    fn cookies_on(&mut self, ports: &BTreeSet<u16>, mut wild: BTreeSet<u16>) -> bool {
        self.record_synproxy();
        // Strict before rules that no longer untrack a port's cookie ACKs
        // (its listener now bound to one address): an ACK between the two
        // would be tracked, and SYNPROXY would never see it. Loose again
        // only after rules that untrack them all.
        if ports.difference(&wild).next().is_some() {
            self.strict_acks(true);
        }
        if let Err(e) = self.install_synproxy(ports, &mut wild) {
            tracing::error!("installing the SYNPROXY rules for SYN cookies: {e:#}");
            // The rules in place stay: loose again if none of theirs is
            // strict.
            let strict = self
                .ports
                .rules
                .difference(&self.ports.wild)
                .next()
                .is_some();
            self.strict_acks(strict);
            return false;
        }
        let strict: Vec<u16> = ports.difference(&wild).copied().collect();
        self.strict_acks(!strict.is_empty());
        let synacks = self.short_synacks(true);
        let (forwarded, bound): (Vec<u16>, Vec<u16>) = strict
            .iter()
            .partition(|p| self.ports.table.forwarded().contains(p));
        let mut strictly = String::new();
        for (ports, why) in [
            (bound, "a listener bound to one address"),
            (forwarded, "forwarded by the nat rules"),
        ] {
            if !ports.is_empty() {
                let _ = write!(
                    strictly,
                    "; nf_conntrack_tcp_loose 0 for port{} {} ({why})",
                    plural(ports.len()),
                    port_list(ports.iter().copied())
                );
            }
        }
        if let Some(retries) = synacks {
            let _ = write!(
                strictly,
                "; {SYNACK_RETRIES} {retries} (spoofed requests leave the server's SYN queue sooner)"
            );
        }
        tracing::info!(
            "SYNPROXY completes cookie handshakes to ports {}{} (table inet {}){strictly}",
            port_list(ports.iter().copied()),
            self.knobs.scope().suffix(),
            SYNPROXY_TABLE
        );
        let states: Vec<AckState> = [
            (!strict.is_empty()).then_some(AckState::Invalid),
            (!wild.is_empty()).then_some(AckState::Untracked),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.ports.wild = wild;
        self.check_firewall(&states);
        true
    }

    /// Whether conntrack tracks connections in the namespace now; if it
    /// cannot tell, said, and taken as not.
    fn tracks_now(&self) -> bool {
        read_in(self.knobs.scope(), ctnetlink::tracks_now).unwrap_or_else(|e| {
            tracing::warn!(
                "whether conntrack tracks connections{} cannot be read ({e:#}): the connections to a port are given entries before conntrack is strict about them",
                self.knobs.scope().suffix()
            );
            false
        })
    }

    /// Tells conntrack of the established connections to `ports` it holds
    /// no entry for.
    fn track_connections(&mut self, ports: &BTreeSet<u16>) {
        let timeout = self.state.applied.timeouts.get(Timeout::TcpEstablished);
        let started = Instant::now();
        let tracked = read_in(self.knobs.scope(), || {
            let connections = listeners::established(ports)?;
            ctnetlink::track_established(&connections, timeout).map(|n| (n, connections.len()))
        });
        let to = format!(
            "port{} {}",
            plural(ports.len()),
            port_list(ports.iter().copied())
        );
        match tracked {
            Ok((0, _)) => {}
            Ok((n, of)) => tracing::info!(
                "conntrack held no entry for {n} of the {of} connection{} to {to}: each given one ({} ms)",
                plural(of),
                started.elapsed().as_millis()
            ),
            Err(e) => tracing::error!("telling conntrack of the connections to {to}: {e:#}"),
        }
    }

    /// Conntrack strict about lone ACKs (`tcp_loose` 0), for the cookie
    /// ACKs of a port the SYNPROXY rules do not untrack, or back to the
    /// value recorded before guard changed it.
    fn strict_acks(&mut self, strict: bool) {
        let loose = if strict {
            Some(0)
        } else {
            self.record.local.get(TCP_LOOSE).copied()
        };
        if let Some(loose) = loose {
            self.write(TCP_LOOSE, loose, true);
        }
    }

    /// The server's SYN-ACK retransmissions cut to `--synack-retries`
    /// while a port is `armed`, or back
    /// to the value recorded before guard changed them (none recorded:
    /// left alone). The value written while armed, if it is less than the
    /// recorded one.
    fn short_synacks(&mut self, armed: bool) -> Option<u64> {
        let recorded = *self.record.local.get(SYNACK_RETRIES)?;
        let value = if armed {
            recorded.min(self.synack_retries)
        } else {
            recorded
        };
        self.write(SYNACK_RETRIES, value, true);
        (value < recorded).then_some(value)
    }

    /// Says, once per chain, which of the host's own rules drop the
    /// cookie handshakes' ACKs, in `states`, before SYNPROXY sees them.
    fn check_firewall(&mut self, states: &[AckState]) {
        for warning in early_drops(self.knobs.scope(), states) {
            self.report_once(&warning);
        }
    }

    /// Once XDP no longer answers SYNs: `tcp_loose` goes back, and the
    /// SYNPROXY table stays with no port until guard stops (why:
    /// `model::nft::synproxy_script`).
    fn cookies_off(&mut self) {
        self.synproxy_no_port(
            "SYNPROXY covers no port",
            "; its table stays until guard stops, for the connections it made",
        );
        self.ports.wild.clear();
        self.strict_acks(false);
        self.short_synacks(false);
    }

    /// The pressure level now.
    #[must_use]
    pub fn level(&self) -> Level {
        self.state.level
    }

    /// Whether any attachment can send SYN cookies (each said why not
    /// when attached). If none can, no port is armed and no SYNPROXY rule
    /// installed for the life of this run.
    pub fn xdp_can_reply(&mut self, can: bool, settings: &Settings) {
        self.ports.xdp_can_reply = can;
        if !can {
            self.cfg.cookies = decide_cookies(&self.knobs, settings, false, &mut self.record);
        }
    }

    /// Takes a reloaded configuration: new target, calm and operator limits.
    /// The next tick writes the XDP limits again on top of them.
    pub fn reconfigure(&mut self, settings: &Settings) {
        self.cfg.target = settings.conntrack.target;
        self.cfg.calm = settings.conntrack.calm;
        self.cfg.source = settings.source;
        self.cfg.prefix = settings.prefix;
        self.cfg.limits_always = settings.source_limits == SourceLimits::Always;
        self.cfg.global = settings.global;
        self.ports.declared.clone_from(&settings.open_ports);
        // The mode may have changed: cookies come on in enforce mode and
        // go off in monitor mode from the next tick.
        let recorded = self.record.local.len();
        self.cfg.cookies = decide_cookies(
            &self.knobs,
            settings,
            self.ports.xdp_can_reply,
            &mut self.record,
        );
        if self.record.local.len() > recorded
            && !self.dry_run
            && let Err(e) = self.record.save(&self.runtime_dir)
        {
            tracing::error!("{e}");
        }
        // The reload wrote the configured limits into the program: the next
        // tick writes the level's again.
        self.state.applied.limits = XdpLimits {
            global: Rate::OFF,
            source: settings.source,
            prefix: settings.prefix,
            cookies: false,
            verify: false,
        };
    }

    /// Sources were banned: free the table of their entries now rather
    /// than when they time out (one dump for the whole batch).
    pub fn sources_banned(&self, sources: &[SourceKey]) {
        let names = || {
            sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.dry_run {
            tracing::info!("dry run: would delete the conntrack entries of {}", names());
            return;
        }
        let started = Instant::now();
        match self
            .knobs
            .scope()
            .run(|| ctnetlink::delete_sources(sources))
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                "deleted {n} conntrack entries of banned {} ({} ms)",
                names(),
                started.elapsed().as_millis()
            ),
            Ok(Err(e)) => tracing::error!("deleting the conntrack entries of {}: {e}", names()),
            Err(e) => tracing::error!("deleting the conntrack entries of {}: {e}", names()),
        }
    }

    /// The fleet's other members' highest level, and who is at it; said
    /// when it changes.
    pub fn set_neighbours(&mut self, neighbours: Option<&(Level, String)>) {
        let level = neighbours.map_or(Level::Normal, |(l, _)| *l);
        if level != self.neighbours {
            match neighbours {
                Some((l, who)) if *l >= Level::High => tracing::info!(
                    "fleet: {who} is at {l}: this guard holds itself at elevated at least until the fleet calms"
                ),
                _ => tracing::info!("fleet: the neighbours are at {level}"),
            }
        }
        self.neighbours = level;
    }

    /// True while this guard drives the global knobs; takes them over,
    /// recording their values first, when the guard that drove them has
    /// stopped (and put them back).
    fn own_globals(&mut self) -> bool {
        if self.globals.is_some() {
            return true;
        }
        let Some(lock) = take_globals(false) else {
            return false;
        };
        let (Ok(max), Ok(buckets)) = (self.knobs.global(MAX), self.knobs.global(BUCKETS)) else {
            return false;
        };
        self.record.global = [(MAX.to_owned(), max), (BUCKETS.to_owned(), buckets)].into();
        if !self.dry_run
            && let Err(e) = self.record.save(&self.runtime_dir)
        {
            tracing::error!("{e:#}: leaving the global knobs alone");
            return false;
        }
        tracing::info!(
            "took over nf_conntrack_max ({max}) and the hash size ({buckets}): the guard that drove them stopped"
        );
        self.globals = Some(lock);
        true
    }

    /// Puts every recorded value back and removes the state file; the
    /// global knobs' lock goes last, after their values are back.
    pub fn restore(self) {
        status_file::remove(&self.runtime_dir);
        if self.dry_run {
            return;
        }
        let report = restore::restore_in(&self.record, self.knobs.scope());
        for line in &report.restored {
            tracing::info!("restored {line}");
        }
        for line in &report.problems {
            tracing::warn!("{line}");
        }
        if let Err(e) = Record::remove(&self.runtime_dir) {
            tracing::error!("{e}");
        }
    }
}

/// `read`, run in the protected namespace (`scope`, the controller's
/// knobs'): its error and entering's are one. A function of the scope
/// alone, so that `read` may borrow the controller's caches.
fn read_in<T: Send, E>(scope: &Scope, read: impl FnOnce() -> Result<T, E> + Send) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    scope
        .run(read)
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from))
}
