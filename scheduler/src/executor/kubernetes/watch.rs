//! Following one cluster: watches (kube-runtime's watcher: a list, then a watch resumed from
//! its resourceVersion, relisting after 410 Gone, with backoff) on the Pods every run made, the
//! run's Jobs and the nodes, folded into the cluster's [`ClusterView`]. A Pod of the run seen
//! ending Failed or deleted is checked against the leases: if its worker still held one, the
//! shard is reported abandoned at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::leases::Leases;
use super::manifest::{MANAGED_BY, RUN_LABEL, STAGE_ANNOTATION, STAGE_LABEL};
use super::view::{ClusterView, JobSeen, Phase, PodSeen};
use crate::executor::{Abandoned, StageRef};
use crate::placement::Amount;

/// What the watch tasks of one cluster share with the executor.
pub struct Watched {
    pub view: Mutex<ClusterView>,
    /// Shards of workers that died holding a lease, not reported yet.
    pub abandoned: Mutex<Vec<Abandoned>>,
}

/// Starts the watches of one cluster; they run until aborted.
pub fn spawn(
    client: kube::Client,
    namespace: &str,
    run_id: &str,
    watched: Arc<Watched>,
    leases: Option<Leases>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<Node> = Api::all(client);
    let run_selector = format!("{managed},{RUN_LABEL}={run_id}");
    vec![
        tokio::spawn(watch_pods(pods, managed, run_id.to_string(), watched.clone(), leases)),
        tokio::spawn(watch_jobs(jobs, run_selector, watched.clone())),
        tokio::spawn(watch_nodes(nodes, watched)),
    ]
}

async fn watch_pods(api: Api<Pod>, selector: String, run_id: String, watched: Arc<Watched>, leases: Option<Leases>) {
    let mut stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff().boxed();
    let mut relist: Option<BTreeMap<String, Pod>> = None;
    let mut known: BTreeMap<String, Pod> = BTreeMap::new();
    // First sightings, so a Pod's Pending time survives its updates.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        let mut ended: Vec<Pod> = Vec::new();
        // What the view must learn: every Pod after a relist, else the one this event is about.
        let mut changed: Option<String> = None;
        let mut relisted = false;
        match event {
            Err(error) => {
                watched.view.lock().expect("view").unreachable = Some(error.to_string());
                continue;
            }
            // Made by the watcher before it asks the server anything: not an answer.
            Ok(watcher::Event::Init) => {
                relist = Some(BTreeMap::new());
                continue;
            }
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(list) = relist.as_mut() {
                    list.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let list = relist.take().unwrap_or_default();
                // Pods gone while the watch was down ended unseen.
                ended.extend(
                    known
                        .values()
                        .filter(|p| !list.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
                        .cloned(),
                );
                ended.extend(list.values().filter(|p| ended_now(known.get(name_of(p)), Some(p))).cloned());
                known = list;
                relisted = true;
            }
            Ok(watcher::Event::Apply(pod)) => {
                let name = name_of(&pod).to_string();
                if ended_now(known.get(&name), Some(&pod)) {
                    ended.push(pod.clone());
                }
                known.insert(name.clone(), pod);
                changed = Some(name);
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(before) = known.remove(name_of(&pod))
                    && !is_terminal(&before)
                {
                    ended.push(pod.clone());
                }
                changed = Some(name_of(&pod).to_string());
            }
        }
        {
            let mut view = watched.view.lock().expect("view");
            view.unreachable = None;
            if relisted {
                first_seen.retain(|name, _| known.contains_key(name));
                view.pods = known
                    .iter()
                    .filter_map(|(name, pod)| {
                        let first = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
                        seen_pod(pod, first).map(|seen| (name.clone(), seen))
                    })
                    .collect();
            } else if let Some(name) = changed {
                match known.get(&name) {
                    Some(pod) => {
                        let first = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
                        match seen_pod(pod, first) {
                            Some(seen) => view.pods.insert(name, seen),
                            None => view.pods.remove(&name),
                        };
                    }
                    None => {
                        first_seen.remove(&name);
                        view.pods.remove(&name);
                    }
                }
            }
        }
        if let Some(leases) = &leases {
            for pod in ended.iter().filter(|p| label(p, RUN_LABEL) == Some(run_id.as_str())) {
                let Some(stage) = pod.metadata.annotations.as_ref().and_then(|a| a.get(STAGE_ANNOTATION)).cloned()
                else {
                    continue;
                };
                if let Some(ack_subject) = leases.take(&run_id, &stage, name_of(pod)).await {
                    tracing::warn!(pod = name_of(pod), %stage, "a worker Pod ended holding a lease; its shard is handed back");
                    let stage = StageRef { run_id: run_id.clone(), stage };
                    watched.abandoned.lock().expect("abandoned").push(Abandoned { stage, ack_subject });
                }
            }
        }
    }
}

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

