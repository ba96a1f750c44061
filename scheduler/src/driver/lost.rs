//! The IO side of lost shards (the decision is the core's, `run_core::lost`): probing whether
//! stages' consumers hold nothing and no result waits, and recording a shard whose every
//! attempt was lost.

use super::{Driver, DriverError, RunEvent};
use crate::executor::Executor;
use crate::run_core::{Effect, Event};
use crate::run_state::ShardOutcome;
use crate::store::ShardRecord;

/// Why a lost shard failed.
pub const LOST_REASON: &str = "every attempt was lost (a worker died without reporting)";

impl<E: Executor> Driver<E> {
    /// Answers the core's probe: is a result waiting, and which of `stages` hold no shard.
    pub(super) async fn probe_idle(&mut self, stages: Vec<String>) -> Result<Vec<Effect>, DriverError> {
        let run_id = self.setup.run_id.clone();
        let results_idle = self.setup.queue.results_idle(&run_id).await?;
        let mut idle_stages = Vec::new();
        if results_idle {
            for stage in stages {
                if self.setup.queue.shards_idle(&run_id, &stage).await? {
                    idle_stages.push(stage);
                }
            }
        }
        let effects = self.core.handle(Event::Idle { results_idle, idle_stages });
        if effects.iter().any(|e| matches!(e, Effect::Lost { .. })) {
            // The lost shards' records are written before the stage ends on them.
            let (lost, rest): (Vec<Effect>, Vec<Effect>) =
                effects.into_iter().partition(|e| matches!(e, Effect::Lost { .. }));
            for effect in lost {
                if let Effect::Lost { stage, shard } = effect {
                    self.record_lost(&stage, shard)?;
                }
            }
            self.setup.store.flush().await?;
            return Ok(rest);
        }
        Ok(effects)
    }

    /// Records a shard whose every attempt was lost as FAILED, and tells watchers.
    pub(super) fn record_lost(&mut self, stage: &str, shard: u32) -> Result<(), DriverError> {
        tracing::warn!(stage, shard, "shard lost with its last attempt: failing it");
        let run_id = self.setup.run_id.clone();
        let store = &self.setup.store;
        let mut record = store.shard(&run_id, stage, shard)?.unwrap_or_else(ShardRecord::pending);
        record.outcome = ShardOutcome::Failed;
        store.put_shard(&run_id, stage, shard, &record)?;
        self.emit(RunEvent::AttemptFailed {
            stage: stage.to_string(),
            shard,
            attempt: record.attempts.len() as u32 + 1,
            reason: LOST_REASON.to_string(),
        });
        self.emit(RunEvent::ShardDecided { stage: stage.to_string(), shard, succeeded: false });
        Ok(())
    }
}
