//! A netlink dump's answer, read to its end: the multi-part replies of a
//! sock_diag or rtnetlink request, message by message.

use std::io;

use netlink_packet_core::{NetlinkDeserializable, NetlinkMessage, NetlinkPayload};
use netlink_sys::Socket;

/// Reads `socket`'s replies to a dump request until the kernel says it is
/// done, handing each inner message to `each`; `what` names the protocol
/// in the error for a reply that does not parse.
pub fn each_reply<I: NetlinkDeserializable>(
    socket: &Socket,
    what: &str,
    mut each: impl FnMut(I),
) -> io::Result<()> {
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
