//! The DAG file (DESIGN §2): parsing, validation and the validated [`Dag`] model.
//!
//! [`load_dag`] / [`parse_dag`] read YAML or JSON, apply command-line [`Overrides`], check
//! every rule and return every error found, each naming its place
//! (`stages.thumbnails.partition.shard_size: must be at least 1`). Relative paths — a local
//! `project:` and a bare or `file:` relative `input:` — are resolved against the DAG file's
//! directory; a bare `--input` path against the current directory. Git projects are cloned
//! into [`LoadOptions::git_cache`].

mod duration;
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

pub use duration::parse_duration;
pub use error::{SpecError, SpecErrors};
pub use model::{Dag, InputSource, Overrides, Partition, ProjectRef, Resources, Stage};
pub use overrides::parse_override;
pub use project_ref::{FetchError, default_git_cache, fetch_git, parse_git};
pub use quantity::{is_quantity, quantity_value};
pub use stage::{DEFAULT_ENTRY_POINT, DEFAULT_RETRIES, MAX_RETRIES};
pub use uri::{INPUT_SCHEMES, parse_input};

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
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            git_cache: default_git_cache(),
            project_dirs: std::collections::BTreeMap::new(),
            local_root: None,
        }
    }
}

/// Reads the DAG file at `path` (YAML or JSON), applies `overrides` and validates it.
pub fn load_dag(path: &Path, overrides: &Overrides) -> Result<Dag, SpecErrors> {
    load_dag_with(path, overrides, &LoadOptions::default())
}

/// [`load_dag`] with explicit options.
pub fn load_dag_with(path: &Path, overrides: &Overrides, options: &LoadOptions) -> Result<Dag, SpecErrors> {
    let place = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SpecError::new(&place, format!("cannot read the DAG file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let (line, column) = line_column(valid);
        SpecError::new(format!("{place}: line {line}, column {column}"), "the DAG file is not UTF-8 text")
    })?;
    let base_dir = match path.parent() {
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
