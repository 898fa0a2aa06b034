//! Runs the lab: every scenario against every defence, each on a fresh
//! topology, sampled once a second, then the report.
//!
//! A run is a lead (legitimate traffic only), the attack window, and a tail
//! (the attack stopped, recovery visible). Legitimate clients connect
//! throughout. The global knobs the defences write are saved first and put
//! back on every exit path (`host::Saved`, dropped on return, error and
//! panic); namespaces go with each run's topology.

use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom},
    net::SocketAddr,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use guard::{dataplane::handle::Dataplane, model::fingerprint::describe};
use guard_common::{
    Counter,
    fingerprint::{SIG_LEARNED, SigTable},
};
use guard_tests::{ct::Count, guard_proc::Guard, host};

use crate::{
    defence::{self, BUCKETS, Defence, MAX},
    plot,
    report::{self, Report, Section},
    sample::{Run, Second, count_f64},
    scenario::Scenario,
    topology::{self, NAT, Topology, UDP_PORT},
    traffic::{self, Frames, Helper, MAX_PPS_PER_CORE, Outcomes, Running, Tally, Trafgen},
};

/// How often the frame generator is checked, and restarted if it gave up.
const TEND_EVERY: Duration = Duration::from_millis(20);

/// Set by the lab binary's SIGINT handler: the current run ends at its
/// next second, everything is cleaned up, and no further run starts.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The mixed scenario's generated rate, leaving CPU for the connection
/// flood.
const MIXED_PPS: u64 = 200_000;
/// The flash crowd's connections per second from one address.
const CROWD_RATE: u32 = 150;
/// What the connection flood may try in one run.
const CONN_ATTEMPTS: u64 = 200_000;
/// The most connections the flood holds: one descriptor each, below the
/// 20,000 a process may open here.
const MAX_HELD: u64 = 18_000;
/// Entry size assumed when the slab allocator does not say.
const ASSUMED_ENTRY_BYTES: u64 = 320;

#[derive(Clone, Debug)]
pub struct Options {
    pub scenarios: Vec<Scenario>,
    pub defences: Vec<Defence>,
    /// Legitimate traffic only, before the attack.
    pub lead: Duration,
    pub attack: Duration,
    /// After the attack, to see recovery.
    pub tail: Duration,
    /// `nf_conntrack_max` every run starts from.
    pub table: u64,
    /// Legitimate connections a second, spread over the users' addresses.
    pub legit_rate: u32,
    /// Where the report goes.
    pub out: PathBuf,
    /// The `guard-lab` binary, for its helper modes (servers, connection
    /// flood).
    pub helper: PathBuf,
}

/// Runs every scenario against every defence and writes the report.
pub fn run(opts: &Options) -> Result<Report> {
    let _saved = host::Saved::new(&[MAX, BUCKETS]);
    let original_buckets = host::sysctl(BUCKETS);
    let entry_bytes = entry_bytes();
    let mut report = Report {
        header: header(opts, entry_bytes),
        sections: Vec::new(),
    };
    for &scenario in &opts.scenarios {
        let mut section = Section {
            name: scenario.name().to_owned(),
            title: scenario.title().to_owned(),
            description: scenario.description().to_owned(),
            runs: Vec::new(),
        };
        for &defence in opts.defences.iter().filter(|d| d.measures(scenario)) {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            reset_globals(opts.table, original_buckets);
            section.runs.push(run_one(
                opts,
                scenario,
                &[(Duration::ZERO, defence)],
                entry_bytes,
            ));
        }
        report.sections.push(section);
    }
    report::write(&opts.out, &report)?;
    Ok(report)
}

/// `cargo xtask lab --demo`: the SYN flood with no defence until the table
/// is full, then guard switched on (enforce) while the flood goes on.
pub fn demo(opts: &Options, guard_after: Duration) -> Result<Report> {
    let _saved = host::Saved::new(&[MAX, BUCKETS]);
    let entry_bytes = entry_bytes();
    reset_globals(opts.table, host::sysctl(BUCKETS));
    let run = run_one(
        opts,
        Scenario::SynFlood,
        &[
            (Duration::ZERO, Defence::Defaults),
            (opts.lead + guard_after, Defence::GuardEnforce),
        ],
        entry_bytes,
    );
    let report = Report {
        header: header(opts, entry_bytes),
        sections: vec![Section {
            name: "demo".to_owned(),
            title: "Demo: spoofed SYN flood, guard switched on mid-attack".to_owned(),
            description: format!(
                "{} No defence at first; guard --mode enforce starts {} s into the attack.",
                Scenario::SynFlood.description(),
                guard_after.as_secs()
            ),
            runs: vec![run],
        }],
    };
    report::write(&opts.out, &report)?;
    Ok(report)
}

