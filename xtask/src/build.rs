//! `cargo xtask build`: the XDP program first, then the userspace crates.
//!
//! The eBPF object is built with nightly for `bpfel-unknown-none`
//! (`-Z build-std=core`, linked by bpf-linker) and always in release mode: an
//! unoptimised eBPF program does not pass the verifier. The `guard` build
//! script embeds that object, so it must exist before the userspace build.

use std::{env, path::PathBuf};

use anyhow::{Context as _, Result};

use crate::{cmd, setup};

pub const BPF_TARGET: &str = "bpfel-unknown-none";

#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Build the userspace crates with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// What a build produced.
pub struct Artifacts {
    pub guard: PathBuf,
}

pub fn run(opts: &Options) -> Result<Artifacts> {
    let linker_dir = setup::toolchain()?;
    let object = build_ebpf(&linker_dir)?;
    build_userspace(opts.release, &object, &["guard"])?;
    let profile = if opts.release { "release" } else { "debug" };
    Ok(Artifacts {
        guard: cmd::target_dir().join(profile).join("guard"),
    })
}

/// Builds guard-ebpf and returns the path of the object file.
pub fn build_ebpf(linker_dir: &std::path::Path) -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    let path =
        env::join_paths(std::iter::once(linker_dir.to_path_buf()).chain(env::split_paths(&path)))
            .context("PATH contains an entry with a ':'")?;
    cmd::run(
        cmd::cargo(Some("nightly"))
            .args(["build", "--package", "guard-ebpf", "--release"])
            .args(["--target", BPF_TARGET, "-Z", "build-std=core"])
            .env("PATH", path)
            // BTF in the object gives the verifier's log source lines.
            .env(
                "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
                "-C debuginfo=2 -C link-arg=--btf -C target-cpu=v3",
            ),
    )?;
    Ok(ebpf_object())
}

/// Where the eBPF build leaves its object.
pub fn ebpf_object() -> PathBuf {
    cmd::target_dir()
        .join(BPF_TARGET)
        .join("release")
        .join("guard-ebpf")
}

/// Builds the given userspace packages against the eBPF object.
pub fn build_userspace(release: bool, object: &std::path::Path, packages: &[&str]) -> Result<()> {
    let mut cargo = cmd::cargo(None);
    cargo.arg("build");
    for package in packages {
        cargo.args(["--package", package]);
    }
    if release {
        cargo.arg("--release");
    }
    cmd::run(cargo.env("GUARD_EBPF_OBJECT", object))
}
