//! End to end through the Kubernetes executor, against fake clusters (`concurrent-fake-cluster`:
//! a real API server whose kubelet runs Pods as local processes), a real nats-server and a real
//! MLflow: the example DAG on one cluster, work spread over two, bursting past Pods held
//! Pending, a Pod killed mid-shard, a cluster that does not answer, cancel.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The arguments of `concurrent run DAG --clusters FILE` with workers quick to exit.
fn run_args<'a>(dag: &'a Path, clusters: &'a Path) -> [&'a str; 8] {
    let (dag, clusters) = (dag.to_str().unwrap(), clusters.to_str().unwrap());
    ["run", dag, "--clusters", clusters, "--state-dir", "state", "--idle-timeout", "1s"]
}

/// Runs `dag` on the clusters of `clusters` to its end.
fn run_on_clusters(dag: &Path, clusters: &Path, nats: &str, mlflow: &str, dir: &Path) -> std::process::Output {
    concurrent(&run_args(dag, clusters), &[("NATS_URL", nats), ("MLFLOW_TRACKING_URI", mlflow)], dir, DEADLINE)
}

/// Starts running `dag` on the clusters of `clusters`, its output in `run.stdout`/`run.stderr`.
fn spawn_on_clusters(dag: &Path, clusters: &Path, nats: &str, mlflow: &str, dir: &Path) -> common::Background {
    spawn_concurrent(&run_args(dag, clusters), &[("NATS_URL", nats), ("MLFLOW_TRACKING_URI", mlflow)], dir, "run")
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
    let output = run_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
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

/// Shard runs by the cluster they ran on.
fn clusters_of(runs: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for run in runs {
        *counts.entry(tag(run, "concurrent.cluster").unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    counts
}

/// A project whose entry point copies its inputs after `seconds`.
fn slow_project(dir: &Path, seconds: u32) -> PathBuf {
    let project = dir.join("slow");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        format!("name: slow\nentry_points:\n  main:\n    parameters: {{input_dir: path, output_dir: path}}\n    command: \"sleep {seconds} && cp -r {{input_dir}}/. {{output_dir}}/\"\n"),
    )
    .unwrap();
    project
}

fn inputs(dir: &Path, count: usize) {
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for i in 0..count {
        std::fs::write(raw.join(format!("f{i:02}.txt")), format!("{i}\n")).unwrap();
    }
}

fn slow_dag(experiment: &str, project: &Path, parallelism: u32) -> String {
    format!(
        "name: slow-k8s\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  copy:\n    project: {}\n    image: busybox\n    partition: {{by: object, shard_size: 1}}\n    parallelism: {parallelism}\n    retries: 0\n",
        project.display()
    )
}

#[test]
fn a_cluster_at_max_workers_sends_the_rest_to_the_next() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 8);
    let project = slow_project(dir.path(), 1);
    let a = cluster("a", dir.path(), &[]);
    let b = cluster("b", dir.path(), &[]);
    let file =
        format!("clusters:\n{}{}", entry("a", &a.kubeconfig, "    max_workers: 1\n"), entry("b", &b.kubeconfig, ""));
    let clusters = write(dir.path(), "clusters.yaml", &file);
    let experiment = unique("k8s-spill");
    let dag = write(dir.path(), "dag.yaml", &slow_dag(&experiment, &project, 4));
    let output = run_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let rest = MlflowRest::new(&mlflow.uri);
    let runs = shard_runs(&rest, &experiment, "copy");
    let by_cluster = clusters_of(&runs);
    assert!(
        by_cluster.get("a").is_some_and(|n| *n >= 1) && by_cluster.get("b").is_some_and(|n| *n >= 1),
        "{by_cluster:?}"
    );
    let workers_on_a: std::collections::BTreeSet<&str> = runs
        .iter()
        .filter(|r| tag(r, "concurrent.cluster") == Some("a"))
        .filter_map(|r| tag(r, "concurrent.worker"))
        .collect();
    assert!(!workers_on_a.is_empty());
    let made = outputs(&rest, &runs);
    assert_eq!(made.len(), 8, "{made:?}");
    assert!(made.values().all(|n| *n == 1), "{made:?}");
}

