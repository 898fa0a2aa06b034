//! Network interfaces: lookup, and who has XDP attached to them.
//!
//! Everything here acts in the calling thread's network namespace: call it
//! through [`super::netns::Scope::run`].

use std::{ffi::CString, io, os::fd::FromRawFd as _, os::fd::OwnedFd};

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{
        InfoKind, LinkAttribute, LinkExtentMask, LinkInfo, LinkLayerType, LinkMessage, LinkXdp,
        XdpAttached,
    },
};
use netlink_sys::protocols::NETLINK_ROUTE;
use thiserror::Error;

use crate::model::{
    devices::Link,
    xdp::{XdpAttachMode, XdpAttachment},
};

#[derive(Debug, Error)]
pub enum IfaceError {
    #[error("interface `{name}` does not exist{scope} (`ip link` lists them)")]
    NotFound { name: String, scope: String },
    #[error("interface name `{0}` is not valid: it holds a NUL byte")]
    BadName(String),
    #[error("netlink request about interface index {index} failed")]
    Netlink {
        index: u32,
        #[source]
        source: io::Error,
    },
    #[error("detaching program {prog_id} from interface index {index} failed")]
    Detach {
        index: u32,
        prog_id: u32,
        #[source]
        source: io::Error,
    },
}

/// An interface, resolved in its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

/// Resolves an interface name; `scope` is only used in the error message.
pub fn lookup(name: &str, scope: &str) -> Result<Interface, IfaceError> {
    let c_name = CString::new(name).map_err(|_| IfaceError::BadName(name.to_owned()))?;
    // SAFETY: c_name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(IfaceError::NotFound {
            name: name.to_owned(),
            scope: scope.to_owned(),
        });
    }
    Ok(Interface {
        name: name.to_owned(),
        index,
    })
}

/// Every interface of the namespace, by name. Empty if the kernel will
/// not list them.
#[must_use]
pub fn all() -> Vec<Interface> {
    // SAFETY: if_nameindex returns an array ended by a zero entry, or
    // null; it is read before if_freenameindex frees it.
    let mut found = Vec::new();
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return found;
        }
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            found.push(Interface {
                name: std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
                index: (*entry).if_index,
            });
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The XDP program attached to the interface, if any.
pub fn xdp_attachment(iface: &Interface) -> Result<Option<XdpAttachment>, IfaceError> {
    let link = link(iface)?;
    let mut mode = None;
    let mut prog_id = 0;
    for attr in &link.attributes {
        let LinkAttribute::Xdp(xdp) = attr else {
            continue;
        };
        for nla in xdp {
            match nla {
                LinkXdp::Attached(XdpAttached::Driver) => mode = Some(XdpAttachMode::Native),
                LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(XdpAttachMode::Skb),
                LinkXdp::Attached(XdpAttached::Hardware) => mode = Some(XdpAttachMode::Hardware),
                LinkXdp::Attached(XdpAttached::Multiple) => mode = Some(XdpAttachMode::Multiple),
                LinkXdp::ProgId(id) => prog_id = *id,
                _ => {}
            }
        }
    }
    let Some(mode) = mode else {
        return Ok(None);
    };
    Ok(Some(XdpAttachment {
        mode,
        prog_id,
        prog_name: program_name(prog_id),
        link_id: xdp_link_of(prog_id),
    }))
}

/// Whether the interface is one end of a veth pair (a container's link).
pub fn is_veth(iface: &Interface) -> Result<bool, IfaceError> {
    is_kind(iface, &InfoKind::Veth)
}

/// Whether the interface is a bridge (`docker0`, a VM host's `br0`).
pub fn is_bridge(iface: &Interface) -> Result<bool, IfaceError> {
    is_kind(iface, &InfoKind::Bridge)
}

fn is_kind(iface: &Interface, kind: &InfoKind) -> Result<bool, IfaceError> {
    Ok(link(iface)?.attributes.iter().any(|attr| {
        matches!(attr, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|i| matches!(i, LinkInfo::Kind(k) if k == kind)))
    }))
}

/// The interface's link-layer type when its frames do not start with an
/// Ethernet header, as guard's XDP program expects: a tun or WireGuard
/// device (`NONE`), a GRE or IPIP tunnel, PPP, raw IP hand their packets
/// to XDP from the IP header on. `None` for Ethernet and loopback (whose
/// frames carry an Ethernet header too).
pub fn non_ethernet(iface: &Interface) -> Result<Option<String>, IfaceError> {
    Ok(match link(iface)?.header.link_layer_type {
        LinkLayerType::Ether | LinkLayerType::Loopback => None,
        other => Some(other.to_string()),
    })
}

/// The guarded interfaces and the namespace's VLAN and macvlan devices,
/// as `model::devices` reads them: each one's lower device here, its
/// controller, its Ethernet address and whether it is of those kinds.
/// The kinds are asked of the kernel's dump filter (strict checking), so
/// a host with thousands of veths does not list them all at every tick;
/// a kernel without the kind's module loaded ignores its filter and lists
/// every device (without their counters), which the kind read here sorts
/// out.
pub fn links(ifaces: &[&Interface]) -> io::Result<Vec<Link>> {
    let mut found = Vec::new();
    for iface in ifaces {
        found.push(read_link(&link(iface).map_err(io::Error::other)?));
    }
    let socket = super::netlink::open(NETLINK_ROUTE, true)?;
    for kind in [InfoKind::MacVlan, InfoKind::Vlan] {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        // Counters are most of a device's message, and not read here.
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        super::netlink::dump(
            &socket,
            RouteNetlinkMessage::GetLink(msg),
            "rtnetlink",
            |msg| {
                if let RouteNetlinkMessage::NewLink(link) = msg {
                    let link = read_link(&link);
                    if link.stacked && !found.iter().any(|l: &Link| l.index == link.index) {
                        found.push(link);
                    }
                }
            },
        )?;
    }
    Ok(found)
}

