//! The conntrack controller end to end: a victim namespace with conntrack
//! in use (an nftables `ct state` rule) and a real server, spoofed SYN
//! floods from 198.19.0.0/16, a real client, and the table watched with
//! conntrack-tools and /proc from outside guard.
//!
//! These tests change global knobs (`nf_conntrack_max`); each saves them
//! first and puts them back on every exit path (`host::Saved`).

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use guard_common::SourceKey;
use guard_tests::{
    ct::{self, Count},
    flood::{Flood, spoofed, spoofed6},
    guard_proc::{self, Guard, pin_dir, start_on},
    host::{self, Saved},
    kernel_test,
    net::{
        self, ATTACKER_ADDR, ATTACKER_ADDR6, BEHIND_ADDR, BEHIND_ADDR6, MACVLAN_ADDR,
        MACVLAN_ADDR6, TestNet, VICTIM_ADDR, VICTIM_ADDR6,
    },
    nft::{Counters, nft},
    packet::{L4, Packet, TCP_SYN},
    server::{
        ALL_DHCP6_SERVERS, Dhcp4Client, Dhcp4Server, Dhcp6Client, EchoServer, UdpEcho,
        connect_echo, query, visit_echo,
    },
};

const PORT: u16 = 8080;
/// A port nothing on the victim listens on.
const CLOSED_PORT: u16 = 9;
/// A second server's port, which no test floods.
const SPARED_PORT: u16 = 8081;
/// A UDP server's port, and a UDP port nothing is bound to.
const OPEN_UDP_PORT: u16 = 5353;
const CLOSED_UDP_PORT: u16 = 9999;
const MAX: &str = "net.netfilter.nf_conntrack_max";
const BUCKETS: &str = "net.netfilter.nf_conntrack_buckets";
/// The state files of every guard on the host (tests run one at a time,
/// so any is this test's).
fn state_files() -> Vec<std::path::PathBuf> {
    guard::host::instances::all()
        .into_iter()
        .map(|i| i.dir.join("state.json"))
        .filter(|p| p.exists())
        .collect()
}

const TIMEOUTS: &[&str] = &[
    "tcp_timeout_syn_sent",
    "tcp_timeout_syn_recv",
    "tcp_timeout_established",
    "tcp_timeout_fin_wait",
    "tcp_timeout_close_wait",
    "tcp_timeout_last_ack",
    "tcp_timeout_time_wait",
    "tcp_timeout_unacknowledged",
    "udp_timeout",
    "udp_timeout_stream",
    "icmp_timeout",
    "icmpv6_timeout",
    "generic_timeout",
];

fn timeout_key(name: &str) -> String {
    format!("net.netfilter.nf_conntrack_{name}")
}

fn server_addr() -> SocketAddr {
    SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT)
}

/// A victim with conntrack in use and a server on PORT, IPv4 and IPv6.
struct Victim {
    net: TestNet,
    _server: EchoServer,
    _server6: EchoServer,
    _ct_rule: Counters,
}

impl Victim {
    fn new() -> Self {
        let net = TestNet::addressed();
        // A `ct state` rule makes conntrack track this namespace.
        let ct_rule = Counters::install(&net.victim, &[("new", "ct state new")]);
        let server = EchoServer::start(&net.victim, server_addr());
        let server6 = EchoServer::start(
            &net.victim,
            SocketAddr::new(VICTIM_ADDR6.parse().expect("address"), PORT),
        );
        Self {
            net,
            _server: server,
            _server6: server6,
            _ct_rule: ct_rule,
        }
    }

    /// Every timeout of the victim namespace, by sysctl name.
    fn timeouts(&self) -> Vec<(String, u64)> {
        TIMEOUTS
            .iter()
            .map(|t| {
                let key = timeout_key(t);
                let v = ct::local_sysctl(&self.net.victim, &key);
                (key, v)
            })
            .collect()
    }
}

/// SYNs from 100 spoofed sources, one in each of 198.19.0-99.0/24, in
/// turn, for `secs`: every source far above its limit.
fn many_source_flood(flood: &mut Flood, secs: u64) {
    let sources: Vec<std::net::IpAddr> = (0..100u8)
        .map(|i| std::net::IpAddr::from([198, 19, i, 7]))
        .collect();
    let start = Instant::now();
    let mut sport = 1024u16;
    while start.elapsed() < Duration::from_secs(secs) {
        for src in &sources {
            flood.tcp(*src, sport, PORT, TCP_SYN);
        }
        sport = sport.checked_add(1).unwrap_or(1024);
    }
}

/// `n` spoofed SYNs, two from each source, as fast as the sender goes.
fn syn_flood(flood: &mut Flood, n: u32) {
    for i in 0..n {
        flood.tcp(
            spoofed(i / 2),
            10_000 + u16::try_from(i % 50_000).expect("port"),
            PORT,
            TCP_SYN,
        );
    }
}

/// Polls the victim's fill until stopped; the peak is count / max at the
/// same moment.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_permille: Arc<AtomicU64>,
    peak_count: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(ns: &str) -> Self {
        let count = Count::open(ns);
        let stop = Arc::new(AtomicBool::new(false));
        let peak_permille = Arc::new(AtomicU64::new(0));
        let peak_count = Arc::new(AtomicU64::new(0));
        let (s, p, c) = (
            Arc::clone(&stop),
            Arc::clone(&peak_permille),
            Arc::clone(&peak_count),
        );
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let n = count.get();
                let max = host::sysctl(MAX);
                p.fetch_max(n * 1000 / max.max(1), Ordering::Relaxed);
                c.fetch_max(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            peak_permille,
            peak_count,
            thread: Some(thread),
        }
    }

    /// (peak fill in permille, peak count).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler");
        }
        (
            self.peak_permille.load(Ordering::Relaxed),
            self.peak_count.load(Ordering::Relaxed),
        )
    }
}

/// A real client connecting to the server from the attacker's side ten
/// times, 300 ms apart, while the caller floods (each within 5 s, its
/// attempts at moments of its own: `visit_echo`).
fn client_during_flood(net: &TestNet) -> thread::JoinHandle<Vec<std::io::Result<Duration>>> {
    let client_ns = net.attacker.clone();
    thread::spawn(move || {
        (0..10)
            .map(|_| {
                thread::sleep(Duration::from_millis(300));
                visit_echo(&client_ns, server_addr(), Duration::from_secs(5))
            })
            .collect()
    })
}

fn delta(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
    key: &str,
) -> u64 {
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

/// The table fills without guard; with guard on the same flood (100
/// sources, each far above its limit, for 3 s) it stays below 90% of max,
/// the kernel drops nothing, and a real client connects throughout.
#[test]
fn the_table_fills_without_guard_and_stays_below_90_percent_with_it() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX]);
    host::set_sysctl(MAX, 4096);
    let v = Victim::new();
    let ns = v.net.victim.clone();
    let mut flood = Flood::new(&v.net);

    // Without guard.
    let before = ct::stats(&ns);
    let sampler = Sampler::start(&ns);
    many_source_flood(&mut flood, 1);
    thread::sleep(Duration::from_millis(300));
    let (_, peak) = sampler.finish();
    let after = ct::stats(&ns);
    let (dropped, early) = (
        delta(&after, &before, "drop"),
        delta(&after, &before, "early_drop"),
    );
    eprintln!(
        "without guard: {} SYNs, peak {peak} of 4096, drop +{dropped}, early_drop +{early}",
        flood.sent
    );
    // The kernel counts the entry it then refuses: count can read max + 1.
    assert!(peak >= 4096, "the flood should fill the table: peak {peak}");
    assert!(dropped + early > 0, "a full table should drop");
    ct::flush(&ns);

    // With guard, the same flood for longer, while a client connects.
    let guard = start_on(&v.net, &["--mode", "enforce", "--summary-interval", "0"]);
    let before = ct::stats(&ns);
    let sampler = Sampler::start(&ns);
    let client = client_during_flood(&v.net);
    let sent = flood.sent;
    many_source_flood(&mut flood, 3);
    let results = client.join().expect("client");
    let (peak_permille, peak) = sampler.finish();
    let after = ct::stats(&ns);
    eprintln!(
        "with guard: {} SYNs, peak {peak} entries, peak fill {}.{}%, drop +{}, insert_failed +{}",
        flood.sent - sent,
        peak_permille / 10,
        peak_permille % 10,
        delta(&after, &before, "drop"),
        delta(&after, &before, "insert_failed")
    );
    assert!(
        peak_permille < 900,
        "peak fill {peak_permille} permille with guard"
    );
    assert_eq!(
        delta(&after, &before, "drop"),
        0,
        "the kernel dropped with guard"
    );
    assert_eq!(delta(&after, &before, "insert_failed"), 0);
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "legitimate connection {i} failed: {r:?}");
    }
    ct::flush(&ns);
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(
        finished.stderr.contains("level "),
        "no controller decision was logged:\n{finished}"
    );
    drop(saved);
}

