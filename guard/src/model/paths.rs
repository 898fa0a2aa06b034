//! Where guard keeps things on a host: one list, so that the daemon, the
//! commands and doctor's messages agree.

/// The bpf filesystem, where the maps are pinned.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Guard's state that must not outlive a reboot (a tmpfs): the host
/// guard's lock, restore record and status, the map-write lock, the
/// conntrack knobs' lock; a guard of a named namespace keeps its own in
/// [`runtime_dir`].
pub const RUNTIME_DIR: &str = "/run/guard";
/// In [`RUNTIME_DIR`]: one directory per namespace a guard protects.
pub const NETNS_DIR: &str = "netns";
/// Allow and deny entries kept by `guard allow|deny add|del` between runs;
/// changed under `.lists.toml.lock` beside it.
pub const LISTS_FILE: &str = "/var/lib/guard/lists.toml";
/// Entries added with `--no-save`: the same format, in [`RUNTIME_DIR`], so
/// they last through a restart of guard but not a reboot.
pub const RUNTIME_LISTS_FILE: &str = "/run/guard/lists.toml";
/// In a guard's [`runtime_dir`]: the controller's status; the original
/// values of everything guard changed, until they are restored; the
/// instance lock (one guard per network namespace, holding its pid); the
/// fleet's view. In [`RUNTIME_DIR`] only: the lock every read-modify-write
/// of the maps holds, and the lock of the host-wide conntrack knobs.
pub const STATUS_FILE: &str = "status.json";
/// In a guard's [`runtime_dir`]: what the running guard is (`guard status`).
pub const RUN_FILE: &str = "guard.json";
pub const STATE_FILE: &str = "state.json";
pub const HOST_LOCK: &str = "guard.lock";
pub const MAPS_LOCK: &str = "maps.lock";
pub const KNOBS_LOCK: &str = "knobs.lock";
pub const FLEET_FILE: &str = "fleet.json";
/// Pins: `<BPFFS>/<PIN_ROOT>/host/<iface>/` and
/// `<BPFFS>/<PIN_ROOT>/netns/<name>/<iface>/`.
pub const PIN_ROOT: &str = "guard";
/// `guard tune --persist`.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-guard-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/guard-conntrack.conf";
/// Loads nf_conntrack at boot before systemd-sysctl, so the conntrack
/// sysctls `--persist` writes exist when they are applied.
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/guard-conntrack.conf";

/// Where the guard of `netns` (`None`: the host's namespace) keeps its
/// runtime state: guards of different namespaces run side by side.
#[must_use]
pub fn runtime_dir(netns: Option<&str>) -> std::path::PathBuf {
    let root = std::path::Path::new(RUNTIME_DIR);
    netns.map_or_else(|| root.to_path_buf(), |ns| root.join(NETNS_DIR).join(ns))
}
