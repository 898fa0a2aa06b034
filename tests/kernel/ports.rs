//! The port table and returning clients, frame by frame through
//! BPF_PROG_TEST_RUN.
//!
//! The controller writes `GUARD_PORTS` from the listening sockets it finds:
//! SYNs to a listening port are counted in its slot, and only an armed port
//! answers with cookies. While the global budget binds, an ACK of a
//! connection the kernel knows verifies its source, so the source's next
//! connections skip the budget; the connections here are real sockets on
//! the loopback of the test's own namespace, where the program's socket
//! lookup looks (BPF_PROG_TEST_RUN runs on that namespace's loopback).
//! An ACK that matches no socket, as every spoofed one does, verifies
//! nobody.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};

use guard::model::fingerprint::parse;
use guard_common::{
    Counter, Limit, SourceKey,
    bucket::NANOS_PER_SEC,
    config::{ACK_LOOKUPS_PER_SEC, BUDGETS, VERIFY_ACKS, mac_word},
    key::{AF_INET, AF_INET6},
    ports::{PORT_UNTRACKED_TCP, PORT_UNTRACKED_UDP, port_entry},
};
use guard_tests::{
    cpu, kernel_test,
    packet::{Ext, Frag, L4, Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TPID_8021AD, TPID_8021Q},
    server::bootp,
    wire::tcp_pseudo_header,
    xdp::{self, Program, XDP_DROP, XDP_PASS, XDP_TX},
};

const SEC: u64 = NANOS_PER_SEC;
const T0: u64 = 1_000 * SEC;
const ARMED: u16 = 8080;
const LISTENING: u16 = 9090;
/// Enforce mode with a global budget of one new flow of each class.
const BUDGET: &str = "--mode enforce --global-rate 3 --global-burst 3";

/// guard's program with [`BUDGET`], and the controller's word that the
/// budget has been dropping (or not).
fn budgeted(dropping: bool) -> Program {
    let mut program = Program::new(&xdp::settings(BUDGET));
    let mut cfg = program.config();
    cfg.verify = if dropping { VERIFY_ACKS } else { 0 };
    program.set_config(&cfg);
    program
}

fn server() -> IpAddr {
    Ipv4Addr::new(198, 18, 0, 2).into()
}

fn syn_from(src: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    Packet::tcp(src, server(), sport, dport, TCP_SYN).frame()
}

fn source_key(addr: IpAddr) -> SourceKey {
    match addr {
        IpAddr::V4(a) => SourceKey::v4(a.octets(), 32),
        IpAddr::V6(a) => SourceKey::v6(a.octets(), 64),
    }
}

/// guard in enforce mode with cookies on for `ARMED` (counter slot 0) and
/// `LISTENING` listening in slot 7; and a client's address.
fn armed_and_listening() -> (Program, IpAddr) {
    let mut program = Program::new(&xdp::settings("--mode enforce"));
    program.arm_cookies(ARMED);
    program.set_port(LISTENING, port_entry(7, false, false));
    (program, Ipv4Addr::new(198, 18, 0, 1).into())
}

#[test]
fn syns_to_a_listening_port_are_counted_and_only_an_armed_port_gets_cookies() {
    let _kernel = kernel_test!();
    let (mut program, client) = armed_and_listening();

    let (action, _) = program.run_frame(&syn_from(client, 40_000, ARMED), T0);
    assert_eq!(action, XDP_TX, "a SYN to the armed port is answered");
    let (action, out) = program.run_frame(&syn_from(client, 40_001, LISTENING), T0);
    assert_eq!(action, XDP_PASS, "a SYN to a port that is not armed passes");
    assert_eq!(out, syn_from(client, 40_001, LISTENING), "untouched");
    let (action, _) = program.run_frame(&syn_from(client, 40_002, 7777), T0);
    assert_eq!(
        action, XDP_PASS,
        "a SYN to a port without a listener passes"
    );

    let armed = program.port_counts(0);
    assert_eq!((armed.syns, armed.cookies), (1, 1), "the armed port's slot");
    let listening = program.port_counts(7);
    assert_eq!((listening.syns, listening.cookies), (1, 0), "slot 7");
    let c = program.counters();
    assert_eq!(c.get(Counter::CookieSynAck), 1);
    assert_eq!(c.get(Counter::PassLimits), 2);

    // Disarmed, the port's SYNs go the ordinary way and are still counted.
    program.disarm_cookies(ARMED);
    let (action, _) = program.run_frame(&syn_from(client, 40_003, ARMED), T0);
    assert_eq!(action, XDP_PASS);
    assert_eq!(program.port_counts(0).syns, 2);
    assert_eq!(program.counters().get(Counter::CookieSynAck), 1);
}

/// A SYN with IPv4 options reaches the listener all the same, so its
/// port counts it; the cookie path leaves it to the kernel (its reply is
/// built for a plain header).
#[test]
fn a_syn_with_ip_options_is_counted_at_its_port_and_left_to_the_kernel() {
    let _kernel = kernel_test!();
    let (mut program, client) = armed_and_listening();
    let with_options = |sport, dport| {
        let mut p = Packet::tcp(client, server(), sport, dport, TCP_SYN);
        // Four NOPs.
        p.ipv4_options = vec![1; 4];
        p.frame()
    };

    let (action, out) = program.run_frame(&with_options(40_000, ARMED), T0);
    assert_eq!(action, XDP_PASS, "not answered with a cookie");
    assert_eq!(out, with_options(40_000, ARMED), "untouched");
    let (action, _) = program.run_frame(&with_options(40_001, LISTENING), T0);
    assert_eq!(action, XDP_PASS);

    let armed = program.port_counts(0);
    assert_eq!((armed.syns, armed.cookies), (1, 0), "the armed port's slot");
    assert_eq!(program.port_counts(7).syns, 1, "slot 7");
    let c = program.counters();
    assert_eq!(c.get(Counter::CookieSynAck), 0);
    assert_eq!(
        c.get(Counter::PassLimits),
        2,
        "both went through the limits"
    );
}

/// An ACK from `client`'s end of its connection to the server, as on the
/// wire.
fn ack_of(client: &TcpStream) -> Vec<u8> {
    let (c, s) = (
        client.local_addr().expect("client"),
        client.peer_addr().expect("server"),
    );
    Packet::tcp(c.ip(), s.ip(), c.port(), s.port(), TCP_ACK).frame()
}

/// A real, established connection on this namespace's loopback.
struct Connection {
    _listener: TcpListener,
    client: TcpStream,
    _accepted: TcpStream,
}

impl Connection {
    fn open(addr: IpAddr) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(addr, 0)).expect("listening");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        Self {
            _listener: listener,
            client,
            _accepted: accepted,
        }
    }

    /// An ACK from the client to the server, as on the wire.
    fn ack(&self) -> Vec<u8> {
        ack_of(&self.client)
    }

    fn client(&self) -> IpAddr {
        self.client.local_addr().expect("client").ip()
    }

    fn server(&self) -> SocketAddr {
        self.client.peer_addr().expect("server")
    }
}

fn returning_client_is_verified(addr: IpAddr, stranger: IpAddr) {
    let conn = Connection::open(addr);
    let server = conn.server();
    let syn = |src: IpAddr, sport: u16| {
        Packet::tcp(src, server.ip(), sport, server.port(), TCP_SYN).frame()
    };
    let mut program = budgeted(true);
    // A stranger spends the SYN budget; everyone else is over it now.
    assert_eq!(program.run(&syn(stranger, 1000), T0), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 1001), T0), XDP_DROP);
    assert_eq!(program.run(&syn(conn.client(), 1002), T0), XDP_DROP);

    // A spoofed ACK (the stranger's, to the real server port) matches no
    // socket: nobody is verified, and the budget still binds for it.
    let spoofed = Packet::tcp(stranger, server.ip(), 2000, server.port(), TCP_ACK).frame();
    assert_eq!(
        program.run(&spoofed, T0),
        XDP_PASS,
        "ACKs are never dropped here"
    );
    assert_eq!(program.counters().get(Counter::VerifiedAck), 0);
    assert_eq!(program.run(&syn(stranger, 1003), T0), XDP_DROP);

    // The client's ACK of its real connection verifies it: its next SYN
    // skips the budget, which still drops the stranger's.
    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    let state = program.sources()[&source_key(conn.client())];
    assert!(state.verified_until_ns > T0, "{state:?}");
    assert_eq!(program.run(&syn(conn.client(), 1004), T0), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 1005), T0), XDP_DROP);
    // Verified once: later ACKs do not count it again.
    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
}

#[test]
fn an_ipv4_ack_of_a_known_connection_verifies_its_source_and_a_spoofed_one_nobody() {
    let _kernel = kernel_test!();
    returning_client_is_verified(
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
    );
}

#[test]
fn an_ipv6_ack_of_a_known_connection_verifies_its_source_and_a_spoofed_one_nobody() {
    let _kernel = kernel_test!();
    returning_client_is_verified(
        Ipv6Addr::LOCALHOST.into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 3, 0, 0, 0, 3).into(),
    );
}

