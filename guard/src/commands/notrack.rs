//! `guard notrack`: conntrack skips stateless ports.

use anyhow::{Result, anyhow};

use crate::{
    error::usage,
    host::{netns::Scope, notrack, preflight},
    model::{
        nft::{NOTRACK_TABLE, Proto},
        ports::port_list,
    },
};

/// `guard notrack --port P... [--proto P] | --remove [--netns NAME]`.
pub fn command(ports: &[u16], proto: Proto, remove: bool, netns: Option<&str>) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let scope = Scope::open(netns).map_err(usage)?;
    if remove {
        notrack::remove(&scope, NOTRACK_TABLE)?;
        println!("removed table inet {NOTRACK_TABLE}{}", scope.suffix());
        return Ok(());
    }
    if ports.is_empty() {
        return Err(usage(anyhow!("give at least one --port, or --remove")));
    }
    notrack::install(&scope, NOTRACK_TABLE, ports, proto)?;
    println!(
        "conntrack skips {} port(s) {}{} in both directions (table inet {NOTRACK_TABLE}); `guard notrack --remove` undoes it",
        match proto {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Both => "TCP and UDP",
        },
        port_list(ports.iter().copied()),
        scope.suffix()
    );
    Ok(())
}
