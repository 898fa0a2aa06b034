//! `cargo xtask bench`: what guard's XDP program costs per packet, beside a
//! trivial baseline program measured in the same run.
//!
//! Each row runs one frame through BPF_PROG_TEST_RUN `GUARD_BENCH_REPEAT`
//! times (default 1,000,000) and takes the kernel's average ns per run, in
//! five trials that each time the program and then the baseline; the
//! medians are reported, and the ratio is the median of the trials'
//! ratios. Rows that need a different frame on every run (a new source, a
//! new UDP flow) cannot use the kernel's repeat loop: they run 20,000
//! distinct frames once each, in five slices, each through the program and
//! then the baseline. The last table does the same for the egress program
//! (`guard_synack`) beside a trivial classifier. A benchmark, not a test:
//! it asserts nothing about speed.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    path::PathBuf,
};

mod peers;
mod profile;

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use guard::{config::Settings, model::fingerprint::parse};
use guard_common::{
    config::{OPEN_MARKED_TCP, OPEN_MARKED_UDP, VERIFY_ACKS, mac_word},
    ports::{PORT_OPEN_TCP, PORT_OPEN_UDP},
};
use guard_tests::{
    net::ip,
    packet::{L4, Packet, TCP_ACK, TCP_SYN, TPID_8021Q},
    testrun,
    xdp::{self, Program, XDP_DROP, XDP_PASS, XDP_TX},
};

const TRIALS: usize = 5;
const DISTINCT: u32 = 20_000;

fn src4(i: u32) -> IpAddr {
    let b = (i + 1).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(198, 19, b[2], b[3]))
}

fn dst4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))
}

fn dst6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2))
}

/// The frames of the table's rows, which `--profile` runs too.
mod frames {
    use super::{DISTINCT, dst4, dst6, src4};
    use guard_tests::packet::{L4, Packet, TCP_ACK, TCP_SYN};
    use std::net::{IpAddr, Ipv6Addr};

    /// A SYN from `src` to port 80.
    pub fn syn(src: IpAddr) -> Packet {
        Packet::tcp(src, dst4(), 40000, 80, TCP_SYN)
    }

    /// An ACK of an established connection.
    pub fn established() -> Packet {
        Packet::tcp(src4(0), dst4(), 40000, 80, TCP_ACK)
    }

    /// A known source's SYN (known once it has run once).
    pub fn known_syn() -> Packet {
        syn(src4(1))
    }

    /// The same over IPv6.
    pub fn known_syn6() -> Packet {
        Packet::tcp(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 9)),
            dst6(),
            40000,
            80,
            TCP_SYN,
        )
    }

    /// A packet of a known UDP flow (known once it has run once).
    pub fn known_udp() -> Packet {
        Packet::udp(src4(3), dst4(), 5000, 53, b"q")
    }

    /// The same over IPv6.
    pub fn known_udp6() -> Packet {
        Packet::udp(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 9)),
            dst6(),
            5000,
            53,
            b"q",
        )
    }

    /// A GRE datagram: a flow by addresses and protocol, as a tunnel's.
    pub fn known_gre() -> Packet {
        let bytes = vec![0, 0, 0x08, 0, 0x45, 0, 0, 20];
        Packet::new(src4(4), dst4(), L4::Raw { proto: 47, bytes })
    }

    /// SYNs from [`DISTINCT`] sources from the `from`th on.
    pub fn spoofed(from: u32) -> Vec<Vec<u8>> {
        spoofed_to(from, 80)
    }

    /// The same to port `dport`.
    pub fn spoofed_to(from: u32, dport: u16) -> Vec<Vec<u8>> {
        (from..from + DISTINCT)
            .map(|i| Packet::tcp(src4(i), dst4(), 40000, dport, TCP_SYN).frame())
            .collect()
    }

    /// Datagrams from [`DISTINCT`] sources of 198.18.0.0/16 from the
    /// `from`th on (past its first /24, which holds the server), each a
    /// new flow: a spoofed UDP flood.
    pub fn spoofed_udp(from: u32) -> Vec<Vec<u8>> {
        spoofed_udp_to(from, 53)
    }

    /// The same to port `dport`.
    pub fn spoofed_udp_to(from: u32, dport: u16) -> Vec<Vec<u8>> {
        (from..from + DISTINCT)
            .map(|i| {
                let src = IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0100 + i));
                Packet::udp(src, dst4(), 1024 + (i % 60_000) as u16, dport, b"q").frame()
            })
            .collect()
    }

    /// SYNs from every address of 198.18.0.0/15: as many sources as the
    /// default table has slots, so that most find their slot taken by
    /// another when they come round again (the new-source path).
    pub fn wide() -> Vec<Vec<u8>> {
        (0..1u32 << 17)
            // 198.18.0.0 and the 17 bits of the /15 after it.
            .map(|i| syn(IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | i))).frame())
            .collect()
    }

    /// Datagrams of 2^20 flows of one source (8 times the default
    /// `max-udp-flows`): run in turn, each finds its flow forgotten.
    pub fn new_flows() -> Vec<Vec<u8>> {
        (0..1u32 << 20)
            .map(|i| {
                let [a, b, c, d] = i.to_be_bytes();
                let (sport, dport) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                Packet::udp(src4(5), dst4(), 1024 + sport, dport, b"q").frame()
            })
            .collect()
    }

    /// ACKs from [`DISTINCT`] sources from the `from`th on, of no
    /// connection: a spoofed ACK flood.
    pub fn spoofed_acks(from: u32) -> Vec<Vec<u8>> {
        (from..from + DISTINCT)
            .map(|i| Packet::tcp(src4(i), dst4(), 40000, 80, TCP_ACK).frame())
            .collect()
    }

    /// The SYN the signature rows' SYN signature matches.
    pub fn signature_syn() -> Packet {
        syn(src4(60_002))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A program's time per run beside the baseline's.
#[derive(Clone, Copy)]
struct Timing {
    /// Medians of the trials.
    ns: f64,
    baseline: f64,
    /// The median of each trial's ratio: the program and the baseline run
    /// in turn, so drift on the machine (a VM's steal time, a clock
    /// change) moves both sides of a trial alike.
    ratio: f64,
}

/// [`TRIALS`] trials, each timing the program and then the baseline.
fn paired(mut trial: impl FnMut() -> (f64, f64)) -> Timing {
    let (mut ns, mut baseline, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        let (a, b) = trial();
        ns.push(a);
        baseline.push(b);
        ratio.push(a / b);
    }
    Timing {
        ns: median(ns),
        baseline: median(baseline),
        ratio: median(ratio),
    }
}

/// The yardsticks' object (`baseline`), built beside guard's.
fn baseline_object() -> PathBuf {
    std::env::var_os("GUARD_BASELINE_OBJECT").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/baseline")
        },
        PathBuf::from,
    )
}

