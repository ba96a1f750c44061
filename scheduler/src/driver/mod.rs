//! The driver of one DAG run: it feeds the pure [`RunState`] with shard results read durably
//! from JetStream, carries out the effects (start, end and skip stages, end the run), keeps
//! sled and MLflow up to date, and asks the executor for workers.

mod events;
mod results;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::autoscale::{StageDemand, plan_launches};
use crate::dag::Dag;
use crate::executor::{Executor, ExecutorError, StageRef};
use crate::plan::Plan;
use crate::queue::{Queue, QueueError};
use crate::run_state::{Effect, RunOutcome, RunState};
use crate::run_tree::RunTree;
use crate::store::{RunTracking, Store, StoreError};

pub use events::{RunEvent, RunSummary, StageSummary};

/// How often the autoscaler looks at backlogs when nothing else happens.
const AUTOSCALE_TICK: Duration = Duration::from_millis(100);
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
    #[error("reading results: {0}")]
    Results(String),
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
    /// Cancels the run (Ctrl-C).
    pub cancel: CancellationToken,
}

/// One DAG run being driven.
pub struct Driver<E: Executor> {
    setup: RunSetup<E>,
    state: RunState,
    /// Shards of each started stage, by stage.
    stage_runs: BTreeMap<String, stages::StartedStage>,
    started: Instant,
    outcome: Option<RunOutcome>,
}

impl<E: Executor> Driver<E> {
    /// A driver for a run that has been recorded in the store (and in MLflow, if tracked).
    pub fn new(setup: RunSetup<E>) -> Driver<E> {
        let state = RunState::new(setup.dag.stages.values().map(|s| (s.name.as_str(), s.after.as_slice())));
        Driver { setup, state, stage_runs: BTreeMap::new(), started: Instant::now(), outcome: None }
    }

    /// Drives the run to its end; `None` when it was cancelled.
    pub async fn run(mut self) -> Result<RunSummary, DriverError> {
        let consumer = self.setup.queue.results_consumer(&self.setup.run_id).await?;
        let mut messages = consumer.messages().await.map_err(|e| DriverError::Results(e.to_string()))?;
        let effects = self.state.start();
        self.carry_out(effects).await?;
        self.autoscale().await?;
        let mut tick = tokio::time::interval(AUTOSCALE_TICK);
        let cancel = self.setup.cancel.clone();
        while !self.state.is_ended() {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return Err(DriverError::Results("results stream closed".into())) };
                    let mut batch = Vec::new();
                    let mut next = Some(message);
                    while let Some(message) = next.take() {
                        match message {
                            Ok(message) => batch.push(message),
                            Err(error) => tracing::warn!(%error, "reading results"),
                        }
                        if batch.len() < RESULT_BATCH {
                            next = futures::FutureExt::now_or_never(messages.next()).flatten();
                        }
                    }
                    let effects = self.apply_results(batch).await?;
                    self.carry_out(effects).await?;
                    self.autoscale().await?;
                }
                _ = tick.tick() => self.autoscale().await?,
                _ = cancel.cancelled() => {
                    self.cancel().await?;
                    break;
                }
            }
        }
        self.setup.queue.delete_results_consumer(&self.setup.run_id).await;
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

    /// Launches workers where a stage's backlog asks for more than it has.
    async fn autoscale(&mut self) -> Result<(), DriverError> {
        let alive = self.setup.executor.alive();
        let alive_total: u32 = alive.values().sum();
        let demands: Vec<StageDemand> = self
            .state
            .running_stages()
            .filter(|stage| self.stage_runs.contains_key(*stage))
            .map(|stage| {
                let key = StageRef { run_id: self.setup.run_id.clone(), stage: stage.to_string() };
                StageDemand {
                    stage: stage.to_string(),
                    parallelism: self.setup.dag.stages[stage].parallelism,
                    backlog: self.state.backlog(stage),
                    running: alive.get(&key).copied().unwrap_or(0),
                }
            })
            .collect();
        for (stage, count) in plan_launches(&demands, self.setup.executor.capacity(), alive_total) {
            let key = StageRef { run_id: self.setup.run_id.clone(), stage };
            self.setup.executor.launch(&key, count).await?;
        }
        Ok(())
    }

    fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.setup.events {
            let _ = events.send(event);
        }
    }
}
