//! The validated DAG: plain data the scheduler runs, with its graph queries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use concurrent_mlflow::environment::EnvManager;

/// A validated DAG file.
#[derive(Debug, Clone, PartialEq)]
pub struct Dag {
    /// The DAG name, `[a-z0-9-]{1,63}`.
    pub name: String,
    /// MLflow experiment name (default: the DAG name).
    pub experiment: String,
    /// Input of root stages (after `--input`); `InputSource::None` when the file has none.
    pub input: InputSource,
    /// Stages by name.
    pub stages: BTreeMap<String, Stage>,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// The file as given, before overrides.
    pub source_text: String,
}

/// Where a stage's input objects come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A URI (`file:///…`, `s3://…`, …); relative file paths are already made absolute.
    Uri(String),
    /// `input: none`: one shard with no inputs (or, for `Dag::input`, no input given).
    None,
}

/// One stage: an MLproject entry point run over shards of its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Stage name, `[a-z0-9][a-z0-9_-]{0,62}`.
    pub name: String,
    /// Where the project comes from, as written.
    pub project: ProjectRef,
    /// Resolved local directory holding the `MLproject` file.
    pub project_dir: PathBuf,
    /// Entry point name (default `main`).
    pub entry_point: String,
    /// Parameters as given in the file and by `-P`, stringified; defaults not applied.
    pub parameters: BTreeMap<String, String>,
    /// The names of `parameters` in the order given (the file's, then `-P`'s): undeclared
    /// ones are passed as `--key value` in this order.
    pub parameter_order: Vec<String>,
    /// The given parameters the entry point does not declare, in the order given (filled
    /// when the project is checked).
    pub undeclared_parameters: Vec<String>,
    /// `path` parameters (given or defaults) resolved to absolute local paths when the
    /// project is checked; a URI value is not here (the worker downloads it).
    pub resolved_parameters: BTreeMap<String, String>,
    /// The commit of a git project, found when the project is fetched.
    pub git_commit: Option<String>,
    /// Include globs (gitignore-like); empty = every object.
    pub include: Vec<String>,
    /// How the input is cut into shards.
    pub partition: Partition,
    /// Maximum workers at once for this stage (≥ 1).
    pub parallelism: u32,
    /// Extra attempts per shard after the first (default 2, at most 100).
    pub retries: u32,
    /// Timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Kubernetes requests of the stage's workers.
    pub resources: Resources,
    /// Cluster preference order; empty = all, in configuration order.
    pub clusters: Vec<String>,
    /// Prebuilt image for the Kubernetes executor.
    pub image: Option<String>,
    /// Upstream stages, sorted and without duplicates.
    pub after: Vec<String>,
    /// The stage's own input, replacing the DAG input or the upstream outputs.
    pub input: Option<InputSource>,
    /// Fail the stage when its shards all succeed with no output from a non-empty input.
    pub fail_on_empty: bool,
    /// Most bytes of an attempt's log kept (head and tail); `None` = the default, 64 MiB.
    pub log_limit: Option<u64>,
    /// `env_manager:` (or `--env-manager`): MLflow's environment manager for the stage;
    /// `None` lets the project choose.
    pub env_manager: Option<EnvManager>,
    /// `speculate:`: when an attempt that runs long gets a speculative copy (default three
    /// times the stage's median attempt); `None` never.
    pub speculate: Option<crate::run_core::Speculation>,
}

/// Where a stage's MLproject comes from, as written in the DAG file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    /// A directory, relative to the DAG file or absolute.
    Local(PathBuf),
    /// A git repository: `url#subdir@rev`.
    Git {
        /// Clone URL.
        url: String,
        /// Directory of the project inside the repository.
        subdir: Option<String>,
        /// Revision to check out (branch, tag or commit); default branch when absent.
        rev: Option<String>,
    },
}

impl std::fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectRef::Local(path) => write!(f, "{}", path.display()),
            ProjectRef::Git { url, subdir, rev } => {
                write!(f, "{url}")?;
                if subdir.is_some() || rev.is_some() {
                    write!(f, "#{}", subdir.as_deref().unwrap_or(""))?;
                }
                if let Some(rev) = rev {
                    write!(f, "@{rev}")?;
                }
                Ok(())
            }
        }
    }
}

/// Kubernetes resource requests of a stage's workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU quantity (`1`, `500m`).
    pub cpu: Option<String>,
    /// Memory quantity (`2Gi`, `512Mi`).
    pub memory: Option<String>,
    /// Number of GPUs.
    pub gpu: u32,
}

