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
                // SAFETY: setns on a valid namespace fd; it changes only this
                // thread, which ends when the scope does.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Enter {
                        name: name.clone(),
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}
