//! Experiments and runs: get-or-create an experiment, create, read, search, log to and end runs.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::MlflowClient;
use super::batch::split_batch;
use super::error::MlflowError;
use super::retry::Idempotency::{Idempotent, NotIdempotent};
use super::types::{Metric, Param, Run, RunInfo, RunStatus, Tag, WireRun, now_millis};
use crate::retry::RetryPolicy;

/// Runs asked for per `runs/search` page (MLflow's maximum is 50,000; pages stay small).
const SEARCH_PAGE_SIZE: u32 = 1000;

#[derive(Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct Experiment {
    experiment_id: String,
    #[serde(default)]
    lifecycle_stage: String,
}

#[derive(Deserialize)]
struct CreateExperimentResponse {
    experiment_id: String,
}

#[derive(Deserialize)]
struct RunResponse {
    run: WireRun,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    runs: Vec<WireRun>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Empty {}

impl MlflowClient {
    /// The id of the experiment `name`, created if missing (safe when several processes race).
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        self.get_or_create_experiment_tagged(name, &[]).await
    }

    /// [`get_or_create_experiment`](Self::get_or_create_experiment); an experiment it creates
    /// gets `tags` (an existing one is left as it is).
    pub async fn get_or_create_experiment_tagged(&self, name: &str, tags: &[Tag]) -> Result<String, MlflowError> {
        if let Some(id) = self.experiment_id_by_name(name).await? {
            return Ok(id);
        }
        let body = json!({ "name": name, "tags": tags });
        let created: Result<CreateExperimentResponse, _> =
            self.call(Method::POST, "experiments/create", &[], Some(&body), Idempotent).await;
        match created {
            Ok(created) => Ok(created.experiment_id),
            Err(err) if err.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                // Another process created it between our get and our create.
                self.experiment_id_by_name(name).await?.ok_or(err)
            }
            Err(err) => Err(err),
        }
    }

    /// Proves the tracking URI is an MLflow tracking server, asking for experiment `name` (an
    /// answer that it does not exist is fine). Connect errors and other transient failures
    /// are retried for at most 10 s; an answer no MLflow server gives fails at once with
    /// [`MlflowError::NotMlflow`].
    pub async fn check_server(&self, name: &str) -> Result<(), MlflowError> {
        let policy = RetryPolicy { max_elapsed: Duration::from_secs(10), ..self.retry_policy().clone() };
        self.clone().with_retry(policy).experiment_id_by_name(name).await.map(drop)
    }

    /// The id of the active experiment `name`, `None` if there is none.
    async fn experiment_id_by_name(&self, name: &str) -> Result<Option<String>, MlflowError> {
        let found: Result<ExperimentResponse, _> = self
            .call::<(), _>(Method::GET, "experiments/get-by-name", &[("experiment_name", name)], None, Idempotent)
            .await;
        match found {
            Ok(found) if found.experiment.lifecycle_stage == "deleted" => {
                Err(MlflowError::DeletedExperiment { name: name.to_owned() })
            }
            Ok(found) => Ok(Some(found.experiment.experiment_id)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Creates a RUNNING run started now. Retried only when the request surely did not reach
    /// the server: creating runs is not idempotent.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::new(k, v)).collect();
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": now_millis(),
            "tags": tags,
        });
        let created: RunResponse = self.call(Method::POST, "runs/create", &[], Some(&body), NotIdempotent).await?;
        Ok(Run::from(created.run).info)
    }

    /// A run with its latest metrics, params and tags.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let found: RunResponse =
            self.call::<(), _>(Method::GET, "runs/get", &[("run_id", run_id)], None, Idempotent).await?;
        Ok(found.run.into())
    }

    /// All runs of `experiment_ids` matching MLflow's search `filter` (all pages).
    pub async fn search_runs(&self, experiment_ids: &[String], filter: &str) -> Result<Vec<Run>, MlflowError> {
        let mut runs = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": filter,
                "max_results": SEARCH_PAGE_SIZE,
            });
            if let Some(token) = &page_token {
                body["page_token"] = json!(token);
            }
            let page: SearchResponse = self.call(Method::POST, "runs/search", &[], Some(&body), Idempotent).await?;
            runs.extend(page.runs.into_iter().map(Run::from));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(runs),
            }
        }
    }

    /// Logs metrics, params and tags, in as many `log-batch` requests as MLflow's limits need.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<(), MlflowError> {
        for batch in split_batch(run_id, metrics, params, tags, &self.inner.limits) {
            let _: Empty = self.call(Method::POST, "runs/log-batch", &[], Some(&batch), Idempotent).await?;
        }
        Ok(())
    }

    /// Logs one metric value at step 0, timestamped now.
    pub async fn log_metric(&self, run_id: &str, key: &str, value: f64) -> Result<(), MlflowError> {
        #[derive(Serialize)]
        struct LogMetric<'a> {
            run_id: &'a str,
            #[serde(flatten)]
            metric: Metric,
        }
        let body = LogMetric { run_id, metric: Metric::now(key, value) };
        let _: Empty = self.call(Method::POST, "runs/log-metric", &[], Some(&body), Idempotent).await?;
        Ok(())
    }

    /// Sets one tag.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        let body = json!({ "run_id": run_id, "key": key, "value": value });
        let _: Empty = self.call(Method::POST, "runs/set-tag", &[], Some(&body), Idempotent).await?;
        Ok(())
    }

    /// Sets a run's status; terminal statuses also set `end_time` to now.
    pub async fn update_run(&self, run_id: &str, status: RunStatus) -> Result<(), MlflowError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if status.is_terminal() {
            body["end_time"] = json!(now_millis());
        }
        let _: Empty = self.call(Method::POST, "runs/update", &[], Some(&body), Idempotent).await?;
        Ok(())
    }
}
