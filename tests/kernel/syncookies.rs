//! SYN cookies end to end: real clients complete real connections through
//! the XDP cookie path and the kernel's SYNPROXY. The random-source SYN
//! floods answered with cookies run on the lab's topology, so they are the
//! lab crate's tests (`tests/lab/tests/synflood.rs`).

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use guard_tests::{
    cpu, ct,
    flood::{Flood, spoofed},
    guard_proc::{self, Guard, counters, start_on, stats},
    kernel_test,
    net::{
        BEHIND_ADDR, BEHIND_ADDR6, MACVLAN_ADDR, MACVLAN_ADDR6, TestNet, VICTIM_ADDR, VICTIM_ADDR6,
        ip_out, run_tool,
    },
    nft::{Counters, counter_packets, nft},
    packet::TCP_SYN,
    server::{
        CLIENT_PORTS, EchoServer, connect, connect_echo, connect_from, echo_roundtrip, forget,
        greeted_from, peer_wscale,
    },
};

const PORT: u16 = 8080;
/// guard with cookies on for every listener from the start, no port named.
const ALWAYS: &[&str] = &[
    "--mode",
    "enforce",
    "--syn-cookies",
    "always",
    "--summary-interval",
    "0",
];
const LOOSE: &str = "net.netfilter.nf_conntrack_tcp_loose";
const SYNACK_RETRIES: &str = "net.ipv4.tcp_synack_retries";

fn server_addr() -> SocketAddr {
    SocketAddr::new(VICTIM_ADDR.parse().expect("address"), PORT)
}

fn server_addr6() -> SocketAddr {
    SocketAddr::new(VICTIM_ADDR6.parse().expect("address"), PORT)
}

/// The wildcard address, IPv6 and IPv4 alike, on [`PORT`]: a listener
/// bound there is `wild` to the SYNPROXY rules.
fn wildcard_addr() -> SocketAddr {
    SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), PORT)
}

/// The SYNPROXY table guard installs, as nft lists it in `ns` (empty if
/// there is none).
fn synproxy_table(ns: &str) -> String {
    nft(ns, &["list", "ruleset"], None)
        .split("table ")
        .find(|t| t.starts_with("inet guard_synproxy"))
        .unwrap_or_default()
        .to_owned()
}

/// A config file for guard on `net`'s victim in `mode`, cookies always on:
/// what a SIGHUP reloads.
fn write_config(file: &std::path::Path, net: &TestNet, mode: &str) {
    std::fs::write(
        file,
        format!(
            "iface = [\"{}\"]\nnetns = \"{}\"\nmode = \"{mode}\"\nsyn-cookies = \"always\"\nsummary-interval = 0\n",
            net.victim_if, net.victim
        ),
    )
    .expect("writing the config");
}

/// The window scale of the server on `net`'s victim (listening on
/// [`server_addr`]): that of a connection from its own namespace, which no
/// XDP program or SYNPROXY rule sees.
fn own_wscale(net: &TestNet) -> u8 {
    let local =
        connect(&net.victim, server_addr(), Duration::from_secs(3)).expect("a local connection");
    peer_wscale(&local)
}

/// `n` connections from the attacker's side to each of `addrs`, each
/// echoing once; one that fails panics, with `what` the connection is
/// and guard's log.
fn connect_each(net: &TestNet, guard: &Guard, addrs: &[SocketAddr], n: usize, what: &str) {
    for &addr in addrs {
        for i in 0..n {
            connect_echo(&net.attacker, addr, Duration::from_secs(3)).unwrap_or_else(|e| {
                panic!("connection {i} to {addr} ({what}): {e}\n{}", guard.stderr())
            });
        }
    }
}

/// Whether `dev` in `ns` has an XDP program, as `ip -d link` shows it.
fn has_xdp(ns: &str, dev: &str) -> bool {
    ip_out(&["-n", ns, "-d", "link", "show", "dev", dev]).contains("prog/xdp")
}

/// Real IPv4 and IPv6 clients complete connections through the XDP cookie
/// path on a veth whose peer has no XDP program (a container's link), with
/// guard given no port: it finds the listener itself. A port without a
/// listener never gets a cookie: the client is refused at once.
#[test]
fn real_clients_connect_through_the_cookie_path_with_no_program_on_the_peer() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _ct = Counters::install(&net.victim, &[("new", "ct state new")]);
    let _server = EchoServer::start(&net.victim, server_addr());
    let _server6 = EchoServer::start(&net.victim, server_addr6());
    let loose_before = ct::local_sysctl(&net.victim, LOOSE);
    let rule = format!("synproxy mss 1460 wscale {}", own_wscale(&net));
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    assert!(synproxy_table(&net.victim).contains(&rule));
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), 0);
    assert!(
        !has_xdp(&net.attacker, &net.attacker_if),
        "the client's end must have no XDP program"
    );
    assert!(
        guard.stderr().contains("skb (generic) mode"),
        "a veth is attached in skb mode:\n{}",
        guard.stderr()
    );

    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        10,
        "through the cookie path",
    );
    let c = counters(&stats(&net));
    assert!(c["cookie_synack"] >= 20, "{c:?}");
    assert!(c["cookie_ack_valid"] >= 20, "{c:?}");
    assert!(c["ipv6"] >= 10, "{c:?}");
    assert_eq!(c["drop_cookie_invalid"], 0, "{c:?}");

    // No listener on this port: refused by the kernel, not answered.
    let closed = SocketAddr::new(server_addr().ip(), PORT + 1);
    let refused = connect_echo(&net.attacker, closed, Duration::from_secs(3));
    assert_eq!(
        refused.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    let after = counters(&stats(&net));
    assert_eq!(after["cookie_synack"], c["cookie_synack"], "{after:?}");

    // `flush ruleset` (Debian's nftables.service on reload) takes the
    // SYNPROXY rules that complete the cookie handshakes: guard installs
    // them again at its next tick, and clients keep connecting.
    let flushed = std::process::Command::new("ip")
        .args(["netns", "exec", &net.victim, "nft", "flush", "ruleset"])
        .status()
        .expect("nft");
    assert!(flushed.success());
    guard.wait_for_log("table inet guard_synproxy in netns");
    assert!(
        synproxy_table(&net.victim).contains(&rule),
        "{}",
        guard.stderr()
    );
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection through the cookie path after the flush");

    guard.stop(libc::SIGTERM).assert_code(0);
    assert_eq!(
        synproxy_table(&net.victim),
        "",
        "the SYNPROXY rules were left"
    );
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), loose_before);
}

/// A listener bound to the wildcard address, as most servers are: its
/// cookie handshakes' ACKs are untracked by socket lookup, so conntrack
/// stays loose about lone ACKs while the port is armed. A connection made
/// before guard whose conntrack entry is then gone (flushed, or expired at
/// a level's short timeout) goes on, where with `tcp_loose` 0 SYNPROXY
/// dropped its next segment. New clients connect through cookies, over
/// IPv4 and IPv6. A listener bound to one address, armed too, makes
/// conntrack strict again. While a port is armed the server retransmits a
/// SYN-ACK once (spoofed requests leave its SYN queue sooner), and its
/// own setting is back when guard stops.
#[test]
fn with_a_wildcard_listener_a_connection_whose_entry_is_gone_goes_on() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, wildcard_addr());
    let loose_before = ct::local_sysctl(&net.victim, LOOSE);
    assert_eq!(loose_before, 1, "the kernel's default");
    net.sysctl(&net.victim, "net/ipv4/tcp_synack_retries", "4");
    let mut early = connect(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection before guard");
    echo_roundtrip(&mut early, b"before").expect("an echo before guard");

    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    assert!(
        synproxy_table(&net.victim).contains("socket wildcard 1 fib daddr type local notrack"),
        "{}",
        synproxy_table(&net.victim)
    );
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), loose_before);
    guard.wait_for_log("net.ipv4.tcp_synack_retries 1 (spoofed requests");
    assert_eq!(ct::local_sysctl(&net.victim, SYNACK_RETRIES), 1);
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        5,
        "through the cookie path",
    );
    let c = counters(&stats(&net));
    assert!(c["cookie_ack_valid"] >= 10, "{c:?}");

    ct::flush(&net.victim);
    echo_roundtrip(&mut early, b"after the flush").unwrap_or_else(|e| {
        panic!(
            "the connection whose entry is gone: {e}\n{}",
            guard.stderr()
        )
    });

    let bound = SocketAddr::new(server_addr().ip(), PORT + 1);
    let _bound_server = EchoServer::start(&net.victim, bound);
    guard.wait_for_log(&format!(
        "nf_conntrack_tcp_loose 0 for port {} (a listener bound to one address)",
        PORT + 1
    ));
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), 0);
    connect_echo(&net.attacker, bound, Duration::from_secs(3))
        .expect("a connection to the bound listener through the cookie path");
    guard.stop(libc::SIGTERM).assert_code(0);
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), loose_before);
    assert_eq!(ct::local_sysctl(&net.victim, SYNACK_RETRIES), 4);
}

