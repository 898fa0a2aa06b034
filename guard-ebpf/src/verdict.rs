//! The verdict for one dissected packet (the policy is written in
//! `main.rs`'s module doc).

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use guard_common::{
    COUNTER_SLOTS, Counter, DataplaneConfig, FlowClass, Limit, Marks, SourceKey, SourceState,
    SynAckKey,
    bucket::NANOS_PER_SEC,
    config::{
        ACK_LOOKUPS_PER_SEC, BUDGETS, DENY_V4, DENY_V6, HAS_LISTS_V4 as HAS_V4,
        HAS_LISTS_V6 as HAS_V6, PORTS_ARMED, REJECT_RST, SYN_LOOKUPS_PER_SEC, budget_drop,
    },
    key::{AF_INET, LIST_ALLOW, LIST_DENY},
    marked::{MARKED_WORDS, half_start, marked_bit},
    ports::{
        PORT_COOKIES, PORT_FORWARDED, PORT_LISTEN, PORT_UNTRACKED_TCP, PORT_UNTRACKED_UDP,
        port_slot,
    },
    state::{EVENT_BANNED, EVENT_LIMITED, Event, GLOBAL_BUDGET, GLOBAL_EVENTS, GLOBAL_RST},
};

use crate::{
    atomic, clock,
    cookie::{self, Ack, Socket},
    dissect::{F_FRAGMENT, F_QUERY, Headers},
    flows::Flow,
    maps::{
        CONFIG, EVENTS, GLOBAL, LISTS_V4, LISTS_V6, LookupBudget, MARKED, MARKS, PORT_COUNTS,
        PORTS, SCRATCH, SYNACKS, Scratch,
    },
    packet::load,
    route,
    slots::{Table, take_over},
};

/// A bit of the verdict's result, above the XDP actions: the packet is an
/// admitted new flow of a verified source.
pub const VERIFIED_FLOW: u32 = 1 << 8;

/// Compare-and-swap attempts on a full shared bucket before [`take`]
/// adds its interval instead: by then other CPUs have taken from it, so it
/// is not full any more.
const BUCKET_CAS_RETRIES: usize = 4;

type Slots = [u64; COUNTER_SLOTS];

#[inline(always)]
pub fn bump(slots: &mut Slots, counter: Counter) {
    if let Some(slot) = slots.get_mut(counter.slot()) {
        *slot = slot.wrapping_add(1);
    }
}

/// Whether the family's tries hold entries, and a deny entry.
#[inline(always)]
fn lists(cfg: &DataplaneConfig, v4: bool) -> (bool, bool) {
    if v4 {
        (cfg.lists & HAS_V4 != 0, cfg.lists & DENY_V4 != 0)
    } else {
        (cfg.lists & HAS_V6 != 0, cfg.lists & DENY_V6 != 0)
    }
}

/// Whether [`verdict`] would pass this packet untouched: not IP, or a
/// packet that cannot open a flow, with no deny entry to look up, that is
/// not a TCP segment the cookie path (a port armed) or the ACK check (the
/// budget binding) looks at. The entry returns at once for these, without
/// the call.
#[inline(always)]
pub fn untouched(cfg: &DataplaneConfig, h: &Headers) -> bool {
    match h.class {
        Counter::NonIp => true,
        Counter::Malformed | Counter::TcpSyn => false,
        Counter::TcpOther if cfg.ports & PORTS_ARMED != 0 || cfg.budget_binds() => false,
        _ => !h.may_open_flow() && !lists(cfg, h.family == AF_INET).1,
    }
}

