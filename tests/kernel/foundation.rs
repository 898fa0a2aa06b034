//! Foundation: guard attaches to a veth in a namespace, counts every class
//! of packet exactly, and leaves nothing behind: on SIGTERM, on SIGINT and
//! when it refuses to start. Its programs, as the kernel verified them,
//! look every map up inline or by a direct call.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use guard_common::Counter;
use guard_tests::{
    guard_proc::{self, Finished, Guard, counters, pin_dir, start_on, stats, stats_after},
    kernel_test,
    net::{TestNet, loopback_port, run_tool},
    packet::{self, Ext, Frag, L4, Packet, TCP_ACK, TCP_FIN, TCP_SYN, TPID_8021AD, TPID_8021Q},
    raw::RawSender,
    xdp::{self, Program},
};

const V4_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const V4_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn v4() -> (IpAddr, IpAddr) {
    (V4_SRC.into(), V4_DST.into())
}

fn v6() -> (IpAddr, IpAddr) {
    (V6_SRC.into(), V6_DST.into())
}

/// Where guard pins the maps of the victim namespace's interfaces.
fn netns_pins(net: &TestNet) -> PathBuf {
    Path::new("/sys/fs/bpf/guard/netns").join(&net.victim)
}

/// The index of `dev` in namespace `ns`.
fn index_of(ns: &str, dev: &str) -> u32 {
    guard::host::netns::Scope::open(Some(ns))
        .expect("netns")
        .run(|| guard::host::iface::lookup(dev, "").expect("lookup").index)
        .expect("enter netns")
}

/// Someone else's program: guard's own object, loaded by this process,
/// not attached; its XDP program is [`xdp_of`]'s.
fn foreign_loaded() -> aya::Ebpf {
    let mut foreign =
        aya::Ebpf::load(guard::dataplane::loader::OBJECT).expect("loading the foreign object");
    xdp_of(&mut foreign).load().expect("load");
    foreign
}

/// The XDP program of an object [`foreign_loaded`] gave.
fn xdp_of(foreign: &mut aya::Ebpf) -> &mut aya::programs::Xdp {
    foreign
        .program_mut(guard_common::maps::PROGRAM)
        .expect("program")
        .try_into()
        .expect("xdp")
}

/// Someone else's program ([`foreign_loaded`]) attached to `dev` in `ns`
/// in skb mode through a BPF link this process holds, so dropping the
/// object detaches it; and its program id.
fn foreign_program(ns: &str, dev: &str) -> (aya::Ebpf, u32) {
    let mut foreign = foreign_loaded();
    let prog = xdp_of(&mut foreign);
    let prog_id = prog.info().expect("info").id();
    let index = index_of(ns, dev);
    guard::host::netns::Scope::open(Some(ns))
        .expect("netns")
        .run(|| prog.attach_to_if_index(index, aya::programs::XdpMode::Skb))
        .expect("enter netns")
        .expect("attach the foreign program");
    (foreign, prog_id)
}

/// Checks that guard is gone from the interface and from bpffs.
fn assert_clean(net: &TestNet, finished: &Finished) {
    let link = net.victim_link();
    assert!(
        !link.contains("xdp"),
        "XDP still attached after exit:\n{link}\n{finished}"
    );
    assert!(
        !pin_dir(net).exists(),
        "{} still exists after exit\n{finished}",
        pin_dir(net).display()
    );
    assert_no_runtime_dir(net);
}

/// Nothing of the namespace's guard is left in /run/guard.
fn assert_no_runtime_dir(net: &TestNet) {
    let dir = guard::model::paths::runtime_dir(Some(&net.victim));
    assert!(!dir.exists(), "{} still exists after exit", dir.display());
}

/// One crafted frame and the class (and attributes) guard must count it as.
struct Case {
    what: &'static str,
    frame: Vec<u8>,
    class: &'static str,
    attrs: &'static [&'static str],
}

