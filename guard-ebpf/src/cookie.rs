//! SYN cookies at XDP speed, for the TCP ports the controller protects
//! while a random-source SYN flood is under way.
//!
//! A SYN is answered here: the kernel computes the cookie with its own
//! secret (`bpf_tcp_raw_gen_syncookie_*`), this module turns the frame into
//! the SYN-ACK in place and sends it back out (`XDP_TX`). The kernel never
//! sees the SYN, so conntrack makes no entry for it. The client's ACK goes
//! to the kernel, where nftables' SYNPROXY (installed by guard) checks the
//! cookie again and opens the connection to the real server. Here the ACK
//! is only screened, cheaply: an ACK of a connection the kernel knows (a
//! socket other than the listener) passes; otherwise its cookie must be
//! valid, or it is dropped before it costs the stack anything.
//!
//! Only segments for this host: one it routes on to another machine (a
//! routed container's or pod's port that the host listens on too) is not
//! answered or screened here (`route.rs`), and goes the ordinary way.
//!
//! Only plain headers take this path: IPv4 without options, IPv6 without
//! extension headers, no fragments, a SYN without payload. Anything else
//! falls back to the ordinary verdict, and to SYNPROXY in the kernel.
//!
//! The headers are copied into a per-CPU scratch map value, not the stack:
//! together they would pass the 512 bytes a BPF stack may hold, and map
//! memory needs no zeroing (a `memset` the program could not call). They
//! are copied, and the reply written back, in 8-byte words straight from
//! and to the packet (`packet::Span`), not by the helpers that copy packet
//! bytes: those cost a call and a copy each, four per SYN-ACK.

use aya_ebpf::{
    bindings::{
        bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2,
        xdp_action::{XDP_DROP, XDP_TX},
    },
    helpers::{
        bpf_csum_diff, bpf_loop, bpf_sk_release, bpf_skc_lookup_tcp,
        bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6,
        bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6,
    },
    programs::XdpContext,
};
use guard_common::{
    DataplaneConfig,
    cookie::{
        OptionWalk, SYNACK_MAX_OPTIONS, SynOptions, TCP_MAX_HLEN, cookie_tsval, csum_fold,
        csum_words, linux_syn_options, write_synack_options,
    },
    dissect::{
        IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_FLAG_ACK, TCP_FLAG_CWR, TCP_FLAG_ECE, TCP_FLAG_RST,
        TCP_FLAG_SYN, TCP_MIN_HLEN,
    },
    key::{AF_INET, addr_words},
};

use aya_ebpf::cty::c_void;

use crate::{
    dissect::{F_FRAGMENT, Headers},
    maps::{SCRATCH, Scratch},
    packet::{self, Span, Words, load},
    route,
};

/// `sk_state` values (include/net/tcp_states.h) of sockets whose 4-tuple
/// a sender can name without having received anything from this host:
/// our own connection attempt, a child before its handshake completed, the
/// listener, and a request socket (the SYN alone made it).
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
const TCP_LISTEN: u32 = 10;
const TCP_NEW_SYN_RECV: u32 = 12;
/// `BPF_F_CURRENT_NETNS`: -1 as a 32-bit value, the lookup then uses the
/// namespace of the receiving device.
const CURRENT_NETNS: u64 = 0xffff_ffff;

/// A TCP packet that may take the cookie path.
pub struct Tcp {
    pub v4: bool,
    pub flags: u8,
    /// TCP header length (doff * 4).
    pub hlen: usize,
    /// TCP segment length (IP payload).
    pub seg_len: usize,
}

/// The TCP packet `h` describes, if its headers are plain enough for the
/// cookie path.
#[inline(always)]
pub fn tcp(ctx: &XdpContext, h: &Headers) -> Option<Tcp> {
    if h.flags & F_FRAGMENT != 0 {
        return None;
    }
    let v4 = h.family == AF_INET;
    let (ip_len, seg_len) = if v4 {
        let ip = load::<[u8; 4]>(ctx, h.l3)?;
        if ip[0] != 0x45 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        (IPV4_HLEN, total.checked_sub(IPV4_HLEN)?)
    } else {
        let ip = load::<[u8; 8]>(ctx, h.l3)?;
        (IPV6_HLEN, usize::from(u16::from_be_bytes([ip[4], ip[5]])))
    };
    if h.l4 != h.l3 + ip_len {
        return None;
    }
    // Data offset and flags.
    let t = load::<[u8; 2]>(ctx, h.l4 + 12)?;
    Some(Tcp {
        v4,
        flags: t[1],
        hlen: usize::from(t[0] >> 4) * 4,
        seg_len,
    })
}

