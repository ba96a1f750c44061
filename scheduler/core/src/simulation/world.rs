//! The simulated world a [`RunCore`] drives: Pods asked for per cluster go Pending, are bound
//! while the cluster's nodes have room, start, and their workers pull shards from one queue,
//! report each after its duration and exit once the queue stays empty. A capacity drop kills
//! the newest bound workers; a killed worker's shard comes back as the policy says. The
//! world carries out the core's effects as the scheduler's driver and executor do, and tells
//! [`Measures`] what happens.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::measure::Measures;
use super::report::Report;
use super::trace::Trace;
use super::{DRIVER_TICK, LostShard, Policy};
use crate::placement::{Amount, Cluster, Placed};
use crate::run_core::{Effect, Event, RunCore, StageConfig, Timing};
use crate::run_state::{AttemptResult, ShardOutcome, Transition, Verdict};

/// The one stage of a trace.
const STAGE: &str = "work";

/// Where a Pod is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not bound to a node: its cluster has no room.
    Pending,
    /// Bound, its worker starting.
    Starting { ready_at: Duration },
    /// Its worker found the queue empty at `since`.
    Idle { since: Duration },
    /// Its worker runs an attempt of a shard.
    Working { shard: u32, attempt: u32, started: Duration, done_at: Duration },
}

/// A worker's Pod.
#[derive(Debug, Clone, Copy)]
struct Pod {
    cluster: usize,
    created: Duration,
    bound_at: Duration,
    phase: Phase,
}

impl Pod {
    fn is_bound(&self) -> bool {
        self.phase != Phase::Pending
    }
}

/// The world, the core it carries out, and the measures.
pub(super) struct World<'a> {
    trace: &'a Trace,
    policy: &'a Policy,
    core: RunCore,
    now: Duration,
    next_decision: Duration,
    /// Shards waiting, with the attempt they get next.
    queue: VecDeque<(u32, u32)>,
    pods: Vec<Pod>,
    /// Workers each cluster's nodes hold now.
    capacity: Vec<u32>,
    /// Lost workers' shards, as `shard/attempt`, for the next decision to hand back.
    abandoned: Vec<String>,
    /// Lost workers' shards the queue redelivers at a time: (when, shard, next attempt).
    redelivery: VecDeque<(Duration, u32, u32)>,
    /// Attempts started, by shard.
    attempts: Vec<u32>,
    duplicate_results: u32,
    workers_created: u32,
    measures: Measures,
    makespan: Option<Duration>,
}

