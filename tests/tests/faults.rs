//! Faults a run survives, with real processes really killed (DESIGN §1: any process may be
//! killed at any moment and the run still finishes with every shard's output exactly once).
//! A worker the local executor sees die hands its shard back at once; a worker that freezes
//! holds it for JetStream's 30 s `ack_wait`, which one test waits out.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;
use concurrent_tests::mlflow_server::{self, MlflowServer};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(300);

/// A DAG of two stages of the `failing` example project (it copies its inputs): `copy`,
/// with `copy_extra` lines, then `recopy` over copy's outputs.
fn copy_dag(dir: &Path, experiment: &str, shard_size: u32, sleep: f64, copy_extra: &str) -> PathBuf {
    let path = dir.join("dag.yaml");
    let text = format!(
        "name: faults\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  copy:\n    project: {p}/failing\n    partition: {{by: object, shard_size: {shard_size}}}\n    parallelism: 2\n    parameters: {{sleep: {sleep}}}\n{copy_extra}  recopy:\n    project: {p}/failing\n    after: [copy]\n    parallelism: 2\n",
        p = example_projects().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Asserts that each of the `shards` shards of a stage run has exactly one FINISHED run.
fn assert_each_shard_finished_once(runs: &[Value], stage_run: &Value, shards: u32) {
    let attempts: Vec<&Value> =
        runs.iter().filter(|r| tag(r, "mlflow.parentRunId") == Some(mlflow_run_id(stage_run))).collect();
    for shard in 0..shards {
        let finished = attempts
            .iter()
            .filter(|r| tag(r, "concurrent.shard") == Some(&shard.to_string()) && run_status(r) == "FINISHED")
            .count();
        assert_eq!(finished, 1, "shard {shard} succeeded exactly once");
    }
    assert!(attempts.iter().all(|r| run_status(r) != "RUNNING"), "no attempt stays RUNNING");
}

/// The outputs of the FINISHED shard runs of the stage run named `stage`, sorted: a file
/// produced twice appears twice.
fn tracked_outputs(rest: &MlflowRest, runs: &[Value], stage: &str) -> Vec<String> {
    let stage_run = runs.iter().find(|r| run_name(r) == stage).expect("the stage run");
    let mut outputs = Vec::new();
    for shard in runs.iter().filter(|r| tag(r, "mlflow.parentRunId") == Some(mlflow_run_id(stage_run))) {
        if run_status(shard) == "FINISHED" {
            outputs.extend(rest.artifact_files(mlflow_run_id(shard), "outputs"));
        }
    }
    outputs.sort();
    outputs
}

/// Waits until the experiment has a FINISHED shard run of stage `copy`.
fn wait_for_a_finished_shard(rest: &MlflowRest, experiment: &str) {
    wait_until("a finished shard run", DEADLINE, || {
        rest.experiment_id(experiment)
            .map(|id| rest.runs(&id).iter().any(|r| run_name(r).starts_with("copy-") && run_status(r) == "FINISHED"))
            .unwrap_or(false)
    });
}

fn run_id_of(background: &Background) -> String {
    let mut id = None;
    wait_until("the run id on stderr", Duration::from_secs(120), || {
        id = background.run_id();
        id.is_some()
    });
    id.unwrap()
}

fn worker_of(run_id: &str, stage: &str) -> u32 {
    let mut pids = Vec::new();
    wait_until("a worker", Duration::from_secs(120), || {
        pids = pids_matching(&format!("--run {run_id} --stage {stage}"));
        !pids.is_empty()
    });
    pids[0]
}

#[test]
fn a_killed_worker_s_shard_is_redelivered_and_its_dead_attempt_ends_killed() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 8);
    let experiment = unique("killed-worker");
    let dag = copy_dag(dir.path(), &experiment, 2, 3.0, "");
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut run = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &env,
        dir.path(),
        "run",
    );
    let run_id = run_id_of(&run);
    let worker = worker_of(&run_id, "copy");
    std::thread::sleep(Duration::from_millis(1500));
    signal(worker, "KILL");
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", run.describe());

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let copy = runs.iter().find(|r| run_name(r) == "copy").unwrap();
    let shards: Vec<&Value> =
        runs.iter().filter(|r| tag(r, "mlflow.parentRunId") == Some(mlflow_run_id(copy))).collect();
    let killed: Vec<&&Value> = shards.iter().filter(|r| run_status(r) == "KILLED").collect();
    assert_eq!(killed.len(), 1, "the dead attempt does not stay RUNNING");
    assert_eq!(tag(killed[0], "concurrent.lost"), Some("true"));
    // The executor saw its worker die and handed the shard back at once, well before the 30 s
    // `ack_wait` would have.
    let shard = tag(killed[0], "concurrent.shard");
    let next = shards.iter().find(|r| tag(r, "concurrent.shard") == shard && run_status(r) == "FINISHED").unwrap();
    let gap_ms = start_time_ms(next) - start_time_ms(killed[0]);
    eprintln!("the next attempt started {gap_ms} ms after the dead one");
    assert!(gap_ms < 20_000, "the next attempt started {gap_ms} ms after the dead one");
    assert_each_shard_finished_once(&runs, copy, 4);
    assert_eq!(
        tracked_outputs(&rest, &runs, "recopy"),
        files_under(&dir.path().join("raw")),
        "downstream sees every output exactly once"
    );
}

