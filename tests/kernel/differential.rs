//! The real XDP program against the reference model.
//!
//! Each frame runs through BPF_PROG_TEST_RUN with the program's clock set
//! from the test (the `TEST_CLOCK` load option), and through the model at
//! the same instant. Every verdict must agree, and at the end so must every
//! counter, every source and prefix entry, the UDP flow map, the global
//! bucket states and the events, exactly. Timing is the test's to choose,
//! so these scenarios may depend on nanoseconds and still be exact.
//!
//! Attack signatures are installed in both (the same table): scenarios
//! with signatures near the traffic's own fingerprints check the signature
//! step's place in the verdict, its hit counters, monitor bits, the allow
//! list's exemption and monitor mode.
//!
//! Then the robustness runs: 100,000 random and broken frames, and 50,000
//! more with signatures that match some of them, on which the program must
//! never fail, must count every malformed frame as malformed and must drop
//! it (the documented rule, enforce mode), never as a signature's match.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use guard::model::fingerprint::parse;
use guard_common::{
    Counter, CounterBlock,
    bucket::NANOS_PER_SEC,
    config::{OPEN_MARKED_TCP, OPEN_MARKED_UDP, VERIFY_ACKS, mac_word},
    fingerprint::{MAX_SIGS, SigMeta, SigTable},
    flows::flow_sets,
    ports::{PORT_OPEN_TCP, PORT_OPEN_UDP},
};
use guard_tests::{
    fuzz::{self, Made, Rng},
    kernel_test,
    model::{self, Model, Verdict},
    packet::{Ext, L4, Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TPID_8021Q},
    server::bootp,
    xdp::{self, Program, XDP_DROP, XDP_PASS},
};

const SEC: u64 = NANOS_PER_SEC;
const MS: u64 = SEC / 1000;
/// Tests start the clock well away from zero, as on a booted host.
const T0: u64 = 1_000 * SEC;

struct Pair {
    program: Program,
    model: Model,
    sent: usize,
}

impl Pair {
    /// `flags` as for `guard run`, space-separated.
    fn new(flags: &str) -> Self {
        Self::seeded(flags, None)
    }

    /// The same, with `seed` for the slot seed the loader draws at random.
    fn seeded(flags: &str, seed: Option<u64>) -> Self {
        let settings = xdp::settings(flags);
        let mut program = Program::new(&settings);
        if let Some(seed) = seed {
            let mut cfg = program.config();
            cfg.slot_seed = seed;
            program.set_config(&cfg);
        }
        // The program's own configuration: its slot seed too.
        let mut model = Model::new(program.config(), xdp::list_entries(&settings));
        model.source_slots = settings.max_sources;
        model.prefix_slots = settings.max_prefixes;
        model.udp_flow_sets = flow_sets(settings.max_udp_flows);
        Self {
            program,
            model,
            sent: 0,
        }
    }

    /// Installs `table` in both.
    fn set_sigs(&mut self, table: &SigTable) {
        self.program.set_signatures(table);
        self.model.sigs = *table;
    }

    fn packet(&mut self, frame: &[u8], now: u64) -> u32 {
        let got = self.program.run(frame, now);
        let want = match self.model.packet(frame, now) {
            Verdict::Pass => XDP_PASS,
            Verdict::Drop => XDP_DROP,
        };
        assert_eq!(
            got,
            want,
            "packet {} at {now} ns: program said {got}, model {want} (1 drop, 2 pass)\nframe {frame:02x?}\nclass by the model: {:?}",
            self.sent,
            model::dissect(frame)
        );
        self.sent += 1;
        got
    }

    /// A frame the host sends, through the egress program and the
    /// model's (its datagram flows).
    fn sent(&mut self, frame: &[u8], now: u64) {
        self.program.run_egress(frame, now);
        self.model.sent(frame, now);
    }

    /// Sets the bit the controller sets while the budget binds, in both.
    fn set_verify(&mut self, on: bool) {
        let mut cfg = self.program.config();
        cfg.verify = if on { VERIFY_ACKS } else { 0 };
        self.program.set_config(&cfg);
        self.model.config = cfg;
    }

    /// Compares every piece of state.
    fn assert_same_state(&self) {
        assert_eq!(
            by_name(&self.program.counters()),
            by_name(&self.model.counters),
            "counters"
        );
        same_map(
            "sources",
            &self.program.sources(),
            &self.model.sources_held(),
        );
        same_map("prefixes", &self.program.prefixes(), &self.model.prefixes);
        same_map(
            "udp flows",
            &self.program.udp_flows(),
            &self.model.udp_flows,
        );
        assert_eq!(
            self.program.global(),
            self.model.global,
            "global bucket states"
        );
        assert_eq!(self.program.events_seen, self.model.events, "events");
    }
}

/// Every counter by name, the signatures' hit counters included.
fn by_name(block: &CounterBlock) -> BTreeMap<String, u64> {
    Counter::ALL
        .iter()
        .map(|c| (c.name().to_owned(), block.get(*c)))
        .chain((0..MAX_SIGS).map(|s| (format!("sig_hits[{s}]"), block.sig_hits(s))))
        .collect()
}

/// The same frames through a pair in enforce mode and a pair in monitor
/// mode, each checked against its model.
struct Twins {
    enforce: Pair,
    monitor: Pair,
    /// Frames the enforce pair dropped.
    dropped: u64,
}

