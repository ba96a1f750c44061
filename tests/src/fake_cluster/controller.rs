//! The control plane behind the API: the Job controller (Pods up to `parallelism` and
//! `completions`, work-queue Jobs done after a success, `podFailurePolicy`,
//! `podReplacementPolicy`, `backoffLimit`, TTL after finish), the garbage collector (Pods whose
//! Job is gone), and the scheduler that binds Pending Pods to nodes whose free allocatable
//! resources fit their requests, then hands them to the kubelet.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Cluster;
use super::quantity::milli;
use super::store::{Change, Kind, Store, now_rfc3339};
use super::writes::random_suffix;
use tokio::sync::broadcast;

/// The resources the scheduler counts.
const RESOURCES: [&str; 3] = ["cpu", "memory", "nvidia.com/gpu"];
/// How long the controller lets writes gather before a pass.
const BATCH_WRITES_FOR: Duration = Duration::from_millis(10);
/// Most Pods on a node, as the kubelet's default.
const MAX_PODS: usize = 110;

/// Namespaces and nodes that exist from the start.
pub fn seed(cluster: &Cluster) {
    let options = &cluster.options;
    let mut store = cluster.store.lock().expect("store");
    let mut namespaces = vec!["default".to_string(), "kube-system".to_string()];
    namespaces.extend(options.namespaces.iter().cloned());
    for ns in namespaces {
        let _ = store.create(
            Kind::Namespace,
            "",
            json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        );
    }
    for i in 0..options.nodes {
        let name = format!("{}-node-{i}", options.name);
        let resources = json!({
            "cpu": format!("{}m", options.node_cpu_millis), "memory": options.node_memory_bytes.to_string(),
            "nvidia.com/gpu": options.node_gpus.to_string(), "pods": MAX_PODS.to_string(),
        });
        let _ = store.create(Kind::Node, "", json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "status": {"capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}]}
        }));
    }
}

