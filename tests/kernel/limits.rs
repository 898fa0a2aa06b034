//! The data plane end to end: guard in a namespace, a real server behind
//! it, spoofed SYN floods from 198.19.0.0/16 sent as frames, a real client
//! from 198.18.0.1, and nftables counters in the victim namespace saying
//! what actually got past XDP into the kernel. And the buckets those
//! limits live in, taken by two CPUs at once through BPF_PROG_TEST_RUN.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use guard_common::{Counter, CounterBlock, FlowClass, bucket::NANOS_PER_SEC};
use guard_tests::{
    cpu,
    flood::Flood,
    guard_proc::{self, counters, pin_dir, start_on, stats, stats_after},
    kernel_test,
    net::{TestNet, VICTIM_ADDR},
    nft::Counters,
    packet::{Packet, TCP_ACK, TCP_SYN},
    server::{EchoServer, connect_echo},
    testrun,
    xdp::{self, Program, XDP_PASS},
};

const PORT: u16 = 8080;
/// Only SYNs without ACK: connection attempts.
const SYN: &str = "tcp flags & (syn | ack) == syn";

fn server_addr() -> SocketAddr {
    SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT)
}

fn spoofed(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, net, host))
}

/// Source rows of a stats document, by address.
fn sources(stats: &serde_json::Value) -> BTreeMap<String, (u64, u64)> {
    stats["top_sources"]
        .as_array()
        .expect("top_sources")
        .iter()
        .map(|row| {
            let n = |k: &str| row[k].as_u64().expect("number");
            (
                row["source"].as_str().expect("source").to_owned(),
                (n("passed"), n("dropped")),
            )
        })
        .collect()
}

fn stop_clean(guard: guard_proc::Guard, net: &TestNet) -> guard_proc::Finished {
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(!net.victim_link().contains("xdp"), "{finished}");
    assert!(!pin_dir(net).exists(), "{finished}");
    finished
}

/// Twenty sources flood at 20 times their limit for three seconds while a
/// real client connects under its own limit.
///
/// Bound: a source's bucket admits at most `burst + rate * T`, T being the
/// time from its first to its last packet in XDP (GCRA is exact, and its
/// atomic updates rule out races between CPUs). The test measures T from
/// before the first send to after the last. The program's clock is the
/// coarse monotonic clock, which trails real time by up to a jiffy (4 ms at
/// HZ=250), and XDP runs a few microseconds after sendto returns, so the
/// test allows 10 ms of slack, worth 0.1 token at 10/s:
/// `passed <= burst + ceil(rate * (T + 10 ms))`. The flood is far
/// above the rate, so the bucket is always empty when a token arrives:
/// `passed >= burst + floor(rate * (T - 10 ms))`, which shows the limiter is
/// not stricter than configured either.
#[test]
fn flooding_sources_get_rate_times_time_plus_burst_and_the_client_gets_through() {
    let _kernel = kernel_test!();
    let (rate, burst) = (10.0, 20.0);
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let guard = start_on(
        &net,
        &[
            "--mode",
            "enforce",
            // These tests are about the limits themselves, at any pressure.
            "--source-limits",
            "always",
            "--syn-rate",
            "10",
            "--syn-burst",
            "20",
            "--prefix-syn-rate",
            "0",
            "--ban-threshold",
            "0",
            "--summary-interval",
            "0",
        ],
    );

    let client_ns = net.attacker.clone();
    let client = thread::spawn(move || {
        (0..10)
            .map(|_| {
                thread::sleep(Duration::from_millis(250));
                connect_echo(&client_ns, server_addr(), Duration::from_secs(3))
            })
            .collect::<Vec<_>>()
    });

    let mut flood = Flood::new(&net);
    let srcs: Vec<IpAddr> = (0..20).map(|i| spoofed(i % 4, 10 + i)).collect();
    let start = Instant::now();
    let mut sport = 1024u16;
    while start.elapsed() < Duration::from_secs(3) {
        for src in &srcs {
            flood.tcp(*src, sport, PORT, TCP_SYN);
        }
        sport = sport.wrapping_add(1).max(1024);
        thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed().as_secs_f64();

    let results = client.join().expect("client thread");
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.is_ok(),
            "legitimate connection {i} failed during the flood: {r:?}"
        );
    }

    let after = stats_after(&net, flood.sent);
    let rows = sources(&after);
    let slack = 0.010;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a small positive token count"
    )]
    let (upper, lower) = (
        (burst + (rate * (elapsed + slack)).ceil()) as u64,
        (burst + (rate * (elapsed - slack)).floor()) as u64,
    );
    for src in &srcs {
        let (passed, dropped) = rows
            .get(&src.to_string())
            .copied()
            .unwrap_or_else(|| panic!("{src} missing from guard stats: {after}"));
        assert!(
            (lower..=upper).contains(&passed),
            "{src}: {passed} passed, expected {lower}..={upper} (burst {burst} + {rate}/s over {elapsed:.3}s); {dropped} dropped"
        );
        assert!(dropped > 0, "{src} was never limited");
    }
    let passed: Vec<u64> = srcs.iter().map(|s| rows[&s.to_string()].0).collect();
    eprintln!(
        "{} SYNs in {elapsed:.3}s; per source passed {}..={} of bound {lower}..={upper}",
        flood.sent,
        passed.iter().min().expect("sources"),
        passed.iter().max().expect("sources")
    );
    // The client's own source stayed under its limit.
    let (passed, dropped) = rows["198.18.0.1"];
    assert_eq!(
        (passed, dropped),
        (10, 0),
        "the legitimate client was limited"
    );
    let finished = stop_clean(guard, &net);
    assert!(
        finished.stderr.contains("is over its syn limit"),
        "no 'limited' event was logged:\n{finished}"
    );
    assert_said_once_per_interval(&srcs, &finished);
}

