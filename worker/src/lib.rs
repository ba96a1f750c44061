//! The Concurrent worker: binds to one stage's durable pull consumer on NATS JetStream, pulls
//! one shard at a time, puts its inputs in its emptied slot directory
//! (`<work-dir>/<run>/<stage>/<worker>/in`), runs the stage's MLproject entry
//! point (heartbeats, timeout, process group), keeps or uploads its outputs, records the
//! attempt as an MLflow run, publishes a `ShardResult` and only then acks; the next shard is
//! pulled as soon as the entry point has exited (with tracking off), else while that result
//! is published, never while an entry point runs, so no shard waits behind a running one. While more shards are queued, the results of quick attempts are
//! held briefly and published together, while the next attempt runs (`reporter`). It exits when the
//! stage has nothing left for it (idle timeout) or the consumer is gone (DESIGN §1 step 5).
//!
//! With tracking off (`StageSpec::tracking = None`) a shard's outputs go to
//! `<output_root>/<shard>/…` (renamed into place in one step; beside another attempt's,
//! `<shard>.a<attempt>-<worker>/`, when one kept its outputs there first) and the entry
//! point's log of every attempt that printed something to
//! `<output_root>/../logs/<stage>-<shard>-a<attempt>.log`.
//! With tracking on they are the shard run's `outputs/…` and `logs/entry_point.log` artifacts.
//!
//! # What the worker guarantees under faults
//!
//! The rule behind all of them (DESIGN §1): a shard is acked only after its result is stored
//! in JetStream, and a success is reported only after its shard run is FINISHED in MLflow.
//! In-progress acks go out every 10 s from the pull to the settling of the shard, through
//! every retry below, so the shard stays with this worker while it waits.
//!
//! - **NATS restarts or is unreachable for a while.** The client reconnects without limit
//!   (at once, then 100 ms doubling to 2 s); at start the worker waits `--connect-timeout`
//!   (default 30 s) for a first connection, then exits 3. A running entry point is not
//!   disturbed. While the connection is down the worker does not pull; a pull in flight when
//!   the connection drops or comes back is abandoned (its request may have died with the
//!   server) and sent again; a pull that fails is retried with backoff (100 ms to 5 s). Time
//!   while NATS is unreachable is not idle time: the idle clock restarts when the connection
//!   comes back, so an outage never makes a worker exit idle; one longer than 2 minutes
//!   ([`MAX_NATS_OUTAGE`]) while it waits for a shard makes it exit 3. A result is
//!   published again, with the same `Nats-Msg-Id` (JetStream keeps one copy), until
//!   JetStream acks it, for up to 2 minutes (1.5 s once the worker is stopping); then the worker
//!   exits 1 and the unacked shard is redelivered. A worker whose parent is gone (standard
//!   input closed) exits within 4 s whatever NATS does. An ack, nak or
//!   term that fails after the result is stored is logged at warn: the shard comes back and
//!   the scheduler ignores the duplicate result.
//! - **MLflow is unreachable** (connection errors, timeouts, 429, 5xx). Every MLflow request
//!   is retried with backoff (250 ms doubling to 5 s) for up to 5 minutes. The shard run is
//!   created before the entry point starts, so an attempt that cannot be recorded never runs
//!   it. If MLflow stays out of reach through that budget (creating the run, fetching inputs
//!   from it, uploading outputs, ending the run), the attempt is *unrecorded*: no success is
//!   reported, a Failed result saying so is published with `last_attempt = false`, and the
//!   shard is nak'ed with a 10 s delay to be tried again; it is not the entry point's
//!   failure. Creating a run is not idempotent, so it is retried only on connect errors and
//!   429; a run whose creation answer was lost stays RUNNING, unused.
//! - **SIGTERM or SIGINT.** The entry point's process group is killed, the shard run ends
//!   KILLED (with short retries, at most about 2 s), a Failed result "worker stopped
//!   (SIGTERM/SIGINT)" with `last_attempt = false` is published, the shard is nak'ed so another
//!   worker takes it at once, and the worker exits 0. A stop while idle exits 0 at once. A
//!   second SIGTERM/SIGINT kills the entry point's group and exits 128 + signal at once.
//! - **The last attempt.** JetStream does not redeliver a shard past `max_deliver`, so an
//!   attempt that is stopped or unrecorded on the shard's last attempt is terminated with a
//!   Failed result, `last_attempt = true`, rather than left undecided forever.
//! - **SIGKILL or a crash.** Nothing is acked: JetStream redelivers the shard after its ack
//!   wait (30 s); the entry point's group may outlive the worker, and its shard run stays
//!   RUNNING. Results the worker held to publish together (tracking off only; at most
//!   `--result-hold`, 20 ms) die with it: their shards were not acked either and are run
//!   again.
//!
//! The pure parts (attempt layout, environment, results, dispositions, backoff, idle clock) do
//! no IO and are tested without sockets; `link`, `queue`, `entry_point`, `materialize`,
//! `outputs`, `shard_run` and `snapshot_cache` are the adapters; `attempt` glues one attempt
//! together.

