//! Netlink requests and their answers read to their end, message by
//! message: dumps (sock_diag's listening sockets, rtnetlink's local routes
//! and links, ctnetlink's entries and statistics), changes acknowledged
//! (a link's XDP program, a conntrack entry's deletion) and single
//! answers (a link).

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
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

/// Bytes read from a socket at a time: the kernel fills a dump's
/// datagrams up to 32 KiB (`netlink_dump`), and other answers are single
/// messages.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Sends `request` as a dump on `socket` and hands each inner message of
/// the answer to `each` until the kernel says it is done; `what` names
/// the protocol in the error for a reply that does not parse.
pub fn dump<I>(socket: &Socket, request: I, what: &str, each: impl FnMut(I)) -> io::Result<()>
where
    I: NetlinkSerializable + NetlinkDeserializable,
{
    exchange(socket, request, NLM_F_REQUEST | NLM_F_DUMP, what, each)
}

/// Sends `request` with `flags` on `socket` and hands each inner message
/// of the answer to `each`, to the answer's end: a dump's done message,
/// an acknowledgement, an error (returned), or, for a request that asked
/// for neither a dump nor an acknowledgement, its one message. `what`
/// names the protocol in the error for a reply that does not parse.
pub fn exchange<I>(
    socket: &Socket,
    request: I,
    flags: u16,
    what: &str,
    mut each: impl FnMut(I),
) -> io::Result<()>
where
    I: NetlinkSerializable + NetlinkDeserializable,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let single = flags & (NLM_F_DUMP | NLM_F_ACK) == 0;
    let mut reply = vec![0; RECEIVE_BUFFER];
    loop {
        let len = socket.recv(&mut &mut reply[..], 0)?;
        let mut offset = 0;
        while offset < len {
            let msg = NetlinkMessage::<I>::deserialize(&reply[offset..len])
                .map_err(|e| io::Error::other(format!("malformed {what} reply: {e}")))?;
            let size = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    each(inner);
                    if single {
                        return Ok(());
                    }
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(e.to_io()),
                    };
                }
                _ => {}
            }
            if size == 0 {
                break;
            }
            offset += size;
        }
    }
}
