//! Experiments, runs, logging, search, errors and retries.

use std::time::{Duration, Instant};

use concurrent_mlflow::tracking::{Metric, MlflowClient, MlflowError, Param, RetryPolicy, RunStatus, Tag};

use crate::{client, unique};

#[tokio::test]
async fn get_or_create_experiment_is_stable() {
    let client = client();
    let name = unique("exp");
    let first = client.get_or_create_experiment(&name).await.unwrap();
    let second = client.get_or_create_experiment(&name).await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn an_experiment_created_with_tags_has_them_and_an_existing_one_is_left_alone() {
    let client = client();
    let uri = &concurrent_tests::mlflow_server::shared().uri;
    let tags_of = |id: String| async move {
        let url = format!("{uri}/api/2.0/mlflow/experiments/get?experiment_id={id}");
        let reply: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        reply["experiment"]["tags"].as_array().cloned().unwrap_or_default()
    };
    let kind = [Tag::new("mlflow.experimentKind", "custom_model_development")];

    let tagged = client.get_or_create_experiment_tagged(&unique("tagged"), &kind).await.unwrap();
    let tags = tags_of(tagged).await;
    assert!(
        tags.iter().any(|t| t["key"] == "mlflow.experimentKind" && t["value"] == "custom_model_development"),
        "{tags:?}"
    );

    let name = unique("existing");
    let existing = client.get_or_create_experiment(&name).await.unwrap();
    assert_eq!(client.get_or_create_experiment_tagged(&name, &kind).await.unwrap(), existing);
    let tags = tags_of(existing).await;
    assert!(!tags.iter().any(|t| t["key"] == "mlflow.experimentKind"), "{tags:?}");
}

#[tokio::test]
async fn concurrent_get_or_create_agree() {
    let client = client();
    let name = unique("race");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (client, name) = (client.clone(), name.clone());
            tokio::spawn(async move { client.get_or_create_experiment(&name).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn log_batch_beyond_limits_then_get_run_sees_everything() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("batch")).await.unwrap();
    let tags = vec![("concurrent.dag".to_owned(), "d".to_owned())];
    let run = client.create_run(&exp, "big", &tags).await.unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.run_name, "big");
    assert!(run.start_time.is_some());
    assert!(run.artifact_uri.starts_with("mlflow-artifacts:/"), "{}", run.artifact_uri);

    let params: Vec<Param> = (0..250).map(|i| Param::new(format!("p{i:03}"), format!("v{i}"))).collect();
    let metrics: Vec<Metric> = (0..2500)
        .map(|i| Metric { key: format!("m{i:04}"), value: i as f64 / 2.0, timestamp: 1_700_000_000_000, step: 0 })
        .collect();
    let tags: Vec<Tag> = (0..150).map(|i| Tag::new(format!("t{i:03}"), "x".repeat(i))).collect();
    client.log_batch(&run.run_id, &metrics, &params, &tags).await.unwrap();
    client.log_metric(&run.run_id, "nan", f64::NAN).await.unwrap();
    client.set_tag(&run.run_id, "single", "tag value").await.unwrap();

    let got = client.get_run(&run.run_id).await.unwrap();
    assert_eq!(got.data.params.len(), 250);
    assert_eq!(got.data.params["p249"], "v249");
    assert_eq!(got.data.metrics.len(), 2501);
    assert_eq!(got.data.metrics["m2499"], 1249.5);
    assert!(got.data.metrics["nan"].is_nan());
    assert_eq!(got.data.tags["t149"], "x".repeat(149));
    assert_eq!(got.data.tags["single"], "tag value");
    assert_eq!(got.data.tags["concurrent.dag"], "d");
    assert_eq!(got.info.end_time, None);

    client.update_run(&run.run_id, RunStatus::Finished).await.unwrap();
    let ended = client.get_run(&run.run_id).await.unwrap();
    assert_eq!(ended.info.status, RunStatus::Finished);
    let (start, end) = (ended.info.start_time.unwrap(), ended.info.end_time.unwrap());
    assert!(end >= start, "{start} .. {end}");
}

#[tokio::test]
async fn children_are_found_by_parent_tag() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("tree")).await.unwrap();
    let parent = client.create_run(&exp, "dag", &[]).await.unwrap();
    let tag = |id: &str| vec![("mlflow.parentRunId".to_owned(), id.to_owned())];
    let mut children = Vec::new();
    for i in 0..3 {
        let child = client.create_run(&exp, &format!("stage-{i}"), &tag(&parent.run_id)).await.unwrap();
        children.push(child.run_id);
    }
    client.create_run(&exp, "unrelated", &[]).await.unwrap();
    let filter = format!("tags.mlflow.parentRunId = '{}'", parent.run_id);
    let found = client.search_runs(std::slice::from_ref(&exp), &filter).await.unwrap();
    let mut ids: Vec<_> = found.iter().map(|r| r.info.run_id.clone()).collect();
    ids.sort();
    children.sort();
    assert_eq!(ids, children);
    assert!(found.iter().all(|r| r.data.tags["mlflow.parentRunId"] == parent.run_id));
}

#[tokio::test]
async fn unknown_run_is_resource_does_not_exist() {
    let err = client().get_run("0123456789abcdef0123456789abcdef").await.unwrap_err();
    assert_eq!(err.error_code(), Some("RESOURCE_DOES_NOT_EXIST"), "{err}");
    assert!(err.is_not_found());
    assert!(!err.is_retryable());
    assert!(matches!(err, MlflowError::Api { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn nothing_listening_fails_after_bounded_attempts() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(5),
        jitter: true,
    };
    let client = MlflowClient::new(&format!("http://127.0.0.1:{port}")).unwrap().with_retry(policy);
    let started = Instant::now();
    let err = client.get_run("abc").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        MlflowError::GaveUp { attempts, source, .. } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(**source, MlflowError::Transport { .. }), "{source:?}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    // Creating a run is retried on connect errors too (the request never arrived).
    let err = client.create_run("0", "x", &[]).await.unwrap_err();
    assert!(matches!(err, MlflowError::GaveUp { attempts: 3, .. }), "{err:?}");
}
