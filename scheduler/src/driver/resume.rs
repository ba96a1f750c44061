//! Picking up a run that a previous scheduler left unfinished: the state is rebuilt from
//! sled, stages that were publishing publish the rest, every started stage gets its KV
//! description and consumer again (services may have moved), and what was decided but not yet
//! carried out (a stage whose last result was stored, say) is carried out.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Driver, DriverError, RunSetup};
use crate::executor::Executor;
use crate::plan::PlannedStage;
use crate::run_core::{Effect, Event};
use crate::run_state::ShardOutcome;

impl<E: Executor> Driver<E> {
    /// A driver that continues the run recorded in `setup.store`.
    pub fn resume(setup: RunSetup<E>) -> Result<Driver<E>, DriverError> {
        let mut core = super::core_of(&setup.dag, setup.executor.burst_after());
        let mut records = BTreeMap::new();
        for stage in setup.dag.stages.keys() {
            let Some(record) = setup.store.stage(&setup.run_id, stage)? else { continue };
            let mut outcomes = vec![ShardOutcome::Pending; record.shards_total as usize];
            let mut outputs = 0;
            for (index, shard) in setup.store.shards(&setup.run_id, stage)? {
                if let Some(slot) = outcomes.get_mut(index as usize) {
                    *slot = shard.outcome;
                }
                if shard.outcome == ShardOutcome::Succeeded {
                    outputs += shard.decided_by.as_ref().map_or(0, |r| r.outputs.len() as u64);
                }
            }
            core.restore_stage(stage, record.status, outcomes, record.objects_in, outputs);
            records.insert(stage.clone(), record);
        }
        Ok(Driver { setup, core, records, started: Instant::now(), outcome: None, resuming: true })
    }

    /// Finishes publishing the running stages, then what the restored state calls for.
    pub(super) async fn resume_effects(&mut self) -> Result<Vec<Effect>, DriverError> {
        let mut effects = Vec::new();
        let running: Vec<String> = self.core.state().running_stages().map(str::to_string).collect();
        for stage in running {
            let record = self.records[&stage].clone();
            let planned = if record.published < record.shards_total {
                match self.stage_shards(&stage) {
                    Ok(planned) if planned.shards.len() as u32 == record.shards_total => planned,
                    Ok(planned) => {
                        let (before, now) = (record.shards_total, planned.shards.len());
                        tracing::error!(stage, before, now, "the stage's input changed while it was being published");
                        effects.extend(self.core.handle(Event::StageAborted { stage: stage.clone() }));
                        continue;
                    }
                    Err(reason) => {
                        tracing::error!(stage, %reason, "stage cannot be resumed");
                        effects.extend(self.core.handle(Event::StageAborted { stage: stage.clone() }));
                        continue;
                    }
                }
            } else {
                PlannedStage { objects: record.objects_in, shards: Vec::new(), skipped_links: Vec::new() }
            };
            tracing::info!(stage, published = record.published, total = record.shards_total, "resuming stage");
            effects.extend(self.publish_stage(&stage, planned).await?);
        }
        effects.extend(self.core.handle(Event::Resumed));
        Ok(effects)
    }
}
