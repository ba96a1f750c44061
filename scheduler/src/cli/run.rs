//! `concurrent run FILE`: validate, plan, start or reach the services, drive the run, report.

use std::path::{Path, PathBuf};

use concurrent_mlflow::tracking::MlflowClient;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::services::{Services, TrackingChoice};
use super::summary::print_summary;
use super::{EXIT_CANCELLED, EXIT_INVALID, EXIT_OK, EXIT_RUN_FAILED, EXIT_SERVICE, RunArgs};
use crate::dag::Dag;
use crate::driver::{Driver, RunSetup};
use crate::executor::LocalExecutor;
use crate::executor::local::LocalConfig;
use crate::plan::{Plan, plan};
use crate::queue::Queue;
use crate::run_id::new_run_id;
use crate::run_state::RunOutcome;
use crate::run_tree::{RunTree, now_ms};
use crate::store::{RunRecord, RunStatus, RunTracking, Store};

/// Runs a DAG; returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    let Some((dag, dag_path)) = load(&args) else { return EXIT_INVALID };
    if args.workers == Some(0) {
        eprintln!("error: --workers: must be at least 1");
        return EXIT_INVALID;
    }
    let tracking = TrackingChoice::from_flag(args.tracking.as_deref());
    if tracking == TrackingChoice::Off
        && let Some(stage) = dag.order().into_iter().find(|s| reads_mlflow(&dag, s))
    {
        eprintln!(
            "error: stages.{}.input: reading MLflow artifacts needs tracking; drop `--tracking none`",
            stage.name
        );
        return EXIT_INVALID;
    }
    // Inputs that do not need MLflow are listed before anything is created.
    let early_plan = if needs_mlflow_to_plan(&dag) { None } else { Some(plan(&dag, None).await) };
    let early_plan = match early_plan.transpose() {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_INVALID;
        }
    };
    let state_dir = absolute(&args.state_dir);
    let services = match Services::start(&state_dir, &tracking).await {
        Ok(services) => services,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let code = run_with_services(&args, dag, &dag_path, early_plan, &services, &state_dir).await;
    services.stop().await;
    code
}

async fn run_with_services(
    args: &RunArgs,
    dag: Dag,
    dag_path: &Path,
    early_plan: Option<Plan>,
    services: &Services,
    state_dir: &Path,
) -> u8 {
    let client = match services.tracking_uri.as_deref().map(MlflowClient::new).transpose() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: tracking server: {error}");
            return EXIT_INVALID;
        }
    };
    let plan = match early_plan {
        Some(plan) => plan,
        None => match plan(&dag, client.as_ref()).await {
            Ok(plan) => plan,
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_INVALID;
            }
        },
    };
    let queue = match Queue::connect(&services.nats_url).await {
        Ok(queue) => queue,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let store = match Store::open(&state_dir.join("state")) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let run_id = new_run_id();
    let tracking = match &client {
        None => None,
        Some(client) => match track(client, &dag, &run_id, dag_path).await {
            Ok(tracking) => Some(tracking),
            Err(error) => {
                eprintln!("error: MLflow at {}: {error}", client.tracking_uri());
                return EXIT_SERVICE;
            }
        },
    };
    let record = RunRecord {
        run_id: run_id.clone(),
        dag_name: dag.name.clone(),
        dag_path: dag_path.display().to_string(),
        tracking: tracking.as_ref().map(|(_, t)| t.clone()),
        status: RunStatus::Running,
        created_ms: now_ms(),
        ended_ms: None,
    };
    if let Err(error) = store.put_run(&record) {
        eprintln!("error: {error}");
        return EXIT_SERVICE;
    }
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
    let executor = LocalExecutor::new(LocalConfig {
        worker_binary: LocalExecutor::default_worker_binary(),
        nats_url: services.nats_url.clone(),
        max_workers: workers,
        idle_timeout: args.idle_timeout,
        state_dir: state_dir.to_path_buf(),
    });
    eprintln!("run {run_id}: {} ({} stages, {workers} workers)", dag.name, dag.stages.len());
    let (events, progress) = Progress::start(&dag);
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let setup = RunSetup {
        run_id,
        dag,
        dag_path: dag_path.to_path_buf(),
        plan,
        store,
        queue,
        executor,
        tracking,
        state_dir: state_dir.to_path_buf(),
        events: Some(events),
        cancel,
    };
    let result = Driver::new(setup).run().await;
    progress.finish().await;
    match result {
        Ok(summary) => {
            print_summary(&summary, services, state_dir);
            match summary.outcome {
                Some(RunOutcome::Succeeded) => EXIT_OK,
                Some(RunOutcome::Failed) => EXIT_RUN_FAILED,
                None => EXIT_CANCELLED,
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_SERVICE
        }
    }
}

/// Creates the DAG run in MLflow.
async fn track(
    client: &MlflowClient,
    dag: &Dag,
    run_id: &str,
    dag_path: &Path,
) -> Result<(RunTree, RunTracking), concurrent_mlflow::tracking::MlflowError> {
    let tree = RunTree::new(client.clone());
    let experiment_id = tree.experiment(dag).await?;
    let parent = tree.create_dag_run(&experiment_id, dag, run_id, dag_path).await?;
    let tracking = RunTracking { uri: client.tracking_uri().to_string(), experiment_id, parent_run_id: parent.run_id };
    Ok((tree, tracking))
}

/// Loads and validates the DAG, printing every error.
pub(super) fn load(args: &RunArgs) -> Option<(Dag, PathBuf)> {
    super::validate::load_dag_args(&args.dag)
}

fn needs_mlflow_to_plan(dag: &Dag) -> bool {
    dag.order().into_iter().any(|stage| reads_mlflow(dag, stage))
}

fn reads_mlflow(dag: &Dag, stage: &crate::dag::Stage) -> bool {
    matches!(crate::inputs::source_of(dag, stage), crate::inputs::StageInput::Uri(uri)
        if uri.starts_with("mlflow-artifacts:") || uri.starts_with("runs:"))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