/// A yardstick program, loaded: the trivial one (`baseline`), or the
/// floor of a limiter with guard's state (`floor`). Both are built beside
/// guard's program.
struct Baseline(Ebpf, &'static str);

impl Baseline {
    fn load(name: &'static str) -> Self {
        Self::load_with(name, None)
    }

    /// `name`, with its `PARTS` global set to `parts` if given (the floor's).
    fn load_with(name: &'static str, parts: Option<u8>) -> Self {
        let path = baseline_object().with_file_name(name);
        let mut loader = EbpfLoader::new();
        if let Some(parts) = &parts {
            loader.override_global("PARTS", parts, true);
        }
        let mut ebpf = loader.load_file(&path).unwrap_or_else(|e| {
            panic!("loading {}: {e} (run `cargo xtask build`)", path.display())
        });
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .expect("the program")
            .try_into()
            .expect("xdp");
        prog.load()
            .unwrap_or_else(|e| panic!("verifying {name}: {e}"));
        Self(ebpf, name)
    }

    fn time(&self, frame: &[u8], repeat: u32) -> u32 {
        let prog: &Xdp = self
            .0
            .program(self.1)
            .expect("program")
            .try_into()
            .expect("xdp");
        testrun::run(prog.fd().expect("fd").as_fd(), frame, repeat)
            .expect("test run")
            .duration_ns
    }
}

struct Row {
    case: &'static str,
    t: Timing,
    target: f64,
}

fn repeated(prog: &Program, base: &Baseline, frame: &[u8], repeat: u32) -> Timing {
    // Warm up: the first run creates state (source entries, flows).
    let _ = prog.time(frame, 1);
    paired(|| {
        (
            f64::from(prog.time(frame, repeat)),
            f64::from(base.time(frame, repeat)),
        )
    })
}

/// The average of `time` over `frames`, each run once.
fn once_each(frames: &[Vec<u8>], time: impl Fn(&[u8]) -> u32) -> f64 {
    let total: u64 = frames.iter().map(|f| u64::from(time(f))).sum();
    #[expect(clippy::cast_precision_loss, reason = "an average of small numbers")]
    let avg = total as f64 / frames.len() as f64;
    avg
}

/// `frames` in [`TRIALS`] slices, each run through the program and then
/// the baseline.
fn distinct(prog: &Program, base: &Baseline, frames: &[Vec<u8>]) -> Timing {
    let mut slices = frames.chunks(frames.len().div_ceil(TRIALS));
    paired(|| {
        let slice = slices.next().expect("a slice for each trial");
        (
            once_each(slice, |f| prog.time(f, 1)),
            once_each(slice, |f| base.time(f, 1)),
        )
    })
}

/// Limits so high every new flow is admitted: the known-source path with
/// its bucket updates, never the drop path.
fn open_settings() -> Settings {
    xdp::settings(OPEN)
}

/// [`open_settings`]' flags.
const OPEN: &str = "--mode enforce --syn-rate 1000000000 --syn-burst 4294967295 \
     --prefix-syn-rate 1000000000 --prefix-syn-burst 4294967295 \
     --udp-rate 1000000000 --udp-burst 4294967295 \
     --prefix-udp-rate 1000000000 --prefix-udp-burst 4294967295";

/// [`open_settings`] with a source table of an eighth of the sources
/// [`frames::wide`] runs in turn: each finds its slot taken by another
/// since it was last seen, as a random-source flood's sources do.
fn churned_settings() -> Settings {
    xdp::settings(&format!("{OPEN} --max-sources 16384"))
}

/// A SYN rate of one: every SYN after the first is over its limit.
fn tight_settings() -> Settings {
    xdp::settings("--mode enforce --syn-rate 1 --syn-burst 1 --ban-threshold 0")
}

/// The peers' SYN source (`src4(7)`) denied.
fn denied_settings() -> Settings {
    xdp::settings(&format!("--mode enforce --deny {}/32", src4(7)))
}

/// guard's program with `settings` and the sample mask `guard run` keeps
/// at a million packets a second (`daemon::fingerprints`): it considers
/// one packet in 256 for a fingerprint sample. Without the daemon the mask
/// is 0 and every packet that may open a flow would be fingerprinted
/// while the sample budget has room, which only a calm host sees. And the
/// interface's own address, as `guard run` writes it on a plain NIC: every
/// frame is checked against it (the bench's frames are addressed to it).
fn program(settings: &Settings) -> Program {
    let mut prog = Program::with_kernel_clock(settings);
    let mut cfg = prog.config();
    cfg.sample_mask = 255;
    cfg.host_macs_len = 1;
    cfg.host_macs[0] = mac_word(Packet::tcp(src4(7), dst4(), 1, 2, TCP_SYN).dst_mac);
    prog.set_config(&cfg);
    prog
}

/// The fast path's row: the first measured, its baseline the one
/// [`resolution_note`] speaks of.
const FAST_PATH: &str = "established TCP (fast path)";

/// Runs every case and returns its row.
fn measure(base: &Baseline, repeat: u32) -> Vec<Row> {
    let open = open_settings();
    let row = |case, t, target| Row { case, t, target };

    let prog = program(&open);
    let syn = frames::syn;
    let mut rows = vec![
        row(
            FAST_PATH,
            repeated(&prog, base, &frames::established().frame(), repeat),
            1.3,
        ),
        row(
            "SYN, known source, under its limit",
            repeated(&prog, base, &frames::known_syn().frame(), repeat),
            2.5,
        ),
        row(
            "IPv6 SYN, known source",
            repeated(&prog, base, &frames::known_syn6().frame(), repeat),
            2.5,
        ),
        row(
            "802.1Q SYN, known source",
            repeated(&prog, base, &syn(src4(2)).vlan(TPID_8021Q).frame(), repeat),
            2.5,
        ),
        row(
            "UDP, known flow",
            repeated(&prog, base, &frames::known_udp().frame(), repeat),
            2.5,
        ),
        row(
            "IPv6 UDP, known flow",
            repeated(&prog, base, &frames::known_udp6().frame(), repeat),
            2.5,
        ),
        row(
            "GRE, known flow (addresses and protocol)",
            repeated(&prog, base, &frames::known_gre().frame(), repeat),
            f64::NAN,
        ),
    ];
    let syns = frames::spoofed(100);
    rows.push(row(
        "SYN, new source (map insert)*",
        distinct(&prog, base, &syns),
        2.5,
    ));
    let port = |i: u32| 1024 + u16::try_from(i % 60_000).expect("port");
    let flows: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|i| Packet::udp(src4(5), dst4(), port(i), 53, b"q").frame())
        .collect();
    rows.push(row(
        "UDP, new flow (map insert)*",
        distinct(&prog, base, &flows),
        2.5,
    ));
    let src6 = frames::known_udp6().src;
    let flows6: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|i| Packet::udp(src6, dst6(), port(i), 53, b"q").frame())
        .collect();
    rows.push(row(
        "IPv6 UDP, new flow (map insert)*",
        distinct(&prog, base, &flows6),
        2.5,
    ));
    // A flood at a macvlan container on the guarded link: SYNs from new
    // sources for another device's address, passed untouched.
    let container = [0x02, 0, 0, 0, 0, 0x50];
    let others: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|i| {
            let s = syn(src4(i));
            let client = s.src_mac;
            s.macs(client, container).frame()
        })
        .collect();
    rows.push(row(
        "SYN, new source, for another device (passed)*",
        distinct(&prog, base, &others),
        f64::NAN,
    ));
    drop(prog);

    let prog = program(&tight_settings());
    rows.push(row(
        "SYN over its limit (dropped)",
        repeated(&prog, base, &syn(src4(7)).frame(), repeat),
        2.5,
    ));
    drop(prog);

    let prog = program(&denied_settings());
    // Its target is in the peers' table: at most their source-address rule.
    rows.push(row(
        DENIED_SYN,
        repeated(&prog, base, &syn(src4(7)).frame(), repeat),
        f64::NAN,
    ));
    drop(prog);

    rows.extend(spent_rows(base));

    let known_syn = rows[1].t.ratio;
    rows.extend(signature_rows(base, repeat, &open, known_syn));
    rows.extend(cookie_rows(base, repeat, &open));
    rows
}

