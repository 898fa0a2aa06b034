//! iptables-legacy's tables in a network namespace, as its save tools print
//! them (`model::xtables` reads them). Only the tables the kernel holds in
//! that namespace (its `ip_tables_names`, `ip6_tables_names`) are asked
//! for, so on a host that does not use iptables-legacy nothing runs and
//! no module is loaded.

use std::{io, process::Command};

use anyhow::{Result, anyhow, bail};

use super::netns::Scope;
use crate::model::xtables::Save;

/// Each family's names file (per namespace: the calling thread's, which
/// `Scope::run` moved there) and save tool.
const FAMILIES: [(&str, &str, &str); 2] = [
    (
        "ip",
        "/proc/thread-self/net/ip_tables_names",
        "iptables-legacy-save",
    ),
    (
        "ip6",
        "/proc/thread-self/net/ip6_tables_names",
        "ip6tables-legacy-save",
    ),
];

/// The scope's iptables-legacy `tables` (nat, mangle, ...) that exist, one
/// [`Save`] per family that has any.
pub fn legacy(scope: &Scope, tables: &[&str]) -> Result<Vec<Save>> {
    scope
        .run(|| {
            let mut saves = Vec::new();
            for (family, names, tool) in FAMILIES {
                let names = match std::fs::read_to_string(names) {
                    Ok(n) => n,
                    // The family's xtables are not loaded at all.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => bail!("reading {names}: {e}"),
                };
                let mut text = String::new();
                for table in names.lines().filter(|n| tables.contains(n)) {
                    text.push_str(&save(tool, table)?);
                }
                if !text.is_empty() {
                    saves.push(Save { family, text });
                }
            }
            Ok(saves)
        })
        .map_err(|e| anyhow!(e))?
}

/// What `TOOL -t TABLE` prints.
fn save(tool: &str, table: &str) -> Result<String> {
    let out = match Command::new(tool).args(["-t", table]).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "iptables-legacy's {table} table is in use here but {tool} is not installed (the iptables package)"
        ),
        Err(e) => bail!("running {tool}: {e}"),
    };
    if !out.status.success() {
        bail!(
            "{tool} -t {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