pub mod attempt;
pub mod config;
pub mod entry_point;
pub mod env;
pub mod environment;
pub mod heartbeat;
pub mod idle;
pub mod in_place;
pub mod kv_lease;
pub mod layout;
pub mod lease_file;
pub mod link;
pub mod log_cap;
pub mod materialize;
pub mod outputs;
pub mod path_params;
pub mod queue;
pub mod report;
pub mod reporter;
pub mod shard_run;
pub mod snapshot_cache;
pub mod spares;
pub mod speculation;

use std::time::Duration;

use concurrent_mlflow::environment::cache::EnvCache;
use concurrent_mlflow::project::{MlProject, ProjectError};
use concurrent_mlflow::tracking::MlflowError;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::attempt::{Stage, Tracking};
use crate::environment::{EnvSetupError, StageEnv};
use crate::idle::IdleClock;
use crate::layout::AttemptLayout;
use crate::link::Link;
use crate::queue::{Pulled, QueueError, StageQueue};
use crate::report::WorkerIdentity;
use crate::reporter::Reporter;
use crate::snapshot_cache::SnapshotError;
use concurrent_mlflow::retry::RetryPolicy;

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
    /// The project's environment cannot be chosen or read.
    #[error("choosing the stage's environment")]
    Environment(#[from] EnvSetupError),
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
            WorkerError::Queue(QueueError::Connect(_)) => 3,
            WorkerError::Queue(QueueError::NoStageSpec { .. } | QueueError::BadStageSpec { .. })
            | WorkerError::Project(_)
            | WorkerError::Environment(_)
            | WorkerError::Snapshot(SnapshotError::BadKey(_)) => 2,
            _ => 1,
        }
    }
}

/// A worker waiting for a shard exits 3 when NATS stays unreachable this long (a running
/// attempt is not cut short by an outage; its result is published within `RESULT_PUBLISH_BUDGET`).
pub const MAX_NATS_OUTAGE: Duration = Duration::from_secs(120);

/// Serves the stage until it has nothing left for this worker; `Ok` means a clean exit.
pub async fn run(config: Config) -> Result<(), WorkerError> {
    let cancel = CancellationToken::new();
    let drain = CancellationToken::new();
    // Orphans of entry points come to the worker rather than to init, to be reaped.
    if let Err(error) = concurrent_procs::containment::become_subreaper() {
        tracing::warn!(%error, "could not become a child subreaper; processes are still found by their mark");
    }
    stop_on_signals(cancel.clone())?;
    if config.stop_when_stdin_closes {
        follow_stdin(cancel.clone(), drain.clone());
    }
    let link = Link::connect(&config.nats_url, &config.nats_auth, &config.worker_id, config.connect_timeout)
        .await
        .map_err(QueueError::from)?;
    let js = async_nats::jetstream::new(link.client().clone());
    let Some(queue) = StageQueue::bind(&js, &config.run_id, &config.stage).await? else {
        tracing::info!(run = %config.run_id, stage = %config.stage, "the stage's consumer does not exist: nothing to do");
        return Ok(());
    };
    let mut spec = queue::read_stage_spec(&js, &config.run_id, &config.stage).await?;
    if let (Some(tracking), Some(uri)) = (spec.tracking.as_mut(), &config.mlflow_tracking_uri) {
        tracking.uri = uri.clone();
    }
    let project_dir = snapshot_cache::ensure(&js, &spec.project_snapshot, &config.cache_dir).await?;
    let project = MlProject::open(&project_dir)?;
    let entry_point = project.entry_point(&project_dir, &spec.entry_point)?;
    let env_manager = config.env_manager.as_deref().or(spec.env_manager.as_deref());
    let env = StageEnv::choose(&project.env, env_manager, &project_dir)?;
    let tracking = spec.tracking.as_ref().map(|t| Tracking::new(&t.uri)).transpose()?;
    tracing::info!(
        run = %spec.run_id, stage = %spec.stage, entry_point = %entry_point.name,
        tracking = spec.tracking.is_some(), worker = %config.worker_id, "worker ready"
    );
    let decisions = match spec.speculate {
        true => speculation::Decisions::listen(link.client(), &config.run_id, &config.stage).await,
        false => None,
    };
    let stage = Stage {
        spec,
        project_dir,
        entry_point,
        env,
        env_cache: EnvCache::new(&config.env_cache),
        tracking,
        who: WorkerIdentity { worker: config.worker_id.clone(), cluster: config.cluster.clone() },
        work_dir: config.work_dir.clone(),
        keep_failed: config.keep_failed,
        cancel: cancel.clone(),
        kv_lease: match config.lease_kv {
            true => kv_lease::KvLease::open(&js, &config.run_id, &config.stage, &config.worker_id).await,
            false => None,
        },
        decisions,
        spares: spares::Spares::new(
            AttemptLayout::slot(&config.work_dir, &config.run_id, &config.stage, &config.worker_id).root.join("spare"),
        ),
        lease: lease_file::LeaseFile::new(concurrent_proto::lease::lease_path(
            &config.work_dir,
            &config.run_id,
            &config.stage,
            &config.worker_id,
        )),
    };
    // With tracking on, every attempt costs MLflow requests far longer than the hold, so holding
    // would batch nothing; and a held result dying with its worker would leave a FINISHED run
    // beside the attempt that decides. Results are held with tracking off only.
    let hold = match stage.tracking {
        Some(_) => Duration::ZERO,
        None => config.result_hold,
    };
    let mut reporter = Reporter::new(hold);
    let served = serve(&stage, &queue, &link, config.idle_timeout, &cancel, &drain, &mut reporter).await;
    // Whatever way the worker leaves, what it holds is reported first: briefly when it fails
    // (a worker stopping gives publishing 1.5 s).
    if served.is_err() {
        cancel.cancel();
    }
    let flushed = reporter.flush(&queue, &cancel).await;
    let served = served.and(flushed.map_err(WorkerError::from));
    // The slot this worker's attempts ran in goes with the worker.
    let slot = AttemptLayout::slot(&config.work_dir, &config.run_id, &config.stage, &config.worker_id);
    let _ = std::fs::remove_dir_all(&slot.root);
    let _ = std::fs::remove_file(stage.lease.path());
    // Make sure the last acks leave the socket before the process exits (NATS may be down;
    // a stopping worker waits less).
    let flush_within = if cancel.is_cancelled() { Duration::from_millis(500) } else { Duration::from_secs(2) };
    let _ = tokio::time::timeout(flush_within, js.client().flush()).await;
    served
}