impl<'a> World<'a> {
    pub(super) fn new(trace: &'a Trace, policy: &'a Policy) -> World<'a> {
        let stage = StageConfig {
            name: STAGE.into(),
            after: Vec::new(),
            parallelism: trace.parallelism,
            fail_on_empty: false,
            request: Amount::default(),
            clusters: Vec::new(),
            speculate: None,
        };
        let timing = Timing { burst_after: trace.burst_after, ..Timing::default() };
        World {
            trace,
            policy,
            core: RunCore::new(vec![stage], timing),
            now: Duration::ZERO,
            next_decision: Duration::ZERO,
            queue: VecDeque::new(),
            pods: Vec::new(),
            capacity: trace.clusters.iter().map(|c| c.capacity_at(Duration::ZERO)).collect(),
            abandoned: Vec::new(),
            redelivery: VecDeque::new(),
            attempts: vec![0; trace.durations.len()],
            duplicate_results: 0,
            workers_created: 0,
            measures: Measures::new(trace),
            makespan: None,
        }
    }

    /// Runs until the run ends or `limit` of simulated time has passed.
    pub(super) fn run(mut self, limit: Duration) -> Report {
        let effects = self.core.handle(Event::Begin);
        self.carry_out(effects);
        while self.makespan.is_none() && self.now < limit {
            self.step();
        }
        self.report()
    }

    /// One driver tick of the world.
    fn step(&mut self) {
        if self.now >= self.next_decision {
            self.decide();
            self.next_decision = self.now + self.policy.decide_every;
        }
        let effects = self.core.handle(Event::Tick { now: self.now });
        self.carry_out(effects);
        self.now += DRIVER_TICK;
        self.complete_work();
        self.change_capacity();
        self.redeliver();
        self.bind();
        self.start_and_exit();
        for (cluster, trace) in self.trace.clusters.iter().enumerate() {
            self.measures.available(cluster, self.capacity[cluster].min(trace.max_workers), DRIVER_TICK);
        }
    }

    /// Workers whose attempt is done report it and take the next shard at once.
    fn complete_work(&mut self) {
        for index in 0..self.pods.len() {
            while let Phase::Working { shard, attempt, started, done_at } = self.pods[index].phase {
                if done_at > self.now {
                    break;
                }
                self.measures.busy(self.pods[index].cluster, done_at - started);
                let result = AttemptResult::Succeeded { outputs: 1 };
                let duration = done_at - started;
                let event = Event::Result {
                    stage: STAGE.into(),
                    shard,
                    attempt,
                    result,
                    duration,
                    redelivered: false,
                    speculative: false,
                };
                let effects = self.core.handle(event);
                self.carry_out(effects);
                self.pods[index].phase = self.next_phase(done_at);
            }
        }
    }

    /// What a worker free at `at` does: take a shard, or wait idle.
    fn next_phase(&mut self, at: Duration) -> Phase {
        match self.queue.pop_front() {
            Some((shard, attempt)) => {
                self.attempts[shard as usize] += 1;
                let done_at = at + self.trace.durations[shard as usize];
                Phase::Working { shard, attempt, started: at, done_at }
            }
            None => Phase::Idle { since: at },
        }
    }

    /// Applies the trace's capacity at `now`: the newest bound workers past it are lost.
    fn change_capacity(&mut self) {
        let bound_before = self.bound(None);
        let mut dropped = Vec::new();
        for cluster in 0..self.capacity.len() {
            let capacity = self.trace.clusters[cluster].capacity_at(self.now);
            if capacity == self.capacity[cluster] {
                continue;
            }
            if capacity > self.capacity[cluster] {
                self.measures.capacity_grew(cluster, self.now);
            }
            self.capacity[cluster] = capacity;
            let mut bound: Vec<usize> =
                (0..self.pods.len()).filter(|&i| self.pods[i].cluster == cluster && self.pods[i].is_bound()).collect();
            if bound.len() <= capacity as usize {
                continue;
            }
            bound.sort_by_key(|&i| std::cmp::Reverse((self.pods[i].bound_at, i)));
            let mut lost: Vec<usize> = bound[..bound.len() - capacity as usize].to_vec();
            dropped.push((cluster, lost.len() as u32));
            lost.sort_unstable();
            for &index in lost.iter().rev() {
                let pod = self.pods.remove(index);
                if let Phase::Working { shard, attempt, started, .. } = pod.phase {
                    self.measures.busy(cluster, self.now - started);
                    match self.policy.lost_shard {
                        LostShard::HandedBack => self.abandoned.push(format!("{shard}/{attempt}")),
                        LostShard::After(after) => self.redelivery.push_back((self.now + after, shard, attempt + 1)),
                    }
                }
            }
        }
        if dropped.is_empty() {
            return;
        }
        let held: u32 = self.capacity.iter().zip(&self.trace.clusters).map(|(c, t)| (*c).min(t.max_workers)).sum();
        let goal = bound_before.min(held).min(self.core.wanted_workers());
        for (cluster, workers) in dropped {
            self.measures.workers_lost(cluster, self.now, workers, goal);
        }
    }

    /// Bound workers on `cluster`, or on all clusters.
    fn bound(&self, cluster: Option<usize>) -> u32 {
        self.pods.iter().filter(|p| p.is_bound() && cluster.is_none_or(|c| p.cluster == c)).count() as u32
    }

    /// The queue redelivers lost shards whose timeout has passed.
    fn redeliver(&mut self) {
        while let Some(&(at, shard, attempt)) = self.redelivery.front() {
            if at > self.now {
                break;
            }
            self.redelivery.pop_front();
            self.queue.push_back((shard, attempt));
        }
    }

    /// Pending Pods are bound, oldest first, while their cluster has room; then a cluster
    /// with a Pod left unbound has filled up, and a burst from it opens.
    fn bind(&mut self) {
        for cluster in 0..self.capacity.len() {
            let bound = self.bound(Some(cluster));
            let mut room = self.capacity[cluster].saturating_sub(bound);
            let mut oldest_unbound = None;
            for pod in self.pods.iter_mut().filter(|p| p.cluster == cluster && p.phase == Phase::Pending) {
                if room == 0 {
                    oldest_unbound = oldest_unbound.or(Some(pod.created));
                    continue;
                }
                room -= 1;
                pod.phase = Phase::Starting { ready_at: self.now + self.trace.pod_startup };
                pod.bound_at = self.now;
                self.measures.bound(cluster, self.now);
            }
            self.measures.unbound(cluster, oldest_unbound);
        }
        self.measures.bound_in_all(self.bound(None), self.now);
    }

    /// Started workers take shards; idle ones exit once the queue has stayed empty long enough.
    fn start_and_exit(&mut self) {
        let now = self.now;
        for index in 0..self.pods.len() {
            let phase = self.pods[index].phase;
            let free_since = match phase {
                Phase::Starting { ready_at } if ready_at <= now => ready_at,
                Phase::Idle { since } => since,
                _ => continue,
            };
            self.pods[index].phase =
                if self.queue.is_empty() { Phase::Idle { since: free_since } } else { self.next_phase(now) };
        }
        let idle_exit = self.trace.idle_exit;
        self.pods.retain(|pod| !matches!(pod.phase, Phase::Idle { since } if now - since >= idle_exit));
    }

    /// The core decides desired workers from what the world looks like now.
    fn decide(&mut self) {
        let mut placed = Vec::new();
        for (cluster, trace) in self.trace.clusters.iter().enumerate() {
            let pods = self.pods.iter().filter(|p| p.cluster == cluster);
            let running = pods.clone().filter(|p| p.is_bound()).count() as u32;
            let mut pending_since: Vec<Duration> = pods.filter(|p| !p.is_bound()).map(|p| p.created).collect();
            pending_since.sort_unstable();
            if running > 0 || !pending_since.is_empty() {
                placed.push(Placed { cluster: trace.name.clone(), running, pending_since });
            }
        }
        let clusters = self
            .trace
            .clusters
            .iter()
            .map(|c| Cluster { name: c.name.clone(), max_workers: c.max_workers, other_workers: 0, free_nodes: None })
            .collect();
        let event = Event::Workers {
            now: self.now,
            clusters,
            placed: BTreeMap::from([(STAGE.to_string(), placed)]),
            abandoned: std::mem::take(&mut self.abandoned),
        };
        let effects = self.core.handle(event);
        self.carry_out(effects);
    }

    /// Carries out the core's effects, and those they lead to, in order.
    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut effects: VecDeque<Effect> = effects.into();
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Stage(Transition::StartStage(stage)) => {
                    let shards = self.trace.durations.len() as u32;
                    self.queue = (0..shards).map(|shard| (shard, 1)).collect();
                    let published = Event::StagePublished { stage, shards, objects: u64::from(shards) };
                    effects.extend(self.core.handle(published));
                }
                Effect::Stage(Transition::EndRun(_)) => self.makespan = Some(self.now),
                Effect::Stage(Transition::EndStage { .. } | Transition::SkipStage(_)) => {}
                Effect::Record { verdict, .. } => {
                    if verdict == Verdict::Duplicate {
                        self.duplicate_results += 1;
                    }
                }
                // The traced stage has fixed shards (nothing is cut in waves) and does not
                // speculate.
                Effect::Lost { .. }
                | Effect::Cancel { .. }
                | Effect::Stop
                | Effect::CutShards { .. }
                | Effect::Speculate { .. }
                | Effect::Superseded { .. } => {}
                Effect::HandBack { ack_subject } => {
                    let (shard, attempt) = ack_subject.split_once('/').expect("an ack subject the world made");
                    let (shard, attempt): (u32, u32) =
                        (shard.parse().expect("shard"), attempt.parse().expect("attempt"));
                    self.queue.push_back((shard, attempt + 1));
                }
                Effect::SetWorkers(target) => self.set_workers(&target.cluster, target.workers),
                Effect::ProbeIdle { stages } => {
                    let idle = self.queue.is_empty()
                        && self.abandoned.is_empty()
                        && self.redelivery.is_empty()
                        && !self.pods.iter().any(|p| matches!(p.phase, Phase::Working { .. }));
                    let idle_stages = if idle { stages } else { Vec::new() };
                    effects.extend(self.core.handle(Event::Idle { results_idle: true, idle_stages }));
                }
            }
        }
    }

    /// Makes `cluster` hold `workers` workers as the executor does: new Pending Pods to grow,
    /// the newest Pending ones removed to shrink (bound workers finish and exit when idle).
    fn set_workers(&mut self, cluster: &str, workers: u32) {
        let Some(cluster) = self.trace.clusters.iter().position(|c| c.name == cluster) else { return };
        let have = self.pods.iter().filter(|p| p.cluster == cluster).count() as u32;
        if workers > have {
            let pod = Pod { cluster, created: self.now, bound_at: Duration::ZERO, phase: Phase::Pending };
            self.pods.extend(std::iter::repeat_n(pod, (workers - have) as usize));
            self.workers_created += workers - have;
            self.measures.created(cluster, self.now);
        } else {
            let mut excess = have - workers;
            for index in (0..self.pods.len()).rev() {
                if excess == 0 {
                    break;
                }
                if self.pods[index].cluster == cluster && !self.pods[index].is_bound() {
                    self.pods.remove(index);
                    self.measures.shed(cluster, self.now);
                    excess -= 1;
                }
            }
        }
    }

    fn report(self) -> Report {
        let shards = self.trace.durations.len() as u32;
        let finished = self.core.state().shards(STAGE).iter().filter(|s| **s == ShardOutcome::Succeeded).count() as u32;
        let (clusters, bursts, returns, recoveries) = self.measures.finish();
        Report {
            policy: self.policy.name.clone(),
            shards,
            finished,
            lost: shards - finished,
            run_twice: self.attempts.iter().filter(|a| **a > 1).count() as u32,
            duplicate_results: self.duplicate_results,
            makespan: self.makespan,
            workers_created: self.workers_created,
            clusters,
            bursts,
            returns,
            recoveries,
        }
    }
}
