//! One attempt of one shard, from the pulled message to the settled one: decode, prepare the
//! attempt dir, create the shard run, materialize, run the entry point, keep or upload the
//! outputs, end the shard run, publish the result, then ack / nak / term, with in-progress
//! acks all along. Every failure of the attempt itself becomes a failed result; an attempt
//! that cannot be recorded in MLflow, or that a stop signal cuts short, is handed back
//! (nak); only a result that cannot be published stops the worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use async_nats::jetstream;
use concurrent_mlflow::environment::cache::EnvCache;
use concurrent_mlflow::project::{EntryPoint, ParamError};
use concurrent_mlflow::tracking::{MlflowClient, MlflowError, RetryPolicy, RunStatus};
use concurrent_proto::{OutputObject, ShardMsg, ShardStatus, StageSpec, TrackingTarget};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::entry_point::{self, EntryPointError, Exit, Invocation, LeaseSlot};
use crate::env::{command_parameters, entry_point_env};
use crate::environment::{self, EnvBuildError, StageEnv};
use crate::heartbeat::with_heartbeats;
use crate::layout::AttemptLayout;
use crate::materialize::{MaterializeError, materialize};
use concurrent_proto::timing;

use crate::lease_file::LeaseFile;
use crate::outputs::{self, OutputError};
use crate::path_params::{self, PathParamError};
use crate::queue::{self, Pulled, QueueError, StageQueue};
use crate::report::{self, AttemptEnd, AttemptStats, Outcome, WorkerIdentity, reason_with_causes};
use crate::reporter::Reporter;
use crate::shard_run::{self, ShardRun, mlflow_unreachable};
use crate::spares::Spares;
use crate::speculation::{Decisions, Watch};

/// The worker's MLflow retries: long enough to ride out a tracking server restart or a few
/// minutes of outage while heartbeats keep the shard (connect errors, timeouts, 429, 5xx).
pub fn tracking_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: std::time::Duration::from_millis(250),
        max_backoff: std::time::Duration::from_secs(5),
        max_elapsed: std::time::Duration::from_secs(300),
        jitter: true,
    }
}

/// The MLflow retries used once the worker is stopping: ending a shard run KILLED must not
/// hold the exit for long.
pub fn stopping_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: std::time::Duration::from_millis(100),
        max_backoff: std::time::Duration::from_millis(500),
        max_elapsed: STOPPING_BUDGET,
        jitter: true,
    }
}

/// How long a stopping worker gives MLflow: to end a shard run, or to finish creating one.
const STOPPING_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The MLflow clients of a stage with tracking on.
#[derive(Clone)]
pub struct Tracking {
    /// For the attempt's work, with [`tracking_retry`].
    pub client: MlflowClient,
    /// For ending a shard run once the worker is stopping, with [`stopping_retry`].
    pub stopping: MlflowClient,
}

impl Tracking {
    /// Both clients of the server at `uri`.
    pub fn new(uri: &str) -> Result<Tracking, MlflowError> {
        let client = MlflowClient::new(uri)?.with_retry(tracking_retry());
        let stopping = client.clone().with_retry(stopping_retry()).with_request_timeout(STOPPING_BUDGET);
        Ok(Tracking { client, stopping })
    }
}

/// What a worker knows about its stage; read once at start, shared by every attempt.
pub struct Stage {
    /// The stage description from KV.
    pub spec: StageSpec,
    /// The unpacked project (the entry point's working directory).
    pub project_dir: PathBuf,
    /// The entry point to run.
    pub entry_point: EntryPoint,
    /// The environment it runs in.
    pub env: StageEnv,
    /// The machine's cache of built environments.
    pub env_cache: EnvCache,
    /// The MLflow clients, when tracking is on.
    pub tracking: Option<Tracking>,
    /// Who this worker is.
    pub who: WorkerIdentity,
    /// Parent of the attempt dirs.
    pub work_dir: PathBuf,
    /// Keep the attempt dir of failed attempts.
    pub keep_failed: bool,
    /// Fires when the worker is asked to stop.
    pub cancel: CancellationToken,
    /// The lease in KV, for a worker in a Pod.
    pub kv_lease: Option<crate::kv_lease::KvLease>,
    /// What the worker hears of decided shards, when the stage speculates.
    pub decisions: Option<Decisions>,
    /// Files of the slot's `in/` kept to be written again.
    pub spares: Spares,
    /// The worker's lease file, beside its slot.
    pub lease: LeaseFile,
}

