//! The run host: every run the service drives at once, over one state store, one NATS, one
//! MLflow and one pool of workers shared fairly. Submitting validates and records a run, then
//! drives it in a task of its own; its events keep the run's [`RunView`] current and reach
//! every watcher. On start it resumes every run a previous service left unfinished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use concurrent_mlflow::tracking::MlflowClient;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::error::HostError;
use super::metrics::Metrics;
use super::projects::UploadedProjects;
use super::view::{RunState, RunView};
use crate::dag::{Dag, LoadOptions, Overrides, parse_dag_with};
use crate::driver::{Driver, DriverError, RunEvent, RunSetup, RunSummary};
use crate::executor::kubernetes::{KubernetesConfig, KubernetesExecutor, Leases};
use crate::executor::{RunExecutor, WorkerPool};
use crate::plan::{Plan, plan, plan_stages};
use crate::queue::Queue;
use crate::run_id::{is_valid_run_id, new_run_id};
use crate::run_tree::{RunTree, now_ms};
use crate::store::{RunRecord, RunStatus, RunTracking, Store};

/// Time a run's Pods get to go when it ends.
const POD_CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// Events a watcher may fall behind by before it is sent the run's status afresh.
const WATCH_BACKLOG: usize = 1024;

/// What the host needs beyond its services.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub state_dir: PathBuf,
    /// Relative paths in submitted DAGs are resolved against this directory.
    pub base_dir: PathBuf,
    /// Local projects not uploaded must lie inside this directory; `None` allows any.
    pub project_root: Option<PathBuf>,
    /// Run workers as Pods in these clusters instead of the local pool (`serve --clusters`).
    pub pods: Option<PodWorkers>,
}

/// Workers as Pods: the clusters, and what every worker is told.
#[derive(Debug, Clone)]
pub struct PodWorkers {
    pub clusters: crate::clusters::ClustersFile,
    /// NATS as the scheduler reaches it (a cluster's `nats_url` overrides it for its Pods).
    pub nats_url: String,
    pub idle_timeout: Duration,
}

/// A run submitted to the host.
#[derive(Debug, Clone, Default)]
pub struct SubmitRequest {
    /// The DAG file's text.
    pub dag: String,
    pub input: Option<String>,
    /// `stage.param` -> value.
    pub parameters: BTreeMap<String, String>,
    /// A local project as written in the DAG -> `sha256:<hex>` of an uploaded snapshot.
    pub projects: BTreeMap<String, String>,
    pub priority: Option<u32>,
    /// The token name of who submitted it.
    pub submitted_by: String,
}

/// A run recorded and started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub run_id: String,
    pub mlflow_run_id: Option<String>,
    /// Where to browse the DAG run in MLflow.
    pub url: Option<String>,
}

/// How the caller of [`RunHost::drive_here`] steers its run and follows it.
pub struct RunControl {
    /// Cancels the run (its MLflow runs end KILLED).
    pub cancel: CancellationToken,
    /// Stops driving it and leaves it resumable.
    pub stop: CancellationToken,
    /// Receives a copy of every event.
    pub tap: Option<mpsc::UnboundedSender<RunEvent>>,
    /// Where the run's workers go; `None`: the host's local worker pool.
    pub executor: Option<RunExecutor>,
}

/// One change of a run, as watchers see it.
#[derive(Debug, Clone)]
pub struct RunChange {
    /// What happened: `status` (the run as it stands), `stage_started`, `shard_decided`, …
    pub kind: &'static str,
    pub stage: Option<String>,
    pub shard: Option<u32>,
    pub message: String,
    /// The run after the change.
    pub run: RunView,
}

/// The plan of a valid DAG, stage by stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStage {
    pub name: String,
    pub after: Vec<String>,
    /// Objects and shards, when the stage's input could be listed now (no shard count for a
    /// stage sized adaptively).
    pub objects: Option<u64>,
    pub shards: Option<u32>,
    /// Shards are sized as the stage runs (`by: object` with neither `shard_size` nor `shards`).
    pub sized_adaptively: bool,
}

