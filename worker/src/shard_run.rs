//! The MLflow side of an attempt: the shard run (child of the stage run) created with its tags,
//! then its artifacts (`outputs/…`, `logs/entry_point.log`), and at its end its params, metrics
//! and end status.
//!
//! A successful attempt costs the tracking server the least it can: `runs/create` (tags
//! included), one artifact upload per output and one for the log (none through the server when
//! the run's artifact root is `file://` or an object store), one `runs/log-batch` (params,
//! metrics and tags together) and one `runs/update`.

use std::collections::BTreeMap;
use std::path::Path;

use concurrent_mlflow::object_path::ObjectPath;
use concurrent_mlflow::tracking::{
    Metric, MlflowClient, MlflowError, Param, RunStatus, SPECULATIVE_COPY_TAG, SPECULATIVE_TAG, Tag, join_artifact_uri,
    superseded_reason,
};
use concurrent_proto::{OutputObject, ShardMsg, TrackingTarget};
use futures::{StreamExt, TryStreamExt};

use crate::layout::shard_run_name;
use crate::outputs::LocalOutput;
use crate::report::{AttemptEnd, AttemptStats, WorkerIdentity};

/// Artifact path of the entry point's log in the shard run.
pub const LOG_ARTIFACT: &str = "logs/entry_point.log";
/// How many outputs are uploaded at once.
const UPLOAD_CONCURRENCY: usize = 8;
/// Artifact directory of the outputs in the shard run.
pub const OUTPUTS_ARTIFACT_DIR: &str = "outputs";

/// A shard run that has been created and not ended yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRun {
    /// The MLflow run id.
    pub run_id: String,
    /// Root of the run's artifacts.
    pub artifact_uri: String,
    /// The params logged when the run ends, with its metrics (one request for both).
    pub params: Vec<Param>,
}

