//! guard's XDP program.
//!
//! Verdict policy, in order (the reference model in `tests/src/model.rs`
//! implements the same list, but for the samples of 3-, 3a, 3b and the RST
//! of step 7: it sends no samples, keeps no listeners or cookie ports and
//! knows no sockets, so its sources are verified only by the host's
//! replies (3b's last sentence) and their marks;
//! `tests/kernel/signatures.rs`, `cookies.rs` and `ports.rs` check those
//! frame by frame):
//! 1. Every packet is dissected once ([`dissect`]) and counted: one class
//!    (`packets` is their sum), its attributes.
//! 2. Malformed: dropped (`drop_malformed`). The kernel would drop most of
//!    these itself; the rest (an IPv6 chain longer than the parser walks, a
//!    first fragment without its transport header) are bypass attempts.
//! 3. Not IP: passed.
//! 3+. A unicast frame for another device's link-layer address (not in
//!    `DataplaneConfig::host_macs`, which `guard run` fills only for an
//!    interface that is no bridge, bond or switch port: a macvlan
//!    container's, a macvtap VM's frame) never reaches this namespace's
//!    conntrack: it skips every step below but the deny entries of step
//!    5 (`drop_denylist`); a packet that may open a flow is counted in
//!    `pass_other_device`, not in `new_flows`, and passed. The two global
//!    functions each check the address (`verdict::for_another_device`),
//!    not the entry: there its fast path's registers would pay for it.
//! 3-. A packet that may open a flow (a TCP SYN, UDP, an ICMP query) is
//!    fingerprinted while a signature is installed, or when it may be
//!    sampled (`fingerprint.rs`): one that matches an attack signature is
//!    dropped (`drop_signature`, and the signature's hit counter) before
//!    the cookie path and any per-source state; a signature's monitor bit
//!    only counts, and an allowlisted source is never dropped by one. A
//!    sampled packet's fingerprint goes to `GUARD_SAMPLES` for the learner,
//!    but a proven source's new flow (verified, and kept in its marks: a
//!    cookie handshake or an ACK check, not the host's replies alone),
//!    which goes there after step 7 if admitted, mask or not (the
//!    contrast, under its own budget). A flood that spoofs a proven source
//!    is over its limit: its flows are sampled as any others.
//! 3a. TCP to a port with a listener (`GUARD_PORTS`; ACKs looked up only
//!    while some port is armed): a SYN is counted in the port's slot. If
//!    the port is armed and the mode is enforce, the SYN-cookie path
//!    decides (see `cookie.rs`), for a segment to this host (one the host
//!    routes on to another machine goes on below, `route.rs`; so does a
//!    SYN whose 4-tuple names a connection the host holds, in TIME_WAIT,
//!    which the kernel reopens, looked up for a source verified lately
//!    or within the CPU's `SYN_LOOKUPS_PER_SEC`): a SYN from
//!    a denied source is dropped,
//!    any other is answered with a cookie SYN-ACK (`XDP_TX`); an ACK of a
//!    known connection passes (and, while the budget binds, verifies its
//!    source if the connection is past its handshake), one with a valid
//!    cookie goes through the source's SYN limits and verifies it (one
//!    they drop is answered with a RST, `rst_sent`), any other is dropped
//!    (`drop_cookie_invalid`). A port the host's nat rules send on
//!    (`PORT_FORWARDED`: a container's published port) has its SYNs
//!    answered alike, and its ACKs left to the kernel: no local socket
//!    holds its connections, conntrack does, and SYNPROXY checks a
//!    cookie's ACK.
//!    A segment the path cannot take (options, fragments, data on a SYN)
//!    goes on below.
//! 3b. While the budget binds (the controller's `verify` bit: the global
//!    budget has been dropping), an ACK from a source not yet verified
//!    verifies it (`verified_ack`) if it acknowledges a SYN-ACK the host
//!    sent (`GUARD_SYNACKS`, which the egress program `guard_synack`
//!    fills, `egress.rs`: also a connection the nat rules send to a
//!    container; looked up only for a source whose slot holds it, as an
//!    admitted SYN's does) or names an established or closing socket of
//!    the host's; a half-open one proves nothing. The socket lookups are rationed per
//!    CPU and second (`ACK_LOOKUPS_PER_SEC`; `ack_lookups_skipped`). The
//!    ACK itself passes on below. At any time, budget binding or not, the
//!    egress program verifies a client the host sends data or a FIN of a
//!    TCP connection to (`verified_reply`; in its slot only), so clients
//!    served before a flood skip the budget from its start.
//! 4. New-flow packets: TCP SYN without ACK, the ICMP/ICMPv6 queries
//!    conntrack opens entries for (echo requests and the like:
//!    `guard_common::dissect::icmp_opens_flow`),
//!    UDP packets whose 5-tuple was not seen within `udp_flow_idle`
//!    (`GUARD_UDP_FLOW4` for IPv4, `GUARD_UDP_FLOWS` for IPv6: sets of
//!    two, `guard_common::flows`), and
//!    datagrams of any other IP protocol (GRE, ESP, SCTP, ...; not a later
//!    fragment) whose addresses and protocol were not seen within it,
//!    which conntrack tracks alike (remembered in `GUARD_UDP_FLOWS`,
//!    ports 0 unless conntrack keys them by ports; class `other`).
//!    Counted in `new_flows`. A datagram the host sent remembers its
//!    flow as its replies arrive (the egress program, `flows.rs`): its
//!    replies are no new flows. Nor is a SYN or a UDP datagram to a port
//!    conntrack skips for its protocol (`PORT_UNTRACKED_TCP`, `_UDP` in
//!    `GUARD_PORTS`: NOTRACK rules, `model::notrack`), which opens no
//!    entry: passed (`pass_untracked`) once step 5's deny entries have
//!    had their say.
//! 5. The allow/deny LPM tries (longest prefix wins) are consulted for new
//!    flows, and for every packet of a family whose trie holds a deny entry.
//!    Deny: dropped (`drop_denylist`). Allow, for a new flow: passed
//!    (`pass_allowlist`), no limit applies.
//! 6. Every other packet that is not a new flow is passed: the fast path,
//!    no per-source lookup. The entry passes those that no step above
//!    acts on either (no deny entry, no armed port, the budget not
//!    binding) before the signature check and the verdict's call.
//! 7. A new flow goes through the source's state (`GUARD_SOURCES`, a
//!    direct-mapped table of slots keyed by the address masked to /32 or
//!    /64, `guard_common::slots`): banned -> `drop_banned`; no token in
//!    the source's bucket for its class -> `drop_source_limit` (and ban
//!    accounting); then, unless the source is verified and within its
//!    own limit (while the budget binds; before, with the budget spent,
//!    only while at most a tenth of its burst is drawn: a flood's first
//!    tick), or the flow is a
//!    DHCP server's answer to a message the host sent within
//!    `udp_flow_idle` (`flows::Flow::answers_dhcp`: UDP from a link-local
//!    source, port 547 to 546, when the host's DHCPv6 message went to
//!    ff02::1:2; a reply from port 67 to 68 with the `xid` of a DHCPv4
//!    request the host sent; either answer is no flow the host
//!    opened), no token in the
//!    global budget's bucket for the flow -> `drop_global_budget` (its
//!    class's; a SYN's or new UDP flow's to a closed port, once the port
//!    table marks the open ones, the closed ports' -> `drop_closed_port`;
//!    only looked at here: the prefix is neither looked up nor charged for
//!    a packet the budget drops); then the prefix's bucket
//!    (`GUARD_PREFIXES`, /24 or /48; skipped, with no entry, when the
//!    class's prefix limit is off) -> `drop_prefix_limit`; then the
//!    budget's token is taken (a verified source skips it; another CPU may
//!    have taken the last one meanwhile -> the same drop reason).
//!    Otherwise passed (`pass_limits`), and a datagram's flow (UDP or
//!    another protocol's) is remembered.
//!    With `reject = "rst"`, a SYN over a verified source's own limit is
//!    answered with a RST|ACK from XDP (`rst_sent`, under the RST budget;
//!    in enforce mode; counted as `drop_source_limit` too): a real client
//!    fails at once. An unverified source is never answered (backscatter).
//!    A source going over its limit sends a "limited" event (once per
//!    episode, under the event budget); a ban sends a "banned" event always.
//!    A source with no state would pass its own tier (a full bucket, no
//!    ban), so for it the global budget and the prefix decide first, and
//!    its slot is taken (`new_sources`) only when they admit it: a
//!    packet they drop writes nothing. A verified or banned source is
//!    also kept in `GUARD_MARKS`, which only verifications and bans insert
//!    into; a source whose slot another source took over gets both back
//!    from there at its next new flow (so does the model's, which keeps
//!    the same slots and bans). `GUARD_MARKED` holds a bit per source
//!    marked (in two halves; `guard run` rebuilds the one not read from
//!    the marks in force, and switches): a source whose bit is clear is
//!    not looked up in `GUARD_MARKS`, so a spoofed flood the budget drops
//!    costs one tag read (a slot's tag, kept apart from it: `slots.rs`),
//!    one bit's, and no hash lookup.
//! The signature check and the rest of the verdict are global functions
//! (`guard_screen`, `guard_verdict`): the verifier checks each once, for
//! any offsets, rather than once for every way the dissect step ends, and
//! their stacks are not added together. The verdict's stack and the
//! entry's stay within the verifier's 512 bytes because keys that live
//! long go in the per-CPU scratch value.
//! In monitor mode every "drop" above is counted the same way and the packet
//! passes (`pass_monitor`): the counters say exactly what enforce would do.
//! A helper failure (a map lookup that cannot fail) passes the packet.
#![no_std]
#![no_main]
// Atomic read-modify-write on shared map values needs inline BPF assembly.
#![feature(asm_experimental_arch)]