impl Twins {
    /// `limits`: `guard run` flags but the mode.
    fn new(limits: &str) -> Self {
        let enforce = Pair::new(&format!("--mode enforce {limits}"));
        // One slot seed for both: with seeds of their own, two sources (or
        // prefixes) could share a slot in one and not the other, and the
        // twins' limits part ways (about one run in twenty).
        let seed = enforce.program.config().slot_seed;
        Self {
            enforce,
            monitor: Pair::seeded(&format!("--mode monitor {limits}"), Some(seed)),
            dropped: 0,
        }
    }

    fn set_sigs(&mut self, table: &SigTable) {
        self.enforce.set_sigs(table);
        self.monitor.set_sigs(table);
    }

    /// Runs `frame` through both; monitor mode never drops.
    fn packet(&mut self, frame: &[u8], now: u64) {
        if self.enforce.packet(frame, now) == XDP_DROP {
            self.dropped += 1;
        }
        assert_eq!(
            self.monitor.packet(frame, now),
            XDP_PASS,
            "monitor dropped a packet"
        );
    }

    /// Both agree with their models, and monitor mode counted exactly what
    /// enforce mode dropped: `pass_monitor` is enforce's drops, and every
    /// other counter (signature hits too) is the same in both.
    fn assert_mirrored(&self) {
        self.enforce.assert_same_state();
        self.monitor.assert_same_state();
        let (mut e, mut m) = (
            by_name(&self.enforce.program.counters()),
            by_name(&self.monitor.program.counters()),
        );
        let pass = Counter::PassMonitor.name();
        assert_eq!(m.remove(pass), Some(self.dropped), "pass_monitor");
        e.remove(pass);
        assert_eq!(e, m, "enforce vs monitor");
    }
}

/// Asserts two maps are equal, listing only the entries that differ.
fn same_map<K, V>(what: &str, program: &HashMap<K, V>, model: &HashMap<K, V>)
where
    K: Ord + Debug + Hash + Eq,
    V: PartialEq + Debug,
{
    let mut keys: Vec<&K> = program.keys().chain(model.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| program.get(k) != model.get(k))
        .map(|k| {
            format!(
                "{k:?}:\n  program {:?}\n  model   {:?}",
                program.get(k),
                model.get(k)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: {} of {} entries differ:\n{}",
        differing.len(),
        model.len().max(program.len()),
        differing.join("\n")
    );
}

fn v4(last: u8) -> IpAddr {
    IpAddr::from([198, 19, 0, last])
}

#[test]
fn a_syn_flood_over_many_sources_vlans_and_extension_headers() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --syn-rate 10 --syn-burst 5 --prefix-syn-rate 40 --prefix-syn-burst 20 --global-rate 600 --global-burst 100 --ban-threshold 15 --ban-window 2 --ban-duration 1 --event-rate 20 --event-burst 5",
    );
    let mut rng = Rng::new(1);
    let sources = fuzz::sources(&mut rng, 64, 32);
    let mut now = T0;
    for _ in 0..6000 {
        now += rng.below(2 * MS);
        let src = rng.pick(&sources);
        let mut packet = Packet::tcp(src, fuzz::victim(src), rng.port(), 80, TCP_SYN);
        if rng.percent(20) {
            packet = packet.vlan(TPID_8021Q);
        }
        if src.is_ipv6() && rng.percent(30) {
            packet = packet.ext(Ext::HopByHop).ext(Ext::DestOpts);
        }
        pair.packet(&packet.frame(), now);
    }
    let counters = pair.program.counters();
    for reason in [
        Counter::DropSourceLimit,
        Counter::DropPrefixLimit,
        Counter::DropGlobalBudget,
        Counter::DropBanned,
    ] {
        assert!(
            counters.get(reason) > 0,
            "the scenario never reached {reason:?}: {:?}",
            by_name(&counters)
        );
    }
    assert!(counters.get(Counter::EventsSuppressed) > 0 && counters.get(Counter::EventsSent) > 0);
    pair.assert_same_state();
}

/// A source anywhere in 198.18.0.0/15 (131,072 addresses), 70% of the
/// time, or else in a random /64 of 2001:db8::/32.
fn wide(rng: &mut Rng) -> IpAddr {
    if rng.percent(70) {
        let n = u32::try_from(rng.below(1 << 17)).expect("17 bits");
        IpAddr::from(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n))
    } else {
        let net = rng.next_u64();
        let [a, b, c, d] =
            [0, 16, 32, 48].map(|s| u16::try_from((net >> s) & 0xffff).expect("16 bits"));
        IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, a, b, c, d, 0, 1))
    }
}

/// Tables of the smallest size and about seven times as many sources, spread
/// over all of 198.18.0.0/15 and over /64s of 2001:db8::/32: sources and
/// prefixes take each other's slots over, and banned sources that lost
/// theirs come back banned from their marks. The model keeps the tables
/// as the program's direct-mapped slots (the same seed), so every verdict
/// and entry still agrees.
#[test]
fn small_tables_churned_by_a_wide_flood_agree() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --max-sources 1024 --max-prefixes 1024 --syn-rate 5 --syn-burst 2 --prefix-syn-rate 1000 --prefix-syn-burst 50 --ban-threshold 3 --ban-window 2 --ban-duration 60",
    );
    let mut rng = Rng::new(7);
    let heavy: Vec<IpAddr> = (0..32).map(|_| wide(&mut rng)).collect();
    let mut now = T0;
    for _ in 0..12_000 {
        now += rng.below(MS / 4);
        let src = if rng.percent(40) {
            rng.pick(&heavy)
        } else {
            wide(&mut rng)
        };
        let packet = Packet::tcp(src, fuzz::victim(src), rng.port(), 80, TCP_SYN);
        pair.packet(&packet.frame(), now);
    }
    let counters = pair.program.counters();
    assert!(
        counters.get(Counter::DropBanned) > 0 && pair.model.recalled > 0,
        "no ban came back from its marks: {} recalled, {:?}",
        pair.model.recalled,
        by_name(&counters)
    );
    assert!(
        counters.get(Counter::NewSources) > 2 * 1024,
        "fewer sources than twice the table: {:?}",
        by_name(&counters)
    );
    pair.assert_same_state();
}