/// Decides, counts the reason, and returns the XDP action.
#[inline(always)]
pub fn verdict(ctx: &XdpContext, h: &Headers, slots: &mut Slots) -> u32 {
    let Some(cfg) = CONFIG.get(0) else {
        return XDP_PASS;
    };
    match h.class {
        Counter::Malformed => return reject(cfg, slots, Counter::DropMalformed),
        Counter::NonIp => return XDP_PASS,
        _ => {}
    }
    let v4 = h.family == AF_INET;
    let (has_lists, has_deny) = lists(cfg, v4);
    let candidate = h.may_open_flow();
    if for_another_device(ctx, cfg) {
        return other_device(ctx, h, cfg, slots, v4, has_deny, candidate);
    }
    // TCP to a listening port: SYNs are counted per port, and an armed
    // port takes the cookie path. ACKs are looked up only while a port is
    // armed. A SYN's entry also says whether its port is open.
    let mut entry = 0;
    if h.class == Counter::TcpSyn || (h.class == Counter::TcpOther && cfg.ports & PORTS_ARMED != 0)
    {
        entry = port_entry(ctx, h);
        if let Some(action) = port(ctx, h, cfg, slots, v4, has_lists, entry) {
            return action;
        }
    }
    if h.class == Counter::TcpOther && cfg.budget_binds() {
        returning_client(ctx, h, cfg, slots, v4);
    }
    // The fast path: cannot open a flow, and no deny entry to look up.
    if !candidate && !has_deny {
        return XDP_PASS;
    }
    let Some(src) = source_addr(ctx, h) else {
        return XDP_PASS;
    };
    // Looked up once for the clock and the keys below.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return XDP_PASS;
    };

    // Read once, and only on paths that need it.
    let mut now = None;
    let mut flow = None;
    let mut answer = false;
    let class = match h.class {
        Counter::TcpSyn => Some(FlowClass::Syn),
        Counter::Icmp if h.flags & F_QUERY != 0 => Some(FlowClass::Icmp),
        // UDP, and the protocols conntrack tracks alike: a flow is new
        // until it passes once.
        Counter::Udp | Counter::IpOther if candidate => {
            let t = clock::now_in(scratch);
            now = Some(t);
            // SAFETY: this CPU's scratch value; XDP is not preempted,
            // and nothing else in this run writes the field.
            let place = unsafe { &mut (*scratch).flow };
            match Flow::of(ctx, h, &src, cfg.slot_seed, place) {
                Some(f) if !f.known(t, cfg.udp_flow_idle_ns) => {
                    if h.class == Counter::Udp {
                        entry = port_entry(ctx, h);
                        if entry & PORT_UNTRACKED_UDP != 0 {
                            return untracked(cfg, slots, &src, v4, has_lists);
                        }
                        answer = f.answers_dhcp(ctx, h, cfg.slot_seed, t, cfg.udp_flow_idle_ns);
                    }
                    flow = Some(f);
                    Some(if h.class == Counter::Udp {
                        FlowClass::Udp
                    } else {
                        FlowClass::Other
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };

    let listed = if has_deny || (class.is_some() && has_lists) {
        list_action(&src, v4)
    } else {
        0
    };
    if class.is_some() {
        bump(slots, Counter::NewFlows);
    }
    if listed == LIST_DENY {
        return reject(cfg, slots, Counter::DropDenylist);
    }
    let Some(class) = class else {
        return XDP_PASS;
    };
    let now = now.unwrap_or_else(|| clock::now_in(scratch));
    if listed == LIST_ALLOW {
        bump(slots, Counter::PassAllowlist);
        if let Some(flow) = &flow {
            flow.remember(now);
        }
        return XDP_PASS;
    }
    let skey = scratch_key(scratch, cfg, &src, v4);
    let budget = if answer {
        NO_BUDGET
    } else {
        budget(ctx, h, cfg, class, entry, v4)
    };
    let action = limit(
        cfg,
        slots,
        skey,
        &src,
        v4,
        class,
        budget,
        now,
        flow.as_ref(),
        false,
    );
    answered(ctx, h, cfg, slots, action)
}

/// The bucket of the global budget a new flow of `class` takes (`entry`:
/// its port's): a SYN or a datagram to a closed port takes the closed
/// ports' own ([`FlowClass::closed_budget`]), so a flood aimed at ports
/// nothing here serves cannot spend what the open ports' new clients
/// need. Only once the port table marks the open ports, and not for a
/// fragment (whose ports are not read) or a packet this host routes on
/// to another machine, whose ports are not this host's to know. The
/// route is asked for every such flow (each CPU remembers the answer,
/// `route.rs`): asked only once the closed ports' bucket was empty, a
/// routed flow that found room there was charged to it, and dropped as a
/// closed port's when a flood took the token before the flow's own take.
#[inline(always)]
fn budget(
    ctx: &XdpContext,
    h: &Headers,
    cfg: &DataplaneConfig,
    class: FlowClass,
    entry: u32,
    v4: bool,
) -> usize {
    match class.closed_port_budget(cfg.ports, entry) {
        Some(closed) if h.flags & F_FRAGMENT == 0 && !route::routed_on(ctx, h, v4) => closed,
        _ => class.index(),
    }
}

/// The bucket of the global budget a new flow the budget does not apply
/// to takes: none (past the configuration's buckets, so unlimited to
/// [`global_room`] and [`global_admits`]). A DHCP server's answer to a
/// message the host sent lately (`Flow::answers_dhcp`): the host asked
/// for it, and the answer comes from the link (DHCPv6) or names the
/// request's random id (DHCPv4). Its source's own limits apply.
const NO_BUDGET: usize = BUDGETS;

/// What [`limit`] (a SYN over a verified source's limit) or the cookie
/// path (a handshake's ACK the limits drop) gives [`answered`] for a RST:
/// not an XDP action.
const SEND_RST: u32 = u32::MAX;

/// `action`, with [`SEND_RST`] made a RST sent back (or a drop if the
/// frame cannot take one).
#[inline(always)]
fn answered(
    ctx: &XdpContext,
    h: &Headers,
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    action: u32,
) -> u32 {
    if action != SEND_RST {
        return action;
    }
    cookie::answer_rst(ctx, h, cfg).map_or(XDP_DROP, |action| {
        bump(slots, Counter::RstSent);
        action
    })
}

/// The port table's part, for a TCP segment: a SYN to a port conntrack
/// skips is no new flow ([`untracked`]), SYNs to a listening port are
/// counted, and an armed port takes the SYN-cookie path (enforce mode
/// only). `None`
/// sends the packet on the ordinary way.
#[inline(always)]
fn port(
    ctx: &XdpContext,
    h: &Headers,
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    v4: bool,
    has_lists: bool,
    entry: u32,
) -> Option<u32> {
    let syn = h.class == Counter::TcpSyn;
    if syn && entry & PORT_UNTRACKED_TCP != 0 {
        return Some(untracked(cfg, slots, &source_addr(ctx, h)?, v4, has_lists));
    }
    if entry & PORT_LISTEN == 0 {
        return None;
    }
    // Null rather than an `Option`: LLVM spilled the pointer of a `None`
    // undefined, which the verifier refuses to read back.
    let counts = if syn {
        PORT_COUNTS
            .get_ptr_mut(port_slot(entry))
            .unwrap_or(core::ptr::null_mut())
    } else {
        core::ptr::null_mut()
    };
    if !counts.is_null() {
        // SAFETY: this CPU's value of a per-CPU array; XDP is not preempted.
        unsafe { (*counts).syns = (*counts).syns.wrapping_add(1) };
    }
    if entry & PORT_COOKIES == 0 || !cfg.enforcing() {
        return None;
    }
    // A forwarded port's connections have no socket here to find: its
    // ACKs go to the kernel (conntrack, then SYNPROXY for a cookie's).
    if !syn && entry & PORT_FORWARDED != 0 {
        return None;
    }
    let Some(t) = cookie::tcp(ctx, h) else {
        if syn {
            bump(slots, Counter::CookieUnanswered);
        }
        return None;
    };
    if syn {
        // A SYN for a machine this host routes to is not this host's to
        // answer (`route.rs`); it goes the ordinary way.
        if route::routed_on(ctx, h, v4) {
            return None;
        }
        let src = source_addr(ctx, h)?;
        // A SYN for a connection the host still holds is the kernel's: a
        // server that closed first keeps the connection in TIME_WAIT for a
        // minute, and reopens it for the client's next SYN from the same
        // port, where the ACK of a cookie's handshake would reach that old
        // socket and go nowhere.
        if may_hold_connection(cfg, &src, v4) && cookie::known(ctx, h, &t) != Some(Socket::None) {
            bump(slots, Counter::CookieUnanswered);
            return None;
        }
        // A SYN the cookie path gives up on goes the ordinary way, which
        // counts it: counted here only when this path decides.
        if has_lists {
            if list_action(&src, v4) == LIST_DENY {
                bump(slots, Counter::NewFlows);
                return Some(reject(cfg, slots, Counter::DropDenylist));
            }
        }
        let Some(action) = cookie::answer_syn(ctx, h, &t, cfg) else {
            bump(slots, Counter::CookieUnanswered);
            return None;
        };
        bump(slots, Counter::NewFlows);
        bump(slots, Counter::CookieSynAck);
        if !counts.is_null() {
            // SAFETY: as above.
            unsafe { (*counts).cookies = (*counts).cookies.wrapping_add(1) };
        }
        return Some(action);
    }
    match cookie::screen_ack(ctx, h, &t)? {
        Ack::Known(socket) => {
            if socket == Socket::Connected && cfg.budget_binds() {
                let src = source_addr(ctx, h)?;
                verify(cfg, slots, &src, v4, clock::now());
            }
            Some(XDP_PASS)
        }
        Ack::Invalid => Some(reject(cfg, slots, Counter::DropCookieInvalid)),
        Ack::Valid => {
            bump(slots, Counter::CookieAckValid);
            let src = source_addr(ctx, h)?;
            if has_lists {
                match list_action(&src, v4) {
                    LIST_DENY => return Some(reject(cfg, slots, Counter::DropDenylist)),
                    LIST_ALLOW => {
                        bump(slots, Counter::PassAllowlist);
                        return Some(XDP_PASS);
                    }
                    _ => {}
                }
            }
            // The handshake makes a connection (SYNPROXY's conntrack entry):
            // the source's SYN limits apply here, and it is verified.
            let scratch = SCRATCH.get_ptr_mut(0)?;
            let skey = scratch_key(scratch, cfg, &src, v4);
            let now = clock::now_in(scratch);
            // The budget is skipped: the handshake proved the source.
            let syn = FlowClass::Syn;
            let action = limit(
                cfg,
                slots,
                skey,
                &src,
                v4,
                syn,
                syn.index(),
                now,
                None,
                true,
            );
            // Dropped (banned, or over its own or its prefix's limit), the
            // ACK makes no connection, and the client, which counts it
            // made, would hold one that never comes: it is told at once.
            // The cookie proves the address, so this is no reflector.
            let refused = action == XDP_DROP && rst_budget(cfg, slots, now);
            Some(answered(
                ctx,
                h,
                cfg,
                slots,
                if refused { SEND_RST } else { action },
            ))
        }
    }
}

/// A SYN or a new UDP flow to a port conntrack skips for its protocol
/// (`PORT_UNTRACKED_TCP`, `_UDP`): it opens no entry, so it is no new flow
/// and no limit applies; a denylisted source's is dropped all the same.
#[inline(always)]
fn untracked(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    src: &Addr,
    v4: bool,
    has_lists: bool,
) -> u32 {
    if has_lists && list_action(src, v4) == LIST_DENY {
        return reject(cfg, slots, Counter::DropDenylist);
    }
    bump(slots, Counter::PassUntracked);
    XDP_PASS
}

/// Whether the frame is for another device's link-layer address
/// ([`DataplaneConfig::for_another_device`]).
#[inline(always)]
pub fn for_another_device(ctx: &XdpContext, cfg: &DataplaneConfig) -> bool {
    cfg.host_macs_len != 0 && load::<[u8; 6]>(ctx, 0).is_some_and(|dst| cfg.for_another_device(dst))
}

/// A packet in a frame for another device (a macvlan container's, a
/// macvtap VM's): it never reaches this namespace's conntrack, so no limit
/// or cookie is for it, and it is not this host's flood; a denied source's
/// is dropped all the same.
#[inline(always)]
fn other_device(
    ctx: &XdpContext,
    h: &Headers,
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    v4: bool,
    has_deny: bool,
    candidate: bool,
) -> u32 {
    if has_deny
        && let Some(src) = source_addr(ctx, h)
        && list_action(&src, v4) == LIST_DENY
    {
        return reject(cfg, slots, Counter::DropDenylist);
    }
    if candidate {
        bump(slots, Counter::PassOtherDevice);
    }
    XDP_PASS
}

/// The destination port's `GUARD_PORTS` entry (0: none), for a TCP
/// segment or a UDP datagram; the rest of the headers are read only on
/// the cookie path, which most ports are not on. A fragment has none.
#[inline(always)]
fn port_entry(ctx: &XdpContext, h: &Headers) -> u32 {
    if h.flags & F_FRAGMENT != 0 {
        return 0;
    }
    load::<[u8; 2]>(ctx, h.l4 + 2)
        .and_then(|dport| PORTS.get(u32::from(u16::from_be_bytes(dport))))
        .copied()
        .unwrap_or(0)
}

/// Whether to look a SYN from `src` up among the host's sockets: always
/// for a source verified lately, by its slot or its marks (the egress
/// program verifies every client the host sends data or a FIN to, a
/// cookie handshake its client), which alone can hold a connection here;
/// for any other within this CPU's ration, [`SYN_LOOKUPS_PER_SEC`].
#[inline(always)]
fn may_hold_connection(cfg: &DataplaneConfig, src: &Addr, v4: bool) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let key = scratch_key(scratch, cfg, src, v4);
    let now = clock::now_in(scratch);
    let verified = slot_verified(cfg, key, now) || is_marked(cfg, key);
    // SAFETY: this CPU's scratch value; XDP is not preempted, and nothing
    // else in this run writes the field.
    verified
        || lookup_allowed(
            unsafe { &mut (*scratch).syn_lookups },
            SYN_LOOKUPS_PER_SEC,
            now,
        )
}

/// Drop in enforce mode, pass (and say so) in monitor mode; the reason is
/// counted either way.
#[inline(always)]
pub(crate) fn reject(cfg: &DataplaneConfig, slots: &mut Slots, reason: Counter) -> u32 {
    bump(slots, reason);
    if cfg.enforcing() {
        XDP_DROP
    } else {
        bump(slots, Counter::PassMonitor);
        XDP_PASS
    }
}

/// The per-source tier (with bans), the global budget's room, the
/// per-prefix tier and the budget's token, in that order; the first that
/// says no decides. A verified source (one that completed a handshake
/// lately: a cookie's, an ACK the check found, the host's replies) skips
/// the budget while it binds and the source keeps within its own limit;
/// `verify` marks the source verified when admitted.
///
/// A source with no entry and no marks would pass its own tier (a full
/// bucket, no ban), so the other two decide first and only a packet they
/// admit creates its entry: the packets of a random-source flood, which
/// the budget drops once it binds, cost no insert.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into verdict; a struct would only rename them"
)]
fn limit(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    skey: &SourceKey,
    src: &Addr,
    v4: bool,
    class: FlowClass,
    budget: usize,
    now: u64,
    flow: Option<&Flow<'_>>,
    verify: bool,
) -> u32 {
    let c = class.index();
    let (Some(source_limit), Some(prefix_limit)) = (cfg.source.get(c), cfg.prefix.get(c)) else {
        return XDP_PASS;
    };
    let Some(found) = Table::Sources.lookup(skey, cfg.slot_seed) else {
        return XDP_PASS;
    };
    let st = match found {
        Ok(p) => p,
        Err(place) => match marks(cfg, skey) {
            Some(m) => {
                let p = take_over(&place, skey);
                bump(slots, Counter::NewSources);
                // SAFETY: as for `st` below.
                recall(unsafe { &mut *p }, m);
                p
            }
            None => {
                // The budget is looked at before the prefix: a flood the
                // budget drops costs no prefix lookup, and no prefix token.
                if !verify && !global_room(cfg, budget, now) {
                    return reject(cfg, slots, budget_drop(budget));
                }
                let pst = match prefix_tier(cfg, slots, src, v4, class, prefix_limit, now) {
                    Ok(pst) => pst,
                    Err(()) => return reject(cfg, slots, Counter::DropPrefixLimit),
                };
                if !verify && !global_admits(cfg, slots, budget, now) {
                    if let Some(p) = pst {
                        p.dropped = p.dropped.wrapping_add(1);
                    }
                    return reject(cfg, slots, budget_drop(budget));
                }
                // SAFETY: as for `st` below.
                let st = unsafe { &mut *take_over(&place, skey) };
                bump(slots, Counter::NewSources);
                st.last_seen_ns = now;
                // A full bucket: the token is there, taken with a plain
                // store. A compare-and-swap would wait for the slot's cache
                // line, which a new source's slot seldom is in (its
                // writes above wait in the store buffer); a token lost to
                // another CPU taking the slot at the same instant is the
                // race `take_over` already allows.
                if let (Some(tat), Some(next)) = (st.tat.get_mut(c), source_limit.admit(0, now)) {
                    *tat = next;
                }
                return admitted(cfg, slots, st, pst, skey, verify, now, flow, true);
            }
        },
    };
    // SAFETY: a pointer into a map value that stays valid for this run.
    // A held source's buckets change only atomically (`take`); the other
    // fields are statistics and ban bookkeeping, where a lost update
    // between two CPUs is harmless (see SourceState).
    let st = unsafe { &mut *st };
    st.last_seen_ns = now;

    if st.banned_until_ns > now {
        st.dropped = st.dropped.wrapping_add(1);
        return reject(cfg, slots, Counter::DropBanned);
    }
    let Some(tat) = st.tat.get_mut(c) else {
        return XDP_PASS;
    };
    if !take(tat, source_limit, now, slots) {
        over_source_limit(cfg, slots, st, skey, class, now);
        st.dropped = st.dropped.wrapping_add(1);
        let action = reject(cfg, slots, Counter::DropSourceLimit);
        // A verified source's SYN, with `--reject rst`, is told at once
        // rather than left retransmitting; never an unverified source's,
        // which may be spoofed. (A cookie handshake's ACK, `verify`, is
        // answered by the caller, whatever tier drops it.)
        let answer = action == XDP_DROP
            && class == FlowClass::Syn
            && !verify
            && cfg.reject & REJECT_RST != 0
            && st.verified_until_ns > now
            && rst_budget(cfg, slots, now);
        return if answer { SEND_RST } else { action };
    }
    if st.limited != 0 {
        st.limited = 0;
    }
    // A verified source skips the budget while it binds and the source
    // keeps within its own limit (a flood that spoofs a client served
    // lately gets its burst past the budget, not its rate).
    let verified = st.verified_until_ns > now && !st.over_limit_within(cfg.ban_window_ns, now);
    let mut budgeted = !verify && !(verified && cfg.budget_binds());
    if budgeted && !global_room(cfg, budget, now) {
        // Spent before the controller says it binds: a flood's first
        // tick. A verified source still gets past it with at most a tenth
        // of its burst drawn (calm's limits are ten times the configured
        // ones, whose whole burst that is), so its connections do not wait
        // for a retransmission, while a flood spoofing it gets a tenth.
        let spare = st
            .tat
            .get(c)
            .is_some_and(|tat| source_limit.at_most_a_tenth_drawn(*tat, now));
        if !(verified && spare) {
            st.dropped = st.dropped.wrapping_add(1);
            return reject(cfg, slots, budget_drop(budget));
        }
        budgeted = false;
    }
    let Ok(pst) = prefix_tier(cfg, slots, src, v4, class, prefix_limit, now) else {
        st.dropped = st.dropped.wrapping_add(1);
        return reject(cfg, slots, Counter::DropPrefixLimit);
    };
    if budgeted && !global_admits(cfg, slots, budget, now) {
        if let Some(p) = pst {
            p.dropped = p.dropped.wrapping_add(1);
        }
        st.dropped = st.dropped.wrapping_add(1);
        return reject(cfg, slots, budget_drop(budget));
    }
    admitted(cfg, slots, st, pst, skey, verify, now, flow, false)
}

/// Whether the RST budget (`reject`'s and the cookie path's, all sources
/// together) has a token, taking it.
#[inline(always)]
fn rst_budget(cfg: &DataplaneConfig, slots: &mut Slots, now: u64) -> bool {
    GLOBAL
        .get_ptr_mut(GLOBAL_RST)
        // SAFETY: a map value of GUARD_GLOBAL.
        .is_some_and(|p| take(unsafe { &mut *p }, &cfg.rst, now, slots))
}

/// The prefix tier, unless its limit for this class is off: `Ok` with the
/// prefix's state when it admits (`None` when off), `Err` when it drops
/// (counted in the prefix's state).
#[inline(always)]
fn prefix_tier(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    src: &Addr,
    v4: bool,
    class: FlowClass,
    limit: &Limit,
    now: u64,
) -> Result<Option<&'static mut SourceState>, ()> {
    if limit.is_unlimited() {
        return Ok(None);
    }
    let pkey = masked(src, v4, cfg.prefix_v4, cfg.prefix_v6);
    let Some((p, _)) = Table::Prefixes.claim(&pkey, cfg.slot_seed) else {
        return Ok(None);
    };
    // SAFETY: a slot of GUARD_PREFIXES, valid for this run; see `st`.
    let p = unsafe { &mut *p };
    p.last_seen_ns = now;
    let Some(ptat) = p.tat.get_mut(class.index()) else {
        return Ok(None);
    };
    if take(ptat, limit, now, slots) {
        Ok(Some(p))
    } else {
        p.dropped = p.dropped.wrapping_add(1);
        Err(())
    }
}

