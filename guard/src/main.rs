use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use guard::cli::{Cli, dispatch, exit::exit_of, refused};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt::format::debug_fn, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(refused(&err, std::env::args_os().nth(1))),
    };
    init_logs();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("guard: error: {err:#}");
            ExitCode::from(exit_of(&err).code())
        }
    }
}

/// Under systemd (JOURNAL_STREAM set) logs go to journald natively, each
/// with its priority (so `journalctl -p warning` finds bans and errors)
/// and its fields (IFACE, SRC, LEVEL); elsewhere, and if the journal's
/// socket is not there, one line each on stderr.
fn init_logs() {
    let filter = || {
        // netlink-packet-route warns about every link attribute newer than
        // itself; that is noise for guard's users.
        EnvFilter::try_from_env("GUARD_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,netlink_packet_route=error,async_nats=warn"))
    };
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_systemd && let Ok(journald) = tracing_journald::layer() {
        let journald = journald
            .with_field_prefix(None)
            .with_syslog_identifier("guard".to_owned())
            .with_priority_mappings(PriorityMappings {
                error: Priority::Error,
                warn: Priority::Warning,
                info: Priority::Informational,
                debug: Priority::Debug,
                trace: Priority::Debug,
            });
        tracing_subscriber::registry()
            .with(journald.with_filter(filter()))
            .init();
        return;
    }
    // On stderr the fields stay out of the line: they repeat what it says.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(debug_fn(|w, field, value| {
            if field.name() == "message" {
                write!(w, "{value:?}")
            } else {
                Ok(())
            }
        }));
    // Under systemd without the journal's socket, the journal stamps lines.
    if under_systemd {
        tracing_subscriber::registry()
            .with(stderr.without_time().with_filter(filter()))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(stderr.with_filter(filter()))
            .init();
    }
}