/// The `i`-th spoofed source's packet of a kind, to the victim.
type SpoofedPacket = fn(&Flood, u32) -> Packet;

/// The packets besides SYNs and UDP that open a conntrack entry each, and
/// the table fills with: ICMP queries other than echo requests, and
/// datagrams of protocols conntrack tracks by addresses alone.
const OTHER_FLOWS: [(&str, SpoofedPacket); 4] = [
    ("ICMP timestamp requests", |f, i| {
        let src = spoofed(i);
        Packet::icmp(src, f.victim_for(src), 13, 1)
    }),
    ("ICMPv6 node information queries", |f, i| {
        let src = spoofed6(i);
        Packet::icmp(src, f.victim_for(src), 139, 1)
    }),
    ("IP protocol 253", |f, i| raw_ip(f, spoofed(i), 253)),
    ("GRE over IPv6", |f, i| raw_ip(f, spoofed6(i), 47)),
];

fn raw_ip(f: &Flood, src: std::net::IpAddr, proto: u8) -> Packet {
    let bytes = vec![0; 8];
    Packet::new(src, f.victim_for(src), L4::Raw { proto, bytes })
}

/// The same for ICMP queries other than echo requests and for other IP
/// protocols, each of which fills the table alone (8,192 sources of a
/// kind or a few more, a few hundred at a time, into 4,096 entries): with guard, the four
/// together from 60,000 sources for 3 s leave it below 90%, and a client
/// connects throughout.
#[test]
fn icmp_queries_and_other_protocols_cannot_fill_the_table() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX]);
    host::set_sysctl(MAX, 4096);
    let v = Victim::new();
    let ns = v.net.victim.clone();
    let mut flood = Flood::new(&v.net);

    for (i, (what, packet)) in OTHER_FLOWS.iter().enumerate() {
        // Twice the table's sources, in bursts the victim's backlog
        // (netdev_max_backlog, 1,000) takes whole; and, while a busy CPU
        // lost some of a burst and the table is not full, up to twice as
        // many again.
        let first = 16_000 * u32::try_from(i).expect("small");
        let mut sources = first..first + 16_000;
        let mut sent = 0;
        let mut count = 0;
        while count < 4096 && !sources.is_empty() {
            for n in sources.by_ref().take(256) {
                flood.send(&packet(&flood, n));
                sent += 1;
            }
            thread::sleep(Duration::from_millis(2));
            if sent >= 8_192 {
                thread::sleep(Duration::from_millis(100));
                count = Count::open(&ns).get();
            }
        }
        eprintln!("without guard, {sent} sources of {what}: {count} entries");
        assert!(count >= 4096, "{what} should fill the table: {count}");
        ct::flush(&ns);
    }

    let guard = start_on(&v.net, &["--mode", "enforce", "--summary-interval", "0"]);
    let before = ct::stats(&ns);
    let sampler = Sampler::start(&ns);
    let client = client_during_flood(&v.net);
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        for (_, packet) in &OTHER_FLOWS {
            let p = packet(&flood, n % 60_000);
            flood.send(&p);
        }
        n += 1;
    }
    let results = client.join().expect("client");
    let (peak_permille, peak) = sampler.finish();
    let after = ct::stats(&ns);
    let c = guard_proc::counters(&guard_proc::stats(&v.net));
    eprintln!(
        "with guard: {} packets, peak {peak} entries ({}.{}%), new flows {}, passed {}",
        4 * n,
        peak_permille / 10,
        peak_permille % 10,
        c["new_flows"],
        c["pass_limits"]
    );
    assert!(c["icmp"] >= u64::from(2 * n) && c["ip_other"] >= u64::from(2 * n));
    assert!(
        peak_permille < 900,
        "peak fill {peak_permille} permille with guard"
    );
    assert_eq!(delta(&after, &before, "drop"), 0, "the kernel dropped");
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "legitimate connection {i} failed: {r:?}");
    }
    ct::flush(&ns);
    guard.stop(libc::SIGTERM).assert_code(0);
    drop(saved);
}

/// Pushes the controller to change knobs: a flood it must hold back.
fn provoke_changes(v: &Victim, original_timeouts: &[(String, u64)]) {
    let mut flood = Flood::new(&v.net);
    let deadline = Instant::now() + Duration::from_secs(10);
    while v.timeouts() == original_timeouts {
        assert!(
            Instant::now() < deadline,
            "the controller never shortened a timeout"
        );
        syn_flood(&mut flood, 20_000);
    }
}

/// The restore tests' guard: enforcing, with a conntrack budget small
/// enough that the controller changes the knobs.
const RESTORABLE_RUN: &[&str] = &[
    "--mode",
    "enforce",
    "--conntrack-memory",
    "16",
    "--summary-interval",
    "0",
];

/// A victim for the restore tests: no guard's state file on the host,
/// max, buckets and `keys` saved, and max small enough for the controller
/// to change.
fn restorable(keys: &[&str]) -> (Saved, Victim) {
    assert!(
        state_files().is_empty(),
        "a guard state file already exists on this host"
    );
    let saved = Saved::new(&[&[MAX, BUCKETS], keys].concat());
    host::set_sysctl(MAX, 8192);
    (saved, Victim::new())
}

/// After SIGTERM, and after SIGKILL followed by `guard restore`, every
/// sysctl and the hash size are what they were before the run, exactly.
#[test]
fn every_value_is_restored_after_sigterm_and_after_sigkill_with_guard_restore() {
    let _kernel = kernel_test!();
    let (saved, v) = restorable(&[]);
    let timeouts = v.timeouts();
    let originals = || (host::sysctl(MAX), host::sysctl(BUCKETS));
    let before = originals();

    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let guard = start_on(&v.net, RESTORABLE_RUN);
        assert!(
            !state_files().is_empty(),
            "no state file before the first change"
        );
        provoke_changes(&v, &timeouts);
        // Entries live on after a flood; restoring nf_conntrack_max below
        // them is refused by design, so empty the table first.
        ct::flush(&v.net.victim);
        let finished = guard.stop(signal);
        if signal == libc::SIGKILL {
            assert_ne!(v.timeouts(), timeouts, "SIGKILL: nothing to restore?");
            assert!(!state_files().is_empty(), "SIGKILL: the state file is gone");
            let out = guard_proc::run(&["restore"]);
            out.assert_code(0);
            assert!(
                out.stdout
                    .contains("restored net.netfilter.nf_conntrack_tcp_timeout_syn_recv"),
                "{out}"
            );
        } else {
            finished.assert_code(0);
        }
        assert_eq!(originals(), before, "after {signal}: max and buckets");
        assert_eq!(v.timeouts(), timeouts, "after {signal}: timeouts");
        assert!(
            state_files().is_empty(),
            "after {signal}: the state file remains"
        );
        assert!(!pin_dir(&v.net).exists());
    }
    let out = guard_proc::run(&["restore"]);
    out.assert_code(0);
    assert!(out.stdout.contains("nothing to restore"), "{out}");
    drop(saved);
}

/// A guard started as `ip netns exec NS guard run` is NS's guard: after
/// SIGKILL, `guard restore` from the host's shell puts NS's timeouts back
/// in NS and leaves the host's own alone (such a guard once recorded NS's
/// timeouts as the host's, and the restore wrote them there).
#[test]
fn a_guard_started_by_ip_netns_exec_is_restored_into_its_namespace() {
    let _kernel = kernel_test!();
    let udp = timeout_key("udp_timeout");
    let (saved, v) = restorable(&[&udp]);
    // The namespace's value differs from the host's, so that a restore
    // into the wrong namespace shows.
    let host_udp = host::sysctl(&udp);
    v.net.sysctl(
        &v.net.victim,
        &udp.replace('.', "/"),
        &(host_udp + 1).to_string(),
    );
    let timeouts = v.timeouts();
    let before = (host::sysctl(MAX), host::sysctl(BUCKETS));
    let mut guard = Guard::start_in_netns(
        &v.net.victim,
        &[&["run", "--iface", &v.net.victim_if], RESTORABLE_RUN].concat(),
    );
    guard.wait_for(&pin_dir(&v.net).join("GUARD_COUNTERS"));
    guard.wait_ready();
    provoke_changes(&v, &timeouts);
    ct::flush(&v.net.victim);
    let _killed = guard.stop(libc::SIGKILL);
    assert_ne!(v.timeouts(), timeouts, "nothing to restore?");
    // From the host's shell, no namespace named: the killed guard is the
    // one to name.
    let status = guard_proc::run(&["status"]);
    status.assert_code(1);
    assert!(
        status.stderr.contains("is gone")
            && status.stderr.contains(&format!("netns/{}/", v.net.victim)),
        "{status}"
    );

    let out = guard_proc::run(&["restore"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!("netns {}", v.net.victim)),
        "{out}"
    );
    assert_eq!(v.timeouts(), timeouts, "the namespace's timeouts\n{out}");
    assert_eq!(
        host::sysctl(&udp),
        host_udp,
        "the host's own timeout changed\n{out}"
    );
    assert_eq!(
        (host::sysctl(MAX), host::sysctl(BUCKETS)),
        before,
        "max and buckets"
    );
    assert!(state_files().is_empty(), "the state file remains");
    assert!(!pin_dir(&v.net).exists());
    drop(saved);
}

