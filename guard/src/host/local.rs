//! The destinations the calling thread's network namespace takes as its
//! own: the `local` routes of its local table (`ip route show table local
//! type local`, both families), its addresses and any range routed
//! `local` (AnyIP). Call it through [`crate::host::netns::Scope::run`].
//!
//! The XDP program answers SYNs and screens ACKs for this host only. On a
//! host that does not forward, the FIB will not say which destination is
//! the host's (`bpf_fib_lookup` stops at "forwarding disabled"), yet the
//! interface still carries frames for others: a macvlan or ipvlan
//! container's, a bridged VM's. These routes tell them apart.
//!
//! Only the local table is dumped (strict checking: the kernel filters by
//! table), so a router's full table costs nothing here.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use super::netlink;

/// The kernel's local table (`RT_TABLE_LOCAL`).
const RT_TABLE_LOCAL: u8 = 255;

/// What the local routes are read through ([`watched_local_prefixes`]).
pub type LocalCache = netlink::Watched<(), BTreeSet<IpNet>>;

/// A [`LocalCache`] that reads again once a route or an address of either
/// family was added or deleted.
#[must_use]
pub const fn local_cache() -> LocalCache {
    LocalCache::new(
        NETLINK_ROUTE,
        &[
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ],
    )
}

/// [`local_prefixes`], as `cache` last read them unless a route or an
/// address changed since.
pub fn watched_local_prefixes(cache: &mut LocalCache) -> io::Result<BTreeSet<IpNet>> {
    cache.get((), local_prefixes)
}

/// Every `local` route of the local table, IPv4 and IPv6.
pub fn local_prefixes() -> io::Result<BTreeSet<IpNet>> {
    let mut found = dump(AddressFamily::Inet)?;
    found.extend(dump(AddressFamily::Inet6)?);
    Ok(found)
}

fn dump(family: AddressFamily) -> io::Result<BTreeSet<IpNet>> {
    let socket = netlink::open(NETLINK_ROUTE, true)?;
    let mut message = RouteMessage::default();
    message.header.address_family = family;
    message.header.table = RT_TABLE_LOCAL;
    message.header.kind = RouteType::Local;
    let request = RouteNetlinkMessage::GetRoute(message);
    let mut found = BTreeSet::new();
    netlink::dump(&socket, request, "rtnetlink", |msg| {
        // Filtered by the kernel already; checked again for a kernel that
        // ignores the filter.
        if let RouteNetlinkMessage::NewRoute(r) = msg
            && r.header.kind == RouteType::Local
            && let Some(net) = destination(&r.header, &r.attributes)
        {
            found.insert(net);
        }
    })?;
    Ok(found)
}

/// A route's destination prefix; a route without one is the family's
/// default route.
fn destination(header: &RouteHeader, attributes: &[RouteAttribute]) -> Option<IpNet> {
    let addr = attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        })
        .or(match header.address_family {
            AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            _ => None,
        })?;
    IpNet::new(addr, header.destination_prefix_length).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace's loopback address is always one of its own.
    #[test]
    fn loopback_is_local() {
        let found = local_prefixes().expect("rtnetlink dumps routes unprivileged");
        assert!(
            found.contains(&"127.0.0.1/32".parse().expect("prefix"))
                || found.contains(&"127.0.0.0/8".parse().expect("prefix")),
            "{found:?}"
        );
    }
}
