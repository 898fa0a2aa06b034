//! `guard fleet status`: the fleet as the running guard sees it, from the
//! view it writes every second.

use anyhow::{Result, bail};

use crate::host::{clock::unix_now_ms, instances, status_file};

/// `guard fleet status [--json] [--netns NAME]`; an error (exit 1) if no
/// guard runs, or it is in no fleet.
pub fn status(json: bool, netns: Option<&str>) -> Result<()> {
    let (dir, run) =
        instances::running(netns, "start one with `guard run --fleet nats://HOST:PORT`")?;
    let Some(view) = status_file::read_fleet(&dir) else {
        bail!(
            "the guard running (pid {}) is in no fleet: it was started without --fleet",
            run.pid
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", view.render(unix_now_ms()));
    }
    Ok(())
}