/// The program's key of `src`: its /32, or its /64.
fn key_of(src: std::net::IpAddr) -> SourceKey {
    match src {
        std::net::IpAddr::V4(a) => SourceKey::v4(a.octets(), 32),
        std::net::IpAddr::V6(a) => SourceKey::v6(a.octets(), 64),
    }
}

/// guard in `mode` on the victim, banning a source after 20 of its SYNs
/// over a limit of 1 a second (50 at once), at any pressure.
fn quick_to_ban(v: &Victim, mode: &str) -> Guard {
    start_on(
        &v.net,
        &[
            "--mode",
            mode,
            "--source-limits",
            "always",
            "--syn-rate",
            "1",
            "--syn-burst",
            "50",
            "--ban-threshold",
            "20",
            "--summary-interval",
            "0",
        ],
    )
}

/// A source that keeps flooding is banned, and its entries are deleted
/// through ctnetlink at once (for IPv6, every entry of its /64).
fn banned_source_entries_are_deleted(src: std::net::IpAddr) {
    let v = Victim::new();
    let guard = quick_to_ban(&v, "enforce");
    let mut flood = Flood::new(&v.net);
    for i in 0..50 {
        flood.tcp(src, 20_000 + i, PORT, TCP_SYN);
    }
    let src_text = src.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ct::entries_from(&v.net.victim, &src_text) < 50 {
        assert!(
            Instant::now() < deadline,
            "the burst did not create its 50 entries"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for i in 50..100 {
        flood.tcp(src, 20_000 + i, PORT, TCP_SYN);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ct::entries_from(&v.net.victim, &src_text) > 0 {
        assert!(
            Instant::now() < deadline,
            "the banned source's entries were not deleted:\n{}",
            guard.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    let key = key_of(src);
    assert!(
        finished
            .stderr
            .contains(&format!("deleted 50 conntrack entries of banned {key}")),
        "{finished}"
    );
}

#[test]
fn a_banned_sources_entries_are_deleted() {
    let _kernel = kernel_test!();
    banned_source_entries_are_deleted(spoofed(6));
}

#[test]
fn a_banned_ipv6_sources_entries_are_deleted() {
    let _kernel = kernel_test!();
    banned_source_entries_are_deleted(spoofed6(6));
}

/// Monitor mode drops nothing, and deletes nothing either: a source that
/// enforce would ban is named with what enforce would do, and its
/// connections stay in the table.
#[test]
fn a_source_monitor_mode_would_ban_keeps_its_entries() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let guard = quick_to_ban(&v, "monitor");
    let src = spoofed(6);
    let mut flood = Flood::new(&v.net);
    for i in 0..100 {
        flood.tcp(src, 20_000 + i, PORT, TCP_SYN);
    }
    let src_text = src.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !guard.stderr().contains("enforce would ban it") {
        assert!(
            Instant::now() < deadline,
            "no line says the source would be banned:\n{}",
            guard.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // An enforcing guard deletes them within milliseconds of that line.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ct::entries_from(&v.net.victim, &src_text),
        100,
        "monitor mode passed every SYN, and keeps their entries:\n{}",
        guard.stderr()
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(
        finished.stderr.contains(&format!(
            "{} kept exceeding its syn limit: enforce would ban it for 60s and delete its conntrack entries; monitor mode passes it and keeps them",
            key_of(src)
        )) && !finished.stderr.contains("conntrack entries of banned"),
        "{finished}"
    );
}

/// --dry-run logs decisions and changes nothing: no sysctl, no state file,
/// no XDP budget.
#[test]
fn dry_run_decides_and_changes_nothing() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX]);
    host::set_sysctl(MAX, 4096);
    let v = Victim::new();
    let timeouts = v.timeouts();
    let guard = start_on(
        &v.net,
        &[
            "--mode",
            "enforce",
            "--dry-run",
            "--conntrack-memory",
            "8",
            "--summary-interval",
            "0",
        ],
    );
    let mut flood = Flood::new(&v.net);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        syn_flood(&mut flood, 5_000);
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(host::sysctl(MAX), 4096);
    assert_eq!(v.timeouts(), timeouts);
    assert!(state_files().is_empty());
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(finished.stderr.contains("dry run: level "), "{finished}");
    drop(saved);
}

/// Runs `script` in a private mount namespace (the host's mounts are not
/// touched) and returns (exit code, stderr).
fn in_private_mounts(script: &str) -> (Option<i32>, String) {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .output()
        .expect("unshare (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_read_only_sysctl_is_reported_once_and_guard_goes_on() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let buckets = host::sysctl(BUCKETS);
    // `equal` asks for more buckets at start-up; the file is read-only in
    // this mount namespace, so the write fails and must be reported once.
    let file = "/proc/sys/net/netfilter/nf_conntrack_buckets";
    let script = format!(
        "mount --bind {file} {file} && mount -o remount,bind,ro {file} && \
         exec timeout --preserve-status -s TERM 3 {} run --netns {} --iface {} --conntrack-buckets equal --summary-interval 0",
        guard_proc::guard_bin().display(),
        v.net.victim,
        v.net.victim_if
    );
    let (code, stderr) = in_private_mounts(&script);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("nf_conntrack_buckets is read-only").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("attached to"),
        "guard stopped instead of going on:\n{stderr}"
    );
    assert_eq!(host::sysctl(BUCKETS), buckets);
    assert!(state_files().is_empty());
}

#[test]
fn missing_conntrack_is_said_plainly() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let hide = "mount -t tmpfs none /proc/sys/net/netfilter";
    let (code, stderr) = in_private_mounts(&format!(
        "{hide} && exec {} tune",
        guard_proc::guard_bin().display()
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("nf_conntrack is not loaded") && stderr.contains("modprobe nf_conntrack"),
        "{stderr}"
    );
    let (code, stderr) = in_private_mounts(&format!(
        "{hide} && exec timeout --preserve-status -s TERM 2 {} run --netns {} --iface {} --summary-interval 0",
        guard_proc::guard_bin().display(),
        net.victim,
        net.victim_if
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("guard runs without its conntrack controller"),
        "{stderr}"
    );
    assert!(state_files().is_empty());
}

/// nf_conntrack loaded after guard started (a firewall's or a container
/// runtime's first rule loads it): guard finds it within a second and
/// starts its controller, which ticks, and which leaves the namespace's
/// timeouts as they were, and no state file, when guard stops.
#[test]
fn conntrack_loaded_after_the_start_starts_the_controller() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let before = v.timeouts();
    let (code, stderr) = in_private_mounts(&format!(
        "mount -t tmpfs none /proc/sys/net/netfilter && \
         {{ {} run --netns {} --iface {} --summary-interval 0 & pid=$!; \
         sleep 3; umount /proc/sys/net/netfilter; sleep 3; kill -TERM $pid; wait $pid; }}",
        guard_proc::guard_bin().display(),
        v.net.victim,
        v.net.victim_if
    ));
    assert_eq!(code, Some(0), "{stderr}");
    let without = stderr
        .find("guard runs without its conntrack controller until nf_conntrack is loaded")
        .unwrap_or_else(|| panic!("no warning at the start:\n{stderr}"));
    let starts = stderr
        .find(&format!(
            "nf_conntrack is loaded in netns {}: the conntrack controller starts",
            v.net.victim
        ))
        .unwrap_or_else(|| panic!("the controller never started:\n{stderr}"));
    assert!(without < starts, "{stderr}");
    // Its first tick: the level line.
    assert!(stderr[starts..].contains("level normal"), "{stderr}");
    assert_eq!(v.timeouts(), before);
    assert!(state_files().is_empty());
}

#[test]
fn a_memory_budget_smaller_than_the_table_is_refused() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let out = guard_proc::run(&[
        "run",
        "--netns",
        &v.net.victim,
        "--iface",
        &v.net.victim_if,
        "--conntrack-memory",
        "1",
    ]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`conntrack-memory = 1` allows")
            && out.stderr.contains("give at least"),
        "{out}"
    );
    assert!(!v.net.victim_link().contains("xdp"));
    assert!(state_files().is_empty());
}

#[test]
fn a_corrupt_state_file_stops_everything_until_discarded() {
    let _kernel = kernel_test!();
    assert!(
        state_files().is_empty(),
        "a guard state file already exists on this host"
    );
    let v = Victim::new();
    let dir = guard::model::paths::runtime_dir(Some(&v.net.victim));
    std::fs::create_dir_all(&dir).expect("runtime dir");
    std::fs::write(
        dir.join("state.json"),
        "{\"pid\": 7, \"global\": {\"net.netfilter.nf_conntrack_max\": ",
    )
    .expect("write");
    let out = guard_proc::run(&["restore"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("is corrupt") && out.stderr.contains("--discard"),
        "{out}"
    );
    let out = guard_proc::run(&["run", "--netns", &v.net.victim, "--iface", &v.net.victim_if]);
    out.assert_code(2);
    assert!(out.stderr.contains("is corrupt"), "{out}");
    assert!(
        !v.net.victim_link().contains("xdp"),
        "guard attached despite the corrupt state file"
    );
    let out = guard_proc::run(&["restore", "--discard"]);
    out.assert_code(0);
    assert!(state_files().is_empty());
}

#[test]
fn tune_applies_and_persists_what_it_recommends() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX, BUCKETS]);
    let v = Victim::new();
    let established = timeout_key("tcp_timeout_established");
    let out = guard_proc::run(&["tune", "--netns", &v.net.victim]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("net.netfilter.nf_conntrack_max") && out.stdout.contains("why"),
        "{out}"
    );
    let json = guard_proc::run(&["tune", "--json", "--netns", &v.net.victim]);
    json.assert_code(0);
    let recs: serde_json::Value = serde_json::from_str(&json.stdout).expect("tune --json");
    assert_eq!(recs[0]["key"], MAX, "{recs}");
    assert_eq!(recs[0]["current"], host::sysctl(MAX), "{recs}");
    assert!(recs[0]["why"].is_string(), "{recs}");
    host::set_sysctl(MAX, 8192);
    let out = guard_proc::run(&["tune", "--apply", "--netns", &v.net.victim]);
    out.assert_code(0);
    assert!(host::sysctl(MAX) > 8192, "{out}");
    assert_eq!(ct::local_sysctl(&v.net.victim, &established), 86_400);
    assert_eq!(
        host::sysctl(BUCKETS),
        saved.original(BUCKETS),
        "buckets were already enough"
    );
    let out = guard_proc::run(&["tune", "--persist", "--netns", &v.net.victim]);
    out.assert_code(2);
    assert!(out.stderr.contains("--persist writes /etc"), "{out}");
    drop(saved);
}

