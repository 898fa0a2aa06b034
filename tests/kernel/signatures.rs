//! Attack signatures in the XDP program, frame by frame through
//! BPF_PROG_TEST_RUN: the fingerprint the program computes is the one
//! userspace computes from the same frame (`Fingerprint::of`, which the
//! learner and `guard sigs` rely on), a matching new flow is dropped
//! before any per-source state, and monitor bits, monitor mode and the
//! allow list are honoured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard::model::fingerprint::parse;
use guard_common::{
    Counter, SourceKey,
    bucket::NANOS_PER_SEC,
    config::SAMPLE_ON,
    fingerprint::{Fingerprint, SAMPLE_NEW, SAMPLE_VERIFIED},
};
use guard_tests::{
    cpu, kernel_test,
    packet::{Ext, L4, Packet, TCP_ACK, TCP_SYN},
    require,
    xdp::{self, Program, XDP_DROP, XDP_PASS, XDP_TX},
};

const T0: u64 = 1_000 * NANOS_PER_SEC;
/// The flood's trait: a 44-byte UDP packet to 5353 whose payload starts
/// with de ad be ef.
const FLOOD: &str = "udp dport 5353 len 44 payload[0..4]=deadbeef";

fn server4() -> IpAddr {
    Ipv4Addr::new(198, 18, 0, 2).into()
}

fn flood_payload(i: u32) -> Vec<u8> {
    let mut p = vec![0xde, 0xad, 0xbe, 0xef];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend_from_slice(&[7; 8]);
    p
}

fn spoofed(i: u32) -> IpAddr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8).into()
}

/// The program in enforce mode, sampling every new flow (1,000 a second
/// and CPU).
fn sampling_every_new_flow() -> Program {
    sampling_every_new_flow_with("--mode enforce")
}

/// The same with these settings.
fn sampling_every_new_flow_with(flags: &str) -> Program {
    let mut program = Program::new(&xdp::settings(flags));
    let mut cfg = program.config();
    cfg.sample = SAMPLE_ON;
    cfg.sample_rate = 1_000;
    cfg.sample_mask = 0;
    program.set_config(&cfg);
    program
}

/// The fingerprint userspace computes for `p`'s frame.
fn userspace_fingerprint(p: &Packet) -> Fingerprint {
    let frame = p.frame();
    let ip = &frame[14 + 4 * p.vlans.len()..];
    let ip_len = if p.src.is_ipv4() {
        usize::from(u16::from_be_bytes([ip[2], ip[3]]))
    } else {
        40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))
    };
    let l4 = ip_len - p.l4_bytes().len();
    let proto = match (&p.l4, p.src) {
        (L4::Tcp { .. }, _) => 6,
        (L4::Udp { .. }, _) => 17,
        (_, IpAddr::V4(_)) => 1,
        (_, IpAddr::V6(_)) => 58,
    };
    Fingerprint::of(ip, l4, proto).expect("a fingerprint")
}

