//! The port table: which local TCP ports have a listener (and so may get
//! SYN cookies), which are armed now, and the per-port SYN counters the
//! controller reads to arm a port under a flood and disarm it after;
//! which ports conntrack skips, and which are open (for the closed
//! ports' bucket of the global budget), by protocol.
//!
//! `GUARD_PORTS` is an array indexed by the destination port (host order),
//! so the program's lookup is one inlined bounds check and load; its value
//! packs a counter slot and bits. Only ports with a listener get a slot,
//! in `GUARD_PORT_COUNTS` (per CPU).

/// Counter slots: ports with a listener that guard tracks at once.
pub const PORT_SLOTS: u32 = 256;
/// Entries of `GUARD_PORTS`: every port.
pub const PORT_ENTRIES: u32 = 65_536;

/// The port has a listener in the protected namespace; the low byte is its
/// slot in `GUARD_PORT_COUNTS`.
pub const PORT_LISTEN: u32 = 1 << 8;
/// SYNs to the port are answered with SYN cookies (enforce mode only).
pub const PORT_COOKIES: u32 = 1 << 9;
/// The host's nat rules send the port's connections on (a container's
/// published port): no local socket holds them, so the program leaves the
/// port's ACKs to the kernel, whose conntrack knows the connections and
/// whose SYNPROXY checks a cookie handshake's ACK.
pub const PORT_FORWARDED: u32 = 1 << 10;
/// Conntrack skips the port for TCP (NOTRACK in the raw table: `guard
/// notrack`, `--notrack-port`, an operator's rule): a SYN to it opens no
/// entry, so it is no new flow, and no limit applies. Such a port never
/// gets cookies (their SYNPROXY needs conntrack), so it has no listener
/// bit either.
pub const PORT_UNTRACKED_TCP: u32 = 1 << 11;
/// The same for UDP: a datagram to the port opens no entry.
pub const PORT_UNTRACKED_UDP: u32 = 1 << 12;
/// The port is open for TCP: a socket the wire can reach listens on it,
/// or the nat rules rewrite it for the clients that arrive (every
/// listener counts, whatever `--cookie-port` says). Once the
/// configuration says the bits are set (`OPEN_MARKED_TCP`), a SYN to a port
/// without it takes the closed ports' bucket of the global budget.
pub const PORT_OPEN_TCP: u32 = 1 << 13;
/// The same for UDP: a socket bound to the port and connected to no
/// peer (what `ss -uln` lists), or a nat rewrite of UDP to it.
pub const PORT_OPEN_UDP: u32 = 1 << 14;
const SLOT_MASK: u32 = 0xff;

const _: () = assert!(PORT_SLOTS == SLOT_MASK + 1);

/// The `GUARD_PORTS` value of a listening port (`forwarded`: a port the
/// nat rules send on, [`PORT_FORWARDED`]).
#[must_use]
pub const fn port_entry(slot: u32, cookies: bool, forwarded: bool) -> u32 {
    (slot & SLOT_MASK)
        | PORT_LISTEN
        | if cookies { PORT_COOKIES } else { 0 }
        | if forwarded { PORT_FORWARDED } else { 0 }
}

/// The counter slot of a `GUARD_PORTS` value with [`PORT_LISTEN`].
#[must_use]
#[inline(always)]
pub const fn port_slot(entry: u32) -> u32 {
    entry & SLOT_MASK
}

/// One port's counters on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounts {
    /// SYNs to the port (any verdict, monitor mode too).
    pub syns: u64,
    /// SYNs answered with a cookie.
    pub cookies: u64,
}

impl PortCounts {
    pub const ZERO: Self = Self {
        syns: 0,
        cookies: 0,
    };

    /// Adds another CPU's counts.
    pub fn accumulate(&mut self, other: &Self) {
        self.syns = self.syns.wrapping_add(other.syns);
        self.cookies = self.cookies.wrapping_add(other.cookies);
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u64s, no padding.
unsafe impl aya::Pod for PortCounts {}

const _: () = assert!(size_of::<PortCounts>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_its_slot_and_bits() {
        let e = port_entry(201, true, false);
        assert_eq!(port_slot(e), 201);
        assert_ne!(e & PORT_LISTEN, 0);
        assert_ne!(e & PORT_COOKIES, 0);
        assert_eq!(e & PORT_FORWARDED, 0);
        let e = port_entry(0, false, true);
        assert_eq!(port_slot(e), 0);
        assert_eq!(e & PORT_COOKIES, 0);
        assert_ne!(e & PORT_FORWARDED, 0);
        assert_ne!(e, 0, "a listening port is never the empty entry");
    }
}
