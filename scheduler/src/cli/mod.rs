//! The `concurrent` command line: `run`, `validate`, `resume` and `cancel`.
//!
//! Output is never fatal: lines go through [`out!`] (stdout: the summary and answers) and
//! [`say!`] (stderr: progress, warnings, errors), which drop what a closed pipe or a full
//! terminal refuses instead of ending the run.

/// Writes a line to stdout; a closed pipe or a full terminal is ignored.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Writes a line to stderr; a closed pipe or a full terminal is ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod api_client;
mod cancel;
mod drive;
mod kubernetes;
pub use kubernetes::{NoImage, stage_launches};
mod preflight;
mod progress;
mod remote;
mod resume;
mod run;
mod serve;
mod services;
mod signals;
mod summary;
mod validate;

pub(crate) use run::{reads_mlflow, track};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dag::{Overrides, SpecError, parse_override};

/// Exit code of a run that succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code of a run that failed.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code of invalid input or usage.
pub const EXIT_INVALID: u8 = 2;
/// Exit code when a service could not be reached or started.
pub const EXIT_SERVICE: u8 = 3;
/// Exit code of a run cancelled with Ctrl-C (SIGINT).
pub const EXIT_CANCELLED: u8 = 130;
/// Exit code of a scheduler stopped by SIGTERM, the run left to `concurrent resume`.
pub const EXIT_STOPPED: u8 = 143;

/// Runs a pipeline of MLflow Projects over many input files, in parallel, every attempt
/// tracked in MLflow.
///
/// A DAG file names the stages (each an MLflow Project entry point), their input and the order
/// between them; `concurrent run` cuts each stage's input into shards, runs them on workers and
/// logs a run per stage and per shard under one DAG run in MLflow.
#[derive(Debug, Parser)]
#[command(
    name = "concurrent",
    version,
    after_help = "Examples:\n  concurrent validate dag.yaml              check a DAG and see its stages and shards\n  \
                  concurrent run dag.yaml                   run it (starts NATS and MLflow when none is configured)\n  \
                  concurrent run dag.yaml --input s3://b/x  the same DAG on other input\n  \
                  make-dag | concurrent run -               a DAG from standard input\n  \
                  concurrent resume RUN_ID                  carry on a run whose scheduler stopped"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a DAG to its end: every stage's shards on workers, each attempt an MLflow run;
    /// prints a summary and where to see the runs.
    Run(RunArgs),
    /// Checks a DAG without running anything and prints the plan: stages in order, their input
    /// and how many shards each gets.
    Validate(DagArgs),
    /// Carries on a run whose scheduler stopped (killed, machine restarted): shards that
    /// finished are not run again.
    Resume(ResumeArgs),
    /// Cancels a run: its workers stop and its MLflow runs end KILLED.
    Cancel(CancelArgs),
    /// Runs the scheduler as a service: many runs at once, submitted over gRPC and REST.
    Serve(ServeArgs),
    /// Shows a run's status on a service, stage by stage.
    Status(StatusArgs),
    /// Lists the runs a service knows, newest first.
    List(ClientArgs),
    /// Prints the entry point log of a shard attempt from a service.
    Logs(LogsArgs),
    /// Shows each Kubernetes cluster of a clusters file: reachable or not, nodes, free CPU,
    /// memory and GPUs, and Concurrent's workers there.
    Clusters(kubernetes::ClustersArgs),
}

/// How results are printed by the verbs that talk to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// Where the service is and how to prove who we are.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The service's URL (default: CONCURRENT_SCHEDULER, else http://127.0.0.1:7733).
    #[arg(long, value_name = "URL", env = "CONCURRENT_SCHEDULER")]
    pub scheduler: Option<String>,
    /// A file holding the bearer token (default: CONCURRENT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the service's certificate, for https:// URLs whose
    /// certificate the system does not trust (default: CONCURRENT_CA_FILE).
    #[arg(long, value_name = "FILE", env = "CONCURRENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl ClientArgs {
    /// The service's URL, or the local default.
    pub fn scheduler_url(&self) -> String {
        self.scheduler.clone().unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"))
    }
}