/// A namespace where nothing used conntrack before guard: arming a port
/// switches conntrack on, and the connections made before have no entry.
/// Where conntrack is strict about lone ACKs for the port (a listener bound
/// to one address, or a host that keeps `nf_conntrack_tcp_loose` 0) it
/// would never pick them up, and the port's rules would drop their
/// segments. guard tells conntrack of them before it arms the port: one
/// that talks all along and three idle until the port is armed, over IPv4
/// and IPv6, carry on.
fn connections_from_before_conntrack_was_on_go_on(listen: &[SocketAddr], loose: &str) {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _servers: Vec<EchoServer> = listen
        .iter()
        .map(|&addr| EchoServer::start(&net.victim, addr))
        .collect();
    net.sysctl(&net.victim, "net/netfilter/nf_conntrack_tcp_loose", loose);
    assert_eq!(
        ct::Count::open(&net.victim).get(),
        0,
        "nothing uses conntrack yet"
    );
    let connect_before = || {
        [server_addr(), server_addr6()].map(|addr| {
            let mut c = connect(&net.attacker, addr, Duration::from_secs(3))
                .expect("a connection before guard");
            echo_roundtrip(&mut c, b"before").expect("an echo before guard");
            c
        })
    };
    let [mut early, early6] = connect_before();
    let [idle4, idle6] = connect_before();
    let mut idle = [idle4, idle6, early6];
    // Long enough for guard to start and arm the port, with a second to
    // spare.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    std::thread::scope(|s| {
        // The connection speaks every 50 ms, as a busy client does.
        let chat = s.spawn(|| {
            let mut n = 0u32;
            while std::time::Instant::now() < until {
                echo_roundtrip(&mut early, b"chat").map_err(|e| format!("echo {n}: {e}"))?;
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok::<u32, String>(n)
        });
        let guard = start_on(&net, ALWAYS);
        guard.wait_for_log("conntrack tracks no connection in netns");
        guard.wait_for_log(&format!("connections to port {PORT}: each given one"));
        guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
        assert_eq!(
            ct::local_sysctl(&net.victim, LOOSE),
            0,
            "strict about lone ACKs"
        );
        echo_on_each(&mut idle, "idle from before guard", &guard);
        let echoes = chat.join().expect("the chatting thread");
        let echoes = echoes.unwrap_or_else(|e| {
            panic!("the connection from before guard: {e}\n{}", guard.stderr())
        });
        assert!(echoes >= 20, "{echoes} echoes");
        connect_each(
            &net,
            &guard,
            &[server_addr(), server_addr6()],
            2,
            "through the cookie path",
        );
        guard.stop(libc::SIGTERM).assert_code(0);
    });
}

#[test]
fn a_bound_listeners_connections_from_before_conntrack_was_on_go_on() {
    connections_from_before_conntrack_was_on_go_on(&[server_addr(), server_addr6()], "1");
}

#[test]
fn a_wildcard_listeners_connections_from_before_conntrack_was_on_go_on_where_it_is_strict() {
    connections_from_before_conntrack_was_on_go_on(&[wildcard_addr()], "0");
}

/// Where a stateful firewall has conntrack on before guard, guard sees it
/// so, tells conntrack of nothing, and a connection made before carries on
/// through the arming of a port with a listener bound to one address.
#[test]
fn with_conntrack_on_before_guard_a_bound_listeners_connection_goes_on() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let _ = nft(&net.victim, &["-f", "-"], Some(OPERATOR_FIREWALL));
    let mut before = connect(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection before guard");
    echo_roundtrip(&mut before, b"before").expect("an echo before guard");
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    echo_roundtrip(&mut before, b"after")
        .unwrap_or_else(|e| panic!("the connection from before guard: {e}\n{}", guard.stderr()));
    let log = guard.stderr();
    assert!(!log.contains("conntrack tracks no connection"), "{log}");
    assert!(!log.contains("each given one"), "{log}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A guard that stops takes its SYNPROXY table, and with it conntrack's
/// hooks, off a namespace where nothing else uses conntrack; the entries
/// of its run stay until they time out. A connection made while no guard
/// runs has none, and the next guard, which finds entries there, arms a
/// port with a listener bound to one address at its first tick: it sees
/// that conntrack tracked nothing when it started, and the connection
/// carries on.
#[test]
fn a_bound_listeners_connection_made_while_guard_was_stopped_goes_on() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let first = start_on(&net, ALWAYS);
    first.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let _through_cookies = cookie_connections(&net, 1, &first);
    first.stop(libc::SIGTERM).assert_code(0);
    assert!(
        ct::Count::open(&net.victim).get() > 0,
        "the first run's entries"
    );

    let mut between = connect(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection while no guard runs");
    echo_roundtrip(&mut between, b"between").expect("an echo while no guard runs");
    let second = start_on(&net, ALWAYS);
    second.wait_for_log("conntrack tracks no connection in netns");
    second.wait_for_log(&format!(
        "conntrack held no entry for 1 of the 2 connections to port {PORT}"
    ));
    second.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    echo_roundtrip(&mut between, b"after").unwrap_or_else(|e| {
        panic!(
            "the connection made while no guard ran: {e}\n{}",
            second.stderr()
        )
    });
    second.stop(libc::SIGTERM).assert_code(0);
}

/// `--synack-retries` bounds the server's SYN-ACK retransmissions while a
/// port is armed, and the log says so; a bound at or above the host's own
/// value leaves it as it is. Each time the host's value is back when guard
/// stops.
#[test]
fn synack_retries_bound_the_servers_retransmissions_or_leave_them() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, wildcard_addr());
    net.sysctl(&net.victim, "net/ipv4/tcp_synack_retries", "4");
    for (bound, want) in [("2", 2), ("4", 4), ("9", 4)] {
        let mut args = ALWAYS.to_vec();
        args.extend(["--synack-retries", bound]);
        let guard = start_on(&net, &args);
        guard.wait_for_log("SYNPROXY completes cookie handshakes to ports");
        assert_eq!(
            ct::local_sysctl(&net.victim, SYNACK_RETRIES),
            want,
            "--synack-retries {bound}"
        );
        let said = format!("{SYNACK_RETRIES} {want} (spoofed requests");
        assert_eq!(
            guard.stderr().contains(&said),
            want < 4,
            "--synack-retries {bound}: {}",
            guard.stderr()
        );
        guard.stop(libc::SIGTERM).assert_code(0);
        assert_eq!(ct::local_sysctl(&net.victim, SYNACK_RETRIES), 4);
    }
}

/// Table `table` (`FAMILY NAME`) with a chain on `hook` at `priority`
/// that drops the packets conntrack puts in `state`: the rule of
/// firewalls and anti-DDoS guides, `ct state invalid drop`.
fn state_drop(table: &str, hook: &str, priority: &str, state: &str) -> String {
    format!(
        "table {table} {{\n  chain {hook} {{\n    type filter hook {hook} priority {priority}; policy accept;\n    ct state {state} drop\n  }}\n}}\n"
    )
}

