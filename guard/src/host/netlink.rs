//! Netlink requests and their answers read to their end, message by
//! message: dumps (sock_diag's listening sockets, rtnetlink's local routes
//! and links, ctnetlink's entries and statistics), changes acknowledged
//! (a link's XDP program, a conntrack entry's deletion), single answers
//! (a link), and notifications watched for (a device changed).

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

/// A non-blocking socket of `protocol` that receives the kernel's
/// notifications to multicast `groups` (rtnetlink's `RTNLGRP_LINK`, say),
/// in the calling thread's namespace.
fn watch(protocol: isize, groups: &[u32]) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    for &group in groups {
        socket.add_membership(group)?;
    }
    socket.set_non_blocking(true)?;
    Ok(socket)
}

/// Whether the kernel notified `socket` ([`watch`]) of anything since the
/// last call: every notification waiting is read, none parsed. A socket
/// whose buffer overran (`ENOBUFS`: notifications lost) says so too.
fn notified(socket: &Socket) -> io::Result<bool> {
    let mut buf = vec![0; RECEIVE_BUFFER];
    let mut any = false;
    loop {
        match socket.recv(&mut &mut buf[..], 0) {
            Ok(_) => any = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
            Err(e) => return Err(e),
        }
    }
}

/// A read of a namespace's state (its devices, its local routes) done
/// again only once the kernel notifies one of the state's multicast
/// groups, or for another key (the devices of other guarded interfaces).
/// Done at every tick, a dump of every device and every local route cost
/// guard a quarter of a CPU (the debug build; 9% the release build) on a
/// host with a thousand veth pairs (each up with a link-local address). Without the watch (it cannot be opened,
/// or fails), every call reads.
pub struct Watched<K, T> {
    protocol: isize,
    groups: &'static [u32],
    watch: Option<Socket>,
    last: Option<(K, T)>,
}

impl<K: PartialEq, T: Clone> Watched<K, T> {
    /// Watching `groups` of `protocol`.
    #[must_use]
    pub const fn new(protocol: isize, groups: &'static [u32]) -> Self {
        Self {
            protocol,
            groups,
            watch: None,
            last: None,
        }
    }

    /// `read()` for `key`, as last read unless the kernel notified a
    /// change since, or `key` is another. Called in the namespace it
    /// reads, where the watch is opened, before the first read: no change
    /// after it is missed.
    pub fn get(&mut self, key: K, read: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let unchanged = if let Some(socket) = &self.watch {
            notified(socket).map(|any| !any)
        } else {
            self.watch = watch(self.protocol, self.groups).ok();
            Ok(false)
        };
        if unchanged.is_err() {
            self.watch = None;
        }
        if let (Ok(true), Some((read_for, found))) = (unchanged, &self.last)
            && *read_for == key
        {
            return Ok(found.clone());
        }
        self.last = None;
        let found = read()?;
        self.last = Some((key, found.clone()));
        Ok(found)
    }
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

#[cfg(test)]
mod tests {
    use netlink_sys::protocols::NETLINK_ROUTE;

    use super::*;

    /// Watching no group, nothing notifies a change: a read is done for
    /// the first key and for each other key, and kept otherwise; a failed
    /// read keeps nothing, so the next one is done.
    #[test]
    fn a_watched_read_is_kept_until_its_key_changes_or_it_fails() {
        let mut cache = Watched::<u32, u32>::new(NETLINK_ROUTE, &[]);
        assert_eq!(cache.get(1, || Ok(10)).expect("read"), 10);
        assert!(cache.watch.is_some(), "the watch is open");
        assert_eq!(cache.get(1, || panic!("read again")).expect("kept"), 10);
        assert_eq!(cache.get(2, || Ok(20)).expect("read"), 20);
        assert_eq!(cache.get(2, || panic!("read again")).expect("kept"), 20);
        let failed = cache.get(3, || Err(io::Error::other("no")));
        assert_eq!(failed.expect_err("failed").to_string(), "no");
        assert_eq!(cache.get(3, || Ok(30)).expect("read"), 30);
    }
}