/// The ACK check's socket lookups are rationed per CPU and second: once a
/// spoofed ACK flood has spent them, a real client's ACK is not looked up
/// (and counted so) until the next second, when it verifies the client.
/// An ACK that answers a SYN-ACK the host sent is checked whatever the
/// ration.
#[test]
fn the_ack_checks_socket_lookups_are_rationed_per_cpu_and_second() {
    let _kernel = kernel_test!();
    // The program's per-CPU state stays the same across the runs.
    cpu::pin_here();
    let conn = Connection::open(Ipv4Addr::LOCALHOST.into());
    let server = conn.server();
    let stranger: IpAddr = Ipv4Addr::new(198, 19, 3, 3).into();
    let spoofed = Packet::tcp(stranger, server.ip(), 2000, server.port(), TCP_ACK).frame();
    let mut program = budgeted(true);
    assert_eq!(program.run(&spoofed, T0), XDP_PASS);
    // The rest of this second's lookups, in one run of the kernel's loop.
    let _ = program.time(&spoofed, ACK_LOOKUPS_PER_SEC - 1);
    assert_eq!(program.counters().get(Counter::AckLookupsSkipped), 0);

    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    let c = program.counters();
    assert_eq!(c.get(Counter::AckLookupsSkipped), 1);
    assert_eq!(c.get(Counter::VerifiedAck), 0);

    // A handshake's ACK that answers a remembered SYN-ACK is not rationed
    // (its SYN was admitted, and took its source's slot).
    let client: IpAddr = Ipv4Addr::new(198, 18, 7, 9).into();
    let syn = segment(client, server.ip(), (40_000, server.port()), TCP_SYN, 6, 0);
    assert_eq!(program.run(&syn, T0), XDP_PASS);
    let synack = segment(
        server.ip(),
        client,
        (server.port(), 40_000),
        TCP_SYN | TCP_ACK,
        41,
        7,
    );
    assert_eq!(program.run_egress(&synack, T0), TCX_NEXT);
    let answer = segment(client, server.ip(), (40_000, server.port()), TCP_ACK, 7, 42);
    assert_eq!(program.run(&answer, T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);

    // The next second, the real client's ACK is looked up again.
    assert_eq!(program.run(&conn.ack(), T0 + SEC), XDP_PASS);
    let c = program.counters();
    assert_eq!(c.get(Counter::VerifiedAck), 2);
    assert_eq!(c.get(Counter::AckLookupsSkipped), 1);
    assert!(program.sources()[&source_key(conn.client())].verified_until_ns > T0);
}

/// A connection the server side holds half-open: its listener defers
/// accepting (`TCP_DEFER_ACCEPT`), so the client's handshake ACK, which
/// carries no data, leaves a request socket, as a spoofed SYN the budget
/// let through does until its SYN-ACKs give up.
struct HalfOpen {
    listener: TcpListener,
    client: TcpStream,
}

impl HalfOpen {
    fn open(addr: IpAddr) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(addr, 0)).expect("listening");
        let secs: libc::c_int = 30;
        // SAFETY: setsockopt on the listener's own fd with an int option.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&listener),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const secs).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "TCP_DEFER_ACCEPT: {}",
            std::io::Error::last_os_error()
        );
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        Self { listener, client }
    }

    /// The client's next segment: the server's side completes.
    fn complete(&mut self) -> TcpStream {
        std::io::Write::write_all(&mut self.client, b"x").expect("write");
        self.listener.accept().expect("accept").0
    }

    fn ack(&self) -> Vec<u8> {
        ack_of(&self.client)
    }
}

/// An ACK that names a half-open connection passes and verifies nobody:
/// a flood can follow each spoofed SYN the budget admits with an ACK of
/// the same tuple. Once the handshake has completed, the same ACK
/// verifies its source.
fn a_half_open_connection_proves_nothing(addr: IpAddr) {
    let mut conn = HalfOpen::open(addr);
    let client = conn.client.local_addr().expect("client").ip();
    let mut program = budgeted(true);
    for _ in 0..3 {
        assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    }
    assert_eq!(program.counters().get(Counter::VerifiedAck), 0);
    assert!(
        program
            .sources()
            .get(&source_key(client))
            .is_none_or(|s| s.verified_until_ns <= T0),
        "a half-open connection's ACK verified its source"
    );

    let _accepted = conn.complete();
    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    assert!(program.sources()[&source_key(client)].verified_until_ns > T0);
}

#[test]
fn an_ipv4_ack_of_a_half_open_connection_verifies_nobody() {
    let _kernel = kernel_test!();
    a_half_open_connection_proves_nothing(Ipv4Addr::LOCALHOST.into());
}

#[test]
fn an_ipv6_ack_of_a_half_open_connection_verifies_nobody() {
    let _kernel = kernel_test!();
    a_half_open_connection_proves_nothing(Ipv6Addr::LOCALHOST.into());
}

/// A TCP segment with its sequence and acknowledgement numbers.
fn segment(src: IpAddr, dst: IpAddr, ports: (u16, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport: ports.0,
        dport: ports.1,
        flags,
        seq,
        ack,
        options: Vec::new(),
    };
    Packet::new(src, dst, l4).frame()
}

/// What the egress program returns: tcx's "next", the packet untouched.
const TCX_NEXT: i32 = -1;

/// A connection the nat rules send to a container has no socket here (nor
/// has this one: no listener on its port). The client's ACK verifies it
/// by acknowledging the SYN-ACK the host sent, which the egress program
/// remembered while the budget binds; an ACK with another number, or from
/// another address, verifies nobody. A SYN-ACK answers a SYN the program
/// admitted, which took its source's slot: an ACK from a source no slot
/// holds (`unseen`, as a spoofed ACK flood's) is not looked up, and
/// verifies nobody even where the host did send that SYN-ACK.
fn an_answered_synack_verifies(client: IpAddr, server: IpAddr, stranger: IpAddr, unseen: IpAddr) {
    const ISN: u32 = u32::MAX; // the acknowledgement wraps to 0
    let (cport, sport) = (40_000, 8080);
    let synack = segment(server, client, (sport, cport), TCP_SYN | TCP_ACK, ISN, 77);
    let family = if client.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut client16 = [0u8; 16];
    match client {
        IpAddr::V4(a) => client16[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => client16 = a.octets(),
    }

    // While the budget has room, nothing is remembered.
    let mut calm = budgeted(false);
    assert_eq!(calm.run_egress(&synack, T0), TCX_NEXT);
    assert!(calm.synacks().is_empty());

    let mut program = budgeted(true);
    // Segments that are not SYN-ACKs are not remembered.
    for flags in [
        TCP_ACK,
        TCP_SYN,
        TCP_RST | TCP_ACK,
        TCP_SYN | TCP_ACK | TCP_RST,
    ] {
        assert_eq!(
            program.run_egress(&segment(server, client, (sport, cport), flags, 5, 6), T0),
            TCX_NEXT
        );
    }
    assert!(program.synacks().is_empty(), "{:?}", program.synacks());
    // The client's SYN takes the budget's one token, and its slot; the
    // host answers it.
    let syn = |src: IpAddr, port: u16| segment(src, server, (port, sport), TCP_SYN, 1, 0);
    assert_eq!(program.run(&syn(client, cport), T0), XDP_PASS);
    assert_eq!(program.run_egress(&synack, T0), TCX_NEXT);
    assert_eq!(
        program.synacks(),
        [((family, client16, cport, sport), 0)]
            .into_iter()
            .collect()
    );

    // The budget is spent: the stranger's SYN and the client's next are
    // over it.
    assert_eq!(program.run(&syn(stranger, 1001), T0), XDP_DROP);
    assert_eq!(program.run(&syn(client, 1002), T0), XDP_DROP);

    // Spoofed ACKs: the right tuple with a guessed number, and the right
    // number from another address.
    let ack = |src: IpAddr, n: u32| segment(src, server, (cport, sport), TCP_ACK, 1, n);
    for forged in [ack(client, 1), ack(client, ISN), ack(stranger, 0)] {
        assert_eq!(
            program.run(&forged, T0),
            XDP_PASS,
            "ACKs are never dropped here"
        );
    }
    assert_eq!(program.counters().get(Counter::VerifiedAck), 0);
    assert_eq!(program.run(&syn(client, 1003), T0), XDP_DROP);

    // A SYN-ACK to a source whose SYN the program never admitted: its ACK
    // is not looked up.
    let unanswered = segment(server, unseen, (sport, cport), TCP_SYN | TCP_ACK, ISN, 77);
    assert_eq!(program.run_egress(&unanswered, T0), TCX_NEXT);
    assert_eq!(program.synacks().len(), 2);
    assert_eq!(program.run(&ack(unseen, 0), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 0);

    // The client's ACK: verified, and its next SYN skips the budget.
    assert_eq!(program.run(&ack(client, 0), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    assert!(program.sources()[&source_key(client)].verified_until_ns > T0);
    assert_eq!(program.run(&syn(client, 1004), T0), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 1005), T0), XDP_DROP);
}

#[test]
fn an_ipv4_ack_of_a_synack_the_host_sent_verifies_its_source() {
    let _kernel = kernel_test!();
    an_answered_synack_verifies(
        Ipv4Addr::new(198, 18, 7, 9).into(),
        server(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
        Ipv4Addr::new(198, 19, 3, 4).into(),
    );
}

#[test]
fn an_ipv6_ack_of_a_synack_the_host_sent_verifies_its_source() {
    let _kernel = kernel_test!();
    an_answered_synack_verifies(
        Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 9).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 3, 0, 0, 0, 3).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 4, 0, 0, 0, 3).into(),
    );
}

