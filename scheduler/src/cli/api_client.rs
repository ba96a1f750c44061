//! The REST client the CLI verbs use to talk to `concurrent serve` (`--scheduler URL`). The
//! token comes from `CONCURRENT_TOKEN` or `--token-file` and is sent only in the
//! `Authorization` header, never printed.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// A call to the service failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("--scheduler {url}: not an http(s) URL")]
    BadUrl { url: String },
    #[error("cannot read the token file {path}: {source}")]
    TokenFile { path: String, source: std::io::Error },
    #[error("--ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot reach the scheduler at {url}: {}", with_causes(source))]
    Unreachable { url: String, source: reqwest::Error },
    /// The service refused the call; `errors` name their places.
    #[error("the scheduler answered {status}: {}", errors.join("; "))]
    Refused { status: u16, errors: Vec<String> },
    #[error("the scheduler's answer does not decode: {0}")]
    Decode(#[source] reqwest::Error),
    #[error("the run's event stream broke: {0}")]
    Stream(#[source] reqwest::Error),
}

/// An error and its causes on one line (`error sending request: …: invalid peer certificate: …`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

impl ApiError {
    /// The exit code for this failure (DESIGN §7): 2 for what the caller got wrong, 3 when the
    /// service cannot be reached or failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::BadUrl { .. } | ApiError::TokenFile { .. } | ApiError::CaFile { .. } => super::EXIT_INVALID,
            ApiError::Refused { status, .. } if (400..500).contains(status) => super::EXIT_INVALID,
            _ => super::EXIT_SERVICE,
        }
    }
}

/// The service at one URL.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// One event of a run's stream.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    pub kind: String,
    pub stage: Option<String>,
    pub shard: Option<u32>,
    pub message: String,
    pub run: Value,
}

impl ApiClient {
    /// A client of the service at `url`, with the token of `token_file` or `CONCURRENT_TOKEN`,
    /// trusting the certificates of `ca_file` besides the system's.
    pub fn new(url: &str, token_file: Option<&Path>, ca_file: Option<&Path>) -> Result<ApiClient, ApiError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::BadUrl { url: url.to_string() });
        }
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ApiError::TokenFile { path: path.display().to_string(), source })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("CONCURRENT_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        let mut http = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let bad = |reason: String| ApiError::CaFile { path: path.display().to_string(), reason };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certificates.is_empty() {
                return Err(bad("no PEM certificate in it".to_string()));
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(|source| ApiError::Unreachable { url: url.to_string(), source })?;
        Ok(ApiClient { base: url.trim_end_matches('/').to_string(), token, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}/api/v1{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let response =
            request.send().await.map_err(|source| ApiError::Unreachable { url: self.base.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let errors = match body.get("errors").and_then(Value::as_array) {
            Some(lines) => lines.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            None => vec![format!("HTTP {status}")],
        };
        Err(ApiError::Refused { status, errors })
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        self.send(request).await?.json().await.map_err(ApiError::Decode)
    }

    /// Uploads a project snapshot (`name` = `sha256:<hex>`); true when the service lacked it.
    pub async fn put_project(&self, name: &str, bytes: Vec<u8>) -> Result<bool, ApiError> {
        let response = self.send(self.request(reqwest::Method::PUT, &format!("/projects/{name}")).body(bytes)).await?;
        Ok(response.status() == reqwest::StatusCode::CREATED)
    }

    /// Submits a run; returns the service's answer (`run_id`, `mlflow_run_id`, `url`).
    pub async fn submit(
        &self,
        dag: &str,
        input: Option<&str>,
        parameters: &BTreeMap<String, String>,
        projects: &BTreeMap<String, String>,
    ) -> Result<Value, ApiError> {
        let body = json!({"dag": dag, "input": input, "parameters": parameters, "projects": projects});
        self.json(self.request(reqwest::Method::POST, "/runs").json(&body)).await
    }

    /// One run's status.
    pub async fn get(&self, run_id: &str) -> Result<Value, ApiError> {
        self.json(self.request(reqwest::Method::GET, &format!("/runs/{run_id}"))).await
    }

    /// Every run.
    pub async fn list(&self) -> Result<Value, ApiError> {
        self.json(self.request(reqwest::Method::GET, "/runs")).await
    }

    /// Cancels a run.
    pub async fn cancel(&self, run_id: &str) -> Result<Value, ApiError> {
        self.json(self.request(reqwest::Method::POST, &format!("/runs/{run_id}/cancel"))).await
    }

    /// A shard attempt's log.
    pub async fn log(&self, run_id: &str, stage: &str, shard: u32, attempt: Option<u32>) -> Result<Vec<u8>, ApiError> {
        let mut request =
            self.request(reqwest::Method::GET, &format!("/runs/{run_id}/stages/{stage}/shards/{shard}/log"));
        if let Some(attempt) = attempt {
            request = request.query(&[("attempt", attempt)]);
        }
        Ok(self.send(request).await?.bytes().await.map_err(ApiError::Decode)?.to_vec())
    }

    /// Follows a run's server-sent events, calling `each` per change, until the run ends or
    /// the stream does.
    pub async fn follow(&self, run_id: &str, mut each: impl FnMut(Change)) -> Result<(), ApiError> {
        let response = self.send(self.request(reqwest::Method::GET, &format!("/runs/{run_id}/events"))).await?;
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ApiError::Stream)?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if let Some(change) = parse_frame(&frame) {
                    each(change);
                }
            }
        }
        Ok(())
    }
}

/// The change in one server-sent event frame (`event:` and `data:` lines); comments and
/// keep-alives give none.
fn parse_frame(frame: &str) -> Option<Change> {
    let data: Vec<&str> = frame.lines().filter_map(|line| line.strip_prefix("data:")).map(str::trim_start).collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_and_keep_alives_are_skipped() {
        let frame = "event: shard_decided\ndata: {\"kind\":\"shard_decided\",\"stage\":\"a\",\"shard\":2,\"message\":\"succeeded\",\"run\":{}}\n\n";
        let change = parse_frame(frame).unwrap();
        assert_eq!(
            (change.kind.as_str(), change.stage.as_deref(), change.shard),
            ("shard_decided", Some("a"), Some(2))
        );
        assert!(parse_frame(":\n\n").is_none());
    }

    #[test]
    fn only_http_urls_are_schedulers() {
        assert!(matches!(ApiClient::new("nats://x:4222", None, None), Err(ApiError::BadUrl { .. })));
    }
}
