//! The command line: every command and argument struct, their help text,
//! dispatch to the commands and the daemon, and exit codes. The keys of
//! `guard run` are `config::RawConfig`, which clap and the config file
//! share, so that each key is defined once; value enums derive clap's
//! `ValueEnum` where they are defined. Nothing below imports this layer:
//! dispatch hands the commands plain values.

pub mod exit;
pub mod generate;

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};

use crate::{
    commands,
    config::{RawConfig, parse_netns},
    daemon,
    error::usage,
    host::netns,
    model::{
        lists::{Edit, List},
        nft::Proto,
    },
};

/// guard: an XDP SYN- and flood-guard that keeps the conntrack table from
/// filling.
///
/// `guard run` attaches an XDP program to the given interfaces and counts
/// every packet by class before netfilter sees it; `guard stats` reads the
/// counters of a running guard from a second process. A command run as
/// `ip netns exec NAME guard ...` acts as `guard ... --netns NAME` from the
/// host's shell.
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
    /// Check what `guard run` would start with (flags, --config file, the
    /// kept lists) without touching the host.
    ///
    /// Takes the same flags as `guard run`. Prints what guard would do and
    /// exits 0, or names the key, the value and why, and exits 2. The
    /// systemd unit runs it before a start and before a reload.
    CheckConfig(RunArgs),
    /// Show what the running guard is, per interface: enforce or monitor,
    /// XDP attach mode and program, the egress program, SYN cookies, the
    /// controller's level, config file and uptime.
    ///
    /// Reads guard.json and status.json in /run/guard (a guard of a named
    /// namespace: /run/guard/netns/NAME). Exits 1 if no guard is running.
    Status(StatusArgs),
    /// Show what a running guard sees: counters and rates, the conntrack
    /// gauge and the controller's last decisions, the top sources and the
    /// bans.
    ///
    /// Reads its pinned maps and its status.json. Exits 1 if no guard is
    /// running.
    Stats(StatsArgs),
    /// Put back the conntrack values a guard changed and could not restore
    /// (it was killed, or the host lost power mid-run).
    ///
    /// Reads the state.json guard writes before its first change. A running
    /// guard restores by itself when it stops.
    Restore(RestoreArgs),
    /// The fleet a guard started with --fleet shares bans and pressure
    /// with: `guard fleet status` shows every member.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Show the recommended conntrack sizing, with reasons; write it with
    /// --apply, make it survive a reboot with --persist.
    Tune(TuneArgs),
    /// Make conntrack skip stateless ports (nftables raw-table NOTRACK, both
    /// directions).
    Notrack(NotrackArgs),
    /// Always pass new flows from a CIDR: add, delete or list, on the
    /// running guard at once and kept for the next start.
    Allow(ListArgs),
    /// Always drop packets from a CIDR: add, delete or list, on the running
    /// guard at once and kept for the next start.
    Deny(ListArgs),
    /// Lift a source's ban at once (with --fleet, the running guard takes
    /// its copy in the fleet back within a second).
    Unban(UnbanArgs),
    /// CrowdSec's custom bouncer interface: `add|del IP DURATION REASON
    /// JSON`, a decision made a deny entry (kept, so it survives a guard
    /// restart) or taken out.
    ///
    /// CrowdSec deletes a decision when it expires, so guard follows its
    /// duration; deploy/crowdsec has the bouncer's config.
    Crowdsec(CrowdsecArgs),
    /// List the sources banned now, on every guarded interface, with the
    /// time left and why.
    ///
    /// Exits 1 if no guard is running.
    Bans(BansArgs),
    /// Attack signatures: list them (with their hits), add one, pin a
    /// learned one, or take one out, on every guarded interface. A signature is a conjunction
    /// of packet traits the XDP program drops on before any per-source
    /// state: `udp dport 5353 len 44 ttl 64 payload[0..4]=deadbeef`.
    ///
    /// Exits 1 if no guard is running, 2 for a signature it cannot read.
    #[command(subcommand)]
    Sigs(SigsCommand),
    /// Check this host's (or, with --netns, a namespace's) conntrack
    /// sizing, its kernel and a running guard;
    /// print each finding with its fix.
    ///
    /// Prints a Nagios status line first, and exits like a Nagios plugin: 0
    /// all OK, 1 a warning, 2 a critical finding, 3 if it could not check
    /// (or was given a flag or value it cannot take).
    Doctor(DoctorArgs),
    /// Write shell completions or man pages (used by `cargo xtask install`).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read settings from this TOML file. Its keys are the long flag names
    /// (`syn-rate = 50`, `iface = ["eth0"]`); a flag given on the command
    /// line overrides the file's value for that key.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: RawConfig,
}