/// The checks of a port served by another machine too (`theirs`: its
/// IPv4 and IPv6 addresses; the host's own listener on the port running):
/// connections to it made before guard, then guard with cookies always
/// on; clients connect to it and the early connections go on, with no
/// cookie sent and no segment dropped as a forged cookie ACK, while the
/// host's own addresses get cookies. The guard is returned running.
fn another_machines_port_keeps_its_connections(
    net: &TestNet,
    theirs: [SocketAddr; 2],
    what: &str,
) -> Guard {
    let mut early = theirs.map(|addr| {
        let mut c = connect(&net.attacker, addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("a connection to {addr} before guard: {e}"));
        echo_roundtrip(&mut c, b"before").expect("an echo before guard");
        c
    });
    let guard = start_on(net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    connect_each(net, &guard, &theirs, 5, what);
    for c in &mut early {
        echo_roundtrip(c, b"while armed").unwrap_or_else(|e| {
            panic!(
                "a connection made before guard ({what}): {e}\n{}",
                guard.stderr()
            )
        });
    }
    let c = counters(&stats(net));
    assert_eq!(c["cookie_synack"], 0, "{c:?}");
    assert_eq!(c["drop_cookie_invalid"], 0, "{c:?}");
    connect_each(
        net,
        &guard,
        &[server_addr(), server_addr6()],
        1,
        "the host's own",
    );
    let c = counters(&stats(net));
    assert_eq!(c["cookie_synack"], 2, "{c:?}");
    assert_eq!(c["cookie_ack_valid"], 2, "{c:?}");
    guard
}

/// A host that routes to a machine with an address of its own (a routed
/// container or pod, no NAT) that serves a port the host listens on too.
/// While the port is armed, clients of the machine behind keep
/// connecting to it, over IPv4 and IPv6, and connections made before
/// guard go on: its segments name no socket of the host's, and its
/// SYNs are tracked as ever, so the router's firewall forwards their
/// answers. The host's own address gets cookies, and so does the
/// machine's once the address is the host's.
#[test]
fn a_port_also_served_by_a_machine_the_host_routes_to_keeps_its_connections() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let behind = net.behind();
    // A router's firewall of the common shape (Calico's, an edge
    // router's): packets conntrack calls invalid are not forwarded.
    let router_firewall = state_drop("inet router_fw", "forward", "filter", "invalid");
    let _ = nft(&net.victim, &["-f", "-"], Some(&router_firewall));
    let _own = EchoServer::start(&net.victim, wildcard_addr());
    let routed = SocketAddr::new(BEHIND_ADDR.parse().expect("address"), PORT);
    let routed6 = SocketAddr::new(BEHIND_ADDR6.parse().expect("address"), PORT);
    let _pod = EchoServer::start(&behind.ns, routed);
    let _pod6 = EchoServer::start(&behind.ns, routed6);
    let guard = another_machines_port_keeps_its_connections(&net, [routed, routed6], "routed on");

    // The machine's address comes to the host (a service address moving
    // over): once the CPU's remembered answer for it has expired (0.1 s),
    // its SYNs get cookies. Pinned, so that the answer remembered is the
    // one the SYN after the move meets (a veth delivers on the sender's
    // CPU).
    cpu::pin_here();
    connect_echo(&net.attacker, routed, Duration::from_secs(3)).expect("a routed connection");
    assert_eq!(counters(&stats(&net))["cookie_synack"], 2);
    let _ = ip_out(&[
        "-n",
        &net.victim,
        "addr",
        "add",
        &format!("{BEHIND_ADDR}/32"),
        "dev",
        "lo",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    connect_echo(&net.attacker, routed, Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "a connection to {routed}, now the host's own: {e}\n{}",
            guard.stderr()
        )
    });
    let c = counters(&stats(&net));
    assert_eq!(c["cookie_synack"], 3, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A host that does not forward, with a container on a macvlan network
/// (its own MAC and addresses on the host's link; a bridged VM's frames
/// come the same way) serving a port the host listens on too. XDP sees
/// the container's frames on the host's interface, and on a host that
/// does not forward the FIB will not say whose they are: while the port
/// was armed, XDP answered the container's clients with cookies the
/// container never heard of, and dropped its connections' segments as
/// forged cookie ACKs. The host's `local` routes decide now: the
/// container's clients connect to it over IPv4 and IPv6, a connection
/// made before guard goes on, and the host's own address still gets
/// cookies.
#[test]
fn a_port_also_served_by_a_macvlan_container_keeps_its_connections() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let container = net.macvlan();
    assert_eq!(ct::local_sysctl(&net.victim, "net.ipv4.ip_forward"), 0);
    assert_eq!(
        ct::local_sysctl(&net.victim, "net.ipv6.conf.all.forwarding"),
        0
    );
    let _own = EchoServer::start(&net.victim, wildcard_addr());
    let theirs =
        [MACVLAN_ADDR, MACVLAN_ADDR6].map(|a| SocketAddr::new(a.parse().expect("address"), PORT));
    let _servers = theirs.map(|addr| EchoServer::start(&container.ns, addr));
    let guard = another_machines_port_keeps_its_connections(&net, theirs, "a macvlan container's");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A server with receive buffers tuned past Linux's defaults (a 64 MiB
/// `net.ipv4.tcp_rmem` maximum: window scale 11) gets cookies with its own
/// scale. SYNPROXY does not translate windows, so a client of a cookie
/// handshake must read the server's windows at the scale the server
/// uses: the same as a client that connects to it directly.
#[test]
fn cookies_advertise_the_servers_own_window_scale() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _ = run_tool(
        "ip",
        &[
            "netns",
            "exec",
            &net.victim,
            "sysctl",
            "-qw",
            "net.ipv4.tcp_rmem=4096 131072 67108864",
        ],
    );
    let _server = EchoServer::start(&net.victim, server_addr());
    let own = own_wscale(&net);
    assert!(own >= 11, "64 MiB buffers give scale 11, not {own}");

    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    assert!(
        guard
            .stderr()
            .contains(&format!("window scale {own}, the server's own")),
        "{}",
        guard.stderr()
    );
    assert!(synproxy_table(&net.victim).contains(&format!("wscale {own}")));
    let mut c = connect(&net.attacker, server_addr(), Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "a connection through the cookie path: {e}\n{}",
            guard.stderr()
        )
    });
    assert_eq!(peer_wscale(&c), own, "the cookie SYN-ACK's scale");
    echo_roundtrip(&mut c, &vec![9u8; 64 * 1024]).expect("an echo through the cookie path");
    assert!(counters(&stats(&net))["cookie_ack_valid"] >= 1);
    drop(c);
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Docker's way of publishing a port, in small: the nat rules send the
/// port's connections elsewhere (here a REDIRECT to another local port),
/// and something listens on the port itself too (docker-proxy). A cookie
/// handshake's first packet the kernel sees is its ACK, which nat does not
/// translate: SYNPROXY would complete it to the local listener instead.
/// So guard gives that port no cookies, says why, and its connections go
/// where the rules send them.
const PUBLISHED: &str = "table ip publish {
  counter redirected { }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport 8080 redirect to :8081
  }
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport 8081 tcp flags & (syn | ack) == syn counter name \"redirected\"
  }
}
";

/// [`PUBLISHED`] as kube-proxy's nftables mode writes its rules: the port
/// found through a verdict map keyed by protocol and port, the
/// translation in the chain it goes to, which names no port.
const PUBLISHED_BY_VMAP: &str = "table ip publish {
  counter redirected { }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    meta l4proto . th dport vmap { udp . 8080 : goto other, tcp . 8080 : goto svc }
  }
  chain svc {
    meta l4proto tcp redirect to :8081
  }
  chain other {
    meta l4proto udp redirect to :8082
  }
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport 8081 tcp flags & (syn | ack) == syn counter name \"redirected\"
  }
}
";

/// [`PUBLISHED`]'s counter alone: the rewrite is iptables-legacy's, which
/// nftables does not show (older distributions, and Docker on them).
const COUNTED: &str = "table ip publish {
  counter redirected { }
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport 8081 tcp flags & (syn | ack) == syn counter name \"redirected\"
  }
}
";

#[test]
fn a_port_the_nat_rules_rewrite_gets_no_cookies_and_its_connections_go_where_they_send_them() {
    let _kernel = kernel_test!();
    published_port_keeps_its_connections(PUBLISHED, &[], "table ip publish chain pre");
}

#[test]
fn a_port_a_nat_verdict_map_sends_on_gets_no_cookies_and_its_connections_go_there() {
    let _kernel = kernel_test!();
    published_port_keeps_its_connections(PUBLISHED_BY_VMAP, &[], "table ip publish chain svc");
}

#[test]
fn a_port_iptables_legacy_rewrites_gets_no_cookies_and_its_connections_go_there() {
    let _kernel = kernel_test!();
    let redirect = format!(
        "-t nat -A PREROUTING -p tcp -m tcp --dport {PORT} -j REDIRECT --to-ports {}",
        PORT + 1
    );
    published_port_keeps_its_connections(
        COUNTED,
        &redirect.split(' ').collect::<Vec<_>>(),
        "iptables-legacy table nat chain PREROUTING",
    );
}