/// Whether the global budget's bucket `budget` has a token now, without
/// taking it (always, when off): a read of the shared bucket, no write.
#[inline(always)]
fn global_room(cfg: &DataplaneConfig, budget: usize, now: u64) -> bool {
    let global = cfg.global.get(budget).unwrap_or(&Limit::UNLIMITED);
    global.is_unlimited()
        || GLOBAL
            .get_ptr(GLOBAL_BUDGET + budget as u32)
            // SAFETY: a map value of GUARD_GLOBAL; volatile because other
            // CPUs write it.
            .is_none_or(|p| {
                global
                    .admit(unsafe { core::ptr::read_volatile(p) }, now)
                    .is_some()
            })
}

/// Whether the global budget's bucket `budget` has a token (always, when
/// off).
#[inline(always)]
fn global_admits(cfg: &DataplaneConfig, slots: &mut Slots, budget: usize, now: u64) -> bool {
    let global = cfg.global.get(budget).unwrap_or(&Limit::UNLIMITED);
    global.is_unlimited()
        || GLOBAL
            .get_ptr_mut(GLOBAL_BUDGET + budget as u32)
            // SAFETY: a map value of GUARD_GLOBAL.
            .is_none_or(|p| take(unsafe { &mut *p }, global, now, slots))
}

