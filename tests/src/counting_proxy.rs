//! A reverse proxy on a free loopback port that forwards every HTTP request to one upstream
//! server (an MLflow tracking server) and records it: method, path, query, body and the
//! upstream's status. Tests point a tracking URI at it to count what clients ask of MLflow.
//!
//! It runs on a thread of its own (with its own Tokio runtime), so synchronous and async tests
//! alike can use it; dropping it stops the server and joins the thread.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

/// Bytes of a request body kept in the record (artifact uploads may be large).
const RECORDED_BODY_BYTES: usize = 64 * 1024;
/// Longest a forwarded request may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// One request that went through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// `GET`, `POST`, `PUT`, …
    pub method: String,
    /// The path as sent (percent-encoded), e.g. `/api/2.0/mlflow/runs/create`.
    pub path: String,
    /// The query string, if any, without `?`.
    pub query: Option<String>,
    /// The start of the request body (at most 64 KiB).
    pub body: Vec<u8>,
    /// The upstream's answer; 502 when it could not be reached.
    pub status: u16,
}

impl ProxiedRequest {
    /// The MLflow endpoint it called, e.g. `POST runs/create`, `PUT mlflow-artifacts`
    /// (an artifact upload through the proxy), `GET mlflow-artifacts` (a download or a
    /// listing), or the method and full path for anything else.
    pub fn endpoint(&self) -> String {
        let path = &self.path;
        if let Some(api) = path.strip_prefix("/api/2.0/mlflow/") {
            return format!("{} {api}", self.method);
        }
        if path.starts_with("/api/2.0/mlflow-artifacts/") {
            return format!("{} mlflow-artifacts", self.method);
        }
        format!("{} {path}", self.method)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the request names run `run_id`: its JSON body's `run_id`, its query's
    /// `run_id`, or a segment of its path (artifact paths are `<experiment>/<run>/artifacts/…`).
    pub fn names_run(&self, run_id: &str) -> bool {
        let in_body = self.json().is_some_and(|body| body["run_id"] == run_id);
        let in_query =
            self.query.as_deref().is_some_and(|q| q.split('&').any(|pair| pair == format!("run_id={run_id}")));
        let in_path = self.path.split('/').any(|segment| segment == run_id);
        in_body || in_query || in_path
    }
}

/// A running counting proxy; stopped when dropped.
pub struct CountingProxy {
    /// The proxy's URI, e.g. `http://127.0.0.1:41234`: use it as the tracking URI.
    pub uri: String,
    recorded: Arc<Mutex<Vec<ProxiedRequest>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Forward {
    upstream: String,
    http: reqwest::Client,
    recorded: Arc<Mutex<Vec<ProxiedRequest>>>,
}

impl CountingProxy {
    /// Starts a proxy of `upstream` (e.g. `http://127.0.0.1:5000`) on a free loopback port.
    pub fn start(upstream: &str) -> anyhow::Result<CountingProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the counting proxy")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let forward = Forward {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().timeout(UPSTREAM_TIMEOUT).build()?,
            recorded: Arc::clone(&recorded),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new().name("counting-proxy".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let app = axum::Router::new().fallback(forward_request).with_state(forward);
                let shutdown = async {
                    let _ = stopped.await;
                };
                if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    eprintln!("counting proxy: {error}");
                }
            });
        })?;
        is_ready.recv().context("the counting proxy's thread ended before serving")??;
        Ok(CountingProxy { uri: format!("http://{addr}"), recorded, stop: Some(stop), thread: Some(thread) })
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1), and those the
/// HTTP client sets itself.
fn forwarded(name: &HeaderName) -> bool {
    ![
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        && name.as_str() != "keep-alive"
}

async fn forward_request(State(forward): State<Forward>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("reading the request body: {error}")).into_response(),
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let url = match &query {
        Some(query) => format!("{}{path}?{query}", forward.upstream),
        None => format!("{}{path}", forward.upstream),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in parts.headers.iter().filter(|(name, _)| forwarded(name)) {
        headers.append(name, value.clone());
    }
    let answer = forward.http.request(parts.method.clone(), url).headers(headers).body(body.clone()).send().await;
    let (status, response) = match answer {
        Ok(answer) => {
            let status = answer.status();
            let mut headers = HeaderMap::new();
            for (name, value) in answer.headers().iter().filter(|(name, _)| forwarded(name)) {
                headers.append(name, value.clone());
            }
            match answer.bytes().await {
                Ok(bytes) => (status, (status, headers, Body::from(bytes)).into_response()),
                Err(error) => bad_gateway(&error),
            }
        }
        Err(error) => bad_gateway(&error),
    };
    let kept = Bytes::copy_from_slice(&body[..body.len().min(RECORDED_BODY_BYTES)]);
    let record =
        ProxiedRequest { method: parts.method.to_string(), path, query, body: kept.to_vec(), status: status.as_u16() };
    forward.recorded.lock().unwrap_or_else(PoisonError::into_inner).push(record);
    response
}

fn bad_gateway(error: &reqwest::Error) -> (StatusCode, Response) {
    let status = StatusCode::BAD_GATEWAY;
    (status, (status, format!("counting proxy: upstream: {error}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: Option<&str>, body: &str) -> ProxiedRequest {
        ProxiedRequest {
            method: method.into(),
            path: path.into(),
            query: query.map(Into::into),
            body: body.as_bytes().to_vec(),
            status: 200,
        }
    }

    #[test]
    fn endpoints_and_runs_are_read_from_the_request() {
        let create = request("POST", "/api/2.0/mlflow/runs/create", None, r#"{"experiment_id": "1"}"#);
        assert_eq!(create.endpoint(), "POST runs/create");
        assert!(!create.names_run("abc"));
        let batch = request("POST", "/api/2.0/mlflow/runs/log-batch", None, r#"{"run_id": "abc"}"#);
        assert!(batch.names_run("abc") && !batch.names_run("ab"));
        let get = request("GET", "/api/2.0/mlflow/runs/get", Some("run_id=abc"), "");
        assert!(get.names_run("abc") && !get.names_run("abcd"));
        let put = request("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/logs/x.log", None, "log");
        assert_eq!(put.endpoint(), "PUT mlflow-artifacts");
        assert!(put.names_run("abc"));
        assert_eq!(request("GET", "/health", None, "").endpoint(), "GET /health");
    }

    #[test]
    fn requests_are_forwarded_and_recorded() -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let upstream = std::net::TcpListener::bind("127.0.0.1:0")?;
        upstream.set_nonblocking(true)?;
        let upstream_addr = upstream.local_addr()?;
        let app = axum::Router::new().fallback(|request: Request| async move {
            let path = request.uri().path().to_owned();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
            (StatusCode::CREATED, format!("{path}:{}", String::from_utf8_lossy(&body)))
        });
        let _server = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(upstream).expect("listener");
            axum::serve(listener, app).await.expect("upstream");
        });
        let proxy = CountingProxy::start(&format!("http://{upstream_addr}"))?;
        let answer = runtime.block_on(async {
            reqwest::Client::new().post(format!("{}/api/2.0/mlflow/runs/update?x=1", proxy.uri)).body("hi").send().await
        })?;
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(runtime.block_on(answer.text())?, "/api/2.0/mlflow/runs/update:hi");
        let recorded = proxy.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].endpoint(), "POST runs/update");
        assert_eq!(
            (recorded[0].query.as_deref(), recorded[0].body.as_slice(), recorded[0].status),
            (Some("x=1"), &b"hi"[..], 201)
        );
        proxy.clear();
        assert!(proxy.requests().is_empty());
        Ok(())
    }
}