impl RunArgs {
    fn sources<'a>(&'a self, started_in: Option<&'a str>) -> daemon::reload::Sources<'a> {
        daemon::reload::Sources {
            config: self.config.as_deref(),
            flags: &self.settings,
            started_in,
        }
    }
}

/// What CrowdSec asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrowdsecAction {
    Add,
    Del,
}

#[derive(Debug, Args)]
pub struct CrowdsecArgs {
    /// add or del.
    #[arg(value_enum)]
    pub action: CrowdsecAction,
    /// The decision's address or range.
    #[arg(value_name = "IP")]
    pub ip: String,
    /// The decision's duration (CrowdSec deletes it when it expires).
    #[arg(value_name = "DURATION")]
    pub duration: Option<String>,
    /// The scenario behind the decision.
    #[arg(value_name = "REASON")]
    pub reason: Option<String>,
    /// The whole decision, as CrowdSec passes it.
    #[arg(value_name = "JSON")]
    pub json: Option<String>,
}

#[derive(Debug, Args)]
pub struct BansArgs {
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `guard sigs ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SigsCommand {
    /// Every signature installed: number, origin, drop or monitor, hits,
    /// age and its traits.
    List {
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install a signature on every guarded interface; it never expires.
    /// Words: tcp, udp, icmp, icmp6, ip4, ip6; fields ttl, tos, id, len,
    /// sport, dport, win (TCP), ulen (UDP), seq (ICMP), flags, hlen, each
    /// `NAME N` or `NAME A-B` (an aligned range); `payload[A..B]=HEX`
    /// (TCP: `opts[A..B]=HEX`, the bytes after the fixed header), A..B
    /// within 0..16.
    Add {
        /// The signature, as one argument (quote it).
        #[arg(value_name = "SIGNATURE")]
        signature: String,
        /// Count its matches only; drop nothing.
        #[arg(long)]
        monitor: bool,
    },
    /// Keep learned signature ID until it is taken out (it no longer
    /// expires when it stops matching), on every guarded interface.
    Pin {
        #[arg(value_name = "ID")]
        id: u32,
    },
    /// Take out signature ID on every guarded interface.
    Rm {
        #[arg(value_name = "ID")]
        id: u32,
    },
}

/// `guard fleet ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Every member as this guard sees it: last seen, level, conntrack
    /// fill, bans contributed; the link to NATS and the bans taken from
    /// peers. Exits 1 if no guard runs or it is in no fleet.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// The guard of this network namespace (needed when several run).
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only the interface with this name.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub iface: Option<String>,

    /// Only interfaces in this network namespace, and the status of its
    /// guard (needed when several run).
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// Show this many sources and prefixes in each top list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Seconds between the two readings rates are computed from; 0 reads
    /// once and shows no rates.
    #[arg(long, value_name = "SECS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub interval: u64,

