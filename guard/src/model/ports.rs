//! The port table's contents, decided without I/O: a counter slot for each
//! listening port that may get SYN cookies, and which of them are armed;
//! the ports conntrack skips, and the open ports of each protocol
//! ([`OpenPorts`]).
//!
//! The policy says whether a random-source SYN flood is on
//! ([`super::policy::XdpLimits::cookies`]); this module says which ports
//! it is aimed at. Under `--syn-cookies auto` a port is armed while the
//! flood is on and the port gets SYNs on the scale of the busiest port's
//! (a flood spread over many ports arms each of them), and disarmed
//! when its cookies have been quiet for `calm` or the flood is over; a
//! port the flood spares keeps its SYNs on the ordinary path. `always`
//! arms every port, `never` none.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
    time::Duration,
};

use guard_common::{
    PortCounts,
    config::{OPEN_MARKED_TCP, OPEN_MARKED_UDP},
    ports::{
        PORT_OPEN_TCP, PORT_OPEN_UDP, PORT_SLOTS, PORT_UNTRACKED_TCP, PORT_UNTRACKED_UDP,
        port_entry,
    },
};

use super::{
    as_f64 as f,
    nat::{NatRewrites, Rewrites},
    notrack::Untracked,
};
use crate::config::{DeclaredOpen, Enforcement, SynCookies};

/// Why SYN cookies stay off on a run although `--syn-cookies` asks for
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookiesOff {
    Monitor,
    /// No attachment can send a reply with `XDP_TX` (each said why).
    NoXdpReply,
    /// `nf_conntrack_tcp_loose` cannot be read, so not set to 0 either:
    /// SYNPROXY would never see the handshakes' ACKs.
    NoLooseKnob,
}

impl std::fmt::Display for CookiesOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Monitor => "in monitor mode: answering SYNs is not counting them",
            Self::NoXdpReply => "because no attachment can send a SYN-ACK with XDP_TX",
            Self::NoLooseKnob => {
                "nf_conntrack_tcp_loose cannot be read, so SYNPROXY could not see the ACKs"
            }
        })
    }
}

/// What `--syn-cookies` comes to on this run: the one place that says
/// whether cookies can be on. `loose_knob` is asked last, and only when
/// everything else allows them (the caller records the knob's value then).
pub fn cookie_mode(
    asked: SynCookies,
    enforcement: Enforcement,
    xdp_can_reply: bool,
    loose_knob: impl FnOnce() -> bool,
) -> Result<SynCookies, CookiesOff> {
    if asked == SynCookies::Never {
        return Ok(SynCookies::Never);
    }
    if enforcement != Enforcement::Enforce {
        return Err(CookiesOff::Monitor);
    }
    if !xdp_can_reply {
        return Err(CookiesOff::NoXdpReply);
    }
    if !loose_knob() {
        return Err(CookiesOff::NoLooseKnob);
    }
    Ok(asked)
}

/// A port is armed when it gets at least this share of the SYNs of the
/// busiest listening port, and at least this many a second. Relative to
/// the busiest port, not to all of them: a flood spread evenly over ten
/// ports or more gives none of them a tenth of the total, and would arm
/// none.
const ARM_SHARE: f64 = 0.1;
const ARM_RATE: f64 = 100.0;
/// An armed port answering fewer cookies a second than this is quiet.
const QUIET_RATE: f64 = 100.0;

/// Ports as the log, the status and the nftables sets write them:
/// `80, 443`.
#[must_use]
pub fn port_list(ports: impl IntoIterator<Item = u16>) -> String {
    ports
        .into_iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The namespace's listening TCP ports, as SYN cookies see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// Ports with a listener the wire can reach (one bound to loopback
    /// alone cannot: no SYNPROXY handshake could complete to it).
    pub ports: BTreeSet<u16>,
    /// Those of them with a listener bound to one address rather than the
    /// wildcard. A socket lookup finds such a listener with the same
    /// address as a connection's socket, so netfilter cannot tell a cookie
    /// handshake's ACK to it from a packet of a connection whose conntrack
    /// entry is gone (`model::nft::synproxy_script`), and conntrack must be
    /// strict about lone ACKs (`tcp_loose` 0) while one is armed.
    pub bound: BTreeSet<u16>,
}