/// How a stage's input objects are cut into shards.
#[derive(Debug, Clone)]
pub enum Partition {
    /// Objects sorted by path, cut by count.
    Object {
        /// Objects per shard.
        shard_size: Option<u32>,
        /// Number of shards.
        shards: Option<u32>,
    },
    /// One shard per parent directory.
    Directory,
    /// Objects grouped by the regex's capture group; keys grouped into shards.
    Key {
        /// Regex with exactly one capture group.
        pattern: regex::Regex,
        /// Keys per shard.
        shard_size: Option<u32>,
        /// Number of shards.
        shards: Option<u32>,
    },
    /// All objects in one shard.
    None,
}

impl Default for Partition {
    fn default() -> Self {
        Partition::Object { shard_size: None, shards: None }
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        use Partition as P;
        match (self, other) {
            (P::Object { shard_size, shards }, P::Object { shard_size: s2, shards: n2 }) => {
                shard_size == s2 && shards == n2
            }
            (P::Directory, P::Directory) | (P::None, P::None) => true,
            (P::Key { pattern, shard_size, shards }, P::Key { pattern: p2, shard_size: s2, shards: n2 }) => {
                pattern.as_str() == p2.as_str() && shard_size == s2 && shards == n2
            }
            _ => false,
        }
    }
}

/// Command-line changes applied before validation: `--input URI` and `-P STAGE.PARAM=VALUE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the DAG `input`; a bare path is resolved against the current directory.
    pub input: Option<String>,
    /// `(stage, parameter, value)` triples, applied in order (the last one wins).
    pub parameters: Vec<(String, String, String)>,
    /// `--env-manager`: replaces every stage's `env_manager`.
    pub env_manager: Option<String>,
}

impl Stage {
    /// The parameters the entry point is run with: as given, with local `path` parameters
    /// (given or defaults) made absolute.
    pub fn command_parameters(&self) -> BTreeMap<String, String> {
        let mut parameters = self.parameters.clone();
        parameters.extend(self.resolved_parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        parameters
    }
}

impl Dag {
    /// Stages in topological order, ties broken by name.
    pub fn order(&self) -> Vec<&Stage> {
        let downstream = self.downstream_names();
        let mut waiting: BTreeMap<&str, usize> = self
            .stages
            .values()
            .map(|s| (s.name.as_str(), s.after.iter().filter(|a| self.stages.contains_key(*a)).count()))
            .collect();
        let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(name, _)| *name).collect();
        let mut order = Vec::with_capacity(self.stages.len());
        while let Some(name) = ready.pop_first() {
            waiting.remove(name);
            let Some(stage) = self.stages.get(name) else {
                continue;
            };
            order.push(stage);
            for next in downstream.get(name).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(next) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.insert(next);
                    }
                }
            }
        }
        order
    }

    /// For each stage named in some `after`, the stages that list it, by name.
    fn downstream_names(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut downstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for stage in self.stages.values() {
            for up in &stage.after {
                downstream.entry(up.as_str()).or_default().push(stage.name.as_str());
            }
        }
        downstream
    }

    /// Stages that list `stage` in their `after`, sorted by name.
    pub fn downstream(&self, stage: &str) -> Vec<&Stage> {
        self.stages.values().filter(|s| s.after.iter().any(|a| a == stage)).collect()
    }

    /// Stages listed in `stage`'s `after`, sorted by name (empty for an unknown stage).
    pub fn upstream(&self, stage: &str) -> Vec<&Stage> {
        self.stages.get(stage).map(|s| s.after.iter().filter_map(|a| self.stages.get(a)).collect()).unwrap_or_default()
    }

    /// Every stage that depends on `stage`, directly or not, sorted by name.
    pub fn descendants(&self, stage: &str) -> Vec<&Stage> {
        let downstream = self.downstream_names();
        let mut seen = BTreeSet::new();
        let mut todo = vec![stage];
        while let Some(name) = todo.pop() {
            for &next in downstream.get(name).into_iter().flatten() {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen.into_iter().filter_map(|n| self.stages.get(n)).collect()
    }

    /// Stages with no `after`, sorted by name.
    pub fn roots(&self) -> Vec<&Stage> {
        self.stages.values().filter(|s| s.after.is_empty()).collect()
    }

    /// The input a stage reads when it has no upstream: its own, else the DAG's.
    pub fn input_of<'a>(&'a self, stage: &'a Stage) -> &'a InputSource {
        stage.input.as_ref().unwrap_or(&self.input)
    }
}