/// This CPU's scratch space.
#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: a per-CPU map value; XDP runs without preemption, so nothing
    // else uses it while this program does.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Writes one byte. Volatile, so that LLVM does not turn a loop of these
/// into a `memcpy` or `memset` call, which a BPF program cannot make.
#[inline(always)]
fn put(buf: &mut [u8], i: usize, v: u8) {
    if let Some(b) = buf.get_mut(i) {
        // SAFETY: a valid, exclusive reference.
        unsafe { core::ptr::write_volatile(b, v) };
    }
}

/// Answers a SYN with a SYN-ACK carrying a cookie. `None` when the SYN
/// cannot take this path (it then goes the ordinary way, unchanged).
///
/// The SYN's TCP header is read whole as one of two lengths, the reply's
/// longest ([`REPLY_TCP`], which Linux's, Windows' and an option-less
/// SYN's fit) or the longest there is: where the frame is shorter it
/// first grows (as xdp_synproxy's does), which also leaves room for the
/// reply; the frame is cut to the reply at the end. A Linux SYN is as
/// long as its reply: answered in place, it is neither grown nor cut
/// (each a helper call, the growth cleared byte by byte).
#[inline(always)]
pub fn answer_syn(ctx: &XdpContext, h: &Headers, t: &Tcp, cfg: &DataplaneConfig) -> Option<u32> {
    // Data on a SYN (TCP Fast Open) would need its checksum summed too;
    // the kernel's SYNPROXY handles those.
    if t.seg_len != t.hlen || t.hlen < TCP_MIN_HLEN || t.hlen > TCP_MAX_HLEN {
        return None;
    }
    let sc = scratch()?;
    let long = t.hlen > REPLY_TCP;
    let room = h.l4 + if long { TCP_MAX_HLEN } else { REPLY_TCP };
    let came = packet::len(ctx);
    let grown = came < room;
    if grown && !packet::set_len(ctx, room) {
        return None;
    }
    let built = if t.v4 {
        synack_in::<IPV4_HLEN>(ctx, h, sc, t.hlen, long, cfg.cookie_mss4, cfg)
    } else {
        synack_in::<IPV6_HLEN>(ctx, h, sc, t.hlen, long, cfg.cookie_mss6, cfg)
    };
    let Some(l34_len) = built else {
        // Nothing was written: the frame shrinks back to the SYN as it came.
        if grown {
            let _ = packet::set_len(ctx, came);
        }
        return None;
    };
    // The frame holds the TCP header's read length after the IP header,
    // at least the reply's longest.
    if t.v4 {
        send_back::<{ IPV4_HLEN + REPLY_TCP }>(ctx, h, sc, l34_len)
    } else {
        send_back::<{ IPV6_HLEN + REPLY_TCP }>(ctx, h, sc, l34_len)
    }
}

/// The longest TCP header of a SYN-ACK this builds, and the length a SYN's
/// header up to that long is read as.
const REPLY_TCP: usize = TCP_MIN_HLEN + SYNACK_MAX_OPTIONS;

/// Reads the SYN's headers in (the TCP header as [`TCP_MAX_HLEN`] bytes
/// if `long`, else [`REPLY_TCP`]) and builds its SYN-ACK ([`synack`]).
#[inline(always)]
fn synack_in<const IP: usize>(
    ctx: &XdpContext,
    h: &Headers,
    sc: &mut Scratch,
    hlen: usize,
    long: bool,
    mss: u16,
    cfg: &DataplaneConfig,
) -> Option<usize> {
    if long {
        read_in::<IP, TCP_MAX_HLEN>(ctx, h, sc)?;
    } else {
        read_in::<IP, REPLY_TCP>(ctx, h, sc)?;
    }
    synack::<IP>(sc, hlen, mss, cfg)
}

