//! End to end through the Kubernetes executor, against fake clusters (`concurrent-fake-cluster`:
//! a real API server whose kubelet runs Pods as local processes), a real nats-server and a real
//! MLflow: the example DAG on one cluster, work spread over two, bursting past Pods held
//! Pending, a Pod killed mid-shard, a cluster that does not answer, cancel.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use concurrent_tests::fake_cluster_process::{FakeClusterProcess, unreachable_kubeconfig};
use concurrent_tests::{NatsServer, mlflow_server, workspace_bin};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(300);

/// A fake cluster whose Pods run the built worker and keep their work dirs under `dir`.
fn cluster(name: &str, dir: &Path, flags: &[&str]) -> FakeClusterProcess {
    let bin_dir = workspace_bin("concurrent-worker").parent().unwrap().to_path_buf();
    let bin = format!("/concurrent/bin={}", bin_dir.display());
    let work = dir.join(format!("{name}-pods"));
    std::fs::create_dir_all(&work).unwrap();
    let work = format!("/concurrent/work={}", work.display());
    let mut all = vec!["--path-map", &bin, "--path-map", &work, "--namespace", "concurrent"];
    all.extend_from_slice(flags);
    FakeClusterProcess::start(name, &all).unwrap()
}

/// A clusters file entry.
fn entry(cluster: &str, kubeconfig: &Path, extra: &str) -> String {
    format!(
        "  - name: {cluster}\n    kubeconfig: {}\n    namespace: concurrent\n    worker_image: concurrent:test\n{extra}",
        kubeconfig.display()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The example's two stages, in an image, with the given thumbnail stage settings.
fn example_dag(experiment: &str, thumbnails: &str) -> String {
    format!(
        "name: images-k8s\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  thumbnails:\n    project: {p}/thumbnail\n    image: python:3.12-slim\n    include: ['*.jpg', '*.png']\n    parameters: {{size: 32}}\n{thumbnails}  histograms:\n    project: {p}/histogram\n    image: python:3.12-slim\n    after: [thumbnails]\n    partition: {{by: object, shard_size: 10}}\n    parallelism: 2\n",
        p = example_projects().display()
    )
}

/// Shard runs of a stage (children of its stage run), by MLflow run.
fn shard_runs(rest: &MlflowRest, experiment: &str, stage: &str) -> Vec<Value> {
    let experiment_id = rest.experiment_id(experiment).expect("experiment");
    let runs = rest.runs(&experiment_id);
    let stage_run =
        runs.iter().find(|r| run_name(r) == stage && tag(r, "concurrent.stage") == Some(stage)).expect("stage run");
    let id = mlflow_run_id(stage_run).to_string();
    runs.into_iter().filter(|r| tag(r, "mlflow.parentRunId") == Some(id.as_str())).collect()
}

/// Output files of a stage's successful shard runs, with how many runs made each.
fn outputs(rest: &MlflowRest, runs: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for run in runs.iter().filter(|r| run_status(r) == "FINISHED") {
        for file in rest.artifact_files(mlflow_run_id(run), "outputs") {
            *counts.entry(file).or_insert(0) += 1;
        }
    }
    counts
}

/// The run's Jobs and Pods left in a fake cluster.
fn leftovers(cluster: &FakeClusterProcess, run_id: &str) -> usize {
    let http = reqwest::blocking::Client::new();
    ["/apis/batch/v1/jobs", "/api/v1/pods"]
        .iter()
        .map(|path| {
            let url = format!("{}{path}?labelSelector=concurrent.dev/run={run_id}", cluster.url);
            let list: Value = http.get(url).send().unwrap().json().unwrap();
            list["items"].as_array().map_or(0, Vec::len)
        })
        .sum()
}

fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_id_of(stdout: &str) -> String {
    let line = stdout.lines().chain(std::iter::empty()).find(|l| l.starts_with("run ")).unwrap_or_default();
    line.trim_start_matches("run ").split(':').next().unwrap_or_default().to_string()
}

#[test]
fn the_example_runs_on_one_cluster_and_leaves_nothing_behind() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 30);
    let a = cluster("a", dir.path(), &["--node-cpu", "4"]);
    let clusters = write(
        dir.path(),
        "clusters.yaml",
        &format!("clusters:\n{}", entry("a", &a.kubeconfig, "    max_workers: 3\n")),
    );
    let experiment = unique("k8s-one");
    let dag = write(
        dir.path(),
        "dag.yaml",
        &example_dag(
            &experiment,
            "    partition: {by: object, shard_size: 5}\n    parallelism: 3\n    resources: {cpu: 500m, memory: 256Mi}\n",
        ),
    );
    let output = concurrent(
        &[
            "run",
            dag.to_str().unwrap(),
            "--clusters",
            clusters.to_str().unwrap(),
            "--state-dir",
            "state",
            "--idle-timeout",
            "1s",
        ],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &mlflow.uri)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let run_id = run_id_of(&stderr);
    let rest = MlflowRest::new(&mlflow.uri);
    let thumbnails = shard_runs(&rest, &experiment, "thumbnails");
    assert!(thumbnails.iter().all(|r| tag(r, "concurrent.cluster") == Some("a")), "every shard ran on cluster a");
    let made = outputs(&rest, &thumbnails);
    assert_eq!(made.len(), 30, "one thumbnail per image: {made:?}");
    assert!(made.values().all(|n| *n == 1), "each exactly once: {made:?}");
    assert_eq!(outputs(&rest, &shard_runs(&rest, &experiment, "histograms")).len(), 30);
    // The run's Jobs are deleted at its end, and their Pods with them.
    assert!(!run_id.is_empty(), "the run id is printed: {stderr}");
    wait_until("the run's Jobs and Pods to go", Duration::from_secs(30), || leftovers(&a, &run_id) == 0);
}
