//! What the API server checks and fills in on a write: strict decoding into the k8s-openapi
//! type, object names and labels, and for Jobs the defaults and rules of batch/v1 (the selector
//! and its labels, `restartPolicy`, `podFailurePolicy`, what may change after creation).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret};
use serde_json::{Value, json};

use super::status::Refusal;
use super::store::Kind;
use super::strict::decode;

/// Checks and defaults a new object.
pub fn admit(kind: Kind, name: &str, object: Value) -> Result<Value, Refusal> {
    let mut object = decoded(kind, &object)?;
    let mut causes = Vec::new();
    check_name(kind, name, &mut causes);
    check_labels(&object["metadata"]["labels"], "metadata.labels", &mut causes);
    match kind {
        Kind::Job => admit_job(&mut object, &mut causes),
        Kind::Pod => {
            check_pod_spec(&object["spec"], "spec", &mut causes);
            object["status"] = json!({"phase": "Pending"});
        }
        Kind::Secret => {
            if let Some(strings) = object["stringData"].as_object().cloned() {
                for (key, value) in strings {
                    let bytes = k8s_openapi::ByteString(value.as_str().unwrap_or_default().as_bytes().to_vec());
                    object["data"][key] = serde_json::to_value(bytes).unwrap_or_default();
                }
                object.as_object_mut().map(|o| o.remove("stringData"));
            }
        }
        _ => {}
    }
    if !causes.is_empty() {
        return Err(Refusal::invalid(kind, name, &causes));
    }
    Ok(object)
}

/// Checks a changed object against the stored one.
pub fn admit_update(kind: Kind, name: &str, old: &Value, new: Value) -> Result<Value, Refusal> {
    let mut new = decoded(kind, &new)?;
    let mut causes = Vec::new();
    check_labels(&new["metadata"]["labels"], "metadata.labels", &mut causes);
    for field in ["uid", "creationTimestamp", "namespace"] {
        if new["metadata"][field].is_null() {
            new["metadata"][field] = old["metadata"][field].clone();
        }
    }
    if kind == Kind::Job {
        for field in [
            "completions",
            "template",
            "selector",
            "completionMode",
            "podFailurePolicy",
            "podReplacementPolicy",
            "backoffLimitPerIndex",
        ] {
            if new["spec"][field] != old["spec"][field] {
                causes.push(format!("spec.{field}: Invalid value: field is immutable"));
            }
        }
        if new["status"].is_null() {
            new["status"] = old["status"].clone();
        }
    }
    if !causes.is_empty() {
        return Err(Refusal::invalid(kind, name, &causes));
    }
    Ok(new)
}

fn decoded(kind: Kind, object: &Value) -> Result<Value, Refusal> {
    let result = match kind {
        Kind::Job => decode::<Job>(object).map(|(_, v)| v),
        Kind::Pod => decode::<Pod>(object).map(|(_, v)| v),
        Kind::Node => decode::<Node>(object).map(|(_, v)| v),
        Kind::Namespace => decode::<Namespace>(object).map(|(_, v)| v),
        Kind::Secret => decode::<Secret>(object).map(|(_, v)| v),
        Kind::ConfigMap => decode::<k8s_openapi::api::core::v1::ConfigMap>(object).map(|(_, v)| v),
        Kind::Event => decode::<Event>(object).map(|(_, v)| v),
    };
    result.map_err(Refusal::bad_request)
}

fn admit_job(job: &mut Value, causes: &mut Vec<String>) {
    let job_name = job["metadata"]["name"].clone();
    let spec = &mut job["spec"];
    let template = &spec["template"]["spec"];
    match template["restartPolicy"].as_str() {
        Some("Never" | "OnFailure") => {}
        other => causes.push(format!(
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\" (got {other:?})"
        )),
    }
    if !spec["podFailurePolicy"].is_null() && template["restartPolicy"] != "Never" {
        causes.push("spec.template.spec.restartPolicy: Invalid value: only \"Never\" is supported when podFailurePolicy is specified".into());
    }
    if spec["podReplacementPolicy"] == "TerminatingOrFailed" && !spec["podFailurePolicy"].is_null() {
        causes.push("spec.podReplacementPolicy: Not supported: \"TerminatingOrFailed\": must be Failed when podFailurePolicy is specified".into());
    }
    check_pod_spec(template, "spec.template.spec", causes);
    check_labels(&spec["template"]["metadata"]["labels"], "spec.template.metadata.labels", causes);
    for (field, default) in [
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
    ] {
        if spec[field].is_null() {
            spec[field] = default;
        }
    }
    if spec["parallelism"].is_null() {
        spec["parallelism"] = json!(1);
    }
    if spec["podReplacementPolicy"].is_null() {
        spec["podReplacementPolicy"] =
            json!(if spec["podFailurePolicy"].is_null() { "TerminatingOrFailed" } else { "Failed" });
    }
    let uid = format!("job-{}", super::writes::random_suffix());
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut spec["template"]["metadata"]["labels"];
    if labels.is_null() {
        *labels = json!({});
    }
    labels["batch.kubernetes.io/controller-uid"] = json!(uid);
    labels["controller-uid"] = json!(uid);
    labels["batch.kubernetes.io/job-name"] = job_name.clone();
    labels["job-name"] = job_name;
    job["status"] = json!({});
}

fn check_pod_spec(spec: &Value, place: &str, causes: &mut Vec<String>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(format!("{place}.containers: Required value"));
    }
    let init = spec["initContainers"].as_array().cloned().unwrap_or_default();
    let volumes: Vec<&str> =
        spec["volumes"].as_array().map(|v| v.iter().filter_map(|v| v["name"].as_str()).collect()).unwrap_or_default();
    for (list, containers) in [("initContainers", &init), ("containers", &containers)] {
        for (i, c) in containers.iter().enumerate() {
            let name = c["name"].as_str().unwrap_or_default();
            if !is_dns_label(name) {
                causes.push(format!("{place}.{list}[{i}].name: Invalid value: {name:?}"));
            }
            if c["image"].as_str().is_none_or(str::is_empty) {
                causes.push(format!("{place}.{list}[{i}].image: Required value"));
            }
            for (j, mount) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
                let volume = mount["name"].as_str().unwrap_or_default();
                if !volumes.contains(&volume) {
                    causes.push(format!("{place}.{list}[{i}].volumeMounts[{j}].name: Not found: {volume:?}"));
                }
            }
        }
    }
}

fn check_name(kind: Kind, name: &str, causes: &mut Vec<String>) {
    let ok = match kind {
        Kind::Job => is_dns_label(name),
        Kind::Namespace => is_dns_label(name),
        _ => !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label),
    };
    if !ok {
        causes.push(format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'"));
    }
}

fn check_labels(labels: &Value, place: &str, causes: &mut Vec<String>) {
    for (key, value) in labels.as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        let name = key.rsplit('/').next().unwrap_or_default();
        let ok_name = |s: &str| {
            s.len() <= 63
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
                && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
        };
        if name.is_empty() || !ok_name(name) {
            causes.push(format!(
                "{place}: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.'"
            ));
        }
        if !ok_name(value) {
            causes.push(format!("{place}: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and be at most 63 characters"));
        }
    }
}

/// An RFC 1123 label: at most 63 lowercase letters, digits and `-`, starting and ending alphanumeric.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
