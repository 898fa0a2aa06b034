//! Live list management: `guard allow|deny add|del|list` and `guard unban`
//! act on a running guard through its pinned maps and take effect with the
//! next packet. Allow and deny changes are also kept in the lists file,
//! which `guard run` loads at every start (and at SIGHUP), so a restart
//! keeps them. The file and every running guard's tries are changed under
//! the file's lock, so two commands racing from two shells both land.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};

use crate::{
    config::parse_cidr,
    dataplane::{handle::Dataplane, pins::Layout},
    error::usage,
    host::{clock::monotonic_ns, kept_lists, preflight},
    model::{
        lists::{Edit, List},
        paths::LISTS_FILE,
    },
};

fn pinned_dirs() -> Vec<PathBuf> {
    Layout::default()
        .list()
        .into_iter()
        .map(|(_, _, dir)| dir)
        .collect()
}

/// `guard allow|deny add|del CIDR`. The kept file is written first: it is
/// what a reload rebuilds the running lists from.
pub fn edit(list: List, edit: Edit, text: &str) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let net = parse_cidr(text).map_err(|e| usage(anyhow!("`{text}`: {e}")))?;
    let file = Path::new(LISTS_FILE);
    let _lock = kept_lists::lock(file)?;
    let mut kept = kept_lists::load(file).map_err(usage)?;
    kept.apply(list, edit, net);
    kept.check_capacity()
        .map_err(|e| usage(anyhow!("cannot add {net} to the {}list: {e}", list.name())))?;
    kept_lists::save(file, &kept)?;
    let dirs = pinned_dirs();
    for dir in &dirs {
        let there = Dataplane::open_pinned(dir)
            .and_then(|mut d| d.edit_lists(|lists| lists.apply(list, edit, net)))
            .with_context(|| format!("updating the lists pinned in {}", dir.display()))?;
        let what = match (edit, there) {
            (Edit::Add, _) => format!("added {net} to the {}list", list.name()),
            (Edit::Del, true) => format!("deleted {net} from the {}list", list.name()),
            (Edit::Del, false) => format!("{net} was not in the {}list", list.name()),
        };
        println!("{what} of {}: in effect now", dir.display());
    }
    if dirs.is_empty() {
        println!("no guard is running: kept in {LISTS_FILE} for the next start");
    } else {
        println!("kept in {LISTS_FILE}, which guard run loads at every start");
    }
    if edit == Edit::Del {
        println!(
            "(an entry that also stands in guard run's --config or flags comes back at the next start)"
        );
    }
    Ok(())
}

/// `guard allow|deny list`.
pub fn show(list: List) {
    let dirs = pinned_dirs();
    for dir in &dirs {
        println!("{} (running, {}):", list.name(), dir.display());
        match Dataplane::open_pinned(dir).and_then(|d| d.lists()) {
            Ok(running) => {
                for net in running.entries(list) {
                    println!("  {net}");
                }
            }
            Err(e) => println!("  cannot read them: {e:#}"),
        }
    }
    if dirs.is_empty() {
        println!("no guard is running");
    }
    let file = Path::new(LISTS_FILE);
    match kept_lists::load(file) {
        Ok(kept) => {
            let entries: Vec<String> = kept.entries(list).iter().map(ToString::to_string).collect();
            println!(
                "{} (kept in {}, loaded at start): {}",
                list.name(),
                file.display(),
                if entries.is_empty() {
                    "none".to_owned()
                } else {
                    entries.join(", ")
                }
            );
        }
        Err(e) => println!("{e:#}"),
    }
}

/// `guard unban ADDR`: lifts a ban at once, on every guarded interface.
pub fn unban(text: &str) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let addr: IpAddr = text
        .parse()
        .map_err(|_| usage(anyhow!("`{text}` is not an IPv4 or IPv6 address")))?;
    let dirs = pinned_dirs();
    if dirs.is_empty() {
        return Err(anyhow!("no guard is running: nothing to unban"));
    }
    let now = monotonic_ns();
    let (mut lifted, mut failed) = (false, Vec::new());
    for dir in &dirs {
        match Dataplane::open_pinned(dir).and_then(|mut d| d.unban(addr, now)) {
            Ok(Some((key, left))) => {
                println!("unbanned {key} on {} ({left}s were left)", dir.display());
                lifted = true;
            }
            Ok(None) => {}
            Err(e) => failed.push(format!("{}: {e:#}", dir.display())),
        }
    }
    if !failed.is_empty() {
        return Err(anyhow!("could not unban {addr} on {}", failed.join("; ")));
    }
    if !lifted {
        println!("{addr} is not banned");
    }
    Ok(())
}