#[test]
fn pods_pending_past_burst_after_send_the_work_to_the_next_cluster() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 6);
    let project = slow_project(dir.path(), 0);
    let a = cluster("a", dir.path(), &[]);
    let b = cluster("b", dir.path(), &[]);
    // No node of a has this label: a's Pods stay Pending (Unschedulable), which placement
    // cannot foresee from the nodes' free resources.
    let file = format!(
        "clusters:\n{}{}",
        entry("a", &a.kubeconfig, "    burst_after: 1s\n    node_selector: {pool: gpu-spot}\n"),
        entry("b", &b.kubeconfig, "    burst_after: 1s\n")
    );
    let clusters = write(dir.path(), "clusters.yaml", &file);
    let experiment = unique("k8s-burst");
    let dag = write(dir.path(), "dag.yaml", &slow_dag(&experiment, &project, 2));
    let output = run_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let rest = MlflowRest::new(&mlflow.uri);
    let runs = shard_runs(&rest, &experiment, "copy");
    assert_eq!(clusters_of(&runs), BTreeMap::from([("b".to_string(), 6)]), "every shard ran on b");
    // a was tried first: its Pods were there, Unschedulable, before the work went to b.
    let events: Value =
        reqwest::blocking::get(format!("{}/api/v1/namespaces/concurrent/events", a.url)).unwrap().json().unwrap();
    let unschedulable =
        events["items"].as_array().unwrap().iter().filter(|e| e["reason"] == "FailedScheduling").count();
    assert!(unschedulable >= 1, "a's Pods were Pending first: {events}");
}

#[test]
fn a_pod_killed_mid_shard_gives_its_shard_back_at_once() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 4);
    let project = slow_project(dir.path(), 3);
    let a = cluster("a", dir.path(), &[]);
    let clusters = write(dir.path(), "clusters.yaml", &format!("clusters:\n{}", entry("a", &a.kubeconfig, "")));
    let experiment = unique("k8s-kill");
    let dag = slow_dag(&experiment, &project, 2).replace("retries: 0", "retries: 2");
    let dag = write(dir.path(), "dag.yaml", &dag);
    let mut run = spawn_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    let rest = MlflowRest::new(&mlflow.uri);
    // A shard run in progress names its worker: the Pod to kill.
    let mut victim = None;
    wait_until("a shard run in progress", DEADLINE, || {
        let Some(id) = rest.experiment_id(&experiment) else { return false };
        victim = rest
            .runs(&id)
            .iter()
            .filter(|r| run_status(r) == "RUNNING" && tag(r, "concurrent.shard").is_some())
            .find_map(|r| Some((tag(r, "concurrent.worker")?.to_string(), tag(r, "concurrent.shard")?.to_string())));
        victim.is_some()
    });
    let (pod, shard) = victim.unwrap();
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    a.fail_pod("concurrent", &pod).unwrap();
    let status = run.wait(DEADLINE);
    assert!(status.success(), "{}", run.describe());
    let runs = shard_runs(&rest, &experiment, "copy");
    let made = outputs(&rest, &runs);
    assert_eq!(made.len(), 4, "{made:?}");
    assert!(made.values().all(|n| *n == 1), "every output exactly once: {made:?}");
    // The shard's next attempt started well before ack_wait (30 s) had passed.
    let next = runs
        .iter()
        .filter(|r| {
            tag(r, "concurrent.shard") == Some(shard.as_str()) && tag(r, "concurrent.worker") != Some(pod.as_str())
        })
        .filter_map(|r| r["info"]["start_time"].as_i64())
        .min()
        .expect("the shard ran again");
    let waited = Duration::from_millis((next - killed_at).max(0) as u64);
    println!("the killed Pod's shard started again {waited:?} after the kill");
    assert!(waited < Duration::from_secs(20), "the shard came back after {waited:?}, not at once");
}

