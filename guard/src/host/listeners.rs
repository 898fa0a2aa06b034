//! The TCP ports that have a listening socket in the calling thread's
//! network namespace, through sock_diag (the `ss -ltn` query): the ports
//! SYN cookies may protect, and which are bound to one address
//! (`model::ports::Listening`). Call it through
//! [`crate::host::netns::Scope::run`].
//!
//! A port whose only listeners are bound to loopback is left out: a SYN
//! from the wire can never reach it, so SYNPROXY could not complete its
//! handshake. A published port (DNAT'ed) may have no listener here at
//! all: the nat rules name it (`model::nat`).

use std::{io, net::IpAddr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::netlink::each_reply;
use crate::model::ports::Listening;

/// The listening ports, IPv4 and IPv6 (what they are: [`Listening`]).
pub fn listening_ports() -> io::Result<Listening> {
    let mut sockets = dump(AF_INET)?;
    sockets.extend(dump(AF_INET6)?);
    Ok(Listening::of(&sockets))
}

/// The bound address and port of every listening TCP socket of `family`.
fn dump(family: u8) -> io::Result<Vec<(IpAddr, u16)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut found = Vec::new();
    each_reply(&socket, "sock_diag", |msg| {
        if let SockDiagMessage::InetResponse(r) = msg {
            let id = &r.header.socket_id;
            found.push((id.source_address, id.source_port));
        }
    })?;
    Ok(found)
}
