//! `cargo xtask`: everything that is more than one cargo command.
//!
//! guard is two builds in one workspace: the XDP program (nightly, `build-std`,
//! the `bpfel-unknown-none` target and bpf-linker) and the userspace crates
//! (stable). xtask knows how to get the toolchain pieces onto a fresh machine,
//! how to build both halves in the right order, and how to run the tests that
//! need root and a real kernel.

mod bench;
mod build;
mod cmd;
mod install;
mod lab;
mod layers;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what guard needs: rust-src, bpf-linker, Debian packages, bpffs.
    ///
    /// Idempotent: a second run only checks, prints what it found and
    /// finishes in seconds.
    Setup(setup::Options),
    /// Build the XDP program (nightly) and then the userspace crates (stable).
    Build(build::Options),
    /// Set up if needed, build, and run `guard` as root with the given arguments.
    ///
    /// Example: `cargo xtask run -- run --iface eth0 --xdp-mode auto`
    Run(run::Options),
    /// Measure the XDP program per packet beside a trivial baseline (root).
    Bench(bench::Options),
    /// Run the attack lab: every attack against every defence, report in
    /// target/lab (root; about an hour, half a minute a run; `-- --demo`
    /// for the two-minute live demo).
    Lab(lab::Options),
    /// Install the release binary, man pages, completions, the systemd unit
    /// and an example config.
    Install(install::Options),
    /// Run the whole test suite: lints, unit tests and kernel end-to-end tests.
    ///
    /// Kernel tests need root, BPF and network namespaces. With CI=true a
    /// kernel test that cannot get them fails; otherwise it is skipped with a
    /// message.
    Test(test::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(opts) => setup::run(&opts),
        Command::Build(opts) => build::run(&opts).map(|_| ()),
        Command::Run(opts) => run::run(&opts),
        Command::Test(opts) => test::run(&opts),
        Command::Bench(opts) => bench::run(&opts),
        Command::Install(opts) => install::run(&opts),
        Command::Lab(opts) => lab::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
