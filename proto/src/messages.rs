//! Queue messages. Every message carries a version field `v`; a message with another version,
//! or one that does not decode, is a [`DecodeError`] the receiver logs and terminates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Version of every message this build writes and the only one it reads.
pub const WIRE_VERSION: u32 = 1;

/// One input object of a shard: where it comes from and where it goes in the input directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputObject {
    /// Relative path under the shard's input directory (`/`-separated, no `..`).
    pub path: String,
    /// Source URI (`file://`, `mlflow-artifacts:/`, `runs:/`, `s3://`, …).
    pub uri: String,
    /// Size in bytes, when the listing knew it.
    pub size: Option<u64>,
    /// MLflow run id of the upstream shard run that produced it, if any.
    pub upstream_run: Option<String>,
}

/// A shard: one unit of work, published on `concurrent.shards.<run>.<stage>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMsg {
    pub v: u32,
    pub run_id: String,
    pub stage: String,
    /// 0-based shard index.
    pub shard: u32,
    /// Number of shards of the stage.
    pub shards: u32,
    pub inputs: Vec<InputObject>,
    /// A speculative copy of a shard whose attempt runs long: its attempts are numbered after
    /// the shard's own ([`speculative_attempt`]), and its failure never decides the shard.
    /// Absent (false) in messages written before it existed.
    #[serde(default)]
    pub speculative: bool,
}

/// The attempt number of delivery `delivered` (1-based) of a shard message: the delivery
/// itself, or for a speculative copy the shard's `max_attempts` plus it, so that no two
/// attempts of a shard share a number (results are told apart by shard and attempt).
pub fn speculative_attempt(speculative: bool, delivered: u32, max_attempts: u32) -> u32 {
    if speculative { max_attempts.saturating_add(delivered) } else { delivered }
}

/// Where a stage's shard runs are tracked in MLflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingTarget {
    /// Tracking server URI, e.g. `http://127.0.0.1:5000`.
    pub uri: String,
    pub experiment_id: String,
    /// The stage run: parent of every shard run.
    pub stage_run_id: String,
}

/// What a worker needs to run a stage; stored in KV under `<run>.<stage>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    pub v: u32,
    pub dag: String,
    pub run_id: String,
    pub stage: String,
    /// Key of the project snapshot (a `tar` of the project directory) in the object store.
    pub project_snapshot: String,
    /// Where the project came from, as the user wrote it (for `mlflow.source.name`).
    pub project_source: String,
    pub entry_point: String,
    /// Stage parameters as given in the DAG file and on the command line, with local `path`
    /// parameters (given or defaults) made absolute.
    pub parameters: BTreeMap<String, String>,
    /// `None` runs without MLflow (`--tracking none`).
    pub tracking: Option<TrackingTarget>,
    /// With tracking off: `file://` directory under which shard outputs are kept,
    /// as `<output_root>/<shard>/…`.
    pub output_root: Option<String>,
    /// Timeout of one attempt, in seconds.
    pub timeout_s: Option<u64>,
    /// Attempts per shard: `retries + 1`.
    pub max_attempts: u32,
    pub shards: u32,
    /// Most bytes of an attempt's log kept (its head and tail); `None` = [`DEFAULT_LOG_LIMIT`].
    /// Absent in descriptions written before it existed.
    #[serde(default)]
    pub log_limit: Option<u64>,
    /// MLflow's `--env-manager` name chosen for the stage (`local`, `virtualenv`, `uv`,
    /// `conda`); `None`: the project's own environment. Absent in descriptions written before
    /// it existed.
    #[serde(default)]
    pub env_manager: Option<String>,
    /// The names of `parameters` in the order the user gave them: those the entry point does
    /// not declare follow the command as `--key value` in this order. Absent in descriptions
    /// written before it existed (then by name).
    #[serde(default)]
    pub parameter_order: Vec<String>,
    /// The stage may get speculative copies of long attempts: its workers say when an attempt
    /// has run [`crate::timing::RUNNING_NOTICE_AFTER`] and stop an attempt whose shard another
    /// attempt decided. Absent (false) in descriptions written before it existed.
    #[serde(default)]
    pub speculate: bool,
}

/// The log cap of an attempt when the stage sets none: 64 MiB.
pub const DEFAULT_LOG_LIMIT: u64 = 64 * 1024 * 1024;

impl StageSpec {
    /// The stage's log cap in bytes.
    pub fn log_limit(&self) -> u64 {
        self.log_limit.unwrap_or(DEFAULT_LOG_LIMIT)
    }
}

/// One file a shard attempt produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputObject {
    /// Relative path under the output directory.
    pub path: String,
    /// Where it can be read from now.
    pub uri: String,
    pub size: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardStatus {
    Succeeded,
    /// The entry point failed (exit code, signal, timeout) or the worker could not run it.
    Failed {
        reason: String,
    },
}

