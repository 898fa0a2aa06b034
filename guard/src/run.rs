//! `guard run`: attach, report, and clean up on SIGINT/SIGTERM.

use std::{path::Path, time::Duration};

use anyhow::Result;
use guard_common::{CounterBlock, maps::COUNTERS};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval_at},
};

use crate::{
    cli::RunArgs,
    config::{self, Settings},
    events,
    exit::usage,
    loader::{self, Attached, Request},
    netns::Scope,
    pins::{HostLock, Layout, RUNTIME_DIR},
    preflight, stats,
};

pub fn run(args: &RunArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => Some((config::read_file(path).map_err(usage)?, path.as_path())),
        None => None,
    };
    let settings = Settings::resolve(
        &args.settings,
        file.as_ref().map(|(raw, path)| (raw, *path)),
    )
    .map_err(usage)?;
    preflight::check_privileges().map_err(usage)?;
    Layout::check_bpffs().map_err(usage)?;
    preflight::raise_memlock_rlimit();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(&settings))
}

async fn serve(settings: &Settings) -> Result<()> {
    // Before anything is attached, so a signal during start-up still ends
    // in the clean-up below rather than the default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let _lock = HostLock::acquire(Path::new(RUNTIME_DIR)).map_err(usage)?;
    let scope = Scope::open(settings.netns.as_deref()).map_err(usage)?;
    let layout = Layout::default();
    tracing::info!("{}", settings.describe());

    let mut attached: Vec<Attached> = Vec::new();
    for iface in &settings.ifaces {
        let mut a = loader::attach(&Request {
            scope: &scope,
            iface,
            settings,
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
        tokio::spawn(events::forward(a.iface.name.clone(), a.take_events()?));
        attached.push(a);
    }

    let period = settings.summary_interval;
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