impl Stage {
    fn mlflow(&self) -> Option<&MlflowClient> {
        self.tracking.as_ref().map(|t| &t.client)
    }
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
    #[error(transparent)]
    PathParameter(#[from] PathParamError),
    #[error("preparing the project's environment (the build's output is in the attempt's log)")]
    Environment(#[from] EnvBuildError),
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

impl AttemptError {
    /// Whether another attempt would fail the same way: its cause cannot change (an input
    /// that no longer exists or two inputs with one path, parameters the entry point refuses,
    /// an outputs dir that refuses writes). What can change (the entry point's exit, a
    /// timeout, a lost worker, a service's outage) is retried.
    fn is_permanent(&self) -> bool {
        match self {
            AttemptError::Materialize(e) => e.is_permanent(),
            AttemptError::Outputs(e) => e.is_permanent(),
            AttemptError::PathParameter(e) => e.is_permanent(),
            AttemptError::Render(_) | AttemptError::NoOutputRoot(_) => true,
            AttemptError::Prepare { .. }
            | AttemptError::StartRun(_)
            | AttemptError::EntryPoint(_)
            | AttemptError::Environment(_)
            | AttemptError::Upload(_)
            | AttemptError::FinishRun(_) => false,
        }
    }
}

/// How the body of an attempt ended short of success.
#[derive(Debug)]
enum Cut {
    /// A failure of the attempt, with its reason.
    Failed(String),
    /// A failure another attempt would repeat, with its reason.
    Permanent(String),
    /// The worker was told to stop.
    Stopped,
    /// MLflow could not be reached, with the reason.
    Unrecorded(String),
}

impl From<AttemptError> for Cut {
    /// The one place that decides whether a failure is the attempt's or MLflow's outage.
    fn from(error: AttemptError) -> Cut {
        let reason = reason_with_causes(&error);
        if mlflow_unreachable(&error) {
            Cut::Unrecorded(reason)
        } else if error.is_permanent() {
            Cut::Permanent(reason)
        } else {
            Cut::Failed(reason)
        }
    }
}

impl Cut {
    fn into_end(self) -> AttemptEnd {
        match self {
            Cut::Failed(reason) => AttemptEnd::Recorded(ShardStatus::Failed { reason }),
            Cut::Permanent(reason) => AttemptEnd::Permanent { reason },
            Cut::Stopped => AttemptEnd::Stopped,
            Cut::Unrecorded(reason) => AttemptEnd::Unrecorded { reason },
        }
    }
}

/// Runs `work` unless the worker is told to stop first (`None` then; `work` is dropped).
async fn until_stopped<T>(cancel: &CancellationToken, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        output = work => Some(output),
        () = cancel.cancelled() => None,
    }
}

/// Processes one pulled message. Returns an error only when results could not be published
/// (their messages are then left unacked, so JetStream redelivers them). The attempt's result
/// goes to `reporter`: published at once, or held while more shards are queued and published
/// with the next ones (see [`crate::reporter`]). Unless the worker is stopping or `drain` was
/// asked for by then, the next shard is pulled as soon as the entry point has exited (tracking
/// off: what follows is local) or while the attempt reports, never while an entry point runs,
/// and is returned to be worked on next.
pub async fn process(
    stage: &Stage,
    queue: &StageQueue,
    message: jetstream::Message,
    drain: &CancellationToken,
    reporter: &mut Reporter,
) -> Result<Option<Pulled>, QueueError> {
    let shard: ShardMsg = match concurrent_proto::decode(&message.payload) {
        Ok(shard) => shard,
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "terminating a shard message that does not decode");
            queue::terminate(&message).await;
            return Ok(None);
        }
    };
    if shard.run_id != stage.spec.run_id || shard.stage != stage.spec.stage {
        tracing::warn!(run = %shard.run_id, stage = %shard.stage, "terminating a shard of another stage");
        queue::terminate(&message).await;
        return Ok(None);
    }
    let delivered = queue::attempt(&message).unwrap_or(1);
    let attempt = concurrent_proto::speculative_attempt(shard.speculative, delivered, stage.spec.max_attempts);
    let span =
        tracing::info_span!("shard_attempt", run = %shard.run_id, stage = %shard.stage, shard = shard.shard, attempt);
    process_shard(stage, queue, message, &shard, attempt, drain, reporter).instrument(span).await
}

