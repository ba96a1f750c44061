//! What `run` and `resume` share once the run is recorded: the local executor, progress
//! bars, Ctrl-C, driving the run, the summary and the exit code.

use std::path::Path;

use super::preflight::DiskWatch;
use super::progress::Progress;
use super::services::Services;
use super::signals::Signals;
use super::summary::print_summary;
use super::{EXIT_OK, EXIT_RUN_FAILED, EXIT_SERVICE, WorkerArgs};
use crate::clusters::ClustersFile;
use crate::dag::Dag;
use crate::driver::{Driver, RunSetup};
use crate::executor::kubernetes::{KubernetesConfig, KubernetesExecutor, Leases};
use crate::executor::local::LocalConfig;
use crate::executor::{Executor, LocalExecutor};
use crate::plan::Plan;
use crate::queue::Queue;
use crate::run_state::RunOutcome;
use crate::run_tree::RunTree;
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
    match place {
        WorkerPlace::Local(options) => {
            let workers =
                options.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
            let executor = LocalExecutor::new(LocalConfig {
                worker_binary: LocalExecutor::default_worker_binary(),
                nats_url: services.nats_url.clone(),
                max_workers: workers,
                idle_timeout: options.idle_timeout,
                state_dir: state_dir.to_path_buf(),
            });
            say!(
                "{verb} {}: {} ({} stages, {workers} workers)",
                recorded.run_id,
                recorded.dag.name,
                recorded.dag.stages.len()
            );
            drive_with(recorded, executor, services, state_dir, signals, disk).await
        }
        WorkerPlace::Kubernetes { clusters, idle_timeout } => {
            let stages = match super::kubernetes::stage_launches(&recorded.dag) {
                Ok(stages) => stages,
                Err(error) => {
                    say!("error: {error}");
                    return super::EXIT_INVALID;
                }
            };
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
                say!(
                    "run {} is left to resume: concurrent resume {} --clusters FILE",
                    recorded.run_id,
                    recorded.run_id
                );
                return EXIT_SERVICE;
            }
            let names: Vec<&str> = clusters.clusters.iter().map(|c| c.name.as_str()).collect();
            say!(
                "{verb} {}: {} ({} stages, clusters {})",
                recorded.run_id,
                recorded.dag.name,
                recorded.dag.stages.len(),
                names.join(", ")
            );
            let cleanup = executor.cleanup();
            let code = drive_with(recorded, executor, services, state_dir, signals, disk).await;
            // The run's Jobs go with it, whatever its end (cancel and stop deleted them already).
            cleanup.run(std::time::Duration::from_secs(5)).await;
            code
        }
    }
}

/// [`drive`] with the executor made.
async fn drive_with<E: Executor>(
    recorded: Recorded,
    executor: E,
    services: &Services,
    state_dir: &Path,
    signals: &Signals,
    disk: &DiskWatch,
) -> u8 {
    let (events, progress) = Progress::start(&recorded.dag);
    let run_id = recorded.run_id.clone();
    // SIGTERM, SIGHUP or a filling disk stop the run and leave it resumable.
    let stop = signals.stop.child_token();
    let disk_watch = disk.spawn(stop.clone());
    let setup = RunSetup {
        run_id: recorded.run_id,
        dag: recorded.dag,
        dag_path: recorded.dag_path,
        plan: recorded.plan,
        store: recorded.store,
        queue: recorded.queue,
        executor,
        tracking: recorded.tracking,
        state_dir: state_dir.to_path_buf(),
        events: Some(events),
        cancel: signals.cancel.clone(),
        stop: stop.clone(),
    };
    let result = if recorded.resume { Driver::resume(setup) } else { Ok(Driver::new(setup)) };
    let result = match result {
        Ok(driver) => driver.run().await,
        Err(error) => Err(error),
    };
    disk_watch.abort();
    progress.finish().await;
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
