//! One run's decisions, as a state machine fed [`Event`]s that returns [`Effect`]s: stages
//! started, published and ended; shards of adaptively sized stages cut in waves as results
//! come in; results applied, redelivered or duplicate; shards whose every attempt was lost with
//! its worker; speculative copies of attempts that run long; workers wanted per stage and
//! cluster; cancel and stop.
//!
//! The adapter (the scheduler's driver) turns what happens outside into events (a result read
//! from JetStream, what the executor sees, a tick of the clock, a cancel request), and carries
//! out the effects (sled, MLflow, JetStream, the executor). Time is the run's clock, a
//! [`Duration`] since the run started, passed in with the events that need it: tests drive the
//! core on a simulated clock.

mod lost;
mod speculation;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_adaptive;
#[cfg(test)]
mod tests_speculation;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::autoscale::{StageDemand, WorkerTarget, worker_targets};
use crate::placement::{Amount, Cluster, DEFAULT_BURST_AFTER, Placed};
use crate::run_state::{AttemptResult, RunState, ShardOutcome, StageStatus, Transition, Verdict};
use crate::sizing::{Cutter, ShardCost};

pub use lost::LOST;
pub use speculation::{DEFAULT_SPECULATION, MIN_SAMPLES, Speculation};

/// How often running stages are checked for shards whose every attempt was lost (a stage is
/// decided lost only when two checks in a row find it idle).
pub const LOST_SHARD_CHECK: Duration = Duration::from_secs(2);

/// What the core needs to know of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageConfig {
    pub name: String,
    /// Stages that must succeed first.
    pub after: Vec<String>,
    /// Most workers at once.
    pub parallelism: u32,
    /// No output from a non-empty input fails the stage.
    pub fail_on_empty: bool,
    /// What one worker asks of a node.
    pub request: Amount,
    /// Clusters in preference order; empty means any.
    pub clusters: Vec<String>,
    /// When a running attempt gets a speculative copy; `None`: never.
    pub speculate: Option<Speculation>,
}

/// The core's timing; tests shorten it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two checks for lost shards.
    pub lost_check_every: Duration,
    /// How long a worker may stay Pending before its cluster counts as full for its stage.
    pub burst_after: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing { lost_check_every: LOST_SHARD_CHECK, burst_after: DEFAULT_BURST_AFTER }
    }
}

/// Something that happened to the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new run begins.
    Begin,
    /// A run restored from the store ([`RunCore::restore_stage`]) whose running stages have
    /// published what they had left: carry out what the restored state calls for.
    Resumed,
    /// A started stage has published all its shards.
    StagePublished { stage: String, shards: u32, objects: u64 },
    /// A started stage sized adaptively has listed its `objects` and is ready for shards: cut
    /// them in waves. After a restart, `cuts` are the sizes of the shards cut before it (all
    /// published) and `learned` what those that succeeded cost.
    StageListed { stage: String, objects: u64, cuts: Vec<u32>, learned: Vec<ShardCost> },
    /// A started stage could not list or partition its input.
    StageAborted { stage: String },
    /// A shard attempt's result, and how long the attempt took. `redelivered`: the store
    /// already holds this attempt (JetStream handed the result again after a restart).
    /// `speculative`: the attempt was of a speculative copy.
    Result {
        stage: String,
        shard: u32,
        attempt: u32,
        result: AttemptResult,
        duration: Duration,
        redelivered: bool,
        speculative: bool,
    },
    /// A worker says an attempt of a speculating stage has run since `started` (the run's
    /// clock); its shard message is `stream_sequence` in the shards stream.
    Running { stage: String, shard: u32, attempt: u32, started: Duration, stream_sequence: u64 },
    /// What the executor sees at `now`: its clusters, where each stage's workers are, and the
    /// ack subjects of shards whose workers died holding them.
    Workers { now: Duration, clusters: Vec<Cluster>, placed: BTreeMap<String, Vec<Placed>>, abandoned: Vec<String> },
    /// The clock moved.
    Tick { now: Duration },
    /// The answer to [`Effect::ProbeIdle`]: whether no result is waiting, and which of the
    /// probed stages' consumers hold no shard (none pending, none in flight).
    Idle { results_idle: bool, idle_stages: Vec<String> },
    /// The user cancelled the run.
    Cancel,
    /// The scheduler is stopping (SIGTERM, a full disk): leave the run to resume.
    Stop,
}