/// Clients the host sends data or a FIN to (verified by the egress
/// program; a SYN-ACK, a pure ACK or a RST verify nobody) open
/// connections in bursts through a wide random-source SYN flood that
/// spends the budget and churns the source slots (a client's slot taken
/// over loses its verification), the controller's bit that says the
/// budget binds going on and off: before it binds, a verified client gets
/// a tenth of its burst past the spent budget; while it binds, its whole
/// limit. The verdicts, and the state at the end, agree.
#[test]
fn verified_clients_through_a_budget_spent_before_and_while_it_binds_agree() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --global-rate 100 --global-burst 20 --syn-rate 20 --syn-burst 30 \
         --max-sources 1024 --verified-for 3",
    );
    let clients: Vec<IpAddr> = (1..=12)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 7, i)))
        .chain((1..=6).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, i, 0, 0, 0, 9))))
        .collect();
    let replies = [
        (TCP_ACK, &b"HTTP/1.1 200 OK"[..]),
        (TCP_FIN | TCP_ACK, b""),
        (TCP_ACK, b""),
        (TCP_SYN | TCP_ACK, b""),
        (TCP_RST | TCP_ACK, b"why"),
    ];
    let mut rng = Rng::new(0x7e47);
    let mut now = T0;
    let (mut passed, mut dropped) = (0, 0);
    for _ in 0..6000 {
        now += if rng.percent(1) {
            rng.below(2 * SEC)
        } else {
            rng.below(MS)
        };
        let roll = rng.below(100);
        if roll < 1 {
            pair.set_verify(rng.percent(50));
        } else if roll < 5 {
            let client = rng.pick(&clients);
            let (flags, data) = rng.pick(&replies);
            let reply = Packet::tcp(fuzz::victim(client), client, 80, rng.port(), flags);
            pair.sent(&reply.with_data(data).frame(), now);
        } else if roll < 55 {
            let src = wide(&mut rng);
            pair.packet(
                &Packet::tcp(src, fuzz::victim(src), rng.port(), 80, TCP_SYN).frame(),
                now,
            );
        } else {
            let client = rng.pick(&clients);
            for _ in 0..=rng.below(5) {
                let syn = Packet::tcp(client, fuzz::victim(client), rng.port(), 80, TCP_SYN);
                if pair.packet(&syn.frame(), now) == XDP_PASS {
                    passed += 1;
                } else {
                    dropped += 1;
                }
            }
        }
    }
    pair.assert_same_state();
    let c = pair.program.counters();
    assert!(
        c.get(Counter::VerifiedReply) > 20
            && c.get(Counter::DropGlobalBudget) > 1000
            && passed > 1000
            && dropped > 100,
        "clients' SYNs {passed} passed, {dropped} dropped; {:?}",
        by_name(&c)
    );
}

#[test]
fn udp_flows_echo_requests_and_the_fast_path() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --udp-rate 5 --udp-burst 3 --icmp-rate 2 --icmp-burst 2 --udp-flow-idle 5",
    );
    let src = v4(7);
    let dst = fuzz::victim(src);
    let mut now = T0;
    // Three flows, each many packets: only the first of each is a new flow.
    for round in 0..20u16 {
        for port in 0..3u16 {
            now += 10 * MS;
            pair.packet(&Packet::udp(src, dst, 6000 + port, 53, b"q").frame(), now);
        }
        // Many distinct flows: over the limit after the burst.
        now += MS;
        pair.packet(&Packet::udp(src, dst, 7000 + round, 53, b"q").frame(), now);
        // Established TCP and echo replies: the fast path.
        pair.packet(&Packet::tcp(src, dst, 40000, 80, TCP_ACK).frame(), now);
        pair.packet(&Packet::echo(src, dst, round).frame(), now);
    }
    // Idle past the timeout (refreshed flows expire 5 s after their last
    // refresh): the old flows are new again.
    now += 7 * SEC;
    for port in 0..3u16 {
        pair.packet(
            &Packet::udp(src, dst, 6000 + port, 53, b"q").frame(),
            now + u64::from(port),
        );
    }
    // Refresh: a flow seen every 1.5 s never goes idle.
    for _ in 0..6 {
        now += 1500 * MS;
        pair.packet(&Packet::udp(src, dst, 6000, 53, b"q").frame(), now);
    }
    pair.assert_same_state();
}