/// Copies the segment's IP header (`IP` bytes: no options) and the first
/// `TCP` bytes from its TCP header into the scratch space.
#[inline(always)]
fn read_in<const IP: usize, const TCP: usize>(
    ctx: &XdpContext,
    h: &Headers,
    sc: &mut Scratch,
) -> Option<()> {
    Span::<IP>::at(ctx, h.l3)?.copy_to(&mut sc.ip);
    Span::<TCP>::at(ctx, h.l4)?.copy_to(&mut sc.syn);
    Some(())
}

/// Answers a SYN (`reject = "rst"`) or a cookie handshake's ACK the limits
/// drop with a RST, as a closed port's answer is, so the client
/// gives up at once (see [`rst`]). `None` when the segment cannot take
/// this path.
#[inline(always)]
pub fn answer_rst(ctx: &XdpContext, h: &Headers, cfg: &DataplaneConfig) -> Option<u32> {
    let t = tcp(ctx, h)?;
    if t.hlen < TCP_MIN_HLEN {
        return None;
    }
    let sc = scratch()?;
    // The RST is no longer than the segment's headers: it is written over
    // them.
    if t.v4 {
        read_in::<IPV4_HLEN, TCP_MIN_HLEN>(ctx, h, sc)?;
        let l34_len = rst::<IPV4_HLEN>(sc, cfg)?;
        send_back::<{ IPV4_HLEN + TCP_MIN_HLEN }>(ctx, h, sc, l34_len)
    } else {
        read_in::<IPV6_HLEN, TCP_MIN_HLEN>(ctx, h, sc)?;
        let l34_len = rst::<IPV6_HLEN>(sc, cfg)?;
        send_back::<{ IPV6_HLEN + TCP_MIN_HLEN }>(ctx, h, sc, l34_len)
    }
}

/// Sends back the way the packet came the IP and TCP headers built in
/// `sc.out` (`l34_len` bytes): written over the first `LEN` bytes from
/// the IP header, which the frame must hold, MACs swapped, any VLAN tags
/// kept, the frame cut to the reply.
#[inline(always)]
fn send_back<const LEN: usize>(
    ctx: &XdpContext,
    h: &Headers,
    sc: &mut Scratch,
    l34_len: usize,
) -> Option<u32> {
    if l34_len == 0 || l34_len > LEN {
        return None;
    }
    let l34 = Span::<LEN>::at(ctx, h.l3)?;
    let macs = Span::<12>::at(ctx, 0)?;
    l34.copy_from(&sc.out);
    // Destination and source swapped: bytes 0-5 and 6-11 change places.
    let (lo, hi) = (macs.get::<8>(0), macs.get::<4>(8));
    macs.set::<8>(0, (lo >> 48) | (hi << 16) | (lo << 48));
    macs.set::<4>(8, lo >> 16);
    // The reply is never longer than the frame, and a frame only fails to
    // shrink below its Ethernet header: the frame, already rewritten, is
    // dropped then.
    if !packet::set_len(ctx, h.l3 + l34_len) {
        return Some(XDP_DROP);
    }
    Some(XDP_TX)
}

/// Builds in `sc.out` the RST's IP and TCP headers for the segment in
/// `sc.ip` and `sc.syn`; returns their length. `None` if the IPv4 header
/// checksum is wrong. As RFC 9293 says: to a SYN, RST|ACK acknowledging
/// it; to an ACK (a cookie handshake's), a bare RST at the sequence number
/// it acknowledges.
#[inline(always)]
fn rst<const IP: usize>(sc: &mut Scratch, cfg: &DataplaneConfig) -> Option<usize> {
    if IP == IPV4_HLEN && !ipv4_checks(sc) {
        return None;
    }
    let &[q0, q1, q2, q3, a0, a1, a2, a3, _, flags] = sc.syn.get(4..14)? else {
        return None;
    };
    let (seq, ack, flags) = if flags & TCP_FLAG_ACK != 0 {
        ([a0, a1, a2, a3], [0; 4], TCP_FLAG_RST)
    } else {
        (
            [0; 4],
            acknowledging([q0, q1, q2, q3]),
            TCP_FLAG_RST | TCP_FLAG_ACK,
        )
    };
    reply_ip::<IP>(sc, TCP_MIN_HLEN, cfg.cookie_ttl)?;
    reply_tcp::<IP>(sc, seq, ack, TCP_MIN_HLEN, flags)?;
    tcp_checksum::<IP>(sc, TCP_MIN_HLEN)?;
    Some(IP + TCP_MIN_HLEN)
}

