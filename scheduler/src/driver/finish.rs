//! Ending or cancelling the run, and the figures of its stages.

use std::collections::BTreeMap;

use concurrent_mlflow::tracking::RunStatus as MlflowStatus;
use concurrent_proto::ShardStatus;

use super::{Driver, DriverError, RunEvent, RunSummary, SHUTDOWN_GRACE, StageSummary};
use crate::executor::Executor;
use crate::run_state::{RunOutcome, ShardOutcome};
use crate::run_tree::now_ms;
use crate::store::{RunStatus, StageRecord};

impl<E: Executor> Driver<E> {
    /// Ends the run: the DAG run's metrics and status, and the run record.
    pub(super) async fn end_run(&mut self, outcome: RunOutcome) -> Result<(), DriverError> {
        self.outcome = Some(outcome);
        let summary = self.summary();
        if let Some((tree, run)) = &self.setup.tracking {
            let shards: u32 = summary.stages.iter().map(|s| s.shards_total).sum();
            let failed: u32 = summary.stages.iter().map(|s| s.shards_failed).sum();
            let metrics = [
                ("shards_total", f64::from(shards)),
                ("shards_failed", f64::from(failed)),
                ("duration_s", summary.wall_s),
            ];
            let status = if outcome == RunOutcome::Succeeded { MlflowStatus::Finished } else { MlflowStatus::Failed };
            tree.end_run(&run.parent_run_id, &metrics, status).await?;
        }
        let status = if outcome == RunOutcome::Succeeded { RunStatus::Succeeded } else { RunStatus::Failed };
        self.finish_record(status).await?;
        self.emit(RunEvent::RunEnded { outcome });
        Ok(())
    }

    /// Stops the workers, removes the `running` stages' shards, and marks the run, those stages
    /// and their unfinished shard runs KILLED.
    pub(super) async fn cancel(&mut self, running: &[String]) -> Result<(), DriverError> {
        tracing::warn!("run cancelled");
        self.setup.executor.shutdown(SHUTDOWN_GRACE).await;
        for stage in running {
            self.setup.queue.remove_stage(&self.setup.run_id, stage).await?;
        }
        if let Some((tree, run)) = &self.setup.tracking {
            for stage in running {
                if let Some(mlflow_run) = self.records.get(stage).and_then(|r| r.mlflow_run_id.clone()) {
                    tree.kill_running_children(&mlflow_run, &BTreeMap::new()).await?;
                    tree.end_run(&mlflow_run, &[], MlflowStatus::Killed).await?;
                }
            }
            tree.end_run(&run.parent_run_id, &[], MlflowStatus::Killed).await?;
        }
        self.finish_record(RunStatus::Cancelled).await
    }

    async fn finish_record(&self, status: RunStatus) -> Result<(), DriverError> {
        let store = &self.setup.store;
        if let Some(mut record) = store.run(&self.setup.run_id)? {
            record.status = status;
            record.ended_ms = Some(now_ms());
            store.put_run(&record)?;
            store.flush().await?;
        }
        Ok(())
    }

    /// One stage's figures, from its records.
    pub(super) fn stage_summary(&self, stage: &str, record: &StageRecord) -> Result<StageSummary, DriverError> {
        let shards = self.setup.store.shards(&self.setup.run_id, stage)?;
        let outcomes = self.core.state().shards(stage);
        let objects_out = shards
            .iter()
            .filter(|(_, r)| r.outcome == ShardOutcome::Succeeded)
            .filter_map(|(_, r)| r.decided_by.as_ref())
            .map(|r| r.outputs.len() as u64)
            .sum();
        Ok(StageSummary {
            stage: stage.to_string(),
            status: record.status,
            shards_total: record.shards_total,
            shards_succeeded: outcomes.iter().filter(|o| **o == ShardOutcome::Succeeded).count() as u32,
            shards_failed: outcomes.iter().filter(|o| **o == ShardOutcome::Failed).count() as u32,
            attempts: shards.iter().map(|(_, r)| r.attempts.len() as u32).sum(),
            duplicates: shards.iter().map(|(_, r)| r.duplicates).sum(),
            objects_in: record.objects_in,
            objects_out,
            duration_s: record.duration_s(),
            mlflow_run_id: record.mlflow_run_id.clone(),
            permanent_failures: shards
                .iter()
                .filter(|(_, r)| r.outcome == ShardOutcome::Failed)
                .filter_map(|(index, r)| {
                    let result = r.decided_by.as_ref().filter(|r| r.permanent)?;
                    match &result.status {
                        ShardStatus::Failed { reason } => Some((*index, reason.clone())),
                        ShardStatus::Succeeded => None,
                    }
                })
                .collect(),
            empty_output: self.core.state().empty_output(stage),
        })
    }

    /// Figures of the run so far.
    pub(super) fn summary(&self) -> RunSummary {
        let stages = self
            .setup
            .dag
            .order()
            .into_iter()
            .filter_map(|stage| {
                let mut record = self.records.get(&stage.name)?.clone();
                if let Some(status) = self.core.state().status(&stage.name) {
                    record.status = status;
                }
                self.stage_summary(&stage.name, &record).ok()
            })
            .collect();
        RunSummary {
            run_id: self.setup.run_id.clone(),
            outcome: self.outcome,
            stages,
            wall_s: self.started.elapsed().as_secs_f64(),
            mlflow: self.setup.tracking.as_ref().map(|(_, run)| (run.experiment_id.clone(), run.parent_run_id.clone())),
        }
    }
}
