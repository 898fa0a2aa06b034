//! Live list management: `guard allow|deny add|del|list` and `guard unban`
//! act on a running guard through its pinned maps and take effect with the
//! next packet. Allow and deny changes are also kept, in the saved lists
//! file or (`--no-save`) the runtime one, which `guard run` loads at every
//! start and SIGHUP; an entry given `--for` is taken out by the running
//! guard when its time is up. The files and every running guard's tries
//! are changed under the files' lock, so two commands racing from two
//! shells both land.

use std::{
    fs,
    io::Read as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow};
use guard_common::maps::DEFAULT_LIST_CAPACITY;
use ipnet::IpNet;

use crate::{
    config::parse_cidr,
    dataplane::{handle::Dataplane, pins::Layout},
    error::usage,
    host::{
        clock::{monotonic_ns, unix_now_secs},
        kept_lists, preflight,
    },
    model::{
        duration,
        lists::{Edit, List, Note, Store, parse_entries},
        paths::{LISTS_FILE, RUNTIME_LISTS_FILE},
    },
};

/// The pin directories of the running guards (a dead one's lists are
/// not in effect anywhere).
fn pinned_dirs() -> Vec<PathBuf> {
    Layout::default()
        .running()
        .0
        .into_iter()
        .map(|(_, _, dir)| dir)
        .collect()
}

/// What `guard allow|deny add|del` was given.
#[derive(Debug)]
pub struct ListEdit<'a> {
    pub list: List,
    pub edit: Edit,
    pub cidrs: &'a [String],
    /// One entry per line; `-` is standard input.
    pub file: Option<&'a Path>,
    /// `--for`: how long the entries hold.
    pub duration: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Kept in the saved file (else the runtime one).
    pub save: bool,
}

/// `guard allow|deny add|del CIDR... [--file F]`. The kept file is written
/// first: it is what a reload rebuilds the running lists from.
pub fn edit(req: &ListEdit<'_>) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let nets = entries(req)?;
    let expires = req
        .duration
        .map(|text| {
            duration::parse(text)
                .map(|d| unix_now_secs() + d.as_secs().max(1))
                .map_err(|e| usage(anyhow!("--for `{text}`: {e}")))
        })
        .transpose()?;
    let note = Note {
        expires,
        reason: req.reason.map(str::to_owned),
    };
    let (list, edit) = (req.list, req.edit);
    let _lock = kept_lists::lock()?;
    let before = kept_lists::load_store().map_err(usage)?;
    let mut store = before.clone();
    store.apply(list, edit, &nets, &note, req.save);
    let mut running = pinned_dirs()
        .into_iter()
        .map(|dir| {
            let d = Dataplane::open_pinned(&dir)
                .with_context(|| format!("opening the lists pinned in {}", dir.display()))?;
            Ok((dir, d))
        })
        .collect::<Result<Vec<_>>>()?;
    if edit == Edit::Add {
        check_room(&store, &running, list, &nets)?;
    }
    kept_lists::save_store(&before, &store)?;
    let what = describe(list, &nets);
    for (dir, d) in &mut running {
        let changed = d
            .edit_lists(|lists| lists.apply(list, edit, &nets))
            .with_context(|| format!("updating the lists pinned in {}", dir.display()))?;
        let done = match (edit, nets.len(), changed) {
            (Edit::Add, 1, _) => format!("added {what} to the {}list", list.name()),
            (Edit::Add, _, n) => format!("added {what} ({n} new) to the {}list", list.name()),
            (Edit::Del, 1, 0) => format!("{what} was not in the {}list", list.name()),
            (Edit::Del, 1, _) => format!("deleted {what} from the {}list", list.name()),
            (Edit::Del, _, n) => format!("deleted {n} of {what} from the {}list", list.name()),
        };
        println!("{done} of {}: in effect now", dir.display());
    }
    let kept_in = match (edit, req.save) {
        (Edit::Del, _) => "taken out of the kept lists".to_owned(),
        (Edit::Add, true) => format!("kept in {LISTS_FILE}, which guard run loads at every start"),
        (Edit::Add, false) => {
            format!("kept in {RUNTIME_LISTS_FILE} only (--no-save): gone at reboot")
        }
    };
    if running.is_empty() {
        println!("no guard is running: {kept_in}");
    } else {
        println!("{kept_in}");
    }
    if let (Edit::Add, Some(at)) = (edit, expires) {
        println!(
            "guard takes {} out at {} ({} from now)",
            if nets.len() == 1 { "it" } else { "them" },
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
            duration::short(at.saturating_sub(unix_now_secs()))
        );
    }
    if edit == Edit::Del {
        println!(
            "(an entry that also stands in guard run's --config or flags stays: the config wins)"
        );
    }
    Ok(())
}

