//! `guard check-config`: resolves and validates what `guard run` would
//! start with (the flags, the `--config` file, the kept lists) and changes
//! nothing: the systemd unit runs it before a start and before a reload,
//! so a bad file fails `systemctl start` or `reload` instead of a running
//! guard.

use anyhow::Result;

use crate::{
    daemon::reload::{Sources, load_settings},
    error::usage,
};

/// `guard check-config [--config FILE] [FLAGS]`: prints what guard would do
/// and exits 0, or names the bad key and exits 2.
pub fn command(sources: Sources<'_>) -> Result<()> {
    let (settings, _) = load_settings(sources).map_err(usage)?;
    match sources.config {
        Some(path) => println!("{}: OK", path.display()),
        None => println!("flags: OK"),
    }
    println!("{}", settings.describe());
    Ok(())
}
