//! End to end without an MLflow server: `--tracking none`, invalid DAGs, and the local
//! defaults (a nats-server and an MLflow server started by `concurrent run` itself).

mod common;

use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;

const DEADLINE: Duration = Duration::from_secs(600);

fn example_dag(dir: &std::path::Path, input: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("dag.yaml");
    let text = format!(
        "name: images\ninput: {input}\nstages:\n  thumbnails:\n    project: {p}/thumbnail\n    partition: {{by: object, shard_size: 10}}\n    parallelism: 2\n    parameters: {{size: 16}}\n{extra}  histograms:\n    project: {p}/histogram\n    after: [thumbnails]\n    parallelism: 2\n",
        p = example_projects().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn without_tracking_outputs_pass_between_stages_through_the_state_dir() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 40);
    let dag = example_dag(dir.path(), "file:./raw", "");
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let outputs = dir.path().join("state/outputs");
    let run = std::fs::read_dir(&outputs).unwrap().next().unwrap().unwrap().path();
    let inputs = files_under(&dir.path().join("raw"));
    let strip_shard = |files: Vec<String>| -> Vec<String> {
        let mut files: Vec<String> = files.into_iter().map(|f| f.split_once('/').unwrap().1.to_string()).collect();
        files.sort();
        files
    };
    assert_eq!(strip_shard(files_under(&run.join("thumbnails"))), inputs, "one thumbnail per image");
    let jsons: Vec<String> = inputs.iter().map(|p| format!("{p}.json")).collect();
    assert_eq!(strip_shard(files_under(&run.join("histograms"))), jsons, "one histogram per thumbnail");
}

#[test]
fn an_invalid_dag_exits_2_names_the_place_and_creates_nothing() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("raw")).unwrap();
    let dag = example_dag(dir.path(), "file:./raw", "");
    let text = std::fs::read_to_string(&dag).unwrap().replace("shard_size: 10", "shard_size: 0");
    std::fs::write(&dag, text).unwrap();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stages.thumbnails.partition.shard_size: must be at least 1"), "{stderr}");
    assert!(!dir.path().join("state").exists(), "no state dir");
    let streams = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(&nats.url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        use futures::StreamExt;
        js.stream_names().collect::<Vec<_>>().await.len()
    });
    assert_eq!(streams, 0, "no stream");

    let output = concurrent(&["validate", dag.to_str().unwrap()], &[], dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

#[test]
fn a_dag_on_standard_input_is_read_with_paths_relative_to_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(cwd.join("project")).unwrap();
    std::fs::write(cwd.join("project/MLproject"), "entry_points:\n  main:\n    command: \"true\"\n").unwrap();
    std::fs::create_dir_all(cwd.join("raw")).unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(cwd.join("raw").join(name), name).unwrap();
    }
    let dag = "name: piped\ninput: file:./raw\nstages:\n  only:\n    project: ./project\n";
    let output = concurrent_with_stdin(&["validate", "-"], &[], &cwd, Some(dag.as_bytes()), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("1. only: {} (main)", cwd.join("project").display())), "{stdout}");
    assert!(stdout.contains(&format!("input file://{}, 3 objects", cwd.join("raw").display())), "{stdout}");

    let output = concurrent_with_stdin(&["validate", "-"], &[], &cwd, Some(b"name: piped\n"), DEADLINE);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: standard input is not a valid DAG:\n  stages: required: at least one stage"),
        "{stderr}"
    );
}

#[test]
fn validate_prints_the_plan_with_shard_counts() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 25);
    let dag = example_dag(dir.path(), "file:./raw", "");
    let output = concurrent(&["validate", dag.to_str().unwrap()], &[], dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1. thumbnails"), "{stdout}");
    assert!(stdout.contains("25 objects -> 3 shards"), "{stdout}");
    assert!(stdout.contains("2. histograms"), "{stdout}");
}

#[test]
fn with_nothing_configured_run_starts_and_stops_its_own_nats_and_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 10);
    let dag = example_dag(dir.path(), "file:./raw", "");
    let output = concurrent(&["run", dag.to_str().unwrap(), "--workers", "2"], &[], dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("mlflow ui --backend-store-uri sqlite:///"), "{stdout}");
    let state = dir.path().join(".concurrent");
    assert!(state.join("mlflow/mlflow.db").is_file(), "the default state dir holds MLflow's store");
    assert!(state.join("nats/jetstream").is_dir(), "and the JetStream store");
    // Its artifact root is a directory there: every shard run's outputs and log are files
    // under `<experiment>/<run>/artifacts/`, written without the server's proxy.
    let artifacts = files_under(&state.join("mlflow/artifacts"));
    let under = |kind: &str, suffix: &str| {
        artifacts.iter().filter(|f| f.split('/').nth(3) == Some(kind) && f.ends_with(suffix)).count()
    };
    assert_eq!(under("outputs", ".png") + under("outputs", ".jpg"), 10, "a thumbnail per image: {artifacts:?}");
    assert_eq!(under("outputs", ".json"), 10, "a histogram per thumbnail: {artifacts:?}");
    // 1 thumbnails shard (shard_size 10); histograms, sized adaptively, has two probes and more.
    let shard_runs: std::collections::BTreeSet<String> = artifacts
        .iter()
        .filter(|f| f.split('/').nth(3) == Some("outputs"))
        .map(|f| f.split('/').take(2).collect::<Vec<_>>().join("/"))
        .collect();
    assert!(shard_runs.len() >= 3, "a thumbnails shard and two histogram probes at least: {shard_runs:?}");
    assert_eq!(under("logs", "entry_point.log"), shard_runs.len(), "a log per shard run: {artifacts:?}");
    assert_no_process_left(&state.display().to_string());
}

#[test]
fn a_second_run_on_a_busy_state_dir_exits_2_and_leaves_the_first_alone() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 2);
    let dag = dir.path().join("dag.yaml");
    let text = format!(
        "name: busy\ninput: file:./raw\nstages:\n  copy:\n    project: {}/failing\n    parameters: {{sleep: 4}}\n",
        example_projects().display()
    );
    std::fs::write(&dag, text).unwrap();
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1"];
    let mut first = spawn_concurrent(&args, &[], dir.path(), "first");
    wait_until("the first run to start", Duration::from_secs(120), || first.run_id().is_some());

    let second = concurrent(&args, &[], dir.path(), DEADLINE);
    assert_eq!(second.status.code(), Some(2), "{}", describe(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("--state-dir: the state store at") && stderr.contains("is in use by another"), "{stderr}");
    assert_eq!(first.wait(DEADLINE).code(), Some(0), "the first run is not disturbed: {}", first.describe());
}