/// Each source sat at its limit for 3 s, crossing it ten times a second:
/// it is said once per interval (10 s without summaries), not each time.
fn assert_said_once_per_interval(srcs: &[IpAddr], finished: &guard_proc::Finished) {
    for src in srcs {
        let said = finished
            .stderr
            .matches(&format!(" {src} is over its syn limit"))
            .count();
        assert!(
            (1..=2).contains(&said),
            "{src} over its limit said {said} times:\n{finished}"
        );
    }
}

/// The same burst-only flood through monitor and then enforce: monitor
/// passes everything into the kernel, and counts exactly the drops that
/// enforce then makes. Each source's 20 SYNs arrive within a second, so a
/// rate of 1/s adds no token during the flood: the outcome does not depend
/// on timing, and the two runs are comparable to the packet.
#[test]
fn monitor_drops_nothing_and_counts_exactly_what_enforce_drops() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let nft = Counters::install(
        &net.victim,
        &[("syns", &format!("ip saddr 198.19.0.0/16 {SYN}"))],
    );
    let mut results = Vec::new();
    for mode in ["monitor", "enforce"] {
        nft.reset();
        let guard = start_on(
            &net,
            &[
                "--mode",
                mode,
                "--source-limits",
                "always",
                "--syn-rate",
                "1",
                "--syn-burst",
                "5",
                "--ban-threshold",
                "0",
            ],
        );
        let mut flood = Flood::new(&net);
        let start = Instant::now();
        for round in 0..20u16 {
            for host in 0..50u8 {
                flood.tcp(spoofed(host % 4, host), 2000 + round, PORT, TCP_SYN);
            }
        }
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "the flood was too slow to be timing-independent"
        );
        let c = counters(&stats_after(&net, flood.sent));
        results.push((mode, c, nft.packets("syns"), flood.sent));
        stop_clean(guard, &net);
    }
    let (_, monitor, monitor_kernel, sent) = &results[0];
    let (_, enforce, enforce_kernel, _) = &results[1];
    assert_eq!(
        *monitor_kernel, *sent,
        "monitor mode let fewer SYNs into the kernel than were sent"
    );
    assert_eq!(enforce["drop_source_limit"], 50 * 15);
    assert_eq!(
        *enforce_kernel,
        50 * 5,
        "enforce let a different number of SYNs through"
    );
    for reason in [
        "drop_source_limit",
        "drop_prefix_limit",
        "drop_global_budget",
        "drop_closed_port",
        "drop_banned",
        "drop_denylist",
        "pass_limits",
        "new_flows",
    ] {
        assert_eq!(
            monitor[reason], enforce[reason],
            "{reason}: monitor vs enforce"
        );
    }
    assert_eq!(monitor["pass_monitor"], enforce["drop_source_limit"]);
    assert_eq!(enforce["pass_monitor"], 0);
}

