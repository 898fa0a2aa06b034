//! The guards running on this host: one per network namespace, each with
//! its runtime directory (`model::paths::runtime_dir`). The commands that
//! read a running guard's state pick one here.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

use super::{atomic, lock::PidLock, status_file};
use crate::model::{
    paths::{FLEET_FILE, HOST_LOCK, NETNS_DIR, RUN_FILE, RUNTIME_DIR, STATUS_FILE, runtime_dir},
    status::RunStatus,
};

/// A guard's runtime directory, and the guard that holds it, if alive.
#[derive(Debug)]
pub struct Instance {
    pub netns: Option<String>,
    pub dir: PathBuf,
    pub pid: Option<u32>,
}

impl Instance {
    /// The guard of `netns` (`None`: the host's), running or not.
    #[must_use]
    pub fn at(netns: Option<String>) -> Self {
        let dir = runtime_dir(netns.as_deref());
        let pid = holder(&dir);
        Self { netns, dir, pid }
    }

    /// "the host" or "netns NAME", for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        self.netns
            .as_deref()
            .map_or_else(|| "the host".to_owned(), |ns| format!("netns {ns}"))
    }
}

/// The guard running with runtime directory `dir`, if one is: the pid its
/// instance lock file names, while that process holds the lock
/// (`/proc/locks` says so). The pid in a stale file may be another
/// process's by now, and a guard killed but not reaped yet by its parent
/// (a zombie, as in a container without an init) holds nothing: its
/// locks, links and programs are gone already. Whatever the binary is
/// called: a guard installed as `guard-1.2` is one all the same.
#[must_use]
pub fn holder(dir: &Path) -> Option<u32> {
    let path = dir.join(HOST_LOCK);
    let pid = PidLock::holder(&path)?;
    let file = fs::metadata(&path).ok()?;
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let dev = (libc::major(file.dev()), libc::minor(file.dev()));
    holds_flock(&locks, pid, dev, file.ino()).then_some(pid)
}

/// Whether `locks` (the text of `/proc/locks`) has a flock(2) lock held
/// by `pid` on the file of device `dev` (major, minor) and inode `ino`.
/// A line reads `1: FLOCK  ADVISORY  WRITE 4242 fe:00:9805828 0 EOF`
/// (the device in hex); a waiter's has `->` after its number, and holds
/// nothing.
fn holds_flock(locks: &str, pid: u32, dev: (u32, u32), ino: u64) -> bool {
    let file = format!("{:02x}:{:02x}:{ino}", dev.0, dev.1);
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(
            fields[..],
            [_, "FLOCK", _, _, holder, on, ..] if holder.parse() == Ok(pid) && on == file
        )
    })
}

/// Whether process `pid` exists and is not a zombie.
#[must_use]
pub fn runs(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| alive(&s))
}

