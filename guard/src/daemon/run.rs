//! `guard run`: attach, control conntrack, report, and put everything back
//! on SIGINT/SIGTERM.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use guard_common::{Counter, CounterBlock, PortCounts, SourceKey, state::EVENT_BANNED};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior, interval_at, sleep_until},
};

use super::{
    controller::Controller,
    fingerprints,
    fleet::{self, Fleet},
    kept::KeptLists,
    metrics,
    reload::{self, Sources, load_settings},
};
use crate::{
    config::{Enforcement, Fingerprints, Settings, SynCookies},
    dataplane::{
        events::{self, Tagged},
        loader::{self, AttachRequest, Attached, Followed},
        pins::Layout,
    },
    error::usage,
    host::{
        clock::{monotonic_ns, unix_now, unix_now_ms},
        conntrack::knobs::{KnobError, Knobs},
        iface::Interface,
        instances::{self, NamespaceDir},
        kept_lists,
        lock::PidLock,
        netns::{NetnsError, Scope},
        notify, preflight,
        restore::{self, Record},
        status_file, synproxy,
    },
    model::{
        level::Level,
        offenders::{Offenders, describe_top},
        paths::{BPFFS, runtime_dir},
        policy::XdpCounts,
        stats::summary_line,
        status::{AttachedStatus, RunStatus},
    },
};

/// `guard run`.
pub fn run(sources: Sources<'_>) -> Result<()> {
    let (settings, _) = load_settings(sources).map_err(usage)?;
    preflight::check_privileges().map_err(usage)?;
    if let Some(name) = sources.started_in {
        tracing::info!(
            "started in netns {name} (as by `ip netns exec {name}`): running from the host's namespaces as `guard run --netns {name}` does, where the global conntrack knobs are writable and the host's commands find this guard"
        );
    }
    if Layout::ensure_bpffs().map_err(usage)? {
        // A mount namespace of its own without the host's bpffs (a
        // container's): the pins are seen from this mount namespace only.
        tracing::warn!(
            "mounted a bpf filesystem at {BPFFS}, which was not mounted here: `guard stats` and the other commands see this guard only from this mount namespace"
        );
    }
    preflight::raise_memlock_rlimit();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(sources, settings))
}