/// Without CAP_NET_RAW (a unit that leaves it out), iptables-legacy's nat
/// table cannot be read: guard says so, and what that may cost, rather
/// than arm cookies in silence on ports it may rewrite.
#[test]
fn an_iptables_legacy_nat_table_guard_cannot_read_is_reported() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let _ = run_tool(
        "ip",
        &[
            "netns",
            "exec",
            &net.victim,
            "iptables-legacy",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--dport",
            "9",
            "-j",
            "REDIRECT",
            "--to-ports",
            "10",
        ],
    );
    let mut args = vec!["run", "--netns", &net.victim, "--iface", &net.victim_if];
    args.extend_from_slice(ALWAYS);
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--bounding-set", "-net_raw", "--"])
        .arg(guard_proc::guard_bin())
        .args(&args);
    let guard = Guard::start_command(&mut command, &args);
    guard.wait_for_log(&format!(
        "iptables-legacy's nat table in netns {} could not be read",
        net.victim
    ));
    guard.wait_for_log(
        "a port its rules rewrite may get SYN cookies, and then its connections fail",
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// With `rules` loaded, and `legacy` given to iptables-legacy (if not
/// empty), guard says that the chain at `at` rewrites the port and gives
/// it no cookies, and five connections to it reach the port the rules
/// send them to.
fn published_port_keeps_its_connections(rules: &str, legacy: &[&str], at: &str) {
    let net = TestNet::addressed();
    let _proxy = EchoServer::start(&net.victim, server_addr());
    let target = SocketAddr::new(server_addr().ip(), PORT + 1);
    let _service = EchoServer::start(&net.victim, target);
    let _ = nft(&net.victim, &["-f", "-"], Some(rules));
    if !legacy.is_empty() {
        let mut args = vec!["netns", "exec", &net.victim, "iptables-legacy"];
        args.extend_from_slice(legacy);
        let _ = run_tool("ip", &args);
    }
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!(
        "port {PORT} gets no SYN cookies: {at} rewrites it"
    ));
    // The other listener has cookies: they are on, just not for this port.
    guard.wait_for_log(&format!("SYN cookies on for port {}: always on", PORT + 1));
    connect_each(&net, &guard, &[server_addr()], 5, "the published port");
    let redirected = counter_packets(&net.victim, "ip", "publish", "redirected");
    assert_eq!(
        redirected, 5,
        "SYNs that reached the port the rules send to"
    );
    let c = counters(&stats(&net));
    assert_eq!(c["cookie_synack"], 0, "{c:?}");
    assert_eq!(c["drop_cookie_invalid"], 0, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A port published as Docker publishes one, here to another port of
/// the same addresses: DNAT on the prerouting hook, and on the output hook
/// for this host's own connections to it (a REDIRECT there would send
/// them to the loopback address, which a client's address cannot be
/// answered from). The port is forwarded, and gets cookies.
fn forwarded_rules() -> String {
    let to = PORT + 1;
    let dnat = format!(
        "meta nfproto ipv4 tcp dport {PORT} dnat ip to {VICTIM_ADDR}:{to}\n    meta nfproto ipv6 tcp dport {PORT} dnat ip6 to [{VICTIM_ADDR6}]:{to}"
    );
    format!(
        "table inet publish {{
  counter redirected {{ }}
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    {dnat}
  }}
  chain out {{
    type nat hook output priority -100; policy accept;
    {dnat}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    tcp dport {to} tcp flags & (syn | ack) == syn counter name \"redirected\"
  }}
}}
"
    )
}

/// A port the nat rules rewrite on the output hook as on the prerouting
/// hook (a container's published port on a Docker host) gets cookies:
/// XDP answers its SYNs, SYNPROXY's own connection is rewritten as a
/// client's would have been, and conntrack is strict about lone ACKs
/// while it is armed, since no local socket holds the port's
/// connections. Over IPv4 and IPv6 the connections reach the port the
/// rules send them to, and one made before the cookies came on keeps
/// working: its ACKs are left to the kernel, not taken for bad cookies.
#[test]
fn a_port_the_nat_rules_forward_on_both_hooks_gets_cookies_and_keeps_its_connections() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let service = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), PORT + 1);
    let _service = EchoServer::start(&net.victim, service);
    let _ = nft(&net.victim, &["-f", "-"], Some(&forwarded_rules()));
    let loose_before = ct::local_sysctl(&net.victim, LOOSE);
    let mut early = connect(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection before guard");
    echo_roundtrip(&mut early, b"before").expect("an echo before guard");

    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!(
        "nf_conntrack_tcp_loose 0 for port {PORT} (forwarded by the nat rules)"
    ));
    assert!(
        !guard.stderr().contains("gets no SYN cookies"),
        "{}",
        guard.stderr()
    );
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), 0);
    let before = counter_packets(&net.victim, "inet", "publish", "redirected");
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        5,
        "the forwarded port, through the cookie path",
    );
    let c = counters(&stats(&net));
    assert!(c["cookie_synack"] >= 10, "{c:?}");
    assert_eq!(c["drop_cookie_invalid"], 0, "{c:?}");
    assert_eq!(
        counter_packets(&net.victim, "inet", "publish", "redirected") - before,
        10,
        "SYNPROXY's SYNs that reached the port the rules send to"
    );
    echo_roundtrip(&mut early, b"after").unwrap_or_else(|e| {
        panic!(
            "the connection made before the cookies: {e}\n{}",
            guard.stderr()
        )
    });
    let c = counters(&stats(&net));
    assert_eq!(c["drop_cookie_invalid"], 0, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), loose_before);
}

/// An operator's firewall of the common shape: an input chain at the
/// `filter` priority that drops what conntrack calls invalid, and counts
/// the connections to the server's port it lets through.
const OPERATOR_FIREWALL: &str = "table inet operator_fw {
  counter reached { }
  chain input {
    type filter hook input priority filter; policy accept;
    ct state invalid drop
    tcp dport 8080 counter name \"reached\"
  }
}
";

/// A firewall that drops invalid packets, loaded while cookies are on (a
/// reload during an attack), is newer than guard's SYNPROXY chain: chains
/// of one priority run newest first. A cookie handshake's ACK is invalid
/// to conntrack until SYNPROXY takes it, so SYNPROXY must still see it
/// first, and real clients keep connecting.
#[test]
fn a_firewall_dropping_invalid_packets_loaded_after_the_cookies_leaves_them_working() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let _server6 = EchoServer::start(&net.victim, server_addr6());
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let _ = nft(&net.victim, &["-f", "-"], Some(OPERATOR_FIREWALL));

    for addr in [server_addr(), server_addr6()] {
        for i in 0..5 {
            connect_echo(&net.attacker, addr, Duration::from_secs(3)).unwrap_or_else(|e| {
                panic!(
                    "connection {i} to {addr} with the operator's firewall loaded last: {e}\n{}\n{}",
                    nft(&net.victim, &["list", "ruleset"], None),
                    guard.stderr()
                )
            });
        }
    }
    let c = counters(&stats(&net));
    assert!(c["cookie_ack_valid"] >= 10, "{c:?}");
    // The operator's chain was in the path: SYNPROXY's own SYNs to the
    // server, and the connections' packets after them, went through it.
    let reached = counter_packets(&net.victim, "inet", "operator_fw", "reached");
    assert!(reached >= 10, "the operator's chain saw {reached} packets");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The mangle-table rule of iptables anti-DDoS guides, in nft: `state`
/// packets dropped at prerouting, after conntrack and before any input
/// chain, in table `ip TABLE`.
fn early_drop(table: &str, state: &str) -> String {
    state_drop(&format!("ip {table}"), "prerouting", "mangle", state)
}

/// A rule that drops invalid packets before guard's SYNPROXY chain breaks
/// every cookie handshake, as it breaks any SYNPROXY: guard names the
/// chain when cookies come on, and clients connect once it is gone.
#[test]
fn an_invalid_drop_before_synproxy_is_named_when_cookies_come_on() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let _ = nft(
        &net.victim,
        &["-f", "-"],
        Some(&early_drop("early_fw", "invalid")),
    );
    let guard = start_on(&net, ALWAYS);
    named_early_drop_fails_handshakes_until_gone(&net, &guard, "early_fw", "calls invalid");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// What guard says of table `ip TABLE`, an early drop of what conntrack