/// guard's program with a global budget of one SYN, spent.
fn spent_program() -> Program {
    let prog = program(&xdp::settings(
        "--mode enforce --global-rate 1 --global-burst 1",
    ));
    let _ = prog.time(&frames::syn(src4(50_000)).frame(), 1);
    let _ = prog.time(&frames::spoofed_udp(DISTINCT)[0], 1);
    prog
}

/// [`spent_program`]'s budget once 65,536 IPv4 UDP flows (half the
/// default `max-udp-flows`) were admitted, the last a moment ago: about
/// what a budget of 2,000 new UDP flows a second (a conntrack table of
/// 262,144 under pressure) admits in 30 s of `udp-flow-idle`. A flood's
/// datagram then finds its flow's set among theirs.
fn crowded_flows_program() -> Program {
    let mut prog = program(&xdp::settings("--mode enforce"));
    for i in 0..65_536u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0xc613_0000 + i));
        let frame = Packet::udp(src, dst4(), 5353, 53, b"q").frame();
        assert_eq!(prog.run(&frame, 0), XDP_PASS, "flow {i} admitted");
    }
    let mut cfg = prog.config();
    cfg.global = xdp::settings("--mode enforce --global-rate 1 --global-burst 1")
        .dataplane()
        .global;
    prog.set_config(&cfg);
    let _ = prog.time(&frames::spoofed_udp(DISTINCT)[0], 1);
    prog
}

