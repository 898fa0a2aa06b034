//! Command-line interface: flags and their help text.

use clap::{Args, Parser, Subcommand};

use crate::loader::ModeChoice;

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
    /// Interface to protect; repeat the flag for several.
    #[arg(long = "iface", short = 'i', value_name = "IF", required = true)]
    pub ifaces: Vec<String>,

    /// How to attach: native (driver) XDP, generic skb XDP, or native with
    /// a fallback to skb.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ModeChoice::Auto)]
    pub xdp_mode: ModeChoice,

    /// Protect interfaces inside this network namespace (a name from
    /// `ip netns list`) instead of the host's.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Replace an XDP program that someone else attached to an interface.
    #[arg(long)]
    pub force: bool,

    /// Seconds between summary lines; 0 turns them off.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub summary_interval: u64,
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
    fn run_requires_an_interface() {
        let err = Cli::try_parse_from(["guard", "run"]).unwrap_err();
        assert!(err.to_string().contains("--iface <IF>"), "{err}");
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