async fn serve(sources: Sources<'_>, mut settings: Settings) -> Result<()> {
    // Before anything changes, so a signal during start-up still ends in
    // the clean-up below rather than the default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;

    // One guard per network namespace: several run side by side, each
    // with its own runtime directory (ARCHITECTURE.md says how they share
    // the global conntrack knobs).
    let runtime_dir = runtime_dir(settings.netns.as_deref());
    let _claim = Claim::take(&runtime_dir, settings.netns.is_some())?;
    let scope = open_scope(&settings)?;
    host_cookie_facts(&scope, &mut settings);
    tracing::info!("{}", settings.describe());
    let _metrics = serve_metrics(&settings, &runtime_dir).await?;

    let mut controller = start_controller(&scope, &settings, &runtime_dir)?;
    let (events_tx, mut events) = mpsc::channel::<Tagged>(1024);
    let (level_tx, level) = watch::channel(Level::Normal);
    let (lifted_tx, mut lifted) = mpsc::unbounded_channel::<fingerprints::Lifted>();
    let to = (&events_tx, &level, &lifted_tx);
    let (mut attached, mut kept) = match attach_all(sources, &mut settings, &scope, to) {
        Ok(attached) => attached,
        Err(e) => {
            if let Some(c) = controller.take() {
                c.restore();
            }
            return Err(e);
        }
    };
    // The first tick before guard says it is ready: until then the program
    // holds the configured limits, not the level's (ten times them while
    // the table is calm).
    let mut next_control = Instant::now();
    if let Some(c) = controller.as_mut() {
        c.xdp_can_reply(attached.iter().any(|a| a.cookies_ok), &settings);
        next_control += control(c, &mut attached, &level_tx);
    }
    let published = Published::new(&runtime_dir, sources);
    published.run(&settings, &attached);
    notify::ready(&systemd_status(&settings, &attached));
    let mut summary = Summary::new(settings.summary_interval, &attached);
    let mut kept_ticker = tokio::time::interval(Duration::from_secs(1));
    kept_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut fleet = settings
        .fleet
        .as_ref()
        .map(|f| Fleet::start(f, &settings.allow, runtime_dir.clone()));
    let stop = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok("SIGINT"),
            _ = sigterm.recv() => break Ok("SIGTERM"),
            _ = sighup.recv() => {
                notify::reloading();
                if reload::reload(sources, &mut settings, &mut attached, controller.as_mut(), &mut kept) {
                    // The reload rebuilt the lists from the files: the
                    // peers' bans join them again.
                    if let Some(f) = fleet.as_ref()
                        && let Err(e) = kept.set_fleet(f.nets(), &mut settings, &mut attached)
                    {
                        tracing::error!("fleet: {e:#}");
                    }
                    next_control = Instant::now();
                    summary.set_period(settings.summary_interval, &attached);
                    published.run(&settings, &attached);
                    reload::log_reloaded(sources, &settings);
                }
                notify::ready(&systemd_status(&settings, &attached));
            }
            _ = summary.ticker.tick() => summary.log(&attached)?,
            _ = kept_ticker.tick() => {
                if let Err(lost) = scope.still_named() {
                    break Err(lost);
                }
                follow(&scope, &mut attached, &published, &settings);
                kept.tick(&mut settings, &mut attached);
                if let Some(f) = fleet.as_mut() {
                    unbanned_here(f, &attached);
                    let change = f.tick(kept.timed_denies(), &settings.allow);
                    fleet_changed(f, &change, &mut kept, &mut settings, &mut attached, controller.as_ref());
                    f.publish_view();
                }
            }
            Some(msg) = next_message(fleet.as_mut()) => {
                if let Some(f) = fleet.as_mut() {
                    let change = f.handle_all(msg);
                    fleet_changed(f, &change, &mut kept, &mut settings, &mut attached, controller.as_ref());
                }
            }
            () = sleep_until(next_control) => {
                let conntrack = (&mut controller, &scope, runtime_dir.as_path());
                let neighbours = fleet.as_ref().and_then(Fleet::neighbours);
                next_control = Instant::now()
                    + conntrack_tick(conntrack, &settings, &mut attached, &level_tx, neighbours.as_ref());
            }
            Some(first) = events.recv() => {
                let batch = batch(first, &mut events);
                on_events(&batch, &mut summary, controller.as_ref(), fleet.as_mut(), &settings);
            }
            Some(keys) = lifted.recv() => take_back(fleet.as_mut(), &attached, keys),
        }
    };
    shut_down(stop, published, controller, attached)
}

/// Says why guard stops (a signal, or its namespace lost: an error, exit
/// 1), restores what it changed and detaches. The namespace itself is let
/// go of after, with the scope.
fn shut_down(
    stop: Result<&str, NetnsError>,
    published: Published,
    controller: Option<Controller<'_>>,
    attached: Vec<Attached>,
) -> Result<()> {
    match &stop {
        Ok(signal) => tracing::info!("{signal}: restoring and detaching"),
        Err(lost) => tracing::error!("{lost}; restoring and detaching"),
    }
    notify::stopping();
    drop(published);
    if let Some(c) = controller {
        c.restore();
    }
    drop(attached);
    stop.map(drop).map_err(Into::into)
}

/// This guard's hold on its runtime directory: the lock, and for a
/// namespace's guard the directory itself, removed when the guard goes,
/// whether it stops or is refused after taking the lock (fields drop in
/// order: the directory while the lock is still held).
struct Claim {
    _dir: Option<NamespaceDir>,
    _lock: PidLock,
}

impl Claim {
    /// Takes the lock, then puts back what a guard killed here left, and
    /// removes what it published (a fleet view this guard, without
    /// `--fleet`, would never overwrite).
    fn take(runtime_dir: &Path, netns: bool) -> Result<Self> {
        let claim = Self {
            _lock: PidLock::instance(runtime_dir).map_err(usage)?,
            _dir: netns.then(|| NamespaceDir::new(runtime_dir.to_path_buf())),
        };
        recover(runtime_dir)?;
        instances::remove_published(runtime_dir);
        Ok(claim)
    }
}

/// The namespace guard runs in, and in it every interface named one guard
/// can attach to: refused before anything is said or changed (the
/// controller, once started, sets conntrack's knobs).
fn open_scope(settings: &Settings) -> Result<Scope> {
    let scope = Scope::open(settings.netns.as_deref()).map_err(usage)?;
    for name in &settings.ifaces {
        loader::attachable(&scope, name)?;
    }
    Ok(scope)
}

