//! Talking to one cluster's API server politely: a client from a kubeconfig context or the
//! Pod's service account, a client-side rate limit, and retries with backoff on 429, 5xx and
//! connection errors (the policy of the MLflow client: one retry policy in the project).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concurrent_mlflow::tracking::RetryPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::clusters::{Access, ClusterConfig};

/// Requests per second to one API server, on average.
pub const REQUESTS_PER_SECOND: f64 = 100.0;
/// Requests that may go at once after a quiet spell.
pub const BURST: f64 = 200.0;

/// A cluster's API server could not be reached or refused us.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: kube::config::KubeconfigError },
    #[error("not running in a cluster: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("cannot make a client: {0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Api(#[source] kube::Error),
}

impl ClusterError {
    /// Whether this failure may pass on its own: throttling, server errors, connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClusterError::Api(kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
            ClusterError::Api(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
            _ => false,
        }
    }

    /// A 409: the object exists already (or changed meanwhile).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClusterError::Api(kube::Error::Api(status)) if status.code == 409)
    }

    /// A 404: the object is gone already.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::Api(kube::Error::Api(status)) if status.code == 404)
    }
}

/// Makes a client for a cluster entry.
pub async fn connect(config: &ClusterConfig) -> Result<kube::Client, ClusterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_config = match &config.access {
        Access::InCluster => kube::Config::incluster().map_err(ClusterError::InCluster)?,
        Access::Kubeconfig { path, context } => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|source| ClusterError::Kubeconfig { path: path.display().to_string(), source })?;
            let options = KubeConfigOptions { context: context.clone(), ..Default::default() };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ClusterError::Kubeconfig { path: path.display().to_string(), source })?
        }
    };
    kube::Client::try_from(kube_config).map_err(ClusterError::Client)
}

/// A token bucket: at most [`BURST`] requests at once, [`REQUESTS_PER_SECOND`] on average.
#[derive(Debug)]
pub struct Pace {
    state: Mutex<(f64, Instant)>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace { state: Mutex::new((BURST, Instant::now())) }
    }
}

impl Pace {
    /// Waits for a token.
    pub async fn wait(&self) {
        let mut state = self.state.lock().await;
        let (tokens, last) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * REQUESTS_PER_SECOND).min(BURST);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            return;
        }
        let wait = Duration::from_secs_f64((1.0 - tokens) / REQUESTS_PER_SECOND);
        *state = (0.0, now + wait);
        tokio::time::sleep(wait).await;
    }
}

/// How API calls are retried: 6 attempts, 200 ms doubling up to 2 s, 15 s in all.
fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        max_elapsed: Duration::from_secs(15),
        jitter: true,
    }
}

/// Runs one API call under the rate limit, retrying what may pass.
pub async fn call<T, F, Fut>(pace: &Arc<Pace>, mut op: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        pace.wait().await;
        match op().await.map_err(ClusterError::Api) {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => {
                match policy().delay_after(attempt, started.elapsed(), rand::random::<f64>()) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pace_lets_a_burst_through_then_spaces_requests() {
        let pace = Pace::default();
        let start = Instant::now();
        for _ in 0..BURST as usize {
            pace.wait().await;
        }
        assert!(start.elapsed() < Duration::from_millis(5), "a burst goes at once");
        for _ in 0..100 {
            pace.wait().await;
        }
        let spent = start.elapsed().as_secs_f64();
        assert!((0.95..1.1).contains(&spent), "100 more at 100/s take about a second, took {spent}");
    }
}
