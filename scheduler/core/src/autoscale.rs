//! How many workers each running stage should have, and on which cluster: `desired =
//! min(parallelism, backlog)` per stage, placed by [`placement::place`] over the executor's
//! clusters, so that stages share free capacity fairly and burst past clusters whose workers
//! stay Pending. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::placement::{self, Amount, Cluster, Placed, StageNeed};

/// What one running stage asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDemand {
    pub stage: String,
    /// The stage's `parallelism`: most workers at once.
    pub parallelism: u32,
    /// Shards not decided yet, and speculative copies that may still decide one.
    pub backlog: u32,
    /// What one of its workers asks of a node.
    pub request: Amount,
    /// The stage's clusters in preference order (its `clusters` key); empty means all.
    pub clusters: Vec<String>,
}

impl StageDemand {
    /// Workers the stage should have: `min(parallelism, backlog)`.
    pub fn desired(&self) -> u32 {
        self.parallelism.min(self.backlog)
    }
}

/// How many workers a stage should have on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTarget {
    pub stage: String,
    pub cluster: String,
    pub workers: u32,
}

/// The workers every stage should have on every cluster, at `now` on the run's clock: a target
/// for each (stage, cluster) that gets workers or has some now (a target of 0 shrinks it).
/// `placed` is where each stage's workers are, as the executor last reported. A stage's
/// `clusters` that name none of `clusters` (a DAG written for Kubernetes run on the local
/// executor) leave it free to go anywhere.
pub fn worker_targets(
    demands: &[StageDemand],
    clusters: &[Cluster],
    placed: &BTreeMap<String, Vec<Placed>>,
    now: Duration,
    burst_after: Duration,
) -> Vec<WorkerTarget> {
    let known = |name: &String| clusters.iter().any(|c| &c.name == name);
    let needs: Vec<StageNeed> = demands
        .iter()
        .map(|d| StageNeed {
            stage: d.stage.clone(),
            wanted: d.desired(),
            request: d.request,
            clusters: if d.clusters.iter().any(known) { d.clusters.clone() } else { Vec::new() },
            placed: placed.get(&d.stage).cloned().unwrap_or_default(),
        })
        .collect();
    let placement = placement::place(clusters, &needs, now, burst_after);
    placement
        .targets
        .iter()
        .map(|t| WorkerTarget { stage: t.stage.to_string(), cluster: t.cluster.to_string(), workers: t.workers })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn demand(stage: &str, parallelism: u32, backlog: u32) -> StageDemand {
        StageDemand { stage: stage.into(), parallelism, backlog, request: Amount::default(), clusters: Vec::new() }
    }

    fn cluster(name: &str, max_workers: u32, other_workers: u32) -> Cluster {
        Cluster { name: name.into(), max_workers, other_workers, free_nodes: None }
    }

    fn running(pairs: &[(&str, &str, u32)]) -> BTreeMap<String, Vec<Placed>> {
        let mut placed: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
        for (stage, cluster, running) in pairs {
            placed.entry(stage.to_string()).or_default().push(Placed {
                cluster: cluster.to_string(),
                running: *running,
                pending_since: Vec::new(),
            });
        }
        placed
    }

    fn targets(
        demands: &[StageDemand],
        clusters: &[Cluster],
        placed: &BTreeMap<String, Vec<Placed>>,
    ) -> Vec<(String, u32)> {
        worker_targets(demands, clusters, placed, 100 * S, 30 * S)
            .into_iter()
            .map(|t| (format!("{}@{}", t.stage, t.cluster), t.workers))
            .collect()
    }

    #[test]
    fn desired_is_the_smaller_of_parallelism_and_backlog() {
        assert_eq!(demand("a", 10, 3).desired(), 3);
        assert_eq!(demand("a", 2, 300).desired(), 2);
        assert_eq!(demand("a", 2, 0).desired(), 0);
    }

    #[test]
    fn targets_fill_up_to_desired_within_capacity() {
        let local = [cluster("local", 8, 0)];
        assert_eq!(targets(&[demand("a", 4, 100)], &local, &running(&[("a", "local", 1)])), [("a@local".into(), 4)]);
        assert_eq!(
            targets(&[demand("a", 4, 100)], &[cluster("local", 2, 0)], &BTreeMap::new()),
            [("a@local".into(), 2)]
        );
    }

    #[test]
    fn workers_of_other_runs_use_up_capacity() {
        assert_eq!(
            targets(&[demand("b", 4, 100)], &[cluster("local", 4, 3)], &BTreeMap::new()),
            [("b@local".into(), 1)]
        );
        assert!(targets(&[demand("b", 4, 100)], &[cluster("local", 4, 4)], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn stages_share_capacity_fairly() {
        let local = [cluster("local", 5, 0)];
        let plan = targets(&[demand("a", 10, 100), demand("b", 10, 100)], &local, &BTreeMap::new());
        assert_eq!(plan, [("a@local".into(), 3), ("b@local".into(), 2)]);
        let plan = targets(&[demand("a", 1, 100), demand("b", 10, 100)], &local, &BTreeMap::new());
        assert_eq!(plan, [("a@local".into(), 1), ("b@local".into(), 4)]);
    }

    #[test]
    fn a_finished_backlog_shrinks_its_target_to_zero() {
        let plan = targets(&[demand("a", 4, 0)], &[cluster("local", 8, 0)], &running(&[("a", "local", 3)]));
        assert_eq!(plan, [("a@local".into(), 0)]);
    }

    #[test]
    fn clusters_a_stage_names_that_the_executor_lacks_leave_it_free() {
        let mut d = demand("a", 3, 10);
        d.clusters = vec!["gpu".into()];
        assert_eq!(targets(&[d.clone()], &[cluster("local", 8, 0)], &BTreeMap::new()), [("a@local".into(), 3)]);
        let two = [cluster("cpu", 8, 0), cluster("gpu", 8, 0)];
        assert_eq!(targets(&[d], &two, &BTreeMap::new()), [("a@gpu".into(), 3)]);
    }

    #[test]
    fn never_more_than_capacity_nor_desired() {
        for capacity in 0..12 {
            for others in 0..capacity + 2 {
                let demands = [demand("a", 3, 5), demand("b", 6, 2), demand("c", 2, 9)];
                let placed = running(&[("b", "local", 1)]);
                let plan = worker_targets(&demands, &[cluster("local", capacity, others)], &placed, S, 30 * S);
                let total: u32 = plan.iter().map(|t| t.workers).sum();
                assert!(
                    total <= capacity.saturating_sub(others).max(1),
                    "capacity {capacity}, others {others}: {plan:?}"
                );
                for target in plan {
                    let d = demands.iter().find(|d| d.stage == target.stage).unwrap();
                    assert!(target.workers <= d.desired());
                }
            }
        }
    }
}