fn case(
    what: &'static str,
    frame: Vec<u8>,
    class: &'static str,
    attrs: &'static [&'static str],
) -> Case {
    Case {
        what,
        frame,
        class,
        attrs,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one table of cases reads better than several"
)]
fn cases() -> Vec<Case> {
    let (s4, d4) = v4();
    let (s6, d6) = v6();
    let syn4 = Packet::tcp(s4, d4, 40000, 80, TCP_SYN);
    let udp4 = Packet::udp(s4, d4, 40000, 53, &[0xab; 40]);
    let mut with_options = syn4.clone();
    with_options.ipv4_options = vec![1, 1, 1, 1]; // four NOPs: IHL 6

    let mut bad_ihl = syn4.frame();
    bad_ihl[14] = 0x44; // IHL 4 (16 bytes) is below the minimum
    let mut syn_cut = syn4.frame();
    syn_cut.truncate(14 + 20 + 10); // TCP header cut in half
    let mut ip_cut = syn4.frame();
    ip_cut.truncate(14 + 12); // IPv4 header cut
    let mut v6_cut = Packet::tcp(s6, d6, 40000, 80, TCP_SYN).frame();
    v6_cut.truncate(14 + 30);
    let mut len_lies = udp4.frame();
    len_lies[16..18].copy_from_slice(&2000u16.to_be_bytes()); // total length past the frame
    // Untagged TCP and UDP, which the program takes by a shortcut, with
    // each of its rules broken once (and the fields it lets be).
    let byte = |mut f: Vec<u8>, at: usize, set: u8| {
        f[at] = set;
        f
    };
    let syn = syn4.frame();
    let tcp_off = 14 + 20 + 12;
    let mut tcp_len_lies = syn.clone();
    tcp_len_lies[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut tcp_len_short = syn.clone();
    tcp_len_short[16..18].copy_from_slice(&30u16.to_be_bytes()); // shorter than its headers
    let mut padded = syn.clone();
    padded.extend_from_slice(&[0; 6]); // link padding past the IP packet
    let ack6 = Packet::tcp(s6, d6, 40000, 443, TCP_ACK).frame();
    let mut ack6_len_lies = ack6.clone();
    ack6_len_lies[18..20].copy_from_slice(&2000u16.to_be_bytes());
    let mut ack6_cut = ack6.clone();
    ack6_cut.truncate(14 + 40 + 10);
    let udp_len = |f: &Vec<u8>, at: usize, len: u16| {
        let mut f = f.clone();
        f[at..at + 2].copy_from_slice(&len.to_be_bytes());
        f
    };
    let udp = udp4.frame();
    let udp6 = Packet::udp(s6, d6, 5000, 53, &[0xab; 40]).frame();

    vec![
        case("IPv4 SYN", syn4.frame(), "tcp_syn", &[]),
        case(
            "IPv4 SYN-ACK",
            Packet::tcp(s4, d4, 80, 40000, TCP_SYN | TCP_ACK).frame(),
            "tcp_other",
            &[],
        ),
        case(
            "IPv4 ACK",
            Packet::tcp(s4, d4, 40000, 80, TCP_ACK).frame(),
            "tcp_other",
            &[],
        ),
        case(
            "IPv4 FIN-ACK",
            Packet::tcp(s4, d4, 40000, 80, TCP_FIN | TCP_ACK).frame(),
            "tcp_other",
            &[],
        ),
        case(
            "IPv4 SYN with IP options",
            with_options.frame(),
            "tcp_syn",
            &[],
        ),
        case("IPv4 UDP", udp4.frame(), "udp", &[]),
        case(
            "IPv4 ICMP echo",
            Packet::echo(s4, d4, 7).frame(),
            "icmp",
            &[],
        ),
        case(
            "IPv6 SYN",
            Packet::tcp(s6, d6, 40000, 443, TCP_SYN).frame(),
            "tcp_syn",
            &["ipv6"],
        ),
        case(
            "IPv6 SYN behind hop-by-hop and destination options",
            Packet::tcp(s6, d6, 40000, 443, TCP_SYN)
                .ext(Ext::HopByHop)
                .ext(Ext::DestOpts)
                .frame(),
            "tcp_syn",
            &["ipv6"],
        ),
        case(
            "IPv6 UDP",
            Packet::udp(s6, d6, 5000, 53, b"q").frame(),
            "udp",
            &["ipv6"],
        ),
        case(
            "ICMPv6 echo",
            Packet::echo(s6, d6, 9).frame(),
            "icmp",
            &["ipv6"],
        ),
        case(
            "802.1Q SYN",
            syn4.clone().vlan(TPID_8021Q).frame(),
            "tcp_syn",
            &["vlan"],
        ),
        case(
            "802.1ad+802.1Q SYN",
            syn4.clone().vlan(TPID_8021AD).vlan(TPID_8021Q).frame(),
            "tcp_syn",
            &["vlan"],
        ),
        case(
            "802.1Q IPv6 SYN",
            Packet::tcp(s6, d6, 40000, 443, TCP_SYN)
                .vlan(TPID_8021Q)
                .frame(),
            "tcp_syn",
            &["vlan", "ipv6"],
        ),
        case(
            "IPv4 first fragment of a UDP datagram",
            udp4.clone()
                .fragment(Frag {
                    offset: 0,
                    more: true,
                    len: 24,
                })
                .frame(),
            "udp",
            &["fragments"],
        ),
        case(
            "IPv4 last fragment",
            udp4.clone()
                .fragment(Frag {
                    offset: 24,
                    more: false,
                    len: 24,
                })
                .frame(),
            "ip_other",
            &["fragments"],
        ),
        case(
            "IPv6 later fragment",
            Packet::udp(s6, d6, 5000, 53, b"q")
                .ext(Ext::Fragment {
                    offset: 64,
                    more: true,
                })
                .frame(),
            "ip_other",
            &["ipv6", "fragments"],
        ),
        case(
            "GRE (other protocol)",
            Packet::new(
                s4,
                d4,
                L4::Raw {
                    proto: 47,
                    bytes: vec![0; 8],
                },
            )
            .frame(),
            "ip_other",
            &[],
        ),
        case("ARP", packet::arp(), "non_ip", &[]),
        case("IPv4 IHL 4", bad_ihl, "malformed", &[]),
        case("IPv4 header truncated", ip_cut, "malformed", &[]),
        case("TCP header truncated", syn_cut, "malformed", &[]),
        case(
            "IPv4 total length past the frame",
            len_lies,
            "malformed",
            &[],
        ),
        case("IPv6 header truncated", v6_cut, "malformed", &["ipv6"]),
        case(
            "IPv4 SYN, total length past the frame",
            tcp_len_lies,
            "malformed",
            &[],
        ),
        case(
            "IPv4 SYN, total length short of its headers",
            tcp_len_short,
            "malformed",
            &[],
        ),
        case(
            "TCP data offset past the IP packet",
            byte(syn.clone(), tcp_off, 0xf0),
            "malformed",
            &[],
        ),
        case(
            "TCP data offset below 5 words",
            byte(syn.clone(), tcp_off, 0x40),
            "malformed",
            &[],
        ),
        case(
            "IPv4 SYN with DF and the reserved bit",
            byte(syn.clone(), 20, 0xc0),
            "tcp_syn",
            &[],
        ),
        case(
            "IPv4 SYN, first fragment (MF)",
            byte(syn.clone(), 20, 0x20),
            "tcp_syn",
            &["fragments"],
        ),
        case(
            "IPv4 TCP, later fragment",
            byte(syn.clone(), 21, 3),
            "ip_other",
            &["fragments"],
        ),
        case("IPv4 SYN, link padding", padded, "tcp_syn", &[]),
        case("IPv6 ACK", ack6, "tcp_other", &["ipv6"]),
        case(
            "IPv6 ACK, payload length past the frame",
            ack6_len_lies,
            "malformed",
            &["ipv6"],
        ),
        case(
            "UDP length past the IP packet",
            udp_len(&udp, 14 + 20 + 4, 49),
            "malformed",
            &[],
        ),
        case(
            "UDP length below its header",
            udp_len(&udp, 14 + 20 + 4, 7),
            "malformed",
            &[],
        ),
        case(
            "IPv6 UDP length past the payload",
            udp_len(&udp6, 14 + 40 + 4, 49),
            "malformed",
            &["ipv6"],
        ),
        case(
            "IPv6 UDP, payload length past the frame",
            udp_len(&udp6, 14 + 4, 2000),
            "malformed",
            &["ipv6"],
        ),
        case(
            "IPv6 ACK, TCP header truncated",
            ack6_cut,
            "malformed",
            &["ipv6"],
        ),
        case(
            "three VLAN tags",
            syn4.clone()
                .vlan(TPID_8021AD)
                .vlan(TPID_8021Q)
                .vlan(TPID_8021Q)
                .frame(),
            "malformed",
            &["vlan"],
        ),
    ]
}

#[test]
fn counters_equal_what_was_sent() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &["--summary-interval", "1"]);
    let before = counters(&stats(&net));
    assert!(
        before.values().all(|v| *v == 0),
        "the silent link carried traffic before the test sent any: {before:?}"
    );

    let sender = RawSender::open(&net.attacker, &net.attacker_if);
    let copies = 3;
    // Class and attribute counters; the verdict counters are the
    // differential suite's business (tests/kernel/differential.rs).
    let mut want: BTreeMap<String, u64> = std::iter::once(Counter::Packets)
        .chain(Counter::CLASSES)
        .chain(Counter::ATTRIBUTES)
        .map(|c| (c.name().to_owned(), 0))
        .collect();
    for c in cases() {
        for _ in 0..copies {
            sender.send(&c.frame);
        }
        *want.get_mut("packets").expect("packets") += copies;
        *want
            .get_mut(c.class)
            .unwrap_or_else(|| panic!("{}: no counter {}", c.what, c.class)) += copies;
        for attr in c.attrs {
            *want
                .get_mut(*attr)
                .unwrap_or_else(|| panic!("{}: no counter {attr}", c.what)) += copies;
        }
    }
    let got: BTreeMap<String, u64> = counters(&stats_after(&net, want["packets"]))
        .into_iter()
        .filter(|(k, _)| want.contains_key(k))
        .collect();
    assert_eq!(got, want, "counters differ from what was sent");

    // The summary line reports the same totals.
    thread::sleep(Duration::from_millis(1200));
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    let summary = format!("{}: {} pkts", net.victim_if, want["packets"]);
    assert!(
        finished.stderr.contains(&summary),
        "no `{summary}` line:\n{finished}"
    );
    assert!(finished.stderr.contains("detached from"), "{finished}");
    assert_clean(&net, &finished);
}

