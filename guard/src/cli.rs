//! Command-line interface: flags and their help text.

use clap::{Args, Parser, Subcommand};

use crate::config::RawConfig;

/// guard: an XDP SYN- and flood-guard that keeps the conntrack table from
/// filling.
///
/// `guard run` attaches an XDP program to the given interfaces and counts
/// every packet by class before netfilter sees it; `guard stats` reads the
/// counters of a running guard from a second process.
#[derive(Debug, Parser)]
#[command(name = "guard", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only complicate clap's derive"
)]
pub enum Command {
    /// Attach to interfaces and run until SIGINT or SIGTERM.
    ///
    /// Loads the XDP program, attaches it to each --iface, pins its maps
    /// under /sys/fs/bpf/guard, prints a summary line every few seconds, and
    /// on SIGINT/SIGTERM detaches and removes the pins. Exits 2, with nothing
    /// left attached or pinned, when it cannot start.
    Run(RunArgs),
    /// Show the counters of a running guard, read from its pinned maps.
    ///
    /// Exits 1 if no guard is running.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read settings from this TOML file. Its keys are the long flag names
    /// (`syn-rate = 50`, `iface = ["eth0"]`); a flag given on the command
    /// line overrides the file's value for that key.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub settings: RawConfig,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only the interface with this name.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub iface: Option<String>,

    /// Only interfaces in this network namespace.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// Show this many sources and prefixes with the most drops.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_mode_names_the_flag_and_choices() {
        let err =
            Cli::try_parse_from(["guard", "run", "-i", "eth0", "--xdp-mode", "fast"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--xdp-mode") && msg.contains("auto, native, skb"),
            "{msg}"
        );
    }
}
