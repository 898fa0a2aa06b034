//! The XDP SYN-cookie path, run frame by frame through BPF_PROG_TEST_RUN.
//!
//! A SYN to a cookie port must come back as its SYN-ACK (`XDP_TX`), checked
//! here field by field with code of the test's own (header layout,
//! checksums with the pseudo-header); the cookie itself is the kernel's, so
//! it is checked the only way it can be: the handshake's last ACK, built
//! from the SYN-ACK, must pass the kernel's own cookie check in the
//! program, and forged ones must not. SYNs the path cannot take must go the
//! ordinary way, untouched and counted once.
//!
//! Cookies are switched on through the data-plane config, as the controller
//! does (the `cookies` bit and the port's `GUARD_PORTS` entry,
//! `Program::arm_cookies`); the MSS, window scale, TTL and
//! verified time are the settings' defaults (1460/1440, 7, 64, 300 s). The
//! program's limits run on the test clock; the cookie and the SYN-ACK's
//! TSval use the kernel's clocks (a cookie is valid for two minutes, far
//! longer than a test).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_common::{Counter, SourceKey, bucket::NANOS_PER_SEC};
use guard_tests::{
    kernel_test,
    packet::{self, Ext, Frag, L4, Packet, TCP_ACK, TCP_SYN, TPID_8021AD, TPID_8021Q},
    wire::tcp_pseudo_header,
    xdp::{self, Program, XDP_DROP, XDP_PASS, XDP_TX},
};

const SEC: u64 = NANOS_PER_SEC;
/// Tests start the clock well away from zero, as on a booted host.
const T0: u64 = 1_000 * SEC;

const PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40_000;
const SYN_SEQ: u32 = 0x1122_3344;
// Every byte differs from the server's: the SYN-ACK's MACs, swapped, are
// checked byte for byte.
const CLIENT_MAC: [u8; 6] = [0x06, 0x11, 0x22, 0x33, 0x44, 0x55];
const SERVER_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

const TCP_ECE: u8 = 0x40;
const TCP_CWR: u8 = 0x80;

/// TSval low bits of a cookie SYN-ACK (the kernel's encoding): the
/// client's window scale (0xf: none), SACK-permitted, ECN.
const TS_WSCALE_MASK: u32 = 0x0f;
const TS_SACK: u32 = 0x10;
const TS_ECN: u32 = 0x20;
const TS_BITS: u32 = 0x3f;

const CLIENT_TSVAL: [u8; 4] = [0x01, 0x02, 0x03, 0x04];

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn client(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::new(198, 18, 0, 1).into(),
            Self::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        }
    }

    fn server(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::new(198, 18, 0, 2).into(),
            Self::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
        }
    }

    /// A host that never sent a SYN.
    fn stranger(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::new(198, 18, 0, 3).into(),
            Self::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3).into(),
        }
    }

    /// A source on the deny list of [`DENY_FLAGS`].
    fn denied(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::new(198, 19, 9, 1).into(),
            Self::V6 => Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1).into(),
        }
    }

    /// The MSS of a Linux SYN over a 1500-byte link, and the MSS guard's
    /// SYN-ACK advertises (`cookie_mss4`, `cookie_mss6`).
    fn mss(self) -> u16 {
        match self {
            Self::V4 => 1460,
            Self::V6 => 1440,
        }
    }
}

const DENY_FLAGS: &str = "--mode enforce --deny 198.19.9.0/24 --deny 2001:db8:9::/48";

/// What Linux puts on a SYN: MSS, SACK-permitted, timestamps (TSval
/// 0x01020304, TSecr 0), NOP, window scale 7.
fn linux_options(family: Family) -> Vec<u8> {
    let [m0, m1] = family.mss().to_be_bytes();
    let mut o = vec![2, 4, m0, m1, 4, 2, 8, 10];
    o.extend_from_slice(&CLIENT_TSVAL);
    o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

/// Timestamps only, after two NOPs.
fn ts_options() -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&CLIENT_TSVAL);
    o.extend_from_slice(&[0, 0, 0, 0]);
    o
}

/// guard's program (`flags` as for `guard run`) with SYN cookies on for
/// [`PORT`], switched on as the controller does.
fn with_cookies(flags: &str) -> Program {
    let mut program = Program::new(&xdp::settings(flags));
    program.arm_cookies(PORT);
    program
}

/// A TCP segment from the client's side of the connection.
fn segment(src: IpAddr, dst: IpAddr, flags: u8, seq: u32, ack: u32, options: &[u8]) -> Packet {
    Packet::new(
        src,
        dst,
        L4::Tcp {
            sport: CLIENT_PORT,
            dport: PORT,
            flags,
            seq,
            ack,
            options: options.to_vec(),
        },
    )
    .macs(CLIENT_MAC, SERVER_MAC)
}