#[test]
fn sigint_detaches_and_unpins() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &[]);
    assert!(net.victim_link().contains("xdp"), "not attached");
    let finished = guard.stop(libc::SIGINT);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// The guarded interface deleted and made again under its name (a link
/// that a container runtime or a script recreates): guard says it is gone,
/// in its log and its status, attaches again to the new one in the mode it
/// had, with its maps kept (the counters go on from where they were), and
/// leaves nothing behind when stopped.
#[test]
fn a_deleted_interface_is_followed_and_guarded_again() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let port = loopback_port();
    let guard = start_on(&net, &["--metrics", &format!("127.0.0.1:{port}")]);
    let pid = guard.pid().expect("running");
    let attached = format!(
        "guard_attached{{iface=\"{}/{}\"}} ",
        net.victim, net.victim_if
    );
    let gone = |want: bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = guard_proc::run_status(pid).expect("guard's status");
            if run.interfaces.iter().all(|a| a.gone == want) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "status never said gone = {want}: {run:?}\n{}",
                guard.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    let (s4, d4) = v4();
    let syn = Packet::tcp(s4, d4, 40000, 80, TCP_SYN).frame();
    let send = |n: u64| {
        let sender = RawSender::open(&net.attacker, &net.attacker_if);
        for _ in 0..n {
            sender.send(&syn);
        }
    };

    send(5);
    assert_eq!(counters(&stats_after(&net, 5))["packets"], 5);
    guard_tests::net::ip(&["-n", &net.victim, "link", "del", &net.victim_if]);
    gone(true);
    guard.wait_for_log(&format!(
        "{} in netns {} was deleted: nothing is guarded there",
        net.victim_if, net.victim
    ));
    let out = guard_proc::run(&["status", "--netns", &net.victim]);
    out.assert_code(0);
    assert!(out.stdout.contains("gone (deleted)"), "{out}");
    assert!(
        guard_proc::scrape(port).contains(&format!("{attached}0")),
        "no {attached}0"
    );

    net.link();
    gone(false);
    guard.wait_for_log("is back");
    assert!(
        net.victim_link().contains("xdpgeneric"),
        "not attached again:\n{}",
        net.victim_link()
    );
    assert!(
        guard_proc::scrape(port).contains(&format!("{attached}1")),
        "no {attached}1"
    );
    send(5);
    assert_eq!(counters(&stats_after(&net, 10))["packets"], 10);
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// An interface that comes back under its name with someone else's
/// program on it is not taken from them: guard says why, and attaches
/// once that program is gone.
#[test]
fn a_returning_interface_is_taken_only_once_it_is_free() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &[]);
    let ip = guard_tests::net::ip;
    ip(&["-n", &net.victim, "link", "del", &net.victim_if]);
    guard.wait_for_log("was deleted");
    // The new link gets its name only once the other program holds it:
    // guard sees it under the name at once, never free before.
    let spare = format!("{}x", net.victim_if);
    ip(&[
        "link",
        "add",
        "name",
        &net.attacker_if,
        "netns",
        &net.attacker,
        "type",
        "veth",
        "peer",
        "name",
        &spare,
        "netns",
        &net.victim,
    ]);
    let (foreign, prog_id) = foreign_program(&net.victim, &spare);
    ip(&[
        "-n",
        &net.victim,
        "link",
        "set",
        &spare,
        "name",
        &net.victim_if,
    ]);
    guard.wait_for_log(&format!(
        "is back (index {}) but guard could not attach to it",
        index_of(&net.victim, &net.victim_if)
    ));
    assert!(
        guard
            .stderr()
            .contains(&format!("program id {prog_id} `guard`"))
    );
    thread::sleep(Duration::from_millis(1500));
    assert!(
        net.victim_link().contains(&format!("id {prog_id} ")),
        "the other program was replaced:\n{}",
        net.victim_link()
    );
    assert!(
        !guard.stderr().contains("attached again"),
        "{}",
        guard.stderr()
    );

    drop(foreign);
    guard.wait_for_log("attached again in skb (generic) mode");
    let link = net.victim_link();
    assert!(
        link.contains("xdpgeneric") && !link.contains(&format!("id {prog_id} ")),
        "{link}"
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

#[test]
fn missing_interface_is_refused_with_exit_2() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let out = guard_proc::run(&["run", "--netns", &net.victim, "--iface", "nosuch0"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!(
            "interface `nosuch0` does not exist in netns {}",
            net.victim
        )),
        "{out}"
    );
    // Refused before the conntrack controller starts (it sizes the hash
    // buckets at once) or the settings are announced.
    assert!(
        !out.stderr.contains("keeping fill below") && !out.stderr.contains("per source"),
        "{out}"
    );
    assert!(!netns_pins(&net).exists());
    assert_no_runtime_dir(&net);
}

