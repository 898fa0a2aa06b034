//! Where a running guard pins its maps in bpffs, for other processes
//! (`guard stats`, the list commands, metrics).
//!
//! Layout, one directory per guarded interface:
//! `/sys/fs/bpf/guard/host/<iface>/<MAP>` for the initial namespace and
//! `/sys/fs/bpf/guard/netns/<name>/<iface>/<MAP>` for a named one.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::{
    error::{PathError, path_err},
    host::instances,
    model::paths::{BPFFS, PIN_ROOT, runtime_dir},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A pinned interface: its namespace (`None`: the host's), its name, and
/// the directory of its pins.
pub type Pinned = (Option<String>, String, PathBuf);

/// What the commands say of pins whose guard is gone ([`Layout::running`]).
#[must_use]
pub fn gone(dead: &[Pinned]) -> String {
    let dirs: Vec<String> = dead
        .iter()
        .map(|(_, _, d)| d.display().to_string())
        .collect();
    format!(
        "the pins at {} are a guard's that is gone (`guard restore` removes them and puts back what it changed)",
        dirs.join(", ")
    )
}

#[derive(Debug, Error)]
pub enum PinError {
    #[error(
        "{BPFFS} is not a mounted bpf filesystem: mount it with `mount -t bpf bpf {BPFFS}` (or run `cargo xtask setup`)"
    )]
    NoBpffs,
    #[error(transparent)]
    Io(#[from] PathError),
}

/// The pin directory root (normally `/sys/fs/bpf/guard`).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            root: Path::new(BPFFS).join(PIN_ROOT),
        }
    }
}

impl Layout {
    /// Checks that bpffs is mounted where the layout lives.
    pub fn check_bpffs() -> Result<(), PinError> {
        if is_bpffs(Path::new(BPFFS)) {
            Ok(())
        } else {
            Err(PinError::NoBpffs)
        }
    }

    /// Mounts bpffs where it belongs when it is missing, as bpftool does
    /// (a container's mount namespace may have a /sys without it);
    /// returns whether it mounted it.
    pub fn ensure_bpffs() -> Result<bool, PinError> {
        if Self::check_bpffs().is_ok() {
            return Ok(false);
        }
        let target = std::ffi::CString::new(BPFFS).map_err(|_| PinError::NoBpffs)?;
        // SAFETY: NUL-terminated strings we own; no data argument.
        let mounted = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if mounted != 0 {
            return Err(PinError::NoBpffs);
        }
        Self::check_bpffs().map(|()| true)
    }

    /// Why [`Layout::list`] finds nothing, for "no guard is running": a
    /// mount namespace of its own (a container's) may have a /sys whose
    /// /sys/fs/bpf holds none of the host's pins (and a guard started
    /// there mounts a bpffs only its own mount namespace sees).
    #[must_use]
    pub fn nothing_pinned(&self) -> String {
        let pinned = format!("nothing is pinned under {}", self.root.display());
        if Self::check_bpffs().is_ok() {
            return pinned;
        }
        format!(
            "{pinned}; {BPFFS} is not a bpf filesystem here (this mount namespace has a /sys of its own): run guard's commands from the host's shell, and `guard run --netns NAME` for a namespace's interface"
        )
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    #[must_use]
    pub fn iface_dir(&self, netns: Option<&str>, iface: &str) -> PathBuf {
        match netns {
            None => self.root.join("host").join(iface),
            Some(ns) => self.root.join("netns").join(ns).join(iface),
        }
    }

    /// Every pinned interface directory.
    #[must_use]
    pub fn list(&self) -> Vec<Pinned> {
        let mut found = Vec::new();
        for (iface, dir) in subdirs(&self.root.join("host")) {
            found.push((None, iface, dir));
        }
        for (ns, ns_dir) in subdirs(&self.root.join("netns")) {
            for (iface, dir) in subdirs(&ns_dir) {
                found.push((Some(ns.clone()), iface, dir));
            }
        }
        found.sort();
        found
    }

    /// [`Layout::list`] split: the interfaces of guards that run, and
    /// those of guards gone (a killed guard's pins stay, its maps frozen,
    /// until `guard restore` or the next `guard run` removes them: a
    /// command that read or wrote them would report what no guard does).
    #[must_use]
    pub fn running(&self) -> (Vec<Pinned>, Vec<Pinned>) {
        self.list()
            .into_iter()
            .partition(|(netns, _, _)| instances::holder(&runtime_dir(netns.as_deref())).is_some())
    }
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

/// Removes a pin directory and its pins, then any parents it leaves empty
/// up to the layout root. Missing is fine.
pub fn remove_dir(dir: &Path) -> Result<(), PinError> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(path_err("list", dir))?.path();
                fs::remove_file(&path).map_err(path_err("unpin", &path))?;
            }
            fs::remove_dir(dir).map_err(path_err("remove", dir))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(path_err("list", dir)(e).into()),
    }
    // Parents: host/, netns/<ns>/, netns/, guard/. Failing because they are
    // not empty (another interface) is expected.
    let mut parent = dir.parent();
    while let Some(p) = parent {
        if p == Path::new(BPFFS) || fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills a zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &raw mut buf) == 0 && buf.f_type == BPF_FS_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_separates_host_and_namespaces() {
        let layout = Layout::default();
        assert_eq!(
            layout.iface_dir(None, "eth0"),
            Path::new("/sys/fs/bpf/guard/host/eth0")
        );
        assert_eq!(
            layout.iface_dir(Some("edge"), "eth0"),
            Path::new("/sys/fs/bpf/guard/netns/edge/eth0")
        );
    }
}