impl Listening {
    /// From each listening socket's bound address and port.
    #[must_use]
    pub fn of(sockets: &[(IpAddr, u16)]) -> Self {
        let mut out = Self::default();
        for &(addr, port) in sockets {
            if addr.is_loopback() {
                continue;
            }
            out.ports.insert(port);
            if !addr.is_unspecified() {
                out.bound.insert(port);
            }
        }
        out
    }
}

/// The ports open for each protocol, where they are known: a port with a
/// listener the wire can reach (for UDP, a socket bound to it and
/// connected to no peer), or one the nat rules rewrite for the clients
/// that arrive. New flows to any other port take the closed ports' bucket
/// of the global budget (`FlowClass::closed_budget`), so a flood aimed
/// at ports nothing serves cannot spend what the open ones' clients need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenPorts {
    /// `None`: not known (the listeners unread, or a nat rule that may
    /// rewrite any port), and then no port is taken as closed.
    pub tcp: Option<BTreeSet<u16>>,
    pub udp: Option<BTreeSet<u16>>,
}

impl OpenPorts {
    /// From the listening ports of each protocol (UDP's `None`: unread;
    /// without TCP's the controller keeps the table it has), the nat
    /// rules' rewrites and the ports `--open-port` declares.
    #[must_use]
    pub fn of(
        tcp: &BTreeSet<u16>,
        udp: Option<&BTreeSet<u16>>,
        nat: &NatRewrites,
        declared: &DeclaredOpen,
    ) -> Self {
        let with =
            |listening: Option<&BTreeSet<u16>>, rewrites: &Rewrites, declared: &[(u16, u16)]| {
                // Every port open is no port closed: nothing to mark.
                let every = |&(lo, hi): &(u16, u16)| lo <= 1 && hi == u16::MAX;
                if rewrites.all.is_some() || declared.iter().any(every) {
                    return None;
                }
                let mut open = listening?.clone();
                let ranges = rewrites.ranges.iter().map(|&(lo, hi, _)| (lo, hi));
                open.extend(
                    ranges
                        .chain(declared.iter().copied())
                        .flat_map(|(lo, hi)| lo..=hi),
                );
                Some(open)
            };
        Self {
            tcp: with(Some(tcp), &nat.prerouting, &declared.tcp),
            udp: with(udp, &nat.udp, &declared.udp),
        }
    }

    /// As the status shows them: each protocol's ports as ranges.
    #[must_use]
    pub fn ranges(&self) -> OpenRanges {
        OpenRanges {
            tcp: self.tcp.as_ref().map(ranges),
            udp: self.udp.as_ref().map(ranges),
        }
    }

    /// The configuration's `OPEN_MARKED_*` bits: the protocols whose open
    /// ports the table marks.
    #[must_use]
    pub const fn marked(&self) -> u8 {
        (if self.tcp.is_some() {
            OPEN_MARKED_TCP
        } else {
            0
        }) | if self.udp.is_some() {
            OPEN_MARKED_UDP
        } else {
            0
        }
    }
}

/// The open ports as the status keeps them (every port may be open):
/// inclusive ranges by protocol, `None` where they are not known.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenRanges {
    pub tcp: Option<Vec<(u16, u16)>>,
    pub udp: Option<Vec<(u16, u16)>>,
}

/// Ranges [`OpenRanges`]' display names before "and N more" (a
/// resolver's client sockets are open ports too).
const SHOWN_RANGES: usize = 16;