/// A random-source flood once the global budget binds: every SYN from a
/// source never seen, every one dropped by the budget; then the same with
/// the marked filter defeated, in the same run.
fn spent_rows(base: &Baseline) -> Vec<Row> {
    let row = |case, t| Row {
        case,
        t,
        target: 3.0,
    };
    let mut prog = spent_program();
    // Sources never seen before each row: no row finds the last one's in
    // the cache.
    let spoofed = frames::spoofed;
    let mut out = vec![row(
        "SYN, new source, budget spent (dropped)*",
        distinct(&prog, base, &spoofed(0)),
    )];
    out.push(row(
        "UDP, new source, budget spent (dropped)*",
        distinct(&prog, base, &frames::spoofed_udp(0)),
    ));
    out.push(row(
        "UDP, new source, budget spent, 65,536 flows seen lately (dropped)*",
        distinct(&crowded_flows_program(), base, &frames::spoofed_udp(0)),
    ));
    // The open ports marked, as `guard run` marks them, and the flood
    // aimed at a closed one: its bucket is spent as the classes' are,
    // and the route to the destination asked once and remembered.
    mark_open_ports(&mut prog);
    out.push(row(
        "SYN to a closed port, new source, its bucket spent (dropped)*",
        distinct(&prog, base, &frames::spoofed_to(3 * DISTINCT, CLOSED_PORT)),
    ));
    out.push(row(
        "UDP to a closed port, new source, its bucket spent (dropped)*",
        distinct(
            &prog,
            base,
            &frames::spoofed_udp_to(2 * DISTINCT, CLOSED_PORT),
        ),
    ));
    // Every GUARD_MARKED bit set: each spoofed source is also looked up in
    // GUARD_MARKS, as before the filter.
    prog.mark_all();
    out.push(row(
        "the same, every marked bit set (a GUARD_MARKS lookup each)*",
        distinct(&prog, base, &spoofed(DISTINCT)),
    ));
    // ACKs from sources not verified are checked (the source's slot, the
    // SYN-ACKs remembered, the host's sockets), as in a spoofed ACK flood
    // during a SYN flood.
    says_budget_drops(&mut prog);
    out.push(Row {
        case: "ACK, new source, budget binding (the ACK check)*",
        t: distinct(&prog, base, &frames::spoofed_acks(2 * DISTINCT)),
        target: f64::NAN,
    });
    out
}

/// The signature the SYN rows of the signature check match.
const SYN_SIGNATURE: &str = "tcp dport 80 win 64240 hlen 20";

/// Attack signatures: a flood packet a signature matches is dropped
/// before any per-source state, so one frame repeated is every flood
/// packet's cost. Target: no more than a known source's SYN
/// (`known_syn`, this run's ratio).
fn signature_rows(base: &Baseline, repeat: u32, settings: &Settings, known_syn: f64) -> Vec<Row> {
    let row = |case, t| Row {
        case,
        t,
        target: known_syn,
    };
    let mut prog = program(settings);
    let flood_sig = parse("udp dport 5353 len 44 payload[0..4]=deadbeef").expect("signature");
    prog.add_signature(flood_sig, false);
    let syn_sig = parse(SYN_SIGNATURE).expect("signature");
    prog.add_signature(syn_sig, false);
    let mut payload = vec![0xde, 0xad, 0xbe, 0xef];
    payload.resize(16, 7);
    let flood = Packet::udp(src4(60_001), dst4(), 3000, 5353, &payload).frame();
    let syn = frames::signature_syn().frame();
    for frame in [&flood, &syn] {
        assert_eq!(prog.run(frame, 0), XDP_DROP, "a signature matches");
    }
    vec![
        row(
            "UDP flood packet, a signature matches (dropped)",
            repeated(&prog, base, &flood, repeat),
        ),
        row(
            "SYN, a signature matches (dropped)",
            repeated(&prog, base, &syn, repeat),
        ),
    ]
}

/// The SYN-cookie path: cookies on for [`COOKIE_PORT`].
fn cookie_rows(base: &Baseline, repeat: u32, settings: &Settings) -> Vec<Row> {
    let row = |case, t| Row {
        case,
        t,
        target: f64::NAN,
    };
    let mut prog = program(settings);
    prog.arm_cookies(COOKIE_PORT);
    vec![
        row(COOKIE_SYN, distinct(&prog, base, &cookie_syns())),
        row(
            COOKIE_SYN_FORWARDING,
            on_a_forwarding_host(|| distinct(&prog, base, &cookie_syns())),
        ),
        row(
            "forged ACK to a cookie port (dropped)",
            repeated(&prog, base, &forged_ack(), repeat),
        ),
    ]
}

