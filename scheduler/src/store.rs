//! Run state on disk, in sled: one record per run, per stage and per decided shard.
//! Everything the scheduler knows about a run survives its restart.

use std::path::Path;

use concurrent_proto::ShardResult;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::run_state::{ShardOutcome, StageStatus};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error(
        "the state store at {path} is in use by another `concurrent` process: one scheduler at a time per state \
         dir (choose another with --state-dir)"
    )]
    Busy { path: String },
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store record {key} does not decode: {source}")]
    Decode { key: String, source: rmp_serde::decode::Error },
}

/// Where a run is tracked in MLflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTracking {
    pub uri: String,
    pub experiment_id: String,
    /// The DAG run: parent of every stage run.
    pub parent_run_id: String,
}

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One DAG run, with what it takes to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub dag_name: String,
    /// The DAG file as it was submitted.
    pub dag_path: String,
    /// The DAG file's text at submission.
    pub dag_text: String,
    /// The directory relative paths of the DAG are resolved against.
    pub base_dir: String,
    /// The DAG `input` after `--input` (resolved), when it was replaced.
    pub input_override: Option<String>,
    /// `-P STAGE.PARAM=VALUE` overrides, in order.
    pub parameter_overrides: Vec<(String, String, String)>,
    pub tracking: Option<RunTracking>,
    pub status: RunStatus,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
    /// The name of the token the run was submitted with, through the service.
    #[serde(default)]
    pub submitted_by: Option<String>,
    /// The run's weight in the fair share of worker slots (default 1).
    #[serde(default)]
    pub priority: Option<u32>,
    /// Local projects as written in the DAG -> the snapshot dirs they were unpacked to, for
    /// runs submitted with uploaded projects.
    #[serde(default)]
    pub project_dirs: std::collections::BTreeMap<String, String>,
    /// `--env-manager`, when given.
    #[serde(default)]
    pub env_manager_override: Option<String>,
}

impl RunRecord {
    /// A run starting now: `dag` as parsed with `overrides`, its DAG file at `dag_path`,
    /// tracked as `tracking` says. Who submitted it, its priority and uploaded projects are
    /// the service's to fill in.
    pub fn starting(
        run_id: &str,
        dag: &crate::dag::Dag,
        dag_path: &Path,
        overrides: crate::dag::Overrides,
        tracking: Option<RunTracking>,
    ) -> RunRecord {
        RunRecord {
            run_id: run_id.to_string(),
            dag_name: dag.name.clone(),
            dag_path: dag_path.display().to_string(),
            dag_text: dag.source_text.clone(),
            base_dir: dag.base_dir.display().to_string(),
            input_override: overrides.input.is_some().then(|| match &dag.input {
                crate::dag::InputSource::Uri(uri) => uri.clone(),
                crate::dag::InputSource::None => "none".to_string(),
            }),
            parameter_overrides: overrides.parameters,
            env_manager_override: overrides.env_manager,
            tracking,
            status: RunStatus::Running,
            created_ms: crate::run_tree::now_ms(),
            ended_ms: None,
            submitted_by: None,
            priority: None,
            project_dirs: std::collections::BTreeMap::new(),
        }
    }
}

/// One stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub status: StageStatus,
    pub shards_total: u32,
    /// Shards published so far, in index order; resuming publishes the rest.
    pub published: u32,
    pub objects_in: u64,
    /// The stage run in MLflow.
    pub mlflow_run_id: Option<String>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// For a stage sized adaptively, the sizes of the shards cut so far in shard order (shard
    /// `i` holds the objects after those of shards `0..i` in path order); written before the
    /// shards are published. `None` for a stage cut up front.
    #[serde(default)]
    pub cuts: Option<Vec<u32>>,
}

impl StageRecord {
    /// A stage starting now.
    pub fn new(status: StageStatus, shards_total: u32, objects_in: u64) -> StageRecord {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        StageRecord {
            status,
            shards_total,
            published: 0,
            objects_in,
            mlflow_run_id: None,
            started_ms: Some(now),
            ended_ms: None,
            cuts: None,
        }
    }

