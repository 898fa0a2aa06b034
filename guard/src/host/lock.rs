//! flock(2) locks: the instance lock that lets one guard run per network
//! namespace, the knobs lock that gives the host's global conntrack knobs
//! one writer at a time, and short exclusive ones that serialise the writers of a shared resource
//! across processes (the maps, the kept lists). The kernel releases a lock
//! when its process dies, so none can be left behind.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::{
    error::{PathError, path_err},
    model::paths::HOST_LOCK,
};

#[derive(Debug, Error)]
pub enum LockError {
    #[error("another guard is running (pid {pid}){hint}")]
    Locked { pid: String, hint: &'static str },
    #[error(transparent)]
    Io(#[from] PathError),
}

fn open(path: &Path) -> Result<File, LockError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(path_err("create", dir))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(path_err("open", path))?;
    Ok(file)
}

/// A lock taken without waiting that names its holder: the pid is written
/// in the file. Held until dropped.
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

impl PidLock {
    /// The instance lock in a guard's runtime directory: one guard per
    /// network namespace, since the namespace's conntrack timeouts, nft
    /// tables and pins are its alone.
    pub fn instance(runtime_dir: &Path) -> Result<Self, LockError> {
        Self::acquire(
            &runtime_dir.join(HOST_LOCK),
            "; one guard per network namespace: give it every interface there with repeated --iface",
        )
    }

    /// Takes the lock at `path`, or says who holds it (`hint` is added to
    /// the message).
    pub fn acquire(path: &Path, hint: &'static str) -> Result<Self, LockError> {
        let mut file = open(path)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Locked {
                pid: pid.trim().to_owned(),
                hint,
            });
        }
        file.set_len(0).map_err(path_err("truncate", path))?;
        file.rewind().map_err(path_err("rewind", path))?;
        writeln!(file, "{}", std::process::id()).map_err(path_err("write", path))?;
        Ok(Self { _file: file })
    }

    /// The pid written in the lock file at `path`, read rather than
    /// locked: taking the lock, even for a moment, could make a guard
    /// starting then fail.
    #[must_use]
    pub fn holder(path: &Path) -> Option<u32> {
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

/// An exclusive lock on `path`, waited for, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the lock as long as it takes.
    pub fn exclusive(path: &Path) -> Result<Self, LockError> {
        let file = open(path)?;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(path_err("lock", path)(err).into());
            }
        }
    }

    /// Waits for the lock at most `wait`: `None` if another process still
    /// holds it then (a stopped or hung one; a live writer holds it for
    /// milliseconds).
    pub fn exclusive_within(path: &Path, wait: Duration) -> Result<Option<Self>, LockError> {
        let file = open(path)?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(Self { _file: file }));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock && err.kind() != io::ErrorKind::Interrupted {
                return Err(path_err("lock", path)(err).into());
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("guard-lock-{name}-{}", std::process::id()))
    }

    #[test]
    fn second_lock_names_the_holder() {
        let dir = dir("host");
        let first = PidLock::instance(&dir).unwrap();
        // flock locks belong to the open file description, so a second
        // open in the same process conflicts like another process would.
        let err = PidLock::instance(&dir).unwrap_err();
        assert!(
            matches!(&err, LockError::Locked { pid, .. } if *pid == std::process::id().to_string()),
            "{err}"
        );
        assert!(
            err.to_string().contains("one guard per network namespace"),
            "{err}"
        );
        assert_eq!(
            PidLock::holder(&dir.join(HOST_LOCK)),
            Some(std::process::id())
        );
        drop(first);
        PidLock::instance(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_lock_waits_for_the_holder() {
        let dir = dir("file");
        let path = dir.join("x.lock");
        let held = FileLock::exclusive(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let _lock = FileLock::exclusive(&path).unwrap();
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the second lock was granted while the first was held"
        );
        assert!(
            FileLock::exclusive_within(&path, Duration::from_millis(50))
                .unwrap()
                .is_none(),
            "a bounded wait was granted the held lock"
        );
        drop(held);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
        assert!(
            FileLock::exclusive_within(&path, Duration::from_millis(50))
                .unwrap()
                .is_some()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
