//! The verbs that talk to `concurrent serve`: `run --scheduler` (uploads local projects the
//! service lacks, submits, follows with the same progress bars and exit codes as a local run),
//! `status`, `list`, `cancel --scheduler` and `logs`, each with `--output json` for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use concurrent_mlflow::project::snapshot;
use serde_json::Value;

use super::api_client::{ApiClient, ApiError};
use super::progress::Progress;
use super::{ClientArgs, EXIT_CANCELLED, EXIT_INVALID, EXIT_OK, EXIT_RUN_FAILED, LogsArgs, OutputFormat, RunArgs};
use crate::dag::{InputSource, ProjectRef};
use crate::driver::RunEvent;
use crate::run_state::StageStatus;

/// `concurrent run FILE --scheduler URL`; returns the exit code.
pub async fn run(args: RunArgs, url: &str) -> u8 {
    let Some((dag, _)) = super::validate::load_dag_args(&args.dag) else { return EXIT_INVALID };
    let client = match ApiClient::new(url, args.client.token_file.as_deref(), args.client.ca_file.as_deref()) {
        Ok(client) => client,
        Err(error) => return fail(&error),
    };
    // Local projects travel as snapshots, uploaded once per content hash.
    let mut projects = BTreeMap::new();
    for stage in dag.stages.values() {
        let ProjectRef::Local(written) = &stage.project else { continue };
        let written = written.display().to_string();
        if projects.contains_key(&written) {
            continue;
        }
        let packed = match snapshot::pack(&stage.project_dir) {
            Ok(packed) => packed,
            Err(error) => {
                say!("error: stages.{}.project: {error}", stage.name);
                return EXIT_INVALID;
            }
        };
        let name = format!("sha256:{}", packed.hash);
        if let Err(error) = client.put_project(&name, packed.bytes).await {
            return fail(&error);
        }
        projects.insert(written, name);
    }
    // The DAG's input as resolved here, so relative paths mean what they mean to the user.
    let input = match &dag.input {
        InputSource::Uri(uri) => Some(uri.clone()),
        InputSource::None => Some("none".to_string()),
    };
    let parameters: BTreeMap<String, String> = match args.dag.overrides() {
        Ok(overrides) => overrides.parameters.into_iter().map(|(s, p, v)| (format!("{s}.{p}"), v)).collect(),
        Err(error) => {
            say!("error: {error}");
            return EXIT_INVALID;
        }
    };
    let submitted = match client.submit(&dag.source_text, input.as_deref(), &parameters, &projects).await {
        Ok(submitted) => submitted,
        Err(error) => return fail(&error),
    };
    let run_id = submitted["run_id"].as_str().unwrap_or_default().to_string();
    if args.client.output == OutputFormat::Json {
        out!("{submitted}");
    } else {
        say!("run {run_id}: {} submitted to {url}", dag.name);
    }
    follow(&client, &run_id, &dag, args.client.output).await
}

/// Follows a run to its end with progress bars; returns the exit code of its outcome.
async fn follow(client: &ApiClient, run_id: &str, dag: &crate::dag::Dag, output: OutputFormat) -> u8 {
    let (events, progress) = Progress::start(dag);
    let mut last = Value::Null;
    let followed = client
        .follow(run_id, |change| {
            if let Some(event) = as_run_event(&change) {
                let _ = events.send(event);
            }
            last = change.run;
        })
        .await;
    drop(events);
    progress.finish().await;
    if let Err(error) = followed {
        return fail(&error);
    }
    match output {
        OutputFormat::Json => out!("{last}"),
        OutputFormat::Text => print_run(&last),
    }
    match last["status"].as_str() {
        Some("succeeded") => EXIT_OK,
        Some("cancelled") => EXIT_CANCELLED,
        _ => EXIT_RUN_FAILED,
    }
}

/// The progress event a change stands for.
fn as_run_event(change: &super::api_client::Change) -> Option<RunEvent> {
    let stage = change.stage.clone()?;
    let stage_view = change.run["stages"].as_array()?.iter().find(|s| s["name"] == stage.as_str())?.clone();
    Some(match change.kind.as_str() {
        "stage_started" => RunEvent::StageStarted {
            stage,
            shards: stage_view["shards_total"].as_u64().unwrap_or(0) as u32,
            objects: stage_view["objects_in"].as_u64().unwrap_or(0),
        },
        "shards_cut" => RunEvent::ShardsCut { stage, shards: stage_view["shards_total"].as_u64().unwrap_or(0) as u32 },
        "stage_failed_to_start" => RunEvent::StageFailedToStart { stage, reason: change.message.clone() },
        "attempt_failed" => {
            RunEvent::AttemptFailed { stage, shard: change.shard?, attempt: 0, reason: change.message.clone() }
        }
        "shard_decided" => {
            RunEvent::ShardDecided { stage, shard: change.shard?, succeeded: change.message == "succeeded" }
        }
        "stage_ended" => RunEvent::StageEnded {
            stage,
            status: if change.message == "succeeded" { StageStatus::Succeeded } else { StageStatus::Failed },
        },
        "stage_skipped" => RunEvent::StageSkipped { stage },
        _ => return None,
    })
}

