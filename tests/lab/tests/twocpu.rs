//! A flood from two CPUs at once: SYNs from random sources over all of
//! 198.18.0.0/15, sent by two trafgen cores onto the two queues of the
//! lab's link, so that guard's XDP program runs on both CPUs and takes its
//! shared buckets (the global budget's above all) from both. The budget
//! still admits what it allows, within 5%, and the contention it met is
//! counted and printed.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, PerCpuArray};
use guard_common::{
    Counter, CounterBlock, FlowClass, config::BUDGET_SHARE_PERCENT, maps::COUNTERS,
};
use guard_lab::{
    topology::{TCP_SERVER, Topology},
    traffic::{self, Frames, MAX_PPS_PER_CORE, Trafgen},
};
use guard_tests::{guard_proc::Guard, kernel_test, server::EchoServer};

const RATE: u64 = 2_000;
const BURST: u64 = 100;
const ATTACK: Duration = Duration::from_secs(5);

/// guard's counters, per CPU, read from its pin.
fn per_cpu(pin_dir: &Path) -> Vec<CounterBlock> {
    let data = MapData::from_pin(pin_dir.join(COUNTERS)).expect("the counters' pin");
    let map: PerCpuArray<MapData, CounterBlock> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).expect("a per-CPU array");
    map.get(&0, 0)
        .expect("the counters")
        .iter()
        .copied()
        .collect()
}

fn total(blocks: &[CounterBlock], counter: Counter) -> u64 {
    blocks.iter().map(|b| b.get(counter)).sum()
}

#[test]
fn a_flood_from_two_cpus_is_admitted_within_the_global_budget() {
    let _kernel = kernel_test!();
    traffic::require_trafgen();
    let cpus = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let topo = Topology::build();
    // The flood's port is open: its SYNs take the SYN class's bucket (a
    // closed port's would take the closed ports' share).
    let _server = EchoServer::start(&topo.victim, TCP_SERVER);
    let (rate, burst) = (RATE.to_string(), BURST.to_string());
    let mut guard = Guard::start(&[
        "run",
        "--netns",
        &topo.victim,
        "--iface",
        &topo.victim_a,
        "--mode",
        "enforce",
        "--syn-cookies",
        "never",
        "--global-rate",
        &rate,
        "--global-burst",
        &burst,
        "--summary-interval",
        "0",
    ]);
    let pins = topo.guard_pins();
    guard.wait_for(&pins.join(COUNTERS));
    guard.wait_ready();

    let (dst, src) = topo.attack_macs();
    let before = per_cpu(&pins);
    let started = Instant::now();
    let mut flood = Trafgen::start(
        &topo.attacker,
        &topo.attacker_if,
        &traffic::trafgen_config(Frames::SynWide, dst, src),
        2 * MAX_PPS_PER_CORE * ATTACK.as_secs(),
        None,
        2,
    );
    while started.elapsed() < ATTACK {
        flood.tend();
        thread::sleep(Duration::from_millis(100));
    }
    let after = per_cpu(&pins);
    let elapsed = started.elapsed().as_secs_f64();
    let note = flood.stop();

    let delta = |c: Counter| total(&after, c) - total(&before, c);
    let syns_by_cpu: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.get(Counter::TcpSyn) - b.get(Counter::TcpSyn))
        .collect();
    let syns = delta(Counter::TcpSyn);
    let admitted = delta(Counter::PassLimits);
    let contention = delta(Counter::BucketContention);
    // The SYN class's share of the budget, over the window, plus its
    // burst (`Rate::per_class`).
    let share = |n: u64| n * u64::from(BUDGET_SHARE_PERCENT[FlowClass::Syn.index()]) / 100;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let expected = share(RATE) as f64 * elapsed + share(BURST) as f64;
    #[expect(clippy::cast_precision_loss, reason = "as above")]
    let ratio = admitted as f64 / expected;
    println!(
        "two CPUs: {syns} SYNs in {elapsed:.2}s (by CPU {syns_by_cpu:?}), admitted {admitted} of a budget of {expected:.0} ({:.1}%), bucket contention {contention}, global-budget drops {}{}",
        ratio * 100.0,
        delta(Counter::DropGlobalBudget),
        note.map(|n| format!(", trafgen: {n}")).unwrap_or_default(),
    );
    let busy = syns_by_cpu.iter().filter(|n| **n * 5 > syns).count();
    assert!(
        busy >= 2,
        "the flood did not reach the program on two CPUs: {syns_by_cpu:?}"
    );
    assert!(
        syns > admitted * 20,
        "the flood never made the budget bind: {syns} SYNs, {admitted} admitted"
    );
    assert!(
        (0.95..=1.05).contains(&ratio),
        "admitted {admitted}, the budget allows {expected:.0} ({:.1}%)",
        ratio * 100.0
    );
    let _ = guard.stop(libc::SIGTERM);
}
