//! Picking up a run that a previous scheduler left unfinished: the state is rebuilt from
//! sled, stages that were publishing publish the rest, every started stage gets its KV
//! description and consumer again (services may have moved), and what was decided but not yet
//! carried out (a stage whose last result was stored, say) is carried out.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Driver, DriverError, RunSetup};
use crate::executor::Executor;
use crate::plan::{PlannedStage, Sharding};
use crate::run_core::{Effect, Event};
use crate::run_state::ShardOutcome;
use crate::store::StageRecord;

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
        Ok(Driver {
            setup,
            core,
            records,
            listings: BTreeMap::new(),
            copies: super::speculation::Copies::default(),
            started: Instant::now(),
            outcome: None,
            resuming: true,
        })
    }

    /// Finishes publishing the running stages, then what the restored state calls for.
    pub(super) async fn resume_effects(&mut self) -> Result<Vec<Effect>, DriverError> {
        let mut effects = Vec::new();
        let running: Vec<String> = self.core.state().running_stages().map(str::to_string).collect();
        for stage in running {
            let record = self.records[&stage].clone();
            let planned = if record.needs_listing() {
                match self.stage_shards(&stage) {
                    Ok(planned) if same_shards(&planned, &record) => planned,
                    Ok(planned) => {
                        let (before, now) = (record.objects_in, planned.objects);
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
                let sharding =
                    if record.cuts.is_some() { Sharding::Adaptive(Vec::new()) } else { Sharding::Fixed(Vec::new()) };
                PlannedStage { objects: record.objects_in, sharding, skipped_links: Vec::new() }
            };
            tracing::info!(stage, published = record.published, total = record.shards_total, "resuming stage");
            effects.extend(self.publish_stage(&stage, planned).await?);
        }
        effects.extend(self.core.handle(Event::Resumed));
        Ok(effects)
    }
}

/// Whether a stage listed again gives the shards it was recorded with: as many fixed shards, or
/// as many objects to cut adaptively.
fn same_shards(planned: &PlannedStage, record: &StageRecord) -> bool {
    match (&planned.sharding, &record.cuts) {
        (Sharding::Fixed(shards), None) => shards.len() as u32 == record.shards_total,
        (Sharding::Adaptive(objects), Some(_)) => objects.len() as u64 == record.objects_in,
        _ => false,
    }
}