    /// A live full-screen view, refreshed every second; `q` quits.
    #[arg(long, conflicts_with_all = ["json", "interval"])]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Remove the state file without restoring (after checking the sysctls
    /// by hand, for a state file guard calls corrupt).
    #[arg(long)]
    pub discard: bool,
    /// Only the guard of this network namespace (default: every guard
    /// that is gone and left something behind).
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Write the recommended values now.
    #[arg(long)]
    pub apply: bool,
    /// Write them to /etc/sysctl.d/90-guard-conntrack.conf, the hash size
    /// to /etc/modprobe.d/guard-conntrack.conf, and nf_conntrack to
    /// /etc/modules-load.d/guard-conntrack.conf (so it is loaded before the
    /// sysctls are applied), for every boot.
    #[arg(long)]
    pub persist: bool,
    /// Print the recommendations as JSON (key, current, recommended, why),
    /// alone on stdout: what --apply and --persist do goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Tune the timeouts of this network namespace (nf_conntrack_max and the
    /// hash size are global).
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct NotrackArgs {
    /// A port whose traffic conntrack should skip; repeatable.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,
    /// Which transport.
    #[arg(long, value_enum, default_value_t = Proto::Both)]
    pub proto: Proto,
    /// Remove the notrack rules instead.
    #[arg(long, conflicts_with = "port")]
    pub remove: bool,
    /// In this network namespace instead of the host's.
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,
}

/// What to do with a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListAction {
    Add,
    Del,
    List,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  guard deny add 198.51.100.7 --for 1h --reason 'ssh brute force'\n  curl -s https://www.spamhaus.org/drop/drop.txt | guard deny add --file - --reason spamhaus-drop\n  guard allow add 203.0.113.0/24 --no-save"
)]
pub struct ListArgs {
    /// add, del or list.
    #[arg(value_enum)]
    pub action: ListAction,
    /// The CIDRs (or addresses) to add or delete.
    #[arg(value_name = "CIDR")]
    pub cidrs: Vec<String>,
    /// Also the entries of FILE, one per line (the first word of each;
    /// `#` and `;` start comments); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Take the entries out again after DURATION (`90s`, `15m`, `4h`, `2d`,
    /// `1h30m`); the running guard does it, and a restart keeps the time.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why, shown by `guard deny list` and `guard bans` and in the log
    /// when the entries expire.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Change the running guards and keep the entries only in
    /// /run/guard/lists.toml: a restart of guard keeps them, a reboot
    /// does not.
    #[arg(long)]
    pub no_save: bool,
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// The banned address, or any address in its source's prefix
    /// (`source-prefix-v4`/`-v6` of the running guard: /32 and /64 by
    /// default).
    #[arg(value_name = "ADDR")]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// A completion script for SHELL, to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man pages for guard and each subcommand, into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Diagnose the conntrack table the way the field guides do: settings,
/// memory, statistics, kernel log, and what to fix.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes follow the Nagios convention: 0 all OK, 1 a WARN, 2 a CRIT, 3 UNKNOWN (doctor itself could not check, or its command line was wrong). The first line is the status line: GUARD OK|WARNING|CRITICAL|UNKNOWN - ..."
)]
pub struct DoctorArgs {
    /// Read /proc, /sys and /dev/kmsg under this directory instead of /;
    /// the live-only checks (XDP, bpffs, privileges, running guard, its
    /// mode, the firewall's rules) are then skipped.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Diagnose this network namespace: its conntrack count, statistics,
    /// timeouts, tcp_loose and tcp_syncookies, its interfaces, firewall
    /// and guard (max, buckets and the kernel log are the host's).
    #[arg(long, value_name = "NAME", conflicts_with = "root", value_parser = parse_netns)]
    pub netns: Option<String>,

