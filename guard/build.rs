//! Locates the XDP object that `cargo xtask build` produced, so the `guard`
//! binary can embed it. The eBPF crate needs nightly and the bpf target, so
//! it is not built from here; a missing object is one clear line.

use std::{env, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=GUARD_EBPF_OBJECT");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
    let object = env::var_os("GUARD_EBPF_OBJECT").map_or_else(
        || {
            let target = env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("bpfel-unknown-none/release/guard-ebpf")
        },
        PathBuf::from,
    );
    println!("cargo::rerun-if-changed={}", object.display());
    if !object.is_file() {
        println!(
            "cargo::error=the XDP object {} is missing: build with `cargo xtask build`",
            object.display()
        );
        return;
    }
    println!("cargo::rustc-env=GUARD_EBPF_OBJECT={}", object.display());
}
