//! Typed access to the XDP program's maps: what the loader writes before
//! attaching, what `guard stats` reads, and (later) what the controller and
//! the list commands change. Works on maps of a loaded object and on pinned
//! maps alike.

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, LpmTrie, Map, PerCpuArray, lpm_trie::Key};
use guard_common::{
    DataplaneConfig, PortCounts, SourceKey, SourceState,
    key::{LIST_ALLOW, LIST_DENY},
};
use ipnet::IpNet;

/// Writes the data plane's configuration (`GUARD_CONFIG`).
pub fn write_config(map: &mut Map, config: &DataplaneConfig) -> Result<()> {
    let mut array =
        Array::<_, DataplaneConfig>::try_from(map).context("GUARD_CONFIG has the wrong type")?;
    array.set(0, config, 0).context("writing GUARD_CONFIG")
}

/// Reads the data plane's configuration.
pub fn read_config(map: &Map) -> Result<DataplaneConfig> {
    let array =
        Array::<_, DataplaneConfig>::try_from(map).context("GUARD_CONFIG has the wrong type")?;
    array.get(&0, 0).context("reading GUARD_CONFIG")
}

/// Writes one port's `GUARD_PORTS` entry (0: no listener).
pub fn write_port(map: &mut Map, port: u16, entry: u32) -> Result<()> {
    let mut array = Array::<_, u32>::try_from(map).context("GUARD_PORTS has the wrong type")?;
    array
        .set(u32::from(port), entry, 0)
        .with_context(|| format!("writing port {port} into GUARD_PORTS"))
}

/// One port slot's counters (`GUARD_PORT_COUNTS`), summed over the CPUs.
pub fn read_port_counts(map: &Map, slot: u32) -> Result<PortCounts> {
    let array = PerCpuArray::<_, PortCounts>::try_from(map)
        .context("GUARD_PORT_COUNTS has the wrong type")?;
    let per_cpu = array
        .get(&slot, 0)
        .with_context(|| format!("reading slot {slot} of GUARD_PORT_COUNTS"))?;
    let mut total = PortCounts::ZERO;
    for c in per_cpu.iter() {
        total.accumulate(c);
    }
    Ok(total)
}

/// Fills the allow/deny tries (`GUARD_LISTS_V4`, `GUARD_LISTS_V6`).
pub fn write_lists(v4: &mut Map, v6: &mut Map, allow: &[IpNet], deny: &[IpNet]) -> Result<()> {
    let mut v4 =
        LpmTrie::<_, [u8; 4], u8>::try_from(v4).context("GUARD_LISTS_V4 has the wrong type")?;
    let mut v6 =
        LpmTrie::<_, [u8; 16], u8>::try_from(v6).context("GUARD_LISTS_V6 has the wrong type")?;
    let entries = allow
        .iter()
        .map(|n| (n, LIST_ALLOW))
        .chain(deny.iter().map(|n| (n, LIST_DENY)));
    for (net, action) in entries {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => v4.insert(&Key::new(len, n.network().octets()), action, 0),
            IpNet::V6(n) => v6.insert(&Key::new(len, n.network().octets()), action, 0),
        }
        .with_context(|| format!("adding {net} to the allow/deny lists"))?;
    }
    Ok(())
}

/// Every entry of a per-source or per-prefix map.
pub fn read_sources(map: &Map) -> Result<Vec<(SourceKey, SourceState)>> {
    let hash = HashMap::<_, SourceKey, SourceState>::try_from(map)
        .context("source map has the wrong type")?;
    hash.iter()
        .collect::<Result<Vec<_>, _>>()
        .context("reading a source map")
}
