//! Kubernetes executor benchmark against an in-process fake cluster (`concurrent-fake-cluster`'s
//! API server, Job controller and scheduler; no Pod runs a process: the worker binary is not
//! mapped, so Pods wait in `CreateContainerError` once bound, which is all this measures).
//!
//! 1. `first_job_s`: from asking for one worker of one stage to its Job created.
//! 2. `jobs_per_s`: `--stages` stages each asked for one worker, one Job each, one after the
//!    other through the executor's rate limit and retries.
//! 3. `pods_seen_s`: until the executor's watches see every one of those Pods.
//!
//! Prints one `key=value` per line.
//!
//! ```sh
//! concurrent-k8s-bench [--stages 300]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use concurrent_scheduler::clusters::{Access, ClusterConfig, ClustersFile, default_worker_image};
use concurrent_scheduler::dag::Resources;
use concurrent_scheduler::executor::kubernetes::{KubernetesConfig, KubernetesExecutor, LaunchImage, StageLaunch};
use concurrent_scheduler::executor::{Executor, StageRef};
use concurrent_tests::fake_cluster;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let stages: usize = match args.iter().position(|a| a == "--stages") {
        Some(i) => args.get(i + 1).context("--stages N")?.parse()?,
        None => 300,
    };
    let dir = tempfile::tempdir()?;
    let running = fake_cluster::start(fake_cluster::Options {
        name: "bench".into(),
        nodes: 16,
        node_cpu_millis: 1_000_000,
        node_memory_bytes: 1 << 40,
        node_gpus: 0,
        path_maps: Vec::new(),
        state_dir: dir.path().join("state"),
        namespaces: vec!["concurrent".into()],
    })
    .await?;
    let kubeconfig = dir.path().join("bench.kubeconfig");
    std::fs::write(&kubeconfig, fake_cluster::kubeconfig("bench", running.addr, "concurrent"))?;
    let cluster = ClusterConfig {
        name: "bench".into(),
        access: Access::Kubeconfig { path: kubeconfig, context: None },
        namespace: "concurrent".into(),
        max_workers: 100_000,
        burst_after: Duration::from_secs(30),
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        service_account: None,
        image_pull_secrets: Vec::new(),
        worker_image: default_worker_image(),
        nats_url: None,
        nats_url_secret: None,
        mlflow_tracking_uri: None,
        mlflow_token_secret: None,
        images: None,
    };
    let launch = StageLaunch {
        image: LaunchImage::Given("busybox".into()),
        resources: Resources { cpu: Some("100m".into()), memory: None, gpu: 0 },
    };
    let names: Vec<String> = (0..=stages).map(|i| format!("s{i}")).collect();
    let mut executor = KubernetesExecutor::connect(KubernetesConfig {
        run_id: "bench".into(),
        clusters: ClustersFile { clusters: vec![cluster] },
        stages: names.iter().map(|n| (n.clone(), launch.clone())).collect(),
        nats_url: "nats://127.0.0.1:4222".into(),
        idle_timeout: Duration::from_secs(5),
        leases: None,
    })
    .await;
    executor.settle(Duration::from_secs(5)).await;
    let stage = |name: &str| StageRef { run_id: "bench".into(), stage: name.to_string() };

    let started = Instant::now();
    executor.set_desired(&stage(&names[0]), "bench", 1).await?;
    println!("first_job_s={:.4}", started.elapsed().as_secs_f64());

    let started = Instant::now();
    for name in &names[1..] {
        executor.set_desired(&stage(name), "bench", 1).await?;
    }
    let made = started.elapsed().as_secs_f64();
    println!("jobs={stages}");
    println!("jobs_per_s={:.1}", stages as f64 / made);
    loop {
        let seen: usize = executor.observe(Duration::ZERO).placed.values().flatten().map(|p| p.running as usize).sum();
        if seen > stages {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "only {seen} Pods bound after 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("pods_seen_s={:.3}", started.elapsed().as_secs_f64());
    println!("pods_per_s={:.1}", (stages + 1) as f64 / started.elapsed().as_secs_f64());
    Ok(())
}