/// Allowlisted sources are never limited; denylisted ones never get a
/// packet in, SYN or not.
#[test]
fn allowlisted_sources_are_never_limited_and_denylisted_never_pass() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let nft = Counters::install(
        &net.victim,
        &[
            ("allowed", "ip saddr 198.19.1.0/24"),
            ("denied", "ip saddr 198.19.2.0/24"),
            ("other", &format!("ip saddr 198.19.3.0/24 {SYN}")),
        ],
    );
    let guard = start_on(
        &net,
        &[
            "--mode",
            "enforce",
            // These tests are about the limits themselves, at any pressure.
            "--source-limits",
            "always",
            "--syn-rate",
            "1",
            "--syn-burst",
            "1",
            "--allow",
            "198.19.1.0/24",
            "--deny",
            "198.19.2.0/24",
        ],
    );
    let mut flood = Flood::new(&net);
    for i in 0..200u16 {
        flood.tcp(spoofed(1, 5), 3000 + i, PORT, TCP_SYN);
        flood.tcp(spoofed(2, 5), 3000 + i, PORT, TCP_SYN);
        flood.tcp(spoofed(2, 6), 3000 + i, PORT, TCP_ACK);
        flood.tcp(spoofed(3, 5), 3000 + i, PORT, TCP_SYN);
    }
    let c = counters(&stats_after(&net, flood.sent));
    assert_eq!(
        nft.packets("allowed"),
        200,
        "an allowlisted SYN was limited"
    );
    assert_eq!(c["pass_allowlist"], 200);
    assert_eq!(nft.packets("denied"), 0, "a denylisted packet got in");
    assert_eq!(c["drop_denylist"], 400);
    assert_eq!(
        nft.packets("other"),
        1,
        "the ordinary source is held to its burst of 1"
    );
    let rows = sources(&stats(&net));
    assert!(
        !rows.contains_key("198.19.1.5") && !rows.contains_key("198.19.2.5"),
        "listed sources got per-source state: {rows:?}"
    );
    stop_clean(guard, &net);
}

/// A source that keeps flooding is banned, the ban shows in `guard stats`
/// and the log, and it expires by itself.
#[test]
fn a_source_that_keeps_flooding_is_banned_until_the_ban_expires() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let nft = Counters::install(
        &net.victim,
        &[("syns", &format!("ip saddr 198.19.0.7 {SYN}"))],
    );
    let guard = start_on(
        &net,
        &[
            "--mode",
            "enforce",
            // These tests are about the limits themselves, at any pressure.
            "--source-limits",
            "always",
            "--syn-rate",
            "5",
            "--syn-burst",
            "5",
            "--ban-threshold",
            "50",
            "--ban-window",
            "10",
            "--ban-duration",
            "2",
        ],
    );
    let mut flood = Flood::new(&net);
    let src = spoofed(0, 7);
    for i in 0..200u16 {
        flood.tcp(src, 4000 + i, PORT, TCP_SYN);
    }
    let during = stats_after(&net, flood.sent);
    let c = counters(&during);
    // 5 pass (the burst), 50 more drop for the limit and trigger the ban,
    // the remaining 145 drop for the ban.
    assert_eq!(
        (c["pass_limits"], c["drop_source_limit"], c["drop_banned"]),
        (5, 50, 145),
        "{during}"
    );
    let row = guard_proc::top_source(&during, "198.19.0.7")
        .unwrap_or_else(|| panic!("no row for {src}: {during}"));
    assert!(
        row["banned_secs"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s <= 2.0),
        "{row}"
    );
    assert_eq!(nft.packets("syns"), 5);

    thread::sleep(Duration::from_millis(2500));
    for i in 0..3u16 {
        flood.tcp(src, 5000 + i, PORT, TCP_SYN);
    }
    let c = counters(&stats_after(&net, flood.sent));
    assert_eq!(c["drop_banned"], 145, "still banned after the ban expired");
    assert_eq!(
        nft.packets("syns"),
        5 + 3,
        "the source should be back to its limit after the ban"
    );
    let finished = stop_clean(guard, &net);
    assert!(
        finished.stderr.contains("198.19.0.7 banned for 2s"),
        "{finished}"
    );
}

