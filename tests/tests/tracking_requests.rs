//! End to end: what tracking costs the MLflow server. `concurrent run` talks to a real MLflow
//! server through a counting proxy; every shard attempt must make exactly the floor
//! (`runs/create` with its tags, one upload per output and one for its log, one `runs/log-batch`
//! with params, metrics and tags, one `runs/update`), the scheduler's own requests (experiment,
//! DAG run, stage run) must not grow with the number of shards, and with a `file://` artifact
//! root no artifact passes through the server at all.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use concurrent_tests::counting_proxy::{CountingProxy, ProxiedRequest};
use concurrent_tests::{NatsServer, mlflow_server};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(300);

/// Requests by endpoint (`POST runs/create`, `PUT mlflow-artifacts`, …).
type Counts = BTreeMap<String, usize>;

/// A one-stage DAG of `shards` shards of one input each (`f<i>.txt`), each copied to the
/// outputs, with a stage parameter; returns the DAG file.
fn write_stage(dir: &Path, shards: usize, experiment: &str) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..shards {
        std::fs::write(inputs.join(format!("f{i}.txt")), format!("object {i}\n")).unwrap();
    }
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "name: copy\nentry_points:\n  main:\n    parameters:\n      greeting: {type: string, default: hi}\n    \
         command: 'cp \"$CONCURRENT_INPUT_DIR\"/* \"$CONCURRENT_OUTPUT_DIR\"/ && echo {greeting}'\n",
    )
    .unwrap();
    let dag = dir.join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: floor\nexperiment: {experiment}\ninput: file://{}\nstages:\n  copy:\n    project: ./project\n    \
             partition: {{by: object, shard_size: 1}}\n    parallelism: 2\n    retries: 0\n    \
             parameters: {{greeting: hello}}\n",
            inputs.display()
        ),
    )
    .unwrap();
    dag
}