async fn process_shard(
    stage: &Stage,
    queue: &StageQueue,
    message: jetstream::Message,
    shard: &ShardMsg,
    attempt: u32,
    drain: &CancellationToken,
    reporter: &mut Reporter,
) -> Result<Option<Pulled>, QueueError> {
    tracing::debug!(inputs = shard.inputs.len(), speculative = shard.speculative, "shard pulled");
    if let Some(by) = stage.decisions.as_ref().and_then(|d| d.decided_by(shard.shard)).filter(|by| *by != attempt) {
        tracing::info!(by, "the shard is already decided: settled without running it");
        if let Err(error) = queue::settle(&message, report::Disposition::Ack).await {
            tracing::warn!(error = %reason_with_causes(&error), "settling a decided shard");
        }
        return Ok(None);
    }
    // No entry point runs between attempts: whatever adopted orphan exited since is reaped.
    concurrent_procs::containment::reap_exited_children();

    // Every attempt of this worker runs in its slot, emptied in between: creating and
    // removing a directory tree per shard costs more than the shard on some filesystems.
    let layout = AttemptLayout::slot(&stage.work_dir, &shard.run_id, &shard.stage, &stage.who.worker);
    let lease = message.reply.as_deref().map(|ack_subject| LeaseSlot {
        file: &stage.lease,
        ack_subject,
        input_dir: &layout.input_dir,
    });
    // Stops this attempt: the worker stopping, or another attempt deciding the shard.
    let stop = stage.cancel.child_token();
    let watch = stage.decisions.as_ref().map(|d| d.watch(shard.shard, attempt, stop.clone()));
    let exited = tokio::sync::Notify::new();
    let current =
        Current { shard, attempt, layout: &layout, lease, stop: &stop, watch: watch.as_ref(), exited: &exited };
    if let (Some(kv_lease), Some(ack_subject)) = (&stage.kv_lease, message.reply.as_deref()) {
        kv_lease.hold(ack_subject).await;
    }
    // On the heap: the attempt's future is large, and is moved through the wrappers below.
    let work = Box::pin(run_attempt(stage, &current));
    let speculating = stage.spec.speculate && !shard.speculative;
    let work = say_when_long(queue, speculating.then_some(|| running_notice(shard, attempt, &message)), work);
    // With tracking off, what follows the entry point's exit is local (its outputs kept, its
    // log): the next shard is asked for as soon as it has exited, so that it arrives meanwhile.
    // Not before: no shard waits behind a running entry point.
    let early: std::cell::RefCell<Option<Result<Pulled, QueueError>>> = std::cell::RefCell::new(None);
    let pull_at_exit = async {
        exited.notified().await;
        if stage.tracking.is_none() && !stage.cancel.is_cancelled() && !drain.is_cancelled() {
            let pulled = queue.pull(queue::PULL_SLICE).await;
            *early.borrow_mut() = Some(pulled);
        }
        std::future::pending::<()>().await;
    };
    let beat = || async {
        queue::in_progress(&message).await;
        let taken = match &*early.borrow() {
            Some(Ok(Pulled::Message(taken))) => Some(taken.clone()),
            _ => None,
        };
        if let Some(taken) = taken {
            queue::in_progress(&taken).await;
        }
        if let (Some(kv_lease), Some(ack_subject)) = (&stage.kv_lease, message.reply.as_deref()) {
            kv_lease.refresh(ack_subject).await;
        }
    };
    let work = async {
        tokio::pin!(work);
        tokio::pin!(pull_at_exit);
        tokio::select! {
            biased;
            outcome = &mut work => outcome,
            // Never ends: the pull's answer is kept in `early`; one still on its way when the
            // attempt ends is the answer of the next pull.
            () = &mut pull_at_exit => unreachable!("waits forever once done"),
        }
    };
    // Results held from earlier attempts are published while this one runs, when due.
    let (outcome, earlier) =
        reporter.meanwhile(queue, &stage.cancel, with_heartbeats(timing::HEARTBEAT_EVERY, beat, work)).await;
    drop(watch);
    if let Some(kv_lease) = &stage.kv_lease {
        kv_lease.release().await;
    }
    let succeeded = outcome.end.succeeded();
    match &outcome.end {
        AttemptEnd::Recorded(ShardStatus::Succeeded) => {}
        AttemptEnd::Recorded(ShardStatus::Failed { reason }) => tracing::warn!(%reason, "attempt failed"),
        AttemptEnd::Permanent { reason } => tracing::warn!(%reason, "attempt failed permanently: not retried"),
        AttemptEnd::Stopped => tracing::warn!("attempt stopped by SIGTERM/SIGINT"),
        AttemptEnd::Superseded { by } => {
            tracing::info!(by, "another attempt decided the shard first: this one stopped")
        }
        AttemptEnd::Unrecorded { reason } => tracing::error!(
            %reason,
            "MLflow could not be reached to record the attempt; it is not counted as a failure of the \
             entry point and the shard is handed back for later unless this was its last attempt"
        ),
    }
    if !succeeded && stage.keep_failed {
        let kept = AttemptLayout::new(&stage.work_dir, &shard.run_id, &shard.stage, shard.shard, attempt);
        let _ = std::fs::remove_dir_all(&kept.root);
        if let Err(error) = std::fs::rename(&layout.root, &kept.root) {
            tracing::warn!(%error, dir = %kept.root.display(), "could not keep the failed attempt's directory");
        }
        stage.spares.forget();
    }
    let disposition = report::disposition(&outcome.end, attempt, stage.spec.max_attempts);
    // A superseded attempt publishes nothing: the result that decided its shard is stored.
    let superseded = matches!(outcome.end, AttemptEnd::Superseded { .. });
    let result = report::shard_result(shard, attempt, stage.spec.max_attempts, &stage.who, outcome);
    tracing::info!(
        ?disposition,
        duration_s = result.duration_s,
        inputs = shard.inputs.len(),
        outputs = result.outputs.len(),
        "shard done"
    );
    let more_queued = message.info().is_ok_and(|info| info.pending > 0);
    reporter.hold((!superseded).then_some(result), message, disposition);
    // The next shard, unless one was asked for at the exit, is asked for while this one reports,
    // unless the worker is stopping.
    let prefetch = !stage.cancel.is_cancelled() && !drain.is_cancelled();
    let early = early.into_inner();
    let next = async {
        match early {
            Some(pulled) => Some(pulled),
            None if prefetch => Some(queue.pull(queue::PULL_SLICE).await),
            None => None,
        }
    };
    // The result is held while more shards are queued and the worker goes on; otherwise it
    // is published now.
    let (next, reported) = match earlier.is_ok() && prefetch && more_queued && reporter.may_hold() {
        true => reporter.meanwhile(queue, &stage.cancel, next).await,
        false => {
            let (reported, next) = tokio::join!(reporter.flush(queue, &stage.cancel), next);
            (next, reported)
        }
    };
    let next = match next {
        Some(Ok(pulled)) => Some(pulled),
        Some(Err(error)) => {
            tracing::debug!(error = %reason_with_causes(&error), "pulling the next shard during the report failed");
            None
        }
        None => None,
    };
    if let Err(error) = earlier.and(reported) {
        // The worker gives up; a shard it already took goes back at once.
        if let Some(Pulled::Message(taken)) = &next {
            queue::hand_back(taken, stage.spec.max_attempts).await;
        }
        return Err(error);
    }
    Ok(next)
}