/// Where `concurrent serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7733";

/// Options of `concurrent serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for gRPC and REST; anything but loopback needs --token-file.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Run every run's workers as Pods in the Kubernetes clusters of this file (see
    /// docs/kubernetes.md); without it, local processes.
    #[arg(long, value_name = "FILE")]
    pub clusters: Option<PathBuf>,
    /// Bearer tokens, one `name:token` per line; the name is recorded as who submitted a run.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC and REST over TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where run state, uploaded projects and logs are kept.
    #[arg(long, value_name = "DIR", default_value = ".concurrent")]
    pub state_dir: PathBuf,
    /// Most workers at once, all runs together (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_workers: Option<u32>,
    /// Workers exit after this long without a shard.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// `none` runs without MLflow; a URI uses that tracking server (default: MLFLOW_TRACKING_URI,
    /// else an `mlflow server` started with the service).
    #[arg(long, value_name = "none|URI")]
    pub tracking: Option<String>,
    /// Submitted DAGs may name local projects (not uploaded) only inside this directory;
    /// relative paths in them are resolved against it (default: the current directory, any
    /// project allowed).
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
    /// `text` or `json` log lines on standard error.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Options of `concurrent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run.
    pub run_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `concurrent logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run.
    pub run_id: String,
    /// The stage.
    pub stage: String,
    /// The shard's 0-based index.
    pub shard: u32,
    /// The attempt (default: the latest).
    #[arg(long, value_name = "K")]
    pub attempt: Option<u32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The DAG file and what replaces parts of it.
#[derive(Debug, Args)]
pub struct DagArgs {
    /// The DAG file (YAML or JSON); `-` reads it from standard input, and relative paths in
    /// it are then relative to the current directory.
    pub file: PathBuf,
    /// Replaces the DAG's `input`.
    #[arg(long, value_name = "URI")]
    pub input: Option<String>,
    /// Sets a stage parameter, e.g. `-P thumbnails.size=64` (repeatable).
    #[arg(short = 'P', value_name = "STAGE.PARAM=VALUE")]
    pub parameters: Vec<String>,
    /// Runs every stage with this environment manager, as `mlflow run --env-manager`:
    /// `local`, `virtualenv`, `uv` or `conda` (replaces the stages' `env_manager`).
    #[arg(long, value_name = "MANAGER")]
    pub env_manager: Option<String>,
}

impl DagArgs {
    /// The overrides given on the command line.
    pub fn overrides(&self) -> Result<Overrides, SpecError> {
        let parameters = self.parameters.iter().map(|p| parse_override(p)).collect::<Result<_, _>>()?;
        Ok(Overrides { input: self.input.clone(), parameters, env_manager: self.env_manager.clone() })
    }
}

/// How local workers are run.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Most workers at once (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
    /// Workers exit after this long without a shard.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
}

/// How much disk space a run keeps free.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Free space the filesystems of the state dir, its work dir and the NATS store must keep:
    /// a run does not start below it, and stops (resumable) when space falls below it.
    #[arg(long, value_name = "SIZE", default_value = crate::disk::DEFAULT_MIN_FREE, value_parser = parse_size)]
    pub min_free_space: u64,
}

/// Options of `concurrent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dag: DagArgs,
    #[command(flatten)]
    pub workers: WorkerArgs,
    #[command(flatten)]
    pub disk: DiskArgs,
    /// `none` runs without MLflow; a URI uses that tracking server (default: MLFLOW_TRACKING_URI,
    /// else an `mlflow server` started for the run).
    #[arg(long, value_name = "none|URI")]
    pub tracking: Option<String>,
    /// Where run state, outputs without tracking, and logs are kept.
    #[arg(long, value_name = "DIR", default_value = ".concurrent")]
    pub state_dir: PathBuf,
    /// Run the workers as Pods in the Kubernetes clusters of this file (see docs/kubernetes.md).
    #[arg(long, value_name = "FILE")]
    pub clusters: Option<PathBuf>,
    /// Submit the run to this service instead of running it here (also CONCURRENT_SCHEDULER).
    #[command(flatten)]
    pub client: RunClientArgs,
}

