//! What an entry point gets (DESIGN §3): its environment variables and the parameters the
//! worker fills (`input_dir`, `output_dir`, `manifest`). Pure.

use std::collections::BTreeMap;

use concurrent_proto::{ShardMsg, StageSpec};

use crate::layout::AttemptLayout;

/// Environment changes for the entry point's process, on top of the worker's own environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPointEnv {
    /// Variables to set.
    pub set: Vec<(String, String)>,
    /// Variables to remove from the inherited environment.
    pub remove: Vec<String>,
}

/// The environment of one attempt; `mlflow_run_id` is the shard run when tracking is on.
pub fn entry_point_env(
    spec: &StageSpec,
    shard: &ShardMsg,
    attempt: u32,
    layout: &AttemptLayout,
    mlflow_run_id: Option<&str>,
) -> EntryPointEnv {
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut set = vec![
        ("CONCURRENT_INPUT_DIR".to_string(), path(&layout.input_dir)),
        ("CONCURRENT_OUTPUT_DIR".to_string(), path(&layout.output_dir)),
        ("CONCURRENT_MANIFEST".to_string(), path(&layout.manifest)),
        ("CONCURRENT_DAG".to_string(), spec.dag.clone()),
        ("CONCURRENT_RUN_ID".to_string(), spec.run_id.clone()),
        ("CONCURRENT_STAGE".to_string(), spec.stage.clone()),
        ("CONCURRENT_SHARD".to_string(), shard.shard.to_string()),
        ("CONCURRENT_SHARDS".to_string(), shard.shards.to_string()),
        ("CONCURRENT_ATTEMPT".to_string(), attempt.to_string()),
    ];
    let mut remove = Vec::new();
    match (&spec.tracking, mlflow_run_id) {
        (Some(tracking), Some(run_id)) => {
            set.push(("MLFLOW_TRACKING_URI".to_string(), tracking.uri.clone()));
            set.push(("MLFLOW_EXPERIMENT_ID".to_string(), tracking.experiment_id.clone()));
            set.push(("MLFLOW_RUN_ID".to_string(), run_id.to_string()));
        }
        _ => remove.push("MLFLOW_RUN_ID".to_string()),
    }
    EntryPointEnv { set, remove }
}

/// The parameters the command is rendered with, "as passed": the stage parameters plus the
/// filled ones (absolute paths) the entry point declares.
pub fn command_parameters(
    spec: &StageSpec,
    layout: &AttemptLayout,
    declares: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    let mut parameters = spec.parameters.clone();
    for (name, path) in
        [("input_dir", &layout.input_dir), ("output_dir", &layout.output_dir), ("manifest", &layout.manifest)]
    {
        if declares(name) {
            parameters.insert(name.to_string(), path.to_string_lossy().into_owned());
        }
    }
    parameters
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use concurrent_proto::{TrackingTarget, WIRE_VERSION};

    use super::*;

    fn spec(tracking: bool) -> StageSpec {
        StageSpec {
            v: WIRE_VERSION,
            dag: "images".into(),
            run_id: "r1".into(),
            stage: "thumbnails".into(),
            project_snapshot: "abc".into(),
            project_source: "./p".into(),
            entry_point: "main".into(),
            parameters: BTreeMap::from([("size".to_string(), "128".to_string())]),
            tracking: tracking.then(|| TrackingTarget {
                uri: "http://127.0.0.1:5000".into(),
                experiment_id: "7".into(),
                stage_run_id: "stage-run".into(),
            }),
            output_root: None,
            timeout_s: None,
            max_attempts: 3,
            shards: 10,
            log_limit: None,
            env_manager: None,
            parameter_order: Vec::new(),
            speculate: false,
        }
    }

    fn shard() -> ShardMsg {
        ShardMsg {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "thumbnails".into(),
            shard: 3,
            shards: 10,
            inputs: vec![],
            speculative: false,
        }
    }

    fn get<'a>(env: &'a EntryPointEnv, name: &str) -> Option<&'a str> {
        env.set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_has_the_contract_variables() {
        let layout = AttemptLayout::new(Path::new("/w"), "r1", "thumbnails", 3, 2);
        let env = entry_point_env(&spec(true), &shard(), 2, &layout, Some("shard-run"));
        assert_eq!(get(&env, "CONCURRENT_INPUT_DIR"), Some("/w/r1/thumbnails/3-a2/in"));
        assert_eq!(get(&env, "CONCURRENT_OUTPUT_DIR"), Some("/w/r1/thumbnails/3-a2/out"));
        assert_eq!(get(&env, "CONCURRENT_MANIFEST"), Some("/w/r1/thumbnails/3-a2/manifest.json"));
        assert_eq!(get(&env, "CONCURRENT_DAG"), Some("images"));
        assert_eq!(get(&env, "CONCURRENT_RUN_ID"), Some("r1"));
        assert_eq!(get(&env, "CONCURRENT_STAGE"), Some("thumbnails"));
        assert_eq!(get(&env, "CONCURRENT_SHARD"), Some("3"));
        assert_eq!(get(&env, "CONCURRENT_SHARDS"), Some("10"));
        assert_eq!(get(&env, "CONCURRENT_ATTEMPT"), Some("2"));
        assert_eq!(get(&env, "MLFLOW_TRACKING_URI"), Some("http://127.0.0.1:5000"));
        assert_eq!(get(&env, "MLFLOW_EXPERIMENT_ID"), Some("7"));
        assert_eq!(get(&env, "MLFLOW_RUN_ID"), Some("shard-run"));
        assert!(env.remove.is_empty());
    }

    #[test]
    fn without_tracking_the_run_id_is_removed() {
        let layout = AttemptLayout::new(Path::new("/w"), "r1", "thumbnails", 3, 1);
        let env = entry_point_env(&spec(false), &shard(), 1, &layout, None);
        assert_eq!(get(&env, "MLFLOW_RUN_ID"), None);
        assert_eq!(get(&env, "MLFLOW_TRACKING_URI"), None);
        assert_eq!(env.remove, vec!["MLFLOW_RUN_ID".to_string()]);
    }

    #[test]
    fn declared_filled_parameters_are_added() {
        let layout = AttemptLayout::new(Path::new("/w"), "r1", "thumbnails", 3, 1);
        let params = command_parameters(&spec(false), &layout, |name| name != "manifest");
        assert_eq!(params.get("size").map(String::as_str), Some("128"));
        assert_eq!(params.get("input_dir").map(String::as_str), Some("/w/r1/thumbnails/3-a1/in"));
        assert_eq!(params.get("output_dir").map(String::as_str), Some("/w/r1/thumbnails/3-a1/out"));
        assert!(!params.contains_key("manifest"));
    }
}