/// The window scale SYN cookies advertise: the server's own unless the
/// operator set one (`model::tcp` says why they must agree); and whether
/// the server's TCP checks a handshake's last ACK against its SYN-ACKs'
/// timestamps (`model::tcp::checks_tsecr`).
fn host_cookie_facts(scope: &Scope, settings: &mut Settings) {
    if settings.cookies.mode == SynCookies::Never {
        return;
    }
    match synproxy::host_wscale(scope) {
        Ok((host, rmem, core)) => {
            settings.cookies.host_wscale = host;
            match settings.cookies.wscale {
                None => tracing::info!(
                    "SYN cookies advertise window scale {host}, the server's own (net.ipv4.tcp_rmem max {rmem}, net.core.rmem_max {core})"
                ),
                Some(set) if set != host => tracing::warn!(
                    "--cookie-wscale {set} differs from the server's own window scale {host} (net.ipv4.tcp_rmem max {rmem}, net.core.rmem_max {core}): SYNPROXY does not translate windows, so clients of cookie handshakes {}; leave --cookie-wscale unset to follow the server",
                    if set > host {
                        "will send past the server's window and stall"
                    } else {
                        "will see smaller windows than the server offers"
                    }
                ),
                Some(_) => {}
            }
        }
        Err(e) => tracing::warn!(
            "SYN cookies advertise window scale {}: {e:#}",
            settings.cookies.wscale()
        ),
    }
    match synproxy::tsecr_checked(scope) {
        Ok(checked) => {
            settings.cookies.tsecr_checked = checked;
            if checked {
                tracing::info!(
                    "the server's TCP checks a handshake's timestamps (TcpExtTSEcrRejected): the SYNPROXY rules blank the timestamp of SYNPROXY's own ACK to it, which it would reject (to a container's published port they drop that ACK, and the client's first segment completes the handshake)"
                );
            }
        }
        Err(e) => tracing::warn!(
            "{e:#}: SYNPROXY's own ACK to the server is left to pass, as on a kernel that accepts it"
        ),
    }
}

/// The metrics endpoint, if asked for; it serves until dropped.
async fn serve_metrics(
    settings: &Settings,
    runtime_dir: &Path,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    match settings.metrics {
        Some(addr) => Ok(Some(
            metrics::bind(addr, Layout::default(), runtime_dir.to_path_buf())
                .await
                .map_err(usage)?,
        )),
        None => Ok(None),
    }
}

/// The conntrack controller, or none where conntrack is not loaded.
fn start_controller<'a>(
    scope: &'a Scope,
    settings: &Settings,
    runtime_dir: &Path,
) -> Result<Option<Controller<'a>>> {
    match Knobs::open(scope) {
        Ok(knobs) => Ok(Some(Controller::start(
            knobs,
            settings,
            settings.ifaces.len(),
            runtime_dir.to_path_buf(),
        )?)),
        Err(e @ KnobError::NotLoaded { .. }) => {
            if settings.cookies.mode == SynCookies::Always {
                return Err(usage(anyhow!(
                    "`syn-cookies = always` needs conntrack: the kernel's SYNPROXY completes the handshakes ({e})"
                )));
            }
            tracing::warn!(
                "{e}; guard runs without its conntrack controller until nf_conntrack is loaded (a firewall or a container runtime loads it with its first rule; guard looks every second)"
            );
            Ok(None)
        }
        Err(e) => Err(usage(e)),
    }
}

/// One tick of the conntrack controller; returns when the next is due.
/// Without one, since nf_conntrack was not loaded when guard started, it
/// looks for conntrack instead, and starts the controller (and its first
/// tick) once it is there: a controller that cannot start then is said
/// once a minute.
fn conntrack_tick<'a>(
    (controller, scope, runtime_dir): (&mut Option<Controller<'a>>, &'a Scope, &Path),
    settings: &Settings,
    attached: &mut [Attached],
    level: &watch::Sender<Level>,
    neighbours: Option<&(Level, String)>,
) -> Duration {
    if controller.is_none() {
        let started = match Knobs::open(scope) {
            Err(KnobError::NotLoaded { .. }) => return Duration::from_secs(1),
            Ok(knobs) => Controller::start(
                knobs,
                settings,
                settings.ifaces.len(),
                runtime_dir.to_path_buf(),
            ),
            Err(e) => Err(e.into()),
        };
        match started {
            Ok(c) => {
                tracing::info!(
                    "nf_conntrack is loaded{}: the conntrack controller starts",
                    scope.suffix()
                );
                controller
                    .insert(c)
                    .xdp_can_reply(attached.iter().any(|a| a.cookies_ok), settings);
            }
            Err(e) => {
                tracing::error!(
                    "nf_conntrack is loaded, but the conntrack controller cannot start: {e:#}"
                );
                return Duration::from_secs(60);
            }
        }
    }
    let Some(c) = controller.as_mut() else {
        return Duration::from_secs(1);
    };
    c.set_neighbours(neighbours);
    control(c, attached, level)
}

