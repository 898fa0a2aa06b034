//! `--fleet` end to end: several guards on this host, each protecting its
//! own victim namespace, joined through a nats-server of the test's own
//! (JetStream, loopback). A source banned by one guard's data plane is
//! dropped by the others' data planes: real frames in, their counters
//! read back.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use guard_tests::{
    ct,
    flood::Flood,
    guard_proc::{self, Guard, counters, scrape, start_on, stats_after},
    kernel_test,
    nats::NatsServer,
    net::{TestNet, VICTIM_ADDR, loopback_port},
    nft::Counters,
    packet::{L4, Packet, TCP_SYN},
    server::EchoServer,
};

const PORT: u16 = 8080;

fn attacker(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, host))
}

/// One member: its namespaces, its guard, its frames.
struct Member {
    net: TestNet,
    guard: Guard,
    flood: Flood,
}

impl Member {
    /// A member whose sources may send `syn_rate` SYNs a second (and as
    /// many at once) before it bans them itself.
    fn start(name: &str, url: &str, syn_rate: &str, extra: &[&str]) -> Self {
        Self::start_in("enforce", name, url, syn_rate, extra)
    }

    /// [`Member::start`] in `mode`.
    fn start_in(mode: &str, name: &str, url: &str, syn_rate: &str, extra: &[&str]) -> Self {
        let net = TestNet::addressed();
        let mut args = vec![
            "--mode",
            mode,
            "--summary-interval",
            "0",
            // Bans come from the limits, at any pressure.
            "--source-limits",
            "always",
            "--syn-rate",
            syn_rate,
            "--syn-burst",
            syn_rate,
            "--ban-threshold",
            "20",
            "--ban-window",
            "10",
            "--fleet",
            url,
            "--fleet-name",
            name,
        ];
        args.extend_from_slice(extra);
        let guard = start_on(&net, &args);
        guard.wait_ready();
        let flood = Flood::new(&net);
        Self { net, guard, flood }
    }

