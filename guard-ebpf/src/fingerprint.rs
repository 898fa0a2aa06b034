//! Attack fingerprints on the XDP side: a new-flow packet's fingerprint
//! (the layout is `guard_common::fingerprint`'s), the signature check, and
//! the samples the learner reads.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use guard_common::{
    COUNTER_SLOTS, Counter, DataplaneConfig,
    bucket::NANOS_PER_SEC,
    config::{HAS_LISTS_V4, HAS_LISTS_V6, SAMPLE_ON},
    counters::SIG_HIT_SLOT,
    dissect::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_MIN_HLEN, UDP_HLEN},
    fingerprint::{
        FP_COPY, FP_DPORT, FP_FAMILY, FP_IP_ID, FP_IP_LEN, FP_L4_HLEN, FP_LEN, FP_PAYLOAD,
        FP_PAYLOAD_LEN, FP_PROTO, FP_SPORT, FP_TCP_FLAGS, FP_TOS, FP_TTL, FP_WINDOW, Fingerprint,
        SAMPLE_ESTABLISHED, SAMPLE_NEW, SAMPLE_VERIFIED, Sample, SigTable, within_copy,
    },
    key::{AF_INET, AF_INET6, LIST_ALLOW},
};

use crate::{
    clock,
    cookie::copy_in,
    dissect::MAX_OFFSET,
    maps::{
        CONFIG, COUNTERS, LISTS_V4, LISTS_V6, MARKS, SAMPLES, SCRATCH, SIGS, SampleBudget, Screen,
    },
    slots::Table,
    verdict::{reject, udp_flow_known},
};

type Slots = [u64; COUNTER_SLOTS];

/// What [`screen`] returns when no signature decides: not an XDP action.
pub const NO_MATCH: u32 = u32::MAX;

/// A bit of [`guard_screen`]'s `packed` argument (above what
/// `Headers::packed` uses): the verdict found the packet a verified
/// source's admitted new flow. Sample it for the contrast, no signature
/// check (it passed that already).
pub const SCREEN_VERIFIED: u32 = 1 << 24;

/// The signature check and the sampling, for a packet that may open a
/// flow: the action when an installed signature decides (a drop, or a
/// pass in monitor mode), else [`NO_MATCH`] (none matches, the one that
/// matches only counts, its monitor bit, or the source is on the allow
/// list), after the packet was sampled if it is chosen.
///
/// With [`SCREEN_VERIFIED`], called after the verdict instead: only a
/// contrast sample, under the contrast budget and without the sample mask.
/// The mask thins a flood's packets, and with them the few a verified
/// user sends; the contrast they give is what lets a signature be learned
/// during a flood at all, and the verdict has already paid for knowing
/// the source is verified.
///
/// A global function: the verifier checks it once, on its own, and each
/// call only against its signature. Inlined, or as a static function, it
/// would be verified again for every path that reaches it, which the rest
/// of the program already has enough of to come near the verifier's
/// limit. So it takes only the context and scalars, reads the packet
/// through a copy, and looks up its own maps.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn guard_screen(
    ctx: *mut xdp_md,
    l3: u32,
    l4: u32,
    l3_end: u32,
    packed: u32,
) -> u32 {
    let (Some(cfg), Some(block)) = (CONFIG.get(0), COUNTERS.get_ptr_mut(0)) else {
        return NO_MATCH;
    };
    // SAFETY: this CPU's counter block, as in `main.rs`.
    let slots = unsafe { &mut (*block).slots };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return NO_MATCH;
    };
    // SAFETY: this CPU's scratch value; XDP is not preempted, and the
    // cookie path uses the other fields.
    let sc = unsafe { &mut (*scratch).screen };
    let verified = packed & SCREEN_VERIFIED != 0;
    // Sampling: only while this CPU's budget has room this second, so a
    // flood past it costs a clock read here, not a fingerprint.
    let sampled = if verified {
        cfg.sample & SAMPLE_ON != 0 && contrast_room(cfg, &mut sc.budget, clock::now())
    } else {
        sampling(cfg, slots) && room(cfg, slots, &mut sc.budget, clock::now())
    };
    let table = SIGS.get(0);
    if !sampled && (verified || !has_active(table)) {
        return NO_MATCH;
    }
    let ctx = XdpContext::new(ctx);
    // As `Headers::packed` wrote them.
    let class = packed & 0xff;
    let v4 = (packed >> 16) & 0xff == u32::from(AF_INET);
    // Bounded by masks, as `Headers::unpacked` says why.
    let (l3, l4, l3_end) = (
        (l3 & MAX_OFFSET) as usize,
        (l4 & MAX_OFFSET) as usize,
        (l3_end & MAX_OFFSET) as usize,
    );
    if l3 > l4 || l4 > l3_end {
        return NO_MATCH;
    }
    let ip_len = l3_end - l3;
    if !copy_in(&ctx, l3, &mut sc.pkt, ip_len.min(FP_COPY)) {
        return NO_MATCH;
    }
    if !of(sc, ip_len, l4 - l3, class, v4) {
        return NO_MATCH;
    }
    if verified {
        submit(&mut sc.budget, &sc.fp, cfg, SAMPLE_VERIFIED);
        return NO_MATCH;
    }
    let has_lists = if v4 { HAS_LISTS_V4 } else { HAS_LISTS_V6 };
    let listed = if cfg.lists & has_lists != 0 {
        listed(sc, v4)
    } else {
        0
    };
    if let Some(table) = table
        && let Some(slot) = table.find(&sc.fp)
    {
        if let Some(hits) = slots.get_mut(SIG_HIT_SLOT + slot) {
            *hits = hits.wrapping_add(1);
        }
        if table.monitor & (1 << slot) == 0 && listed != LIST_ALLOW {
            return reject(cfg, slots, Counter::DropSignature);
        }
    }
    if listed == 0 && sampled {
        sample(cfg, sc, l4 - l3, class, v4);
    }
    NO_MATCH
}

