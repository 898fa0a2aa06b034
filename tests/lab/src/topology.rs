//! The lab's network: a victim namespace with conntrack in use, and the
//! outside (the attacker namespace) joined to it by one veth pair, like an
//! edge server's uplink: floods and legitimate users arrive the same way,
//! through the same XDP program, and compete for the same link.
//!
//! ```text
//!  attacker 198.18.0.1/24        victim 198.18.0.2/24 ── TCP :8080, UDP :5300
//!  (+ .10-.13 real sources,  ─── 2001:db8::2/64          (both families)
//!   .20-.35 users, .100 a NAT;   (routes 198.18.0.0/15 and 2001:db8::/32
//!   2001:db8::1/64, users         back to the attacker; the link's /24
//!   2001:db8::20-2f)              and /64 stay on the link)
//! ```
//!
//! Each veth end has two queues, so a flood sent from two CPUs reaches the
//! victim's XDP program on two CPUs, sharing its buckets. Each of the
//! outside end's queues has a FIFO (pfifo, 100 frames) and the generator
//! sends through it, so when the victim falls behind, users' packets wait
//! behind the flood's as on a congested link rather than being refused.
//! Not deeper: a frame in the FIFO is still charged to the generator's
//! socket, whose send buffer (the namespace's `net.core.wmem_default`,
//! 208 KiB, which only the host's namespace may change) holds a few
//! hundred of the flood's frames. With 1000 a queue it filled, the ring
//! flush failed with EAGAIN and trafgen gave up, in most two-CPU floods.
//!
//! The outside's end has no XDP program, like a container's veth or a
//! router that knows nothing of guard: what the victim's XDP sends back
//! must reach it by itself. Replies to the spoofed ranges are dropped at
//! its ingress hook (nftables, counted), as the Internet would absorb them,
//! before the outside's stack spends the shared CPU on them.
//!
//! Rules of shared/notes/test-network.md: addresses only from
//! 198.18.0.0/15 and 2001:db8::/32, no default routes, spoofed sources
//! (198.19.0.0/16, 2001:db8:ff00::/40) routed back to the attacker
//! namespace, which forwards nothing. Names are unique per run; everything
//! is deleted on drop, panics included, and namespaces of a killed run are
//! swept when the next one starts.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use guard::dataplane::pins::Layout;
use guard_tests::{
    net::{self, ip, sweep_stale, tc},
    nft::{self, nft},
};

const PREFIX: &str = "guardlab-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The victim's address: floods and legitimate traffic aim here.
pub const VICTIM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const VICTIM6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The attacker's router address, where the spoofed range is routed.
const ATTACKER_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ATTACKER_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The wide floods' sources: all of the documentation ranges, routed back
/// to the attacker too (the link's own /24 and /64 stay on the link).
pub const SPOOFED_WIDE: &str = "198.18.0.0/15";
pub const SPOOFED6_WIDE: &str = "2001:db8::/32";
/// Queues of each veth end: the wide floods come from two CPUs at once.
pub const QUEUES: u32 = 2;
/// The port of the TCP echo server.
pub const TCP_PORT: u16 = 8080;
/// The TCP server the floods and the clients aim at.
pub const TCP_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(VICTIM), TCP_PORT);
pub const TCP_SERVER6: SocketAddr = SocketAddr::new(IpAddr::V6(VICTIM6), TCP_PORT);
/// The port of the UDP echo server.
pub const UDP_PORT: u16 = 5300;

/// Real attacker sources for the connection flood: 198.18.0.10 upwards.
#[must_use]
pub fn attacker_source(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i)
}
/// How many real attacker sources exist.
pub const ATTACKER_SOURCES: u8 = 4;

/// Legitimate users, one address each: 198.18.0.20 upwards.
#[must_use]
pub fn user(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 20 + i % USERS)
}
/// The same users over IPv6: 2001:db8::20 upwards.
#[must_use]
pub fn user6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + u16::from(i % USERS))
}
/// The users' addresses and the TCP server they visit, over IPv6 or IPv4.
#[must_use]
pub fn users(ipv6: bool) -> (Vec<IpAddr>, SocketAddr) {
    if ipv6 {
        ((0..USERS).map(|i| user6(i).into()).collect(), TCP_SERVER6)
    } else {
        ((0..USERS).map(|i| user(i).into()).collect(), TCP_SERVER)
    }
}

/// How many distinct user addresses exist.
pub const USERS: u8 = 16;
/// The address many users share behind a NAT (the flash crowd).
pub const NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

/// The outside's nftables table and counter of the attack's packets.
const TX_TABLE: &str = "guardlab_tx";
const ATTACK_COUNTER: &str = "attack";
/// Replies to the spoofed ranges, dropped where they arrive.
const ABSORBED_COUNTER: &str = "absorbed";

/// Packets the outside namespace `attacker` has put on the link from any
/// IPv4 address but the users' and the NAT's, or from the spoofed IPv6
/// range: the attack. Counted at the egress hook, before the qdisc, which
/// never drops here (trafgen's socket buffer holds fewer frames than the
/// FIFO).
#[must_use]
pub fn attack_sent(attacker: &str) -> u64 {
    nft::counter_packets(attacker, "netdev", TX_TABLE, ATTACK_COUNTER)
}

/// Two namespaces and a veth pair; deleted when dropped.
pub struct Topology {
    pub victim: String,
    pub attacker: String,
    /// The victim's interface, towards the outside.
    pub victim_a: String,
    /// The outside's interface.
    pub attacker_if: String,
}

