//! `concurrent`: runs DAGs of MLflow Projects over shards of input (see `concurrent --help`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use concurrent_scheduler::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(cli.default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.json_logs() {
        logs.json().init();
    } else {
        logs.init();
    }
    cli::main(cli)
}