/// A device without an Ethernet header (tun, WireGuard, GRE, ...) hands
/// XDP bare IP packets, which guard's program would misread as frames:
/// refused with exit 2, the link type named, nothing attached.
#[test]
fn interface_without_ethernet_header_is_refused() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    guard_tests::net::ip(&[
        "-n",
        &net.victim,
        "tuntap",
        "add",
        "mode",
        "tun",
        "name",
        "gtun0",
    ]);
    let out = Guard::start(&["run", "--netns", &net.victim, "--iface", "gtun0"]).exited();
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!(
            "interface gtun0 in netns {} has no Ethernet header (link type NONE",
            net.victim
        )) && out.stderr.contains("run guard on the Ethernet interface"),
        "{out}"
    );
    assert!(
        !guard_tests::net::ip_out(&["-n", &net.victim, "link", "show", "gtun0"]).contains("xdp")
    );
    assert!(!netns_pins(&net).exists());
    assert_no_runtime_dir(&net);
}

/// A bridge hands XDP only the frames it passes up to this host, not
/// those it forwards between its ports: guard attaches and says so.
#[test]
fn a_bridge_is_guarded_with_a_warning() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    for args in [
        &["-n", &net.victim, "link", "add", "gbr0", "type", "bridge"][..],
        &["-n", &net.victim, "link", "set", "gbr0", "up"][..],
    ] {
        guard_tests::net::ip(args);
    }
    let mut guard = Guard::start(&["run", "--netns", &net.victim, "--iface", "gbr0"]);
    let pins = netns_pins(&net).join("gbr0");
    guard.wait_for(&pins.join("GUARD_COUNTERS"));
    guard.wait_for_log(&format!(
        "gbr0 in netns {} is a bridge: guard sees the frames it hands to this host's own stack, not those it forwards between its ports",
        net.victim
    ));
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(!pins.exists(), "{finished}");
}

