//! One local executor shared by every run a service hosts: at most `--max-workers` workers in
//! all, divided between runs by weighted max-min fair share ([`crate::fair_share`]). Each run
//! drives its own [`RunWorkers`], an [`Executor`] that sees only that run's workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::local::{LocalExecutor, local_cluster, observation};
use super::{Executor, ExecutorError, Observation, StageRef};
use crate::fair_share::{Claim, fair_share};
use crate::placement::Cluster;

/// The local executor and every run's claim on it.
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

struct Shared {
    executor: Mutex<LocalExecutor>,
    claims: Mutex<BTreeMap<String, Claim>>,
    slots: u32,
}

impl WorkerPool {
    /// A pool of at most `executor.capacity()` workers.
    pub fn new(executor: LocalExecutor) -> WorkerPool {
        let slots = executor.capacity();
        WorkerPool {
            shared: Arc::new(Shared { executor: Mutex::new(executor), claims: Mutex::new(BTreeMap::new()), slots }),
        }
    }

    /// The executor one run drives, with its weight in the fair share (`priority`).
    pub fn for_run(&self, run_id: &str, weight: u32) -> RunWorkers {
        self.shared.claims().insert(run_id.to_string(), Claim { wanted: 0, weight });
        RunWorkers { shared: self.shared.clone(), run_id: run_id.to_string() }
    }

    /// Most workers at once, all runs together.
    pub fn slots(&self) -> u32 {
        self.shared.slots
    }

    /// Workers alive now, per run and stage.
    pub fn alive_per_stage(&self) -> BTreeMap<StageRef, u32> {
        self.shared.executor().alive()
    }

    /// Stops every worker of every run.
    pub async fn shutdown(&self, grace: Duration) {
        let runs: Vec<String> = self.shared.claims().keys().cloned().collect();
        let deadline = tokio::time::Instant::now() + grace;
        let stopping: Vec<_> = runs.iter().flat_map(|run| self.shared.executor().stop_run(run)).collect();
        futures::future::join_all(stopping.into_iter().map(|w| w.wait_until(deadline))).await;
    }
}

impl Shared {
    fn executor(&self) -> MutexGuard<'_, LocalExecutor> {
        self.executor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn claims(&self) -> MutexGuard<'_, BTreeMap<String, Claim>> {
        self.claims.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One run's view of the pool: its own workers, and the slots its fair share allows.
pub struct RunWorkers {
    shared: Arc<Shared>,
    run_id: String,
}

impl Drop for RunWorkers {
    fn drop(&mut self) {
        self.shared.claims().remove(&self.run_id);
    }
}

impl RunWorkers {
    /// This run's fair share of the slots, given every run's claim now.
    fn share(&self) -> u32 {
        let claims = self.shared.claims().clone();
        fair_share(&claims, self.shared.slots).get(&self.run_id).copied().unwrap_or(0)
    }
}

impl RunWorkers {
    /// The run's fair share, less what other runs' workers still hold beyond theirs (they
    /// drain after their shard in hand), so the pool never runs more than its slots.
    fn capacity(&self) -> u32 {
        let share = self.share();
        let mut executor = self.shared.executor();
        let others: u32 =
            executor.alive().iter().filter(|(stage, _)| stage.run_id != self.run_id).map(|(_, n)| *n).sum();
        share.min(self.shared.slots.saturating_sub(others))
    }
}

impl Executor for RunWorkers {
    fn clusters(&mut self) -> Vec<Cluster> {
        vec![local_cluster(self.capacity(), 0)]
    }

    /// Records the run's claim; workers it holds beyond its share are asked to drain.
    fn want(&mut self, workers: u32) {
        if let Some(claim) = self.shared.claims().get_mut(&self.run_id) {
            claim.wanted = workers;
        }
        let share = self.share();
        let mut executor = self.shared.executor();
        let serving = executor.serving(&self.run_id);
        if serving > share {
            let asked = executor.drain(&self.run_id, serving - share);
            tracing::debug!(run = %self.run_id, asked, share, "workers beyond the run's share drain");
        }
    }

    async fn set_desired(&mut self, stage: &StageRef, _cluster: &str, workers: u32) -> Result<(), ExecutorError> {
        self.shared.executor().start_up_to(stage, workers)
    }

    fn observe(&mut self, _now: Duration) -> Observation {
        let mut executor = self.shared.executor();
        let mut alive = executor.alive();
        alive.retain(|stage, _| stage.run_id == self.run_id);
        observation(alive, executor.take_abandoned_of(&self.run_id))
    }

    async fn shutdown(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let stopping = self.shared.executor().stop_run(&self.run_id);
        futures::future::join_all(stopping.into_iter().map(|w| w.wait_until(deadline))).await;
    }
}
