//! The text of the nftables tables guard installs, each replaced and
//! removed whole: `inet guard_notrack` (conntrack skips stateless ports;
//! `inet guard_run_notrack` the same for `guard run --notrack-port`) and
//! `inet guard_synproxy` (the kernel half of SYN cookies: netfilter's
//! SYNPROXY completes the handshakes whose SYN-ACK the XDP program sent).
//!
//! SYNPROXY: SYNs to the cookie ports of this host's addresses are
//! untracked (a SYN that still reaches the kernel, one XDP could not
//! answer, is answered by SYNPROXY itself; one the host routes on to a
//! machine behind it, on the same port, is tracked and forwarded as
//! ever, and so, to the kernel, is one for a connection the host holds:
//! see [`synproxy_script`]), and a cookie handshake's ACK goes to SYNPROXY, which checks
//! its cookie with the same kernel secret and opens the connection to the
//! real server. The ACK is untracked when the port's listeners are all
//! bound to the wildcard address (its socket lookup finds the listener,
//! see [`synproxy_script`]), else invalid: conntrack does not know it, with
//! `nf_conntrack_tcp_loose` 0, which the controller sets only while such a
//! port is armed. Invalid packets to those ports are dropped. So is
//! SYNPROXY's own ACK to the server where the server's TCP would reject
//! it (see [`synproxy_script`]).
//!
//! The input chain runs at `filter - 1`: after conntrack and DNAT, and
//! before every chain at `filter` (iptables' INPUT, ufw, an operator's
//! `inet filter`), whatever order they were loaded in. Chains of one
//! priority run newest first, so at `filter` a firewall with
//! `ct state invalid drop` loaded after guard armed a port (a reload
//! during the attack) dropped every cookie handshake's ACK before
//! SYNPROXY saw it.

use std::{collections::BTreeSet, fmt::Write as _};

use super::ports::port_list;

/// `guard notrack`'s table, kept until `guard notrack --remove`.
pub const NOTRACK_TABLE: &str = "guard_notrack";
/// `guard run --notrack-port`'s, for the run's lifetime: a table of its
/// own, so that the run neither replaces nor removes `guard notrack`'s.
pub const RUN_NOTRACK_TABLE: &str = "guard_run_notrack";
pub const SYNPROXY_TABLE: &str = "guard_synproxy";
/// The SYNPROXY input chain's priority: `filter - 1` (see above).
pub const SYNPROXY_PRIORITY: i64 = -1;

/// The script that removes `table` (family inet) if it exists: declaring
/// it first makes the delete succeed when it is missing.
#[must_use]
pub fn delete_table(table: &str) -> String {
    format!("table inet {table}\ndelete table inet {table}\n")
}

/// Which transport `--proto` covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Tcp,
    Udp,
    #[default]
    Both,
}

/// The nftables script for `ports`: the table is created (if missing),
/// deleted and defined again in one transaction, so it is replaced whole.
#[must_use]
pub fn notrack_script(table: &str, ports: &[u16], proto: Proto) -> String {
    let set = port_list(ports.iter().copied());
    let protos: &[&str] = match proto {
        Proto::Tcp => &["tcp"],
        Proto::Udp => &["udp"],
        Proto::Both => &["tcp", "udp"],
    };
    let mut s = delete_table(table);
    let _ = writeln!(s, "table inet {table} {{");
    s.push_str("  chain prerouting {\n    type filter hook prerouting priority raw;\n");
    for p in protos {
        let _ = writeln!(s, "    {p} dport {{ {set} }} notrack");
    }
    s.push_str("  }\n  chain output {\n    type filter hook output priority raw;\n");
    for p in protos {
        let _ = writeln!(s, "    {p} sport {{ {set} }} notrack");
    }
    s.push_str("  }\n}\n");
    s
}

/// What SYNPROXY needs to agree with the XDP side on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynproxyOptions {
    /// MSS over IPv4; IPv6 gets 20 less.
    pub mss: u16,
    pub wscale: u8,
    /// What the rules do with the ACK with which SYNPROXY completes the
    /// server's side of a handshake.
    pub own_ack: OwnAck,
}

/// What the SYNPROXY rules do with SYNPROXY's own ACK to the server (see
/// [`synproxy_script`]), by what the server's TCP makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnAck {
    /// Nothing: the server takes it (its TCP does not check a handshake's
    /// timestamps, `model::tcp::checks_tsecr`).
    Pass,
    /// Dropped: the server would reject it; the client's first segment
    /// completes the server's side, and a server that speaks first waits
    /// for its SYN-ACK's retransmission.
    Drop,
    /// Its timestamp option blanked: the server takes it at once. Where
    /// the server answered with a cookie of its own, which keeps its
    /// options in that timestamp, the ACK goes on whole; without the socket
    /// lookup that tells, it is dropped instead.
    Strip,
}

