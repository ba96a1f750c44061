//! The fake cluster seen through kube-rs, as the Kubernetes executor sees it: Jobs run Pods as
//! processes within node capacity, watches follow changes, refusals come as an API server's,
//! deleting a Pod kills it as an eviction would, deleting a Job with propagation removes its Pods.

use std::time::Duration;

use concurrent_tests::fake_cluster_process::FakeClusterProcess;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

async fn client(cluster: &FakeClusterProcess) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let options = KubeConfigOptions { context: Some(cluster.name.clone()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

fn job(name: &str, pods: u32, cpu: &str, script: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"concurrent.dev/run": "r1"}},
        "spec": {"parallelism": pods, "completions": pods, "podReplacementPolicy": "Failed",
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
            "template": {"metadata": {"labels": {"concurrent.dev/run": "r1"}}, "spec": {"restartPolicy": "Never",
                "containers": [{"name": "worker", "image": "busybox", "command": ["sh", "-c", script],
                    "env": [{"name": "GREETING", "value": "hello"}],
                    "resources": {"requests": {"cpu": cpu}}}]}}}
    }))
    .unwrap()
}

/// Waits until `check` holds for the Pods labelled `concurrent.dev/run=r1`, watching them.
async fn wait_for_pods(pods: &Api<Pod>, what: &str, check: impl Fn(&[Pod]) -> bool) {
    let config = watcher::Config::default().labels("concurrent.dev/run=r1");
    let mut stream = watcher(pods.clone(), config).default_backoff().boxed();
    let mut seen = std::collections::BTreeMap::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    seen.insert(pod.metadata.name.clone().unwrap(), pod);
                }
                watcher::Event::Delete(pod) => {
                    seen.remove(pod.metadata.name.as_ref().unwrap());
                }
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitDone => {}
            }
            if check(&seen.values().cloned().collect::<Vec<_>>()) {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "timed out waiting for pods: {what}; last seen {:#?}",
        seen.values().map(phase_of).collect::<Vec<_>>()
    );
}

fn phase_of(pod: &Pod) -> (String, String) {
    let status = pod.status.clone().unwrap_or_default();
    (pod.metadata.name.clone().unwrap_or_default(), status.phase.unwrap_or_default())
}

fn count(pods: &[Pod], phase: &str) -> usize {
    pods.iter().filter(|p| phase_of(p).1 == phase).count()
}

fn unschedulable(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
        cs.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_its_pods_as_processes_within_node_capacity() {
    let cluster = FakeClusterProcess::start("small", &["--node-cpu", "1", "--namespace", "work"]).unwrap();
    let client = client(&cluster).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "work");
    let pods: Api<Pod> = Api::namespaced(client, "work");
    // Three Pods of 400m on one node of 1 CPU: two run, one waits Unschedulable until one ends.
    let gate = tempfile::tempdir().unwrap();
    // The loop also ends when the gate's dir is gone, so no Pod process outlives a failed test.
    let script =
        format!("while [ ! -e {g}/go ] && [ -d {g} ]; do sleep 0.05; done; echo $GREETING", g = gate.path().display());
    jobs.create(&PostParams::default(), &job("three", 3, "400m", &script)).await.unwrap();
    wait_for_pods(&pods, "two running, one unschedulable", |p| {
        count(p, "Running") == 2 && p.iter().filter(|p| unschedulable(p)).count() == 1
    })
    .await;
    std::fs::write(gate.path().join("go"), "").unwrap();
    wait_for_pods(&pods, "three succeeded", |p| count(p, "Succeeded") == 3).await;
    let done = tokio::time::timeout(DEADLINE, async {
        loop {
            let job = jobs.get("three").await.unwrap();
            let status = job.status.unwrap_or_default();
            if status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Complete" && c.status == "True") {
                return status.succeeded;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job completes");
    assert_eq!(done, Some(3));
    let name = pods.list(&ListParams::default()).await.unwrap().items[0].metadata.name.clone().unwrap();
    assert_eq!(pods.logs(&name, &Default::default()).await.unwrap(), "hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_an_api_servers() {
    let cluster = FakeClusterProcess::start("strict", &[]).unwrap();
    let client = client(&cluster).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let code = |result: Result<Job, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let job = job("j", 1, "100m", "true");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(code(jobs.create(&PostParams::default(), &job).await).0, 409);
    assert_eq!(code(jobs.get("nope").await), (404, "jobs.batch \"nope\" not found".to_string()));
    let elsewhere: Api<Job> = Api::namespaced(client.clone(), "missing");
    assert_eq!(code(elsewhere.create(&PostParams::default(), &job).await).0, 404);
    // An unknown field is refused by name, as strict field validation does.
    let mut raw = serde_json::to_value(&job).unwrap();
    raw["metadata"]["name"] = json!("k");
    raw["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let request = http_post(&cluster.url, "/apis/batch/v1/namespaces/default/jobs", &raw).await;
    assert_eq!(request.0, 400);
    assert!(
        request.1.contains("unknown field \\\"spec.template.spec.containers[0].imagePullPolicyy\\\""),
        "{}",
        request.1
    );
    // restartPolicy Always is not allowed in a Job.
    let mut always = serde_json::to_value(job).unwrap();
    always["metadata"]["name"] = json!("always");
    always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(http_post(&cluster.url, "/apis/batch/v1/namespaces/default/jobs", &always).await.0, 422);
}

async fn http_post(url: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let url = format!("{url}{path}");
    let body = body.clone();
    tokio::task::spawn_blocking(move || {
        let response = reqwest::blocking::Client::new().post(url).json(&body).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_pod_is_evicted_and_replaced_and_a_deleted_job_takes_its_pods() {
    let cluster = FakeClusterProcess::start("evict", &[]).unwrap();
    let client = client(&cluster).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    jobs.create(&PostParams::default(), &job("sleepy", 2, "100m", "exec sleep 600")).await.unwrap();
    wait_for_pods(&pods, "two running", |p| count(p, "Running") == 2).await;
    let victim = pods.list(&ListParams::default()).await.unwrap().items[0].metadata.name.clone().unwrap();
    let deleted = pods.delete(&victim, &DeleteParams::default()).await.unwrap();
    let marked = deleted.left().expect("a graceful delete answers with the pod");
    let conditions = marked.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True"), "{conditions:?}");
    // The process is stopped, the Pod goes, and the Job (its failure ignored) makes another.
    wait_for_pods(&pods, "victim gone, two running again", |p| {
        p.iter().all(|p| p.metadata.name.as_deref() != Some(victim.as_str())) && count(p, "Running") == 2
    })
    .await;
    let job = jobs.get("sleepy").await.unwrap();
    assert_eq!(job.status.unwrap().failed, Some(0), "a disruption does not count as a failure");
    jobs.delete(
        "sleepy",
        &DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() },
    )
    .await
    .unwrap();
    wait_for_pods(&pods, "no pods left", <[Pod]>::is_empty).await;
}
