//! How many workers to launch for each running stage: `desired = min(parallelism, backlog)`
//! per stage, within the executor's capacity shared fairly between stages. Pure.

use std::time::Duration;

use crate::placement::{self, Amount, Cluster, Placed, StageNeed};

/// What one running stage asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDemand {
    pub stage: String,
    /// The stage's `parallelism`: most workers at once.
    pub parallelism: u32,
    /// Shards not decided yet.
    pub backlog: u32,
    /// Workers of the stage alive now.
    pub running: u32,
}

impl StageDemand {
    /// Workers the stage should have: `min(parallelism, backlog)`.
    pub fn desired(&self) -> u32 {
        self.parallelism.min(self.backlog)
    }
}

/// Workers to launch per stage on the local executor: its one cluster, without nodes, placed
/// by [`placement::place`] so that stages share the free capacity fairly. `capacity` is the most
/// workers alive at once; `alive` is how many are alive now (including those of stages not in
/// `demands`).
pub fn plan_launches(demands: &[StageDemand], capacity: u32, alive: u32) -> Vec<(String, u32)> {
    const LOCAL: &str = "local";
    let ours: u32 = demands.iter().map(|d| d.running).sum();
    let local = Cluster {
        name: LOCAL.into(),
        max_workers: capacity,
        other_workers: alive.saturating_sub(ours),
        free_nodes: None,
    };
    let needs: Vec<StageNeed> = demands
        .iter()
        .map(|d| StageNeed {
            stage: d.stage.clone(),
            wanted: d.desired(),
            request: Amount::default(),
            clusters: Vec::new(),
            placed: vec![Placed { cluster: LOCAL.into(), running: d.running, pending_since: Vec::new() }],
        })
        .collect();
    let clusters = [local];
    let placement = placement::place(&clusters, &needs, Duration::ZERO, placement::DEFAULT_BURST_AFTER);
    // Every stage is placed on the one cluster: one target each, in stage order.
    demands
        .iter()
        .zip(&placement.targets)
        .filter_map(|(d, target)| {
            let more = target.workers.saturating_sub(d.running);
            (more > 0).then(|| (d.stage.clone(), more))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(stage: &str, parallelism: u32, backlog: u32, running: u32) -> StageDemand {
        StageDemand { stage: stage.into(), parallelism, backlog, running }
    }

    #[test]
    fn desired_is_the_smaller_of_parallelism_and_backlog() {
        assert_eq!(demand("a", 10, 3, 0).desired(), 3);
        assert_eq!(demand("a", 2, 300, 0).desired(), 2);
        assert_eq!(demand("a", 2, 0, 0).desired(), 0);
    }

    #[test]
    fn launches_fill_up_to_desired_within_capacity() {
        assert_eq!(plan_launches(&[demand("a", 4, 100, 1)], 8, 1), vec![("a".into(), 3)]);
        assert_eq!(plan_launches(&[demand("a", 4, 100, 0)], 2, 0), vec![("a".into(), 2)]);
        assert!(plan_launches(&[demand("a", 4, 100, 4)], 8, 4).is_empty());
    }

    #[test]
    fn workers_of_other_stages_use_up_capacity() {
        assert_eq!(plan_launches(&[demand("b", 4, 100, 0)], 4, 3), vec![("b".into(), 1)]);
        assert!(plan_launches(&[demand("b", 4, 100, 0)], 4, 4).is_empty());
    }

    #[test]
    fn stages_share_capacity_fairly() {
        let plan = plan_launches(&[demand("a", 10, 100, 0), demand("b", 10, 100, 0)], 5, 0);
        assert_eq!(plan, vec![("a".into(), 3), ("b".into(), 2)]);
        let plan = plan_launches(&[demand("a", 1, 100, 0), demand("b", 10, 100, 0)], 5, 0);
        assert_eq!(plan, vec![("a".into(), 1), ("b".into(), 4)]);
    }

    #[test]
    fn never_more_than_capacity_nor_desired() {
        for capacity in 0..12 {
            for alive in 0..capacity + 2 {
                let demands = [demand("a", 3, 5, 0), demand("b", 6, 2, 1), demand("c", 2, 9, 0)];
                let plan = plan_launches(&demands, capacity, alive);
                let total: u32 = plan.iter().map(|(_, n)| n).sum();
                assert!(total <= capacity.saturating_sub(alive));
                for (stage, n) in plan {
                    let d = demands.iter().find(|d| d.stage == stage).unwrap();
                    assert!(n + d.running <= d.desired());
                }
            }
        }
    }
}