/// A segment `server` sends `client` with `options` and `data` after its
/// header (the IP lengths count them; the checksum does not, which the
/// egress program does not read).
fn sent(client: IpAddr, server: IpAddr, flags: u8, options: &[u8], data: &[u8]) -> Packet {
    let l4 = L4::Tcp {
        sport: 8080,
        dport: 40_000,
        flags,
        seq: 5,
        ack: 6,
        options: options.to_vec(),
    };
    Packet::new(server, client, l4).with_data(data)
}

/// Any time, budget binding or not, a segment the host sends that only a
/// connection past its handshake sends (data, or a FIN) verifies its
/// destination: a client served before a flood skips the budget from the
/// flood's first SYN, though it sends no ACK the check could look at in
/// between (a published port's client, whose connections end before the
/// next one starts). What a half-open connection or no connection sends
/// (a SYN-ACK, a pure ACK, with a timestamp too, a RST) verifies nobody.
fn a_reply_verifies(client: IpAddr, server: IpAddr, stranger: IpAddr, other: IpAddr) {
    const TIMESTAMP: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let mut program = budgeted(false);
    for frame in [
        sent(client, server, TCP_ACK, &[], &[]).frame(),
        sent(client, server, TCP_ACK, &TIMESTAMP, &[]).frame(),
        sent(client, server, TCP_SYN | TCP_ACK, &[], &[]).frame(),
        sent(client, server, TCP_SYN | TCP_ACK, &[], b"fast open").frame(),
        sent(client, server, TCP_RST | TCP_ACK, &[], &[]).frame(),
        sent(client, server, TCP_RST | TCP_ACK, &[], b"why").frame(),
        sent(client, server, TCP_RST | TCP_ACK | TCP_FIN, &[], &[]).frame(),
    ] {
        assert_eq!(program.run_egress(&frame, T0), TCX_NEXT);
    }
    assert_eq!(program.counters().get(Counter::VerifiedReply), 0);
    assert!(
        program
            .sources()
            .get(&source_key(client))
            .is_none_or(|s| s.verified_until_ns <= T0),
        "verified by a segment a half-open connection sends"
    );

    // A response's data verifies the client, once; a FIN another.
    let response = sent(client, server, TCP_ACK, &TIMESTAMP, b"HTTP/1.1 200 OK\r\n").frame();
    assert_eq!(program.run_egress(&response, T0), TCX_NEXT);
    assert_eq!(program.run_egress(&response, T0), TCX_NEXT);
    assert_eq!(program.counters().get(Counter::VerifiedReply), 1);
    let fin = sent(other, server, TCP_FIN | TCP_ACK, &[], &[]).frame();
    assert_eq!(program.run_egress(&fin, T0), TCX_NEXT);
    assert_eq!(program.counters().get(Counter::VerifiedReply), 2);
    for addr in [client, other] {
        let state = program.sources()[&source_key(addr)];
        assert!(state.verified_until_ns > T0, "{addr}: {state:?}");
    }
    // In the slots only: not marked (nor in GUARD_MARKS, where the bans
    // are kept).
    for addr in [client, other] {
        assert!(!program.marked(&source_key(addr)), "{addr} marked");
    }

    // The flood: the stranger spends the budget, the clients skip it.
    let mut cfg = program.config();
    cfg.verify = VERIFY_ACKS;
    program.set_config(&cfg);
    let syn = |src: IpAddr, sport: u16| Packet::tcp(src, server, sport, 8080, TCP_SYN).frame();
    assert_eq!(program.run(&syn(stranger, 1000), T0 + SEC), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 1001), T0 + SEC), XDP_DROP);
    assert_eq!(program.run(&syn(client, 1002), T0 + SEC), XDP_PASS);
    assert_eq!(program.run(&syn(other, 1003), T0 + SEC), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 1004), T0 + SEC), XDP_DROP);

    // The client's handshake ACK proves it (marks it), as the host's
    // replies alone do not.
    let synack = segment(server, client, (8080, 40_001), TCP_SYN | TCP_ACK, 41, 7);
    assert_eq!(program.run_egress(&synack, T0 + SEC), TCX_NEXT);
    let answer = segment(client, server, (40_001, 8080), TCP_ACK, 7, 42);
    assert_eq!(program.run(&answer, T0 + SEC), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    assert!(program.marked(&source_key(client)), "{client} not marked");
    assert!(!program.marked(&source_key(other)), "{other} marked");
}

#[test]
fn an_ipv4_client_the_host_sent_data_or_a_fin_is_verified_before_any_flood() {
    let _kernel = kernel_test!();
    a_reply_verifies(
        Ipv4Addr::new(198, 18, 7, 9).into(),
        server(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
        Ipv4Addr::new(198, 18, 7, 10).into(),
    );
}

#[test]
fn an_ipv6_client_the_host_sent_data_or_a_fin_is_verified_before_any_flood() {
    let _kernel = kernel_test!();
    a_reply_verifies(
        Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 9).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 3, 0, 0, 0, 3).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, 9).into(),
    );
}

/// A verified source skips the global budget only while it keeps within
/// its own limit: once over it (a flood that spoofs a client served
/// lately), its new flows meet the budget like anyone's until its
/// over-limit drops are a ban window old.
#[test]
fn a_verified_source_over_its_own_limit_meets_the_budget() {
    let _kernel = kernel_test!();
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --syn-rate 1 --syn-burst 3"
    )));
    let mut cfg = program.config();
    cfg.verify = VERIFY_ACKS;
    program.set_config(&cfg);
    let (client, stranger) = (
        Ipv4Addr::new(198, 18, 7, 9).into(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
    );
    let response = sent(client, server(), TCP_ACK, &[], b"data").frame();
    assert_eq!(program.run_egress(&response, T0), TCX_NEXT);
    let syn = |src: IpAddr, sport: u16| syn_from(src, sport, 8080);
    let spend = |program: &mut Program, now: u64| {
        assert_eq!(program.run(&syn(stranger, 1000), now), XDP_PASS);
        assert_eq!(program.run(&syn(stranger, 1001), now), XDP_DROP);
    };

    // Within its limit (a burst of 3) the client skips the spent budget.
    spend(&mut program, T0);
    for sport in 2000..2003 {
        assert_eq!(program.run(&syn(client, sport), T0), XDP_PASS);
    }
    assert_eq!(
        program.run(&syn(client, 2003), T0),
        XDP_DROP,
        "over its limit"
    );
    let c = program.counters();
    assert_eq!(c.get(Counter::DropSourceLimit), 1);

    // A second on, its bucket has a token, and the budget decides.
    spend(&mut program, T0 + SEC);
    let budget_drops = program.counters().get(Counter::DropGlobalBudget);
    assert_eq!(program.run(&syn(client, 2004), T0 + SEC), XDP_DROP);
    assert_eq!(
        program.counters().get(Counter::DropGlobalBudget),
        budget_drops + 1
    );

    // A ban window (10 s) after its over-limit drop, it skips it again.
    let later = T0 + 11 * SEC;
    spend(&mut program, later);
    assert_eq!(program.run(&syn(client, 2005), later), XDP_PASS);
}

/// A budget spent before the controller says it binds (a flood's first
/// tick) still lets a verified source past with at most a tenth of its
/// burst drawn, so a returning client's connections do not wait for a
/// retransmission; past that tenth, or unverified, the budget decides.
#[test]
fn a_verified_source_gets_a_tenth_of_its_burst_past_a_budget_spent_before_it_binds() {
    let _kernel = kernel_test!();
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --syn-rate 10 --syn-burst 20"
    )));
    assert!(!program.config().budget_binds());
    let (client, stranger, unverified) = (
        Ipv4Addr::new(198, 18, 7, 9).into(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
        Ipv4Addr::new(198, 18, 7, 10).into(),
    );
    let response = sent(client, server(), TCP_ACK, &[], b"data").frame();
    assert_eq!(program.run_egress(&response, T0), TCX_NEXT);
    let syn = |src: IpAddr, sport: u16| syn_from(src, sport, 8080);
    let spend = |program: &mut Program, now: u64| {
        let passed = (1000..1010)
            .take_while(|&sport| program.run(&syn(stranger, sport), now) == XDP_PASS)
            .count();
        assert!(passed < 10, "the budget was never spent");
    };
    // The unverified source is known, so the budget alone decides for it.
    assert_eq!(program.run(&syn(unverified, 900), T0), XDP_PASS);
    spend(&mut program, T0);

    let budget_drops = program.counters().get(Counter::DropGlobalBudget);
    for sport in 2000..2002 {
        assert_eq!(program.run(&syn(client, sport), T0), XDP_PASS, "{sport}");
    }
    assert_eq!(program.run(&syn(client, 2002), T0), XDP_DROP, "a third");
    assert_eq!(program.run(&syn(unverified, 901), T0), XDP_DROP);
    assert_eq!(
        program.counters().get(Counter::DropGlobalBudget),
        budget_drops + 2
    );
    // A second on, its bucket has refilled (the budget too: spend it).
    let later = T0 + SEC;
    spend(&mut program, later);
    assert_eq!(program.run(&syn(client, 2003), later), XDP_PASS);
}

