//! `concurrent`: runs DAGs of MLflow Projects over shards of input (see `concurrent --help`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use concurrent_scheduler::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    concurrent_mlflow::crypto::install_crypto_provider();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(cli.default_log_filter()));
    // Colour codes only on a terminal: a log file or a pipe gets plain text. A log line that
    // cannot be written (stderr a closed pipe) is dropped: reporting that would panic.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if cli.json_logs() {
        logs.json().init();
    } else {
        logs.init();
    }
    cli::main(cli)
}
