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
use crate::dag::Dag;
use crate::executor::local::LocalConfig;
use crate::executor::{LocalExecutor, WorkerPool};
use crate::plan::Plan;
use crate::queue::Queue;
use crate::run_state::RunOutcome;
use crate::run_tree::RunTree;
use crate::service::{HostConfig, RunControl, RunHost};
use crate::store::{RunTracking, Store};

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

/// Drives a recorded run to its end and prints the summary; returns the exit code.
pub async fn drive(
    recorded: Recorded,
    options: &WorkerArgs,
    services: &Services,
    state_dir: &Path,
    signals: &Signals,
    disk: &DiskWatch,
) -> u8 {
    let workers = options.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
    let executor = LocalExecutor::new(LocalConfig {
        worker_binary: LocalExecutor::default_worker_binary(),
        nats_url: services.nats_url.clone(),
        max_workers: workers,
        idle_timeout: options.idle_timeout,
        state_dir: state_dir.to_path_buf(),
    });
    let verb = if recorded.resume { "resuming run" } else { "run" };
    say!("{verb} {}: {} ({} stages, {workers} workers)", recorded.run_id, recorded.dag.name, recorded.dag.stages.len());
    let (events, progress) = Progress::start(&recorded.dag);
    let run_id = recorded.run_id.clone();
    // SIGTERM, SIGHUP or a filling disk stop the run and leave it resumable.
    let stop = signals.stop.child_token();
    let disk_watch = disk.spawn(stop.clone());
    let result = drive_here(recorded, executor, services, state_dir, signals, &stop, events).await;
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

/// Drives the recorded run through an in-process [`RunHost`] over the local executor.
async fn drive_here(
    recorded: Recorded,
    executor: LocalExecutor,
    services: &Services,
    state_dir: &Path,
    signals: &Signals,
    stop: &tokio_util::sync::CancellationToken,
    events: tokio::sync::mpsc::UnboundedSender<crate::driver::RunEvent>,
) -> Result<crate::driver::RunSummary, crate::service::error::HostError> {
    let config =
        HostConfig { state_dir: state_dir.to_path_buf(), base_dir: state_dir.to_path_buf(), project_root: None };
    let mlflow = recorded.tracking.as_ref().map(|(tree, _)| tree.client().clone());
    let _ = services;
    let host = RunHost::new(config, recorded.store.clone(), recorded.queue, mlflow, WorkerPool::new(executor));
    let record = match recorded.store.run(&recorded.run_id)? {
        Some(record) => record,
        None => return Err(crate::service::error::HostError::NotFound { run_id: recorded.run_id }),
    };
    let record = crate::store::RunRecord { dag_path: recorded.dag_path.display().to_string(), ..record };
    let control = RunControl { cancel: signals.cancel.clone(), stop: stop.clone(), tap: Some(events) };
    host.drive_here(record, recorded.dag, recorded.plan, recorded.tracking, recorded.resume, control).await
}