/// `first` and the events waiting behind it: they come in bursts, and one
/// conntrack dump serves every ban of a batch.
fn batch(first: Tagged, events: &mut mpsc::Receiver<Tagged>) -> Vec<Tagged> {
    let mut batch = vec![first];
    while let Ok(more) = events.try_recv() {
        batch.push(more);
    }
    batch
}

/// A batch of events: logged, banned sources' conntrack entries deleted,
/// and the fleet told. A ban made in monitor mode is only logged: the
/// program passed its packets, and its source's connections and the
/// fleet's members are left alone too.
fn on_events(
    batch: &[Tagged],
    summary: &mut Summary,
    controller: Option<&Controller<'_>>,
    fleet: Option<&mut Fleet>,
    settings: &Settings,
) {
    let banned = summary.events(batch);
    if let (Some(c), false) = (controller, banned.is_empty()) {
        c.sources_banned(&banned);
    }
    if let Some(f) = fleet {
        let until = unix_now_ms()
            .saturating_add(u64::try_from(settings.ban_duration.as_millis()).unwrap_or(u64::MAX));
        for (_, event) in batch {
            if event.kind != EVENT_BANNED {
                f.limited(&event.source);
            } else if event.monitor == 0 {
                f.banned(
                    &event.source,
                    event.time_ns,
                    until,
                    &events::describe(event),
                );
            }
        }
    }
}

/// Bans a signature lifted on `iface`: the fleet takes back those no other
/// interface of this guard still bans.
fn take_back(
    fleet: Option<&mut Fleet>,
    attached: &[Attached],
    (iface, keys): fingerprints::Lifted,
) {
    let Some(f) = fleet else {
        return;
    };
    let now = monotonic_ns();
    let others = attached.iter().filter(|a| a.iface.name != iface);
    let _ = f.lifted(&unheld(others, keys, now), now);
}

/// This guard's bans in the fleet that none of its interfaces holds any
/// more before their time (an operator's `guard unban`): the fleet takes
/// them back, as it does a ban a signature lifted.
fn unbanned_here(fleet: &mut Fleet, attached: &[Attached]) {
    let keys = fleet.own_bans();
    if keys.is_empty() {
        return;
    }
    let now = monotonic_ns();
    let lifted = unheld(attached, keys, now);
    let taken = fleet.lifted(&lifted, now);
    for (key, taken) in lifted.iter().zip(taken) {
        let fleet_side = if taken {
            "its ban is taken back from the fleet"
        } else {
            "the fleet keeps an operator's or a peer's ban of it"
        };
        tracing::info!(
            "fleet: {key} is no longer banned here, before its time (`guard unban`, or its marks pushed out by newer ones): {fleet_side}"
        );
    }
}

/// Of `keys`, those none of `interfaces` bans at `now` (one whose maps
/// cannot be read counts as banning them all), each read under one
/// mapping of its table.
fn unheld<'a>(
    interfaces: impl IntoIterator<Item = &'a Attached>,
    keys: Vec<SourceKey>,
    now: u64,
) -> Vec<SourceKey> {
    let mut held = vec![false; keys.len()];
    for a in interfaces {
        match a.dataplane.banned_keys(&keys, now) {
            Ok(bans) => held.iter_mut().zip(bans).for_each(|(h, b)| *h |= b),
            Err(_) => return Vec::new(),
        }
    }
    keys.into_iter()
        .zip(held)
        .filter_map(|(key, h)| (!h).then_some(key))
        .collect()
}