    /// `guard fleet status --json` of this member.
    fn view(&self) -> serde_json::Value {
        let out = guard_proc::run(&["fleet", "status", "--json", "--netns", &self.net.victim]);
        out.assert_code(0);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn wait_view(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let view = self.view();
            if ok(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {view:#}\n{}",
                self.guard.stderr()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until guard's log says `needle`.
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.guard.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never said {needle:?}:\n{}",
                self.guard.stderr()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `n` SYNs from `src` and returns the counters once guard has
    /// seen them.
    fn syns(&mut self, src: IpAddr, n: u16) -> std::collections::BTreeMap<String, u64> {
        for i in 0..n {
            self.flood.tcp(src, 1000 + i, PORT, TCP_SYN);
        }
        counters(&stats_after(&self.net, self.flood.sent))
    }

    /// Banned by its own limits (a member started with a SYN rate of 5).
    fn ban(&mut self, src: IpAddr) {
        let c = self.syns(src, 40);
        assert!(c["drop_banned"] > 0, "{c:?}\n{}", self.guard.stderr());
    }

    /// One SYN from `src` at a time until the data plane drops one for
    /// the deny list; how long that took. (A member with a high SYN rate,
    /// so that it does not ban the source itself meanwhile.)
    fn time_to_deny(&mut self, src: IpAddr, from: Instant) -> Duration {
        loop {
            let c = self.syns(src, 1);
            if c["drop_denylist"] > 0 {
                return from.elapsed();
            }
            assert!(
                from.elapsed() < Duration::from_secs(10),
                "{src} never denied: {c:?}\n{}",
                self.guard.stderr()
            );
        }
    }

    /// The peer's ban of `src` taken back, `within` of `since`: gone from
    /// the view, and the next SYN from `src` is not denied.
    fn passes_again(&mut self, src: IpAddr, since: Instant, within: Duration) {
        self.wait_view("the ban taken back", |v| v["active"] == 0);
        let before = self.syns(src, 0)["drop_denylist"];
        let after = self.syns(src, 1);
        assert_eq!(
            after["drop_denylist"],
            before,
            "{src} still denied: {after:?}\n{}",
            self.guard.stderr()
        );
        assert!(
            since.elapsed() < within,
            "taken back after {:?}",
            since.elapsed()
        );
    }

    fn stop(self) -> String {
        let finished = self.guard.stop(libc::SIGTERM);
        finished.assert_code(0);
        finished.stderr
    }
}

/// Edge A, which bans a source over 5 SYNs a second, and edge B, which
/// bans nothing itself (1,000 a second), joined.
fn banner_and_peer(url: &str) -> (Member, Member) {
    let a = Member::start("edge-a", url, "5", &[]);
    let b = Member::start("edge-b", url, "1000", &[]);
    joined(&[&a, &b]);
    (a, b)
}

/// Waits until each of `all` is connected and sees them all.
fn joined(all: &[&Member]) {
    for m in all {
        m.wait_view("every member seen", |v| {
            members(v).len() == all.len() && v["connected"] == true
        });
    }
}

fn members(view: &serde_json::Value) -> Vec<String> {
    view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["report"]["member"].as_str().expect("name").to_owned())
        .collect()
}

/// A ban made by A's data plane is dropped by B's and C's within a second
/// (measured from A's own drop of it, printed), and frees their conntrack
/// tables of the source's entries; `guard fleet status`
/// shows the three members and who contributed the ban; when the ban's
/// time is up it is gone everywhere: B and C pass the source again.
#[test]
fn a_ban_on_one_guard_drops_at_the_others_within_a_second_and_expires_everywhere() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start("edge-a", &url, "5", &["--ban-duration", "4"]);
    let mut b = Member::start("edge-b", &url, "1000", &[]);
    let mut c = Member::start("edge-c", &url, "1000", &[]);
    joined(&[&a, &b, &c]);
    let x = attacker(7);
    // A rule that needs conntrack, so B's and C's namespaces track, and a
    // server whose half-open connections the ban must free.
    let _tracked = [&b, &c].map(|m| Counters::install(&m.net.victim, &[("new", "ct state new")]));
    let _servers = [&b, &c].map(|m| {
        EchoServer::start(
            &m.net.victim,
            SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT),
        )
    });
    // The source is known to B and C before the ban: their verdict moves
    // from "pass" to "deny", not from nothing; and its SYN left a
    // conntrack entry in each, which the ban must free.
    for m in [&mut b, &mut c] {
        assert_eq!(m.syns(x, 1)["pass_limits"], 1);
        let deadline = Instant::now() + Duration::from_secs(2);
        while ct::entries_from(&m.net.victim, "198.19.0.7") == 0 {
            assert!(Instant::now() < deadline, "no conntrack entry for the SYN");
            thread::sleep(Duration::from_millis(50));
        }
    }
    a.ban(x);
    let banned_at = Instant::now();
    let at_b = b.time_to_deny(x, banned_at);
    let at_c = c.time_to_deny(x, banned_at);
    println!("a ban on edge-a dropped at edge-b after {at_b:?}, at edge-c after {at_c:?}");
    // Deleted right after the maps take the ban (entries of a refused
    // connection would live 10 s more on their own).
    for m in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while ct::entries_from(&m.net.victim, "198.19.0.7") > 0 {
            assert!(
                Instant::now() < deadline,
                "the banned source's conntrack entries stayed:\n{}",
                m.guard.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        at_b < Duration::from_secs(1) && at_c < Duration::from_secs(1),
        "the fleet took {at_b:?} and {at_c:?} (at most 1 s)"
    );
    // The view is written every second.
    b.wait_view("edge-a's ban in force and counted", |v| {
        v["active"] == 1
            && v["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["report"]["member"] == "edge-a" && m["bans"] == 1)
            })
    });
    let text = guard_proc::run(&["fleet", "status", "--netns", &b.net.victim]);
    text.assert_code(0);
    assert!(
        text.stdout.contains("edge-a")
            && text.stdout.contains("edge-c")
            && text.stdout.contains("connected"),
        "{text}"
    );

    // The ban lasts 4 s; then B and C pass the source again.
    for m in [&b, &c] {
        m.wait_view("the ban expired", |v| v["active"] == 0);
    }
    for m in [&mut b, &mut c] {
        let before = m.syns(x, 0)["drop_denylist"];
        let after = m.syns(x, 1);
        assert_eq!(
            after["drop_denylist"], before,
            "still denied after the ban: {after:?}"
        );
    }
    let b_log = b.stop();
    assert!(
        b_log.contains("fleet: deny 198.19.0.7/32 from edge-a"),
        "{b_log}"
    );
    assert!(b_log.contains("its time is up"), "{b_log}");
    c.stop();
    a.stop();
}

/// A flood that names X's address gets X banned by A, and by B through
/// the fleet. A's fingerprint learner finds the flood's signature (its
/// SYNs carry no options; the calm seconds' did), and the signature,
/// which now drops the flood before any per-source state, lifts the ban
/// the flood earned: A takes it back from the fleet, and B passes X again
/// long before the ban's own time is up.
#[test]
fn a_ban_its_floods_signature_lifts_is_taken_back_from_the_fleet() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let (mut a, mut b) = banner_and_peer(&url);
    // Calm seconds of ordinary SYNs (a stack's options: MSS, SACK), one
    // each from 150 sources: the learner's picture of normal new flows,
    // which joins it once the next second is calm too.
    for i in 0..150u16 {
        let src = IpAddr::V4(Ipv4Addr::new(198, 19, 1, i as u8 + 1));
        let mut syn = Packet::tcp(src, a.flood.victim_for(src), 40_000 + i, PORT, TCP_SYN);
        if let L4::Tcp { options, .. } = &mut syn.l4 {
            *options = vec![2, 4, 0x05, 0xb4, 4, 2, 1, 1];
        }
        a.flood.send(&syn);
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_secs(3));
    // The flood: bare SYNs from X, 3,000 a second, until A lifts the ban.
    let x = attacker(9);
    let start = Instant::now();
    let mut sport = 1024u16;
    while !a.guard.stderr().contains("lifted 1 ban made during it") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no ban lifted:\n{}",
            a.guard.stderr()
        );
        for _ in 0..30 {
            a.flood.tcp(x, sport, PORT, TCP_SYN);
            sport = sport.wrapping_add(1).max(1024);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let lifted_at = Instant::now();
    let log = a.guard.stderr();
    assert!(log.contains("198.19.0.9 banned"), "{log}");
    assert!(log.contains("sig 1: tcp"), "{log}");
    // B had the ban from the fleet, and has it no more.
    let b_log = b.guard.stderr();
    assert!(
        b_log.contains("fleet: deny 198.19.0.9/32 from edge-a"),
        "{b_log}"
    );
    // Well within the ban's 60 s.
    b.passes_again(x, lifted_at, Duration::from_secs(20));
    b.stop();
    a.stop();
}

