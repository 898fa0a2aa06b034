//! Checks that the host can run guard, before anything is changed on it.

use thiserror::Error;

use super::files::HostFiles;

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "guard needs root, or the capabilities {missing} (have CapEff {have:#x}): run it with sudo"
    )]
    Privileges { missing: String, have: u64 },
    #[error("cannot read the process capabilities from /proc/self/status")]
    Status(#[source] std::io::Error),
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Loading and attaching XDP needs CAP_BPF and CAP_NET_ADMIN; the verifier
/// allows packet-pointer arithmetic only with CAP_PERFMON. CAP_SYS_ADMIN
/// implies the first and the last on older kernels.
pub fn check_privileges() -> Result<(), PreflightError> {
    let status = HostFiles::live()
        .own_status()
        .map_err(PreflightError::Status)?;
    let have = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing = missing_capabilities(have);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Privileges {
            missing: missing.join(", "),
            have,
        })
    }
}

fn missing_capabilities(eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| eff & (1 << cap) != 0;
    let sys_admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !(has(CAP_BPF) || sys_admin) {
        missing.push("CAP_BPF");
    }
    if !(has(CAP_PERFMON) || sys_admin) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use
/// the memory cgroup and ignore it. Raising it is harmless either way.
pub fn raise_memlock_rlimit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert!(missing_capabilities(u64::MAX).is_empty());
    }

    #[test]
    fn sys_admin_covers_bpf_and_perfmon_but_not_net_admin() {
        assert_eq!(missing_capabilities(1 << CAP_SYS_ADMIN), ["CAP_NET_ADMIN"]);
    }

    #[test]
    fn nothing_names_all_three() {
        assert_eq!(
            missing_capabilities(0),
            ["CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"]
        );
    }
}
