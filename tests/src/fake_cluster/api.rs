//! The API server's routes: discovery, and per kind list/watch, get, create, update, patch and
//! delete at the paths kube clients and kubectl use.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Cluster;
use super::selector::LabelSelector;
use super::status::Refusal;
use super::store::{Kind, Store};
use super::{watch, writes};

type Shared = State<Arc<Cluster>>;
type Params = Query<HashMap<String, String>>;

/// Every route of the fake API server.
pub fn router(cluster: Arc<Cluster>) -> Router {
    let mut router = Router::new()
        .route("/version", get(version))
        .route(
            "/api",
            get(|| async {
                axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
            }),
        )
        .route("/apis", get(api_groups))
        .route(
            "/api/v1",
            get(|| async {
                axum::Json(resource_list(
                    "v1",
                    &[Kind::Namespace, Kind::Node, Kind::Pod, Kind::Secret, Kind::ConfigMap, Kind::Event],
                ))
            }),
        )
        .route("/apis/batch/v1", get(|| async { axum::Json(resource_list("batch/v1", &[Kind::Job])) }))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/fake/v1/namespaces/{ns}/pods/{name}/fail", post(fail_pod));
    for kind in [Kind::Namespace, Kind::Node] {
        let base = format!("/api/v1/{}", kind.plural());
        router = router
            .route(
                &base,
                get(move |s: Shared, q: Params| async move { list_or_watch(s, kind, None, q).await }).post(
                    move |s: Shared, q: Params, b: Bytes| async move { writes::create(s, kind, String::new(), q, b) },
                ),
            )
            .route(
                &format!("{base}/{{name}}"),
                get(move |s: Shared, Path(name): Path<String>| async move { read(s, kind, String::new(), name) })
                    .delete(move |s: Shared, Path(name): Path<String>, q: Params, b: Bytes| async move {
                        writes::delete(s, kind, String::new(), name, q, b)
                    }),
            );
    }
    for kind in [Kind::Pod, Kind::Secret, Kind::ConfigMap, Kind::Event, Kind::Job] {
        let prefix =
            if kind.group().is_empty() { "/api/v1".to_string() } else { format!("/apis/{}", kind.api_version()) };
        let plural = kind.plural();
        router = router
            .route(
                &format!("{prefix}/{plural}"),
                get(move |s: Shared, q: Params| async move { list_or_watch(s, kind, None, q).await }),
            )
            .route(
                &format!("{prefix}/namespaces/{{ns}}/{plural}"),
                get(move |s: Shared, Path(ns): Path<String>, q: Params| async move {
                    list_or_watch(s, kind, Some(ns), q).await
                })
                .post(move |s: Shared, Path(ns): Path<String>, q: Params, b: Bytes| async move {
                    writes::create(s, kind, ns, q, b)
                })
                .delete(move |s: Shared, Path(ns): Path<String>, q: Params, b: Bytes| async move {
                    writes::delete_collection(s, kind, ns, q, b)
                }),
            )
            .route(
                &format!("{prefix}/namespaces/{{ns}}/{plural}/{{name}}"),
                get(move |s: Shared, Path((ns, name)): Path<(String, String)>| async move { read(s, kind, ns, name) })
                    .put(move |s: Shared, Path((ns, name)): Path<(String, String)>, q: Params, b: Bytes| async move {
                        writes::replace(s, kind, ns, name, q, b)
                    })
                    .patch(
                        move |s: Shared, Path((ns, name)): Path<(String, String)>, h: HeaderMap, b: Bytes| async move {
                            writes::patch(s, kind, ns, name, h, b)
                        },
                    )
                    .delete(
                        move |s: Shared, Path((ns, name)): Path<(String, String)>, q: Params, b: Bytes| async move {
                            writes::delete(s, kind, ns, name, q, b)
                        },
                    ),
            );
    }
    router
        .fallback(|| async {
            Refusal {
                code: 404,
                reason: "NotFound",
                message: "the server could not find the requested resource".into(),
                details: Value::Null,
            }
        })
        .with_state(cluster)
}