/// The egress program reads the commonest frames (untagged, IPv4 without
/// options) in one piece and the rest field by field: a tagged frame (two
/// tags too, as XDP reads them), or one with IPv4 options, is read alike,
/// and a datagram verifies nobody.
#[test]
fn a_reply_in_a_tagged_frame_or_with_ipv4_options_verifies_too() {
    let _kernel = kernel_test!();
    let server6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into();
    let client = |i: u8| -> IpAddr { Ipv4Addr::new(198, 18, 9, i).into() };
    let client6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1).into();
    let data = |client: IpAddr, server: IpAddr| sent(client, server, TCP_ACK, &[], b"data");
    let mut with_options = data(client(2), server());
    with_options.ipv4_options = vec![1, 1, 1, 0]; // NOPs, then the end
    let mut program = budgeted(false);
    let frames = [
        data(client(1), server()).vlan(TPID_8021Q).frame(),
        with_options.frame(),
        data(client6, server6).vlan(TPID_8021Q).frame(),
        data(client(4), server())
            .vlan(TPID_8021AD)
            .vlan(TPID_8021Q)
            .frame(),
    ];
    for frame in &frames {
        assert_eq!(program.run_egress(frame, T0), TCX_NEXT);
    }
    assert_eq!(program.counters().get(Counter::VerifiedReply), 4);
    for addr in [client(1), client(2), client6, client(4)] {
        assert!(
            program.sources()[&source_key(addr)].verified_until_ns > T0,
            "{addr}"
        );
    }
    let datagram = Packet::udp(server(), client(3), 53, 40_000, b"an answer").frame();
    assert_eq!(program.run_egress(&datagram, T0), TCX_NEXT);
    assert_eq!(program.counters().get(Counter::VerifiedReply), 4);
}

/// While the budget has room (the controller has not seen it drop), or
/// with no budget at all, ACKs cost no lookup and verify nobody.
#[test]
fn without_a_binding_budget_acks_verify_nobody() {
    let _kernel = kernel_test!();
    let conn = Connection::open(Ipv4Addr::LOCALHOST.into());
    let mut no_budget = Program::new(&xdp::settings("--mode enforce"));
    let mut cfg = no_budget.config();
    cfg.verify = VERIFY_ACKS;
    no_budget.set_config(&cfg);
    for mut program in [budgeted(false), no_budget] {
        assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
        assert_eq!(program.counters().get(Counter::VerifiedAck), 0);
        assert!(program.sources().is_empty(), "no lookup, no state");
    }
}

/// The replies to a datagram the host sends (its resolver's answers, its
/// NTP server's) are no new flows: the datagram made their conntrack
/// entry. The egress program remembers its flow as they arrive, so they
/// pass a spent budget without counting as new flows; a datagram of the
/// same peer on another 5-tuple is a new flow as before, and so is a
/// reply after `--udp-flow-idle`. Another protocol conntrack tracks by
/// its addresses (GRE) is remembered by them; an ICMP query, a later IPv4
/// fragment and a datagram behind an IPv6 extension header (a fragment's)
/// remember nothing.
fn replies_to_the_hosts_datagrams_are_no_new_flows(host: IpAddr, peer: IpAddr, stranger: IpAddr) {
    let mut program = budgeted(false);
    let new_flows = |p: &Program| p.counters().get(Counter::NewFlows);
    let mut port = 1000;
    while program.counters().get(Counter::DropGlobalBudget) == 0 {
        program.run(
            &Packet::udp(stranger, host, port, 9999, b"flood").frame(),
            T0,
        );
        port += 1;
        assert!(port < 1100, "the stranger's datagrams never met the budget");
    }
    let reply = |sport, dport| Packet::udp(peer, host, sport, dport, b"an answer").frame();
    assert_eq!(program.run(&reply(53, 40_000), T0), XDP_DROP, "unasked");

    for query in [
        Packet::udp(host, peer, 40_001, 53, b"a question"),
        Packet::udp(host, peer, 40_002, 53, b"tagged").vlan(TPID_8021Q),
    ] {
        assert_eq!(program.run_egress(&query.frame(), T0), TCX_NEXT);
    }
    let gre = |src, dst| {
        let bytes = vec![0, 0, 0x08, 0x00];
        Packet::new(src, dst, L4::Raw { proto: 47, bytes }).frame()
    };
    assert_eq!(program.run_egress(&gre(host, peer), T0), TCX_NEXT);
    let before = new_flows(&program);
    for dport in [40_001, 40_001, 40_002] {
        assert_eq!(program.run(&reply(53, dport), T0), XDP_PASS, "{dport}");
    }
    assert_eq!(program.run(&gre(peer, host), T0), XDP_PASS);
    assert_eq!(new_flows(&program), before, "the replies are no new flows");

    for (sport, dport) in [(53, 40_003), (54, 40_001)] {
        assert_eq!(
            program.run(&reply(sport, dport), T0),
            XDP_DROP,
            "another 5-tuple: {sport} -> {dport}"
        );
    }
    assert_eq!(new_flows(&program), before + 2);

    let remembered = program.udp_flows();
    let datagram = Packet::udp(host, peer, 40_004, 53, &[7; 24]);
    let unread = if host.is_ipv4() {
        datagram.fragment(Frag {
            offset: 8,
            more: false,
            len: 8,
        })
    } else {
        datagram.ext(Ext::Fragment {
            offset: 0,
            more: false,
        })
    };
    for frame in [Packet::echo(host, peer, 7).frame(), unread.frame()] {
        assert_eq!(program.run_egress(&frame, T0), TCX_NEXT);
    }
    assert_eq!(program.udp_flows(), remembered, "nothing more remembered");

    // The replies left the flow's time as the query set it (a second had
    // not passed); past the idle time a reply is a new flow again.
    let idle = program.config().udp_flow_idle_ns;
    let before = new_flows(&program);
    program.run(&reply(53, 40_001), T0 + idle + SEC);
    assert_eq!(
        new_flows(&program),
        before + 1,
        "a reply after the idle time"
    );
}

#[test]
fn replies_to_the_hosts_ipv4_datagrams_are_no_new_flows() {
    let _kernel = kernel_test!();
    replies_to_the_hosts_datagrams_are_no_new_flows(
        server(),
        Ipv4Addr::new(198, 18, 9, 53).into(),
        Ipv4Addr::new(198, 19, 0, 7).into(),
    );
}

#[test]
fn replies_to_the_hosts_ipv6_datagrams_are_no_new_flows() {
    let _kernel = kernel_test!();
    let addr = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    replies_to_the_hosts_datagrams_are_no_new_flows(
        addr(2),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 0x53)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 7)),
    );
}