/// A user's flow (`user`) through flood flows (`flood(i)`, those that
/// share its set) in a table of 1,024 flows: kept while seen, forgotten
/// once two flows came into its set since it was, the program and the
/// model alike; then many flows over every set, some seen again.
fn a_flow_keeps_its_way_while_seen(user: &Packet, flood: impl Fn(u32) -> Packet) {
    // 512 sets of two; no per-source or prefix limit, no budget: every
    // flow is admitted and written, as a flood's are under its budget.
    let mut pair = Pair::new(
        "--mode enforce --max-udp-flows 1024 --udp-rate 0 --prefix-udp-rate 0 \
         --other-rate 0 --prefix-other-rate 0 --udp-flow-idle 30",
    );
    let sets = flow_sets(1024);
    let seed = pair.program.config().slot_seed;
    // The table and set a datagram's flow is filed under.
    let flow_set = |frame: &[u8]| model::flow_set(&model::dissect(frame).flow_key(), seed, sets).0;
    let user_frame = user.frame();
    let set = flow_set(&user_frame);
    let mut beside = (1..).filter_map(|i| {
        let frame = flood(i).frame();
        (flow_set(&frame) == set).then_some(frame)
    });
    let new_flows = |pair: &Pair| pair.program.counters().get(Counter::NewFlows);
    let mut now = T0;
    pair.packet(&user_frame, now);
    assert_eq!(new_flows(&pair), 1);
    for _ in 0..5 {
        // A flood flow into the set, then the user, seen again: its time
        // refreshed, it is the newer of the two, and the next flood flow
        // takes the other way.
        now += 2 * SEC;
        pair.packet(&beside.next().expect("a flow in the set"), now);
        now += SEC / 2;
        let before = new_flows(&pair);
        pair.packet(&user_frame, now);
        assert_eq!(new_flows(&pair), before, "the user's flow was forgotten");
    }
    // A flood flow into the set and the user seen again in one tick
    // (times equal): the user's way is still the newer, and the next flood
    // flow of that tick takes the other.
    now += 2 * SEC;
    pair.packet(&beside.next().expect("a flow in the set"), now);
    pair.packet(&user_frame, now);
    pair.packet(&beside.next().expect("a flow in the set"), now);
    let before = new_flows(&pair);
    pair.packet(&user_frame, now + MS);
    assert_eq!(new_flows(&pair), before, "the user's flow was forgotten");
    pair.assert_same_state();
    // Two flood flows since it was last seen: it is the older of its set's
    // ways, and goes.
    now += 2 * SEC;
    pair.packet(&beside.next().expect("a flow in the set"), now);
    pair.packet(&beside.next().expect("a flow in the set"), now);
    let before = new_flows(&pair);
    pair.packet(&user_frame, now + MS);
    assert_eq!(new_flows(&pair), before + 1, "the user's flow was kept");
    pair.assert_same_state();

    // Many flows over every set, some seen again: the program's sets and
    // the model's hold the same flows at the same times.
    let mut rng = Rng::new(0x5e75);
    let users: Vec<u32> = (0..64).map(|i| 20_000 + i).collect();
    for _ in 0..6000 {
        now += rng.below(MS);
        let i = if rng.percent(30) {
            rng.pick(&users)
        } else {
            u32::from(rng.port())
        };
        pair.packet(&flood(i).frame(), now);
    }
    let held = pair.program.udp_flows().len();
    assert!(
        held > 700 && held <= 1024,
        "{held} flows held in 1,024 ways"
    );
    pair.assert_same_state();
}

#[test]
fn an_ipv4_udp_flow_keeps_its_way_while_seen_and_a_flood_takes_the_stale_ones() {
    let _kernel = kernel_test!();
    let dst = fuzz::victim(v4(7));
    a_flow_keeps_its_way_while_seen(&Packet::udp(v4(7), dst, 5000, 53, b"q"), |i| {
        let port = u16::try_from(i).expect("a port");
        Packet::udp(v4(9), dst, port, 53, b"f")
    });
}

#[test]
fn an_ipv6_udp_flow_and_a_tunnels_keep_their_ways_alike() {
    let _kernel = kernel_test!();
    let user = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7));
    let dst = fuzz::victim(user);
    let source = |i: u32| {
        let [_, _, a, b] = i.to_be_bytes();
        IpAddr::from(Ipv6Addr::new(
            0x2001,
            0xdb8,
            2,
            0,
            0,
            0,
            u16::from(a),
            u16::from(b),
        ))
    };
    a_flow_keeps_its_way_while_seen(&Packet::udp(user, dst, 5000, 53, b"q"), |i| {
        Packet::udp(
            source(i % 16),
            dst,
            u16::try_from(i).expect("a port"),
            53,
            b"f",
        )
    });
    // GRE over IPv4: a flow by addresses and protocol, in the other table.
    let gre = |src, dst| {
        let bytes = vec![0, 0, 0x08, 0, 0x45, 0, 0, 20];
        Packet::new(src, dst, L4::Raw { proto: 47, bytes })
    };
    let dst = fuzz::victim(v4(7));
    a_flow_keeps_its_way_while_seen(&gre(v4(7), dst), |i| {
        let [_, _, a, b] = i.to_be_bytes();
        gre(IpAddr::from([198, 19, a, b]), dst)
    });
}