/// The allow/deny action for the copied packet's source.
#[inline(always)]
fn listed(sc: &mut Screen, v4: bool) -> u8 {
    let found = if v4 {
        sc.key4.prefix_len = 32;
        for i in 0..4 {
            sc.key4.data[i] = at(&sc.pkt, 12 + i);
        }
        LISTS_V4.get(&sc.key4)
    } else {
        sc.key6.prefix_len = 128;
        for i in 0..16 {
            sc.key6.data[i] = at(&sc.pkt, 8 + i);
        }
        LISTS_V6.get(&sc.key6)
    };
    found.copied().unwrap_or(0)
}

/// Byte `i` of the copy (0 past it).
#[inline(always)]
fn at(pkt: &[u8; FP_COPY], i: usize) -> u8 {
    pkt.get(i).copied().unwrap_or(0)
}

/// Writes the fingerprint of the copied IP packet (`ip_len` bytes long,
/// its transport header `l4` bytes in) into `fp`; false if it has none.
#[inline(always)]
fn of(sc: &mut Screen, ip_len: usize, l4: usize, class: u32, v4: bool) -> bool {
    let tcp = class == Counter::TcpSyn as u32 || class == Counter::TcpOther as u32;
    let udp = class == Counter::Udp as u32;
    if !tcp && !udp && class != Counter::Icmp as u32 {
        return false;
    }
    let fixed = if tcp { TCP_MIN_HLEN } else { UDP_HLEN };
    let start = l4 + fixed;
    if !within_copy(ip_len, start) {
        return false;
    }
    // Byte by byte from the copy into the map value: nothing held in
    // registers, so nothing spilled to the few stack bytes this call has.
    let pkt = &sc.pkt;
    // SAFETY: the words' memory as the fingerprint's bytes (same size, u8
    // has no alignment).
    let fp = unsafe { &mut *sc.fp.words.as_mut_ptr().cast::<[u8; FP_LEN]>() };
    fp[FP_FAMILY] = if v4 { AF_INET } else { AF_INET6 };
    fp[FP_PROTO] = if tcp {
        IPPROTO_TCP
    } else if udp {
        IPPROTO_UDP
    } else if v4 {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    if v4 {
        fp[FP_TTL] = at(pkt, 8);
        fp[FP_TOS] = at(pkt, 1);
        fp[FP_IP_ID] = at(pkt, 4);
        fp[FP_IP_ID + 1] = at(pkt, 5);
    } else {
        fp[FP_TTL] = at(pkt, 7);
        fp[FP_TOS] = (at(pkt, 0) << 4) | (at(pkt, 1) >> 4);
        fp[FP_IP_ID] = at(pkt, 2);
        fp[FP_IP_ID + 1] = at(pkt, 3);
    }
    fp[FP_IP_LEN] = (ip_len >> 8) as u8;
    fp[FP_IP_LEN + 1] = ip_len as u8;
    if tcp {
        for i in 0..4 {
            fp[FP_SPORT + i] = at(pkt, l4 + i);
        }
        fp[FP_WINDOW] = at(pkt, l4 + 14);
        fp[FP_WINDOW + 1] = at(pkt, l4 + 15);
        fp[FP_TCP_FLAGS] = at(pkt, l4 + 13);
        fp[FP_L4_HLEN] = (at(pkt, l4 + 12) >> 4) * 4;
    } else {
        // UDP: ports and length. ICMP: type, code, identifier, sequence.
        let icmp = !udp;
        fp[FP_SPORT] = at(pkt, l4);
        fp[FP_SPORT + 1] = at(pkt, l4 + 1);
        for i in 0..4 {
            fp[FP_DPORT + i] = at(pkt, l4 + 2 + i + usize::from(icmp) * 2);
        }
        fp[FP_TCP_FLAGS] = 0;
        fp[FP_L4_HLEN] = UDP_HLEN as u8;
    }
    // The payload as two words, zeros past the packet's end (the copy's
    // bytes there are an earlier packet's); none read when there is none,
    // as on most SYNs. Little-endian words: the first bytes are the low
    // ones.
    let avail = ip_len.saturating_sub(start);
    let (lo, hi) = if avail == 0 {
        (0, 0)
    } else {
        (
            word_at(pkt, start) & low_bytes(avail),
            word_at(pkt, start + 8) & low_bytes(avail.saturating_sub(8)),
        )
    };
    sc.fp.words[FP_PAYLOAD / 8] = lo;
    sc.fp.words[FP_PAYLOAD / 8 + 1] = hi;
    true
}

// The payload is the fingerprint's last two words.
const _: () = assert!(FP_PAYLOAD % 8 == 0 && FP_PAYLOAD_LEN == 16 && FP_PAYLOAD + 16 == FP_LEN);

/// Eight bytes of the copy from `i`, little-endian (0 past its end): one
/// bounds check for the eight where they fit.
#[inline(always)]
fn word_at(pkt: &[u8; FP_COPY], i: usize) -> u64 {
    match pkt.get(i..i + 8) {
        Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) => {
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
        }
        _ => (0..8).fold(0, |w, k| w | u64::from(at(pkt, i + k)) << (8 * k)),
    }
}

