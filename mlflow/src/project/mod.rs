//! MLproject files: entry points, parameters, command rendering, project snapshots.
//!
//! A project directory holds an `MLproject` file (found case-insensitively, as MLflow does).
//! [`MlProject::load`] reads it, [`MlProject::entry_point`] picks an entry point (or synthesizes
//! one for a `.py`/`.sh` file of the project), [`EntryPoint::check_parameters`] validates a
//! stage's parameters and [`EntryPoint::render_command`] renders the shell command with
//! MLflow's rules. [`snapshot`] packs a project into a deterministic tarball for workers.

mod params;
mod render;
pub mod snapshot;
mod spec;
mod yaml11;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::yaml_limits::{self, ReadError};

pub use params::{ParamError, ParamType, Parameter, local_path, url_scheme};
pub use render::shell_quote;
pub(crate) use spec::python_str;

/// Parameters the worker fills itself when an entry point declares them (DESIGN §3).
pub const FILLED_PARAMETERS: [&str; 3] = ["input_dir", "output_dir", "manifest"];

/// The file name MLflow looks for, compared case-insensitively.
pub const MLPROJECT_FILE_NAME: &str = "MLproject";

/// The conda file MLflow uses when the MLproject declares no environment.
pub const DEFAULT_CONDA_FILE_NAME: &str = "conda.yaml";

/// The `python_env` file MLflow uses when the MLproject declares no environment (it comes
/// before [`DEFAULT_CONDA_FILE_NAME`]).
pub const DEFAULT_PYTHON_ENV_FILE_NAME: &str = "python_env.yaml";

/// A parsed MLproject file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlProject {
    /// The optional `name:` of the project.
    pub name: Option<String>,
    /// The environment the project asks for.
    pub env: ProjectEnv,
    /// Declared entry points by name.
    pub entry_points: BTreeMap<String, EntryPoint>,
}

/// The environment an MLproject declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectEnv {
    /// No environment declared: whatever `python` is on PATH.
    Local,
    /// `python_env: <file>`, relative to the project directory.
    PythonEnv(String),
    /// `conda_env: <file>` (or a `conda.yaml` found by [`MlProject::load`]).
    CondaEnv(String),
    /// `docker_env: {image: ...}`.
    Docker {
        /// The image to run the entry point in.
        image: String,
    },
}

/// One entry point of an MLproject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// The entry point's name (a key of `entry_points`, or a script path when synthesized).
    pub name: String,
    /// The command template, in Python `str.format` syntax.
    pub command: String,
    /// Declared parameters by name.
    pub parameters: BTreeMap<String, Parameter>,
}

