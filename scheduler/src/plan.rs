//! The plan of a run before anything is created: for every stage whose input can be listed
//! now (a URI, or nothing), its objects and shards. Listing errors are invalid input (exit 2).

use std::collections::BTreeMap;

use concurrent_mlflow::tracking::MlflowClient;
use concurrent_proto::InputObject;

use crate::dag::{Dag, Partition};
use crate::inputs::{self, InputError, StageInput};
use crate::partition::{self, PartitionError};

/// Shards of a stage, computed from its listed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Objects selected by `include`.
    pub objects: u64,
    pub shards: Vec<Vec<InputObject>>,
}

/// The shards of every stage whose input is known before the run starts.
pub type Plan = BTreeMap<String, PlannedStage>;

/// A stage's input could not be listed or partitioned.
#[derive(Debug, thiserror::Error)]
#[error("stages.{stage}.{field}: {source}")]
pub struct PlanError {
    pub stage: String,
    pub field: &'static str,
    #[source]
    pub source: PlanErrorKind,
}

/// Why planning a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanErrorKind {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
}

/// Lists and partitions the input of every stage that does not wait for upstream outputs.
pub async fn plan(dag: &Dag, mlflow: Option<&MlflowClient>) -> Result<Plan, PlanError> {
    let all = dag.stages.keys().cloned().collect();
    plan_stages(dag, mlflow, &all).await
}

/// [`plan`] for the named stages only.
pub async fn plan_stages(
    dag: &Dag,
    mlflow: Option<&MlflowClient>,
    stages: &std::collections::BTreeSet<String>,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::new();
    for stage in dag.order().into_iter().filter(|s| stages.contains(&s.name)) {
        let fail = |field: &'static str, source: PlanErrorKind| PlanError { stage: stage.name.clone(), field, source };
        let objects = match inputs::source_of(dag, stage) {
            StageInput::Upstream(_) => continue,
            StageInput::Nothing => {
                plan.insert(stage.name.clone(), PlannedStage { objects: 0, shards: vec![Vec::new()] });
                continue;
            }
            StageInput::Uri(uri) => inputs::list_uri(uri, mlflow).await.map_err(|e| fail("input", e.into()))?,
        };
        let planned = shard_objects(objects, &stage.include, &stage.partition, stage.parallelism)
            .map_err(|e| fail("partition", e.into()))?;
        plan.insert(stage.name.clone(), planned);
    }
    Ok(plan)
}

/// Applies `include` and the partitioning of a stage to its input objects.
pub fn shard_objects(
    objects: Vec<InputObject>,
    include: &[String],
    how: &Partition,
    parallelism: u32,
) -> Result<PlannedStage, PartitionError> {
    let selected = partition::select(objects, include)?;
    let count = selected.len() as u64;
    let shards = partition::partition(selected, how, parallelism)?;
    Ok(PlannedStage { objects: count, shards })
}
