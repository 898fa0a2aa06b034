//! The lab's network: a victim namespace with conntrack in use, an attacker
//! namespace and a clients namespace, each joined to the victim by its own
//! veth pair, like an edge server with the Internet on one side.
//!
//! ```text
//!  attacker 198.18.0.1/24        victim 198.18.0.2/24 ── TCP :8080, UDP :5300
//!  (+ .10-.13 real sources) ───── (routes 198.19.0.0/16 back to the attacker)
//!  clients 198.18.1.1/24  ─────── victim 198.18.1.2/24
//!  (+ .10-.25 users, .100 a NAT)
//! ```
//!
//! Rules of shared/notes/test-network.md: addresses only from
//! 198.18.0.0/15, no default routes, spoofed sources (198.19.0.0/16) routed
//! back to the attacker namespace, which forwards nothing. Names are unique
//! per run; everything is deleted on drop, panics included, and namespaces
//! of a killed run are swept when the next one starts.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{
    net::{self, ip, sweep_stale},
    nft::nft,
    peer::PassThrough,
};

const PREFIX: &str = "guardlab-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The victim's address on the attacker side: floods aim here.
pub const VICTIM_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The victim's address on the clients side: legitimate traffic aims here.
pub const VICTIM_C: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The attacker's router address, where the spoofed range is routed.
const ATTACKER_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Spoofed flood sources.
pub const SPOOFED: &str = "198.19.0.0/16";
/// The port of the TCP echo server.
pub const TCP_PORT: u16 = 8080;
/// The port of the UDP echo server.
pub const UDP_PORT: u16 = 5300;

/// Real attacker sources for the connection flood: 198.18.0.10 upwards.
#[must_use]
pub fn attacker_source(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i)
}
/// How many real attacker sources exist.
pub const ATTACKER_SOURCES: u8 = 4;

/// Legitimate users, one address each: 198.18.1.10 upwards.
#[must_use]
pub fn user(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i % USERS)
}
/// How many distinct user addresses exist.
pub const USERS: u8 = 16;
/// The address many users share behind a NAT (the flash crowd).
pub const NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

/// Three namespaces and two veth pairs; deleted when dropped.
pub struct Topology {
    pub victim: String,
    pub attacker: String,
    pub clients: String,
    /// The victim's interfaces: towards the attacker, towards the clients.
    pub victim_a: String,
    pub victim_c: String,
    /// The attacker's and the clients' interfaces.
    pub attacker_if: String,
    pub clients_if: String,
    /// XDP on the attacker's and the clients' ends: frames the victim's XDP
    /// sends back (SYN cookies) reach them, as over a NIC, and replies to
    /// spoofed sources are dropped on arrival at the attacker, as the
    /// Internet would absorb them, not charged to the shared CPU.
    peers: Vec<PassThrough>,
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
        let mut t = Self {
            victim: format!("{PREFIX}{pid}-{n}-v"),
            attacker: format!("{PREFIX}{pid}-{n}-a"),
            clients: format!("{PREFIX}{pid}-{n}-c"),
            victim_a: format!("gl{pid}{n}va"),
            victim_c: format!("gl{pid}{n}vc"),
            attacker_if: format!("gl{pid}{n}a"),
            clients_if: format!("gl{pid}{n}c"),
            peers: Vec::new(),
        };
        for ns in [&t.victim, &t.attacker, &t.clients] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        t.pair(&t.attacker, &t.attacker_if, &t.victim_a);
        t.pair(&t.clients, &t.clients_if, &t.victim_c);
        t.peers = vec![
            PassThrough::sink(&t.attacker, &t.attacker_if),
            PassThrough::attach(&t.clients, &t.clients_if),
        ];
        Self::addr(&t.attacker, &t.attacker_if, ATTACKER_GW);
        for i in 0..ATTACKER_SOURCES {
            Self::addr(&t.attacker, &t.attacker_if, attacker_source(i));
        }
        Self::addr(&t.victim, &t.victim_a, VICTIM_A);
        Self::addr(&t.clients, &t.clients_if, Ipv4Addr::new(198, 18, 1, 1));
        for i in 0..USERS {
            Self::addr(&t.clients, &t.clients_if, user(i));
        }
        Self::addr(&t.clients, &t.clients_if, NAT);
        Self::addr(&t.victim, &t.victim_c, VICTIM_C);
        ip(&[
            "-n",
            &t.victim,
            "route",
            "add",
            SPOOFED,
            "via",
            &ATTACKER_GW.to_string(),
        ]);
        let _ = nft(
            &t.victim,
            &["-f", "-"],
            Some(
                "table inet guardlab_ct {\n  chain input {\n    type filter hook input priority filter;\n    ct state new counter\n  }\n}\n",
            ),
        );
        t
    }

    /// A veth pair from `ns` to the victim, IPv6 off so the kernel sends
    /// nothing of its own.
    fn pair(&self, ns: &str, outer: &str, inner: &str) {
        ip(&[
            "link",
            "add",
            "name",
            outer,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            &self.victim,
        ]);
        for (space, dev) in [(ns, outer), (self.victim.as_str(), inner)] {
            sysctl_in(space, &format!("net/ipv6/conf/{dev}/disable_ipv6"), "1");
            ip(&["-n", space, "link", "set", dev, "up"]);
        }
    }

    fn addr(ns: &str, dev: &str, addr: Ipv4Addr) {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
    }

    /// The TCP server the floods and the clients aim at, per side.
    #[must_use]
    pub const fn tcp_server(victim: Ipv4Addr) -> SocketAddr {
        SocketAddr::new(std::net::IpAddr::V4(victim), TCP_PORT)
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
        sysctl_in(&self.victim, key, value);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.peers.clear();
        // Deleting a namespace deletes its veth ends, and with them the
        // peers.
        for ns in [&self.attacker, &self.clients, &self.victim] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Writes `value` to /proc/sys/`key` inside `ns`.
pub fn sysctl_in(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{key}");
    guard::netns::Scope::open(Some(ns))
        .unwrap_or_else(|e| panic!("netns {ns}: {e}"))
        .run(|| std::fs::write(&path, value))
        .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
        .unwrap_or_else(|e| panic!("writing {value} to {path} in {ns}: {e}"));
}
