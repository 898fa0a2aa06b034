//! The datagram flows seen lately (`GUARD_UDP_FLOW4`, `GUARD_UDP_FLOWS`):
//! UDP's, and those of the other protocols conntrack tracks alike. A
//! datagram on a flow seen within `udp_flow_idle` is not a new flow.
//!
//! Two programs write them: the XDP program remembers a flow it admitted
//! and refreshes one it sees again (`verdict.rs`); the egress program
//! remembers the flows this host opens, keyed as their replies arrive
//! (`egress.rs`). A reply to the host's own datagram (its resolver's
//! answer, its NTP server's) opens no conntrack entry, since the
//! datagram made it: counted as new, such replies drew on the budget
//! with a flood's and met the resolver's own limit.

use aya_ebpf::programs::XdpContext;
use guard_common::{
    FlowKey, FlowKey4,
    config::UDP_FLOW_REFRESH_NS,
    dissect::{IPPROTO_UDP, keyed_by_ports},
    key::AF_INET,
};

use crate::{
    dissect::Headers,
    maps::{UDP_FLOWS, UDP_FLOWS4},
    packet::load,
    verdict::{Addr, addr_bytes},
};

/// A datagram's flow, as its flow map keys it: IPv4 UDP flows in
/// `GUARD_UDP_FLOW4` (a 12-byte key: the map hashes it whole at every
/// UDP packet); IPv6 UDP flows, and the flows of other protocols
/// (addresses and protocol, no ports) of both families, in
/// `GUARD_UDP_FLOWS`, whose 40-byte key is written in a place the caller
/// gives (the verdict's is in the scratch value: on the stack it would
/// pass the verifier's 512 bytes). A struct, not an enum of the two: LLVM
/// packed such an enum's tag beside the pointer and shifted the pointer,
/// which the verifier refuses.
#[derive(Clone, Copy)]
pub(crate) struct Flow<'a> {
    v4: Option<FlowKey4>,
    v6: &'a FlowKey,
}

/// A flow's addresses and ports, as a datagram that arrives carries them.
pub(crate) struct Ends {
    pub family: u8,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// 0 unless conntrack keys the protocol's flows by ports
    /// (`guard_common::dissect::keyed_by_ports`).
    pub sport: u16,
    pub dport: u16,
}

impl<'a> Flow<'a> {
    /// The flow of the datagram the XDP program sees, from `src`.
    #[inline(always)]
    pub(crate) fn of(
        ctx: &XdpContext,
        h: &Headers,
        src: &Addr,
        place: &'a mut FlowKey,
    ) -> Option<Self> {
        let (sport, dport) = if keyed_by_ports(h.proto) {
            let ports = load::<[u8; 4]>(ctx, h.l4)?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            )
        } else {
            (0, 0)
        };
        let dst = if h.family == AF_INET {
            [load::<u32>(ctx, h.l3 + 16)?, 0, 0, 0]
        } else {
            load::<Addr>(ctx, h.l3 + 24)?
        };
        let ends = Ends {
            family: h.family,
            proto: h.proto,
            src: *src,
            dst,
            sport,
            dport,
        };
        Some(Self::keyed(&ends, place))
    }

    /// The flow of `ends`, in the map that holds its kind.
    #[inline(always)]
    pub(crate) fn keyed(ends: &Ends, place: &'a mut FlowKey) -> Self {
        if ends.family == AF_INET && ends.proto == IPPROTO_UDP {
            let v4 = FlowKey4 {
                saddr: ends.src[0].to_ne_bytes(),
                daddr: ends.dst[0].to_ne_bytes(),
                sport: ends.sport,
                dport: ends.dport,
            };
            return Self {
                v4: Some(v4),
                v6: place,
            };
        }
        *place = FlowKey {
            family: ends.family,
            proto: ends.proto,
            sport: ends.sport,
            dport: ends.dport,
            pad: 0,
            saddr: addr_bytes(&ends.src),
            daddr: addr_bytes(&ends.dst),
        };
        Self {
            v4: None,
            v6: place,
        }
    }

    /// Whether the flow was seen within `idle` ns; refreshes its time.
    #[inline(always)]
    pub(crate) fn known(&self, now: u64, idle: u64) -> bool {
        let last = match &self.v4 {
            Some(key) => UDP_FLOWS4.get_ptr_mut(key),
            None => UDP_FLOWS.get_ptr_mut(self.v6),
        };
        let Some(last) = last else {
            return false;
        };
        // SAFETY: a map value of a flow map.
        let last = unsafe { &mut *last };
        let age = now.saturating_sub(*last);
        if age > idle {
            return false;
        }
        if age > UDP_FLOW_REFRESH_NS {
            *last = now;
        }
        true
    }

    /// Remembers the flow as seen `now`.
    #[inline(always)]
    pub(crate) fn remember(&self, now: u64) {
        let _ = match &self.v4 {
            Some(key) => UDP_FLOWS4.insert(key, &now, 0),
            None => UDP_FLOWS.insert(self.v6, &now, 0),
        };
    }

    /// Remembers the flow as seen `now` unless it was within
    /// `UDP_FLOW_REFRESH_NS`: a lookup for each datagram, a write once a
    /// second at most.
    #[inline(always)]
    pub(crate) fn refresh(&self, now: u64) {
        if !self.known(now, UDP_FLOW_REFRESH_NS) {
            self.remember(now);
        }
    }
}
