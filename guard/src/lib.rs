//! guard's userspace, in layers whose imports go one way, top to bottom:
//!
//! - [`cli`]: the command line, dispatch, exit codes;
//! - [`commands`]: the short-lived commands (`stats`, `allow`, `tune`, ...);
//! - [`daemon`]: `guard run`: the run loop, reload, controller, metrics;
//! - [`dataplane`]: the XDP program, its loading and pins, and the one
//!   handle that reads and writes its maps;
//! - [`host`]: conntrack, nftables, namespaces, interfaces, files, locks;
//! - [`model`]: pure logic and the data the layers exchange;
//! - [`config`]: the keys of `guard run`, resolved and validated;
//! - [`error`]: the one error kind the layers share.
//!
//! A module imports only from its own layer or the ones below it, never in
//! a cycle; `cargo xtask test` checks both (ARCHITECTURE.md). The binary
//! (`src/main.rs`) only sets up the logs, parses arguments and maps errors
//! to exit codes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod error;
pub mod host;
pub mod model;