#[test]
fn second_guard_is_refused() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &[]);
    let out = guard_proc::run(&["run", "--netns", &net.victim, "--iface", &net.victim_if]);
    out.assert_code(2);
    assert!(out.stderr.contains("another guard is running"), "{out}");
    // The first one is untouched and still cleans up after itself.
    assert!(net.victim_link().contains("xdp"));
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// `ip netns del` of the namespace guard protects (a container stopped)
/// ends the namespace only once nothing holds it: guard lets go of it and
/// stops (exit 1, saying why), so that its interfaces and their veth
/// peers go with it rather than live on while guard runs.
#[test]
fn a_guard_whose_namespace_is_deleted_lets_it_go_and_stops() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &[]);
    let peer = || {
        std::process::Command::new("ip")
            .args(["-n", &net.attacker, "link", "show", &net.attacker_if])
            .output()
            .expect("ip link show")
            .status
            .success()
    };
    assert!(peer());
    let _ = run_tool("ip", &["netns", "del", &net.victim]);
    let finished = guard.exited();
    finished.assert_code(1);
    assert!(
        finished.stderr.contains(&format!(
            "network namespace `{}` was deleted while guard guarded it",
            net.victim
        )),
        "{finished}"
    );
    // The namespace is gone, and the veth with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while peer() {
        assert!(
            Instant::now() < deadline,
            "the deleted namespace's veth still has its peer:\n{finished}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!pin_dir(&net).exists(), "{finished}");
    assert_no_runtime_dir(&net);
}

