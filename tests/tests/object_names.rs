//! End to end: a two-stage DAG whose stages copy their inputs to their outputs, over file names
//! real data sets hold (quotes, `%`, `#`, newlines, tabs, many scripts, emoji, deep paths) and
//! symbolic links. Every output arrives once under its exact name, checked through MLflow's own
//! Python client; a link leading out of the input is skipped and said so.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use concurrent_tests::names::{EVERYWHERE, NOT_THROUGH_THE_PROXY};
use concurrent_tests::{NatsServer, mlflow_server};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(600);

/// Lists, through MLflow's Python client, the outputs of a stage's finished shard runs, reads
/// them back with `mlflow.artifacts.download_artifacts` (each shard run's `outputs` directory,
/// else file by file; null when MLflow cannot download a file), and gives the stage run's tags.
const READ_STAGE: &str = r#"
import json, os, sys, tempfile
import mlflow, mlflow.artifacts
from mlflow import MlflowClient
uri, experiment, stage = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name(experiment)
runs = client.search_runs([exp.experiment_id], max_results=1000)
stage_run = next(r for r in runs if r.data.tags.get("concurrent.stage") == stage and r.info.run_name == stage)
shards = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_run.info.run_id
          and r.info.status == "FINISHED"]
def walk(run_id, path):
    found = []
    for f in client.list_artifacts(run_id, path):
        found += walk(run_id, f.path) if f.is_dir else [f.path]
    return found
outputs, contents = [], {}
for run in shards:
    paths = walk(run.info.run_id, "outputs")
    outputs += [p[len("outputs/"):] for p in paths]
    try:
        # The whole directory, as `mlflow artifacts download -a outputs` does.
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="outputs",
                                                    dst_path=tempfile.mkdtemp())
        for path in paths:
            rel = path[len("outputs/"):]
            contents[rel] = open(os.path.join(local, rel), encoding="utf-8").read()
    except Exception:
        # MLflow refuses some names: try each file alone.
        for path in paths:
            rel = path[len("outputs/"):]
            try:
                local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path,
                                                            dst_path=tempfile.mkdtemp())
                contents[rel] = open(local, encoding="utf-8").read()
            except Exception:
                contents[rel] = None
print(json.dumps({"outputs": sorted(outputs), "contents": contents, "tags": stage_run.data.tags}))
"#;

/// What MLflow's client sees of a stage.
struct StageView {
    outputs: Vec<String>,
    contents: serde_json::Map<String, Value>,
    tags: serde_json::Map<String, Value>,
}