/// Whether a process whose `/proc/PID/stat` reads `stat` still runs: its
/// state, after the command's closing parenthesis, is not zombie or dead.
fn alive(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The host's instance and every namespace's that has a directory.
#[must_use]
pub fn all() -> Vec<Instance> {
    let mut names: Vec<String> = fs::read_dir(Path::new(RUNTIME_DIR).join(NETNS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    std::iter::once(Instance::at(None))
        .chain(names.into_iter().map(|n| Instance::at(Some(n))))
        .collect()
}

/// The runtime directory a command reads: the one of `netns` when given;
/// otherwise the only guard running (the host's when none runs). Several
/// running and none chosen is an error that names them.
pub fn choose(netns: Option<&str>) -> Result<PathBuf> {
    if netns.is_some() {
        return Ok(runtime_dir(netns));
    }
    let running: Vec<Instance> = all().into_iter().filter(|i| i.pid.is_some()).collect();
    match running.as_slice() {
        [] => Ok(runtime_dir(None)),
        [one] => Ok(one.dir.clone()),
        several => bail!(
            "{} guards are running ({}): choose one with --netns NAME",
            several.len(),
            several
                .iter()
                .map(Instance::describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The runtime directory of the running guard a command reads ([`choose`])
/// and what it runs; else an error that says why none runs (`start` says
/// how to start one): no run file, or one that a guard killed left, the
/// host's or, with no namespace chosen, a namespace's (it stays until
/// `guard restore` or the next `guard run`).
pub fn running(netns: Option<&str>, start: &str) -> Result<(PathBuf, RunStatus)> {
    let mut dir = choose(netns)?;
    let mut run = status_file::read_run(&dir);
    // None chosen and none running: a namespace's guard that was killed
    // is named below, rather than the host's missing run file.
    if netns.is_none()
        && run.is_none()
        && let Some((left, its)) = all()
            .into_iter()
            .find_map(|i| status_file::read_run(&i.dir).map(|r| (i.dir, r)))
    {
        (dir, run) = (left, Some(its));
    }
    let Some(run) = run else {
        bail!(
            "no guard is running: {} does not exist ({start})",
            dir.join(RUN_FILE).display()
        );
    };
    if holder(&dir).is_none() {
        bail!(
            "no guard is running: guard {} (pid {}), which wrote {}, is gone; what it changed stays until `guard restore` (or the next `guard run`) puts it back",
            run.version,
            run.pid,
            dir.join(RUN_FILE).display()
        );
    }
    Ok((dir, run))
}

/// A namespace guard's runtime directory while its guard holds the lock
/// in it: [`remove`]d when dropped, so when the guard stops or is refused
/// after taking the lock. Drop it before the lock is released.
pub struct NamespaceDir(PathBuf);

impl NamespaceDir {
    #[must_use]
    pub const fn new(dir: PathBuf) -> Self {
        Self(dir)
    }
}

impl Drop for NamespaceDir {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

/// Removes a namespace guard's runtime directory when it stops (or when
/// `guard restore` cleans up after it): what it published, then the lock
/// file, while still held (a guard starting now fails on it rather than
/// losing its directory), then the directory if nothing is left in it (a
/// state file whose values could not all be put back stays).
pub fn remove(dir: &Path) {
    remove_published(dir);
    let _ = fs::remove_file(dir.join(HOST_LOCK));
    let _ = fs::remove_dir(dir);
}

/// Removes what a guard publishes in `dir` for the commands (what it runs,
/// its status, its fleet view), and the temporary files of a write to one
/// of them that a kill cut short: a guard that is gone no longer says it
/// runs, nor leaves its directory behind. The host's directory, shared
/// with the lists and the locks, stays.
pub fn remove_published(dir: &Path) {
    for file in [RUN_FILE, STATUS_FILE, FLEET_FILE] {
        let path = dir.join(file);
        let _ = fs::remove_file(&path);
        atomic::remove_leftovers(&path);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::{alive, holder, holds_flock};
    use crate::host::lock::PidLock;

    /// A guard is the process that holds its directory's instance lock,
    /// whatever its name (this test's binary is not called `guard`); once
    /// the lock is gone, the pid its file still names is no guard.
    #[test]
    fn a_guard_is_the_process_holding_the_instance_lock() {
        let dir = std::env::temp_dir().join(format!("guard-holder-{}", std::process::id()));
        assert_eq!(holder(&dir), None, "no lock file");
        let lock = PidLock::instance(&dir).unwrap();
        assert_eq!(holder(&dir), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&dir), None, "a file naming a pid that holds nothing");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The lock is held by the pid on the file, both named in one line;
    /// a waiter, a POSIX lock, another pid or another file's is no
    /// holder.
    #[test]
    fn the_holder_of_a_flock_is_read_from_proc_locks() {
        let locks = "\
1: POSIX  ADVISORY  WRITE 700 fe:00:9805828 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 fe:00:9805828 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4343 fe:00:9805828 0 EOF
3: FLOCK  ADVISORY  WRITE 4444 00:1a:17 0 EOF
";
        let file = ((0xfe, 0), 9_805_828);
        let held = |pid, (dev, ino)| holds_flock(locks, pid, dev, ino);
        assert!(held(4242, file));
        assert!(!held(4343, file), "a waiter");
        assert!(!held(700, file), "a POSIX lock");
        assert!(held(4444, ((0, 0x1a), 17)), "the device in hex");
        assert!(!held(4444, ((0, 26), 18)));
        assert!(!held(4242, ((0xfe, 1), 9_805_828)), "another device");
        assert!(!holds_flock("", 4242, (0xfe, 0), 9_805_828));
    }

    #[test]
    fn a_zombie_or_dead_process_is_not_alive() {
        assert!(alive("6027 (guard) S 1 6027 6027 0 -1 4194560"));
        assert!(alive("6027 (guard) R 1"));
        assert!(!alive("6027 (guard) Z 1 6027 6027 0 -1 4227084"));
        assert!(!alive("6027 (guard) X 1"));
        // A command may hold a parenthesis: the state follows the last.
        assert!(!alive("6027 (gu) ard) Z 1"));
        assert!(!alive(""));
    }
}
