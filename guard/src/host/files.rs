//! The reader of the host's facts in /proc, /sys and /dev/kmsg, under a
//! root: `/` for the live host (the controller, `guard tune`, preflight),
//! another directory for `guard doctor --root` and its tests' fake trees.
//! Paths and parsing live here once; what the values mean is the model's.
//! (A process's or a namespace's own files, `/proc/PID/...`, are read
//! where they are used: `host::instances`, `host::netns`, and the like.)

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use procfs::FromRead as _;

use crate::model::{
    conntrack::{CpuStats, parse_stats},
    tcp::SYNCOOKIES,
};

/// Where the slab allocator says how large one conntrack entry really is.
const OBJECT_SIZE: &str = "sys/kernel/slab/nf_conntrack/object_size";
const MEMINFO: &str = "proc/meminfo";
const NETFILTER_SYSCTLS: &str = "proc/sys/net/netfilter";
const CONNTRACK_STATS: &str = "stat/nf_conntrack";
const KMSG: &str = "dev/kmsg";
const BTF: &str = "sys/kernel/btf/vmlinux";

/// The host's files under a root.
#[derive(Clone, Debug)]
pub struct HostFiles {
    root: PathBuf,
}

impl HostFiles {
    /// This host.
    #[must_use]
    pub fn live() -> Self {
        Self::under(Path::new("/"))
    }

    /// The tree under `root`.
    #[must_use]
    pub fn under(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root is this host's `/`.
    pub fn is_live(&self) -> io::Result<bool> {
        Ok(fs::canonicalize(&self.root)? == Path::new("/"))
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// A file of `/proc/net`, as the calling thread's network namespace
    /// has it on the live host (`proc/self/net` is the main thread's, not
    /// that of a thread that entered another namespace), or the tree's.
    fn net_path(&self, relative: &str) -> PathBuf {
        let dir = if self.root == Path::new("/") {
            "proc/thread-self/net"
        } else {
            "proc/net"
        };
        self.root.join(dir).join(relative)
    }

    /// MemTotal, in bytes (procfs parses `proc/meminfo`).
    pub fn ram_bytes(&self) -> Result<u64, String> {
        let path = self.path(MEMINFO);
        procfs::Meminfo::from_file(&path)
            .map(|m| m.mem_total)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// One conntrack entry's size from the slab allocator, if it says.
    #[must_use]
    pub fn conntrack_entry_bytes(&self) -> Option<u64> {
        self.number(OBJECT_SIZE)
    }

    /// Every readable `nf_conntrack_*` sysctl, by its name after the
    /// prefix, trimmed (none when conntrack is not loaded). Those of the
    /// calling thread's network namespace, on the live host.
    #[must_use]
    pub fn conntrack_sysctls(&self) -> BTreeMap<String, String> {
        let Ok(entries) = fs::read_dir(self.path(NETFILTER_SYSCTLS)) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_prefix("nf_conntrack_")?
                    .to_owned();
                let value = fs::read_to_string(e.path()).ok()?;
                Some((name, value.trim().to_owned()))
            })
            .collect()
    }

    /// The kernel's per-CPU conntrack statistics, summed (the calling
    /// thread's network namespace's, on the live host).
    pub fn conntrack_stats(&self) -> Result<CpuStats, String> {
        let path = self.net_path(CONNTRACK_STATS);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        parse_stats(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The whole kernel log. `/dev/kmsg` returns one record per read and
    /// EAGAIN at the end when opened non-blocking, EPIPE when a record was
    /// overwritten meanwhile; a regular file (a fake tree's) just ends.
    pub fn kernel_log(&self) -> Result<String, String> {
        let path = self.path(KMSG);
        let fail = |e: io::Error| format!("{}: {e}", path.display());
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(fail)?;
        // A kmsg read fails with EINVAL when the record does not fit;
        // records are at most 8 KiB.
        let mut buf = vec![0; 16 * 1024];
        let mut log = Vec::new();
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => log.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(String::from_utf8_lossy(&log).into_owned())
    }

    /// Whether the kernel has BTF.
    #[must_use]
    pub fn has_btf(&self) -> bool {
        self.path(BTF).exists()
    }

    /// `net.ipv4.tcp_syncookies` (the calling thread's network
    /// namespace's, on the live host), if readable.
    #[must_use]
    pub fn tcp_syncookies(&self) -> Option<u64> {
        self.number(&format!("proc/sys/{}", SYNCOOKIES.replace('.', "/")))
    }

    /// A file that holds one number.
    fn number(&self, relative: &str) -> Option<u64> {
        fs::read_to_string(self.path(relative))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// This process's `/proc/self/status`.
    pub fn own_status(&self) -> io::Result<String> {
        fs::read_to_string(self.path("proc/self/status"))
    }
}
