//! Running nftables scripts in a network namespace: the NOTRACK and
//! SYNPROXY tables guard installs are each replaced and removed as a whole.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::netns::Scope;

/// The `inet` tables of the scope's namespace.
pub fn inet_tables(scope: &Scope) -> Result<Vec<String>> {
    Ok(listed(scope, &["list", "tables", "inet"])?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .map(str::to_owned)
        .collect())
}

/// The scope's whole ruleset as `nft -j list ruleset` prints it, and as
/// `nft -a list ruleset` does (the text translates iptables-nft's `xt`
/// matches, which the JSON leaves opaque; `-a`: each rule's handle).
pub fn ruleset(scope: &Scope) -> Result<(String, String)> {
    Ok((
        listed(scope, &["-j", "list", "ruleset"])?,
        listed(scope, &["-a", "list", "ruleset"])?,
    ))
}

/// What `nft ARGS` prints in the scope's namespace.
fn listed(scope: &Scope, args: &[&str]) -> Result<String> {
    scope
        .run(|| {
            let out = Command::new("nft")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .context("running nft (install nftables)")?;
            if !out.status.success() {
                bail!(
                    "nft {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .map_err(|e| anyhow!(e))?
}

/// Runs `nft -f -` with `input` in the scope's namespace.
pub fn nft(scope: &Scope, input: &str) -> Result<()> {
    scope
        .run(|| {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running nft (install nftables)")?;
            child
                .stdin
                .take()
                .context("nft stdin")?
                .write_all(input.as_bytes())
                .context("writing to nft")?;
            let out = child.wait_with_output().context("waiting for nft")?;
            if !out.status.success() {
                bail!(
                    "nft refused the rules: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        })
        .map_err(|e| anyhow!(e))?
}