/// `cargo xtask lab --soak`: the wide SYN flood from two CPUs for
/// `opts.attack` against guard as a new user starts it, with guard's
/// memory, its maps' and its CPU plotted over the run, and the first and
/// the last minute of the attack compared in the run's notes: flat is
/// what a long flood must look like.
pub fn soak(opts: &Options) -> Result<Report> {
    let _saved = host::Saved::new(&[MAX, BUCKETS]);
    let entry_bytes = entry_bytes();
    reset_globals(opts.table, host::sysctl(BUCKETS));
    let scenario = Scenario::SynFloodWide;
    let mut run = run_one(
        opts,
        scenario,
        &[(Duration::ZERO, Defence::GuardDefaults)],
        entry_bytes,
    );
    run.notes.extend(soak_notes(&run));
    let report = Report {
        header: header(opts, entry_bytes),
        sections: vec![Section {
            name: "soak".to_owned(),
            title: format!("Soak: {} for {} s", scenario.title(), opts.attack.as_secs()),
            description: scenario.description().to_owned(),
            runs: vec![run],
        }],
    };
    report::write(&opts.out, &report)?;
    let runs = &report.sections[0].runs;
    let kib_to_mib = |k: Option<u64>| k.map(|k| count_f64(k) / 1024.0);
    plot::series(
        &opts.out.join("soak-memory.svg"),
        "Soak: guard's resident memory",
        "MiB",
        runs,
        |s| kib_to_mib(s.guard_rss_kib),
    )?;
    plot::series(
        &opts.out.join("soak-maps.svg"),
        "Soak: guard's BPF maps",
        "MiB",
        runs,
        |s| kib_to_mib(s.guard_maps_kib),
    )?;
    plot::series(
        &opts.out.join("soak-cpu.svg"),
        "Soak: guard's CPU",
        "% of one CPU",
        runs,
        |s| s.guard_cpu_secs.map(|c| c * 100.0),
    )?;
    Ok(report)
}

/// The first and the last minute of the attack side by side, and the
/// controller's decisions per minute.
fn soak_notes(run: &Run) -> Vec<String> {
    let minute = |from: f64| -> Vec<&Second> {
        run.samples
            .iter()
            .filter(|s| s.t > from && s.t <= from + 60.0)
            .collect()
    };
    let mean = |v: &[&Second], f: &dyn Fn(&Second) -> Option<f64>| {
        let xs: Vec<f64> = v.iter().filter_map(|s| f(s)).collect();
        #[expect(clippy::cast_precision_loss, reason = "at most 60 samples")]
        let n = xs.len().max(1) as f64;
        xs.iter().sum::<f64>() / n
    };
    let describe = |v: &[&Second]| {
        format!(
            "RSS {:.1} MiB, maps {:.1} MiB, guard CPU {:.1}%, fill {:.1}%, users {:.1}%",
            mean(v, &|s| s.guard_rss_kib.map(|k| count_f64(k) / 1024.0)),
            mean(v, &|s| s.guard_maps_kib.map(|k| count_f64(k) / 1024.0)),
            mean(v, &|s| s.guard_cpu_secs.map(|c| c * 100.0)),
            mean(v, &|s| Some(s.fill())),
            mean(v, &Second::legit_success),
        )
    };
    let first = minute(run.attack_start);
    let last = minute((run.attack_end - 60.0).max(run.attack_start));
    let decisions = &run.decisions_by_minute;
    vec![
        format!("first minute of the attack: {}", describe(&first)),
        format!("last minute of the attack: {}", describe(&last)),
        format!(
            "controller decisions: {} in all, at most {} in any minute",
            decisions.iter().sum::<u32>(),
            decisions.iter().max().copied().unwrap_or(0)
        ),
    ]
}

fn reset_globals(table: u64, buckets: u64) {
    if host::sysctl(BUCKETS) != buckets {
        host::set_sysctl(BUCKETS, buckets);
    }
    host::set_sysctl(MAX, table);
}

