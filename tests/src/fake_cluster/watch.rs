//! Watches: changes after a resource version as newline-separated JSON events, bookmarks when
//! asked for, 410 Gone (as an `ERROR` event) when the version is older than the log keeps, and
//! the end of the stream after `timeoutSeconds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Cluster;
use super::api::Selection;
use super::status::Refusal;
use super::store::{Change, Kind};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// Starts a watch of `kind` objects (in `namespace`, or all) that `selection` matches.
pub fn watch(
    cluster: Arc<Cluster>,
    kind: Kind,
    namespace: Option<String>,
    selection: Selection,
    query: &HashMap<String, String>,
) -> Response {
    let from: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse() {
            Ok(rv) => Some(rv),
            Err(_) => return Refusal::bad_request(format!("invalid resource version: {rv}")).into_response(),
        },
    };
    let bookmarks = matches!(query.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let timeout =
        query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map_or(Duration::from_secs(1800), Duration::from_secs);
    let wanted = move |change: &Change| {
        change.kind == kind
            && namespace.as_deref().is_none_or(|ns| ns == change.namespace)
            && selection.matches(&change.object)
    };

    let (first, mut changes, mut rv) = {
        let store = cluster.store.lock().expect("store");
        let changes = store.subscribe();
        let first: Vec<Value> = match from {
            Some(rv) if rv < store.oldest() => vec![gone(rv)],
            Some(rv) => store.changes_since(rv).filter(|c| wanted(c)).map(event).collect(),
            None => store
                .list(kind, None, &Default::default())
                .into_iter()
                .map(|object| Change {
                    rv: 0,
                    kind,
                    namespace: object["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                    kind_of_change: "ADDED",
                    object,
                })
                .filter(|c| wanted(c))
                .map(|c| event(&c))
                .collect(),
        };
        (first, changes, store.rv())
    };
    let expired = first.first().is_some_and(|e| e["type"] == "ERROR");
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(1024);
    tokio::spawn(async move {
        for e in first {
            if tx.send(Ok(line(&e))).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        loop {
            let sent = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind.name(), "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": rv.to_string()}}});
                    tx.send(Ok(line(&bookmark))).await
                }
                change = changes.recv() => match change {
                    Ok(change) => {
                        rv = rv.max(change.rv);
                        if !wanted(&change) || from.is_some_and(|from| change.rv <= from) { continue; }
                        tx.send(Ok(line(&event(&change)))).await
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(Ok(line(&gone(rv)))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .expect("watch response")
}

fn event(change: &Change) -> Value {
    json!({"type": change.kind_of_change, "object": change.object})
}

fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": Refusal::gone(format!("too old resource version: {rv}")).to_status()})
}

fn line(value: &Value) -> String {
    let mut text = value.to_string();
    text.push('\n');
    text
}
