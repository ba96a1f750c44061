//! Where each stage's workers run (DESIGN §6): across clusters in the stage's preference order,
//! each cluster filled up to its free capacity, that is its `max_workers` and what its nodes'
//! allocatable resources still fit. Workers Pending longer than `burst_after` count as missing
//! capacity, so the rest go to the next cluster; where no cluster has room, they keep waiting. Stages share free capacity one worker at a
//! time, in stage order. Pure: the caller passes the clock and what the clusters report, so it
//! is tested with a simulated clock and simulated clusters. The local executor is one cluster
//! without nodes.

mod request;

use std::collections::BTreeMap;
use std::time::Duration;

pub use request::Amount;

/// How long a worker may stay Pending before its cluster counts as full for its stage.
pub const DEFAULT_BURST_AFTER: Duration = Duration::from_secs(30);

/// A cluster as its executor last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    /// Most workers at once on this cluster.
    pub max_workers: u32,
    /// Workers on this cluster that no stage in the decision owns (other runs); they use up
    /// `max_workers`.
    pub other_workers: u32,
    /// What each node still fits after the pods bound to it; `None` when the cluster reports no
    /// nodes (local processes), and then only `max_workers` limits it.
    pub free_nodes: Option<Vec<Amount>>,
}

/// One stage's workers on one cluster, as the executor reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub cluster: String,
    /// Workers bound to a node (or started, for local processes).
    pub running: u32,
    /// When each Pending worker was asked for, on the caller's clock.
    pub pending_since: Vec<Duration>,
}

/// What one stage asks for.
#[derive(Debug, Clone)]
pub struct StageNeed {
    pub stage: String,
    /// Workers the stage should have, all clusters together (the autoscaler's `desired`).
    pub wanted: u32,
    /// What one of its workers asks of a node.
    pub request: Amount,
    /// Cluster names in preference order; empty means every cluster, in configuration order.
    pub clusters: Vec<String>,
    /// Where its workers are now.
    pub placed: Vec<Placed>,
}

/// How many workers a stage should have on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub stage: &'a str,
    pub cluster: &'a str,
    pub workers: u32,
}

/// The decision: a target for every (stage, cluster) that has or gets workers, in stage order
/// then preference order, and the workers no cluster could take, by stage in stage order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement<'a> {
    pub targets: Vec<Target<'a>>,
    pub unplaced: Vec<(&'a str, u32)>,
}

impl Placement<'_> {
    /// The target of `stage` on `cluster` (0 when there is none).
    pub fn workers(&self, stage: &str, cluster: &str) -> u32 {
        self.targets.iter().find(|t| t.stage == stage && t.cluster == cluster).map_or(0, |t| t.workers)
    }
}

/// Free capacity of one cluster while a decision is being made.
struct Room {
    max_workers: u32,
    used: u32,
    free_nodes: Option<Vec<Amount>>,
}

impl Room {
    /// Takes room for one worker asking `request`, on the first node it fits (first fit).
    fn take(&mut self, request: &Amount) -> bool {
        if self.used >= self.max_workers {
            return false;
        }
        if let Some(nodes) = &mut self.free_nodes {
            let Some(node) = nodes.iter_mut().find(|node| node.fits(request)) else {
                return false;
            };
            node.take(request);
        }
        self.used += 1;
        true
    }
}

/// One stage during a decision: its clusters in preference order, and the workers it wants
/// that no cluster has taken yet.
struct Plan {
    slots: Vec<Slot>,
    missing: u32,
}

/// One of a stage's clusters during a decision.
#[derive(Clone, Copy)]
struct Slot {
    /// Index of the cluster.
    cluster: usize,
    /// Workers the stage gets there.
    count: u32,
    /// A worker of the stage has been Pending there for `burst_after` or longer.
    closed: bool,
    /// Workers Pending there for `burst_after` or longer: given up only when another cluster
    /// takes their place.
    stale: u32,
}

/// Decides how many workers each stage should have on each cluster at time `now`.
pub fn place<'a>(
    clusters: &'a [Cluster],
    needs: &'a [StageNeed],
    now: Duration,
    burst_after: Duration,
) -> Placement<'a> {
    let index: BTreeMap<&str, usize> = clusters.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
    let mut rooms: Vec<Room> = clusters
        .iter()
        .map(|c| Room { max_workers: c.max_workers, used: c.other_workers, free_nodes: c.free_nodes.clone() })
        .collect();
    let mut plans: Vec<Plan> =
        needs.iter().map(|need| keep_workers(need, clusters, &index, &mut rooms, now, burst_after)).collect();
    grow(needs, &mut plans, &mut rooms);
    keep_stale_when_nothing_else_fits(&mut plans);
    decision(clusters, needs, &plans)
}