/// Sleeps until `until`, tending the attack meanwhile: should trafgen give
/// up (`Trafgen`), waiting for the next sample to restart it would leave
/// a gap of up to a second in the flood.
fn wait_tending(until: Instant, attack: &mut Option<Attack>) {
    while let Some(left) = until
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        thread::sleep(left.min(TEND_EVERY));
        if let Some(a) = attack {
            a.tend();
        }
    }
}

/// One scenario on a fresh topology. `defences` says which defence is in
/// place from when (the demo switches once; a normal run has one).
fn run_one(
    opts: &Options,
    scenario: Scenario,
    defences: &[(Duration, Defence)],
    entry_bytes: u64,
) -> Run {
    let label = defences
        .iter()
        .map(|(_, d)| d.name())
        .collect::<Vec<_>>()
        .join(" -> ");
    let topo = Topology::build();
    let servers = traffic::servers(&opts.helper, &topo.victim);
    let users = Users::start(&topo, scenario, opts.legit_rate);
    let mut run = Run {
        scenario: scenario.name().to_owned(),
        defence: label.clone(),
        attack_start: opts.lead.as_secs_f64(),
        attack_end: (opts.lead + opts.attack).as_secs_f64(),
        table: opts.table,
        samples: Vec::new(),
        notes: Vec::new(),
        decisions_by_minute: Vec::new(),
    };
    let mut applied: Option<defence::Applied> = None;
    let mut pending: Vec<(Duration, Defence)> = defences.to_vec();
    let mut sampler = Sampler::new(&topo);
    let mut switch =
        |at: Duration, applied: &mut Option<defence::Applied>, sampler: &mut Sampler| {
            while let Some(i) = pending.iter().position(|(when, _)| *when <= at) {
                let (_, d) = pending.remove(i);
                drop(applied.take());
                let a = defence::apply(d, &topo, opts.table, entry_bytes);
                sampler.watch_guard(&topo, a.guard.as_ref().and_then(Guard::pid));
                *applied = Some(a);
                if at > Duration::ZERO {
                    eprintln!("lab: {} is on", d.name());
                }
            }
        };
    // The first defence is in place before the clock starts.
    switch(Duration::ZERO, &mut applied, &mut sampler);
    let mut attack: Option<Attack> = None;
    let total = opts.lead + opts.attack + opts.tail;
    let start = Instant::now();
    let mut second = 0u32;
    loop {
        let now = start.elapsed();
        switch(now, &mut applied, &mut sampler);
        if attack.is_none() && now >= opts.lead && now < opts.lead + opts.attack {
            attack = Some(Attack::start(scenario, &topo, &users.tcp, opts));
        }
        if now >= opts.lead + opts.attack
            && let Some(a) = attack.take()
            && let Some(note) = a.stop()
        {
            run.notes.push(note);
        }
        if now >= total || STOP.load(Ordering::Relaxed) {
            break;
        }
        second += 1;
        wait_tending(start + Duration::from_secs(u64::from(second)), &mut attack);
        let s = sampler.sample(
            start.elapsed().as_secs_f64(),
            users.tcp.take(),
            &users.udp.take(),
        );
        eprintln!("{}", live_line(&run, &label, &s));
        run.samples.push(s);
    }
    if let Some(a) = attack.take()
        && let Some(note) = a.stop()
    {
        run.notes.push(note);
    }
    if STOP.load(Ordering::Relaxed) {
        run.notes
            .push("interrupted (SIGINT): a partial run".to_owned());
    }
    users.stop(run.samples.last_mut());
    run.notes.extend(sampler.sig_notes(run.attack_start));
    if let Some(guard) = applied.take().and_then(|a| a.guard) {
        let finished = guard.stop(libc::SIGTERM);
        run.decisions_by_minute = decisions_by_minute(&finished.stderr);
        if !finished.status.success() {
            run.notes.push(format!(
                "guard exited with {}: {}",
                finished.status,
                finished.stderr.lines().last().unwrap_or_default()
            ));
        }
    }
    drop(servers);
    drop(topo);
    run
}

/// The legitimate users of a run: TCP visits and DNS-like queries, from
/// the same addresses, over the scenario's family, each with its tally.
struct Users {
    clients: [Running; 2],
    tcp: Tally,
    udp: Tally,
}

