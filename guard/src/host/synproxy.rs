//! The kernel half of SYN cookies: installs and removes netfilter's
//! SYNPROXY rules (their text and why they are so: `model::nft`), and
//! reads the window scale the server's own handshakes carry.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, anyhow};
use sysctl::{Ctl, Sysctl as _};

use super::{conntrack::knobs, netns::Scope, nft::nft};
use crate::model::{
    nft::{SYNPROXY_TABLE, SynproxyOptions, delete_table, synproxy_script},
    tcp::{checks_tsecr, server_wscale, tcp_rmem_max},
};

/// The window scale the namespace's listeners advertise, with the two
/// sysctls it comes from (`net.ipv4.tcp_rmem`'s maximum, `net.core.rmem_max`).
pub fn host_wscale(scope: &Scope) -> Result<(u8, u64, u64)> {
    let suffix = scope.suffix();
    scope.run(|| {
        let text = Ctl::new("net.ipv4.tcp_rmem")
            .and_then(|c| c.value_string())
            .with_context(|| format!("reading net.ipv4.tcp_rmem{suffix}"))?;
        let rmem = tcp_rmem_max(&text).ok_or_else(|| {
            anyhow!(
                "net.ipv4.tcp_rmem{suffix} holds `{}`, not three numbers",
                text.trim()
            )
        })?;
        let core = knobs::read("net.core.rmem_max", &suffix)?;
        Ok((server_wscale(rmem, core), rmem, core))
    })?
}

/// Whether the namespace's TCP checks a handshake's last ACK against its
/// SYN-ACKs' timestamps (`model::tcp::checks_tsecr`), from its
/// `/proc/net/netstat`.
pub fn tsecr_checked(scope: &Scope) -> Result<bool> {
    let suffix = scope.suffix();
    scope.run(|| {
        std::fs::read_to_string("/proc/thread-self/net/netstat")
            .map(|text| checks_tsecr(&text))
            .with_context(|| format!("reading /proc/net/netstat{suffix}"))
    })?
}

/// Installs (or replaces) the SYNPROXY rules for the armed `ports`, of
/// which `wild` have listeners bound to the wildcard address alone and
/// `forwarded` are published ports (`model::nat`); `socket_lookup`:
/// whether the rules may look sockets up (nft_socket).
pub fn install(
    scope: &Scope,
    ports: &BTreeSet<u16>,
    wild: &BTreeSet<u16>,
    forwarded: &BTreeSet<u16>,
    socket_lookup: bool,
    opts: SynproxyOptions,
) -> Result<()> {
    nft(
        scope,
        &synproxy_script(ports, wild, forwarded, socket_lookup, opts),
    )
}

/// Removes them; missing ones are fine.
pub fn remove(scope: &Scope) -> Result<()> {
    nft(scope, &delete_table(SYNPROXY_TABLE))
}