/// An entry point log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLog {
    pub attempt: u32,
    pub bytes: Vec<u8>,
}

/// Every run the service drives.
#[derive(Clone)]
pub struct RunHost {
    inner: Arc<Inner>,
}

struct Inner {
    config: HostConfig,
    store: Store,
    queue: Queue,
    mlflow: Option<MlflowClient>,
    pool: WorkerPool,
    uploads: UploadedProjects,
    metrics: Metrics,
    runs: Mutex<BTreeMap<String, LiveRun>>,
    /// Cancelled when the service stops: drivers stop without ending their runs.
    stopping: CancellationToken,
    /// The tasks driving runs.
    drivers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct LiveRun {
    view: RunView,
    changes: broadcast::Sender<RunChange>,
    /// Cancels the run (its MLflow runs end KILLED).
    cancel: CancellationToken,
}

impl RunHost {
    /// A host over these services; call [`RunHost::resume_unfinished`] next.
    pub fn new(
        config: HostConfig,
        store: Store,
        queue: Queue,
        mlflow: Option<MlflowClient>,
        pool: WorkerPool,
    ) -> RunHost {
        let uploads = UploadedProjects::new(&config.state_dir);
        RunHost {
            inner: Arc::new(Inner {
                config,
                store,
                queue,
                mlflow,
                pool,
                uploads,
                metrics: Metrics::new(),
                runs: Mutex::new(BTreeMap::new()),
                stopping: CancellationToken::new(),
                drivers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The uploaded project snapshots.
    pub fn uploads(&self) -> &UploadedProjects {
        &self.inner.uploads
    }

    /// The service's metrics, gauges refreshed from the runs now.
    pub fn metrics_text(&self) -> String {
        let views = self.list().unwrap_or_default();
        self.inner.metrics.refresh(&views, self.inner.pool.slots());
        self.inner.metrics.encode()
    }

    /// The metrics, to count API calls.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Checks a DAG and lists the plan, creating nothing.
    pub async fn validate(&self, request: &SubmitRequest) -> Result<Vec<PlannedStage>, HostError> {
        let (dag, _) = self.parse(request)?;
        let planned = self.plan_if_listable(&dag).await?;
        Ok(dag
            .order()
            .into_iter()
            .map(|stage| {
                let listed = planned.as_ref().and_then(|p| p.get(&stage.name));
                PlannedStage {
                    name: stage.name.clone(),
                    after: stage.after.clone(),
                    objects: listed.map(|p| p.objects),
                    shards: listed.and_then(|p| p.shard_count()).map(|n| n as u32),
                    sized_adaptively: crate::partition::sized_adaptively(&stage.partition),
                }
            })
            .collect())
    }

    /// Validates, plans and records a run, then starts driving it.
    pub async fn submit(&self, request: SubmitRequest) -> Result<Submitted, HostError> {
        let started = Instant::now();
        let (dag, project_dirs) = self.parse(&request)?;
        if self.inner.mlflow.is_none()
            && let Some(stage) = dag.order().into_iter().find(|s| crate::cli::reads_mlflow(&dag, s))
        {
            return Err(HostError::NeedsTracking { stage: stage.name.clone() });
        }
        if let Some(pods) = &self.inner.config.pods {
            crate::cli::stage_launches(&dag, &pods.clusters)?;
        }
        let plan = plan(&dag, self.inner.mlflow.as_ref()).await?;
        let run_id = new_run_id();
        let dags = self.inner.config.state_dir.join("dags");
        let dag_path = dags.join(format!("{run_id}.yaml"));
        std::fs::create_dir_all(&dags)
            .and_then(|()| std::fs::write(&dag_path, &request.dag))
            .map_err(|source| HostError::Io { path: dag_path.display().to_string(), source })?;
        let tracking = match &self.inner.mlflow {
            None => None,
            Some(client) => {
                let tracked = crate::cli::track(client, &dag, &run_id).await?;
                let parent = &tracked.1.parent_run_id;
                client.set_tag(parent, "concurrent.submitted_by", &request.submitted_by).await?;
                Some(tracked)
            }
        };
        let overrides = overrides(&request)?;
        let record = RunRecord {
            submitted_by: Some(request.submitted_by.clone()),
            priority: request.priority,
            project_dirs: project_dirs.iter().map(|(k, v)| (k.clone(), v.display().to_string())).collect(),
            ..RunRecord::starting(&run_id, &dag, &dag_path, overrides, tracking.as_ref().map(|(_, t)| t.clone()))
        };
        self.inner.store.put_run(&record)?;
        self.inner.store.flush().await?;
        let submitted = Submitted {
            run_id: run_id.clone(),
            mlflow_run_id: record.tracking.as_ref().map(|t| t.parent_run_id.clone()),
            url: record
                .tracking
                .as_ref()
                .map(|t| crate::run_tree::run_page(&t.uri, &t.experiment_id, &t.parent_run_id)),
        };
        tracing::info!(run = %run_id, dag = %dag.name, submitted_by = %request.submitted_by, "run submitted");
        self.start(record, dag, plan, tracking, false).await?;
        self.inner.metrics.submitted(&request.submitted_by, started.elapsed());
        Ok(submitted)
    }

    /// Resumes every run the store holds as running; returns their ids. A run that can no
    /// longer be resumed (its DAG no longer validates) is logged and left as it is.
    pub async fn resume_unfinished(&self) -> Result<Vec<String>, HostError> {
        let mut resumed = Vec::new();
        for record in self.inner.store.runs()? {
            if record.status != RunStatus::Running {
                continue;
            }
            match self.resume(record.clone()).await {
                Ok(()) => resumed.push(record.run_id),
                Err(error) => tracing::error!(run = %record.run_id, %error, "cannot resume the run"),
            }
        }
        Ok(resumed)
    }

    async fn resume(&self, record: RunRecord) -> Result<(), HostError> {
        let overrides = Overrides {
            input: record.input_override.clone(),
            parameters: record.parameter_overrides.clone(),
            env_manager: record.env_manager_override.clone(),
        };
        let options = LoadOptions {
            project_dirs: record.project_dirs.iter().map(|(k, v)| (k.clone(), PathBuf::from(v))).collect(),
            local_root: self.inner.config.project_root.clone(),
            ..LoadOptions::default()
        };
        let dag = parse_dag_with(&record.dag_text, Path::new(&record.base_dir), &overrides, &options)
            .map_err(HostError::Invalid)?;
        let tracking = match (&record.tracking, &self.inner.mlflow) {
            (Some(run), Some(client)) => Some((
                RunTree::new(client.clone()),
                RunTracking { uri: client.tracking_uri().to_string(), ..run.clone() },
            )),
            _ => None,
        };
        let unfinished = dag
            .stages
            .keys()
            .filter(|stage| match self.inner.store.stage(&record.run_id, stage) {
                Ok(Some(stage)) => stage.published < stage.shards_total,
                _ => true,
            })
            .cloned()
            .collect();
        let plan = plan_stages(&dag, self.inner.mlflow.as_ref(), &unfinished).await?;
        tracing::info!(run = %record.run_id, dag = %dag.name, "resuming the run");
        self.start(record, dag, plan, tracking, true).await
    }

    /// Registers the run and spawns its driver; its workers go to the host's clusters when it
    /// has some, else to the local pool.
    async fn start(
        &self,
        record: RunRecord,
        dag: Dag,
        plan: Plan,
        tracking: Option<(RunTree, RunTracking)>,
        resume: bool,
    ) -> Result<(), HostError> {
        let mut control = RunControl {
            cancel: CancellationToken::new(),
            stop: self.inner.stopping.child_token(),
            tap: None,
            executor: None,
        };
        let mut cleanup = None;
        if let Some(pods) = &self.inner.config.pods {
            let executor = KubernetesExecutor::connect(KubernetesConfig {
                run_id: record.run_id.clone(),
                clusters: pods.clusters.clone(),
                stages: crate::cli::stage_launches(&dag, &pods.clusters)?,
                nats_url: pods.nats_url.clone(),
                idle_timeout: pods.idle_timeout,
                leases: Some(Leases(self.inner.queue.leases())),
            })
            .await;
            for (cluster, why) in executor.unreachable() {
                tracing::warn!(run = %record.run_id, cluster, why, "a cluster cannot be used; its share goes to the others");
            }
            cleanup = Some(executor.cleanup());
            control.executor = Some(RunExecutor::Kubernetes(Box::new(executor)));
        }
        let run_id = record.run_id.clone();
        let (driver, events) = self.prepare(record, dag, plan, tracking, resume, &mut control)?;
        let host = self.clone();
        let task = tokio::spawn(async move {
            // The outcome is in the run's view; an error is logged there.
            let _ = host.drive(run_id, driver, events, control.tap).await;
            if let Some(cleanup) = cleanup {
                cleanup.run(POD_CLEANUP_GRACE).await;
            }
        });
        self.inner.drivers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(task);
        Ok(())
    }

    /// Drives, in the caller's task, a run recorded outside the host: how `concurrent run` and
    /// `concurrent resume` drive theirs, with the same host, driver and core as a submitted run.
    /// `control` carries the caller's cancel and stop, and a copy of every event for its
    /// progress bars. Returns the run's figures when it ends, is cancelled or stops.
    pub async fn drive_here(
        &self,
        record: RunRecord,
        dag: Dag,
        plan: Plan,
        tracking: Option<(RunTree, RunTracking)>,
        resume: bool,
        mut control: RunControl,
    ) -> Result<RunSummary, HostError> {
        let run_id = record.run_id.clone();
        let (driver, events) = self.prepare(record, dag, plan, tracking, resume, &mut control)?;
        Ok(self.clone().drive(run_id, driver, events, control.tap).await?)
    }

    /// Registers the run with its view and watchers, and makes its driver.
    fn prepare(
        &self,
        record: RunRecord,
        dag: Dag,
        plan: Plan,
        tracking: Option<(RunTree, RunTracking)>,
        resume: bool,
        control: &mut RunControl,
    ) -> Result<(Driver<RunExecutor>, mpsc::UnboundedReceiver<RunEvent>), HostError> {
        let order: Vec<String> = dag.order().into_iter().map(|s| s.name.clone()).collect();
        let view = RunView::from_store(&record, &order, &self.inner.store)?;
        let (changes, _) = broadcast::channel(WATCH_BACKLOG);
        let (events, events_rx) = mpsc::unbounded_channel();
        let setup = RunSetup {
            run_id: record.run_id.clone(),
            dag,
            dag_path: PathBuf::from(&record.dag_path),
            plan,
            store: self.inner.store.clone(),
            queue: self.inner.queue.clone(),
            executor: match control.executor.take() {
                Some(executor) => executor,
                None => RunExecutor::Local(self.inner.pool.for_run(&record.run_id, record.priority.unwrap_or(1))),
            },
            tracking,
            state_dir: self.inner.config.state_dir.clone(),
            events: Some(events),
            cancel: control.cancel.clone(),
            stop: control.stop.clone(),
        };
        let driver = if resume { Driver::resume(setup)? } else { Driver::new(setup) };
        let live = LiveRun { view, changes, cancel: control.cancel.clone() };
        self.runs().insert(record.run_id.clone(), live);
        Ok((driver, events_rx))
    }

    /// Drives one run to its end, folding its events into its view (and copying them to
    /// `tap`); returns the run's figures.
    async fn drive(
        self,
        run_id: String,
        driver: Driver<RunExecutor>,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
        tap: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<RunSummary, DriverError> {
        let run = driver.run();
        tokio::pin!(run);
        let forward = |host: &RunHost, event: RunEvent| {
            host.apply(&run_id, &event);
            if let Some(tap) = &tap {
                let _ = tap.send(event);
            }
        };
        let result = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => forward(&self, event),
                result = &mut run => break result,
            }
        };
        while let Ok(event) = events.try_recv() {
            forward(&self, event);
        }
        let state = match &result {
            Ok(summary) => match summary.outcome {
                Some(crate::run_state::RunOutcome::Succeeded) => RunState::Succeeded,
                Some(crate::run_state::RunOutcome::Failed) => RunState::Failed,
                None if self.inner.stopping.is_cancelled() => {
                    tracing::info!(run = %run_id, "service stopping: the run is left to resume");
                    return result;
                }
                None => RunState::Cancelled,
            },
            Err(error) => {
                tracing::error!(run = %run_id, %error, "the run stopped on an error; it can be resumed");
                return result;
            }
        };
        let mut runs = self.runs();
        if let Some(live) = runs.get_mut(&run_id) {
            live.view.end(state, now_ms());
            let change = RunChange {
                kind: "run_ended",
                stage: None,
                shard: None,
                message: state.as_str().to_string(),
                run: live.view.clone(),
            };
            let _ = live.changes.send(change);
        }
        drop(runs);
        result
    }

    /// Folds one event into the run's view and tells its watchers.
    fn apply(&self, run_id: &str, event: &RunEvent) {
        let (kind, stage, shard, message) = describe(event);
        match event {
            RunEvent::AttemptFailed { stage, .. } => self.inner.metrics.attempt_failed(run_id, stage),
            RunEvent::ShardDecided { stage, succeeded, .. } => {
                self.inner.metrics.shard_decided(run_id, stage, *succeeded);
            }
            _ => {}
        }
        if let RunEvent::RunEnded { outcome } = event {
            // Watchers are told once the driver has returned, with the final figures.
            let state = match outcome {
                crate::run_state::RunOutcome::Succeeded => RunState::Succeeded,
                crate::run_state::RunOutcome::Failed => RunState::Failed,
            };
            if let Some(live) = self.runs().get_mut(run_id) {
                live.view.end(state, now_ms());
            }
            return;
        }
        if let Some(live) = self.runs().get_mut(run_id) {
            live.view.apply(event);
            let change = RunChange { kind, stage, shard, message, run: live.view.clone() };
            let _ = live.changes.send(change);
        }
    }

    /// One run's status.
    pub fn get(&self, run_id: &str) -> Result<RunView, HostError> {
        let workers = self.workers_per_stage();
        if let Some(live) = self.runs().get_mut(run_id) {
            if !live.view.status.is_ended() {
                live.view.set_workers(workers.get(run_id).unwrap_or(&BTreeMap::new()));
            }
            return Ok(live.view.clone());
        }
        self.cold_view(run_id)
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunView>, HostError> {
        let mut records = self.inner.store.runs()?;
        records.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| b.run_id.cmp(&a.run_id)));
        records.into_iter().map(|record| self.get(&record.run_id)).collect()
    }

    /// A run not driven by this service (ended before it started), from the store.
    fn cold_view(&self, run_id: &str) -> Result<RunView, HostError> {
        if !is_valid_run_id(run_id) {
            return Err(HostError::NotFound { run_id: run_id.to_string() });
        }
        let record = self.inner.store.run(run_id)?.ok_or_else(|| HostError::NotFound { run_id: run_id.to_string() })?;
        let mut stages: Vec<String> = self.inner.store.stages(run_id)?.into_iter().map(|(name, _)| name).collect();
        stages.sort();
        Ok(RunView::from_store(&record, &stages, &self.inner.store)?)
    }

    /// The run's changes from now on, after its status now.
    pub fn watch(&self, run_id: &str) -> Result<(RunView, broadcast::Receiver<RunChange>), HostError> {
        let view = self.get(run_id)?;
        match self.runs().get(run_id) {
            Some(live) => Ok((view, live.changes.subscribe())),
            None => {
                // Not live: a closed channel, so the watcher gets the status and the end.
                let (closed, receiver) = broadcast::channel(1);
                drop(closed);
                Ok((view, receiver))
            }
        }
    }

    /// The run's status now (kind `status`), then each change, ending with its end (or when
    /// it stops being driven here).
    pub fn changes(&self, run_id: &str) -> Result<impl futures::Stream<Item = RunChange> + Send + 'static, HostError> {
        let (view, changes) = self.watch(run_id)?;
        let first = RunChange { kind: "status", stage: None, shard: None, message: String::new(), run: view };
        Ok(futures::stream::unfold(Some((Some(first), changes)), |state| async move {
            let (pending, mut changes) = state?;
            let change = match pending {
                Some(change) => change,
                None => loop {
                    match changes.recv().await {
                        Ok(change) => break change,
                        // Every change carries the whole run: skipping some loses nothing.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            let ended = change.run.status.is_ended();
            Some((change, if ended { None } else { Some((None, changes)) }))
        }))
    }

    /// Cancels a running run; its driver ends the MLflow runs KILLED.
    pub fn cancel(&self, run_id: &str) -> Result<(), HostError> {
        let view = self.get(run_id)?;
        if view.status.is_ended() {
            return Err(HostError::AlreadyEnded { run_id: run_id.to_string(), status: view.status.as_str() });
        }
        match self.runs().get(run_id) {
            Some(live) => {
                live.cancel.cancel();
                Ok(())
            }
            None => Err(HostError::NotFound { run_id: run_id.to_string() }),
        }
    }

    /// The entry point log of a shard attempt (the latest when `attempt` is `None`).
    pub async fn shard_log(
        &self,
        run_id: &str,
        stage: &str,
        shard: u32,
        attempt: Option<u32>,
    ) -> Result<ShardLog, HostError> {
        let record = self.inner.store.run(run_id)?.ok_or_else(|| HostError::NotFound { run_id: run_id.to_string() })?;
        let not_found = || HostError::NoLog { run_id: run_id.to_string(), stage: stage.to_string(), shard, attempt };
        let stage_record = self.inner.store.stage(run_id, stage)?.ok_or_else(not_found)?;
        match (&record.tracking, &self.inner.mlflow) {
            (Some(_), Some(client)) => {
                let stage_run = stage_record.mlflow_run_id.ok_or_else(not_found)?;
                super::logs::from_mlflow(client, &stage_run, shard, attempt).await?.ok_or_else(not_found)
            }
            _ => {
                let logs = self.inner.config.state_dir.join("outputs").join(run_id).join("logs");
                super::logs::from_dir(&logs, stage, shard, attempt)?.ok_or_else(not_found)
            }
        }
    }

    /// Stops driving every run without ending it: workers stop (their shards go back to
    /// JetStream), drivers stop; a restarted service resumes them. Waits up to `grace` more
    /// than the drivers' own worker grace, then stops what is left.
    pub async fn stop(&self, grace: Duration) {
        self.inner.stopping.cancel();
        let drivers = std::mem::take(&mut *self.inner.drivers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let all = futures::future::join_all(drivers);
        if tokio::time::timeout(grace * 2, all).await.is_err() {
            tracing::warn!("some runs did not stop in time; their workers are stopped now");
        }
        self.inner.pool.shutdown(grace).await;
        self.inner.store.flush().await.ok();
    }

    /// The DAG parsed with the request's overrides and uploaded projects.
    fn parse(&self, request: &SubmitRequest) -> Result<(Dag, BTreeMap<String, PathBuf>), HostError> {
        let mut project_dirs = BTreeMap::new();
        for (written, name) in &request.projects {
            let dir = self
                .inner
                .uploads
                .dir(name)
                .ok_or_else(|| HostError::UnknownSnapshot { project: written.clone(), snapshot: name.clone() })?;
            project_dirs.insert(written.clone(), dir);
        }
        let options = LoadOptions {
            project_dirs: project_dirs.clone(),
            local_root: self.inner.config.project_root.clone(),
            ..LoadOptions::default()
        };
        let overrides = overrides(request)?;
        let dag = parse_dag_with(&request.dag, &self.inner.config.base_dir, &overrides, &options)
            .map_err(HostError::Invalid)?;
        Ok((dag, project_dirs))
    }

    /// The plan, when every input can be listed now.
    async fn plan_if_listable(&self, dag: &Dag) -> Result<Option<Plan>, HostError> {
        let needs_mlflow = dag.order().into_iter().any(|stage| crate::cli::reads_mlflow(dag, stage));
        if needs_mlflow && self.inner.mlflow.is_none() {
            return Ok(None);
        }
        Ok(Some(plan(dag, self.inner.mlflow.as_ref()).await?))
    }

    /// Workers alive now per run, stage and cluster.
    fn workers_per_stage(&self) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, u32>>> {
        let mut workers: BTreeMap<String, BTreeMap<String, BTreeMap<String, u32>>> = BTreeMap::new();
        for (stage, n) in self.inner.pool.alive_per_stage() {
            workers.entry(stage.run_id).or_default().entry(stage.stage).or_default().insert("local".into(), n);
        }
        workers
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<String, LiveRun>> {
        self.inner.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The request's input and parameters as DAG overrides.
fn overrides(request: &SubmitRequest) -> Result<Overrides, HostError> {
    let mut parameters = Vec::new();
    for (key, value) in &request.parameters {
        let (stage, param) = key.split_once('.').filter(|(s, p)| !s.is_empty() && !p.is_empty()).ok_or_else(|| {
            HostError::BadRequest { place: format!("parameters.{key}"), message: "expected `stage.param`".to_string() }
        })?;
        parameters.push((stage.to_string(), param.to_string(), value.clone()));
    }
    Ok(Overrides { input: request.input.clone(), parameters, env_manager: None })
}

/// What a run event is called on the API, and what it names.
fn describe(event: &RunEvent) -> (&'static str, Option<String>, Option<u32>, String) {
    match event {
        RunEvent::StageStarted { stage, shards, objects } => {
            ("stage_started", Some(stage.clone()), None, crate::driver::objects_and_shards(*shards, *objects))
        }
        RunEvent::ShardsCut { stage, shards } => {
            ("shards_cut", Some(stage.clone()), None, format!("{shards} shards cut so far"))
        }
        RunEvent::StageFailedToStart { stage, reason } => {
            ("stage_failed_to_start", Some(stage.clone()), None, reason.clone())
        }
        RunEvent::AttemptFailed { stage, shard, attempt, reason } => {
            ("attempt_failed", Some(stage.clone()), Some(*shard), format!("attempt {attempt}: {reason}"))
        }
        RunEvent::ShardDecided { stage, shard, succeeded } => {
            let outcome = if *succeeded { "succeeded" } else { "failed" };
            ("shard_decided", Some(stage.clone()), Some(*shard), outcome.to_string())
        }
        RunEvent::StageEnded { stage, status } => {
            ("stage_ended", Some(stage.clone()), None, super::view::stage_status_name(*status).to_string())
        }
        RunEvent::StageSkipped { stage } => ("stage_skipped", Some(stage.clone()), None, String::new()),
        RunEvent::RunEnded { .. } => ("run_ended", None, None, String::new()),
    }
}