impl Users {
    fn start(topo: &Topology, scenario: Scenario, rate: u32) -> Self {
        let (tcp, udp) = (Tally::default(), Tally::default());
        let (addresses, server) = topology::users(scenario.ipv6());
        let clients = [
            traffic::clients(&topo.attacker, server, addresses.clone(), rate, tcp.clone()),
            traffic::dns_clients(
                &topo.attacker,
                SocketAddr::new(server.ip(), UDP_PORT),
                addresses,
                rate,
                udp.clone(),
            ),
        ];
        Self { clients, tcp, udp }
    }

    /// Stops the clients; attempts still in flight finish or time out, and
    /// land in `last`, the run's last second.
    fn stop(self, last: Option<&mut Second>) {
        Running::stop_all(self.clients);
        if let Some(last) = last {
            let (tcp, udp) = (self.tcp.take(), self.udp.take());
            last.legit_ok += tcp.ok;
            last.legit_failed += tcp.failed;
            last.legit_connect_ms.extend(tcp.connect_ms);
            last.legit_udp_ok += udp.ok;
            last.legit_udp_failed += udp.failed;
        }
    }
}

/// One console line per second: enough to watch the run.
fn live_line(run: &Run, label: &str, s: &Second) -> String {
    let phase = if s.t <= run.attack_start {
        "lead  "
    } else if s.t <= run.attack_end + 0.5 {
        "ATTACK"
    } else {
        "tail  "
    };
    // Twenty cells of 5% each.
    let bar: String = (0..20u32)
        .map(|i| {
            if f64::from(i) * 5.0 + 2.5 < s.fill() {
                '#'
            } else {
                '.'
            }
        })
        .collect();
    let xdp = s
        .xdp_dropped
        .map_or_else(String::new, |d| format!(" xdp-drop {d}"));
    let xdp = match s.xdp_cookies {
        Some(k) if k > 0 => format!("{xdp} cookies {k}"),
        _ => xdp,
    };
    let xdp = match (s.sigs, s.xdp_sig_dropped) {
        (Some(n), Some(d)) if n > 0 || d > 0 => format!("{xdp} sigs {n} sig-drop {d}"),
        _ => xdp,
    };
    format!(
        "{}/{label} {:>4.0}s {phase} [{bar}] {:5.1}% {}/{} drop {} legit {}/{} dns {}/{}{xdp}",
        run.scenario,
        s.t,
        s.fill(),
        s.count,
        s.max,
        s.drop,
        s.legit_ok,
        s.legit_ok + s.legit_failed,
        s.legit_udp_ok,
        s.legit_udp_ok + s.legit_udp_failed,
    )
}

/// The attack of one scenario, running.
enum Attack {
    Frames(Trafgen),
    Conns(Helper),
    Crowd(Running),
    Mixed(Trafgen, Helper),
}

impl Attack {
    fn start(scenario: Scenario, topo: &Topology, tally: &Tally, opts: &Options) -> Self {
        let (dst, src) = topo.attack_macs();
        let secs = opts.attack.as_secs().max(1);
        let frames = |f: Frames, pps: Option<u64>| {
            Trafgen::start(
                &topo.attacker,
                &topo.attacker_if,
                &traffic::trafgen_config(f, dst, src),
                pps.unwrap_or(MAX_PPS_PER_CORE) * secs,
                pps,
                scenario.cpus(),
            )
        };
        let conns = |sources: u8, max_open: u64| {
            let sources: Vec<_> = (0..sources).map(topology::attacker_source).collect();
            traffic::conn_flood(
                &opts.helper,
                &topo.attacker,
                topology::TCP_SERVER,
                &sources,
                max_open.min(MAX_HELD),
                CONN_ATTEMPTS,
            )
        };
        match scenario {
            Scenario::SynFlood => Self::Frames(frames(Frames::Syn, None)),
            Scenario::SynFloodRandom => Self::Frames(frames(Frames::SynRandom, None)),
            Scenario::SynFlood6 => Self::Frames(frames(Frames::Syn6, None)),
            Scenario::SynFloodWide => Self::Frames(frames(Frames::SynWide, None)),
            Scenario::SynFlood6Wide => Self::Frames(frames(Frames::Syn6Wide, None)),
            Scenario::UdpFlood => Self::Frames(frames(Frames::Udp, None)),
            Scenario::UdpFloodRandom => Self::Frames(frames(Frames::UdpRandom, None)),
            Scenario::QueryFlood => Self::Frames(frames(Frames::QueriesAndGre, None)),
            Scenario::ConnFlood => {
                Self::Conns(conns(topology::ATTACKER_SOURCES, opts.table * 3 / 2))
            }
            Scenario::FlashCrowd => Self::Crowd(traffic::clients(
                &topo.attacker,
                topology::TCP_SERVER,
                vec![NAT.into()],
                CROWD_RATE,
                tally.clone(),
            )),
            Scenario::Mixed => Self::Mixed(
                frames(Frames::SynAndUdp, Some(MIXED_PPS)),
                conns(2, opts.table / 2),
            ),
        }
    }