/// Builds in `sc.out` the SYN-ACK's IP and TCP headers for the SYN whose
/// IP header (`IP` bytes: 20 for IPv4, 40 for IPv6) and TCP header (`hlen`
/// bytes) are in `sc.ip` and `sc.syn`; returns their length. `None` if the
/// IPv4 header checksum is wrong or the kernel issues no cookie.
///
/// The SYN's TCP checksum is not checked: a sender on this host (a veth
/// peer, a container) leaves it to offload, so XDP sees only the
/// pseudo-header's partial sum. A SYN-ACK to a corrupted SYN costs nothing:
/// its ACK would not carry a valid cookie.
#[inline(always)]
fn synack<const IP: usize>(
    sc: &mut Scratch,
    hlen: usize,
    mss: u16,
    cfg: &DataplaneConfig,
) -> Option<usize> {
    let v4 = IP == IPV4_HLEN;
    if v4 && !ipv4_checks(sc) {
        return None;
    }
    // SAFETY: the helper reads the IP header and `hlen` bytes of TCP
    // header, all copied from the packet into the scratch space.
    let value = unsafe {
        if v4 {
            bpf_tcp_raw_gen_syncookie_ipv4(
                sc.ip.as_mut_ptr().cast(),
                sc.syn.as_mut_ptr().cast(),
                hlen as u32,
            )
        } else {
            bpf_tcp_raw_gen_syncookie_ipv6(
                sc.ip.as_mut_ptr().cast(),
                sc.syn.as_mut_ptr().cast(),
                hlen as u32,
            )
        }
    };
    if value < 0 {
        return None;
    }
    let cookie = value as u32;
    let syn = sc.syn.get(..hlen)?;
    let (&[q0, q1, q2, q3], Some(&flags)) = (syn.get(4..8)?, syn.get(13)) else {
        return None;
    };
    let opts = linux_syn_options(syn).unwrap_or_else(|| syn_options(hlen));
    let ecn = flags & (TCP_FLAG_ECE | TCP_FLAG_CWR) == TCP_FLAG_ECE | TCP_FLAG_CWR;
    // Milliseconds for the TSval, from the coarse clock: its jiffy is finer
    // than the 64 ms the option bits leave. This CPU's reading of it, whose
    // helper is called once a jiffy; the kernel's clock even when the
    // limits run on the test clock.
    let now_ms = (sc.clock.now() / 1_000_000) as u32;
    let ts = opts
        .tsval
        .map(|theirs| (cookie_tsval(now_ms, &opts, ecn), theirs));
    // Window scaling and SACK only travel in the timestamp.
    let wscale = opts.wscale.map(|_| cfg.cookie_wscale);
    let n = write_synack_options(&mut sc.opts, mss, ts, opts.sack, wscale);
    let tcp_len = TCP_MIN_HLEN + n;

    reply_ip::<IP>(sc, tcp_len, cfg.cookie_ttl)?;

    // The TCP header: ports swapped, the cookie as our sequence number,
    // the SYN acknowledged; a zero window, as SYNPROXY's own SYN-ACK, so the
    // client sends only its ACK until the server side is connected.
    let ece = if ts.is_some() && ecn { TCP_FLAG_ECE } else { 0 };
    reply_tcp::<IP>(
        sc,
        cookie.to_be_bytes(),
        acknowledging([q0, q1, q2, q3]),
        tcp_len,
        TCP_FLAG_SYN | TCP_FLAG_ACK | ece,
    )?;
    let mut i = 0;
    while i < n {
        put(
            &mut sc.out.0,
            IP + TCP_MIN_HLEN + i,
            sc.opts.get(i).copied().unwrap_or(0),
        );
        i += 1;
    }
    tcp_checksum::<IP>(sc, tcp_len)?;
    Some(IP + tcp_len)
}

