//! The fake API server's objects: one resource version counter, objects as JSON by kind,
//! namespace and name, and a bounded log of changes that watches replay and follow.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::selector::LabelSelector;

/// How many changes the log keeps; a watch from an older resource version gets 410 Gone.
const LOG_LEN: usize = 20_000;

/// The kinds of objects the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Secret,
    ConfigMap,
    Event,
    Job,
}

impl Kind {
    /// `kind` as in objects.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Event => "Event",
            Kind::Job => "Job",
        }
    }

    /// `apiVersion` as in objects.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Job => "batch/v1",
            _ => "v1",
        }
    }

    /// The plural resource name, as in URLs and Status details.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::Event => "events",
            Kind::Job => "jobs",
        }
    }

    /// The API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Job => "batch",
            _ => "",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }
}

/// Key of an object: kind, namespace ("" for cluster objects), name.
pub type Key = (Kind, String, String);

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind_of_change: &'static str,
    pub object: Value,
}

/// All objects and their history.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Change>,
    /// Resource version of the oldest change still in the log, minus one: watches from earlier are gone.
    oldest: u64,
    changes: broadcast::Sender<Change>,
    uid: u64,
}

/// Why a write was refused.
#[derive(Debug)]
pub enum WriteError {
    AlreadyExists,
    NotFound,
    Conflict,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let (changes, _) = broadcast::channel(65_536);
        Store { rv: 1, objects: BTreeMap::new(), log: VecDeque::new(), oldest: 0, changes, uid: 0 }
    }

    /// The current resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Resource versions at or below this are too old to watch from.
    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Follows changes made after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Changes after `rv` still in the log.
    pub fn changes_since(&self, rv: u64) -> impl Iterator<Item = &Change> {
        self.log.iter().filter(move |c| c.rv > rv)
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, namespace.to_string(), name.to_string()))
    }

    /// Objects of `kind` in `namespace` (all namespaces when `None`) whose labels match.
    pub fn list(&self, kind: Kind, namespace: Option<&str>, selector: &LabelSelector) -> Vec<Value> {
        self.scan(kind)
            .filter(|v| namespace.is_none_or(|n| v["metadata"]["namespace"].as_str().unwrap_or_default() == n))
            .filter(|v| selector.matches(labels(v)))
            .cloned()
            .collect()
    }

    /// Objects of `kind` in every namespace, borrowed.
    pub fn scan(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.objects
            .range((kind, String::new(), String::new())..)
            .take_while(move |((k, _, _), _)| *k == kind)
            .map(|(_, v)| v)
    }

    /// Names of the namespaces that exist.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.objects.keys().filter(|(k, _, _)| *k == Kind::Namespace).map(|(_, _, n)| n.clone()).collect()
    }

    /// Stores a new object, filling in uid, resourceVersion and creationTimestamp.
    pub fn create(&mut self, kind: Kind, namespace: &str, mut object: Value) -> Result<Value, WriteError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = (kind, namespace.to_string(), name);
        if self.objects.contains_key(&key) {
            return Err(WriteError::AlreadyExists);
        }
        self.uid += 1;
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        meta["creationTimestamp"] = json!(now_rfc3339());
        if kind.namespaced() {
            meta["namespace"] = json!(namespace);
        }
        object["kind"] = json!(kind.name());
        object["apiVersion"] = json!(kind.api_version());
        Ok(self.commit(key, object, "ADDED"))
    }

    /// Replaces a stored object; with `expect_rv`, refuses with a conflict when it changed since.
    pub fn update(
        &mut self,
        kind: Kind,
        namespace: &str,
        object: Value,
        expect_rv: Option<&str>,
    ) -> Result<Value, WriteError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = (kind, namespace.to_string(), name);
        let Some(old) = self.objects.get(&key) else {
            return Err(WriteError::NotFound);
        };
        if let Some(rv) = expect_rv
            && old["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(WriteError::Conflict);
        }
        if *old == object {
            return Ok(object);
        }
        Ok(self.commit(key, object, "MODIFIED"))
    }

    /// Removes an object, returning it as last stored.
    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let key = (kind, namespace.to_string(), name.to_string());
        let object = self.objects.remove(&key)?;
        self.rv += 1;
        let mut last = object.clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, namespace, "DELETED", last);
        Some(object)
    }

    fn commit(&mut self, key: Key, mut object: Value, kind_of_change: &'static str) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let (kind, namespace, _) = key.clone();
        self.objects.insert(key, object.clone());
        self.record(kind, &namespace, kind_of_change, object.clone());
        object
    }

    fn record(&mut self, kind: Kind, namespace: &str, kind_of_change: &'static str, object: Value) {
        let change = Change { rv: self.rv, kind, namespace: namespace.to_string(), kind_of_change, object };
        if self.log.len() >= LOG_LEN
            && let Some(dropped) = self.log.pop_front()
        {
            self.oldest = dropped.rv;
        }
        self.log.push_back(change.clone());
        let _ = self.changes.send(change);
    }
}

/// An object's labels.
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The time now as Kubernetes writes it.
pub fn now_rfc3339() -> String {
    format!("{:.0}", now())
}

/// The time now.
pub fn now() -> k8s_openapi::jiff::Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    k8s_openapi::jiff::Timestamp::from_second(since_epoch.as_secs() as i64).expect("the clock is within jiff's range")
}
