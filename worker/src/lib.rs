//! The Concurrent worker: binds to one stage's durable pull consumer on NATS JetStream, pulls
//! one shard at a time, puts its inputs in a fresh directory, runs the stage's MLproject entry
//! point (heartbeats, timeout, process group), keeps or uploads its outputs, records the
//! attempt as an MLflow run, publishes a `ShardResult` and only then acks. It exits when the
//! stage has nothing left for it (idle timeout) or the consumer is gone (DESIGN §1 step 5).
//!
//! With tracking off (`StageSpec::tracking = None`) a shard's outputs go to
//! `<output_root>/<shard>/…` (replacing an earlier attempt's in one rename) and the entry
//! point's log of every attempt to `<output_root>/../logs/<stage>-<shard>-a<attempt>.log`.
//! With tracking on they are the shard run's `outputs/…` and `logs/entry_point.log` artifacts.
//!
//! The pure parts (attempt layout, environment, results, dispositions) do no IO and are
//! tested without sockets; `queue`, `entry_point`, `materialize`, `outputs`, `shard_run` and
//! `snapshot_cache` are the adapters; `attempt` glues one attempt together.

pub mod attempt;
pub mod config;
pub mod entry_point;
pub mod env;
pub mod heartbeat;
pub mod layout;
pub mod materialize;
pub mod outputs;
pub mod queue;
pub mod report;
pub mod shard_run;
pub mod snapshot_cache;

use concurrent_mlflow::project::{MlProject, ProjectError};
use concurrent_mlflow::tracking::{MlflowClient, MlflowError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::attempt::Stage;
use crate::queue::{Pulled, QueueError, StageQueue};
use crate::report::WorkerIdentity;
use crate::snapshot_cache::SnapshotError;

/// Why a worker stopped before its stage was done.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// NATS could not be reached, or a JetStream request failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The project snapshot could not be fetched or unpacked.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The project or its entry point is not usable.
    #[error("loading the stage's MLproject")]
    Project(#[from] ProjectError),
    /// The MLflow client could not be set up.
    #[error("setting up the MLflow client")]
    Mlflow(#[from] MlflowError),
    /// The signal handlers could not be installed.
    #[error("installing the SIGTERM/SIGINT handlers")]
    Signals(#[source] std::io::Error),
}

impl WorkerError {
    /// Process exit code: 3 when a service cannot be reached, 2 for an unusable stage
    /// description or project, 1 otherwise (DESIGN §7).
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Queue(QueueError::Connect { .. }) => 3,
            WorkerError::Queue(QueueError::NoStageSpec { .. } | QueueError::BadStageSpec { .. })
            | WorkerError::Project(_)
            | WorkerError::Snapshot(SnapshotError::BadKey(_)) => 2,
            _ => 1,
        }
    }
}

/// Serves the stage until it has nothing left for this worker; `Ok` means a clean exit.
pub async fn run(config: Config) -> Result<(), WorkerError> {
    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone())?;
    let js = queue::connect(&config.nats_url, &config.worker_id).await?;
    let Some(queue) = StageQueue::bind(&js, &config.run_id, &config.stage).await? else {
        tracing::info!(run = %config.run_id, stage = %config.stage, "the stage's consumer does not exist: nothing to do");
        return Ok(());
    };
    let spec = queue::read_stage_spec(&js, &config.run_id, &config.stage).await?;
    let project_dir = snapshot_cache::ensure(&js, &spec.project_snapshot, &config.cache_dir).await?;
    let project = MlProject::load(&project_dir)?;
    let entry_point = project.entry_point(&project_dir, &spec.entry_point)?;
    let mlflow = spec.tracking.as_ref().map(|t| MlflowClient::new(&t.uri)).transpose()?;
    tracing::info!(
        run = %spec.run_id, stage = %spec.stage, entry_point = %entry_point.name,
        tracking = spec.tracking.is_some(), worker = %config.worker_id, "worker ready"
    );
    let stage = Stage {
        spec,
        project_dir,
        entry_point,
        mlflow,
        who: WorkerIdentity { worker: config.worker_id.clone(), cluster: config.cluster.clone() },
        work_dir: config.work_dir.clone(),
        keep_failed: config.keep_failed,
        cancel: cancel.clone(),
    };
    let served = serve(&stage, &queue, config.idle_timeout, &cancel).await;
    // Make sure the last acks leave the socket before the process exits.
    let _ = js.client().flush().await;
    served
}

/// The pull loop: one shard at a time until idle, the consumer is gone, or a stop signal.
async fn serve(
    stage: &Stage,
    queue: &StageQueue,
    idle_timeout: std::time::Duration,
    cancel: &CancellationToken,
) -> Result<(), WorkerError> {
    let mut idle_since = Instant::now();
    let mut shards = 0u64;
    loop {
        if cancel.is_cancelled() {
            tracing::info!(shards, "stopping on signal");
            return Ok(());
        }
        let remaining = idle_timeout.saturating_sub(idle_since.elapsed());
        if remaining < queue::MIN_PULL {
            tracing::info!(shards, ?idle_timeout, "no shard within the idle timeout: exiting");
            return Ok(());
        }
        let pulled = tokio::select! {
            pulled = queue.pull(remaining) => pulled?,
            () = cancel.cancelled() => continue,
        };
        match pulled {
            Pulled::Message(message) => {
                attempt::process(stage, queue, *message).await?;
                shards += 1;
                idle_since = Instant::now();
            }
            Pulled::Nothing => {}
            Pulled::ConsumerGone => {
                tracing::info!(shards, "the stage's consumer is gone: exiting");
                return Ok(());
            }
        }
    }
}

/// Cancels `cancel` on SIGTERM or SIGINT: a running entry point is killed and reported failed.
fn stop_on_signals(cancel: CancellationToken) -> Result<(), WorkerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(WorkerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(WorkerError::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM received"),
            _ = int.recv() => tracing::warn!("SIGINT received"),
        }
        cancel.cancel();
    });
    Ok(())
}