/// The acknowledgement number of a reply to a SYN with sequence number
/// `seq` (big-endian): the SYN counts one.
#[inline(always)]
fn acknowledging(seq: [u8; 4]) -> [u8; 4] {
    u32::from_be_bytes(seq).wrapping_add(1).to_be_bytes()
}

/// Writes in `sc.out`, after the `IP` bytes of IP header, a reply's TCP
/// header without options: the ports of the segment in `sc.syn` swapped,
/// `seq` and `ack`, the data offset of `tcp_len` bytes, `flags`, and a
/// zero window, checksum and urgent pointer (the checksum is
/// [`tcp_checksum`]'s).
#[inline(always)]
fn reply_tcp<const IP: usize>(
    sc: &mut Scratch,
    seq: [u8; 4],
    ack: [u8; 4],
    tcp_len: usize,
    flags: u8,
) -> Option<()> {
    let &[sp0, sp1, dp0, dp1] = sc.syn.get(..4)? else {
        return None;
    };
    let head = [
        dp0,
        dp1,
        sp0,
        sp1,
        seq[0],
        seq[1],
        seq[2],
        seq[3],
        ack[0],
        ack[1],
        ack[2],
        ack[3],
        ((tcp_len / 4) as u8) << 4,
        flags,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let mut i = 0;
    while i < TCP_MIN_HLEN {
        put(&mut sc.out.0, IP + i, head[i]);
        i += 1;
    }
    Some(())
}

/// Writes in `sc.out` the IP header of a reply to the packet whose IP
/// header is in `sc.ip` (`IP` bytes: 20 for IPv4, 40 for IPv6), carrying
/// `tcp_len` bytes of TCP: addresses swapped, TTL `ttl`, no options.
#[inline(always)]
fn reply_ip<const IP: usize>(sc: &mut Scratch, tcp_len: usize, ttl: u8) -> Option<()> {
    let v4 = IP == IPV4_HLEN;
    // Addresses: IPv4 at 12 and 16, IPv6 at 8 and 24.
    let (src_at, addr_len) = if v4 { (12, 4) } else { (8, 16) };
    let dst_at = src_at + addr_len;
    let byte = |i: usize| sc.ip.get(i).copied().unwrap_or(0);
    let head: [u8; 12] = if v4 {
        let total = ((IP + tcp_len) as u16).to_be_bytes();
        [
            0x45,
            0,
            total[0],
            total[1],
            0,
            0,
            0x40,
            0,
            ttl,
            byte(9),
            0,
            0,
        ]
    } else {
        let payload = (tcp_len as u16).to_be_bytes();
        [
            0x60,
            0,
            0,
            0,
            payload[0],
            payload[1],
            byte(6),
            ttl,
            0,
            0,
            0,
            0,
        ]
    };
    let fixed = if v4 { 12 } else { 8 };
    let mut i = 0;
    while i < fixed {
        put(&mut sc.out.0, i, head[i % 12]);
        i += 1;
    }
    let mut i = 0;
    while i < addr_len {
        let (s, d) = (byte(src_at + i), byte(dst_at + i));
        put(&mut sc.out.0, src_at + i, d);
        put(&mut sc.out.0, dst_at + i, s);
        i += 1;
    }
    if v4 {
        // The reply's header sums as its fixed part and the packet's two
        // addresses, whichever way round.
        let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let ip = ipv4_words(&sc.ip);
        let c = csum_fold(csum_words(&[word(0), word(4), word(8), ip[3], ip[4]])).to_ne_bytes();
        put(&mut sc.out.0, 10, c[0]);
        put(&mut sc.out.0, 11, c[1]);
    }
    Some(())
}

/// Whether the IPv4 header copied into `sc.ip` sums right with its
/// checksum.
#[inline(always)]
fn ipv4_checks(sc: &Scratch) -> bool {
    csum_fold(csum_words(&ipv4_words(&sc.ip))) == 0
}

/// The IPv4 header at the start of `buf`, as five words in memory order.
#[inline(always)]
fn ipv4_words<const N: usize>(buf: &Words<N>) -> [u32; 5] {
    const { assert!(N >= IPV4_HLEN) };
    let p = buf.0.as_ptr().cast::<u32>();
    // SAFETY: `buf` holds at least 20 bytes from an 8-aligned start.
    unsafe {
        [
            p.read(),
            p.add(1).read(),
            p.add(2).read(),
            p.add(3).read(),
            p.add(4).read(),
        ]
    }
}

/// Sums the TCP header of `tcp_len` bytes after the IP header in `sc.out`
/// with its pseudo-header and writes the checksum.
#[inline(always)]
fn tcp_checksum<const IP: usize>(sc: &mut Scratch, tcp_len: usize) -> Option<()> {
    let (src_at, addr_len) = if IP == IPV4_HLEN { (12, 4) } else { (8, 16) };
    // The pseudo-header: both addresses, which end the IP header just
    // before the TCP header (one sum over both), then the protocol and the
    // length, as big-endian words added to a sum in memory order.
    let pseudo = word(u16::from(IPPROTO_TCP)) + word(tcp_len as u16);
    let c = csum_fold(sum(&mut sc.out.0, src_at, 2 * addr_len + tcp_len, pseudo)?).to_ne_bytes();
    put(&mut sc.out.0, IP + 16, c[0]);
    put(&mut sc.out.0, IP + 17, c[1]);
    Some(())
}

/// The one's-complement sum of `len` bytes (a multiple of 4) of `buf` from
/// `from`, plus `seed`, in memory order: the kernel's `bpf_csum_diff`,
/// which sums in native code what a BPF loop would take many times longer
/// over. Store its folded result in memory order too (`to_ne_bytes`).
#[inline(always)]
fn sum(buf: &mut [u8], from: usize, len: usize, seed: u32) -> Option<u32> {
    let bytes = buf.get_mut(from..from + len)?;
    // SAFETY: the helper reads `len` bytes of `bytes`, which has them.
    let s = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            bytes.as_mut_ptr().cast(),
            len as u32,
            seed,
        )
    };
    u32::try_from(s).ok()
}

