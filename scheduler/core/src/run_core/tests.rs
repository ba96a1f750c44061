//! The core on a simulated clock: single events, then whole runs against an in-memory world
//! (a queue per stage, workers that take shards and report after a simulated time, workers
//! that die) that carries out the effects as the scheduler's adapters do.

use std::collections::{BTreeMap, VecDeque};

use super::*;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

pub(super) fn stage(name: &str, after: &[&str], parallelism: u32) -> StageConfig {
    StageConfig {
        name: name.into(),
        after: after.iter().map(|s| s.to_string()).collect(),
        parallelism,
        fail_on_empty: false,
        request: Amount::default(),
        clusters: Vec::new(),
        speculate: None,
    }
}

fn success() -> AttemptResult {
    AttemptResult::Succeeded { outputs: 1 }
}

fn result(stage: &str, shard: u32, attempt: u32, result: AttemptResult) -> Event {
    Event::Result { stage: stage.into(), shard, attempt, result, duration: S, redelivered: false, speculative: false }
}

fn start(name: &str) -> Effect {
    Effect::Stage(Transition::StartStage(name.into()))
}

fn two_stages() -> RunCore {
    RunCore::new(vec![stage("a", &[], 2), stage("b", &["a"], 2)], Timing::default())
}

#[test]
fn a_run_starts_its_root_stages_and_the_next_once_they_succeed() {
    let mut core = two_stages();
    assert_eq!(core.handle(Event::Begin), [start("a")]);
    assert!(core.handle(Event::StagePublished { stage: "a".into(), shards: 2, objects: 5 }).is_empty());
    let first = core.handle(result("a", 0, 1, success()));
    assert_eq!(
        first,
        [Effect::Record {
            stage: "a".into(),
            shard: 0,
            attempt: 1,
            verdict: Verdict::Decided(ShardOutcome::Succeeded)
        }]
    );
    let last = core.handle(result("a", 1, 1, success()));
    assert_eq!(
        last[1..],
        [Effect::Stage(Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded }), start("b")]
    );
}

#[test]
fn a_redelivered_result_changes_nothing_and_a_late_one_is_a_duplicate() {
    let mut core = two_stages();
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 2, objects: 2 });
    core.handle(result("a", 0, 1, AttemptResult::Failed { last_attempt: false, permanent: false }));
    let again = Event::Result {
        stage: "a".into(),
        shard: 0,
        attempt: 1,
        result: AttemptResult::Failed { last_attempt: false, permanent: false },
        duration: S,
        redelivered: true,
        speculative: false,
    };
    assert!(core.handle(again).is_empty());
    core.handle(result("a", 0, 2, success()));
    let late = core.handle(result("a", 0, 3, success()));
    assert_eq!(late, [Effect::Record { stage: "a".into(), shard: 0, attempt: 3, verdict: Verdict::Duplicate }]);
    assert_eq!(core.state().backlog("a"), 1);
}

#[test]
fn a_permanent_failure_decides_its_shard_at_once_and_skips_what_follows() {
    let mut core = RunCore::new(vec![stage("a", &[], 1), stage("b", &["a"], 1)], Timing::default());
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 1, objects: 1 });
    let effects = core.handle(result("a", 0, 1, AttemptResult::Failed { last_attempt: false, permanent: true }));
    assert!(effects.contains(&Effect::Stage(Transition::SkipStage("b".into()))), "{effects:?}");
    assert!(effects.contains(&Effect::Stage(Transition::EndRun(crate::run_state::RunOutcome::Failed))));
    assert!(core.is_ended());
}

