//! ctnetlink: the kernel's conntrack statistics (with `chaintoolong`, which
//! /proc/net/stat/nf_conntrack does not show), deleting the entries of a
//! banned source, so the table is freed now rather than when they time out,
//! whether conntrack tracks connections now, and entries for connections
//! made while it did not.
//!
//! Runs in the calling thread's network namespace: go through
//! [`crate::host::netns::Scope::run`] for a named one.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use guard_common::SourceKey;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, Nla as _,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    conntrack::{
        ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple,
        Protocol, Status, TCPFlags, Tuple,
    },
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use crate::{host::netlink, model::conntrack::Stats};

/// IPCTNL_MSG_CT_GET_STATS_CPU: one message of CTA_STATS_* per CPU.
const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;

/// The netlink attribute type without its flag bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The statistics of the calling thread's namespace, summed over CPUs.
pub fn stats() -> io::Result<Stats> {
    let replies = request(
        NetfilterProtoFamily::Unspec,
        ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
            attributes: Vec::new(),
        },
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut total = Stats::default();
    for reply in replies {
        let NetfilterMessageInner::Conntrack(ConntrackMessage::Other { attributes, .. }) =
            reply.inner
        else {
            continue;
        };
        for nla in attributes {
            let mut value = vec![0u8; nla.value_len()];
            nla.emit_value(&mut value);
            let Ok(bytes) = <[u8; 4]>::try_from(value.as_slice()) else {
                continue;
            };
            add_stat(
                &mut total,
                nla.kind() & NLA_TYPE_MASK,
                u64::from(u32::from_be_bytes(bytes)),
            );
        }
    }
    Ok(total)
}

/// Adds one CTA_STATS_* value (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
fn add_stat(s: &mut Stats, kind: u16, v: u64) {
    let field = match kind {
        2 => &mut s.found,
        4 => &mut s.invalid,
        8 => &mut s.insert,
        9 => &mut s.insert_failed,
        10 => &mut s.drop,
        11 => &mut s.early_drop,
        12 => &mut s.error,
        13 => &mut s.search_restart,
        14 => &mut s.clash_resolve,
        15 => &mut s.chaintoolong,
        _ => return,
    };
    *field = field.wrapping_add(v);
}

/// Deletes every entry whose original source lies in one of `sources`
/// (addresses masked to prefixes), with one dump of the table per family.
/// Returns how many were deleted; entries that vanish in between are not an
/// error.
pub fn delete_sources(sources: &[SourceKey]) -> io::Result<u64> {
    let mut deleted = 0;
    for (family, v4) in [
        (NetfilterProtoFamily::IPv4, true),
        (NetfilterProtoFamily::IPv6, false),
    ] {
        let wanted: Vec<&SourceKey> = sources.iter().filter(|k| k.ip().is_ipv4() == v4).collect();
        if !wanted.is_empty() {
            deleted += delete_family(family, &wanted)?;
        }
    }
    Ok(deleted)
}

