//! End to end: speculative copies of stragglers. One shard's first attempt sleeps far longer
//! than the others; once every other shard is done, it gets a speculative copy on a free
//! worker, the copy decides the shard, and the straggler is stopped: its MLflow run ends
//! KILLED with `concurrent.speculative`, its process is gone, and the next stage sees every
//! output exactly once. A stage with `speculate: false` gets no copy.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use concurrent_tests::{NatsServer, mlflow_server};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(300);
const SHARDS: usize = 8;
/// The shard whose first attempt straggles.
const STRAGGLER: u32 = 3;

/// A two-stage DAG: `work` (one input per shard, 3 workers; shard [`STRAGGLER`]'s first
/// attempt sleeps `straggle` s and writes its pid to `marker`, every attempt sleeps 0.3 s and
/// copies its input), then `gather`, one shard that lists what it received in `seen.txt`.
fn write_dag(dir: &Path, experiment: &str, straggle: u32, speculate: Option<&str>) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..SHARDS {
        std::fs::write(inputs.join(format!("f{i}.txt")), format!("object {i}\n")).unwrap();
    }
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("MLproject"),
        "name: straggle\nentry_points:\n  main:\n    parameters:\n      marker: string\n      straggle: float\n    \
         command: 'bash straggle.sh {marker} {straggle}'\n",
    )
    .unwrap();
    std::fs::write(
        work.join("straggle.sh"),
        format!(
            "if [ \"$CONCURRENT_SHARD\" = {STRAGGLER} ] && [ \"$CONCURRENT_ATTEMPT\" = 1 ]; then\n  \
             echo $$ > \"$1\"\n  sleep \"$2\"\nfi\nsleep 0.3\ncp \"$CONCURRENT_INPUT_DIR\"/* \"$CONCURRENT_OUTPUT_DIR\"/\n"
        ),
    )
    .unwrap();
    let gather = dir.join("gather");
    std::fs::create_dir_all(&gather).unwrap();
    std::fs::write(
        gather.join("MLproject"),
        "name: gather\nentry_points:\n  main:\n    \
         command: 'cd \"$CONCURRENT_INPUT_DIR\" && find . -type f | sort > \"$CONCURRENT_OUTPUT_DIR\"/seen.txt'\n",
    )
    .unwrap();
    let speculate = speculate.map(|s| format!("    speculate: {s}\n")).unwrap_or_default();
    let dag = dir.join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: stragglers\nexperiment: {experiment}\ninput: file://{inputs}\nstages:\n  work:\n    \
             project: ./work\n    partition: {{by: object, shard_size: 1}}\n    parallelism: 3\n    \
             parameters: {{marker: {marker}, straggle: {straggle}}}\n{speculate}  gather:\n    project: ./gather\n    \
             after: [work]\n    partition: {{by: object, shards: 1}}\n",
            inputs = inputs.display(),
            marker = dir.join("straggler.pid").display(),
        ),
    )
    .unwrap();
    dag
}

/// Runs the DAG on 3 local workers against the shared servers; fails the test unless it
/// succeeds. Returns how long it took.
fn run(nats: &NatsServer, tracking_uri: &str, dir: &Path, dag: &Path) -> Duration {
    let started = Instant::now();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "3", "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", tracking_uri)],
        dir,
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    started.elapsed()
}

/// The shard runs of `stage` in the experiment, by shard.
fn shard_runs(rest: &MlflowRest, experiment: &str, stage: &str) -> Vec<(u32, Value)> {
    let experiment_id = rest.experiment_id(experiment).expect("the experiment");
    let mut runs: Vec<(u32, Value)> = rest
        .runs(&experiment_id)
        .into_iter()
        .filter(|run| tag(run, "concurrent.stage") == Some(stage))
        .filter_map(|run| Some((tag(&run, "concurrent.shard")?.parse().ok()?, run)))
        .collect();
    runs.sort_by_key(|(shard, run)| (*shard, tag(run, "concurrent.attempt").unwrap_or_default().to_string()));
    runs
}