/// A SYN from the client to the cookie port.
fn syn(family: Family, options: &[u8]) -> Packet {
    segment(
        family.client(),
        family.server(),
        TCP_SYN,
        SYN_SEQ,
        0,
        options,
    )
}

/// The client's ACK completing the handshake `synack` answers, from `src`
/// (the client, or a forger), acknowledging `ack`, echoing the SYN-ACK's
/// TSval.
fn client_ack(syn: &Packet, synack: &SynAck, src: IpAddr, ack: u32) -> Packet {
    let mut options = vec![1, 1, 8, 10, 0x01, 0x02, 0x03, 0x05];
    options.extend_from_slice(&synack.tsval().to_be_bytes());
    segment(
        src,
        syn.dst,
        TCP_ACK,
        SYN_SEQ.wrapping_add(1),
        ack,
        &options,
    )
}

/// `syn` with `data` after its TCP header, checksummed (the packet builder
/// puts no data on TCP).
fn with_data(syn: &Packet, data: &[u8]) -> Packet {
    let mut bytes = syn.l4_bytes();
    bytes.extend_from_slice(data);
    bytes[16..18].fill(0);
    let sum = packet::checksum(&[&tcp_pseudo_header(syn.src, syn.dst, bytes.len()), &bytes]);
    bytes[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut p = syn.clone();
    p.l4 = L4::Raw { proto: 6, bytes };
    p
}

/// `frame` with the byte at `at` flipped.
fn corrupted(mut frame: Vec<u8>, at: usize) -> Vec<u8> {
    frame[at] ^= 0xff;
    frame
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(b, at))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_else(|| panic!("{N} bytes at {at} of {}: {b:02x?}", b.len()))
}

/// A reply frame, split at its headers.
#[derive(Debug)]
struct SynAck {
    frame: Vec<u8>,
    /// Where the IP header starts (after the VLAN tags and EtherType).
    l3: usize,
    /// Where the TCP header starts.
    l4: usize,
}

/// Splits `frame` at its headers: Ethernet, any 802.1Q/802.1ad tags, IPv4
/// (IHL as given) or IPv6, TCP to the end of the frame.
fn parse_synack(frame: Vec<u8>) -> SynAck {
    let mut l3 = 14;
    let mut ethertype = be16(&frame, 12);
    while ethertype == TPID_8021Q || ethertype == TPID_8021AD {
        ethertype = be16(&frame, l3 + 2);
        l3 += 4;
    }
    let ip_hlen = match ethertype {
        0x0800 => usize::from(array::<1>(&frame, l3)[0] & 0x0f) * 4,
        0x86dd => 40,
        other => panic!("EtherType {other:#06x} is not IP: {frame:02x?}"),
    };
    let l4 = l3 + ip_hlen;
    assert!(
        frame.len() >= l4 + 20,
        "no room for a TCP header: {frame:02x?}"
    );
    SynAck { frame, l3, l4 }
}

impl SynAck {
    fn ip(&self) -> &[u8] {
        &self.frame[self.l3..self.l4]
    }

    /// The whole TCP segment: the header to the end of the frame.
    fn tcp(&self) -> &[u8] {
        &self.frame[self.l4..]
    }

    fn seq(&self) -> u32 {
        be32(self.tcp(), 4)
    }

    fn flags(&self) -> u8 {
        self.tcp()[13]
    }

    fn doff(&self) -> usize {
        usize::from(self.tcp()[12] >> 4)
    }

    fn options(&self) -> &[u8] {
        let tcp = self.tcp();
        &tcp[20..(self.doff() * 4).clamp(20, tcp.len())]
    }

    /// Our TSval: the timestamp option follows the MSS and two bytes of
    /// SACK-permitted or NOPs.
    fn tsval(&self) -> u32 {
        let o = self.options();
        assert_eq!(
            o.get(6..8),
            Some(&[8, 10][..]),
            "no timestamp option after MSS and SACK/NOPs: {o:?}"
        );
        be32(o, 8)
    }
}

/// Runs `syn` and checks it came back as its SYN-ACK: every field but the
/// cookie (the sequence number) and the options after the MSS, which the
/// caller checks; `flags` are the TCP flags expected.
fn answer(program: &mut Program, syn: &Packet, flags: u8, now: u64) -> SynAck {
    answer_frame(program, syn, &syn.frame(), flags, now)
}