/// A new flow every tier admitted: counted, the source verified if
/// `verify`, a datagram's flow remembered. A new flow of a source already
/// verified comes back as `XDP_PASS | VERIFIED_FLOW`, for the contrast
/// sample (`main.rs`). `fresh`: the source's slot was just taken over,
/// its state zeroed, and is written here without being read (a load
/// would wait for the slot's cache line).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into limit; a struct would only rename them"
)]
fn admitted(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    st: &mut SourceState,
    pst: Option<&mut SourceState>,
    skey: &SourceKey,
    verify: bool,
    now: u64,
    flow: Option<&Flow<'_>>,
    fresh: bool,
) -> u32 {
    if let Some(p) = pst {
        p.passed = p.passed.wrapping_add(1);
    }
    if fresh {
        st.passed = 1;
    } else {
        st.passed = st.passed.wrapping_add(1);
    }
    let verified = !verify && !fresh && st.verified_until_ns > now;
    if verify {
        st.verified_until_ns = now.saturating_add(cfg.verified_ns);
        mark(skey, st);
    }
    bump(slots, Counter::PassLimits);
    if let Some(flow) = flow {
        flow.remember(now);
    }
    if verified {
        XDP_PASS | VERIFIED_FLOW
    } else {
        XDP_PASS
    }
}