/// The result of one shard attempt, published on `concurrent.results.<run>.<stage>`
/// before the shard message is acked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    pub v: u32,
    pub run_id: String,
    pub stage: String,
    pub shard: u32,
    /// 1-based attempt (the JetStream delivery count).
    pub attempt: u32,
    /// True when no further attempt will follow (success, or the last attempt failed).
    pub last_attempt: bool,
    pub worker: String,
    pub cluster: String,
    pub status: ShardStatus,
    /// The failure's cause cannot change (an unwritable outputs dir, an input that no longer
    /// exists, two inputs with one path): no attempt follows and the shard is failed at once.
    /// Absent (false) in results written before it existed.
    #[serde(default)]
    pub permanent: bool,
    /// The shard run of this attempt, when tracking is on.
    pub mlflow_run_id: Option<String>,
    pub outputs: Vec<OutputObject>,
    pub duration_s: f64,
    pub objects_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The attempt was of a speculative copy ([`ShardMsg::speculative`]). Absent (false) in
    /// results written before it existed.
    #[serde(default)]
    pub speculative: bool,
}

/// Results of consecutive attempts of one worker, published as one message on
/// `concurrent.results.<run>.<stage>` before their shard messages are settled: a worker that
/// finishes short attempts while more shards are queued reports them together (see
/// [`crate::timing::RESULT_HOLD`]). A message holding a single [`ShardResult`] is read the
/// same way ([`decode_results`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardResults {
    pub v: u32,
    pub results: Vec<ShardResult>,
}

/// Reads a result message: a [`ShardResults`], or a single [`ShardResult`] as workers
/// published them one by one.
pub fn decode_results(bytes: &[u8]) -> Result<Vec<ShardResult>, DecodeError> {
    #[derive(Deserialize)]
    struct Either {
        v: u32,
        results: Option<Vec<ShardResult>>,
    }
    let Either { v, results } = rmp_serde::from_slice(bytes).map_err(DecodeError::Malformed)?;
    if v != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion { found: v });
    }
    match results {
        Some(results) => Ok(results),
        None => rmp_serde::from_slice(bytes).map(|one| vec![one]).map_err(DecodeError::Malformed),
    }
}

/// A worker of a speculating stage says, on core NATS subject
/// [`crate::names::running_subject`], that an attempt has been running for a while. Best
/// effort: a notice nobody hears only means no copy of that attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRunning {
    pub v: u32,
    pub run_id: String,
    pub stage: String,
    pub shard: u32,
    pub attempt: u32,
    /// How long the attempt has run, in milliseconds (the receiver dates its start by its own
    /// clock, so the two clocks need not agree).
    pub elapsed_ms: u64,
    /// The shard message's sequence in the shards stream: what a copy is made from.
    pub stream_sequence: u64,
}

/// The scheduler says, on core NATS subject [`crate::names::decided_subject`], that a shard
/// with a speculative copy is decided: every other attempt of it stops, its run KILLED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDecided {
    pub v: u32,
    pub run_id: String,
    pub stage: String,
    pub shard: u32,
    /// The attempt whose result decided it.
    pub attempt: u32,
}

/// A message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message does not decode as MessagePack: {0}")]
    Malformed(#[source] rmp_serde::decode::Error),
    #[error("message has wire version {found}, this build reads version {WIRE_VERSION}")]
    UnknownVersion { found: u32 },
}

