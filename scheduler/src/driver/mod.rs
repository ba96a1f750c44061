//! The driver of one DAG run: the adapter around the sans-IO [`RunCore`]. It turns what happens
//! (shard results read durably from JetStream, what the executor sees, the clock, cancel and
//! stop) into the core's events, and carries out the effects it returns: stages started and
//! ended in sled, MLflow and JetStream, shards of adaptively sized stages recorded and
//! published wave by wave, results recorded, workers asked for, dead workers'
//! shards handed back, idle stages probed. A driver can also pick up a run a previous scheduler
//! left unfinished ([`Driver::resume`]).

mod events;
mod feed;
mod finish;
mod lost;
mod results;
mod resume;
mod speculation;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::dag::Dag;
use crate::executor::{Executor, ExecutorError, StageRef};
use crate::placement::Placed;
use crate::plan::Plan;
use crate::queue::{Queue, QueueError};
use crate::run_core::{Effect, Event, RunCore, StageConfig, Timing};
use crate::run_state::{RunOutcome, Transition};
use crate::run_tree::RunTree;
use crate::store::{RunTracking, StageRecord, Store, StoreError};

pub use events::{RunEvent, RunSummary, StageSummary, objects_and_shards};
pub use stages::{PUBLISH_CHUNK, publish_shards};

/// How often the core hears of the clock and the executor when nothing else happens.
const TICK: Duration = Duration::from_millis(100);
/// Results handled together before one store flush and their acks.
const RESULT_BATCH: usize = 512;
/// How long a batch of results gathers after its first one: short next to a stage's start
/// (the next stage waits at most this long more), long enough that a store flush covers the
/// results of many short shards.
const RESULT_GATHER: Duration = Duration::from_millis(5);
/// Time workers get to stop politely on cancel.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The run could not be carried on.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("MLflow: {0}")]
    Mlflow(#[from] concurrent_mlflow::tracking::MlflowError),
    #[error("packing the project of stage {stage}: {source}")]
    Snapshot { stage: String, source: concurrent_mlflow::project::snapshot::SnapshotError },
}

/// Everything a run needs, ready before it starts.
pub struct RunSetup<E> {
    pub run_id: String,
    pub dag: Dag,
    pub dag_path: PathBuf,
    pub plan: Plan,
    pub store: Store,
    pub queue: Queue,
    pub executor: E,
    /// MLflow writer and where the run is tracked; `None` with `--tracking none`.
    pub tracking: Option<(RunTree, RunTracking)>,
    pub state_dir: PathBuf,
    /// Receives progress events, if anyone listens.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// Cancels the run (Ctrl-C): workers stopped, MLflow runs ended KILLED, run cancelled.
    pub cancel: CancellationToken,
    /// Stops driving the run and leaves it resumable (SIGTERM, a full disk): workers stopped
    /// (their shards go back to JetStream), the run and its stages left running in sled and
    /// MLflow for `concurrent resume`.
    pub stop: CancellationToken,
}

/// One DAG run being driven.
pub struct Driver<E: Executor> {
    setup: RunSetup<E>,
    core: RunCore,
    /// Records of the stages started so far, as in sled.
    records: BTreeMap<String, StageRecord>,
    /// The objects of the running stages sized adaptively, in the order their shards are cut.
    listings: BTreeMap<String, Vec<concurrent_proto::InputObject>>,
    /// The speculative copies published, and the shards they were for.
    copies: speculation::Copies,
    started: Instant,
    outcome: Option<RunOutcome>,
    resuming: bool,
}

impl<E: Executor> Driver<E> {
    /// A driver for a new run that has been recorded in the store (and in MLflow, if tracked).
    pub fn new(setup: RunSetup<E>) -> Driver<E> {
        let core = core_of(&setup.dag, setup.executor.burst_after());
        Driver {
            setup,
            core,
            records: BTreeMap::new(),
            listings: BTreeMap::new(),
            copies: speculation::Copies::default(),
            started: Instant::now(),
            outcome: None,
            resuming: false,
        }
    }