impl Topology {
    /// Builds the network. The victim has an nftables rule that uses
    /// conntrack (`ct state`), so its table is in use as on a real server
    /// with a stateful firewall.
    #[must_use]
    pub fn build() -> Self {
        sweep_stale(PREFIX);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let t = Self {
            victim: format!("{PREFIX}{pid}-{n}-v"),
            attacker: format!("{PREFIX}{pid}-{n}-a"),
            victim_a: format!("gl{pid}{n}va"),
            attacker_if: format!("gl{pid}{n}a"),
        };
        for ns in [&t.victim, &t.attacker] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        t.pair(&t.attacker, &t.attacker_if, &t.victim_a);
        // One FIFO per transmit queue, under mq: a sender on CPU n goes
        // through queue n and on to the victim on that CPU, so two CPUs
        // never meet at one qdisc.
        tc(&[
            "-n",
            &t.attacker,
            "qdisc",
            "replace",
            "dev",
            &t.attacker_if,
            "root",
            "handle",
            "1:",
            "mq",
        ]);
        for queue in 1..=QUEUES {
            tc(&[
                "-n",
                &t.attacker,
                "qdisc",
                "replace",
                "dev",
                &t.attacker_if,
                "parent",
                &format!("1:{queue}"),
                "pfifo",
                "limit",
                "100",
            ]);
        }
        Self::addr(&t.attacker, &t.attacker_if, ATTACKER_GW);
        for i in 0..ATTACKER_SOURCES {
            Self::addr(&t.attacker, &t.attacker_if, attacker_source(i));
        }
        for i in 0..USERS {
            Self::addr(&t.attacker, &t.attacker_if, user(i));
        }
        Self::addr(&t.attacker, &t.attacker_if, NAT);
        Self::addr(&t.victim, &t.victim_a, VICTIM);
        Self::addr(&t.attacker, &t.attacker_if, ATTACKER_GW6);
        for i in 0..USERS {
            Self::addr(&t.attacker, &t.attacker_if, user6(i));
        }
        Self::addr(&t.victim, &t.victim_a, VICTIM6);
        let _ = nft(
            &t.attacker,
            &["-f", "-"],
            Some(&format!(
                "table netdev {TX_TABLE} {{
  counter {ATTACK_COUNTER} {{}}
  counter {ABSORBED_COUNTER} {{}}
  chain egress {{
    type filter hook egress device \"{dev}\" priority 0;
    ip saddr != {{ {}-{}, {NAT} }} counter name {ATTACK_COUNTER}
    ip6 saddr {SPOOFED6_WIDE} ip6 saddr != 2001:db8::/64 counter name {ATTACK_COUNTER}
  }}
  chain ingress {{
    type filter hook ingress device \"{dev}\" priority 0;
    ip daddr 198.18.1.0-198.19.255.255 counter name {ABSORBED_COUNTER} drop
    ip6 daddr {SPOOFED6_WIDE} ip6 daddr != 2001:db8::/64 counter name {ABSORBED_COUNTER} drop
  }}
}}
",
                user(0),
                user(USERS - 1),
                dev = t.attacker_if,
            )),
        );
        for (range, gw) in [
            (SPOOFED_WIDE, ATTACKER_GW.to_string()),
            (SPOOFED6_WIDE, ATTACKER_GW6.to_string()),
        ] {
            ip(&["-n", &t.victim, "route", "add", range, "via", &gw]);
        }
        let _ = nft(
            &t.victim,
            &["-f", "-"],
            Some(
                "table inet guardlab_ct {\n  chain input {\n    type filter hook input priority filter;\n    ct state new counter\n  }\n}\n",
            ),
        );
        t
    }

    /// A veth pair from `ns` to the victim, with IPv6 on but quiet (no
    /// link-local address, no router solicitations).
    fn pair(&self, ns: &str, outer: &str, inner: &str) {
        let queues = QUEUES.to_string();
        ip(&[
            "link",
            "add",
            "name",
            outer,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            &self.victim,
        ]);
        for (space, dev) in [(ns, outer), (self.victim.as_str(), inner)] {
            net::quiet_ipv6(space, dev);
            ip(&["-n", space, "link", "set", dev, "up"]);
        }
    }

    fn addr(ns: &str, dev: &str, addr: impl Into<IpAddr>) {
        match addr.into() {
            IpAddr::V4(a) => ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", dev]),
            IpAddr::V6(a) => ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                dev,
                "nodad",
            ]),
        }
    }

    /// Where guard pins its maps for the victim's interface.
    #[must_use]
    pub fn guard_pins(&self) -> PathBuf {
        Layout::default().iface_dir(Some(&self.victim), &self.victim_a)
    }

    /// The victim's MAC on the attacker side and the attacker's own, for
    /// frames that the generator builds.
    #[must_use]
    pub fn attack_macs(&self) -> ([u8; 6], [u8; 6]) {
        (
            net::mac(&self.victim, &self.victim_a),
            net::mac(&self.attacker, &self.attacker_if),
        )
    }

    /// Applies an nftables script in the victim namespace.
    pub fn victim_nft(&self, script: &str) {
        let _ = nft(&self.victim, &["-f", "-"], Some(script));
    }

    /// Writes a sysctl of the victim namespace (path below /proc/sys).
    pub fn victim_sysctl(&self, key: &str, value: &str) {
        net::write_sysctl(&self.victim, key, value);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and with them the
        // peer.
        for ns in [&self.attacker, &self.victim] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
