//! `cargo xtask lab [-- LAB ARGS]`: the attack lab. Builds guard and the
//! lab in release mode (the numbers are about the release build), then runs
//! `guard-lab` as root with guard's binary in `GUARD_BIN`.

use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::{Result, bail};

use crate::{build, cmd, setup};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Arguments for the lab: `--demo`, `--soak`, `--scenario syn-flood`,
    /// `--defence guard-enforce`, `--attack 15`, `--table 16384`, `--out
    /// DIR`; `cargo xtask lab -- --help` lists them all.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    if !cmd::is_root() {
        bail!("the lab builds network namespaces and writes global sysctls: run it as root");
    }
    // trafgen (netsniff-ng), nftables, conntrack, bpffs.
    setup::run(&setup::Options::default())?;
    let linker_dir = setup::toolchain()?;
    let object = build::build_ebpf(&linker_dir)?;
    build::build_userspace(true, &object, &["guard", "guard-lab"])?;
    let release = cmd::target_dir().join("release");
    let mut lab = Command::new(release.join("guard-lab"));
    if !opts
        .args
        .iter()
        .any(|a| a == "--out" || a.starts_with("--out="))
    {
        lab.arg("--out").arg(cmd::target_dir().join("lab"));
    }
    lab.args(&opts.args);
    lab.env("GUARD_BIN", release.join("guard"));
    eprintln!("+ {}", cmd::display(&lab));
    // exec, so that Ctrl-C reaches the lab, which stops the run and cleans
    // up before it exits.
    let err = lab.exec();
    bail!("failed to start guard-lab: {err}")
}
