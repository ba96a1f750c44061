//! `concurrent-worker`: the command-line entry of the Concurrent worker. Parses flags, sets up
//! logging to stderr (`RUST_LOG`), runs the worker and maps its end to an exit code.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use concurrent_worker::config::{default_worker_id, parse_duration};
use concurrent_worker::{Config, report::reason_with_causes};

/// Pulls shards of one stage of a Concurrent run from NATS JetStream and runs the stage's
/// MLproject entry point on each. Exits 0 when the stage has nothing left for it.
#[derive(Debug, Parser)]
#[command(name = "concurrent-worker", version)]
struct Cli {
    /// Copy this executable to DIR/concurrent-worker and exit, whatever else is given (what the
    /// init container of a Kubernetes worker Pod runs, so the stage's image needs no `cp`).
    #[arg(long, value_name = "DIR")]
    install_into: Option<PathBuf>,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", required_unless_present = "install_into")]
    nats_url: Option<String>,
    /// The DAG run id.
    #[arg(long = "run", required_unless_present = "install_into")]
    run_id: Option<String>,
    /// The stage to work on.
    #[arg(long, required_unless_present = "install_into")]
    stage: Option<String>,
    /// Name of this worker in results and MLflow tags [default: <hostname>-<pid>].
    #[arg(long)]
    worker_id: Option<String>,
    /// Cluster this worker runs in.
    #[arg(long, default_value = "local")]
    cluster: String,
    /// Exit after this long without a shard (e.g. 5s, 500ms); time while NATS is
    /// unreachable does not count.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Exit 3 when NATS cannot be reached for this long at start.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Hold the result of a finished attempt up to this long, while more shards are queued,
    /// and publish it with those of the attempts that follow (0s: each at once; tracking on:
    /// always each at once) [default: 20ms].
    #[arg(long, value_parser = parse_duration)]
    result_hold: Option<Duration>,
    /// Directory of this worker's slot, where its attempts run [default: a fresh temp dir,
    /// removed at exit].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Directory of unpacked project snapshots [default: <tmp>/concurrent-projects].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The machine's cache of built project environments, shared by its workers
    /// [default: $CONCURRENT_ENV_CACHE, else $XDG_CACHE_HOME/concurrent/envs, else ~/.cache/concurrent/envs].
    #[arg(long)]
    env_cache: Option<PathBuf>,
    /// Keep the directory of a failed attempt (as `<run>/<stage>/<shard>-a<attempt>`), for debugging.
    #[arg(long)]
    keep_failed: bool,
    /// Stop as on SIGTERM when standard input closes (the local executor keeps it open while
    /// it lives, so workers never outlive their scheduler).
    #[arg(long)]
    stop_when_stdin_closes: bool,
    /// Keep the lease of the running shard in NATS KV `CONCURRENT_LEASES` (a worker in a
    /// Kubernetes Pod, whose executor cannot read its files).
    #[arg(long)]
    lease_kv: bool,
    /// Reach MLflow at this URI instead of the one the scheduler recorded for the stage (a
    /// worker in a cluster that reaches MLflow by another address); the shard runs are the same.
    #[arg(long, env = "CONCURRENT_MLFLOW_TRACKING_URI", value_name = "URI")]
    mlflow_tracking_uri: Option<String>,
    /// Run entry points with this environment manager instead of the stage's (`local` in an
    /// image built with the project's environment).
    #[arg(long, env = "CONCURRENT_ENV_MANAGER", value_name = "NAME")]
    env_manager: Option<String>,
}

fn main() -> ExitCode {
    concurrent_mlflow::crypto::install_crypto_provider();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            // A closed stderr must not turn a clean stop into a panic.
            let _ = writeln!(std::io::stderr(), "concurrent-worker: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), (u8, String)> {
    if let Some(dir) = &cli.install_into {
        let installed = install_into(dir).map_err(|e| (1, format!("installing into {}: {e}", dir.display())))?;
        tracing::info!(path = %installed.display(), "installed");
        return Ok(());
    }
    let (Some(nats_url), Some(run_id), Some(stage)) = (cli.nats_url, cli.run_id, cli.stage) else {
        return Err((2, "--nats-url, --run and --stage are required".to_string()));
    };
    let temp_work_dir = match &cli.work_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("concurrent-work-")
                .tempdir()
                .map_err(|e| (1, format!("creating a temp work dir: {e}")))?,
        ),
    };
    let work_dir = cli
        .work_dir
        .clone()
        .or_else(|| temp_work_dir.as_ref().map(|d| d.path().to_path_buf()))
        .ok_or((1, "no work dir".to_string()))?;
    let nats_auth = concurrent_proto::nats_auth::NatsAuth::from_lookup(|name| std::env::var_os(name))
        .map_err(|error| (2, error.to_string()))?;
    let config = Config {
        nats_url,
        nats_auth,
        run_id,
        stage,
        worker_id: cli.worker_id.unwrap_or_else(default_worker_id),
        cluster: cli.cluster,
        idle_timeout: cli.idle_timeout,
        result_hold: cli.result_hold.unwrap_or(concurrent_proto::timing::RESULT_HOLD),
        connect_timeout: cli.connect_timeout,
        work_dir,
        cache_dir: cli.cache_dir.unwrap_or_else(|| std::env::temp_dir().join("concurrent-projects")),
        env_cache: cli.env_cache.unwrap_or_else(concurrent_mlflow::environment::cache::default_root),
        keep_failed: cli.keep_failed,
        stop_when_stdin_closes: cli.stop_when_stdin_closes,
        lease_kv: cli.lease_kv,
        mlflow_tracking_uri: cli.mlflow_tracking_uri,
        env_manager: cli.env_manager,
    };
    // One shard at a time: a single-threaded runtime saves the cross-thread wake-ups of a
    // multi-threaded one on every step of a shard.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("starting the async runtime: {e}")))?;
    let result = runtime.block_on(concurrent_worker::run(config));
    drop(temp_work_dir);
    result.map_err(|e| (e.exit_code() as u8, reason_with_causes(&e)))
}

/// Copies the running executable to `dir/concurrent-worker` (mode 0755), through a temp file
/// renamed into place, so a reader never sees half a binary.
fn install_into(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let source = std::env::current_exe()?;
    std::fs::create_dir_all(dir)?;
    let target = dir.join("concurrent-worker");
    let staged = dir.join(".concurrent-worker.partial");
    std::fs::copy(&source, &staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&staged, &target)?;
    Ok(target)
}
