//! Create, replace, patch and delete, with the API server's checks: strict decoding, the
//! namespace of the URL, names, 409 on a name taken or a stale resource version, and deletion
//! propagation (Jobs orphan their Pods unless asked otherwise, as in batch/v1).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::Cluster;
use super::api::{Selection, namespace_exists};
use super::status::{Refusal, deleted};
use super::store::{Kind, Store, WriteError, now_rfc3339};
use super::validate;

type Answer = Result<(axum::http::StatusCode, Json<Value>), Refusal>;

/// POST: a new object.
pub fn create(
    State(cluster): State<Arc<Cluster>>,
    kind: Kind,
    ns: String,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let mut object: Value = serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("json: {e}")))?;
    check_kind(kind, &object)?;
    if kind.namespaced() {
        match object["metadata"]["namespace"].as_str() {
            Some(given) if given != ns => {
                return Err(Refusal::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
    }
    if object["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        object["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix()));
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let object = validate::admit(kind, &name, object)?;
    let mut store = cluster.store.lock().expect("store");
    if kind.namespaced() {
        namespace_exists(&store, &ns)?;
    }
    if query.get("dryRun").is_some_and(|d| d == "All") {
        return Ok((axum::http::StatusCode::CREATED, Json(object)));
    }
    let stored = store.create(kind, &ns, object).map_err(|e| refusal(kind, &name, e))?;
    drop(store);
    cluster.kick.notify_one();
    Ok((axum::http::StatusCode::CREATED, Json(stored)))
}

/// PUT: the whole object again, refused when its resourceVersion is stale.
pub fn replace(
    State(cluster): State<Arc<Cluster>>,
    kind: Kind,
    ns: String,
    name: String,
    _query: Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let object: Value = serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("json: {e}")))?;
    check_kind(kind, &object)?;
    if object["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(Refusal::bad_request("the name of the object does not match the name on the URL"));
    }
    let expect_rv = object["metadata"]["resourceVersion"].as_str().map(str::to_string);
    let mut store = cluster.store.lock().expect("store");
    let old = store.get(kind, &ns, &name).cloned().ok_or_else(|| Refusal::not_found(kind, &name))?;
    let object = validate::admit_update(kind, &name, &old, object)?;
    let stored = store.update(kind, &ns, object, expect_rv.as_deref()).map_err(|e| refusal(kind, &name, e))?;
    drop(store);
    cluster.kick.notify_one();
    Ok((axum::http::StatusCode::OK, Json(stored)))
}

/// PATCH: JSON merge patch (strategic merge patches are read as merge patches, which is the
/// same for the fields the fake's clients patch).
pub fn patch(
    State(cluster): State<Arc<Cluster>>,
    kind: Kind,
    ns: String,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/merge-patch+json")
        && !content_type.starts_with("application/strategic-merge-patch+json")
    {
        return Err(Refusal::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"
        )));
    }
    let patch: Value = serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("json: {e}")))?;
    let mut store = cluster.store.lock().expect("store");
    let old = store.get(kind, &ns, &name).cloned().ok_or_else(|| Refusal::not_found(kind, &name))?;
    let mut object = old.clone();
    merge(&mut object, &patch);
    let object = validate::admit_update(kind, &name, &old, object)?;
    let stored = store.update(kind, &ns, object, None).map_err(|e| refusal(kind, &name, e))?;
    drop(store);
    cluster.kick.notify_one();
    Ok((axum::http::StatusCode::OK, Json(stored)))
}

/// DELETE of one object.
pub fn delete(
    State(cluster): State<Arc<Cluster>>,
    kind: Kind,
    ns: String,
    name: String,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let propagation = propagation(&query, &body)?;
    let mut store = cluster.store.lock().expect("store");
    let answer = delete_one(&cluster, &mut store, kind, &ns, &name, propagation.as_deref())?;
    drop(store);
    cluster.kick.notify_one();
    Ok((axum::http::StatusCode::OK, Json(answer)))
}

