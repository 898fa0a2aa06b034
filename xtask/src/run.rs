//! `cargo xtask run -- <guard args>`: the design card's build-and-load.

use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::{Result, bail};

use crate::{build, cmd, setup};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build the userspace crates with the release profile.
    #[arg(long)]
    release: bool,
    /// Arguments for `guard`, after `--` (for example `-- run --iface eth0`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    if cmd::is_root() {
        setup::run(&setup::Options::default())?;
    } else {
        // Packages and bpffs need root; guard checks for bpffs itself and
        // says how to fix it.
        setup::toolchain()?;
    }
    let artifacts = build::run(&build::Options {
        release: opts.release,
    })?;
    let mut guard = if cmd::is_root() {
        Command::new(&artifacts.guard)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&artifacts.guard);
        sudo
    };
    guard.args(&opts.args);
    eprintln!("+ {}", cmd::display(&guard));
    // exec, so that Ctrl-C and SIGTERM reach guard directly.
    let err = guard.exec();
    bail!("failed to start {}: {err}", artifacts.guard.display())
}
