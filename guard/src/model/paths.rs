//! Where guard keeps things on a host: one list, so that the daemon, the
//! commands and doctor's messages agree.

/// The bpf filesystem, where the maps are pinned.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Guard's state that must not outlive a reboot (a tmpfs): the host lock,
/// the restore record, the status, the map-write lock.
pub const RUNTIME_DIR: &str = "/run/guard";
/// Allow and deny entries kept by `guard allow|deny add|del` between runs.
pub const LISTS_FILE: &str = "/var/lib/guard/lists.toml";
/// The controller's status, in [`RUNTIME_DIR`].
pub const STATUS_FILE: &str = "status.json";
/// `guard tune --persist`.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-guard-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/guard-conntrack.conf";
