//! Starting, publishing, ending and skipping stages, and cutting the shards of stages sized
//! adaptively in waves. Starting is split in steps that each leave a record in sled, and a
//! wave's cuts are recorded before its shards are published, so a restarted scheduler carries
//! on where the last one stopped.

use concurrent_mlflow::artifacts::file_uri;
use concurrent_mlflow::project::snapshot;
use concurrent_mlflow::tracking::RunStatus as MlflowStatus;
use concurrent_proto::{InputObject, ShardMsg, StageSpec, TrackingTarget, WIRE_VERSION};

use super::{Driver, DriverError, RunEvent};
use crate::executor::Executor;
use crate::inputs::{self, StageInput};
use crate::plan::{self, PlannedStage, Sharding};
use crate::queue::Queue;
use crate::run_core::{Effect, Event};
use crate::run_state::StageStatus;
use crate::run_tree::now_ms;
use crate::sizing::{ShardCost, spans};
use crate::store::{StageRecord, Store};

impl<E: Executor> Driver<E> {
    /// Lists and partitions a stage, records it, creates its MLflow run, publishes its shards.
    /// A stage whose input cannot be listed or partitioned fails.
    pub(super) async fn start_stage(&mut self, stage: &str) -> Result<Vec<Effect>, DriverError> {
        let planned = match self.stage_shards(stage) {
            Ok(planned) => planned,
            Err(reason) => {
                tracing::error!(stage, %reason, "stage cannot start");
                self.emit(RunEvent::StageFailedToStart { stage: stage.into(), reason });
                self.put_stage(stage, StageRecord::new(StageStatus::Running, 0, 0))?;
                return Ok(self.core.handle(Event::StageAborted { stage: stage.to_string() }));
            }
        };
        let record = match &planned.sharding {
            Sharding::Fixed(shards) => StageRecord::new(StageStatus::Running, shards.len() as u32, planned.objects),
            Sharding::Adaptive(_) => StageRecord::adaptive(planned.objects),
        };
        self.put_stage(stage, record)?;
        self.setup.store.flush().await?;
        self.publish_stage(stage, planned).await
    }

    /// Makes sure the stage has its MLflow run, its project, its KV description and its
    /// consumer, publishes the shards not published yet, and hands the count to the state (or,
    /// for a stage sized adaptively, its listing and cuts so far to the core, which cuts the
    /// next wave).
    pub(super) async fn publish_stage(
        &mut self,
        stage: &str,
        planned: PlannedStage,
    ) -> Result<Vec<Effect>, DriverError> {
        let run_id = self.setup.run_id.clone();
        let definition = self.setup.dag.stages[stage].clone();
        let mut record = self.records[stage].clone();
        let shards = record.shards_total;
        let mut tracking = None;
        if let Some((tree, run)) = self.setup.tracking.clone() {
            let stage_run_id = match &record.mlflow_run_id {
                Some(id) => id.clone(),
                None => {
                    let created =
                        tree.create_stage_run(&run.experiment_id, &run.parent_run_id, &run_id, &definition).await?;
                    tree.tag_skipped_links(&created.run_id, &planned.skipped_links).await?;
                    record.mlflow_run_id = Some(created.run_id.clone());
                    self.put_stage(stage, record.clone())?;
                    self.setup.store.flush().await?;
                    created.run_id
                }
            };
            tracking =
                Some(TrackingTarget { uri: run.uri.clone(), experiment_id: run.experiment_id.clone(), stage_run_id });
        }
        let snapshot = snapshot::pack(&definition.project_dir)
            .map_err(|source| DriverError::Snapshot { stage: stage.to_string(), source })?;
        let stage_ref = crate::executor::StageRef { run_id: run_id.clone(), stage: stage.to_string() };
        if let Err(error) = self.setup.executor.prepare_stage(&stage_ref, &snapshot) {
            let reason = error.to_string();
            tracing::error!(stage, %reason, "stage cannot start");
            self.emit(RunEvent::StageFailedToStart { stage: stage.into(), reason });
            return Ok(self.core.handle(Event::StageAborted { stage: stage.to_string() }));
        }
        self.setup.queue.put_project(&snapshot.hash, &snapshot.bytes).await?;
        let output_root =
            tracking.is_none().then(|| file_uri(&self.setup.state_dir.join("outputs").join(&run_id).join(stage)));
        let spec = StageSpec {
            v: WIRE_VERSION,
            dag: self.setup.dag.name.clone(),
            run_id: run_id.clone(),
            stage: stage.to_string(),
            project_snapshot: snapshot.hash,
            project_source: definition.project.to_string(),
            entry_point: definition.entry_point.clone(),
            parameters: definition.command_parameters(),
            tracking,
            output_root,
            timeout_s: definition.timeout.map(|t| t.as_secs().max(1)),
            max_attempts: definition.retries + 1,
            shards: if record.cuts.is_some() { 0 } else { shards },
            log_limit: definition.log_limit,
            env_manager: definition.env_manager.map(|m| m.as_str().to_owned()),
            parameter_order: definition.parameter_order.clone(),
            speculate: definition.speculate.is_some(),
        };
        self.setup.queue.put_stage_spec(&spec).await?;
        self.setup.queue.create_shard_consumer(&run_id, stage, definition.retries + 1).await?;

        let objects = record.objects_in;
        let listing = match planned.sharding {
            Sharding::Fixed(planned) => {
                let record =
                    publish_shards(&self.setup.queue, &self.setup.store, &run_id, stage, planned, record).await?;
                self.records.insert(stage.to_string(), record);
                self.emit(RunEvent::StageStarted { stage: stage.to_string(), shards, objects });
                tracing::info!(stage, shards, objects, "stage published");
                return Ok(self.core.handle(Event::StagePublished { stage: stage.to_string(), shards, objects }));
            }
            Sharding::Adaptive(listing) => listing,
        };
        let cuts = record.cuts.clone().unwrap_or_default();
        self.listings.insert(stage.to_string(), listing);
        let recorded = self.shards_of(stage, &cuts, record.published);
        let record = publish_from(&self.setup.queue, &self.setup.store, &run_id, stage, recorded, record).await?;
        self.records.insert(stage.to_string(), record);
        let learned = self.learned_costs(stage, &cuts)?;
        self.emit(RunEvent::StageStarted { stage: stage.to_string(), shards, objects });
        tracing::info!(stage, shards, objects, "stage listed; its shards are sized adaptively");
        Ok(self.core.handle(Event::StageListed { stage: stage.to_string(), objects, cuts, learned }))
    }