/// A DHCPv6 client sends its messages to ff02::1:2, and the answer comes
/// from the server's own link-local address: no flow the host opened.
/// Once the host has sent a message (through the egress program), a
/// server's answer (UDP from port 547 to 546, from fe80::/10) skips a
/// spent budget: a new flow still (conntrack makes its entry), under its
/// source's own limit, and it verifies nobody. An answer the host did
/// not ask for, one from beyond the link, one on other ports, and one
/// later than `--udp-flow-idle` after the message (answers do not keep it
/// alive) meet the budget. An on-link flood of answers is one source
/// (fe80::/64), held to its limit.
#[test]
fn a_dhcp6_servers_answer_to_the_host_skips_a_spent_budget() {
    let _kernel = kernel_test!();
    let link_local = |last| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last));
    let (host, server) = (link_local(2), link_local(1));
    let all_servers = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2));
    let stranger = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 7));
    // A per-source limit of 3 answers in a burst, for the on-link flood.
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --udp-rate 1 --udp-burst 3"
    )));
    let budget_drops = |p: &Program| p.counters().get(Counter::DropGlobalBudget);
    // The stranger's new flows until the budget drops one at `t`.
    let mut port = 1000;
    let mut spend =
        |program: &mut Program, t| spend_udp_budget(program, stranger, host, &mut port, t);
    spend(&mut program, T0);
    let answer = |from, sport, dport| Packet::udp(from, host, sport, dport, b"reply").frame();
    let before = budget_drops(&program);
    assert_eq!(
        program.run(&answer(server, 547, 546), T0),
        XDP_DROP,
        "unasked"
    );
    assert_eq!(budget_drops(&program), before + 1);

    let solicit = Packet::udp(host, all_servers, 546, 547, b"solicit").frame();
    assert_eq!(program.run_egress(&solicit, T0), TCX_NEXT);
    let new_flows = program.counters().get(Counter::NewFlows);
    assert_eq!(
        program.run(&answer(server, 547, 546), T0),
        XDP_PASS,
        "asked"
    );
    assert_eq!(
        program.counters().get(Counter::NewFlows),
        new_flows + 1,
        "a new flow to conntrack"
    );
    let on_link = SourceKey::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).octets(), 64);
    let state = program.sources()[&on_link];
    assert_eq!(state.verified_until_ns, 0, "verifies nobody");
    assert!(!program.marked(&on_link), "no marks");

    let before = budget_drops(&program);
    let beyond = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 0x547));
    for (from, sport, dport) in [(beyond, 547, 546), (server, 547, 547), (server, 53, 546)] {
        assert_eq!(
            program.run(&answer(from, sport, dport), T0),
            XDP_DROP,
            "{from} {sport} -> {dport}"
        );
    }
    assert_eq!(budget_drops(&program), before + 3);

    // A second server answers two seconds on (which must not refresh the
    // message's flow); past the idle time from the message, a third
    // server's answer meets the budget.
    assert_eq!(
        program.run(&answer(link_local(3), 547, 546), T0 + 2 * SEC),
        XDP_PASS
    );
    let idle = program.config().udp_flow_idle_ns;
    spend(&mut program, T0 + idle + SEC);
    assert_eq!(
        program.run(&answer(link_local(4), 547, 546), T0 + idle + SEC),
        XDP_DROP,
        "later than the idle time after the message"
    );

    // A message again; an on-link flood of answers from many addresses
    // is the one source fe80::/64: its limit holds it (its burst of 3,
    // less the two answers above, plus what it regained since).
    let t = T0 + idle + 2 * SEC;
    spend(&mut program, t);
    assert_eq!(program.run_egress(&solicit, t), TCX_NEXT);
    let answers = (10..20).map(|i| answer(link_local(i), 547, 546));
    three_of_ten_pass(&mut program, answers, t);
}

/// A DHCPv4 client without an address broadcasts its request from port
/// 68 to 67, and the server's reply comes from its own address, to the
/// address it offers or the broadcast address: no flow the host opened.
/// Once the host has sent a request (through the egress program), a reply
/// (UDP from port 67 to 68, BOOTP `op` 2) that carries the request's
/// `xid` skips a spent budget, whatever its addresses: a new flow still,
/// under its source's own limit, and it verifies nobody. A reply of
/// another `xid`, a request's message, other ports, and a reply later
/// than `--udp-flow-idle` after the request (replies do not keep it
/// alive) meet the budget; so does a reply with a short message. A flood
/// of replies that names the `xid` from one server is held to its limit.
#[test]
fn a_dhcp4_servers_reply_to_the_hosts_request_skips_a_spent_budget() {
    let _kernel = kernel_test!();
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let (dhcp, relay, offered) = (v4(198, 18, 0, 67), v4(198, 19, 7, 1), v4(198, 18, 0, 140));
    let stranger = v4(198, 19, 0, 7);
    let broadcast = IpAddr::V4(Ipv4Addr::BROADCAST);
    let xid = 0x3903_f326;
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --udp-rate 1 --udp-burst 3"
    )));
    let budget_drops = |p: &Program| p.counters().get(Counter::DropGlobalBudget);
    let mut port = 1000;
    let mut spend =
        |program: &mut Program, t| spend_udp_budget(program, stranger, server(), &mut port, t);
    spend(&mut program, T0);
    let reply = |from, to, sport, dport, message: &[u8]| {
        Packet::udp(from, to, sport, dport, message).frame()
    };
    let offer = reply(dhcp, offered, 67, 68, &bootp(2, xid));
    let before = budget_drops(&program);
    assert_eq!(program.run(&offer, T0), XDP_DROP, "unasked");
    assert_eq!(budget_drops(&program), before + 1);

    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let discover = Packet::udp(unspecified, broadcast, 68, 67, &bootp(1, xid)).frame();
    assert_eq!(program.run_egress(&discover, T0), TCX_NEXT);
    let new_flows = program.counters().get(Counter::NewFlows);
    assert_eq!(program.run(&offer, T0), XDP_PASS, "asked");
    assert_eq!(
        program.counters().get(Counter::NewFlows),
        new_flows + 1,
        "a new flow to conntrack"
    );
    let source = SourceKey::v4([198, 18, 0, 67], 32);
    assert_eq!(
        program.sources()[&source].verified_until_ns,
        0,
        "verifies nobody"
    );
    assert!(!program.marked(&source), "no marks");

    let before = budget_drops(&program);
    let mut short = bootp(2, xid);
    short.truncate(7);
    // Each from a server of its own, whose limit has room.
    for (last, to, sport, dport, message) in [
        (70, broadcast, 67, 68, bootp(2, xid ^ 1)),
        (71, broadcast, 67, 68, bootp(1, xid)),
        (72, offered, 67, 67, bootp(2, xid)),
        (73, offered, 53, 68, bootp(2, xid)),
        (74, broadcast, 67, 68, short),
    ] {
        let frame = reply(v4(198, 18, 0, last), to, sport, dport, &message);
        assert_eq!(program.run(&frame, T0), XDP_DROP, "{last}");
    }
    assert_eq!(budget_drops(&program), before + 5);

    // A relay's reply to the broadcast address two seconds on (which must
    // not refresh the transaction); past the idle time from the request,
    // another server's reply meets the budget.
    let relayed = reply(relay, broadcast, 67, 68, &bootp(2, xid));
    assert_eq!(program.run(&relayed, T0 + 2 * SEC), XDP_PASS);
    let idle = program.config().udp_flow_idle_ns;
    spend(&mut program, T0 + idle + SEC);
    let late = reply(v4(198, 18, 0, 75), offered, 67, 68, &bootp(2, xid));
    assert_eq!(
        program.run(&late, T0 + idle + SEC),
        XDP_DROP,
        "later than the idle time after the request"
    );

    // A request again; a flood of replies naming its `xid` from the one
    // server, each to another address, is held to the server's limit (its
    // burst of 3, whole again since the offer).
    let t = T0 + idle + 2 * SEC;
    spend(&mut program, t);
    assert_eq!(program.run_egress(&discover, t), TCX_NEXT);
    let replies = (100..110).map(|last| reply(dhcp, v4(198, 18, 1, last), 67, 68, &bootp(2, xid)));
    three_of_ten_pass(&mut program, replies, t);
}

/// New UDP flows from `stranger` to `host` at `t`, from port `*port` on,
/// until the global budget drops one.
fn spend_udp_budget(program: &mut Program, stranger: IpAddr, host: IpAddr, port: &mut u16, t: u64) {
    let drops = |p: &Program| p.counters().get(Counter::DropGlobalBudget);
    let dropped = drops(program);
    while drops(program) == dropped {
        let flood = Packet::udp(stranger, host, *port, 9999, b"flood").frame();
        program.run(&flood, t);
        *port += 1;
        assert!(
            *port < 1100,
            "the stranger's datagrams never met the budget"
        );
    }
}

/// Runs ten frames of one source at `t`: a burst of 3 passes, the other
/// 7 meet the source's limit.
fn three_of_ten_pass(program: &mut Program, frames: impl Iterator<Item = Vec<u8>>, t: u64) {
    let limited = program.counters().get(Counter::DropSourceLimit);
    let verdicts: Vec<u32> = frames.map(|frame| program.run(&frame, t)).collect();
    assert_eq!(verdicts.len(), 10);
    assert_eq!(
        verdicts.iter().filter(|&&v| v == XDP_PASS).count(),
        3,
        "{verdicts:?}"
    );
    assert_eq!(
        program.counters().get(Counter::DropSourceLimit),
        limited + 7
    );
}

