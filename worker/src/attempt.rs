//! One attempt of one shard, from the pulled message to the settled one: decode, prepare the
//! attempt dir, track, materialize, run the entry point, keep or upload the outputs, publish
//! the result, then ack / nak / term. Every failure of the attempt itself becomes a failed
//! result; only a result that cannot be published stops the worker.

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_nats::jetstream;
use concurrent_mlflow::project::{EntryPoint, ParamError};
use concurrent_mlflow::tracking::{MlflowClient, MlflowError};
use concurrent_proto::{OutputObject, ShardMsg, ShardStatus, StageSpec};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::entry_point::{self, EntryPointError, Invocation};
use crate::env::{command_parameters, entry_point_env};
use crate::heartbeat::with_heartbeats;
use crate::layout::AttemptLayout;
use crate::materialize::{MaterializeError, materialize};
use crate::outputs::{self, OutputError};
use crate::queue::{self, QueueError, StageQueue};
use crate::report::{self, AttemptStats, Outcome, WorkerIdentity, reason_with_causes};
use crate::shard_run::{self, ShardRun};

/// How often an in-progress ack is sent while an attempt runs (inputs, entry point, uploads).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a worker knows about its stage; read once at start, shared by every attempt.
pub struct Stage {
    /// The stage description from KV.
    pub spec: StageSpec,
    /// The unpacked project (the entry point's working directory).
    pub project_dir: PathBuf,
    /// The entry point to run.
    pub entry_point: EntryPoint,
    /// The MLflow client, when tracking is on.
    pub mlflow: Option<MlflowClient>,
    /// Who this worker is.
    pub who: WorkerIdentity,
    /// Parent of the attempt dirs.
    pub work_dir: PathBuf,
    /// Keep the attempt dir of failed attempts.
    pub keep_failed: bool,
    /// Fires when the worker is asked to stop.
    pub cancel: CancellationToken,
}

