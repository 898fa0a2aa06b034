//! Where guard keeps things on a host: one list, so that the daemon, the
//! commands and doctor's messages agree.

/// The bpf filesystem, where the maps are pinned.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Guard's state that must not outlive a reboot (a tmpfs): the host lock,
/// the restore record, the status, the map-write lock.
pub const RUNTIME_DIR: &str = "/run/guard";
/// Allow and deny entries kept by `guard allow|deny add|del` between runs;
/// changed under `.lists.toml.lock` beside it.
pub const LISTS_FILE: &str = "/var/lib/guard/lists.toml";
/// Entries added with `--no-save`: the same format, in [`RUNTIME_DIR`], so
/// they last through a restart of guard but not a reboot.
pub const RUNTIME_LISTS_FILE: &str = "/run/guard/lists.toml";
/// In [`RUNTIME_DIR`]: the controller's status; the original values of
/// everything guard changed, until they are restored; the host lock (one
/// guard per host, holding its pid); the lock every read-modify-write of
/// the maps holds.
pub const STATUS_FILE: &str = "status.json";
/// In [`RUNTIME_DIR`]: what the running guard is (`guard status`).
pub const RUN_FILE: &str = "guard.json";
pub const STATE_FILE: &str = "state.json";
pub const HOST_LOCK: &str = "guard.lock";
pub const MAPS_LOCK: &str = "maps.lock";
/// Pins: `<BPFFS>/<PIN_ROOT>/host/<iface>/` and
/// `<BPFFS>/<PIN_ROOT>/netns/<name>/<iface>/`.
pub const PIN_ROOT: &str = "guard";
/// `guard tune --persist`.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-guard-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/guard-conntrack.conf";
/// Loads nf_conntrack at boot before systemd-sysctl, so the conntrack
/// sysctls `--persist` writes exist when they are applied.
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/guard-conntrack.conf";