/// A big-endian 16-bit word as it adds to a sum taken in memory order.
#[inline(always)]
fn word(v: u16) -> u32 {
    u32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// What `bpf_loop` hands each step of the option walk.
struct Walk {
    walk: OptionWalk,
    /// The SYN's TCP header length; the header is in the scratch space.
    hlen: usize,
}

/// One option of the walk; 1 ends the loop.
#[inline(never)]
extern "C" fn option_step(_index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` that `syn_options` passed to bpf_loop.
    let w = unsafe { &mut *ctx.cast::<Walk>() };
    let Some(tcp) = scratch().and_then(|sc| sc.syn.get(..w.hlen)) else {
        return 1;
    };
    i64::from(!w.walk.step(tcp))
}

/// The options of the SYN in the scratch space. Through `bpf_loop`: the
/// verifier checks one step, not every path through forty.
#[inline(always)]
fn syn_options(hlen: usize) -> SynOptions {
    let mut w = Walk {
        walk: OptionWalk::START,
        hlen,
    };
    // SAFETY: a callback of the signature bpf_loop expects and a context
    // that lives through the call.
    unsafe {
        bpf_loop(
            OptionWalk::MAX_STEPS,
            option_step as *const () as *mut c_void,
            (&raw mut w).cast(),
            0,
        );
    }
    w.walk.opts
}

/// What an ACK to a cookie port turned out to be.
pub enum Ack {
    /// Of a connection the kernel knows: let it through untouched.
    Known(Socket),
    /// The last ACK of a cookie handshake.
    Valid,
    /// Neither: forged, or its cookie expired.
    Invalid,
}

/// What the kernel holds for a segment's 4-tuple, other than its listener.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// Nothing (or only the listener).
    None,
    /// A connection whose handshake has not completed: a request socket,
    /// which a SYN alone makes. A spoofed source whose SYN got through
    /// can name its tuple, so it lets the ACK through and proves nothing.
    HalfOpen,
    /// An established or closing connection: its peer completed a
    /// handshake, answering this host's sequence number, which a spoofed
    /// source never sees. Proof that the source is real.
    Connected,
}

/// The kernel's socket for this segment's 4-tuple ([`Socket`]).
#[inline(always)]
pub fn known(ctx: &XdpContext, h: &Headers, t: &Tcp) -> Option<Socket> {
    let ports = load::<[u8; 4]>(ctx, h.l4)?;
    let sport = u16::from_ne_bytes([ports[0], ports[1]]);
    let dport = u16::from_ne_bytes([ports[2], ports[3]]);
    // The lookup reads only the member of the family it is told the size
    // of, so only that member is written.
    Some(if t.v4 {
        let a = load::<[u8; 8]>(ctx, h.l3 + 12)?;
        let mut tuple = bpf_sock_tuple {
            __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
                ipv4: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
                    saddr: u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
                    daddr: u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
                    sport,
                    dport,
                },
            },
        };
        connection(ctx, &mut tuple, 12)
    } else {
        let src = load::<[u8; 16]>(ctx, h.l3 + 8)?;
        let dst = load::<[u8; 16]>(ctx, h.l3 + 24)?;
        let mut tuple = bpf_sock_tuple {
            __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
                ipv6: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 {
                    saddr: addr_words(&src),
                    daddr: addr_words(&dst),
                    sport,
                    dport,
                },
            },
        };
        connection(ctx, &mut tuple, 36)
    })
}

/// The ACK of a handshake or of a connection: ACK set, SYN and RST clear.
#[inline(always)]
pub fn lone_ack(t: &Tcp) -> bool {
    t.flags & TCP_FLAG_ACK != 0 && t.flags & (TCP_FLAG_SYN | TCP_FLAG_RST) == 0
}

/// Screens an ACK to an armed port (see the module doc).
#[inline(always)]
pub fn screen_ack(ctx: &XdpContext, h: &Headers, t: &Tcp) -> Option<Ack> {
    if !lone_ack(t) {
        return None;
    }
    let socket = known(ctx, h, t)?;
    if socket != Socket::None {
        return Some(Ack::Known(socket));
    }
    // A connection this host routes on names no socket here.
    if route::routed_on(ctx, h, t.v4) {
        return None;
    }
    let sc = scratch()?;
    if t.v4 {
        read_in::<IPV4_HLEN, TCP_MIN_HLEN>(ctx, h, sc)?;
    } else {
        read_in::<IPV6_HLEN, TCP_MIN_HLEN>(ctx, h, sc)?;
    }
    // SAFETY: the helpers read the IP header and the fixed TCP header,
    // copied from the packet into the scratch space.
    let checked = unsafe {
        if t.v4 {
            bpf_tcp_raw_check_syncookie_ipv4(sc.ip.as_mut_ptr().cast(), sc.syn.as_mut_ptr().cast())
        } else {
            bpf_tcp_raw_check_syncookie_ipv6(sc.ip.as_mut_ptr().cast(), sc.syn.as_mut_ptr().cast())
        }
    };
    Some(if checked == 0 {
        Ack::Valid
    } else {
        Ack::Invalid
    })
}

/// The socket the kernel has for this 4-tuple, by its state.
#[inline(always)]
fn connection(ctx: &XdpContext, tuple: &mut bpf_sock_tuple, size: u32) -> Socket {
    // SAFETY: a socket lookup with a tuple on the stack; a socket found is
    // released before return, as the verifier demands.
    unsafe {
        let sk = bpf_skc_lookup_tcp(ctx.ctx.cast(), tuple, size, CURRENT_NETNS, 0);
        if sk.is_null() {
            return Socket::None;
        }
        let state = (*sk).state;
        bpf_sk_release(sk.cast());
        match state {
            TCP_LISTEN => Socket::None,
            TCP_NEW_SYN_RECV | TCP_SYN_RECV | TCP_SYN_SENT => Socket::HalfOpen,
            _ => Socket::Connected,
        }
    }
}