/// A port conntrack skips for a protocol (`PORT_UNTRACKED_UDP`,
/// `PORT_UNTRACKED_TCP`: NOTRACK rules): a UDP datagram or a SYN to it
/// opens no conntrack entry, so it is no new flow. With per-source limits
/// of one flow, 100 datagrams to the UDP one and 100 SYNs to the TCP one
/// from one source, each from a new port, all pass, over IPv4 and IPv6,
/// and none counts towards the source's limit; the other protocol to the
/// same ports, and another port, meet the limit at the second. A
/// denylisted source is dropped at the untracked ports all the same.
#[test]
fn a_port_conntrack_skips_is_no_new_flow() {
    let _kernel = kernel_test!();
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let denied: IpAddr = Ipv4Addr::new(198, 18, 7, 7).into();
    let mut program = Program::new(&xdp::settings(
        "--mode enforce --source-limits always --syn-rate 1 --syn-burst 1 --udp-rate 1 --udp-burst 1 --ban-threshold 0 --fingerprints off --deny 198.18.7.7",
    ));
    program.set_port(53, PORT_UNTRACKED_UDP);
    program.set_port(ARMED, PORT_UNTRACKED_TCP);
    let pairs = [
        (IpAddr::from(Ipv4Addr::new(198, 18, 0, 1)), server()),
        (v6(1), v6(2)),
    ];
    for (client, host) in pairs {
        for sport in 1000..1100 {
            let datagram = Packet::udp(client, host, sport, 53, b"a question").frame();
            let syn = Packet::tcp(client, host, sport, ARMED, TCP_SYN).frame();
            assert_eq!(program.run(&datagram, T0), XDP_PASS, "{client} {sport}");
            assert_eq!(program.run(&syn, T0), XDP_PASS, "{client} {sport}");
        }
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::PassUntracked), 400);
    assert_eq!(c.get(Counter::NewFlows), 0);
    assert_eq!(c.get(Counter::DropSourceLimit), 0);

    for (client, host) in pairs {
        // Two seconds apart, each pair meets a full bucket of one.
        for (t, udp, tcp) in [(T0, 54, LISTENING), (T0 + 2 * SEC, ARMED, 53)] {
            let datagram = |sport| Packet::udp(client, host, sport, udp, b"a question").frame();
            let syn = |sport| Packet::tcp(client, host, sport, tcp, TCP_SYN).frame();
            assert_eq!(program.run(&datagram(2000), t), XDP_PASS);
            assert_eq!(program.run(&datagram(2001), t), XDP_DROP, "{client} {udp}");
            assert_eq!(program.run(&syn(2000), t), XDP_PASS);
            assert_eq!(program.run(&syn(2001), t), XDP_DROP, "{client} {tcp}");
        }
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::DropSourceLimit), 8);
    assert_eq!(c.get(Counter::PassUntracked), 400);

    let datagram = Packet::udp(denied, server(), 1000, 53, b"a question").frame();
    let syn = Packet::tcp(denied, server(), 1000, ARMED, TCP_SYN).frame();
    assert_eq!(program.run(&datagram, T0 + 2 * SEC), XDP_DROP);
    assert_eq!(program.run(&syn, T0 + 2 * SEC), XDP_DROP);
    let c = program.counters();
    assert_eq!(c.get(Counter::DropDenylist), 2);
    assert_eq!(c.get(Counter::PassUntracked), 400);
}

/// The host's interface's address in the frames `Packet` builds, a device
/// stacked on it here (a macvlan shim), and a macvlan container's.
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SHIM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const CONTAINER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x50];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// A frame for another device's link-layer address (a macvlan
/// container's, a macvtap VM's: not in `DataplaneConfig::host_macs`)
/// never reaches this namespace's conntrack. With limits of one flow a
/// source, 100 SYNs (to a port armed for cookies),
/// datagrams and echo requests from one source to the container's
/// address all pass untouched, over IPv4 and IPv6: no cookie, counted as
/// `pass_other_device` and not as new flows, the port's SYN count and the
/// source's buckets left whole. The same frames to the host's address or
/// the shim's are the host's (the SYNs answered with cookies, the rest
/// within the source's limit of one); so is a broadcast frame. A
/// denylisted source is dropped at the container's address all the same;
/// an attack signature that matches the SYNs drops the host's, not the
/// container's. With no address known (a bridge port's guard), every
/// frame is the host's.
#[test]
fn a_frame_for_another_device_is_not_the_hosts_flow() {
    let _kernel = kernel_test!();
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let denied: IpAddr = Ipv4Addr::new(198, 18, 7, 7).into();
    let mut program = Program::new(&xdp::settings(
        "--mode enforce --source-limits always --syn-rate 1 --syn-burst 1 --udp-rate 1 --udp-burst 1 --icmp-rate 1 --icmp-burst 1 --ban-threshold 0 --fingerprints off --deny 198.18.7.7",
    ));
    program.arm_cookies(ARMED);
    let mut cfg = program.config();
    cfg.host_macs_len = 2;
    cfg.host_macs[0] = mac_word(HOST_MAC);
    cfg.host_macs[1] = mac_word(SHIM_MAC);
    program.set_config(&cfg);
    let pairs = [
        (IpAddr::from(Ipv4Addr::new(198, 18, 0, 1)), server()),
        (v6(1), v6(0x50)),
    ];
    let frames = |client, host, sport, dst| {
        let on = |p: Packet| p.macs(CLIENT_MAC, dst).frame();
        [
            on(Packet::tcp(client, host, sport, ARMED, TCP_SYN)),
            on(Packet::udp(client, host, sport, 53, b"a question")),
            on(Packet::icmp(
                client,
                host,
                if client.is_ipv4() { 8 } else { 128 },
                sport,
            )),
        ]
    };
    for (client, host) in pairs {
        for sport in 1000..1100 {
            for frame in frames(client, host, sport, CONTAINER_MAC) {
                let (action, out) = program.run_frame(&frame, T0);
                assert_eq!((action, &out), (XDP_PASS, &frame), "{client} {sport}");
            }
        }
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::PassOtherDevice), 600);
    assert_eq!(c.get(Counter::NewFlows), 0);
    assert_eq!(c.get(Counter::CookieSynAck), 0);
    assert_eq!(program.port_counts(0).syns, 0, "not the host's flood");

    // The host's flows: the SYNs get cookies; of each source's datagrams
    // and echo requests the first passes (its bucket was left full), the
    // others meet the limit.
    let mut passed = 0;
    for (client, host) in pairs {
        for (dst, sport) in [(HOST_MAC, 2000), (SHIM_MAC, 2001), ([0xff; 6], 2002)] {
            for frame in frames(client, host, sport, dst) {
                let (action, _) = program.run_frame(&frame, T0);
                if action != XDP_DROP {
                    passed += 1;
                }
            }
        }
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::NewFlows), 18, "every one the host's");
    assert_eq!(c.get(Counter::CookieSynAck), 6);
    assert_eq!(c.get(Counter::DropSourceLimit), 8);
    assert_eq!(passed, 6 + 4);
    assert_eq!(c.get(Counter::PassOtherDevice), 600);

    let denied_frames = frames(denied, server(), 1000, CONTAINER_MAC);
    for frame in &denied_frames {
        assert_eq!(program.run(frame, T0), XDP_DROP);
    }
    assert_eq!(program.counters().get(Counter::DropDenylist), 3);

    // An attack signature that matches the SYNs drops the host's, not
    // another device's: the signature check is the host's too.
    program.add_signature(
        parse(&format!("tcp dport {ARMED}")).expect("signature"),
        false,
    );
    let syn = |sport, dst| {
        Packet::tcp(pairs[0].0, server(), sport, ARMED, TCP_SYN)
            .macs(CLIENT_MAC, dst)
            .frame()
    };
    for sport in 4000..4010 {
        assert_eq!(program.run(&syn(sport, CONTAINER_MAC), T0), XDP_PASS);
    }
    assert_eq!(program.run(&syn(4010, HOST_MAC), T0), XDP_DROP);
    let c = program.counters();
    assert_eq!(c.get(Counter::DropSignature), 1);
    assert_eq!(c.get(Counter::PassOtherDevice), 610);

    // No address known: the container's frames are the host's again.
    program.clear_signatures();
    let mut cfg = program.config();
    cfg.host_macs_len = 0;
    program.set_config(&cfg);
    let client = Ipv4Addr::new(198, 18, 0, 9).into();
    let before = program.counters().get(Counter::NewFlows);
    for frame in frames(client, server(), 3000, CONTAINER_MAC) {
        program.run(&frame, T0);
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::NewFlows), before + 3);
    assert_eq!(c.get(Counter::PassOtherDevice), 610);
}

/// `--max-sources` of the churn tests: a map a flood overflows quickly.
const MAX_SOURCES: u32 = 1024;

/// Where the churn tests' flood indices for strangers (sources never
/// sent before) and for colliders start: apart from the floods' own
/// (below `MAX_SOURCES * 16`) and from each other. A source the flood
/// sent may still hold its slot, and is no stranger.
const STRANGERS: u32 = MAX_SOURCES * 32;
const COLLIDERS: u32 = MAX_SOURCES * 128;

/// The first source from `flood(COLLIDERS..)` whose key takes `target`'s
/// slot in `GUARD_SOURCES` over: a churn that surely reaches `target`.
fn collider(program: &Program, target: &SourceKey, flood: impl Fn(u32) -> IpAddr) -> IpAddr {
    let slot = program.source_slot(target);
    // One key in MAX_SOURCES takes a given slot: 64 times as many keys
    // all miss it with odds of e^-64.
    (COLLIDERS..COLLIDERS + 64 * MAX_SOURCES)
        .map(&flood)
        .find(|a| program.source_slot(&source_key(*a)) == slot)
        .expect("a key for every slot")
}