/// A mask of the low `n` bytes of a word (all of it from 8 on).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << ((8 * n) & 63)) - 1
    }
}

/// Sends the fingerprint as a sample, under its group's budget: a packet
/// of a known UDP flow, else a new flow, from a verified source or not.
#[inline(always)]
fn sample(cfg: &DataplaneConfig, sc: &mut Screen, l4: usize, class: u32, v4: bool) {
    let now = clock::now();
    let (saddr, daddr, n) = if v4 { (12, 16, 4) } else { (8, 24, 16) };
    let established = class == Counter::Udp as u32 && {
        let f = &mut sc.flow;
        f.family = if v4 { AF_INET } else { AF_INET6 };
        f.proto = IPPROTO_UDP;
        f.sport = u16::from_be_bytes([at(&sc.pkt, l4), at(&sc.pkt, l4 + 1)]);
        f.dport = u16::from_be_bytes([at(&sc.pkt, l4 + 2), at(&sc.pkt, l4 + 3)]);
        f.pad = 0;
        for i in 0..16 {
            let inside = i < n;
            f.saddr[i] = if inside { at(&sc.pkt, saddr + i) } else { 0 };
            f.daddr[i] = if inside { at(&sc.pkt, daddr + i) } else { 0 };
        }
        udp_flow_known(&sc.flow, now, cfg.udp_flow_idle_ns)
    };
    let kind = if established {
        SAMPLE_ESTABLISHED
    } else if verified(cfg, sc, v4, now) {
        SAMPLE_VERIFIED
    } else {
        SAMPLE_NEW
    };
    submit(&mut sc.budget, &sc.fp, cfg, kind);
}

/// Sends `fp` as a sample of `kind`, if its group's budget has one left.
#[inline(always)]
fn submit(b: &mut SampleBudget, fp: &Fingerprint, cfg: &DataplaneConfig, kind: u32) {
    if !budget(cfg, b, kind) {
        return;
    }
    if let Some(mut entry) = SAMPLES.reserve::<Sample>(0) {
        let p = entry.as_mut_ptr();
        // SAFETY: the reserved record, written field by field so the
        // fingerprint is copied straight from the scratch map.
        unsafe {
            (*p).kind = kind;
            (*p).pad = 0;
            (*p).fp = *fp;
        }
        entry.submit(0);
    }
}