const COOKIE_SYN: &str = "SYN to a cookie port (SYN-ACK sent)*";
const COOKIE_SYN_FORWARDING: &str = "SYN to a cookie port, the host forwarding (SYN-ACK sent)*";

/// Runs `f` on a thread in a network namespace of its own, which forwards
/// and has the frames' destination on its loopback (the device test runs
/// come in by): guard's cookie path then asks the FIB whether the SYN is
/// this host's (`route.rs`), as on a router or a container host. Where
/// the host does not forward, the kernel answers before any route lookup.
/// The namespace goes with the thread.
fn on_a_forwarding_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) moves this thread alone into a new
            // namespace; nothing else is passed.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            for key in ["ipv4/conf/all/forwarding", "ipv6/conf/all/forwarding"] {
                let path = format!("/proc/sys/net/{key}");
                std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
            }
            // Children take this thread's namespace.
            ip(&["link", "set", "lo", "up"]);
            ip(&["addr", "add", &format!("{}/32", dst4()), "dev", "lo"]);
            f()
        })
        .join()
        .expect("the forwarding host's thread")
    })
}

/// Linux SYNs to [`COOKIE_PORT`] from distinct sources and ports: each is
/// answered in place, so the frame changes and the kernel's repeat loop
/// cannot be used.
fn cookie_syns() -> Vec<Vec<u8>> {
    let port = |i: u32| 1024 + u16::try_from(i % 60_000).expect("port");
    (0..DISTINCT)
        .map(|i| linux_syn(src4(200 + i), port(i)).frame())
        .collect()
}

/// An ACK to [`COOKIE_PORT`] that no SYN-ACK of ours answered.
fn forged_ack() -> Vec<u8> {
    Packet::tcp(src4(9), dst4(), 40000, COOKIE_PORT, TCP_ACK).frame()
}

/// guard's cookie rows beside the kernel's xdp_synproxy selftest program,
/// on the same frames. xdp_synproxy rewrites a SYN in place and grows
/// every frame's tail, so the kernel's repeat loop would feed it its own
/// output (an ACK run 1,000 times returns XDP_ABORTED once the tail is
/// full): every frame runs once, for guard, the peer and the baseline
/// alike, and the ACK row runs guard's one forged ACK 20,000 times.
fn synproxy_table(base: &Baseline) {
    println!(
        "\nThe kernel's xdp_synproxy selftest (built from Debian's linux-source), same baseline, {DISTINCT} frames run once each\n"
    );
    let peer = match peers::XdpSynproxy::load(COOKIE_PORT) {
        Ok(peer) => peer,
        Err(e) => {
            println!("(xdp_synproxy not measured: {e})");
            return;
        }
    };
    let mut prog = program(&open_settings());
    prog.arm_cookies(COOKIE_PORT);
    let acks = vec![forged_ack(); DISTINCT as usize];
    println!("| case | guard | xdp_synproxy | guard / xdp_synproxy | target |");
    println!("|---|---:|---:|---:|---:|");
    for (case, frames, want, target, forwarding) in [
        (COOKIE_SYN, cookie_syns(), XDP_TX, Some(0.8), false),
        (
            COOKIE_SYN_FORWARDING,
            cookie_syns(),
            XDP_TX,
            Some(0.8),
            true,
        ),
        (
            "forged ACK to a cookie port (dropped)*",
            acks,
            XDP_DROP,
            None,
            false,
        ),
    ] {
        let guard_action = prog.run(&frames[0], 0);
        let wrong = frames.iter().filter(|f| peer.action(f) != want).count();
        if guard_action != want || wrong > 0 {
            // Different work: no ratio.
            println!(
                "| {case} | – | – | not comparable: action {want} expected, guard returned {guard_action}, xdp_synproxy another on {wrong} of {} frames | – |",
                frames.len()
            );
            continue;
        }
        // Each slice of frames through the baseline, guard and the peer in
        // turn; the medians of the slices' ratios.
        let trials = || {
            let (mut guards, mut peers, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for slice in frames.chunks(frames.len().div_ceil(TRIALS)) {
                let baseline = once_each(slice, |f| base.time(f, 1));
                let guard = once_each(slice, |f| prog.time(f, 1));
                let synproxy = once_each(slice, |f| peer.time(f));
                guards.push(guard / baseline);
                peers.push(synproxy / baseline);
                ratios.push(guard / synproxy);
            }
            (median(guards), median(peers), median(ratios))
        };
        let (guard, synproxy, ratio) = if forwarding {
            on_a_forwarding_host(trials)
        } else {
            trials()
        };
        let target = target.map_or_else(
            || "–".to_owned(),
            |t| format!("<= {t:.1}{}", if ratio <= t { "" } else { " (over)" }),
        );
        println!("| {case} | {guard:.2}x | {synproxy:.2}x | {ratio:.2} | {target} |");
    }
}

/// guard's SYN from a denied source: the row that the peers' source-address
/// rule does the same work as.
const DENIED_SYN: &str = "SYN from a denied source (dropped)";

/// A comparable row: guard's case, the peer's, the rule the peers get
/// (none: they pass the frame), and the variants that do the same work
/// (the others print "–" and are left out of the cheapest).
struct Comparable {
    guard: &'static str,
    /// The settings of guard's row, for the trials paired with a peer's.
    settings: fn() -> Settings,
    peer: &'static str,
    rule: Option<peers::Rule>,
    variants: &'static [&'static str],
}

