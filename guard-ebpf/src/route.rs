//! Whether a packet is for this host or one it routes on: the kernel's
//! own routing decision, asked of the FIB (`bpf_fib_lookup`).
//!
//! The cookie path answers SYNs and screens ACKs by destination port. On
//! a host that routes (a router; a node whose pods or containers have
//! routed addresses), a port it listens on may also be a port of a
//! machine behind it. Answering that machine's SYNs, or dropping its
//! connections' ACKs (which name no socket here), would cut every
//! connection to it while the port is armed.
//!
//! A host that does not forward on the interface the packet came in by
//! gets no answer from the FIB (`FWD_DISABLED`, before any route lookup),
//! yet its interface carries frames for others too: a macvlan or ipvlan
//! container's, a bridged VM's, each with an address of its own that
//! serves the same ports. There the namespace's `local` routes decide
//! (`GUARD_LOCAL_V4`/`V6`, which `guard run` keeps current,
//! `host::local`): a destination they do not hold is another's. Before
//! they are filled every destination is taken as this host's.
//!
//! The lookup is made only for segments the cookie path would act on, and
//! for new flows to a closed port (unless they are another machine's,
//! they take the closed ports' bucket of the global budget). A
//! host that forwards walks its rules and tables, about a baseline
//! program's cost again on a cookie SYN (`cargo xtask bench`). So each CPU remembers
//! the answer for [`REMEMBERED`] destinations, for [`REMEMBERED_NS`]: a
//! flood sends its SYNs to a handful of addresses, and one spread over a
//! routed /24 still finds each of them remembered. The answer depends on the
//! destination alone, since the local table's rule comes first (a source,
//! port or mark can route a packet elsewhere, but not make it local).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LKUP_RET_UNREACHABLE, BPF_FIB_LKUP_RET_UNSUPP_LWT, bpf_fib_lookup,
    },
    helpers::bpf_fib_lookup as fib_lookup,
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use guard_common::key::{ROUTE_ELSEWHERE, addr_words};

use crate::{
    clock,
    dissect::Headers,
    maps::{LOCAL_V4, LOCAL_V6, SCRATCH},
    packet::load,
    verdict::addr_bytes,
};

/// The kernel's address families (not guard's `key::AF_*`).
const KERNEL_AF_INET: u8 = 2;
const KERNEL_AF_INET6: u8 = 10;

/// How long a CPU keeps a destination's answer: an address or route
/// added or removed is seen this late at most.
const REMEMBERED_NS: u64 = 100_000_000;
/// Destinations each CPU remembers, direct-mapped by the low byte of the
/// address's words XORed (an IPv4 address's last octet: a /24 takes every
/// way once);
/// 8 KiB a CPU.
const REMEMBERED: usize = 256;

/// This CPU's lookups: the FIB's parameters (and results), and the
/// answers remembered.
#[repr(C)]
pub struct Routes {
    params: bpf_fib_lookup,
    seen: [Seen; REMEMBERED],
}

/// A destination's answer, and until when it holds.
#[repr(C)]
#[derive(Clone, Copy)]
struct Seen {
    addr: [u32; 4],
    until_ns: u64,
    family: u8,
    routed: u8,
    pad: [u8; 6],
}

/// Whether this TCP segment's (or datagram's) destination is another
/// machine's: the kernel would route it on, or drop it on a blackhole,
/// unreachable or prohibit route; or, with forwarding off on the
/// interface it came in by, no `local` route holds it. Not when the
/// destination is one of this host's, or when the lookup fails: the
/// cookie path then acts as it always did, and a new flow to a closed
/// port takes the closed ports' bucket.
#[inline(always)]
pub fn routed_on(ctx: &XdpContext, h: &Headers, v4: bool) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let Some(dst) = destination(ctx, h, v4) else {
        return false;
    };
    let now = clock::now_in(scratch);
    let family = if v4 { KERNEL_AF_INET } else { KERNEL_AF_INET6 };
    // SAFETY: this CPU's scratch value; XDP is not preempted, and nothing
    // else in this run uses the field.
    let routes = unsafe { &mut (*scratch).routes };
    let way = (dst[0] ^ dst[1] ^ dst[2] ^ dst[3]).to_be() as usize % REMEMBERED;
    let Some(seen) = routes.seen.get_mut(way) else {
        return false;
    };
    if seen.until_ns > now && seen.family == family && seen.addr == dst {
        return seen.routed != 0;
    }
    let Some(routed) = lookup(ctx, h, family, dst, &mut routes.params) else {
        return false;
    };
    *seen = Seen {
        addr: dst,
        until_ns: now.saturating_add(REMEMBERED_NS),
        family,
        routed: u8::from(routed),
        pad: [0; 6],
    };
    routed
}

