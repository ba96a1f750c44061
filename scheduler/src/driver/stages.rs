//! Starting, ending and skipping stages, and ending or cancelling the run.

use std::time::{Duration, Instant};

use concurrent_mlflow::artifacts::file_uri;
use concurrent_mlflow::project::snapshot;
use concurrent_mlflow::tracking::RunStatus as MlflowStatus;
use concurrent_proto::{ShardMsg, StageSpec, TrackingTarget, WIRE_VERSION};

use super::{Driver, DriverError, RunEvent, RunSummary, SHUTDOWN_GRACE, StageSummary};
use crate::executor::Executor;
use crate::inputs::{self, StageInput};
use crate::plan::{self, PlannedStage};
use crate::run_state::{Effect, RunOutcome, ShardOutcome, StageStatus};
use crate::run_tree::now_ms;
use crate::store::{RunStatus, StageRecord};

/// A stage that has published its shards.
pub(super) struct StartedStage {
    pub mlflow_run_id: Option<String>,
    pub objects_in: u64,
    pub started: Instant,
    pub duration: Option<Duration>,
}

impl<E: Executor> Driver<E> {
    /// Lists, partitions and publishes a stage; a stage that cannot start fails.
    pub(super) async fn start_stage(&mut self, stage: &str) -> Result<Vec<Effect>, DriverError> {
        let started = Instant::now();
        let planned = match self.stage_shards(stage) {
            Ok(planned) => planned,
            Err(reason) => {
                tracing::error!(stage, %reason, "stage cannot start");
                self.emit(RunEvent::AttemptFailed { stage: stage.into(), shard: 0, attempt: 0, reason });
                self.stage_runs.insert(
                    stage.to_string(),
                    StartedStage { mlflow_run_id: None, objects_in: 0, started, duration: None },
                );
                return Ok(self.state.stage_aborted(stage));
            }
        };
        let run_id = self.setup.run_id.clone();
        let definition = self.setup.dag.stages[stage].clone();
        let shards = planned.shards.len() as u32;

        let mut tracking = None;
        if let Some((tree, run)) = &self.setup.tracking {
            let stage_run = tree.create_stage_run(&run.experiment_id, &run.parent_run_id, &run_id, &definition).await?;
            tracking = Some(TrackingTarget {
                uri: run.uri.clone(),
                experiment_id: run.experiment_id.clone(),
                stage_run_id: stage_run.run_id,
            });
        }
        let snapshot = snapshot::pack(&definition.project_dir)
            .map_err(|source| DriverError::Snapshot { stage: stage.to_string(), source })?;
        self.setup.queue.put_project(&snapshot.hash, &snapshot.bytes).await?;
        let output_root =
            tracking.is_none().then(|| file_uri(&self.setup.state_dir.join("outputs").join(&run_id).join(stage)));
        let spec = StageSpec {
            v: WIRE_VERSION,
            dag: self.setup.dag.name.clone(),
            run_id: run_id.clone(),
            stage: stage.to_string(),
            project_snapshot: snapshot.hash,
            project_source: definition.project_dir.display().to_string(),
            entry_point: definition.entry_point.clone(),
            parameters: definition.parameters.clone(),
            tracking: tracking.clone(),
            output_root,
            timeout_s: definition.timeout.map(|t| t.as_secs().max(1)),
            max_attempts: definition.retries + 1,
            shards,
        };
        self.setup.queue.put_stage_spec(&spec).await?;
        self.setup.queue.create_shard_consumer(&run_id, stage, definition.retries + 1).await?;
        let messages = planned.shards.into_iter().enumerate().map(|(index, inputs)| ShardMsg {
            v: WIRE_VERSION,
            run_id: run_id.clone(),
            stage: stage.to_string(),
            shard: index as u32,
            shards,
            inputs,
        });
        self.setup.queue.publish_shards(messages).await?;
        let mlflow_run_id = tracking.map(|t| t.stage_run_id);
        let record = StageRecord {
            status: StageStatus::Running,
            shards_total: shards,
            objects_in: planned.objects,
            mlflow_run_id: mlflow_run_id.clone(),
            started_ms: Some(now_ms()),
            ended_ms: None,
        };
        self.setup.store.put_stage(&run_id, stage, &record)?;
        self.setup.store.flush().await?;
        self.stage_runs.insert(
            stage.to_string(),
            StartedStage { mlflow_run_id, objects_in: planned.objects, started, duration: None },
        );
        self.emit(RunEvent::StageStarted { stage: stage.to_string(), shards, objects: planned.objects });
        tracing::info!(stage, shards, objects = planned.objects, "stage started");
        Ok(self.state.stage_published(stage, shards))
    }