/// `concurrent status RUN`.
pub async fn status(run_id: &str, client_args: &ClientArgs) -> u8 {
    let client = match client(client_args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.get(run_id).await {
        Ok(run) => {
            match client_args.output {
                OutputFormat::Json => out!("{run}"),
                OutputFormat::Text => print_run(&run),
            }
            EXIT_OK
        }
        Err(error) => fail(&error),
    }
}

/// `concurrent list`.
pub async fn list(client_args: &ClientArgs) -> u8 {
    let client = match client(client_args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.list().await {
        Ok(runs) => {
            match client_args.output {
                OutputFormat::Json => out!("{runs}"),
                OutputFormat::Text => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "{:<24} {:<24} {:<10} {:>8} {:<12}",
                        "run", "dag", "status", "shards", "submitted by"
                    );
                    for run in runs["runs"].as_array().into_iter().flatten() {
                        let shards: u64 = stage_sum(run, "shards_total");
                        let _ = writeln!(
                            out,
                            "{:<24} {:<24} {:<10} {:>8} {:<12}",
                            run["run_id"].as_str().unwrap_or(""),
                            run["dag"].as_str().unwrap_or(""),
                            run["status"].as_str().unwrap_or(""),
                            shards,
                            run["submitted_by"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            EXIT_OK
        }
        Err(error) => fail(&error),
    }
}

/// `concurrent cancel RUN --scheduler URL`.
pub async fn cancel(run_id: &str, client_args: &ClientArgs) -> u8 {
    let client = match client(client_args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.cancel(run_id).await {
        Ok(answer) => {
            match client_args.output {
                OutputFormat::Json => out!("{answer}"),
                OutputFormat::Text => out!("run {run_id} cancelled"),
            }
            EXIT_OK
        }
        Err(error) => fail(&error),
    }
}

/// `concurrent logs RUN STAGE SHARD [--attempt K]`: the log's bytes to standard output.
pub async fn logs(args: &LogsArgs) -> u8 {
    let client = match client(&args.client) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.log(&args.run_id, &args.stage, args.shard, args.attempt).await {
        Ok(bytes) => {
            let _ = std::io::stdout().lock().write_all(&bytes);
            EXIT_OK
        }
        Err(error) => fail(&error),
    }
}

fn client(args: &ClientArgs) -> Result<ApiClient, u8> {
    ApiClient::new(&args.scheduler_url(), args.token_file.as_deref(), args.ca_file.as_deref())
        .map_err(|error| fail(&error))
}

/// Prints the error; returns its exit code.
fn fail(error: &ApiError) -> u8 {
    match error {
        ApiError::Refused { errors, .. } => {
            for line in errors {
                say!("error: {line}");
            }
        }
        other => say!("error: {other}"),
    }
    error.exit_code()
}

fn stage_sum(run: &Value, key: &str) -> u64 {
    run["stages"].as_array().into_iter().flatten().filter_map(|s| s[key].as_u64()).sum()
}

/// A run's status as a table.
fn print_run(run: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "run {} ({}) {}",
        run["run_id"].as_str().unwrap_or(""),
        run["dag"].as_str().unwrap_or(""),
        run["status"].as_str().unwrap_or("").to_uppercase()
    );
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>7} {:>8} {:>8} {:>7} {:>7} {:>8}",
        "stage", "status", "shards", "pending", "running", "ok", "failed", "workers"
    );
    for stage in run["stages"].as_array().into_iter().flatten() {
        let workers: u64 = stage["workers"].as_object().into_iter().flatten().filter_map(|(_, n)| n.as_u64()).sum();
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>7} {:>8} {:>8} {:>7} {:>7} {:>8}",
            stage["name"].as_str().unwrap_or(""),
            stage["status"].as_str().unwrap_or(""),
            stage["shards_total"].as_u64().unwrap_or(0),
            stage["shards_pending"].as_u64().unwrap_or(0),
            stage["shards_running"].as_u64().unwrap_or(0),
            stage["shards_succeeded"].as_u64().unwrap_or(0),
            stage["shards_failed"].as_u64().unwrap_or(0),
            workers
        );
    }
    if let (Some(experiment), Some(mlflow_run)) = (run["mlflow_experiment_id"].as_str(), run["mlflow_run_id"].as_str())
    {
        let _ = writeln!(out, "MLflow: experiment {experiment}, DAG run {mlflow_run}");
    }
}
