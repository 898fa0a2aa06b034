//! The kernel half of SYN cookies: installs and removes netfilter's
//! SYNPROXY rules (their text and why they are so: `model::nft`).

use anyhow::Result;

use super::{netns::Scope, nft::nft};
use crate::model::nft::{SYNPROXY_TABLE, SynproxyOptions, delete_table, synproxy_script};

/// Installs (or replaces) the SYNPROXY rules.
pub fn install(scope: &Scope, ports: &[u16], opts: SynproxyOptions) -> Result<()> {
    nft(scope, &synproxy_script(ports, opts))
}

/// Removes them; missing ones are fine.
pub fn remove(scope: &Scope) -> Result<()> {
    nft(scope, &delete_table(SYNPROXY_TABLE))
}