/// Why an MLproject could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The directory holds no MLproject file.
    #[error("{dir}: no MLproject file in this directory")]
    NotFound {
        /// The project directory.
        dir: PathBuf,
    },
    /// The MLproject file or the project directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The MLproject file is not a regular file or is too large.
    #[error("{path}: {source}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why it was not read.
        #[source]
        source: ReadError,
    },
    /// The text is not YAML.
    #[error("{origin}: not valid YAML: {source}")]
    Yaml {
        /// Where the text came from.
        origin: String,
        /// The YAML error (with line and column).
        #[source]
        source: serde_yaml::Error,
    },
    /// The YAML does not describe a valid MLproject.
    #[error("{origin}: {place}: {problem}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// The dotted path of the bad key, e.g. `entry_points.main.command`.
        place: String,
        /// What is wrong.
        problem: String,
    },
    /// A parameter's default is not a value of its declared type.
    #[error("{origin}: {place}: bad default: {source}")]
    BadDefault {
        /// Where the text came from.
        origin: String,
        /// The dotted path of the default.
        place: String,
        /// What is wrong with the value.
        #[source]
        source: Box<ParamError>,
    },
    /// An environment file named by the MLproject does not exist.
    #[error("{origin}: {key}: file '{file}' not found in the project")]
    EnvFileMissing {
        /// Where the text came from.
        origin: String,
        /// `python_env` or `conda_env`.
        key: &'static str,
        /// The file named by the MLproject.
        file: String,
    },
    /// No entry point of that name, and the name is not a `.py`/`.sh` file of the project.
    #[error(
        "{origin}: no entry point '{name}' (declared: {}) and no .py or .sh file of that name in the project",
        list_or_none(.declared)
    )]
    NoEntryPoint {
        /// Where the project came from.
        origin: String,
        /// The requested entry point.
        name: String,
        /// The declared entry points.
        declared: Vec<String>,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

impl MlProject {
    /// Reads the MLproject file of `dir` (name matched case-insensitively, like MLflow).
    ///
    /// Like MLflow, a project without a declared environment that has a `python_env.yaml`
    /// gets [`ProjectEnv::PythonEnv`], else with a `conda.yaml` [`ProjectEnv::CondaEnv`];
    /// a `python_env`/`conda_env` file named must exist.
    pub fn load(dir: &Path) -> Result<MlProject, ProjectError> {
        let path = find_mlproject(dir)?.ok_or_else(|| ProjectError::NotFound { dir: dir.to_path_buf() })?;
        let bytes = yaml_limits::read_file(&path).map_err(|error| match error {
            ReadError::Io(source) => ProjectError::Read { path: path.clone(), source },
            refused => ProjectError::Refused { path: path.clone(), source: refused },
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ProjectError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"),
        })?;
        let origin = path.display().to_string();
        let mut project = MlProject::parse(&text, &origin)?;
        match &project.env {
            ProjectEnv::PythonEnv(file) if !is_project_file(dir, file) => {
                return Err(env_missing(&origin, "python_env", file));
            }
            ProjectEnv::CondaEnv(file) if !is_project_file(dir, file) => {
                return Err(env_missing(&origin, "conda_env", file));
            }
            ProjectEnv::Local => project.env = default_env(dir),
            _ => {}
        }
        Ok(project)
    }

    /// The project at `dir`: its MLproject file, or, in a directory without one, a project
    /// whose entry points are its `.py` and `.sh` files, as `mlflow run` treats it.
    pub fn open(dir: &Path) -> Result<MlProject, ProjectError> {
        match MlProject::load(dir) {
            Err(ProjectError::NotFound { .. }) => Ok(MlProject::without_file(dir)),
            other => other,
        }
    }

    /// The project of a directory without an MLproject file: no declared entry points, the
    /// environment of a `python_env.yaml` or `conda.yaml` found there.
    pub fn without_file(dir: &Path) -> MlProject {
        MlProject { name: None, env: default_env(dir), entry_points: BTreeMap::new() }
    }

    /// Parses MLproject text; `origin` (e.g. the file's path) starts every error message.
    pub fn parse(text: &str, origin: &str) -> Result<MlProject, ProjectError> {
        spec::parse(text, origin)
    }

    /// The entry point `name`, looked up in the project at `dir`.
    ///
    /// As MLflow does, a name that is not declared but is a file of the project ending in
    /// `.py` or `.sh` gives a synthesized entry point without parameters whose command is
    /// `python <file>` or `bash <file>` (the file name shell-quoted).
    pub fn entry_point(&self, dir: &Path, name: &str) -> Result<EntryPoint, ProjectError> {
        if let Some(entry) = self.entry_points.get(name) {
            return Ok(entry.clone());
        }
        let program = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("py") => Some("python"),
            Some("sh") => Some("bash"),
            _ => None,
        };
        match program {
            Some(program) if is_project_file(dir, name) => Ok(EntryPoint {
                name: name.to_owned(),
                // Braces are doubled so that rendering gives the file name back unchanged.
                command: format!("{program} {}", shell_quote(name)).replace('{', "{{").replace('}', "}}"),
                parameters: BTreeMap::new(),
            }),
            _ => Err(ProjectError::NoEntryPoint {
                origin: dir.join(MLPROJECT_FILE_NAME).display().to_string(),
                name: name.to_owned(),
                declared: self.entry_points.keys().cloned().collect(),
            }),
        }
    }
}

impl EntryPoint {
    /// Declared parameter names among [`FILLED_PARAMETERS`].
    pub fn filled_parameters(&self) -> Vec<&'static str> {
        FILLED_PARAMETERS.into_iter().filter(|name| self.parameters.contains_key(*name)).collect()
    }
}

/// The MLproject file of `dir`, matched case-insensitively as MLflow does.
pub fn find_mlproject(dir: &Path) -> Result<Option<PathBuf>, ProjectError> {
    let read_err = |source| ProjectError::Read { path: dir.to_path_buf(), source };
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let matches = entry.file_name().to_str().is_some_and(|n| n.eq_ignore_ascii_case(MLPROJECT_FILE_NAME));
        if matches && entry.path().is_file() {
            found.push(entry.path());
        }
    }
    // Prefer the exact spelling; otherwise the first by name, so the choice is stable.
    found.sort();
    let exact = found.iter().position(|p| p.file_name().is_some_and(|n| n == MLPROJECT_FILE_NAME));
    Ok(match exact {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    })
}

/// Whether `name` is a relative path to a regular file inside `dir` (no `..`, not absolute).
fn is_project_file(dir: &Path, name: &str) -> bool {
    let path = Path::new(name);
    let inside = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    inside && dir.join(path).is_file()
}

/// The environment MLflow gives a project that declares none: `python_env.yaml`, then
/// `conda.yaml`, found in the project directory.
fn default_env(dir: &Path) -> ProjectEnv {
    if dir.join(DEFAULT_PYTHON_ENV_FILE_NAME).is_file() {
        ProjectEnv::PythonEnv(DEFAULT_PYTHON_ENV_FILE_NAME.to_owned())
    } else if dir.join(DEFAULT_CONDA_FILE_NAME).is_file() {
        ProjectEnv::CondaEnv(DEFAULT_CONDA_FILE_NAME.to_owned())
    } else {
        ProjectEnv::Local
    }
}

fn env_missing(origin: &str, key: &'static str, file: &str) -> ProjectError {
    ProjectError::EnvFileMissing { origin: origin.to_owned(), key, file: file.to_owned() }
}

#[cfg(test)]
mod tests;