/// DHCPv6 answers to the host's messages (the egress program's flows,
/// the model's `sent`) through a UDP flood that spends the budget: the
/// host's clients on a link-local and a global address, servers on the
/// link and beyond it, answers asked and not, on the ports and not,
/// within the idle time of their message and past it, and ordinary
/// replies to the host's own datagrams among them. The verdicts, and
/// the state at the end, agree; and answers were passed past the budget
/// while the flood was dropped by it, else the scenario tested nothing.
#[test]
fn dhcp6_answers_to_the_hosts_messages_agree() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --global-rate 60 --global-burst 10 --udp-rate 20 --udp-burst 10 \
         --udp-flow-idle 2",
    );
    let v6 = |a: u16, b: u16, last: u16| IpAddr::V6(Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, last));
    let hosts = [v6(0xfe80, 0, 2), v6(0x2001, 0xdb8, 2)];
    let all_servers = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2));
    let servers = [
        v6(0xfe80, 0, 1),
        v6(0xfe80, 0, 0x547),
        v6(0xfebf, 0, 1),
        v6(0xfec0, 0, 1),
        v6(0x2001, 0xdb8, 0x547),
    ];
    let mut rng = Rng::new(0xd6c6);
    let mut now = T0;
    for _ in 0..4000 {
        now += if rng.percent(1) {
            rng.below(3 * SEC)
        } else {
            rng.below(2 * MS)
        };
        let host = rng.pick(&hosts);
        let roll = rng.below(100);
        if roll < 3 {
            let message = Packet::udp(host, all_servers, 546, 547, b"solicit").frame();
            pair.sent(&message, now);
        } else if roll < 6 {
            let query = Packet::udp(host, rng.pick(&servers), rng.port(), 53, b"q").frame();
            pair.sent(&query, now);
        } else if roll < 60 {
            let flood = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xff00,
                u16::from(rng.byte()),
                0,
                0,
                0,
                7,
            ));
            let datagram = Packet::udp(flood, host, rng.port(), 547, b"f").frame();
            pair.packet(&datagram, now);
        } else {
            let (sport, dport) = if rng.percent(80) {
                (547, 546)
            } else {
                rng.pick(&[(547, 547), (546, 547), (53, 546), (547, 53)])
            };
            let answer = Packet::udp(rng.pick(&servers), host, sport, dport, b"a").frame();
            pair.packet(&answer, now);
        }
    }
    pair.assert_same_state();
    let c = pair.program.counters();
    assert!(
        c.get(Counter::DropGlobalBudget) > 1000 && c.get(Counter::PassLimits) > 100,
        "{c:?}"
    );
}

/// DHCPv4 replies to the host's requests (the egress program's
/// transactions, the model's `sent`) through a UDP flood that spends the
/// budget: the host's client with no address and rebinding from its own,
/// requests of three transactions, servers and a relay answering to the
/// broadcast address, to the address offered and to the host's, replies
/// of the host's transactions and of others, requests' messages and
/// short ones among them, on the ports and not, within the idle time of
/// their request and past it, and ordinary replies to the host's own
/// datagrams. The verdicts, and the state at the end, agree; and replies
/// were passed past the budget while the flood was dropped by it.
#[test]
fn dhcp4_replies_to_the_hosts_requests_agree() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --global-rate 60 --global-burst 10 --udp-rate 20 --udp-burst 10 \
         --udp-flow-idle 2",
    );
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let hosts = [v4(0, 0, 0, 0), v4(198, 18, 0, 2)];
    let to = [
        v4(255, 255, 255, 255),
        v4(198, 18, 0, 140),
        v4(198, 18, 0, 2),
    ];
    let servers = [v4(198, 18, 0, 67), v4(198, 18, 0, 68), v4(198, 19, 7, 1)];
    let xids = [0x0c0f_fee1, 0x7a11_0002, 0x9e37_79b9];
    let mut rng = Rng::new(0xd4c4);
    let mut now = T0;
    let mut passed = 0;
    for _ in 0..4000 {
        now += if rng.percent(1) {
            rng.below(3 * SEC)
        } else {
            rng.below(2 * MS)
        };
        let roll = rng.below(100);
        if roll < 3 {
            let request = bootp(1, rng.pick(&xids));
            let message = Packet::udp(rng.pick(&hosts), to[0], 68, 67, &request).frame();
            pair.sent(&message, now);
        } else if roll < 6 {
            let query = Packet::udp(hosts[1], rng.pick(&servers), rng.port(), 53, b"q").frame();
            pair.sent(&query, now);
        } else if roll < 60 {
            let flood = v4(198, 19, rng.byte(), 7);
            let datagram = Packet::udp(flood, hosts[1], rng.port(), 68, b"f").frame();
            pair.packet(&datagram, now);
        } else {
            let (sport, dport) = if rng.percent(80) {
                (67, 68)
            } else {
                rng.pick(&[(67, 67), (68, 67), (53, 68), (67, 53)])
            };
            let xid = if rng.percent(80) {
                rng.pick(&xids)
            } else {
                rng.next_u64() as u32
            };
            let mut message = bootp(if rng.percent(90) { 2 } else { 1 }, xid);
            if rng.percent(5) {
                message.truncate(7);
            }
            let reply = Packet::udp(rng.pick(&servers), rng.pick(&to), sport, dport, &message);
            if pair.packet(&reply.frame(), now) == XDP_PASS {
                passed += 1;
            }
        }
    }
    pair.assert_same_state();
    let c = pair.program.counters();
    assert!(
        c.get(Counter::DropGlobalBudget) > 1000 && passed > 100,
        "{passed} replies passed; {c:?}"
    );
}