/// `drops` (`calls invalid`, `leaves untracked`), holds: it names the
/// table, a cookie handshake fails, and once the table is deleted one
/// completes.
fn named_early_drop_fails_handshakes_until_gone(
    net: &TestNet,
    guard: &Guard,
    table: &str,
    drops: &str,
) {
    guard.wait_for_log(&format!(
        "table ip {table} chain prerouting (hook prerouting, priority -150) in netns {} drops what conntrack {drops} before guard's SYNPROXY chain",
        net.victim
    ));
    let broken = connect_echo(&net.attacker, server_addr(), Duration::from_secs(2));
    assert!(
        broken.is_err(),
        "a cookie handshake completed past the early drop in {table}"
    );
    let _ = nft(&net.victim, &["delete", "table", "ip", table], None);
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("a connection once {table} is gone: {e}\n{}", guard.stderr()));
}

/// A listener bound to the wildcard address gets cookie ACKs untracked,
/// not invalid: an early invalid drop leaves its handshakes alone, and
/// guard does not name it; an early untracked drop fails them, and guard
/// names that one.
#[test]
fn a_wildcard_listeners_cookies_fail_only_on_an_early_untracked_drop() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let any = SocketAddr::new("0.0.0.0".parse().expect("address"), PORT);
    let _server = EchoServer::start(&net.victim, any);
    for (table, state) in [("early_fw", "invalid"), ("early_untracked", "untracked")] {
        let _ = nft(&net.victim, &["-f", "-"], Some(&early_drop(table, state)));
    }
    let guard = start_on(&net, ALWAYS);
    // The connection at the end passed the early invalid drop.
    named_early_drop_fails_handshakes_until_gone(
        &net,
        &guard,
        "early_untracked",
        "leaves untracked",
    );
    assert!(counters(&stats(&net))["cookie_ack_valid"] >= 1);
    assert!(
        !guard.stderr().contains("table ip early_fw"),
        "the invalid drop, which these handshakes pass, was named:\n{}",
        guard.stderr()
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The same drop behind a jump from an early chain.
const JUMP_DROP: &str = "table ip early_jump {
  chain checks {
    ct state invalid drop
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp jump checks
  }
}
";

/// The drop as verdict maps write it: the common `ct state vmap`, and a
/// chain a port's map element jumps to (`{PORT}` is the server's).
const VMAP_DROPS: &str = "table inet early_vmap {
  chain checks {
    ct state invalid drop
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    ct state vmap { established : accept, related : accept, invalid : drop }
  }
  chain input {
    type filter hook input priority mangle; policy accept;
    tcp dport vmap { {PORT} : jump checks }
  }
}
";

/// An early drop reached through a jump, the anti-DDoS guides' own
/// iptables rule as iptables-nft writes it (an `xt` match, whose state
/// only nft's text listing shows) and as iptables-legacy does (in the
/// kernel's xtables, which nft does not show), and the drops verdict maps
/// make: guard names them all.
#[test]
fn an_invalid_drop_behind_a_jump_a_verdict_map_or_from_iptables_is_named() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    // Cookies come on for a listening port.
    let _server = EchoServer::start(&net.victim, server_addr());
    let _ = nft(&net.victim, &["-f", "-"], Some(JUMP_DROP));
    let vmaps = VMAP_DROPS.replace("{PORT}", &PORT.to_string());
    let _ = nft(&net.victim, &["-f", "-"], Some(&vmaps));
    let _ = run_tool(
        "ip",
        &[
            "netns",
            "exec",
            &net.victim,
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
            "-j",
            "DROP",
        ],
    );
    let _ = run_tool(
        "ip",
        &[
            "netns",
            "exec",
            &net.victim,
            "iptables-legacy",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-m",
            "state",
            "--state",
            "INVALID",
            "-j",
            "DROP",
        ],
    );
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!(
        "iptables-legacy table mangle chain PREROUTING (hook prerouting, priority -150) in netns {} drops what conntrack calls invalid",
        net.victim
    ));
    guard.wait_for_log(&format!(
        "table ip early_jump chain prerouting (hook prerouting, priority -150), through chain checks in netns {} drops what conntrack calls invalid",
        net.victim
    ));
    guard.wait_for_log(&format!(
        "table ip mangle chain PREROUTING (hook prerouting, priority -150) in netns {} drops what conntrack calls invalid",
        net.victim
    ));
    guard.wait_for_log(&format!(
        "table inet early_vmap chain prerouting (hook prerouting, priority -150) in netns {} drops what conntrack calls invalid",
        net.victim
    ));
    guard.wait_for_log(&format!(
        "table inet early_vmap chain input (hook input, priority -150), through chain checks in netns {} drops what conntrack calls invalid",
        net.victim
    ));
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A guard killed and not yet reaped by its parent (as in a container
/// without an init) is a zombie: its locks, links and programs are gone.
/// `guard status`, `guard stats` and `guard sigs` say it is gone (its
/// files and pins stay), `guard allow list` shows no running lists, and
/// `guard restore`, with no namespace named, finds the namespace it left
/// changed, puts back its SYNPROXY rules and `tcp_loose`, and removes what
/// it left.
#[test]
fn a_killed_guard_not_yet_reaped_is_restored_by_guard_restore() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let loose_before = ct::local_sysctl(&net.victim, LOOSE);
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), 0);
    let pid = guard.pid().expect("running");
    guard.signal(libc::SIGKILL);
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(
            std::time::Instant::now() < deadline,
            "guard {pid} is not a zombie"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = format!("(pid {pid}), which wrote");
    let status = guard_proc::run(&["status", "--netns", &net.victim]);
    status.assert_code(1);
    assert!(status.stderr.contains(&gone), "{status}");
    let pins = guard_proc::run(&["stats", "--netns", &net.victim]);
    pins.assert_code(1);
    assert!(pins.stderr.contains("are a guard's that is gone"), "{pins}");
    // Nor do the other commands that read the pins take them for a
    // running guard's.
    let sigs = guard_proc::run(&["sigs", "list"]);
    sigs.assert_code(1);
    assert!(sigs.stderr.contains("are a guard's that is gone"), "{sigs}");
    let allowed = guard_proc::run(&["allow", "list"]);
    allowed.assert_code(0);
    assert!(!allowed.stdout.contains("(running"), "{allowed}");
    let out = guard_proc::run(&["restore"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("restored SYNPROXY rules removed"),
        "{out}"
    );
    assert_eq!(synproxy_table(&net.victim), "", "{out}");
    assert_eq!(ct::local_sysctl(&net.victim, LOOSE), loose_before, "{out}");
    let status = guard_proc::run(&["status", "--netns", &net.victim]);
    status.assert_code(1);
    assert!(status.stderr.contains("does not exist"), "{status}");
    drop(guard);
}

/// Asked for native mode on a veth, guard cannot make its SYN-ACKs reach
/// a peer without an XDP program: it says so, arms no port, and keeps
/// protecting; clients connect the ordinary way.
#[test]
fn native_mode_on_a_veth_protects_without_cookies_and_says_why() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _ct = Counters::install(&net.victim, &[("new", "ct state new")]);
    let _server = EchoServer::start(&net.victim, server_addr());
    let _server6 = EchoServer::start(&net.victim, server_addr6());
    let mut args = ALWAYS.to_vec();
    args.extend(["--xdp-mode", "native"]);
    let guard = start_on(&net, &args);
    guard.wait_for_log("no SYN cookies on");
    assert!(
        guard.stderr().contains("a veth in native XDP mode"),
        "{}",
        guard.stderr()
    );
    guard.wait_for_log("level normal");
    for addr in [server_addr(), server_addr6()] {
        connect_echo(&net.attacker, addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("to {addr} without cookies: {e}\n{}", guard.stderr()));
    }
    let c = counters(&stats(&net));
    assert_eq!(c["cookie_synack"], 0, "{c:?}");
    assert!(c["pass_limits"] >= 2, "{c:?}");
    assert_eq!(
        synproxy_table(&net.victim),
        "",
        "no cookies, no SYNPROXY rules"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A listener that comes up after guard is found within a few ticks and
/// protected; one that goes away leaves the port table and the rules.
#[test]
fn listeners_are_followed_as_they_come_and_go() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _ct = Counters::install(&net.victim, &[("new", "ct state new")]);
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log("level normal");
    let rules = synproxy_table(&net.victim);
    assert!(
        !rules.contains("elements"),
        "no listener, no port in the rules: {rules}"
    );
    let server = EchoServer::start(&net.victim, server_addr6());
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    connect_echo(&net.attacker, server_addr6(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("through the cookie path: {e}\n{}", guard.stderr()));
    assert!(counters(&stats(&net))["cookie_synack"] >= 1);
    drop(server);
    guard.wait_for_log(&format!("SYN cookies off for port {PORT}"));
    // The port leaves the rules; the table stays, dormant, for the
    // connections SYNPROXY made, until guard stops.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while synproxy_table(&net.victim).contains("elements") {
        assert!(
            std::time::Instant::now() < deadline,
            "the rules outlived the listener"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(synproxy_table(&net.victim).contains("synproxy mss 1460"));
    guard.stop(libc::SIGTERM).assert_code(0);
    assert_eq!(synproxy_table(&net.victim), "", "the table outlived guard");
}

/// `n` connections to the server through the cookie path, each echoed once.
fn cookie_connections(net: &TestNet, n: usize, guard: &Guard) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = connect(&net.attacker, server_addr(), Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", guard.stderr()));
            echo_roundtrip(&mut c, b"before").expect("an echo through the cookie path");
            c
        })
        .collect()
}

/// 32 KiB echoed on each of `conns`; `when` names the moment in a failure.
fn echo_on_each(conns: &mut [TcpStream], when: &str, guard: &Guard) {
    let data = vec![7u8; 32 * 1024];
    for (i, c) in conns.iter_mut().enumerate() {
        echo_roundtrip(c, &data)
            .unwrap_or_else(|e| panic!("connection {i} {when}: {e}\n{}", guard.stderr()));
    }
}

/// Connections SYNPROXY made while a port took cookies live on after the
/// cookies go off: SYNPROXY translates their timestamps for as long as
/// they live (without it the client's PAWS check drops the server's
/// segments whenever the two clocks' offset goes the wrong way), so its
/// table stays, with no port, until guard stops.
#[test]
fn connections_made_through_cookies_live_on_after_the_cookies_go_off() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let file = std::env::temp_dir().join(format!("guardt-{}-live.toml", std::process::id()));
    let config = |mode: &str| write_config(&file, &net, mode);
    config("enforce");
    let file_arg = file.display().to_string();
    let guard = Guard::start(&["run", "--config", &file_arg]);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    // Eight connections, each with its own timestamp offset.
    let mut conns = cookie_connections(&net, 8, &guard);
    assert!(counters(&stats(&net))["cookie_ack_valid"] >= 8);

    config("monitor");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log(&format!("SYN cookies off for port {PORT}"));
    guard.wait_for_log("SYNPROXY covers no port");
    let dormant = synproxy_table(&net.victim);
    assert!(
        dormant.contains("synproxy mss 1460") && !dormant.contains("elements"),
        "{dormant}"
    );
    echo_on_each(&mut conns, "after the cookies went off", &guard);
    drop(conns);
    let finished = guard.stop(libc::SIGTERM);
    let _ = std::fs::remove_file(&file);
    finished.assert_code(0);
    assert_eq!(synproxy_table(&net.victim), "", "the table outlived guard");
}