mod atomic;
mod clock;
mod cookie;
mod dissect;
mod egress;
mod fingerprint;
mod flows;
mod maps;
mod packet;
mod route;
mod slots;
mod tick_clock;
mod verdict;

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action, xdp_md},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use guard_common::{Counter, CounterBlock};

use crate::{
    dissect::{F_FRAGMENT, F_IPV6, F_VLAN, Headers},
    maps::{CONFIG, COUNTERS},
    verdict::{VERIFIED_FLOW, bump, untouched},
};

#[xdp]
pub fn guard(ctx: XdpContext) -> u32 {
    // The lookups before the headers are read: to LLVM each is a helper
    // call, which clobbers the registers the headers would be in.
    let Some(block) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let h = dissect::dissect(&ctx);
    // SAFETY: the map value is this CPU's block; XDP runs with preemption
    // (and migration) disabled, so nothing else writes it meanwhile.
    let slots = unsafe { &mut (*block).slots };
    bump(slots, h.class);
    // One test for the common packet, which has none of the attributes.
    if h.flags & (F_VLAN | F_IPV6 | F_FRAGMENT) != 0 {
        if h.flags & F_VLAN != 0 {
            bump(slots, Counter::Vlan);
        }
        if h.flags & F_IPV6 != 0 {
            bump(slots, Counter::Ipv6);
        }
        if h.flags & F_FRAGMENT != 0 {
            bump(slots, Counter::Fragments);
        }
    }
    // The fast path: nothing below would act on it.
    if untouched(cfg, &h) {
        return xdp_action::XDP_PASS;
    }
    let packed = h.packed();
    let (l3, l4, l3_end) = (h.l3 as u32, h.l4 as u32, h.l3_end as u32);
    // The call only when it has work: a signature installed, or this
    // packet chosen for a sample.
    let candidate = h.screened();
    let considered = candidate && fingerprint::sampling(cfg, slots, h.class);
    if candidate && (considered || fingerprint::armed()) {
        let action = fingerprint::guard_screen(ctx.ctx, l3, l4, l3_end, packed);
        if action != fingerprint::NO_MATCH {
            return action;
        }
    }
    let action = guard_verdict(ctx.ctx, l3, l4, packed, block);
    if action & VERIFIED_FLOW == 0 {
        return action;
    }
    // A verified source's admitted new flow: a contrast sample now, under
    // its own budget, whether or not the mask let the call above consider
    // it (which leaves a proven source's flows to this call).
    if candidate {
        let _ = fingerprint::guard_screen(
            ctx.ctx,
            l3,
            l4,
            l3_end,
            packed | fingerprint::SCREEN_VERIFIED,
        );
    }
    action & !VERIFIED_FLOW
}

