//! Applying a batch of shard results: decode, decide, record in sled, flush, then ack.

use async_nats::jetstream::{AckKind, Message};
use concurrent_proto::{ShardResult, ShardStatus, decode};

use super::{Driver, DriverError, RunEvent};
use crate::executor::Executor;
use crate::run_state::{Effect, ShardOutcome, Verdict};
use crate::store::ShardRecord;

impl<E: Executor> Driver<E> {
    /// Records a batch of results; acks them only once the store has them on disk.
    pub(super) async fn apply_results(&mut self, batch: Vec<Message>) -> Result<Vec<Effect>, DriverError> {
        let mut effects = Vec::new();
        let mut to_term = Vec::new();
        for message in &batch {
            match decode::<ShardResult>(&message.payload) {
                Ok(result) => effects.extend(self.apply_result(result)?),
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "dropping a result that does not decode");
                    to_term.push(message);
                }
            }
        }
        self.setup.store.flush().await?;
        for message in &batch {
            let kind = if to_term.iter().any(|m| std::ptr::eq(*m, message)) { AckKind::Term } else { AckKind::Ack };
            if let Err(error) = message.ack_with(kind).await {
                tracing::warn!(%error, "acking a result");
            }
        }
        Ok(effects)
    }

    fn apply_result(&mut self, result: ShardResult) -> Result<Vec<Effect>, DriverError> {
        let run_id = self.setup.run_id.clone();
        if result.run_id != run_id {
            tracing::warn!(run = %result.run_id, "result of another run");
            return Ok(Vec::new());
        }
        let succeeded = result.status == ShardStatus::Succeeded;
        let (verdict, effects) = self.state.apply_result(&result.stage, result.shard, succeeded, result.last_attempt);
        let store = &self.setup.store;
        let mut record = store.shard(&run_id, &result.stage, result.shard)?.unwrap_or(ShardRecord {
            outcome: ShardOutcome::Pending,
            attempts: 0,
            decided_by: None,
            duplicates: 0,
        });
        match verdict {
            Verdict::Unknown => {
                tracing::warn!(stage = %result.stage, shard = result.shard, "result for an unknown stage or shard");
                return Ok(effects);
            }
            Verdict::Duplicate => {
                tracing::info!(stage = %result.stage, shard = result.shard, attempt = result.attempt, "duplicate result ignored");
                record.duplicates += 1;
            }
            Verdict::AttemptFailed => {
                record.attempts += 1;
                if let ShardStatus::Failed { reason } = &result.status {
                    self.emit(RunEvent::AttemptFailed {
                        stage: result.stage.clone(),
                        shard: result.shard,
                        attempt: result.attempt,
                        reason: reason.clone(),
                    });
                }
            }
            Verdict::Decided(outcome) => {
                record.attempts += 1;
                record.outcome = outcome;
                self.emit(RunEvent::ShardDecided {
                    stage: result.stage.clone(),
                    shard: result.shard,
                    succeeded: outcome == ShardOutcome::Succeeded,
                });
                record.decided_by = Some(result.clone());
            }
        }
        store.put_shard(&run_id, &result.stage, result.shard, &record)?;
        Ok(effects)
    }
}