fn delete_family(family: NetfilterProtoFamily, sources: &[&SourceKey]) -> io::Result<u64> {
    let entries = request(
        family,
        ConntrackMessage::Get(Vec::new()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut deleted = 0;
    for entry in entries {
        let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = entry.inner
        else {
            continue;
        };
        let Some(orig) = attributes.into_iter().find_map(|a| match a {
            ConntrackAttribute::CtaTupleOrig(t) => Some(t),
            _ => None,
        }) else {
            continue;
        };
        if !original_source(&orig).is_some_and(|ip| sources.iter().any(|s| in_prefix(ip, s))) {
            continue;
        }
        match request(
            family,
            ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(orig)]),
            NLM_F_REQUEST | NLM_F_ACK,
        ) {
            Ok(_) => deleted += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// conntrack's TCP_CONNTRACK_ESTABLISHED.
const TCP_ESTABLISHED: u8 = 3;
/// IP_CT_TCP_FLAG_BE_LIBERAL: only RSTs are checked against the window,
/// which conntrack never saw open.
const TCP_BE_LIBERAL: u8 = 0x08;

/// Creates an established, assured entry lasting `timeout` seconds for
/// each of `connections` (local, remote: the remote end opened it) that
/// conntrack holds none for (one it holds is left as it is), and returns
/// how many it created. Conntrack strict about lone ACKs
/// (`nf_conntrack_tcp_loose` 0) never picks up a connection it did not see
/// open, as it did not while it was off, and drops such a connection's
/// segments as invalid; with an entry they go on.
pub fn track_established(
    connections: &[(SocketAddr, SocketAddr)],
    timeout: u32,
) -> io::Result<usize> {
    let socket = netlink::open(NETLINK_NETFILTER, false)?;
    // Its flags, then the mask of those it sets.
    let liberal = TCPFlags::parse(&[TCP_BE_LIBERAL, TCP_BE_LIBERAL])
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut created = 0;
    for &(local, remote) in connections {
        let family = if remote.is_ipv4() {
            NetfilterProtoFamily::IPv4
        } else {
            NetfilterProtoFamily::IPv6
        };
        let attributes = vec![
            ConntrackAttribute::CtaTupleOrig(tcp_tuple(remote, local)),
            ConntrackAttribute::CtaTupleReply(tcp_tuple(local, remote)),
            ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![
                ProtoInfoTCP::State(TCP_ESTABLISHED),
                ProtoInfoTCP::OriginalFlags(liberal.clone()),
                ProtoInfoTCP::ReplyFlags(liberal.clone()),
            ])]),
            // Confirmed as the kernel marks a new entry before it takes the
            // status, which must not change that bit.
            ConntrackAttribute::CtaStatus(Status::Confirmed | Status::SeenReply | Status::Assured),
            ConntrackAttribute::CtaTimeout(timeout),
        ];
        match exchange(
            &socket,
            family,
            ConntrackMessage::New(attributes),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => created += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Whether conntrack tracks a TCP connection made now over loopback, IPv4
/// and, where `::1` is up, IPv6. Its hooks are in place only while
/// something in the namespace uses it (a rule, a nat table, guard's
/// SYNPROXY table), and entries outlive them, so the table's count does
/// not tell. False where the connection cannot be made within a second.
pub fn tracks_now() -> io::Result<bool> {
    for (ip, family) in [
        (
            IpAddr::from(Ipv4Addr::LOCALHOST),
            NetfilterProtoFamily::IPv4,
        ),
        (
            IpAddr::from(Ipv6Addr::LOCALHOST),
            NetfilterProtoFamily::IPv6,
        ),
    ] {
        let listener = match TcpListener::bind((ip, 0)) {
            Ok(l) => l,
            Err(_) if ip.is_ipv6() => continue,
            Err(_) => return Ok(false),
        };
        let made = listener.local_addr().and_then(|server| {
            let client = TcpStream::connect_timeout(&server, Duration::from_secs(1))?;
            let accepted = listener.accept()?;
            Ok((client.local_addr()?, server, client, accepted))
        });
        let Ok((client, server, _client, _accepted)) = made else {
            return Ok(false);
        };
        match request(
            family,
            ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleOrig(tcp_tuple(
                client, server,
            ))]),
            NLM_F_REQUEST | NLM_F_ACK,
        ) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The TCP tuple from `src` to `dst`.
fn tcp_tuple(src: SocketAddr, dst: SocketAddr) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(src.ip()),
            IPTuple::DestinationAddress(dst.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(src.port()),
            ProtoTuple::DestinationPort(dst.port()),
        ]),
    ]
}

fn original_source(tuple: &[Tuple]) -> Option<IpAddr> {
    tuple.iter().find_map(|t| match t {
        Tuple::Ip(ip) => ip.iter().find_map(|i| match i {
            IPTuple::SourceAddress(a) => Some(*a),
            _ => None,
        }),
        _ => None,
    })
}

/// Whether `ip` masked to the key's prefix length is the key.
fn in_prefix(ip: IpAddr, key: &SourceKey) -> bool {
    let of_ip = match ip {
        IpAddr::V4(a) => SourceKey::v4(a.octets(), key.prefix_len),
        IpAddr::V6(a) => SourceKey::v6(a.octets(), key.prefix_len),
    };
    of_ip == *key
}

/// Sends one request and collects the messages of its reply, up to the end
/// of a dump or the acknowledgement.
fn request(
    family: NetfilterProtoFamily,
    message: ConntrackMessage,
    flags: u16,
) -> io::Result<Vec<NetfilterMessage>> {
    exchange(
        &netlink::open(NETLINK_NETFILTER, false)?,
        family,
        message,
        flags,
    )
}

/// [`request`] on an open `socket`.
fn exchange(
    socket: &Socket,
    family: NetfilterProtoFamily,
    message: ConntrackMessage,
    flags: u16,
) -> io::Result<Vec<NetfilterMessage>> {
    let mut out = Vec::new();
    netlink::exchange(
        socket,
        NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message),
        flags,
        "ctnetlink",
        |msg| out.push(msg),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_attributes_land_in_their_fields() {
        let mut s = Stats::default();
        for (kind, v) in [(9, 1), (10, 2), (11, 3), (15, 4), (2, 5), (1, 99), (3, 99)] {
            add_stat(&mut s, kind, v);
        }
        add_stat(&mut s, 10, 10);
        assert_eq!(
            (
                s.insert_failed,
                s.drop,
                s.early_drop,
                s.chaintoolong,
                s.found
            ),
            (1, 12, 3, 4, 5)
        );
        assert_eq!(s.distress(), 1 + 12 + 3 + 4);
    }

    #[test]
    fn prefix_matching_follows_the_key() {
        let key = SourceKey::v6("2001:db8:1:2::".parse::<Ipv6Addr>().unwrap().octets(), 64);
        assert!(in_prefix("2001:db8:1:2::99".parse().unwrap(), &key));
        assert!(!in_prefix("2001:db8:1:3::1".parse().unwrap(), &key));
        assert!(!in_prefix("198.18.0.1".parse().unwrap(), &key));
        let v4 = SourceKey::v4([198, 18, 0, 7], 32);
        assert!(in_prefix("198.18.0.7".parse().unwrap(), &v4));
        assert!(!in_prefix("198.18.0.8".parse().unwrap(), &v4));
    }
}
