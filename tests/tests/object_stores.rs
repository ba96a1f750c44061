//! End to end against a real S3-protocol server (moto, started by the test): the example DAG
//! with its input on S3 and the MLflow artifact root on S3 (`--no-serve-artifacts`): workers
//! read their inputs from the bucket, write outputs and logs straight to it, and the next
//! stage reads them from there.

mod common;

use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;
use concurrent_tests::mlflow_server::MlflowServer;
use concurrent_tests::s3_server::S3Server;

const DEADLINE: Duration = Duration::from_secs(600);

/// A real S3 server with buckets `inputs` and `mlflow`, an MLflow server whose artifact root is
/// `s3://mlflow/artifacts` (not proxied), and a NATS server.
struct S3Stack {
    s3: S3Server,
    mlflow: MlflowServer,
    nats: NatsServer,
}

impl S3Stack {
    fn start() -> S3Stack {
        let s3 = S3Server::start().unwrap();
        s3.create_bucket("inputs").unwrap();
        s3.create_bucket("mlflow").unwrap();
        let mlflow = MlflowServer::start_with_artifact_root("s3://mlflow/artifacts", &s3.env()).unwrap();
        S3Stack { s3, mlflow, nats: NatsServer::start().unwrap() }
    }

    /// The environment of a `concurrent run` against all three.
    fn run_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.s3.env();
        env.push(("NATS_URL", self.nats.url.clone()));
        env.push(("MLFLOW_TRACKING_URI", self.mlflow.uri.clone()));
        env
    }
}

#[test]
fn the_example_dag_reads_s3_and_keeps_its_artifacts_in_s3() {
    let stack = S3Stack::start();
    let (s3, mlflow) = (&stack.s3, &stack.mlflow);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    make_images(&raw, 12);
    let images = files_under(&raw);
    for name in &images {
        s3.put("inputs", &format!("raw/{name}"), &std::fs::read(raw.join(name)).unwrap()).unwrap();
    }
    let experiment = unique("s3-example");
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: images\nexperiment: {experiment}\ninput: s3://inputs/raw\nstages:\n  thumbnails:\n    project: {p}/thumbnail\n    \
             partition: {{by: object, shard_size: 5}}\n    parallelism: 2\n    parameters: {{size: 16}}\n  histograms:\n    \
             project: {p}/histogram\n    after: [thumbnails]\n    parallelism: 2\n",
            p = example_projects().display()
        ),
    )
    .unwrap();
    let run_env = stack.run_env();
    let run_env: Vec<(&str, &str)> = run_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &run_env,
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).expect("the experiment exists");
    let runs = rest.runs(&experiment_id);
    let shard_runs: Vec<_> = runs.iter().filter(|r| tag(r, "concurrent.shard").is_some()).collect();
    assert!(shard_runs.len() >= 4, "3 thumbnail shards and at least one histogram shard: {}", shard_runs.len());
    for run in &shard_runs {
        let uri = run["info"]["artifact_uri"].as_str().unwrap();
        assert!(uri.starts_with("s3://mlflow/artifacts/"), "artifacts straight to the bucket: {uri}");
    }
    // Every output exactly once, in the bucket: a thumbnail per image, a histogram per thumbnail.
    let keys = s3.keys("mlflow", "artifacts/").unwrap();
    let outputs = |suffix: &str| -> Vec<String> {
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|k| k.split_once("/artifacts/outputs/").map(|(_, name)| name.to_string()))
            .filter(|name| name.ends_with(suffix))
            .collect();
        names.sort();
        names
    };
    let thumbnails: Vec<String> = outputs("").into_iter().filter(|n| !n.ends_with(".json")).collect();
    assert_eq!(thumbnails, images, "one thumbnail per image, exactly once");
    let histograms = outputs(".json");
    let expected: Vec<String> = images.iter().map(|name| format!("{name}.json")).collect();
    assert_eq!(histograms, expected, "one histogram per thumbnail, exactly once");
    let logs = keys.iter().filter(|k| k.ends_with("/artifacts/logs/entry_point.log")).count();
    assert_eq!(logs, shard_runs.len(), "every attempt's log is in the bucket");

    // A shard run's outputs, in the bucket, as the input of another DAG: `runs:/` and the
    // run's own `s3://` artifact URI.
    let thumbnail_run = shard_runs.iter().find(|r| run_name(r).starts_with("thumbnails-")).unwrap();
    let run_id = mlflow_run_id(thumbnail_run);
    let in_run: Vec<String> = keys
        .iter()
        .filter(|k| k.contains(&format!("/{run_id}/artifacts/outputs/")))
        .map(|k| k.rsplit_once("/outputs/").unwrap().1.to_string())
        .collect();
    assert!(!in_run.is_empty());
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::write(
        copy.join("MLproject"),
        "name: copy\nentry_points:\n  main:\n    command: cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"\n",
    )
    .unwrap();
    for input in [
        format!("runs:/{run_id}/outputs"),
        format!("{}/outputs", thumbnail_run["info"]["artifact_uri"].as_str().unwrap()),
    ] {
        let again = dir.path().join("again.yaml");
        std::fs::write(
            &again,
            format!("name: again\nexperiment: {experiment}\ninput: {input}\nstages:\n  copy:\n    project: ./copy\n    partition: none\n"),
        )
        .unwrap();
        let output =
            concurrent(&["run", again.to_str().unwrap(), "--state-dir", "state"], &run_env, dir.path(), DEADLINE);
        assert_eq!(output.status.code(), Some(0), "{input}: {}", describe(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let row: Vec<&str> = stdout.lines().find(|l| l.starts_with("copy ")).unwrap().split_whitespace().collect();
        assert_eq!(row[7], in_run.len().to_string(), "{input}: objects in the shard run's outputs: {stdout}");
    }
}

#[test]
fn a_bucket_that_does_not_exist_is_refused_before_anything_is_created() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: nobucket\ninput: s3://no-such-bucket/raw\nstages:\n  a:\n    project: {}/thumbnail\n",
            example_projects().display()
        ),
    )
    .unwrap();
    let env = s3.env();
    let mut run_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_env.push(("NATS_URL", "nats://127.0.0.1:9"));
    run_env.push(("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"));
    let output = concurrent(&["run", dag.to_str().unwrap(), "--state-dir", "state"], &run_env, dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("input: s3://no-such-bucket/raw: "), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
    assert!(!dir.path().join("state").exists(), "nothing created");
}