#[test]
fn stats_without_a_running_guard_exits_1() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let out = guard_proc::run(&["stats", "--netns", &net.victim]);
    out.assert_code(1);
    assert!(out.stderr.contains("no guard is running in netns"), "{out}");
}

/// A mount namespace of its own whose /sys/fs/bpf is not the host's
/// bpffs (a container's): a running guard's pins are not there, and
/// `guard stats` says why rather than only that no guard runs.
#[test]
fn stats_without_the_hosts_bpffs_says_why_it_sees_no_guard() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let guard = start_on(&net, &[]);
    let out: Finished = without_bpffs(&["stats"])
        .output()
        .expect("unshare (util-linux)")
        .into();
    out.assert_code(1);
    assert!(
        out.stderr.contains("not a bpf filesystem here")
            && out.stderr.contains("guard run --netns NAME"),
        "{out}"
    );
    // From the host's shell the same guard is found.
    let host = guard_proc::run(&["stats", "--netns", &net.victim]);
    host.assert_code(0);
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// guard with `args` in a mount namespace of its own whose /sys/fs/bpf is
/// a tmpfs, as in a container without the host's bpffs; the host's mounts
/// stay as they are.
fn without_bpffs(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs guard-test /sys/fs/bpf && exec \"$0\" \"$@\"")
        .arg(guard_proc::guard_bin())
        .args(args);
    command
}

#[test]
fn unprivileged_run_is_refused() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(guard_proc::guard_bin())
        .args(["run", "--netns", &net.victim, "--iface", &net.victim_if])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("guard needs root"), "{stderr}");
    assert!(!net.victim_link().contains("xdp"));
}

#[test]
fn a_missing_bpffs_is_mounted() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let args = [
        "run",
        "--netns",
        &net.victim,
        "--iface",
        &net.victim_if,
        "--summary-interval",
        "0",
    ];
    let guard = Guard::start_command(&mut without_bpffs(&args), &args);
    guard.wait_for_log("attached to");
    let stderr = guard.stderr();
    assert!(
        stderr.contains("mounted a bpf filesystem at /sys/fs/bpf")
            && stderr.contains("only from this mount namespace"),
        "{stderr}"
    );
    assert!(net.victim_link().contains("xdp"), "{}", net.victim_link());
    assert!(
        !pin_dir(&net).exists(),
        "the pins went to the host's bpffs, not guard's own mount"
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(!net.victim_link().contains("xdp"));
}

