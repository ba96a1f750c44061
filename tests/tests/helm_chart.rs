//! The Helm chart `charts/concurrent`: `helm lint`, `helm template` with the default values and
//! with a values file setting every option (`ci/all-options-values.yaml`), every rendered
//! manifest through `kubernetes-validate --strict -k 1.37.0`, what the chart grants, and values
//! that break `values.schema.json` refused with the key named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context as _;
use concurrent_tests::{find_tool, workspace_bin, workspace_dir};
use serde::Deserialize as _;
use serde_yaml::Value;

fn chart() -> PathBuf {
    workspace_dir().join("charts/concurrent")
}

fn all_options() -> PathBuf {
    chart().join("ci/all-options-values.yaml")
}

fn helm(args: &[&str], values: Option<&Path>) -> anyhow::Result<Output> {
    let mut command = Command::new(find_tool("helm").context("run scripts/setup.sh")?);
    command.args(args);
    if let Some(file) = values {
        command.arg("--values").arg(file);
    }
    Ok(command.env("HELM_CACHE_HOME", std::env::temp_dir().join("concurrent-helm-cache")).output()?)
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `helm template` in namespace `ml`: the manifests' text and the documents.
fn render(values: Option<&Path>) -> anyhow::Result<(String, Vec<Value>)> {
    let chart = chart();
    let output = helm(&["template", "concurrent", chart.to_str().context("path")?, "--namespace", "ml"], values)?;
    anyhow::ensure!(output.status.success(), "helm template failed:\n{}", text(&output));
    let manifests = String::from_utf8(output.stdout)?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&manifests) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok((manifests, documents))
}

fn validate(manifests: &str) -> anyhow::Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, manifests)?;
    let tool = find_tool("kubernetes-validate").context("run scripts/setup.sh")?;
    let output = Command::new(tool).args(["--strict", "-k", "1.37.0"]).arg(&file).output()?;
    Ok((output.status.success(), text(&output)))
}

