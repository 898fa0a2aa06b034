//! The attacks. Each is bounded in time (the run's attack window) and in
//! packets or connections, and stops by itself.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    SynFlood,
    SynFloodRandom,
    SynFlood6,
    SynFloodWide,
    SynFlood6Wide,
    ConnFlood,
    UdpFlood,
    UdpFloodRandom,
    QueryFlood,
    FlashCrowd,
    Mixed,
}

impl Scenario {
    pub const ALL: [Self; 11] = [
        Self::SynFlood,
        Self::SynFloodRandom,
        Self::SynFlood6,
        Self::SynFloodWide,
        Self::SynFlood6Wide,
        Self::ConnFlood,
        Self::UdpFlood,
        Self::UdpFloodRandom,
        Self::QueryFlood,
        Self::FlashCrowd,
        Self::Mixed,
    ];

    /// Whether the attack comes from spoofed sources (198.19.0.0/16 or
    /// 2001:db8:ff00::/40; the wide floods' all of 198.18.0.0/15 or
    /// 2001:db8::/32).
    #[must_use]
    pub const fn spoofed(self) -> bool {
        matches!(
            self,
            Self::SynFlood
                | Self::SynFloodRandom
                | Self::SynFlood6
                | Self::SynFloodWide
                | Self::SynFlood6Wide
                | Self::UdpFlood
                | Self::UdpFloodRandom
                | Self::QueryFlood
                | Self::Mixed
        )
    }

    /// CPUs the flood is sent from: the wide floods come from two, on the
    /// two queues of the link, so that the XDP program's shared buckets
    /// are taken from two CPUs at once.
    #[must_use]
    pub const fn cpus(self) -> u32 {
        if matches!(self, Self::SynFloodWide | Self::SynFlood6Wide) {
            2
        } else {
            1
        }
    }

    /// Whether it runs over IPv6: the flood and the legitimate users.
    #[must_use]
    pub const fn ipv6(self) -> bool {
        matches!(self, Self::SynFlood6 | Self::SynFlood6Wide)
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SynFlood => "syn-flood",
            Self::SynFloodRandom => "syn-flood-random",
            Self::SynFlood6 => "syn-flood-v6",
            Self::SynFloodWide => "syn-flood-wide",
            Self::SynFlood6Wide => "syn-flood-v6-wide",
            Self::ConnFlood => "conn-flood",
            Self::UdpFlood => "udp-flood",
            Self::UdpFloodRandom => "udp-flood-random",
            Self::QueryFlood => "query-flood",
            Self::FlashCrowd => "flash-crowd",
            Self::Mixed => "mixed",
        }
    }

    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Self::SynFlood => "Spoofed SYN flood",
            Self::SynFloodRandom => "Spoofed SYN flood with randomised traits",
            Self::SynFlood6 => "Spoofed SYN flood over IPv6",
            Self::SynFloodWide => "Spoofed SYN flood from the whole range, two CPUs",
            Self::SynFlood6Wide => "Spoofed IPv6 SYN flood from the whole /32, two CPUs",
            Self::ConnFlood => "Connection flood",
            Self::UdpFlood => "UDP flood",
            Self::UdpFloodRandom => "UDP flood with randomised traits",
            Self::QueryFlood => "ICMP query and GRE flood",
            Self::FlashCrowd => "Flash crowd behind a NAT",
            Self::Mixed => "Mixed flood",
        }
    }

    /// What the attack is, for the report.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::SynFlood => {
                "TCP SYNs to the server's port from random sources of 198.19.0.0/16 (65,536 addresses, random ports), as fast as one trafgen core sends them. The victim answers each with a SYN-ACK (SYN cookies once its backlog overflows), so each SYN is a SYN_RECV conntrack entry. Its traits are fixed: every SYN 40 bytes, TTL 64, window 64240, no TCP options (the users' Linux SYNs carry options), which a signature can tell from the users."
            }
            Self::SynFloodRandom => {
                "The spoofed SYN flood with no trait a signature could take without taking the users: random TTL (0-255), IP ID, window and sequence number, and five TCP option layouts in turn (none, MSS alone, Windows', Linux's as the users send them, macOS's; random timestamps). The learner should stay silent."
            }
            Self::SynFlood6 => {
                "The spoofed SYN flood over IPv6: sources random within 2001:db8:ff00::/40 (2^24 /64s, random interface ids, so nearly every SYN is a new /64), as fast as one trafgen core sends them; the legitimate users connect over IPv6 too."
            }
            Self::SynFloodWide => {
                "TCP SYNs from random sources over all of 198.18.0.0/15 (131,072 addresses in 512 /24s, random ports), sent from two trafgen cores onto the two queues of the link, so that the XDP program runs on two CPUs at once and shares its buckets."
            }
            Self::SynFlood6Wide => {
                "TCP SYNs over IPv6 from random sources over all of 2001:db8::/32 (2^32 /64s: every SYN a new /64 and nearly every one a new /48), from two trafgen cores onto the two queues of the link; the legitimate users connect over IPv6."
            }
            Self::ConnFlood => {
                "Four real sources open connections as fast as they can (512 in flight) and hold them: every one an ASSURED entry, which early_drop cannot evict. At most 1.5x the table's connections held (and never more than 18,000: one descriptor each), 200,000 attempts."
            }
            Self::UdpFlood => {
                "UDP datagrams to the server's echo port from random sources and ports of 198.19.0.0/16: every datagram a new flow, answered by the server. Its traits are fixed: every datagram 44 bytes, TTL 64, the same 16-byte payload (\"guard-lab-flood!\"), which a signature can tell from the users' queries."
            }
            Self::UdpFloodRandom => {
                "The UDP flood with no trait a signature could take without taking the users' queries: random TTL (0-255), IP ID and payload bytes, and five lengths in turn, the shortest as long as the users' queries. The learner should stay silent."
            }
            Self::QueryFlood => {
                "Neither SYNs nor UDP: ICMP timestamp requests and GRE datagrams in turn, from random sources of 198.19.0.0/16, as fast as one trafgen core sends them. Conntrack opens an entry for each: an ICMP query's lives 30 s, a GRE datagram's (one per pair of addresses, conntrack's generic tracking) 600 s. A defence that limits only SYNs and UDP lets it fill the table."
            }
            Self::FlashCrowd => {
                "No attack: 150 new connections a second from one address (many users behind a NAT), each a complete visit. A defence should not treat it as an attacker."
            }
            Self::Mixed => {
                "A spoofed SYN and UDP flood (alternating frames, 200,000 frames a second) together with a connection flood from two real sources."
            }
        }
    }

    /// Parses a name as [`Self::name`] gives it.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown scenario `{name}`: one of {}",
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Ok(s));
        }
        assert!(
            Scenario::parse("slowloris")
                .unwrap_err()
                .contains("syn-flood")
        );
    }
}