#[test]
fn a_cluster_that_does_not_answer_is_named_and_the_other_does_the_work() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 4);
    let project = slow_project(dir.path(), 0);
    let down = unreachable_kubeconfig(dir.path(), "down").unwrap();
    let b = cluster("b", dir.path(), &[]);
    let file = format!("clusters:\n{}{}", entry("down", &down, ""), entry("b", &b.kubeconfig, ""));
    let clusters = write(dir.path(), "clusters.yaml", &file);
    let experiment = unique("k8s-down");
    let dag = write(dir.path(), "dag.yaml", &slow_dag(&experiment, &project, 2));
    let output = run_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: cluster down cannot be used"), "{stderr}");
    let rest = MlflowRest::new(&mlflow.uri);
    assert_eq!(clusters_of(&shard_runs(&rest, &experiment, "copy")), BTreeMap::from([("b".to_string(), 4)]));
    // `concurrent clusters` says the same.
    let survey = concurrent(
        &["clusters", "--clusters", clusters.to_str().unwrap(), "--output", "json"],
        &[],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(survey.status.code(), Some(3), "{}", describe(&survey));
    let survey: Value = serde_json::from_slice(&survey.stdout).unwrap();
    let reachable: Vec<(&str, bool)> = survey["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["reachable"].as_bool().unwrap()))
        .collect();
    assert_eq!(reachable, [("down", false), ("b", true)]);
    assert_eq!(survey["clusters"][1]["nodes"], 1);
    assert_eq!(survey["clusters"][1]["free_cpu_millis"], 2000);
}

#[test]
fn cancel_deletes_the_runs_jobs_and_pods() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 4);
    let project = slow_project(dir.path(), 600);
    let a = cluster("a", dir.path(), &[]);
    let clusters = write(dir.path(), "clusters.yaml", &format!("clusters:\n{}", entry("a", &a.kubeconfig, "")));
    let dag = write(dir.path(), "dag.yaml", &slow_dag(&unique("k8s-cancel"), &project, 2));
    let env = [("NATS_URL", nats.url.as_str()), ("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut run = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--clusters", clusters.to_str().unwrap(), "--state-dir", "state"],
        &env,
        dir.path(),
        "run",
    );
    let mut run_id = String::new();
    wait_until("the run's Pods", DEADLINE, || {
        run_id = run.run_id().unwrap_or_default();
        !run_id.is_empty() && leftovers(&a, &run_id) >= 3
    });
    let cancel = concurrent(&["cancel", &run_id, "--state-dir", "state"], &env, dir.path(), DEADLINE);
    assert_eq!(cancel.status.code(), Some(0), "{}", describe(&cancel));
    run.wait(DEADLINE);
    wait_until("no Job nor Pod of the run", Duration::from_secs(30), || leftovers(&a, &run_id) == 0);
}

#[test]
fn a_bad_clusters_file_exits_2_naming_the_place_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 1);
    let project = slow_project(dir.path(), 0);
    let kubeconfig = unreachable_kubeconfig(dir.path(), "a").unwrap();
    let dag = write(dir.path(), "dag.yaml", &slow_dag("x", &project, 1));
    let cases = [
        (format!("clusters:\n{}    colour: red\n", entry("a", &kubeconfig, "")), "clusters[0].colour: unknown field"),
        (
            format!("clusters:\n{}{}", entry("a", &kubeconfig, ""), entry("a", &kubeconfig, "")),
            "clusters[1].name: duplicate cluster name \"a\"",
        ),
        (
            "clusters:\n  - name: a\n    kubeconfig: ./missing.kubeconfig\n".to_string(),
            "clusters[0].kubeconfig: no such file",
        ),
    ];
    for (text, expected) in cases {
        let clusters = write(dir.path(), "clusters.yaml", &text);
        let output = concurrent(
            &["run", dag.to_str().unwrap(), "--clusters", clusters.to_str().unwrap(), "--state-dir", "state"],
            &[("NATS_URL", "nats://127.0.0.1:1")],
            dir.path(),
            DEADLINE,
        );
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("{}: {expected}", clusters.display())), "{expected} in {stderr}");
        assert!(!dir.path().join("state").exists(), "nothing is created");
    }
}

