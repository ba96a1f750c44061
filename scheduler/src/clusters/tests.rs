use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str, dir: &Path) -> Result<ClustersFile, Vec<String>> {
    let env = |key: &str| match key {
        "HOME" => Some(dir.join("home").display().to_string()),
        _ => None,
    };
    parse_clusters(text, dir, &env).map_err(|e| e.lines())
}

fn dir_with_kubeconfigs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.kubeconfig"), "apiVersion: v1\nkind: Config\n").unwrap();
    std::fs::write(dir.path().join("b.kubeconfig"), "apiVersion: v1\nkind: Config\n").unwrap();
    dir
}

#[test]
fn reads_the_documented_shape() {
    let dir = dir_with_kubeconfigs();
    let text = "clusters:
  - name: onprem
    kubeconfig: ./a.kubeconfig
    context: onprem
    namespace: concurrent
    max_workers: 20
    burst_after: 30s
    node_selector: {pool: batch}
    tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
    service_account: concurrent-worker
    image_pull_secrets: [regcred]
    nats_url: nats://nats.example:4222
    mlflow_tracking_uri: http://mlflow.example
    mlflow_token_secret: {name: mlflow, key: token}
    worker_image: concurrent:0.1.0
    images: {registry: registry.example.com/ml, push_secret: registry-push}
  - name: eks
    kubeconfig: b.kubeconfig
    burst_after: 500ms
    nats_url_secret: {name: nats, key: url}
  - name: here
    in_cluster: true
";
    let file = parse(text, dir.path()).unwrap();
    let names: Vec<&str> = file.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["onprem", "eks", "here"]);
    let onprem = &file.clusters[0];
    assert_eq!(
        onprem.access,
        Access::Kubeconfig { path: dir.path().join("./a.kubeconfig"), context: Some("onprem".into()) }
    );
    assert_eq!(
        (onprem.namespace.as_str(), onprem.max_workers, onprem.burst_after),
        ("concurrent", 20, Duration::from_secs(30))
    );
    assert_eq!(onprem.node_selector.get("pool").map(String::as_str), Some("batch"));
    assert_eq!(onprem.tolerations[0].operator.as_deref(), Some("Exists"));
    assert_eq!(onprem.mlflow_token_secret, Some(SecretKey { name: "mlflow".into(), key: "token".into() }));
    let images = onprem.images.as_ref().expect("images");
    assert_eq!(
        (images.registry.as_str(), images.repository.as_str()),
        ("registry.example.com/ml", "concurrent-projects")
    );
    assert_eq!((images.push_secret.as_deref(), images.insecure), (Some("registry-push"), false));
    assert_eq!(images.builder_image, "docker.io/moby/buildkit:rootless");
    let eks = &file.clusters[1];
    assert_eq!(
        (eks.namespace.as_str(), eks.max_workers, eks.burst_after),
        ("default", DEFAULT_MAX_WORKERS, Duration::from_millis(500))
    );
    assert_eq!(eks.worker_image, default_worker_image());
    assert_eq!(file.clusters[2].access, Access::InCluster);
}

#[test]
fn every_error_names_its_place() {
    let dir = dir_with_kubeconfigs();
    let cases: &[(&str, &[&str])] = &[
        ("clusters: []\n", &["clusters: must name at least one cluster"]),
        ("cluster: []\n", &["clusters: required: a list of clusters", "cluster: unknown field"]),
        (
            "clusters:\n  - name: a\n    kubeconfig: a.kubeconfig\n    max_worker: 3\n",
            &["clusters[0].max_worker: unknown field"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig}\n  - {name: a, kubeconfig: b.kubeconfig}\n",
            &["clusters[1].name: duplicate cluster name \"a\" (also clusters[0])"],
        ),
        (
            "clusters:\n  - {name: Big_Name, kubeconfig: a.kubeconfig}\n",
            &["clusters[0].name: must match [a-z0-9-]{1,63}, found \"Big_Name\""],
        ),
        ("clusters:\n  - {name: a, kubeconfig: nope.kubeconfig}\n", &["clusters[0].kubeconfig: no such file: "]),
        ("clusters:\n  - {name: a}\n", &["clusters[0].kubeconfig: no such file: "]),
        (
            "clusters:\n  - {name: a, in_cluster: true, context: x}\n",
            &["clusters[0].context: not allowed with in_cluster: true"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, burst_after: soon}\n",
            &["clusters[0].burst_after: expected a duration like 10m, 30s, 1h30m or 500ms, found \"soon\""],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, burst_after: 30}\n",
            &["clusters[0].burst_after: expected a duration like 10m, 30s, 1h30m or 500ms, found 30"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, max_workers: 0}\n",
            &["clusters[0].max_workers: must be at least 1"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, nats_url: \"nats://u:p@h:4222\"}\n",
            &["clusters[0].nats_url: must not hold credentials: put the URL with them in a Secret (the *_secret keys)"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, mlflow_token_secret: {name: m}}\n",
            &["clusters[0].mlflow_token_secret.key: required: the key in the Secret"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, tolerations: [{operator: Maybe}]}\n",
            &["clusters[0].tolerations[0].operator: expected one of Exists, Equal, found \"Maybe\""],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, namespace: Work}\n",
            &["clusters[0].namespace: must be a Kubernetes name"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, images: {push_secret: x}}\n",
            &["clusters[0].images.registry: required: where built images are pushed"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, images: {registry: \"https://r.example/ml\"}}\n",
            &["clusters[0].images.registry: expected a registry host and path such as registry.example.com/ml"],
        ),
        (
            "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, images: {registry: r.example, insecure: sometimes}}\n",
            &["clusters[0].images.insecure: expected true or false"],
        ),
    ];
    for (text, expected) in cases {
        let errors = parse(text, dir.path()).expect_err(text);
        assert_eq!(errors.len(), expected.len(), "{text}: {errors:?}");
        for (error, expected) in errors.iter().zip(*expected) {
            assert!(error.starts_with(expected), "{text}: {error:?} should start with {expected:?}");
        }
    }
}

#[test]
fn the_default_kubeconfig_is_kubeconfig_then_home() {
    let env = |key: &str| match key {
        "KUBECONFIG" => Some("/k/one:/k/two".to_string()),
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    };
    assert_eq!(default_kubeconfig(&env), Some("/k/one".into()));
    let home_only = |key: &str| (key == "HOME").then(|| "/home/u".to_string());
    assert_eq!(default_kubeconfig(&home_only), Some("/home/u/.kube/config".into()));
}

#[test]
fn a_file_error_names_the_file() {
    let dir = dir_with_kubeconfigs();
    let path = dir.path().join("clusters.yaml");
    std::fs::write(&path, "clusters:\n  - {name: a, kubeconfig: a.kubeconfig, extra: 1}\n").unwrap();
    let errors = load_clusters(&path).unwrap_err().lines();
    assert_eq!(errors, [format!("{}: clusters[0].extra: unknown field", path.display())]);
    assert!(
        load_clusters(&dir.path().join("missing.yaml")).unwrap_err().lines()[0]
            .contains("cannot read the clusters file")
    );
}