/// While the global budget binds, an ACK from a source not yet verified
/// proves the source real if it acknowledges a SYN-ACK the host sent (the
/// handshake's last ACK, also of a connection the nat rules send to a
/// container, which has no socket here) or names a connection of the
/// host's whose handshake completed; a spoofed ACK can do neither. The
/// source skips the global budget from then on, so clients that have
/// connected keep connecting with cookies off. A half-open connection
/// proves nothing: a spoofed SYN the budget let through makes one.
#[inline(always)]
fn returning_client(
    ctx: &XdpContext,
    h: &Headers,
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    v4: bool,
) {
    let Some(t) = cookie::tcp(ctx, h) else {
        return;
    };
    if !cookie::lone_ack(&t) {
        return;
    }
    let Some(src) = source_addr(ctx, h) else {
        return;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let now = clock::now_in(scratch);
    let key = scratch_key(scratch, cfg, &src, v4);
    let slot = Table::Sources.find(key, cfg.slot_seed);
    // Proven already (verified, and marked: not by the host's replies
    // alone).
    if verified_in(slot, now) && is_marked(cfg, key) {
        return;
    }
    // A SYN-ACK the host sent answers a SYN this program admitted, which
    // took its source's slot: an ACK from a source whose slot holds
    // another (a spoofed ACK flood's, nearly all) looks none up.
    if slot.is_some() && answers_synack(ctx, h, scratch, &src) {
        verify(cfg, slots, &src, v4, now);
        return;
    }
    // SAFETY: as for `syn_lookups` in `may_hold_connection`.
    if !lookup_allowed(
        unsafe { &mut (*scratch).ack_lookups },
        ACK_LOOKUPS_PER_SEC,
        now,
    ) {
        bump(slots, Counter::AckLookupsSkipped);
        return;
    }
    if cookie::known(ctx, h, &t) == Some(Socket::Connected) {
        verify(cfg, slots, &src, v4, now);
    }
}

/// Whether this CPU may make another socket lookup of `b`'s kind this
/// second (`per_sec` a second), counting it if so.
#[inline(always)]
fn lookup_allowed(b: &mut LookupBudget, per_sec: u32, now: u64) -> bool {
    let second = now / NANOS_PER_SEC;
    if b.second != second {
        b.second = second;
        b.used = 0;
    }
    if b.used >= u64::from(per_sec) {
        return false;
    }
    b.used += 1;
    true
}

/// Whether this ACK acknowledges a SYN-ACK the host sent while the budget
/// binds (`GUARD_SYNACKS`, `egress.rs`): its acknowledgement number is the
/// SYN-ACK's sequence number plus one, which a spoofed source never saw.
/// The key goes in the scratch value: the verdict's stack is full.
#[inline(always)]
fn answers_synack(ctx: &XdpContext, h: &Headers, scratch: *mut Scratch, src: &Addr) -> bool {
    // Ports, sequence and acknowledgement numbers.
    let Some(tcp) = load::<[u8; 12]>(ctx, h.l4) else {
        return false;
    };
    // SAFETY: this CPU's scratch value; XDP is not preempted, and nothing
    // else in this run writes the field.
    let key = unsafe { &mut (*scratch).synack };
    *key = SynAckKey::new(
        h.family,
        addr_bytes(src),
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
    );
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    // SAFETY: a value of GUARD_SYNACKS, read once.
    SYNACKS
        .get_ptr(key)
        .is_some_and(|expected| unsafe { core::ptr::read_volatile(expected) } == ack)
}

/// Marks a source verified for `verified_ns` from `now` (taking its slot
/// over if another source holds it), and proven: in `GUARD_MARKS` too
/// (also a source the host's replies had verified in its slot alone).
#[inline(always)]
fn verify(cfg: &DataplaneConfig, slots: &mut Slots, src: &Addr, v4: bool, now: u64) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let key = scratch_key(scratch, cfg, src, v4);
    let Some((st, newly)) = verified_now(cfg, slots, key, now) else {
        return;
    };
    if newly || !is_marked(cfg, key) {
        bump(slots, Counter::VerifiedAck);
        mark(key, st);
    }
}

