//! Attack fingerprints on the XDP side: a new-flow packet's fingerprint
//! (the layout is `guard_common::fingerprint`'s), the signature check, and
//! the samples the learner reads.

use aya_ebpf::{bindings::xdp_md, helpers::bpf_get_smp_processor_id, programs::XdpContext};
use guard_common::{
    COUNTER_SLOTS, Counter, DataplaneConfig,
    bucket::NANOS_PER_SEC,
    config::{HAS_LISTS_V4, HAS_LISTS_V6, SAMPLE_ON},
    counters::SIG_HIT_SLOT,
    dissect::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    fingerprint::{
        FP_LEN, FP_PAYLOAD, FP_PAYLOAD_LEN, Fingerprint, SAMPLE_ESTABLISHED, SAMPLE_NEW,
        SAMPLE_VERIFIED, Sample, SigTable, reads,
    },
    key::{AF_INET, LIST_ALLOW},
};

use crate::{
    clock,
    dissect::{F_CALLER, Headers},
    flows::{Flow, FlowPlace},
    maps::{CONFIG, COUNTERS, SAMPLES, SCRATCH, SIGS, SampleBudget},
    packet::{copy_in, words},
    slots::Table,
    verdict::{Addr, for_another_device, list_action, marks, reject, source_addr, source_key},
};

type Slots = [u64; COUNTER_SLOTS];

/// What [`guard_screen`] returns when no signature decides: not an XDP
/// action.
pub const NO_MATCH: u32 = u32::MAX;

/// A bit of [`guard_screen`]'s `packed` argument (the flags' bit the
/// dissect step leaves free, `F_CALLER`): the verdict found the packet a
/// verified source's admitted new flow. Sample it for the contrast, no
/// signature check (it passed that already).
pub const SCREEN_VERIFIED: u32 = (F_CALLER as u32) << 8;

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
/// limit. So it takes only the context and scalars, and looks up its
/// own maps.
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
    let ctx = XdpContext::new(ctx);
    // Another device's frame is no flow of this host's: neither sampled
    // nor dropped by a signature (the verdict passes it).
    if for_another_device(&ctx, cfg) {
        return NO_MATCH;
    }
    // SAFETY: this CPU's counter block, as in `main.rs`.
    let slots = unsafe { &mut (*block).slots };
    let verified = packed & SCREEN_VERIFIED != 0;
    let h = Headers::unpacked(l3, l4, l3_end, packed);
    let budget = chosen(cfg, slots, h.class, verified);
    let table = SIGS.get(0);
    if budget.is_none() && (verified || !has_active(table)) {
        return NO_MATCH;
    }
    // The contrast: only a proven source's admitted new flows.
    if verified
        && !source_addr(&ctx, &h)
            .is_some_and(|src| proven(cfg, &src, h.family == AF_INET, clock::now()))
    {
        return NO_MATCH;
    }
    let mut fp = Fingerprint::ZERO;
    if h.l3 > h.l4 || h.l4 > h.l3_end || !of(&ctx, &h, &mut fp) {
        return NO_MATCH;
    }
    if verified {
        if let Some(b) = budget {
            submit(b, &fp, cfg, SAMPLE_VERIFIED);
        }
        return NO_MATCH;
    }
    let v4 = h.family == AF_INET;
    let has_lists = if v4 { HAS_LISTS_V4 } else { HAS_LISTS_V6 };
    let listed = if cfg.lists & has_lists != 0 {
        source_addr(&ctx, &h).map_or(0, |src| list_action(&src, v4))
    } else {
        0
    };
    if let Some(table) = table
        && let Some(slot) = table.find(&fp)
    {
        if let Some(hits) = slots.get_mut(SIG_HIT_SLOT + slot) {
            *hits = hits.wrapping_add(1);
        }
        if table.monitor & (1 << slot) == 0 && listed != LIST_ALLOW {
            return reject(cfg, slots, Counter::DropSignature);
        }
    }
    if listed == 0
        && let Some(b) = budget
    {
        sample(cfg, b, &fp, &ctx, &h);
    }
    NO_MATCH
}

/// This CPU's sample budget if the packet is chosen for a sample: only
/// while the budget has room this second, so a flood past it costs a
/// clock read, not a fingerprint; and a packet the mask passes over
/// (the contrast has none) does not look the budget up.
#[inline(always)]
fn chosen(
    cfg: &DataplaneConfig,
    slots: &Slots,
    class: Counter,
    verified: bool,
) -> Option<&'static mut SampleBudget> {
    let asked = if verified {
        cfg.sample & SAMPLE_ON != 0
    } else {
        sampling(cfg, slots, class)
    };
    if !asked {
        return None;
    }
    // SAFETY: this CPU's scratch value; XDP is not preempted, and no other
    // path uses this field.
    let b = SCRATCH
        .get_ptr_mut(0)
        .map(|p| unsafe { &mut (*p).samples })?;
    let now = clock::now();
    let room = if verified {
        contrast_room(cfg, b, now)
    } else {
        room(cfg, slots, class, b, now)
    };
    room.then_some(b)
}