#[test]
fn a_killed_scheduler_resumes_without_running_a_succeeded_shard_again() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 12);
    let experiment = unique("resume");
    let dag = copy_dag(dir.path(), &experiment, 2, 2.0, "");
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut run = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &env,
        dir.path(),
        "run",
    );
    let run_id = run_id_of(&run);
    let rest = MlflowRest::new(&mlflow.uri);
    wait_for_a_finished_shard(&rest, &experiment);
    kill_then_resume(&mut run, &run_id, &env, dir.path(), DEADLINE);

    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let dag_runs: Vec<&Value> = runs.iter().filter(|r| tag(r, "mlflow.parentRunId").is_none()).collect();
    assert_eq!(dag_runs.len(), 1);
    assert_eq!(run_status(dag_runs[0]), "FINISHED");
    let copies: Vec<&Value> = runs.iter().filter(|r| run_name(r) == "copy").collect();
    assert_eq!(copies.len(), 1, "the stage run is not created twice");
    assert_each_shard_finished_once(&runs, copies[0], 6);
    assert_eq!(tracked_outputs(&rest, &runs, "recopy"), files_under(&dir.path().join("raw")));
}

#[test]
fn a_restarted_nats_server_and_garbage_results_lose_nothing() {
    let mlflow = mlflow_server::shared();
    let mut nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 12);
    let experiment = unique("nats-restart");
    let dag = copy_dag(dir.path(), &experiment, 2, 1.0, "");
    let env = [("NATS_URL", nats.url.as_str()), ("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let args = ["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &env, dir.path(), "run");
    let run_id = run_id_of(&run);
    worker_of(&run_id, "copy");
    std::thread::sleep(Duration::from_millis(500));
    nats.kill();
    std::thread::sleep(Duration::from_secs(3));
    nats.restart().unwrap();
    let url = nats.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let subject = format!("concurrent.results.{run_id}.copy");
        js.publish(subject.clone(), "not msgpack".into()).await.unwrap().await.unwrap();
        js.publish(subject, vec![0x81, 0xa1, b'v', 0x63].into()).await.unwrap().await.unwrap();
    });
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", run.describe());
    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    assert_each_shard_finished_once(&runs, runs.iter().find(|r| run_name(r) == "copy").unwrap(), 6);
    assert_eq!(tracked_outputs(&rest, &runs, "recopy"), files_under(&dir.path().join("raw")));
}

#[test]
fn a_hanging_entry_point_is_killed_at_the_stage_timeout_and_retried() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 2);
    let dag = copy_dag(dir.path(), "timeout", 2, 120.0, "    timeout: 1s\n    retries: 1\n");
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &[("NATS_URL", nats.url.as_str())], dir.path(), "run");
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", run.describe());
    let stderr = run.stderr_text();
    assert!(stderr.contains("copy: shard 0 attempt 1 failed: timed out after 1s"), "{stderr}");
    assert!(stderr.contains("copy: shard 0 attempt 2 failed: timed out after 1s"), "{stderr}");
    assert!(stderr.contains("recopy: skipped"), "{stderr}");
    assert_no_process_left(&dir.path().display().to_string());
}

#[test]
fn a_shard_whose_last_attempt_dies_with_its_worker_fails_instead_of_hanging() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 2);
    let dag = copy_dag(dir.path(), "lost", 2, 20.0, "    retries: 0\n");
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &[("NATS_URL", nats.url.as_str())], dir.path(), "run");
    let run_id = run_id_of(&run);
    let worker = worker_of(&run_id, "copy");
    let mut entry_point = Vec::new();
    wait_until("the entry point", Duration::from_secs(60), || {
        entry_point = children_of(worker);
        !entry_point.is_empty()
    });
    signal(worker, "KILL");
    // The entry point sleeps 20 s: the executor kills it as soon as it sees its worker dead.
    wait_until("the dead worker's entry point killed", Duration::from_secs(10), || !process_alive(entry_point[0]));
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", run.describe());
    assert!(run.stderr_text().contains("every attempt was lost"), "{}", run.describe());
}