#[test]
fn the_program_fingerprints_as_userspace_does() {
    let _k = kernel_test!();
    let mut program = sampling_every_new_flow();
    let v6 = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 1));
    let server6 = v6(0xffff);
    let mut syn_with_options = Packet::tcp(spoofed(1), server4(), 40000, 443, TCP_SYN);
    if let L4::Tcp { options, .. } = &mut syn_with_options.l4 {
        *options = vec![
            2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
    }
    let mut packets = vec![
        Packet::udp(spoofed(1), server4(), 1000, 5353, &flood_payload(1)),
        Packet::udp(spoofed(2), server4(), 1001, 53, &[]),
        Packet::udp(spoofed(3), server4(), 1002, 53, &[1, 2, 3]),
        Packet::udp(
            spoofed(4),
            server4(),
            1003,
            53,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        ),
        Packet::udp(spoofed(5), server4(), 1004, 53, &[9; 40]),
        Packet::udp(v6(1), server6, 1005, 53, &[1, 2, 3, 4, 5]),
        Packet::udp(v6(2), server6, 1006, 53, &[5; 16]).ext(Ext::HopByHop),
        Packet::udp(spoofed(6), server4(), 1007, 53, &[8; 20]).vlan(0x8100),
        Packet::tcp(spoofed(7), server4(), 40001, 80, TCP_SYN),
        Packet::tcp(v6(3), server6, 40002, 80, TCP_SYN).ext(Ext::DestOpts),
        Packet::echo(spoofed(8), server4(), 77),
        Packet::echo(v6(4), server6, 78),
        syn_with_options,
    ];
    packets[2].ipv4_options = vec![1, 1, 1, 0];
    for (i, p) in packets.iter().enumerate() {
        let at = T0 + i as u64 * NANOS_PER_SEC;
        // Each at its own second: the per-CPU sample budget is a second's.
        program.run(&p.frame(), at);
        let samples = program.take_samples();
        assert_eq!(samples.len(), 1, "packet {i}: one sample");
        assert_eq!(samples[0].kind, SAMPLE_NEW, "packet {i}");
        assert_eq!(
            samples[0].fp.bytes(),
            userspace_fingerprint(p).bytes(),
            "packet {i}: the program's fingerprint and userspace's"
        );
    }
}

/// Each CPU samples under a budget of its own, and the learner weighs a
/// CPU's samples by the new flows that CPU counted: a sample names the CPU
/// that took it, whose counters are read by that number.
#[test]
fn a_sample_names_the_cpu_whose_new_flows_it_is_of() {
    let _k = kernel_test!();
    let cpus = cpu::allowed();
    assert!(
        cpus.len() >= 2 || !require::in_ci(),
        "this test needs two CPUs, has {cpus:?}"
    );
    let mut program = sampling_every_new_flow();
    for (i, &on) in cpus.iter().enumerate() {
        cpu::pin(on);
        let flows = i + 1;
        for n in 0..flows {
            let p = Packet::udp(spoofed((100 * i + n) as u32), server4(), 1000, 53, b"query");
            assert_eq!(program.run(&p.frame(), T0), XDP_PASS);
        }
        let samples = program.take_samples();
        assert_eq!(samples.len(), flows, "CPU {on}");
        assert!(
            samples.iter().all(|s| s.cpu as usize == on),
            "CPU {on}: {samples:?}"
        );
        assert_eq!(
            program.counters_per_cpu()[on].get(Counter::NewFlows),
            flows as u64,
            "CPU {on}"
        );
    }
}

#[test]
fn a_signature_drops_its_flood_before_any_source_state() {
    let _k = kernel_test!();
    let mut program = Program::new(&xdp::settings("--mode enforce"));
    let slot = program.add_signature(parse(FLOOD).expect("the signature"), false);
    for i in 0..500 {
        let p = Packet::udp(
            spoofed(i),
            server4(),
            2000 + i as u16,
            5353,
            &flood_payload(i),
        );
        assert_eq!(program.run(&p.frame(), T0), XDP_DROP, "flood packet {i}");
    }
    let c = program.counters();
    assert_eq!(c.get(Counter::DropSignature), 500);
    assert_eq!(c.sig_hits(slot), 500);
    assert_eq!(
        c.get(Counter::NewSources),
        0,
        "no source state for the flood"
    );
    assert!(program.sources().is_empty());
    assert!(program.udp_flows().is_empty());
    // A user to the same port with another payload, or the same payload at
    // another length, is not the flood.
    let user = Packet::udp(spoofed(9999), server4(), 3000, 5353, b"\x12\x34query");
    assert_eq!(program.run(&user.frame(), T0), XDP_PASS);
    let mut longer = flood_payload(1);
    longer.push(0);
    let other = Packet::udp(spoofed(9998), server4(), 3001, 5353, &longer);
    assert_eq!(program.run(&other.frame(), T0), XDP_PASS);
    assert_eq!(program.counters().get(Counter::DropSignature), 500);
    program.clear_signatures();
    let p = Packet::udp(spoofed(1), server4(), 2001, 5353, &flood_payload(1));
    assert_eq!(
        program.run(&p.frame(), T0),
        XDP_PASS,
        "taken out: it matches no more"
    );
}