    /// Keeps the frame generator going through the window.
    fn tend(&mut self) {
        if let Self::Frames(t) | Self::Mixed(t, _) = self {
            t.tend();
        }
    }

    /// Stops the attack; a note if the generator failed.
    fn stop(self) -> Option<String> {
        match self {
            Self::Frames(t) => t.stop(),
            Self::Conns(c) => {
                c.stop();
                None
            }
            Self::Crowd(r) => {
                r.stop();
                None
            }
            Self::Mixed(t, c) => {
                c.stop();
                t.stop()
            }
        }
    }
}

/// Reads the victim's table, the attack's packet counter, guard's XDP
/// counters and signatures, and the CPU once a second. Cumulative values
/// are relative to the first reading.
struct Sampler {
    count: Count,
    ct_stat: fs::File,
    attacker: String,
    pins: Option<PathBuf>,
    guard_pid: Option<u32>,
    base: [u64; 4],
    last_softirq: u64,
    last_guard_cpu: Option<u64>,
    /// Every learned signature read: id, when first read, and the line
    /// that describes it with what it matched when learned.
    learned: Vec<(u32, f64, String)>,
}

impl Sampler {
    fn new(topo: &Topology) -> Self {
        let ct_stat = open_in(&topo.victim, "/proc/thread-self/net/stat/nf_conntrack");
        let mut s = Self {
            count: Count::open(&topo.victim),
            ct_stat,
            attacker: topo.attacker.clone(),
            pins: None,
            guard_pid: None,
            base: [0; 4],
            last_softirq: softirq_ticks(&read("/proc/stat")).unwrap_or(0),
            last_guard_cpu: None,
            learned: Vec::new(),
        };
        let (drop, early, failed) = s.ct_stats();
        s.base = [drop, early, failed, s.attack_sent()];
        s
    }

    /// guard started (or stopped): read its pins and its CPU from now on.
    fn watch_guard(&mut self, topo: &Topology, pid: Option<u32>) {
        self.guard_pid = pid;
        self.last_guard_cpu = pid.and_then(process_ticks);
        self.pins = pid.map(|_| topo.guard_pins());
    }

    fn ct_stats(&mut self) -> (u64, u64, u64) {
        let mut text = String::new();
        let _ = self.ct_stat.seek(SeekFrom::Start(0));
        let _ = self.ct_stat.read_to_string(&mut text);
        guard::model::conntrack::parse_stats(&text).map_or((0, 0, 0), |s| {
            let get = |k| s.get(k).unwrap_or(0);
            (get("drop"), get("early_drop"), get("insert_failed"))
        })
    }

    fn attack_sent(&self) -> u64 {
        topology::attack_sent(&self.attacker)
    }

    /// The learned signatures in `table`, read at `t`: how many, each new
    /// one remembered.
    fn learned_sigs(&mut self, t: f64, table: &SigTable) -> u32 {
        let mut n = 0;
        for slot in table.slots() {
            let meta = &table.meta[slot];
            if meta.origin != SIG_LEARNED {
                continue;
            }
            n += 1;
            if !self.learned.iter().any(|(id, ..)| *id == meta.id) {
                let line = format!(
                    "{}: {:.1}% of new flows",
                    describe(&table.sigs[slot]),
                    f64::from(meta.share_ppm) / 1e4
                );
                self.learned.push((meta.id, t, line));
            }
        }
        n
    }

    /// A note per learned signature, for the run's report.
    fn sig_notes(&self, attack_start: f64) -> Vec<String> {
        self.learned
            .iter()
            .map(|(id, t, line)| {
                format!(
                    "signature {id} first read {:+.0} s from the attack's start: {line}",
                    t - attack_start
                )
            })
            .collect()
    }