    /// Drives the run to its end (or until it is cancelled or stopped).
    pub async fn run(mut self) -> Result<RunSummary, DriverError> {
        let mut results = feed::ResultFeed::new(self.setup.queue.clone(), self.setup.run_id.clone());
        results.connect().await?;
        let mut control = self.setup.queue.control(&self.setup.run_id).await?;
        let mut running = self.running_notices().await?;
        let effects = if self.resuming { self.resume_effects().await? } else { self.core.handle(Event::Begin) };
        self.carry_out(effects).await?;
        self.observe_workers().await?;
        let mut tick = tokio::time::interval(TICK);
        let cancel = self.setup.cancel.clone();
        let stop = self.setup.stop.clone();
        let mut stopped = false;
        while !self.core.is_ended() {
            let effects = tokio::select! {
                batch = results.next_batch(RESULT_BATCH, RESULT_GATHER) => self.apply_results(batch).await?,
                _ = tick.tick() => self.core.handle(Event::Tick { now: self.started.elapsed() }),
                Some(notice) = speculation::next_notice(&mut running) => self.attempt_running(&notice),
                request = control.next() => match request {
                    Some(request) => {
                        self.setup.queue.reply_cancelled(&request).await;
                        self.core.handle(Event::Cancel)
                    }
                    None => Vec::new(),
                },
                _ = cancel.cancelled() => self.core.handle(Event::Cancel),
                _ = stop.cancelled() => {
                    tracing::info!("stopping; the run is left to resume");
                    stopped = true;
                    self.core.handle(Event::Stop)
                }
            };
            self.carry_out(effects).await?;
            if !self.core.is_ended() {
                self.observe_workers().await?;
            }
        }
        // A stopped run keeps its results consumer: `concurrent resume` reads on from it.
        if !stopped {
            self.setup.queue.delete_results_consumer(&self.setup.run_id).await;
        }
        Ok(self.summary())
    }

