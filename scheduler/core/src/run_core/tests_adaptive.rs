//! A stage sized adaptively, run whole on a simulated clock: its shards are cut in waves as
//! results come in, every object is decided once, and a core rebuilt from what was recorded
//! (a restarted scheduler) carries on without losing or repeating an object.

use std::collections::VecDeque;

use super::tests::stage;
use super::*;
use crate::run_state::RunOutcome;

const MS: Duration = Duration::from_millis(1);

/// What a scheduler keeps in its store for the adaptive stage: the cuts in order, the shards
/// published, and each decided shard's outcome and duration.
#[derive(Default)]
struct Recorded {
    cuts: Vec<u32>,
    decided: BTreeMap<u32, Duration>,
    waves: usize,
}

/// Workers that take the stage's shards in order and report after `fixed + per_object × size`.
struct World {
    core: RunCore,
    objects: u64,
    workers: u32,
    now: Duration,
    queue: VecDeque<u32>,
    running: Vec<(Duration, u32)>,
    recorded: Recorded,
    decisions: BTreeMap<u32, u32>,
    ended: Option<RunOutcome>,
}

impl World {
    fn new(objects: u64, workers: u32) -> World {
        let core = RunCore::new(vec![stage("a", &[], workers), stage("b", &["a"], 1)], Timing::default());
        World {
            core,
            objects,
            workers,
            now: Duration::ZERO,
            queue: VecDeque::new(),
            running: Vec::new(),
            recorded: Recorded::default(),
            decisions: BTreeMap::new(),
            ended: None,
        }
    }

    fn shard_time(&self, shard: u32) -> Duration {
        300 * MS + 2 * MS * self.recorded.cuts[shard as usize]
    }

    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut effects: VecDeque<Effect> = effects.into();
        while let Some(effect) = effects.pop_front() {
            let more = match effect {
                Effect::Stage(Transition::StartStage(stage)) if stage == "a" => self.core.handle(Event::StageListed {
                    stage,
                    objects: self.objects,
                    cuts: Vec::new(),
                    learned: Vec::new(),
                }),
                Effect::Stage(Transition::StartStage(stage)) => {
                    self.core.handle(Event::StagePublished { stage, shards: 0, objects: 0 })
                }
                Effect::Stage(Transition::EndRun(outcome)) => {
                    self.ended = Some(outcome);
                    Vec::new()
                }
                Effect::CutShards { stage, first, sizes } => {
                    assert_eq!(stage, "a");
                    assert_eq!(first as usize, self.recorded.cuts.len(), "shard numbers stay dense");
                    self.recorded.cuts.extend(&sizes);
                    self.recorded.waves += 1;
                    self.queue.extend(first..first + sizes.len() as u32);
                    Vec::new()
                }
                Effect::Record { shard, verdict: Verdict::Decided(_), .. } => {
                    *self.decisions.entry(shard).or_default() += 1;
                    Vec::new()
                }
                _ => Vec::new(),
            };
            effects.extend(more);
        }
    }

    fn begin(&mut self) {
        let effects = self.core.handle(Event::Begin);
        self.carry_out(effects);
    }

    /// Runs until the run ends or `shards` more shards have been decided.
    fn run(&mut self, shards: usize) {
        let mut decided = 0;
        while self.ended.is_none() && decided < shards {
            while self.running.len() < self.workers as usize {
                let Some(shard) = self.queue.pop_front() else { break };
                self.running.push((self.now + self.shard_time(shard), shard));
            }
            let Some(index) = (0..self.running.len()).min_by_key(|&i| self.running[i].0) else {
                panic!("no shard to run and the run has not ended: {:?}", self.recorded.cuts);
            };
            let (at, shard) = self.running.remove(index);
            self.now = at;
            let duration = self.shard_time(shard);
            self.recorded.decided.insert(shard, duration);
            let event = Event::Result {
                stage: "a".into(),
                shard,
                attempt: 1,
                result: AttemptResult::Succeeded { outputs: 1 },
                duration,
                redelivered: false,
                speculative: false,
            };
            let effects = self.core.handle(event);
            self.carry_out(effects);
            decided += 1;
        }
    }

    /// A new core rebuilt from what was recorded, as `concurrent resume` does: undecided shards
    /// are still queued (in JetStream), the running ones come back too.
    fn restart(&mut self) {
        let mut core = RunCore::new(vec![stage("a", &[], self.workers), stage("b", &["a"], 1)], Timing::default());
        let outcomes =
            (0..self.recorded.cuts.len() as u32)
                .map(|i| {
                    if self.recorded.decided.contains_key(&i) { ShardOutcome::Succeeded } else { ShardOutcome::Pending }
                })
                .collect();
        core.restore_stage("a", StageStatus::Running, outcomes, self.objects, self.recorded.decided.len() as u64);
        let learned = self
            .recorded
            .decided
            .iter()
            .map(|(&shard, &duration)| ShardCost { objects: u64::from(self.recorded.cuts[shard as usize]), duration })
            .collect();
        self.core = core;
        for (_, shard) in self.running.drain(..) {
            self.queue.push_front(shard);
        }
        let listed =
            Event::StageListed { stage: "a".into(), objects: self.objects, cuts: self.recorded.cuts.clone(), learned };
        let mut effects = self.core.handle(listed);
        effects.extend(self.core.handle(Event::Resumed));
        self.carry_out(effects);
    }

    fn assert_every_object_decided_once(&self) {
        assert_eq!(self.ended, Some(RunOutcome::Succeeded));
        assert_eq!(self.recorded.cuts.iter().map(|&n| u64::from(n)).sum::<u64>(), self.objects);
        assert!(!self.recorded.cuts.contains(&0));
        assert_eq!(self.decisions.len(), self.recorded.cuts.len(), "every shard decided");
        assert!(self.decisions.values().all(|&n| n == 1), "no shard decided twice");
        assert!(self.core.state().shards("a").iter().all(|s| *s == ShardOutcome::Succeeded));
    }
}

