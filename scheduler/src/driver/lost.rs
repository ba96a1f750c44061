//! Shards whose every attempt was lost: a worker died with the last delivery, so no result
//! will ever come. When a running stage has undecided shards but its consumer holds nothing
//! (none pending, none in flight) and no result is waiting, twice in a row, those shards are
//! decided FAILED instead of being waited for forever.

use std::collections::BTreeMap;

use super::feed::ResultFeed;
use super::{Driver, DriverError, RunEvent};
use crate::executor::Executor;
use crate::run_state::{AttemptResult, Effect, ShardOutcome, Verdict};
use crate::store::ShardRecord;

/// A lost shard's last attempt: failed, and no attempt follows.
const LOST: AttemptResult = AttemptResult::Failed { last_attempt: true, permanent: false };

/// Why a lost shard failed.
pub const LOST_REASON: &str = "every attempt was lost (a worker died without reporting)";

/// Stages seen idle with undecided shards at the previous check.
#[derive(Debug, Default)]
pub(super) struct LostShardWatch {
    suspects: BTreeMap<String, u32>,
}

impl<E: Executor> Driver<E> {
    /// Decides as failed the shards of stages found idle with undecided shards twice in a row.
    pub(super) async fn decide_lost_shards(&mut self, feed: &ResultFeed) -> Result<Vec<Effect>, DriverError> {
        let run_id = feed.run_id().to_string();
        let candidates: Vec<(String, u32)> = self
            .state
            .running_stages()
            .filter(|stage| self.records.get(*stage).is_some_and(|r| r.published == r.shards_total))
            .map(|stage| (stage.to_string(), self.state.backlog(stage)))
            .filter(|(_, backlog)| *backlog > 0)
            .collect();
        if candidates.is_empty() {
            self.lost.suspects.clear();
            return Ok(Vec::new());
        }
        if !self.setup.queue.results_idle(&run_id).await? {
            self.lost.suspects.clear();
            return Ok(Vec::new());
        }
        let mut effects = Vec::new();
        let mut suspects = BTreeMap::new();
        for (stage, backlog) in candidates {
            if !self.setup.queue.shards_idle(&run_id, &stage).await? {
                continue;
            }
            if self.lost.suspects.get(&stage) != Some(&backlog) {
                suspects.insert(stage, backlog);
                continue;
            }
            tracing::warn!(stage, shards = backlog, "shards lost with their last attempt: failing them");
            let pending: Vec<u32> = self
                .state
                .shards(&stage)
                .iter()
                .enumerate()
                .filter(|(_, outcome)| **outcome == ShardOutcome::Pending)
                .map(|(index, _)| index as u32)
                .collect();
            for shard in pending {
                let (verdict, more) = self.state.apply_result(&stage, shard, LOST);
                if verdict != Verdict::Decided(ShardOutcome::Failed) {
                    continue;
                }
                let store = &self.setup.store;
                let mut record = store.shard(&run_id, &stage, shard)?.unwrap_or_else(ShardRecord::pending);
                record.outcome = ShardOutcome::Failed;
                store.put_shard(&run_id, &stage, shard, &record)?;
                self.emit(RunEvent::AttemptFailed {
                    stage: stage.clone(),
                    shard,
                    attempt: record.attempts.len() as u32 + 1,
                    reason: LOST_REASON.to_string(),
                });
                self.emit(RunEvent::ShardDecided { stage: stage.clone(), shard, succeeded: false });
                effects.extend(more);
            }
        }
        self.lost.suspects = suspects;
        self.setup.store.flush().await?;
        Ok(effects)
    }
}
