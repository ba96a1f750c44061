//! A look at one cluster for `concurrent clusters`: whether it answers, its nodes, what they
//! still fit (allocatable less the requests of the Pods bound to them), and Concurrent's
//! workers there.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use super::api::{self, ClusterError};
use super::manifest::{MANAGED_BY, RUN_LABEL};
use crate::clusters::ClusterConfig;

/// How long a survey waits for a cluster.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a survey found.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSurvey {
    pub name: String,
    pub namespace: String,
    pub reachable: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub nodes: usize,
    pub free_cpu_millis: u64,
    pub free_memory_bytes: u64,
    pub free_gpus: u64,
    /// Concurrent's workers alive in the namespace, all runs.
    pub workers: usize,
    /// Runs those workers serve.
    pub runs: Vec<String>,
    pub max_workers: u32,
}

/// Surveys one cluster; never fails (an unreachable cluster is said so).
pub async fn survey(config: &ClusterConfig) -> ClusterSurvey {
    let mut survey = ClusterSurvey {
        name: config.name.clone(),
        namespace: config.namespace.clone(),
        reachable: false,
        error: None,
        nodes: 0,
        free_cpu_millis: 0,
        free_memory_bytes: 0,
        free_gpus: 0,
        workers: 0,
        runs: Vec::new(),
        max_workers: config.max_workers,
    };
    match tokio::time::timeout(SURVEY_TIMEOUT, look(config, &mut survey)).await {
        Ok(Ok(())) => survey.reachable = true,
        Ok(Err(error)) => survey.error = Some(error.to_string()),
        Err(_) => survey.error = Some(format!("no answer within {}s", SURVEY_TIMEOUT.as_secs())),
    }
    survey
}

async fn look(config: &ClusterConfig, survey: &mut ClusterSurvey) -> Result<(), ClusterError> {
    let client = api::connect(config).await?;
    let pace = std::sync::Arc::new(api::Pace::default());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let list = ListParams::default().labels(&selector);
    let workers = api::call(&pace, || pods.list(&list)).await?;
    let live = |p: &&Pod| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    survey.workers = workers.items.iter().filter(live).count();
    let mut runs: Vec<String> = workers
        .items
        .iter()
        .filter(live)
        .filter_map(|p| p.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL)).cloned())
        .collect();
    runs.sort();
    runs.dedup();
    survey.runs = runs;
    // Nodes and every Pod bound to them may be out of our reach (RBAC): then only workers are said.
    let nodes: Api<Node> = Api::all(client.clone());
    let all_pods: Api<Pod> = Api::all(client);
    let everything = ListParams::default();
    let (Ok(nodes), Ok(bound)) =
        (api::call(&pace, || nodes.list(&everything)).await, api::call(&pace, || all_pods.list(&everything)).await)
    else {
        return Ok(());
    };
    survey.nodes = nodes.items.len();
    let quantity =
        |map: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         key: &str| {
            map.and_then(|m| m.get(key)).and_then(|q| crate::dag::quantity_value(&q.0)).unwrap_or(0.0)
        };
    let (mut cpu, mut memory, mut gpus) = (0.0, 0.0, 0.0);
    for node in &nodes.items {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        cpu += quantity(allocatable, "cpu");
        memory += quantity(allocatable, "memory");
        gpus += quantity(allocatable, "nvidia.com/gpu");
    }
    for pod in bound.items.iter().filter(live).filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some())) {
        for container in pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default() {
            let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
            cpu -= quantity(requests, "cpu");
            memory -= quantity(requests, "memory");
            gpus -= quantity(requests, "nvidia.com/gpu");
        }
    }
    survey.free_cpu_millis = (cpu.max(0.0) * 1000.0) as u64;
    survey.free_memory_bytes = memory.max(0.0) as u64;
    survey.free_gpus = gpus.max(0.0) as u64;
    Ok(())
}