#[test]
fn the_service_runs_submitted_dags_as_pods_in_its_clusters() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 12);
    let a = cluster("a", dir.path(), &["--node-cpu", "4"]);
    let clusters = write(
        dir.path(),
        "clusters.yaml",
        &format!("clusters:\n{}", entry("a", &a.kubeconfig, "    max_workers: 2\n")),
    );
    let args = ["serve", "--listen", "127.0.0.1:0", "--clusters", clusters.to_str().unwrap(), "--state-dir", "state"];
    let env = [("NATS_URL", nats.url.as_str()), ("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut service = spawn_concurrent(&args, &env, dir.path(), "serve-k8s");
    let mut url = String::new();
    wait_until("the service to listen", DEADLINE, || {
        let stderr = service.stderr_text();
        url = stderr
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        !url.is_empty()
    });
    let http = reqwest::blocking::Client::new();
    let experiment = unique("k8s-serve");
    let dag = example_dag(&experiment, "    partition: {by: object, shard_size: 3}\n    parallelism: 2\n")
        .replace("input: file:./raw", &format!("input: file://{}", dir.path().join("raw").display()));
    let submitted: Value =
        http.post(format!("{url}/api/v1/runs")).json(&serde_json::json!({"dag": dag})).send().unwrap().json().unwrap();
    let run_id = submitted["run_id"].as_str().unwrap_or_else(|| panic!("{submitted}")).to_string();
    let mut status = Value::Null;
    wait_until("the submitted run to end", DEADLINE, || {
        status = http.get(format!("{url}/api/v1/runs/{run_id}")).send().unwrap().json().unwrap();
        status["status"] != "running"
    });
    assert_eq!(status["status"], "succeeded", "{status}");
    let rest = MlflowRest::new(&mlflow.uri);
    let thumbnails = shard_runs(&rest, &experiment, "thumbnails");
    assert!(thumbnails.iter().all(|r| tag(r, "concurrent.cluster") == Some("a")), "every shard ran as a Pod of a");
    assert_eq!(outputs(&rest, &thumbnails).len(), 12);
    wait_until("the run's Jobs and Pods to go", Duration::from_secs(30), || leftovers(&a, &run_id) == 0);

    // A stage with no image cannot run as a Pod: refused, the place named, nothing created.
    let no_image = dag.replacen("    image: python:3.12-slim\n", "", 1);
    let refused = http.post(format!("{url}/api/v1/runs")).json(&serde_json::json!({"dag": no_image})).send().unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let body = refused.text().unwrap();
    assert!(body.contains("stages.thumbnails.image"), "{body}");
    signal(service.pid(), "TERM");
    service.wait(DEADLINE);
}

/// A project whose entry point copies its inputs after `seconds`, and notes where its MLflow is
/// (the `MLFLOW_TRACKING_URI` its worker gave it) in `uris`.
fn noting_project(dir: &Path, seconds: u32, uris: &Path) -> PathBuf {
    let project = dir.join("noting");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        format!(
            "name: noting\nentry_points:\n  main:\n    parameters: {{input_dir: path, output_dir: path}}\n    command: \"sleep {seconds} && cp -r {{input_dir}}/. {{output_dir}}/ && echo $MLFLOW_TRACKING_URI >> {}\"\n",
            uris.display()
        ),
    )
    .unwrap();
    project
}

#[test]
fn a_cluster_lost_mid_stage_leaves_its_work_to_the_other_and_nothing_is_lost() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 8);
    let uris = dir.path().join("uris.txt");
    let project = noting_project(dir.path(), 2, &uris);
    let mut a = cluster("a", dir.path(), &[]);
    let b = cluster("b", dir.path(), &[]);
    // b's Pods reach MLflow by another name than the scheduler does.
    let b_mlflow = mlflow.uri.replace("127.0.0.1", "localhost");
    let file = format!(
        "clusters:\n{}{}",
        entry("a", &a.kubeconfig, "    max_workers: 2\n"),
        entry("b", &b.kubeconfig, &format!("    mlflow_tracking_uri: {b_mlflow}\n"))
    );
    let clusters = write(dir.path(), "clusters.yaml", &file);
    let experiment = unique("k8s-lost-cluster");
    let dag = slow_dag(&experiment, &project, 4).replace("retries: 0", "retries: 2");
    let dag = write(dir.path(), "dag.yaml", &dag);
    let mut run = spawn_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    let rest = MlflowRest::new(&mlflow.uri);
    wait_until("a shard running on a", DEADLINE, || {
        let Some(id) = rest.experiment_id(&experiment) else { return false };
        rest.runs(&id).iter().any(|r| run_status(r) == "RUNNING" && tag(r, "concurrent.cluster") == Some("a"))
    });
    // a's API server goes away with every Pod on it, as a lost cluster would.
    let lost_at = std::time::Instant::now();
    a.stop();
    let status = run.wait(DEADLINE);
    println!("the run ended {:?} after cluster a was lost", lost_at.elapsed());
    assert!(status.success(), "{}", run.describe());
    let stderr = std::fs::read_to_string(dir.path().join("run.stderr")).unwrap();
    assert!(
        stderr.contains("cluster cannot be reached") && stderr.contains("cluster=a"),
        "the lost cluster is named:\n{stderr}"
    );
    assert!(!stderr.contains("kube_client"), "one line says it, not every retry:\n{stderr}");
    let runs = shard_runs(&rest, &experiment, "copy");
    let made = outputs(&rest, &runs);
    assert_eq!(made.len(), 8, "{made:?}");
    assert!(made.values().all(|n| *n == 1), "every output exactly once: {made:?}");
    assert!(clusters_of(&runs).get("b").is_some_and(|n| *n >= 6), "b took over: {:?}", clusters_of(&runs));
    // b's workers reached MLflow by the address the clusters file gave them.
    let noted = std::fs::read_to_string(&uris).unwrap();
    assert!(noted.lines().any(|line| line == b_mlflow), "{noted}");
}