/// A guard restarted (an upgrade, a key that needs a restart) takes the
/// SYNPROXY table with it when it stops, and the connections its SYNPROXY
/// completed stall. The next guard puts the table back, with no port, at
/// its first tick where cookies may come on and conntrack holds entries,
/// armed or not: those connections carry on.
#[test]
fn connections_made_through_cookies_carry_on_across_a_restart() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let first = start_on(&net, ALWAYS);
    first.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let mut conns = cookie_connections(&net, 4, &first);
    first.stop(libc::SIGTERM).assert_code(0);
    assert_eq!(synproxy_table(&net.victim), "", "the table outlived guard");

    // Cookies by default: nothing arms a port without a flood.
    let second = start_on(&net, &["--mode", "enforce", "--summary-interval", "0"]);
    second.wait_for_log("SYNPROXY table in place, no port yet");
    echo_on_each(&mut conns, "after the restart", &second);
    drop(conns);
    second.stop(libc::SIGTERM).assert_code(0);
}

/// A random-source flood spread evenly over twelve listening ports gives
/// none of them a tenth of all the SYNs: each is armed all the same (a
/// port gets cookies when it takes a tenth of the busiest port's SYNs),
/// and a listening port the flood spares is not.
#[test]
fn a_flood_spread_over_many_listening_ports_arms_each_of_them() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let flooded: Vec<u16> = (9100..9112).collect();
    let spared = 9200;
    let any = |port| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
    let _servers: Vec<EchoServer> = flooded
        .iter()
        .chain(std::iter::once(&spared))
        .map(|&port| EchoServer::start(&net.victim, any(port)))
        .collect();
    let guard = start_on(&net, &["--mode", "enforce", "--summary-interval", "0"]);
    let mut flood = Flood::new(&net);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0u32;
    let armed = loop {
        for _ in 0..2_400 {
            let port = flooded[i as usize % flooded.len()];
            flood.tcp(spoofed(i), 40_000 + (i % 20_000) as u16, port, TCP_SYN);
            i += 1;
        }
        let out = guard_proc::run(&["status", "--json", "--netns", &net.victim]);
        let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status --json");
        let armed: Vec<u16> = status["cookie_ports"]
            .as_array()
            .expect("cookie_ports")
            .iter()
            .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
            .collect();
        if !armed.is_empty() {
            break armed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no port armed after {i} SYNs over {} ports:\n{}",
            flooded.len(),
            guard.stderr()
        );
    };
    assert_eq!(armed, flooded, "{}", guard.stderr());
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Where the kernel's own SYN cookies are off, the spoofed SYNs admitted
/// before guard's arm can fill a listener's SYN queue, which then drops
/// SYNPROXY's SYNs too: guard says so when its cookies may come on.
#[test]
fn a_namespace_without_the_kernels_syn_cookies_is_warned_about() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let warning = format!(
        "net.ipv4.tcp_syncookies is 0 in netns {}: a listener whose SYN queue",
        net.victim
    );
    net.sysctl(&net.victim, "net/ipv4/tcp_syncookies", "1");
    let quiet = start_on(&net, ALWAYS).stop(libc::SIGTERM);
    quiet.assert_code(0);
    assert!(!quiet.stderr.contains("tcp_syncookies"), "{quiet}");
    net.sysctl(&net.victim, "net/ipv4/tcp_syncookies", "0");
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&warning);
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// An operator who deploys in monitor mode and switches to enforce with
/// SIGHUP gets SYN cookies from then on, without a restart; back in
/// monitor mode, they go off.
#[test]
fn a_reload_from_monitor_to_enforce_arms_cookies() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _ct = Counters::install(&net.victim, &[("new", "ct state new")]);
    let _server = EchoServer::start(&net.victim, server_addr());
    let file = std::env::temp_dir().join(format!("guardt-{}-mode.toml", std::process::id()));
    let config = |mode: &str| write_config(&file, &net, mode);
    config("monitor");
    let file_arg = file.display().to_string();
    let guard = Guard::start(&["run", "--config", &file_arg]);
    guard.wait_for_log("SYN cookies stay off in monitor mode");
    guard.wait_for_log("level normal");
    assert_eq!(synproxy_table(&net.victim), "");

    config("enforce");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("through the cookie path: {e}\n{}", guard.stderr()));
    assert!(counters(&stats(&net))["cookie_synack"] >= 1);

    config("monitor");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log(&format!("SYN cookies off for port {PORT}"));
    let before = counters(&stats(&net))["cookie_synack"];
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("in monitor mode: {e}\n{}", guard.stderr()));
    assert_eq!(counters(&stats(&net))["cookie_synack"], before);
    let finished = guard.stop(libc::SIGTERM);
    let _ = std::fs::remove_file(&file);
    finished.assert_code(0);
    assert_eq!(
        synproxy_table(&net.victim),
        "",
        "the SYNPROXY rules were left"
    );
}

