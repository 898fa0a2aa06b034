//! `cargo xtask bench`: guard's XDP program (and its egress program) per
//! packet beside a trivial baseline, through BPF_PROG_TEST_RUN (needs
//! root). Results print as Markdown tables; BENCHMARKS.md keeps the last
//! published ones.

use anyhow::Result;
use clap::ValueEnum as _;

use crate::{build, cmd, setup};

/// Debian packages the peers come from (`tests/bench/peers.rs`): xdp-filter's
/// objects, and what builds the kernel's xdp_synproxy selftest from its
/// source. Installed for the bench only: never a dependency of the tests.
const PEER_PACKAGES: &[(&str, &str)] = &[
    ("libxdp1", "xdp-filter's objects"),
    ("linux-source-6.12", "xdp_synproxy's source"),
    ("clang-14", "xdp_synproxy's build"),
    ("libbpf-dev", "xdp_synproxy's headers"),
    ("bpftool", "vmlinux.h, loading the peers"),
];

#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Runs of each frame per trial.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Measures guard alone: neither installs nor runs the peers
    /// (xdp-filter, the kernel's xdp_synproxy), whose packages the bench
    /// otherwise installs with apt-get when they are missing.
    #[arg(long, conflicts_with = "profile")]
    without_peers: bool,
    /// Instead of the table: where one case's time goes in the program,
    /// by source line (perf samples on the JIT image; installs Debian's
    /// `linux-perf` when `perf` is missing).
    #[arg(long, value_enum, value_name = "CASE")]
    profile: Option<Case>,
    /// How long `--profile` samples.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECONDS",
        requires = "profile",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    seconds: u32,
}

/// A case `--profile` runs: a row of the table.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Case {
    /// Established TCP: the fast path.
    Established,
    /// A known source's SYN under its limits.
    Syn,
    /// The same over IPv6.
    Syn6,
    /// A UDP packet of a known flow.
    Udp,
    /// SYNs from sources the table does not hold, admitted (each takes
    /// a slot another source held: 131,072 sources through 16,384 slots).
    New,
    /// UDP datagrams of flows a known source has not sent lately, admitted
    /// (each writes its flow's set).
    UdpNew,
    /// SYNs from new sources once the global budget binds (dropped).
    Spent,
    /// UDP datagrams from new sources once the global budget binds
    /// (dropped).
    UdpSpent,
    /// UDP datagrams from new sources to a closed port, the closed ports'
    /// bucket spent (dropped).
    UdpClosed,
    /// A SYN an attack signature drops.
    Signature,
    /// SYNs to a cookie port from new sources (answered with SYN-ACKs).
    Cookie,
}

pub fn run(opts: &Options) -> Result<()> {
    let linker_dir = setup::toolchain()?;
    if opts.profile.is_some() {
        setup::step("perf", || setup::ensure_packages(&[("linux-perf", "perf")]))?;
    } else if !opts.without_peers {
        // The peers are the bench's yardstick, not guard's: a machine that
        // cannot install them still gets guard's rows (the tables say what
        // is missing).
        if let Err(e) = setup::step("peers' packages", || setup::ensure_packages(PEER_PACKAGES)) {
            eprintln!("setup: peers' packages  FAILED  {e:#}; measuring without them");
        }
        // The peers' maps are pinned (xdp-filter's programs name them so),
        // which a fresh machine's unmounted /sys/fs/bpf would refuse.
        if let Err(e) = setup::step("bpffs", setup::ensure_bpffs) {
            eprintln!("setup: bpffs            FAILED  {e:#}; measuring without the peers");
        }
    }
    let object = build::build_ebpf(&linker_dir)?;
    let baseline = object.with_file_name("baseline");
    let mut bench = cmd::cargo(None);
    bench
        .args(["bench", "--package", "guard-tests", "--bench", "xdp"])
        .env("GUARD_EBPF_OBJECT", &object)
        .env("GUARD_BASELINE_OBJECT", &baseline)
        .env("GUARD_BENCH_REPEAT", opts.repeat.to_string());
    if opts.without_peers {
        bench.env("GUARD_BENCH_WITHOUT_PEERS", "1");
    }
    if let Some(case) = opts.profile {
        let name = case.to_possible_value().map(|v| v.get_name().to_owned());
        bench
            .env("GUARD_BENCH_PROFILE", name.unwrap_or_default())
            .env("GUARD_BENCH_SECONDS", opts.seconds.to_string());
    }
    cmd::run(&mut bench)
}