/// Object names as users have them, through S3 input and an S3 artifact root, two stages: each
/// name comes out as it went in, exactly once.
#[test]
fn s3_keys_with_any_characters_pass_through_two_stages_unchanged() {
    let stack = S3Stack::start();
    let (s3, mlflow) = (&stack.s3, &stack.mlflow);
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "Größe/überall ünïcödé.txt",
        "日本語/画像 1.txt",
        "a+b=c&d.txt",
        "100% done #1.txt",
        // Not a name holding a valid escape such as `%20`: moto decodes object paths twice.
        "with space/50%off.txt",
        "quote's \"double\".txt",
        "emoji 🚀/x.txt",
        "semi;colon,comma (1) [2] {3}.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        s3.put("inputs", &format!("raw/{name}"), format!("{i}:{name}\n").as_bytes()).unwrap();
    }
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::write(
        copy.join("MLproject"),
        "name: copy\nentry_points:\n  main:\n    command: cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"\n",
    )
    .unwrap();
    let experiment = unique("s3-names");
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: names\nexperiment: {experiment}\ninput: s3://inputs/raw\nstages:\n  first:\n    project: ./copy\n    \
             partition: {{by: object, shard_size: 3}}\n    parallelism: 2\n  second:\n    project: ./copy\n    after: [first]\n    \
             partition: {{by: object, shard_size: 2}}\n    parallelism: 2\n"
        ),
    )
    .unwrap();
    let run_env = stack.run_env();
    let run_env: Vec<(&str, &str)> = run_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"],
        &run_env,
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let second_runs: Vec<String> = runs
        .iter()
        .filter(|r| tag(r, "concurrent.stage") == Some("second") && tag(r, "concurrent.shard").is_some())
        .map(|r| mlflow_run_id(r).to_string())
        .collect();
    assert!(!second_runs.is_empty());
    let keys = s3.keys("mlflow", "artifacts/").unwrap();
    let mut out: Vec<String> = keys
        .iter()
        .filter(|k| second_runs.iter().any(|id| k.contains(&format!("/{id}/artifacts/outputs/"))))
        .map(|k| k.split_once("/artifacts/outputs/").unwrap().1.to_string())
        .collect();
    out.sort();
    let mut expected: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(out, expected, "every name, once, after two stages");
}
