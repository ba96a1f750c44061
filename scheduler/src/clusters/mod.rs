//! The clusters file (`--clusters FILE`): the Kubernetes clusters workers may run in, each with
//! how to reach its API server, where its workers go and how they reach NATS and MLflow.
//! Read with the DAG file's readers, so every error names its place
//! (`clusters[1].burst_after: expected a duration like 10m, 30s, 1h30m or 500ms, found "soon"`),
//! and the `burst_after` grammar is the DAG file's durations.

mod file;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{load_clusters, parse_clusters, unknown_clusters};

/// Workers a cluster takes at once when its entry does not say.
pub const DEFAULT_MAX_WORKERS: u32 = 10;
/// The namespace workers go to when the entry does not say.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Every cluster of a clusters file, in its order (the default preference order).
#[derive(Debug, Clone, PartialEq)]
pub struct ClustersFile {
    pub clusters: Vec<ClusterConfig>,
}

impl ClustersFile {
    /// The cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// One cluster's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `[a-z0-9-]{1,63}`; the shard runs' `concurrent.cluster` tag.
    pub name: String,
    pub access: Access,
    /// Namespace of the workers' Jobs.
    pub namespace: String,
    /// Most workers at once in this cluster, all runs together.
    pub max_workers: u32,
    /// How long a worker may stay Pending before its work goes to the next cluster.
    pub burst_after: Duration,
    /// Labels a node must have to take a worker.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the workers tolerate.
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// The workers' service account (default: the namespace's `default`).
    pub service_account: Option<String>,
    /// Secrets for pulling images.
    pub image_pull_secrets: Vec<String>,
    /// The image whose `/concurrent-worker` the init container copies into each Pod.
    pub worker_image: String,
    /// NATS as Pods reach it (default: the scheduler's own URL).
    pub nats_url: Option<String>,
    /// A Secret key holding the NATS URL with its credentials; replaces `nats_url`.
    pub nats_url_secret: Option<SecretKey>,
    /// MLflow as Pods reach it (default: the scheduler's own).
    pub mlflow_tracking_uri: Option<String>,
    /// A Secret key holding the MLflow token (`MLFLOW_TRACKING_TOKEN`).
    pub mlflow_token_secret: Option<SecretKey>,
    /// Where images built for stages without one go (no builds here without it).
    pub images: Option<ClusterImages>,
}

/// How a cluster builds images for stages whose MLproject has no `docker_env` image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterImages {
    /// Registry and path prefix to push to, e.g. `registry.example.com/ml`.
    pub registry: String,
    /// Repository under `registry`.
    pub repository: String,
    /// A `kubernetes.io/dockerconfigjson` Secret in the namespace with push credentials.
    pub push_secret: Option<String>,
    /// The registry speaks plain HTTP.
    pub insecure: bool,
    /// The BuildKit image of the build Job.
    pub builder_image: String,
    /// Base image of built images; `{python}` stands for the project's Python version.
    pub base_image: String,
}

/// How the scheduler reaches a cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A kubeconfig file and a context in it (`None`: its current context).
    Kubeconfig { path: PathBuf, context: Option<String> },
    /// The service account of the Pod the scheduler runs in.
    InCluster,
}

/// One key of a Secret in the cluster's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// The worker image when the entry does not say: the `concurrent` image of this version.
pub fn default_worker_image() -> String {
    format!("ghcr.io/concurrent-mlflow/concurrent:{}", env!("CARGO_PKG_VERSION"))
}

/// The kubeconfig used when an entry names none: `KUBECONFIG` (its first file), else `~/.kube/config`.
pub fn default_kubeconfig(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(list) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).next();
    }
    env("HOME").map(|home| Path::new(&home).join(".kube/config"))
}
