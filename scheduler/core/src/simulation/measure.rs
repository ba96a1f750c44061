//! What the simulated world measures as it runs: busy and available worker-seconds per
//! cluster, bursts (a full cluster's Pending workers removed and workers asked for on a later
//! one instead), returns (grown capacity followed by a worker bound there) and recoveries
//! (lost workers followed by as many bound again).

use std::time::Duration;

use super::report::{Burst, ClusterUse, Recovery, Return};
use super::trace::Trace;

/// One cluster's measures.
#[derive(Debug, Clone, Default)]
struct ClusterMeasure {
    name: String,
    busy: Duration,
    available: Duration,
    /// When the oldest unbound worker of an open burst was asked for.
    burst_open: Option<Duration>,
    /// The start of the last burst recorded, so that its leftover Pending workers do not
    /// open another.
    burst_recorded: Option<Duration>,
    /// When capacity grew, while no worker has been bound since.
    return_open: Option<Duration>,
    /// When Pending workers were last removed from it.
    shed_at: Option<Duration>,
}

/// The measures of one simulation, clusters in preference order.
#[derive(Debug, Clone, Default)]
pub(super) struct Measures {
    clusters: Vec<ClusterMeasure>,
    bursts: Vec<Burst>,
    returns: Vec<Return>,
    recoveries: Vec<Recovery>,
    /// Recoveries under way: (index in `recoveries`, bound workers that end it).
    recovering: Vec<(usize, u32)>,
}

impl Measures {
    pub(super) fn new(trace: &Trace) -> Measures {
        let clusters = trace
            .clusters
            .iter()
            .map(|c| ClusterMeasure { name: c.name.clone(), ..ClusterMeasure::default() })
            .collect();
        Measures { clusters, ..Measures::default() }
    }

    /// Workers of `cluster` spent `time` on shards.
    pub(super) fn busy(&mut self, cluster: usize, time: Duration) {
        self.clusters[cluster].busy += time;
    }

    /// `cluster`'s nodes held room for `workers` (up to its `max_workers`) for `time`.
    pub(super) fn available(&mut self, cluster: usize, workers: u32, time: Duration) {
        self.clusters[cluster].available += time * workers;
    }

    /// `cluster`'s capacity grew at `now`.
    pub(super) fn capacity_grew(&mut self, cluster: usize, now: Duration) {
        self.clusters[cluster].return_open.get_or_insert(now);
    }

    /// A worker was bound on `cluster` at `now`.
    pub(super) fn bound(&mut self, cluster: usize, now: Duration) {
        let measure = &mut self.clusters[cluster];
        if let Some(at) = measure.return_open.take() {
            self.returns.push(Return { cluster: measure.name.clone(), at, after: Some(now - at) });
        }
    }

    /// After binding, the oldest worker left Pending on `cluster` was asked for at
    /// `oldest_unbound` (`None`: none is left): the cluster is full, and a burst opens.
    pub(super) fn unbound(&mut self, cluster: usize, oldest_unbound: Option<Duration>) {
        let measure = &mut self.clusters[cluster];
        match oldest_unbound {
            None => measure.burst_open = None,
            Some(created) if measure.burst_open.is_none() && measure.burst_recorded.is_none_or(|r| created > r) => {
                measure.burst_open = Some(created);
            }
            Some(_) => {}
        }
    }

    /// Pending workers were removed from `cluster` at `now`.
    pub(super) fn shed(&mut self, cluster: usize, now: Duration) {
        self.clusters[cluster].shed_at = Some(now);
    }

    /// Workers were asked for on `cluster` at `now`: a burst open on an earlier cluster whose
    /// Pending workers the same decision removed ends (workers asked for where a lost worker's
    /// room is free again are no burst).
    pub(super) fn created(&mut self, cluster: usize, now: Duration) {
        let to = self.clusters[cluster].name.clone();
        for from in self.clusters[..cluster].iter_mut().filter(|from| from.shed_at == Some(now)) {
            if let Some(start) = from.burst_open.take() {
                from.burst_recorded = Some(start);
                let burst = Burst { from: from.name.clone(), to: to.clone(), pending_from: start, after: now - start };
                self.bursts.push(burst);
            }
        }
    }

    /// A capacity drop on `cluster` at `now` lost `workers` bound workers; the recovery ends
    /// once `goal` workers are bound.
    pub(super) fn workers_lost(&mut self, cluster: usize, now: Duration, workers: u32, goal: u32) {
        self.recovering.push((self.recoveries.len(), goal));
        let name = self.clusters[cluster].name.clone();
        self.recoveries.push(Recovery { cluster: name, at: now, workers, after: None });
    }

    /// `bound` workers are bound on all clusters at `now`.
    pub(super) fn bound_in_all(&mut self, bound: u32, now: Duration) {
        let recoveries = &mut self.recoveries;
        self.recovering.retain(|&(index, goal)| {
            let done = bound >= goal;
            if done {
                recoveries[index].after = Some(now - recoveries[index].at);
            }
            !done
        });
    }

    /// The figures: use per cluster, bursts, returns (those still open: `after` `None`) in
    /// time order, and recoveries.
    pub(super) fn finish(self) -> (Vec<ClusterUse>, Vec<Burst>, Vec<Return>, Vec<Recovery>) {
        let mut returns = self.returns;
        for measure in &self.clusters {
            if let Some(at) = measure.return_open {
                returns.push(Return { cluster: measure.name.clone(), at, after: None });
            }
        }
        returns.sort_by_key(|r| r.at);
        let uses = self
            .clusters
            .into_iter()
            .map(|m| ClusterUse { name: m.name, busy: m.busy, available: m.available })
            .collect();
        (uses, self.bursts, returns, self.recoveries)
    }
}