/// Reconciles the Jobs each change touched (every Job when changes were missed), and every
/// 200 ms the finished Jobs whose TTL may have run out.
pub async fn run(cluster: Arc<Cluster>) {
    let mut counted: HashSet<String> = HashSet::new();
    let mut changes = cluster.store.lock().expect("store").subscribe();
    let mut full_pass = tokio::time::interval(Duration::from_millis(200));
    full_pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let timer = tokio::select! {
            _ = cluster.kick.notified() => false,
            _ = full_pass.tick() => true,
        };
        // Writes that come close together are reconciled in one pass, as a work queue would.
        tokio::time::sleep(BATCH_WRITES_FOR).await;
        // The Jobs to look at: those changes touched, and on the timer those whose TTL runs.
        let mut touched = Some(if timer { finished_with_ttl(&cluster) } else { HashSet::new() });
        let mut jobs_deleted = timer;
        loop {
            match changes.try_recv() {
                Ok(change) => {
                    jobs_deleted |= change.kind == Kind::Job && change.kind_of_change == "DELETED";
                    if let Some(jobs) = touched.as_mut() {
                        jobs.extend(job_touched(&change));
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => touched = None,
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
        let mut store = cluster.store.lock().expect("store");
        reconcile_jobs(&cluster, &mut store, &mut counted, touched.as_ref());
        if jobs_deleted {
            collect_garbage(&cluster, &mut store);
        }
        schedule(&cluster, &mut store);
    }
}

/// The uids of finished Jobs with a TTL: what time alone changes.
fn finished_with_ttl(cluster: &Cluster) -> HashSet<String> {
    let store = cluster.store.lock().expect("store");
    store
        .scan(Kind::Job)
        .filter(|job| is_finished(job) && !job["spec"]["ttlSecondsAfterFinished"].is_null())
        .filter_map(|job| job["metadata"]["uid"].as_str().map(str::to_string))
        .collect()
}

/// The uid of the Job a change is about: the Job's own, or the owner of a Pod.
fn job_touched(change: &Change) -> Option<String> {
    match change.kind {
        Kind::Job => change.object["metadata"]["uid"].as_str().map(str::to_string),
        Kind::Pod => job_owner(&change.object).map(str::to_string),
        _ => None,
    }
}

/// The uid of the Job that owns a Pod.
fn job_owner(pod: &Value) -> Option<&str> {
    let owners = pod["metadata"]["ownerReferences"].as_array()?;
    owners.iter().find(|o| o["kind"] == "Job").and_then(|o| o["uid"].as_str())
}

/// The kubelet's report that a Pod's container ended with `code`.
pub fn container_ended(cluster: &Cluster, ns: &str, name: &str, code: i32) {
    let mut store = cluster.store.lock().expect("store");
    let Some(mut pod) = store.get(Kind::Pod, ns, name).cloned() else { return };
    let now = now_rfc3339();
    let started = pod["status"]["startTime"].clone();
    pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
    pod["status"]["containerStatuses"] = json!([{
        "name": pod["spec"]["containers"][0]["name"], "image": pod["spec"]["containers"][0]["image"], "imageID": "",
        "ready": false, "restartCount": 0, "started": false,
        "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": started, "finishedAt": now}}
    }]);
    set_condition(&mut pod, "Ready", "False", "PodCompleted", "");
    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    let _ = store.update(Kind::Pod, ns, pod, None);
    if deleting {
        store.remove(Kind::Pod, ns, name);
    }
    drop(store);
    cluster.kick.notify_one();
}

/// Reconciles the Jobs whose uids are in `only`, or every Job.
fn reconcile_jobs(
    cluster: &Arc<Cluster>,
    store: &mut Store,
    counted: &mut HashSet<String>,
    only: Option<&HashSet<String>>,
) {
    let wanted = |uid: &str| only.is_none_or(|only| only.contains(uid));
    // Pods by the uid of the Job that owns them, listed once.
    let mut owned: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
    for pod in store.scan(Kind::Pod) {
        if let Some(uid) = job_owner(pod).filter(|uid| wanted(uid)) {
            owned.entry(uid.to_string()).or_default().push(pod.clone());
        }
    }
    let jobs: Vec<Value> = store
        .scan(Kind::Job)
        .filter(|job| wanted(job["metadata"]["uid"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    for mut job in jobs {
        let ns = job["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let before = job.clone();
        let pods: Vec<Value> = owned.remove(job["metadata"]["uid"].as_str().unwrap_or_default()).unwrap_or_default();
        let status = &mut job["status"];
        if status["startTime"].is_null() {
            status["startTime"] = json!(now_rfc3339());
        }
        for pod in &pods {
            let pod_uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            if !matches!(phase, "Succeeded" | "Failed") || !counted.insert(pod_uid) {
                continue;
            }
            if phase == "Succeeded" {
                bump(&mut job["status"]["succeeded"]);
            } else {
                match failure_action(&job["spec"]["podFailurePolicy"], pod) {
                    "Ignore" => {}
                    "FailJob" => {
                        bump(&mut job["status"]["failed"]);
                        finish(
                            &mut job,
                            "Failed",
                            "PodFailurePolicy",
                            "Container failed with a code the pod failure policy ends the Job on",
                        );
                    }
                    _ => bump(&mut job["status"]["failed"]),
                }
            }
        }
        let finished = is_finished(&job);
        let live: Vec<&Value> =
            pods.iter().filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).collect();
        let active: Vec<&&Value> = live.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        let terminating = live.len() - active.len();
        let succeeded = job["status"]["succeeded"].as_u64().unwrap_or(0);
        let failed = job["status"]["failed"].as_u64().unwrap_or(0);
        let spec = job["spec"].clone();
        let parallelism = spec["parallelism"].as_u64().unwrap_or(1);
        if finished {
            for pod in &active {
                stop_pod(cluster, store, pod);
            }
        } else if failed > spec["backoffLimit"].as_u64().unwrap_or(6) {
            finish(&mut job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
            for pod in &active {
                stop_pod(cluster, store, pod);
            }
        } else if spec["suspend"] != json!(true) {
            let wanted = match spec["completions"].as_u64() {
                Some(completions) => parallelism.min(completions.saturating_sub(succeeded)),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            let busy =
                active.len() as u64 + if spec["podReplacementPolicy"] == "Failed" { terminating as u64 } else { 0 };
            for _ in busy..wanted {
                create_pod(store, &job);
            }
            if active.len() as u64 > wanted {
                let mut extra: Vec<&&Value> = active.clone();
                extra.sort_by_key(|p| {
                    (!p["spec"]["nodeName"].is_null(), p["metadata"]["creationTimestamp"].as_str().map(str::to_string))
                });
                for pod in extra.iter().take((active.len() as u64 - wanted) as usize) {
                    stop_pod(cluster, store, pod);
                }
            }
            let done = match spec["completions"].as_u64() {
                Some(completions) => succeeded >= completions,
                None => succeeded > 0 && active.is_empty(),
            };
            if done {
                finish(&mut job, "Complete", "CompletionsReached", "Reached expected number of succeeded pods");
            }
        }
        let ready = active.iter().filter(|p| p["status"]["phase"] == "Running").count();
        let status = &mut job["status"];
        status["active"] = json!(active.len());
        status["ready"] = json!(ready);
        status["terminating"] = json!(terminating);
        if job["status"]["succeeded"].is_null() {
            job["status"]["succeeded"] = json!(0);
        }
        if job["status"]["failed"].is_null() {
            job["status"]["failed"] = json!(0);
        }
        if is_finished(&job)
            && let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_u64()
            && expired(&job["status"]["completionTime"], ttl)
        {
            store.remove(Kind::Job, &ns, &name);
            continue;
        }
        if job != before {
            let _ = store.update(Kind::Job, &ns, job, None);
        }
    }
}

fn bump(counter: &mut Value) {
    *counter = json!(counter.as_u64().unwrap_or(0) + 1);
}

fn is_finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True")
    })
}

fn finish(job: &mut Value, kind: &str, reason: &str, message: &str) {
    if is_finished(job) {
        return;
    }
    let now = now_rfc3339();
    let mut conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let criterion = if kind == "Complete" { "SuccessCriteriaMet" } else { "FailureTarget" };
    for t in [criterion, kind] {
        conditions.push(json!({"type": t, "status": "True", "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now}));
    }
    job["status"]["conditions"] = json!(conditions);
    job["status"]["completionTime"] = json!(now);
}

fn expired(completion: &Value, ttl: u64) -> bool {
    let Some(at) = completion.as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return false;
    };
    super::store::now().as_second() >= at.as_second() + ttl as i64
}

/// What `podFailurePolicy` says of a failed Pod: `Ignore`, `FailJob` or `Count`.
fn failure_action(policy: &Value, pod: &Value) -> &'static str {
    for rule in policy["rules"].as_array().into_iter().flatten() {
        let on_condition = rule["onPodConditions"].as_array().is_some_and(|wanted| {
            wanted.iter().any(|w| {
                pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == w["type"] && c["status"] == w["status"])
            })
        });
        let on_exit = rule["onExitCodes"].is_object() && {
            let codes: Vec<i64> =
                rule["onExitCodes"]["values"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
            let code = pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"].as_i64().unwrap_or(0);
            (rule["onExitCodes"]["operator"] == "In") == codes.contains(&code)
        };
        if on_condition || on_exit {
            return match rule["action"].as_str() {
                Some("Ignore") => "Ignore",
                Some("FailJob") => "FailJob",
                _ => "Count",
            };
        }
    }
    "Count"
}

fn create_pod(store: &mut Store, job: &Value) {
    let template = &job["spec"]["template"];
    let job_name = job["metadata"]["name"].as_str().unwrap_or_default();
    let ns = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut pod = json!({
        "metadata": template["metadata"].clone(),
        "spec": template["spec"].clone(),
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    });
    pod["metadata"]["name"] = json!(format!("{job_name}-{}", random_suffix()));
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
        "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
    if pod["spec"]["schedulerName"].is_null() {
        pod["spec"]["schedulerName"] = json!("default-scheduler");
    }
    let _ = store.create(Kind::Pod, ns, pod);
}

fn stop_pod(cluster: &Cluster, store: &mut Store, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if cluster.kubelet.is_running(ns, name) {
        if pod["metadata"]["deletionTimestamp"].is_null() {
            let mut marked = pod.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            let _ = store.update(Kind::Pod, ns, marked, None);
            cluster.kubelet.stop(ns, name);
            event(store, pod, "Normal", "Killing", "Stopping container");
        }
    } else {
        store.remove(Kind::Pod, ns, name);
    }
}

/// Pods whose owning Job is gone (deleted with Background or Foreground propagation).
fn collect_garbage(cluster: &Cluster, store: &mut Store) {
    let jobs: HashSet<&str> = store.scan(Kind::Job).filter_map(|j| j["metadata"]["uid"].as_str()).collect();
    let orphans: Vec<Value> = store
        .scan(Kind::Pod)
        .filter(|pod| {
            let owners = pod["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or_default();
            owners.iter().any(|o| o["kind"] == "Job" && !o["uid"].as_str().is_some_and(|u| jobs.contains(u)))
        })
        .cloned()
        .collect();
    for pod in orphans {
        stop_pod(cluster, store, &pod);
    }
}

/// What a Pod asks of a node, in thousandths.
fn requests(pod: &Value) -> BTreeMap<&'static str, u128> {
    let mut total = BTreeMap::new();
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for resource in RESOURCES {
            let resources = &container["resources"];
            let amount = resources["requests"][resource]
                .as_str()
                .or(resources["limits"][resource].as_str())
                .and_then(milli)
                .unwrap_or(0);
            *total.entry(resource).or_insert(0) += amount;
        }
    }
    total
}

/// Binds Pending Pods to the first node that fits them, and starts bound Pods.
fn schedule(cluster: &Arc<Cluster>, store: &mut Store) {
    let nodes: Vec<Value> = store.scan(Kind::Node).cloned().collect();
    let mut free: Vec<(String, BTreeMap<&str, i128>, usize, Value)> = nodes
        .iter()
        .map(|node| {
            let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let allocatable: BTreeMap<&str, i128> = RESOURCES
                .iter()
                .map(|r| (*r, node["status"]["allocatable"][*r].as_str().and_then(milli).unwrap_or(0) as i128))
                .collect();
            (name, allocatable, MAX_PODS, node["metadata"]["labels"].clone())
        })
        .collect();
    for pod in store.scan(Kind::Pod) {
        let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if let Some(node) = pod["spec"]["nodeName"].as_str()
            && !terminal
            && let Some(entry) = free.iter_mut().find(|(n, ..)| n == node)
        {
            for (resource, amount) in requests(pod) {
                *entry.1.entry(resource).or_insert(0) -= amount as i128;
            }
            entry.2 = entry.2.saturating_sub(1);
        }
    }
    // Only what may change is copied: Pods to bind, and bound Pods whose container may start.
    let mut pending: Vec<Value> = store
        .scan(Kind::Pod)
        .filter(|p| p["status"]["phase"] == "Pending" && p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            let waiting = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str();
            p["spec"]["nodeName"].is_null()
                || (p["status"]["startTime"].is_null()
                    && waiting.is_none_or(|reason| reason == "CreateContainerConfigError"))
        })
        .cloned()
        .collect();
    pending.sort_by_key(|p| p["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok()));
    for pod in &pending {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if pod["spec"]["nodeName"].is_null() {
            let want = requests(pod);
            let selector = pod["spec"]["nodeSelector"].as_object().cloned().unwrap_or_default();
            let fit = free.iter_mut().find(|(_, room, pods, labels)| {
                *pods > 0
                    && want.iter().all(|(r, a)| room.get(r).copied().unwrap_or(0) >= *a as i128)
                    && selector.iter().all(|(k, v)| &labels[k] == v)
            });
            let mut bound = pod.clone();
            match fit {
                Some((node, room, pods, _)) => {
                    for (resource, amount) in &want {
                        *room.entry(resource).or_insert(0) -= *amount as i128;
                    }
                    *pods -= 1;
                    bound["spec"]["nodeName"] = json!(node);
                    set_condition(&mut bound, "PodScheduled", "True", "", "");
                    let message = format!("Successfully assigned {ns}/{name} to {node}");
                    let _ = store.update(Kind::Pod, &ns, bound.clone(), None);
                    event(store, pod, "Normal", "Scheduled", &message);
                    start(cluster, store, &bound);
                }
                None => {
                    let message =
                        format!("0/{} nodes are available: {}", nodes.len(), shortfall(&want, &free, &selector));
                    if set_condition(&mut bound, "PodScheduled", "False", "Unschedulable", &message) {
                        let _ = store.update(Kind::Pod, &ns, bound, None);
                        event(store, pod, "Warning", "FailedScheduling", &message);
                    }
                }
            }
        } else if !cluster.kubelet.is_running(&ns, &name) && pod["status"]["startTime"].is_null() {
            // A missing Secret may appear later; a command that cannot start will not.
            let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str();
            if waiting.is_none_or(|reason| reason == "CreateContainerConfigError") {
                start(cluster, store, pod);
            }
        }
    }
}

fn shortfall(
    want: &BTreeMap<&str, u128>,
    free: &[(String, BTreeMap<&str, i128>, usize, Value)],
    selector: &serde_json::Map<String, Value>,
) -> String {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (_, room, _, labels) in free {
        if !selector.iter().all(|(k, v)| &labels[k] == v) {
            *reasons.entry("node(s) didn't match Pod's node affinity/selector".into()).or_default() += 1;
            continue;
        }
        for (resource, amount) in want {
            if room.get(resource).copied().unwrap_or(0) < *amount as i128 {
                *reasons.entry(format!("Insufficient {resource}")).or_default() += 1;
            }
        }
    }
    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", ") + "."
}

/// Starts a bound Pod's container, or records why it cannot start.
fn start(cluster: &Arc<Cluster>, store: &mut Store, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let mut pod = pod.clone();
    let container = pod["spec"]["containers"][0].clone();
    match cluster.kubelet.start(cluster, store, &pod) {
        Ok(()) => {
            let now = now_rfc3339();
            pod["status"]["phase"] = json!("Running");
            pod["status"]["startTime"] = json!(now);
            pod["status"]["hostIP"] = json!("127.0.0.1");
            pod["status"]["podIP"] = json!("127.0.0.1");
            pod["status"]["initContainerStatuses"] = json!(
                pod["spec"]["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| json!({
                "name": c["name"], "image": c["image"], "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}))
                    .collect::<Vec<_>>()
            );
            pod["status"]["containerStatuses"] = json!([{"name": container["name"], "image": container["image"], "imageID": "",
                "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]);
            set_condition(&mut pod, "Initialized", "True", "", "");
            set_condition(&mut pod, "Ready", "True", "", "");
            let _ = store.update(Kind::Pod, &ns, pod.clone(), None);
            event(store, &pod, "Normal", "Started", "Started container");
        }
        Err((reason, message)) => {
            pod["status"]["containerStatuses"] = json!([{"name": container["name"], "image": container["image"], "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]);
            if store.get(Kind::Pod, &ns, pod["metadata"]["name"].as_str().unwrap_or_default()) != Some(&pod) {
                let _ = store.update(Kind::Pod, &ns, pod.clone(), None);
                event(store, &pod, "Warning", "Failed", &format!("Error: {message}"));
            }
        }
    }
}

/// Sets a Pod condition; whether it changed.
fn set_condition(pod: &mut Value, kind: &str, status: &str, reason: &str, message: &str) -> bool {
    let mut conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut condition =
        json!({"type": kind, "status": status, "lastTransitionTime": now_rfc3339(), "lastProbeTime": null});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
        condition["message"] = json!(message);
    }
    if let Some(old) = conditions.iter_mut().find(|c| c["type"] == kind) {
        if old["status"] == status && old["reason"] == condition["reason"] && old["message"] == condition["message"] {
            return false;
        }
        *old = condition;
    } else {
        conditions.push(condition);
    }
    pod["status"]["conditions"] = json!(conditions);
    true
}

/// Records an Event about a Pod, as `kubectl describe` shows them.
fn event(store: &mut Store, pod: &Value, kind: &str, reason: &str, message: &str) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let now = now_rfc3339();
    let _ = store.create(Kind::Event, ns, json!({
        "metadata": {"name": format!("{name}.{}", random_suffix())},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": pod["metadata"]["uid"], "apiVersion": "v1"},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "concurrent-fake-cluster"},
    }));
}