/// The egress program: verifies the clients the interface sends data or a
/// FIN of a connection to, remembers the SYN-ACKs it sends while the
/// budget binds, and the datagram flows it opens (`egress.rs`). It only
/// watches: `TC_ACT_UNSPEC` (tcx's
/// "next") leaves the packet to the programs after it, and passes it when
/// there are none.
#[classifier]
pub fn guard_synack(ctx: TcContext) -> i32 {
    let _ = egress::record(&ctx);
    TC_ACT_UNSPEC
}

/// The verdict for a dissected packet, as a global function: the verifier
/// checks it once, for any offsets, rather than once for every way the
/// dissect step can end; and its stack is not added to the signature
/// check's, which together would pass the verifier's 512 bytes.
/// `block` is this CPU's counters, which the entry looked up: the
/// verifier takes a pointer to a struct of numbers as memory of the
/// struct's size, which may be null.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn guard_verdict(
    ctx: *mut xdp_md,
    l3: u32,
    l4: u32,
    packed: u32,
    block: *mut CounterBlock,
) -> u32 {
    let ctx = XdpContext::new(ctx);
    // The IP packet's end is the signature check's alone.
    let h = Headers::unpacked(l3, l4, 0, packed);
    if block.is_null() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: as in `guard`, whose lookup it is.
    let slots = unsafe { &mut (*block).slots };
    verdict::verdict(&ctx, &h, slots)
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path here.
    loop {}
}