/// An operator who lifts a ban with `guard unban` on the member whose
/// data plane made it lifts it in the fleet too: A takes its ban back,
/// and B passes the source again long before the ban's own 60 s are up.
#[test]
fn a_ban_an_operator_lifts_with_guard_unban_is_taken_back_from_the_fleet() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let (mut a, mut b) = banner_and_peer(&url);
    let x = attacker(11);
    a.ban(x);
    b.time_to_deny(x, Instant::now());
    b.wait_view("edge-a's ban in force", |v| v["active"] == 1);
    let out = guard_proc::run(&["unban", &x.to_string()]);
    out.assert_code(0);
    assert!(out.stdout.contains("unbanned 198.19.0.11 on"), "{out}");
    let lifted_at = Instant::now();
    a.wait_log("fleet: 198.19.0.11 is no longer banned here, before its time");
    // Within the run loop's second and the fleet's round trip, far from
    // the ban's 60 s.
    b.passes_again(x, lifted_at, Duration::from_secs(10));
    b.stop();
    a.stop();
}

/// A member in monitor mode drops nothing and deletes nothing, and its
/// fleet's members do not drop for it: a source it would ban is not
/// published, and B goes on passing it; a ban B makes is counted at A,
/// and A keeps the source's conntrack entries.
#[test]
fn a_member_in_monitor_mode_neither_publishes_bans_nor_deletes_for_them() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start_in("monitor", "edge-a", &url, "5", &[]);
    let mut b = Member::start("edge-b", &url, "5", &[]);
    joined(&[&a, &b]);
    let _tracked = Counters::install(&a.net.victim, &[("new", "ct state new")]);
    let _server = EchoServer::start(
        &a.net.victim,
        SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT),
    );
    // Y's SYN leaves a conntrack entry at A; then B bans Y.
    let y = attacker(9);
    assert_eq!(a.syns(y, 1)["pass_limits"], 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    while ct::entries_from(&a.net.victim, "198.19.0.9") == 0 {
        assert!(Instant::now() < deadline, "no conntrack entry for the SYN");
        thread::sleep(Duration::from_millis(50));
    }
    b.ban(y);
    a.wait_log("fleet: deny 198.19.0.9/32 from edge-b");
    let at_a = a.syns(y, 1);
    assert_eq!(at_a["drop_denylist"], 1, "{at_a:?}");
    // An enforcing member deletes them within a second of the ban (the
    // first test).
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ct::entries_from(&a.net.victim, "198.19.0.9"),
        1,
        "A keeps Y's entry (both SYNs' flow):\n{}",
        a.guard.stderr()
    );
    let x = attacker(8);
    let before = a.syns(x, 0);
    let counted = a.syns(x, 40);
    let passed = |c: &std::collections::BTreeMap<String, u64>| c["pass_limits"] + c["pass_monitor"];
    assert!(
        counted["drop_banned"] > 0,
        "{counted:?}\n{}",
        a.guard.stderr()
    );
    assert_eq!(
        passed(&counted) - passed(&before),
        40,
        "all passed: {counted:?}"
    );
    a.wait_log("198.19.0.8 kept exceeding its syn limit: enforce would ban it");
    // A published ban is in force at B within a second (the first test).
    thread::sleep(Duration::from_secs(2));
    let before = b.syns(x, 0);
    let after = b.syns(x, 1);
    assert_eq!(after["drop_denylist"], 0, "B denies X: {after:?}");
    assert_eq!(
        after["pass_limits"] - before["pass_limits"],
        1,
        "B passes X: {after:?}"
    );
    let b_log = b.stop();
    assert!(!b_log.contains("fleet: deny 198.19.0.8"), "{b_log}");
    a.stop();
}

