//! End to end, as a user runs it: `concurrent run` on the image example with a real
//! nats-server and a real MLflow server, checked through MLflow's REST API.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use concurrent_tests::{NatsServer, mlflow_server};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(600);

fn write_dag(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("dag.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn children_of<'a>(runs: &'a [Value], parent: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| tag(r, "mlflow.parentRunId") == Some(parent)).collect()
}

#[test]
fn the_image_example_builds_the_run_tree_with_one_thumbnail_and_one_histogram_per_image() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("raw");
    make_images(&images, 200);
    let experiment = unique("images");
    let projects = example_projects();
    // The DAG comes on standard input: `./raw` is relative to the current directory.
    let dag = format!(
        "name: image-preprocess\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  thumbnails:\n    project: {p}/thumbnail\n    include: ['*.jpg', '*.png']\n    partition: {{by: object, shard_size: 50}}\n    parallelism: 2\n    parameters: {{size: 32}}\n  histograms:\n    project: {p}/histogram\n    after: [thumbnails]\n    partition: {{by: object, shard_size: 100}}\n    parallelism: 2\n",
        p = projects.display()
    );
    let output = concurrent_with_stdin(
        &["run", "-", "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &mlflow.uri)],
        dir.path(),
        Some(dag.as_bytes()),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUCCEEDED"), "{stdout}");

    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).expect("the experiment was created");
    let kind = rest.experiment_tags(&experiment_id).remove("mlflow.experimentKind");
    assert_eq!(kind.as_deref(), Some("custom_model_development"), "MLflow's UI opens the experiment on its runs");
    let runs = rest.runs(&experiment_id);
    let dag_runs: Vec<&Value> = runs.iter().filter(|r| tag(r, "mlflow.parentRunId").is_none()).collect();
    assert_eq!(dag_runs.len(), 1, "one DAG run");
    let dag_run = dag_runs[0];
    let link = format!(
        "{}/#/experiments/{experiment_id}/runs/{}?workflowType=machine_learning",
        mlflow.uri.trim_end_matches('/'),
        mlflow_run_id(dag_run)
    );
    assert!(stdout.contains(&format!("MLflow: {link}\n")), "the link to the DAG run, {link}, in:\n{stdout}");
    let concurrent_run_id = tag(dag_run, "concurrent.run_id").expect("concurrent.run_id tag");
    assert_eq!(run_name(dag_run), format!("image-preprocess-{concurrent_run_id}"));
    assert_eq!(tag(dag_run, "concurrent.dag"), Some("image-preprocess"));
    assert_eq!(run_status(dag_run), "FINISHED");
    assert_eq!(String::from_utf8(rest.artifact(dag_run, "concurrent/dag.yaml")).unwrap(), dag, "the DAG as read");

    let stages = children_of(&runs, mlflow_run_id(dag_run));
    let names: BTreeSet<&str> = stages.iter().map(|r| run_name(r)).collect();
    assert_eq!(names, BTreeSet::from(["histograms", "thumbnails"]));
    let stage = |name: &str| *stages.iter().find(|r| run_name(r) == name).unwrap();
    let thumbnails = stage("thumbnails");
    let histograms = stage("histograms");
    for (run, shards) in [(thumbnails, 4.0), (histograms, 2.0)] {
        assert_eq!(run_status(run), "FINISHED");
        assert_eq!(tag(run, "concurrent.stage"), Some(run_name(run)));
        assert_eq!(tag(run, "mlflow.source.type"), Some("PROJECT"));
        assert_eq!(tag(run, "mlflow.project.entryPoint"), Some("main"));
        assert!(tag(run, "mlflow.source.name").is_some_and(|s| s.ends_with(if run_name(run) == "thumbnails" {
            "thumbnail"
        } else {
            "histogram"
        })));
        assert_eq!(metric(run, "shards_total"), Some(shards));
        assert_eq!(metric(run, "shards_succeeded"), Some(shards));
        assert_eq!(metric(run, "shards_failed"), Some(0.0));
        assert_eq!(metric(run, "objects_in"), Some(200.0));
        assert_eq!(metric(run, "objects_out"), Some(200.0));
        assert!(metric(run, "duration_s").is_some());
    }
    assert_eq!(param(thumbnails, "size"), Some("32"));

    let inputs: BTreeSet<String> = files_under(&images).into_iter().collect();
    let thumbnail_shards = children_of(&runs, mlflow_run_id(thumbnails));
    assert_eq!(thumbnail_shards.len(), 4, "one run per shard, no retries");
    let mut thumbs = Vec::new();
    for shard in &thumbnail_shards {
        assert_eq!(run_status(shard), "FINISHED");
        assert!(run_name(shard).starts_with("thumbnails-"));
        assert_eq!(tag(shard, "concurrent.attempt"), Some("1"));
        assert_eq!(tag(shard, "concurrent.cluster"), Some("local"));
        assert!(tag(shard, "concurrent.worker").is_some());
        assert_eq!(param(shard, "size"), Some("32"));
        assert_eq!(metric(shard, "objects_in"), Some(50.0));
        assert!(rest.artifact_files(mlflow_run_id(shard), "logs").contains(&"entry_point.log".to_string()));
        thumbs.extend(rest.artifact_files(mlflow_run_id(shard), "outputs"));
    }
    let thumb_set: BTreeSet<String> = thumbs.iter().cloned().collect();
    assert_eq!(thumbs.len(), thumb_set.len(), "no thumbnail twice");
    assert_eq!(thumb_set, inputs, "exactly one thumbnail per input image, paths kept");

    let histogram_shards = children_of(&runs, mlflow_run_id(histograms));
    assert_eq!(histogram_shards.len(), 2);
    let mut jsons = Vec::new();
    for shard in &histogram_shards {
        assert_eq!(run_status(shard), "FINISHED");
        assert_eq!(metric(shard, "images"), Some(100.0), "the metric logged by the script itself");
        jsons.extend(rest.artifact_files(mlflow_run_id(shard), "outputs"));
    }
    let expected: BTreeSet<String> = inputs.iter().map(|p| format!("{p}.json")).collect();
    assert_eq!(jsons.len(), expected.len(), "no histogram twice");
    assert_eq!(jsons.into_iter().collect::<BTreeSet<_>>(), expected, "one histogram per thumbnail");
    let sample = histogram_shards[0];
    let name = rest.artifact_files(mlflow_run_id(sample), "outputs").remove(0);
    let histogram: Value = serde_json::from_slice(&rest.artifact(sample, &format!("outputs/{name}"))).unwrap();
    assert!(histogram["width"].as_u64().unwrap() <= 32, "histograms are of the thumbnails: {histogram}");
}

#[test]
fn a_shard_that_keeps_failing_fails_its_stage_and_the_dag_and_downstream_never_starts() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("raw");
    make_images(&images, 20);
    let victim = files_under(&images)[7].clone();
    let experiment = unique("failing");
    let projects = example_projects();
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: failing\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  copy:\n    project: {p}/failing\n    partition: {{by: object, shard_size: 5}}\n    parallelism: 2\n    retries: 1\n    parameters: {{fail_on: \"{victim}\"}}\n  after-copy:\n    project: {p}/histogram\n    after: [copy]\n",
            p = projects.display()
        ),
    );
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &mlflow.uri)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let dag_run = runs.iter().find(|r| tag(r, "mlflow.parentRunId").is_none()).unwrap();
    assert_eq!(run_status(dag_run), "FAILED");
    let stages = children_of(&runs, mlflow_run_id(dag_run));
    assert_eq!(stages.len(), 1, "the downstream stage never started");
    let copy = stages[0];
    assert_eq!(run_name(copy), "copy");
    assert_eq!(run_status(copy), "FAILED");
    assert_eq!(metric(copy, "shards_failed"), Some(1.0));
    assert_eq!(metric(copy, "shards_succeeded"), Some(3.0));

    let shards = children_of(&runs, mlflow_run_id(copy));
    let failed: Vec<&&Value> = shards.iter().filter(|r| run_status(r) == "FAILED").collect();
    assert_eq!(failed.len(), 2, "the first attempt and one retry, each its own FAILED run");
    let names: BTreeSet<&str> = failed.iter().map(|r| run_name(r)).collect();
    assert_eq!(names, BTreeSet::from(["copy-1", "copy-1-a2"]));
    for attempt in &failed {
        let log = String::from_utf8(rest.artifact(attempt, "logs/entry_point.log")).unwrap();
        assert!(log.contains("failing on purpose"), "the log of a failed attempt is kept: {log}");
    }
    assert_eq!(shards.iter().filter(|r| run_status(r) == "FINISHED").count(), 3);
}