/// A guard started in monitor mode, in a namespace where nothing uses
/// conntrack, reloaded to enforce: it arms a port with a listener bound to
/// one address, and a connection made before it started carries on.
#[test]
fn a_reload_to_enforce_keeps_a_bound_listeners_connection_from_before() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let mut before = connect(&net.attacker, server_addr(), Duration::from_secs(3))
        .expect("a connection before guard");
    echo_roundtrip(&mut before, b"before").expect("an echo before guard");
    let file = std::env::temp_dir().join(format!("guardt-{}-told.toml", std::process::id()));
    write_config(&file, &net, "monitor");
    let file_arg = file.display().to_string();
    let guard = Guard::start(&["run", "--config", &file_arg]);
    guard.wait_for_log("conntrack tracks no connection in netns");
    guard.wait_for_log("level normal");

    write_config(&file, &net, "enforce");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    echo_roundtrip(&mut before, b"after")
        .unwrap_or_else(|e| panic!("the connection from before guard: {e}\n{}", guard.stderr()));
    let finished = guard.stop(libc::SIGTERM);
    let _ = std::fs::remove_file(&file);
    finished.assert_code(0);
}

/// A real client over its own SYN limit while its port takes cookies: its
/// second connection's handshake completes on its side (the cookie
/// SYN-ACK), but its ACK would make one connection too many. XDP answers
/// that ACK with a RST, so the client learns at once (ECONNRESET) instead
/// of holding a connection that never comes until it times out.
#[test]
fn a_client_over_its_limit_behind_cookies_is_reset_not_left_hanging() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, server_addr());
    let mut args = ALWAYS.to_vec();
    args.extend([
        "--source-limits",
        "always",
        "--syn-rate",
        "1",
        "--syn-burst",
        "1",
        "--ban-threshold",
        "0",
    ]);
    let guard = start_on(&net, &args);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    connect_echo(&net.attacker, server_addr(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("the first connection: {e}\n{}", guard.stderr()));
    let second = connect_echo(&net.attacker, server_addr(), Duration::from_secs(3));
    let c = counters(&stats(&net));
    assert_eq!(
        second.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "{second:?} {c:?}\n{}",
        guard.stderr()
    );
    assert_eq!((c["rst_sent"], c["drop_source_limit"]), (1, 1), "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A client reconnecting from the port of its last connection, which the
/// server closed first and so holds in TIME_WAIT (a minute on Linux), as a
/// busy client of an HTTP server that closes after its response does. The
/// kernel reopens such a connection for a new SYN. Through a cookie's
/// handshake the ACK went to SYNPROXY only if conntrack found it out of
/// the old connection's window, else to the old socket, and the client
/// waited for nothing (nginx behind guard, by hand: every such client).
/// Its SYN now goes the ordinary way, where the listener is bound to the
/// wildcard (conntrack loose) or to one address (strict): a verified
/// client's always, and one whose connection was made before guard
/// started, not verified, through the CPU's ration of lookups.
fn reconnects_from_a_port_in_time_wait(listen: &[SocketAddr], clients: &[SocketAddr]) {
    let net = TestNet::addressed();
    let _servers: Vec<EchoServer> = listen
        .iter()
        .map(|&addr| EchoServer::greeting(&net.victim, addr))
        .collect();
    let timeout = Duration::from_secs(3);
    let early = |i: usize| CLIENT_PORTS + u16::try_from(i).expect("few");
    for (i, &server) in clients.iter().enumerate() {
        greeted_from(&net.attacker, early(i), server, timeout)
            .unwrap_or_else(|e| panic!("a connection to {server} before guard: {e}"));
    }
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    for (i, &server) in clients.iter().enumerate() {
        reconnect(&net, &guard, early(i), server, "made before guard started");
        // A cookie's handshake, which verifies the client, then again.
        let port = CLIENT_PORTS + 1_000 + u16::try_from(i).expect("few");
        let before = counters(&stats(&net));
        greeted_from(&net.attacker, port, server, timeout).unwrap_or_else(|e| {
            panic!("the first connection to {server}: {e}\n{}", guard.stderr())
        });
        let first = counters(&stats(&net));
        assert_eq!(
            first["cookie_synack"],
            before["cookie_synack"] + 1,
            "{first:?}"
        );
        reconnect(&net, &guard, port, server, "made through a cookie");
        // A new port of the same client still gets a cookie.
        let again = counters(&stats(&net));
        greeted_from(&net.attacker, port + 100, server, timeout)
            .unwrap_or_else(|e| panic!("a new port to {server}: {e}\n{}", guard.stderr()));
        assert_eq!(
            counters(&stats(&net))["cookie_synack"],
            again["cookie_synack"] + 1
        );
    }
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Asserts that the server holds a connection from the client's `port` in
/// `state` (as `ss` names it) after `what`.
fn server_holds(net: &TestNet, state: &str, port: u16, what: &str) {
    let held = run_tool(
        "ip",
        &["netns", "exec", &net.victim, "ss", "-Htn", "state", state],
    );
    assert!(
        held.split_whitespace()
            .any(|peer| peer.ends_with(&format!(":{port}"))),
        "the server holds no {state} connection from port {port} ({what}): {held}"
    );
}

/// A connection from `port` to `server` while the server holds the last
/// one from that port (`what`) in TIME_WAIT: it is greeted, its SYN went
/// the ordinary way, and got no cookie.
fn reconnect(net: &TestNet, guard: &Guard, port: u16, server: SocketAddr, what: &str) {
    server_holds(net, "time-wait", port, what);
    let before = counters(&stats(net));
    greeted_from(&net.attacker, port, server, Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "reconnecting to {server} from port {port}, its last connection {what} in TIME_WAIT: {e}\n{:?}\n{}",
            counters(&stats(net)),
            guard.stderr()
        )
    });
    let after = counters(&stats(net));
    assert_eq!(
        (after["cookie_synack"], after["cookie_unanswered"]),
        (before["cookie_synack"], before["cookie_unanswered"] + 1),
        "{what}: {after:?}"
    );
}

#[test]
fn a_client_reconnects_from_a_port_in_time_wait_at_a_wildcard_listener() {
    let _kernel = kernel_test!();
    reconnects_from_a_port_in_time_wait(&[wildcard_addr()], &[server_addr(), server_addr6()]);
}

#[test]
fn a_client_reconnects_from_a_port_in_time_wait_at_a_bound_listener() {
    let _kernel = kernel_test!();
    reconnects_from_a_port_in_time_wait(
        &[server_addr(), server_addr6()],
        &[server_addr(), server_addr6()],
    );
}

/// A client that lost a connection the server still holds (it crashed,
/// lost its network, or a NAT gave its port to another of its users) and
/// connects again from the same port. Without guard the kernel answers
/// the SYN with an ACK of the old connection, which the client resets,
/// and its next SYN connects. Behind cookies SYNPROXY answered that SYN
/// (it was untracked), the client's ACK went to the old connection, and
/// the client waited for nothing; at a wildcard listener, where nftables
/// tells the listener from a connection, the SYN now goes to the kernel.
/// Once for a connection made before guard started, once for one made
/// through a cookie.
#[test]
fn a_client_that_lost_its_connection_reconnects_from_its_port_at_a_wildcard_listener() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, wildcard_addr());
    let timeout = Duration::from_secs(3);
    let servers = [server_addr(), server_addr6()];
    let open = |port: u16, server: SocketAddr, what: &str| {
        let mut stream = connect_from(&net.attacker, port, server, timeout)
            .unwrap_or_else(|e| panic!("{what} to {server} from port {port}: {e}"));
        echo_roundtrip(&mut stream, b"guard-test")
            .unwrap_or_else(|e| panic!("{what} to {server} from port {port}: {e}"));
        stream
    };
    let early: Vec<_> = servers
        .iter()
        .zip(CLIENT_PORTS + 2_000..)
        .map(|(&server, port)| (port, server, open(port, server, "before guard")))
        .collect();
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let cookie = servers
        .iter()
        .zip(CLIENT_PORTS + 2_100..)
        .map(|(&server, port)| {
            let before = counters(&stats(&net))["cookie_synack"];
            let stream = open(port, server, "through a cookie");
            assert_eq!(counters(&stats(&net))["cookie_synack"], before + 1);
            (port, server, stream)
        });
    let lost: Vec<_> = early
        .into_iter()
        .chain(cookie.collect::<Vec<_>>())
        .collect();
    for (port, server, stream) in lost {
        forget(stream);
        server_holds(&net, "established", port, "its client forgot it");
        let before = counters(&stats(&net));
        let mut again = connect_from(&net.attacker, port, server, timeout)
            .and_then(|mut s| echo_roundtrip(&mut s, b"again").map(|()| s))
            .unwrap_or_else(|e| {
                panic!(
                    "reconnecting to {server} from port {port}, which the server still holds: {e}\n{:?}\n{}",
                    counters(&stats(&net)),
                    guard.stderr()
                )
            });
        echo_roundtrip(&mut again, b"once more").expect("the new connection");
        // Its first SYN went to the kernel; once the client reset the old
        // connection, its next got a cookie.
        let after = counters(&stats(&net));
        assert_eq!(
            (after["cookie_unanswered"], after["cookie_synack"]),
            (before["cookie_unanswered"] + 1, before["cookie_synack"] + 1),
            "port {port}: {after:?}"
        );
    }
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// The `TcpExt` counter `name` of namespace `ns` (`/proc/net/netstat`),
/// if its kernel has one.
fn tcp_ext(ns: &str, name: &str) -> Option<u64> {
    let text = guard::host::netns::Scope::open(Some(ns))
        .expect("netns")
        .run(|| std::fs::read_to_string("/proc/thread-self/net/netstat"))
        .expect("entering netns")
        .expect("/proc/net/netstat");
    guard::model::tcp::tcp_ext(&text, name)
}