#[test]
fn allow_and_deny_longest_prefix_wins() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --syn-rate 1 --syn-burst 1 --deny 198.19.0.0/16 --allow 198.19.0.0/24 --deny 198.19.0.128/25 --allow 2001:db8:1::/48 --deny 2001:db8:1:2::/64",
    );
    let mut rng = Rng::new(3);
    let srcs: Vec<IpAddr> = vec![
        v4(1),
        v4(200),
        IpAddr::from([198, 19, 5, 5]),
        IpAddr::from([198, 18, 7, 7]),
        "2001:db8:1:1::9".parse().unwrap(),
        "2001:db8:1:2::9".parse().unwrap(),
        "2001:db8:2::1".parse().unwrap(),
    ];
    let mut now = T0;
    for _ in 0..700 {
        now += rng.below(5 * MS);
        let src = rng.pick(&srcs);
        let flags = if rng.percent(60) { TCP_SYN } else { TCP_ACK };
        pair.packet(
            &Packet::tcp(src, fuzz::victim(src), rng.port(), 443, flags).frame(),
            now,
        );
    }
    let c = pair.program.counters();
    assert!(c.get(Counter::PassAllowlist) > 0 && c.get(Counter::DropDenylist) > 0);
    pair.assert_same_state();
}

#[test]
fn monitor_counts_exactly_what_enforce_drops() {
    let _kernel = kernel_test!();
    let limits = "--syn-rate 5 --syn-burst 3 --udp-rate 5 --udp-burst 2 --ban-threshold 10 --deny 198.19.3.0/24";
    let mut twins = Twins::new(limits);
    let mut rng = Rng::new(4);
    let sources = fuzz::sources(&mut rng, 16, 8);
    let mut now = T0;
    for _ in 0..4000 {
        now += rng.below(3 * MS);
        let src = rng.pick(&sources);
        let frame = fuzz::valid(&mut rng, src);
        twins.packet(&fuzz::sometimes_broken(&mut rng, frame), now);
    }
    twins.assert_mirrored();
    let dropped = twins.dropped;
    let e = twins.enforce.program.counters();
    let drops: u64 = Counter::DROP_REASONS.iter().map(|r| e.get(*r)).sum();
    assert_eq!(drops, dropped);
    assert!(
        dropped > 100,
        "the scenario dropped too little to compare: {dropped}"
    );
    let (enforce, monitor) = (&twins.enforce.program, &twins.monitor.program);
    assert_eq!(enforce.sources(), monitor.sources());
    assert_eq!(enforce.udp_flows(), monitor.udp_flows());
}

#[test]
fn random_mixes_agree() {
    let _kernel = kernel_test!();
    for seed in 10..14 {
        // Odd seeds turn the prefix tier off for UDP and ICMP.
        let prefix_off = if seed % 2 == 1 {
            "--prefix-udp-rate 0 --prefix-icmp-rate 0"
        } else {
            ""
        };
        let mut pair = Pair::new(&format!(
            "--mode enforce --syn-rate 20 --syn-burst 4 --udp-rate 10 --udp-burst 3 --icmp-rate 2 --icmp-burst 1 --prefix-syn-rate 50 --prefix-syn-burst 10 --global-rate 300 --global-burst 20 --ban-threshold 25 --ban-window 1 --ban-duration 2 --udp-flow-idle 1 --source-prefix-v6 56 --prefix-v6 40 --allow 198.19.1.0/28 --deny 2001:db8:2::/48 --event-rate 50 --event-burst 10 {prefix_off}"
        ));
        // The host's interface has the address the frames are built with;
        // some go to a macvlan container's, or to a group address.
        let mut cfg = pair.program.config();
        cfg.host_macs_len = 1;
        cfg.host_macs[0] = mac_word(Packet::tcp(v4(1), v4(2), 1, 2, TCP_SYN).dst_mac);
        pair.program.set_config(&cfg);
        pair.model.config = cfg;
        let others: [[u8; 6]; 3] = [
            [0x02, 0, 0, 0, 0, 0x50],
            [0xff; 6],
            [0x33, 0x33, 0, 0, 0, 1],
        ];
        let mut rng = Rng::new(seed);
        let sources = fuzz::sources(&mut rng, 40, 20);
        let mut now = T0;
        for _ in 0..3000 {
            // Sub-millisecond gaps, sometimes long pauses.
            now += if rng.percent(2) {
                rng.below(3 * SEC)
            } else {
                rng.below(MS)
            };
            let src = rng.pick(&sources);
            let mut frame = fuzz::valid(&mut rng, src);
            if rng.percent(15) {
                frame[..6].copy_from_slice(&rng.pick(&others));
            }
            let frame = if rng.percent(10) {
                fuzz::broken(&mut rng, &frame)
            } else {
                frame
            };
            pair.packet(&frame, now);
        }
        assert!(pair.model.counters.get(Counter::PassOtherDevice) > 0);
        pair.assert_same_state();
    }
}

