//! NOTRACK for stateless ports: nftables rules in the raw table, both
//! directions, so conntrack never sees traffic that needs no state (a DNS
//! server's UDP, say), in a table of their own (`model::nft`).

use anyhow::Result;

use super::{netns::Scope, nft::nft};
use crate::model::nft::{NOTRACK_TABLE, Proto, delete_table, notrack_script};

/// Installs (or replaces) the notrack rules.
pub fn install(scope: &Scope, ports: &[u16], proto: Proto) -> Result<()> {
    nft(scope, &notrack_script(ports, proto))
}

/// Removes the notrack rules; missing ones are fine.
pub fn remove(scope: &Scope) -> Result<()> {
    nft(scope, &delete_table(NOTRACK_TABLE))
}