    /// A stage sized adaptively starting now, no shard cut yet.
    pub fn adaptive(objects_in: u64) -> StageRecord {
        StageRecord { cuts: Some(Vec::new()), ..StageRecord::new(StageStatus::Running, 0, objects_in) }
    }

    /// Whether resuming the stage needs its input listed again: shards recorded but not
    /// published, or objects not cut yet.
    pub fn needs_listing(&self) -> bool {
        let cut = |cuts: &Vec<u32>| cuts.iter().map(|&n| u64::from(n)).sum::<u64>();
        self.published < self.shards_total || self.cuts.as_ref().is_some_and(|cuts| cut(cuts) < self.objects_in)
    }

    /// Seconds from start to end (or to now while it runs).
    pub fn duration_s(&self) -> f64 {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.started_ms.map_or(0.0, |start| (self.ended_ms.unwrap_or(now) - start).max(0) as f64 / 1000.0)
    }
}

/// A shard that has at least one result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub outcome: ShardOutcome,
    /// Attempt numbers whose results arrived, in arrival order; a result redelivered to the
    /// scheduler (same attempt) is applied once.
    pub attempts: Vec<u32>,
    /// The result that decided the shard; its outputs are what downstream stages read.
    pub decided_by: Option<ShardResult>,
    /// Results that arrived after the shard was decided.
    pub duplicates: u32,
}

impl ShardRecord {
    /// A shard with no result yet.
    pub fn pending() -> ShardRecord {
        ShardRecord { outcome: ShardOutcome::Pending, attempts: Vec::new(), decided_by: None, duplicates: 0 }
    }
}

/// The sled database of a state dir.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    runs: sled::Tree,
    stages: sled::Tree,
    shards: sled::Tree,
}

/// How long [`Store::open`] waits for a lock held elsewhere.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether sled's open failed because another handle holds the file lock.
fn is_lock_held(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock || error.to_string().contains("could not acquire lock")
}

impl Store {
    /// Opens (or creates) the store under `dir`. The store is locked by one process at a time;
    /// a lock still held (a store of this process just dropped, whose flusher thread lets go a
    /// moment later, or another scheduler on the same state dir) is waited for up to 2 s.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::open(dir) {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if is_lock_held(&e) => {
                    if std::time::Instant::now() > deadline {
                        return Err(StoreError::Busy { path: dir.display().to_string() });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => return Err(StoreError::Open { path: dir.display().to_string(), source }),
            }
        };
        Ok(Store { runs: db.open_tree("runs")?, stages: db.open_tree("stages")?, shards: db.open_tree("shards")?, db })
    }

    /// Writes a run record.
    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.runs.insert(run.run_id.as_bytes(), encode(run))?;
        Ok(())
    }

    /// Reads a run record.
    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        get(&self.runs, run_id.as_bytes())
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = self.runs.iter().map(|kv| decode_kv(kv?)).collect::<Result<Vec<RunRecord>, _>>()?;
        runs.sort_by_key(|r| r.created_ms);
        Ok(runs)
    }

    /// Writes a stage record.
    pub fn put_stage(&self, run_id: &str, stage: &str, record: &StageRecord) -> Result<(), StoreError> {
        self.stages.insert(stage_key(run_id, stage), encode(record))?;
        Ok(())
    }

    /// Reads a stage record.
    pub fn stage(&self, run_id: &str, stage: &str) -> Result<Option<StageRecord>, StoreError> {
        get(&self.stages, &stage_key(run_id, stage))
    }

    /// Every stage record of a run, by stage name.
    pub fn stages(&self, run_id: &str) -> Result<Vec<(String, StageRecord)>, StoreError> {
        let mut prefix = run_id.as_bytes().to_vec();
        prefix.push(0);
        self.stages
            .scan_prefix(&prefix)
            .map(|kv| {
                let (key, value) = kv?;
                let name = key[prefix.len()..].strip_suffix(&[0]).unwrap_or(&key[prefix.len()..]);
                Ok((String::from_utf8_lossy(name).into_owned(), decode_bytes(&key, &value)?))
            })
            .collect()
    }

    /// Writes a shard record.
    pub fn put_shard(&self, run_id: &str, stage: &str, shard: u32, record: &ShardRecord) -> Result<(), StoreError> {
        self.shards.insert(shard_key(run_id, stage, shard), encode(record))?;
        Ok(())
    }

    /// Reads a shard record; `None` while no result arrived.
    pub fn shard(&self, run_id: &str, stage: &str, shard: u32) -> Result<Option<ShardRecord>, StoreError> {
        get(&self.shards, &shard_key(run_id, stage, shard))
    }

    /// Every shard record of a stage, by shard index.
    pub fn shards(&self, run_id: &str, stage: &str) -> Result<Vec<(u32, ShardRecord)>, StoreError> {
        let prefix = stage_key(run_id, stage);
        self.shards
            .scan_prefix(&prefix)
            .map(|kv| {
                let (key, value) = kv?;
                let index = key[prefix.len()..].try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX);
                Ok((index, decode_bytes(&key, &value)?))
            })
            .collect()
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn stage_key(run_id: &str, stage: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(run_id.len() + stage.len() + 2);
    key.extend_from_slice(run_id.as_bytes());
    key.push(0);
    key.extend_from_slice(stage.as_bytes());
    key.push(0);
    key
}

