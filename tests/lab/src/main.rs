//! `guard-lab`: the attack lab. Run it through `cargo xtask lab`, which
//! builds guard first and passes its binary in `GUARD_BIN`. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::Ordering,
    time::Duration,
};

use clap::{Parser, Subcommand};
use guard_lab::{
    defence::Defence,
    report,
    runner::{self, Options, STOP},
    scenario::Scenario,
    traffic,
};

/// Every attack against every defence, measured once a second, written up
/// in OUT/report.md with SVG plots and JSON.
#[derive(Debug, Parser)]
#[command(name = "guard-lab")]
struct Args {
    #[command(subcommand)]
    helper: Option<Helper>,
    /// Only this scenario (repeatable): syn-flood, syn-flood-random,
    /// syn-flood-v6, syn-flood-wide, syn-flood-v6-wide (both from two
    /// CPUs), conn-flood, udp-flood, udp-flood-random, query-flood,
    /// flash-crowd, mixed.
    /// The -random floods randomise the traits the fixed ones share, so
    /// that no signature tells them from the users.
    #[arg(long, value_name = "NAME", value_parser = Scenario::parse)]
    scenario: Vec<Scenario>,
    /// Only this defence (repeatable): defaults, static, nftables,
    /// guard-monitor, guard-enforce, guard-cookies, guard-defaults,
    /// guard-small-map, guard-no-fingerprints, oracle (the floor of the
    /// spoofed floods, not a defence).
    #[arg(long, value_name = "NAME", value_parser = Defence::parse)]
    defence: Vec<Defence>,
    /// Seconds of legitimate traffic before the attack.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    lead: u64,
    /// Seconds of attack.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    attack: u64,
    /// Seconds after the attack.
    #[arg(long, value_name = "SECS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(0..=300))]
    tail: u64,
    /// nf_conntrack_max every run starts from (restored afterwards).
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1024..=4_194_304))]
    table: u64,
    /// Legitimate connections a second.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    legit_rate: u32,
    /// Where the report goes.
    #[arg(long, value_name = "DIR", default_value = "target/lab")]
    out: PathBuf,
    /// One scenario, live: the SYN flood fills the table with no defence,
    /// then guard is switched on and the fill falls (under two minutes).
    #[arg(long, conflicts_with_all = ["scenario", "defence"])]
    demo: bool,
    /// Ten minutes of the wide SYN flood from two CPUs against guard as a
    /// new user starts it: guard's memory, its maps' and its CPU plotted
    /// (soak-*.svg), the first and last minute compared.
    #[arg(long, conflicts_with_all = ["scenario", "defence", "demo"])]
    soak: bool,
}

/// The lab's own helper processes, started by the lab itself.
#[derive(Debug, Subcommand)]
enum Helper {
    /// The victim's TCP and UDP echo servers.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        netns: String,
    },
    /// A connection flood that holds what it opens.
    #[command(hide = true)]
    Hold {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, required = true)]
        source: Vec<Ipv4Addr>,
        #[arg(long)]
        max_open: u64,
        #[arg(long)]
        max_attempts: u64,
    },
}

/// Runs a helper until it is killed.
fn helper(h: Helper) -> ExitCode {
    let netns = match &h {
        Helper::Serve { netns } | Helper::Hold { netns, .. } => netns.clone(),
    };
    if let Err(e) = traffic::enter_helper(&netns) {
        eprintln!("guard-lab: entering netns {netns}: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guard-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match h {
            Helper::Serve { .. } => traffic::serve().await,
            Helper::Hold {
                target,
                source,
                max_open,
                max_attempts,
                ..
            } => {
                traffic::hold(target, source, max_open, max_attempts).await;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What was asked for, or everything.
fn pick<T: Copy>(given: Vec<T>, all: &[T]) -> Vec<T> {
    if given.is_empty() {
        all.to_vec()
    } else {
        given
    }
}

extern "C" fn on_sigint(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(h) = args.helper.take() {
        return helper(h);
    }
    let Ok(helper) = std::env::current_exe() else {
        eprintln!("guard-lab: cannot find its own binary for the helpers");
        return ExitCode::FAILURE;
    };
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let mut opts = Options {
        scenarios: pick(args.scenario, &Scenario::ALL),
        defences: pick(args.defence, &Defence::ALL),
        lead: Duration::from_secs(args.lead),
        attack: Duration::from_secs(args.attack),
        tail: Duration::from_secs(args.tail),
        table: args.table,
        legit_rate: args.legit_rate,
        out: args.out,
        helper,
    };
    let result = if args.soak {
        opts.lead = Duration::from_secs(5);
        opts.attack = Duration::from_secs(600);
        opts.tail = Duration::from_secs(10);
        runner::soak(&opts)
    } else if args.demo {
        // 20 s to fill and stay full, then guard for the rest of the
        // attack; the tail shows the table emptying.
        opts.lead = Duration::from_secs(3);
        opts.attack = Duration::from_secs(80);
        opts.tail = Duration::from_secs(10);
        runner::demo(&opts, Duration::from_secs(20))
    } else {
        runner::run(&opts)
    };
    match result {
        Ok(r) => {
            for section in &r.sections {
                println!("{}", report::markdown(section));
            }
            println!("report: {}", opts.out.join("report.md").display());
            if STOP.load(Ordering::Relaxed) {
                eprintln!("guard-lab: interrupted; the report holds what ran");
                return ExitCode::from(130);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guard-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The help of `--scenario` and `--defence` names every one the parser
    /// takes.
    #[test]
    fn help_names_every_scenario_and_defence() {
        let cmd = Args::command();
        let help = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        // Whole names: `syn-flood` is also the start of `syn-flood-wide`.
        let names = |help: &str| -> Vec<String> {
            help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map(str::to_owned)
                .collect()
        };
        let (scenarios, defences) = (help("scenario"), help("defence"));
        for (name, help) in Scenario::ALL
            .iter()
            .map(|s| (s.name(), &scenarios))
            .chain(Defence::ALL.iter().map(|d| (d.name(), &defences)))
        {
            assert!(
                names(help).iter().any(|n| n == name),
                "{name} not in: {help}"
            );
        }
    }
}