/// `ip netns exec NS guard ...` is `guard ... --netns NS` from the host's
/// shell: guard goes back to the host's namespaces, so its pins and files
/// are where the host's commands look, and the commands run the same way
/// find it.
#[test]
fn a_guard_started_by_ip_netns_exec_is_that_namespaces_guard() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let mut guard = Guard::start_in_netns(
        &net.victim,
        &["run", "--iface", &net.victim_if, "--summary-interval", "0"],
    );
    guard.wait_for(&pin_dir(&net).join("GUARD_COUNTERS"));
    guard.wait_ready();
    assert!(
        guard.stderr().contains(&format!(
            "started in netns {} (as by `ip netns exec",
            net.victim
        )),
        "{}",
        guard.stderr()
    );
    assert!(net.victim_link().contains("xdp"), "{}", net.victim_link());
    let from_host = guard_proc::run(&["status", "--netns", &net.victim]);
    let from_inside: Finished = std::process::Command::new("ip")
        .args(["netns", "exec", &net.victim])
        .arg(guard_proc::guard_bin())
        .args(["stats", "--interval", "0"])
        .output()
        .expect("ip netns exec")
        .into();
    let named = format!("{} (netns {})", net.victim_if, net.victim);
    for out in [from_host, from_inside] {
        out.assert_code(0);
        assert!(out.stdout.contains(&named), "{out}");
    }
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// Where guard may not join the host's mount namespace (no
/// CAP_SYS_CHROOT, as in a systemd unit's sandbox started in a namespace
/// by `NetworkNamespacePath=`), it still leaves the named network
/// namespace, and keeps its pins in a bpffs of its own.
#[test]
fn a_guard_that_may_not_join_the_hosts_mount_namespace_still_leaves_the_named_one() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let args = ["run", "--iface", &net.victim_if, "--summary-interval", "0"];
    let mut command = std::process::Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &net.victim,
            "setpriv",
            "--bounding-set=-sys_chroot",
        ])
        .arg(guard_proc::guard_bin())
        .args(args);
    let guard = Guard::start_command(&mut command, &args);
    guard.wait_ready();
    let stderr = guard.stderr();
    assert!(
        stderr.contains(&format!("started in netns {}", net.victim))
            && stderr.contains("mounted a bpf filesystem at /sys/fs/bpf"),
        "{stderr}"
    );
    assert!(net.victim_link().contains("xdp"), "{}", net.victim_link());
    assert!(!pin_dir(&net).exists(), "the pins in the host's bpffs");
    let status = guard_proc::run(&["status", "--netns", &net.victim]);
    status.assert_code(0);
    assert!(
        status
            .stdout
            .contains(&format!("{} (netns {})", net.victim_if, net.victim)),
        "{status}"
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(!net.victim_link().contains("xdp"));
}

/// Someone else's program, held by a BPF link in this test process.
#[test]
fn foreign_program_held_by_a_link_is_kept_unless_forced() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let (_foreign, prog_id) = foreign_program(&net.victim, &net.victim_if);

    let out = guard_proc::run(&["run", "--netns", &net.victim, "--iface", &net.victim_if]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains(&format!("program id {prog_id} `guard`"))
            && out.stderr.contains("held by BPF link")
            && out.stderr.contains("--force"),
        "{out}"
    );
    assert!(
        net.victim_link().contains(&format!("id {prog_id}")),
        "foreign program removed"
    );
    assert!(!pin_dir(&net).exists());

    let guard = start_on(&net, &["--force"]);
    let link = net.victim_link();
    assert!(
        !link.contains(&format!("id {prog_id} ")),
        "foreign program still there:\n{link}"
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert!(
        finished.stderr.contains("--force: detaching program id"),
        "{finished}"
    );
    assert_clean(&net, &finished);
}

/// Someone else's program, attached through netlink (as `ip link set xdp`
/// and most XDP tools do), which stays after its loader exits.
#[test]
fn foreign_program_attached_by_netlink_is_kept_unless_forced() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let mut foreign = foreign_loaded();
    let prog = xdp_of(&mut foreign);
    let prog_id = prog.info().expect("info").id();
    let pin = PathBuf::from(format!("/sys/fs/bpf/guardt-{}-prog", std::process::id()));
    let _ = std::fs::remove_file(&pin);
    prog.pin(&pin).expect("pin the foreign program");
    // nsenter, not `ip -n`: `ip -n` remounts /sys, hiding bpffs.
    let attach = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.victim))
        .args([
            "ip",
            "link",
            "set",
            "dev",
            &net.victim_if,
            "xdpgeneric",
            "pinned",
        ])
        .arg(&pin)
        .output()
        .expect("nsenter (util-linux)");
    std::fs::remove_file(&pin).expect("unpin");
    assert!(
        attach.status.success(),
        "{}",
        String::from_utf8_lossy(&attach.stderr)
    );

    let out = guard_proc::run(&["run", "--netns", &net.victim, "--iface", &net.victim_if]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!("program id {prog_id}"))
            && out.stderr.contains("attached through netlink"),
        "{out}"
    );

    let guard = start_on(&net, &["--force"]);
    let link = net.victim_link();
    assert!(
        !link.contains(&format!("id {prog_id} ")),
        "foreign program still there:\n{link}"
    );
    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    assert_clean(&net, &finished);
}