/// The pull loop: one shard at a time until idle, the consumer is gone, a stop signal, or a
/// drain request (which lets the shard in hand finish).
async fn serve(
    stage: &Stage,
    queue: &StageQueue,
    link: &Link,
    idle_timeout: Duration,
    cancel: &CancellationToken,
    drain: &CancellationToken,
    reporter: &mut Reporter,
) -> Result<(), WorkerError> {
    let mut idle = IdleClock::start(idle_timeout);
    let mut backoff = RetryPolicy::within(Duration::MAX, Duration::from_millis(100), Duration::from_secs(5)).backoff();
    let mut shards = 0u64;
    // A shard taken while the last one reported.
    let mut taken: Option<Pulled> = None;
    loop {
        let pulled = match taken.take() {
            // A shard already taken is always worked on: a stop cuts it short and reports it
            // (handed back, or failed on its last attempt), as for any shard in hand.
            Some(pulled @ (Pulled::Message(_) | Pulled::ConsumerGone)) => Ok(pulled),
            Some(Pulled::Nothing) | None => {
                // No shard in hand: nothing held waits for another attempt.
                reporter.flush(queue, cancel).await?;
                if cancel.is_cancelled() || drain.is_cancelled() {
                    // A pull sent before the stop or the drain (during the last attempt) is
                    // answered first: a shard it brings is worked on like any shard in hand
                    // (cut short by a stop) rather than left to wait out `ack_wait`.
                    if let Some(pulled) = answer_before_leaving(queue, link).await {
                        taken = Some(pulled);
                        continue;
                    }
                    match cancel.is_cancelled() {
                        true => tracing::info!(shards, "stopping on signal"),
                        false => tracing::info!(shards, "asked to give up its slot: exiting between shards"),
                    }
                    return Ok(());
                }
                if !link.is_up() {
                    tracing::info!("waiting for NATS to come back; the idle clock is paused");
                    tokio::select! {
                        back = tokio::time::timeout(MAX_NATS_OUTAGE, link.up()) => match back {
                            Ok(()) => tracing::info!("NATS is back; pulling again"),
                            Err(_) => {
                                tracing::error!(waited = ?MAX_NATS_OUTAGE, "NATS stayed unreachable: exiting");
                                let url = link.url().to_string();
                                let unreachable = link::Unreachable { url, waited: MAX_NATS_OUTAGE, source: None };
                                return Err(QueueError::from(unreachable).into());
                            }
                        },
                        () = cancel.cancelled() => continue,
                    }
                    idle.restart();
                }
                let remaining = idle.remaining();
                if remaining < queue::MIN_PULL {
                    if let Some(pulled) = answer_before_leaving(queue, link).await {
                        taken = Some(pulled);
                        continue;
                    }
                    tracing::info!(shards, ?idle_timeout, "no shard within the idle timeout: exiting");
                    return Ok(());
                }
                let seen = link.changes();
                // A drain never interrupts a pull: a shard the server delivered to an abandoned
                // pull would wait out `ack_wait` and use up one of its attempts. Pulls are short
                // instead, so a drain is seen within one of them, and a shard they bring is
                // worked on first.
                tokio::select! {
                    pulled = queue.pull(remaining.min(queue::PULL_SLICE)) => pulled,
                    () = link.changed_since(seen) => {
                        // The pull request may have died with the connection (or the server).
                        tracing::info!("the NATS connection changed during a pull; pulling again");
                        queue.forget_pull().await;
                        continue;
                    }
                    () = cancel.cancelled() => continue,
                }
            }
        };
        match pulled {
            Ok(Pulled::Message(message)) => {
                backoff.reset();
                // The next shard is taken while this one reports, unless the worker is
                // stopping or giving up its slot.
                taken = attempt::process(stage, queue, *message, drain, reporter).await?;
                shards += 1;
                idle.restart();
            }
            Ok(Pulled::Nothing) => backoff.reset(),
            Ok(Pulled::ConsumerGone) => {
                tracing::info!(shards, "the stage's consumer is gone: exiting");
                return Ok(());
            }
            Err(error) => {
                // Bounded by the idle clock (paused only while NATS is unreachable).
                let delay = backoff.next_delay().min(idle.remaining());
                tracing::warn!(error = %report::reason_with_causes(&error), ?delay, "pull failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => {}
                }
            }
        }
    }
}