/// [`answer`], for `sent`: `syn`'s frame, perhaps padded.
fn answer_frame(program: &mut Program, syn: &Packet, sent: &[u8], flags: u8, now: u64) -> SynAck {
    let (action, out) = program.run_frame(sent, now);
    assert_eq!(
        action, XDP_TX,
        "SYN not answered (1 drop, 2 pass, 3 tx): {sent:02x?}"
    );
    let s = parse_synack(out);
    let f = &s.frame;

    // Ethernet: back where it came from, tags and EtherType as they were.
    assert_eq!(f[0..6], syn.src_mac, "destination MAC");
    assert_eq!(f[6..12], syn.dst_mac, "source MAC");
    assert_eq!(
        f[12..s.l3],
        sent[12..s.l3],
        "VLAN tags and EtherType must be kept byte for byte"
    );

    let (ip, tcp) = (s.ip(), s.tcp());
    let tcp_len = tcp.len();
    assert_eq!(tcp_len, s.doff() * 4, "bytes after the TCP header");
    match (syn.src, syn.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            assert_eq!(ip.len(), 20, "IHL");
            assert_eq!(ip[0], 0x45, "version and IHL");
            assert_eq!(ip[1], 0, "TOS");
            assert_eq!(usize::from(be16(ip, 2)), 20 + tcp_len, "total length");
            assert_eq!(be16(ip, 4), 0, "identification");
            assert_eq!(be16(ip, 6), 0x4000, "flags and fragment offset: DF");
            assert_eq!(ip[8], 64, "TTL");
            assert_eq!(ip[9], 6, "protocol");
            assert_eq!(packet::checksum(&[ip]), 0, "IPv4 header checksum");
            assert_eq!(ip[12..16], dst.octets(), "source address");
            assert_eq!(ip[16..20], src.octets(), "destination address");
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            assert_eq!(be32(ip, 0), 0x6000_0000, "version, class, flow label");
            assert_eq!(usize::from(be16(ip, 4)), tcp_len, "payload length");
            assert_eq!(ip[6], 6, "next header");
            assert_eq!(ip[7], 64, "hop limit");
            assert_eq!(ip[8..24], dst.octets(), "source address");
            assert_eq!(ip[24..40], src.octets(), "destination address");
        }
        _ => panic!("mixed address families"),
    }

    let L4::Tcp {
        sport, dport, seq, ..
    } = syn.l4
    else {
        panic!("not a TCP SYN: {syn:?}");
    };
    assert_eq!(be16(tcp, 0), dport, "source port");
    assert_eq!(be16(tcp, 2), sport, "destination port");
    assert_eq!(be32(tcp, 8), seq.wrapping_add(1), "ACK number");
    assert_eq!(tcp[12] & 0x0f, 0, "reserved bits");
    assert_eq!(
        s.flags(),
        flags,
        "flags {:#04x}, want {flags:#04x}",
        s.flags()
    );
    assert_eq!(be16(tcp, 14), 0, "window");
    assert_eq!(be16(tcp, 18), 0, "urgent pointer");
    assert_eq!(
        packet::checksum(&[&tcp_pseudo_header(syn.dst, syn.src, tcp_len), tcp]),
        0,
        "TCP checksum: {tcp:02x?}"
    );
    let mss = if syn.src.is_ipv4() { 1460u16 } else { 1440 };
    let [m0, m1] = mss.to_be_bytes();
    assert_eq!(s.options().get(..4), Some(&[2, 4, m0, m1][..]), "MSS first");
    s
}

/// The options of a SYN-ACK answering Linux's SYN: MSS, SACK-permitted,
/// timestamps (ours, then the client's echoed), NOP, window scale 7.
fn linux_synack_options(mss: u16, tsval: u32) -> Vec<u8> {
    let [m0, m1] = mss.to_be_bytes();
    let mut o = vec![2, 4, m0, m1, 4, 2, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&CLIENT_TSVAL);
    o.extend_from_slice(&[1, 3, 3, 7]);
    o
}

/// Asserts the counters named, listing every one that differs.
fn assert_counters(program: &Program, want: &[(Counter, u64)]) {
    let got = program.counters();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(c, n)| got.get(*c) != *n)
        .map(|(c, n)| format!("{} = {} (want {n})", c.name(), got.get(*c)))
        .collect();
    assert!(wrong.is_empty(), "counters: {}", wrong.join(", "));
}

