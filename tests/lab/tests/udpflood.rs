//! A random-source UDP flood against guard as a new user starts it
//! (`--mode enforce` and nothing else), on the lab's one-link topology
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
    path::Path,
    thread,
    time::{Duration, Instant},
};

use guard_common::Counter;
use guard_lab::{
    defence::{self, BUCKETS, Defence, MAX},
    topology::{self, Topology, UDP_PORT, VICTIM, VICTIM6},
    traffic::{self, Frames, LEGIT_TIMEOUT, Outcomes, Running, Tally, Trafgen},
};
use guard_tests::{
    ct::{self, Count},
    host::{self, Saved},
    kernel_test,
};

const TABLE: u64 = 16_384;
const ATTACK: Duration = Duration::from_secs(8);
/// Above what one trafgen core sends here: the bound never slows it.
const MAX_PPS: u64 = 2_000_000;

fn percent(o: &Outcomes) -> f64 {
    f64::from(o.ok) * 100.0 / f64::from((o.ok + o.failed).max(1))
}

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

#[test]
fn a_random_source_udp_flood_leaves_tcp_users_and_dns_clients_served() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX, BUCKETS]);
    host::set_sysctl(MAX, TABLE);
    let topo = Topology::build();
    let _servers = traffic::servers(env!("CARGO_BIN_EXE_guard-lab").as_ref(), &topo.victim);
    let applied = defence::apply(Defence::GuardDefaults, &topo, TABLE, 320);
    let (clients, tallies) = users(&topo);
    // A lead of ordinary traffic: the users connect before the flood.
    thread::sleep(Duration::from_secs(2));
    for (what, tally) in &tallies {
        let lead = tally.take();
        eprintln!("lead: {what} {:.1}%", percent(&lead));
    }
    let count = Count::open(&topo.victim);
    let before = ct::stats(&topo.victim);

    let (dst, src) = topo.attack_macs();
    let mut flood = Trafgen::start(
        &topo.attacker,
        &topo.attacker_if,
        &traffic::trafgen_config(Frames::Udp, dst, src),
        MAX_PPS * ATTACK.as_secs(),
        None,
        1,
    );
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < ATTACK {
        flood.tend();
        peak = peak.max(count.get());
        thread::sleep(Duration::from_millis(20));
    }
    let note = flood.stop();
    let sent = topology::attack_sent(&topo.attacker);
    // Attempts still in flight finish or time out.
    thread::sleep(LEGIT_TIMEOUT);
    for c in clients {
        c.stop();
    }
    let outcomes: Vec<(String, Outcomes)> = tallies
        .iter()
        .map(|(what, tally)| (what.clone(), tally.take()))
        .collect();
    let after = ct::stats(&topo.victim);
    let pins = Path::new("/sys/fs/bpf/guard/netns")
        .join(&topo.victim)
        .join(&topo.victim_a);
    let xdp = guard::dataplane::handle::Dataplane::open_pinned(&pins)
        .and_then(|d| d.counters())
        .expect("guard's counters");
    let guard = applied.guard.expect("guard runs");
    let log = guard.stderr();
    drop(guard);
    drop(topo);
    drop(saved);

    eprintln!("udp flood: {sent} datagrams ({note:?}), peak {peak} of {TABLE}");
    for (what, o) in &outcomes {
        eprintln!(
            "  {what}: {}/{} ({:.1}%)",
            o.ok,
            o.ok + o.failed,
            percent(o)
        );
    }
    assert!(sent > 1_000_000, "the flood sent only {sent}");
    // The budget really bound (the users competed with the flood for it),
    // and the users were verified by their connections.
    let (budget, verified) = (
        xdp.get(Counter::DropGlobalBudget),
        xdp.get(Counter::VerifiedAck),
    );
    eprintln!("xdp: drop_global_budget {budget}, verified_ack {verified}");
    assert!(budget > 100_000, "the budget dropped only {budget}:\n{log}");
    assert!(verified >= 1, "no user was verified:\n{log}");
    assert_eq!(
        after.get("drop").copied().unwrap_or(0),
        before.get("drop").copied().unwrap_or(0),
        "the kernel dropped entries"
    );
    assert!(peak * 2 < TABLE, "peak {peak} of {TABLE}:\n{log}");
    for (what, o) in &outcomes {
        assert!(
            o.ok + o.failed >= 150,
            "{what}: only {} attempts",
            o.ok + o.failed
        );
        assert!(
            percent(o) >= 99.0,
            "{what} served {:.1}%:\n{log}",
            percent(o)
        );
    }
}