/// The tags of a shard run (DESIGN §4). Pure.
pub fn shard_run_tags(
    target: &TrackingTarget,
    shard: &ShardMsg,
    attempt: u32,
    who: &WorkerIdentity,
) -> Vec<(String, String)> {
    [
        ("mlflow.parentRunId", target.stage_run_id.clone()),
        ("mlflow.runName", shard_run_name(&shard.stage, shard.shard, attempt)),
        ("concurrent.run_id", shard.run_id.clone()),
        ("concurrent.stage", shard.stage.clone()),
        ("concurrent.shard", shard.shard.to_string()),
        ("concurrent.attempt", attempt.to_string()),
        ("concurrent.worker", who.worker.clone()),
        ("concurrent.cluster", who.cluster.clone()),
    ]
    .into_iter()
    .chain(shard.speculative.then(|| (SPECULATIVE_COPY_TAG, "true".to_string())))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The tags of a shard run stopped because attempt `by` decided its shard first.
pub fn superseded_tags(by: u32) -> Vec<Tag> {
    vec![Tag { key: SPECULATIVE_TAG.into(), value: superseded_reason(by) }]
}

/// Creates the shard run with its tags, in one request; `params` ("as passed", defaults
/// applied) are kept for [`finish`], which logs them with the metrics.
pub async fn create(
    client: &MlflowClient,
    target: &TrackingTarget,
    shard: &ShardMsg,
    attempt: u32,
    who: &WorkerIdentity,
    params: &BTreeMap<String, String>,
) -> Result<ShardRun, MlflowError> {
    let name = shard_run_name(&shard.stage, shard.shard, attempt);
    let tags = shard_run_tags(target, shard, attempt, who);
    let info = client.create_run(&target.experiment_id, &name, &tags).await?;
    let params = params.iter().map(|(k, v)| Param::new(k, v)).collect();
    Ok(ShardRun { run_id: info.run_id, artifact_uri: info.artifact_uri, params })
}

/// Uploads the outputs under `outputs/`, a few at a time; returns where each now is.
pub async fn upload_outputs(
    client: &MlflowClient,
    run: &ShardRun,
    outputs: &[LocalOutput],
) -> Result<Vec<OutputObject>, MlflowError> {
    futures::stream::iter(outputs)
        .map(|output| async move {
            let artifact_path = ObjectPath::literal(OUTPUTS_ARTIFACT_DIR).join(&output.path);
            client.upload_file(&run.artifact_uri, &artifact_path, &output.file).await?;
            Ok(OutputObject {
                path: output.path.to_string(),
                uri: join_artifact_uri(&run.artifact_uri, &artifact_path)?,
                size: output.size,
            })
        })
        .buffered(UPLOAD_CONCURRENCY)
        .try_collect()
        .await
}

/// Tag of a failed shard run: why it failed.
pub const FAILURE_TAG: &str = "concurrent.failure";
/// Tag of a shard run that failed permanently (`true`): no attempt followed.
pub const PERMANENT_TAG: &str = "concurrent.permanent";
/// Longest failure reason kept in a tag (MLflow caps tag values).
const FAILURE_TAG_CHARS: usize = 4000;

/// The tags saying why an attempt failed; none on success.
pub fn failure_tags(end: &AttemptEnd) -> Vec<Tag> {
    let concurrent_proto::ShardStatus::Failed { reason } = end.status() else { return Vec::new() };
    let mut tags = vec![Tag { key: FAILURE_TAG.into(), value: reason.chars().take(FAILURE_TAG_CHARS).collect() }];
    if end.is_permanent() {
        tags.push(Tag { key: PERMANENT_TAG.into(), value: "true".into() });
    }
    tags
}

/// Tag of a shard run whose params MLflow refused when it ended: MLflow's answer.
pub const PARAMS_REFUSED_TAG: &str = "concurrent.params_refused";

/// Uploads the log (if there is one), logs the params, metrics and `tags` in one `log-batch`
/// and ends the run with `status`.
///
/// MLflow keeps a param's first value: when the entry point logged one of these params itself
/// with another value, the batch is refused; it is sent again without the params (the entry
/// point's values stand) and with [`PARAMS_REFUSED_TAG`], so the run still ends.
pub async fn finish(
    client: &MlflowClient,
    run: &ShardRun,
    log: &Path,
    stats: &AttemptStats,
    status: RunStatus,
    tags: &[Tag],
) -> Result<(), MlflowError> {
    if log.is_file() {
        client.upload_file(&run.artifact_uri, &ObjectPath::literal(LOG_ARTIFACT), log).await?;
    }
    let metrics = [
        Metric::now("duration_s", stats.duration_s),
        Metric::now("objects_in", stats.objects_in as f64),
        Metric::now("bytes_in", stats.bytes_in as f64),
        Metric::now("bytes_out", stats.bytes_out as f64),
    ];
    match client.log_batch(&run.run_id, &metrics, &run.params, tags).await {
        Ok(()) => {}
        Err(refused) if !run.params.is_empty() && refused.is_invalid_parameter() => {
            tracing::warn!(run = %run.run_id, error = %refused, "MLflow refused the shard run's params; ending it without them");
            let mut tags = tags.to_vec();
            tags.push(Tag::new(
                PARAMS_REFUSED_TAG,
                refused.to_string().chars().take(FAILURE_TAG_CHARS).collect::<String>(),
            ));
            client.log_batch(&run.run_id, &metrics, &[], &tags).await?;
        }
        Err(error) => return Err(error),
    }
    client.update_run(&run.run_id, status).await?;
    Ok(())
}

/// Whether `error` (or one of its causes) says the tracking server could not be reached or
/// kept failing (connection errors, timeouts, 429, 5xx, through the client's whole retry
/// budget), as opposed to refusing the request for good.
pub fn mlflow_unreachable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(mlflow) = error.downcast_ref::<MlflowError>() {
            match mlflow {
                MlflowError::GaveUp { source, .. } => return source.is_retryable(),
                other if other.is_retryable() => return true,
                _ => {}
            }
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use concurrent_proto::WIRE_VERSION;

    use super::*;

    #[test]
    fn outages_are_told_apart_from_refusals() {
        let api = |status| MlflowError::Api {
            what: "POST runs/create".into(),
            status,
            error_code: "X".into(),
            message: String::new(),
        };
        let gave_up = MlflowError::GaveUp { what: "POST".into(), attempts: 9, source: Box::new(api(503)) };
        assert!(mlflow_unreachable(&gave_up));
        assert!(mlflow_unreachable(&api(429)));
        assert!(!mlflow_unreachable(&api(400)));
        #[derive(Debug, thiserror::Error)]
        #[error("uploading")]
        struct Outer(#[source] MlflowError);
        assert!(mlflow_unreachable(&Outer(api(502))));
        assert!(!mlflow_unreachable(&Outer(api(404))));
        assert!(!mlflow_unreachable(&std::io::Error::other("disk full")));
    }

    #[test]
    fn shard_runs_are_tagged_as_the_design_says() {
        let target = TrackingTarget { uri: "http://m".into(), experiment_id: "1".into(), stage_run_id: "stage".into() };
        let shard = ShardMsg {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "thumbnails".into(),
            shard: 3,
            shards: 5,
            inputs: vec![],
            speculative: false,
        };
        let who = WorkerIdentity { worker: "host-1".into(), cluster: "eks".into() };
        let tags: BTreeMap<String, String> = shard_run_tags(&target, &shard, 2, &who).into_iter().collect();
        assert_eq!(tags["mlflow.parentRunId"], "stage");
        assert_eq!(tags["mlflow.runName"], "thumbnails-3-a2");
        assert_eq!(tags["concurrent.shard"], "3");
        assert_eq!(tags["concurrent.attempt"], "2");
        assert_eq!(tags["concurrent.worker"], "host-1");
        assert_eq!(tags["concurrent.cluster"], "eks");
        assert_eq!(tags["concurrent.run_id"], "r1");
        assert_eq!(tags["concurrent.stage"], "thumbnails");
    }
}