/// The SYN-ACK to Linux's SYN, with `vlans` (TPIDs, outermost first).
fn linux_syn_is_answered(family: Family, vlans: &[u16]) {
    let mut program = with_cookies("--mode enforce");
    let mut syn = syn(family, &linux_options(family));
    for tpid in vlans {
        syn = syn.vlan(*tpid);
    }
    let s = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);

    assert_eq!(s.doff(), 10, "data offset");
    let ip_hlen = if syn.src.is_ipv4() { 20 } else { 40 };
    assert_eq!(s.frame.len(), 14 + 4 * vlans.len() + ip_hlen + 40);
    let tsval = s.tsval();
    assert_eq!(
        tsval & TS_BITS,
        7 | TS_SACK,
        "TSval {tsval:#010x}: low bits must hold wscale 7 and SACK"
    );
    assert_eq!(s.options(), linux_synack_options(family.mss(), tsval));
    assert_counters(
        &program,
        &[
            (Counter::CookieSynAck, 1),
            (Counter::NewFlows, 1),
            (Counter::PassLimits, 0),
        ],
    );
    assert!(
        program.sources().is_empty(),
        "a SYN answered with a cookie must leave no source state"
    );
}

#[test]
fn an_ipv4_syn_with_linux_options_is_answered_with_a_cookie_synack() {
    let _kernel = kernel_test!();
    linux_syn_is_answered(Family::V4, &[]);
}

#[test]
fn an_ipv6_syn_with_linux_options_is_answered_with_a_cookie_synack() {
    let _kernel = kernel_test!();
    linux_syn_is_answered(Family::V6, &[]);
}

#[test]
fn the_synack_keeps_one_or_two_vlan_tags() {
    let _kernel = kernel_test!();
    for family in [Family::V4, Family::V6] {
        linux_syn_is_answered(family, &[TPID_8021Q]);
        linux_syn_is_answered(family, &[TPID_8021AD, TPID_8021Q]);
    }
}

#[test]
fn a_syn_without_options_gets_only_the_mss_and_the_frame_grows() {
    let _kernel = kernel_test!();
    let mut program = with_cookies("--mode enforce");
    let syn = syn(Family::V4, &[]);
    assert_eq!(syn.frame().len(), 14 + 20 + 20);
    let s = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
    assert_eq!(s.doff(), 6, "data offset");
    assert_eq!(s.options(), [2, 4, 0x05, 0xb4]);
    assert_eq!(s.frame.len(), 14 + 20 + 24);

    // On the wire the same SYN comes padded to Ethernet's 60 bytes: the
    // reply is cut to its own length, padding gone.
    let mut padded = syn.frame();
    padded.resize(60, 0);
    let (action, out) = program.run_frame(&padded, T0);
    assert_eq!(action, XDP_TX, "a padded SYN (1 drop, 2 pass, 3 tx)");
    assert_eq!(out.len(), 14 + 20 + 24, "{out:02x?}");
    assert_eq!(out[..34], s.frame[..34], "the same reply's headers");
    assert_counters(&program, &[(Counter::CookieSynAck, 2)]);
}

/// The longest TCP header, the program's whole read of it: Linux's
/// options, then twenty NOPs (a layout only the option walk reads), behind
/// two VLAN tags. The frame needs no room added; the reply is Linux's,
/// and the frame is cut to it.
#[test]
fn a_syn_with_the_longest_tcp_header_is_answered_and_the_frame_cut() {
    let _kernel = kernel_test!();
    for family in [Family::V4, Family::V6] {
        let mut program = with_cookies("--mode enforce");
        let mut options = linux_options(family);
        options.resize(40, 1);
        let syn = syn(family, &options).vlan(TPID_8021AD).vlan(TPID_8021Q);
        let ip_hlen = if syn.src.is_ipv4() { 20 } else { 40 };
        assert_eq!(syn.frame().len(), 14 + 8 + ip_hlen + 60);
        let s = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
        assert_eq!(s.doff(), 10, "{family:?}: data offset");
        assert_eq!(s.frame.len(), 14 + 8 + ip_hlen + 40, "{family:?}");
        assert_eq!(
            s.options(),
            linux_synack_options(family.mss(), s.tsval()),
            "{family:?}"
        );
        assert_counters(&program, &[(Counter::CookieSynAck, 1)]);
    }
}

