//! The Job that runs a stage's workers in a cluster (DESIGN §6). The scheduler owns scaling
//! and replacement: each Job has `completions = parallelism = k` Pods, `restartPolicy: Never`,
//! disruptions ignored by `podFailurePolicy` (their shards come back from JetStream),
//! `podReplacementPolicy: Failed`, and a TTL. The stage's image runs
//! `/concurrent/bin/concurrent-worker`, which an init container copies there from the worker
//! image into an `emptyDir`. Credentials come from Secret references, never inline.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clusters::ClusterConfig;
use crate::dag::Resources;

/// Label: the run a worker serves.
pub const RUN_LABEL: &str = "concurrent.dev/run";
/// Label: the stage a worker serves (a hash when the stage name is not a valid label value).
pub const STAGE_LABEL: &str = "concurrent.dev/stage";
/// Label: the cluster, as named in the clusters file.
pub const CLUSTER_LABEL: &str = "concurrent.dev/cluster";
/// Annotation: the exact stage name.
pub const STAGE_ANNOTATION: &str = "concurrent.dev/stage-name";
/// Label on everything the scheduler creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "concurrent");
/// Where the worker binary is in a worker's container.
pub const WORKER_BIN_DIR: &str = "/concurrent/bin";
/// Where the init container finds the worker binary in the worker image.
pub const WORKER_IN_IMAGE: &str = "/concurrent-worker";
/// A finished Job (and its Pods) stays this long for `kubectl` to show, then goes.
pub const TTL_AFTER_FINISHED: Duration = Duration::from_secs(300);
/// Failed (not disrupted) Pods a Job replaces before it gives up; the scheduler then makes another.
pub const BACKOFF_LIMIT: u32 = 3;

/// What one worker Job is made of.
#[derive(Debug, Clone)]
pub struct WorkerJob<'a> {
    pub run_id: &'a str,
    pub stage: &'a str,
    pub cluster: &'a ClusterConfig,
    /// The image that runs the stage's code.
    pub image: &'a str,
    pub resources: &'a Resources,
    /// Workers in this Job.
    pub workers: u32,
    /// Distinguishes the Jobs of one stage in one cluster.
    pub sequence: u64,
    /// NATS as Pods reach it when the cluster entry names neither `nats_url` nor its Secret.
    pub default_nats_url: &'a str,
    /// Workers exit after this long without a shard.
    pub idle_timeout: Duration,
    /// The image holds the project's environment (built from its `python_env`): workers run
    /// the entry point with the image's Python (`CONCURRENT_ENV_MANAGER=local`).
    pub env_in_image: bool,
}