    /// Print the settings and the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command line clap refused (or `--help`, `--version`): prints what
/// clap says and returns the exit code. `guard doctor`'s is Nagios's
/// UNKNOWN (3), after a status line on stdout, as when it cannot check;
/// every other command's is clap's (2 for a bad flag or value).
#[must_use]
pub fn refused(err: &clap::Error, command: Option<std::ffi::OsString>) -> u8 {
    let doctor = command.is_some_and(|c| c == "doctor");
    if !doctor || !err.use_stderr() {
        let _ = err.print();
        return u8::try_from(err.exit_code()).unwrap_or(exit::Exit::Usage.code());
    }
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    println!("GUARD UNKNOWN - {first}");
    let _ = err.print();
    exit::Exit::Unknown.code()
}

/// Runs one parsed command line and returns its exit code: 0, except for
/// `guard doctor`, whose code is the worst finding's (Nagios style).
pub fn dispatch(cli: &Cli) -> Result<u8> {
    // Before any thread starts (see leave_named): a command run as `ip
    // netns exec NAME guard ...` acts as `--netns NAME` from the host.
    let started_in = netns::leave_named().map_err(usage)?;
    let started_in = started_in.as_deref();
    let done = match &cli.command {
        Command::Run(args) => daemon::run::run(args.sources(started_in)),
        Command::CheckConfig(args) => commands::check_config::command(args.sources(started_in)),
        Command::Stats(args) => {
            let opts = commands::stats::StatsOptions {
                iface: args.iface.clone(),
                netns: args.netns.as_deref().or(started_in).map(str::to_owned),
                json: args.json,
                top: args.top,
                interval: args.interval,
            };
            if args.watch {
                commands::watch::run(&opts)
            } else {
                commands::stats::command(&opts)
            }
        }
        Command::Status(args) => {
            commands::status::command(args.json, args.netns.as_deref().or(started_in))
        }
        Command::Fleet(FleetCommand::Status(args)) => {
            commands::fleet::status(args.json, args.netns.as_deref().or(started_in))
        }
        Command::Restore(args) => {
            commands::restore::command(args.discard, args.netns.as_deref().or(started_in))
        }
        Command::Tune(args) => commands::tune::command(commands::tune::TuneOptions {
            apply: args.apply,
            persist: args.persist,
            netns: args.netns.as_deref().or(started_in),
            json: args.json,
        }),
        Command::Notrack(args) => commands::notrack::command(
            &args.port,
            args.proto,
            args.remove,
            args.netns.as_deref().or(started_in),
        ),
        Command::Allow(args) => list(List::Allow, args),
        Command::Deny(args) => list(List::Deny, args),
        Command::Unban(args) => commands::lists::unban(&args.addr),
        Command::Bans(args) => commands::bans::command(args.json),
        Command::Sigs(SigsCommand::List { json }) => commands::sigs::list(*json),
        Command::Sigs(SigsCommand::Add { signature, monitor }) => {
            commands::sigs::add(signature, *monitor)
        }
        Command::Sigs(SigsCommand::Pin { id }) => commands::sigs::pin(*id),
        Command::Sigs(SigsCommand::Rm { id }) => commands::sigs::rm(*id),
        Command::Crowdsec(args) => {
            if let Some(reason) = &args.reason {
                println!(
                    "crowdsec: {} {} ({reason}, {})",
                    if args.action == CrowdsecAction::Add {
                        "deny"
                    } else {
                        "undeny"
                    },
                    args.ip,
                    args.duration.as_deref().unwrap_or("no duration")
                );
            }
            let edit = match args.action {
                CrowdsecAction::Add => Edit::Add,
                CrowdsecAction::Del => Edit::Del,
            };
            // guard times the decision itself too, so it ends even if
            // CrowdSec's `del` never comes (the bouncer was down).
            let reason = args.reason.as_ref().map(|r| format!("crowdsec: {r}"));
            commands::lists::edit(&commands::lists::ListEdit {
                list: List::Deny,
                edit,
                cidrs: std::slice::from_ref(&args.ip),
                file: None,
                duration: args.duration.as_deref().filter(|_| edit == Edit::Add),
                reason: reason.as_deref(),
                save: true,
            })
        }
        Command::Generate(args) => generate::command(args),
        // Nagios reads a plugin that cannot check as UNKNOWN (3), on its
        // status line.
        Command::Doctor(args) => {
            // A copy of /proc and /sys under --root is no namespace's.
            let netns = args
                .netns
                .as_deref()
                .or(started_in.filter(|_| args.root == Path::new("/")));
            return Ok(
                commands::doctor::command(&args.root, netns, args.json).unwrap_or_else(|e| {
                    println!("GUARD UNKNOWN - {e:#}");
                    exit::Exit::Unknown.code()
                }),
            );
        }
    };
    done.map(|()| exit::Exit::Success.code())
}

fn list(list: List, args: &ListArgs) -> Result<()> {
    let edit = match args.action {
        ListAction::List => {
            if let Some(flag) = [
                (!args.cidrs.is_empty()).then_some("a CIDR"),
                args.file.as_ref().map(|_| "--file"),
                args.duration.as_ref().map(|_| "--for"),
                args.reason.as_ref().map(|_| "--reason"),
                args.no_save.then_some("--no-save"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(usage(anyhow!("`{} list` takes no {flag}", list.name())));
            }
            commands::lists::show(list);
            return Ok(());
        }
        ListAction::Add => Edit::Add,
        ListAction::Del => Edit::Del,
    };
    if args.action != ListAction::Add
        && let Some(flag) = [
            args.duration.as_ref().map(|_| "--for"),
            args.reason.as_ref().map(|_| "--reason"),
            args.no_save.then_some("--no-save"),
        ]
        .into_iter()
        .flatten()
        .next()
    {
        return Err(usage(anyhow!(
            "{flag} goes with `{} add`: a delete takes the entry out wherever it is kept",
            list.name()
        )));
    }
    if args.cidrs.is_empty() && args.file.is_none() {
        return Err(usage(anyhow!(
            "give the CIDRs to {}, or --file with one per line",
            if edit == Edit::Add { "add" } else { "delete" }
        )));
    }
    commands::lists::edit(&commands::lists::ListEdit {
        list,
        edit,
        cidrs: &args.cidrs,
        file: args.file.as_deref(),
        duration: args.duration.as_deref(),
        reason: args.reason.as_deref(),
        save: !args.no_save,
    })
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, CommandFactory as _};

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn doctor_help_states_the_nagios_exit_codes() {
        let mut cmd = DoctorArgs::augment_args(clap::Command::new("doctor"));
        let help = cmd.render_help().to_string();
        assert!(help.contains("Nagios"), "{help}");
        assert!(help.contains("--root <DIR>"), "{help}");
    }

    /// Every command's `--netns` takes only what `ip netns` could name.
    #[test]
    fn every_netns_flag_refuses_a_path() {
        for command in [
            &["status"][..],
            &["fleet", "status"],
            &["stats"],
            &["restore"],
            &["tune"],
            &["notrack", "--port", "53"],
            &["doctor"],
        ] {
            let mut argv = vec!["guard"];
            argv.extend_from_slice(command);
            argv.extend_from_slice(&["--netns", "../etc"]);
            let msg = Cli::try_parse_from(&argv).unwrap_err().to_string();
            assert!(
                msg.contains("'../etc' for '--netns <NAME>'") && msg.contains("cannot contain `/`"),
                "{command:?}: {msg}"
            );
            argv.pop();
            argv.push("edge");
            assert!(Cli::try_parse_from(&argv).is_ok(), "{command:?}");
        }
    }

    /// `--watch` refreshes every second: an `--interval` given with it
    /// would do nothing, so it is refused; alone, the default is fine.
    #[test]
    fn watch_takes_no_interval() {
        let msg = Cli::try_parse_from(["guard", "stats", "--watch", "--interval", "5"])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--interval") && msg.contains("--watch"),
            "{msg}"
        );
        assert!(Cli::try_parse_from(["guard", "stats", "--watch"]).is_ok());
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
