//! Typed client of the MLflow tracking REST API (`/api/2.0/mlflow/...`) and of the artifact
//! proxy (`/api/2.0/mlflow-artifacts/artifacts/...`), with object stores reached directly when
//! a run's `artifact_uri` is `s3://`, `gs://` or Azure, and files read and written in place
//! when it is `file://`.
//!
//! Every request has a timeout and is retried with a bounded exponential backoff on connect
//! errors, timeouts, HTTP 429 and 5xx ([`RetryPolicy`]). Creating a run is not idempotent, so
//! [`MlflowClient::create_run`] is retried only when the request surely did not reach the
//! server (connect error or 429); a run created by a request whose answer was lost is left as
//! it is (RUNNING, with no data), never duplicated silently.

mod artifact_io;
mod auth;
mod batch;
mod error;
mod http;
mod location;
mod proxy;
mod retry;
mod runs;
mod speculation_tags;
mod types;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use crate::retry::RetryPolicy;
pub use auth::Auth;
pub use batch::{BatchLimits, LogBatch, split_batch};
pub use error::MlflowError;
pub use location::{
    ArtifactLocation, RunsUri, join_artifact_uri, join_optional_uri, parse_artifact_uri, parse_runs_uri,
};
pub use retry::Idempotency;
pub use speculation_tags::{SPECULATIVE_COPY_TAG, SPECULATIVE_TAG, superseded_reason};
pub use types::{ArtifactEntry, Metric, Param, Run, RunData, RunInfo, RunStatus, Tag, now_millis};

/// Timeout of one API request (not of artifact transfers, which may be long).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of connecting to the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An artifact transfer fails when no byte moves for this long.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Files transferred at once by [`MlflowClient::upload_dir`].
pub const DEFAULT_TRANSFER_CONCURRENCY: usize = 8;

/// A client of one MLflow tracking server; cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct MlflowClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    /// The tracking URI without credentials.
    base: Url,
    uri: String,
    auth: Auth,
    retry: RetryPolicy,
    request_timeout: Duration,
    transfer_concurrency: usize,
    limits: BatchLimits,
}

impl MlflowClient {
    /// A client of the server at `tracking_uri` (`http://` or `https://`).
    ///
    /// Credentials come from `MLFLOW_TRACKING_TOKEN` (Bearer) or `MLFLOW_TRACKING_USERNAME` /
    /// `MLFLOW_TRACKING_PASSWORD` (Basic), else from the URI's `user:password@`;
    /// `MLFLOW_TRACKING_INSECURE_TLS=true` disables certificate checks.
    pub fn new(tracking_uri: &str) -> Result<MlflowClient, MlflowError> {
        let mut base = Url::parse(tracking_uri.trim())
            .map_err(|e| MlflowError::invalid_uri(&redact_userinfo(tracking_uri), e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(MlflowError::invalid_uri(
                &redact_userinfo(tracking_uri),
                "the tracking URI must be http(s)://host[:port][/path]",
            ));
        }
        let mut auth = Auth::from_env();
        if !base.username().is_empty() {
            if auth == Auth::None {
                auth = Auth::Basic {
                    username: base.username().to_owned(),
                    password: base.password().unwrap_or_default().to_owned(),
                };
            }
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        base.set_query(None);
        base.set_fragment(None);
        let insecure =
            std::env::var("MLFLOW_TRACKING_INSECURE_TLS").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let http = reqwest::Client::builder()
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .read_timeout(DEFAULT_READ_TIMEOUT)
            .danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|source| MlflowError::Client { source })?;
        let uri = base.as_str().trim_end_matches('/').to_owned();
        Ok(MlflowClient {
            inner: Arc::new(Inner {
                http,
                base,
                uri,
                auth,
                retry: RetryPolicy::default(),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                transfer_concurrency: DEFAULT_TRANSFER_CONCURRENCY,
                limits: BatchLimits::default(),
            }),
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> MlflowClient {
        Arc::make_mut(&mut self.inner).retry = retry;
        self
    }

    /// The same client with another timeout for API requests.
    pub fn with_request_timeout(mut self, timeout: Duration) -> MlflowClient {
        Arc::make_mut(&mut self.inner).request_timeout = timeout;
        self
    }

    /// The same client with other credentials.
    pub fn with_auth(mut self, auth: Auth) -> MlflowClient {
        Arc::make_mut(&mut self.inner).auth = auth;
        self
    }

    /// The same client transferring at most `n` (≥ 1) files at once.
    pub fn with_transfer_concurrency(mut self, n: usize) -> MlflowClient {
        Arc::make_mut(&mut self.inner).transfer_concurrency = n.max(1);
        self
    }

    /// The tracking URI, without credentials and trailing `/`.
    pub fn tracking_uri(&self) -> &str {
        &self.inner.uri
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }
}

impl fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowClient")
            .field("tracking_uri", &self.inner.uri)
            .field("auth", &self.inner.auth)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// `uri` with any `user:password@` replaced, for error messages.
fn redact_userinfo(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &uri[..scheme_end], &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uri_is_normalized_and_checked() {
        let client = MlflowClient::new("http://127.0.0.1:5000/").unwrap();
        assert_eq!(client.tracking_uri(), "http://127.0.0.1:5000");
        assert!(MlflowClient::new("file:///tmp/mlruns").is_err());
        assert!(MlflowClient::new("databricks").is_err());
    }

    #[test]
    fn credentials_in_the_uri_are_moved_out_and_never_shown() {
        let client = MlflowClient::new("https://bob:hunter2@mlflow.example.com/x").unwrap();
        assert_eq!(client.tracking_uri(), "https://mlflow.example.com/x");
        assert!(!format!("{client:?}").contains("hunter2"));
        let err = MlflowClient::new("ftp://bob:hunter2@h/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