/// A (bans of 3 s) and B (8 s) ban X from the same burst, each before it
/// hears of the other's: two writes under one key, in an order the test
/// does not control. Whichever lands last, the bucket ends with B's, and
/// C drops X until B's ban is up, not A's.
#[test]
fn when_two_members_ban_a_source_the_fleet_keeps_the_ban_that_ends_last() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start("edge-a", &url, "5", &["--ban-duration", "3"]);
    let mut b = Member::start("edge-b", &url, "5", &["--ban-duration", "8"]);
    let mut c = Member::start("edge-c", &url, "1000", &[]);
    joined(&[&a, &b, &c]);
    let x = attacker(5);
    // Both bursts within a millisecond or two; a peer's ban takes tens.
    for m in [&mut a, &mut b] {
        for i in 0..40 {
            m.flood.tcp(x, 1000 + i, PORT, TCP_SYN);
        }
    }
    let banned_at = Instant::now();
    a.wait_log("198.19.0.5 banned for 3s");
    b.wait_log("198.19.0.5 banned for 8s");
    c.time_to_deny(x, banned_at);
    // Past A's end, well before B's.
    let until = banned_at + Duration::from_secs(5);
    thread::sleep(until.saturating_duration_since(Instant::now()));
    let before = c.syns(x, 0)["drop_denylist"];
    let after = c.syns(x, 1)["drop_denylist"];
    assert_eq!(
        after,
        before + 1,
        "C stopped dropping X with A's ban:\nA: {}\nB: {}\nC: {}",
        a.guard.stderr(),
        b.guard.stderr(),
        c.guard.stderr()
    );
    // And passes it once B's is up.
    c.wait_view("B's ban expired", |v| v["active"] == 0);
    assert!(
        banned_at.elapsed() >= Duration::from_secs(7),
        "{:?}",
        banned_at.elapsed()
    );
    let c_log = c.stop();
    assert!(c_log.contains("from edge-b"), "{c_log}");
    b.stop();
    a.stop();
}