/// The attempt being run: its shard, its number, its files, its lease, and what stops it.
#[derive(Clone, Copy)]
struct Current<'a> {
    shard: &'a ShardMsg,
    attempt: u32,
    layout: &'a AttemptLayout,
    lease: Option<LeaseSlot<'a>>,
    /// Cancelled when the worker stops or another attempt decides the shard.
    stop: &'a CancellationToken,
    /// Says whether another attempt decided the shard, when the stage speculates.
    watch: Option<&'a Watch>,
    /// Told when the entry point has exited.
    exited: &'a tokio::sync::Notify,
}

impl Current<'_> {
    /// The attempt that decided this attempt's shard, when another one did.
    fn superseded_by(&self) -> Option<u32> {
        self.watch.and_then(Watch::superseded_by)
    }

    /// How an attempt that was stopped ended: superseded when another attempt decided its
    /// shard, else stopped by the worker's stop.
    fn stopped_end(&self) -> AttemptEnd {
        match self.superseded_by() {
            Some(by) => AttemptEnd::Superseded { by },
            None => AttemptEnd::Stopped,
        }
    }

    /// The tags of a run ended KILLED: which attempt superseded it, if one did.
    fn killed_tags(&self) -> Vec<concurrent_mlflow::tracking::Tag> {
        self.superseded_by().map(shard_run::superseded_tags).unwrap_or_default()
    }
}