/// A program the verifier rejects: guard shows the verifier's last lines,
/// exits 2 and leaves nothing attached.
#[test]
fn verifier_rejection_is_shown() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let rejected = std::env::temp_dir().join(format!("guardt-{}-rejected.o", std::process::id()));
    std::fs::write(&rejected, object_with_unbounded_loop()).expect("write object");
    let out = std::process::Command::new(guard_proc::guard_bin())
        .args(["run", "--netns", &net.victim, "--iface", &net.victim_if])
        .env(guard::dataplane::loader::OBJECT_ENV, &rejected)
        .output()
        .expect("run guard");
    std::fs::remove_file(&rejected).expect("remove object");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the kernel rejected guard's XDP program")
            && stderr.contains("last verifier lines"),
        "{stderr}"
    );
    assert!(!net.victim_link().contains("xdp"));
    assert!(!pin_dir(&net).exists());
    assert_no_runtime_dir(&net);
}

/// guard's own object with the program's first `exit` replaced by
/// `goto -1`, a loop the verifier must reject. An exit, not the first
/// instruction: that may be a call the loader relocates, and every exit is
/// reached on some path.
fn object_with_unbounded_loop() -> Vec<u8> {
    let mut object = guard::dataplane::loader::OBJECT.to_vec();
    let (start, size) = xdp_section(&object);
    let offset = (start..start + size)
        .step_by(8)
        .find(|&o| object[o] == 0x95)
        .expect("the xdp section has an exit");
    // BPF_JMP|BPF_JA, no registers, offset -1, imm 0.
    let ja_self: [u8; 8] = [0x05, 0x00, 0xff, 0xff, 0, 0, 0, 0];
    object[offset..offset + 8].copy_from_slice(&ja_self);
    object
}

/// File offset and size of the `xdp` section of a 64-bit little-endian ELF.
fn xdp_section(elf: &[u8]) -> (usize, usize) {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes")) as usize;
    let u64_at = |o: usize| {
        usize::try_from(u64::from_le_bytes(
            elf[o..o + 8].try_into().expect("8 bytes"),
        ))
        .expect("fits usize")
    };
    let shoff = u64_at(0x28);
    let shentsize = u16_at(0x3a);
    let shnum = u16_at(0x3c);
    let shstrndx = u16_at(0x3e);
    let strtab = u64_at(shoff + shstrndx * shentsize + 0x18);
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let name_at = strtab + u32_at(sh);
        let name = elf[name_at..].split(|b| *b == 0).next().expect("name");
        if name == b"xdp" {
            return (u64_at(sh + 0x18), u64_at(sh + 0x20));
        }
    }
    panic!("guard's object has no xdp section");
}

/// Every map lookup of both programs, as the verifier left them, is an
/// array's inlined lookup or a direct call of the map's own: none goes
/// through the generic `bpf_map_lookup_elem` helper, which the verifier
/// keeps where one call site looks up two maps (an indirect call, through
/// a retpoline on this machine). LLVM makes such a site of an `if` whose
/// two branches differ only in the map: a known UDP flow's datagram cost
/// 2.6x the trivial program with its flow's tag array looked up so, 1.9x
/// after (`cargo xtask bench`).
#[test]
fn no_map_is_looked_up_through_the_generic_helper() {
    let _kernel = kernel_test!();
    let program = Program::new(&xdp::settings("--mode enforce"));
    for (name, id) in program.ids() {
        let xlated = run_tool(
            "bpftool",
            &["prog", "dump", "xlated", "id", &id.to_string()],
        );
        // The dump names the functions called: a hash map's own lookup is
        // in both programs.
        assert!(
            xlated.contains("call __htab_map_lookup_elem"),
            "{name}: no named lookup in bpftool's dump:\n{xlated}"
        );
        let generic: Vec<&str> = xlated
            .lines()
            .filter(|l| l.contains("call bpf_map_lookup_elem"))
            .collect();
        assert!(
            generic.is_empty(),
            "{name}: {} lookups through the generic helper: {generic:?}",
            generic.len()
        );
    }
}
