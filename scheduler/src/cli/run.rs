//! `concurrent run FILE`: validate, plan, start or reach the services, record, drive, report.

use std::path::{Path, PathBuf};

use concurrent_mlflow::tracking::{MlflowClient, MlflowError};

use super::drive::{Recorded, WorkerPlace, drive};
use super::preflight::{DiskWatch, check_state_dir};
use super::services::{Services, TrackingChoice, check_named_services, nats_url_from_env};
use super::signals::Signals;
use super::{EXIT_INVALID, EXIT_SERVICE, RunArgs};
use crate::dag::Dag;
use crate::inputs::{StageInput, source_of};
use crate::plan::{Plan, plan};
use crate::queue::Queue;
use crate::run_id::new_run_id;
use crate::run_tree::RunTree;
use crate::store::{RunRecord, RunTracking, Store, StoreError};

/// Runs a DAG; returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            say!("error: cannot catch stop signals: {error}");
            return EXIT_SERVICE;
        }
    };
    let Some((dag, dag_path)) = super::validate::load_dag_args(&args.dag) else { return EXIT_INVALID };
    let clusters = match &args.clusters {
        Some(path) => match super::kubernetes::load_for_run(path, &dag) {
            Some(file) => Some(file),
            None => return EXIT_INVALID,
        },
        None => None,
    };
    let tracking = TrackingChoice::from_flag(args.tracking.as_deref());
    if tracking == TrackingChoice::Off
        && let Some(stage) = dag.order().into_iter().find(|s| reads_mlflow(&dag, s))
    {
        say!("error: stages.{}.input: reading MLflow artifacts needs tracking; drop `--tracking none`", stage.name);
        return EXIT_INVALID;
    }
    // Inputs that do not need MLflow are listed before anything is created.
    let early_plan =
        if dag.order().into_iter().any(|s| reads_mlflow(&dag, s)) { None } else { Some(plan(&dag, None).await) };
    let early_plan = match early_plan.transpose() {
        Ok(plan) => plan,
        Err(error) => {
            say!("error: {error}");
            return EXIT_INVALID;
        }
    };
    // Services named by the environment or flags are checked before anything is created.
    if let Err(code) = check_named_services(&tracking, &dag.experiment).await {
        return code;
    }
    let state_dir = absolute(&args.state_dir);
    if !check_state_dir(&state_dir) {
        return EXIT_INVALID;
    }
    let disk = DiskWatch::new(&state_dir, nats_url_from_env().is_none(), args.disk.min_free_space);
    if let Err(error) = disk.check() {
        say!("error: {error}");
        return EXIT_INVALID;
    }
    // The store first: it holds the state dir, whose services another scheduler may be running.
    let store = match open_store(&state_dir) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let services = match Services::start(&state_dir, &tracking).await {
        Ok(services) => services,
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let code = match record(&args, dag, dag_path, early_plan, &services, store).await {
        Ok(recorded) => {
            let place = match &clusters {
                Some(clusters) => WorkerPlace::Kubernetes { clusters, idle_timeout: args.workers.idle_timeout },
                None => WorkerPlace::Local(&args.workers),
            };
            drive(recorded, place, &services, &state_dir, &signals, &disk).await
        }
        Err(code) => {
            services.explain_failure();
            code
        }
    };
    services.stop().await;
    code
}

/// Plans what needs MLflow, connects, and records the run in sled and MLflow.
async fn record(
    args: &RunArgs,
    dag: Dag,
    dag_path: PathBuf,
    early_plan: Option<Plan>,
    services: &Services,
    store: Store,
) -> Result<Recorded, u8> {
    let client = services.tracking_uri.as_deref().map(MlflowClient::new).transpose().map_err(|error| {
        say!("error: tracking server: {error}");
        EXIT_INVALID
    })?;
    let plan = match early_plan {
        Some(plan) => plan,
        None => plan(&dag, client.as_ref()).await.map_err(|error| {
            say!("error: {error}");
            EXIT_INVALID
        })?,
    };
    let queue = Queue::connect(&services.nats_url).await.map_err(|error| {
        say!("error: {error}");
        EXIT_SERVICE
    })?;
    let run_id = new_run_id();
    let tracking = match &client {
        None => None,
        Some(client) => Some(track(client, &dag, &run_id).await.map_err(|error| {
            say!("error: MLflow at {}: {error}", client.tracking_uri());
            EXIT_SERVICE
        })?),
    };
    let overrides = args.dag.overrides().unwrap_or_default();
    let record = RunRecord::starting(&run_id, &dag, &dag_path, overrides, tracking.as_ref().map(|(_, t)| t.clone()));
    store.put_run(&record).and(Ok(())).map_err(|error| {
        say!("error: {error}");
        EXIT_SERVICE
    })?;
    Ok(Recorded { run_id, dag, dag_path, plan, store, queue, tracking, resume: false })
}

/// Creates the DAG run in MLflow.
pub(crate) async fn track(
    client: &MlflowClient,
    dag: &Dag,
    run_id: &str,
) -> Result<(RunTree, RunTracking), MlflowError> {
    let tree = RunTree::new(client.clone());
    let experiment_id = tree.experiment(dag).await?;
    let parent = tree.create_dag_run(&experiment_id, dag, run_id).await?;
    let tracking = RunTracking { uri: client.tracking_uri().to_string(), experiment_id, parent_run_id: parent.run_id };
    Ok((tree, tracking))
}

/// True when a stage reads its input from MLflow.
pub(crate) fn reads_mlflow(dag: &Dag, stage: &crate::dag::Stage) -> bool {
    matches!(source_of(dag, stage), StageInput::Uri(uri) if uri.starts_with("mlflow-artifacts:") || uri.starts_with("runs:"))
}

/// Opens the state store of `state_dir`, saying why not: exit 2 when another scheduler holds
/// it, 3 when it cannot be opened.
pub(super) fn open_store(state_dir: &Path) -> Result<Store, u8> {
    Store::open(&state_dir.join("state")).map_err(|error| {
        if matches!(error, StoreError::Busy { .. }) {
            say!("error: --state-dir: {error}");
            EXIT_INVALID
        } else {
            say!("error: {error}");
            EXIT_SERVICE
        }
    })
}

/// `path` made absolute against the current directory.
pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
