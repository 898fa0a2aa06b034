//! `cargo xtask test`: the whole suite, as CI runs it.
//!
//! Order: guard's import layering (a second, no build needed), setup,
//! build (eBPF then userspace), lints (fmt, clippy with warnings denied),
//! unit tests, then the kernel end-to-end tests, which run one at a time
//! because they share the host's kernel state.

use anyhow::{Result, bail};

use crate::{build, cmd, layers, setup};

/// Userspace packages; guard-ebpf builds only for the bpf target.
const HOST_PACKAGES: &[&str] = &["guard", "guard-common", "guard-tests", "guard-lab", "xtask"];

#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Run only tests whose names contain this string.
    filter: Option<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    layers::check(&cmd::workspace_root().join("guard/src"))?;
    setup::run(&setup::Options::default())?;
    let linker_dir = setup::toolchain()?;
    let object = build::build_ebpf(&linker_dir)?;
    build::build_userspace(false, &object, &["guard"])?;
    let packages: Vec<String> = HOST_PACKAGES
        .iter()
        .flat_map(|p| ["--package".to_owned(), (*p).to_owned()])
        .collect();

    if !opts.no_lint {
        cmd::run(cmd::cargo(None).args(["fmt", "--all", "--check"]))?;
        cmd::run(
            cmd::cargo(None)
                .arg("clippy")
                .args(&packages)
                .args(["--all-targets", "--", "-D", "warnings"])
                .env("GUARD_EBPF_OBJECT", &object),
        )?;
    }

    let filter: Vec<&str> = opts.filter.iter().map(String::as_str).collect();
    let mut tally = cmd::Tally::default();
    // Unit and property tests: no privileges needed, run in parallel.
    cmd::run_tests(
        cmd::cargo(None)
            .args([
                "test",
                "--package",
                "guard",
                "--package",
                "guard-common",
                "--package",
                "xtask",
            ])
            .arg("--")
            .args(&filter)
            .env("GUARD_EBPF_OBJECT", &object),
        &mut tally,
    )?;
    // The harness's own unit tests, the reference model's, then its kernel
    // tests, one at a time; then the same for the lab (guard-lab: its unit
    // tests, then the kernel tests that run on its topology: a short lab,
    // the SYN and UDP floods, a flood from two CPUs, one spoofing a
    // client). Cargo runs one test binary at a time, so no two kernel tests
    // ever overlap.
    for package in ["guard-tests", "guard-lab"] {
        cmd::run_tests(
            cmd::cargo(None)
                .args(["test", "--package", package])
                .args(["--", "--test-threads=1"])
                .args(&filter)
                .env("GUARD_EBPF_OBJECT", &object)
                .env("GUARD_BIN", cmd::target_dir().join("debug/guard")),
            &mut tally,
        )?;
    }
    // One closing line with the totals of every run above (a run that
    // failed stopped this before here).
    println!("xtask: {} passed, {} ignored", tally.passed, tally.ignored);
    if tally.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}