/// What the namespace's devices are read through ([`watched_links`]).
pub type LinkCache = super::netlink::Watched<Vec<u32>, Vec<Link>>;

/// A [`LinkCache`] that reads again once a device was added, deleted or
/// changed (rtnetlink's link group: an address, a name, a state, a lower
/// device).
#[must_use]
pub const fn link_cache() -> LinkCache {
    LinkCache::new(NETLINK_ROUTE, &[libc::RTNLGRP_LINK])
}

/// [`links`] of `ifaces`, as `cache` last read them unless a device
/// changed since, or the guarded interfaces are others.
pub fn watched_links(cache: &mut LinkCache, ifaces: &[&Interface]) -> io::Result<Vec<Link>> {
    cache.get(ifaces.iter().map(|i| i.index).collect(), || links(ifaces))
}

/// One device of a link message.
fn read_link(link: &LinkMessage) -> Link {
    let mut found = Link {
        index: link.header.index,
        ..Link::default()
    };
    let mut elsewhere = false;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Link(lower) => found.lower = Some(*lower),
            LinkAttribute::LinkNetNsId(_) => elsewhere = true,
            LinkAttribute::Controller(c) => found.controller = Some(*c),
            LinkAttribute::Address(a) => found.mac = <[u8; 6]>::try_from(&a[..]).ok(),
            LinkAttribute::LinkInfo(infos) => {
                found.stacked = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vlan | InfoKind::MacVlan)));
            }
            _ => {}
        }
    }
    // A lower device in another namespace (a container's macvlan parent)
    // is not one of this dump's.
    if elsewhere {
        found.lower = None;
    }
    found
}

/// Removes a program that someone else attached (`guard run --force`).
pub fn detach(iface: &Interface, attachment: &XdpAttachment) -> Result<(), IfaceError> {
    let detach_err = |source| IfaceError::Detach {
        index: iface.index,
        prog_id: attachment.prog_id,
        source,
    };
    if let Some(link_id) = attachment.link_id {
        return detach_link(link_id).map_err(detach_err);
    }
    let flags = match attachment.mode {
        XdpAttachMode::Native => XDP_FLAGS_DRV_MODE,
        XdpAttachMode::Skb => XDP_FLAGS_SKB_MODE,
        XdpAttachMode::Hardware => XDP_FLAGS_HW_MODE,
        XdpAttachMode::Multiple => 0,
    };
    let mut msg = LinkMessage::default();
    msg.header.index = iface.index;
    msg.attributes.push(LinkAttribute::Xdp(vec![
        LinkXdp::Fd(-1),
        LinkXdp::Flags(flags),
    ]));
    request(RouteNetlinkMessage::SetLink(msg), NLM_F_REQUEST | NLM_F_ACK)
        .map(drop)
        .map_err(detach_err)
}

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

fn program_name(prog_id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
}

fn xdp_link_of(prog_id: u32) -> Option<u32> {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .find(|l| {
            l.program_id() == prog_id
                && matches!(l.link_type(), Ok(aya::programs::links::LinkType::Xdp))
        })
        .map(|l| l.id())
}

/// Sends one rtnetlink request and returns the message of its reply
/// (`None` for a bare acknowledgement).
fn request(payload: RouteNetlinkMessage, flags: u16) -> io::Result<Option<RouteNetlinkMessage>> {
    let socket = super::netlink::open(NETLINK_ROUTE, false)?;
    let mut reply = None;
    super::netlink::exchange(&socket, payload, flags, "rtnetlink", |msg| {
        reply = Some(msg);
    })?;
    Ok(reply)
}

/// `BPF_LINK_GET_FD_BY_ID` then `BPF_LINK_DETACH`: aya has no public call
/// for a link that another process owns.
fn detach_link(link_id: u32) -> io::Result<()> {
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    const BPF_LINK_DETACH: libc::c_long = 34;
    // Both commands read a u32 at the start of `union bpf_attr`; the rest
    // must be zero.
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&link_id.to_ne_bytes());
    // SAFETY: bpf(2) reads `size` bytes from a buffer we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_GET_FD_BY_ID,
            attr.as_ptr(),
            attr.len(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this fd to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&fd).to_ne_bytes());
    // SAFETY: as above.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, attr.as_ptr(), attr.len()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's rtnetlink description (`ip -d link show`).
fn link(iface: &Interface) -> Result<LinkMessage, IfaceError> {
    let netlink_err = |source| IfaceError::Netlink {
        index: iface.index,
        source,
    };
    let mut msg = LinkMessage::default();
    msg.header.index = iface.index;
    let reply = request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST).map_err(netlink_err)?;
    match reply {
        Some(RouteNetlinkMessage::NewLink(link)) => Ok(link),
        _ => Err(netlink_err(io::Error::other("no link in the reply"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interface_names_the_interface_and_scope() {
        let err = lookup("guard-no-such0", " in netns lab").unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface `guard-no-such0` does not exist in netns lab (`ip link` lists them)"
        );
    }

    #[test]
    fn loopback_resolves() {
        assert_eq!(lookup("lo", "").unwrap().index, 1);
        assert!(all().contains(&Interface {
            name: "lo".to_owned(),
            index: 1
        }));
    }
}