/// The destination address as four words (an IPv4 address in the first).
#[inline(always)]
fn destination(ctx: &XdpContext, h: &Headers, v4: bool) -> Option<[u32; 4]> {
    Some(if v4 {
        [
            u32::from_ne_bytes(load::<[u8; 4]>(ctx, h.l3 + 16)?),
            0,
            0,
            0,
        ]
    } else {
        addr_words(&load::<[u8; 16]>(ctx, h.l3 + 24)?)
    })
}

/// Asks the FIB: `None` when the lookup failed.
#[inline(always)]
fn lookup(
    ctx: &XdpContext,
    h: &Headers,
    family: u8,
    dst: [u32; 4],
    r: &mut bpf_fib_lookup,
) -> Option<bool> {
    // Every input the kernel reads is written: the helper leaves its
    // outputs in the same fields.
    let ports = load::<[u8; 4]>(ctx, h.l4)?;
    r.family = family;
    r.l4_protocol = h.proto;
    r.sport = u16::from_ne_bytes([ports[0], ports[1]]);
    r.dport = u16::from_ne_bytes([ports[2], ports[3]]);
    // No MTU to check: the segment is not sent on from here.
    r.__bindgen_anon_1.tot_len = 0;
    // SAFETY: the context's own field, which the verifier lets a program
    // read.
    r.ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    r.__bindgen_anon_2.flowinfo = 0;
    if family == KERNEL_AF_INET {
        let ip = load::<[u8; 16]>(ctx, h.l3)?;
        r.__bindgen_anon_2.tos = ip[1];
        r.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        r.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        r.__bindgen_anon_3.ipv6_src = addr_words(&load::<[u8; 16]>(ctx, h.l3 + 8)?);
        r.__bindgen_anon_4.ipv6_dst = dst;
    }
    // SAFETY: the parameters are in map memory the helper may write (it
    // puts the egress device, addresses and MACs there), of the size given.
    let ret = unsafe { fib_lookup(ctx.ctx.cast(), r, size_of::<bpf_fib_lookup>() as i32, 0) };
    // A route elsewhere, forwarded or dropped; the rest are this host's
    // addresses (local, broadcast), or no route.
    let ret = u32::try_from(ret).ok()?;
    if ret == BPF_FIB_LKUP_RET_FWD_DISABLED {
        return Some(elsewhere(family, dst));
    }
    Some(matches!(
        ret,
        BPF_FIB_LKUP_RET_SUCCESS
            | BPF_FIB_LKUP_RET_NO_NEIGH
            | BPF_FIB_LKUP_RET_FRAG_NEEDED
            | BPF_FIB_LKUP_RET_UNSUPP_LWT
            | BPF_FIB_LKUP_RET_BLACKHOLE
            | BPF_FIB_LKUP_RET_UNREACHABLE
            | BPF_FIB_LKUP_RET_PROHIBIT
    ))
}

/// Whether no `local` route holds `dst` (the catch-all matched); a
/// destination the tries have no answer for (not filled) is this host's.
#[inline(always)]
fn elsewhere(family: u8, dst: [u32; 4]) -> bool {
    // A lookup in each branch, as in `verdict::list_action`.
    if family == KERNEL_AF_INET {
        LOCAL_V4
            .get(Key::new(32, dst[0].to_ne_bytes()))
            .is_some_and(|&v| v == ROUTE_ELSEWHERE)
    } else {
        LOCAL_V6
            .get(Key::new(128, addr_bytes(&dst)))
            .is_some_and(|&v| v == ROUTE_ELSEWHERE)
    }
}