/// The answer to a pull still waiting for one when the worker is about to leave (see
/// [`StageQueue::answer_to_waiting_pull`]); `None` when there is nothing to work on first.
/// Pulls expire within [`queue::PULL_SLICE`], so the answer comes within twice that; a pull
/// sent on a connection that has dropped since is not waited for.
async fn answer_before_leaving(queue: &StageQueue, link: &Link) -> Option<Pulled> {
    if !link.is_up() {
        return None;
    }
    match tokio::time::timeout(2 * queue::PULL_SLICE, queue.answer_to_waiting_pull()).await {
        Ok(Ok(Pulled::Nothing)) => None,
        Ok(Ok(pulled)) => Some(pulled),
        Ok(Err(error)) => {
            tracing::warn!(error = %report::reason_with_causes(&error), "reading the answer to the last pull failed");
            None
        }
        Err(_) => {
            tracing::warn!("the last pull was not answered in time; leaving without its answer");
            None
        }
    }
}

/// How long a worker whose parent is gone has to stop before it exits anyway (its running
/// attempt's processes killed first), whatever NATS and MLflow do.
pub const ORPHANED_EXIT_WITHIN: Duration = Duration::from_secs(4);

/// Follows standard input, the executor's line to this worker: a line `drain` asks it to give
/// up its slot after the shard in hand ([`concurrent_proto::names::DRAIN_LINE`]); the end of
/// input means the parent is gone: it cancels `cancel`, and exits the process
/// [`ORPHANED_EXIT_WITHIN`] later if it is still there. A plain thread, not tokio's blocking
/// pool, so that it never holds up the worker's exit.
fn follow_stdin(cancel: CancellationToken, drain: CancellationToken) {
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut stdin = std::io::stdin().lock();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut stdin, &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.trim_end() == concurrent_proto::names::DRAIN_LINE => {
                    tracing::info!("asked to drain: finishing the shard in hand, then exiting");
                    drain.cancel();
                }
                Ok(_) => {}
            }
        }
        tracing::warn!("standard input closed: the parent is gone, stopping");
        cancel.cancel();
        std::thread::sleep(ORPHANED_EXIT_WITHIN);
        tracing::error!(within = ?ORPHANED_EXIT_WITHIN, "the parent is gone and the worker did not stop in time: exiting now");
        entry_point::kill_running_group();
        std::process::exit(1);
    });
}

/// Cancels `cancel` on SIGTERM or SIGINT: a running entry point is killed and reported
/// stopped. A second signal kills the entry point's group and exits at once.
fn stop_on_signals(cancel: CancellationToken) -> Result<(), WorkerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(WorkerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(WorkerError::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM received: stopping (send it again to exit at once)"),
            _ = int.recv() => tracing::warn!("SIGINT received: stopping (send it again to exit at once)"),
        }
        cancel.cancel();
        let code = tokio::select! {
            _ = term.recv() => 128 + 15,
            _ = int.recv() => 128 + 2,
        };
        tracing::warn!("second stop signal: exiting now");
        entry_point::kill_running_group();
        std::process::exit(code);
    });
    Ok(())
}
