//! Whether this machine can run the kernel tests, and what happens if not.
//!
//! Kernel tests need root, a mounted bpffs, network namespaces and the
//! guard binary. Under CI (CI=true) a missing piece fails the test: CI must
//! never report green without having run them. Elsewhere the test is
//! skipped with a message saying what is missing.

use std::{
    process::Command,
    sync::{Mutex, MutexGuard},
};

/// Kernel tests share one host: one guard at a time (guard's own host
/// lock), global sysctls. This serialises them even when the test harness
/// runs tests on several threads.
static KERNEL: Mutex<()> = Mutex::new(());

/// Held for the duration of one kernel test.
pub struct KernelTest {
    _serial: MutexGuard<'static, ()>,
}

/// Returns a [`KernelTest`] if the kernel test named `test` can run.
/// Otherwise panics under CI, or prints why it is skipped and returns
/// `None`.
#[must_use]
pub fn kernel(test: &str) -> Option<KernelTest> {
    let missing = missing();
    if missing.is_empty() {
        // A test that panicked while holding the lock has cleaned up
        // through its Drop guards; the next one may run.
        let serial = KERNEL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        return Some(KernelTest { _serial: serial });
    }
    let why = missing.join("; ");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: kernel test cannot run under CI: {why}"
    );
    eprintln!("SKIPPED {test}: {why} (run `cargo xtask test` as root)");
    None
}

fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("not running as root".to_owned());
    }
    if let Err(e) = guard::dataplane::pins::Layout::check_bpffs() {
        missing.push(e.to_string());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("iproute2 (`ip`) is not installed".to_owned());
    }
    let bin = crate::guard_bin();
    if !bin.is_file() {
        missing.push(format!("{} is not built", bin.display()));
    }
    missing
}