/// `--scheduler` and friends on `concurrent run`: unset, the run is driven in this process.
#[derive(Debug, Args)]
pub struct RunClientArgs {
    /// Submit to the service at this URL and follow the run (default: run here).
    #[arg(long, value_name = "URL")]
    pub scheduler: Option<String>,
    /// A file holding the bearer token (default: CONCURRENT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the service's certificate, for https:// URLs whose
    /// certificate the system does not trust (default: CONCURRENT_CA_FILE).
    #[arg(long, value_name = "FILE", env = "CONCURRENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Options of `concurrent resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to carry on (printed by `concurrent run`).
    pub run_id: String,
    #[command(flatten)]
    pub workers: WorkerArgs,
    #[command(flatten)]
    pub disk: DiskArgs,
    /// Run the workers as Pods in the Kubernetes clusters of this file.
    #[arg(long, value_name = "FILE")]
    pub clusters: Option<PathBuf>,
    /// A tracking server URI (default: MLFLOW_TRACKING_URI, else an `mlflow server` on the
    /// state dir's store). A run started with `--tracking none` resumes without MLflow.
    #[arg(long, value_name = "URI")]
    pub tracking: Option<String>,
    /// The state dir the run was started with.
    #[arg(long, value_name = "DIR", default_value = ".concurrent")]
    pub state_dir: PathBuf,
}

/// Options of `concurrent cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run to cancel.
    pub run_id: String,
    /// Cancel the run on this service (default: the scheduler of the state dir).
    #[arg(long, value_name = "URL")]
    pub scheduler: Option<String>,
    /// A file holding the bearer token (default: CONCURRENT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the service's certificate, for https:// URLs whose
    /// certificate the system does not trust (default: CONCURRENT_CA_FILE).
    #[arg(long, value_name = "FILE", env = "CONCURRENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The state dir the run was started with (to find its NATS server when NATS_URL is unset).
    #[arg(long, value_name = "DIR", default_value = ".concurrent")]
    pub state_dir: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::dag::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_size(text: &str) -> Result<u64, String> {
    match crate::dag::quantity_value(text) {
        Some(bytes) if bytes.fract() == 0.0 && bytes < u64::MAX as f64 => Ok(bytes as u64),
        _ => Err(format!("`{text}` is not a size in bytes, like 512Mi, 2Gi or 1G")),
    }
}

impl Cli {
    /// The log filter when RUST_LOG is unset: the service says what it does, commands only
    /// what goes wrong.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            // kube's client logs every failed connection of its watches' retries; the
            // executor says once, by name, that a cluster cannot be reached.
            Command::Serve(_) => "info,kube_client=off,kube_runtime=off",
            _ => "warn,kube_client=off,kube_runtime=off",
        }
    }

    /// True when log lines are JSON (`serve --log-format json`).
    pub fn json_logs(&self) -> bool {
        matches!(&self.command, Command::Serve(args) if args.log_format == "json")
    }
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_SERVICE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => match args.client.scheduler.clone() {
                Some(url) => remote::run(args, &url).await,
                None => run::run(args).await,
            },
            Command::Validate(args) => validate::validate(args).await,
            Command::Resume(args) => resume::resume(args).await,
            Command::Cancel(args) => match &args.scheduler {
                Some(url) => {
                    let client = ClientArgs {
                        scheduler: Some(url.clone()),
                        token_file: args.token_file.clone(),
                        ca_file: args.ca_file.clone(),
                        output: OutputFormat::Text,
                    };
                    remote::cancel(&args.run_id, &client).await
                }
                None => cancel::cancel(args).await,
            },
            Command::Serve(args) => serve::serve(args).await,
            Command::Status(args) => remote::status(&args.run_id, &args.client).await,
            Command::List(args) => remote::list(&args).await,
            Command::Logs(args) => remote::logs(&args).await,
            Command::Clusters(args) => kubernetes::clusters(args).await,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}