/// Ports marked open and closed, in both: SYNs and datagrams to closed
/// ports from a wide flood spend the closed ports' buckets, those to the
/// open ports their classes' (a TCP port open for UDP alone is closed to
/// a SYN, and the other way round), random frames among them; then the
/// UDP bits unmarked, as when the controller cannot read the UDP ports,
/// every UDP port is open again. Fails if the program took any other
/// bucket than the model.
#[test]
fn closed_ports_spend_their_own_buckets_alike() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new(
        "--mode enforce --syn-rate 20 --syn-burst 4 --udp-rate 10 --udp-burst 3 --global-rate 400 --global-burst 40 --udp-flow-idle 1",
    );
    let open = [
        (80, PORT_OPEN_TCP),
        (53, PORT_OPEN_UDP),
        (443, PORT_OPEN_TCP | PORT_OPEN_UDP),
    ];
    for (port, entry) in open {
        pair.program.set_port(port, entry);
        pair.model.ports.insert(port, entry);
    }
    let mut cfg = pair.program.config();
    cfg.ports = OPEN_MARKED_TCP | OPEN_MARKED_UDP;
    pair.program.set_config(&cfg);
    pair.model.config = cfg;
    let mut rng = Rng::new(21);
    let sources = fuzz::sources(&mut rng, 40, 20);
    let ports = [80, 53, 443, 81, 9999, 5353];
    let mut now = T0;
    for i in 0..8000 {
        if i == 6000 {
            cfg.ports = OPEN_MARKED_TCP;
            pair.program.set_config(&cfg);
            pair.model.config = cfg;
        }
        now += rng.below(MS / 2);
        let src = if rng.percent(70) {
            v4(u8::try_from(rng.below(250)).expect("a byte"))
        } else {
            rng.pick(&sources)
        };
        let dport = rng.pick(&ports);
        let frame = match rng.below(10) {
            0..4 => Packet::tcp(src, fuzz::victim(src), rng.port(), dport, TCP_SYN).frame(),
            4..9 => Packet::udp(src, fuzz::victim(src), rng.port(), dport, b"q").frame(),
            _ => fuzz::valid(&mut rng, src),
        };
        pair.packet(&frame, now);
    }
    let counters = pair.program.counters();
    for reason in [Counter::DropClosedPort, Counter::DropGlobalBudget] {
        assert!(
            counters.get(reason) > 0,
            "the scenario never reached {reason:?}: {:?}",
            by_name(&counters)
        );
    }
    pair.assert_same_state();
}

/// 100,000 random and broken frames: no error, no abort, every malformed
/// frame counted and dropped.
#[test]
fn robustness_against_100k_random_and_broken_frames() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new("--mode enforce");
    let mut rng = Rng::new(99);
    let sources = fuzz::sources(&mut rng, 200, 100);
    let mut now = T0;
    let mut malformed = 0u64;
    for i in 0..100_000usize {
        now += rng.below(100_000);
        let (_, frame) = fuzz::mixed(&mut rng, &sources, fuzz::valid);
        let is_malformed = model::dissect(&frame).class == Counter::Malformed;
        let action = pair.packet(&frame, now);
        assert!(
            action == XDP_PASS || action == XDP_DROP,
            "frame {i}: action {action}"
        );
        if is_malformed {
            malformed += 1;
            assert_eq!(
                action, XDP_DROP,
                "malformed frame {i} not dropped: {frame:02x?}"
            );
        }
    }
    let counters = pair.program.counters();
    assert_eq!(counters.get(Counter::Packets), 100_000);
    assert_eq!(counters.get(Counter::Malformed), malformed);
    assert_eq!(counters.get(Counter::DropMalformed), malformed);
    assert!(
        malformed > 20_000,
        "too few malformed frames to mean much: {malformed}"
    );
    pair.assert_same_state();
}

/// What the signatures did to a run's frames, from the program's counters
/// frame by frame.
#[derive(Debug, Default)]
struct SigOutcomes {
    /// Matched and counted as a signature drop.
    dropped: u64,
    /// Matched a slot with its monitor bit: counted only.
    monitored: u64,
    /// Matched a dropping slot, not dropped: an allowlisted source.
    allowed: u64,
}

impl SigOutcomes {
    /// The frame that took the counters from `before` to `after` under
    /// `table`; whether a signature matched it.
    fn count(&mut self, table: &SigTable, before: &CounterBlock, after: &CounterBlock) -> bool {
        let Some(slot) = (0..MAX_SIGS).find(|&s| after.sig_hits(s) != before.sig_hits(s)) else {
            return false;
        };
        if after.get(Counter::DropSignature) != before.get(Counter::DropSignature) {
            self.dropped += 1;
        } else if table.monitor & (1 << slot) != 0 {
            self.monitored += 1;
        } else {
            self.allowed += 1;
        }
        true
    }

    fn assert_all_seen(&self) {
        assert!(
            self.dropped > 0 && self.monitored > 0 && self.allowed > 0,
            "the signatures did not do everything they can: {self:?}"
        );
    }
}

/// A full signature table: an operator's IPv6 SYN signature, then
/// signatures near the fingerprints of frames of `make`
/// ([`fuzz::signature`]), three in ten of them monitor-only.
fn sig_table(rng: &mut Rng, mut make: impl FnMut(&mut Rng) -> Vec<u8>) -> SigTable {
    let mut table = SigTable::EMPTY;
    let install = |table: &mut SigTable, sig, monitor| {
        let meta = SigMeta {
            id: table.next_id(),
            ..SigMeta::default()
        };
        table.install(sig, meta, monitor);
    };
    // Drops SYNs the program does not fingerprint, had it taken their
    // fingerprint: a model that takes one sees a drop the program does not.
    install(
        &mut table,
        parse("ip6 tcp ttl 64").expect("a signature"),
        false,
    );
    while table.free_slot().is_some() {
        let frame = make(rng);
        if let Some(fp) = model::dissect(&frame).fingerprint(&frame) {
            let monitor = rng.percent(30);
            install(&mut table, fuzz::signature(rng, &fp), monitor);
        }
    }
    table
}