/// Why an attempt failed before or after its entry point ran.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("preparing the attempt directory {path}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the MLflow shard run")]
    StartRun(#[source] MlflowError),
    #[error("materializing the inputs")]
    Materialize(#[from] MaterializeError),
    #[error("rendering the entry point command")]
    Render(#[from] ParamError),
    #[error("running the entry point")]
    EntryPoint(#[from] EntryPointError),
    #[error("collecting the outputs")]
    Outputs(#[from] OutputError),
    #[error("uploading the outputs to MLflow")]
    Upload(#[source] MlflowError),
    #[error("ending the MLflow shard run")]
    FinishRun(#[source] MlflowError),
    #[error("the stage has tracking off and no usable output_root ({0:?})")]
    NoOutputRoot(Option<String>),
}

/// Processes one pulled message. Returns an error only when the result could not be
/// published (the message is then left unacked, so JetStream redelivers it).
pub async fn process(stage: &Stage, queue: &StageQueue, message: jetstream::Message) -> Result<(), QueueError> {
    let shard: ShardMsg = match concurrent_proto::decode(&message.payload) {
        Ok(shard) => shard,
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "terminating a shard message that does not decode");
            queue::terminate(&message).await;
            return Ok(());
        }
    };
    if shard.run_id != stage.spec.run_id || shard.stage != stage.spec.stage {
        tracing::warn!(run = %shard.run_id, stage = %shard.stage, "terminating a shard of another stage");
        queue::terminate(&message).await;
        return Ok(());
    }
    let attempt = queue::attempt(&message).unwrap_or(1);
    let span = tracing::info_span!("shard", shard = shard.shard, attempt);
    process_shard(stage, queue, &message, &shard, attempt).instrument(span).await
}

async fn process_shard(
    stage: &Stage,
    queue: &StageQueue,
    message: &jetstream::Message,
    shard: &ShardMsg,
    attempt: u32,
) -> Result<(), QueueError> {
    tracing::info!(inputs = shard.inputs.len(), "shard pulled");

    let layout = AttemptLayout::new(&stage.work_dir, &shard.run_id, &shard.stage, shard.shard, attempt);
    let work = run_attempt(stage, shard, attempt, &layout);
    let outcome = with_heartbeats(HEARTBEAT_EVERY, || queue::in_progress(message), work).await;
    let succeeded = outcome.status == ShardStatus::Succeeded;
    if let ShardStatus::Failed { reason } = &outcome.status {
        tracing::warn!(%reason, "attempt failed");
    }
    let result = report::shard_result(shard, attempt, stage.spec.max_attempts, &stage.who, outcome);
    queue.publish_result(&result).await?;
    let disposition = report::disposition(&result.status, attempt, stage.spec.max_attempts);
    if let Err(error) = queue::settle(message, disposition).await {
        // The result is out; the worst case is a redelivery and a duplicate result.
        tracing::warn!(error = %reason_with_causes(&error), "shard message not settled");
    }
    tracing::info!(?disposition, duration_s = result.duration_s, outputs = result.outputs.len(), "shard done");
    if succeeded || !stage.keep_failed {
        let _ = tokio::fs::remove_dir_all(&layout.root).await;
    }
    Ok(())
}

/// Runs the attempt; never fails: every failure is an outcome with a reason.
async fn run_attempt(stage: &Stage, shard: &ShardMsg, attempt: u32, layout: &AttemptLayout) -> Outcome {
    let started = Instant::now();
    let mut stats = AttemptStats { objects_in: shard.inputs.len() as u64, ..AttemptStats::default() };
    let parameters = command_parameters(&stage.spec, layout, |name| stage.entry_point.parameters.contains_key(name));
    let tracked = match (&stage.mlflow, &stage.spec.tracking) {
        (Some(client), Some(target)) => {
            let logged = stage.entry_point.check_parameters(&parameters, &[]).unwrap_or_else(|_| parameters.clone());
            match shard_run::start(client, target, shard, attempt, &stage.who, &logged).await {
                Ok(run) => Some((client, run)),
                Err(e) => return failed(&AttemptError::StartRun(e), stats, started),
            }
        }
        _ => None,
    };
    let run = tracked.as_ref().map(|(_, run)| run);
    let body = run_body(stage, shard, attempt, layout, &parameters, run, &mut stats).await;
    stats.duration_s = started.elapsed().as_secs_f64();
    let mut status = match &body {
        Ok(_) => ShardStatus::Succeeded,
        Err(reason) => {
            note_in_log(&layout.log, reason);
            ShardStatus::Failed { reason: reason.clone() }
        }
    };
    if let Some((client, run)) = &tracked {
        let ok = status == ShardStatus::Succeeded;
        if let Err(e) = shard_run::finish(client, run, &layout.log, &stats, ok).await {
            status = ShardStatus::Failed { reason: reason_with_causes(&AttemptError::FinishRun(e)) };
        }
    } else {
        keep_log_locally(&stage.spec, shard, attempt, &layout.log);
    }
    Outcome { status, mlflow_run_id: run.map(|r| r.run_id.clone()), outputs: body.unwrap_or_default(), stats }
}

/// Appends the failure reason to the attempt's log, so the kept log says why it failed.
fn note_in_log(log: &Path, reason: &str) {
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| writeln!(file, "concurrent-worker: attempt failed: {reason}"));
    if let Err(error) = appended {
        tracing::debug!(%error, "could not note the failure in the log");
    }
}

fn failed(error: &AttemptError, mut stats: AttemptStats, started: Instant) -> Outcome {
    stats.duration_s = started.elapsed().as_secs_f64();
    Outcome {
        status: ShardStatus::Failed { reason: reason_with_causes(error) },
        mlflow_run_id: None,
        outputs: Vec::new(),
        stats,
    }
}

/// Materialize, run, keep outputs. `Err` is the failure reason.
async fn run_body(
    stage: &Stage,
    shard: &ShardMsg,
    attempt: u32,
    layout: &AttemptLayout,
    parameters: &std::collections::BTreeMap<String, String>,
    run: Option<&ShardRun>,
    stats: &mut AttemptStats,
) -> Result<Vec<OutputObject>, String> {
    let reason = |e: AttemptError| reason_with_causes(&e);
    prepare_dirs(layout).await.map_err(reason)?;
    let entries = materialize(&shard.inputs, &layout.input_dir, &layout.manifest, stage.mlflow.as_ref())
        .await
        .map_err(|e| reason(e.into()))?;
    stats.bytes_in = entries.iter().map(|e| e.size).sum();
    let command = stage.entry_point.render_command(parameters).map_err(|e| reason(e.into()))?;
    let env = entry_point_env(&stage.spec, shard, attempt, layout, run.map(|r| r.run_id.as_str()));
    let invocation = Invocation {
        command: &command,
        cwd: &stage.project_dir,
        env: &env,
        log: &layout.log,
        timeout: stage.spec.timeout_s.map(std::time::Duration::from_secs),
    };
    tracing::debug!("running the entry point");
    let exit = entry_point::run(invocation, &stage.cancel).await.map_err(|e| reason(e.into()))?;
    if let Some(failure) = exit.failure_reason() {
        return Err(failure);
    }
    let local = outputs::collect(&layout.output_dir).map_err(|e| reason(e.into()))?;
    stats.bytes_out = local.iter().map(|o| o.size).sum();
    match (run, &stage.mlflow) {
        (Some(run), Some(client)) => {
            shard_run::upload_outputs(client, run, &local).await.map_err(|e| reason(AttemptError::Upload(e)))
        }
        _ => keep_outputs_locally(&stage.spec, shard, attempt, &stage.who, &local).map_err(reason),
    }
}

async fn prepare_dirs(layout: &AttemptLayout) -> Result<(), AttemptError> {
    let prepare = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AttemptError::Prepare { path, source }
    };
    match tokio::fs::remove_dir_all(&layout.root).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(prepare(&layout.root)(e)),
        _ => {}
    }
    tokio::fs::create_dir_all(&layout.input_dir).await.map_err(prepare(&layout.input_dir))?;
    tokio::fs::create_dir_all(&layout.output_dir).await.map_err(prepare(&layout.output_dir))?;
    Ok(())
}

fn output_root(spec: &StageSpec) -> Result<PathBuf, AttemptError> {
    spec.output_root
        .as_deref()
        .and_then(|uri| concurrent_mlflow::artifacts::file_path(uri).ok())
        .ok_or_else(|| AttemptError::NoOutputRoot(spec.output_root.clone()))
}

fn keep_outputs_locally(
    spec: &StageSpec,
    shard: &ShardMsg,
    attempt: u32,
    who: &WorkerIdentity,
    local: &[outputs::LocalOutput],
) -> Result<Vec<OutputObject>, AttemptError> {
    let root = output_root(spec)?;
    let tag = format!("a{attempt}-{}", who.worker);
    let dir = outputs::keep_locally(local, &root, shard.shard, &tag)?;
    Ok(local
        .iter()
        .map(|o| OutputObject {
            path: o.path.clone(),
            uri: concurrent_mlflow::artifacts::file_uri(&dir.join(&o.path)),
            size: o.size,
        })
        .collect())
}

/// With tracking off the log is kept at `<output_root>/../logs/<stage>-<shard>-a<attempt>.log`.
pub fn local_log_path(output_root: &Path, stage: &str, shard: u32, attempt: u32) -> PathBuf {
    let parent = output_root.parent().unwrap_or(output_root);
    parent.join("logs").join(format!("{stage}-{shard}-a{attempt}.log"))
}

fn keep_log_locally(spec: &StageSpec, shard: &ShardMsg, attempt: u32, log: &Path) {
    let Ok(root) = output_root(spec) else { return };
    if !log.is_file() {
        return;
    }
    let dest = local_log_path(&root, &shard.stage, shard.shard, attempt);
    let copied =
        dest.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::copy(log, &dest).map(|_| ()));
    if let Err(error) = copied {
        tracing::warn!(log = %dest.display(), %error, "could not keep the entry point log");
    }
}
