use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;

use super::manifest::*;
use crate::clusters::{Access, ClusterConfig, SecretKey, default_worker_image};
use crate::dag::Resources;

fn bare_cluster() -> ClusterConfig {
    ClusterConfig {
        name: "onprem".into(),
        access: Access::InCluster,
        namespace: "default".into(),
        max_workers: 10,
        burst_after: Duration::from_secs(30),
        node_selector: Default::default(),
        tolerations: Vec::new(),
        service_account: None,
        image_pull_secrets: Vec::new(),
        worker_image: default_worker_image(),
        nats_url: None,
        nats_url_secret: None,
        mlflow_tracking_uri: None,
        mlflow_token_secret: None,
        images: None,
    }
}

fn full_cluster() -> ClusterConfig {
    ClusterConfig {
        name: "gpu-pool-2".into(),
        access: Access::Kubeconfig { path: PathBuf::from("k"), context: Some("c".into()) },
        namespace: "concurrent".into(),
        node_selector: [("pool".to_string(), "batch".to_string())].into(),
        tolerations: vec![Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
        service_account: Some("concurrent-worker".into()),
        image_pull_secrets: vec!["regcred".into()],
        worker_image: "registry.example/concurrent:0.1.0".into(),
        nats_url_secret: Some(SecretKey { name: "nats".into(), key: "url".into() }),
        mlflow_tracking_uri: Some("http://mlflow.example".into()),
        mlflow_token_secret: Some(SecretKey { name: "mlflow".into(), key: "token".into() }),
        images: None,
        ..bare_cluster()
    }
}

/// Every shape of Job the executor makes: bare and fully configured clusters, each kind of
/// resources, stage names that are and are not valid label values.
fn every_job() -> Vec<serde_json::Value> {
    let clusters = [bare_cluster(), full_cluster()];
    let resources = [
        Resources::default(),
        Resources { cpu: Some("500m".into()), memory: Some("2Gi".into()), gpu: 0 },
        Resources { cpu: Some("2".into()), memory: None, gpu: 1 },
    ];
    let stages = ["thumbnails", "a_", "x".repeat(63).leak() as &str, "st_age-9"];
    let mut jobs = Vec::new();
    for cluster in &clusters {
        for resources in &resources {
            for stage in stages {
                let job = WorkerJob {
                    run_id: "mj3k2a9x0abc",
                    stage,
                    cluster,
                    image: "python:3.12-slim",
                    resources,
                    workers: 3,
                    sequence: 12,
                    default_nats_url: "nats://10.0.0.1:4222",
                    idle_timeout: Duration::from_secs(5),
                    env_in_image: stage == "a_",
                };
                job.manifest().expect("the manifest decodes as a Job");
                jobs.push(job.value());
            }
        }
    }
    jobs
}

#[test]
fn every_job_passes_the_official_schemas_strictly() {
    let tool =
        concurrent_tests::find_tool("kubernetes-validate").expect("kubernetes-validate (scripts/setup.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, job) in every_job().iter().enumerate() {
        let path = dir.path().join(format!("job-{i}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(job).unwrap()).unwrap();
        files.push(path);
    }
    let output = Command::new(tool).args(["--strict", "-k", "1.37.0", "--quiet"]).args(&files).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate refused a manifest:\n{said}");
    // It does check: an unknown field is refused.
    let mut bad = every_job().remove(0);
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = serde_json::json!("Always");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let output = Command::new(concurrent_tests::find_tool("kubernetes-validate").unwrap())
        .args(["--strict", "-k", "1.37.0", "--quiet"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "an unknown field must be refused");
}

#[test]
fn a_job_is_what_the_design_says() {
    for job in every_job() {
        let spec = &job["spec"];
        assert_eq!(spec["parallelism"], spec["completions"], "the scheduler owns scaling: completions = parallelism");
        assert_eq!(spec["podReplacementPolicy"], "Failed");
        assert_eq!(spec["podFailurePolicy"]["rules"][0]["action"], "Ignore");
        assert_eq!(spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"], "DisruptionTarget");
        assert!(spec["ttlSecondsAfterFinished"].as_u64().is_some());
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["command"][0], "/concurrent/bin/concurrent-worker");
        assert_eq!(pod["initContainers"][0]["volumeMounts"][0]["mountPath"], "/concurrent/bin");
        let name = job["metadata"]["name"].as_str().unwrap();
        assert!(
            name.len() <= 63 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name}"
        );
        assert_eq!(job["metadata"]["labels"][RUN_LABEL], "mj3k2a9x0abc");
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], job["metadata"]["labels"]);
        // Nothing secret is inline: NATS credentials and the MLflow token come from Secrets.
        for var in pod["containers"][0]["env"].as_array().unwrap() {
            if var["name"] == "MLFLOW_TRACKING_TOKEN" {
                assert!(var["value"].is_null() && !var["valueFrom"]["secretKeyRef"].is_null());
            }
        }
    }
    let full = &every_job()[12 + 4];
    let container = &full["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["requests"]["cpu"], "500m");
    assert_eq!(container["resources"]["limits"]["memory"], "2Gi");
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(|v| v["name"] == "NATS_URL" && v["valueFrom"]["secretKeyRef"]["name"] == "nats"));
    // The cluster's own MLflow address reaches the worker, which uses it instead of the stage's.
    assert!(
        env.iter().any(|v| v["name"] == "CONCURRENT_MLFLOW_TRACKING_URI" && v["value"] == "http://mlflow.example"),
        "{env:?}"
    );
    let gpu = &every_job()[8]["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!((&gpu["requests"]["nvidia.com/gpu"], &gpu["limits"]["nvidia.com/gpu"]), (&"1".into(), &"1".into()));
}

#[test]
fn stage_labels_are_valid_label_values() {
    assert_eq!(stage_label("r", "thumbnails"), "thumbnails");
    let odd = stage_label("r", "a_");
    assert!(odd.starts_with('h') && odd.len() == 9, "{odd}");
    assert_ne!(stage_label("r", "a_"), stage_label("r", "b_"));
}