async fn version() -> axum::Json<Value> {
    axum::Json(json!({
        "major": "1", "minor": "37", "gitVersion": "v1.37.0-concurrent-fake", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"
    }))
}

async fn api_groups() -> axum::Json<Value> {
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]}))
}

fn resource_list(group_version: &str, kinds: &[Kind]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|k| {
            json!({"name": k.plural(), "singularName": k.name().to_lowercase(), "namespaced": k.namespaced(), "kind": k.name(),
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// Checks that a namespace exists.
pub fn namespace_exists(store: &Store, namespace: &str) -> Result<(), Refusal> {
    if store.get(Kind::Namespace, "", namespace).is_none() {
        return Err(Refusal::not_found(Kind::Namespace, namespace));
    }
    Ok(())
}

fn read(State(cluster): Shared, kind: Kind, ns: String, name: String) -> Result<axum::Json<Value>, Refusal> {
    let store = cluster.store.lock().expect("store");
    store.get(kind, &ns, &name).cloned().map(axum::Json).ok_or_else(|| Refusal::not_found(kind, &name))
}

/// What a list or watch selects.
pub struct Selection {
    pub labels: LabelSelector,
    pub fields: Vec<(String, bool, String)>,
}

impl Selection {
    pub fn from_query(query: &HashMap<String, String>) -> Result<Selection, Refusal> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(Refusal::bad_request)?;
        let mut fields = Vec::new();
        for part in query.get("fieldSelector").map_or("", String::as_str).split(',').filter(|p| !p.trim().is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(Refusal::bad_request(format!("invalid selector: '{part}'; can't understand '{part}'")));
            };
            if ![
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "status.phase",
                "involvedObject.name",
                "involvedObject.namespace",
                "involvedObject.uid",
                "involvedObject.kind",
            ]
            .contains(&field.trim())
            {
                return Err(Refusal::bad_request(format!("field label not supported: {}", field.trim())));
            }
            fields.push((field.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Selection { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(super::store::labels(object))
            && self.fields.iter().all(|(field, equal, value)| {
                let mut here = object;
                for part in field.split('.') {
                    here = &here[part];
                }
                (here.as_str().unwrap_or("") == value) == *equal
            })
    }
}

async fn list_or_watch(State(cluster): Shared, kind: Kind, ns: Option<String>, Query(query): Params) -> Response {
    let selection = match Selection::from_query(&query) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch::watch(cluster, kind, ns, selection, &query).into_response();
    }
    let store = cluster.store.lock().expect("store");
    let items: Vec<Value> = store
        .list(kind, ns.as_deref(), &LabelSelector::default())
        .into_iter()
        .filter(|o| selection.matches(o))
        .map(|mut o| {
            if let Some(map) = o.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            o
        })
        .collect();
    axum::Json(json!({
        "kind": format!("{}List", kind.name()), "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": store.rv().to_string()}, "items": items
    }))
    .into_response()
}

async fn pod_log(State(cluster): Shared, Path((ns, name)): Path<(String, String)>) -> Response {
    if cluster.store.lock().expect("store").get(Kind::Pod, &ns, &name).is_none() {
        return Refusal::not_found(Kind::Pod, &name).into_response();
    }
    std::fs::read_to_string(cluster.kubelet.log_path(&ns, &name)).unwrap_or_default().into_response()
}

/// A test's fault: the Pod's process is killed, as a crash or an OOM kill would.
async fn fail_pod(State(cluster): Shared, Path((ns, name)): Path<(String, String)>) -> Response {
    if cluster.store.lock().expect("store").get(Kind::Pod, &ns, &name).is_none() {
        return Refusal::not_found(Kind::Pod, &name).into_response();
    }
    cluster.kubelet.kill(&ns, &name);
    axum::Json(json!({"killed": name})).into_response()
}