fn kinds(documents: &[Value]) -> BTreeSet<String> {
    documents.iter().filter_map(|d| d["kind"].as_str().map(str::to_string)).collect()
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

#[test]
fn the_chart_lints_clean_with_default_and_every_option() -> anyhow::Result<()> {
    let chart = chart();
    let path = chart.to_str().context("path")?;
    for values in [None, Some(all_options().as_path())] {
        let output = helm(&["lint", "--strict", path], values)?;
        assert!(output.status.success(), "helm lint {values:?}:\n{}", text(&output));
        assert!(text(&output).contains("1 chart(s) linted, 0 chart(s) failed"), "{}", text(&output));
    }
    Ok(())
}

#[test]
fn the_default_install_runs_serve_with_its_own_cluster_and_least_privilege() -> anyhow::Result<()> {
    let (manifests, documents) = render(None)?;
    let (ok, report) = validate(&manifests)?;
    assert!(ok, "kubernetes-validate:\n{report}");
    assert_eq!(report.matches(" passed for resource ").count(), documents.len(), "{report}");
    assert_eq!(
        kinds(&documents),
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into(),
        "nothing cluster-wide by default"
    );

    let deployment = find(&documents, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(deployment["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    let args = strings(&container["args"]);
    for expected in [
        "serve",
        "--listen=0.0.0.0:7733",
        "--token-file=/etc/concurrent/tokens/tokens",
        "--state-dir=/var/lib/concurrent",
        "--clusters=/etc/concurrent/clusters/clusters.yaml",
    ] {
        assert!(args.contains(&expected.to_string()), "{expected} in {args:?}");
    }
    let state = pod["volumes"].as_sequence().into_iter().flatten().find(|v| v["name"].as_str() == Some("state"));
    assert_eq!(
        state.and_then(|v| v["persistentVolumeClaim"]["claimName"].as_str()),
        Some("concurrent-state"),
        "sled on the PVC"
    );

    let clusters = find(&documents, "ConfigMap")["data"]["clusters.yaml"].as_str().context("clusters.yaml")?;
    let clusters: Value = serde_yaml::from_str(clusters)?;
    let only = &clusters["clusters"][0];
    assert_eq!(only["in_cluster"].as_bool(), Some(true), "{clusters:?}");
    assert_eq!(only["namespace"].as_str(), Some("ml"));
    assert!(clusters["clusters"][1].is_null(), "one cluster");

    let role = find(&documents, "Role");
    let mut granted = Vec::new();
    for rule in role["rules"].as_sequence().context("rules")? {
        for resource in strings(&rule["resources"]) {
            granted.push(format!("{resource}: {}", strings(&rule["verbs"]).join(",")));
        }
    }
    assert_eq!(
        granted,
        ["jobs: get,list,watch,create,patch,delete", "pods: get,list,watch,delete", "pods/log: get"],
        "no Secrets, no ConfigMaps without image builds"
    );
    let tokens = find(&documents, "Secret");
    assert!(tokens["data"]["tokens"].as_str().is_some_and(|t| !t.is_empty()), "a token is generated");
    Ok(())
}

#[test]
fn every_option_renders_valid_manifests() -> anyhow::Result<()> {
    let (manifests, documents) = render(Some(&all_options()))?;
    let (ok, report) = validate(&manifests)?;
    assert!(ok, "kubernetes-validate:\n{report}");
    assert_eq!(report.matches(" passed for resource ").count(), documents.len(), "{report}");
    assert!(kinds(&documents).is_superset(&["ClusterRole", "ClusterRoleBinding"].map(String::from).into()));

    let role = find(&documents, "Role");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("ml-workers"), "the Role lives in the workers' namespace");
    let resources: Vec<String> =
        role["rules"].as_sequence().into_iter().flatten().flat_map(|rule| strings(&rule["resources"])).collect();
    assert!(resources.contains(&"configmaps".to_string()), "image builds need ConfigMaps: {resources:?}");
    assert!(!resources.contains(&"secrets".to_string()), "{resources:?}");
    let binding = find(&documents, "RoleBinding");
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("ml"));
    let deployment = find(&documents, "Deployment");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    for expected in
        ["--tls-cert=/etc/concurrent/tls/tls.crt", "--max-workers=64", "--project-root=/var/lib/concurrent/projects"]
    {
        assert!(args.contains(&expected.to_string()), "{expected} in {args:?}");
    }
    let clusters = find(&documents, "ConfigMap")["data"]["clusters.yaml"].as_str().context("clusters.yaml")?;
    assert!(clusters.contains("name: eks"), "the given clusters file: {clusters}");
    let tokens = documents
        .iter()
        .find(|d| d["kind"].as_str() == Some("Secret"))
        .and_then(|d| d["data"]["tokens"].as_str())
        .context("tokens")?;
    assert_eq!(tokens, "YWxpY2U6M2Y5YTdjMjFlNWI4NGQwYzllCmNpLW5pZ2h0bHk6NzdjMGQyYjFhOWU0NGYxM2FhCg==");
    Ok(())
}

#[test]
fn values_that_break_the_schema_are_refused_with_the_key_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let chart = chart();
    let path = chart.to_str().context("path")?;
    for (values, key) in [
        ("workers:\n  burstAfter: 30\n", "/workers/burstAfter"),
        ("nats:\n  url: http://nats:4222\n", "/nats/url"),
        ("persistance:\n  enabled: false\n", "'persistance'"),
        ("rbac:\n  nodeCapacity: \"yes\"\n", "/rbac/nodeCapacity"),
        ("auth:\n  tokens:\n    - name: alice\n      token: short\n", "/auth/tokens/0/token"),
    ] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, values)?;
        for verb in ["template", "lint"] {
            let output = helm(&[verb, path], Some(&file))?;
            assert!(!output.status.success(), "helm {verb} accepted {values:?}");
            assert!(text(&output).contains(key), "helm {verb} does not name {key}:\n{}", text(&output));
        }
    }
    Ok(())
}

#[test]
fn the_clusters_file_the_chart_writes_is_one_the_scheduler_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "nats: {credentialsSecret: nats-url}\nmlflow: {tokenSecret: {name: mlflow-token, key: token}}\nworkers:\n  imagePullSecrets: [regcred]\n  nodeSelector: {pool: cpu}\n  tolerations: [{key: spot, operator: Exists, effect: NoSchedule}]\nimages: {registry: registry.example.com/ml, pushSecret: registry-push}\n",
    )?;
    for values in [None, Some(values.as_path())] {
        let (_, documents) = render(values)?;
        let config = documents
            .iter()
            .find(|d| d["kind"].as_str() == Some("ConfigMap") && !d["data"]["clusters.yaml"].is_null())
            .expect("the clusters ConfigMap");
        let file = dir.path().join("clusters.yaml");
        std::fs::write(&file, config["data"]["clusters.yaml"].as_str().unwrap())?;
        let out = Command::new(workspace_bin("concurrent")).arg("clusters").arg("--clusters").arg(&file).output()?;
        // Read without an error; the in-cluster cluster cannot be reached from here (exit 3).
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("error:"), "{}", text(&out));
        let written = config["data"]["clusters.yaml"].as_str().unwrap();
        if values.is_some() {
            assert!(written.contains("registry: registry.example.com/ml"), "built images go there: {written}");
            assert!(written.contains("push_secret: registry-push"), "{written}");
        } else {
            assert!(!written.contains("images:"), "no registry, no builds: {written}");
        }
    }
    Ok(())
}