/// Bad configuration: exit 2, the key and the reason in the message, and
/// nothing attached or pinned.
#[test]
fn bad_configuration_is_refused_before_anything_changes() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let file = std::env::temp_dir().join(format!("guardt-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "iface = [\"{}\"]\nmode = \"enforce\"\nsyn-rat = 5\n",
            net.victim_if
        ),
    )
    .expect("write config");
    let file_arg = file.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--config", &file_arg, "--netns", &net.victim],
            "unknown field `syn-rat`",
        ),
        (
            vec![
                "--netns",
                &net.victim,
                "-i",
                &net.victim_if,
                "--syn-rate",
                "0",
                "--syn-burst",
                "0",
            ],
            "`syn-rate = 0, syn-burst = 0` (from --syn-burst)",
        ),
        (
            vec![
                "--netns",
                &net.victim,
                "-i",
                &net.victim_if,
                "--prefix-v6",
                "200",
            ],
            "`prefix-v6 = 200` (from --prefix-v6): a prefix length must be between 1 and 128",
        ),
        (
            vec![
                "--netns",
                &net.victim,
                "-i",
                &net.victim_if,
                "--deny",
                "198.19.0.0/33",
            ],
            "`deny = 198.19.0.0/33` (from --deny): prefix length `33` is not between 0 and 32",
        ),
        (
            vec![
                "--netns",
                &net.victim,
                "-i",
                &net.victim_if,
                "-i",
                &net.victim_if,
            ],
            "listed twice",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["run"];
        argv.extend(args.iter().copied());
        let out = guard_proc::run(&argv);
        out.assert_code(2);
        assert!(
            out.stderr.contains(expected),
            "guard {} should say `{expected}`:\n{out}",
            argv.join(" ")
        );
        assert!(!net.victim_link().contains("xdp"));
        assert!(!pin_dir(&net).exists());
    }
    std::fs::remove_file(&file).expect("remove config");
}

/// Runs `frame` `runs` times on each of two CPUs at once, and `during`
/// on this thread once both are about to start; checks the runs
/// overlapped for most of their time. Returns the counters after, when
/// each CPU's runs ended, and what `during` returned.
fn on_two_cpus<R>(
    prog: &Program,
    frame: &[u8],
    runs: u32,
    during: impl FnOnce() -> R,
) -> (CounterBlock, [Instant; 2], R) {
    let cpus = cpu::allowed();
    assert!(
        cpus.len() >= 2,
        "this test needs two CPUs, it may use {cpus:?}"
    );
    let syns = prog.counters().get(Counter::TcpSyn);
    let fd = prog.fd();
    let started = Barrier::new(3);
    let (spans, during): (Vec<(Instant, Instant)>, R) = thread::scope(|s| {
        let threads: Vec<_> = cpus[..2]
            .iter()
            .map(|&on| {
                let started = &started;
                s.spawn(move || {
                    cpu::pin(on);
                    started.wait();
                    let start = Instant::now();
                    testrun::run(fd, frame, runs).expect("BPF_PROG_TEST_RUN");
                    (start, Instant::now())
                })
            })
            .collect();
        started.wait();
        let during = during();
        let spans = threads
            .into_iter()
            .map(|t| t.join().expect("a run's thread"))
            .collect();
        (spans, during)
    });
    let overlap = spans[0]
        .1
        .min(spans[1].1)
        .saturating_duration_since(spans[0].0.max(spans[1].0));
    let longest = (spans[0].1 - spans[0].0).max(spans[1].1 - spans[1].0);
    assert!(
        overlap * 2 > longest,
        "the runs hardly overlapped: {overlap:?} of {longest:?}"
    );
    let c = prog.counters();
    let by_cpu: Vec<u64> = prog
        .counters_per_cpu()
        .iter()
        .map(|b| b.get(Counter::TcpSyn))
        .collect();
    println!(
        "two CPUs: {} SYNs (by CPU {by_cpu:?}), {} admitted, {} compare-and-swaps lost to the other CPU",
        c.get(Counter::TcpSyn),
        c.get(Counter::PassLimits),
        c.get(Counter::BucketContention)
    );
    assert_eq!(c.get(Counter::TcpSyn) - syns, 2 * u64::from(runs));
    (c, [spans[0].1, spans[1].1], during)
}