impl WorkerJob<'_> {
    /// The Job's name: readable, unique per (run, stage, sequence), a valid DNS label.
    pub fn name(&self) -> String {
        let stage: String =
            self.stage.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(24).collect();
        let stage = stage.trim_matches('-');
        let hash = short_hash(&[self.run_id, self.stage]);
        format!("cw-{stage}-{hash}-{}", self.sequence).replace("--", "-")
    }

    /// The labels that find a run's, a stage's or a cluster's workers.
    pub fn labels(&self) -> BTreeMap<String, String> {
        worker_labels(self.run_id, self.stage, &self.cluster.name)
    }

    /// The Job manifest.
    pub fn manifest(&self) -> Result<Job, serde_json::Error> {
        serde_json::from_value(self.value())
    }

    /// The Job manifest as JSON, as sent to the API server.
    pub fn value(&self) -> Value {
        let labels = self.labels();
        let annotations = json!({ STAGE_ANNOTATION: self.stage });
        let cluster = self.cluster;
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name(), "namespace": cluster.namespace, "labels": labels, "annotations": annotations},
            "spec": {
                "parallelism": self.workers,
                "completions": self.workers,
                "backoffLimit": BACKOFF_LIMIT,
                "ttlSecondsAfterFinished": TTL_AFTER_FINISHED.as_secs(),
                "podReplacementPolicy": "Failed",
                "podFailurePolicy": {"rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
                ]},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": self.pod_spec(),
                }
            }
        })
    }

    fn pod_spec(&self) -> Value {
        let cluster = self.cluster;
        let mut spec = json!({
            "restartPolicy": "Never",
            "enableServiceLinks": false,
            "volumes": [{"name": "concurrent-bin", "emptyDir": {}}, {"name": "concurrent-work", "emptyDir": {}}],
            "initContainers": [{
                "name": "install-worker",
                "image": cluster.worker_image,
                "command": ["cp", WORKER_IN_IMAGE, format!("{WORKER_BIN_DIR}/concurrent-worker")],
                "volumeMounts": [{"name": "concurrent-bin", "mountPath": WORKER_BIN_DIR}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            }],
            "containers": [{
                "name": "worker",
                "image": self.image,
                "command": [format!("{WORKER_BIN_DIR}/concurrent-worker")],
                "args": [
                    "--run", self.run_id, "--stage", self.stage, "--cluster", cluster.name,
                    "--worker-id", "$(CONCURRENT_POD_NAME)",
                    "--idle-timeout", format!("{}ms", self.idle_timeout.as_millis()),
                    "--work-dir", "/concurrent/work/slot", "--cache-dir", "/concurrent/work/projects",
                    "--lease-kv",
                ],
                "env": self.env(),
                "resources": resources(self.resources),
                "volumeMounts": [
                    {"name": "concurrent-bin", "mountPath": WORKER_BIN_DIR, "readOnly": true},
                    {"name": "concurrent-work", "mountPath": "/concurrent/work"},
                ],
                "securityContext": {"allowPrivilegeEscalation": false},
            }],
        });
        if !cluster.node_selector.is_empty() {
            spec["nodeSelector"] = json!(cluster.node_selector);
        }
        if !cluster.tolerations.is_empty() {
            spec["tolerations"] = serde_json::to_value(&cluster.tolerations).unwrap_or(Value::Null);
        }
        if let Some(account) = &cluster.service_account {
            spec["serviceAccountName"] = json!(account);
        }
        if !cluster.image_pull_secrets.is_empty() {
            spec["imagePullSecrets"] =
                json!(cluster.image_pull_secrets.iter().map(|name| json!({"name": name})).collect::<Vec<_>>());
        }
        spec
    }

    fn env(&self) -> Vec<Value> {
        let cluster = self.cluster;
        let mut env =
            vec![json!({"name": "CONCURRENT_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})];
        match &cluster.nats_url_secret {
            Some(secret) => env.push(secret_env("NATS_URL", secret)),
            None => env.push(
                json!({"name": "NATS_URL", "value": cluster.nats_url.as_deref().unwrap_or(self.default_nats_url)}),
            ),
        }
        if self.env_in_image {
            env.push(json!({"name": "CONCURRENT_ENV_MANAGER", "value": "local"}));
        }
        if let Some(uri) = &cluster.mlflow_tracking_uri {
            env.push(json!({"name": "CONCURRENT_MLFLOW_TRACKING_URI", "value": uri}));
        }
        if let Some(secret) = &cluster.mlflow_token_secret {
            env.push(secret_env("MLFLOW_TRACKING_TOKEN", secret));
        }
        env
    }
}

fn secret_env(name: &str, secret: &crate::clusters::SecretKey) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}})
}

/// Requests and limits from a stage's `resources`: CPU requested (not limited, so a worker may
/// use idle CPU), memory requested and limited, GPUs as `nvidia.com/gpu` in both.
fn resources(resources: &Resources) -> Value {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    if let Some(cpu) = &resources.cpu {
        requests.insert("cpu".into(), json!(cpu));
    }
    if let Some(memory) = &resources.memory {
        requests.insert("memory".into(), json!(memory));
        limits.insert("memory".into(), json!(memory));
    }
    if resources.gpu > 0 {
        requests.insert("nvidia.com/gpu".into(), json!(resources.gpu.to_string()));
        limits.insert("nvidia.com/gpu".into(), json!(resources.gpu.to_string()));
    }
    let mut out = json!({});
    if !requests.is_empty() {
        out["requests"] = Value::Object(requests);
    }
    if !limits.is_empty() {
        out["limits"] = Value::Object(limits);
    }
    out
}

/// The labels of a worker of `stage` of `run_id` in `cluster`.
pub fn worker_labels(run_id: &str, stage: &str, cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUN_LABEL.to_string(), run_id.to_string()),
        (STAGE_LABEL.to_string(), stage_label(run_id, stage)),
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
        ("app.kubernetes.io/name".to_string(), "concurrent-worker".to_string()),
        ("app.kubernetes.io/component".to_string(), "worker".to_string()),
        ("app.kubernetes.io/instance".to_string(), run_id.to_string()),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ])
}

/// A stage's label value: its name when that is a valid label value, else a hash of it.
pub fn stage_label(run_id: &str, stage: &str) -> String {
    let valid = stage.len() <= 63
        && stage.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && stage.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && stage.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if valid { stage.to_string() } else { format!("h{}", short_hash(&[run_id, stage])) }
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect()
}
