//! `concurrent validate FILE`: the errors, or the plan (stages in order, shard counts when the
//! input can be listed now, or that shards are sized adaptively).

use std::path::{Path, PathBuf};

use concurrent_mlflow::tracking::MlflowClient;

use super::{DagArgs, EXIT_INVALID, EXIT_OK};
use crate::dag::{Dag, STDIN, load_dag};
use crate::inputs::{StageInput, source_of};
use crate::partition::sized_adaptively;
use crate::plan::plan;

/// Validates a DAG and prints its plan; returns the exit code.
pub async fn validate(args: DagArgs) -> u8 {
    let Some((dag, _)) = load_dag_args(&args) else { return EXIT_INVALID };
    let mlflow = std::env::var("MLFLOW_TRACKING_URI").ok().and_then(|uri| MlflowClient::new(&uri).ok());
    let needs_mlflow = dag.order().into_iter().any(|stage| super::run::reads_mlflow(&dag, stage));
    let planned = if needs_mlflow && mlflow.is_none() { None } else { Some(plan(&dag, mlflow.as_ref()).await) };
    let planned = match planned.transpose() {
        Ok(planned) => planned,
        Err(error) => {
            say!("error: {error}");
            return EXIT_INVALID;
        }
    };
    out!("DAG {} (experiment {}): valid, {} stages", dag.name, dag.experiment, dag.stages.len());
    for (index, stage) in dag.order().into_iter().enumerate() {
        let input = match source_of(&dag, stage) {
            StageInput::Uri(uri) => format!("input {uri}"),
            StageInput::Nothing => "no input".to_string(),
            StageInput::Upstream(upstream) => format!("after {}", upstream.join(", ")),
        };
        let shards = match planned.as_ref().and_then(|p| p.get(&stage.name)) {
            Some(planned) => planned.describe(),
            None if matches!(source_of(&dag, stage), StageInput::Upstream(_)) => {
                let adaptive = if sized_adaptively(&stage.partition) { ", sized adaptively" } else { "" };
                format!("shards from upstream outputs{adaptive}")
            }
            None => "input not listed (needs MLFLOW_TRACKING_URI)".into(),
        };
        out!(
            "  {}. {}: {} ({}), {input}, {shards}, parallelism {}, retries {}",
            index + 1,
            stage.name,
            stage.project_dir.display(),
            stage.entry_point,
            stage.parallelism,
            stage.retries
        );
        if !stage.undeclared_parameters.is_empty() {
            let passed: Vec<String> = stage.undeclared_parameters.iter().map(|name| format!("--{name}")).collect();
            out!(
                "     parameters not declared by entry point {}, passed after its command: {}",
                stage.entry_point,
                passed.join(" ")
            );
        }
    }
    EXIT_OK
}

/// Loads and validates the DAG named on the command line, printing every error to stderr.
pub(super) fn load_dag_args(args: &DagArgs) -> Option<(Dag, PathBuf)> {
    let overrides = match args.overrides() {
        Ok(overrides) => overrides,
        Err(error) => {
            say!("error: {error}");
            return None;
        }
    };
    let path = match args.file.as_path() {
        stdin if stdin == Path::new(STDIN) => stdin.to_path_buf(),
        file => std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
    };
    match load_dag(&path, &overrides) {
        Ok(dag) => Some((dag, path)),
        Err(errors) => {
            let name = if path == Path::new(STDIN) { "standard input".into() } else { args.file.display().to_string() };
            say!("error: {name} is not a valid DAG:");
            for error in &errors.0 {
                say!("  {error}");
            }
            None
        }
    }
}