/// Something the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start, end or skip a stage, or end the run.
    Stage(Transition),
    /// New shards of an adaptively sized stage: shard `first` on, each of `sizes` objects,
    /// following its shards so far in listing order. Record them, then publish them.
    CutShards { stage: String, first: u32, sizes: Vec<u32> },
    /// Record a result's attempt and what it meant (the deciding result, a duplicate's count),
    /// and tell watchers.
    Record { stage: String, shard: u32, attempt: u32, verdict: Verdict },
    /// Publish a speculative copy of a shard, made from its message `stream_sequence` in the
    /// shards stream.
    Speculate { stage: String, shard: u32, stream_sequence: u64 },
    /// A shard that has a speculative copy is decided by `attempt`: tell the stage's workers,
    /// so that its other attempt stops, and remove the copy if it still waits in the queue.
    Superseded { stage: String, shard: u32, attempt: u32 },
    /// A shard whose every attempt was lost: record it FAILED.
    Lost { stage: String, shard: u32 },
    /// Hand a dead worker's shard back to the queue at once (a nak on its ack subject).
    HandBack { ack_subject: String },
    /// How many workers a stage should have on a cluster.
    SetWorkers(WorkerTarget),
    /// Find out whether these stages' consumers hold no shard and whether any result waits,
    /// and answer with [`Event::Idle`].
    ProbeIdle { stages: Vec<String> },
    /// Stop every worker, remove the running stages' shards, end the run and these running
    /// stages KILLED.
    Cancel { running: Vec<String> },
    /// Stop every worker and leave the run and its stages running, to be resumed.
    Stop,
}

/// One run's decisions.
#[derive(Debug, Clone)]
pub struct RunCore {
    state: RunState,
    stages: BTreeMap<String, StageConfig>,
    /// Stages whose shards are all published, or whose first wave is cut.
    published: BTreeMap<String, u32>,
    /// The cutters of the adaptively sized stages.
    cutters: BTreeMap<String, Cutter>,
    /// Most workers the executor's clusters hold together, as last seen.
    capacity: Option<u32>,
    timing: Timing,
    lost: lost::LostShardWatch,
    next_lost_check: Duration,
    stragglers: speculation::StragglerWatch,
    /// Cancelled or stopped: no more decisions.
    halted: bool,
}

impl RunCore {
    /// A run whose stages are all waiting.
    pub fn new(stages: Vec<StageConfig>, timing: Timing) -> RunCore {
        let mut state = RunState::new(stages.iter().map(|s| (s.name.as_str(), s.after.as_slice())));
        for stage in stages.iter().filter(|s| s.fail_on_empty) {
            state.set_fail_on_empty(&stage.name);
        }
        RunCore {
            state,
            stages: stages.into_iter().map(|s| (s.name.clone(), s)).collect(),
            published: BTreeMap::new(),
            cutters: BTreeMap::new(),
            capacity: None,
            timing,
            lost: lost::LostShardWatch::default(),
            next_lost_check: Duration::ZERO,
            stragglers: speculation::StragglerWatch::default(),
            halted: false,
        }
    }

    /// Restores a stage as the store holds it, before [`Event::Resumed`]: its status, its
    /// shards' outcomes, input objects and outputs of succeeded shards.
    pub fn restore_stage(
        &mut self,
        stage: &str,
        status: StageStatus,
        shards: Vec<ShardOutcome>,
        objects_in: u64,
        outputs: u64,
    ) {
        self.state.restore_stage(stage, status, shards, objects_in, outputs);
    }

    /// The run's stages and shards.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// True once the run has ended, or was cancelled or stopped.
    pub fn is_ended(&self) -> bool {
        self.halted || self.state.is_ended()
    }

    /// Workers the run could use now, all stages together (its claim on a shared executor).
    pub fn wanted_workers(&self) -> u32 {
        self.demands().iter().map(StageDemand::desired).sum()
    }

