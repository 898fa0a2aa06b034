//! Spoofed floods sent as frames from the attacker side to the victim's
//! MAC, so the victim's kernel takes them as its own traffic. Sources come
//! from 198.19.0.0/16 or 2001:db8:ff00::/40, which the victim routes back
//! over the veth.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use crate::{
    guard_proc::{counters, stats},
    net::{TestNet, VICTIM_ADDR, VICTIM_ADDR6},
    packet::{Packet, TCP_SYN},
    raw::RawSender,
};

/// The `i`-th spoofed source: 198.19.0.1 upwards.
#[must_use]
pub fn spoofed(i: u32) -> IpAddr {
    let b = (i + 1).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(198, 19, b[2], b[3]))
}

/// The `i`-th spoofed IPv6 source: one in each /64 of 2001:db8:ff00::/48.
#[must_use]
pub fn spoofed6(i: u32) -> IpAddr {
    let b = (i + 1).to_be_bytes();
    let net = u16::from_be_bytes([b[2], b[3]]);
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff00, net, 0, 0, 0, 7))
}

/// A frame sender aimed at the victim.
pub struct Flood {
    sender: RawSender,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    victim: IpAddr,
    victim6: IpAddr,
    /// Frames sent so far.
    pub sent: u64,
}

impl Flood {
    #[must_use]
    pub fn new(net: &TestNet) -> Self {
        Self {
            sender: RawSender::open(&net.attacker, &net.attacker_if),
            src_mac: net.mac(&net.attacker, &net.attacker_if),
            dst_mac: net.mac(&net.victim, &net.victim_if),
            victim: VICTIM_ADDR.parse().expect("address"),
            victim6: VICTIM_ADDR6.parse().expect("address"),
            sent: 0,
        }
    }

    /// The same sender aimed at another device on the victim's link: its
    /// MAC and addresses.
    #[must_use]
    pub fn aimed_at(mut self, mac: [u8; 6], victim: IpAddr, victim6: IpAddr) -> Self {
        self.dst_mac = mac;
        self.victim = victim;
        self.victim6 = victim6;
        self
    }

    /// One SYN from `from` to the victim's `dport`, waited for until the
    /// guard running on `net` has counted it (its `tcp_syn` counter reaches
    /// the frames sent, so every frame sent must be a SYN).
    pub fn counted_syn(&mut self, net: &TestNet, from: IpAddr, dport: u16) {
        let sport = 1024 + u16::try_from(self.sent % 60_000).expect("port");
        self.tcp(from, sport, dport, TCP_SYN);
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters(&stats(net))["tcp_syn"] < self.sent {
            assert!(
                Instant::now() < deadline,
                "guard did not count SYN {}",
                self.sent
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One TCP segment from `src:sport` to the victim's `dport`, over the
    /// family of `src`.
    pub fn tcp(&mut self, src: IpAddr, sport: u16, dport: u16, flags: u8) {
        let dst = self.victim_for(src);
        self.send(&Packet::tcp(src, dst, sport, dport, flags));
    }

    /// The victim's address in the family of `src`.
    #[must_use]
    pub fn victim_for(&self, src: IpAddr) -> IpAddr {
        if src.is_ipv4() {
            self.victim
        } else {
            self.victim6
        }
    }

    /// `packet`, addressed to the victim's MAC.
    pub fn send(&mut self, packet: &Packet) {
        let frame = packet.clone().macs(self.src_mac, self.dst_mac).frame();
        self.sender.send(&frame);
        self.sent += 1;
    }
}