/// B's fleet allowlist covers the source: A's ban reaches B (and is
/// counted as refused), and B keeps passing the source. A ban B applied is
/// lifted when the source is allowed on B's host afterwards.
#[test]
fn the_fleet_allowlist_overrides_a_peers_ban() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start("edge-a", &url, "5", &[]);
    let mut b = Member::start("edge-b", &url, "1000", &["--fleet-allow", "198.19.0.0/24"]);
    b.wait_view("both members seen", |v| members(v).len() == 2);
    let x = attacker(9);
    a.ban(x);
    b.wait_view("the ban arrived and was refused", |v| {
        v["refused"]["allowlisted"].as_u64() >= Some(1)
    });
    let seen = b.syns(x, 3);
    assert_eq!(seen["drop_denylist"], 0, "{seen:?}");
    assert!(seen["pass_limits"] >= 3, "{seen:?}");
    assert_eq!(b.view()["active"], 0);

    // A ban outside the fleet allowlist is applied, and lifted when the
    // operator allows the source on this host.
    let other = IpAddr::V4(Ipv4Addr::new(198, 19, 1, 9));
    a.ban(other);
    b.time_to_deny(other, Instant::now());
    b.wait_view("the ban in force", |v| v["active"] == 1);
    guard_proc::run(&["allow", "add", "198.19.1.9"]).assert_code(0);
    b.wait_view("the ban lifted by the allow list", |v| v["active"] == 0);
    let before = b.syns(other, 0);
    let after = b.syns(other, 2);
    assert_eq!(after["drop_denylist"], before["drop_denylist"], "{after:?}");
    assert_eq!(
        after["pass_allowlist"],
        before["pass_allowlist"] + 2,
        "{after:?}"
    );
    guard_proc::run(&["allow", "del", "198.19.1.9"]).assert_code(0);
    let log = b.stop();
    assert!(
        log.contains("overlaps 198.19.0.0/24 in the fleet allowlist"),
        "{log}"
    );
    assert!(
        log.contains("lifted: it overlaps the allow list now"),
        "{log}"
    );
    a.stop();
}

/// nats-server goes away: both guards say so, A's next ban still drops
/// at A, and B, cut off, does not know it. nats-server comes back: both
/// reconnect, A's ban made while cut off reaches B, and nothing is done
/// twice (one ban applied at B, one published by A).
#[test]
fn cut_off_from_nats_each_guard_keeps_protecting_and_converges_when_it_is_back() {
    let _kernel = kernel_test!();
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start("edge-a", &url, "5", &["--ban-duration", "60"]);
    let metrics = loopback_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let mut b = Member::start("edge-b", &url, "1000", &["--metrics", &metrics_addr]);
    for m in [&a, &b] {
        m.wait_view("both members seen", |v| members(v).len() == 2);
    }
    assert!(scrape(metrics).contains("guard_fleet_connected 1"));
    nats.stop();
    for m in [&a, &b] {
        m.wait_view("cut off", |v| v["connected"] == false);
    }
    let text = scrape(metrics);
    assert!(
        text.contains("guard_fleet_connected 0") && text.contains("guard_fleet_members "),
        "{text}"
    );
    let x = attacker(11);
    a.ban(x);
    let c = a.syns(x, 3);
    assert!(c["drop_banned"] >= 3, "A stopped protecting: {c:?}");
    thread::sleep(Duration::from_millis(500));
    let c = b.syns(x, 1);
    assert_eq!(
        c["drop_denylist"], 0,
        "B heard of the ban with NATS down: {c:?}"
    );
    a.wait_view("the ban waits to be published", |v| v["pending"] == 1);

    nats.restart();
    let back = Instant::now();
    b.time_to_deny(x, back);
    println!(
        "after nats-server came back, edge-b dropped the ban made while cut off after {:?}",
        back.elapsed()
    );
    let va = a.wait_view("A reconnected", |v| {
        v["connected"] == true && v["pending"] == 0
    });
    assert_eq!(va["published"], 1, "{va:#}");
    let vb = b.wait_view("B reconnected", |v| v["connected"] == true);
    assert_eq!(vb["applied"], 1, "applied twice after the resync: {vb:#}");
    let log_b = b.stop();
    assert_eq!(
        log_b.matches("cut off from").count(),
        1,
        "said once: {log_b}"
    );
    let log_a = a.stop();
    assert!(log_a.contains("fleet: connected to"), "{log_a}");
}