#[test]
fn shards_are_decided_lost_only_after_two_idle_checks_with_the_same_backlog() {
    let mut core = two_stages();
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 3, objects: 3 });
    core.handle(result("a", 0, 1, success()));
    let probe = || vec![Effect::ProbeIdle { stages: vec!["a".into()] }];
    assert_eq!(core.handle(Event::Tick { now: Duration::ZERO }), probe());
    let idle = || Event::Idle { results_idle: true, idle_stages: vec!["a".into()] };
    assert!(core.handle(idle()).is_empty(), "the first idle check only suspects the stage");
    assert!(core.handle(Event::Tick { now: S }).is_empty(), "no check before the interval");
    assert_eq!(core.handle(Event::Tick { now: 2 * S }), probe());
    // A result was waiting: nothing is decided, and the suspicion starts over.
    assert!(core.handle(Event::Idle { results_idle: false, idle_stages: vec!["a".into()] }).is_empty());
    assert_eq!(core.handle(Event::Tick { now: 4 * S }), probe());
    assert!(core.handle(idle()).is_empty());
    assert_eq!(core.handle(Event::Tick { now: 6 * S }), probe());
    let effects = core.handle(idle());
    let lost: Vec<u32> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Lost { shard, .. } => Some(*shard),
            _ => None,
        })
        .collect();
    assert_eq!(lost, [1, 2]);
    assert!(effects.contains(&Effect::Stage(Transition::EndStage { stage: "a".into(), status: StageStatus::Failed })));
}

#[test]
fn a_stage_whose_backlog_moved_between_checks_is_not_lost() {
    let mut core = two_stages();
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 3, objects: 3 });
    let idle = || Event::Idle { results_idle: true, idle_stages: vec!["a".into()] };
    core.handle(Event::Tick { now: Duration::ZERO });
    core.handle(idle());
    core.handle(result("a", 0, 1, success()));
    core.handle(Event::Tick { now: 2 * S });
    assert!(core.handle(idle()).is_empty(), "backlog 3 then 2: a worker is making progress");
}

#[test]
fn dead_workers_shards_are_handed_back_and_workers_follow_the_backlog() {
    let mut core = two_stages();
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 1, objects: 1 });
    let local = vec![Cluster { name: "local".into(), max_workers: 8, other_workers: 0, free_nodes: None }];
    let effects = core.handle(Event::Workers {
        now: S,
        clusters: local.clone(),
        placed: BTreeMap::new(),
        abandoned: vec!["$JS.ACK.x".into()],
    });
    assert_eq!(
        effects,
        [
            Effect::HandBack { ack_subject: "$JS.ACK.x".into() },
            Effect::SetWorkers(WorkerTarget { stage: "a".into(), cluster: "local".into(), workers: 1 }),
        ],
        "one shard: one worker, however large the parallelism"
    );
    assert_eq!(core.wanted_workers(), 1);
}

#[test]
fn workers_pending_past_burst_after_move_to_the_next_cluster() {
    let timing = Timing { burst_after: 10 * S, ..Timing::default() };
    let mut core = RunCore::new(vec![stage("a", &[], 4)], timing);
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 100, objects: 100 });
    let clusters = vec![
        Cluster { name: "onprem".into(), max_workers: 10, other_workers: 0, free_nodes: None },
        Cluster { name: "cloud".into(), max_workers: 10, other_workers: 0, free_nodes: None },
    ];
    let pending = |since: Duration| {
        BTreeMap::from([(
            "a".to_string(),
            vec![Placed { cluster: "onprem".into(), running: 1, pending_since: vec![since; 3] }],
        )])
    };
    let targets = |effects: Vec<Effect>| -> Vec<(String, u32)> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::SetWorkers(t) => Some((t.cluster, t.workers)),
                _ => None,
            })
            .collect()
    };
    let before = core.handle(Event::Workers {
        now: 5 * S,
        clusters: clusters.clone(),
        placed: pending(Duration::ZERO),
        abandoned: vec![],
    });
    assert_eq!(targets(before), [("onprem".to_string(), 4)]);
    let after =
        core.handle(Event::Workers { now: 11 * S, clusters, placed: pending(Duration::ZERO), abandoned: vec![] });
    assert_eq!(targets(after), [("onprem".to_string(), 1), ("cloud".to_string(), 3)]);
}

#[test]
fn cancel_names_the_running_stages_and_ends_every_decision() {
    let mut core = two_stages();
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 2, objects: 2 });
    assert_eq!(core.handle(Event::Cancel), [Effect::Cancel { running: vec!["a".into()] }]);
    assert!(core.is_ended());
    assert!(core.handle(result("a", 0, 1, success())).is_empty());
    assert!(core.handle(Event::Tick { now: 10 * S }).is_empty());
}