/// SYNPROXY's own ACK to the server, which completes the server's side of
/// a cookie handshake: over `lo`, to an armed port, from a client's
/// (foreign) address.
const SYNPROXY_OWN_ACK: &str = "iifname \"lo\" tcp dport @armed tcp flags & (fin | syn | rst | ack) == ack fib saddr type != local";

/// The same ACK to the server behind a forwarded port, on its way out:
/// made here (the output hook), from a client's (foreign) address, in the
/// original direction of a connection the nat rules translated from a
/// forwarded port. The host's own connections to the port come from its
/// own addresses; the clients' segments are forwarded, not made here.
const FORWARDED_OWN_ACK: &str = "tcp flags & (fin | syn | rst | ack) == ack ct direction original ct original proto-dst @forwarded ct status dnat fib saddr type != local";

/// The nftables script for `ports`, the armed ones, in the set `armed`,
/// and `wild`, those of them whose listeners are all bound to the
/// wildcard address, in the set `wild`. With no port it is the dormant
/// table: its rules match nothing, but its SYNPROXY statements keep
/// netfilter's SYNPROXY hooks in place, which translate the timestamps of
/// every connection SYNPROXY made for as long as it lives. Without them
/// such a connection stalls (the client's PAWS check drops the server's
/// segments), so the table stays, dormant, from the first armed port until
/// guard stops.
///
/// A lone ACK to a `wild` port whose socket lookup finds the listener
/// (bound to the wildcard: no connection's socket is) is a cookie
/// handshake's, and is untracked so that SYNPROXY takes it; a connection's
/// own finds its socket and is tracked as ever. The lookup finds a
/// wildcard listener for any destination, so the ACK must be for an
/// address of this host too: one this host forwards (a routed container
/// or pod on the same port) stays tracked. Conntrack may then stay
/// loose about lone ACKs (`tcp_loose` 1), so a connection whose entry is
/// gone (flushed, or expired at a level's short timeout) is picked up
/// again rather than dropped as invalid. A listener bound to one address
/// has a connection's address, so for its port conntrack must be strict
/// (`tcp_loose` 0) for the ACK to be invalid, and SYNPROXY's.
///
/// With `socket_lookup` (nftables' socket expression works here), a SYN
/// is untracked only when its lookup finds the listener. The XDP program
/// sends a SYN for a connection the host holds the ordinary way; tracked,
/// SYNPROXY, which takes untracked SYNs, leaves it to the kernel, which
/// reopens a connection in TIME_WAIT, and answers one its peer lost (a
/// client that crashed, a NAT that gave the port to another) with a
/// challenge ACK, which the client resets before it tries again.
/// Untracked, SYNPROXY answered it, and the client's ACK went to the old
/// socket: the client waited for nothing. At a `wild` port the listener
/// is told apart exactly (`socket wildcard 1`); at a port bound to one
/// address a connection's socket has the listener's `wildcard` 0, so
/// there only a TIME_WAIT socket (not a full socket, no match) is told
/// apart.
///
/// With `socket_lookup`, the ACK SYNPROXY sends the server to complete its
/// side of a handshake (over `lo`, from a client's address) goes on
/// tracked and whole when its lookup finds a full socket, the listener:
/// the server answered SYNPROXY's SYN with a SYN cookie of its own (its
/// SYN queue full, as a flood's spoofed SYNs admitted before cookies came
/// on leave it) and keeps no request socket, so that ACK is what makes the
/// connection. Untracked (at a `wild` port), SYNPROXY took it for a
/// client's; dropped (below), the server never had the connection; and
/// each of the client's segments then went to SYNPROXY as a new cookie
/// ACK. Where the server keeps a request socket the lookup finds no full
/// socket, and the rules below apply.
///
/// SYNPROXY's own ACK (it comes over `lo` from a client's address:
/// nothing else does) carries a TSecr the server never sent: SYNPROXY
/// builds it right, then its own hook shifts it by the connection's offset
/// as it does the client's segments. A server whose TCP checks a
/// handshake's timestamps rejects it and answers with an ACK of its own,
/// which SYNPROXY passes to the client; when the server's millisecond
/// clock has ticked since its SYN-ACK, the client echoes that ACK's newer
/// TSval in its first segment, which the server rejects too, and the
/// connection waits for the SYN-ACK's retransmission (1.7 s by hand, about
/// one connection in a hundred), as a server that speaks first always
/// does. With [`OwnAck::Strip`] the rules blank its timestamp option on
/// its way in (NOPs, `reset tcp option timestamp`), and the server takes
/// it at once: a request socket needs no timestamp on it (by hand, a
/// greeting server: 1 ms a connection, 1.0 s with the ACK dropped). The
/// server's own cookie keeps the connection's options in the timestamp
/// that ACK echoes, which is why the ACK to a server that answered with
/// one goes on whole (the rule before; from that shifted echo the server
/// reads options that are not the client's: a fault of SYNPROXY's that
/// only a shorter SYN queue, `--synack-retries`, eases). With [`OwnAck::Drop`] the ACK is dropped: unanswered, the client
/// echoes the TSval of the handshake, and its first segment completes the
/// server's side. On the way in, not out: conntrack must have seen the ACK
/// leave (the connection established), or SYNPROXY takes the retransmitted
/// SYN-ACK for its own handshake's and never passes it on.
///
/// Behind a `forwarded` port (`model::nat`: a container's published port)
/// the server is in another namespace, on the same kernel, and rejects
/// that ACK alike (by hand: 6 connections in 300 waited 1.7 s). There it
/// is dropped on its way out (with `Strip` too: no lookup there tells a
/// container's own cookie), at the output hook's filter priority, after
/// conntrack and the nat rules saw it leave. Where the container answered
/// SYNPROXY's SYN with a cookie of its own, the client's first segment,
/// which conntrack forwards, completes it (by hand, with the container's
/// `tcp_syncookies` 2: 100 of 100, none slow); a container that speaks
/// first waits for its SYN-ACK's retransmission.
#[must_use]
pub fn synproxy_script(
    ports: &BTreeSet<u16>,
    wild: &BTreeSet<u16>,
    forwarded: &BTreeSet<u16>,
    socket_lookup: bool,
    opts: SynproxyOptions,
) -> String {
    let mut s = delete_table(SYNPROXY_TABLE);
    let _ = writeln!(s, "table inet {SYNPROXY_TABLE} {{");
    port_set(&mut s, "armed", ports);
    // Only with a port in it, and nft_socket, which an old kernel may
    // lack: its rule needs the socket lookup.
    let wild = if socket_lookup {
        wild
    } else {
        &BTreeSet::new()
    };
    if !wild.is_empty() {
        port_set(&mut s, "wild", wild);
    }
    // The armed ones of them, and only where the server rejects their own
    // ACK.
    let forwarded: BTreeSet<u16> = if opts.own_ack == OwnAck::Pass {
        BTreeSet::new()
    } else {
        forwarded.intersection(ports).copied().collect()
    };
    if !forwarded.is_empty() {
        port_set(&mut s, "forwarded", &forwarded);
    }
    s.push_str("  chain prerouting {\n    type filter hook prerouting priority raw;\n");
    // `wild` is empty without the lookup (above).
    let bound = if wild.is_empty() {
        ""
    } else {
        "tcp dport != @wild "
    };
    let listener = if socket_lookup {
        "socket wildcard 0-1 "
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "    tcp dport @armed {bound}tcp flags & (fin | syn | rst | ack) == syn {listener}fib daddr type local notrack"
    );
    if socket_lookup {
        // SYNPROXY's own ACK where the server answered its SYN with a
        // kernel cookie (its SYN queue full): no request socket, so the
        // lookup finds the listener. It goes on tracked and whole, and
        // creates the server's socket.
        let _ = writeln!(s, "    {SYNPROXY_OWN_ACK} socket wildcard 0-1 accept");
    }
    if !wild.is_empty() {
        for flag in ["syn", "ack"] {
            let _ = writeln!(
                s,
                "    tcp dport @wild tcp flags & (fin | syn | rst | ack) == {flag} socket wildcard 1 fib daddr type local notrack"
            );
        }
    }
    let own_ack = match (opts.own_ack, socket_lookup) {
        (OwnAck::Pass, _) => None,
        (OwnAck::Strip, true) => Some("reset tcp option timestamp"),
        (OwnAck::Strip | OwnAck::Drop, _) => Some("drop"),
    };
    if let Some(action) = own_ack {
        let _ = writeln!(
            s,
            "    {SYNPROXY_OWN_ACK} tcp option timestamp exists {action}"
        );
    }
    let _ = writeln!(
        s,
        "  }}\n  chain input {{\n    type filter hook input priority {SYNPROXY_PRIORITY};"
    );
    for (family, mss) in [("ipv4", opts.mss), ("ipv6", opts.mss - 20)] {
        let _ = writeln!(
            s,
            "    meta nfproto {family} tcp dport @armed ct state invalid,untracked synproxy mss {mss} wscale {} timestamp sack-perm",
            opts.wscale
        );
    }
    s.push_str("    tcp dport @armed ct state invalid drop\n  }\n");
    if !forwarded.is_empty() {
        let _ = writeln!(
            s,
            "  chain output {{\n    type filter hook output priority filter;\n    {FORWARDED_OWN_ACK} tcp option timestamp exists drop\n  }}"
        );
    }
    s.push_str("}\n");
    s
}

