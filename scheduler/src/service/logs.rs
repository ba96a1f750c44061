//! Entry point logs of shard attempts: the `logs/entry_point.log` artifact of the attempt's
//! shard run in MLflow, or, with tracking off, the file the worker kept in the state dir.

use std::path::Path;

use concurrent_mlflow::object_path::ObjectPath;
use concurrent_mlflow::tracking::{MlflowClient, join_artifact_uri};

use super::error::HostError;
use super::host::ShardLog;

/// Where a shard run keeps its entry point log, under its artifact root.
const LOG_ARTIFACT: &str = "logs/entry_point.log";

/// The log of `shard`'s attempt (the latest when `attempt` is `None`) among the shard runs
/// under the stage run `stage_run`; `None` when there is no such attempt or log.
pub async fn from_mlflow(
    client: &MlflowClient,
    stage_run: &str,
    shard: u32,
    attempt: Option<u32>,
) -> Result<Option<ShardLog>, HostError> {
    let stage = client.get_run(stage_run).await?;
    let filter = format!("tags.`mlflow.parentRunId` = '{stage_run}' and tags.`concurrent.shard` = '{shard}'");
    let runs = client.search_runs(std::slice::from_ref(&stage.info.experiment_id), &filter).await?;
    let attempt_of = |run: &concurrent_mlflow::tracking::Run| {
        run.data.tags.get("concurrent.attempt").and_then(|a| a.parse::<u32>().ok()).unwrap_or(1)
    };
    let chosen = match attempt {
        Some(k) => runs.into_iter().find(|run| attempt_of(run) == k),
        None => runs.into_iter().max_by_key(|run| attempt_of(run)),
    };
    let Some(run) = chosen else { return Ok(None) };
    let uri = join_artifact_uri(&run.info.artifact_uri, &ObjectPath::literal(LOG_ARTIFACT))?;
    let part =
        tempfile::NamedTempFile::new().map_err(|source| HostError::Io { path: "a temporary file".into(), source })?;
    match client.download(&uri, part.path()).await {
        Ok(_) => {}
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let bytes = std::fs::read(part.path()).map_err(|source| HostError::Io { path: uri.clone(), source })?;
    Ok(Some(ShardLog { attempt: attempt_of(&run), bytes }))
}

/// The log kept at `<logs>/<stage>-<shard>-a<attempt>.log` by a worker with tracking off.
pub fn from_dir(logs: &Path, stage: &str, shard: u32, attempt: Option<u32>) -> Result<Option<ShardLog>, HostError> {
    let attempt = match attempt {
        Some(k) => k,
        None => {
            let prefix = format!("{stage}-{shard}-a");
            let Ok(entries) = std::fs::read_dir(logs) else { return Ok(None) };
            let latest = entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter_map(|name| name.strip_prefix(&prefix)?.strip_suffix(".log")?.parse::<u32>().ok())
                .max();
            match latest {
                Some(k) => k,
                None => return Ok(None),
            }
        }
    };
    let path = logs.join(format!("{stage}-{shard}-a{attempt}.log"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(ShardLog { attempt, bytes })),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostError::Io { path: path.display().to_string(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_attempt_is_found_by_its_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("copy-3-a1.log"), "first").unwrap();
        std::fs::write(dir.path().join("copy-3-a2.log"), "second").unwrap();
        std::fs::write(dir.path().join("copy-30-a9.log"), "other shard").unwrap();
        let latest = from_dir(dir.path(), "copy", 3, None).unwrap().unwrap();
        assert_eq!((latest.attempt, latest.bytes.as_slice()), (2, &b"second"[..]));
        let first = from_dir(dir.path(), "copy", 3, Some(1)).unwrap().unwrap();
        assert_eq!(first.bytes, b"first");
        assert!(from_dir(dir.path(), "copy", 4, None).unwrap().is_none());
        assert!(from_dir(dir.path(), "copy", 3, Some(7)).unwrap().is_none());
    }
}
