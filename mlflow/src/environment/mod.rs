//! Project environments (MLflow's `--env-manager`): which environment a stage's entry point
//! runs in, how `python_env.yaml` is read, and the per-machine cache that builds each
//! environment once (uv for `python_env`, conda or micromamba for `conda_env`).
//!
//! [`EnvManager`] and [`resolve`] are pure; [`cache`], [`uv`] and [`conda`] run programs and
//! touch the disk.

pub mod cache;
pub mod conda;
mod python_env;
pub mod uv;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::project::ProjectEnv;

pub use python_env::{PythonEnv, PythonEnvError};

/// An environment manager, as named by MLflow's `--env-manager`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvManager {
    /// The `python` (and everything else) on the worker's PATH.
    Local,
    /// A virtual environment built with uv (MLflow's `virtualenv`).
    Virtualenv,
    /// A virtual environment built with uv.
    Uv,
    /// A conda environment built with conda or micromamba.
    Conda,
}

impl EnvManager {
    /// Every manager, in the order MLflow documents them.
    pub const ALL: [EnvManager; 4] = [Self::Local, Self::Virtualenv, Self::Uv, Self::Conda];

    /// The manager's name (`local`, `virtualenv`, `uv`, `conda`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Virtualenv => "virtualenv",
            Self::Uv => "uv",
            Self::Conda => "conda",
        }
    }

    /// The manager named `name` (exact), or an error listing the names.
    pub fn from_name(name: &str) -> Result<EnvManager, UnknownEnvManager> {
        Self::ALL.into_iter().find(|m| m.as_str() == name).ok_or_else(|| UnknownEnvManager { name: name.to_owned() })
    }
}

impl fmt::Display for EnvManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an environment manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment manager '{name}' (expected local, virtualenv, uv or conda)")]
pub struct UnknownEnvManager {
    /// The name given.
    pub name: String,
}

/// The environment an entry point runs in, once the project's declaration and the chosen
/// manager are put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnv {
    /// The worker's own environment.
    Local,
    /// A uv virtual environment from this `python_env` file of the project; `None` is
    /// MLflow's default `python_env` (the machine's Python, no dependencies).
    Uv(Option<String>),
    /// A conda environment from this file of the project.
    Conda(String),
    /// The project's image (the Kubernetes executor only).
    Docker(String),
}

/// A manager that cannot run the project's environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvChoiceError {
    /// MLflow's own refusal: a `python_env` project cannot run with conda.
    #[error("a python_env project cannot run with env_manager conda; use virtualenv, uv or local")]
    PythonEnvWithConda,
    /// conda without a conda file to build from.
    #[error("env_manager conda needs a conda_env (or a conda.yaml) in the project")]
    CondaWithoutFile,
    /// A `conda_env` project with a virtualenv manager.
    #[error(
        "a conda_env project cannot run with env_manager {0}: Concurrent builds virtual environments only from a python_env; use conda or local"
    )]
    CondaEnvWithVirtualenv(EnvManager),
}

/// The environment of a project declaring `declared`, run with `manager` (`None`: the
/// project's own choice, as `mlflow run` makes it).
///
/// As in MLflow: `python_env` defaults to a virtualenv, `conda_env` to conda, a project with
/// neither to the local environment; `docker_env` always runs in its image; `local` runs any
/// other project in the worker's environment; a `python_env` project refuses conda.
pub fn resolve(declared: &ProjectEnv, manager: Option<EnvManager>) -> Result<RunEnv, EnvChoiceError> {
    use EnvManager::{Conda, Local, Uv, Virtualenv};
    Ok(match (declared, manager) {
        (ProjectEnv::Docker { image }, _) => RunEnv::Docker(image.clone()),
        (_, Some(Local)) | (ProjectEnv::Local, None) => RunEnv::Local,
        (ProjectEnv::PythonEnv(file), None | Some(Virtualenv | Uv)) => RunEnv::Uv(Some(file.clone())),
        (ProjectEnv::PythonEnv(_), Some(Conda)) => return Err(EnvChoiceError::PythonEnvWithConda),
        (ProjectEnv::CondaEnv(file), None | Some(Conda)) => RunEnv::Conda(file.clone()),
        (ProjectEnv::CondaEnv(_), Some(manager @ (Virtualenv | Uv))) => {
            return Err(EnvChoiceError::CondaEnvWithVirtualenv(manager));
        }
        (ProjectEnv::Local, Some(Virtualenv | Uv)) => RunEnv::Uv(None),
        (ProjectEnv::Local, Some(Conda)) => return Err(EnvChoiceError::CondaWithoutFile),
    })
}

#[cfg(test)]
mod tests;