/// Every TCP header length a SYN can have, both families, as it comes and
/// padded with 16 bytes after it: the program reads a header up to the
/// reply's longest (40 bytes) as that many, and a longer one as 60,
/// growing the frame where it is shorter; the reply is Linux's where the
/// SYN carries Linux's options, the MSS alone otherwise, and the frame
/// ends where the reply does.
#[test]
fn every_header_length_is_answered_with_the_same_reply_and_the_frame_fitted() {
    let _kernel = kernel_test!();
    let mut program = with_cookies("--mode enforce");
    for family in [Family::V4, Family::V6] {
        let ip_hlen = if family.client().is_ipv4() { 20 } else { 40 };
        let mss_only = [&[2, 4][..], &family.mss().to_be_bytes()].concat();
        for options_len in (0..=40).step_by(4) {
            // Linux's options where they fit, NOPs after; MSS and NOPs in
            // a shorter block.
            let mut options = if options_len >= 20 {
                linux_options(family)
            } else if options_len >= 4 {
                mss_only.clone()
            } else {
                Vec::new()
            };
            options.resize(options_len, 1);
            let syn = syn(family, &options);
            for pad in [0, 16] {
                let mut frame = syn.frame();
                frame.resize(frame.len() + pad, 0);
                let what = format!("{family:?}, {options_len} bytes of options, {pad} of padding");
                let s = answer_frame(&mut program, &syn, &frame, TCP_SYN | TCP_ACK, T0);
                let want = if options_len >= 20 {
                    linux_synack_options(family.mss(), s.tsval())
                } else {
                    mss_only.clone()
                };
                assert_eq!(s.options(), want, "{what}: options");
                assert_eq!(
                    s.frame.len(),
                    14 + ip_hlen + 20 + want.len(),
                    "{what}: frame length"
                );
            }
        }
    }
}

#[test]
fn a_syn_with_timestamps_only_gets_nops_and_no_window_scale() {
    let _kernel = kernel_test!();
    let mut program = with_cookies("--mode enforce");
    let s = answer(
        &mut program,
        &syn(Family::V4, &ts_options()),
        TCP_SYN | TCP_ACK,
        T0,
    );
    assert_eq!(s.doff(), 9, "data offset");
    assert_eq!(s.frame.len(), 14 + 20 + 36);
    let tsval = s.tsval();
    assert_eq!(
        tsval & TS_BITS,
        TS_WSCALE_MASK,
        "TSval {tsval:#010x}: low bits must say no window scale, no SACK, no ECN"
    );
    let mut want = vec![2, 4, 0x05, 0xb4, 1, 1, 8, 10];
    want.extend_from_slice(&tsval.to_be_bytes());
    want.extend_from_slice(&CLIENT_TSVAL);
    assert_eq!(s.options(), want);
}

#[test]
fn without_timestamps_neither_sack_nor_window_scale_is_offered() {
    let _kernel = kernel_test!();
    let mut program = with_cookies("--mode enforce");
    // MSS, SACK-permitted, NOP, window scale 7: no timestamps to carry them.
    let options = [2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7];
    let s = answer(
        &mut program,
        &syn(Family::V4, &options),
        TCP_SYN | TCP_ACK,
        T0,
    );
    assert_eq!(s.doff(), 6, "data offset");
    assert_eq!(s.options(), [2, 4, 0x05, 0xb4]);
}

#[test]
fn ecn_setup_is_accepted_only_with_timestamps() {
    let _kernel = kernel_test!();
    let mut program = with_cookies("--mode enforce");
    let mut ecn_syn = syn(Family::V4, &linux_options(Family::V4));
    if let L4::Tcp { flags, .. } = &mut ecn_syn.l4 {
        *flags |= TCP_ECE | TCP_CWR;
    }
    let s = answer(&mut program, &ecn_syn, TCP_SYN | TCP_ACK | TCP_ECE, T0);
    let tsval = s.tsval();
    assert_eq!(tsval & TS_BITS, 7 | TS_SACK | TS_ECN, "TSval {tsval:#010x}");
    assert_eq!(s.options(), linux_synack_options(1460, tsval));

    // Without timestamps the cookie has nowhere to keep it.
    let mut bare = syn(Family::V4, &[2, 4, 0x05, 0xb4]);
    if let L4::Tcp { flags, .. } = &mut bare.l4 {
        *flags |= TCP_ECE | TCP_CWR;
    }
    let s = answer(&mut program, &bare, TCP_SYN | TCP_ACK, T0);
    assert_eq!(s.options(), [2, 4, 0x05, 0xb4]);
}

