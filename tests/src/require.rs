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
#[must_use = "kernel tests are serialised only while this is held: bind it to `_kernel`"]
pub struct KernelTest {
    _serial: MutexGuard<'static, ()>,
}

/// The first line of every kernel test: `let _kernel = kernel_test!();`.
///
/// Evaluates to the [`KernelTest`] guard, held by the caller until the test
/// ends, if this machine can run kernel tests. If it cannot, it panics
/// under CI (CI=true), so CI never passes without having run them, and
/// otherwise prints why the test is skipped and `return`s from the
/// enclosing function, the test. See [`kernel`].
///
/// Why a macro: the messages name the test, and the macro finds the name
/// itself ([`test_name!`](crate::test_name)). Each test used to spell its
/// own name out in a string (63 of them) that nothing checked against the
/// function it sat in, so a renamed or copied test would report another's
/// name; and the skip was a `let ... else { return; }` repeated in every
/// test.
#[macro_export]
macro_rules! kernel_test {
    () => {
        match $crate::require::kernel($crate::test_name!()) {
            ::std::option::Option::Some(kernel) => kernel,
            ::std::option::Option::None => return,
        }
    };
}

/// The name of the enclosing function, as a `&'static str`: for a test,
/// the test's name as the harness prints it, without its module path.
///
/// There is no `function_name!()` in std: this declares an item `fn f()`
/// inside the enclosing function and takes its type's name, the item's
/// path (`crate::module::the_test::f`), then [`fn_name`] keeps the
/// segment before `::f`. The format of `type_name` is not guaranteed
/// across compilers; the name is only used in messages, and a unit test
/// below catches a change.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn f() {}
        $crate::require::fn_name(::std::any::type_name_of_val(&f))
    }};
}

/// The name of the function around a `fn f() {}` whose type name is
/// `path` (see [`test_name!`](crate::test_name)): the last segment before
/// `::f`, skipping closures (`{{closure}}`). A path it does not recognise
/// is returned whole.
#[must_use]
pub fn fn_name(path: &str) -> &str {
    let Some(outer) = path.strip_suffix("::f") else {
        return path;
    };
    outer
        .rsplit("::")
        .find(|segment| !segment.starts_with('{'))
        .unwrap_or(path)
}

/// Returns a [`KernelTest`] if the kernel test named `test` can run.
/// Otherwise panics under CI, or prints why it is skipped and returns
/// `None`. Tests call it through [`kernel_test!`], which names them.
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
    assert!(!in_ci(), "{test}: kernel test cannot run under CI: {why}");
    eprintln!("SKIPPED {test}: {why} (run `cargo xtask test` as root)");
    None
}

/// Whether this runs under CI (CI=true), where a kernel test's missing
/// piece is a failure.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
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

#[cfg(test)]
mod tests {
    use super::fn_name;

    #[test]
    fn the_name_is_the_enclosing_function() {
        assert_eq!(test_name!(), "the_name_is_the_enclosing_function");
    }

    #[test]
    fn a_closure_is_skipped() {
        let name = || test_name!();
        assert_eq!(name(), "a_closure_is_skipped");
    }

    #[test]
    fn names_from_paths() {
        for (path, name) in [
            ("foundation::counts_every_class::f", "counts_every_class"),
            ("guard_tests::require::tests::t::f", "t"),
            ("short::a_lab::{{closure}}::f", "a_lab"),
            ("top_level::f", "top_level"),
            // Not what the macro produces: left as it is.
            ("no_suffix", "no_suffix"),
            ("f", "f"),
        ] {
            assert_eq!(fn_name(path), name, "{path}");
        }
    }
}