#[test]
fn notrack_rules_are_installed_and_removed_in_both_directions() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let list = || {
        Command::new("ip")
            .args(["netns", "exec", &v.net.victim, "nft", "list", "ruleset"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .expect("nft")
    };
    let out = guard_proc::run(&[
        "notrack",
        "--netns",
        &v.net.victim,
        "--port",
        "53",
        "--port",
        "8080",
    ]);
    out.assert_code(0);
    let rules = list();
    for rule in [
        "udp dport { 53, 8080 } notrack",
        "tcp sport { 53, 8080 } notrack",
        "priority raw",
    ] {
        assert!(rules.contains(rule), "missing `{rule}`:\n{rules}");
    }
    // An established connection to a notracked port creates no entry.
    ct::flush(&v.net.victim);
    connect_echo(&v.net.attacker, server_addr(), Duration::from_secs(3))
        .expect("connect through notrack");
    assert_eq!(
        ct::entries_from(&v.net.victim, "198.18.0.1"),
        0,
        "conntrack tracked a notracked port"
    );
    guard_proc::run(&["notrack", "--netns", &v.net.victim, "--remove"]).assert_code(0);
    assert!(!list().contains("guard_notrack"));
    // And through guard run: installed at start, removed at exit, in a
    // table of its own beside `guard notrack`'s, which it leaves alone.
    guard_proc::run(&[
        "notrack",
        "--netns",
        &v.net.victim,
        "--port",
        "5353",
        "--proto",
        "udp",
    ])
    .assert_code(0);
    let guard = start_on(&v.net, &["--notrack-port", "53", "--summary-interval", "0"]);
    assert!(
        list().contains("table inet guard_run_notrack"),
        "{}",
        list()
    );
    assert!(list().contains("table inet guard_notrack"), "{}", list());
    // A `flush ruleset` (what Debian's nftables.service does on reload)
    // takes it: guard sees it gone at its next tick and installs it again.
    let flushed = Command::new("ip")
        .args(["netns", "exec", &v.net.victim, "nft", "flush", "ruleset"])
        .status()
        .expect("nft");
    assert!(flushed.success());
    guard.wait_for_log("guard_run_notrack in netns");
    assert!(
        guard
            .stderr()
            .contains("was gone (a `flush ruleset`?): installed it again"),
        "{}",
        guard.stderr()
    );
    assert!(
        list().contains("table inet guard_run_notrack"),
        "{}",
        list()
    );
    // The tick logs the reinstall before it publishes its status, so the
    // count may lag the log line by that tick's remaining work.
    let reinstalled = || {
        let out = guard_proc::run(&["stats", "--json", "--interval", "0"]);
        out.assert_code(0);
        let stats: serde_json::Value = serde_json::from_str(&out.stdout).expect("stats --json");
        stats["conntrack"]["nft_reinstalled"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = reinstalled();
    while seen != 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        seen = reinstalled();
    }
    assert_eq!(seen, 1, "status never counted the reinstall");
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(!list().contains("guard_run_notrack"), "{finished}");
    // The flush took `guard notrack`'s table too; one installed again
    // outlives a guard run.
    guard_proc::run(&["notrack", "--netns", &v.net.victim, "--port", "5353"]).assert_code(0);
    let guard = start_on(&v.net, &["--notrack-port", "53", "--summary-interval", "0"]);
    guard.stop(libc::SIGTERM).assert_code(0);
    assert!(list().contains("table inet guard_notrack"), "{}", list());
    guard_proc::run(&["notrack", "--netns", &v.net.victim, "--remove"]).assert_code(0);
}

/// guard's view of one source: (passed, dropped) new flows.
fn source_row(net: &TestNet, source: &str) -> (u64, u64) {
    guard_proc::top_source(&guard_proc::stats(net), source).map_or((0, 0), |row| {
        let n = |k: &str| row[k].as_u64().expect("a number");
        (n("passed"), n("dropped"))
    })
}

/// With the default `--source-limits pressure`, a busy source (a NAT) is
/// not limited while the table has room (its limits are ten times the
/// configured ones), and is once a flood fills it.
#[test]
fn a_busy_source_is_limited_only_under_pressure() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX]);
    host::set_sysctl(MAX, 4096);
    let v = Victim::new();
    // Default limits: 50 SYNs a second, burst 100, per source. This test is
    // about the per-source tier: with SYN cookies possible the global
    // burst is capped at 2.5% of the table (102 SYNs at once here, 51 for
    // the SYN class), below this burst of 300 (see model::policy::ARMED_BURST_SHARE).
    let guard = start_on(
        &v.net,
        &[
            "--mode",
            "enforce",
            "--syn-cookies",
            "never",
            "--summary-interval",
            "0",
        ],
    );
    let mut flood = Flood::new(&v.net);
    let burst = |flood: &mut Flood, src: std::net::IpAddr| {
        for i in 0..300 {
            flood.tcp(src, 30_000 + i, PORT, TCP_SYN);
        }
        thread::sleep(Duration::from_millis(300));
    };

    let calm: std::net::IpAddr = [198, 19, 250, 1].into();
    // The busy source under pressure is known before the flood, as a NAT
    // that has been sending is: a source never seen that the budget drops
    // takes no entry, and this test is about the tier a known source has.
    let pressed: std::net::IpAddr = [198, 19, 251, 1].into();
    flood.tcp(pressed, 29_999, PORT, TCP_SYN);
    burst(&mut flood, calm);
    assert_eq!(
        source_row(&v.net, "198.19.250.1"),
        (300, 0),
        "calm: three times its burst, all passed"
    );
    assert_eq!(ct::entries_from(&v.net.victim, "198.19.250.1"), 300);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !["level elevated", "level high", "level critical"]
        .iter()
        .any(|l| guard.stderr().contains(l))
    {
        assert!(
            Instant::now() < deadline,
            "the flood never raised the level:\n{}",
            guard.stderr()
        );
        syn_flood(&mut flood, 5_000);
    }
    burst(&mut flood, pressed);
    let (passed, dropped) = source_row(&v.net, "198.19.251.1");
    assert_eq!(passed + dropped, 301, "its first SYN and the burst");
    assert!(
        dropped >= 100,
        "under pressure the same burst is limited: {passed} passed, {dropped} dropped"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
    drop(saved);
}

