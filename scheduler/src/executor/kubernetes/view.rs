//! What the executor knows of one cluster, as its watches last saw it: the run's Jobs, the
//! Pods of every run (by label), the nodes' allocatable resources. Pure: from this the executor
//! reports workers running and Pending per stage, and the cluster's free room for placement.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::placement::{Amount, Cluster, Placed};

/// A Pod's phase, as far as the executor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn parse(phase: Option<&str>) -> Phase {
        match phase {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            _ => Phase::Pending,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A worker Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSeen {
    pub run: String,
    pub stage_label: String,
    /// Its Job.
    pub job: String,
    pub phase: Phase,
    /// The node it is bound to.
    pub node: Option<String>,
    /// What it asks of its node.
    pub request: Amount,
    /// Being deleted.
    pub deleting: bool,
    /// When the executor first saw it.
    pub first_seen: Instant,
}

impl PodSeen {
    /// Alive: neither ended nor being deleted.
    pub fn is_live(&self) -> bool {
        !self.phase.is_terminal() && !self.deleting
    }

    /// Holds room on a node.
    pub fn holds_room(&self) -> bool {
        !self.phase.is_terminal() && self.node.is_some()
    }
}

/// A worker Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSeen {
    pub run: String,
    pub stage_label: String,
    pub parallelism: u32,
    pub succeeded: u32,
    /// Complete or Failed.
    pub finished: bool,
    /// When it was created (or first seen).
    pub created: Instant,
}

/// One cluster as last seen.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Why the cluster cannot be used now (`None`: it answers).
    pub unreachable: Option<String>,
    pub pods: BTreeMap<String, PodSeen>,
    pub jobs: BTreeMap<String, JobSeen>,
    /// Allocatable resources per node; empty until the nodes are listed.
    pub nodes: BTreeMap<String, Amount>,
}

/// Workers of one stage in one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageWorkers {
    /// Bound to a node.
    pub running: u32,
    /// Not bound yet: the instants they were asked for, oldest first.
    pub pending_since: Vec<Instant>,
}

impl StageWorkers {
    pub fn total(&self) -> u32 {
        self.running + self.pending_since.len() as u32
    }

    /// As placement reads it: Pending instants on the caller's clock, where `now` is `at`.
    pub fn placed(&self, cluster: &str, now: Duration, at: Instant) -> Placed {
        Placed {
            cluster: cluster.to_string(),
            running: self.running,
            pending_since: self
                .pending_since
                .iter()
                .map(|since| now.saturating_sub(at.saturating_duration_since(*since)))
                .collect(),
        }
    }
}

impl ClusterView {
    /// The workers of `stage_label` of `run`, counting the Pods its unfinished Jobs still owe
    /// (created, not seen yet) as Pending since the Job was made.
    pub fn stage_workers(&self, run: &str, stage_label: &str) -> StageWorkers {
        let mut workers = StageWorkers::default();
        for (name, job) in self.jobs.iter().filter(|(_, j)| j.run == run && j.stage_label == stage_label) {
            let pods: Vec<&PodSeen> = self.pods.values().filter(|p| &p.job == name).collect();
            let succeeded = pods.iter().filter(|p| p.phase == Phase::Succeeded).count() as u32;
            let mut live = 0;
            for pod in pods.iter().filter(|p| p.is_live()) {
                live += 1;
                if pod.node.is_some() {
                    workers.running += 1;
                } else {
                    workers.pending_since.push(pod.first_seen);
                }
            }
            if !job.finished {
                let owed = job.parallelism.saturating_sub(live + succeeded.max(job.succeeded));
                workers.pending_since.extend(std::iter::repeat_n(job.created, owed as usize));
            }
        }
        workers.pending_since.sort();
        workers
    }

    /// The cluster as placement reads it: `max_workers` less the live workers of other runs,
    /// and what each node still fits (`None` until nodes are known).
    pub fn room(&self, name: &str, max_workers: u32, run: &str) -> Cluster {
        if self.unreachable.is_some() {
            return Cluster { name: name.to_string(), max_workers: 0, other_workers: 0, free_nodes: Some(Vec::new()) };
        }
        let other_workers = self.pods.values().filter(|p| p.run != run && p.is_live()).count() as u32;
        let free_nodes = (!self.nodes.is_empty()).then(|| {
            self.nodes
                .iter()
                .map(|(node, allocatable)| {
                    let mut free = *allocatable;
                    for pod in self.pods.values().filter(|p| p.holds_room() && p.node.as_deref() == Some(node)) {
                        free.cpu_millis = free.cpu_millis.saturating_sub(pod.request.cpu_millis);
                        free.memory_bytes = free.memory_bytes.saturating_sub(pod.request.memory_bytes);
                        free.gpus = free.gpus.saturating_sub(pod.request.gpus);
                    }
                    free
                })
                .collect()
        });
        Cluster { name: name.to_string(), max_workers, other_workers, free_nodes }
    }