/// Writes the fingerprint of the packet's IP datagram into `fp`, from a
/// few word reads of the packet (`reads` says which); false if it has
/// none (not a transport that opens flows, or headers not there).
#[inline(always)]
fn of(ctx: &XdpContext, h: &Headers, fp: &mut Fingerprint) -> bool {
    let v4 = h.family == AF_INET;
    let proto = match h.class {
        Counter::TcpSyn | Counter::TcpOther => IPPROTO_TCP,
        Counter::Udp => IPPROTO_UDP,
        Counter::Icmp if v4 => IPPROTO_ICMP,
        Counter::Icmp => IPPROTO_ICMPV6,
        _ => return false,
    };
    let l4 = if reads::transport_len(proto) > 8 {
        words::<2>(ctx, h.l4)
    } else {
        words::<1>(ctx, h.l4).map(|[w]| [w, 0])
    };
    let (Some(ip), Some(l4)) = (words::<2>(ctx, h.l3), l4) else {
        return false;
    };
    let ip_len = h.l3_end - h.l3;
    fp.words[0] = reads::ip(v4, ip, proto, ip_len as u16);
    fp.words[1] = reads::transport(proto, l4);
    // The payload: none on most SYNs, so nothing read.
    let start = h.l4 + reads::fixed_len(proto);
    let avail = h.l3_end.saturating_sub(start);
    let payload = if avail == 0 {
        [0, 0]
    } else if let Some(w) = words::<2>(ctx, start) {
        w
    } else {
        match tail(ctx, start, avail) {
            Some(w) => w,
            None => return false,
        }
    };
    let [lo, hi] = reads::payload(payload, avail);
    fp.words[FP_PAYLOAD / 8] = lo;
    fp.words[FP_PAYLOAD / 8 + 1] = hi;
    true
}

// The payload is the fingerprint's last two words.
const _: () = assert!(FP_PAYLOAD % 8 == 0 && FP_PAYLOAD_LEN == 16 && FP_PAYLOAD + 16 == FP_LEN);

/// The payload's first bytes when the frame ends within 16 bytes of its
/// start (a short datagram without link padding), or has them outside
/// its linear part: the helper copies what there is, zeros after it.
#[inline(always)]
fn tail(ctx: &XdpContext, start: usize, avail: usize) -> Option<[u64; 2]> {
    let mut w = [0u64; 2];
    // SAFETY: the words' 16 bytes as bytes (u8 has no alignment).
    let bytes = unsafe { &mut *w.as_mut_ptr().cast::<[u8; FP_PAYLOAD_LEN]>() };
    copy_in(ctx, start, bytes, avail.min(FP_PAYLOAD_LEN)).then_some(w)
}

/// Sends the fingerprint as a sample, under its group's budget: a packet
/// of a known UDP flow, or a new flow of a source not proven (a proven
/// source's are sampled after the verdict, if it admits them).
#[inline(always)]
fn sample(
    cfg: &DataplaneConfig,
    b: &mut SampleBudget,
    fp: &Fingerprint,
    ctx: &XdpContext,
    h: &Headers,
) {
    let now = clock::now();
    let Some(src) = source_addr(ctx, h) else {
        return;
    };
    let mut place = FlowPlace::default();
    let established = h.class == Counter::Udp
        && Flow::of(ctx, h, &src, cfg.slot_seed, &mut place)
            .is_some_and(|flow| flow.known(now, cfg.udp_flow_idle_ns));
    let kind = if established {
        SAMPLE_ESTABLISHED
    } else if proven(cfg, &src, h.family == AF_INET, now) {
        // Sampled after the verdict, and only if it admits the flow
        // (`main.rs`): one over the source's limit is a flood's.
        return;
    } else {
        SAMPLE_NEW
    };
    submit(b, fp, cfg, kind);
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
        // fingerprint is copied straight from the scratch map; the helper
        // only reads which CPU runs this (XDP does not migrate).
        unsafe {
            (*p).kind = kind;
            (*p).cpu = bpf_get_smp_processor_id();
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
/// this CPU's count of the packet's class passes the mask, which keeps
/// most packets of a flood off the shared sample buckets.
#[inline(always)]
pub fn sampling(cfg: &DataplaneConfig, slots: &Slots, class: Counter) -> bool {
    cfg.sample & SAMPLE_ON != 0
        && slots
            .get(class.slot())
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
/// flow, or, one packet of the class in [`CONTRAST_EVERY`], for the
/// contrast. Which of the two a packet is takes lookups, which only a
/// packet asked pays: so while only the contrast has room, most packets
/// do not ask. (Under a flood the daemon's sample mask already keeps most
/// packets from asking.)
#[inline(always)]
fn room(
    cfg: &DataplaneConfig,
    slots: &Slots,
    class: Counter,
    b: &mut SampleBudget,
    now: u64,
) -> bool {
    this_second(b, now);
    let nth = slots
        .get(class.slot())
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

/// Whether the source is proven now (verified, and its verification kept
/// in its marks: a cookie handshake, an ACK check; not the host's replies
/// alone, `verdict::verify_reply`), and neither over its limit nor
/// banned: its flows are normal traffic for the learner. A flood that
/// spoofs such a source is over its limit at once, and its packets are
/// the attack's. Only sampled packets pay these lookups.
#[inline(always)]
fn proven(cfg: &DataplaneConfig, src: &Addr, v4: bool, now: u64) -> bool {
    let key = source_key(cfg, src, v4);
    let Some(m) = marks(cfg, &key) else {
        return false;
    };
    // SAFETY: map values read once.
    let limited = Table::Sources
        .find(&key, cfg.slot_seed)
        .is_some_and(|s| unsafe { (*s).limited } != 0);
    let m = unsafe { &*m };
    m.verified_until_ns > now && m.banned_until_ns <= now && !limited
}