/// Encodes a message as MessagePack with field names, so fields can be added compatibly.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(message).expect("messages are plain data and always encode")
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Decodes a message, checking its version first.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let VersionOnly { v } = rmp_serde::from_slice(bytes).map_err(DecodeError::Malformed)?;
    if v != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion { found: v });
    }
    rmp_serde::from_slice(bytes).map_err(DecodeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_shard() -> ShardMsg {
        ShardMsg {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "thumbnails".into(),
            shard: 3,
            shards: 10,
            inputs: vec![InputObject {
                path: "a/b.jpg".into(),
                uri: "file:///data/a/b.jpg".into(),
                size: Some(12),
                upstream_run: None,
            }],
            speculative: false,
        }
    }

    #[test]
    fn shard_round_trips() {
        let shard = sample_shard();
        assert_eq!(decode::<ShardMsg>(&encode(&shard)).unwrap(), shard);
    }

    #[test]
    fn result_round_trips() {
        let result = ShardResult {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "s".into(),
            shard: 0,
            attempt: 2,
            last_attempt: true,
            worker: "w-1".into(),
            cluster: "local".into(),
            status: ShardStatus::Failed { reason: "exit code 1".into() },
            permanent: true,
            mlflow_run_id: Some("abc".into()),
            outputs: vec![OutputObject { path: "x.png".into(), uri: "file:///o/x.png".into(), size: 4 }],
            duration_s: 1.5,
            objects_in: 1,
            bytes_in: 12,
            bytes_out: 4,
            speculative: true,
        };
        assert_eq!(decode::<ShardResult>(&encode(&result)).unwrap(), result);
    }

    #[test]
    fn a_result_message_holds_one_result_or_several() {
        let result = |shard| ShardResult {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "s".into(),
            shard,
            attempt: 1,
            last_attempt: true,
            worker: "w-1".into(),
            cluster: "local".into(),
            status: ShardStatus::Succeeded,
            permanent: false,
            mlflow_run_id: None,
            outputs: Vec::new(),
            duration_s: 0.5,
            objects_in: 1,
            bytes_in: 0,
            bytes_out: 0,
            speculative: false,
        };
        assert_eq!(decode_results(&encode(&result(3))).unwrap(), vec![result(3)]);
        let mut failed = result(2);
        failed.status = ShardStatus::Failed { reason: "exit code 1".into() };
        failed.outputs = vec![OutputObject { path: "x.png".into(), uri: "file:///o/x.png".into(), size: 4 }];
        let batch = ShardResults { v: WIRE_VERSION, results: vec![result(1), failed] };
        assert_eq!(decode_results(&encode(&batch)).unwrap(), batch.results);
        let future = ShardResults { v: WIRE_VERSION + 1, results: vec![result(1)] };
        assert!(matches!(decode_results(&encode(&future)), Err(DecodeError::UnknownVersion { .. })));
        assert!(matches!(decode_results(b"\x01"), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn notices_round_trip() {
        let running = AttemptRunning {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "s".into(),
            shard: 3,
            attempt: 1,
            elapsed_ms: 1000,
            stream_sequence: 42,
        };
        assert_eq!(decode::<AttemptRunning>(&encode(&running)).unwrap(), running);
        let decided = ShardDecided { v: WIRE_VERSION, run_id: "r1".into(), stage: "s".into(), shard: 3, attempt: 4 };
        assert_eq!(decode::<ShardDecided>(&encode(&decided)).unwrap(), decided);
    }

    #[test]
    fn a_copy_numbers_its_attempts_after_the_shards_own() {
        assert_eq!(speculative_attempt(false, 2, 3), 2);
        assert_eq!(speculative_attempt(true, 1, 3), 4);
        assert_eq!(speculative_attempt(true, 2, 3), 5);
    }

    /// A result as written before `permanent` existed: the same fields, without it.
    #[derive(Serialize)]
    struct ResultBeforePermanent {
        v: u32,
        run_id: String,
        stage: String,
        shard: u32,
        attempt: u32,
        last_attempt: bool,
        worker: String,
        cluster: String,
        status: ShardStatus,
        mlflow_run_id: Option<String>,
        outputs: Vec<OutputObject>,
        duration_s: f64,
        objects_in: u64,
        bytes_in: u64,
        bytes_out: u64,
    }

    #[test]
    fn a_result_without_the_permanent_field_decodes_as_retryable() {
        let old = ResultBeforePermanent {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "s".into(),
            shard: 1,
            attempt: 1,
            last_attempt: false,
            worker: "w".into(),
            cluster: "local".into(),
            status: ShardStatus::Failed { reason: "exit code 1".into() },
            mlflow_run_id: None,
            outputs: vec![],
            duration_s: 0.5,
            objects_in: 1,
            bytes_in: 1,
            bytes_out: 0,
        };
        let decoded: ShardResult = decode(&encode(&old)).unwrap();
        assert!(!decoded.permanent);
        assert!(!decoded.speculative);
        assert_eq!(decoded.status, old.status);
    }

    #[test]
    fn a_stage_spec_without_a_log_limit_gets_the_default() {
        #[derive(Serialize)]
        struct SpecBeforeLogLimit {
            v: u32,
            dag: String,
            run_id: String,
            stage: String,
            project_snapshot: String,
            project_source: String,
            entry_point: String,
            parameters: BTreeMap<String, String>,
            tracking: Option<TrackingTarget>,
            output_root: Option<String>,
            timeout_s: Option<u64>,
            max_attempts: u32,
            shards: u32,
        }
        let old = SpecBeforeLogLimit {
            v: WIRE_VERSION,
            dag: "d".into(),
            run_id: "r".into(),
            stage: "s".into(),
            project_snapshot: "sha256:0".into(),
            project_source: "./p".into(),
            entry_point: "main".into(),
            parameters: BTreeMap::new(),
            tracking: None,
            output_root: None,
            timeout_s: None,
            max_attempts: 3,
            shards: 1,
        };
        let decoded: StageSpec = decode(&encode(&old)).unwrap();
        assert_eq!(decoded.log_limit, None);
        assert_eq!(decoded.log_limit(), DEFAULT_LOG_LIMIT);
        assert!(!decoded.speculate);
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut shard = sample_shard();
        shard.v = 99;
        let err = decode::<ShardMsg>(&encode(&shard)).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownVersion { found: 99 }), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(decode::<ShardMsg>(b"\xc1\xff garbage"), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode::<ShardMsg>(b""), Err(DecodeError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<ShardMsg>(&bytes);
            let _ = decode::<ShardResult>(&bytes);
            let _ = decode::<StageSpec>(&bytes);
        }
    }
}
