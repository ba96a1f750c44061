//! Shards whose every attempt was lost: a worker died with the last delivery, so no result
//! will ever come. When a running stage has undecided shards but its consumer holds nothing
//! (none pending, none in flight) and no result is waiting, at two checks in a row with the same
//! backlog, those shards are decided FAILED instead of being waited for forever.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Effect, RunCore, stage_effects};
use crate::run_state::{AttemptResult, ShardOutcome, Verdict};

/// A lost shard's last attempt: failed, and no attempt follows.
pub const LOST: AttemptResult = AttemptResult::Failed { last_attempt: true, permanent: false };

/// Stages found idle with undecided shards at the previous check, and their backlog then.
#[derive(Debug, Clone, Default)]
pub(super) struct LostShardWatch {
    suspects: BTreeMap<String, u32>,
}

impl RunCore {
    /// Running stages with all shards out and some undecided: the ones a check looks at.
    fn lost_candidates(&self) -> Vec<(String, u32)> {
        self.state
            .running_stages()
            .filter(|stage| self.published.contains_key(*stage))
            .map(|stage| (stage.to_string(), self.state.backlog(stage)))
            .filter(|(_, backlog)| *backlog > 0)
            .collect()
    }

    /// Asks for a probe of the candidates when a check is due.
    pub(super) fn tick(&mut self, now: Duration) -> Vec<Effect> {
        if now < self.next_lost_check {
            return Vec::new();
        }
        self.next_lost_check = now + self.timing.lost_check_every;
        let candidates = self.lost_candidates();
        if candidates.is_empty() {
            self.lost.suspects.clear();
            return Vec::new();
        }
        vec![Effect::ProbeIdle { stages: candidates.into_iter().map(|(stage, _)| stage).collect() }]
    }

    /// Decides lost the shards of stages found idle with the same backlog as at the last check.
    pub(super) fn idle(&mut self, results_idle: bool, idle_stages: &[String]) -> Vec<Effect> {
        if !results_idle {
            self.lost.suspects.clear();
            return Vec::new();
        }
        let mut effects = Vec::new();
        let mut suspects = BTreeMap::new();
        for (stage, backlog) in self.lost_candidates() {
            if !idle_stages.contains(&stage) {
                continue;
            }
            if self.lost.suspects.get(&stage) != Some(&backlog) {
                suspects.insert(stage, backlog);
                continue;
            }
            let pending = self.state.pending_shards(&stage);
            for shard in pending {
                let (verdict, transitions) = self.state.apply_result(&stage, shard, LOST);
                if verdict == Verdict::Decided(ShardOutcome::Failed) {
                    effects.push(Effect::Lost { stage: stage.clone(), shard });
                    effects.extend(self.cut_wave(&stage));
                    effects.extend(stage_effects(transitions));
                }
            }
        }
        self.lost.suspects = suspects;
        effects
    }
}
