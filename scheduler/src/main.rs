//! `concurrent`: runs DAGs of MLflow Projects over shards of input (see `concurrent --help`).

use std::process::ExitCode;

use clap::Parser;
use concurrent_scheduler::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    cli::main(Cli::parse())
}