/// A source the host sent data or a FIN of a TCP connection to (the
/// egress program, `egress.rs`), verified for `verified_ns` from `now` in
/// its slot only: it skips the global budget, but is not proven (not in
/// `GUARD_MARKS`, where a busy server's clients, every one of them
/// verified this way, would push the bans out; nor a source whose flows
/// the learner takes for normal ones: a flood that spoofs a client served
/// lately would veto its own signature). A flood that takes the slot over
/// takes this with it; the client's next handshake, or its ACK while the
/// budget binds, proves it.
#[inline(always)]
pub(crate) fn verify_reply(cfg: &DataplaneConfig, slots: &mut Slots, key: &SourceKey, now: u64) {
    if verified_now(cfg, slots, key, now).is_some_and(|(_, newly)| newly) {
        bump(slots, Counter::VerifiedReply);
    }
}

/// The source's state, its slot taken over if another source holds it
/// (a source taken back gets its marks back), verified for `verified_ns`
/// from `now`; and whether it was not verified already.
#[inline(always)]
fn verified_now<'a>(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    key: &SourceKey,
    now: u64,
) -> Option<(&'a mut SourceState, bool)> {
    let (st, created) = Table::Sources.claim(key, cfg.slot_seed)?;
    // SAFETY: a slot of GUARD_SOURCES; a plain store (see SourceState).
    let st = unsafe { &mut *st };
    if created {
        bump(slots, Counter::NewSources);
        if let Some(m) = marks(cfg, key) {
            recall(st, m);
        }
    }
    if st.verified_until_ns > now {
        return Some((st, false));
    }
    st.verified_until_ns = now.saturating_add(cfg.verified_ns);
    Some((st, true))
}

