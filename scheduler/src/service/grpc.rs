//! The gRPC service `concurrent.v1.Scheduler` over the run host. Conversions between the
//! host's types and the generated messages live here and only here.

use std::pin::Pin;

use concurrent_proto::grpc as pb;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::Tokens;
use super::error::HostError;
use super::host::{RunChange, RunHost, SubmitRequest};
use super::rest::outcome;
use super::view::{RunView, StageView};

/// The gRPC face of the host.
#[derive(Clone)]
pub struct GrpcScheduler {
    host: RunHost,
    tokens: Tokens,
}

impl GrpcScheduler {
    /// Serves `host`, admitting callers with one of `tokens`.
    pub fn new(host: RunHost, tokens: Tokens) -> GrpcScheduler {
        GrpcScheduler { host, tokens }
    }

    /// The caller's token name, or Unauthenticated.
    fn caller<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let presented = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.tokens.check(presented).ok_or_else(|| {
            self.host.metrics().api_request("grpc", "unauthenticated");
            Status::unauthenticated("missing or unknown bearer token")
        })
    }

    fn refuse(&self, error: &HostError) -> Status {
        let refusal = error.refusal();
        self.host.metrics().api_request("grpc", outcome(refusal));
        Status::new(refusal.grpc_code(), error.lines().join("\n"))
    }

    fn ok<T>(&self, message: T) -> Result<Response<T>, Status> {
        self.host.metrics().api_request("grpc", "ok");
        Ok(Response::new(message))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for GrpcScheduler {
    async fn submit_run(
        &self,
        request: Request<pb::SubmitRunRequest>,
    ) -> Result<Response<pb::SubmitRunResponse>, Status> {
        let who = self.caller(&request)?;
        let r = request.into_inner();
        let submit = submit_request(r.dag, r.input, r.parameters, r.projects, r.priority, who);
        match self.host.submit(submit).await {
            Ok(s) => self.ok(pb::SubmitRunResponse {
                run_id: s.run_id,
                mlflow_run_id: s.mlflow_run_id.unwrap_or_default(),
                url: s.url.unwrap_or_default(),
            }),
            Err(error) => Err(self.refuse(&error)),
        }
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        self.caller(&request)?;
        match self.host.get(&request.into_inner().run_id) {
            Ok(view) => self.ok(run_message(&view)),
            Err(error) => Err(self.refuse(&error)),
        }
    }

    async fn list_runs(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        self.caller(&request)?;
        match self.host.list() {
            Ok(views) => self.ok(pb::ListRunsResponse { runs: views.iter().map(run_message).collect() }),
            Err(error) => Err(self.refuse(&error)),
        }
    }

    type WatchRunStream = EventStream;

    async fn watch_run(&self, request: Request<pb::WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        self.caller(&request)?;
        let changes = self.host.changes(&request.into_inner().run_id).map_err(|e| self.refuse(&e))?;
        let stream = changes.map(|change| Ok(event_message(&change)));
        self.ok(Box::pin(stream) as EventStream)
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        self.caller(&request)?;
        match self.host.cancel(&request.into_inner().run_id) {
            Ok(()) => self.ok(pb::CancelRunResponse {}),
            Err(error) => Err(self.refuse(&error)),
        }
    }

    async fn validate_dag(
        &self,
        request: Request<pb::ValidateDagRequest>,
    ) -> Result<Response<pb::ValidateDagResponse>, Status> {
        let who = self.caller(&request)?;
        let r = request.into_inner();
        let submit = submit_request(r.dag, r.input, r.parameters, r.projects, None, who);
        match self.host.validate(&submit).await {
            Ok(stages) => self.ok(pb::ValidateDagResponse {
                valid: true,
                errors: Vec::new(),
                stages: stages
                    .into_iter()
                    .map(|s| pb::PlannedStage { name: s.name, after: s.after, objects: s.objects, shards: s.shards })
                    .collect(),
            }),
            Err(error @ HostError::Invalid(_)) => {
                self.host.metrics().api_request("grpc", "invalid");
                Ok(Response::new(pb::ValidateDagResponse { valid: false, errors: error.lines(), stages: Vec::new() }))
            }
            Err(error) => Err(self.refuse(&error)),
        }
    }

    async fn get_shard_log(
        &self,
        request: Request<pb::GetShardLogRequest>,
    ) -> Result<Response<pb::GetShardLogResponse>, Status> {
        self.caller(&request)?;
        let r = request.into_inner();
        match self.host.shard_log(&r.run_id, &r.stage, r.shard, r.attempt).await {
            Ok(log) => self.ok(pb::GetShardLogResponse { log: log.bytes, attempt: log.attempt }),
            Err(error) => Err(self.refuse(&error)),
        }
    }

    async fn put_project(
        &self,
        request: Request<pb::PutProjectRequest>,
    ) -> Result<Response<pb::PutProjectResponse>, Status> {
        self.caller(&request)?;
        let r = request.into_inner();
        match self.host.uploads().put(&r.hash, &r.snapshot) {
            Ok(created) => self.ok(pb::PutProjectResponse { created }),
            Err(error) => Err(self.refuse(&error.into())),
        }
    }
}

/// The host's request from a submitted or validated DAG's fields.
fn submit_request(
    dag: String,
    input: Option<String>,
    parameters: std::collections::HashMap<String, String>,
    projects: std::collections::HashMap<String, String>,
    priority: Option<u32>,
    submitted_by: String,
) -> SubmitRequest {
    SubmitRequest {
        dag,
        input,
        parameters: parameters.into_iter().collect(),
        projects: projects.into_iter().collect(),
        priority,
        submitted_by,
    }
}

/// A run as a message.
fn run_message(view: &RunView) -> pb::Run {
    pb::Run {
        run_id: view.run_id.clone(),
        dag: view.dag.clone(),
        status: view.status.as_str().to_string(),
        created_ms: view.created_ms,
        ended_ms: view.ended_ms,
        mlflow_run_id: view.mlflow_run_id.clone().unwrap_or_default(),
        mlflow_experiment_id: view.mlflow_experiment_id.clone().unwrap_or_default(),
        stages: view.stages.iter().map(stage_message).collect(),
        submitted_by: view.submitted_by.clone(),
    }
}

fn stage_message(stage: &StageView) -> pb::Stage {
    pb::Stage {
        name: stage.name.clone(),
        status: stage.status.to_string(),
        shards_total: stage.shards_total,
        shards_pending: stage.shards_pending,
        shards_running: stage.shards_running,
        shards_succeeded: stage.shards_succeeded,
        shards_failed: stage.shards_failed,
        mlflow_run_id: stage.mlflow_run_id.clone().unwrap_or_default(),
        workers: stage.workers.clone().into_iter().collect(),
    }
}

fn event_message(change: &RunChange) -> pb::RunEvent {
    pb::RunEvent {
        run: Some(run_message(&change.run)),
        kind: change.kind.to_string(),
        stage: change.stage.clone().unwrap_or_default(),
        shard: change.shard,
        message: change.message.clone(),
    }
}
