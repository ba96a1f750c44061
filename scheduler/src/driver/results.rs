//! Applying a batch of shard results: decode, let the core decide, record in sled, flush, then
//! ack; what the decisions lead to (stages ending) is carried out after the acks.

use async_nats::jetstream::{AckKind, Message};
use concurrent_proto::{ShardResult, ShardStatus, decode_results};

use super::{Driver, DriverError, RunEvent};
use crate::executor::Executor;
use crate::run_core::{Effect, Event};
use crate::run_state::{AttemptResult, ShardOutcome, Verdict};
use crate::store::ShardRecord;

impl<E: Executor> Driver<E> {
    /// Records a batch of results; acks them only once the store has them on disk. A result
    /// that does not decode is logged and terminated.
    pub(super) async fn apply_results(&mut self, batch: Vec<Message>) -> Result<Vec<Effect>, DriverError> {
        let mut effects = Vec::new();
        let mut kinds = Vec::with_capacity(batch.len());
        let mut duplicates = Vec::new();
        for message in &batch {
            // A message holds one result, or those of several attempts a worker reported together.
            match decode_results(&message.payload) {
                Ok(results) => {
                    for result in results {
                        let (more, duplicate) = self.apply_result(result)?;
                        effects.extend(more);
                        duplicates.extend(duplicate);
                    }
                    kinds.push(AckKind::Ack);
                }
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "terminating a result that does not decode");
                    kinds.push(AckKind::Term);
                }
            }
        }
        self.setup.store.flush().await?;
        for (message, kind) in batch.iter().zip(kinds) {
            if let Err(error) = message.ack_with(kind).await {
                tracing::warn!(%error, "acking a result");
            }
        }
        if let Some((tree, _)) = &self.setup.tracking {
            for run in duplicates {
                if let Err(error) = tree.mark_duplicate(&run).await {
                    tracing::warn!(%error, run, "tagging a duplicate shard run");
                }
            }
        }
        Ok(effects)
    }

    /// Applies one result; returns the effects left to carry out and, for a duplicate, its
    /// MLflow run.
    fn apply_result(&mut self, result: ShardResult) -> Result<(Vec<Effect>, Option<String>), DriverError> {
        let run_id = self.setup.run_id.clone();
        if result.run_id != run_id {
            tracing::warn!(run = %result.run_id, "result of another run");
            return Ok((Vec::new(), None));
        }
        let mut record =
            self.setup.store.shard(&run_id, &result.stage, result.shard)?.unwrap_or_else(ShardRecord::pending);
        let event = Event::Result {
            stage: result.stage.clone(),
            shard: result.shard,
            attempt: result.attempt,
            result: attempt_result(&result),
            duration: std::time::Duration::try_from_secs_f64(result.duration_s).unwrap_or_default(),
            redelivered: record.attempts.contains(&result.attempt),
            speculative: result.speculative,
        };
        let mut rest = Vec::new();
        let mut duplicate = None;
        for effect in self.core.handle(event) {
            let Effect::Record { verdict, .. } = effect else {
                rest.push(effect);
                continue;
            };
            match verdict {
                Verdict::Unknown => {
                    tracing::warn!(stage = %result.stage, shard = result.shard, "result for an unknown stage or shard");
                    continue;
                }
                Verdict::Duplicate => {
                    tracing::info!(stage = %result.stage, shard = result.shard, attempt = result.attempt, "duplicate result ignored");
                    record.duplicates += 1;
                    duplicate = result.mlflow_run_id.clone();
                }
                Verdict::AttemptFailed => self.emit_failed_attempt(&result),
                Verdict::Decided(outcome) => {
                    record.outcome = outcome;
                    self.emit_failed_attempt(&result);
                    self.emit(RunEvent::ShardDecided {
                        stage: result.stage.clone(),
                        shard: result.shard,
                        succeeded: outcome == ShardOutcome::Succeeded,
                    });
                }
            }
            record.attempts.push(result.attempt);
            if matches!(verdict, Verdict::Decided(_)) {
                record.decided_by = Some(result.clone());
            }
            self.setup.store.put_shard(&run_id, &result.stage, result.shard, &record)?;
        }
        Ok((rest, duplicate))
    }

    fn emit_failed_attempt(&self, result: &ShardResult) {
        if let ShardStatus::Failed { reason } = &result.status {
            self.emit(RunEvent::AttemptFailed {
                stage: result.stage.clone(),
                shard: result.shard,
                attempt: result.attempt,
                reason: reason.clone(),
            });
        }
    }
}

/// What a result means to the run state: a permanent failure decides its shard at once,
/// whatever attempts are left.
pub(super) fn attempt_result(result: &ShardResult) -> AttemptResult {
    match result.status {
        ShardStatus::Succeeded => AttemptResult::Succeeded { outputs: result.outputs.len() as u64 },
        ShardStatus::Failed { .. } => {
            AttemptResult::Failed { last_attempt: result.last_attempt, permanent: result.permanent }
        }
    }
}