impl std::fmt::Display for OpenRanges {
    /// `tcp 22, 80, 30000-32767; udp 53`, `all` for a protocol not known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |r: &Option<Vec<(u16, u16)>>| {
            r.as_ref().map_or_else(
                || "all (not known)".to_owned(),
                |r| {
                    if r.is_empty() {
                        return "none".to_owned();
                    }
                    let mut shown = r
                        .iter()
                        .take(SHOWN_RANGES)
                        .map(|&(lo, hi)| {
                            if lo == hi {
                                lo.to_string()
                            } else {
                                format!("{lo}-{hi}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    if r.len() > SHOWN_RANGES {
                        let _ = write!(shown, " and {} more", r.len() - SHOWN_RANGES);
                    }
                    shown
                },
            )
        };
        write!(f, "tcp {}; udp {}", list(&self.tcp), list(&self.udp))
    }
}

/// `ports` as inclusive ranges, in order.
fn ranges(ports: &BTreeSet<u16>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(p) => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

#[derive(Clone, Debug, Default)]
pub struct PortTable {
    /// Ports that may get cookies, and their counter slot.
    slots: BTreeMap<u16, u32>,
    /// Those of them that the nat rules send on (`PORT_FORWARDED`).
    forwarded: BTreeSet<u16>,
    /// Ports conntrack skips, by protocol (`PORT_UNTRACKED_TCP`, `_UDP`);
    /// the TCP ones get no cookies.
    untracked: Untracked,
    /// The open ports, where known (`PORT_OPEN_TCP`, `_UDP`).
    open: OpenPorts,
    /// Armed ports, and since when each has been quiet.
    armed: BTreeMap<u16, Option<Duration>>,
    /// Each port's counts at the last step, for rates.
    last: BTreeMap<u16, PortCounts>,
    last_at: Option<Duration>,
}

impl PortTable {
    /// Takes the ports that may get cookies now (listeners and forwarded
    /// ports, narrowed by `--cookie-port`), of which `forwarded` are sent
    /// on by the nat rules. A port keeps its slot while it stays; new
    /// ones take the lowest free slots; past [`PORT_SLOTS`] ports, the
    /// rest are returned and left out.
    pub fn set_eligible(&mut self, ports: &BTreeSet<u16>, forwarded: &BTreeSet<u16>) -> Vec<u16> {
        self.forwarded = forwarded.intersection(ports).copied().collect();
        self.slots.retain(|p, _| ports.contains(p));
        self.armed.retain(|p, _| ports.contains(p));
        self.last.retain(|p, _| ports.contains(p));
        let mut used: BTreeSet<u32> = self.slots.values().copied().collect();
        let mut left_out = Vec::new();
        for &port in ports {
            if self.slots.contains_key(&port) {
                continue;
            }
            match (0..PORT_SLOTS).find(|s| !used.contains(s)) {
                Some(slot) => {
                    used.insert(slot);
                    self.slots.insert(port, slot);
                }
                None => left_out.push(port),
            }
        }
        left_out
    }

    /// The ports conntrack skips (`model::notrack`): their entries say
    /// so, and no TCP one is eligible for cookies.
    pub fn set_untracked(&mut self, ports: &Untracked) {
        self.untracked.clone_from(ports);
    }

    /// The open ports (`model::ports::OpenPorts`).
    pub fn set_open(&mut self, open: OpenPorts) {
        self.open = open;
    }

    /// The configuration's `OPEN_MARKED_*` bits, for [`Self::entries`].
    #[must_use]
    pub const fn marked(&self) -> u8 {
        self.open.marked()
    }

    /// The open ports.
    #[must_use]
    pub const fn open(&self) -> &OpenPorts {
        &self.open
    }

    /// The ports conntrack skips.
    #[must_use]
    pub const fn untracked(&self) -> &Untracked {
        &self.untracked
    }

    /// The ports in the table that the nat rules send on.
    #[must_use]
    pub const fn forwarded(&self) -> &BTreeSet<u16> {
        &self.forwarded
    }

    #[must_use]
    pub fn armed(&self) -> BTreeSet<u16> {
        self.armed.keys().copied().collect()
    }

    /// The `GUARD_PORTS` value of every port in the table, of every port
    /// conntrack skips and of every open one.
    #[must_use]
    pub fn entries(&self) -> BTreeMap<u16, u32> {
        let mut entries: BTreeMap<u16, u32> = self
            .slots
            .iter()
            .map(|(&port, &slot)| {
                let armed = self.armed.contains_key(&port);
                (
                    port,
                    port_entry(slot, armed, self.forwarded.contains(&port)),
                )
            })
            .collect();
        for &port in &self.untracked.tcp {
            *entries.entry(port).or_default() |= PORT_UNTRACKED_TCP;
        }
        for &port in &self.untracked.udp {
            *entries.entry(port).or_default() |= PORT_UNTRACKED_UDP;
        }
        for (open, bit) in [
            (&self.open.tcp, PORT_OPEN_TCP),
            (&self.open.udp, PORT_OPEN_UDP),
        ] {
            for &port in open.iter().flatten() {
                *entries.entry(port).or_default() |= bit;
            }
        }
        entries
    }

    /// Keeps armed only the ports in `ports` (what the SYNPROXY rules
    /// cover, when installing new ones failed).
    pub fn keep_armed(&mut self, ports: &BTreeSet<u16>) {
        self.armed.retain(|p, _| ports.contains(p));
    }

    /// One step at time `at`: `counts` are each port's cumulative counters
    /// (by port), `flood` the policy's verdict.
    pub fn step(
        &mut self,
        at: Duration,
        counts: &BTreeMap<u16, PortCounts>,
        cookies: SynCookies,
        flood: bool,
        calm: Duration,
    ) {
        let rates = self.rates(at, counts);
        match cookies {
            SynCookies::Never => self.armed.clear(),
            SynCookies::Always => {
                for &port in self.slots.keys() {
                    self.armed.entry(port).or_insert(None);
                }
            }
            SynCookies::Auto if !flood => self.armed.clear(),
            SynCookies::Auto => {
                let busiest = rates.values().map(|r| r.0).fold(0.0, f64::max);
                for (&port, &(syns, answered)) in &rates {
                    match self.armed.get_mut(&port) {
                        None if syns >= ARM_RATE && syns >= busiest * ARM_SHARE => {
                            self.armed.insert(port, None);
                        }
                        None => {}
                        Some(quiet) if answered >= QUIET_RATE => *quiet = None,
                        Some(quiet) => {
                            quiet.get_or_insert(at);
                        }
                    }
                }
                self.armed
                    .retain(|_, quiet| quiet.is_none_or(|since| at.saturating_sub(since) < calm));
            }
        }
    }

    /// SYNs and cookies a second per port since the last step.
    fn rates(
        &mut self,
        at: Duration,
        counts: &BTreeMap<u16, PortCounts>,
    ) -> BTreeMap<u16, (f64, f64)> {
        let dt = self
            .last_at
            .map_or(0.0, |last| at.saturating_sub(last).as_secs_f64());
        let mut rates = BTreeMap::new();
        for port in self.slots.keys() {
            let now = counts.get(port).copied().unwrap_or_default();
            if let Some(then) = self.last.get(port)
                && dt > 0.0
            {
                let per_sec = |a: u64, b: u64| f(a.saturating_sub(b)) / dt;
                rates.insert(
                    *port,
                    (
                        per_sec(now.syns, then.syns),
                        per_sec(now.cookies, then.cookies),
                    ),
                );
            }
            self.last.insert(*port, now);
        }
        self.last_at = Some(at);
        rates
    }
}

#[cfg(test)]
mod tests {
    use guard_common::ports::{PORT_COOKIES, PORT_FORWARDED, port_slot};

    use super::*;

    const CALM: Duration = Duration::from_secs(5);

    #[test]
    fn a_port_bound_to_one_address_is_told_apart_from_the_wildcards() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let l = Listening::of(&[
            (ip("0.0.0.0"), 80),
            (ip("::"), 80),
            (ip("::"), 443),
            (ip("198.18.0.2"), 443),
            (ip("2001:db8::2"), 8443),
            (ip("127.0.0.1"), 5432),
            (ip("::1"), 6379),
            (ip("127.0.0.1"), 22),
            (ip("0.0.0.0"), 22),
        ]);
        assert_eq!(l.ports, BTreeSet::from([22, 80, 443, 8443]));
        assert_eq!(l.bound, BTreeSet::from([443, 8443]));
    }

    /// Each port's counter slot, as the table's entries carry it.
    fn slots(t: &PortTable) -> BTreeMap<u16, u32> {
        t.entries()
            .into_iter()
            .map(|(p, e)| (p, port_slot(e)))
            .collect()
    }

    fn ports(list: &[u16]) -> BTreeSet<u16> {
        list.iter().copied().collect()
    }

    fn counts(list: &[(u16, u64, u64)]) -> BTreeMap<u16, PortCounts> {
        list.iter()
            .map(|&(p, syns, cookies)| (p, PortCounts { syns, cookies }))
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ports_keep_their_slots_and_new_ones_take_free_slots() {
        let mut t = PortTable::default();
        assert!(
            t.set_eligible(&ports(&[22, 80, 443]), &BTreeSet::new())
                .is_empty()
        );
        let first = slots(&t);
        t.set_eligible(&ports(&[80, 443, 8080]), &BTreeSet::new());
        assert_eq!(slots(&t)[&80], first[&80]);
        assert_eq!(slots(&t)[&443], first[&443]);
        assert_eq!(slots(&t)[&8080], first[&22], "22's slot is free again");
        let entries = t.entries();
        assert_eq!(port_slot(entries[&8080]), first[&22]);
    }

    /// A forwarded port's entry says so, armed or not; one that stops
    /// being forwarded (its output rule gone) loses the bit, and a port
    /// named forwarded that is not eligible gets no entry.
    #[test]
    fn forwarded_ports_are_marked_in_their_entries() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[80, 8080]), &ports(&[8080, 9000]));
        t.step(secs(0), &counts(&[]), SynCookies::Always, false, CALM);
        let entries = t.entries();
        assert_eq!(entries.len(), 2);
        assert_ne!(entries[&8080] & PORT_FORWARDED, 0);
        assert_ne!(entries[&8080] & PORT_COOKIES, 0);
        assert_eq!(entries[&80] & PORT_FORWARDED, 0);
        t.set_eligible(&ports(&[80, 8080]), &BTreeSet::new());
        assert_eq!(t.entries()[&8080] & PORT_FORWARDED, 0);
    }

    /// A port conntrack skips has an entry that says so for each of its
    /// protocols, and no listener bit, slot or cookies, with cookies
    /// always on.
    #[test]
    fn untracked_ports_have_entries_of_their_own() {
        let mut t = PortTable::default();
        t.set_untracked(&Untracked {
            tcp: ports(&[8080]),
            udp: ports(&[53, 8080]),
        });
        t.set_eligible(&ports(&[80]), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Always, false, CALM);
        let entries = t.entries();
        assert_eq!(entries[&53], PORT_UNTRACKED_UDP);
        assert_eq!(entries[&8080], PORT_UNTRACKED_TCP | PORT_UNTRACKED_UDP);
        assert_eq!(entries[&80] & (PORT_UNTRACKED_TCP | PORT_UNTRACKED_UDP), 0);
        assert_ne!(entries[&80] & PORT_COOKIES, 0);
        assert_eq!(t.armed(), ports(&[80]));
    }

    /// The open ports are the listeners, the ports the nat rules rewrite
    /// for arriving clients and those `--open-port` names; a protocol
    /// whose listeners are
    /// unread, or that a nat rule may rewrite on any port, has none known
    /// (and then no port of it is closed).
    #[test]
    fn open_ports_are_the_listeners_and_the_published_ports() {
        let mut nat = NatRewrites::default();
        nat.prerouting
            .ranges
            .push((8000, 8002, "tcp rule".to_owned()));
        nat.udp.ranges.push((5353, 5353, "udp rule".to_owned()));
        let tcp = ports(&[22, 80]);
        let udp = ports(&[53]);
        let declared = DeclaredOpen {
            tcp: vec![(30000, 30001)],
            udp: vec![(4789, 4789)],
        };
        let open = OpenPorts::of(&tcp, Some(&udp), &nat, &declared);
        assert_eq!(
            open.tcp,
            Some(ports(&[22, 80, 8000, 8001, 8002, 30000, 30001]))
        );
        assert_eq!(open.udp, Some(ports(&[53, 4789, 5353])));
        assert_eq!(open.marked(), OPEN_MARKED_TCP | OPEN_MARKED_UDP);

        assert_eq!(
            open.ranges().to_string(),
            "tcp 22, 80, 8000-8002, 30000-30001; udp 53, 4789, 5353"
        );
        let none = DeclaredOpen::default();
        let unread = OpenPorts::of(&tcp, None, &nat, &declared);
        assert_eq!(unread.udp, None);
        assert_eq!(unread.marked(), OPEN_MARKED_TCP);
        nat.prerouting.all = Some("a portless dnat".to_owned());
        let any = OpenPorts::of(&tcp, Some(&udp), &nat, &none);
        assert_eq!(any.tcp, None);
        assert_eq!(any.marked(), OPEN_MARKED_UDP);
        assert_eq!(
            any.ranges().to_string(),
            "tcp all (not known); udp 53, 5353"
        );
        let every = OpenPorts {
            tcp: Some((1..=u16::MAX).collect()),
            udp: Some(BTreeSet::new()),
        };
        assert_eq!(every.ranges().to_string(), "tcp 1-65535; udp none");
        let many = OpenPorts {
            tcp: Some((0..20).map(|p| 1000 + 2 * p).collect()),
            udp: None,
        };
        assert!(
            many.ranges()
                .to_string()
                .ends_with("1030 and 4 more; udp all (not known)")
        );
        // Every port named open: nothing is closed, nothing to mark.
        let all = DeclaredOpen {
            tcp: vec![(1, u16::MAX)],
            udp: Vec::new(),
        };
        nat.prerouting.all = None;
        let named = OpenPorts::of(&tcp, Some(&udp), &nat, &all);
        assert_eq!(named.marked(), OPEN_MARKED_UDP);
    }

    /// Open ports' entries carry their protocols' bits, beside a
    /// listener's slot and a port conntrack skips.
    #[test]
    fn open_ports_are_marked_in_their_entries() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[80]), &BTreeSet::new());
        t.set_untracked(&Untracked {
            tcp: BTreeSet::new(),
            udp: ports(&[123]),
        });
        assert_eq!(t.marked(), 0);
        t.set_open(OpenPorts {
            tcp: Some(ports(&[22, 80])),
            udp: Some(ports(&[53, 80])),
        });
        let entries = t.entries();
        assert_eq!(entries[&22], PORT_OPEN_TCP);
        assert_eq!(entries[&53], PORT_OPEN_UDP);
        assert_eq!(
            entries[&80] & (PORT_OPEN_TCP | PORT_OPEN_UDP),
            PORT_OPEN_TCP | PORT_OPEN_UDP
        );
        assert_eq!(port_slot(entries[&80]), slots(&t)[&80]);
        assert_eq!(entries[&123], PORT_UNTRACKED_UDP);
        assert_eq!(t.marked(), OPEN_MARKED_TCP | OPEN_MARKED_UDP);
    }

    #[test]
    fn ports_past_the_slots_are_left_out() {
        let mut t = PortTable::default();
        let many: BTreeSet<u16> = (1..=u16::try_from(PORT_SLOTS).unwrap() + 2).collect();
        assert_eq!(t.set_eligible(&many, &BTreeSet::new()).len(), 2);
        assert_eq!(slots(&t).len(), PORT_SLOTS as usize);
    }

    #[test]
    fn auto_arms_only_the_ports_under_the_flood() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[22, 80, 443]), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Auto, true, CALM);
        // 80 takes the flood; 443 a little ordinary traffic; 22 nothing.
        t.step(
            secs(1),
            &counts(&[(80, 50_000, 0), (443, 40, 0)]),
            SynCookies::Auto,
            true,
            CALM,
        );
        assert_eq!(t.armed(), ports(&[80]));
        assert_ne!(t.entries()[&80] & PORT_COOKIES, 0);
        assert_eq!(t.entries()[&443] & PORT_COOKIES, 0);
        // No flood verdict: nothing is armed however busy a port is.
        let mut calm = PortTable::default();
        calm.set_eligible(&ports(&[80]), &BTreeSet::new());
        calm.step(secs(0), &counts(&[]), SynCookies::Auto, false, CALM);
        calm.step(
            secs(1),
            &counts(&[(80, 50_000, 0)]),
            SynCookies::Auto,
            false,
            CALM,
        );
        assert!(calm.armed().is_empty());
    }

    /// A flood spread evenly over twelve ports gives each a twelfth of the
    /// SYNs: each is armed all the same, and a port with ordinary traffic
    /// beside them is not.
    #[test]
    fn auto_arms_every_port_of_a_flood_spread_over_many() {
        let flooded: Vec<u16> = (8080..8092).collect();
        let mut eligible = flooded.clone();
        eligible.push(22);
        let mut t = PortTable::default();
        t.set_eligible(&ports(&eligible), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Auto, true, CALM);
        let mut now: Vec<(u16, u64, u64)> = flooded.iter().map(|&p| (p, 25_000, 0)).collect();
        now.push((22, 300, 0));
        t.step(secs(1), &counts(&now), SynCookies::Auto, true, CALM);
        assert_eq!(t.armed(), ports(&flooded));
    }

    #[test]
    fn an_armed_port_is_disarmed_after_calm_quiet_or_when_the_flood_ends() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[80]), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Auto, true, CALM);
        t.step(
            secs(1),
            &counts(&[(80, 10_000, 0)]),
            SynCookies::Auto,
            true,
            CALM,
        );
        assert_eq!(t.armed(), ports(&[80]));
        // Busy answering: stays armed.
        t.step(
            secs(2),
            &counts(&[(80, 20_000, 10_000)]),
            SynCookies::Auto,
            true,
            CALM,
        );
        assert_eq!(t.armed(), ports(&[80]));
        // Quiet from 3 s on: disarmed once quiet for CALM.
        for s in 3..8 {
            t.step(
                secs(s),
                &counts(&[(80, 20_000, 10_000)]),
                SynCookies::Auto,
                true,
                CALM,
            );
            assert_eq!(t.armed(), ports(&[80]), "at {s} s");
        }
        t.step(
            secs(8),
            &counts(&[(80, 20_000, 10_000)]),
            SynCookies::Auto,
            true,
            CALM,
        );
        assert!(t.armed().is_empty());
        // Armed again, then the flood verdict ends: all off at once.
        t.step(
            secs(9),
            &counts(&[(80, 40_000, 10_000)]),
            SynCookies::Auto,
            true,
            CALM,
        );
        assert_eq!(t.armed(), ports(&[80]));
        t.step(
            secs(10),
            &counts(&[(80, 60_000, 30_000)]),
            SynCookies::Auto,
            false,
            CALM,
        );
        assert!(t.armed().is_empty());
    }

    #[test]
    fn always_arms_every_port_and_never_none() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[22, 80]), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Always, false, CALM);
        assert_eq!(t.armed(), ports(&[22, 80]));
        t.step(secs(1), &counts(&[]), SynCookies::Never, true, CALM);
        assert!(t.armed().is_empty());
    }

    #[test]
    fn a_listener_that_goes_away_leaves_the_armed_set() {
        let mut t = PortTable::default();
        t.set_eligible(&ports(&[22, 80]), &BTreeSet::new());
        t.step(secs(0), &counts(&[]), SynCookies::Always, false, CALM);
        t.set_eligible(&ports(&[80]), &BTreeSet::new());
        assert_eq!(t.armed(), ports(&[80]));
        assert!(!t.entries().contains_key(&22));
    }

    #[test]
    fn cookies_are_on_only_when_every_condition_holds() {
        let knob_asked = std::cell::Cell::new(false);
        let knob = |ok: bool| {
            let asked = &knob_asked;
            move || {
                asked.set(true);
                ok
            }
        };
        let on = cookie_mode(SynCookies::Auto, Enforcement::Enforce, true, knob(true));
        assert_eq!(on, Ok(SynCookies::Auto));
        assert!(knob_asked.replace(false));
        for (asked, enforcement, xdp, want) in [
            (
                SynCookies::Never,
                Enforcement::Enforce,
                true,
                Ok(SynCookies::Never),
            ),
            (
                SynCookies::Always,
                Enforcement::Monitor,
                true,
                Err(CookiesOff::Monitor),
            ),
            (
                SynCookies::Always,
                Enforcement::Enforce,
                false,
                Err(CookiesOff::NoXdpReply),
            ),
        ] {
            assert_eq!(cookie_mode(asked, enforcement, xdp, knob(true)), want);
            assert!(!knob_asked.get(), "the knob was read for {want:?}");
        }
        assert_eq!(
            cookie_mode(SynCookies::Always, Enforcement::Enforce, true, knob(false)),
            Err(CookiesOff::NoLooseKnob)
        );
    }
}
