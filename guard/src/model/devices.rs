//! Which link-layer addresses on the guarded interface are this
//! namespace's, so the XDP program can leave other devices' frames alone
//! (`DataplaneConfig::host_macs`).
//!
//! An interface carries frames for devices that are not this namespace's
//! stack: a macvlan container's (the macvlan port hands them to another
//! namespace), a macvtap VM's, or any address the NIC accepts in
//! promiscuous mode (`ip_rcv` drops a `PACKET_OTHERHOST` frame before
//! conntrack). None of them can open an entry in this namespace's
//! conntrack, so limiting them only spends the host's budget on a flood
//! aimed at someone else, and arms the host's ports for it.
//!
//! The frames that do reach this stack are addressed to the interface or
//! to a VLAN or macvlan device stacked on it here with an address of its
//! own. Other devices name the interface as their lower one too, but take
//! no frames from it for this stack: a macvtap device's go to its VM's
//! queue (its address is the VM's), a veth's peer and a tunnel's are
//! not its frames at all. An interface that is a bridge,
//! bond or switch port is left out altogether: a bridge hands bridged
//! frames to netfilter (`br_netfilter`, the bridge family's conntrack),
//! and a bond's or an Open vSwitch port's frames are its controller's.

use guard_common::config::HOST_MACS;

/// A link-layer (Ethernet) address.
pub type Mac = [u8; 6];

/// What the namespace's link dump says of one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// The device it is stacked on, in this namespace (`IFLA_LINK` without
    /// `IFLA_LINK_NETNSID`): a VLAN's or macvlan's lower device.
    pub lower: Option<u32>,
    /// Its bridge, bond or switch (`IFLA_MASTER`).
    pub controller: Option<u32>,
    /// Its link-layer address, if it has one of six bytes.
    pub mac: Option<Mac>,
    /// A VLAN or macvlan device: stacked on its lower device, it hands
    /// this stack the frames for its address.
    pub stacked: bool,
}

/// The unicast addresses whose frames on `iface` can reach this
/// namespace's stack: its own, then its stacked devices' here (those
/// stacked on them too), each once. `Err` says why every frame must be
/// taken as this namespace's.
pub fn host_macs(links: &[Link], iface: u32) -> Result<Vec<Mac>, String> {
    let Some(own) = links.iter().find(|l| l.index == iface) else {
        return Err(format!("interface index {iface} is not in the link dump"));
    };
    if let Some(controller) = own.controller {
        return Err(format!(
            "the interface is a port of interface index {controller} (a bridge, bond or switch), whose frames for other addresses netfilter may see"
        ));
    }
    let Some(mac) = own.mac else {
        return Err("the interface has no Ethernet address".into());
    };
    let mut macs = vec![mac];
    let mut stack = vec![iface];
    let mut seen = vec![iface];
    while let Some(below) = stack.pop() {
        for upper in links.iter().filter(|l| l.lower == Some(below) && l.stacked) {
            if seen.contains(&upper.index) {
                continue;
            }
            seen.push(upper.index);
            stack.push(upper.index);
            if let Some(mac) = upper.mac
                && !macs.contains(&mac)
            {
                macs.push(mac);
            }
        }
    }
    if macs.len() > HOST_MACS {
        return Err(format!(
            "{} devices with addresses of their own are stacked on the interface here, more than the {HOST_MACS} the program compares",
            macs.len() - 1
        ));
    }
    Ok(macs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH0: Mac = [0x02, 0, 0, 0, 0, 1];

    fn link(index: u32, lower: Option<u32>, mac: u8) -> Link {
        Link {
            index,
            lower,
            controller: None,
            mac: Some([0x02, 0, 0, 0, 0, mac]),
            stacked: lower.is_some(),
        }
    }

    /// A plain NIC: its own address only; a container's macvlan child
    /// lives in another namespace and is not in this dump.
    #[test]
    fn a_plain_interface_has_its_own_address() {
        let links = [link(1, None, 0xff), link(2, None, 1)];
        assert_eq!(host_macs(&links, 2), Ok(vec![ETH0]));
    }

    /// A macvlan shim and a VLAN on it in this namespace (the host's own
    /// way to its macvlan containers) are this stack's too, each once; a
    /// VLAN that shares its lower device's address adds nothing.
    #[test]
    fn stacked_devices_here_are_the_hosts() {
        let links = [
            link(2, None, 1),
            link(3, Some(2), 3),
            link(4, Some(3), 4),
            link(5, Some(2), 1),
            link(6, None, 6),
        ];
        let macs = host_macs(&links, 2).expect("known");
        assert_eq!(
            macs,
            vec![ETH0, [0x02, 0, 0, 0, 0, 3], [0x02, 0, 0, 0, 0, 4]]
        );
    }

    /// A macvtap VM's address is the VM's, and a veth peer in the same
    /// namespace or a tunnel on the interface names it as its lower
    /// device without taking its frames: none of them is this stack's.
    #[test]
    fn only_vlan_and_macvlan_devices_are_stacked() {
        let mut tap = link(3, Some(2), 3);
        tap.stacked = false;
        let mut peer = link(4, Some(2), 4);
        peer.stacked = false;
        let mut own = link(2, Some(4), 1);
        own.stacked = false;
        assert_eq!(host_macs(&[own, tap, peer], 2), Ok(vec![ETH0]));
    }

    /// A bridge or bond port: bridged frames may meet netfilter, so
    /// every frame stays the host's.
    #[test]
    fn a_port_of_a_bridge_or_bond_is_left_out() {
        let mut port = link(2, None, 1);
        port.controller = Some(7);
        let err = host_macs(&[port, link(7, None, 7)], 2).unwrap_err();
        assert!(err.contains("port of interface index 7"), "{err}");
    }

    #[test]
    fn too_many_addresses_or_none_leave_the_rule_off() {
        let mut links = vec![link(2, None, 1)];
        for i in 0..HOST_MACS as u32 {
            links.push(link(10 + i, Some(2), 10 + i as u8));
        }
        let err = host_macs(&links, 2).unwrap_err();
        assert!(err.contains("more than the 4"), "{err}");
        let mut bare = link(2, None, 1);
        bare.mac = None;
        assert!(host_macs(&[bare], 2).is_err());
        assert!(host_macs(&[link(1, None, 1)], 2).is_err());
    }

    /// A stacking loop in a malformed dump ends.
    #[test]
    fn a_loop_in_the_dump_ends() {
        let links = [link(2, Some(3), 1), link(3, Some(2), 3)];
        assert_eq!(host_macs(&links, 2).expect("known").len(), 2);
    }
}
