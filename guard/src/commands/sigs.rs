//! `guard sigs list|add|pin|rm`: the attack signatures the XDP program drops
//! on before any per-source state, on every guarded interface.

use std::fmt::Write as _;

use anyhow::{Result, anyhow};
use guard_common::fingerprint::{MAX_SIGS, SIG_OPERATOR, SigMeta, SigTable};
use serde::Serialize;

use crate::{
    dataplane::{
        handle::Dataplane,
        pins::{self, Layout, Pinned},
    },
    error::usage,
    host::{clock::unix_now_ms, preflight},
    model::fingerprint::{describe, parse},
};

/// One signature on one interface.
#[derive(Debug, Serialize)]
pub struct Row {
    pub iface: String,
    pub netns: Option<String>,
    pub id: u32,
    /// `learned` or `operator`.
    pub origin: &'static str,
    /// Whether it expires (a learned one that was not pinned).
    pub pinned: bool,
    /// `drop` or `monitor` (counts its matches only).
    pub action: &'static str,
    /// Whether its matches are dropped now: a `drop` signature while guard
    /// enforces (in monitor mode guard drops nothing).
    pub drops: bool,
    /// Packets it matched since it was installed.
    pub hits: u64,
    pub age_secs: u64,
    pub signature: String,
}

impl Row {
    /// What it does to a match now, in words.
    #[must_use]
    pub fn effect(&self) -> &'static str {
        if self.drops {
            "dropping"
        } else if self.action == "drop" {
            "counting: guard is in monitor mode"
        } else {
            "counting"
        }
    }
}

/// The interfaces running guards guard.
fn attached() -> Result<Vec<Pinned>> {
    let layout = Layout::default();
    let (live, dead) = layout.running();
    if live.is_empty() {
        if dead.is_empty() {
            return Err(anyhow!("no guard is running: {}", layout.nothing_pinned()));
        }
        return Err(anyhow!("no guard is running: {}", pins::gone(&dead)));
    }
    Ok(live)
}

/// Every installed signature, by interface then slot.
pub fn rows() -> Result<Vec<Row>> {
    let now = unix_now_ms();
    let mut rows = Vec::new();
    for (netns, iface, dir) in attached()? {
        let d = Dataplane::open_pinned(&dir)?;
        let (table, counters) = (d.sigs()?, d.counters()?);
        let enforcing = d.config()?.enforcing();
        for slot in table.slots() {
            let meta = &table.meta[slot];
            rows.push(Row {
                iface: iface.clone(),
                netns: netns.clone(),
                id: meta.id,
                origin: table.origin_name(slot),
                pinned: meta.pinned != 0,
                action: table.action_name(slot),
                drops: enforcing && table.monitor & (1 << slot) == 0,
                hits: table.hits(slot, &counters),
                age_secs: now.saturating_sub(meta.since_ms) / 1000,
                signature: describe(&table.sigs[slot]),
            });
        }
    }
    Ok(rows)
}

/// `guard sigs list [--json]`.
pub fn list(json: bool) -> Result<()> {
    let rows = rows()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}

fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no signatures installed\n".to_owned();
    }
    let mut out = String::new();
    for r in rows {
        let at = r
            .netns
            .as_ref()
            .map_or_else(|| r.iface.clone(), |ns| format!("{ns}/{}", r.iface));
        let _ = writeln!(
            out,
            "sig {} on {at}: {} ({} {}, {}, {} hits, {}s): {}",
            r.id,
            r.action,
            r.origin,
            if r.pinned { "pinned" } else { "expires" },
            r.effect(),
            r.hits,
            r.age_secs,
            r.signature
        );
    }
    out
}

/// `guard sigs add SIGNATURE [--monitor]`: on every interface, under the
/// same number; an operator's signature never expires.
pub fn add(text: &str, monitor: bool) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let sig = parse(text).map_err(|e| usage(anyhow!("signature `{text}`: {e}")))?;
    let found = attached()?;
    let mut handles = Vec::new();
    for (_, _, dir) in &found {
        handles.push(Dataplane::open_pinned(dir)?);
    }
    let id = handles
        .iter()
        .map(|d| d.sigs().map(|t| t.next_id()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    for ((_, iface, _), d) in found.iter().zip(handles.iter_mut()) {
        let base = d.counters()?;
        let installed = d.edit_sigs(|t| {
            let slot = t.free_slot()?;
            let meta = SigMeta {
                id,
                origin: SIG_OPERATOR,
                pinned: 1,
                since_ms: unix_now_ms(),
                hits_base: base.sig_hits(slot),
                ..SigMeta::default()
            };
            t.install(sig, meta, monitor)
        })?;
        if installed.is_none() {
            return Err(anyhow!(
                "{iface}: the signature table is full ({MAX_SIGS}) or already holds `{}`",
                describe(&sig)
            ));
        }
    }
    let enforcing = handles
        .iter()
        .map(|d| d.config().map(|c| c.enforcing()))
        .collect::<Result<Vec<_>>>()?;
    let (verb, why) = if monitor {
        ("counting", "")
    } else if enforcing.iter().all(|e| *e) {
        ("dropping", "")
    } else {
        (
            "counting",
            " (guard is in monitor mode: it drops once guard runs with --mode enforce)",
        )
    };
    println!("sig {id}: {verb} {}{why}", describe(&sig));
    Ok(())
}

/// `guard sigs pin ID`: a learned signature stays until it is taken out,
/// on every interface.
pub fn pin(id: u32) -> Result<()> {
    everywhere(id, SigTable::pin)?;
    println!("sig {id}: pinned (it stays until `guard sigs rm {id}`)");
    Ok(())
}

/// `guard sigs rm ID`: on every interface.
pub fn rm(id: u32) -> Result<()> {
    everywhere(id, SigTable::remove)?;
    println!("sig {id}: removed");
    Ok(())
}

/// Applies `edit` to signature `id` on every interface; an error if no
/// interface held it.
fn everywhere(id: u32, edit: fn(&mut SigTable, u32) -> Option<usize>) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let mut found = false;
    for (_, _, dir) in attached()? {
        let mut d = Dataplane::open_pinned(&dir)?;
        found |= d.edit_sigs(|t| edit(t, id))?.is_some();
    }
    if found {
        Ok(())
    } else {
        Err(anyhow!("no signature {id} is installed"))
    }
}
