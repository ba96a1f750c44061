//! The seam between the scheduler and where workers run (DESIGN §6). The scheduler's pure
//! autoscaler decides how many workers each stage should get; an [`Executor`] launches them
//! and reports how many are alive.

pub mod kubernetes;
pub mod local;
mod orphans;
pub mod pool;
mod run_executor;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub use local::{LOCAL_CLUSTER, LocalExecutor};
pub use pool::{RunWorkers, WorkerPool};
pub use run_executor::RunExecutor;

use crate::placement::{Cluster, Placed};
use concurrent_mlflow::project::snapshot::Snapshot;

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
    #[error("cannot make a worker Job manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
}

/// A stage that cannot run: its image could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFailure {
    pub stage: StageRef,
    pub reason: String,
    /// The log of what failed (a build's), for the stage run.
    pub log: Option<String>,
}

/// What an executor sees now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Per stage: its workers on each cluster, running and Pending (since when, on the run's
    /// clock).
    pub placed: BTreeMap<StageRef, Vec<Placed>>,
    /// Workers seen dying while they held a lease, since the last observation.
    pub abandoned: Vec<Abandoned>,
    /// Stages that cannot run, each reported once.
    pub failed_stages: Vec<StageFailure>,
}

/// Where workers run: local processes, Kubernetes Jobs, or a simulation. The scheduler decides
/// how many workers each stage should have on each cluster ([`crate::autoscale`] and
/// [`crate::placement`], pure); the executor makes it so and reports what it sees.
pub trait Executor: Send {
    /// The clusters workers can go to, as last seen.
    fn clusters(&mut self) -> Vec<Cluster>;

    /// Tells the executor how many workers the run could use now (all its stages together),
    /// before it asks for [`Executor::clusters`]; an executor shared between runs divides its
    /// slots by these claims.
    fn want(&mut self, _workers: u32) {}

    /// How many workers `stage` should have on `cluster` now. More are started at once; when
    /// fewer are wanted, Pending workers are removed first, and running ones finish their
    /// shard and exit when the queue is idle.
    fn set_desired(
        &mut self,
        stage: &StageRef,
        cluster: &str,
        workers: u32,
    ) -> impl Future<Output = Result<(), ExecutorError>> + Send;

    /// Gets `stage` ready before its shards go out, its project packed as `project` (the
    /// Kubernetes executor starts having its image: looked up, or built). A stage that then
    /// cannot run is reported by [`Executor::observe`].
    fn prepare_stage(&mut self, _stage: &StageRef, _project: &Snapshot) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// The run's workers now, per stage and cluster, and those that died holding a lease since
    /// the last call (an executor that cannot tell reports none, and those shards come back
    /// after `ack_wait`). `now` is the run's clock, which Pending times are reported on.
    fn observe(&mut self, now: Duration) -> Observation;

    /// How long a worker may stay Pending before its cluster counts as full for its stage.
    fn burst_after(&self) -> Duration {
        crate::placement::DEFAULT_BURST_AFTER
    }

    /// Stops every worker of the run: a polite signal first, then a kill after `grace`.
    fn shutdown(&mut self, grace: Duration) -> impl Future<Output = ()> + Send;
}
