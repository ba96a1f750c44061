//! The input objects of a stage (DESIGN §2): a URI's listing for root stages and stages with
//! their own `input`, the outputs of the upstream stages' successful shards otherwise.

use concurrent_mlflow::artifacts::{self, ArtifactError, SkippedLink};
use concurrent_mlflow::tracking::MlflowClient;
use concurrent_proto::InputObject;

use crate::dag::{Dag, InputSource, Stage};
use crate::run_state::ShardOutcome;
use crate::store::{Store, StoreError};

/// Where a stage's inputs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageInput<'a> {
    /// The objects under a URI.
    Uri(&'a str),
    /// One shard with no inputs.
    Nothing,
    /// The outputs of these upstream stages.
    Upstream(&'a [String]),
}

/// Listing a stage's inputs failed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where `stage` reads from.
pub fn source_of<'a>(dag: &'a Dag, stage: &'a Stage) -> StageInput<'a> {
    match (&stage.input, stage.after.is_empty(), &dag.input) {
        (Some(InputSource::Uri(uri)), _, _) => StageInput::Uri(uri),
        (Some(InputSource::None), _, _) => StageInput::Nothing,
        (None, false, _) => StageInput::Upstream(&stage.after),
        (None, true, InputSource::Uri(uri)) => StageInput::Uri(uri),
        (None, true, InputSource::None) => StageInput::Nothing,
    }
}

/// The objects under a URI as shard inputs, and the symbolic links the listing skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriInput {
    pub objects: Vec<InputObject>,
    pub skipped_links: Vec<SkippedLink>,
}

/// Lists the objects under a URI as shard inputs.
pub async fn list_uri(uri: &str, mlflow: Option<&MlflowClient>) -> Result<UriInput, InputError> {
    let listed = artifacts::list(uri, mlflow).await?;
    let objects = listed
        .objects
        .into_iter()
        .map(|object| InputObject {
            path: object.path.into_string(),
            uri: object.uri,
            size: object.size,
            upstream_run: None,
        })
        .collect();
    Ok(UriInput { objects, skipped_links: listed.skipped_links })
}

/// The outputs of the successful shards of `upstream` stages; with two or more upstream
/// stages each path is prefixed with its stage's name.
pub fn upstream_outputs(store: &Store, run_id: &str, upstream: &[String]) -> Result<Vec<InputObject>, InputError> {
    let prefix = upstream.len() > 1;
    let mut objects = Vec::new();
    for stage in upstream {
        for (_, record) in store.shards(run_id, stage)? {
            let Some(result) = record.decided_by.filter(|_| record.outcome == ShardOutcome::Succeeded) else {
                continue;
            };
            for output in result.outputs {
                let path = if prefix { format!("{stage}/{}", output.path) } else { output.path };
                objects.push(InputObject {
                    path,
                    uri: output.uri,
                    size: Some(output.size),
                    upstream_run: result.mlflow_run_id.clone(),
                });
            }
        }
    }
    objects.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ShardRecord;
    use concurrent_proto::{OutputObject, ShardResult, ShardStatus, WIRE_VERSION};

    fn result(stage: &str, shard: u32, ok: bool, paths: &[&str]) -> ShardRecord {
        let outputs = paths
            .iter()
            .map(|p| OutputObject { path: p.to_string(), uri: format!("file:///o/{stage}/{p}"), size: 1 })
            .collect();
        let status = if ok { ShardStatus::Succeeded } else { ShardStatus::Failed { reason: "exit code 1".into() } };
        ShardRecord {
            outcome: if ok { ShardOutcome::Succeeded } else { ShardOutcome::Failed },
            attempts: vec![1],
            duplicates: 0,
            decided_by: Some(ShardResult {
                v: WIRE_VERSION,
                run_id: "r".into(),
                stage: stage.into(),
                shard,
                attempt: 1,
                last_attempt: true,
                worker: "w".into(),
                cluster: "local".into(),
                status,
                permanent: false,
                mlflow_run_id: Some(format!("m-{stage}-{shard}")),
                outputs,
                duration_s: 0.0,
                objects_in: 0,
                bytes_in: 0,
                bytes_out: 0,
                speculative: false,
            }),
        }
    }

    #[test]
    fn outputs_of_successful_shards_only_with_their_upstream_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_shard("r", "a", 0, &result("a", 0, true, &["x/2.png", "1.png"])).unwrap();
        store.put_shard("r", "a", 1, &result("a", 1, false, &["3.png"])).unwrap();
        let objects = upstream_outputs(&store, "r", &["a".to_string()]).unwrap();
        let paths: Vec<&str> = objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["1.png", "x/2.png"]);
        assert_eq!(objects[0].upstream_run.as_deref(), Some("m-a-0"));
    }

    #[test]
    fn two_upstream_stages_prefix_paths_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_shard("r", "a", 0, &result("a", 0, true, &["1.png"])).unwrap();
        store.put_shard("r", "b", 0, &result("b", 0, true, &["1.png"])).unwrap();
        let objects = upstream_outputs(&store, "r", &["a".to_string(), "b".to_string()]).unwrap();
        let paths: Vec<&str> = objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["a/1.png", "b/1.png"]);
    }
}