/// DELETE of every object a selector matches in a namespace.
pub fn delete_collection(
    State(cluster): State<Arc<Cluster>>,
    kind: Kind,
    ns: String,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let propagation = propagation(&query, &body)?;
    let selection = Selection::from_query(&query)?;
    let mut store = cluster.store.lock().expect("store");
    let names: Vec<String> = store
        .list(kind, Some(&ns), &Default::default())
        .iter()
        .filter(|o| selection.matches(o))
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let mut items = Vec::new();
    for name in names {
        if let Ok(gone) = delete_one(&cluster, &mut store, kind, &ns, &name, propagation.as_deref()) {
            items.push(gone);
        }
    }
    let rv = store.rv().to_string();
    drop(store);
    cluster.kick.notify_one();
    Ok((
        axum::http::StatusCode::OK,
        Json(
            json!({"kind": format!("{}List", kind.name()), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
        ),
    ))
}

fn delete_one(
    cluster: &Cluster,
    store: &mut Store,
    kind: Kind,
    ns: &str,
    name: &str,
    propagation: Option<&str>,
) -> Result<Value, Refusal> {
    let Some(object) = store.get(kind, ns, name).cloned() else {
        return Err(Refusal::not_found(kind, name));
    };
    match kind {
        Kind::Pod if cluster.kubelet.is_running(ns, name) => {
            // Graceful: marked, its process stopped; the kubelet removes it once the process ends.
            let mut pod = object;
            if pod["metadata"]["deletionTimestamp"].is_null() {
                pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(super::kubelet::GRACE.as_secs());
                let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let mut conditions: Vec<Value> =
                    conditions.into_iter().filter(|c| c["type"] != "DisruptionTarget").collect();
                conditions
                    .push(json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting", "lastTransitionTime": now_rfc3339()}));
                pod["status"]["conditions"] = json!(conditions);
                pod = store.update(kind, ns, pod, None).map_err(|e| refusal(kind, name, e))?;
                cluster.kubelet.stop(ns, name);
            }
            Ok(pod)
        }
        Kind::Job => {
            let uid = object["metadata"]["uid"].clone();
            store.remove(kind, ns, name);
            if propagation.unwrap_or("Orphan") == "Orphan" {
                for mut pod in store.list(Kind::Pod, Some(ns), &Default::default()) {
                    if owned_by(&pod, &uid) {
                        pod["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
                        let _ = store.update(Kind::Pod, ns, pod, None);
                    }
                }
            }
            // With Background or Foreground propagation the controller's garbage collector
            // removes the Pods whose owner is gone.
            Ok(deleted(kind, name, &uid))
        }
        _ => {
            let uid = object["metadata"]["uid"].clone();
            store.remove(kind, ns, name);
            Ok(deleted(kind, name, &uid))
        }
    }
}

/// Whether `object` has an owner with this uid.
pub fn owned_by(object: &Value, uid: &Value) -> bool {
    object["metadata"]["ownerReferences"].as_array().is_some_and(|owners| owners.iter().any(|o| &o["uid"] == uid))
}

fn propagation(query: &HashMap<String, String>, body: &Bytes) -> Result<Option<String>, Refusal> {
    let mut policy = query.get("propagationPolicy").cloned();
    if !body.is_empty() {
        let options: Value = serde_json::from_slice(body).map_err(|e| Refusal::bad_request(format!("json: {e}")))?;
        super::strict::decode::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>(&options)
            .map_err(Refusal::bad_request)?;
        if let Some(p) = options["propagationPolicy"].as_str() {
            policy = Some(p.to_string());
        }
    }
    match policy.as_deref() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(policy),
        Some(other) => Err(Refusal::bad_request(format!("propagationPolicy: Unsupported value: \"{other}\""))),
    }
}

fn check_kind(kind: Kind, object: &Value) -> Result<(), Refusal> {
    for (field, expected) in [("kind", kind.name()), ("apiVersion", kind.api_version())] {
        if let Some(given) = object[field].as_str()
            && given != expected
        {
            return Err(Refusal::bad_request(format!("{field} {given:?} does not match the expected {expected:?}")));
        }
    }
    Ok(())
}

fn refusal(kind: Kind, name: &str, error: WriteError) -> Refusal {
    match error {
        WriteError::AlreadyExists => Refusal::already_exists(kind, name),
        WriteError::NotFound => Refusal::not_found(kind, name),
        WriteError::Conflict => Refusal::conflict(kind, name),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Five lowercase letters and digits, as generated names end.
pub fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut n =
        COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let c = alphabet[(n % alphabet.len() as u64) as usize] as char;
            n /= alphabet.len() as u64;
            c
        })
        .collect()
}