const COMPARABLE: [Comparable; 4] = [
    Comparable {
        guard: FAST_PATH,
        settings: open_settings,
        peer: "established TCP, no rule: pass",
        rule: None,
        variants: &peers::VARIANTS,
    },
    Comparable {
        guard: "SYN, known source, under its limit",
        settings: open_settings,
        peer: "SYN, no rule: pass",
        rule: None,
        variants: &peers::VARIANTS,
    },
    // No peer limits a rate; a rule on the destination port is their
    // cheapest drop, kept beside the earlier tables.
    Comparable {
        guard: "SYN over its limit (dropped)",
        settings: tight_settings,
        peer: "SYN, a port rule: drop",
        rule: Some(peers::Rule::Port),
        variants: &["tcp", "all"],
    },
    // The same work: a rule on the source address decides the drop.
    Comparable {
        guard: DENIED_SYN,
        settings: denied_settings,
        peer: "SYN, a source-address rule: drop",
        rule: Some(peers::Rule::Source),
        variants: &["ip", "all"],
    },
];

/// xdp-filter beside guard, against the same baseline in the same run;
/// the last column is guard's time over the cheapest peer's that does the
/// row's work, from trials that pair guard's program with each peer's
/// directly (on the peer's frame, guard's program set as for its row), so
/// that the noise between the table's runs does not enter it.
fn peer_table(base: &Baseline, repeat: u32, rows: &[Row]) {
    println!(
        "\nPeers in the same run, each against the same baseline: xdp-filter 1.3.1 (Debian's libxdp1), alw variants; the last column from trials of guard and each peer in turn\n"
    );
    let established = Packet::tcp(src4(0), dst4(), 40000, 80, TCP_ACK).frame();
    let syn = Packet::tcp(src4(7), dst4(), 40000, 80, TCP_SYN).frame();
    let titles: Vec<String> = peers::VARIANTS
        .iter()
        .map(|v| format!("xdp-filter {v}"))
        .collect();
    println!(
        "| case | guard | {} | guard / cheapest |",
        titles.join(" | ")
    );
    println!("|---|---:|{}---:|", "---:|".repeat(titles.len()));
    for row in &COMPARABLE {
        let Some(guard) = rows.iter().find(|r| r.case == row.guard) else {
            continue;
        };
        let frame = if row.guard == FAST_PATH {
            &established
        } else {
            &syn
        };
        let want = if row.rule.is_some() {
            XDP_DROP
        } else {
            XDP_PASS
        };
        let mut prog = program(&(row.settings)());
        // Twice: the first run creates the source's state, and spends the
        // one-SYN limit of the over-limit row.
        let _ = prog.run(frame, 0);
        let got = prog.run(frame, 0);
        assert_eq!(got, want, "guard's action on the frame of {:?}", row.peer);
        let mut cells = Vec::new();
        let mut worst = 0.0_f64;
        for variant in peers::VARIANTS {
            if !row.variants.contains(&variant) {
                cells.push("–".to_owned());
                continue;
            }
            let measured = peers::XdpFilter::load(variant).and_then(|mut peer| {
                if let Some(rule) = row.rule {
                    peer.drop_rule(rule, 80, src4(7))?;
                }
                let got = peer.action(frame);
                if got != want {
                    return Err(format!("xdp-filter {variant} returned {got}, not {want}"));
                }
                let alone = paired(|| {
                    (
                        f64::from(peer.time(frame, repeat)),
                        f64::from(base.time(frame, repeat)),
                    )
                });
                let against = paired(|| {
                    (
                        f64::from(prog.time(frame, repeat)),
                        f64::from(peer.time(frame, repeat)),
                    )
                });
                Ok((alone.ratio, against.ratio))
            });
            match measured {
                Ok((ratio, guard_over_peer)) => {
                    worst = worst.max(guard_over_peer);
                    cells.push(format!("{ratio:.2}x"));
                }
                Err(e) => {
                    println!("(peers not measured: {e})");
                    return;
                }
            }
        }
        println!(
            "| {} | {:.2}x | {} | {:.2} |",
            row.peer,
            guard.t.ratio,
            cells.join(" | "),
            worst
        );
    }
}

/// The floor program on the known-source SYN's frame: what guard's state
/// alone costs (see `guard-ebpf/src/bin/floor.rs`), whole and in parts.
fn floor_rows(base: &Baseline, repeat: u32) -> Vec<Row> {
    use guard_common::floor::{ARRAY, CAS, COARSE, NO_CLOCK, NO_LOOKUP, PLAIN, PREFIX};
    let frame = Packet::tcp(src4(1), dst4(), 40000, 80, TCP_SYN).frame();
    [
        ("floor: the address and the keys", NO_LOOKUP | NO_CLOCK),
        ("floor: and the coarse clock's helper", NO_LOOKUP | COARSE),
        (
            "floor: and the clock read once a jiffy (guard's)",
            NO_LOOKUP,
        ),
        ("floor: 1 LRU lookup", 0),
        ("floor: 2 LRU lookups", PREFIX),
        (
            "floor: a SYN's state (2 LRU lookups, 3 compare-and-swaps)",
            PREFIX | CAS,
        ),
        (
            "floor: the same in hashes without LRU",
            PREFIX | CAS | PLAIN,
        ),
        ("floor: 1 direct-mapped slot", ARRAY),
        ("floor: 2 direct-mapped slots", PREFIX | ARRAY),
        (
            "floor: a SYN's state in direct-mapped slots",
            PREFIX | CAS | ARRAY,
        ),
    ]
    .into_iter()
    .map(|(case, parts)| {
        let floor = Baseline::load_with("floor", Some(parts));
        let _ = floor.time(&frame, 1);
        let t = paired(|| {
            (
                f64::from(floor.time(&frame, repeat)),
                f64::from(base.time(&frame, repeat)),
            )
        });
        Row {
            case,
            t,
            target: f64::NAN,
        }
    })
    .collect()
}

