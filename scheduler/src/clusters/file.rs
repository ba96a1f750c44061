//! Reading a clusters file: YAML with one key, `clusters`, a list of entries; unknown keys,
//! duplicate names and missing kubeconfig files are errors that name their place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_yaml::Value;

use super::{Access, ClusterConfig, ClusterImages, ClustersFile, DEFAULT_MAX_WORKERS, DEFAULT_NAMESPACE, SecretKey};
use crate::dag::{
    Errors, Fields, SpecError, SpecErrors, boolean, describe, integer, nonempty_string, parse_duration, parse_yaml,
    quote,
};
use crate::placement::DEFAULT_BURST_AFTER;

static CLUSTER_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[a-z0-9-]{1,63}$").ok());
static DNS_LABEL: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$").ok());

/// Most clusters in one file.
const MAX_CLUSTERS: usize = 100;

/// Reads and checks the clusters file at `path`; relative kubeconfig paths are relative to it.
/// Errors name the file and the place in it.
pub fn load_clusters(path: &Path) -> Result<ClustersFile, SpecErrors> {
    let place = path.display().to_string();
    let bytes = concurrent_mlflow::yaml_limits::read_file(path)
        .map_err(|e| SpecError::new(&place, format!("cannot read the clusters file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| SpecError::new(&place, "the clusters file is not UTF-8 text"))?;
    let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse_clusters(&text, base_dir, &|key| std::env::var(key).ok()).map_err(|errors| {
        SpecErrors(errors.0.into_iter().map(|e| SpecError::new(format!("{place}: {}", e.place), e.message)).collect())
    })
}

/// Parses clusters-file text; `env` stands for the environment (`KUBECONFIG`, `HOME`).
pub fn parse_clusters(
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClustersFile, SpecErrors> {
    let root = parse_yaml(text)?;
    let mut errors = Errors::default();
    let Some(mut top) = Fields::open(&mut errors, "", &root) else {
        return Err(SpecErrors(errors.0));
    };
    let mut clusters = Vec::new();
    match top.take("clusters") {
        None => errors.push("clusters", "required: a list of clusters"),
        Some(Value::Sequence(entries)) if entries.is_empty() => {
            errors.push("clusters", "must name at least one cluster")
        }
        Some(Value::Sequence(entries)) if entries.len() > MAX_CLUSTERS => {
            errors.push("clusters", format!("at most {MAX_CLUSTERS} clusters, found {}", entries.len()))
        }
        Some(Value::Sequence(entries)) => {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for (i, entry) in entries.iter().enumerate() {
                let place = format!("clusters[{i}]");
                if let Some(cluster) = read_cluster(&mut errors, &place, entry, base_dir, env) {
                    if let Some(first) = seen.get(&cluster.name) {
                        errors.push(
                            format!("{place}.name"),
                            format!("duplicate cluster name {} (also clusters[{first}])", quote(&cluster.name)),
                        );
                    } else {
                        seen.insert(cluster.name.clone(), i);
                        clusters.push(cluster);
                    }
                }
            }
        }
        Some(other) => errors.push("clusters", format!("expected a list of clusters, found {}", describe(other))),
    }
    top.finish(&mut errors);
    if errors.0.is_empty() { Ok(ClustersFile { clusters }) } else { Err(SpecErrors(errors.0)) }
}

fn read_cluster(
    errors: &mut Errors,
    place: &str,
    v: &Value,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ClusterConfig> {
    let before = errors.0.len();
    let mut f = Fields::open(errors, place, v)?;
    let name = match f.take("name") {
        Some(v) => nonempty_string(errors, &f.place_of("name"), v).filter(|n| {
            let ok = CLUSTER_NAME.as_ref().is_some_and(|re| re.is_match(n));
            if !ok {
                errors.push(f.place_of("name"), format!("must match [a-z0-9-]{{1,63}}, found {}", quote(n)));
            }
            ok
        }),
        None => {
            errors.push(f.place_of("name"), "required");
            None
        }
    };
    let in_cluster = f.take("in_cluster").and_then(|v| boolean(errors, &f.place_of("in_cluster"), v)).unwrap_or(false);
    let kubeconfig = f.take("kubeconfig").and_then(|v| nonempty_string(errors, &f.place_of("kubeconfig"), v));
    let context = f.take("context").and_then(|v| nonempty_string(errors, &f.place_of("context"), v));
    let access = if in_cluster {
        for (given, key) in [(kubeconfig.is_some(), "kubeconfig"), (context.is_some(), "context")] {
            if given {
                errors.push(f.place_of(key), "not allowed with in_cluster: true");
            }
        }
        Access::InCluster
    } else {
        let path = match kubeconfig {
            Some(p) => Some(base_dir.join(p)),
            None => super::default_kubeconfig(env),
        };
        match path {
            Some(path) if path.is_file() => Access::Kubeconfig { path, context },
            Some(path) => {
                errors.push(f.place_of("kubeconfig"), format!("no such file: {}", path.display()));
                Access::Kubeconfig { path, context }
            }
            None => {
                errors.push(f.place_of("kubeconfig"), "required: neither KUBECONFIG nor HOME is set");
                Access::Kubeconfig { path: PathBuf::new(), context }
            }
        }
    };
    let namespace = f
        .take("namespace")
        .and_then(|v| dns_label(errors, &f.place_of("namespace"), v))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let max_workers = f
        .take("max_workers")
        .and_then(|v| integer(errors, &f.place_of("max_workers"), v, "a positive integer", 1, 100_000))
        .unwrap_or(DEFAULT_MAX_WORKERS);
    let burst_after = match f.take("burst_after") {
        Some(Value::String(text)) => parse_duration(text).map_err(|m| errors.push(f.place_of("burst_after"), m)).ok(),
        Some(other) => {
            errors.push(
                f.place_of("burst_after"),
                format!("{}, found {}", concurrent_mlflow::duration::DurationError::NotADuration, describe(other)),
            );
            None
        }
        None => None,
    }
    .unwrap_or(DEFAULT_BURST_AFTER);
    let node_selector =
        f.take("node_selector").map(|v| string_map(errors, &f.place_of("node_selector"), v)).unwrap_or_default();
    let tolerations =
        f.take("tolerations").map(|v| tolerations(errors, &f.place_of("tolerations"), v)).unwrap_or_default();
    let service_account = f.take("service_account").and_then(|v| dns_label(errors, &f.place_of("service_account"), v));
    let image_pull_secrets = match f.take("image_pull_secrets") {
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| dns_label(errors, &format!("{}[{i}]", f.place_of("image_pull_secrets")), v))
            .collect(),
        Some(other) => {
            errors.push(
                f.place_of("image_pull_secrets"),
                format!("expected a list of Secret names, found {}", describe(other)),
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let worker_image = f
        .take("worker_image")
        .and_then(|v| nonempty_string(errors, &f.place_of("worker_image"), v))
        .unwrap_or_else(super::default_worker_image);
    let nats_url =
        f.take("nats_url").and_then(|v| url(errors, &f.place_of("nats_url"), v, &["nats", "tls", "ws", "wss"]));
    let nats_url_secret = f.take("nats_url_secret").and_then(|v| secret_key(errors, &f.place_of("nats_url_secret"), v));
    let mlflow_tracking_uri = f
        .take("mlflow_tracking_uri")
        .and_then(|v| url(errors, &f.place_of("mlflow_tracking_uri"), v, &["http", "https"]));
    let mlflow_token_secret =
        f.take("mlflow_token_secret").and_then(|v| secret_key(errors, &f.place_of("mlflow_token_secret"), v));
    let images = f.take("images").and_then(|v| cluster_images(errors, &f.place_of("images"), v));
    f.finish(errors);
    if errors.0.len() > before {
        return None;
    }
    Some(ClusterConfig {
        name: name?,
        access,
        namespace,
        max_workers,
        burst_after,
        node_selector,
        tolerations,
        service_account,
        image_pull_secrets,
        worker_image,
        nats_url,
        nats_url_secret,
        mlflow_tracking_uri,
        mlflow_token_secret,
        images,
    })
}

fn cluster_images(errors: &mut Errors, place: &str, v: &Value) -> Option<ClusterImages> {
    let before = errors.0.len();
    let defaults = crate::images::ImageSettings::default();
    let builder = crate::images::BuildJobSettings::default();
    let mut f = Fields::open(errors, place, v)?;
    let registry = match f.take("registry") {
        Some(v) => nonempty_string(errors, &f.place_of("registry"), v).filter(|registry| {
            // A host (with its port) and a path, as in image references: no scheme, no
            // credentials, no spaces.
            let ok = !registry.contains("://")
                && !registry.contains('@')
                && !registry.ends_with('/')
                && !registry.chars().any(char::is_whitespace);
            if !ok {
                errors.push(
                    f.place_of("registry"),
                    format!(
                        "expected a registry host and path such as registry.example.com/ml, found {}",
                        quote(registry)
                    ),
                );
            }
            ok
        }),
        None => {
            errors
                .push(f.place_of("registry"), "required: where built images are pushed, e.g. registry.example.com/ml");
            None
        }
    };
    let text = |errors: &mut Errors, f: &mut Fields, key: &str, default: String| {
        f.take(key).and_then(|v| nonempty_string(errors, &f.place_of(key), v)).unwrap_or(default)
    };
    let repository = text(errors, &mut f, "repository", defaults.repository);
    let builder_image = text(errors, &mut f, "builder_image", builder.builder_image);
    let base_image = text(errors, &mut f, "base_image", defaults.base_image);
    let push_secret = f.take("push_secret").and_then(|v| dns_label(errors, &f.place_of("push_secret"), v));
    let insecure = f.take("insecure").and_then(|v| boolean(errors, &f.place_of("insecure"), v)).unwrap_or(false);
    f.finish(errors);
    if errors.0.len() > before {
        return None;
    }
    Some(ClusterImages { registry: registry?, repository, push_secret, insecure, builder_image, base_image })
}

fn dns_label(errors: &mut Errors, place: &str, v: &Value) -> Option<String> {
    let text = nonempty_string(errors, place, v)?;
    if !DNS_LABEL.as_ref().is_some_and(|re| re.is_match(&text)) {
        errors.push(
            place,
            format!(
                "must be a Kubernetes name ([a-z0-9-], at most 63, starting and ending alphanumeric), found {}",
                quote(&text)
            ),
        );
        return None;
    }
    Some(text)
}

fn url(errors: &mut Errors, place: &str, v: &Value, schemes: &[&str]) -> Option<String> {
    let text = nonempty_string(errors, place, v)?;
    match url::Url::parse(&text) {
        Ok(parsed) if schemes.contains(&parsed.scheme()) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                errors.push(place, "must not hold credentials: put the URL with them in a Secret (the *_secret keys)");
                return None;
            }
            Some(text)
        }
        _ => {
            errors.push(place, format!("expected a {} URL, found {}", schemes.join("/"), quote(&text)));
            None
        }
    }
}

fn secret_key(errors: &mut Errors, place: &str, v: &Value) -> Option<SecretKey> {
    let mut f = Fields::open(errors, place, v)?;
    let name = match f.take("name") {
        Some(v) => dns_label(errors, &f.place_of("name"), v),
        None => {
            errors.push(f.place_of("name"), "required: the Secret's name");
            None
        }
    };
    let key = match f.take("key") {
        Some(v) => nonempty_string(errors, &f.place_of("key"), v),
        None => {
            errors.push(f.place_of("key"), "required: the key in the Secret");
            None
        }
    };
    f.finish(errors);
    Some(SecretKey { name: name?, key: key? })
}

fn string_map(errors: &mut Errors, place: &str, v: &Value) -> BTreeMap<String, String> {
    let Some(f) = Fields::open(errors, place, v) else { return BTreeMap::new() };
    let mut map = BTreeMap::new();
    for (key, value) in f.all() {
        match value {
            Value::String(s) => {
                map.insert(key.to_string(), s.clone());
            }
            other => errors.push(format!("{place}.{key}"), format!("expected a string, found {}", describe(other))),
        }
    }
    map
}

fn tolerations(errors: &mut Errors, place: &str, v: &Value) -> Vec<k8s_openapi::api::core::v1::Toleration> {
    let Value::Sequence(items) = v else {
        errors.push(place, format!("expected a list of tolerations, found {}", describe(v)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let place = format!("{place}[{i}]");
        let Some(mut f) = Fields::open(errors, &place, item) else { continue };
        let mut text = |f: &mut Fields, key: &str, allowed: &[&str]| -> Option<String> {
            let value = nonempty_string(errors, &f.place_of(key), f.take(key)?)?;
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                errors
                    .push(f.place_of(key), format!("expected one of {}, found {}", allowed.join(", "), quote(&value)));
                return None;
            }
            Some(value)
        };
        let key = text(&mut f, "key", &[]);
        let operator = text(&mut f, "operator", &["Exists", "Equal"]);
        let value = text(&mut f, "value", &[]);
        let effect = text(&mut f, "effect", &["NoSchedule", "PreferNoSchedule", "NoExecute"]);
        let toleration_seconds = f
            .take("toleration_seconds")
            .and_then(|v| {
                integer(errors, &f.place_of("toleration_seconds"), v, "a number of seconds", 0, u32::MAX.into())
            })
            .map(i64::from);
        f.finish(errors);
        out.push(k8s_openapi::api::core::v1::Toleration { key, operator, value, effect, toleration_seconds });
    }
    out
}

/// The names among `wanted` (a stage's `clusters:`) that the file does not hold.
pub fn unknown_clusters<'a>(file: &ClustersFile, wanted: impl IntoIterator<Item = &'a String>) -> BTreeSet<&'a str> {
    wanted.into_iter().filter(|w| file.get(w).is_none()).map(String::as_str).collect()
}
