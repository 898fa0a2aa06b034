//! guard's userspace: the loader, the run loop, statistics and the CLI.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit
//! codes; everything else lives here so the end-to-end tests can reuse it.

pub mod cli;
pub mod config;
pub mod conntrack;
pub mod controller;
pub mod doctor;
pub mod events;
pub mod exit;
pub mod generate;
pub mod iface;
pub mod listeners;
pub mod lists;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod netns;
pub mod nft;
pub mod notrack;
pub mod pins;
pub mod policy;
pub mod ports;
pub mod preflight;
pub mod restore;
pub mod run;
pub mod stats;
pub mod status;
pub mod synproxy;
pub mod tune;
pub mod watch;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Runs one parsed command line and returns its exit code: 0, except for
/// `guard doctor`, whose code is the worst finding's (Nagios style).
pub fn dispatch(cli: &Cli) -> Result<u8> {
    let done = match &cli.command {
        Command::Run(args) => run::run(args),
        Command::Stats(args) => stats::command(args),
        Command::Restore(args) => restore::command(args),
        Command::Tune(args) => tune::command(args),
        Command::Notrack(args) => notrack::command(args),
        Command::Allow(args) => lists::command(lists::List::Allow, args),
        Command::Deny(args) => lists::command(lists::List::Deny, args),
        Command::Unban(args) => lists::unban(args),
        Command::Generate(args) => generate::command(args),
        // Nagios reads any failure to check as critical.
        Command::Doctor(args) => return doctor::command(args).map_err(exit::usage),
    };
    done.map(|()| exit::Exit::Success.code())
}
