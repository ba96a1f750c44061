//! Speculative copies of stragglers. When every undecided shard of a stage is running (none
//! waits in the queue), the stage runs fewer attempts than its parallelism, and an attempt has
//! run longer than the stage's factor times the median of its successful attempts, the shard
//! gets one speculative copy: a second attempt on another worker. The copy counts in what the
//! stage asks of the executor, so it gets a worker as any shard does (at once when the run's
//! share of the executor has room). The first success decides the shard; the core then
//! says so ([`Effect::Superseded`]) and the other attempt is stopped. A copy's failure never
//! decides its shard: the shard's own attempts go on as without it.
//!
//! The core hears of a running attempt only from its worker's notice, sent once an attempt has
//! run a second (`concurrent_proto::timing::RUNNING_NOTICE_AFTER` in the worker), so shorter
//! attempts are never copied.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Effect, RunCore};
use crate::run_state::{AttemptResult, ShardOutcome, StageStatus, Verdict};

/// How long an attempt may run before its shard is copied: `percent_of_median` percent of the
/// stage's median successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speculation {
    pub percent_of_median: u32,
}

/// A stage's speculation unless its DAG says otherwise: three times the median.
pub const DEFAULT_SPECULATION: Speculation = Speculation { percent_of_median: 300 };

/// Successful attempts a stage needs before its median is trusted.
pub const MIN_SAMPLES: usize = 3;

/// What the core knows of the speculating stages' attempts.
#[derive(Debug, Clone, Default)]
pub(super) struct StragglerWatch {
    stages: BTreeMap<String, StageWatch>,
}