/// SYNs from strangers (`syn_from(STRANGERS + k)`) until one is dropped,
/// which must be the global budget's doing.
fn spend_budget(program: &mut Program, t: u64, syn_from: impl Fn(u32) -> Vec<u8>) {
    for k in 0..10 {
        let budget_drops = program.counters().get(Counter::DropGlobalBudget);
        if program.run(&syn_from(STRANGERS + k), t) != XDP_PASS {
            assert_eq!(
                program.counters().get(Counter::DropGlobalBudget),
                budget_drops + 1,
                "a stranger was dropped, but not by the budget"
            );
            return;
        }
    }
    panic!("the budget never ran out");
}

/// More sources than `GUARD_SOURCES` holds churn it (a source takes its
/// slot over from the one that held it), but a verified source stays
/// verified and a banned one banned: both are kept apart in `GUARD_MARKS`,
/// which only a verification or a ban inserts into, and come back at the
/// source's next packet. The banned source is the first of `banned(0..)`
/// whose slot is not the client's.
fn verified_and_banned_survive_churn(
    client: IpAddr,
    banned: impl Fn(u32) -> IpAddr,
    flood: impl Fn(u32) -> IpAddr,
) {
    let conn = Connection::open(client);
    let server = conn.server();
    let syn = |src: IpAddr, sport: u16| {
        Packet::tcp(src, server.ip(), sport, server.port(), TCP_SYN).frame()
    };
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --max-sources {MAX_SOURCES} --syn-rate 1 --syn-burst 1 --ban-threshold 3 --ban-duration 600"
    )));
    let mut cfg = program.config();
    cfg.verify = VERIFY_ACKS;
    program.set_config(&cfg);
    // Two sources of one slot (1 in MAX_SOURCES for the seed drawn at
    // load) would churn each other out before the flood does.
    let client_slot = program.source_slot(&source_key(conn.client()));
    let banned = (0..64)
        .map(banned)
        .find(|a| program.source_slot(&source_key(*a)) != client_slot)
        .expect("64 sources all in the client's slot");

    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    assert_eq!(program.run(&syn(conn.client(), 1000), T0), XDP_PASS);
    // The banned source: one SYN in its limit, three over it.
    for sport in 0..4 {
        program.run(&syn(banned, 2000 + sport), T0);
    }
    let key = |a: IpAddr| source_key(a);
    let before = program.sources();
    assert!(before[&key(banned)].banned_until_ns > T0, "not banned");
    assert_eq!(before[&key(conn.client())].passed, 1);

    // Eight times the map, spread over the whole range, admitted (the
    // budget off for a moment), so each one takes an entry.
    let t = T0 + SEC;
    let budget = program.config();
    let mut open = budget;
    open.global = [Limit::UNLIMITED; BUDGETS];
    program.set_config(&open);
    for i in 0..MAX_SOURCES * 8 {
        assert_eq!(program.run(&syn(flood(i), 3000), t), XDP_PASS);
    }
    // And surely through the two sources' slots.
    for target in [key(conn.client()), key(banned)] {
        let src = collider(&program, &target, &flood);
        assert_eq!(program.run(&syn(src, 3000), t), XDP_PASS);
    }
    program.set_config(&budget);
    let after = program.sources();
    let (c, b) = (&after[&key(conn.client())], &after[&key(banned)]);
    assert!(
        c.passed == 0 && b.dropped == 0,
        "the flood did not churn them out of GUARD_SOURCES: {c:?} {b:?}"
    );
    assert!(
        c.verified_until_ns > t && b.banned_until_ns > t,
        "{c:?} {b:?}"
    );

    // The budget spent, a stranger is dropped, the verified client passes,
    // the banned source is dropped as banned.
    spend_budget(&mut program, t, |i| syn(flood(i), 3001));
    let c0 = program.counters();
    assert_eq!(
        program.run(&syn(conn.client(), 1001), t),
        XDP_PASS,
        "the verified client was forgotten"
    );
    assert!(
        program.marked(&key(conn.client())) && program.marked(&key(banned)),
        "a verification and a ban set their GUARD_MARKED bits"
    );
    assert_eq!(program.run(&syn(banned, 2010), t), XDP_DROP);
    let c1 = program.counters();
    assert_eq!(
        c1.get(Counter::DropBanned) - c0.get(Counter::DropBanned),
        1,
        "the ban was forgotten"
    );
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);

    // While the budget drops them, a flood of new sources takes no entry:
    // a spoofed packet costs lookups, not an insert.
    let held = program.sources().len();
    let new_sources = program.counters().get(Counter::NewSources);
    for i in 0..MAX_SOURCES * 8 {
        let src = flood(MAX_SOURCES * 8 + i);
        assert_eq!(program.run(&syn(src, 4000), t), XDP_DROP);
    }
    assert_eq!(program.sources().len(), held);
    assert_eq!(program.counters().get(Counter::NewSources), new_sources);
}

/// The `i`th address of 198.18.0.0/15, for the marked-filter tests'
/// floods.
fn flood(i: u32) -> IpAddr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i).into()
}

/// `GUARD_MARKS` is looked up only for a source whose `GUARD_MARKED` bit
/// is set: with the bit cleared by hand, a verified client churned out of
/// `GUARD_SOURCES` is a stranger to the spent budget; set again, it is
/// known and passes.
#[test]
fn the_marked_bit_decides_whether_marks_are_looked_up() {
    let _kernel = kernel_test!();
    let conn = Connection::open(Ipv4Addr::LOCALHOST.into());
    let server = conn.server();
    let syn = |src: IpAddr, sport: u16| {
        Packet::tcp(src, server.ip(), sport, server.port(), TCP_SYN).frame()
    };
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --max-sources {MAX_SOURCES}"
    )));
    let budget = program.config();
    let mut verifying = budget;
    verifying.verify = VERIFY_ACKS;
    program.set_config(&verifying);
    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    let client = source_key(conn.client());
    assert!(program.marked(&client), "the verification set no bit");
    assert_eq!(program.run(&syn(conn.client(), 999), T0), XDP_PASS);

    // Churn the client out of GUARD_SOURCES with the budget open, then
    // spend the budget.
    let t = T0 + SEC;
    let mut open = budget;
    open.global = [Limit::UNLIMITED; BUDGETS];
    program.set_config(&open);
    for i in 0..MAX_SOURCES * 4 {
        assert_eq!(program.run(&syn(flood(i), 3000), t), XDP_PASS);
    }
    let src = collider(&program, &client, flood);
    assert_eq!(program.run(&syn(src, 3000), t), XDP_PASS);
    // The budget back, binding (a verified source skips it only then).
    program.set_config(&verifying);
    // What `sources()` shows of a churned-out source comes from its marks
    // alone (no packet passed).
    assert_eq!(program.sources()[&client].passed, 0, "not churned out");
    spend_budget(&mut program, t, |i| syn(flood(i), 3000));

    the_bit_decides(&mut program, &client, |sport| syn(conn.client(), sport), t);
}

/// With `client`'s bit cleared in the half of `GUARD_MARKED` the program
/// reads, its SYN (`syn(sport)`: its slot taken by a flood, the budget
/// spent) is a stranger's and dropped; set again, its marks are found and
/// it passes.
fn the_bit_decides(
    program: &mut Program,
    client: &SourceKey,
    syn: impl Fn(u16) -> Vec<u8>,
    t: u64,
) {
    program.set_marked(client, false);
    assert_eq!(
        program.run(&syn(1000), t),
        XDP_DROP,
        "without its bit in the half read, the client's marks were still looked up"
    );
    program.set_marked(client, true);
    assert_eq!(
        program.run(&syn(1001), t),
        XDP_PASS,
        "with its bit, the client's marks were not found"
    );
}

