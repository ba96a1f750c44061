//! The DAG file (DESIGN §2): parsing, validation and the validated [`Dag`] model.
//!
//! [`load_dag`] / [`parse_dag`] read YAML or JSON, apply command-line [`Overrides`], check
//! every rule and return every error found, each naming its place
//! (`stages.thumbnails.partition.shard_size: must be at least 1`). Relative paths — a local
//! `project:` and a bare or `file:` relative `input:` — are resolved against the DAG file's
//! directory; a bare `--input` path against the current directory. Git projects are cloned
//! into [`LoadOptions::git_cache`].
//!
//! Reading is bounded: at most [`MAX_FILE_BYTES`] of text, [`MAX_NESTING`] levels of lists and
//! maps and [`MAX_STAGES`] stages, each checked in time linear in the file; a FIFO or device
//! is refused rather than read.

mod duration;
mod env_check;
mod error;
mod model;
mod overrides;
mod parse;
mod project_check;
mod project_ref;
mod quantity;
mod quote;
mod rules;
mod stage;
mod syntax;
mod uri;
mod value;

use std::path::{Path, PathBuf};

use concurrent_mlflow::yaml_limits::{self, ReadError};

/// The file name that stands for standard input.
pub const STDIN: &str = "-";

pub use concurrent_mlflow::yaml_limits::{MAX_FILE_BYTES, MAX_NESTING};
pub use duration::parse_duration;
pub use error::{SpecError, SpecErrors};
pub use model::{Dag, InputSource, Overrides, Partition, ProjectRef, Resources, Stage};
pub use overrides::parse_override;
pub use parse::MAX_STAGES;
pub use project_ref::{FetchError, FetchedGit, default_git_cache, fetch_git, parse_git, without_credentials};
pub use quantity::{is_quantity, quantity_value};
pub use stage::{DEFAULT_ENTRY_POINT, DEFAULT_RETRIES, MAX_RETRIES};
pub use uri::{INPUT_SCHEMES, parse_input};

// The readers the clusters file shares with the DAG file, so both name places alike.
pub(crate) use error::Errors;
pub(crate) use quote::quote;
pub(crate) use syntax::parse_yaml;
pub(crate) use value::{Fields, boolean, describe, integer, nonempty_string};

/// How a DAG file is loaded beyond its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where git projects are cloned (default [`default_git_cache`]).
    pub git_cache: PathBuf,
    /// Local projects as written in the DAG that were uploaded as snapshots -> the directory
    /// each was unpacked to (a DAG submitted to the service).
    pub project_dirs: std::collections::BTreeMap<String, PathBuf>,
    /// When set, a local project that was not uploaded must lie inside this directory (the
    /// root a service operator allowed); `None` allows any (the command line).
    pub local_root: Option<PathBuf>,
    /// Whether the executor runs stages in their project's `docker_env` image (Kubernetes);
    /// the local executor does not, and refuses `docker_env` projects.
    pub runs_images: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            git_cache: default_git_cache(),
            project_dirs: std::collections::BTreeMap::new(),
            local_root: None,
            runs_images: false,
        }
    }
}

/// Reads the DAG file at `path` (YAML or JSON), applies `overrides` and validates it. `-` reads
/// standard input, and relative paths in the DAG are then resolved against the current
/// directory.
pub fn load_dag(path: &Path, overrides: &Overrides) -> Result<Dag, SpecErrors> {
    load_dag_with(path, overrides, &LoadOptions::default())
}

/// [`load_dag`] with explicit options.
pub fn load_dag_with(path: &Path, overrides: &Overrides, options: &LoadOptions) -> Result<Dag, SpecErrors> {
    let from_stdin = path == Path::new(STDIN);
    let place = if from_stdin { "standard input".to_string() } else { path.display().to_string() };
    let read = if from_stdin { yaml_limits::read_all(std::io::stdin().lock()) } else { yaml_limits::read_file(path) };
    let bytes = read.map_err(|e| {
        let hint = match e {
            ReadError::NotAFile { .. } => "; to read a DAG from a pipe, give `-` and send it to standard input",
            _ => "",
        };
        SpecError::new(&place, format!("cannot read the DAG file: {e}{hint}"))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let (line, column) = line_column(valid);
        SpecError::new(format!("{place}: line {line}, column {column}"), "the DAG file is not UTF-8 text")
    })?;
    let base_dir = match path.parent() {
        _ if from_stdin => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse_dag_with(&text, &base_dir, overrides, options)
}

/// Parses and validates DAG text; relative paths in it are resolved against `base_dir`.
pub fn parse_dag(text: &str, base_dir: &Path, overrides: &Overrides) -> Result<Dag, SpecErrors> {
    parse_dag_with(text, base_dir, overrides, &LoadOptions::default())
}

/// [`parse_dag`] with explicit options.
pub fn parse_dag_with(
    text: &str,
    base_dir: &Path,
    overrides: &Overrides,
    options: &LoadOptions,
) -> Result<Dag, SpecErrors> {
    parse::parse(text, base_dir, overrides, options)
}

/// 1-based line and column (in characters) just after `bytes`.
fn line_column(bytes: &[u8]) -> (usize, usize) {
    let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    let last = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&bytes[last..]).chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
