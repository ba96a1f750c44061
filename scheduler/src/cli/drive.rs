//! What `run` and `resume` share once the run is recorded: the local executor, progress
//! bars, Ctrl-C, the summary and the exit code. The run is driven by the same [`RunHost`] as
//! the service's runs, in this process and without a listening socket.

use std::path::Path;

use super::preflight::DiskWatch;
use super::progress::Progress;
use super::services::Services;
use super::signals::Signals;
use super::summary::print_summary;
use super::{EXIT_OK, EXIT_RUN_FAILED, EXIT_SERVICE, WorkerArgs};
use crate::clusters::ClustersFile;
use crate::dag::Dag;
use crate::executor::kubernetes::{KubernetesConfig, KubernetesExecutor, Leases};
use crate::executor::local::LocalConfig;
use crate::executor::{LocalExecutor, RunExecutor, WorkerPool};
use crate::plan::Plan;
use crate::queue::Queue;
use crate::run_state::RunOutcome;
use crate::run_tree::RunTree;
use crate::service::{HostConfig, RunControl, RunHost};
use crate::store::{RunStatus, RunTracking, Store};

/// A recorded run, ready to be driven.
pub struct Recorded {
    pub run_id: String,
    pub dag: Dag,
    pub dag_path: std::path::PathBuf,
    pub plan: Plan,
    pub store: Store,
    pub queue: Queue,
    pub tracking: Option<(RunTree, RunTracking)>,
    /// True to pick up a run a previous scheduler left unfinished.
    pub resume: bool,
}

