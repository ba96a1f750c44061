//! The executor of one run: its share of the local worker pool, or Pods in the clusters of a
//! clusters file. One type, so that every run, local or not, is driven by the same host and
//! driver.

use std::time::Duration;

use concurrent_mlflow::project::snapshot::Snapshot;

use super::kubernetes::KubernetesExecutor;
use super::{Executor, ExecutorError, Observation, RunWorkers, StageRef};
use crate::placement::Cluster;

/// Where one run's workers are.
pub enum RunExecutor {
    Local(RunWorkers),
    Kubernetes(Box<KubernetesExecutor>),
}

impl Executor for RunExecutor {
    fn clusters(&mut self) -> Vec<Cluster> {
        match self {
            RunExecutor::Local(e) => e.clusters(),
            RunExecutor::Kubernetes(e) => e.clusters(),
        }
    }

    fn want(&mut self, workers: u32) {
        match self {
            RunExecutor::Local(e) => e.want(workers),
            RunExecutor::Kubernetes(e) => e.want(workers),
        }
    }

    async fn set_desired(&mut self, stage: &StageRef, cluster: &str, workers: u32) -> Result<(), ExecutorError> {
        match self {
            RunExecutor::Local(e) => e.set_desired(stage, cluster, workers).await,
            RunExecutor::Kubernetes(e) => e.set_desired(stage, cluster, workers).await,
        }
    }

    fn prepare_stage(&mut self, stage: &StageRef, project: &Snapshot) -> Result<(), ExecutorError> {
        match self {
            RunExecutor::Local(e) => e.prepare_stage(stage, project),
            RunExecutor::Kubernetes(e) => e.prepare_stage(stage, project),
        }
    }

    fn observe(&mut self, now: Duration) -> Observation {
        match self {
            RunExecutor::Local(e) => e.observe(now),
            RunExecutor::Kubernetes(e) => e.observe(now),
        }
    }

    fn burst_after(&self) -> Duration {
        match self {
            RunExecutor::Local(e) => e.burst_after(),
            RunExecutor::Kubernetes(e) => e.burst_after(),
        }
    }

    async fn shutdown(&mut self, grace: Duration) {
        match self {
            RunExecutor::Local(e) => e.shutdown(grace).await,
            RunExecutor::Kubernetes(e) => e.shutdown(grace).await,
        }
    }
}
