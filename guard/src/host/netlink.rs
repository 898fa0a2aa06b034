//! Netlink dumps: a request sent with `NLM_F_DUMP` and its multi-part
//! answer read to its end, message by message (sock_diag's listening
//! sockets, rtnetlink's local routes).

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// A socket of `protocol`, bound and connected to the kernel;
/// `strict` asks the kernel to apply a dump request's filters
/// (`NETLINK_GET_STRICT_CHK`, rtnetlink's).
pub fn open(protocol: isize, strict: bool) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    if strict {
        socket.set_netlink_get_strict_chk(true)?;
    }
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends `request` as a dump on `socket` and hands each inner message of
/// the answer to `each` until the kernel says it is done; `what` names
/// the protocol in the error for a reply that does not parse.
pub fn dump<I>(socket: &Socket, request: I, what: &str, mut each: impl FnMut(I)) -> io::Result<()>
where
    I: NetlinkSerializable + NetlinkDeserializable,
{
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut reply = vec![0; 64 * 1024];
    loop {
        let len = socket.recv(&mut &mut reply[..], 0)?;
        let mut offset = 0;
        while offset < len {
            let msg = NetlinkMessage::<I>::deserialize(&reply[offset..len])
                .map_err(|e| io::Error::other(format!("malformed {what} reply: {e}")))?;
            let size = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(inner) => each(inner),
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                _ => {}
            }
            if size == 0 {
                break;
            }
            offset += size;
        }
    }
}