    /// Records a wave of new shards of a stage sized adaptively, then publishes them.
    pub(super) async fn cut_shards(&mut self, stage: &str, first: u32, sizes: Vec<u32>) -> Result<(), DriverError> {
        let mut record = self.records.get(stage).cloned().unwrap_or_else(|| StageRecord::adaptive(0));
        let cuts = record.cuts.get_or_insert_with(Vec::new);
        debug_assert_eq!(cuts.len(), first as usize, "the core cuts after the recorded shards");
        cuts.extend(&sizes);
        record.shards_total = cuts.len() as u32;
        let cuts = cuts.clone();
        self.put_stage(stage, record.clone())?;
        self.setup.store.flush().await?;
        let shards = self.shards_of(stage, &cuts, record.published);
        let run_id = self.setup.run_id.clone();
        let record = publish_from(&self.setup.queue, &self.setup.store, &run_id, stage, shards, record).await?;
        self.records.insert(stage.to_string(), record);
        tracing::debug!(stage, first, shards = sizes.len(), ?sizes, "shards cut");
        self.emit(RunEvent::ShardsCut { stage: stage.to_string(), shards: cuts.len() as u32 });
        Ok(())
    }

    /// The objects of a stage sized adaptively's shards `from..` of `cuts`, with their indexes.
    fn shards_of(&self, stage: &str, cuts: &[u32], from: u32) -> Vec<(u32, Vec<InputObject>)> {
        let Some(listing) = self.listings.get(stage) else { return Vec::new() };
        spans(cuts)
            .enumerate()
            .skip(from as usize)
            .map(|(index, span)| {
                let objects = listing.get(span.start as usize..span.end as usize).unwrap_or_default();
                (index as u32, objects.to_vec())
            })
            .collect()
    }

    /// What the shards of a stage sized adaptively that succeeded before a restart cost.
    fn learned_costs(&self, stage: &str, cuts: &[u32]) -> Result<Vec<ShardCost>, DriverError> {
        let mut learned = Vec::new();
        for (index, shard) in self.setup.store.shards(&self.setup.run_id, stage)? {
            let (Some(&objects), Some(result)) = (cuts.get(index as usize), shard.decided_by.as_ref()) else {
                continue;
            };
            if shard.outcome == crate::run_state::ShardOutcome::Succeeded {
                let duration = std::time::Duration::from_secs_f64(result.duration_s.max(0.0));
                learned.push(ShardCost { objects: u64::from(objects), duration });
            }
        }
        Ok(learned)
    }