/// What `cargo xtask bench --profile CASE` runs: the program, its frames
/// and the runs of each per test run. The cases are rows of the table:
/// `established` (the fast path), `syn` (a known source), `syn6`, `udp`
/// (a known flow), `new` (sources the table does not hold, admitted: a
/// table an eighth of their number),
/// `udp-new` (new flows of a known source, admitted),
/// `spent` (new sources once the budget binds), `udp-spent` (their
/// datagrams), `udp-closed` (datagrams to a closed port, its bucket
/// spent), `signature` (a SYN a signature drops) and `cookie` (SYNs
/// answered with SYN-ACKs).
fn profile_case(case: &str) -> (Program, Vec<Vec<u8>>, u32) {
    let one = |p: Packet| vec![p.frame()];
    let (prog, frames, repeat) = match case {
        "established" => (
            program(&open_settings()),
            one(frames::established()),
            100_000,
        ),
        "syn" => (program(&open_settings()), one(frames::known_syn()), 100_000),
        "syn6" => (
            program(&open_settings()),
            one(frames::known_syn6()),
            100_000,
        ),
        "udp" => (program(&open_settings()), one(frames::known_udp()), 100_000),
        "spent" => (spent_program(), frames::spoofed(0), 1),
        "udp-spent" => (spent_program(), frames::spoofed_udp(0), 1),
        "udp-closed" => {
            let mut prog = spent_program();
            mark_open_ports(&mut prog);
            (prog, frames::spoofed_udp_to(2 * DISTINCT, CLOSED_PORT), 1)
        }
        "new" => (program(&churned_settings()), frames::wide(), 1),
        "udp-new" => (program(&open_settings()), frames::new_flows(), 1),
        "signature" => {
            let mut prog = program(&open_settings());
            prog.add_signature(parse(SYN_SIGNATURE).expect("signature"), false);
            (prog, one(frames::signature_syn()), 100_000)
        }
        "cookie" => {
            let mut prog = program(&open_settings());
            prog.arm_cookies(COOKIE_PORT);
            (prog, cookie_syns(), 1)
        }
        other => panic!(
            "no profile case {other:?}: established, syn, syn6, udp, new, udp-new, spent, udp-spent, udp-closed, signature or cookie"
        ),
    };
    // The first run creates the state a known source or flow has.
    let _ = prog.time(&frames[0], 1);
    (prog, frames, repeat)
}

/// The port SYN cookies protect in the benchmark.
const COOKIE_PORT: u16 = 8080;

