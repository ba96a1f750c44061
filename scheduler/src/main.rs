//! `concurrent`: runs DAGs of MLflow Projects over shards of input (see `concurrent --help`).

use std::process::ExitCode;

use clap::Parser;
use concurrent_scheduler::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour codes only on a terminal: a log file or a pipe gets plain text. A log line that
    // cannot be written (stderr a closed pipe) is dropped: reporting that would panic.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .init();
    cli::main(Cli::parse())
}