    /// Carries out the core's effects, and those they lead to, in order.
    async fn carry_out(&mut self, effects: Vec<Effect>) -> Result<(), DriverError> {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let more = match effect {
                Effect::Stage(Transition::StartStage(stage)) => self.start_stage(&stage).await?,
                Effect::Stage(Transition::EndStage { stage, status }) => {
                    self.listings.remove(&stage);
                    self.end_stage(&stage, status).await?;
                    Vec::new()
                }
                Effect::CutShards { stage, first, sizes } => {
                    self.cut_shards(&stage, first, sizes).await?;
                    Vec::new()
                }
                Effect::Stage(Transition::SkipStage(stage)) => {
                    self.skip_stage(&stage)?;
                    Vec::new()
                }
                Effect::Stage(Transition::EndRun(outcome)) => {
                    self.end_run(outcome).await?;
                    Vec::new()
                }
                Effect::Record { stage, shard, verdict, .. } => {
                    // Results are recorded where they are read (`apply_results`), with the
                    // result itself at hand; no other event leads here.
                    tracing::error!(stage, shard, ?verdict, "a result's record reached the wrong place");
                    Vec::new()
                }
                Effect::Lost { stage, shard } => {
                    self.record_lost(&stage, shard)?;
                    Vec::new()
                }
                Effect::Speculate { stage, shard, stream_sequence } => {
                    self.copy_shard(stage, shard, stream_sequence).await;
                    Vec::new()
                }
                Effect::Superseded { stage, shard, attempt } => {
                    self.superseded(stage, shard, attempt).await;
                    Vec::new()
                }
                Effect::HandBack { ack_subject } => {
                    self.setup.queue.hand_back(&ack_subject).await;
                    Vec::new()
                }
                Effect::SetWorkers(target) => {
                    let key = StageRef { run_id: self.setup.run_id.clone(), stage: target.stage };
                    self.setup.executor.set_desired(&key, &target.cluster, target.workers).await?;
                    Vec::new()
                }
                Effect::ProbeIdle { stages } => self.probe_idle(stages).await?,
                Effect::Cancel { running } => {
                    self.cancel(&running).await?;
                    Vec::new()
                }
                Effect::Stop => {
                    self.setup.executor.shutdown(SHUTDOWN_GRACE).await;
                    Vec::new()
                }
            };
            queue.extend(more);
        }
        Ok(())
    }

    /// Tells the core what the executor sees (after the run's claim on a shared executor).
    async fn observe_workers(&mut self) -> Result<(), DriverError> {
        let now = self.started.elapsed();
        self.setup.executor.want(self.core.wanted_workers());
        let clusters = self.setup.executor.clusters();
        let observation = self.setup.executor.observe(now);
        let abandoned = observation
            .abandoned
            .into_iter()
            .map(|abandoned| {
                tracing::warn!(stage = %abandoned.stage.stage, "a worker died during its entry point; its shard is handed back");
                abandoned.ack_subject
            })
            .collect();
        let placed: BTreeMap<String, Vec<Placed>> =
            observation.placed.into_iter().map(|(stage, placed)| (stage.stage, placed)).collect();
        let mut effects = Vec::new();
        for failure in observation.failed_stages {
            effects.extend(self.stage_cannot_run(failure).await);
        }
        effects.extend(self.core.handle(Event::Workers { now, clusters, placed, abandoned }));
        self.carry_out(effects).await
    }

    /// A stage whose workers cannot start (its image could not be had) fails, with what failed
    /// said and its log kept on the stage run.
    async fn stage_cannot_run(&mut self, failure: crate::executor::StageFailure) -> Vec<Effect> {
        let stage = failure.stage.stage;
        tracing::error!(stage, reason = %failure.reason, "stage cannot run");
        if let (Some(log), Some((tree, _)), Some(run_id)) =
            (&failure.log, &self.setup.tracking, self.records.get(&stage).and_then(|r| r.mlflow_run_id.clone()))
            && let Err(error) = attach_log(tree.client(), &run_id, log).await
        {
            tracing::warn!(stage, %error, "could not keep the build's log on the stage run");
        }
        self.emit(RunEvent::StageFailedToStart { stage: stage.clone(), reason: failure.reason });
        self.core.handle(Event::StageAborted { stage })
    }

    fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.setup.events {
            let _ = events.send(event);
        }
    }
}

/// The core of a run of `dag`, all its stages waiting; workers Pending `burst_after` count as
/// missing capacity.
fn core_of(dag: &Dag, burst_after: Duration) -> RunCore {
    let stages = dag
        .stages
        .values()
        .map(|stage| StageConfig {
            name: stage.name.clone(),
            after: stage.after.clone(),
            parallelism: stage.parallelism,
            fail_on_empty: stage.fail_on_empty,
            request: stage.resources.per_worker(),
            clusters: stage.clusters.clone(),
            speculate: stage.speculate,
        })
        .collect();
    RunCore::new(stages, Timing { burst_after, ..Timing::default() })
}

/// Why a log could not be kept on a stage run.
#[derive(Debug, thiserror::Error)]
enum AttachLogError {
    #[error("writing it to a temporary file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Mlflow(#[from] concurrent_mlflow::tracking::MlflowError),
}

/// Keeps `log` on the stage run `run_id` as `logs/image_build.log`.
async fn attach_log(
    client: &concurrent_mlflow::tracking::MlflowClient,
    run_id: &str,
    log: &str,
) -> Result<(), AttachLogError> {
    let run = client.get_run(run_id).await?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), log)?;
    let path = concurrent_mlflow::object_path::ObjectPath::literal("logs/image_build.log");
    client.upload_file(&run.info.artifact_uri, &path, file.path()).await?;
    Ok(())
}