fn read_stage(tracking_uri: &str, experiment: &str, stage: &str) -> StageView {
    let python = mlflow_server::venv_bin("python").expect("the venv's python (scripts/setup.sh)");
    let output = Command::new(python)
        .args(["-c", READ_STAGE, tracking_uri, experiment, stage])
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .output()
        .expect("running python");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let view: Value = serde_json::from_slice(&output.stdout).expect("JSON from the script");
    let outputs = view["outputs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let object = |key: &str| view[key].as_object().unwrap().clone();
    StageView { outputs, contents: object("contents"), tags: object("tags") }
}

/// Input files named `names`, each holding its own name, plus a link to one of them and a
/// link leading out of the input. Returns the objects expected downstream (name, content).
fn write_inputs(dir: &Path, names: &[&str]) -> Vec<(String, String)> {
    let raw = dir.join("raw");
    let mut expected = Vec::new();
    for name in names {
        let file = raw.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, name).unwrap();
        expected.push((name.to_string(), name.to_string()));
    }
    std::fs::write(dir.join("outside.txt"), "outside").unwrap();
    std::os::unix::fs::symlink("plain.txt", raw.join("inside link")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", raw.join("outside link")).unwrap();
    expected.push(("inside link".to_owned(), "plain.txt".to_owned()));
    expected.sort();
    expected
}

fn write_dag(dir: &Path, experiment: &str) -> std::path::PathBuf {
    let dag = dir.join("dag.yaml");
    let text = format!(
        "name: names\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  first:\n    project: {p}/failing\n    partition: {{by: object, shard_size: 4}}\n    parallelism: 2\n  second:\n    project: {p}/failing\n    after: [first]\n    partition: {{by: object, shard_size: 3}}\n    parallelism: 2\n",
        p = example_projects().display()
    );
    std::fs::write(&dag, text).unwrap();
    dag
}

/// Every expected object came out of `stage` once, under its name, with its content.
fn assert_stage_kept_names(view: &StageView, expected: &[(String, String)], downloadable: impl Fn(&str) -> bool) {
    let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(view.outputs, names, "every output once, under its exact name");
    for (name, content) in expected {
        if downloadable(name) {
            assert_eq!(view.contents[name].as_str(), Some(content.as_str()), "{name:?} downloads with its bytes");
        }
    }
}

fn assert_skipped_link_reported(output: &std::process::Output, view: &StageView) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "stages.first: skipped 1 symbolic link(s) of the input: \"outside link\" (leads outside the input root)"
        ),
        "{stderr}"
    );
    assert_eq!(view.tags["concurrent.skipped_symlinks"].as_str(), Some("1"));
    assert_eq!(view.tags["concurrent.skipped_symlinks.first"].as_str(), Some(r#"["outside link"]"#));
}

#[test]
fn default_local_mode_keeps_every_name_between_stages_and_in_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = EVERYWHERE.iter().chain(NOT_THROUGH_THE_PROXY.iter()).copied().collect();
    let expected = write_inputs(dir.path(), &names);
    let experiment = unique("names-local");
    let dag = write_dag(dir.path(), &experiment);
    let output = concurrent(&["run", dag.to_str().unwrap(), "--workers", "2"], &[], dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let db = dir.path().join(".concurrent/mlflow/mlflow.db");
    let tracking = format!("sqlite:///{}", db.display());
    let first = read_stage(&tracking, &experiment, "first");
    let second = read_stage(&tracking, &experiment, "second");
    // MLflow's own download refuses (never renames) names with `#`, control characters or
    // `%` and two hex digits, though it lists them exactly; a shard run holding one cannot be
    // downloaded as a directory, and MLflow downloads a single file whose name holds `?` only
    // with its directory.
    let downloadable = |name: &str| (EVERYWHERE.contains(&name) && !name.contains('?')) || name == "inside link";
    assert_stage_kept_names(&first, &expected, downloadable);
    assert_stage_kept_names(&second, &expected, downloadable);
    assert_skipped_link_reported(&output, &first);
}

#[test]
fn a_proxied_mlflow_server_keeps_every_name_it_can_hold() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected = write_inputs(dir.path(), &EVERYWHERE);
    let experiment = unique("names-proxy");
    let dag = write_dag(dir.path(), &experiment);
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &mlflow.uri)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let first = read_stage(&mlflow.uri, &experiment, "first");
    let second = read_stage(&mlflow.uri, &experiment, "second");
    // MLflow's Python client cuts a path at `?` when it downloads (or uploads) through the
    // proxy; the server holds and lists the name exactly.
    let downloadable = |name: &str| !name.contains('?');
    assert_stage_kept_names(&first, &expected, downloadable);
    assert_stage_kept_names(&second, &expected, downloadable);
    assert_skipped_link_reported(&output, &first);
}

#[test]
fn without_tracking_every_name_is_kept_between_stages() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = EVERYWHERE.iter().chain(NOT_THROUGH_THE_PROXY.iter()).copied().collect();
    let expected = write_inputs(dir.path(), &names);
    let dag = write_dag(dir.path(), "unused");
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let outputs = dir.path().join("state/outputs");
    let run = std::fs::read_dir(&outputs).unwrap().next().unwrap().unwrap().path();
    for stage in ["first", "second"] {
        // `<output_root>/<shard>/<path>`: drop the shard directory.
        let mut kept: Vec<(String, String)> = walkdir::WalkDir::new(run.join(stage))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(run.join(stage)).unwrap().to_str().unwrap();
                let name = rel.split_once('/').unwrap().1.to_owned();
                (name, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        kept.sort();
        assert_eq!(kept, expected, "{stage}: every output once, under its exact name, with its bytes");
    }
}