/// Keeps a source's verification and ban in `GUARD_MARKS`, which only
/// this inserts into: a flood of new sources churns `GUARD_SOURCES`, not
/// this.
#[inline(always)]
fn mark(key: &SourceKey, st: &SourceState) {
    let marks = Marks {
        verified_until_ns: st.verified_until_ns,
        banned_until_ns: st.banned_until_ns,
    };
    // Full, the LRU forgets its oldest verification or ban: the bound.
    let _ = MARKS.insert(key, &marks, 0);
    // In both halves, after the insert: a rebuild of the half not read
    // either sees the mark or keeps this bit (`guard_common::marked`).
    let (word, bit) = marked_bit(key);
    for half in [0, MARKED_WORDS] {
        if let Some(p) = MARKED.get_ptr_mut(half + word) {
            // SAFETY: a u64 of GUARD_MARKED; other CPUs and `guard run`
            // write it too, atomically.
            unsafe { atomic::or(p, bit) };
        }
    }
}

/// A source's marks, if it was verified or banned: looked up only when its
/// bit is set in the half of `GUARD_MARKED` read (a clear bit: no marks
/// made since that half was last rebuilt, none in force before). A pointer,
/// not a copy: the verdict's stack is scarce.
#[inline(always)]
pub(crate) fn marks(cfg: &DataplaneConfig, key: &SourceKey) -> Option<*const Marks> {
    if !is_marked(cfg, key) {
        return None;
    }
    MARKS.get_ptr(key)
}

/// Whether `key`'s bit is set in the half of `GUARD_MARKED` read: it may
/// have marks (a few percent of the unmarked share a bit with a marked
/// source).
#[inline(always)]
fn is_marked(cfg: &DataplaneConfig, key: &SourceKey) -> bool {
    let (word, bit) = marked_bit(key);
    MARKED
        .get_ptr(half_start(cfg.marked_half) + word)
        // SAFETY: a u64 of GUARD_MARKED; volatile because other CPUs set
        // bits.
        .is_some_and(|p| unsafe { core::ptr::read_volatile(p) } & bit != 0)
}

/// Whether `key`'s slot holds it, verified at `now`.
#[inline(always)]
fn slot_verified(cfg: &DataplaneConfig, key: &SourceKey, now: u64) -> bool {
    verified_in(Table::Sources.find(key, cfg.slot_seed), now)
}

/// Whether a source's state, as its slot was found (`None`: the slot
/// holds another source), says it is verified at `now`.
#[inline(always)]
fn verified_in(st: Option<*mut SourceState>, now: u64) -> bool {
    // SAFETY: a slot of GUARD_SOURCES, read once.
    st.is_some_and(|st| unsafe { (*st).verified_until_ns } > now)
}

/// A source whose entry was just created (again): its verification and
/// ban come back from its marks.
#[inline(always)]
fn recall(st: &mut SourceState, m: *const Marks) {
    // SAFETY: a map value of GUARD_MARKS, valid for this run; read once.
    let m = unsafe { &*m };
    st.verified_until_ns = m.verified_until_ns;
    st.banned_until_ns = m.banned_until_ns;
}

/// The source's key in `GUARD_SOURCES`, written in this CPU's scratch
/// value: on the stack it would pass the verifier's 512 bytes.
#[inline(always)]
fn scratch_key(
    scratch: *mut Scratch,
    cfg: &DataplaneConfig,
    src: &Addr,
    v4: bool,
) -> &'static SourceKey {
    // SAFETY: this CPU's scratch value; XDP is not preempted, and nothing
    // else in this run writes the field.
    let key = unsafe { &mut (*scratch).source };
    *key = source_key(cfg, src, v4);
    key
}

/// The source's key in `GUARD_SOURCES`.
#[inline(always)]
pub(crate) fn source_key(cfg: &DataplaneConfig, src: &Addr, v4: bool) -> SourceKey {
    masked(src, v4, cfg.source_prefix_v4, cfg.source_prefix_v6)
}

/// `src` masked to its family's prefix length, as a key.
#[inline(always)]
fn masked(src: &Addr, v4: bool, len_v4: u8, len_v6: u8) -> SourceKey {
    if v4 {
        SourceKey::v4_word(src[0], len_v4)
    } else {
        SourceKey::v6_words(*src, len_v6)
    }
}

