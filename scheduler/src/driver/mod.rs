//! The driver of one DAG run: it feeds the pure [`RunState`] with shard results read durably
//! from JetStream, carries out the effects (start, end and skip stages, end the run), keeps
//! sled and MLflow up to date, asks the executor for workers, decides shards whose attempts
//! were all lost, and stops on cancel. A driver can also pick up a run a previous scheduler
//! left unfinished ([`Driver::resume`]).

mod events;
mod feed;
mod finish;
mod lost;
mod results;
mod resume;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::autoscale::{StageDemand, WorkerTarget, worker_targets};
use crate::dag::Dag;
use crate::executor::{Executor, ExecutorError, StageRef};
use crate::placement::{Amount, Placed};
use crate::plan::Plan;
use crate::queue::{Queue, QueueError};
use crate::run_state::{Effect, RunOutcome, RunState};
use crate::run_tree::RunTree;
use crate::store::{RunTracking, StageRecord, Store, StoreError};

pub use events::{RunEvent, RunSummary, StageSummary};
pub use stages::{PUBLISH_CHUNK, publish_shards};

/// How often the autoscaler looks at backlogs when nothing else happens.
const AUTOSCALE_TICK: Duration = Duration::from_millis(100);
/// How often running stages are checked for shards whose every attempt was lost.
const LOST_SHARD_CHECK: Duration = Duration::from_secs(2);
/// Results handled together before one store flush and their acks.
const RESULT_BATCH: usize = 512;
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
    state: RunState,
    /// Records of the stages started so far, as in sled.
    records: BTreeMap<String, StageRecord>,
    started: Instant,
    outcome: Option<RunOutcome>,
    resuming: bool,
    lost: lost::LostShardWatch,
}

impl<E: Executor> Driver<E> {
    /// A driver for a new run that has been recorded in the store (and in MLflow, if tracked).
    pub fn new(setup: RunSetup<E>) -> Driver<E> {
        let state = run_state_of(&setup.dag);
        Driver {
            setup,
            state,
            records: BTreeMap::new(),
            started: Instant::now(),
            outcome: None,
            resuming: false,
            lost: lost::LostShardWatch::default(),
        }
    }

    /// Drives the run to its end (or until it is cancelled).
    pub async fn run(mut self) -> Result<RunSummary, DriverError> {
        let mut results = feed::ResultFeed::new(self.setup.queue.clone(), self.setup.run_id.clone());
        results.connect().await?;
        let mut control = self.setup.queue.control(&self.setup.run_id).await?;
        let effects = if self.resuming { self.resume_effects().await? } else { self.state.start() };
        self.carry_out(effects).await?;
        self.autoscale().await?;
        let mut tick = tokio::time::interval(AUTOSCALE_TICK);
        let mut lost_check = tokio::time::interval(LOST_SHARD_CHECK);
        let cancel = self.setup.cancel.clone();
        let stop = self.setup.stop.clone();
        let mut stopped = false;
        while !self.state.is_ended() {
            tokio::select! {
                batch = results.next_batch(RESULT_BATCH) => {
                    let effects = self.apply_results(batch).await?;
                    self.carry_out(effects).await?;
                    self.autoscale().await?;
                }
                _ = tick.tick() => self.autoscale().await?,
                _ = lost_check.tick() => {
                    let effects = self.decide_lost_shards(&results).await?;
                    self.carry_out(effects).await?;
                }
                request = control.next() => {
                    if let Some(request) = request {
                        self.setup.queue.reply_cancelled(&request).await;
                        self.cancel().await?;
                        break;
                    }
                }
                _ = cancel.cancelled() => {
                    self.cancel().await?;
                    break;
                }
                _ = stop.cancelled() => {
                    tracing::info!("stopping; the run is left to resume");
                    self.setup.executor.shutdown(SHUTDOWN_GRACE).await;
                    stopped = true;
                    break;
                }
            }
        }
        // A stopped run keeps its results consumer: `concurrent resume` reads on from it.
        if !stopped {
            self.setup.queue.delete_results_consumer(&self.setup.run_id).await;
        }
        Ok(self.summary())
    }

    /// Carries out effects, and those they lead to, in order.
    async fn carry_out(&mut self, effects: Vec<Effect>) -> Result<(), DriverError> {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let more = match effect {
                Effect::StartStage(stage) => self.start_stage(&stage).await?,
                Effect::EndStage { stage, status } => {
                    self.end_stage(&stage, status).await?;
                    Vec::new()
                }
                Effect::SkipStage(stage) => {
                    self.skip_stage(&stage)?;
                    Vec::new()
                }
                Effect::EndRun(outcome) => {
                    self.end_run(outcome).await?;
                    Vec::new()
                }
            };
            queue.extend(more);
        }
        Ok(())
    }

    /// Hands back the shards of workers that died, then tells the executor how many workers
    /// each running stage should have on each cluster.
    async fn autoscale(&mut self) -> Result<(), DriverError> {
        let now = self.started.elapsed();
        let observation = self.setup.executor.observe(now);
        for abandoned in observation.abandoned {
            tracing::warn!(stage = %abandoned.stage.stage, "a worker died during its entry point; its shard is handed back");
            self.setup.queue.hand_back(&abandoned.ack_subject).await;
        }
        let placed: BTreeMap<String, Vec<Placed>> =
            observation.placed.into_iter().map(|(stage, placed)| (stage.stage, placed)).collect();
        let demands: Vec<StageDemand> = self
            .state
            .running_stages()
            .filter(|stage| self.records.contains_key(*stage))
            .map(|stage| {
                let definition = &self.setup.dag.stages[stage];
                StageDemand {
                    stage: stage.to_string(),
                    parallelism: definition.parallelism,
                    backlog: self.state.backlog(stage),
                    request: Amount::of(&definition.resources),
                    clusters: definition.clusters.clone(),
                }
            })
            .collect();
        self.setup.executor.want(demands.iter().map(StageDemand::desired).sum());
        let clusters = self.setup.executor.clusters();
        // Stages that ended keep their workers' entries until those exit: shrink them too.
        let burst_after = self.setup.executor.burst_after();
        let mut targets = worker_targets(&demands, &clusters, &placed, now, burst_after);
        for (stage, places) in &placed {
            if !demands.iter().any(|d| &d.stage == stage) {
                targets.extend(places.iter().map(|p| WorkerTarget {
                    stage: stage.clone(),
                    cluster: p.cluster.clone(),
                    workers: 0,
                }));
            }
        }
        for target in targets {
            let key = StageRef { run_id: self.setup.run_id.clone(), stage: target.stage };
            self.setup.executor.set_desired(&key, &target.cluster, target.workers).await?;
        }
        Ok(())
    }

    fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.setup.events {
            let _ = events.send(event);
        }
    }
}

/// The run state of a DAG whose stages are all waiting.
fn run_state_of(dag: &crate::dag::Dag) -> RunState {
    let mut state = RunState::new(dag.stages.values().map(|s| (s.name.as_str(), s.after.as_slice())));
    for stage in dag.stages.values().filter(|s| s.fail_on_empty) {
        state.set_fail_on_empty(&stage.name);
    }
    state
}
