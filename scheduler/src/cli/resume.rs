//! `concurrent resume RUN_ID`: carries on a run whose scheduler stopped (killed, machine
//! restarted) from its state dir: sled, the durable consumers and MLflow.

use std::collections::BTreeSet;

use concurrent_mlflow::tracking::MlflowClient;

use super::drive::{Recorded, WorkerPlace, drive};
use super::preflight::{DiskWatch, check_state_dir};
use super::run::{absolute, open_store};
use super::services::{Services, TrackingChoice, check_named_services, nats_url_from_env};
use super::signals::Signals;
use super::{EXIT_INVALID, EXIT_SERVICE, ResumeArgs};
use crate::dag::{Dag, Overrides, parse_dag};
use crate::plan::plan_stages;
use crate::queue::Queue;
use crate::run_id::is_valid_run_id;
use crate::run_tree::RunTree;
use crate::store::{RunRecord, RunStatus, RunTracking, Store};

/// Resumes a run; returns the exit code.
pub async fn resume(args: ResumeArgs) -> u8 {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            say!("error: cannot catch stop signals: {error}");
            return EXIT_SERVICE;
        }
    };
    if !is_valid_run_id(&args.run_id) {
        say!("error: RUN_ID: `{}` is not a run id", args.run_id);
        return EXIT_INVALID;
    }
    let state_dir = absolute(&args.state_dir);
    if !state_dir.join("state").is_dir() {
        say!("error: --state-dir: {} holds no runs", state_dir.display());
        return EXIT_INVALID;
    }
    if !check_state_dir(&state_dir) {
        return EXIT_INVALID;
    }
    let disk = DiskWatch::new(&state_dir, nats_url_from_env().is_none(), args.disk.min_free_space);
    if let Err(error) = disk.check() {
        say!("error: {error}");
        return EXIT_INVALID;
    }
    let store = match open_store(&state_dir) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let record = match store.run(&args.run_id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            say!("error: RUN_ID: no run {} in {}", args.run_id, state_dir.display());
            return EXIT_INVALID;
        }
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    if record.status != RunStatus::Running {
        say!("error: RUN_ID: run {} has already ended ({:?})", args.run_id, record.status);
        return EXIT_INVALID;
    }
    let dag = match reload_dag(&record) {
        Ok(dag) => dag,
        Err(code) => return code,
    };
    let clusters = match &args.clusters {
        Some(path) => match super::kubernetes::load_for_run(path, &dag) {
            Some(file) => Some(file),
            None => return EXIT_INVALID,
        },
        None => None,
    };
    let tracking = match &record.tracking {
        None => TrackingChoice::Off,
        Some(_) => TrackingChoice::from_flag(args.tracking.as_deref()),
    };
    if let Err(code) = check_named_services(&tracking, &dag.experiment).await {
        return code;
    }
    let services = match Services::start(&state_dir, &tracking).await {
        Ok(services) => services,
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let code = match connect(record, dag, store, &services).await {
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

/// The DAG as it was submitted, with the same overrides.
fn reload_dag(record: &RunRecord) -> Result<Dag, u8> {
    let overrides = Overrides {
        input: record.input_override.clone(),
        parameters: record.parameter_overrides.clone(),
        env_manager: record.env_manager_override.clone(),
    };
    parse_dag(&record.dag_text, std::path::Path::new(&record.base_dir), &overrides).map_err(|errors| {
        say!("error: the DAG of run {} no longer validates:", record.run_id);
        for error in &errors.0 {
            say!("  {error}");
        }
        EXIT_INVALID
    })
}

/// Reaches NATS and MLflow, and plans the root stages that have not published all shards.
async fn connect(record: RunRecord, dag: Dag, store: Store, services: &Services) -> Result<Recorded, u8> {
    let queue = Queue::connect(&services.nats_url).await.map_err(|error| {
        say!("error: {error}");
        EXIT_SERVICE
    })?;
    let mut tracking = None;
    let mut client = None;
    if let (Some(run), Some(uri)) = (&record.tracking, &services.tracking_uri) {
        let mlflow = MlflowClient::new(uri).map_err(|error| {
            say!("error: tracking server: {error}");
            EXIT_INVALID
        })?;
        let run = RunTracking { uri: uri.clone(), ..run.clone() };
        tracking = Some((RunTree::new(mlflow.clone()), run));
        client = Some(mlflow);
    }
    let unfinished: BTreeSet<String> = dag
        .stages
        .keys()
        .filter(|stage| match store.stage(&record.run_id, stage) {
            Ok(Some(stage)) => stage.needs_listing(),
            Ok(None) => true,
            Err(_) => true,
        })
        .cloned()
        .collect();
    let plan = plan_stages(&dag, client.as_ref(), &unfinished).await.map_err(|error| {
        say!("error: {error}");
        EXIT_INVALID
    })?;
    let dag_path = std::path::PathBuf::from(&record.dag_path);
    Ok(Recorded { run_id: record.run_id, dag, dag_path, plan, store, queue, tracking, resume: true })
}