    /// The shards of a stage: planned at submission, or cut from its upstream stages' outputs.
    pub(super) fn stage_shards(&mut self, stage: &str) -> Result<PlannedStage, String> {
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

    /// Ends a stage: its metrics and status in MLflow and sled; its consumer and leftover
    /// messages are removed (idle workers then exit), attempts left RUNNING become KILLED.
    pub(super) async fn end_stage(&mut self, stage: &str, status: StageStatus) -> Result<(), DriverError> {
        let run_id = self.setup.run_id.clone();
        self.setup.queue.remove_stage(&run_id, stage).await?;
        let mut record = self.records.get(stage).cloned().unwrap_or_else(|| StageRecord::new(status, 0, 0));
        record.status = status;
        record.ended_ms = Some(now_ms());
        let summary = self.stage_summary(stage, &record)?;
        if let (Some((tree, _)), Some(mlflow_run)) = (&self.setup.tracking, &record.mlflow_run_id) {
            let killed = tree.kill_running_children(mlflow_run, &self.copies.superseded_in(stage)).await?;
            if killed > 0 {
                tracing::info!(
                    stage,
                    killed,
                    "shard runs left RUNNING (lost workers, attempts another decided first) marked KILLED"
                );
            }
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
            if let Some(objects) = summary.empty_output {
                let warning = format!("0 outputs from {objects} input objects");
                tree.client().set_tag(mlflow_run, EMPTY_OUTPUT_TAG, &warning).await?;
            }
            tree.end_run(mlflow_run, &metrics, mlflow_status).await?;
        }
        self.put_stage(stage, record)?;
        self.setup.store.flush().await?;
        if let Some(objects) = summary.empty_output {
            tracing::warn!(stage, objects, ?status, "the stage produced no output from its inputs");
        }
        tracing::info!(stage, ?status, "stage ended");
        self.emit(RunEvent::StageEnded { stage: stage.to_string(), status });
        Ok(())
    }

    /// Records a stage that will never run.
    pub(super) fn skip_stage(&mut self, stage: &str) -> Result<(), DriverError> {
        let mut record = StageRecord::new(StageStatus::Skipped, 0, 0);
        record.started_ms = None;
        record.ended_ms = Some(now_ms());
        self.put_stage(stage, record)?;
        self.emit(RunEvent::StageSkipped { stage: stage.to_string() });
        Ok(())
    }

    /// Writes a stage record to sled and to the driver's copy.
    pub(super) fn put_stage(&mut self, stage: &str, record: StageRecord) -> Result<(), DriverError> {
        self.setup.store.put_stage(&self.setup.run_id, stage, &record)?;
        self.records.insert(stage.to_string(), record);
        Ok(())
    }
}

/// Tag of a stage run that ended with no output from a non-empty input.
pub const EMPTY_OUTPUT_TAG: &str = "concurrent.warning";

/// Shards published between two progress records in sled.
pub const PUBLISH_CHUNK: usize = 2048;

/// Publishes a stage's shards from `record.published` on, in chunks of [`PUBLISH_CHUNK`], with
/// the record of how many are out written and flushed after each chunk; returns the record as
/// it ends. A stage start and a resume both go through here.
pub async fn publish_shards(
    queue: &Queue,
    store: &Store,
    run_id: &str,
    stage: &str,
    shards: Vec<Vec<InputObject>>,
    record: StageRecord,
) -> Result<StageRecord, DriverError> {
    let shards = shards.into_iter().enumerate().map(|(index, inputs)| (index as u32, inputs)).collect();
    publish_from(queue, store, run_id, stage, shards, record).await
}

/// [`publish_shards`] for shards given with their indexes (a wave of a stage sized adaptively),
/// those below `record.published` skipped. Their messages carry a shard count of 0 when the
/// stage is sized adaptively: its count is not known before its last shard is cut.
async fn publish_from(
    queue: &Queue,
    store: &Store,
    run_id: &str,
    stage: &str,
    shards: Vec<(u32, Vec<InputObject>)>,
    mut record: StageRecord,
) -> Result<StageRecord, DriverError> {
    let total = if record.cuts.is_some() { 0 } else { record.shards_total };
    let from = record.published;
    let mut messages = shards.into_iter().filter(|(index, _)| *index >= from).peekable();
    while messages.peek().is_some() {
        let chunk: Vec<ShardMsg> = messages
            .by_ref()
            .take(PUBLISH_CHUNK)
            .map(|(index, inputs)| ShardMsg {
                v: WIRE_VERSION,
                run_id: run_id.to_string(),
                stage: stage.to_string(),
                shard: index,
                shards: total,
                inputs,
                speculative: false,
            })
            .collect();
        let last = chunk.last().map_or(record.published, |shard| shard.shard + 1);
        queue.publish_shards(chunk).await?;
        record.published = last;
        store.put_stage(run_id, stage, &record)?;
        store.flush().await?;
    }
    Ok(record)
}