fn phase(pod: &Pod) -> Phase {
    Phase::parse(pod.status.as_ref().and_then(|s| s.phase.as_deref()))
}

fn is_terminal(pod: &Pod) -> bool {
    phase(pod).is_terminal()
}

/// Whether `now` shows a Pod failing that `before` showed alive.
fn ended_now(before: Option<&Pod>, now: Option<&Pod>) -> bool {
    let was_alive = before.is_none_or(|p| !is_terminal(p));
    was_alive && now.is_some_and(|p| phase(p) == Phase::Failed)
}

fn seen_pod(pod: &Pod, first_seen: Instant) -> Option<PodSeen> {
    let job = pod.metadata.owner_references.as_ref()?.iter().find(|o| o.kind == "Job")?.name.clone();
    let spec = pod.spec.as_ref()?;
    let mut request = Amount::default();
    for container in &spec.containers {
        let requests = container.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        let value = |key: &str| requests.get(key).and_then(|q| crate::dag::quantity_value(&q.0)).unwrap_or(0.0);
        request.cpu_millis += (value("cpu") * 1000.0).ceil() as u64;
        request.memory_bytes += value("memory").ceil() as u64;
        request.gpus += value("nvidia.com/gpu") as u32;
    }
    Some(PodSeen {
        run: label(pod, RUN_LABEL)?.to_string(),
        stage_label: label(pod, STAGE_LABEL)?.to_string(),
        job,
        phase: phase(pod),
        node: spec.node_name.clone(),
        request,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        first_seen,
    })
}

async fn watch_jobs(api: Api<Job>, selector: String, watched: Arc<Watched>) {
    let mut stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff().boxed();
    let mut relist: Option<BTreeMap<String, JobSeen>> = None;
    while let Some(event) = stream.next().await {
        let mut view = watched.view.lock().expect("view");
        match event {
            Err(error) => view.unreachable = Some(error.to_string()),
            // Made by the watcher before it asks the server anything: not an answer.
            Ok(watcher::Event::Init) => {
                relist = Some(BTreeMap::new());
                continue;
            }
            Ok(watcher::Event::InitApply(job)) => {
                if let (Some(list), Some((name, seen))) = (relist.as_mut(), seen_job(&job, &view)) {
                    list.insert(name, seen);
                }
            }
            Ok(watcher::Event::InitDone) => view.jobs = relist.take().unwrap_or_default(),
            Ok(watcher::Event::Apply(job)) => {
                if let Some((name, seen)) = seen_job(&job, &view) {
                    view.jobs.insert(name, seen);
                }
            }
            Ok(watcher::Event::Delete(job)) => {
                view.jobs.remove(job.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }
}

fn seen_job(job: &Job, view: &ClusterView) -> Option<(String, JobSeen)> {
    let name = job.metadata.name.clone()?;
    let labels = job.metadata.labels.as_ref()?;
    let status = job.status.clone().unwrap_or_default();
    let finished = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    let created = view.jobs.get(&name).map_or_else(Instant::now, |j| j.created);
    Some((
        name,
        JobSeen {
            run: labels.get(RUN_LABEL)?.clone(),
            stage_label: labels.get(STAGE_LABEL)?.clone(),
            parallelism: job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1).max(0) as u32,
            succeeded: status.succeeded.unwrap_or(0).max(0) as u32,
            finished,
            created,
        },
    ))
}

async fn watch_nodes(api: Api<Node>, watched: Arc<Watched>) {
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut relist: Option<BTreeMap<String, Amount>> = None;
    while let Some(event) = stream.next().await {
        let mut view = watched.view.lock().expect("view");
        match event {
            // Nodes may be out of our reach (RBAC) while Pods are not: then node room is unknown.
            Err(error) => tracing::debug!(%error, "cannot watch nodes"),
            // Made by the watcher before it asks the server anything: not an answer.
            Ok(watcher::Event::Init) => {
                relist = Some(BTreeMap::new());
                continue;
            }
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(list) = relist.as_mut() {
                    list.insert(node.metadata.name.clone().unwrap_or_default(), allocatable(&node));
                }
            }
            Ok(watcher::Event::InitDone) => view.nodes = relist.take().unwrap_or_default(),
            Ok(watcher::Event::Apply(node)) => {
                view.nodes.insert(node.metadata.name.clone().unwrap_or_default(), allocatable(&node));
            }
            Ok(watcher::Event::Delete(node)) => {
                view.nodes.remove(node.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }
}

fn allocatable(node: &Node) -> Amount {
    let resources = node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
    let value = |key: &str| resources.get(key).and_then(|q| crate::dag::quantity_value(&q.0)).unwrap_or(0.0);
    Amount {
        cpu_millis: (value("cpu") * 1000.0) as u64,
        memory_bytes: value("memory") as u64,
        gpus: value("nvidia.com/gpu") as u32,
    }
}