#[test]
fn ctrl_c_stops_workers_and_entry_points_and_ends_every_run_killed() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 4);
    let experiment = unique("ctrl-c");
    let dag = copy_dag(dir.path(), &experiment, 1, 60.0, "");
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut run = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &env,
        dir.path(),
        "run",
    );
    let workdir = dir.path().join("state/work").display().to_string();
    wait_until("two entry points running", DEADLINE, || {
        pids_matching(&format!("failing.py --input-dir {workdir}")).len() >= 2
    });
    signal(run.pid(), "INT");
    let status = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{}", run.describe());
    assert_no_process_left(&dir.path().display().to_string());

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let statuses: Vec<(&str, &str)> = runs.iter().map(|r| (run_name(r), run_status(r))).collect();
    assert!(runs.iter().all(|r| run_status(r) == "KILLED"), "every run ends KILLED: {statuses:?}");
    assert_eq!(runs.iter().filter(|r| run_name(r).starts_with("copy-")).count(), 2, "{statuses:?}");
}

#[test]
fn concurrent_cancel_stops_a_run_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 4);
    let dag = copy_dag(dir.path(), "cancel", 1, 60.0, "");
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &[], dir.path(), "run");
    let run_id = run_id_of(&run);
    worker_of(&run_id, "copy");
    let output = concurrent(&["cancel", &run_id, "--state-dir", "state"], &[], dir.path(), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let status = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", run.describe());
    assert!(run.stdout_text().contains("CANCELLED"), "{}", run.describe());
    assert_no_process_left(&dir.path().display().to_string());
    let again = concurrent(&["cancel", &run_id, "--state-dir", "state"], &[], dir.path(), Duration::from_secs(60));
    assert_eq!(again.status.code(), Some(2), "a run that ended cannot be cancelled: {}", describe(&again));
}

#[test]
fn a_late_result_from_a_slow_worker_is_a_duplicate_and_never_used() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 24);
    let experiment = unique("duplicates");
    let dag = copy_dag(dir.path(), &experiment, 1, 2.5, "");
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let args = ["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &env, dir.path(), "run");
    let run_id = run_id_of(&run);
    let mut workers = Vec::new();
    wait_until("two workers", DEADLINE, || {
        workers = pids_matching(&format!("--run {run_id} --stage copy"));
        workers.len() >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    // Frozen past ack_wait (30 s): its shard goes to the other worker; then it wakes up and
    // reports the shard it was holding.
    signal(workers[0], "STOP");
    std::thread::sleep(Duration::from_secs(36));
    signal(workers[0], "CONT");
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", run.describe());
    let stdout = run.stdout_text();
    let copy_row: Vec<&str> = stdout.lines().find(|l| l.starts_with("copy ")).unwrap().split_whitespace().collect();
    assert_eq!(copy_row[6], "1", "one duplicate recorded:\n{stdout}");

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let duplicates: Vec<&Value> = runs.iter().filter(|r| tag(r, "concurrent.duplicate") == Some("true")).collect();
    assert_eq!(duplicates.len(), 1, "the late shard run is tagged a duplicate");
    let inputs = files_under(&dir.path().join("raw"));
    assert_eq!(tracked_outputs(&rest, &runs, "recopy"), inputs, "downstream used one result per shard");
}

#[test]
fn an_mlflow_outage_of_30_s_delays_the_run_but_loses_nothing() {
    let mut mlflow = MlflowServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 12);
    let experiment = unique("mlflow-outage");
    let dag = copy_dag(dir.path(), &experiment, 2, 1.0, "");
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let mut run = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &env,
        dir.path(),
        "run",
    );
    let rest = MlflowRest::new(&mlflow.uri);
    wait_for_a_finished_shard(&rest, &experiment);
    mlflow.kill().unwrap();
    std::thread::sleep(Duration::from_secs(30));
    mlflow.restart().unwrap();
    let status = run.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", run.describe());

    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let copy = runs.iter().find(|r| run_name(r) == "copy").unwrap();
    assert_each_shard_finished_once(&runs, copy, 6);
    assert_eq!(run_status(runs.iter().find(|r| run_name(r) == "recopy").unwrap()), "FINISHED");
    assert_eq!(
        tracked_outputs(&rest, &runs, "recopy"),
        files_under(&dir.path().join("raw")),
        "every output exactly once downstream"
    );
}