/// Two CPUs taking tokens from the same buckets at once (one source's
/// SYNs, so its own bucket, its prefix's and the global budget, every one
/// with room): every arrival is admitted, however often one CPU's
/// compare-and-swap loses to the other's (`bucket_contention` counts
/// those). Contention is not a reason to drop.
#[test]
fn two_cpus_taking_the_same_buckets_drop_nothing() {
    let _kernel = kernel_test!();
    // A token every nanosecond and the largest burst: room for far more
    // than the runs below, in every tier.
    let prog = Program::with_kernel_clock(&xdp::settings(
        "--mode enforce --syn-cookies never --syn-rate 1000000000 --syn-burst 4294967295 \
         --prefix-syn-rate 1000000000 --prefix-syn-burst 4294967295 \
         --global-rate 1000000000 --global-burst 4294967295",
    ));
    let frame = Packet::tcp(spoofed(7, 7), server_addr().ip(), 40000, PORT, TCP_SYN).frame();
    let (c, _, ()) = on_two_cpus(&prog, &frame, 3_000_000, || ());
    for reason in [
        Counter::DropSourceLimit,
        Counter::DropPrefixLimit,
        Counter::DropGlobalBudget,
    ] {
        assert_eq!(c.get(reason), 0, "{reason:?}");
    }
    assert_eq!(c.get(Counter::PassLimits), 2 * 3_000_000);
}

/// Two CPUs taking one source's tokens at once while the test's clock
/// steps on, each step a hundred tokens more, which both CPUs race for:
/// the bucket admits exactly its burst and the steps' tokens, not one
/// more or less, and its time moves by exactly one interval per arrival
/// admitted (an add that lost the last token to the other CPU is given
/// back), whichever CPU took each.
#[test]
fn two_cpus_racing_for_each_token_get_exactly_what_the_bucket_allows() {
    // More than all the steps add: a pause of the runs (a VM's CPU taken
    // away for milliseconds) leaves the steps' tokens in the bucket, where
    // a full bucket would lose them.
    const BURST: u64 = 100_000;
    const STEP: u64 = 100;
    const RUNS: u32 = 10_000_000;
    const NOW: u64 = 1_000 * NANOS_PER_SEC;
    let _kernel = kernel_test!();
    // One token a second, on a clock the test moves.
    let mut prog = Program::new(&xdp::settings(&format!(
        "--mode enforce --syn-cookies never --syn-rate 1 --syn-burst {BURST} \
         --ban-threshold 0 --prefix-syn-rate 1000000000 --prefix-syn-burst 4294967295"
    )));
    let frame = Packet::tcp(spoofed(7, 8), server_addr().ip(), 40000, PORT, TCP_SYN).frame();
    // The clock set, and the source's burst taken (and one SYN over it):
    // a bucket that is not full, where every step's tokens stay.
    assert_eq!(prog.run(&frame, NOW), XDP_PASS);
    let _ = prog.time(&frame, u32::try_from(BURST).expect("a burst"));
    assert_eq!(prog.counters().get(Counter::PassLimits), BURST);
    let mut clock = prog.clock();
    // Steps for the first 150 ms of runs that take several times that on
    // any machine: the last step's tokens are all taken before they end.
    let (c, ends, (steps, last_step)) = on_two_cpus(&prog, &frame, RUNS, || {
        let start = Instant::now();
        let mut steps = 0;
        while start.elapsed() < Duration::from_millis(150) {
            thread::sleep(Duration::from_micros(100));
            steps += 1;
            clock.set(NOW + steps * STEP * NANOS_PER_SEC);
        }
        (steps, Instant::now())
    });
    assert!(
        ends.iter().all(|end| *end > last_step),
        "the runs ended before the clock stopped stepping"
    );
    let admitted = BURST + steps * STEP;
    println!("{steps} steps of the clock: {admitted} tokens");
    assert_eq!(c.get(Counter::PassLimits), admitted);
    assert_eq!(
        c.get(Counter::DropSourceLimit),
        1 + BURST + 2 * u64::from(RUNS) - admitted
    );
    let sources = prog.sources();
    let st = sources.values().next().expect("the source's state");
    assert_eq!(
        st.tat[FlowClass::Syn.index()],
        NOW + admitted * NANOS_PER_SEC,
        "the bucket's time, against one interval per token from the first"
    );
}