#[test]
fn monitor_bits_monitor_mode_and_the_allow_list_pass_matches() {
    let _k = kernel_test!();
    let flood = |i: u32| Packet::udp(spoofed(i), server4(), 2000, 5353, &flood_payload(i)).frame();
    // A signature's monitor bit: hits counted, the packet goes on to the
    // limits (and creates its source).
    let mut program = Program::new(&xdp::settings("--mode enforce"));
    let slot = program.add_signature(parse(FLOOD).unwrap(), true);
    assert_eq!(program.run(&flood(1), T0), XDP_PASS);
    let c = program.counters();
    assert_eq!((c.sig_hits(slot), c.get(Counter::DropSignature)), (1, 0));
    assert_eq!(c.get(Counter::NewSources), 1);
    // Monitor mode: counted as a signature drop, passed.
    let mut program = Program::new(&xdp::settings("--mode monitor"));
    program.add_signature(parse(FLOOD).unwrap(), false);
    assert_eq!(program.run(&flood(1), T0), XDP_PASS);
    let c = program.counters();
    assert_eq!(c.get(Counter::DropSignature), 1);
    assert_eq!(c.get(Counter::PassMonitor), 1);
    // An allowlisted source is never dropped by a signature.
    let mut program = Program::new(&xdp::settings("--mode enforce --allow 198.19.0.0/24"));
    program.add_signature(parse(FLOOD).unwrap(), false);
    assert_eq!(
        program.run(&flood(5), T0),
        XDP_PASS,
        "198.19.0.5 is allowed"
    );
    assert_eq!(program.run(&flood(300), T0), XDP_DROP, "198.19.1.44 is not");
}

/// A cookie handshake from `src` to port 80 (armed): its ACK verifies the
/// source.
fn verified_by_handshake(program: &mut Program, src: IpAddr, now: u64) {
    let segment = |flags, seq, ack| {
        Packet::new(
            src,
            server4(),
            L4::Tcp {
                sport: 40000,
                dport: 80,
                flags,
                seq,
                ack,
                options: Vec::new(),
            },
        )
        .frame()
    };
    let (action, synack) = program.run_frame(&segment(TCP_SYN, 7, 0), now);
    assert_eq!(action, XDP_TX, "the cookie SYN-ACK");
    // The cookie: the SYN-ACK's sequence number (Ethernet 14, IPv4 20).
    let cookie = u32::from_be_bytes(synack[38..42].try_into().unwrap());
    let ack = segment(TCP_ACK, 8, cookie.wrapping_add(1));
    assert_eq!(program.run(&ack, now), XDP_PASS, "the handshake's ACK");
    assert_eq!(program.counters().get(Counter::CookieAckValid), 1);
}

/// The contrast is a proven source's admitted new flows only. A client
/// the host's replies alone verified may be one a flood spoofs (its
/// address is no secret): its new flows are sampled as any stranger's.
/// A proven source's over its limit (a flood spoofing it) are not
/// contrast either: the first one the verdict drops is not sampled, the
/// next ones are the attack's.
#[test]
fn a_source_the_host_replied_to_or_over_its_limit_is_no_contrast() {
    let _k = kernel_test!();
    let mut program = sampling_every_new_flow_with("--mode enforce --syn-rate 1 --syn-burst 2");
    program.arm_cookies(80);
    let kinds = |program: &mut Program| -> Vec<u32> {
        program.take_samples().iter().map(|s| s.kind).collect()
    };
    let syn = |src: IpAddr, sport: u16| Packet::tcp(src, server4(), sport, 8080, TCP_SYN).frame();

    // Served: a response's data leaves for it.
    let served = spoofed(7);
    let mut response = Packet::tcp(server4(), served, 8080, 40_000, TCP_ACK).l4_bytes();
    response.extend_from_slice(b"HTTP/1.1 200 OK");
    let response = Packet::new(
        server4(),
        served,
        L4::Raw {
            proto: 6,
            bytes: response,
        },
    );
    program.run_egress(&response.frame(), T0);
    assert!(program.sources()[&source_key4(served)].verified_until_ns > T0);
    assert_eq!(program.run(&syn(served, 1000), T0), XDP_PASS);
    assert_eq!(kinds(&mut program), [SAMPLE_NEW]);

    // Proven by a cookie handshake (whose ACK takes a token): its next
    // SYN is contrast, then it is over its limit.
    let user = spoofed(8);
    verified_by_handshake(&mut program, user, T0);
    assert_eq!(
        kinds(&mut program),
        [SAMPLE_NEW],
        "its SYN, a stranger's then"
    );
    assert_eq!(program.run(&syn(user, 1001), T0), XDP_PASS);
    assert_eq!(kinds(&mut program), [SAMPLE_VERIFIED]);
    assert_eq!(program.run(&syn(user, 1002), T0), XDP_DROP);
    assert!(program.take_samples().is_empty(), "dropped: no contrast");
    for sport in 1003..1006 {
        assert_eq!(program.run(&syn(user, sport), T0), XDP_DROP);
    }
    assert_eq!(kinds(&mut program), [SAMPLE_NEW; 3]);
}