#[test]
fn a_stage_sized_adaptively_is_cut_in_waves_and_every_object_is_decided_once() {
    let mut world = World::new(20_000, 3);
    world.begin();
    assert_eq!(world.recorded.cuts, [1, 4, 1], "a probe per worker first");
    world.run(usize::MAX);
    world.assert_every_object_decided_once();
    assert!(world.recorded.waves > 2, "cut in waves: {:?}", world.recorded.cuts);
    let guided = &world.recorded.cuts[3..];
    assert!(guided.first() > guided.last(), "shards shrink toward the end: {guided:?}");
}

#[test]
fn a_restarted_core_carries_on_cutting_from_the_recorded_cuts() {
    for after in [1, 3, 5, 8] {
        let mut world = World::new(20_000, 3);
        world.begin();
        world.run(after);
        let cut_before = world.recorded.cuts.len();
        world.restart();
        world.run(usize::MAX);
        world.assert_every_object_decided_once();
        assert!(world.recorded.cuts.len() >= cut_before);
    }
}

#[test]
fn an_empty_stage_sized_adaptively_succeeds_at_once() {
    let mut world = World::new(0, 2);
    world.begin();
    assert!(world.recorded.cuts.is_empty());
    assert_eq!(world.ended, Some(RunOutcome::Succeeded));
}

#[test]
fn waves_are_sized_for_the_workers_the_clusters_hold_when_fewer_than_the_parallelism() {
    let mut core = RunCore::new(vec![stage("a", &[], 8)], Timing::default());
    let local = vec![Cluster { name: "local".into(), max_workers: 2, other_workers: 0, free_nodes: None }];
    core.handle(Event::Workers { now: Duration::ZERO, clusters: local, placed: BTreeMap::new(), abandoned: vec![] });
    core.handle(Event::Begin);
    let effects = core.handle(Event::StageListed { stage: "a".into(), objects: 1000, cuts: vec![], learned: vec![] });
    assert_eq!(
        effects,
        [Effect::CutShards { stage: "a".into(), first: 0, sizes: vec![1, 4] }],
        "a probe per worker the cluster holds, not per unit of parallelism"
    );
}
