//! `concurrent cancel RUN_ID`: asks the scheduler driving a run to cancel it (through NATS);
//! a run whose scheduler is gone has its MLflow runs still RUNNING ended KILLED, from what
//! the state dir knows, and is marked cancelled there.

use std::collections::BTreeMap;
use std::time::Duration;

use concurrent_mlflow::tracking::{MlflowClient, MlflowError, RunStatus as MlflowStatus};
use concurrent_proto::names;

use super::run::absolute;
use super::services::recorded_nats_url;
use super::{CancelArgs, EXIT_INVALID, EXIT_OK, EXIT_SERVICE};
use crate::executor::local::kill_leftover_entry_points;
use crate::run_id::is_valid_run_id;
use crate::run_tree::{RunTree, now_ms};
use crate::services::{ServiceError, start_mlflow};
use crate::store::{RunStatus, RunTracking, Store, StoreError};

/// How long the running scheduler has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Cancels a run; returns the exit code.
pub async fn cancel(args: CancelArgs) -> u8 {
    if !is_valid_run_id(&args.run_id) {
        say!("error: RUN_ID: `{}` is not a run id", args.run_id);
        return EXIT_INVALID;
    }
    let state_dir = absolute(&args.state_dir);
    let nats_url = std::env::var("NATS_URL").ok().filter(|u| !u.is_empty()).or_else(|| recorded_nats_url(&state_dir));
    if let Some(url) = nats_url
        && let Ok(client) = async_nats::connect(&url).await
    {
        let request = client.request(names::control_subject(&args.run_id), "cancel".into());
        match tokio::time::timeout(ANSWER_WITHIN, request).await {
            Ok(Ok(_)) => {
                out!("run {} cancelled", args.run_id);
                return EXIT_OK;
            }
            Ok(Err(error)) => tracing::debug!(%error, "no scheduler answered"),
            Err(_) => {
                say!("error: the scheduler of run {} did not answer within {ANSWER_WITHIN:?}", args.run_id);
                return EXIT_SERVICE;
            }
        }
    }
    // Nobody drives the run: mark it cancelled in the state dir.
    let store = match Store::open(&state_dir.join("state")) {
        Ok(store) => store,
        Err(StoreError::Busy { .. }) => {
            say!(
                "error: a scheduler holds the state dir {} but no scheduler of run {} answered through NATS \
                 (set NATS_URL to its server)",
                state_dir.display(),
                args.run_id
            );
            return EXIT_SERVICE;
        }
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    match store.run(&args.run_id) {
        Ok(Some(mut record)) if record.status == RunStatus::Running => {
            let killed = kill_leftover_entry_points(&state_dir, &record.run_id);
            if killed > 0 {
                say!("killed the entry points its dead workers left running: {killed}");
            }
            let ended = match &record.tracking {
                Some(tracking) => end_mlflow_runs(&store, &record.run_id, tracking, &state_dir).await,
                None => Ok(0),
            };
            let ended = match ended {
                Ok(ended) => ended,
                Err(error) => {
                    say!("error: cannot end the MLflow runs of run {}: {error}", args.run_id);
                    say!("the run stays RUNNING in {}; try again when MLflow answers", state_dir.display());
                    return EXIT_SERVICE;
                }
            };
            record.status = RunStatus::Cancelled;
            record.ended_ms = Some(now_ms());
            if store.put_run(&record).is_err() || store.flush().await.is_err() {
                say!("error: cannot record the cancellation in {}", state_dir.display());
                return EXIT_SERVICE;
            }
            match &record.tracking {
                Some(_) => out!(
                    "run {} cancelled (no scheduler was running it); {ended} MLflow runs left RUNNING were ended KILLED",
                    args.run_id
                ),
                None => out!("run {} cancelled (no scheduler was running it)", args.run_id),
            }
            EXIT_OK
        }
        Ok(Some(record)) => {
            say!("error: RUN_ID: run {} has already ended ({:?})", args.run_id, record.status);
            EXIT_INVALID
        }
        Ok(None) => {
            say!("error: RUN_ID: no run {} in {}", args.run_id, state_dir.display());
            EXIT_INVALID
        }
        Err(error) => {
            say!("error: {error}");
            EXIT_SERVICE
        }
    }
}

/// Why the MLflow runs of a run whose scheduler is gone could not be ended.
#[derive(Debug, thiserror::Error)]
enum EndRunsError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Ends KILLED the MLflow runs still RUNNING of a run whose scheduler is gone: its shard
/// runs, the stage runs sled knows, and the DAG run. The tracking server is
/// `MLFLOW_TRACKING_URI`, else the state dir's own MLflow (started for this) when the run was
/// tracked there, else the URI the run was recorded with. Returns how many runs were ended.
async fn end_mlflow_runs(
    store: &Store,
    run_id: &str,
    tracking: &RunTracking,
    state_dir: &std::path::Path,
) -> Result<usize, EndRunsError> {
    let own_mlflow = state_dir.join("mlflow");
    let mut child = None;
    let uri = match std::env::var("MLFLOW_TRACKING_URI").ok().filter(|u| !u.is_empty()) {
        Some(uri) => uri,
        // A run tracked by the state dir's own MLflow recorded that child's loopback URI.
        None if own_mlflow.join("mlflow.db").is_file() && tracking.uri.starts_with("http://127.0.0.1:") => {
            say!("starting MLflow on {} to end the run's MLflow runs", own_mlflow.display());
            let started = start_mlflow(&own_mlflow).await?;
            let uri = started.url.clone();
            child = Some(started);
            uri
        }
        None => tracking.uri.clone(),
    };
    let ended = end_runs_at(&uri, store, run_id, tracking).await;
    if let Some(child) = child {
        child.stop().await;
    }
    ended
}

async fn end_runs_at(uri: &str, store: &Store, run_id: &str, tracking: &RunTracking) -> Result<usize, EndRunsError> {
    let client = MlflowClient::new(uri)?;
    let tree = RunTree::new(client.clone());
    let mut ended = 0;
    for (_, stage) in store.stages(run_id)? {
        let Some(stage_run) = stage.mlflow_run_id else { continue };
        ended += tree.kill_running_children(&stage_run, &BTreeMap::new()).await?;
        if client.get_run(&stage_run).await?.info.status == MlflowStatus::Running {
            tree.end_run(&stage_run, &[], MlflowStatus::Killed).await?;
            ended += 1;
        }
    }
    if client.get_run(&tracking.parent_run_id).await?.info.status == MlflowStatus::Running {
        tree.end_run(&tracking.parent_run_id, &[], MlflowStatus::Killed).await?;
        ended += 1;
    }
    Ok(ended)
}