/// What the `gather` stage received: the lines of its `seen.txt`.
fn gathered(rest: &MlflowRest, experiment: &str) -> Vec<String> {
    let runs = shard_runs(rest, experiment, "gather");
    assert_eq!(runs.len(), 1, "one gather attempt");
    let seen = rest.artifact(&runs[0].1, "outputs/seen.txt");
    String::from_utf8(seen).unwrap().lines().map(str::to_string).collect()
}

fn expected_inputs() -> Vec<String> {
    let mut names: Vec<String> = (0..SHARDS).map(|i| format!("./f{i}.txt")).collect();
    names.sort();
    names
}

/// A NATS server, the shared MLflow server and a directory for one test's run.
struct Setup {
    nats: NatsServer,
    mlflow_uri: String,
    rest: MlflowRest,
    dir: tempfile::TempDir,
    experiment: String,
}

fn set_up(experiment: &str) -> Setup {
    let mlflow_uri = mlflow_server::shared().uri.clone();
    Setup {
        nats: NatsServer::start().unwrap(),
        rest: MlflowRest::new(&mlflow_uri),
        mlflow_uri,
        dir: tempfile::tempdir().unwrap(),
        experiment: unique(experiment),
    }
}

#[test]
fn a_straggler_gets_a_copy_that_decides_its_shard_and_the_straggler_is_stopped() {
    let Setup { nats, mlflow_uri, rest, dir, experiment } = set_up("speculation");
    // Without a copy the run would wait out this sleep.
    let dag = write_dag(dir.path(), &experiment, 600, None);
    run(&nats, &mlflow_uri, dir.path(), &dag);

    let runs = shard_runs(&rest, &experiment, "work");
    let straggler: Vec<&Value> = runs.iter().filter(|(s, _)| *s == STRAGGLER).map(|(_, r)| r).collect();
    assert_eq!(straggler.len(), 2, "the straggler and its copy: {straggler:#?}");
    let (first, copy) = (straggler[0], straggler[1]);
    assert_eq!((tag(first, "concurrent.attempt"), run_status(first)), (Some("1"), "KILLED"));
    assert_eq!(tag(first, "concurrent.speculative"), Some("stopped: attempt 4 of the shard decided it first"));
    assert_eq!(tag(first, "concurrent.lost"), None, "a superseded attempt is not a lost one");
    // Attempts of a copy are numbered after the shard's own three (retries: 2).
    assert_eq!((tag(copy, "concurrent.attempt"), run_status(copy)), (Some("4"), "FINISHED"));
    assert_eq!(tag(copy, "concurrent.speculative_copy"), Some("true"));
    for (shard, run) in runs.iter().filter(|(s, _)| *s != STRAGGLER) {
        assert_eq!(run_status(run), "FINISHED", "shard {shard}");
        assert_eq!(tag(run, "concurrent.speculative_copy"), None, "shard {shard} needed no copy");
    }
    assert_eq!(runs.len(), SHARDS + 1, "one run per shard, and the copy");

    assert_eq!(gathered(&rest, &experiment), expected_inputs(), "the next stage sees every output once");
    let pid: u32 = std::fs::read_to_string(dir.path().join("straggler.pid")).unwrap().trim().parse().unwrap();
    wait_until("the straggler's process to be gone", Duration::from_secs(10), || !process_alive(pid));
}

#[test]
fn a_stage_that_opts_out_waits_for_its_straggler() {
    let Setup { nats, mlflow_uri, rest, dir, experiment } = set_up("no-speculation");
    let dag = write_dag(dir.path(), &experiment, 5, Some("false"));
    let took = run(&nats, &mlflow_uri, dir.path(), &dag);

    let runs = shard_runs(&rest, &experiment, "work");
    assert_eq!(runs.len(), SHARDS, "no copy: {runs:#?}");
    assert!(runs.iter().all(|(_, run)| run_status(run) == "FINISHED"));
    assert!(took >= Duration::from_secs(5), "the run waited for its straggler: {took:?}");
    assert_eq!(gathered(&rest, &experiment), expected_inputs());
}