/// Workers Pending past `burst_after` that no other cluster replaced stay where they wait:
/// removing them would only ask for them again on the next decision, churning Pods on clusters
/// that are all full. Most preferred clusters first.
fn keep_stale_when_nothing_else_fits(plans: &mut [Plan]) {
    for plan in plans.iter_mut() {
        for slot in &mut plan.slots {
            let back = slot.stale.min(plan.missing);
            slot.count += back;
            plan.missing -= back;
        }
    }
}

/// Keeps a stage's running workers and its recent Pending ones, most preferred clusters first,
/// up to what it wants; a cluster with a worker Pending for `burst_after` or longer is closed.
fn keep_workers(
    need: &StageNeed,
    clusters: &[Cluster],
    index: &BTreeMap<&str, usize>,
    rooms: &mut [Room],
    now: Duration,
    burst_after: Duration,
) -> Plan {
    let order: Vec<usize> = if need.clusters.is_empty() {
        (0..rooms.len()).collect()
    } else {
        need.clusters.iter().filter_map(|name| index.get(name.as_str()).copied()).collect()
    };
    let mut plan = Plan {
        slots: order.into_iter().map(|cluster| Slot { cluster, count: 0, closed: false, stale: 0 }).collect(),
        missing: 0,
    };
    let mut kept = 0;
    for slot in &mut plan.slots {
        let Some(placed) = need.placed.iter().find(|p| p.cluster == clusters[slot.cluster].name) else {
            continue;
        };
        let fresh = placed.pending_since.iter().filter(|since| now.saturating_sub(**since) < burst_after).count();
        slot.closed = fresh < placed.pending_since.len();
        slot.stale = (placed.pending_since.len() - fresh) as u32;
        let running = placed.running.min(need.wanted - kept);
        let pending = (fresh as u32).min(need.wanted - kept - running);
        let room = &mut rooms[slot.cluster];
        // Running workers are already in the nodes' free amounts; kept Pending ones will be.
        room.used += running;
        for _ in 0..pending {
            if !room.take(&need.request) {
                room.used += 1;
            }
        }
        // Stale Pending workers exist until replaced: they hold their place in max_workers.
        room.used += slot.stale;
        slot.count = running + pending;
        kept += running + pending;
    }
    plan.missing = need.wanted - kept;
    plan
}

/// Hands out free capacity one worker at a time, stage after stage, each to the stage's most
/// preferred open cluster with room, until no stage wants more or none can get more.
fn grow(needs: &[StageNeed], plans: &mut [Plan], rooms: &mut [Room]) {
    let mut active: Vec<usize> = (0..plans.len()).filter(|&s| plans[s].missing > 0).collect();
    while !active.is_empty() {
        active.retain(|&s| {
            let plan = &mut plans[s];
            let request = &needs[s].request;
            let slot = plan.slots.iter_mut().find(|slot| !slot.closed && rooms[slot.cluster].take(request));
            match slot {
                Some(slot) => {
                    slot.count += 1;
                    plan.missing -= 1;
                    plan.missing > 0
                }
                None => false,
            }
        });
    }
}

/// The targets: every (stage, cluster) with a count, or with workers now (so they shrink; a
/// cluster the stage no longer lists gets 0).
fn decision<'a>(clusters: &'a [Cluster], needs: &'a [StageNeed], plans: &[Plan]) -> Placement<'a> {
    let mut placement = Placement::default();
    for (need, plan) in needs.iter().zip(plans) {
        let target = |cluster, workers| Target { stage: &need.stage, cluster, workers };
        for slot in &plan.slots {
            let name = clusters[slot.cluster].name.as_str();
            if slot.count > 0 || need.placed.iter().any(|p| p.cluster == name) {
                placement.targets.push(target(name, slot.count));
            }
        }
        for placed in &need.placed {
            if !plan.slots.iter().any(|slot| clusters[slot.cluster].name == placed.cluster) {
                placement.targets.push(target(&placed.cluster, 0));
            }
        }
        if plan.missing > 0 {
            placement.unplaced.push((&need.stage, plan.missing));
        }
    }
    placement
}

#[cfg(test)]
mod tests;
