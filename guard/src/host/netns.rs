//! Network namespaces: where an interface, its XDP attachment and the
//! per-namespace conntrack knobs live.
//!
//! guard itself stays in the initial namespace, where the global conntrack
//! knobs are writable; work that must happen inside a named namespace
//! (interface lookup, attach, netlink queries) runs on a short-lived thread
//! that joins it, so no other thread ever changes namespace.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    thread,
};

use thiserror::Error;

/// Where `ip netns add` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error(
        "network namespace `{name}` does not exist ({path} is missing; `ip netns list` shows the names)"
    )]
    NotFound { name: String, path: PathBuf },
    #[error("cannot open network namespace `{name}` at {path}")]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter network namespace `{name}`")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "network namespace `{name}` was deleted while guard guarded it (`ip netns del`, or its container stopped): guard stops rather than keep the namespace alive; start it again once the namespace is back"
    )]
    Deleted { name: String },
    #[error(
        "network namespace `{name}` was replaced by a new one of that name while guard guarded the old: guard stops rather than keep the old one alive; start it again to guard the new one"
    )]
    Replaced { name: String },
    #[error(
        "started in network namespace `{name}` (as by `ip netns exec {name}`) and cannot go back to the host's namespaces to guard it from there; run guard from the host's shell with `--netns {name}`"
    )]
    Leave {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The name `ip netns` gave the network namespace this process was started
/// in, if any, after taking the process back to the initial network
/// namespace and the mount namespace of the shell that ran `ip netns
/// exec`. A command run as `ip netns exec NAME guard ...` then acts
/// as `guard ... --netns NAME` from that shell: the global conntrack knobs
/// writable, the pins in the host's bpf filesystem, the records where the
/// host's commands look for them. An unnamed namespace (a container's)
/// stays guard's host. Must run before the process starts a thread: a
/// mount namespace is joined only by a process that shares its filesystem
/// attributes with none.
pub fn leave_named() -> Result<Option<String>, NetnsError> {
    // Unreadable without privileges: such a process guards nothing.
    let Ok(ours) = File::open("/proc/self/ns/net").and_then(|f| identity(&f)) else {
        return Ok(None);
    };
    // The initial namespace is the host's, whatever `ip netns` calls it.
    if ours.1 == INITIAL_NET_INODE {
        return Ok(None);
    }
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Ok(None);
    };
    let Some(name) = entries
        .flatten()
        .find(|e| {
            File::open(e.path())
                .and_then(|f| identity(&f))
                .is_ok_and(|id| id == ours)
        })
        .and_then(|e| e.file_name().into_string().ok())
    else {
        return Ok(None);
    };
    let leave = |source| NetnsError::Leave {
        name: name.clone(),
        source,
    };
    let (net, mnt) = starter_outside().map_err(leave)?;
    let cwd = std::env::current_dir().map_err(leave)?;
    // `ip netns exec` gives the command a mount namespace of its own (for
    // a /sys that shows the namespace's interfaces). Joining another sets
    // the root and working directory to its root, so the working directory
    // is taken back by name: the same path, the namespace began as a copy.
    // Where the join is not allowed (a systemd unit's sandbox, started in
    // the namespace by `NetworkNamespacePath=`), guard stays in its mount
    // namespace and mounts a bpffs there if it has none.
    let own_mnt = File::open("/proc/self/ns/mnt").and_then(|f| identity(&f));
    if own_mnt.map_err(leave)? != identity(&mnt).map_err(leave)?
        && enter(&mnt, libc::CLONE_NEWNS).is_ok()
    {
        std::env::set_current_dir(&cwd).map_err(leave)?;
    }
    enter(&net, libc::CLONE_NEWNET).map_err(leave)?;
    Ok(Some(name))
}