/// Writes the set of ports `name` into the script `s`, with `ports` its
/// elements (none if it is empty).
fn port_set(s: &mut String, name: &str, ports: &BTreeSet<u16>) {
    let _ = writeln!(s, "  set {name} {{\n    type inet_service;");
    if !ports.is_empty() {
        let _ = writeln!(
            s,
            "    elements = {{ {} }}",
            port_list(ports.iter().copied())
        );
    }
    s.push_str("  }\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: SynproxyOptions = SynproxyOptions {
        mss: 1460,
        wscale: 7,
        own_ack: OwnAck::Pass,
    };

    #[test]
    fn the_script_replaces_the_table_and_covers_both_directions() {
        let s = notrack_script(NOTRACK_TABLE, &[53, 123], Proto::Udp);
        assert!(s.starts_with("table inet guard_notrack\ndelete table inet guard_notrack\n"));
        assert!(s.contains(
            "type filter hook prerouting priority raw;\n    udp dport { 53, 123 } notrack\n"
        ));
        assert!(s.contains(
            "type filter hook output priority raw;\n    udp sport { 53, 123 } notrack\n"
        ));
        assert!(!s.contains("tcp dport") && !s.contains("tcp sport"));
        assert_eq!(
            notrack_script(NOTRACK_TABLE, &[80], Proto::Both)
                .matches("} notrack\n")
                .count(),
            4
        );
    }

    #[test]
    fn the_script_untracks_syns_and_proxies_both_families() {
        let none = BTreeSet::new();
        let s = synproxy_script(&BTreeSet::from([80, 443]), &none, &none, false, OPTS);
        assert!(s.starts_with("table inet guard_synproxy\ndelete table inet guard_synproxy\n"));
        assert!(
            s.contains("  set armed {\n    type inet_service;\n    elements = { 80, 443 }\n  }\n")
        );
        assert!(s.contains(
            "type filter hook prerouting priority raw;\n    tcp dport @armed tcp flags & (fin | syn | rst | ack) == syn fib daddr type local notrack\n"
        ));
        assert!(s.contains(
            "chain input {\n    type filter hook input priority -1;\n    meta nfproto ipv4 tcp dport @armed ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm"
        ));
        assert!(s.contains("meta nfproto ipv6 tcp dport @armed ct state invalid,untracked synproxy mss 1440 wscale 7"));
        assert!(s.ends_with("    tcp dport @armed ct state invalid drop\n  }\n}\n"));
        // Dormant: the same rules over an empty set.
        let dormant = synproxy_script(&none, &none, &none, false, OPTS);
        assert!(dormant.contains("  set armed {\n    type inet_service;\n  }\n"));
        assert_eq!(dormant.matches(" synproxy mss ").count(), 2);
        // Without nft_socket: no socket lookup at all.
        assert!(!s.contains("socket") && !dormant.contains("socket"));
    }

    #[test]
    fn a_wildcard_ports_cookie_acks_are_untracked_by_socket_lookup() {
        let s = synproxy_script(
            &BTreeSet::from([80, 443]),
            &BTreeSet::from([80]),
            &BTreeSet::new(),
            true,
            OPTS,
        );
        assert!(s.contains("  set wild {\n    type inet_service;\n    elements = { 80 }\n  }\n"));
        // A wild port's SYN only for the wildcard listener (a connection's
        // socket has `wildcard` 0); another armed port's for any full socket.
        // SYNPROXY's own ACK, where the server keeps no request socket,
        // passes before the rule that would untrack it.
        assert!(s.contains(
            "priority raw;\n    tcp dport @armed tcp dport != @wild tcp flags & (fin | syn | rst | ack) == syn socket wildcard 0-1 fib daddr type local notrack\n    iifname \"lo\" tcp dport @armed tcp flags & (fin | syn | rst | ack) == ack fib saddr type != local socket wildcard 0-1 accept\n    tcp dport @wild tcp flags & (fin | syn | rst | ack) == syn socket wildcard 1 fib daddr type local notrack\n    tcp dport @wild tcp flags & (fin | syn | rst | ack) == ack socket wildcard 1 fib daddr type local notrack\n  }\n"
        ));
    }

    /// Where the server rejects SYNPROXY's own ACK, its timestamp is
    /// blanked after the rule that passes it whole to a server's own
    /// cookie; dropped where that rule cannot be (no socket lookup), or
    /// where blanking failed to load; left alone where the server takes it.
    #[test]
    fn synproxys_own_ack_is_stripped_or_dropped_only_where_the_server_rejects_it() {
        let ports = BTreeSet::from([80]);
        let none = BTreeSet::new();
        let own_ack = "    iifname \"lo\" tcp dport @armed tcp flags & (fin | syn | rst | ack) == ack fib saddr type != local tcp option timestamp exists";
        let with = |own_ack| SynproxyOptions { own_ack, ..OPTS };
        let s = synproxy_script(&ports, &ports, &none, true, with(OwnAck::Strip));
        assert!(s.contains(&format!(
            "socket wildcard 0-1 accept\n    tcp dport @wild tcp flags & (fin | syn | rst | ack) == syn socket wildcard 1 fib daddr type local notrack\n    tcp dport @wild tcp flags & (fin | syn | rst | ack) == ack socket wildcard 1 fib daddr type local notrack\n{own_ack} reset tcp option timestamp\n  }}\n  chain input"
        )), "{s}");
        for (lookup, opts) in [
            (false, OwnAck::Strip),
            (true, OwnAck::Drop),
            (false, OwnAck::Drop),
        ] {
            let s = synproxy_script(&ports, &ports, &none, lookup, with(opts));
            assert!(
                s.contains(&format!("{own_ack} drop\n  }}\n  chain input")),
                "{s}"
            );
        }
        for lookup in [true, false] {
            let s = synproxy_script(&ports, &ports, &none, lookup, OPTS);
            assert!(!s.contains("tcp option timestamp"), "{s}");
        }
    }

    /// Behind an armed forwarded port, SYNPROXY's own ACK to the container
    /// is dropped on its way out, where the server rejects it; a forwarded
    /// port not armed, or a server that takes it, gets no such rule.
    #[test]
    fn synproxys_own_ack_to_a_forwarded_port_is_dropped_on_its_way_out() {
        let armed = BTreeSet::from([80, 8080]);
        let forwarded = BTreeSet::from([8080, 9000]);
        for own_ack in [OwnAck::Strip, OwnAck::Drop] {
            let opts = SynproxyOptions { own_ack, ..OPTS };
            let s = synproxy_script(&armed, &BTreeSet::new(), &forwarded, true, opts);
            assert!(
                s.contains(
                    "  set forwarded {\n    type inet_service;\n    elements = { 8080 }\n  }\n"
                ),
                "{s}"
            );
            assert!(s.ends_with(
                "  chain output {\n    type filter hook output priority filter;\n    tcp flags & (fin | syn | rst | ack) == ack ct direction original ct original proto-dst @forwarded ct status dnat fib saddr type != local tcp option timestamp exists drop\n  }\n}\n"
            ));
        }
        let drop = SynproxyOptions {
            own_ack: OwnAck::Drop,
            ..OPTS
        };
        for (armed, opts) in [(BTreeSet::from([80]), drop), (armed, OPTS)] {
            let s = synproxy_script(&armed, &BTreeSet::new(), &forwarded, true, opts);
            assert!(
                !s.contains("forwarded") && !s.contains("chain output"),
                "{s}"
            );
        }
    }

    #[test]
    fn a_syn_is_untracked_only_for_a_listener_where_sockets_can_be_looked_up() {
        let none = BTreeSet::new();
        // Every port bound to one address: no `wild` set, but the SYNs
        // still looked up.
        let s = synproxy_script(&BTreeSet::from([22]), &none, &none, true, OPTS);
        assert!(s.contains(
            "    tcp dport @armed tcp flags & (fin | syn | rst | ack) == syn socket wildcard 0-1 fib daddr type local notrack\n    iifname \"lo\" tcp dport @armed tcp flags & (fin | syn | rst | ack) == ack fib saddr type != local socket wildcard 0-1 accept\n  }\n"
        ));
        assert!(!s.contains("set wild") && !s.contains("@wild"));
        // Without nft_socket, `wild` is ignored: its rule needs the lookup.
        let old = synproxy_script(
            &BTreeSet::from([80]),
            &BTreeSet::from([80]),
            &BTreeSet::new(),
            false,
            OPTS,
        );
        assert!(!old.contains("socket") && !old.contains("wild"));
    }
}