#[derive(Debug, Clone, Default)]
struct StageWatch {
    /// Durations of the attempts that decided a shard succeeded.
    durations: Vec<Duration>,
    /// The median of `durations` when it had this many entries.
    median: Option<(usize, Duration)>,
    /// Undecided shards whose attempt a notice said runs, by shard.
    running: BTreeMap<u32, RunningAttempt>,
    /// Shards that got a copy, and whether it may still decide them.
    copies: BTreeMap<u32, CopyState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunningAttempt {
    attempt: u32,
    /// When it started, on the run's clock.
    started: Duration,
    /// Its shard message in the shards stream.
    stream_sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyState {
    /// Published, and not failed yet.
    Out,
    /// Failed, or its shard is decided: no other copy follows.
    Over,
}

impl StageWatch {
    fn median(&mut self) -> Option<Duration> {
        if self.durations.len() < MIN_SAMPLES {
            return None;
        }
        match self.median {
            Some((count, median)) if count == self.durations.len() => Some(median),
            _ => {
                let mut sorted = self.durations.clone();
                let middle = sorted.len() / 2;
                let (_, median, _) = sorted.select_nth_unstable(middle);
                let median = *median;
                self.median = Some((self.durations.len(), median));
                Some(median)
            }
        }
    }

    fn outstanding_copies(&self) -> u32 {
        self.copies.values().filter(|c| **c == CopyState::Out).count() as u32
    }
}

/// What a copy's result means to the run state: its failure never decides the shard.
pub(super) fn copy_result(result: AttemptResult) -> AttemptResult {
    match result {
        AttemptResult::Failed { .. } => AttemptResult::Failed { last_attempt: false, permanent: false },
        success => success,
    }
}

impl RunCore {
    fn speculation(&self, stage: &str) -> Option<Speculation> {
        self.stages.get(stage).and_then(|s| s.speculate)
    }

    /// A worker says attempt `attempt` of `shard` has run since `started`.
    pub(super) fn attempt_running(
        &mut self,
        stage: &str,
        shard: u32,
        attempt: u32,
        started: Duration,
        stream_sequence: u64,
    ) {
        if self.speculation(stage).is_none()
            || self.state.status(stage) != Some(StageStatus::Running)
            || self.state.shards(stage).get(shard as usize) != Some(&ShardOutcome::Pending)
        {
            return;
        }
        let watch = self.stragglers.stages.entry(stage.to_string()).or_default();
        let running = RunningAttempt { attempt, started, stream_sequence };
        match watch.running.get(&shard) {
            Some(known) if known.attempt > attempt => {}
            _ => {
                watch.running.insert(shard, running);
            }
        }
    }

    /// What a result means for speculation; a shard with a copy that is now decided calls for
    /// [`Effect::Superseded`].
    pub(super) fn speculation_result(
        &mut self,
        stage: &str,
        shard: u32,
        attempt: u32,
        speculative: bool,
        verdict: Verdict,
        duration: Duration,
    ) -> Option<Effect> {
        self.speculation(stage)?;
        let watch = self.stragglers.stages.entry(stage.to_string()).or_default();
        match verdict {
            Verdict::Decided(outcome) => {
                watch.running.remove(&shard);
                if outcome == ShardOutcome::Succeeded {
                    watch.durations.push(duration);
                }
                // The other attempt still runs when the copy decided, or the copy is still out.
                let other_runs = speculative || watch.copies.get(&shard) == Some(&CopyState::Out);
                if watch.copies.contains_key(&shard) || speculative {
                    watch.copies.insert(shard, CopyState::Over);
                }
                other_runs.then(|| Effect::Superseded { stage: stage.to_string(), shard, attempt })
            }
            Verdict::AttemptFailed if speculative => {
                watch.copies.insert(shard, CopyState::Over);
                None
            }
            Verdict::AttemptFailed => {
                if watch.running.get(&shard).is_some_and(|r| r.attempt <= attempt) {
                    watch.running.remove(&shard);
                }
                None
            }
            Verdict::Duplicate | Verdict::Unknown => None,
        }
    }

    /// Copies the speculating stages owe to their workers: counted in what a stage asks of
    /// the executor.
    pub(super) fn outstanding_copies(&self, stage: &str) -> u32 {
        self.stragglers.stages.get(stage).map_or(0, StageWatch::outstanding_copies)
    }

    /// The shards to copy at `now`: in each speculating stage whose undecided shards all run,
    /// with fewer attempts running than its parallelism, those running longer than the stage's factor times its median,
    /// the longest-running first, one per free slot.
    pub(super) fn copy_stragglers(&mut self, now: Duration) -> Vec<Effect> {
        let running: Vec<String> = self.state.running_stages().map(str::to_string).collect();
        self.stragglers.stages.retain(|stage, _| running.contains(stage));
        let mut effects = Vec::new();
        for stage in running {
            let Some(speculation) = self.speculation(&stage) else { continue };
            if !self.published.contains_key(&stage) || self.state.uncut(&stage) > 0 {
                continue;
            }
            let parallelism = self.stages.get(&stage).map_or(1, |s| s.parallelism);
            let pending = self.state.pending_shards(&stage);
            let Some(watch) = self.stragglers.stages.get_mut(&stage) else { continue };
            if pending.is_empty() || !pending.iter().all(|shard| watch.running.contains_key(shard)) {
                continue;
            }
            let busy = (pending.len() as u32).saturating_add(watch.outstanding_copies());
            let free = parallelism.saturating_sub(busy) as usize;
            if free == 0 {
                continue;
            }
            let Some(median) = watch.median() else { continue };
            let threshold = median.saturating_mul(speculation.percent_of_median) / 100;
            let mut late: Vec<(u32, RunningAttempt)> = pending
                .iter()
                .filter(|shard| !watch.copies.contains_key(shard))
                .map(|shard| (*shard, watch.running[shard]))
                .filter(|(_, run)| now.saturating_sub(run.started) > threshold)
                .collect();
            late.sort_by_key(|(shard, run)| (run.started, *shard));
            for (shard, run) in late.into_iter().take(free) {
                watch.copies.insert(shard, CopyState::Out);
                effects.push(Effect::Speculate { stage: stage.clone(), shard, stream_sequence: run.stream_sequence });
            }
        }
        effects
    }
}
