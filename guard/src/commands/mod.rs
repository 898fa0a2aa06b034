//! The short-lived commands: each reads or changes a running guard (through
//! the pinned maps' handle and the status file) or the host, prints, and
//! exits. They take plain values from the CLI.

pub mod bans;
pub mod check_config;
pub mod doctor;
pub mod fleet;
pub mod lists;
pub mod notrack;
pub mod restore;
pub mod sigs;
pub mod stats;
pub mod status;
pub mod tune;
pub mod watch;