/// The program does not check a SYN's TCP checksum (cookie.rs: a local
/// sender leaves it to offload, so XDP sees only a partial sum); the
/// SYN-ACK's own checksum is computed afresh, and is right.
#[test]
fn a_syn_with_a_wrong_tcp_checksum_is_answered_all_the_same() {
    let _kernel = kernel_test!();
    for family in [Family::V4, Family::V6] {
        let mut program = with_cookies("--mode enforce");
        let mut syn = syn(family, &linux_options(family));
        // The TCP checksum, as the builder computed it, plus one.
        let mut bytes = syn.l4_bytes();
        let sum = be16(&bytes, 16).wrapping_add(1);
        bytes[16..18].copy_from_slice(&sum.to_be_bytes());
        syn.l4 = L4::Raw { proto: 6, bytes };
        let (action, out) = program.run_frame(&syn.frame(), T0);
        assert_eq!(action, XDP_TX, "{family:?} (1 drop, 2 pass, 3 tx)");
        let s = parse_synack(out);
        let (src, dst) = (family.server(), family.client());
        assert_eq!(
            packet::checksum(&[&tcp_pseudo_header(src, dst, s.tcp().len()), s.tcp()]),
            0,
            "{family:?}: the SYN-ACK's TCP checksum"
        );
        assert_eq!(s.options(), linux_synack_options(family.mss(), s.tsval()));
        assert_counters(
            &program,
            &[(Counter::CookieSynAck, 1), (Counter::NewFlows, 1)],
        );
    }
}

/// A SYN the cookie path must leave alone, and how guard is set up.
struct Fallback {
    what: &'static str,
    flags: &'static str,
    cookies: bool,
    frame: Vec<u8>,
    /// Counted in `cookie_unanswered`: to an armed port in enforce mode,
    /// whose headers the path cannot answer (a fragment is not looked up).
    unanswered: bool,
}

/// SYNs the cookie path cannot take (their headers) or must not take (the
/// port, the config): each goes the ordinary way.
fn fallbacks() -> Vec<Fallback> {
    let enforce = "--mode enforce";
    let v4 = syn(Family::V4, &linux_options(Family::V4));
    let v6 = syn(Family::V6, &linux_options(Family::V6));
    let mut other_port = v4.clone();
    if let L4::Tcp { dport, .. } = &mut other_port.l4 {
        *dport = PORT + 1;
    }
    let mut ip_options = v4.clone();
    ip_options.ipv4_options = vec![1, 1, 1, 0];
    let first_fragment = v4.clone().fragment(Frag {
        offset: 0,
        more: true,
        len: 40,
    });
    let case = |what, flags, cookies, frame| Fallback {
        what,
        flags,
        cookies,
        frame,
        unanswered: false,
    };
    let unanswered = |what, frame| Fallback {
        unanswered: true,
        ..case(what, enforce, true, frame)
    };
    vec![
        case(
            "to a port without cookies",
            enforce,
            true,
            other_port.frame(),
        ),
        case(
            "to a listening port whose cookies are off",
            enforce,
            false,
            v4.frame(),
        ),
        case(
            "in monitor mode with cookies on",
            "--mode monitor",
            true,
            v4.frame(),
        ),
        unanswered(
            "with a corrupted IPv4 header checksum",
            corrupted(v4.frame(), 14 + 10),
        ),
        unanswered("with 4 bytes of data", with_data(&v4, b"data").frame()),
        unanswered(
            "with 4 bytes of data over IPv6",
            with_data(&v6, b"data").frame(),
        ),
        unanswered("with IPv4 options", ip_options.frame()),
        unanswered(
            "with an IPv6 extension header",
            v6.clone().ext(Ext::DestOpts).frame(),
        ),
        case("in a first fragment", enforce, true, first_fragment.frame()),
    ]
}

