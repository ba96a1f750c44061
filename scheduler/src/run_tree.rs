//! The run's tree in MLflow (DESIGN §4): the DAG run, one child run per stage, their tags,
//! params and end-of-run metrics. Shard runs are created by the workers under the stage runs.

use std::collections::BTreeMap;

use concurrent_mlflow::artifacts::SkippedLink;
use concurrent_mlflow::object_path::ObjectPath;
use concurrent_mlflow::tracking::{
    Metric, MlflowClient, MlflowError, Param, RunStatus, SPECULATIVE_TAG, Tag, superseded_reason,
};

use crate::dag::{Dag, ProjectRef, Stage, without_credentials};

/// The tag of the experiments Concurrent creates: MLflow 3's UI then opens them on their runs
/// table rather than its GenAI overview.
pub const EXPERIMENT_KIND: (&str, &str) = ("mlflow.experimentKind", "custom_model_development");

/// The MLflow UI's page of a run. MLflow 3.17 and later choose the UI's view from the link's
/// `workflowType` rather than the experiment's tag; `machine_learning` opens the model-training
/// view (runs, metrics, artifacts) rather than the GenAI one.
pub fn run_page(tracking_uri: &str, experiment_id: &str, run_id: &str) -> String {
    let base = tracking_uri.trim_end_matches('/');
    format!("{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning")
}

/// What the scheduler writes to MLflow.
#[derive(Clone)]
pub struct RunTree {
    client: MlflowClient,
}

/// A run the scheduler created.
#[derive(Debug, Clone)]
pub struct TrackedRun {
    pub run_id: String,
    pub artifact_uri: String,
}

impl RunTree {
    /// Writes through `client`.
    pub fn new(client: MlflowClient) -> RunTree {
        RunTree { client }
    }

    /// The client, for listing and fetching artifacts.
    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    /// Finds or creates the experiment of the DAG; one it creates is tagged
    /// [`EXPERIMENT_KIND`], so that MLflow's UI opens it on its runs table.
    pub async fn experiment(&self, dag: &Dag) -> Result<String, MlflowError> {
        let (key, value) = EXPERIMENT_KIND;
        self.client.get_or_create_experiment_tagged(&dag.experiment, &[Tag::new(key, value)]).await
    }

    /// Creates the DAG run and attaches the DAG's text as read (a file or standard input) as
    /// `concurrent/dag.yaml`.
    pub async fn create_dag_run(
        &self,
        experiment_id: &str,
        dag: &Dag,
        run_id: &str,
    ) -> Result<TrackedRun, MlflowError> {
        let tags = vec![
            ("concurrent.dag".to_string(), dag.name.clone()),
            ("concurrent.run_id".to_string(), run_id.to_string()),
        ];
        let info = self.client.create_run(experiment_id, &format!("{}-{run_id}", dag.name), &tags).await?;
        let copy = tempfile::NamedTempFile::new()
            .and_then(|copy| std::fs::write(copy.path(), &dag.source_text).map(|()| copy))
            .map_err(|source| MlflowError::Io { path: std::env::temp_dir(), source })?;
        self.client.upload_file(&info.artifact_uri, &ObjectPath::literal("concurrent/dag.yaml"), copy.path()).await?;
        Ok(TrackedRun { run_id: info.run_id, artifact_uri: info.artifact_uri })
    }

    /// Creates a stage run under the DAG run, with the stage parameters as params.
    pub async fn create_stage_run(
        &self,
        experiment_id: &str,
        parent_run_id: &str,
        run_id: &str,
        stage: &Stage,
    ) -> Result<TrackedRun, MlflowError> {
        let source = match &stage.project {
            ProjectRef::Local(path) => path.display().to_string(),
            ProjectRef::Git { url, .. } => without_credentials(url),
        };
        let mut tags = vec![
            ("mlflow.parentRunId".to_string(), parent_run_id.to_string()),
            ("concurrent.run_id".to_string(), run_id.to_string()),
            ("concurrent.stage".to_string(), stage.name.clone()),
            ("mlflow.source.name".to_string(), source),
            ("mlflow.source.type".to_string(), "PROJECT".to_string()),
            ("mlflow.project.entryPoint".to_string(), stage.entry_point.clone()),
        ];
        if let (ProjectRef::Git { url, .. }, Some(commit)) = (&stage.project, &stage.git_commit) {
            // As `mlflow run` tags a run of a git project.
            let url = without_credentials(url);
            tags.push(("mlflow.source.git.commit".to_string(), commit.clone()));
            tags.push(("mlflow.source.git.repoURL".to_string(), url.clone()));
            tags.push(("mlflow.gitRepoURL".to_string(), url));
        }
        let info = self.client.create_run(experiment_id, &stage.name, &tags).await?;
        let params: Vec<Param> =
            stage.parameters.iter().map(|(key, value)| Param { key: key.clone(), value: value.clone() }).collect();
        self.client.log_batch(&info.run_id, &[], &params, &[]).await?;
        Ok(TrackedRun { run_id: info.run_id, artifact_uri: info.artifact_uri })
    }

