//! The TCP ports that have a listening socket in the calling thread's
//! network namespace, through sock_diag (the `ss -ltn` query): the ports
//! SYN cookies may protect, and which are bound to one address
//! (`model::ports::Listening`); and the UDP ports a socket connected to
//! no peer is bound to (`ss -lun`). Both are open ports
//! (`model::ports::OpenPorts`). And the established connections to some
//! ports (`ss -tn state established`), which conntrack is told of when
//! guard switches it on. Call them through
//! [`crate::host::netns::Scope::run`].
//!
//! A port whose only listeners are bound to loopback is left out: a SYN
//! from the wire can never reach it, so SYNPROXY could not complete its
//! handshake. A published port (DNAT'ed) may have no listener here at
//! all: the nat rules name it (`model::nat`).

use std::{collections::BTreeSet, io, net::SocketAddr};

use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::netlink;
use crate::model::ports::Listening;

/// The listening ports, IPv4 and IPv6 (what they are: [`Listening`]).
pub fn listening_ports() -> io::Result<Listening> {
    of(IPPROTO_TCP, &StateFlags::LISTEN)
}

/// The UDP ports with a socket bound to them and connected to no peer
/// (one connected gets its peer's replies alone, which are flows the
/// host opened), IPv4 and IPv6, as [`Listening`] takes them.
pub fn udp_ports() -> io::Result<Listening> {
    of(IPPROTO_UDP, &StateFlags::CLOSE)
}

/// The established TCP connections to the local `ports`, IPv4 and IPv6,
/// as (local, remote) addresses; an IPv4 client of an IPv6 socket has its
/// IPv4 addresses, as conntrack knows it.
pub fn established(ports: &BTreeSet<u16>) -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for id in dump(family, IPPROTO_TCP, StateFlags::ESTABLISHED)? {
            if ports.contains(&id.source_port) {
                found.push((
                    SocketAddr::new(id.source_address.to_canonical(), id.source_port),
                    SocketAddr::new(id.destination_address.to_canonical(), id.destination_port),
                ));
            }
        }
    }
    Ok(found)
}

fn of(protocol: u8, states: &StateFlags) -> io::Result<Listening> {
    let mut sockets = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for id in dump(family, protocol, states.clone())? {
            sockets.push((id.source_address, id.source_port));
        }
    }
    Ok(Listening::of(&sockets))
}

/// Every socket of `family` and `protocol` in `states`.
fn dump(family: u8, protocol: u8, states: StateFlags) -> io::Result<Vec<SocketId>> {
    let socket = netlink::open(NETLINK_SOCK_DIAG, false)?;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id: if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        },
    });
    let mut found = Vec::new();
    netlink::dump(&socket, request, "sock_diag", |msg| {
        if let SockDiagMessage::InetResponse(r) = msg {
            found.push(r.header.socket_id);
        }
    })?;
    Ok(found)
}