/// A worker of the simulated world: the shard it holds and when it reports.
struct SimWorker {
    stage: String,
    holding: Option<(u32, u32, Duration)>,
}

/// An in-memory world carrying out the core's effects as the scheduler's adapters do.
struct World {
    core: RunCore,
    now: Duration,
    shards: BTreeMap<String, u32>,
    /// Per stage: shards waiting, with their next attempt number.
    queue: BTreeMap<String, VecDeque<(u32, u32)>>,
    workers: Vec<SimWorker>,
    capacity: u32,
    /// How long one attempt takes.
    cost: Duration,
    /// (stage, shard, attempt) whose worker dies holding it, with (`true`) or without its
    /// lease; without one, nothing hands the shard back (as when its last delivery is lost).
    deaths: Vec<(String, u32, u32, bool)>,
    /// Most workers seen at once.
    peak: u32,
    started: Vec<String>,
    lost: Vec<(String, u32)>,
    ended: Option<crate::run_state::RunOutcome>,
}

impl World {
    fn new(stages: Vec<StageConfig>, shards: &[(&str, u32)], capacity: u32) -> World {
        World {
            core: RunCore::new(stages, Timing::default()),
            now: Duration::ZERO,
            shards: shards.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            queue: BTreeMap::new(),
            workers: Vec::new(),
            capacity,
            cost: 250 * MS,
            deaths: Vec::new(),
            peak: 0,
            started: Vec::new(),
            lost: Vec::new(),
            ended: None,
        }
    }

    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut effects: VecDeque<Effect> = effects.into();
        while let Some(effect) = effects.pop_front() {
            let more = match effect {
                Effect::Stage(Transition::StartStage(stage)) => {
                    self.started.push(stage.clone());
                    let n = self.shards[&stage];
                    self.queue.insert(stage.clone(), (0..n).map(|shard| (shard, 1)).collect());
                    self.core.handle(Event::StagePublished { stage, shards: n, objects: u64::from(n) })
                }
                Effect::Stage(Transition::EndStage { stage, .. }) => {
                    self.queue.remove(&stage);
                    Vec::new()
                }
                Effect::Stage(Transition::EndRun(outcome)) => {
                    self.ended = Some(outcome);
                    Vec::new()
                }
                Effect::Stage(Transition::SkipStage(_))
                | Effect::Record { .. }
                | Effect::Speculate { .. }
                | Effect::Superseded { .. } => Vec::new(),
                Effect::Lost { stage, shard } => {
                    self.lost.push((stage, shard));
                    Vec::new()
                }
                Effect::HandBack { ack_subject } => {
                    let mut parts = ack_subject.split('/');
                    let stage = parts.next().unwrap().to_string();
                    let shard: u32 = parts.next().unwrap().parse().unwrap();
                    let attempt: u32 = parts.next().unwrap().parse().unwrap();
                    if let Some(queue) = self.queue.get_mut(&stage) {
                        queue.push_back((shard, attempt + 1));
                    }
                    Vec::new()
                }
                Effect::SetWorkers(target) => {
                    let have = self.workers.iter().filter(|w| w.stage == target.stage).count() as u32;
                    for _ in have..target.workers {
                        self.workers.push(SimWorker { stage: target.stage.clone(), holding: None });
                    }
                    Vec::new()
                }
                Effect::ProbeIdle { stages } => {
                    let idle_stages = stages
                        .into_iter()
                        .filter(|stage| {
                            self.queue.get(stage).is_none_or(VecDeque::is_empty)
                                && !self.workers.iter().any(|w| &w.stage == stage && w.holding.is_some())
                        })
                        .collect();
                    self.core.handle(Event::Idle { results_idle: true, idle_stages })
                }
                Effect::Cancel { .. } | Effect::Stop | Effect::CutShards { .. } => Vec::new(),
            };
            effects.extend(more);
        }
    }

    /// One step of 50 ms: workers report or die, idle ones take shards or exit, the core
    /// looks at the workers and the clock.
    fn step(&mut self) {
        self.now += 50 * MS;
        let mut events = Vec::new();
        let mut abandoned = Vec::new();
        let now = self.now;
        let deaths = self.deaths.clone();
        self.workers.retain_mut(|worker| {
            let Some((shard, attempt, done_at)) = worker.holding else { return true };
            if now < done_at {
                return true;
            }
            worker.holding = None;
            if let Some(&(_, _, _, lease)) =
                deaths.iter().find(|(s, n, a, _)| s == &worker.stage && *n == shard && *a == attempt)
            {
                if lease {
                    abandoned.push(format!("{}/{shard}/{attempt}", worker.stage));
                }
                return false;
            }
            events.push(result(&worker.stage, shard, attempt, success()));
            true
        });
        for event in events {
            let effects = self.core.handle(event);
            self.carry_out(effects);
        }
        let (queue, cost) = (&mut self.queue, self.cost);
        self.workers.retain_mut(|worker| {
            if worker.holding.is_some() {
                return true;
            }
            match queue.get_mut(&worker.stage).and_then(VecDeque::pop_front) {
                Some((shard, attempt)) => {
                    worker.holding = Some((shard, attempt, now + cost));
                    true
                }
                None => false,
            }
        });
        self.peak = self.peak.max(self.workers.len() as u32);
        let mut placed: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
        for worker in &self.workers {
            let entry = placed.entry(worker.stage.clone()).or_default();
            if entry.is_empty() {
                entry.push(Placed { cluster: "local".into(), running: 0, pending_since: Vec::new() });
            }
            entry[0].running += 1;
        }
        let clusters =
            vec![Cluster { name: "local".into(), max_workers: self.capacity, other_workers: 0, free_nodes: None }];
        let effects = self.core.handle(Event::Workers { now, clusters, placed, abandoned });
        self.carry_out(effects);
        let effects = self.core.handle(Event::Tick { now });
        self.carry_out(effects);
    }

    /// Steps until the run ends or `limit` of simulated time has passed.
    fn run_for(&mut self, limit: Duration) {
        let effects = self.core.handle(Event::Begin);
        self.carry_out(effects);
        while self.ended.is_none() && self.now < limit {
            self.step();
        }
    }
}