    /// Tags a stage run with the symbolic links its input listing skipped, when there are any:
    /// `concurrent.skipped_symlinks` (how many) and `concurrent.skipped_symlinks.first` (the
    /// first few paths, as a JSON list).
    pub async fn tag_skipped_links(&self, run_id: &str, links: &[SkippedLink]) -> Result<(), MlflowError> {
        if links.is_empty() {
            return Ok(());
        }
        self.client.set_tag(run_id, SKIPPED_LINKS_TAG, &links.len().to_string()).await?;
        self.client.set_tag(run_id, &format!("{SKIPPED_LINKS_TAG}.first"), &first_names(links)).await
    }

    /// Marks KILLED the child runs of `parent` still RUNNING: attempts of workers that died
    /// (tagged `concurrent.lost`), and attempts of shards another attempt decided first
    /// (`superseded`: shard and the deciding attempt; tagged [`SPECULATIVE_TAG`]); returns how
    /// many.
    pub async fn kill_running_children(
        &self,
        parent: &str,
        superseded: &BTreeMap<u32, u32>,
    ) -> Result<usize, MlflowError> {
        let parent_run = self.client.get_run(parent).await?;
        let filter = format!("tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'");
        let running = self.client.search_runs(std::slice::from_ref(&parent_run.info.experiment_id), &filter).await?;
        for run in &running {
            let shard = run.data.tags.get("concurrent.shard").and_then(|s| s.parse::<u32>().ok());
            let (key, value) = match shard.and_then(|shard| superseded.get(&shard)) {
                Some(&by) => (SPECULATIVE_TAG, superseded_reason(by)),
                None => ("concurrent.lost", "true".to_string()),
            };
            let ended = async {
                self.client.set_tag(&run.info.run_id, key, &value).await?;
                self.client.update_run(&run.info.run_id, RunStatus::Killed).await
            };
            match ended.await {
                Ok(()) => {}
                // The run's own worker may be ending it at this moment (a superseded attempt
                // tags itself): MLflow then refuses one of the two writes of the same tag. The
                // run is that worker's to end; nothing is lost.
                Err(error) if error.status().is_some_and(|status| (400..500).contains(&status)) => {
                    tracing::warn!(run = %run.info.run_id, %error, "could not end a shard run left RUNNING; leaving it");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(running.len())
    }

    /// Tags a shard run whose result came after its shard was decided.
    pub async fn mark_duplicate(&self, run_id: &str) -> Result<(), MlflowError> {
        self.client.set_tag(run_id, "concurrent.duplicate", "true").await
    }

    /// Logs a run's final metrics and ends it.
    pub async fn end_run(&self, run_id: &str, metrics: &[(&str, f64)], status: RunStatus) -> Result<(), MlflowError> {
        let timestamp = now_ms();
        let metrics: Vec<Metric> = metrics
            .iter()
            .map(|(key, value)| Metric { key: key.to_string(), value: *value, timestamp, step: 0 })
            .collect();
        let tags: Vec<Tag> = Vec::new();
        self.client.log_batch(run_id, &metrics, &[], &tags).await?;
        self.client.update_run(run_id, status).await
    }
}

/// Tag of a stage run: how many input symlinks were skipped.
pub const SKIPPED_LINKS_TAG: &str = "concurrent.skipped_symlinks";

/// Names of skipped links shown in a tag or a message.
pub const FIRST_SKIPPED_SHOWN: usize = 5;

/// The first [`FIRST_SKIPPED_SHOWN`] paths of `links` as a JSON list (fewer when the list would
/// not fit an MLflow tag value).
pub fn first_names(links: &[SkippedLink]) -> String {
    let mut shown = links.len().min(FIRST_SKIPPED_SHOWN);
    loop {
        let names: Vec<&str> = links[..shown].iter().map(|l| l.path.as_str()).collect();
        let json = serde_json::to_string(&names).unwrap_or_default();
        if json.len() <= 4000 || shown <= 1 {
            return json;
        }
        shown -= 1;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_page_opens_the_run_in_the_model_training_view() {
        assert_eq!(
            run_page("http://127.0.0.1:5000/", "7", "abc"),
            "http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning"
        );
    }
}
