//! The plan of a run before anything is created: for every stage whose input can be listed
//! now (a URI, or nothing), its objects and shards. Listing errors are invalid input (exit 2).

use std::collections::BTreeMap;

use concurrent_mlflow::artifacts::{ArtifactError, SkippedLink};
use concurrent_mlflow::tracking::MlflowClient;
use concurrent_proto::InputObject;

use crate::dag::{Dag, Partition};
use crate::inputs::{self, InputError, StageInput};
use crate::partition::{self, PartitionError};
use crate::run_tree::FIRST_SKIPPED_SHOWN;

/// Shards of a stage, computed from its listed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Objects selected by `include`.
    pub objects: u64,
    pub sharding: Sharding,
    /// Symbolic links under a local input that were not followed.
    pub skipped_links: Vec<SkippedLink>,
}

/// How a stage's objects go into shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sharding {
    /// Cut up front by the stage's partition rule.
    Fixed(Vec<Vec<InputObject>>),
    /// The objects in the order shards are cut from them, as results come in.
    Adaptive(Vec<InputObject>),
}

impl PlannedStage {
    /// The shard count, when it is known before the stage runs.
    pub fn shard_count(&self) -> Option<usize> {
        match &self.sharding {
            Sharding::Fixed(shards) => Some(shards.len()),
            Sharding::Adaptive(_) => None,
        }
    }

    /// How the plan tells a stage's objects and shards: `25 objects -> 3 shards`, or `10000
    /// objects, shards sized adaptively`.
    pub fn describe(&self) -> String {
        match self.shard_count() {
            Some(shards) => format!("{} objects -> {shards} shards", self.objects),
            None => format!("{} objects, shards sized adaptively", self.objects),
        }
    }
}

/// The shards of every stage whose input is known before the run starts.
pub type Plan = BTreeMap<String, PlannedStage>;

/// A stage's input could not be listed or partitioned.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {source}")]
pub struct PlanError {
    /// Where in the DAG: `input` (the DAG's), `stages.<stage>.input` or `stages.<stage>.partition`.
    pub place: String,
    #[source]
    pub source: PlanErrorKind,
}

/// Why planning a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanErrorKind {
    #[error("{} not found", path.display())]
    NotFound { path: std::path::PathBuf },
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
        let input_place = if stage.input.is_some() { format!("stages.{}.input", stage.name) } else { "input".into() };
        let objects = match inputs::source_of(dag, stage) {
            StageInput::Upstream(_) => continue,
            StageInput::Nothing => {
                let nothing =
                    PlannedStage { objects: 0, sharding: Sharding::Fixed(vec![Vec::new()]), skipped_links: Vec::new() };
                plan.insert(stage.name.clone(), nothing);
                continue;
            }
            StageInput::Uri(uri) => inputs::list_uri(uri, mlflow)
                .await
                .map_err(|error| PlanError { place: input_place, source: listing_error(error) })?,
        };
        if let Some(line) = skipped_links_line(&stage.name, &objects.skipped_links) {
            tracing::warn!("{line}");
        }
        let mut planned = shard_objects(objects.objects, &stage.include, &stage.partition, stage.parallelism)
            .map_err(|error| PlanError { place: format!("stages.{}.partition", stage.name), source: error.into() })?;
        planned.skipped_links = objects.skipped_links;
        plan.insert(stage.name.clone(), planned);
    }
    Ok(plan)
}

/// The line telling that a stage's input listing skipped symbolic links, if it did.
pub fn skipped_links_line(stage: &str, links: &[SkippedLink]) -> Option<String> {
    if links.is_empty() {
        return None;
    }
    let shown: Vec<String> =
        links.iter().take(FIRST_SKIPPED_SHOWN).map(|l| format!("{:?} ({})", l.path.as_str(), l.reason)).collect();
    let more = if links.len() > shown.len() { ", …" } else { "" };
    Some(format!("stages.{stage}: skipped {} symbolic link(s) of the input: {}{more}", links.len(), shown.join(", ")))
}

/// A missing local input is named plainly; other listing errors keep their cause.
fn listing_error(error: InputError) -> PlanErrorKind {
    match error {
        InputError::Artifact(ArtifactError::Io { path, source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            PlanErrorKind::NotFound { path }
        }
        other => PlanErrorKind::Input(other),
    }
}

/// Applies `include` and the partitioning of a stage to its input objects; a stage sized
/// adaptively keeps them sorted, to be cut as it runs.
pub fn shard_objects(
    objects: Vec<InputObject>,
    include: &[String],
    how: &Partition,
    parallelism: u32,
) -> Result<PlannedStage, PartitionError> {
    let selected = partition::select(objects, include)?;
    let count = selected.len() as u64;
    let sharding = if partition::sized_adaptively(how) {
        Sharding::Adaptive(partition::sort(selected))
    } else {
        Sharding::Fixed(partition::partition(selected, how, parallelism)?)
    };
    Ok(PlannedStage { objects: count, sharding, skipped_links: Vec::new() })
}

#[cfg(test)]
mod tests {
    use concurrent_mlflow::artifacts::SkipReason;
    use concurrent_mlflow::object_path::ObjectPath;

    use super::*;
    use crate::run_tree::first_names;

    fn link(path: &str, reason: SkipReason) -> SkippedLink {
        SkippedLink { path: ObjectPath::parse(path).unwrap(), reason }
    }

    #[test]
    fn skipped_links_are_told_with_the_first_names() {
        assert_eq!(skipped_links_line("s", &[]), None);
        let links = [link("a\nb", SkipReason::Outside), link("c", SkipReason::Dangling)];
        assert_eq!(
            skipped_links_line("first", &links).unwrap(),
            r#"stages.first: skipped 2 symbolic link(s) of the input: "a\nb" (leads outside the input root), "c" (leads nowhere)"#
        );
        let many: Vec<SkippedLink> = (0..7).map(|i| link(&format!("l{i}"), SkipReason::Loop)).collect();
        assert!(skipped_links_line("s", &many).unwrap().ends_with(r#""l4" (leads round in a loop), …"#));
        assert_eq!(first_names(&many), r#"["l0","l1","l2","l3","l4"]"#);
        let long: Vec<SkippedLink> =
            (0..3).map(|i| link(&format!("{i}{}", "x".repeat(3000)), SkipReason::Outside)).collect();
        let names: Vec<String> = serde_json::from_str(&first_names(&long)).unwrap();
        assert_eq!(names.len(), 1, "the tag stays within MLflow's limit");
    }
}