/// The entries given on the command line and in `--file`.
fn entries(req: &ListEdit<'_>) -> Result<Vec<IpNet>> {
    let mut nets = req
        .cidrs
        .iter()
        .map(|text| parse_cidr(text).map_err(|e| usage(anyhow!("`{text}`: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = req.file {
        let (text, name) = if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the entries from standard input")?;
            (text, "stdin".to_owned())
        } else {
            let text = fs::read_to_string(path)
                .map_err(|e| usage(anyhow!("--file {}: {e}", path.display())))?;
            (text, path.display().to_string())
        };
        nets.extend(parse_entries(&text, &name).map_err(|e| usage(anyhow!("--file {e}")))?);
    }
    if nets.is_empty() {
        return Err(usage(anyhow!(
            "no entries: give CIDRs, or --file with one per line"
        )));
    }
    Ok(nets)
}

/// Refuses, before anything is written, an add that the kept files or a
/// running guard's tries cannot hold. (A delete only makes room: it is
/// never refused for a file that is already too long.)
fn check_room(
    store: &Store,
    running: &[(PathBuf, Dataplane)],
    list: List,
    nets: &[IpNet],
) -> Result<()> {
    let full = |e: String| {
        usage(anyhow!(
            "cannot add {} to the {}list: {e}",
            describe(list, nets),
            list.name()
        ))
    };
    let mut capacity = DEFAULT_LIST_CAPACITY;
    for (dir, d) in running {
        let there = d.list_capacity()?;
        capacity = capacity.min(there);
        let mut lists = d
            .lists()
            .with_context(|| format!("reading the lists pinned in {}", dir.display()))?;
        lists.apply(list, Edit::Add, nets);
        lists.check_capacity(there).map_err(full)?;
    }
    store.all().lists.check_capacity(capacity).map_err(full)
}

fn describe(list: List, nets: &[IpNet]) -> String {
    match nets {
        [one] => one.to_string(),
        _ => format!("{} {} entries", nets.len(), list.name()),
    }
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
    let now = unix_now_secs();
    match kept_lists::load_store() {
        Ok(store) => {
            for (kept, file) in [
                (&store.saved, LISTS_FILE),
                (&store.runtime, RUNTIME_LISTS_FILE),
            ] {
                let entries: Vec<String> = kept
                    .lists
                    .entries(list)
                    .iter()
                    .map(|net| match kept.notes.get(net) {
                        Some(note) => format!("{net} ({})", describe_note(note, now)),
                        None => net.to_string(),
                    })
                    .collect();
                println!(
                    "{} (kept in {file}): {}",
                    list.name(),
                    if entries.is_empty() {
                        "none".to_owned()
                    } else {
                        entries.join(", ")
                    }
                );
            }
        }
        Err(e) => println!("{e:#}"),
    }
}

/// `12m left: ssh brute force`.
#[must_use]
pub fn describe_note(note: &Note, now: u64) -> String {
    let left = note
        .left(now)
        .map(|s| format!("{} left", duration::short(s)));
    [left, note.reason.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ")
}

/// `guard unban ADDR`: lifts a ban at once, on every guarded interface.
pub fn unban(text: &str) -> Result<()> {
    preflight::check_privileges().map_err(usage)?;
    let addr: IpAddr = text
        .parse()
        .map_err(|_| usage(anyhow!("`{text}` is not an IPv4 or IPv6 address")))?;
    let dirs = pinned_dirs();
    if dirs.is_empty() {
        return Err(anyhow!(
            "no guard is running: nothing to unban ({})",
            Layout::default().nothing_pinned()
        ));
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