fn source_key4(addr: IpAddr) -> SourceKey {
    let IpAddr::V4(a) = addr else {
        panic!("{addr}: IPv4 only")
    };
    SourceKey::v4(a.octets(), 32)
}

/// Under a flood the sample mask keeps almost every packet from being
/// considered for a sample, and a verified user's few with them. Their
/// new flows are the contrast a signature is checked against, so they are
/// sampled after the verdict (which knows the source is verified) under
/// the contrast budget, mask or not; a stranger's are not.
#[test]
fn a_verified_sources_new_flows_are_contrast_samples_the_mask_does_not_thin() {
    let _k = kernel_test!();
    let mut program = Program::new(&xdp::settings("--mode enforce"));
    program.arm_cookies(80);
    let mut cfg = program.config();
    cfg.sample = SAMPLE_ON;
    cfg.sample_rate = 1_000;
    // No packet passes the mask: a heavy flood's setting, and more.
    cfg.sample_mask = u32::MAX;
    program.set_config(&cfg);
    let user = spoofed(4242);
    verified_by_handshake(&mut program, user, T0);
    assert!(
        program.take_samples().is_empty(),
        "the handshake: no sample"
    );
    let now = T0 + NANOS_PER_SEC;
    for i in 0..20 {
        let stranger = Packet::udp(spoofed(100 + i), server4(), 1000, 53, b"query");
        assert_eq!(program.run(&stranger.frame(), now), XDP_PASS);
    }
    assert!(program.take_samples().is_empty(), "strangers: the mask");
    let flows = [
        Packet::udp(user, server4(), 2000, 53, b"query"),
        Packet::udp(user, server4(), 2001, 53, b"another query"),
        Packet::tcp(user, server4(), 40001, 8080, TCP_SYN),
    ];
    for p in &flows {
        assert_eq!(program.run(&p.frame(), now), XDP_PASS);
    }
    // A known UDP flow's next packet is no new flow: no sample.
    assert_eq!(program.run(&flows[0].frame(), now), XDP_PASS);
    let samples = program.take_samples();
    assert_eq!(samples.len(), flows.len(), "{samples:?}");
    for (s, p) in samples.iter().zip(&flows) {
        assert_eq!(s.kind, SAMPLE_VERIFIED);
        assert_eq!(s.fp.bytes(), userspace_fingerprint(p).bytes());
    }
    // The contrast budget bounds them: this CPU's, a second's.
    cfg.sample_rate = 2;
    program.set_config(&cfg);
    let later = now + NANOS_PER_SEC;
    for i in 0..10 {
        let p = Packet::udp(user, server4(), 3000 + i, 53, b"query");
        assert_eq!(program.run(&p.frame(), later), XDP_PASS);
    }
    assert_eq!(program.take_samples().len(), 2, "the budget: 2 a second");
}
