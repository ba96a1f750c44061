//! The seam between the scheduler and where workers run (DESIGN §6). The scheduler's pure
//! autoscaler decides how many workers each stage should get; an [`Executor`] launches them
//! and reports how many are alive.

pub mod kubernetes;
pub mod local;
mod orphans;
pub mod pool;

use std::collections::BTreeMap;
use std::future::Future;

pub use local::LocalExecutor;
pub use pool::{RunWorkers, WorkerPool};

/// A stage workers are launched for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StageRef {
    pub run_id: String,
    pub stage: String,
}

/// A shard whose worker died while its entry point ran; the entry point is already killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub stage: StageRef,
    /// The shard message's ack subject: a nak there hands the shard out again at once.
    pub ack_subject: String,
}

/// Launching or watching workers failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot start worker {binary}: {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("cannot prepare the worker log directory {dir}: {source}")]
    LogDir { dir: String, source: std::io::Error },
}

/// Where workers run: local processes, Kubernetes Jobs, or a simulation.
pub trait Executor: Send {
    /// Most workers this executor runs at once.
    fn capacity(&self) -> u32;

    /// Tells the executor how many workers the run could use now (all its stages together),
    /// before it asks for [`Executor::capacity`]; an executor shared between runs divides its
    /// slots by these claims.
    fn want(&mut self, _workers: u32) {}

    /// Launches `count` more workers for `stage`.
    fn launch(&mut self, stage: &StageRef, count: u32) -> impl Future<Output = Result<(), ExecutorError>> + Send;

    /// Workers alive now, per stage; forgets those that have exited.
    fn alive(&mut self) -> BTreeMap<StageRef, u32>;

    /// Shards whose workers were seen dying mid-attempt since the last call. An executor that
    /// cannot tell returns none, and those shards come back after `ack_wait`.
    fn take_abandoned(&mut self) -> Vec<Abandoned> {
        Vec::new()
    }

    /// Stops every worker: a polite signal first, then a kill after `grace`.
    fn shutdown(&mut self, grace: std::time::Duration) -> impl Future<Output = ()> + Send;
}