#[test]
fn capacity_returning_to_the_first_cluster_takes_new_workers_first() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 10);
    let project = slow_project(dir.path(), 2);
    let a = cluster("a", dir.path(), &["--nodes", "1", "--node-cpu", "1"]);
    let b = cluster("b", dir.path(), &[]);
    // Another team's Pod fills a's only node.
    let blocker = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "blocker", "namespace": "concurrent"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox",
            "command": ["sleep", "600"], "resources": {"requests": {"cpu": "1"}}}]}
    });
    let client = reqwest::blocking::Client::new();
    let created = client.post(format!("{}/api/v1/namespaces/concurrent/pods", a.url)).json(&blocker).send().unwrap();
    assert!(created.status().is_success(), "{}", created.text().unwrap());
    let file = format!(
        "clusters:\n{}{}",
        entry("a", &a.kubeconfig, "    burst_after: 1s\n"),
        entry("b", &b.kubeconfig, "    max_workers: 1\n    burst_after: 1s\n")
    );
    let clusters = write(dir.path(), "clusters.yaml", &file);
    let experiment = unique("k8s-return");
    let dag =
        slow_dag(&experiment, &project, 2).replace("    retries: 0\n", "    retries: 0\n    resources: {cpu: 500m}\n");
    let dag = write(dir.path(), "dag.yaml", &dag);
    let mut run = spawn_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    let rest = MlflowRest::new(&mlflow.uri);
    wait_until("a shard finished on b", DEADLINE, || {
        let Some(id) = rest.experiment_id(&experiment) else { return false };
        rest.runs(&id).iter().any(|r| run_status(r) == "FINISHED" && tag(r, "concurrent.cluster") == Some("b"))
    });
    let returned_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let deleted = client.delete(format!("{}/api/v1/namespaces/concurrent/pods/blocker", a.url)).send().unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.text().unwrap());
    let status = run.wait(DEADLINE);
    assert!(status.success(), "{}", run.describe());
    let runs = shard_runs(&rest, &experiment, "copy");
    let made = outputs(&rest, &runs);
    assert_eq!(made.len(), 10, "{made:?}");
    assert!(made.values().all(|n| *n == 1), "every output exactly once: {made:?}");
    let on_a: Vec<i64> = runs
        .iter()
        .filter(|r| tag(r, "concurrent.cluster") == Some("a"))
        .filter_map(|r| r["info"]["start_time"].as_i64())
        .collect();
    assert!(!on_a.is_empty(), "once a had room again, new workers went there: {:?}", clusters_of(&runs));
    assert!(on_a.iter().all(|t| *t >= returned_at), "nothing ran on a while it was full");
}

/// A `python_env` project whose entry point copies its inputs; its environment pins a package
/// that does not exist, so an environment built on the worker would fail: only the image's own
/// Python runs it.
fn python_env_project(dir: &Path) -> PathBuf {
    let project = dir.join("pyenv");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "name: pyenv\npython_env: python_env.yaml\nentry_points:\n  main:\n    parameters: {input_dir: path, output_dir: path}\n    command: \"cp -r {input_dir}/. {output_dir}/\"\n",
    )
    .unwrap();
    std::fs::write(
        project.join("python_env.yaml"),
        "python: \"3.11\"\ndependencies:\n  - no-such-package-concurrent-test==0.0.1\n",
    )
    .unwrap();
    project
}

/// The image the scheduler builds for `project` when built images go to `registry`.
fn built_image(project: &Path, registry: &str) -> concurrent_scheduler::images::BuildPlan {
    use concurrent_mlflow::project::MlProject;
    let mlproject = MlProject::load(project).unwrap();
    let python_env = concurrent_scheduler::images::load_python_env(project, &mlproject.env).unwrap();
    let snapshot = concurrent_mlflow::project::snapshot::pack(project).unwrap();
    let settings = concurrent_scheduler::images::ImageSettings { registry: registry.to_string(), ..Default::default() };
    concurrent_scheduler::images::plan_build(&snapshot.hash, python_env.as_ref(), &settings)
}

