//! `guard run`: attach, report, and clean up on SIGINT/SIGTERM.

use std::{collections::HashSet, path::Path, time::Duration};

use anyhow::{Result, anyhow};
use guard_common::{CounterBlock, maps::COUNTERS};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval_at},
};

use crate::{
    cli::RunArgs,
    exit::usage,
    loader::{self, Attached, Request},
    netns::Scope,
    pins::{HostLock, Layout, RUNTIME_DIR},
    preflight, stats,
};

pub fn run(args: &RunArgs) -> Result<()> {
    validate(args)?;
    preflight::check_privileges().map_err(usage)?;
    Layout::check_bpffs().map_err(usage)?;
    preflight::raise_memlock_rlimit();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

fn validate(args: &RunArgs) -> Result<()> {
    let mut seen = HashSet::new();
    for iface in &args.ifaces {
        if !seen.insert(iface) {
            return Err(usage(anyhow!(
                "--iface {iface} is given twice: list each interface once"
            )));
        }
    }
    Ok(())
}

async fn serve(args: &RunArgs) -> Result<()> {
    // Before anything is attached, so a signal during start-up still ends
    // in the clean-up below rather than the default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let _lock = HostLock::acquire(Path::new(RUNTIME_DIR)).map_err(usage)?;
    let scope = Scope::open(args.netns.as_deref()).map_err(usage)?;
    let layout = Layout::default();

    let mut attached: Vec<Attached> = Vec::new();
    for iface in &args.ifaces {
        let a = loader::attach(&Request {
            scope: &scope,
            iface,
            mode: args.xdp_mode,
            force: args.force,
            layout: &layout,
        })?;
        tracing::info!(
            "attached to {}{} in {} mode (program id {}); maps pinned at {}",
            a.iface.name,
            scope.suffix(),
            a.mode,
            a.prog_id,
            a.pin_dir.display()
        );
        attached.push(a);
    }

    let period = Duration::from_secs(args.summary_interval);
    let mut ticker = interval_at(
        Instant::now() + period,
        period.max(Duration::from_millis(1)),
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = vec![CounterBlock::ZERO; attached.len()];
    let mut last_at = Instant::now();
    let signal_name = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = ticker.tick(), if !period.is_zero() => {
                let elapsed = last_at.elapsed();
                last_at = Instant::now();
                for (a, prev) in attached.iter().zip(last.iter_mut()) {
                    let now = stats::sum_counters(a.map(COUNTERS)?)?;
                    tracing::info!("{}", stats::summary_line(&a.iface.name, &now, prev, elapsed));
                    *prev = now;
                }
            }
        }
    };
    tracing::info!("{signal_name}: detaching");
    drop(attached);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        exit::{Exit, exit_of},
    };

    #[test]
    fn an_interface_listed_twice_is_a_usage_error() {
        let cli = Cli::parse_from(["guard", "run", "-i", "eth0", "-i", "eth1", "-i", "eth0"]);
        let Command::Run(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        let err = validate(&args).unwrap_err();
        assert_eq!(exit_of(&err), Exit::Usage);
        assert_eq!(
            format!("{err:#}"),
            "--iface eth0 is given twice: list each interface once"
        );
    }
}