    fn sample(&mut self, t: f64, tcp: Outcomes, udp: &Outcomes) -> Second {
        let (drop, early, failed) = self.ct_stats();
        let sent = self.attack_sent();
        let softirq = softirq_ticks(&read("/proc/stat")).unwrap_or(self.last_softirq);
        let softirq_secs = ticks_secs(softirq.saturating_sub(self.last_softirq));
        self.last_softirq = softirq;
        let guard_cpu = self.guard_pid.and_then(process_ticks);
        let guard_cpu_secs = match (guard_cpu, self.last_guard_cpu) {
            (Some(now), Some(before)) => Some(ticks_secs(now.saturating_sub(before))),
            _ => None,
        };
        self.last_guard_cpu = guard_cpu;
        let dataplane = self
            .pins
            .as_ref()
            .and_then(|dir| Dataplane::open_pinned(dir).ok());
        let counters = dataplane.as_ref().and_then(|d| d.counters().ok());
        let xdp = counters.as_ref().map(|c| {
            let d: u64 = Counter::DROP_REASONS.iter().map(|r| c.get(*r)).sum();
            let k = c.get(Counter::CookieSynAck);
            (c.get(Counter::Packets).saturating_sub(d + k), d, k)
        });
        let sigs = dataplane
            .as_ref()
            .and_then(|d| d.sigs().ok())
            .map(|table| self.learned_sigs(t, &table));
        Second {
            t,
            count: self.count.get(),
            max: host::sysctl(MAX),
            drop: drop.saturating_sub(self.base[0]),
            early_drop: early.saturating_sub(self.base[1]),
            insert_failed: failed.saturating_sub(self.base[2]),
            legit_ok: tcp.ok,
            legit_failed: tcp.failed,
            legit_connect_ms: tcp.connect_ms,
            legit_udp_ok: udp.ok,
            legit_udp_failed: udp.failed,
            attack_sent: sent.saturating_sub(self.base[3]),
            xdp_passed: xdp.map(|(p, _, _)| p),
            xdp_dropped: xdp.map(|(_, d, _)| d),
            xdp_cookies: xdp.map(|(_, _, k)| k),
            xdp_sig_dropped: counters.map(|c| c.get(Counter::DropSignature)),
            sigs,
            softirq_secs,
            guard_cpu_secs,
            guard_rss_kib: self.guard_pid.and_then(rss_kib),
            guard_maps_kib: self.guard_pid.and_then(maps_kib),
        }
    }
}

/// The controller's decisions in guard's log, counted by the minute of
/// their timestamps. On stderr guard leaves the `level` field out, so they
/// are known by how they read: a level line (`level normal (fill 3%): …`,
/// `dry run: level …`) or SYN cookies turned on or off for ports.
#[must_use]
pub fn decisions_by_minute(log: &str) -> Vec<u32> {
    let decision = |line: &&str| {
        line.split_once("  INFO ").is_some_and(|(_, message)| {
            [
                "level ",
                "dry run: level ",
                "SYN cookies on for port",
                "SYN cookies off for port",
            ]
            .iter()
            .any(|start| message.starts_with(start))
        })
    };
    let mut minutes: Vec<(&str, u32)> = Vec::new();
    for line in log.lines().filter(decision) {
        let minute = line.get(..16).unwrap_or_default();
        match minutes.last_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => minutes.push((minute, 1)),
        }
    }
    minutes.into_iter().map(|(_, n)| n).collect()
}

/// A process's resident memory, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    vm_rss_kib(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS` from a /proc/PID/status text, KiB.
#[must_use]
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memlock of every BPF map a process holds a descriptor of, each map
/// once, KiB.
fn maps_kib(pid: u32) -> Option<u64> {
    let mut seen = std::collections::BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()? {
        let Ok(entry) = entry else { continue };
        if let Some((id, bytes)) = fs::read_to_string(entry.path())
            .ok()
            .as_deref()
            .and_then(map_memlock)
        {
            seen.insert(id, bytes);
        }
    }
    Some(seen.values().sum::<u64>() / 1024)
}

/// A BPF map's id and memlock bytes from its fdinfo text; `None` for any
/// other descriptor.
#[must_use]
pub fn map_memlock(fdinfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("map_id:")?, field("memlock:")?))
}