/// The notice that an attempt runs long, for the scheduler's speculation.
fn running_notice(shard: &ShardMsg, attempt: u32, message: &jetstream::Message) -> concurrent_proto::AttemptRunning {
    concurrent_proto::AttemptRunning {
        v: concurrent_proto::WIRE_VERSION,
        run_id: shard.run_id.clone(),
        stage: shard.stage.clone(),
        shard: shard.shard,
        attempt,
        elapsed_ms: u64::try_from(timing::RUNNING_NOTICE_AFTER.as_millis()).unwrap_or(u64::MAX),
        stream_sequence: message.info().map_or(0, |info| info.stream_sequence),
    }
}

/// Runs `work`; once it has run [`timing::RUNNING_NOTICE_AFTER`], publishes the notice `notice`
/// makes (when there is one) and goes on. Attempts shorter than that cost nothing: the notice
/// is only made then.
async fn say_when_long<T>(
    queue: &StageQueue,
    notice: Option<impl FnOnce() -> concurrent_proto::AttemptRunning>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let Some(notice) = notice else { return work.await };
    tokio::pin!(work);
    tokio::select! {
        biased;
        output = &mut work => return output,
        () = tokio::time::sleep(timing::RUNNING_NOTICE_AFTER) => {}
    }
    queue.announce_running(&notice()).await;
    work.await
}

/// Runs the attempt; never fails: every failure is an outcome with a reason.
async fn run_attempt(stage: &Stage, current: &Current<'_>) -> Outcome {
    let Current { shard, attempt, layout, .. } = *current;
    let started = Instant::now();
    let mut stats = AttemptStats { objects_in: shard.inputs.len() as u64, ..AttemptStats::default() };
    let parameters = command_parameters(&stage.spec, layout, |name| stage.entry_point.parameters.contains_key(name));
    // The log is emptied first: a run ended before the body starts (a stop while it is being
    // created) gets this attempt's log, not the previous one's.
    if let Err(error) = empty_log(&layout.log) {
        return cut_short(current, Cut::from(error), stats, started);
    }
    // The shard run exists before the entry point starts: what cannot be recorded never runs.
    let run = match (&stage.tracking, &stage.spec.tracking) {
        (Some(tracking), Some(target)) => {
            let logged = stage.entry_point.check_parameters(&parameters, &[]).unwrap_or_else(|_| parameters.clone());
            match start_run(stage, tracking, target, current, &logged).await {
                Ok(run) => Some(run),
                Err(cut) => return cut_short(current, cut, stats, started),
            }
        }
        _ => None,
    };
    let body = run_body(stage, current, &parameters, run.as_ref(), &mut stats).await;
    stats.duration_s = started.elapsed().as_secs_f64();
    let (mut end, outputs) = match body {
        Ok(outputs) => (AttemptEnd::Recorded(ShardStatus::Succeeded), outputs),
        Err(Cut::Stopped) => (current.stopped_end(), Vec::new()),
        Err(cut) => (cut.into_end(), Vec::new()),
    };
    if let ShardStatus::Failed { reason } = end.status() {
        note_in_log(&layout.log, &reason);
    }
    match (&stage.tracking, &run) {
        (Some(tracking), Some(run)) => end = end_run(tracking, current, run, &stats, end).await,
        _ => keep_log_locally(&stage.spec, shard, attempt, &layout.log),
    }
    let outputs = if end.succeeded() { outputs } else { Vec::new() };
    Outcome { end, mlflow_run_id: run.map(|r| r.run_id), outputs, stats }
}

