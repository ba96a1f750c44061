//! The REST/JSON API (docs/api.md), mirroring the gRPC service on the same port. Every
//! `/api/v1` call needs `Authorization: Bearer <token>` when the service has tokens; health
//! and metrics do not. Errors are `{"error": "...", "errors": ["place: message", ...]}`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::auth::Tokens;
use super::error::{HostError, Refusal};
use super::host::{RunChange, RunHost, SubmitRequest};

/// Largest request body: a DAG or a project snapshot.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub host: RunHost,
    pub tokens: Tokens,
}

/// The caller, as authenticated.
#[derive(Clone)]
struct Caller(String);

/// The REST routes, health and metrics.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/runs", post(submit).get(list))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/events", get(events))
        .route("/runs/{run_id}/cancel", post(cancel))
        .route("/runs/{run_id}/stages/{stage}/shards/{shard}/log", get(shard_log))
        .route("/projects/{name}", put(put_project))
        .route("/validate", post(validate))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.tokens.check(presented) {
        Some(name) => {
            request.extensions_mut().insert(Caller(name));
            next.run(request).await
        }
        None => {
            state.host.metrics().api_request("rest", "unauthenticated");
            let body = json!({"error": "missing or unknown bearer token", "errors": ["Authorization: missing or unknown bearer token"]});
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], axum::Json(body)).into_response()
        }
    }
}

/// A refusal as an HTTP response.
fn refuse(host: &RunHost, error: &HostError) -> Response {
    let refusal = error.refusal();
    host.metrics().api_request("rest", outcome(refusal));
    if refusal == Refusal::Internal || refusal == Refusal::Unavailable {
        tracing::error!(%error, "API call failed");
    }
    let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"error": error.to_string(), "errors": error.lines()}))).into_response()
}

/// A request body that is not what the call takes.
fn bad_body(host: &RunHost, error: &serde_json::Error) -> Response {
    let place = format!("request body, line {}, column {}", error.line(), error.column());
    refuse(host, &HostError::BadRequest { place, message: error.to_string() })
}

/// The metric label of a refusal.
pub fn outcome(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Invalid => "invalid",
        Refusal::Unauthenticated => "unauthenticated",
        Refusal::NotFound => "not_found",
        Refusal::Conflict => "conflict",
        Refusal::TooLarge => "too_large",
        Refusal::Unavailable => "unavailable",
        Refusal::Internal => "internal",
    }
}

/// `POST /runs` and `POST /validate` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    dag: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    projects: BTreeMap<String, String>,
    #[serde(default)]
    priority: Option<u32>,
}

impl RunBody {
    fn into_request(self, who: String) -> SubmitRequest {
        SubmitRequest {
            dag: self.dag,
            input: self.input,
            parameters: self.parameters,
            projects: self.projects,
            priority: self.priority,
            submitted_by: who,
        }
    }
}

async fn submit(
    State(state): State<ApiState>,
    axum::Extension(Caller(who)): axum::Extension<Caller>,
    body: Bytes,
) -> Response {
    let body: RunBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return bad_body(&state.host, &error),
    };
    match state.host.submit(body.into_request(who)).await {
        Ok(submitted) => {
            state.host.metrics().api_request("rest", "ok");
            let body =
                json!({"run_id": submitted.run_id, "mlflow_run_id": submitted.mlflow_run_id, "url": submitted.url});
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Err(error) => refuse(&state.host, &error),
    }
}

async fn validate(
    State(state): State<ApiState>,
    axum::Extension(Caller(who)): axum::Extension<Caller>,
    body: Bytes,
) -> Response {
    let body: RunBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return bad_body(&state.host, &error),
    };
    match state.host.validate(&body.into_request(who)).await {
        Ok(stages) => {
            state.host.metrics().api_request("rest", "ok");
            axum::Json(json!({"valid": true, "stages": stages})).into_response()
        }
        Err(error) => refuse(&state.host, &error),
    }
}

async fn list(State(state): State<ApiState>) -> Response {
    match state.host.list() {
        Ok(runs) => axum::Json(json!({"runs": runs})).into_response(),
        Err(error) => refuse(&state.host, &error),
    }
}

async fn get_run(State(state): State<ApiState>, Path(run_id): Path<String>) -> Response {
    match state.host.get(&run_id) {
        Ok(run) => axum::Json(run).into_response(),
        Err(error) => refuse(&state.host, &error),
    }
}

async fn cancel(State(state): State<ApiState>, Path(run_id): Path<String>) -> Response {
    match state.host.cancel(&run_id) {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({"run_id": run_id, "status": "cancelling"}))).into_response(),
        Err(error) => refuse(&state.host, &error),
    }
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    attempt: Option<u32>,
}

async fn shard_log(
    State(state): State<ApiState>,
    Path((run_id, stage, shard)): Path<(String, String, u32)>,
    Query(query): Query<LogQuery>,
) -> Response {
    match state.host.shard_log(&run_id, &stage, shard, query.attempt).await {
        Ok(log) => {
            let headers = [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
                (header::HeaderName::from_static("x-concurrent-attempt"), log.attempt.to_string()),
            ];
            (headers, log.bytes).into_response()
        }
        Err(error) => refuse(&state.host, &error),
    }
}

async fn put_project(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Response {
    match state.host.uploads().put(&name, &body) {
        Ok(true) => (StatusCode::CREATED, axum::Json(json!({"project": name, "created": true}))).into_response(),
        Ok(false) => (StatusCode::OK, axum::Json(json!({"project": name, "created": false}))).into_response(),
        Err(error) => refuse(&state.host, &error.into()),
    }
}

async fn metrics(State(state): State<ApiState>, _headers: HeaderMap) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.host.metrics_text())
        .into_response()
}

/// `GET /runs/{id}/events`: the run's status, then one event per change, ending with its end.
async fn events(State(state): State<ApiState>, Path(run_id): Path<String>) -> Response {
    match state.host.changes(&run_id) {
        Ok(changes) => {
            let events = changes.map(|change| {
                let event = Event::default().event(change.kind).json_data(change_json(&change)).unwrap_or_default();
                Ok::<_, Infallible>(event)
            });
            Sse::new(events).keep_alive(KeepAlive::default()).into_response()
        }
        Err(error) => refuse(&state.host, &error),
    }
}

/// A change as JSON.
pub fn change_json(change: &RunChange) -> serde_json::Value {
    json!({
        "kind": change.kind,
        "stage": change.stage,
        "shard": change.shard,
        "message": change.message,
        "run": change.run,
    })
}