#[test]
fn a_simulated_run_finishes_every_shard_within_parallelism_and_capacity() {
    let mut world = World::new(vec![stage("a", &[], 3), stage("b", &["a"], 8)], &[("a", 30), ("b", 12)], 4);
    world.run_for(600 * S);
    assert_eq!(world.ended, Some(crate::run_state::RunOutcome::Succeeded));
    assert_eq!(world.started, ["a", "b"]);
    assert!(world.peak <= 4, "never more workers than the executor's capacity: {}", world.peak);
    assert!(world.core.state().shards("b").iter().all(|s| *s == ShardOutcome::Succeeded));
    // 30 shards of 250 ms on 3 workers, then 12 on 4: about 2.5 s + 0.75 s of simulated time.
    assert!(world.now < 10 * S, "took {:?} of simulated time", world.now);
}

#[test]
fn a_dead_worker_s_shard_comes_back_through_its_lease_and_succeeds() {
    let mut world = World::new(vec![stage("a", &[], 2)], &[("a", 4)], 2);
    world.deaths.push(("a".into(), 1, 1, true));
    world.run_for(600 * S);
    assert_eq!(world.ended, Some(crate::run_state::RunOutcome::Succeeded));
    assert!(world.lost.is_empty());
}

#[test]
fn a_shard_lost_on_its_last_attempt_fails_its_stage_instead_of_hanging() {
    let mut world = World::new(vec![stage("a", &[], 2), stage("b", &["a"], 2)], &[("a", 4), ("b", 1)], 2);
    // Its worker dies without a lease: nobody hands the shard back, no result ever comes.
    world.deaths.push(("a".into(), 2, 1, false));
    world.run_for(600 * S);
    assert_eq!(world.ended, Some(crate::run_state::RunOutcome::Failed));
    assert_eq!(world.lost, [("a".to_string(), 2)]);
    assert_eq!(world.started, ["a"], "b is skipped");
    assert!(world.now < 10 * S, "decided after two idle checks, not after a long wait: {:?}", world.now);
}