/// Creates the shard run, its tags included, in one request (its params are logged when it
/// ends, with its metrics). A stop that comes while the run is being created waits briefly
/// for it, since the server may already have made it, and ends it KILLED: no attempt leaves a
/// run RUNNING.
async fn start_run(
    stage: &Stage,
    tracking: &Tracking,
    target: &TrackingTarget,
    current: &Current<'_>,
    params: &BTreeMap<String, String>,
) -> Result<ShardRun, Cut> {
    let create = shard_run::create(&tracking.client, target, current.shard, current.attempt, &stage.who, params);
    tokio::pin!(create);
    tokio::select! {
        biased;
        created = &mut create => created.map_err(|e| Cut::from(AttemptError::StartRun(e))),
        () = current.stop.cancelled() => {
            if let Ok(Ok(run)) = tokio::time::timeout(STOPPING_BUDGET, create).await {
                let none = AttemptStats::default();
                let tags = current.killed_tags();
                end_quickly(tracking, &run, &current.layout.log, &none, RunStatus::Killed, &tags).await;
            }
            Err(Cut::Stopped)
        }
    }
}

/// Ends the shard run as the attempt ended: FINISHED, FAILED, or KILLED when the worker is
/// stopping or another attempt decided the shard (tagged
/// [`concurrent_mlflow::tracking::SPECULATIVE_TAG`]);
/// returns the attempt's end, changed when the run could not be ended.
async fn end_run(
    tracking: &Tracking,
    current: &Current<'_>,
    run: &ShardRun,
    stats: &AttemptStats,
    end: AttemptEnd,
) -> AttemptEnd {
    let log = &current.layout.log;
    let status = match &end {
        AttemptEnd::Recorded(ShardStatus::Succeeded) => RunStatus::Finished,
        AttemptEnd::Recorded(ShardStatus::Failed { .. }) | AttemptEnd::Permanent { .. } => RunStatus::Failed,
        AttemptEnd::Stopped | AttemptEnd::Superseded { .. } => {
            end_quickly(tracking, run, log, stats, RunStatus::Killed, &current.killed_tags()).await;
            return end;
        }
        AttemptEnd::Unrecorded { .. } => {
            // MLflow was out for the client's whole retry budget; one short try to say so.
            end_quickly(tracking, run, log, stats, RunStatus::Failed, &[]).await;
            return end;
        }
    };
    let tags = shard_run::failure_tags(&end);
    let finish = shard_run::finish(&tracking.client, run, log, stats, status, &tags);
    match until_stopped(current.stop, finish).await {
        Some(Ok(())) => end,
        Some(Err(e)) => match Cut::from(AttemptError::FinishRun(e)) {
            Cut::Failed(reason) => AttemptEnd::Recorded(ShardStatus::Failed { reason }),
            cut => cut.into_end(),
        },
        None => {
            end_quickly(tracking, run, log, stats, RunStatus::Killed, &current.killed_tags()).await;
            current.stopped_end()
        }
    }
}

/// Ends the run with the short retry policy; a failure is only logged.
async fn end_quickly(
    tracking: &Tracking,
    run: &ShardRun,
    log: &Path,
    stats: &AttemptStats,
    status: RunStatus,
    tags: &[concurrent_mlflow::tracking::Tag],
) {
    if let Err(error) = shard_run::finish(&tracking.stopping, run, log, stats, status, tags).await {
        tracing::warn!(run = %run.run_id, ?status, error = %reason_with_causes(&error), "could not end the shard run");
    }
}