/// The fleet link's next message; never, without a fleet.
async fn next_message(fleet: Option<&mut Fleet>) -> Option<fleet::In> {
    match fleet {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// Puts the peers' bans in force into the lists and the maps, and frees
/// the conntrack table of the new ones' entries (in enforce mode).
fn fleet_changed(
    fleet: &Fleet,
    change: &fleet::Change,
    kept: &mut KeptLists,
    settings: &mut Settings,
    attached: &mut [Attached],
    controller: Option<&Controller<'_>>,
) {
    if !change.any() {
        return;
    }
    if let Err(e) = kept.set_fleet(fleet.nets(), settings, attached) {
        tracing::error!("fleet: the peers' bans are not applied: {e:#}");
        return;
    }
    // Monitor mode passes the peers' bans' packets, and keeps their
    // connections too.
    if settings.mode == Enforcement::Monitor {
        return;
    }
    if let (Some(c), false) = (controller, change.added.is_empty()) {
        let keys: Vec<SourceKey> = change
            .added
            .iter()
            .map(|net| match net {
                ipnet::IpNet::V4(n) => SourceKey::v4(n.addr().octets(), n.prefix_len()),
                ipnet::IpNet::V6(n) => SourceKey::v6(n.addr().octets(), n.prefix_len()),
            })
            .collect();
        c.sources_banned(&keys);
    }
}

/// The summary line every `--summary-interval` (0: none), with each
/// interface's sources over their limits; and the events' log, which says
/// a limited source once per interval (every 10 s without summaries).
struct Summary {
    /// `summary-interval`: 0, no lines.
    period: Duration,
    ticker: tokio::time::Interval,
    last: Vec<CounterBlock>,
    last_at: Instant,
    /// By interface name, in attachment order.
    offenders: Vec<(String, Offenders)>,
}

impl Summary {
    fn new(period: Duration, attached: &[Attached]) -> Self {
        Self {
            period,
            ticker: Self::ticker(period),
            last: vec![CounterBlock::ZERO; attached.len()],
            last_at: Instant::now(),
            offenders: attached
                .iter()
                .map(|a| (a.iface.name.clone(), Offenders::default()))
                .collect(),
        }
    }

    /// Whether summary lines are logged.
    fn on(&self) -> bool {
        !self.period.is_zero()
    }

    /// Every `period`, or every 10 s for the events' log alone (0).
    fn ticker(period: Duration) -> tokio::time::Interval {
        let period = if period.is_zero() {
            Duration::from_secs(10)
        } else {
            period
        };
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    }

    /// A reload's `summary-interval`: the next line a new interval from
    /// now, its rates over that interval (from counters read now, where
    /// lines were off).
    fn set_period(&mut self, period: Duration, attached: &[Attached]) {
        if period == self.period {
            return;
        }
        if !self.on() {
            for (a, prev) in attached.iter().zip(self.last.iter_mut()) {
                if let Ok(now) = a.dataplane.counters() {
                    *prev = now;
                }
            }
            self.last_at = Instant::now();
        }
        self.period = period;
        self.ticker = Self::ticker(period);
    }

    /// Logs a batch of events: every ban, a limited source once per
    /// interval. Returns the sources banned in enforce mode.
    fn events(&mut self, batch: &[Tagged]) -> Vec<SourceKey> {
        let mut banned = Vec::new();
        for (iface, event) in batch {
            let src = event.source.to_string();
            if event.kind == EVENT_BANNED {
                tracing::warn!(iface, src, "{iface}: {}", events::describe(event));
                if event.monitor == 0 {
                    banned.push(event.source);
                }
            } else if let Some((_, o)) = self.offenders.iter_mut().find(|(i, _)| i == iface)
                && o.limited(event.source)
            {
                tracing::warn!(iface, src, "{iface}: {}", events::describe(event));
            }
        }
        banned
    }

    fn log(&mut self, attached: &[Attached]) -> Result<()> {
        let elapsed = self.last_at.elapsed();
        self.last_at = Instant::now();
        let on = self.on();
        for ((a, prev), (_, offenders)) in attached
            .iter()
            .zip(self.last.iter_mut())
            .zip(self.offenders.iter_mut())
        {
            let top = offenders.take_top(3);
            if !on {
                continue;
            }
            let now = a.dataplane.counters()?;
            let mut line = summary_line(&a.iface.name, &now, prev, elapsed);
            if let Some(tail) = describe_top(&top) {
                line.push_str(" | ");
                line.push_str(&tail);
            }
            tracing::info!("{line}");
            *prev = now;
        }
        Ok(())
    }
}

/// What this guard is, in the runtime directory for `guard status`,
/// metrics and doctor: written at start and at every reload, removed when
/// dropped (on every way out of the run loop).
struct Published {
    dir: PathBuf,
    config: Option<String>,
    started: f64,
}

impl Published {
    fn new(dir: &Path, sources: Sources<'_>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            config: sources
                .config
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
                .map(|p| p.display().to_string()),
            started: unix_now(),
        }
    }

    fn run(&self, settings: &Settings, attached: &[Attached]) {
        let run = RunStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: self.started,
            config: self.config.clone(),
            mode: settings.mode,
            interfaces: attached
                .iter()
                .map(|a| AttachedStatus {
                    iface: a.iface.name.clone(),
                    netns: settings.netns.clone(),
                    xdp_mode: a.mode,
                    prog_id: a.prog_id,
                    egress_prog_id: a.egress_prog_id,
                    cookies_possible: a.cookies_ok,
                    gone: a.gone(),
                })
                .collect(),
        };
        status_file::publish_run(&self.dir, &run);
    }
}