/// Where the victim's TCP counts `TSEcrRejected` (it checks a handshake's
/// timestamps), that the SYNPROXY table does `action` to SYNPROXY's own
/// ACK with the rule ending in `matched` and the timestamp test; the count
/// before, and guard back for the test. Elsewhere, that no such rule is
/// there: guard is stopped and `None` returned.
fn own_ack_rule(net: &TestNet, guard: Guard, matched: &str, action: &str) -> Option<(u64, Guard)> {
    let rule = format!("{matched} tcp option timestamp exists {action}");
    let Some(before) = tcp_ext(&net.victim, "TSEcrRejected") else {
        eprintln!(
            "this kernel counts no TSEcrRejected: checked only that the rule `{rule}` is not installed"
        );
        assert!(!synproxy_table(&net.victim).contains(&rule));
        guard.stop(libc::SIGTERM).assert_code(0);
        return None;
    };
    assert!(
        synproxy_table(&net.victim).contains(&rule),
        "{}",
        synproxy_table(&net.victim)
    );
    Some((before, guard))
}

/// A server whose TCP checks a handshake's last ACK against its SYN-ACKs'
/// timestamps (Linux 6.18: `TcpExtTSEcrRejected`) rejects the ACK with
/// which SYNPROXY completes its side of a cookie's handshake (its TSecr is
/// shifted), and waits for its SYN-ACK's retransmission, a second: a
/// server that speaks first (SMTP, a database) on every connection through
/// a cookie, and now and then one whose client speaks first. The rules
/// blank that ACK's timestamp on its way in, and the server takes it: it
/// rejects nothing and retransmits no SYN-ACK, for echo clients and for
/// clients of a greeting server, over IPv4 and IPv6 (with the ACK dropped
/// instead, each greeting took a retransmission). A kernel without the
/// check gets no such rule.
#[test]
fn synproxys_own_ack_has_its_timestamp_blanked_where_the_server_would_reject_it() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, wildcard_addr());
    let greeter = PORT + 2;
    let _greeting = EchoServer::greeting(
        &net.victim,
        SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), greeter),
    );
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!(
        "SYN cookies on for ports {PORT}, {greeter}: always on"
    ));
    let Some((before, guard)) = own_ack_rule(
        &net,
        guard,
        "fib saddr type != local",
        "reset tcp option timestamp",
    ) else {
        return;
    };
    let retransmits = tcp_ext(&net.victim, "TCPSynRetrans");
    let synacks = counters(&stats(&net))["cookie_synack"];
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        10,
        "through a cookie",
    );
    for (family, addr) in [server_addr(), server_addr6()].into_iter().enumerate() {
        let addr = SocketAddr::new(addr.ip(), greeter);
        for i in 0..10 {
            let port = CLIENT_PORTS + 3_000 + 100 * u16::try_from(family).expect("two") + i;
            greeted_from(&net.attacker, port, addr, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("greeting {i} from {addr}: {e}\n{}", guard.stderr()));
        }
    }
    assert_eq!(counters(&stats(&net))["cookie_synack"], synacks + 40);
    assert_eq!(
        tcp_ext(&net.victim, "TSEcrRejected"),
        Some(before),
        "the server rejected handshake ACKs"
    );
    assert_eq!(
        tcp_ext(&net.victim, "TCPSynRetrans"),
        retransmits,
        "the server retransmitted SYN-ACKs: its side of a handshake waited"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Behind a forwarded port the server's TCP rejects SYNPROXY's own ACK
/// alike (here the port the rules send to is not armed itself,
/// `--cookie-port`, so the rule on the way in does not see that ACK): the
/// rules drop it on its way out, and the server rejects nothing. With the
/// server answering every SYN with a cookie of its own (`tcp_syncookies`
/// 2), the client's first segment completes that handshake instead, and
/// every echo comes back.
#[test]
fn synproxys_own_ack_to_a_forwarded_port_is_dropped_on_its_way_out() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let service = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), PORT + 1);
    let _service = EchoServer::start(&net.victim, service);
    let _ = nft(&net.victim, &["-f", "-"], Some(&forwarded_rules()));
    let mut args = ALWAYS.to_vec();
    let port = PORT.to_string();
    args.extend(["--cookie-port", &port]);
    let guard = start_on(&net, &args);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let Some((before, guard)) = own_ack_rule(
        &net,
        guard,
        "ct status dnat fib saddr type != local",
        "drop",
    ) else {
        return;
    };
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        10,
        "the forwarded port, through a cookie",
    );
    assert_eq!(
        tcp_ext(&net.victim, "TSEcrRejected"),
        Some(before),
        "the server rejected handshake ACKs"
    );
    net.sysctl(&net.victim, "net/ipv4/tcp_syncookies", "2");
    let cookies = tcp_ext(&net.victim, "SyncookiesRecv").unwrap_or(0);
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        10,
        "the forwarded port, the server answering with cookies of its own",
    );
    assert!(
        tcp_ext(&net.victim, "SyncookiesRecv").unwrap_or(0) >= cookies + 20,
        "the server's own cookies completed"
    );
    let c = counters(&stats(&net));
    assert!(c["cookie_synack"] >= 40, "{c:?}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A server whose SYN queue is full answers SYNPROXY's SYN with a SYN
/// cookie of its own and keeps no request socket, so the ACK with which
/// SYNPROXY completes the handshake must reach it as sent. The rules
/// untracked that ACK at a wildcard listener (its lookup finds the
/// listener) and dropped it where the server checks timestamps; every
/// segment of the client then went to SYNPROXY as a new cookie ACK, and
/// none reached the server: by hand, half of the users failed for as long
/// as a flood's spoofed SYNs, admitted before cookies came on, filled the
/// queue.
#[test]
fn clients_connect_while_the_servers_syn_queue_is_full() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let _server = EchoServer::start(&net.victim, wildcard_addr());
    // Spoofed SYNs before guard: the server's SYN-ACKs go to the
    // attacker's namespace, which drops them, and their request sockets
    // fill the listener's queue (128, std's backlog) for a minute.
    let mut flood = Flood::new(&net);
    for i in 0..1024u16 {
        let [hi, lo] = i.to_be_bytes();
        flood.tcp(IpAddr::from([198, 19, hi, lo]), 1024 + i, PORT, TCP_SYN);
    }
    let full = |name| tcp_ext(&net.victim, name).unwrap_or(0);
    assert!(
        full("TCPReqQFullDoCookies") > 0,
        "the server's queue is not full"
    );
    let guard = start_on(&net, ALWAYS);
    guard.wait_for_log(&format!("SYN cookies on for port {PORT}: always on"));
    let completed = full("SyncookiesRecv");
    connect_each(
        &net,
        &guard,
        &[server_addr(), server_addr6()],
        10,
        "with the server's SYN queue full",
    );
    assert!(
        full("SyncookiesRecv") >= completed + 20,
        "the server's own cookies did not complete the handshakes"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}
