//! `cargo xtask bench`: guard's XDP program per packet beside a trivial
//! baseline, through BPF_PROG_TEST_RUN (needs root). Results print as a
//! Markdown table; BENCHMARKS.md keeps the last published one.

use anyhow::Result;

use crate::{build, cmd, setup};

#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Runs of each frame per trial.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
}

pub fn run(opts: &Options) -> Result<()> {
    let linker_dir = setup::toolchain()?;
    let object = build::build_ebpf(&linker_dir)?;
    let baseline = object.with_file_name("baseline");
    cmd::run(
        cmd::cargo(None)
            .args(["bench", "--package", "guard-tests", "--bench", "xdp"])
            .env("GUARD_EBPF_OBJECT", &object)
            .env("GUARD_BASELINE_OBJECT", &baseline)
            .env("GUARD_BENCH_REPEAT", opts.repeat.to_string()),
    )
}