/// A file opened inside `ns`: /proc/thread-self/net files opened there
/// keep showing that namespace. (/proc/net is /proc/self/net, which follows
/// the process's main thread, not the thread that opens it.)
fn open_in(ns: &str, path: &str) -> fs::File {
    guard::host::netns::Scope::open(Some(ns))
        .unwrap_or_else(|e| panic!("netns {ns}: {e}"))
        .run(|| fs::File::open(path))
        .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
        .unwrap_or_else(|e| panic!("{path} in {ns}: {e}"))
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Clock ticks (USER_HZ, 100 on Linux) to seconds.
fn ticks_secs(ticks: u64) -> f64 {
    count_f64(ticks) / 100.0
}

/// The softirq ticks of all CPUs in a /proc/stat text.
#[must_use]
pub fn softirq_ticks(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq ...
    line.split_whitespace().nth(7)?.parse().ok()
}

/// utime + stime of a process, in ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime from a /proc/PID/stat text (fields 14 and 15; the command
/// name in parentheses may hold spaces, so fields count from its end).
#[must_use]
pub fn stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The slab allocator's conntrack entry size.
fn entry_bytes() -> u64 {
    fs::read_to_string("/sys/kernel/slab/nf_conntrack/object_size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(ASSUMED_ENTRY_BYTES)
}

/// The report's header: the machine, the kernel, the generator and the
/// settings, so numbers are never read without their conditions.
fn header(opts: &Options, entry_bytes: u64) -> String {
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let ram_gib = guard::host::files::HostFiles::live()
        .ram_bytes()
        .unwrap_or(0)
        >> 30;
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let trafgen = std::process::Command::new("trafgen")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "trafgen".to_owned());
    format!(
        "Machine: {cpu}, {cores} CPUs, {ram_gib} GiB; Linux {kernel}. Generator: {trafgen}, one core, \
         into a veth pair (attacker, clients and victim share the machine). \
         Every run starts from nf_conntrack_max = {} ({entry_bytes} B an entry) on a fresh set of \
         namespaces: {} s of legitimate traffic only, {} s of attack, {} s after it. \
         Legitimate users, from {} addresses: {} TCP connections a second, each a connect, an echo and a close, \
         and as many DNS-like queries, each from a new UDP socket and sent again every second until answered; \
         each given {} s. Softirq time is the whole machine's.",
        opts.table,
        opts.lead.as_secs(),
        opts.attack.as_secs(),
        opts.tail.as_secs(),
        topology::USERS,
        opts.legit_rate,
        traffic::LEGIT_TIMEOUT.as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  10 0 20 300 4 5 66 0 0 0\ncpu0 5 0 10 150 2 2 33 0 0 0\n";
        assert_eq!(softirq_ticks(text), Some(66));
    }

    #[test]
    fn parses_process_stat_with_spaces_in_the_name() {
        let text =
            "1234 (guard run x) S 1 1234 1234 0 -1 4194560 500 0 0 0 7 3 0 0 20 0 1 0 100 0 0";
        assert_eq!(stat_ticks(text), Some(10));
    }

    #[test]
    fn decisions_are_counted_by_minute() {
        let log = "2026-12-02T09:10:01.1Z  INFO level normal (fill 0%): fill 0% of 16384\n\
                   2026-12-02T09:10:05.1Z  INFO gsc0: 1 pkts\n\
                   2026-12-02T09:10:09.1Z  INFO SYN cookies on for port 8080: a flood\n\
                   2026-12-02T09:10:09.2Z  INFO attached to gsc0 (the level is not a decision)\n\
                   2026-12-02T09:13:00.0Z  INFO level elevated (fill 61%): fill 61% of 16384\n";
        assert_eq!(decisions_by_minute(log), [2, 1]);
        assert!(decisions_by_minute("").is_empty());
    }

    #[test]
    fn rss_and_map_memory_are_read_from_proc() {
        let status = "Name:\tguard\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t2\n";
        assert_eq!(vm_rss_kib(status), Some(12_345));
        assert_eq!(vm_rss_kib("Name:\tguard\n"), None);
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1045\nmap_type:\t9\nkey_size:\t20\nvalue_size:\t80\nmax_entries:\t131072\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t22021056\nmap_id:\t88\nfrozen:\t0\n";
        assert_eq!(map_memlock(map), Some((88, 22_021_056)));
        assert_eq!(map_memlock("pos:\t0\nflags:\t02\nmnt_id:\t15\n"), None);
    }
}