#[test]
fn syns_the_cookie_path_cannot_take_go_the_ordinary_way() {
    let _kernel = kernel_test!();
    let mut wrong = Vec::new();
    for c in &fallbacks() {
        let mut program = with_cookies(c.flags);
        if !c.cookies {
            program.disarm_cookies(PORT);
        }
        let (action, out) = program.run_frame(&c.frame, T0);
        let counters = program.counters();
        let got = (
            action,
            out == c.frame,
            counters.get(Counter::CookieSynAck),
            counters.get(Counter::NewFlows),
            counters.get(Counter::PassLimits),
            counters.get(Counter::CookieUnanswered),
        );
        // Passed untouched, counted once as a new flow, admitted by limits.
        let unanswered = u64::from(c.unanswered);
        if got != (XDP_PASS, true, 0, 1, 1, unanswered) {
            wrong.push(format!(
                "a SYN {}: action {action} (2 pass), frame untouched {}, cookie_synack {}, new_flows {} (want 1), pass_limits {} (want 1), cookie_unanswered {} (want {unanswered})",
                c.what, got.1, got.2, got.3, got.4, got.5
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The client's ACK to the SYN-ACK passes to the kernel and verifies its
/// source.
fn the_last_ack_passes(family: Family) {
    let mut program = with_cookies("--mode enforce");
    let syn = syn(family, &linux_options(family));
    let synack = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
    let ack = client_ack(&syn, &synack, family.client(), synack.seq().wrapping_add(1)).frame();
    let now = T0 + SEC;
    let (action, out) = program.run_frame(&ack, now);
    assert_eq!(action, XDP_PASS, "the handshake's ACK: {ack:02x?}");
    assert_eq!(out, ack, "an ACK passes untouched");
    assert_counters(
        &program,
        &[
            (Counter::CookieSynAck, 1),
            (Counter::CookieAckValid, 1),
            (Counter::PassLimits, 1),
            (Counter::DropCookieInvalid, 0),
        ],
    );
    let cfg = program.config();
    let key = match family.client() {
        IpAddr::V4(a) => SourceKey::v4(a.octets(), cfg.source_prefix_v4),
        IpAddr::V6(a) => SourceKey::v6(a.octets(), cfg.source_prefix_v6),
    };
    let sources = program.sources();
    let state = sources
        .get(&key)
        .unwrap_or_else(|| panic!("no source entry for {key:?}: {sources:?}"));
    assert!(state.verified_until_ns > 0, "not verified: {state:?}");
    assert_eq!(
        state.verified_until_ns,
        now + cfg.verified_ns,
        "verified for the configured time from the ACK"
    );
    assert_eq!(state.passed, 1, "{state:?}");
}

/// ACKs that answer no SYN-ACK are dropped and leave no state.
fn forged_acks_are_dropped(family: Family) {
    let mut program = with_cookies("--mode enforce");
    let syn = syn(family, &linux_options(family));
    let synack = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
    let cookie = synack.seq();
    // The cookie's low bits index the kernel's MSS table (4 entries), so an
    // ACK a little off can still be a valid cookie for another MSS (cookie +
    // 2 is, for an IPv6 SYN with MSS 1440, index 2 of 4): 1 + 4 past the
    // cookie is off the table whatever the SYN's MSS was.
    let forgeries = [
        (
            "an ACK number 4 past the cookie's",
            family.client(),
            cookie.wrapping_add(1 + 4),
        ),
        (
            "an arbitrary ACK number",
            family.client(),
            cookie ^ 0x5a5a_5a5a,
        ),
        (
            "the right ACK number from another source",
            family.stranger(),
            cookie.wrapping_add(1),
        ),
    ];
    for (n, (what, src, ack)) in (1..).zip(forgeries) {
        let frame = client_ack(&syn, &synack, src, ack).frame();
        let (action, out) = program.run_frame(&frame, T0 + SEC);
        assert_eq!(action, XDP_DROP, "{what} (1 drop, 2 pass)");
        assert_eq!(out, frame, "{what}: the frame must be left as it was");
        assert_counters(
            &program,
            &[
                (Counter::DropCookieInvalid, n),
                (Counter::CookieAckValid, 0),
                (Counter::PassLimits, 0),
            ],
        );
    }
    assert!(
        program.sources().is_empty(),
        "forged ACKs must leave no source state"
    );
}

#[test]
fn the_last_ack_of_an_ipv4_cookie_handshake_passes_and_verifies_its_source() {
    let _kernel = kernel_test!();
    the_last_ack_passes(Family::V4);
}

#[test]
fn the_last_ack_of_an_ipv6_cookie_handshake_passes_and_verifies_its_source() {
    let _kernel = kernel_test!();
    the_last_ack_passes(Family::V6);
}

#[test]
fn forged_ipv4_acks_to_a_cookie_port_are_dropped() {
    let _kernel = kernel_test!();
    forged_acks_are_dropped(Family::V4);
}

#[test]
fn forged_ipv6_acks_to_a_cookie_port_are_dropped() {
    let _kernel = kernel_test!();
    forged_acks_are_dropped(Family::V6);
}

#[test]
fn a_denylisted_source_gets_no_synack() {
    let _kernel = kernel_test!();
    for family in [Family::V4, Family::V6] {
        let mut program = with_cookies(DENY_FLAGS);
        let frame = segment(
            family.denied(),
            family.server(),
            TCP_SYN,
            SYN_SEQ,
            0,
            &linux_options(family),
        )
        .frame();
        let (action, out) = program.run_frame(&frame, T0);
        assert_eq!(action, XDP_DROP, "{family:?} (1 drop, 2 pass, 3 tx)");
        assert_eq!(out, frame, "{family:?}: no SYN-ACK may be written");
        assert_counters(
            &program,
            &[
                (Counter::DropDenylist, 1),
                (Counter::CookieSynAck, 0),
                (Counter::NewFlows, 1),
            ],
        );
    }
}

/// A cookie handshake's ACK the limits drop makes no connection, and the
/// client, which counts it made, would wait on one that never comes: it
/// gets a bare RST at the sequence number it acknowledged (RFC 9293), its
/// ports and addresses swapped. The cookie proves the address, so this is
/// no reflector, with or without `--reject rst`. The first handshake
/// passes; each of the `refused` after it, in the same instant, gets a
/// RST (the cookie path keeps no state: every SYN is answered).
fn a_dropped_ack_gets_a_rst(family: Family, flags: &str, refused: usize, want: &[(Counter, u64)]) {
    let mut program = with_cookies(flags);
    let syn = syn(family, &linux_options(family));
    let synack = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
    let ack = client_ack(&syn, &synack, family.client(), synack.seq().wrapping_add(1));
    assert_eq!(
        program.run_frame(&ack.frame(), T0).0,
        XDP_PASS,
        "the first connection"
    );

    for n in 1..=refused {
        let synack = answer(&mut program, &syn, TCP_SYN | TCP_ACK, T0);
        let acked = synack.seq().wrapping_add(1);
        let ack = client_ack(&syn, &synack, family.client(), acked).frame();
        let (action, out) = program.run_frame(&ack, T0);
        assert_eq!(action, XDP_TX, "refused ACK {n}: {ack:02x?}");
        let rst = parse_synack(out);
        let tcp = &rst.frame[rst.l4..];
        assert_eq!(tcp.len(), 20, "a bare TCP header: {tcp:02x?}");
        assert_eq!(tcp[13], 0x04, "RST alone");
        assert_eq!(
            be32(tcp, 4),
            acked,
            "at the sequence number the ACK acknowledged"
        );
        assert_eq!(be32(tcp, 8), 0, "acknowledging nothing");
        assert_eq!((be16(tcp, 0), be16(tcp, 2)), (PORT, CLIENT_PORT));
        assert_eq!(rst.frame[0..6], ack[6..12], "back to the client's MAC");
        assert_eq!(rst.frame[6..12], ack[0..6], "from the server's MAC");
        let csum = packet::checksum(&[
            &tcp_pseudo_header(family.server(), family.client(), tcp.len()),
            tcp,
        ]);
        assert_eq!(csum, 0, "the TCP checksum: {tcp:02x?}");
    }
    assert_counters(&program, want);
}

/// The source's own SYN limit.
fn an_ack_over_the_limit_gets_a_rst(family: Family) {
    a_dropped_ack_gets_a_rst(
        family,
        "--mode enforce --source-limits always --syn-rate 1 --syn-burst 1 --ban-threshold 0",
        1,
        &[
            (Counter::CookieAckValid, 2),
            (Counter::PassLimits, 1),
            (Counter::DropSourceLimit, 1),
            (Counter::RstSent, 1),
        ],
    );
}

#[test]
fn an_ipv4_cookie_ack_over_its_sources_limit_gets_a_rst() {
    let _kernel = kernel_test!();
    an_ack_over_the_limit_gets_a_rst(Family::V4);
}

#[test]
fn an_ipv6_cookie_ack_over_its_sources_limit_gets_a_rst() {
    let _kernel = kernel_test!();
    an_ack_over_the_limit_gets_a_rst(Family::V6);
}

/// A client whose address a flood named gets banned with it; a cookie
/// handshake proves the client real but not innocent, so the ban holds,
/// and the client is refused at once rather than left waiting.
#[test]
fn a_banned_sources_cookie_ack_gets_a_rst() {
    let _kernel = kernel_test!();
    a_dropped_ack_gets_a_rst(
        Family::V4,
        "--mode enforce --source-limits always --syn-rate 1 --syn-burst 1 --ban-threshold 1",
        2,
        &[
            (Counter::CookieAckValid, 3),
            (Counter::PassLimits, 1),
            (Counter::DropSourceLimit, 1),
            (Counter::DropBanned, 1),
            (Counter::RstSent, 2),
        ],
    );
}

#[test]
fn a_cookie_ack_over_its_prefixs_limit_gets_a_rst() {
    let _kernel = kernel_test!();
    a_dropped_ack_gets_a_rst(
        Family::V6,
        "--mode enforce --source-limits always --prefix-syn-rate 1 --prefix-syn-burst 1 \
         --ban-threshold 0",
        1,
        &[
            (Counter::CookieAckValid, 2),
            (Counter::PassLimits, 1),
            (Counter::DropPrefixLimit, 1),
            (Counter::RstSent, 1),
        ],
    );
}