    /// The run's Jobs of a stage, newest first, each with its live Pods bound and unbound.
    pub fn jobs_of(&self, run: &str, stage_label: &str) -> Vec<JobLoad> {
        let mut jobs: Vec<JobLoad> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.run == run && j.stage_label == stage_label && !j.finished)
            .map(|(name, job)| {
                let pods: Vec<&PodSeen> = self.pods.values().filter(|p| &p.job == name).collect();
                let bound = pods.iter().filter(|p| p.is_live() && p.node.is_some()).count() as u32;
                let unbound = pods.iter().filter(|p| p.is_live() && p.node.is_none()).count() as u32;
                let succeeded = pods.iter().filter(|p| p.phase == Phase::Succeeded).count() as u32;
                let owed = job.parallelism.saturating_sub(bound + unbound + succeeded.max(job.succeeded));
                JobLoad {
                    name: name.clone(),
                    parallelism: job.parallelism,
                    bound,
                    waiting: unbound + owed,
                    created: job.created,
                }
            })
            .collect();
        jobs.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        jobs
    }
}

/// One Job's workers, for scaling down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLoad {
    pub name: String,
    pub parallelism: u32,
    /// Live Pods bound to a node.
    pub bound: u32,
    /// Pods not bound yet, seen or still owed.
    pub waiting: u32,
    pub created: Instant,
}

/// What to do to shed `excess` workers that are not bound yet, newest Jobs first: Jobs with
/// nothing bound are deleted whole; a Job with bound Pods gets a lower `parallelism`. Bound
/// workers are left to finish their shard and exit when the queue is idle.
pub fn shed(jobs: &[JobLoad], mut excess: u32) -> Vec<Shed> {
    let mut actions = Vec::new();
    for job in jobs {
        if excess == 0 {
            break;
        }
        if job.waiting == 0 {
            continue;
        }
        if job.bound == 0 && job.waiting <= excess {
            actions.push(Shed::Delete(job.name.clone()));
            excess -= job.waiting;
        } else {
            let fewer = job.waiting.min(excess);
            actions.push(Shed::Parallelism(job.name.clone(), job.parallelism - fewer));
            excess -= fewer;
        }
    }
    actions
}

/// One step of scaling down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shed {
    Delete(String),
    Parallelism(String, u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(job: &str, phase: Phase, node: Option<&str>, at: Instant) -> PodSeen {
        PodSeen {
            run: "r".into(),
            stage_label: "s".into(),
            job: job.into(),
            phase,
            node: node.map(str::to_string),
            request: Amount { cpu_millis: 500, memory_bytes: 0, gpus: 0 },
            deleting: false,
            first_seen: at,
        }
    }

    fn job(parallelism: u32, at: Instant) -> JobSeen {
        JobSeen { run: "r".into(), stage_label: "s".into(), parallelism, succeeded: 0, finished: false, created: at }
    }

    #[test]
    fn owed_pods_count_as_pending_since_their_job() {
        let t0 = Instant::now();
        let mut view = ClusterView::default();
        view.jobs.insert("j1".into(), job(3, t0));
        assert_eq!(view.stage_workers("r", "s"), StageWorkers { running: 0, pending_since: vec![t0; 3] });
        let t1 = t0 + Duration::from_secs(1);
        view.pods.insert("p1".into(), pod("j1", Phase::Running, Some("n"), t1));
        view.pods.insert("p2".into(), pod("j1", Phase::Pending, None, t1));
        view.pods.insert("p3".into(), pod("j1", Phase::Succeeded, Some("n"), t1));
        assert_eq!(view.stage_workers("r", "s"), StageWorkers { running: 1, pending_since: vec![t1] });
        let placed = view.stage_workers("r", "s").placed("a", Duration::from_secs(100), t1 + Duration::from_secs(7));
        assert_eq!(placed.pending_since, vec![Duration::from_secs(93)]);
    }

    #[test]
    fn room_counts_other_runs_and_bound_requests() {
        let t0 = Instant::now();
        let mut view = ClusterView::default();
        view.nodes.insert("n".into(), Amount { cpu_millis: 2000, memory_bytes: 1 << 30, gpus: 0 });
        view.pods.insert("mine".into(), pod("j1", Phase::Running, Some("n"), t0));
        let mut other = pod("j9", Phase::Pending, None, t0);
        other.run = "other".into();
        view.pods.insert("theirs".into(), other);
        let room = view.room("a", 5, "r");
        assert_eq!(room.other_workers, 1);
        assert_eq!(room.free_nodes.unwrap()[0].cpu_millis, 1500);
        view.unreachable = Some("connection refused".into());
        assert_eq!(view.room("a", 5, "r").max_workers, 0, "an unreachable cluster takes no workers");
    }

    #[test]
    fn shedding_deletes_waiting_jobs_then_lowers_parallelism() {
        let t = Instant::now();
        let jobs = [
            JobLoad { name: "new".into(), parallelism: 2, bound: 0, waiting: 2, created: t },
            JobLoad { name: "mid".into(), parallelism: 3, bound: 1, waiting: 2, created: t },
            JobLoad { name: "old".into(), parallelism: 1, bound: 1, waiting: 0, created: t },
        ];
        assert_eq!(shed(&jobs, 3), [Shed::Delete("new".into()), Shed::Parallelism("mid".into(), 2)]);
        assert_eq!(shed(&jobs, 1), [Shed::Parallelism("new".into(), 1)]);
        assert_eq!(shed(&jobs, 9), [Shed::Delete("new".into()), Shed::Parallelism("mid".into(), 1)]);
        assert!(shed(&jobs, 0).is_empty());
    }
}
