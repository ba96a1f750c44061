//! What a run tells its watchers while it goes, and how it ended.

use crate::run_state::{RunOutcome, StageStatus};

/// Progress of a run, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// A stage published its shards (for a stage sized adaptively: listed its objects, with the
    /// shards cut so far).
    StageStarted { stage: String, shards: u32, objects: u64 },
    /// A stage sized adaptively cut more shards: it has `shards` now.
    ShardsCut { stage: String, shards: u32 },
    /// A stage's input could not be listed or partitioned: it fails.
    StageFailedToStart { stage: String, reason: String },
    /// An attempt failed and the shard will be tried again (unless it is decided).
    AttemptFailed { stage: String, shard: u32, attempt: u32, reason: String },
    /// A shard is decided.
    ShardDecided { stage: String, shard: u32, succeeded: bool },
    /// Every shard of a stage is decided.
    StageEnded { stage: String, status: StageStatus },
    /// A stage will not run because an upstream stage failed.
    StageSkipped { stage: String },
    /// The run ended.
    RunEnded { outcome: RunOutcome },
}

/// One stage's figures at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSummary {
    pub stage: String,
    pub status: StageStatus,
    pub shards_total: u32,
    pub shards_succeeded: u32,
    pub shards_failed: u32,
    /// Attempts whose results arrived, failed ones included.
    pub attempts: u32,
    /// Results that arrived for shards already decided (ignored).
    pub duplicates: u32,
    pub objects_in: u64,
    pub objects_out: u64,
    pub duration_s: f64,
    pub mlflow_run_id: Option<String>,
    /// Shards decided FAILED by a permanent failure (not retried), with their reasons.
    pub permanent_failures: Vec<(u32, String)>,
    /// The stage ended with all its shards succeeded, no output and this many input objects
    /// (a warning; a failure with `fail_on_empty`).
    pub empty_output: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    /// `None` when the run was cancelled.
    pub outcome: Option<RunOutcome>,
    pub stages: Vec<StageSummary>,
    pub wall_s: f64,
    /// The DAG run in MLflow and its experiment.
    pub mlflow: Option<(String, String)>,
}

/// A started stage's objects and shards: `300 objects in 4 shards`, or, for a stage sized
/// adaptively (objects but no shard cut yet), `300 objects, shards sized adaptively`.
pub fn objects_and_shards(shards: u32, objects: u64) -> String {
    if shards == 0 && objects > 0 {
        format!("{objects} objects, shards sized adaptively")
    } else {
        format!("{objects} objects in {shards} shards")
    }
}