/// The network and mount namespaces of the nearest ancestor of this
/// process in the initial network namespace, else of kthreadd (PID 2,
/// always in the initial namespaces): the ancestor is gone when the
/// command was started in the background of a shell that exited.
fn starter_outside() -> io::Result<(File, File)> {
    // An ancestor may exit while this walks: the walk ends there.
    let mut candidates = Vec::new();
    let mut pid = parent("self");
    while let Ok(p) = pid
        && p > 0
    {
        candidates.push(p);
        pid = parent(&p.to_string());
    }
    candidates.push(2);
    for pid in candidates {
        let ns = |kind| File::open(format!("/proc/{pid}/ns/{kind}"));
        if let Ok(net) = ns("net")
            && identity(&net).is_ok_and(|id| id.1 == INITIAL_NET_INODE)
            && let Ok(mnt) = ns("mnt")
        {
            return Ok((net, mnt));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no process in the initial network namespace whose namespaces can be read",
    ))
}

/// The inode of the initial network namespace, fixed since Linux 3.8
/// (`PROC_NET_INIT_INO`).
const INITIAL_NET_INODE: u64 = 0xEFFF_FFF9;

/// The parent of process `pid` ("self" for this one); 0 above the first.
fn parent(pid: &str) -> io::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no PPid in its status"))
}

/// A namespace file's identity: the device and inode of its nsfs node.
fn identity(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    file.metadata().map(|m| (m.dev(), m.ino()))
}

/// Moves the calling thread (before any other exists, the whole process)
/// into the namespace `file` of type `kind`.
fn enter(file: &File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: setns on an open namespace file descriptor.
    if unsafe { libc::setns(file.as_raw_fd(), kind) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The namespace guard acts in: the initial one, or a named one.
#[derive(Debug)]
pub enum Scope {
    Host,
    Named { name: String, file: File },
}

impl Scope {
    /// Opens `/run/netns/NAME`, or the host scope for `None`.
    pub fn open(name: Option<&str>) -> Result<Self, NetnsError> {
        let Some(name) = name else {
            return Ok(Self::Host);
        };
        let path = Path::new(NETNS_RUN_DIR).join(name);
        match File::open(&path) {
            Ok(file) => Ok(Self::Named {
                name: name.to_owned(),
                file,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetnsError::NotFound {
                name: name.to_owned(),
                path,
            }),
            Err(source) => Err(NetnsError::Open {
                name: name.to_owned(),
                path,
                source,
            }),
        }
    }

    /// Whether `/run/netns/NAME` still names the namespace this scope
    /// holds open. Deleting the name does not end a namespace that guard
    /// holds (its interfaces, veth peers and addresses with it), so a
    /// guard whose namespace was deleted or replaced must let go of it.
    /// The host scope, and a name that cannot be checked, pass.
    pub fn still_named(&self) -> Result<(), NetnsError> {
        let Self::Named { name, file } = self else {
            return Ok(());
        };
        let now = File::open(Path::new(NETNS_RUN_DIR).join(name)).and_then(|f| identity(&f));
        match (now, identity(file)) {
            (Ok(now), Ok(held)) if now != held => Err(NetnsError::Replaced { name: name.clone() }),
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => {
                Err(NetnsError::Deleted { name: name.clone() })
            }
            _ => Ok(()),
        }
    }

    /// The namespace name, or `None` for the initial namespace.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Host => None,
            Self::Named { name, .. } => Some(name),
        }
    }

    /// Describes the scope for messages: "" or " in netns NAME".
    #[must_use]
    pub fn suffix(&self) -> String {
        self.name()
            .map_or_else(String::new, |n| format!(" in netns {n}"))
    }

    /// Runs `f` inside the namespace. For the host scope it runs on the
    /// calling thread.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, NetnsError> {
        let Self::Named { name, file } = self else {
            return Ok(f());
        };
        thread::scope(|s| {
            s.spawn(|| {
                // This thread only, which ends when the scope does.
                enter(file, libc::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                    name: name.clone(),
                    source,
                })?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}