/// Ban accounting and the "limited" event for a source over its limit.
#[inline(always)]
fn over_source_limit(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    st: &mut SourceState,
    key: &SourceKey,
    class: FlowClass,
    now: u64,
) {
    // A window opens at the first over-limit drop after the last one closed.
    if !st.over_limit_within(cfg.ban_window_ns, now) {
        st.window_start_ns = now;
        st.window_drops = 0;
    }
    st.window_drops = st.window_drops.saturating_add(1);
    if cfg.ban_threshold != 0 && st.window_drops >= cfg.ban_threshold {
        st.banned_until_ns = now.saturating_add(cfg.ban_duration_ns);
        st.window_drops = 0;
        mark(key, st);
        // Being banned is being limited: no "limited" event on top.
        st.limited = 1;
        event(
            cfg,
            slots,
            EVENT_BANNED,
            class,
            key,
            now,
            st.banned_until_ns,
        );
    } else if st.limited == 0 {
        st.limited = 1;
        event(cfg, slots, EVENT_LIMITED, class, key, now, 0);
    }
}

/// Takes a token from a bucket shared by all CPUs: exactly GCRA's
/// decision, in the order the CPUs' updates land, and never a drop for
/// another CPU's update alone.
///
/// A full bucket (its time behind `now`) is set to `now` plus the interval
/// by compare-and-swap; one that lost to another CPU's update reads again
/// (`bucket_contention` counts each loss). A bucket that is not full
/// (as any is that a CPU took from in the same instant) needs no
/// compare: GCRA's next time is its time plus the interval, which an
/// atomic add makes whatever the other CPUs add meanwhile, and the time
/// the add returns decides. An add whose token others took first is
/// given back.
#[inline(always)]
pub(crate) fn take(state: &mut u64, limit: &Limit, now: u64, slots: &mut Slots) -> bool {
    if limit.is_unlimited() {
        return true;
    }
    let p: *mut u64 = state;
    for _ in 0..BUCKET_CAS_RETRIES {
        // SAFETY: p points to a u64 in a map value; volatile because other
        // CPUs write it.
        let seen = unsafe { core::ptr::read_volatile(p) };
        let Some(next) = limit.admit(seen, now) else {
            return false;
        };
        if seen >= now {
            break;
        }
        // SAFETY: as above.
        if unsafe { atomic::cmpxchg(p, seen, next) } == seen {
            return true;
        }
        bump(slots, Counter::BucketContention);
    }
    // SAFETY: as above.
    let before = unsafe { atomic::fetch_add(p, limit.interval_ns) };
    if limit.admit(before, now).is_some() {
        return true;
    }
    // SAFETY: as above.
    unsafe { atomic::fetch_add(p, limit.interval_ns.wrapping_neg()) };
    false
}

/// Sends an event, if the event budget allows (bans always).
#[inline(always)]
fn event(
    cfg: &DataplaneConfig,
    slots: &mut Slots,
    kind: u32,
    class: FlowClass,
    source: &SourceKey,
    now: u64,
    banned_until_ns: u64,
) {
    // Bans skip the event budget: each one costs its source `ban_threshold`
    // over-limit drops, and userspace needs every one to free the table of
    // that source's entries. "Limited" events are the ones a flood of
    // sources could multiply.
    let allowed = kind == EVENT_BANNED
        || GLOBAL
            .get_ptr_mut(GLOBAL_EVENTS)
            // SAFETY: a map value of GUARD_GLOBAL.
            .is_some_and(|p| take(unsafe { &mut *p }, &cfg.events, now, slots));
    if !allowed {
        bump(slots, Counter::EventsSuppressed);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(slots, Counter::EventsSuppressed);
        return;
    };
    entry.write(Event {
        kind,
        class: class as u32,
        source: *source,
        monitor: u32::from(!cfg.enforcing()),
        time_ns: now,
        banned_until_ns,
    });
    entry.submit(0);
    bump(slots, Counter::EventsSent);
}

/// A source address as four words read from the packet in memory order
/// (an IPv4 address in the first, the others 0). Words, not bytes: LLVM
/// keeps each byte of a byte array in a stack slot of its own, and every
/// key built from it then costs a load, a shift and an or per byte.
pub(crate) type Addr = [u32; 4];

/// `src`'s bytes in memory order, for the keys that take bytes (the LPM
/// tries', a SYN-ACK's).
#[inline(always)]
pub(crate) fn addr_bytes(src: &Addr) -> [u8; 16] {
    // SAFETY: sixteen bytes either way, and any bytes are a byte array.
    unsafe { core::mem::transmute::<Addr, [u8; 16]>(*src) }
}

/// The packet's source address.
#[inline(always)]
pub(crate) fn source_addr(ctx: &XdpContext, h: &Headers) -> Option<Addr> {
    if h.family == AF_INET {
        Some([load::<u32>(ctx, h.l3 + 12)?, 0, 0, 0])
    } else {
        load::<Addr>(ctx, h.l3 + 8)
    }
}

#[inline(always)]
pub(crate) fn list_action(src: &Addr, v4: bool) -> u8 {
    // A lookup in each branch, not one of a map chosen by the branch: the
    // verifier calls a trie's own lookup only from a call site of one map
    // (`no_map_is_looked_up_through_the_generic_helper`).
    if v4 {
        LISTS_V4
            .get(Key::new(32, src[0].to_ne_bytes()))
            .copied()
            .unwrap_or(0)
    } else {
        LISTS_V6
            .get(Key::new(128, addr_bytes(src)))
            .copied()
            .unwrap_or(0)
    }
}
