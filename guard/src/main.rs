use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use guard::cli::{Cli, dispatch, exit::exit_of};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            // netlink-packet-route warns about every link attribute newer
            // than itself; that is noise for guard's users.
            EnvFilter::try_from_env("GUARD_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,netlink_packet_route=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Under systemd the journal stamps every line; JOURNAL_STREAM says so.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("guard: error: {err:#}");
            ExitCode::from(exit_of(&err).code())
        }
    }
}