/// Where a run's workers go.
pub enum WorkerPlace<'a> {
    /// Local processes.
    Local(&'a WorkerArgs),
    /// Pods in the clusters of a clusters file.
    Kubernetes { clusters: &'a ClustersFile, idle_timeout: std::time::Duration },
}

/// Drives a recorded run to its end and prints the summary; returns the exit code.
pub async fn drive(
    recorded: Recorded,
    place: WorkerPlace<'_>,
    services: &Services,
    state_dir: &Path,
    signals: &Signals,
    disk: &DiskWatch,
) -> u8 {
    let verb = if recorded.resume { "resuming run" } else { "run" };
    let (workers, pods) = match place {
        WorkerPlace::Local(options) => {
            let workers =
                options.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
            say!(
                "{verb} {}: {} ({} stages, {workers} workers)",
                recorded.run_id,
                recorded.dag.name,
                recorded.dag.stages.len()
            );
            (local_executor(services, state_dir, workers, options.idle_timeout), None)
        }
        WorkerPlace::Kubernetes { clusters, idle_timeout } => {
            let executor = match kubernetes_executor(&recorded, clusters, idle_timeout, services).await {
                Ok(executor) => executor,
                Err(code) => return code,
            };
            let names: Vec<&str> = clusters.clusters.iter().map(|c| c.name.as_str()).collect();
            say!(
                "{verb} {}: {} ({} stages, clusters {})",
                recorded.run_id,
                recorded.dag.name,
                recorded.dag.stages.len(),
                names.join(", ")
            );
            (local_executor(services, state_dir, 1, idle_timeout), Some(executor))
        }
    };
    let cleanup = pods.as_ref().map(KubernetesExecutor::cleanup);
    let executor = pods.map(|pods| RunExecutor::Kubernetes(Box::new(pods)));
    let (events, progress) = Progress::start(&recorded.dag);
    let run_id = recorded.run_id.clone();
    // SIGTERM, SIGHUP or a filling disk stop the run and leave it resumable.
    let stop = signals.stop.child_token();
    let disk_watch = disk.spawn(stop.clone());
    let result = drive_here(recorded, workers, executor, state_dir, signals, &stop, events).await;
    disk_watch.abort();
    progress.finish().await;
    if let Some(cleanup) = cleanup {
        // The run's Jobs go with it, whatever its end (cancel and stop deleted them already).
        cleanup.run(std::time::Duration::from_secs(5)).await;
    }
    match result {
        Ok(summary) => {
            // Stopped (SIGTERM, SIGHUP, a full disk) rather than cancelled: the run stays resumable.
            let resumable = stop.is_cancelled() && !signals.cancel.is_cancelled();
            print_summary(&summary, services, state_dir, resumable);
            match summary.outcome {
                Some(RunOutcome::Succeeded) => EXIT_OK,
                Some(RunOutcome::Failed) => EXIT_RUN_FAILED,
                None => {
                    if resumable {
                        say!(
                            "run {run_id} stopped before its end; carry it on with: concurrent resume {run_id} --state-dir {}",
                            state_dir.display()
                        );
                    }
                    match (disk.short(), signals.received()) {
                        (Some(_), _) => EXIT_SERVICE,
                        (None, Some(signal)) => signal.exit_code(),
                        (None, None) => EXIT_RUN_FAILED,
                    }
                }
            }
        }
        Err(error) => {
            say!("error: {error}");
            if let Err(short) = disk.check() {
                say!("error: {short}");
            }
            services.explain_failure();
            say!("run {run_id} is left to resume: concurrent resume {run_id} --state-dir {}", state_dir.display());
            EXIT_SERVICE
        }
    }
}

/// The local executor of this machine.
fn local_executor(
    services: &Services,
    state_dir: &Path,
    workers: u32,
    idle_timeout: std::time::Duration,
) -> LocalExecutor {
    LocalExecutor::new(LocalConfig {
        worker_binary: LocalExecutor::default_worker_binary(),
        nats_url: services.nats_url.clone(),
        max_workers: workers,
        idle_timeout,
        state_dir: state_dir.to_path_buf(),
    })
}

/// The Kubernetes executor of the run, connected to its clusters; what runs that ended left in
/// them removed. Every cluster unreachable: exit 3, the run left to resume.
async fn kubernetes_executor(
    recorded: &Recorded,
    clusters: &ClustersFile,
    idle_timeout: std::time::Duration,
    services: &Services,
) -> Result<KubernetesExecutor, u8> {
    let stages = super::kubernetes::stage_launches(&recorded.dag, clusters).map_err(|error| {
        say!("error: {error}");
        super::EXIT_INVALID
    })?;
    let executor = KubernetesExecutor::connect(KubernetesConfig {
        run_id: recorded.run_id.clone(),
        clusters: clusters.clone(),
        stages,
        nats_url: services.nats_url.clone(),
        idle_timeout,
        leases: Some(Leases(recorded.queue.leases())),
    })
    .await;
    executor.settle(std::time::Duration::from_secs(5)).await;
    // What runs that ended while their scheduler was down left in the clusters goes.
    let ended: std::collections::BTreeSet<String> = recorded
        .store
        .runs()
        .map(|runs| runs.into_iter().filter(|r| r.status != RunStatus::Running).map(|r| r.run_id).collect())
        .unwrap_or_default();
    for job in executor.remove_runs(&ended).await {
        say!("removed {job}, left by a run that has ended");
    }
    let unreachable = executor.unreachable();
    for (cluster, why) in &unreachable {
        say!("warning: cluster {cluster} cannot be used: {why}; its share of the work goes to the others");
    }
    if unreachable.len() == clusters.clusters.len() {
        say!("error: no cluster of the clusters file can be reached");
        say!("run {} is left to resume: concurrent resume {} --clusters FILE", recorded.run_id, recorded.run_id);
        return Err(EXIT_SERVICE);
    }
    Ok(executor)
}

/// Drives the recorded run through an in-process [`RunHost`]: its workers go to `executor`,
/// else to the host's pool over `local`.
async fn drive_here(
    recorded: Recorded,
    local: LocalExecutor,
    executor: Option<RunExecutor>,
    state_dir: &Path,
    signals: &Signals,
    stop: &tokio_util::sync::CancellationToken,
    events: tokio::sync::mpsc::UnboundedSender<crate::driver::RunEvent>,
) -> Result<crate::driver::RunSummary, crate::service::error::HostError> {
    let config = HostConfig {
        state_dir: state_dir.to_path_buf(),
        base_dir: state_dir.to_path_buf(),
        project_root: None,
        pods: None,
    };
    let mlflow = recorded.tracking.as_ref().map(|(tree, _)| tree.client().clone());
    let host = RunHost::new(config, recorded.store.clone(), recorded.queue, mlflow, WorkerPool::new(local));
    let record = match recorded.store.run(&recorded.run_id)? {
        Some(record) => record,
        None => return Err(crate::service::error::HostError::NotFound { run_id: recorded.run_id }),
    };
    let record = crate::store::RunRecord { dag_path: recorded.dag_path.display().to_string(), ..record };
    let control = RunControl { cancel: signals.cancel.clone(), stop: stop.clone(), tap: Some(events), executor };
    host.drive_here(record, recorded.dag, recorded.plan, recorded.tracking, recorded.resume, control).await
}
