//! The kernel half of SYN cookies: nftables rules that let netfilter's
//! SYNPROXY complete the handshakes whose SYN-ACK guard's XDP program sent.
//!
//! SYNs to the cookie ports are untracked (a SYN that still reaches the
//! kernel, one XDP could not answer, is answered by SYNPROXY itself), and an
//! ACK conntrack does not know (with `nf_conntrack_tcp_loose` 0, which the
//! controller sets while cookies are on) goes to SYNPROXY, which checks its
//! cookie with the same kernel secret and opens the connection to the real
//! server. Invalid packets to those ports are dropped. The rules live in a
//! table of their own, `inet guard_synproxy`, replaced and removed whole.

use std::fmt::Write as _;

use anyhow::Result;

use crate::{
    netns::Scope,
    nft::{delete_table, nft},
};

pub const TABLE: &str = "guard_synproxy";

/// What SYNPROXY needs to agree with the XDP side on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// MSS over IPv4; IPv6 gets 20 less.
    pub mss: u16,
    pub wscale: u8,
}

/// The nftables script for `ports`.
#[must_use]
pub fn script(ports: &[u16], opts: Options) -> String {
    let set = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = delete_table(TABLE);
    let _ = writeln!(s, "table inet {TABLE} {{");
    s.push_str("  chain prerouting {\n    type filter hook prerouting priority raw;\n");
    let _ = writeln!(
        s,
        "    tcp dport {{ {set} }} tcp flags & (fin | syn | rst | ack) == syn notrack"
    );
    s.push_str("  }\n  chain input {\n    type filter hook input priority filter;\n");
    for (family, mss) in [("ipv4", opts.mss), ("ipv6", opts.mss - 20)] {
        let _ = writeln!(
            s,
            "    meta nfproto {family} tcp dport {{ {set} }} ct state invalid,untracked synproxy mss {mss} wscale {} timestamp sack-perm",
            opts.wscale
        );
    }
    let _ = writeln!(s, "    tcp dport {{ {set} }} ct state invalid drop");
    s.push_str("  }\n}\n");
    s
}

/// Installs (or replaces) the SYNPROXY rules.
pub fn install(scope: &Scope, ports: &[u16], opts: Options) -> Result<()> {
    nft(scope, &script(ports, opts))
}

/// Removes them; missing ones are fine.
pub fn remove(scope: &Scope) -> Result<()> {
    nft(scope, &delete_table(TABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_untracks_syns_and_proxies_both_families() {
        let s = script(
            &[80, 443],
            Options {
                mss: 1460,
                wscale: 7,
            },
        );
        assert!(s.starts_with("table inet guard_synproxy\ndelete table inet guard_synproxy\n"));
        assert!(s.contains(
            "type filter hook prerouting priority raw;\n    tcp dport { 80, 443 } tcp flags & (fin | syn | rst | ack) == syn notrack\n"
        ));
        assert!(s.contains("meta nfproto ipv4 tcp dport { 80, 443 } ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm"));
        assert!(s.contains("meta nfproto ipv6 tcp dport { 80, 443 } ct state invalid,untracked synproxy mss 1440 wscale 7"));
        assert!(s.ends_with("    tcp dport { 80, 443 } ct state invalid drop\n  }\n}\n"));
    }
}
