//! The MLflow entities the client reads and writes, and their JSON wire forms.
//!
//! MLflow's JSON is not quite plain: `int64` fields may arrive as strings, and non-finite
//! metric values travel as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::object_path::ObjectPath;

/// The lifecycle status of an MLflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// The run is executing.
    Running,
    /// The run is scheduled but not started.
    Scheduled,
    /// The run ended successfully.
    Finished,
    /// The run ended with an error.
    Failed,
    /// The run was stopped.
    Killed,
}

impl RunStatus {
    /// Whether the run has ended (FINISHED, FAILED or KILLED).
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Killed)
    }

    /// MLflow's name of the status, e.g. `FINISHED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// Metadata of a run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The experiment the run belongs to.
    pub experiment_id: String,
    /// The run's display name.
    #[serde(default)]
    pub run_name: String,
    /// The run's status.
    pub status: RunStatus,
    /// Root of the run's artifacts, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    /// Start, in milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub start_time: Option<i64>,
    /// End, in milliseconds since the Unix epoch (terminal runs only).
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub end_time: Option<i64>,
}

/// A run: metadata and logged data.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Metrics (latest value per key), params and tags.
    pub data: RunData,
}

/// What was logged to a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunData {
    /// Latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Tags, including MLflow's `mlflow.*` system tags.
    pub tags: BTreeMap<String, String>,
}

/// One metric value to log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name.
    pub key: String,
    /// Value (non-finite values are sent as MLflow expects them).
    #[serde(serialize_with = "ser_f64", deserialize_with = "de_f64")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "de_i64")]
    pub timestamp: i64,
    /// Step of the value.
    #[serde(default, deserialize_with = "de_i64")]
    pub step: i64,
}

/// One parameter to log (parameters cannot change once logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Parameter name.
    pub key: String,
    /// Parameter value.
    #[serde(default)]
    pub value: String,
}

/// One tag to set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag name.
    pub key: String,
    /// Tag value.
    #[serde(default)]
    pub value: String,
}

impl Metric {
    /// A metric at step 0, timestamped now.
    pub fn now(key: impl Into<String>, value: f64) -> Metric {
        Metric { key: key.into(), value, timestamp: now_millis(), step: 0 }
    }
}

impl Param {
    /// A parameter.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Param {
        Param { key: key.into(), value: value.into() }
    }
}

impl Tag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag { key: key.into(), value: value.into() }
    }
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Path relative to the run's artifact root.
    pub path: ObjectPath,
    /// Whether the entry is a directory.
    pub is_dir: bool,
    /// Size in bytes (files only, when known).
    pub size: Option<u64>,
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A run as MLflow sends it.
#[derive(Debug, Deserialize)]
pub(crate) struct WireRun {
    info: RunInfo,
    #[serde(default)]
    data: WireRunData,
}

#[derive(Debug, Default, Deserialize)]
struct WireRunData {
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    params: Vec<Param>,
    #[serde(default)]
    tags: Vec<Tag>,
}

impl From<WireRun> for Run {
    fn from(wire: WireRun) -> Run {
        let data = wire.data;
        Run {
            info: wire.info,
            data: RunData {
                metrics: data.metrics.into_iter().map(|m| (m.key, m.value)).collect(),
                params: data.params.into_iter().map(|p| (p.key, p.value)).collect(),
                tags: data.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            },
        }
    }
}

/// A number, or a string holding one (proto3 JSON writes int64 as strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Int(i64),
    Float(f64),
    Text(String),
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumOrString::deserialize(d)? {
        NumOrString::Int(i) => Ok(i),
        NumOrString::Float(f) => Ok(f as i64),
        NumOrString::Text(s) => s.parse().map_err(de::Error::custom),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumOrStringI64>::deserialize(d).map(|o| o.map(|n| n.0))
}

struct NumOrStringI64(i64);

impl<'de> Deserialize<'de> for NumOrStringI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_i64(d).map(NumOrStringI64)
    }
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumOrString::deserialize(d)? {
        NumOrString::Int(i) => Ok(i as f64),
        NumOrString::Float(f) => Ok(f),
        NumOrString::Text(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(de::Error::custom),
        },
    }
}

fn ser_f64<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        s.serialize_str("NaN")
    } else if value.is_infinite() {
        s.serialize_str(if *value > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_decodes_string_int64_and_non_finite_metrics() {
        let json = r#"{"info":{"run_id":"r","experiment_id":"1","status":"FINISHED",
            "artifact_uri":"mlflow-artifacts:/1/r/artifacts","start_time":"17","end_time":18},
            "data":{"metrics":[{"key":"a","value":"NaN","timestamp":"1","step":0},
            {"key":"b","value":2.5,"timestamp":1,"step":"3"}],"params":[{"key":"p","value":"v"}]}}"#;
        let run: Run = serde_json::from_str::<WireRun>(json).map(Run::from).unwrap();
        assert_eq!(run.info.start_time, Some(17));
        assert_eq!(run.info.end_time, Some(18));
        assert_eq!(run.info.status, RunStatus::Finished);
        assert!(run.data.metrics["a"].is_nan());
        assert_eq!(run.data.metrics["b"], 2.5);
        assert_eq!(run.data.params["p"], "v");
        assert!(run.data.tags.is_empty());
    }

    #[test]
    fn non_finite_metrics_serialize_as_mlflow_strings() {
        let m = Metric { key: "k".into(), value: f64::NEG_INFINITY, timestamp: 1, step: 2 };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"key":"k","value":"-Infinity","timestamp":1,"step":2}"#);
        let back: Metric = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