    /// Applies one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        if self.halted {
            return Vec::new();
        }
        match event {
            Event::Begin => stage_effects(self.state.start()),
            Event::Resumed => stage_effects(self.state.resume()),
            Event::StagePublished { stage, shards, objects } => {
                self.published.insert(stage.clone(), shards);
                stage_effects(self.state.stage_published(&stage, shards, objects))
            }
            Event::StageListed { stage, objects, cuts, learned } => self.stage_listed(stage, objects, cuts, learned),
            Event::StageAborted { stage } => stage_effects(self.state.stage_aborted(&stage)),
            Event::Result { stage, shard, attempt, result, duration, redelivered, speculative } => {
                if redelivered {
                    return Vec::new();
                }
                let result = if speculative { speculation::copy_result(result) } else { result };
                let (verdict, transitions) = self.state.apply_result(&stage, shard, result);
                let mut effects = vec![Effect::Record { stage: stage.clone(), shard, attempt, verdict }];
                effects.extend(self.speculation_result(&stage, shard, attempt, speculative, verdict, duration));
                if let Verdict::Decided(outcome) = verdict {
                    if let (ShardOutcome::Succeeded, Some(cutter)) = (outcome, self.cutters.get_mut(&stage))
                        && let Some(&objects) = cutter.cuts().get(shard as usize)
                    {
                        cutter.observe(ShardCost { objects: u64::from(objects), duration });
                    }
                    effects.extend(self.cut_wave(&stage));
                }
                effects.extend(stage_effects(transitions));
                effects
            }
            Event::Workers { now, clusters, placed, abandoned } => self.workers(now, &clusters, &placed, abandoned),
            Event::Running { stage, shard, attempt, started, stream_sequence } => {
                self.attempt_running(&stage, shard, attempt, started, stream_sequence);
                Vec::new()
            }
            Event::Tick { now } => {
                let mut effects = self.tick(now);
                effects.extend(self.copy_stragglers(now));
                effects
            }
            Event::Idle { results_idle, idle_stages } => self.idle(results_idle, &idle_stages),
            Event::Cancel => {
                self.halted = true;
                vec![Effect::Cancel { running: self.state.running_stages().map(str::to_string).collect() }]
            }
            Event::Stop => {
                self.halted = true;
                vec![Effect::Stop]
            }
        }
    }

    /// A stage sized adaptively starts (or resumes) cutting: its first wave.
    fn stage_listed(&mut self, stage: String, objects: u64, cuts: Vec<u32>, learned: Vec<ShardCost>) -> Vec<Effect> {
        let shards = cuts.len() as u32;
        let Some(cutter) = Cutter::resume(objects, self.stage_workers(&stage), cuts, learned) else {
            return stage_effects(self.state.stage_aborted(&stage));
        };
        let uncut = cutter.uncut();
        self.cutters.insert(stage.clone(), cutter);
        self.published.insert(stage.clone(), shards);
        let transitions = self.state.stage_listed(&stage, shards, objects, uncut);
        let mut effects = self.cut_wave(&stage);
        effects.extend(stage_effects(transitions));
        effects
    }

    /// Workers a stage can have: its parallelism, within what the clusters hold once seen.
    fn stage_workers(&self, stage: &str) -> u32 {
        let parallelism = self.stages.get(stage).map_or(1, |s| s.parallelism);
        self.capacity.filter(|c| *c > 0).map_or(parallelism, |capacity| parallelism.min(capacity))
    }

    /// The next wave of an adaptively sized stage, if it needs one now.
    fn cut_wave(&mut self, stage: &str) -> Vec<Effect> {
        let workers = self.stage_workers(stage);
        let Some(cutter) = self.cutters.get_mut(stage) else { return Vec::new() };
        cutter.set_workers(workers);
        if self.state.status(stage) != Some(StageStatus::Running) {
            return Vec::new();
        }
        let undecided: Vec<u32> = self
            .state
            .shards(stage)
            .iter()
            .zip(cutter.cuts())
            .filter(|(outcome, _)| **outcome == ShardOutcome::Pending)
            .map(|(_, &size)| size)
            .collect();
        let first = cutter.cuts().len() as u32;
        let sizes = cutter.wave(&undecided);
        if sizes.is_empty() {
            return Vec::new();
        }
        let objects = sizes.iter().map(|&n| u64::from(n)).sum();
        self.state.shards_cut(stage, sizes.len() as u32, objects);
        vec![Effect::CutShards { stage: stage.to_string(), first, sizes }]
    }

    /// What each running stage whose shards are out asks for.
    fn demands(&self) -> Vec<StageDemand> {
        self.state
            .running_stages()
            .filter(|stage| self.published.contains_key(*stage))
            .map(|stage| {
                let config = &self.stages[stage];
                StageDemand {
                    stage: stage.to_string(),
                    parallelism: config.parallelism,
                    backlog: self.state.backlog(stage).saturating_add(self.outstanding_copies(stage)),
                    request: config.request,
                    clusters: config.clusters.clone(),
                }
            })
            .collect()
    }

    /// Dead workers' shards handed back, then a worker target for every (stage, cluster) that
    /// needs one; stages no longer running shrink to 0 where they still have workers.
    fn workers(
        &mut self,
        now: Duration,
        clusters: &[Cluster],
        placed: &BTreeMap<String, Vec<Placed>>,
        abandoned: Vec<String>,
    ) -> Vec<Effect> {
        self.capacity = Some(clusters.iter().map(|c| c.max_workers).fold(0, u32::saturating_add));
        let mut effects: Vec<Effect> =
            abandoned.into_iter().map(|ack_subject| Effect::HandBack { ack_subject }).collect();
        let demands = self.demands();
        let targets = worker_targets(&demands, clusters, placed, now, self.timing.burst_after);
        effects.extend(targets.into_iter().map(Effect::SetWorkers));
        for (stage, places) in placed {
            if demands.iter().any(|d| &d.stage == stage) {
                continue;
            }
            for place in places.iter().filter(|p| p.running > 0 || !p.pending_since.is_empty()) {
                let target = WorkerTarget { stage: stage.clone(), cluster: place.cluster.clone(), workers: 0 };
                effects.push(Effect::SetWorkers(target));
            }
        }
        effects
    }
}

/// Stage transitions as effects.
fn stage_effects(transitions: Vec<Transition>) -> Vec<Effect> {
    transitions.into_iter().map(Effect::Stage).collect()
}
