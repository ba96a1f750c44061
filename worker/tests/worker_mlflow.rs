//! Integration test of `concurrent-worker` with tracking on: a real nats-server and a real
//! MLflow server; the shard run is a FINISHED child of the stage run, tagged, with the outputs
//! and the log as artifacts.

mod common;

use std::time::Duration;

use common::{Harness, StageSetup, run_to_end};
use concurrent_mlflow::tracking::{MlflowClient, RunStatus};
use concurrent_proto::{ShardStatus, TrackingTarget};

/// A client of the test binary's MLflow server, and where a stage `stage` of experiment
/// `experiment` tracks its shards (its stage run created).
async fn tracked(experiment: &str, stage: &str) -> anyhow::Result<(MlflowClient, TrackingTarget)> {
    let server = tokio::task::spawn_blocking(concurrent_tests::mlflow_server::shared).await?;
    let client = MlflowClient::new(&server.uri)?;
    let experiment_id = client.get_or_create_experiment(experiment).await?;
    let stage_run = client.create_run(&experiment_id, stage, &[]).await?;
    let target = TrackingTarget { uri: server.uri.clone(), experiment_id, stage_run_id: stage_run.run_id };
    Ok((client, target))
}

#[tokio::test]
async fn a_tracked_shard_becomes_a_finished_child_run_with_artifacts() -> anyhow::Result<()> {
    let (client, target) = tracked("worker-test", "copy").await?;
    let setup = StageSetup {
        command: "cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"; \
                  printf '%s' \"$MLFLOW_RUN_ID\" > \"$CONCURRENT_OUTPUT_DIR/run_id.txt\"; echo done",
        parameters: &[("size", Some("128"))],
        tracking: Some(target.clone()),
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    let inputs = harness.inputs(0, &[("pics/a.txt", "hello")])?;
    harness.publish_shard(0, 1, inputs).await?;
    let command = harness.worker();
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(120))).await??;
    assert!(status.success(), "{stderr}");

    let results = harness.results().await?;
    assert_eq!(results.len(), 1, "{stderr}");
    let result = &results[0];
    assert_eq!(result.status, ShardStatus::Succeeded, "{stderr}");
    let run_id = result.mlflow_run_id.clone().expect("a shard run");

    let run = client.get_run(&run_id).await?;
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.info.run_name, "copy-0");
    let tags = &run.data.tags;
    assert_eq!(tags.get("mlflow.parentRunId"), Some(&target.stage_run_id));
    assert_eq!(tags.get("concurrent.shard").map(String::as_str), Some("0"));
    assert_eq!(tags.get("concurrent.attempt").map(String::as_str), Some("1"));
    assert_eq!(tags.get("concurrent.worker").map(String::as_str), Some("test-worker"));
    assert_eq!(tags.get("concurrent.cluster").map(String::as_str), Some("local"));
    assert_eq!(run.data.params.get("size").map(String::as_str), Some("128"));
    assert_eq!(run.data.metrics.get("objects_in"), Some(&1.0));
    assert_eq!(run.data.metrics.get("bytes_in"), Some(&5.0));

    let paths: Vec<&str> = result.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, vec!["pics/a.txt", "run_id.txt"]);
    let dir = tempfile::tempdir()?;
    for output in &result.outputs {
        assert!(output.uri.starts_with(&run.info.artifact_uri), "{}", output.uri);
        assert!(output.uri.contains("/outputs/"), "{}", output.uri);
    }
    let fetched = dir.path().join("a.txt");
    concurrent_mlflow::artifacts::fetch(&result.outputs[0].uri, &fetched, Some(&client)).await?;
    assert_eq!(std::fs::read_to_string(&fetched)?, "hello");
    let fetched = dir.path().join("run_id.txt");
    concurrent_mlflow::artifacts::fetch(&result.outputs[1].uri, &fetched, Some(&client)).await?;
    assert_eq!(std::fs::read_to_string(&fetched)?, run_id, "MLFLOW_RUN_ID is the shard run");
    let log_uri = format!("{}/logs/entry_point.log", run.info.artifact_uri);
    let fetched = dir.path().join("entry_point.log");
    concurrent_mlflow::artifacts::fetch(&log_uri, &fetched, Some(&client)).await?;
    assert_eq!(std::fs::read_to_string(&fetched)?, "done\n");
    Ok(())
}

/// MLflow keeps a param's first value. The shard run's params are logged as it ends; when the
/// entry point logged one of them itself with another value, its value stands, the run still
/// ends FINISHED with its metrics, and a tag says why the params were not logged.
#[tokio::test]
async fn a_param_the_entry_point_logged_itself_keeps_its_value_and_the_run_still_ends() -> anyhow::Result<()> {
    let (client, target) = tracked("worker-test-params", "copy").await?;
    let setup = StageSetup {
        command: "python3 -c 'import json, os, urllib.request as r; \
                  q = r.Request(os.environ[\"MLFLOW_TRACKING_URI\"] + \"/api/2.0/mlflow/runs/log-parameter\", \
                  json.dumps(dict(run_id=os.environ[\"MLFLOW_RUN_ID\"], key=\"size\", value=\"256\")).encode()); \
                  q.add_header(\"Content-Type\", \"application/json\"); r.urlopen(q)'",
        parameters: &[("size", Some("128"))],
        tracking: Some(target.clone()),
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    let inputs = harness.inputs(0, &[("a.txt", "hello")])?;
    harness.publish_shard(0, 1, inputs).await?;
    let command = harness.worker();
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(120))).await??;
    assert!(status.success(), "{stderr}");

    let results = harness.results().await?;
    assert_eq!(results.len(), 1, "{stderr}");
    assert_eq!(results[0].status, ShardStatus::Succeeded, "{stderr}");
    let run = client.get_run(results[0].mlflow_run_id.as_deref().expect("a shard run")).await?;
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.data.params.get("size").map(String::as_str), Some("256"), "the entry point's value stands");
    let refused = run.data.tags.get("concurrent.params_refused").map(String::as_str).unwrap_or_default();
    assert!(refused.contains("INVALID_PARAMETER_VALUE"), "{:?}", run.data.tags);
    assert_eq!(run.data.metrics.get("objects_in"), Some(&1.0));
    Ok(())
}

/// Holding results to publish them together is for quick untracked shards: with tracking on,
/// each attempt's result is published as soon as its run has ended, even when a hold is asked
/// for, so a worker killed after a run ended FINISHED has already reported it.
#[tokio::test]
async fn with_tracking_on_each_result_is_published_as_its_run_ends() -> anyhow::Result<()> {
    let (client, target) = tracked("worker-test-no-hold", "noop").await?;
    let setup = StageSetup { command: "true", shards: 3, tracking: Some(target.clone()), ..Default::default() };
    let harness = Harness::start(setup).await?;
    for shard in 0..3 {
        harness.publish_shard(shard, 3, vec![]).await?;
    }
    let mut command = harness.worker();
    command.args(["--result-hold", "10m"]);
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(120))).await??;
    assert!(status.success(), "{stderr}");

    let results = harness.results().await?;
    assert_eq!(results.iter().map(|r| r.shard).collect::<Vec<u32>>(), vec![0, 1, 2], "{stderr}");
    for result in &results {
        let run = client.get_run(result.mlflow_run_id.as_deref().expect("a shard run")).await?;
        assert_eq!(run.info.status, RunStatus::Finished);
    }
    let stream = harness.js.get_stream(concurrent_proto::names::RESULTS_STREAM).await?;
    assert_eq!(stream.get_info().await?.state.messages, 3, "one message a result");
    Ok(())
}