    /// The shards of a stage: planned at submission, or cut from its upstream stages' outputs.
    fn stage_shards(&mut self, stage: &str) -> Result<PlannedStage, String> {
        if let Some(planned) = self.setup.plan.remove(stage) {
            return Ok(planned);
        }
        let definition = &self.setup.dag.stages[stage];
        let StageInput::Upstream(upstream) = inputs::source_of(&self.setup.dag, definition) else {
            return Err(format!("stage {stage} was not planned"));
        };
        let objects =
            inputs::upstream_outputs(&self.setup.store, &self.setup.run_id, upstream).map_err(|e| e.to_string())?;
        plan::shard_objects(objects, &definition.include, &definition.partition, definition.parallelism)
            .map_err(|e| format!("stages.{stage}.partition: {e}"))
    }

    /// Ends a stage: its metrics and status in MLflow and sled; its workers are released.
    pub(super) async fn end_stage(&mut self, stage: &str, status: StageStatus) -> Result<(), DriverError> {
        let run_id = self.setup.run_id.clone();
        self.setup.queue.delete_shard_consumer(&run_id, stage).await?;
        let summary = self.stage_summary(stage, status)?;
        if let Some(started) = self.stage_runs.get_mut(stage) {
            started.duration = Some(started.started.elapsed());
        }
        if let (Some((tree, _)), Some(mlflow_run)) = (&self.setup.tracking, &summary.mlflow_run_id) {
            let metrics = [
                ("shards_total", f64::from(summary.shards_total)),
                ("shards_succeeded", f64::from(summary.shards_succeeded)),
                ("shards_failed", f64::from(summary.shards_failed)),
                ("objects_in", summary.objects_in as f64),
                ("objects_out", summary.objects_out as f64),
                ("duration_s", summary.duration_s),
            ];
            let mlflow_status =
                if status == StageStatus::Succeeded { MlflowStatus::Finished } else { MlflowStatus::Failed };
            tree.end_run(mlflow_run, &metrics, mlflow_status).await?;
        }
        let mut record = self.setup.store.stage(&run_id, stage)?.unwrap_or(StageRecord {
            status,
            shards_total: 0,
            objects_in: 0,
            mlflow_run_id: None,
            started_ms: None,
            ended_ms: None,
        });
        record.status = status;
        record.ended_ms = Some(now_ms());
        self.setup.store.put_stage(&run_id, stage, &record)?;
        self.setup.store.flush().await?;
        tracing::info!(stage, ?status, "stage ended");
        self.emit(RunEvent::StageEnded { stage: stage.to_string(), status });
        Ok(())
    }

    /// Records a stage that will never run.
    pub(super) fn skip_stage(&mut self, stage: &str) -> Result<(), DriverError> {
        let record = StageRecord {
            status: StageStatus::Skipped,
            shards_total: 0,
            objects_in: 0,
            mlflow_run_id: None,
            started_ms: None,
            ended_ms: Some(now_ms()),
        };
        self.setup.store.put_stage(&self.setup.run_id, stage, &record)?;
        self.emit(RunEvent::StageSkipped { stage: stage.to_string() });
        Ok(())
    }

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

    /// Stops the workers and marks the run and its running stages KILLED.
    pub(super) async fn cancel(&mut self) -> Result<(), DriverError> {
        tracing::warn!("run cancelled");
        self.setup.executor.shutdown(SHUTDOWN_GRACE).await;
        if let Some((tree, run)) = &self.setup.tracking {
            let running: Vec<String> = self.state.running_stages().map(str::to_string).collect();
            for stage in running {
                if let Some(Some(mlflow_run)) = self.stage_runs.get(&stage).map(|s| s.mlflow_run_id.clone()) {
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

    fn stage_summary(&self, stage: &str, status: StageStatus) -> Result<StageSummary, DriverError> {
        let shards = self.setup.store.shards(&self.setup.run_id, stage)?;
        let outcomes = self.state.shards(stage);
        let started = self.stage_runs.get(stage);
        let objects_out = shards
            .iter()
            .filter(|(_, r)| r.outcome == ShardOutcome::Succeeded)
            .filter_map(|(_, r)| r.decided_by.as_ref())
            .map(|r| r.outputs.len() as u64)
            .sum();
        Ok(StageSummary {
            stage: stage.to_string(),
            status,
            shards_total: outcomes.len() as u32,
            shards_succeeded: outcomes.iter().filter(|o| **o == ShardOutcome::Succeeded).count() as u32,
            shards_failed: outcomes.iter().filter(|o| **o == ShardOutcome::Failed).count() as u32,
            attempts: shards.iter().map(|(_, r)| r.attempts).sum(),
            objects_in: started.map_or(0, |s| s.objects_in),
            objects_out,
            duration_s: started.map_or(0.0, |s| s.duration.unwrap_or_else(|| s.started.elapsed()).as_secs_f64()),
            mlflow_run_id: started.and_then(|s| s.mlflow_run_id.clone()),
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
                let status = self.state.status(&stage.name)?;
                self.stage_summary(&stage.name, status).ok()
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
