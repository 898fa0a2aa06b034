//! NOTRACK for stateless ports: nftables rules in the raw table, both
//! directions, so conntrack never sees traffic that needs no state (a DNS
//! server's UDP, say). They live in a table of their own, `inet
//! guard_notrack`, which is replaced as a whole and removed as a whole.

use std::fmt::Write as _;

use anyhow::{Result, anyhow};

use crate::{
    cli::NotrackArgs,
    exit::usage,
    netns::Scope,
    nft::{delete_table, nft},
    preflight,
};

pub const TABLE: &str = "guard_notrack";

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
pub fn script(ports: &[u16], proto: Proto) -> String {
    let set = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let protos: &[&str] = match proto {
        Proto::Tcp => &["tcp"],
        Proto::Udp => &["udp"],
        Proto::Both => &["tcp", "udp"],
    };
    let mut s = delete_table(TABLE);
    let _ = writeln!(s, "table inet {TABLE} {{");
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

/// Installs (or replaces) the notrack rules.
pub fn install(scope: &Scope, ports: &[u16], proto: Proto) -> Result<()> {
    nft(scope, &script(ports, proto))
}

/// Removes the notrack rules; missing ones are fine.
pub fn remove(scope: &Scope) -> Result<()> {
    nft(scope, &delete_table(TABLE))
}

pub fn command(args: &NotrackArgs) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let scope = Scope::open(args.netns.as_deref()).map_err(usage)?;
    if args.remove {
        remove(&scope)?;
        println!("removed table inet {TABLE}{}", scope.suffix());
        return Ok(());
    }
    if args.port.is_empty() {
        return Err(usage(anyhow!("give at least one --port, or --remove")));
    }
    install(&scope, &args.port, args.proto)?;
    println!(
        "conntrack skips {} port(s) {}{} in both directions (table inet {TABLE}); `guard notrack --remove` undoes it",
        match args.proto {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Both => "TCP and UDP",
        },
        args.port
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        scope.suffix()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_replaces_the_table_and_covers_both_directions() {
        let s = script(&[53, 123], Proto::Udp);
        assert!(s.starts_with("table inet guard_notrack\ndelete table inet guard_notrack\n"));
        assert!(s.contains(
            "type filter hook prerouting priority raw;\n    udp dport { 53, 123 } notrack\n"
        ));
        assert!(s.contains(
            "type filter hook output priority raw;\n    udp sport { 53, 123 } notrack\n"
        ));
        assert!(!s.contains("tcp dport") && !s.contains("tcp sport"));
        assert_eq!(script(&[80], Proto::Both).matches("} notrack\n").count(), 4);
    }
}