/// A busy NAT served before a random-source flood keeps its rate through
/// it while the table has room. The flood raises the level (an attack held
/// back at XDP: cookies answer it, so it puts nothing in the table), which
/// shortens the timeouts and arms cookies, but the per-source limits stay
/// at ten times the configured ones: the NAT's burst of three times the
/// configured burst, to a port the cookies do not cover (a second
/// server's, which the flood spares), all passes. (With
/// the limits tightened for the held-back flood, two thirds of it were
/// dropped, and a NAT that kept it up was banned.)
#[test]
fn a_busy_nat_keeps_its_rate_through_a_flood_held_back_while_the_table_has_room() {
    let _kernel = kernel_test!();
    let saved = Saved::new(&[MAX]);
    host::set_sysctl(MAX, 16_384);
    let v = Victim::new();
    let spared = SocketAddr::new(VICTIM_ADDR.parse().expect("address"), SPARED_PORT);
    let _spared = EchoServer::start(&v.net.victim, spared);
    let guard = start_on(&v.net, &["--mode", "enforce", "--summary-interval", "0"]);
    connect_echo(&v.net.attacker, server_addr(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the NAT's connection before the flood: {e}"));
    wait_counter(&v.net, "verified_reply", 1);

    let sampler = Sampler::start(&v.net.victim);
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = background_flood(Flood::new(&v.net), Arc::clone(&stop));
    guard.wait_for_log("SYN cookies on for port 8080");
    // A few of the controller's ticks with the flood answered.
    thread::sleep(Duration::from_secs(1));
    let nat: std::net::IpAddr = ATTACKER_ADDR.parse().expect("address");
    let (passed, dropped) = source_row(&v.net, ATTACKER_ADDR);
    let mut burst = Flood::new(&v.net);
    for i in 0..300 {
        burst.tcp(nat, 40_000 + i, SPARED_PORT, TCP_SYN);
    }
    thread::sleep(Duration::from_millis(300));
    let (passed_after, dropped_after) = source_row(&v.net, ATTACKER_ADDR);
    stop.store(true, Ordering::Relaxed);
    drop(flooder.join().expect("the flood"));

    let (peak_permille, _) = sampler.finish();
    assert!(
        peak_permille < 400,
        "the table kept room: {peak_permille} permille at its peak\n{}",
        guard.stderr()
    );
    assert_eq!(
        (passed_after - passed, dropped_after - dropped),
        (300, 0),
        "the NAT's burst during the flood\n{}",
        guard.stderr()
    );
    assert!(
        guard.stderr().contains("level elevated"),
        "the flood raised the level:\n{}",
        guard.stderr()
    );
    guard.stop(libc::SIGTERM).assert_code(0);
    drop(saved);
}

/// A spoofed SYN flood aimed at a macvlan container on the guarded link
/// (its own MAC and addresses; a macvtap VM's frames come the same way)
/// is not the host's: the container's frames never reach the host's
/// conntrack. guard as a new user starts it (`--mode enforce`, cookies
/// auto): the flood's SYNs pass as another device's (`pass_other_device`),
/// count as no new flow of the host's, spend none of its budget and arm
/// none of its ports (before, the host's port 8080 was armed for a flood
/// its cookies could not answer, and the budget the host's own new
/// clients need was spent on it). The container's new clients connect
/// throughout, as do the host's.
#[test]
fn a_flood_at_a_macvlan_container_is_not_the_hosts() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let container = net.macvlan();
    // Its SYN-ACKs to the spoofed range go back to the attacker, where
    // nothing forwards them.
    let _ = Command::new("ip")
        .args([
            "-n",
            &container.ns,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            ATTACKER_ADDR,
        ])
        .status();
    let theirs = SocketAddr::new(MACVLAN_ADDR.parse().expect("address"), PORT);
    let _server = EchoServer::start(&container.ns, theirs);
    let _own = EchoServer::start(&net.victim, server_addr());
    let guard = start_on(&net, &["--mode", "enforce", "--fingerprints", "off"]);
    // The controller's first tick has written the host's addresses once
    // a connection to the container counts as another device's.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard_proc::counters(&guard_proc::stats(&net))["pass_other_device"] == 0 {
        assert!(
            Instant::now() < deadline,
            "no frame taken as another device's\n{}",
            guard.stderr()
        );
        connect_echo(&net.attacker, theirs, Duration::from_secs(3)).expect("the container");
        thread::sleep(Duration::from_millis(100));
    }
    let flood = Flood::new(&net).aimed_at(
        net.mac(&container.ns, &container.dev),
        MACVLAN_ADDR.parse().expect("address"),
        MACVLAN_ADDR6.parse().expect("address"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = background_flood(flood, Arc::clone(&stop));
    // Five seconds of it: the controller's ticks would have armed the
    // port and bound the budget within two.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(5) {
        for addr in [theirs, server_addr()] {
            connect_echo(&net.attacker, addr, Duration::from_secs(3)).unwrap_or_else(|e| {
                panic!(
                    "a connection to {addr} during the flood: {e}\n{}",
                    guard.stderr()
                )
            });
            served += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let flood = flooder.join().expect("the flood");
    let c = guard_proc::counters(&guard_proc::stats(&net));
    assert!(served >= 20, "{served} connections");
    assert!(
        c["pass_other_device"] >= flood.sent,
        "every flood SYN another device's: {} of {}\n{c:?}",
        c["pass_other_device"],
        flood.sent
    );
    assert_eq!(
        c["pass_other_device"] + c["new_flows"],
        c["tcp_syn"],
        "every SYN another device's or a new flow of the host's: {c:?}"
    );
    assert!(c["new_flows"] <= served, "{c:?}");
    assert_eq!(c["drop_global_budget"] + c["drop_closed_port"], 0, "{c:?}");
    assert_eq!(c["cookie_synack"], 0, "{c:?}");
    let log = guard.stderr();
    assert!(!log.contains("SYN cookies on"), "{log}");
    assert!(!log.contains("level elevated"), "{log}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The host's own MACs follow its devices while guard runs, though the
/// namespace's devices are read again only once the kernel says one
/// changed (`host::iface::LinkCache`): once the guarded interface takes
/// a new MAC, SYNs to it are the host's new flows and SYNs to the old one
/// another device's; once a macvlan shim is added on it in the host's
/// namespace, SYNs to the shim's MAC are the host's too. (A MAC not
/// followed would let every frame to it past the limits.)
#[test]
fn the_hosts_macs_follow_its_devices() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let guard = start_on(&net, &["--fingerprints", "off", "--summary-interval", "0"]);
    let (old, new, shim) = (
        net.mac(&net.victim, &net.victim_if),
        [0x02, 0, 0, 0, 0x77, 0x01],
        [0x02, 0, 0, 0, 0x77, 0x02],
    );
    // SYNs to a MAC nobody here has are another device's once the first
    // tick has written the host's.
    let (host, other) = ((5, 0), (0, 5));
    becomes(&net, &guard, [0x02, 0, 0, 0, 0x77, 0x09], other);
    net::ip(&[
        "-n",
        &net.victim,
        "link",
        "set",
        "dev",
        &net.victim_if,
        "address",
        "02:00:00:00:77:01",
    ]);
    becomes(&net, &guard, new, host);
    becomes(&net, &guard, old, other);
    net::ip(&[
        "-n",
        &net.victim,
        "link",
        "add",
        "shim0",
        "link",
        &net.victim_if,
        "address",
        "02:00:00:00:77:02",
        "up",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    becomes(&net, &guard, shim, host);
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Sends five SYNs from spoofed sources to the victim's addresses in
/// frames for `mac`, until guard counts them as `want` (new flows of the
/// host's, frames for another device) within 5 s.
fn becomes(net: &TestNet, guard: &Guard, mac: [u8; 6], want: (u64, u64)) {
    let victim = VICTIM_ADDR.parse().expect("address");
    let victim6 = VICTIM_ADDR6.parse().expect("address");
    let mut flood = Flood::new(net).aimed_at(mac, victim, victim6);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    loop {
        let before = guard_proc::counters(&guard_proc::stats(net));
        for _ in 0..5 {
            let src = spoofed(9000 + i);
            flood.tcp(
                src,
                1024 + u16::try_from(i % 60_000).expect("port"),
                PORT,
                TCP_SYN,
            );
            i += 1;
        }
        // Counted once `tcp_syn` has them all.
        let counted = loop {
            let c = guard_proc::counters(&guard_proc::stats(net));
            if c["tcp_syn"] >= before["tcp_syn"] + 5 {
                break c;
            }
            assert!(Instant::now() < deadline, "guard did not count the SYNs");
            thread::sleep(Duration::from_millis(20));
        };
        let got = (
            counted["new_flows"] - before["new_flows"],
            counted["pass_other_device"] - before["pass_other_device"],
        );
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SYNs to {mac:02x?} counted as (new flows, another device's) {got:?}, not {want:?}\n{}",
            guard.stderr()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The victim's nat rule for [`a_client_of_a_port_the_nat_rules_rewrite_connects_through_a_flood`]:
/// connections to PORT go to PORT + 1, as a published port's go to its
/// container.
const REDIRECT: &str = "table ip publish {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport 8080 redirect to :8081
  }
}
";

/// Spoofed SYNs to PORT at about 20,000/s, one new source each, until
/// `stop` (at most a minute).
fn background_flood(flood: Flood, stop: Arc<AtomicBool>) -> thread::JoinHandle<Flood> {
    flooding(flood, stop, |flood, i, sport| {
        flood.tcp(spoofed(i), sport, PORT, TCP_SYN);
    })
}

/// `send(flood, i, sport)` for the `i`-th spoofed source (below 60,000)
/// about 20,000 times a second, until `stop` (at most a minute).
fn flooding(
    mut flood: Flood,
    stop: Arc<AtomicBool>,
    send: impl Fn(&mut Flood, u32, u16) + Send + 'static,
) -> thread::JoinHandle<Flood> {
    thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
            for _ in 0..200 {
                let sport = 1024 + u16::try_from(i % 60_000).expect("port");
                send(&mut flood, i % 60_000, sport);
                i += 1;
            }
            thread::sleep(Duration::from_millis(10));
        }
        flood
    })
}

/// Waits until guard's counter `name` on `net` reaches `at_least`.
fn wait_counter(net: &TestNet, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = guard_proc::counters(&guard_proc::stats(net))[name];
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {n}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A port the nat rules rewrite (a REDIRECT here, as a container's
/// published port is DNAT'ed) has no socket of its own for a connection,
/// so the ACK check's socket lookup cannot verify its clients. While the
/// budget binds, guard's egress program remembers the SYN-ACKs the host
/// sends, and the client's handshake ACK, which answers one, verifies it:
/// through a flood that keeps the budget spent (about 10 SYNs a second
/// admitted of 20,000), every one of its next connections gets through,
/// and the flood is still dropped.
#[test]
fn a_client_of_a_port_the_nat_rules_rewrite_connects_through_a_flood() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let (_service, guard) = rewritten_port(&net);

    // The flood spends the budget; the controller sees it drop and has
    // returning clients verified (for --calm, 30 s, after the last drop).
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = background_flood(Flood::new(&net), stop.clone());
    wait_counter(&net, "drop_global_budget", 1000);
    thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let flood = flooding.join().expect("flood");

    // A pause refills the budget: the client's first connection gets
    // through it and is verified by its handshake's last ACK.
    thread::sleep(Duration::from_millis(1500));
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(5)).unwrap_or_else(|e| {
        panic!(
            "the first connection, the budget refilled: {e}\n{}",
            guard.stderr()
        )
    });
    wait_counter(&net, "verified_ack", 1);

    connects_through_a_flood(&net, flood, &guard, "the verified client");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Floods again with `flood` until the budget has dropped 1,000 more
/// SYNs, then makes 10 connections in a row through it (each within 2.5
/// s, its attempts at moments of its own: `visit_echo`), which must all
/// get through; and the flood must have been dropped. guard's counters at
/// the end.
fn connects_through_a_flood(
    net: &TestNet,
    flood: Flood,
    guard: &Guard,
    who: &str,
) -> std::collections::BTreeMap<String, u64> {
    let dropped = wait_counter(net, "drop_global_budget", 0);
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = background_flood(flood, stop.clone());
    wait_counter(net, "drop_global_budget", dropped + 1000);
    let results: Vec<_> = (0..10)
        .map(|_| visit_echo(&net.attacker, server_addr(), Duration::from_millis(2500)))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let flood = flooding.join().expect("flood");
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.is_ok(),
            "connection {i} of {who} during the flood: {r:?}\n{}",
            guard.stderr()
        );
    }
    let c = guard_proc::counters(&guard_proc::stats(net));
    assert!(
        c["drop_global_budget"] > dropped + 1000,
        "the flood ({} SYNs) was not dropped: {c:?}",
        flood.sent
    );
    c
}

/// The host's own lookups (a socket each, as a resolver's client takes a
/// new port for each query), over IPv4 and IPv6, are all answered through
/// a random-source UDP flood that keeps the budget spent: their answers
/// come on the flows their queries opened, which the egress program
/// remembers, so they are no new flows. Counted as new, to ports with no
/// listener as the flood's are, at one flow a second admitted of 20,000,
/// next to none was.
#[test]
fn the_hosts_own_lookups_are_answered_through_a_udp_flood() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let resolvers = [
        SocketAddr::new(ATTACKER_ADDR.parse().expect("address"), 53),
        SocketAddr::new(ATTACKER_ADDR6.parse().expect("address"), 53),
    ];
    let _resolvers = resolvers.map(|addr| UdpEcho::start(&net.attacker, addr));
    let guard = start_on(
        &net,
        &[
            "--mode",
            "enforce",
            "--global-rate",
            "20",
            "--global-burst",
            "20",
            "--fingerprints",
            "off",
            "--summary-interval",
            "0",
        ],
    );
    queries_through_a_closed_port_flood(
        &net,
        &guard,
        &net.victim,
        resolvers,
        200,
        Duration::from_millis(10),
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Spoofed datagrams to [`CLOSED_UDP_PORT`], about 20,000 a second, each
/// from a new source, until `stop`.
fn udp_flood_at_a_closed_port(net: &TestNet, stop: Arc<AtomicBool>) -> thread::JoinHandle<Flood> {
    flooding(Flood::new(net), stop, |flood, i, sport| {
        let victim = flood.victim_for(spoofed(i));
        let datagram = Packet::udp(spoofed(i), victim, sport, CLOSED_UDP_PORT, b"flood");
        flood.send(&datagram);
    })
}

/// `n` queries from namespace `ns` to `servers` in turn, one every `gap`,
/// each from a socket of its own, through [`udp_flood_at_a_closed_port`]
/// once it has made `guard` drop 1,000 datagrams as a closed port's: the
/// flood must have been dropped so throughout, and every query answered.
fn queries_through_a_closed_port_flood(
    net: &TestNet,
    guard: &Guard,
    ns: &str,
    servers: [SocketAddr; 2],
    n: u32,
    gap: Duration,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood_at_a_closed_port(net, stop.clone());
    answered_through_a_flood(net, guard, (flood, stop), "drop_closed_port", n, gap, |i| {
        let server = servers[i as usize % 2];
        let question = format!("query {i} to {server}");
        let answer = query(ns, server, question.as_bytes(), Duration::from_millis(500));
        (question, answer)
    });
}

/// `n` exchanges (`exchange(i)`: what it was, and its outcome), one every
/// `gap`, through `flood` (its thread and its stop) once it has made
/// `guard` count 1,000 drops in `counter`: the flood must have been
/// dropped so throughout, and every exchange answered.
fn answered_through_a_flood(
    net: &TestNet,
    guard: &Guard,
    (flood, stop): (thread::JoinHandle<Flood>, Arc<AtomicBool>),
    counter: &str,
    n: u32,
    gap: Duration,
    mut exchange: impl FnMut(u32) -> (String, std::io::Result<()>),
) {
    let dropped = wait_counter(net, counter, 1000);
    let mut unanswered = Vec::new();
    for i in 0..n {
        thread::sleep(gap);
        let (what, outcome) = exchange(i);
        if let Err(e) = outcome {
            unanswered.push(format!("{what}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flood = flood.join().expect("flood");
    let c = guard_proc::counters(&guard_proc::stats(net));
    assert!(
        c[counter] > dropped + 1000,
        "the flood ({} datagrams) was not dropped ({counter}) throughout: {c:?}",
        flood.sent
    );
    assert!(
        unanswered.is_empty(),
        "{} of {n} unanswered: {unanswered:?}\n{}",
        unanswered.len(),
        guard.stderr()
    );
}

/// A random-source UDP flood at the victim's open UDP port, from the
/// addresses `source` gives, until the flag it returns is set.
fn open_port_flood(
    net: &TestNet,
    source: fn(u32) -> std::net::IpAddr,
) -> (thread::JoinHandle<Flood>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flood = flooding(Flood::new(net), stop.clone(), move |flood, i, sport| {
        let src = source(i);
        let datagram = Packet::udp(src, flood.victim_for(src), sport, OPEN_UDP_PORT, b"flood");
        flood.send(&datagram);
    });
    (flood, stop)
}

/// guard as these tests run it against floods at closed ports: a small
/// budget, which a flood spends at once, and no signatures (a flood's
/// fixed traits would be learned, and dropped before the budget).
const SMALL_BUDGET: [&str; 10] = [
    "--mode",
    "enforce",
    "--global-rate",
    "100",
    "--global-burst",
    "100",
    "--fingerprints",
    "off",
    "--summary-interval",
    "0",
];

/// A random-source UDP flood aimed at a port nothing here listens on
/// spends the closed ports' bucket of the budget alone: new clients of
/// the port a server has bound (a new socket, so a new flow, for each
/// query), over IPv4 and IPv6, are all answered through it, and the flood
/// is dropped as a closed port's. Before, the flood spent the one UDP
/// bucket (35 new flows a second, of 20,000 offered), and next to none
/// was.
#[test]
fn new_clients_of_an_open_udp_port_are_served_through_a_flood_at_a_closed_one() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    new_udp_clients_through_a_closed_port_flood(&net, &net.victim, [VICTIM_ADDR, VICTIM_ADDR6]);
}

/// A machine the host routes to (a container with an address of its own)
/// serves a UDP port the host does not: its new clients' datagrams, to a
/// port closed here, take the UDP class's bucket once the closed ports'
/// is spent (the FIB says they go on), so a flood at the host's closed
/// ports does not starve them. Without the route asked, 37 of the 40
/// queries met the closed ports' spent bucket.
#[test]
fn a_routed_machines_new_clients_are_not_a_closed_ports() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let behind = net.behind();
    new_udp_clients_through_a_closed_port_flood(&net, &behind.ns, [BEHIND_ADDR, BEHIND_ADDR6]);
}

/// guard with [`SMALL_BUDGET`], UDP echo servers in namespace `ns` on
/// `addrs` (IPv4, IPv6) at [`OPEN_UDP_PORT`], and 40 new clients over
/// four seconds of a flood at the victim's closed port: every one must
/// be answered.
fn new_udp_clients_through_a_closed_port_flood(net: &TestNet, ns: &str, addrs: [&str; 2]) {
    let servers = addrs.map(|a| SocketAddr::new(a.parse().expect("address"), OPEN_UDP_PORT));
    let _servers = servers.map(|addr| UdpEcho::start(ns, addr));
    let guard = start_on(net, &SMALL_BUDGET);
    queries_through_a_closed_port_flood(
        net,
        &guard,
        &net.attacker,
        servers,
        40,
        Duration::from_millis(100),
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A DHCPv6 client's exchanges are answered through a random-source UDP
/// flood at an open port that keeps the budget spent. The client sends
/// from port 546 to ff02::1:2 on its link, and a server on the link
/// answers from its own link-local address: a new flow each time (with
/// `--udp-flow-idle 1`, as a renewal minutes apart is), which guard lets
/// past the budget because the host's message asked for it. Before, the
/// answers met the flood in the budget (by hand: ISC `dhclient -6` got no
/// lease in 40 s), and 7 and 8 of these 10 went unanswered in two runs.
/// The link-local addresses never leave the test's veth pair: DHCPv6
/// speaks only link-local.
#[test]
fn a_dhcp6_client_is_answered_through_a_udp_flood() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    for (ns, dev, addr) in [
        (&net.attacker, &net.attacker_if, "fe80::1/64"),
        (&net.victim, &net.victim_if, "fe80::2/64"),
    ] {
        net::ip(&["-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad"]);
    }
    let any = |port| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let _server = UdpEcho::joined(&net.attacker, any(547), ALL_DHCP6_SERVERS, &net.attacker_if);
    // Bound from the start, as a client keeps its port: guard counts it
    // open, so the answers take the UDP class's bucket, the one the flood
    // spends.
    let client = Dhcp6Client::bind(&net.victim, &net.victim_if);
    exchanges_through_an_open_port_flood(&net, any(OPEN_UDP_PORT), spoofed6, |i| {
        let message = format!("solicit {i}");
        let answer = client.exchange(message.as_bytes(), Duration::from_millis(500));
        (message, answer)
    });
}

/// A DHCPv4 client's exchanges are answered through a random-source UDP
/// flood at an open port that keeps the budget spent. The client
/// broadcasts from port 68 to 67, and a server on the link answers from
/// its own address to the broadcast address, as it does a client with no
/// address yet: no flow the host opened, and a new flow each time (with
/// `--udp-flow-idle 1`), which guard lets past the budget because it
/// carries the `xid` of the host's request. Before, the answers met the
/// flood in the budget (by hand: ISC `dhclient` got no lease in 10 s,
/// eight runs of eight), and 9 of these 10 went unanswered in two runs.
#[test]
fn a_dhcp4_client_is_answered_through_a_udp_flood() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = Dhcp4Server::start(&net.attacker, &net.attacker_if);
    // Bound from the start, as a client keeps its port (see the DHCPv6
    // test).
    let client = Dhcp4Client::bind(&net.victim, &net.victim_if);
    let service = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, OPEN_UDP_PORT));
    exchanges_through_an_open_port_flood(&net, service, spoofed, |i| {
        let xid = 0x6775_0000 + i;
        let answer = client.exchange(xid, Duration::from_millis(500));
        (format!("xid {xid:#x}"), answer)
    });
}

/// guard with [`SMALL_BUDGET`] and `--udp-flow-idle 1` on `net`, with a
/// UDP echo service in the victim at `service` (the open port): one
/// `exchange` while calm (0), then ten 1.2 s apart (past the idle time,
/// so each answer's flow is new again) through a random-source flood at
/// that port from the addresses `source` gives, every one answered
/// ([`answered_through_a_flood`]).
fn exchanges_through_an_open_port_flood(
    net: &TestNet,
    service: SocketAddr,
    source: fn(u32) -> std::net::IpAddr,
    mut exchange: impl FnMut(u32) -> (String, std::io::Result<()>),
) {
    let _service = UdpEcho::start(&net.victim, service);
    let guard = start_on(
        net,
        &[&SMALL_BUDGET[..], &["--udp-flow-idle", "1"]].concat(),
    );
    let (what, calm) = exchange(0);
    calm.unwrap_or_else(|e| {
        panic!(
            "{what}: no answer before the flood: {e}\n{}",
            guard.stderr()
        )
    });
    let (flood, stop) = open_port_flood(net, source);
    answered_through_a_flood(
        net,
        &guard,
        (flood, stop),
        "drop_global_budget",
        10,
        Duration::from_millis(1200),
        |i| exchange(i + 1),
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A port served some way guard cannot see (no socket, no nat rule:
/// IPVS, an eBPF load balancer) is named open with `--open-port`: a flood
/// at it is its class's to carry, dropped by the UDP bucket, not the
/// closed ports', and `guard stats` lists it among the open ports.
#[test]
fn a_port_named_open_is_counted_open() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let named = format!("{CLOSED_UDP_PORT}/udp");
    let guard = start_on(
        &net,
        &[&SMALL_BUDGET[..], &["--open-port", &named]].concat(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood_at_a_closed_port(&net, stop.clone());
    wait_counter(&net, "drop_global_budget", 1000);
    stop.store(true, Ordering::Relaxed);
    let flood = flood.join().expect("flood");
    let out = guard_proc::run(&["stats", "--netns", &net.victim, "--interval", "0"]);
    out.assert_code(0);
    let c = guard_proc::counters(&guard_proc::stats(&net));
    assert_eq!(c["drop_closed_port"], 0, "{c:?}");
    // Another port, not named, is closed all the same.
    let stop = Arc::new(AtomicBool::new(false));
    let other = flooding(flood, stop.clone(), |flood, i, sport| {
        let victim = flood.victim_for(spoofed(i));
        let datagram = Packet::udp(spoofed(i), victim, sport, CLOSED_UDP_PORT + 1, b"flood");
        flood.send(&datagram);
    });
    wait_counter(&net, "drop_closed_port", 1000);
    stop.store(true, Ordering::Relaxed);
    drop(other.join().expect("flood"));
    assert!(
        out.stdout.contains(&format!("udp {CLOSED_UDP_PORT}")),
        "the port named is listed open:\n{out}"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The same for TCP: a random-source SYN flood aimed at a closed port
/// spends the closed ports' SYN bucket, and every one of ten new
/// connections to the server's port over two seconds of it, over IPv4
/// and IPv6, gets through within 2.5 s. Before, the flood spent the SYN bucket (45 SYNs a
/// second, of 20,000) and next to none did.
#[test]
fn new_clients_of_an_open_tcp_port_connect_through_a_flood_at_a_closed_one() {
    let _kernel = kernel_test!();
    let v = Victim::new();
    let net = &v.net;
    let guard = start_on(net, &SMALL_BUDGET);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = flooding(Flood::new(net), stop.clone(), |flood, i, sport| {
        flood.tcp(spoofed(i), sport, CLOSED_PORT, TCP_SYN);
    });
    let dropped = wait_counter(net, "drop_closed_port", 1000);
    let servers =
        [VICTIM_ADDR, VICTIM_ADDR6].map(|a| SocketAddr::new(a.parse().expect("address"), PORT));
    // Over two seconds of the flood.
    let results: Vec<_> = (0..10)
        .map(|i| {
            thread::sleep(Duration::from_millis(200));
            visit_echo(&net.attacker, servers[i % 2], Duration::from_millis(2500))
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let flood = flood.join().expect("flood");
    let c = guard_proc::counters(&guard_proc::stats(net));
    assert!(
        c["drop_closed_port"] > dropped + 1000,
        "the flood ({} SYNs) was not dropped as a closed port's: {c:?}",
        flood.sent
    );
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.is_ok(),
            "connection {i} during the flood: {r:?}\n{}",
            guard.stderr()
        );
    }
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A DNS-like server on a port conntrack skips (`guard notrack --port 53
/// --proto udp`, as the README advises for stateless ports, read from the
/// ruleset): a resolver's queries, each from a new port, open no
/// conntrack entry, so they are no new flows. With
/// per-source limits of 5 a second at every level, 300 queries from one
/// client in 3 s, over IPv4 and IPv6, are all answered, none limited,
/// the client not banned; before, the limit dropped the client's queries
/// and the ban then took all of them. A TCP port conntrack skips gets no
/// SYN cookies, whose SYNPROXY needs conntrack (before, with cookies
/// always on, every connection to it failed after its handshake), and
/// guard says so; its clients connect, unlimited (`--notrack-port`), and
/// the other port still gets cookies.
#[test]
fn a_port_conntrack_skips_passes_unlimited_and_gets_no_cookies() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let servers =
        [VICTIM_ADDR, VICTIM_ADDR6].map(|a| SocketAddr::new(a.parse().expect("address"), 53));
    let _dns = servers.map(|addr| UdpEcho::start(&net.victim, addr));
    let untracked = SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT);
    let cookied = SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT + 1);
    let _servers = [untracked, cookied].map(|addr| EchoServer::start(&net.victim, addr));
    guard_proc::run(&[
        "notrack",
        "--netns",
        &net.victim,
        "--port",
        "53",
        "--proto",
        "udp",
    ])
    .assert_code(0);
    let guard = start_on(
        &net,
        &[
            "--mode",
            "enforce",
            "--notrack-port",
            &PORT.to_string(),
            "--syn-cookies",
            "always",
            "--source-limits",
            "always",
            "--udp-rate",
            "5",
            "--udp-burst",
            "5",
            "--syn-rate",
            "5",
            "--syn-burst",
            "5",
            "--ban-threshold",
            "20",
            "--fingerprints",
            "off",
            "--summary-interval",
            "0",
        ],
    );
    guard.wait_for_log(&format!(
        "port {PORT} gets no SYN cookies: conntrack skips it (a NOTRACK rule)"
    ));
    guard.wait_for_log(&format!("SYN cookies on for port {}: always on", PORT + 1));
    let mut unanswered = Vec::new();
    for i in 0..300u32 {
        thread::sleep(Duration::from_millis(10));
        let server = servers[i as usize % 2];
        let question = format!("lookup {i}");
        if let Err(e) = query(
            &net.attacker,
            server,
            question.as_bytes(),
            Duration::from_millis(500),
        ) {
            unanswered.push(format!("{question} to {server}: {e}"));
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of 300 queries unanswered: {unanswered:?}\n{}",
        unanswered.len(),
        guard.stderr()
    );
    for i in 0..20 {
        connect_echo(&net.attacker, untracked, Duration::from_secs(3)).unwrap_or_else(|e| {
            panic!(
                "connection {i} to the untracked port: {e}\n{}",
                guard.stderr()
            )
        });
    }
    connect_echo(&net.attacker, cookied, Duration::from_secs(3))
        .expect("a connection through a cookie");
    let c = guard_proc::counters(&guard_proc::stats(&net));
    // Every query and SYN to an untracked port passed as no new flow (a
    // query from a port the client used before may find its flow known:
    // the egress program remembered the answer's): the one new flow is
    // the cookie's SYN.
    assert_eq!(c["new_flows"], 1, "{c:?}");
    assert!(c["pass_untracked"] >= 300, "{c:?}");
    assert_eq!(c["drop_source_limit"], 0, "{c:?}");
    assert_eq!(c["drop_banned"], 0, "{c:?}");
    assert_eq!(c["cookie_synack"], 1, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// An echo server behind a port the nat rules rewrite (`REDIRECT`), and
/// guard in enforce mode without cookies and with a budget of 20 SYNs a
/// second, which a flood of 20,000 keeps spent.
fn rewritten_port(net: &TestNet) -> (EchoServer, Guard) {
    let target = SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT + 1);
    let service = EchoServer::start(&net.victim, target);
    let _ = nft(&net.victim, &["-f", "-"], Some(REDIRECT));
    let guard = start_on(
        net,
        &[
            "--mode",
            "enforce",
            "--syn-cookies",
            "never",
            "--global-rate",
            "20",
            "--global-burst",
            "20",
            "--summary-interval",
            "0",
        ],
    );
    (service, guard)
}

/// The client's connection before any flood, which verifies it (the
/// echo's data leaving through guard's egress program).
fn served_before_a_flood(net: &TestNet, guard: &Guard) {
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the connection before the flood: {e}\n{}", guard.stderr()));
    wait_counter(net, "verified_reply", 1);
}

/// A client the host served before any flood connects through a flood
/// every time, though no handshake of its got through the budget to be
/// checked: at 20 SYNs a second admitted of 20,000, one of its SYNs would
/// get through about once in a thousand tries (each connection may take
/// 2.5 s, through retransmits).
#[test]
fn a_client_served_before_a_flood_connects_through_it_from_its_start() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let (_service, guard) = rewritten_port(&net);
    served_before_a_flood(&net, &guard);
    // `guard stats` says which source is verified, and for how long (the
    // default `--verified-for`, 300 s).
    let stats = guard_proc::stats(&net);
    assert_eq!(stats["verified_sources"], 1, "{stats}");
    let row = guard_proc::top_source(&stats, ATTACKER_ADDR)
        .unwrap_or_else(|| panic!("no row for {ATTACKER_ADDR}: {stats}"));
    assert!(
        row["verified_secs"]
            .as_f64()
            .is_some_and(|s| s > 290.0 && s <= 300.0),
        "{row}"
    );

    let c = connects_through_a_flood(
        &net,
        Flood::new(&net),
        &guard,
        "the client served before the flood",
    );
    assert!(c["verified_reply"] >= 1, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The same client loses no SYN in the flood's first second either, when
/// the budget is spent but the controller, which looks once a second, has
/// not yet seen it bind: it connects every 20 ms from the flood's start
/// for two seconds, and guard drops none of its SYNs (before, those of
/// that first second met the budget as a stranger's, and each waited a
/// second for its retransmission).
#[test]
fn a_client_served_before_a_flood_loses_no_syn_in_its_first_second() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let (_service, guard) = rewritten_port(&net);
    served_before_a_flood(&net, &guard);

    let stop = Arc::new(AtomicBool::new(false));
    let flooding = background_flood(Flood::new(&net), stop.clone());
    let start = Instant::now();
    let mut made = 0;
    while start.elapsed() < Duration::from_secs(2) {
        connect_echo(&net.attacker, server_addr(), Duration::from_secs(5)).unwrap_or_else(|e| {
            panic!(
                "connection {made} in the flood's first seconds: {e}\n{}",
                guard.stderr()
            )
        });
        made += 1;
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let flood = flooding.join().expect("flood");

    let stats = guard_proc::stats(&net);
    let c = guard_proc::counters(&stats);
    assert!(
        c["drop_global_budget"] > flood.sent / 2,
        "the flood ({} SYNs) was not dropped: {c:?}",
        flood.sent
    );
    let row = guard_proc::top_source(&stats, ATTACKER_ADDR)
        .unwrap_or_else(|| panic!("no row for {ATTACKER_ADDR}: {stats}"));
    assert_eq!(row["dropped"], 0, "{made} connections: {row}");
    guard.stop(libc::SIGTERM).assert_code(0);
}
