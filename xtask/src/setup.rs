//! `cargo xtask setup`: get a fresh machine ready to build, run and test guard.
//!
//! Every step first checks, then acts only if something is missing, and says
//! which of the two it did, so a second run changes nothing and is quick.

use std::{
    ffi::CString,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// bpf-linker release known to work with the nightly's LLVM (see
/// shared/notes/toolchain.md); newer ones may need a newer LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the kernel tests and the attack lab call:
/// `ip` (netns, veth), `nft` (conntrack rules), `conntrack` (table stats),
/// `bpftool` (inspection, BPF_PROG_TEST_RUN by hand), `trafgen` (floods),
/// `systemd-analyze` (the unit's checks), `strace` (the unit's system call
/// filter, checked against what guard calls), `iptables` (rules written the
/// iptables way, which guard reads).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("nftables", "nft"),
    ("conntrack", "conntrack"),
    ("bpftool", "bpftool"),
    ("netsniff-ng", "trafgen"),
    ("systemd", "systemd-analyze"),
    ("strace", "strace"),
    // The fleet tests' own server (JetStream, loopback only).
    ("nats-server", "nats-server"),
    // iptables-nft and iptables-legacy, for the rules of iptables guides
    // and older Docker hosts that guard must read (in the nftables ruleset;
    // with iptables-legacy-save).
    ("iptables", "iptables"),
];

const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, Default, clap::Args)]
pub struct Options {}

pub enum Outcome {
    Present(String),
    Done(String),
}

pub fn run(_opts: &Options) -> Result<()> {
    toolchain()?;
    step("debian packages", || ensure_packages(DEBIAN_PACKAGES))?;
    step("bpffs", ensure_bpffs)?;
    Ok(())
}

/// The steps the eBPF build needs (no root required). Returns the directory
/// holding bpf-linker, to put on PATH for the build.
pub fn toolchain() -> Result<PathBuf> {
    step("rust-src (nightly)", ensure_rust_src)?;
    let mut linker_dir = PathBuf::new();
    step("bpf-linker", || {
        let (outcome, dir) = ensure_bpf_linker()?;
        linker_dir = dir;
        Ok(outcome)
    })?;
    Ok(linker_dir)
}

pub fn step(name: &str, f: impl FnOnce() -> Result<Outcome>) -> Result<()> {
    match f().with_context(|| format!("setup step `{name}`"))? {
        Outcome::Present(what) => eprintln!("setup: {name:<20} ok      {what}"),
        Outcome::Done(what) => eprintln!("setup: {name:<20} DONE    {what}"),
    }
    Ok(())
}

fn ensure_rust_src() -> Result<Outcome> {
    let installed = cmd::probe(
        "rustup",
        ["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("the nightly toolchain is not installed (rustup toolchain install nightly)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(Outcome::Present("already installed".into()));
    }
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(Outcome::Done("installed with rustup".into()))
}

/// Where bpf-linker for the current nightly lives, and whether it had to be
/// built. Keyed by the libLLVM file name so a new nightly gets a new build.
fn ensure_bpf_linker() -> Result<(Outcome, PathBuf)> {
    let libllvm = nightly_libllvm()?;
    let file_name = libllvm
        .file_name()
        .and_then(|n| n.to_str())
        .context("libLLVM path has no file name")?
        .to_owned();
    let major = llvm_major(&file_name)
        .with_context(|| format!("cannot read the LLVM major version from {file_name}"))?;
    let prefix = cmd::cache_dir().join("bpf-linker").join(&file_name);
    let bin_dir = prefix.join("bin");
    let linker = bin_dir.join("bpf-linker");

    if let Some(version) = cmd::probe(linker.to_str().unwrap_or_default(), ["--version"]) {
        return Ok((
            Outcome::Present(format!("{} in {}", version.trim(), bin_dir.display())),
            bin_dir,
        ));
    }

    // bpf-linker links against libLLVM found through LLVM_PREFIX/lib, and
    // keeps that directory as its rpath: one link under the generic name
    // for the build, one under the soname for run time.
    let llvm_lib = prefix.join("llvm/lib");
    fs::create_dir_all(&llvm_lib).with_context(|| format!("creating {}", llvm_lib.display()))?;
    for name in ["libLLVM.so", file_name.as_str()] {
        let link = llvm_lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    cmd::run(
        cmd::cargo(None)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            .arg("--root")
            .arg(&prefix)
            .env("LLVM_PREFIX", prefix.join("llvm")),
    )?;
    let version = cmd::probe(linker.to_str().unwrap_or_default(), ["--version"])
        .with_context(|| format!("{} was built but does not run", linker.display()))?;
    Ok((
        Outcome::Done(format!(
            "built {} against {}",
            version.trim(),
            libllvm.display()
        )),
        bin_dir,
    ))
}

/// The libLLVM shared object that ships with the nightly toolchain.
fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot = cmd::probe("rustc", ["+nightly", "--print", "sysroot"])
        .context("`rustc +nightly --print sysroot` failed: is the nightly toolchain installed?")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let entries = fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))?;
    for entry in entries {
        let path = entry?.path();
        let is_llvm = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libLLVM.so."));
        if is_llvm {
            return Ok(path);
        }
    }
    bail!("no libLLVM.so.* in {}", lib.display())
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly` -> `22`.
fn llvm_major(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix("libLLVM.so.")?
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

/// Installs those of `packages` (each with the tool it is for) that are
/// missing, with apt-get.
pub fn ensure_packages(packages: &[(&str, &str)]) -> Result<Outcome> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(pkg, _)| {
            !cmd::probe("dpkg-query", ["-W", "-f", "${db:Status-Abbrev}", pkg])
                .is_some_and(|s| s.starts_with("ii"))
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    let names = || {
        packages
            .iter()
            .map(|(pkg, tool)| format!("{pkg} ({tool})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if missing.is_empty() {
        return Ok(Outcome::Present(names()));
    }
    if !cmd::is_root() {
        bail!(
            "missing {}: installing them needs root (run the command again with `sudo -E`)",
            missing.join(" ")
        );
    }
    if cmd::probe("apt-get", ["--version"]).is_none() {
        bail!(
            "missing {} and apt-get is not available: install them with your package manager",
            missing.join(" ")
        );
    }
    cmd::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(Outcome::Done(format!("installed {}", missing.join(" "))))
}

pub fn ensure_bpffs() -> Result<Outcome> {
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(Outcome::Present(format!("mounted at {BPFFS}")));
    }
    if !cmd::is_root() {
        bail!("{BPFFS} is not a bpf filesystem and mounting it needs root");
    }
    fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(Outcome::Done(format!("mounted at {BPFFS}")))
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &raw mut buf) == 0 && buf.f_type == BPF_FS_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn llvm_major_from_toolchain_file_names() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.19-rust-1.84.0-stable"), Some(19));
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), None);
    }
}