/// Runs the DAG with MLflow reached through `proxy`; fails the test unless it succeeds.
fn run_through(proxy: &CountingProxy, nats: &NatsServer, dir: &Path, dag: &Path) {
    let dag = dag.to_str().unwrap();
    let output = concurrent(
        &["run", dag, "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &proxy.uri)],
        dir,
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// The shard runs of an experiment (read from the server directly, not counted).
fn shard_runs(rest: &MlflowRest, experiment: &str) -> Vec<Value> {
    let experiment_id = rest.experiment_id(experiment).expect("the experiment");
    rest.runs(&experiment_id).into_iter().filter(|run| tag(run, "concurrent.shard").is_some()).collect()
}

/// Whether a request was made for a shard attempt: the creation of a run tagged as a shard
/// run, or a request naming one of `shard_run_ids`.
fn for_an_attempt(request: &ProxiedRequest, shard_run_ids: &BTreeSet<String>) -> bool {
    if request.endpoint() == "POST runs/create" {
        let tags = request.json().and_then(|body| body["tags"].as_array().cloned()).unwrap_or_default();
        return tags.iter().any(|t| t["key"] == "concurrent.shard");
    }
    shard_run_ids.iter().any(|id| request.names_run(id))
}

fn count<'a>(requests: impl IntoIterator<Item = &'a ProxiedRequest>) -> Counts {
    let mut counts = Counts::new();
    for request in requests {
        *counts.entry(request.endpoint()).or_default() += 1;
    }
    counts
}

/// Every answer was a success (but the lookups of an experiment not created yet): no request
/// was repeated after a failure.
fn assert_all_succeeded(requests: &[ProxiedRequest]) {
    let not_created_yet = |r: &ProxiedRequest| r.endpoint() == "GET experiments/get-by-name" && r.status == 404;
    let failed: Vec<_> = requests.iter().filter(|r| !(200..300).contains(&r.status) && !not_created_yet(r)).collect();
    assert!(failed.is_empty(), "requests that failed: {failed:?}");
}

#[test]
fn a_tracked_attempt_asks_mlflow_for_the_floor_and_the_scheduler_for_a_constant_few() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let proxy = CountingProxy::start(&mlflow.uri).unwrap();
    let rest = MlflowRest::new(&mlflow.uri);
    let mut scheduler_counts = BTreeMap::new();
    for shards in [2, 5] {
        proxy.clear();
        let dir = tempfile::tempdir().unwrap();
        let experiment = unique("floor");
        let dag = write_stage(dir.path(), shards, &experiment);
        run_through(&proxy, &nats, dir.path(), &dag);
        let requests = proxy.requests();
        assert_all_succeeded(&requests);

        let runs = shard_runs(&rest, &experiment);
        assert_eq!(runs.len(), shards, "one shard run per shard, no retries");
        for run in &runs {
            assert_eq!(run_status(run), "FINISHED");
            assert_eq!(param(run, "greeting"), Some("hello"), "the params, logged as the run ended");
            assert_eq!(metric(run, "objects_in"), Some(1.0));
            assert!(metric(run, "duration_s").is_some());
        }
        let ids: BTreeSet<String> = runs.iter().map(|run| mlflow_run_id(run).to_string()).collect();
        let (attempts, scheduler): (Vec<ProxiedRequest>, Vec<ProxiedRequest>) =
            requests.into_iter().partition(|request| for_an_attempt(request, &ids));
        let floor = Counts::from([
            ("POST runs/create".to_string(), shards),
            ("POST runs/log-batch".to_string(), shards),
            ("POST runs/update".to_string(), shards),
            ("PUT mlflow-artifacts".to_string(), 2 * shards),
        ]);
        assert_eq!(count(&attempts), floor, "{shards} attempts' requests, by endpoint");

        let mut outputs = BTreeSet::new();
        for id in &ids {
            let of_run: Vec<&ProxiedRequest> = attempts.iter().filter(|r| r.names_run(id)).collect();
            let endpoints: Vec<String> =
                of_run.iter().map(|r| r.endpoint()).collect::<BTreeSet<_>>().into_iter().collect();
            assert_eq!(endpoints, ["POST runs/log-batch", "POST runs/update", "PUT mlflow-artifacts"], "run {id}");
            assert_eq!(of_run.len(), 4, "run {id}: {of_run:?}");
            let puts: Vec<&str> = of_run.iter().filter(|r| r.method == "PUT").map(|r| r.path.as_str()).collect();
            assert!(puts.iter().any(|p| p.ends_with(&format!("/{id}/artifacts/logs/entry_point.log"))), "{puts:?}");
            let output =
                puts.iter().find_map(|p| p.split_once(&format!("/{id}/artifacts/outputs/"))).map(|(_, name)| name);
            outputs.insert(output.unwrap_or_else(|| panic!("no output upload in {puts:?}")).to_string());
        }
        let inputs: BTreeSet<String> = (0..shards).map(|i| format!("f{i}.txt")).collect();
        assert_eq!(outputs, inputs, "each output uploaded once, by the attempt that made it");
        let batches: Vec<Value> =
            attempts.iter().filter(|r| r.endpoint() == "POST runs/log-batch").filter_map(|r| r.json()).collect();
        for batch in &batches {
            let keys = |list: &str| batch[list].as_array().map_or(0, Vec::len);
            assert_eq!((keys("params"), keys("metrics")), (1, 4), "params and metrics in one request: {batch}");
        }
        scheduler_counts.insert(shards, count(&scheduler));
    }
    eprintln!("the scheduler's requests per stage run: {scheduler_counts:#?}");
    assert!(
        scheduler_counts[&2].get("POST runs/create") == Some(&2),
        "the DAG run and the stage run: {scheduler_counts:?}"
    );
    assert_eq!(scheduler_counts[&2], scheduler_counts[&5], "the scheduler's requests do not grow with the shards");
}

#[test]
fn with_a_file_artifact_root_no_artifact_passes_through_the_server() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let proxy = CountingProxy::start(&mlflow.uri).unwrap();
    let rest = MlflowRest::new(&mlflow.uri);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let experiment = unique("floor-file-root");
    rest.create_experiment(&experiment, &format!("file://{}", root.display()));
    let shards = 3;
    let dag = write_stage(dir.path(), shards, &experiment);
    run_through(&proxy, &nats, dir.path(), &dag);
    let requests = proxy.requests();
    assert_all_succeeded(&requests);
    let through_the_server: Vec<&ProxiedRequest> =
        requests.iter().filter(|r| r.endpoint().ends_with(" mlflow-artifacts")).collect();
    assert!(through_the_server.is_empty(), "artifacts went through the server: {through_the_server:?}");

    let runs = shard_runs(&rest, &experiment);
    assert_eq!(runs.len(), shards);
    let ids: BTreeSet<String> = runs.iter().map(|run| mlflow_run_id(run).to_string()).collect();
    let attempts: Vec<&ProxiedRequest> = requests.iter().filter(|r| for_an_attempt(r, &ids)).collect();
    let floor = Counts::from([
        ("POST runs/create".to_string(), shards),
        ("POST runs/log-batch".to_string(), shards),
        ("POST runs/update".to_string(), shards),
    ]);
    assert_eq!(count(attempts), floor, "{shards} attempts' requests, by endpoint");
    let mut outputs = BTreeSet::new();
    for run in &runs {
        assert_eq!(run_status(run), "FINISHED");
        let artifact_uri = run["info"]["artifact_uri"].as_str().unwrap();
        let artifacts = Path::new(artifact_uri.strip_prefix("file://").expect("a file:// artifact root"));
        assert!(artifacts.starts_with(&root), "{artifact_uri}");
        assert_eq!(std::fs::read_to_string(artifacts.join("logs/entry_point.log")).unwrap(), "hello\n");
        for entry in std::fs::read_dir(artifacts.join("outputs")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert_eq!(text, format!("object {}\n", &name[1..name.len() - 4]), "{name}");
            outputs.insert(name);
        }
    }
    assert_eq!(outputs, (0..shards).map(|i| format!("f{i}.txt")).collect(), "every output written in place once");
}
