//! NOTRACK for stateless ports: nftables rules in the raw table, both
//! directions, so conntrack never sees traffic that needs no state (a DNS
//! server's UDP, say), in a table of their own (`model::nft`).

use anyhow::Result;

use super::{netns::Scope, nft::nft};
use crate::model::nft::{Proto, delete_table, notrack_script};

/// Installs (or replaces) the notrack rules of `table`.
pub fn install(scope: &Scope, table: &str, ports: &[u16], proto: Proto) -> Result<()> {
    nft(scope, &notrack_script(table, ports, proto))
}

/// Removes `table`'s notrack rules; missing ones are fine.
pub fn remove(scope: &Scope, table: &str) -> Result<()> {
    nft(scope, &delete_table(table))
}