/// The images and environment managers of the Pods of `a` seen while `run` lasts.
fn watch_pod_images(a: &FakeClusterProcess, run: &mut common::Background) -> BTreeMap<String, Option<String>> {
    let mut seen = BTreeMap::new();
    let http = reqwest::blocking::Client::new();
    let started = std::time::Instant::now();
    while run.try_status().is_none() && started.elapsed() < DEADLINE {
        if let Ok(pods) = http.get(format!("{}/api/v1/namespaces/concurrent/pods", a.url)).send()
            && let Ok(pods) = pods.json::<Value>()
        {
            for pod in pods["items"].as_array().into_iter().flatten() {
                let container = &pod["spec"]["containers"][0];
                let manager = container["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == "CONCURRENT_ENV_MANAGER")
                    .and_then(|v| v["value"].as_str().map(str::to_string));
                seen.insert(container["image"].as_str().unwrap_or_default().to_string(), manager);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

#[test]
fn a_python_env_stage_without_an_image_runs_in_the_image_the_registry_has_for_it() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let registry = concurrent_tests::oci_registry::OciRegistry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 4);
    let project = python_env_project(dir.path());
    let plan = built_image(&project, &format!("{}/ml", registry.host));
    registry.push_image("ml/concurrent-projects", &plan.tag).unwrap();
    let a = cluster("a", dir.path(), &[]);
    let images = format!("    images: {{registry: {}/ml, insecure: true}}\n", registry.host);
    let clusters = write(dir.path(), "clusters.yaml", &format!("clusters:\n{}", entry("a", &a.kubeconfig, &images)));
    let experiment = unique("k8s-built-image");
    let dag = slow_dag(&experiment, &project, 2).replace("    image: busybox\n", "");
    let dag = write(dir.path(), "dag.yaml", &dag);
    let mut run = spawn_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    let images = watch_pod_images(&a, &mut run);
    let status = run.wait(DEADLINE);
    assert!(status.success(), "{}", run.describe());
    assert_eq!(
        images,
        BTreeMap::from([(plan.image.clone(), Some("local".to_string()))]),
        "every worker ran in the image the registry had, with its Python"
    );
    let rest = MlflowRest::new(&mlflow.uri);
    let made = outputs(&rest, &shard_runs(&rest, &experiment, "copy"));
    assert_eq!(made.len(), 4, "{made:?}");
    assert!(made.values().all(|n| *n == 1), "{made:?}");
}

#[test]
fn a_failed_build_fails_the_stage_before_any_worker_with_its_log_on_the_stage_run() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let registry = concurrent_tests::oci_registry::OciRegistry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 2);
    let project = python_env_project(dir.path());
    let a = cluster("a", dir.path(), &[]);
    // The registry lacks the image: a build Job is made. The fake kubelet runs its script
    // without BuildKit and without the context volume, so the build fails.
    let images = format!("    images: {{registry: {}/ml, insecure: true}}\n", registry.host);
    let clusters = write(dir.path(), "clusters.yaml", &format!("clusters:\n{}", entry("a", &a.kubeconfig, &images)));
    let experiment = unique("k8s-failed-build");
    let dag = slow_dag(&experiment, &project, 2).replace("    image: busybox\n", "");
    let dag = write(dir.path(), "dag.yaml", &dag);
    let mut run = spawn_on_clusters(&dag, &clusters, &nats.url, &mlflow.uri, dir.path());
    let images = watch_pod_images(&a, &mut run);
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", run.describe());
    assert!(images.keys().all(|image| image.contains("buildkit")), "only the build ran, no worker: {images:?}");
    let stderr = std::fs::read_to_string(dir.path().join("run.stderr")).unwrap();
    assert!(stderr.contains("the build of"), "the failed build is named:\n{stderr}");
    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).unwrap();
    let runs = rest.runs(&experiment_id);
    let stage_run = runs.iter().find(|r| run_name(r) == "copy").expect("the stage run");
    assert_eq!(run_status(stage_run), "FAILED");
    assert!(runs.iter().all(|r| tag(r, "concurrent.shard").is_none()), "no shard ran");
    let log = String::from_utf8(rest.artifact(stage_run, "logs/image_build.log")).unwrap();
    assert!(log.contains("snapshot.tar"), "the build's own log is on the stage run:\n{log}");
}