/// A hundred bans made one after another on A all reach B, each applied
/// once; B's view keeps how long each took from A's decision to B's maps
/// (one clock: the same host), printed as p50/p99 for BENCHMARKS.md.
#[test]
fn a_hundred_bans_reach_a_peer_each_once() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a = Member::start("edge-a", &url, "5", &["--ban-duration", "120"]);
    let b = Member::start("edge-b", &url, "1000", &[]);
    b.wait_view("both members seen", |v| members(v).len() == 2);
    for i in 0..100u8 {
        a.ban(IpAddr::V4(Ipv4Addr::new(198, 19, 1, i)));
    }
    let view = b.wait_view("a hundred bans applied", |v| {
        v["active"] == 100 && v["applied"] == 100
    });
    let mut delays: Vec<u64> = view["delays_ms"]
        .as_array()
        .expect("delays")
        .iter()
        .map(|d| d.as_u64().expect("ms"))
        .collect();
    delays.sort_unstable();
    assert_eq!(delays.len(), 100, "{view:#}");
    println!(
        "fleet propagation over 100 bans (decision on edge-a to edge-b's maps): p50 {} ms, p99 {} ms, max {} ms",
        delays[49], delays[98], delays[99]
    );
    let text = guard_proc::run(&["fleet", "status", "--netns", &b.net.victim]);
    assert!(text.stdout.contains("over 100"), "{text}");
    b.stop();
    a.stop();
}

/// Mutual TLS: a member with the fleet's CA and a client certificate
/// joins; one with the CA but no certificate is refused by the server,
/// says it is cut off, and is never counted as a member.
#[test]
fn a_member_joins_over_mutual_tls_and_one_without_a_certificate_cannot() {
    let _kernel = kernel_test!();
    let (nats, tls) = NatsServer::start_tls();
    let url = nats.url();
    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let a = Member::start(
        "edge-a",
        &url,
        "5",
        &[
            "--fleet-tls-ca",
            &ca,
            "--fleet-tls-cert",
            &cert,
            "--fleet-tls-key",
            &key,
        ],
    );
    a.wait_view("connected over TLS", |v| v["connected"] == true);
    let b = Member::start("edge-b", &url, "5", &["--fleet-tls-ca", &ca]);
    // Said once the link's grace (3 s from its start) has passed without
    // a connection: a fixed sleep in the test raced it.
    b.wait_log("fleet: cut off from");
    assert_eq!(b.view()["connected"], false, "{:#}", b.view());
    assert_eq!(members(&a.view()), vec!["edge-a".to_owned()]);
    let log = b.stop();
    assert_eq!(log.matches("fleet: cut off from").count(), 1, "{log}");
    a.stop();
}

/// A member killed (SIGKILL: no clean-up) leaves its fleet view behind. A
/// guard started after it without `--fleet` is in no fleet, and says so,
/// rather than show the dead member's view as its own.
#[test]
fn a_guard_started_without_a_fleet_after_a_killed_member_is_in_none() {
    let _kernel = kernel_test!();
    let nats = NatsServer::start();
    let member = Member::start("edge-a", &nats.url(), "1000", &[]);
    member.wait_view("connected", |v| v["connected"] == true);
    let Member { net, guard, .. } = member;
    let view =
        guard::model::paths::runtime_dir(Some(&net.victim)).join(guard::model::paths::FLEET_FILE);
    let _ = guard.stop(libc::SIGKILL);
    assert!(view.exists(), "the killed member left no view to test with");

    let again = start_on(&net, &["--summary-interval", "0"]);
    again.wait_ready();
    let status = guard_proc::run(&["fleet", "status", "--netns", &net.victim]);
    status.assert_code(1);
    assert!(status.stderr.contains("in no fleet"), "{status}");
    again.stop(libc::SIGTERM).assert_code(0);
}