/// Once 1 in 16 bits of the half of `GUARD_MARKED` the program reads are
/// set, `guard run` rebuilds the other half from the marks in force and
/// switches to it: the bits of marks gone by are cleared, those of a
/// verified client and a banned source kept, and both still come back
/// from `GUARD_MARKS` when a flood has taken their slots. A mark made
/// later sets its bit in the half now read.
#[test]
fn the_marked_filter_is_rebuilt_from_the_marks_in_force() {
    let _kernel = kernel_test!();
    let conn = Connection::open(Ipv4Addr::LOCALHOST.into());
    let server = conn.server();
    let syn = |src: IpAddr, sport: u16| {
        Packet::tcp(src, server.ip(), sport, server.port(), TCP_SYN).frame()
    };
    let (gone, banned, late): (IpAddr, IpAddr, IpAddr) = (
        Ipv4Addr::new(198, 19, 1, 1).into(),
        Ipv4Addr::new(198, 19, 2, 2).into(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
    );
    let mut program = Program::new(&xdp::settings(&format!(
        "{BUDGET} --max-sources {MAX_SOURCES} --syn-rate 1 --syn-burst 1 --ban-threshold 3 --ban-duration 600"
    )));
    let budget = program.config();
    let mut verifying = budget;
    verifying.verify = VERIFY_ACKS;
    program.set_config(&verifying);
    let ban = |program: &mut Program, src: IpAddr, t: u64| {
        for sport in 0..4 {
            program.run(&syn(src, 2000 + sport), t);
        }
        assert!(program.sources()[&source_key(src)].banned_until_ns > t);
    };
    // A ban that ends at T0 + 600 s; a verification (300 s) and a ban
    // made at T0 + 500 s, in force at T0 + 700 s.
    ban(&mut program, gone, T0);
    let t1 = T0 + 500 * SEC;
    assert_eq!(program.run(&conn.ack(), t1), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);
    ban(&mut program, banned, t1);
    let t = T0 + 700 * SEC;
    let (gone, banned, client) = (
        source_key(gone),
        source_key(banned),
        source_key(conn.client()),
    );
    assert!(program.marked(&gone) && program.marked(&banned) && program.marked(&client));
    assert_eq!(
        program.refresh_marked(t),
        None,
        "rebuilt with three bits set"
    );

    // Bits of sources marked long ago: every one.
    program.mark_all();
    let (before, after) = program.refresh_marked(t).expect("not rebuilt");
    assert_eq!(before, 1 << 21, "every bit of the half read");
    assert!(
        (1..=2).contains(&after),
        "{after} bits set after the rebuild"
    );
    assert_eq!(
        program.config().marked_half,
        1,
        "the program was not switched"
    );
    assert!(
        program.marked(&client) && program.marked(&banned),
        "a mark in force lost its bit"
    );
    assert!(!program.marked(&gone), "an ended ban kept its bit");

    // The two churned out of GUARD_SOURCES, the budget spent: both come
    // back from their marks through the rebuilt half.
    let mut open = budget;
    open.global = [Limit::UNLIMITED; BUDGETS];
    open.marked_half = 1;
    program.set_config(&open);
    for target in [client, banned] {
        let src = collider(&program, &target, flood);
        assert_eq!(program.run(&syn(src, 3000), t), XDP_PASS);
    }
    // The budget back, binding (a verified source skips it only then).
    let mut spent = verifying;
    spent.marked_half = 1;
    program.set_config(&spent);
    assert_eq!(program.sources()[&client].passed, 0, "not churned out");
    spend_budget(&mut program, t, |i| syn(flood(i), 3000));
    // The half left behind still has every bit set: a program reading it
    // would find the client's marks whatever the half read says.
    the_bit_decides(&mut program, &client, |sport| syn(conn.client(), sport), t);
    let banned_drops = program.counters().get(Counter::DropBanned);
    assert_eq!(
        program.run(&syn(Ipv4Addr::new(198, 19, 2, 2).into(), 2100), t),
        XDP_DROP
    );
    assert_eq!(
        program.counters().get(Counter::DropBanned),
        banned_drops + 1,
        "the ban was forgotten"
    );

    // A ban made now sets its bit in the half the program reads.
    let mut open_again = spent;
    open_again.global = [Limit::UNLIMITED; BUDGETS];
    program.set_config(&open_again);
    ban(&mut program, late, t);
    assert!(program.marked(&source_key(late)));
}

#[test]
fn verified_and_banned_ipv4_sources_survive_a_flood_over_the_whole_range() {
    let _kernel = kernel_test!();
    // 198.18.0.0/15 in strides of 16: every one of its 512 /24s.
    verified_and_banned_survive_churn(
        Ipv4Addr::LOCALHOST.into(),
        // Off the flood's stride of 16.
        |i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 250, 9)) + i * 16).into(),
        |i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i * 16).into(),
    );
}

#[test]
fn verified_and_banned_ipv6_sources_survive_a_flood_over_many_64s() {
    let _kernel = kernel_test!();
    // A /64 each, spread over 2001:db8::/32.
    verified_and_banned_survive_churn(
        Ipv6Addr::LOCALHOST.into(),
        |i| Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 9 + i as u16, 0, 0, 0, 9).into(),
        |i| {
            let i = i.wrapping_mul(2_654_435_761);
            Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1).into()
        },
    );
}

/// The one's-complement checksum of a TCP segment with its pseudo-header:
/// 0 when the segment's own checksum is right.
fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    guard_tests::packet::checksum(&[&tcp_pseudo_header(src, dst, segment.len()), segment])
}

/// With `--reject rst`, a verified client's SYN over its own limit is
/// answered with a RST (RST|ACK, its sequence + 1 acknowledged, checksums
/// right, back the way it came), at most 100 at once; an unverified
/// source's is dropped in silence, as it may be spoofed; and without the
/// flag the verified client's is dropped too.
fn over_limit_syn_of_a_verified_client_gets_a_rst(addr: IpAddr, stranger: IpAddr) {
    let conn = Connection::open(addr);
    let server = conn.server();
    let client = conn.client();
    let syn = |src: IpAddr, sport: u16| {
        Packet::tcp(src, server.ip(), sport, server.port(), TCP_SYN).frame()
    };
    let limits = "--syn-rate 1 --syn-burst 1 --ban-threshold 0";
    let mut program = Program::new(&xdp::settings(&format!("{BUDGET} {limits} --reject rst")));
    let mut cfg = program.config();
    cfg.verify = VERIFY_ACKS;
    program.set_config(&cfg);
    assert_eq!(program.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::VerifiedAck), 1);

    assert_eq!(program.run(&syn(client, 1000), T0), XDP_PASS);
    let sent = syn(client, 1001);
    let (action, rst) = program.run_frame(&sent, T0);
    assert_eq!(action, XDP_TX, "a verified client's over-limit SYN");
    assert_eq!(rst[..6], sent[6..12], "back to the sender's MAC");
    assert_eq!(rst[6..12], sent[..6]);
    let (l3, ip_len) = if addr.is_ipv4() { (14, 20) } else { (14, 40) };
    let tcp = &rst[l3 + ip_len..];
    assert_eq!(tcp.len(), 20, "a bare TCP header: {rst:02x?}");
    let syn_tcp = &sent[l3 + ip_len..];
    assert_eq!(
        tcp[..2],
        syn_tcp[2..4],
        "source port: the SYN's destination"
    );
    assert_eq!(tcp[2..4], syn_tcp[..2]);
    assert_eq!(tcp[4..8], [0; 4], "sequence 0");
    let seq = u32::from_be_bytes(syn_tcp[4..8].try_into().expect("seq"));
    assert_eq!(
        u32::from_be_bytes(tcp[8..12].try_into().expect("ack")),
        seq.wrapping_add(1)
    );
    assert_eq!(tcp[13], 0x14, "RST|ACK");
    assert_eq!(tcp_checksum(server.ip(), client, tcp), 0, "TCP checksum");
    if addr.is_ipv4() {
        let ip = &rst[l3..l3 + ip_len];
        assert_eq!(guard_tests::packet::checksum(&[ip]), 0, "IPv4 checksum");
        assert_eq!(ip[12..16], sent[l3 + 16..l3 + 20], "addresses swapped");
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 40);
    } else {
        assert_eq!(
            rst[l3 + 8..l3 + 24],
            sent[l3 + 24..l3 + 40],
            "addresses swapped"
        );
        assert_eq!(u16::from_be_bytes([rst[l3 + 4], rst[l3 + 5]]), 20);
    }
    let c = program.counters();
    assert_eq!(
        (c.get(Counter::RstSent), c.get(Counter::DropSourceLimit)),
        (1, 1)
    );

    // At most 100 at once (one sent already), then silence.
    let answered = (0..150)
        .filter(|i| program.run(&syn(client, 2000 + i), T0) == XDP_TX)
        .count();
    assert_eq!(answered, 99);
    assert_eq!(program.counters().get(Counter::RstSent), 100);

    // A stranger is never answered: it may be spoofed.
    let t = T0 + 10 * SEC;
    assert_eq!(program.run(&syn(stranger, 3000), t), XDP_PASS);
    assert_eq!(program.run(&syn(stranger, 3001), t), XDP_DROP);

    // Without --reject rst, the verified client's is dropped too.
    let mut quiet = Program::new(&xdp::settings(&format!("{BUDGET} {limits}")));
    let mut quiet_cfg = quiet.config();
    quiet_cfg.verify = VERIFY_ACKS;
    quiet.set_config(&quiet_cfg);
    assert_eq!(quiet.run(&conn.ack(), T0), XDP_PASS);
    assert_eq!(quiet.run(&syn(client, 1000), T0), XDP_PASS);
    assert_eq!(quiet.run(&syn(client, 1001), T0), XDP_DROP);
    assert_eq!(quiet.counters().get(Counter::RstSent), 0);
}

#[test]
fn an_ipv4_verified_clients_over_limit_syn_gets_a_rst() {
    let _kernel = kernel_test!();
    over_limit_syn_of_a_verified_client_gets_a_rst(
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(198, 19, 3, 3).into(),
    );
}

#[test]
fn an_ipv6_verified_clients_over_limit_syn_gets_a_rst() {
    let _kernel = kernel_test!();
    over_limit_syn_of_a_verified_client_gets_a_rst(
        Ipv6Addr::LOCALHOST.into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 3, 0, 0, 0, 3).into(),
    );
}
