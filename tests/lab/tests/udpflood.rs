//! A random-source UDP flood whose datagrams share a 16-byte payload and
//! their length, against guard as a new user starts it (`--mode enforce`
//! and nothing else: attack fingerprints on): guard learns the flood's
//! signature within seconds, drops it by signature rather than by budget,
//! and forgets it after the flood; and with `--fingerprints off`, the
//! budget carries it. On the lab's one-link topology
//! (the far end without an XDP program): TCP users and DNS-like UDP
//! clients (a new socket per query, retried every second as a stub
//! resolver does), over IPv4 and IPv6, keep being served. The flood has a global budget of its
//! own class, so it cannot spend the handshakes'; the users' addresses are
//! verified by their TCP connections (an ACK of a connection the host
//! knows), so their UDP queries skip the budget the flood exhausts.
//!
//! The global knobs are saved first and put back on every exit path.

use std::{
    net::{IpAddr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use guard::dataplane::handle::Dataplane;
use guard_common::{Counter, CounterBlock};
use guard_lab::{
    defence::{self, BUCKETS, Defence, MAX},
    topology::{self, Topology, UDP_PORT, VICTIM, VICTIM6},
    traffic::{self, Frames, LEGIT_TIMEOUT, MAX_PPS_PER_CORE, Outcomes, Running, Tally, Trafgen},
};
use guard_tests::{
    ct::{self, Count},
    host::{self, Saved},
    kernel_test,
};

const TABLE: u64 = 16_384;
const ATTACK: Duration = Duration::from_secs(8);
const LEAD: Duration = Duration::from_secs(5);
/// A learned signature is forgotten after `learner::QUIET_SECS` quiet
/// seconds; and a second or two of ticks.
const FORGET_WITHIN: Duration = Duration::from_secs(8);

/// Users over IPv4 and over IPv6: TCP visits and DNS-like queries, each
/// 25 a second, with a tally each.
fn users(topo: &Topology) -> (Vec<Running>, Vec<(String, Tally)>) {
    let mut tallies = Vec::new();
    let mut clients = Vec::new();
    for ipv6 in [false, true] {
        let (users, server) = topology::users(ipv6);
        let (tcp, dns) = (Tally::default(), Tally::default());
        let victim = if ipv6 {
            IpAddr::from(VICTIM6)
        } else {
            IpAddr::from(VICTIM)
        };
        clients.push(traffic::clients(
            &topo.attacker,
            server,
            users.clone(),
            25,
            tcp.clone(),
        ));
        clients.push(traffic::dns_clients(
            &topo.attacker,
            SocketAddr::new(victim, UDP_PORT),
            users,
            25,
            dns.clone(),
        ));
        let family = if ipv6 { "IPv6" } else { "IPv4" };
        tallies.push((format!("TCP users over {family}"), tcp));
        tallies.push((format!("DNS-like clients over {family}"), dns));
    }
    (clients, tallies)
}

/// What one run of the flood against `defence` showed.
struct Run {
    sent: u64,
    peak: u64,
    outcomes: Vec<(String, Outcomes)>,
    xdp: CounterBlock,
    /// When a signature was first installed, from the flood's start.
    learned_after: Option<Duration>,
    /// Whether the signature table was empty again after the flood.
    forgotten: bool,
    kernel_drops: u64,
    log: String,
}

/// The users, then the flood for [`ATTACK`], then the users' last
/// attempts; with `watch_sigs`, until the signature table is empty again
/// (at most [`FORGET_WITHIN`]).
fn run(defence: Defence, watch_sigs: bool) -> Run {
    let saved = Saved::new(&[MAX, BUCKETS]);
    host::set_sysctl(MAX, TABLE);
    let topo = Topology::build();
    let _servers = traffic::servers(env!("CARGO_BIN_EXE_guard-lab").as_ref(), &topo.victim);
    let applied = defence::apply(defence, &topo, TABLE, 320);
    let (clients, tallies) = users(&topo);
    // A lead of ordinary traffic: the users connect before the flood, and
    // the fingerprint learner sees what normal new flows look like (it
    // needs 100 samples of them, a calm second's only after the next
    // second is calm too).
    thread::sleep(LEAD);
    for (what, tally) in &tallies {
        let lead = tally.take();
        eprintln!("lead: {what} {:.1}%", lead.percent());
    }
    let count = Count::open(&topo.victim);
    let before = ct::stats(&topo.victim);
    let pins = topo.guard_pins();
    let dataplane = Dataplane::open_pinned(&pins).expect("guard's maps");
    let installed = || dataplane.sigs().expect("the signatures").active != 0;

    let (dst, src) = topo.attack_macs();
    let mut flood = Trafgen::start(
        &topo.attacker,
        &topo.attacker_if,
        &traffic::trafgen_config(Frames::Udp, dst, src),
        MAX_PPS_PER_CORE * ATTACK.as_secs(),
        None,
        1,
    );
    let start = Instant::now();
    let mut peak = 0;
    let mut learned_after = None;
    while start.elapsed() < ATTACK {
        flood.tend();
        peak = peak.max(count.get());
        if learned_after.is_none() && installed() {
            learned_after = Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let note = flood.stop();
    eprintln!("trafgen: {note:?}");
    let sent = topology::attack_sent(&topo.attacker);
    // Attempts still in flight finish or time out.
    thread::sleep(LEGIT_TIMEOUT);
    let stopped = Instant::now();
    let forgotten = watch_sigs && {
        while installed() && stopped.elapsed() < FORGET_WITHIN {
            thread::sleep(Duration::from_millis(200));
        }
        !installed()
    };
    for c in clients {
        c.stop();
    }
    let outcomes: Vec<(String, Outcomes)> = tallies
        .iter()
        .map(|(what, tally)| (what.clone(), tally.take()))
        .collect();
    let after = ct::stats(&topo.victim);
    let xdp = dataplane.counters().expect("guard's counters");
    let guard = applied.guard.expect("guard runs");
    let log = guard.stderr();
    drop(dataplane);
    drop(guard);
    drop(topo);
    drop(saved);
    let drops = |s: &std::collections::BTreeMap<String, u64>| s.get("drop").copied().unwrap_or(0);
    Run {
        sent,
        peak,
        outcomes,
        xdp,
        learned_after,
        forgotten,
        kernel_drops: drops(&after) - drops(&before),
        log,
    }
}

/// What holds for every defence of guard's: the users are served, the
/// table never fills, the kernel drops nothing.
fn assert_served(r: &Run) {
    eprintln!(
        "udp flood: {} datagrams, peak {} of {TABLE}",
        r.sent, r.peak
    );
    for (what, o) in &r.outcomes {
        eprintln!("  {what}: {}/{} ({:.1}%)", o.ok, o.attempts(), o.percent());
    }
    let log = &r.log;
    assert!(r.sent > 1_000_000, "the flood sent only {}", r.sent);
    assert_eq!(r.kernel_drops, 0, "the kernel dropped entries");
    assert!(r.peak * 2 < TABLE, "peak {} of {TABLE}:\n{log}", r.peak);
    for (what, o) in &r.outcomes {
        o.assert_served(what, 150, log);
    }
}

#[test]
fn a_fixed_trait_udp_flood_is_learned_dropped_by_its_signature_and_forgotten() {
    let _kernel = kernel_test!();
    let r = run(Defence::GuardDefaults, true);
    let (sig, budget) = (
        r.xdp.get(Counter::DropSignature),
        r.xdp.get(Counter::DropGlobalBudget),
    );
    eprintln!(
        "signature after {:?}; xdp: drop_signature {sig}, drop_global_budget {budget}; forgotten {}",
        r.learned_after, r.forgotten
    );
    assert_served(&r);
    let log = &r.log;
    // The flood's frames share a 16-byte payload and their length.
    defence::assert_learned(r.learned_after, log);
    assert!(
        log.lines()
            .any(|l| l.contains(": sig 1: udp") && l.contains("% of new flows")),
        "no line says what was learned:\n{log}"
    );
    // The drops moved from the budget to the signature.
    assert!(sig > budget, "signature {sig}, budget {budget}:\n{log}");
    assert!(
        sig * 2 > r.sent,
        "the signature dropped {sig} of {}:\n{log}",
        r.sent
    );
    assert!(r.forgotten, "the signature outlived the flood:\n{log}");
    assert!(
        log.contains("sig 1: expired"),
        "no line says it expired:\n{log}"
    );
}

#[test]
fn without_fingerprints_the_budget_carries_a_random_source_udp_flood() {
    let _kernel = kernel_test!();
    let r = run(Defence::GuardNoFingerprints, false);
    assert_served(&r);
    // The budget really bound (the users competed with the flood for it),
    // and the users were verified by their connections.
    let (budget, verified) = (
        r.xdp.get(Counter::DropGlobalBudget),
        r.xdp.get(Counter::VerifiedAck),
    );
    eprintln!("xdp: drop_global_budget {budget}, verified_ack {verified}");
    let log = &r.log;
    assert!(budget > 100_000, "the budget dropped only {budget}:\n{log}");
    assert!(verified >= 1, "no user was verified:\n{log}");
    assert_eq!(
        r.xdp.get(Counter::DropSignature),
        0,
        "fingerprints were off"
    );
}