/// Follows every guarded interface by its name (`Attached::follow`),
/// saying what changed, in the log, the status file and to systemd.
fn follow(scope: &Scope, attached: &mut [Attached], published: &Published, settings: &Settings) {
    let mut changed = false;
    for a in &mut *attached {
        let Some(followed) = a.follow(scope) else {
            continue;
        };
        changed = true;
        let name = format!("{}{}", a.iface.name, scope.suffix());
        match followed {
            Followed::Gone => tracing::error!(
                "{name} was deleted: nothing is guarded there until an interface of that name comes back, which guard attaches to again"
            ),
            Followed::Back => tracing::info!(
                "{name} is back (index {}): attached again in {} mode, its sources, bans and counters kept",
                a.iface.index,
                a.mode
            ),
            Followed::Refused(e) => tracing::error!(
                "{name} is back (index {}) but guard could not attach to it: {e:#}",
                a.iface.index
            ),
        }
    }
    if changed {
        published.run(settings, attached);
        notify::ready(&systemd_status(settings, attached));
    }
}

/// One line for `systemctl status`: what enforces where.
fn systemd_status(settings: &Settings, attached: &[Attached]) -> String {
    format!(
        "{} on {}",
        settings.mode,
        attached
            .iter()
            .map(|a| if a.gone() {
                format!("{} (gone)", a.iface.name)
            } else {
                format!("{} ({} XDP)", a.iface.name, a.mode)
            })
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Drop for Published {
    fn drop(&mut self) {
        status_file::remove_run(&self.dir);
    }
}

/// A guard that died without restoring left its record: put its values
/// back before starting over.
fn recover(runtime_dir: &Path) -> Result<()> {
    let Some(record) = Record::load(runtime_dir).map_err(usage)? else {
        return Ok(());
    };
    tracing::warn!(
        "guard pid {} did not exit cleanly: restoring the conntrack values it recorded",
        record.pid
    );
    let report = restore::restore(&record);
    for line in &report.restored {
        tracing::info!("restored {line}");
    }
    for line in &report.problems {
        tracing::warn!("{line}");
    }
    Record::remove(runtime_dir).map_err(usage)
}

/// Attaches to every interface. The kept lists' lock is held from reading
/// them again to pinning the maps: a list command lands before (and its
/// entry is read here) or after (and it finds the pins), never in between.
fn attach_all(
    sources: Sources<'_>,
    settings: &mut Settings,
    scope: &Scope,
    (events, level, lifted): (
        &mpsc::Sender<Tagged>,
        &watch::Receiver<Level>,
        &mpsc::UnboundedSender<fingerprints::Lifted>,
    ),
) -> Result<(Vec<Attached>, KeptLists)> {
    let _lock = kept_lists::lock()?;
    // Only the lists: every other key stays as the controller started
    // with it (a restart key changed meanwhile waits for a restart).
    let (fresh, kept) = load_settings(sources).map_err(usage)?;
    settings.allow = fresh.allow;
    settings.deny = fresh.deny;
    let settings = &*settings;
    let layout = Layout::default();
    let mut attached = Vec::new();
    for iface in &settings.ifaces {
        let mut a = loader::attach(&AttachRequest {
            scope,
            iface,
            settings,
            layout: &layout,
        })?;
        tracing::info!(
            "attached to {}{} in {} mode (program id {}); maps pinned at {}",
            a.iface.name,
            scope.suffix(),
            a.mode,
            a.prog_id,
            a.pin_dir.display()
        );
        tokio::spawn(events::forward(
            a.iface.name.clone(),
            a.take_events()?,
            events.clone(),
        ));
        if settings.fingerprints != Fingerprints::Off {
            let learner = fingerprints::learn(
                a.iface.name.clone(),
                events::Records::new(a.take_samples()?, &a.iface.name, "sample")?,
                a.pin_dir.clone(),
                settings.fingerprints,
                (level.clone(), lifted.clone()),
            );
            let iface = a.iface.name.clone();
            tokio::spawn(async move {
                if let Err(e) = learner.await {
                    tracing::error!("{iface}: fingerprints stopped: {e:#}");
                }
            });
        }
        attached.push(a);
    }
    Ok((attached, kept))
}

/// One controller tick; returns when the next is due. A failed reading is
/// logged and retried: the XDP side keeps protecting meanwhile.
fn control(
    c: &mut Controller<'_>,
    attached: &mut [Attached],
    level: &watch::Sender<Level>,
) -> Duration {
    let next = tick(c, attached);
    level.send_replace(c.level());
    next
}

fn tick(c: &mut Controller<'_>, attached: &mut [Attached]) -> Duration {
    refresh_marked(attached);
    let totals = match xdp_totals(attached) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{e:#}");
            return Duration::from_secs(1);
        }
    };
    let mut ports = BTreeMap::<u16, PortCounts>::new();
    for a in attached.iter() {
        match a.port_counts() {
            Ok(counts) => {
                for (port, c) in counts {
                    ports.entry(port).or_default().accumulate(&c);
                }
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }
    // Before the port table: a port armed at this tick meets them.
    c.refresh_local_routes(&mut |routes| {
        for a in attached.iter_mut() {
            a.dataplane
                .set_local_routes(routes)
                .with_context(|| a.iface.name.clone())?;
        }
        Ok(())
    });
    // Copies: `write` borrows the attachments.
    let ifaces: Vec<Interface> = attached.iter().map(|a| a.iface.clone()).collect();
    c.refresh_host_macs(&ifaces.iter().collect::<Vec<_>>(), &mut |i, macs| {
        let a = &mut attached[i];
        a.dataplane
            .set_host_macs(macs)
            .map(drop)
            .with_context(|| a.iface.name.clone())
    });
    let mut write_ports = |table: &BTreeMap<u16, u32>, marked: u8| {
        let mut written = true;
        for a in attached.iter_mut() {
            if let Err(e) = a.set_ports(table, marked) {
                tracing::error!("{e:#}");
                written = false;
            }
        }
        written
    };
    match c.tick(totals, &ports, &mut write_ports) {
        Ok(tick) => {
            if let Some(limits) = tick.limits {
                for a in attached.iter_mut() {
                    if let Err(e) = a.set_limits(&limits) {
                        tracing::error!("{e:#}");
                    }
                }
            }
            tick.next
        }
        Err(e) => {
            tracing::error!("{e:#}");
            Duration::from_secs(1)
        }
    }
}

/// Rebuilds an attachment's marked filter once 1 in 16 of its bits are
/// set (`Dataplane::refresh_marked`): sources marked long ago would
/// otherwise send ever more spoofed packets to a `GUARD_MARKS` lookup.
fn refresh_marked(attached: &mut [Attached]) {
    for a in attached {
        match a.dataplane.refresh_marked(monotonic_ns()) {
            Ok(Some((before, after))) => tracing::info!(
                "{}: the marked filter had {before} bits set; rebuilt from the marks in force: {after}",
                a.iface.name
            ),
            Ok(None) => {}
            Err(e) => tracing::error!("{}: refreshing the marked filter: {e:#}", a.iface.name),
        }
    }
}

fn xdp_totals(attached: &[Attached]) -> Result<XdpCounts> {
    let mut totals = XdpCounts::default();
    for a in attached {
        let c = a.dataplane.counters().context("reading the XDP counters")?;
        totals.new_flows += c.get(Counter::NewFlows);
        totals.admitted += c.get(Counter::PassLimits) + c.get(Counter::PassAllowlist);
        // The closed ports' bucket is the budget's too.
        totals.budget_drops += c.get(Counter::DropGlobalBudget) + c.get(Counter::DropClosedPort);
        totals.syns += c.get(Counter::TcpSyn);
        totals.new_sources += c.get(Counter::NewSources);
        totals.cookies_sent += c.get(Counter::CookieSynAck);
    }
    Ok(totals)
}