/// Attack signatures in random mixes: frames that may open a flow (SYNs
/// with option blocks, random options or data; UDP with payloads of 0 to
/// 40 bytes; echo requests; IPv4 and IPv6, VLAN tags, IPv4 options,
/// extension headers, first fragments) and other traffic, a few broken,
/// from allowlisted, denied and other sources. The same frames run in
/// enforce and in monitor mode; each run replaces its table twice.
#[test]
fn signatures_in_random_mixes_agree() {
    let _kernel = kernel_test!();
    let limits = "--syn-rate 20 --syn-burst 4 --udp-rate 10 --udp-burst 3 --icmp-rate 2 --icmp-burst 1 --prefix-syn-rate 50 --prefix-syn-burst 10 --global-rate 300 --global-burst 20 --ban-threshold 25 --ban-window 1 --ban-duration 2 --udp-flow-idle 1 --event-rate 50 --event-burst 10 --allow 198.19.1.0/24 --allow 2001:db8:1::/48 --deny 198.19.2.0/25";
    let mut outcomes = SigOutcomes::default();
    let mut deep = 0u64;
    for seed in 20..24 {
        let mut twins = Twins::new(limits);
        let mut rng = Rng::new(seed);
        let sources = fuzz::sources(&mut rng, 40, 20);
        let mut now = T0;
        for _ in 0..3 {
            let table = sig_table(&mut rng, |rng| {
                let src = rng.pick(&sources);
                fuzz::opener(rng, src)
            });
            twins.set_sigs(&table);
            for _ in 0..1500 {
                now += if rng.percent(2) {
                    rng.below(2 * SEC)
                } else {
                    rng.below(MS)
                };
                let src = rng.pick(&sources);
                let frame = if rng.percent(70) {
                    fuzz::opener(&mut rng, src)
                } else {
                    fuzz::valid(&mut rng, src)
                };
                let frame = fuzz::sometimes_broken(&mut rng, frame);
                let d = model::dissect(&frame);
                if d.may_open_flow() && d.l4 - d.l3 > DEEP_L4 {
                    deep += 1;
                }
                let before = twins.enforce.program.counters();
                twins.packet(&frame, now);
                outcomes.count(&table, &before, &twins.enforce.program.counters());
            }
        }
        twins.assert_mirrored();
    }
    outcomes.assert_all_seen();
    assert!(
        deep > 0,
        "no frame had its transport header past {DEEP_L4} bytes"
    );
    eprintln!("signatures in random mixes: {outcomes:?}, {deep} with a deep transport header");
}

/// A transport header this far into the IP packet (behind IPv6 extension
/// headers) put the fingerprint's payload past the first 128 bytes, which
/// the program once copied and did not fingerprint past: such packets
/// must be fingerprinted and matched like any other.
const DEEP_L4: usize = 96;

/// The signature matcher fuzzed: 50,000 random and broken frames (from
/// frames that may open a flow, half of them, and from any traffic), under
/// tables of signatures near some of them (broken ones too), replaced every
/// 10,000 frames, with allowlisted ranges. No error, every verdict and
/// counter as the model's, and every malformed frame counted and dropped
/// as malformed: no signature ever sees one.
#[test]
fn the_signature_matcher_against_random_and_broken_frames() {
    let _kernel = kernel_test!();
    let mut pair = Pair::new("--mode enforce --allow 198.19.3.0/24 --allow 2001:db8:2::/48");
    let mut rng = Rng::new(77);
    let sources = fuzz::sources(&mut rng, 200, 100);
    let make: fn(&mut Rng, IpAddr) -> Vec<u8> = |rng, src| {
        if rng.percent(50) {
            fuzz::opener(rng, src)
        } else {
            fuzz::valid(rng, src)
        }
    };
    let mut now = T0;
    let (mut malformed, mut dropped, mut broken_matched) = (0u64, 0u64, 0u64);
    let mut outcomes = SigOutcomes::default();
    let mut table = SigTable::EMPTY;
    let mut before = pair.program.counters();
    for i in 0..50_000usize {
        if i % 10_000 == 0 {
            table = sig_table(&mut rng, |rng| fuzz::mixed(rng, &sources, make).1);
            pair.set_sigs(&table);
        }
        now += rng.below(100_000);
        let (origin, frame) = fuzz::mixed(&mut rng, &sources, make);
        let is_malformed = model::dissect(&frame).class == Counter::Malformed;
        let action = pair.packet(&frame, now);
        let after = pair.program.counters();
        assert!(
            action == XDP_PASS || action == XDP_DROP,
            "frame {i}: action {action}"
        );
        if action == XDP_DROP {
            dropped += 1;
        }
        let matched = outcomes.count(&table, &before, &after);
        if is_malformed {
            malformed += 1;
            assert_eq!(action, XDP_DROP, "malformed frame {i} not dropped");
            assert!(!matched, "malformed frame {i} matched: {frame:02x?}");
        }
        if matched && origin == Made::Broken {
            broken_matched += 1;
        }
        before = after;
    }
    let counters = pair.program.counters();
    assert_eq!(counters.get(Counter::Packets), 50_000);
    assert_eq!(counters.get(Counter::Malformed), malformed);
    assert_eq!(counters.get(Counter::DropMalformed), malformed);
    let drops: u64 = Counter::DROP_REASONS.iter().map(|r| counters.get(*r)).sum();
    assert_eq!(drops, dropped, "one reason per drop");
    assert!(
        malformed > 10_000,
        "too few malformed frames to mean much: {malformed}"
    );
    outcomes.assert_all_seen();
    assert!(
        broken_matched > 0,
        "no broken frame matched a signature: {outcomes:?}"
    );
    pair.assert_same_state();
    eprintln!(
        "signature fuzz: {outcomes:?}, {broken_matched} broken frames matched, {malformed} malformed"
    );
}