/// A SYN with the options Linux sends: MSS, SACK-permitted, timestamps,
/// window scale.
fn linux_syn(src: IpAddr, sport: u16) -> Packet {
    let mut p = Packet::tcp(src, dst4(), sport, COOKIE_PORT, TCP_SYN);
    if let L4::Tcp { options, .. } = &mut p.l4 {
        *options = vec![
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
    }
    p
}

fn main() {
    assert!(
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() } == 0,
        "the benchmark loads BPF programs: run it as root (cargo xtask bench)"
    );
    let repeat: u32 = std::env::var("GUARD_BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    if let Ok(case) = std::env::var("GUARD_BENCH_PROFILE") {
        let seconds = std::env::var("GUARD_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let (prog, frames, repeat) = profile_case(&case);
        profile::run(&prog, &frames, repeat, seconds, 40);
        return;
    }
    let base = Baseline::load("baseline");
    let mut rows = measure(&base, repeat);
    rows.extend(floor_rows(&base, repeat));

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    println!(
        "Machine: {cpu}, {} CPUs, Linux {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        kernel.trim()
    );
    println!(
        "BPF_PROG_TEST_RUN, {TRIALS} trials of {repeat} runs, guard and the baseline in turn, medians (ratio: of the trials' ratios); * rows: {DISTINCT} distinct frames in {TRIALS} slices, one run each\n"
    );
    println!("| case | guard ns/pkt | baseline ns/pkt | ratio | target |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        let ratio = r.t.ratio;
        let (verdict, target) = if r.target.is_nan() {
            ("", "–".to_owned())
        } else if ratio <= r.target {
            ("", format!("<= {:.1}x", r.target))
        } else {
            (" (over)", format!("<= {:.1}x", r.target))
        };
        println!(
            "| {} | {:.1} | {:.1} | {ratio:.2}x{verdict} | {target} |",
            r.case, r.t.ns, r.t.baseline
        );
    }
    if let Some(fast) = rows.iter().find(|r| r.case == FAST_PATH) {
        resolution_note(fast.t.baseline);
    }
    // `cargo xtask bench --without-peers`.
    if std::env::var_os("GUARD_BENCH_WITHOUT_PEERS").is_some() {
        println!("\n(peers not measured: --without-peers)");
    } else {
        peer_table(&base, repeat, &rows);
        synproxy_table(&base);
    }
    egress_table(repeat);
}

/// Where the trivial program takes only a few ns (6 on one Intel guest,
/// 27 on one AMD), says how coarse the repeated rows' ratios are: the
/// kernel gives their time per run in whole ns, rounded down. `b` is the
/// fast path's baseline, as the table prints it.
fn resolution_note(b: f64) {
    if b >= 20.0 {
        return;
    }
    println!(
        "\nThe kernel gives a repeated (unstarred) row's time per run in whole ns, rounded down. \
         Against this run's {b:.0} ns baseline such a ratio G/B reads up to {:.0}% high: \
         the row's own lies between G/(B+1) and (G+1)/B.",
        100.0 / b.max(1.0)
    );
}

/// A port nothing listens on, in the rows that mark the open ones.
const CLOSED_PORT: u16 = 9999;

/// Marks the open ports as the controller does: 80 for TCP, 53 for UDP,
/// then the configuration's bits; closed ports' buckets spent.
fn mark_open_ports(prog: &mut Program) {
    prog.set_port(80, PORT_OPEN_TCP);
    prog.set_port(53, PORT_OPEN_UDP);
    let mut cfg = prog.config();
    cfg.ports |= OPEN_MARKED_TCP | OPEN_MARKED_UDP;
    prog.set_config(&cfg);
    let _ = prog.time(&frames::spoofed_to(4 * DISTINCT, CLOSED_PORT)[0], 1);
    let _ = prog.time(&frames::spoofed_udp_to(3 * DISTINCT, CLOSED_PORT)[0], 1);
}

/// Sets the controller's word that the global budget has been dropping
/// (`verify`): the ACK check and the egress program's SYN-ACK record
/// then work.
fn says_budget_drops(prog: &mut Program) {
    let mut cfg = prog.config();
    cfg.verify = VERIFY_ACKS;
    prog.set_config(&cfg);
}

/// The trivial classifier (`baseline_tc`), the egress program's yardstick.
struct TcBaseline(Ebpf);

impl TcBaseline {
    fn load() -> Self {
        let path = baseline_object();
        let mut ebpf = EbpfLoader::new()
            .load_file(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        let prog: &mut SchedClassifier = ebpf
            .program_mut("baseline_tc")
            .expect("baseline_tc")
            .try_into()
            .expect("a classifier");
        prog.load().expect("verifying baseline_tc");
        Self(ebpf)
    }

    fn time(&self, frame: &[u8], repeat: u32) -> u32 {
        let prog: &SchedClassifier = self
            .0
            .program("baseline_tc")
            .expect("program")
            .try_into()
            .expect("a classifier");
        testrun::run(prog.fd().expect("fd").as_fd(), frame, repeat)
            .expect("test run")
            .duration_ns
    }
}

/// What the egress program (`guard_synack`, on every packet the
/// interface sends) costs beside a trivial classifier: a pure ACK leaving
/// (its headers read), a segment with data (its client's slot looked up,
/// and found verified: the first run verifies it), the same while the
/// budget binds, a SYN-ACK then (remembered: an LRU insert), and a UDP
/// datagram (its flow looked up, and found: the first run remembers it).
fn egress_table(repeat: u32) {
    let base = TcBaseline::load();
    let calm = program(&open_settings());
    let mut binding = program(&xdp::settings(
        "--mode enforce --global-rate 1000000 --global-burst 1000000",
    ));
    says_budget_drops(&mut binding);
    let (server, client) = (dst4(), src4(7));
    let segment = |flags| Packet::tcp(server, client, 8080, 40_000, flags).frame();
    let data = {
        let mut bytes = Packet::tcp(server, client, 8080, 40_000, TCP_ACK).l4_bytes();
        bytes.extend_from_slice(&[0x55; 512]);
        Packet::new(server, client, L4::Raw { proto: 6, bytes }).frame()
    };
    let rows = [
        (
            "a pure ACK leaving, the budget not binding",
            &calm,
            segment(TCP_ACK),
        ),
        (
            "data leaving, the budget not binding (its client verified)",
            &calm,
            data.clone(),
        ),
        (
            "data leaving, the budget binding (its client verified)",
            &binding,
            data,
        ),
        (
            "a SYN-ACK leaving, the budget binding (remembered)",
            &binding,
            segment(TCP_SYN | TCP_ACK),
        ),
        (
            "a UDP datagram leaving (its flow known)",
            &calm,
            Packet::udp(server, client, 40_000, 53, &[0x55; 40]).frame(),
        ),
    ];
    println!("\n| egress program (guard_synack) | ns/pkt | trivial classifier ns/pkt | ratio |");
    println!("|---|---:|---:|---:|");
    for (case, prog, frame) in rows {
        let t = paired(|| {
            (
                f64::from(prog.time_egress(&frame, repeat)),
                f64::from(base.time(&frame, repeat)),
            )
        });
        println!(
            "| {case} | {:.1} | {:.1} | {:.2}x |",
            t.ns, t.baseline, t.ratio
        );
    }
}