/// Whether any signature is installed.
#[inline(always)]
pub fn armed() -> bool {
    has_active(SIGS.get(0))
}

/// Whether the signature table, looked up, has an active signature.
#[inline(always)]
fn has_active(table: Option<&SigTable>) -> bool {
    table.is_some_and(|t| t.active != 0)
}

/// Whether this packet is considered for a sample: sampling is on and
/// this CPU's packet count passes the mask, which keeps most packets of
/// a flood off the shared sample buckets.
#[inline(always)]
pub fn sampling(cfg: &DataplaneConfig, slots: &Slots) -> bool {
    cfg.sample & SAMPLE_ON != 0
        && slots
            .get(Counter::Packets.slot())
            .is_some_and(|n| n & u64::from(cfg.sample_mask) == 0)
}

/// Takes one from this CPU's sample budget of `kind`'s group (new flows;
/// contrast) for this second ([`room`] started it), if it has one: per
/// CPU, so no compare-and-swap loop, and the whole machine sends at most
/// the CPUs' count times the rate.
#[inline(always)]
fn budget(cfg: &DataplaneConfig, b: &mut SampleBudget, kind: u32) -> bool {
    let count = if kind == SAMPLE_NEW {
        &mut b.new
    } else {
        &mut b.contrast
    };
    if *count >= cfg.sample_rate {
        return false;
    }
    *count += 1;
    true
}

/// Whether this CPU's sample budget has room this second: for a new
/// flow, or, one packet in [`CONTRAST_EVERY`], for the contrast. Which of
/// the two a packet is takes lookups, which only a packet asked pays: so
/// while only the contrast has room, most packets do not ask. (Under a
/// flood the daemon's sample mask already keeps most packets from asking.)
#[inline(always)]
fn room(cfg: &DataplaneConfig, slots: &Slots, b: &mut SampleBudget, now: u64) -> bool {
    this_second(b, now);
    let nth = slots
        .get(Counter::Packets.slot())
        .is_some_and(|n| n % CONTRAST_EVERY == 0);
    b.new < cfg.sample_rate || (b.contrast < cfg.sample_rate && nth)
}

/// See [`room`].
const CONTRAST_EVERY: u64 = 64;

/// Whether this CPU's contrast budget has room this second.
#[inline(always)]
fn contrast_room(cfg: &DataplaneConfig, b: &mut SampleBudget, now: u64) -> bool {
    this_second(b, now);
    b.contrast < cfg.sample_rate
}

/// Starts the budget's counts afresh when `now` is in a new second.
#[inline(always)]
fn this_second(b: &mut SampleBudget, now: u64) {
    let second = now / NANOS_PER_SEC;
    if b.second != second {
        b.second = second;
        b.new = 0;
        b.contrast = 0;
    }
}

/// Whether the source is verified now (its state, or its marks if a flood
/// churned the state out). Only sampled packets pay these lookups.
#[inline(always)]
fn verified(cfg: &DataplaneConfig, sc: &mut Screen, v4: bool, now: u64) -> bool {
    // The key written in place (`SourceKey::v4`/`v6`'s masking), off the
    // stack.
    let (from, len, bits) = if v4 {
        (12, 4, cfg.source_prefix_v4.min(32))
    } else {
        (8, 16, cfg.source_prefix_v6.min(128))
    };
    let k = &mut sc.source;
    k.family = if v4 { AF_INET } else { AF_INET6 };
    k.prefix_len = bits;
    k.pad = [0; 2];
    for i in 0..16 {
        let kept = u32::from(bits).saturating_sub(8 * i as u32).min(8);
        let mask = (0xff00u32 >> kept) as u8;
        k.addr[i] = if i < len {
            at(&sc.pkt, from + i) & mask
        } else {
            0
        };
    }
    // SAFETY: map values read once.
    let state = Table::Sources
        .find(&sc.source, cfg.slot_seed)
        .map(|s| unsafe { (*s).verified_until_ns });
    let until = state.or_else(|| unsafe { MARKS.get(&sc.source) }.map(|m| m.verified_until_ns));
    until.is_some_and(|u| u > now)
}