fn cut_short(current: &Current<'_>, cut: Cut, mut stats: AttemptStats, started: Instant) -> Outcome {
    stats.duration_s = started.elapsed().as_secs_f64();
    let end = match cut {
        Cut::Stopped => current.stopped_end(),
        cut => cut.into_end(),
    };
    Outcome { end, mlflow_run_id: None, outputs: Vec::new(), stats }
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

/// Materialize, run, keep outputs; each step gives way to a stop signal (the entry point
/// itself is killed as a group and reports [`Exit::Interrupted`]).
async fn run_body(
    stage: &Stage,
    current: &Current<'_>,
    parameters: &std::collections::BTreeMap<String, String>,
    run: Option<&ShardRun>,
    stats: &mut AttemptStats,
) -> Result<Vec<OutputObject>, Cut> {
    let Current { shard, attempt, layout, lease, stop: cancel, .. } = *current;
    prepare_dirs(layout, &stage.spares).await?;
    let fetch = materialize(&shard.inputs, &layout.input_dir, &layout.manifest, stage.mlflow(), &stage.spares);
    let entries = until_stopped(cancel, fetch).await.ok_or(Cut::Stopped)?.map_err(AttemptError::from)?;
    stats.bytes_in = entries.iter().map(|e| e.size).sum();
    let mut parameters = parameters.clone();
    let params_dir = layout.root.join("params");
    let download = path_params::download(&stage.entry_point, &mut parameters, &params_dir, stage.mlflow());
    until_stopped(cancel, download).await.ok_or(Cut::Stopped)?.map_err(AttemptError::from)?;
    let command = stage
        .entry_point
        .render_command_in_order(&parameters, &stage.spec.parameter_order)
        .map_err(AttemptError::from)?;
    let mut env = entry_point_env(&stage.spec, shard, attempt, layout, run.map(|r| r.run_id.as_str()));
    let prepare = stage.env.prepare(&stage.env_cache, &stage.project_dir, &layout.log);
    if let Some(built) = until_stopped(cancel, prepare).await.ok_or(Cut::Stopped)?.map_err(AttemptError::from)? {
        environment::activate(&built, &mut env);
    }
    let invocation = Invocation {
        command: &command,
        cwd: &stage.project_dir,
        env: &env,
        log: &layout.log,
        timeout: stage.spec.timeout_s.map(std::time::Duration::from_secs),
        input_dir: &layout.input_dir,
        log_limit: stage.spec.log_limit(),
        lease,
        exited: Some(current.exited),
    };
    tracing::debug!("running the entry point");
    let exit = entry_point::run(invocation, cancel).await.map_err(AttemptError::from)?;
    if exit == Exit::Interrupted {
        return Err(Cut::Stopped);
    }
    if let Some(failure) = exit.failure_reason() {
        return Err(Cut::Failed(failure));
    }
    let local = outputs::collect(&layout.output_dir).map_err(AttemptError::from)?;
    stats.bytes_out = local.iter().map(|o| o.size).sum();
    match (run, stage.mlflow()) {
        (Some(run), Some(client)) => {
            let upload = shard_run::upload_outputs(client, run, &local);
            Ok(until_stopped(cancel, upload).await.ok_or(Cut::Stopped)?.map_err(AttemptError::Upload)?)
        }
        _ => Ok(keep_outputs_locally(&stage.spec, shard, attempt, &stage.who, &local)?),
    }
}

/// The slot ready for an attempt: `in/` and `out/` empty, the files of `in/` kept as spares
/// (a few metadata operations, done in place rather than through the blocking pool).
async fn prepare_dirs(layout: &AttemptLayout, spares: &Spares) -> Result<(), AttemptError> {
    for (dir, spares) in [(&layout.input_dir, Some(spares)), (&layout.output_dir, None)] {
        empty_or_create(dir, spares).map_err(|source| AttemptError::Prepare { path: dir.clone(), source })?;
    }
    Ok(())
}

/// Empties the slot's log, if an earlier attempt left one (with tracking off a log with output
/// was moved to the logs dir; an empty one stays, to be used again).
fn empty_log(log: &Path) -> Result<(), AttemptError> {
    match std::fs::OpenOptions::new().write(true).truncate(true).open(log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(AttemptError::Prepare { path: log.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

/// Removes everything inside `dir` (symlinks themselves, never what they point to), or
/// creates it.
fn empty_or_create(dir: &Path, spares: Option<&Spares>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return std::fs::create_dir_all(dir),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else if let (Some(spares), true) = (spares, file_type.is_file()) {
            spares.keep_or_remove(&entry.path(), &entry.metadata()?)?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
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
            path: o.path.to_string(),
            uri: concurrent_mlflow::artifacts::file_uri(&o.path.to_fs_path(&dir)),
            size: o.size,
        })
        .collect())
}

/// With tracking off the log is kept at `<output_root>/../logs/<stage>-<shard>-a<attempt>.log`.
pub fn local_log_path(output_root: &Path, stage: &str, shard: u32, attempt: u32) -> PathBuf {
    let parent = output_root.parent().unwrap_or(output_root);
    parent.join("logs").join(format!("{stage}-{shard}-a{attempt}.log"))
}

/// Moves the attempt's log to where it is kept (a rename: the work dir and the output root
/// are both in the state dir; a copy when they are not). An attempt that printed nothing keeps
/// no log: its empty file stays in the slot for the next attempt, and no file is created per
/// silent shard.
fn keep_log_locally(spec: &StageSpec, shard: &ShardMsg, attempt: u32, log: &Path) {
    if std::fs::metadata(log).is_ok_and(|m| m.len() == 0) {
        return;
    }
    let Ok(root) = output_root(spec) else { return };
    let dest = local_log_path(&root, &shard.stage, shard.shard, attempt);
    let kept = std::fs::rename(log, &dest).or_else(|_| {
        dest.parent().map_or(Ok(()), std::fs::create_dir_all)?;
        std::fs::rename(log, &dest).or_else(|_| std::fs::copy(log, &dest).map(|_| ()))
    });
    if let Err(error) = kept
        && log.is_file()
    {
        tracing::warn!(log = %dest.display(), %error, "could not keep the entry point log");
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use concurrent_mlflow::artifacts::ArtifactError;

    use super::*;

    fn cut(error: AttemptError) -> Cut {
        Cut::from(error)
    }

    fn gone(kind: ErrorKind) -> MaterializeError {
        let source =
            ArtifactError::Io { uri: "file:///in/a.txt".into(), path: "/in/a.txt".into(), source: kind.into() };
        MaterializeError::Fetch { uri: "file:///in/a.txt".into(), source: Box::new(source) }
    }

    fn unwritable(kind: ErrorKind) -> OutputError {
        OutputError::Io { what: "creating", path: "/state/outputs/r/s".into(), source: kind.into() }
    }

    #[test]
    fn causes_that_cannot_change_are_permanent_and_the_rest_retried() {
        let permanent = [
            AttemptError::Materialize(gone(ErrorKind::NotFound)),
            AttemptError::Materialize(MaterializeError::Duplicate("a.txt".into())),
            AttemptError::Outputs(unwritable(ErrorKind::PermissionDenied)),
            AttemptError::Outputs(unwritable(ErrorKind::ReadOnlyFilesystem)),
            AttemptError::NoOutputRoot(None),
        ];
        for error in permanent {
            let text = error.to_string();
            assert!(matches!(cut(error), Cut::Permanent(_)), "{text}");
        }
        let retried = [
            AttemptError::Materialize(gone(ErrorKind::PermissionDenied)),
            AttemptError::Outputs(unwritable(ErrorKind::StorageFull)),
            AttemptError::Outputs(OutputError::EscapingSymlink { path: "x".into() }),
            AttemptError::Prepare { path: "/work/slot".into(), source: ErrorKind::PermissionDenied.into() },
        ];
        for error in retried {
            let text = error.to_string();
            assert!(matches!(cut(error), Cut::Failed(_)), "{text}");
        }
    }

    #[test]
    fn a_permanent_cut_keeps_its_causes_and_ends_the_attempt_permanently() {
        let Cut::Permanent(reason) = cut(AttemptError::Materialize(gone(ErrorKind::NotFound))) else { panic!() };
        assert!(reason.starts_with("materializing the inputs: fetching input `file:///in/a.txt`"), "{reason}");
        assert!(Cut::Permanent(reason).into_end().is_permanent());
    }
}