fn shard_key(run_id: &str, stage: &str, shard: u32) -> Vec<u8> {
    let mut key = stage_key(run_id, stage);
    key.extend_from_slice(&shard.to_be_bytes());
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("records are plain data and always encode")
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    tree.get(key)?.map(|value| decode_bytes(key, &value)).transpose()
}

fn decode_kv<T: DeserializeOwned>((key, value): (sled::IVec, sled::IVec)) -> Result<T, StoreError> {
    decode_bytes(&key, &value)
}

fn decode_bytes<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(value)
        .map_err(|source| StoreError::Decode { key: String::from_utf8_lossy(key).replace('\0', "/"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage_record() -> StageRecord {
        StageRecord {
            status: StageStatus::Running,
            shards_total: 3,
            published: 3,
            objects_in: 7,
            mlflow_run_id: Some("m1".into()),
            started_ms: Some(1),
            ended_ms: None,
            cuts: Some(vec![1, 2, 4]),
        }
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let run = RunRecord {
                run_id: "r1".into(),
                dag_name: "d".into(),
                dag_path: "/x/dag.yaml".into(),
                dag_text: "name: d".into(),
                base_dir: "/x".into(),
                input_override: None,
                parameter_overrides: vec![("a".into(), "size".into(), "3".into())],
                tracking: None,
                status: RunStatus::Running,
                created_ms: 5,
                ended_ms: None,
                submitted_by: Some("alice".into()),
                priority: None,
                project_dirs: Default::default(),
                env_manager_override: None,
            };
            store.put_run(&run).unwrap();
            store.put_stage("r1", "a", &stage_record()).unwrap();
            let shard =
                ShardRecord { outcome: ShardOutcome::Succeeded, attempts: vec![1, 2], decided_by: None, duplicates: 0 };
            store.put_shard("r1", "a", 2, &shard).unwrap();
            store.put_shard("r1", "a", 300, &shard).unwrap();
            store.put_shard("r1", "ab", 1, &shard).unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!((run.dag_name.as_str(), run.dag_text.as_str()), ("d", "name: d"));
        assert_eq!(run.parameter_overrides, vec![("a".to_string(), "size".to_string(), "3".to_string())]);
        assert_eq!(store.stage("r1", "a").unwrap(), Some(stage_record()));
        let shards: Vec<u32> = store.shards("r1", "a").unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(shards, vec![2, 300], "a stage's shards, in order, and not those of a stage whose name extends it");
        assert_eq!(store.runs().unwrap().len(), 1);
        assert!(store.run("nope").unwrap().is_none());
    }
}
