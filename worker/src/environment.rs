//! The environment a stage's entry point runs in: chosen once per worker from the project and
//! the stage's `env_manager`, built (or found) in the machine's environment cache before each
//! attempt, and put first on the entry point's PATH.

use std::path::{Path, PathBuf};

use concurrent_mlflow::environment::cache::{CacheError, EnvCache, Found};
use concurrent_mlflow::environment::conda::{self, CondaError};
use concurrent_mlflow::environment::uv::{self, UvError};
use concurrent_mlflow::environment::{
    EnvChoiceError, EnvManager, PythonEnv, PythonEnvError, RunEnv, UnknownEnvManager, resolve,
};
use concurrent_mlflow::project::ProjectEnv;

use crate::env::EntryPointEnv;

/// The environment of a stage, as this worker builds it.
#[derive(Debug, Clone)]
pub enum StageEnv {
    /// The worker's own environment (also inside a `docker_env` image, which the executor
    /// chose).
    Local,
    /// A uv virtual environment.
    Uv {
        /// The `python_env` file read.
        env: PythonEnv,
        /// Its content hash.
        hash: String,
    },
    /// A conda environment from this file of the project.
    Conda {
        /// The file.
        file: String,
        /// Its content hash.
        hash: String,
    },
}

/// The stage's environment cannot be chosen or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvSetupError {
    /// The stage names an unknown manager.
    #[error(transparent)]
    UnknownManager(#[from] UnknownEnvManager),
    /// The manager does not fit the project.
    #[error(transparent)]
    Choice(#[from] EnvChoiceError),
    /// The `python_env` file is not usable.
    #[error(transparent)]
    PythonEnv(#[from] PythonEnvError),
    /// The conda file is not readable.
    #[error(transparent)]
    Conda(#[from] CondaError),
}

/// Building the environment failed: the attempt fails, and nothing is cached.
#[derive(Debug, thiserror::Error)]
pub enum EnvBuildError {
    /// uv failed.
    #[error("building the python_env environment")]
    Uv(#[source] CacheError<UvError>),
    /// conda failed.
    #[error("building the conda_env environment")]
    Conda(#[source] CacheError<CondaError>),
    /// The attempt's log could not be opened.
    #[error("opening the attempt's log {path}")]
    Log {
        /// The log.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The local environment was asked to be built.
    #[error("the local environment is not built")]
    NothingToBuild,
    /// The build's thread ended abnormally.
    #[error("the environment build stopped abnormally")]
    Join(#[source] tokio::task::JoinError),
}

impl StageEnv {
    /// The environment of a project declaring `declared` at `project_dir`, run with the
    /// stage's `env_manager` (a name, or `None` for the project's own choice).
    pub fn choose(
        declared: &ProjectEnv,
        env_manager: Option<&str>,
        project_dir: &Path,
    ) -> Result<StageEnv, EnvSetupError> {
        let manager = env_manager.map(EnvManager::from_name).transpose()?;
        Ok(match resolve(declared, manager)? {
            RunEnv::Local | RunEnv::Docker(_) => StageEnv::Local,
            RunEnv::Uv(file) => {
                let env = match file {
                    Some(file) => PythonEnv::load(project_dir, &file)?,
                    None => PythonEnv::default(),
                };
                let hash = env.content_hash(project_dir);
                StageEnv::Uv { env, hash }
            }
            RunEnv::Conda(file) => {
                let hash = conda::content_hash(project_dir, &file)?;
                StageEnv::Conda { file, hash }
            }
        })
    }

    /// The built environment's directory (`None` for the local one), built now under the
    /// cache's lock when this machine does not have it yet; the build's output goes to `log`.
    pub async fn prepare(
        &self,
        cache: &EnvCache,
        project_dir: &Path,
        log: &Path,
    ) -> Result<Option<BuiltEnv>, EnvBuildError> {
        let conda = match self {
            StageEnv::Local => return Ok(None),
            StageEnv::Uv { .. } => false,
            StageEnv::Conda { .. } => true,
        };
        let (this, cache, project_dir, log) =
            (self.clone(), cache.clone(), project_dir.to_path_buf(), log.to_path_buf());
        let built = tokio::task::spawn_blocking(move || this.prepare_blocking(&cache, &project_dir, &log))
            .await
            .map_err(EnvBuildError::Join)??;
        Ok(Some(BuiltEnv { dir: built, conda }))
    }

    fn prepare_blocking(&self, cache: &EnvCache, project_dir: &Path, log: &Path) -> Result<PathBuf, EnvBuildError> {
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| EnvBuildError::Log { path: log.to_path_buf(), source })?;
        let (dir, found) = match self {
            StageEnv::Local => return Err(EnvBuildError::NothingToBuild),
            StageEnv::Uv { env, hash } => cache
                .get_or_build("uv", hash, |dir: &Path| uv::build(dir, project_dir, env, &mut log_file))
                .map_err(EnvBuildError::Uv)?,
            StageEnv::Conda { file, hash } => cache
                .get_or_build("conda", hash, |dir: &Path| conda::build(dir, project_dir, file, &mut log_file))
                .map_err(EnvBuildError::Conda)?,
        };
        match found {
            Found::Built => tracing::info!(env = %dir.display(), "environment built"),
            Found::Cached => tracing::debug!(env = %dir.display(), "environment found in the cache"),
        }
        Ok(dir)
    }
}

/// A built environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltEnv {
    /// Its directory in the cache.
    pub dir: PathBuf,
    /// Whether it is a conda environment (else a virtual environment).
    pub conda: bool,
}

/// Puts the environment first on the entry point's PATH, as activating it would.
pub fn activate(built: &BuiltEnv, env: &mut EntryPointEnv) {
    let BuiltEnv { dir, conda } = built;
    let bin = dir.join("bin");
    let path = match std::env::var_os("PATH") {
        Some(rest) if !rest.is_empty() => {
            let mut joined = bin.into_os_string();
            joined.push(":");
            joined.push(rest);
            joined
        }
        _ => bin.into_os_string(),
    };
    env.set.push(("PATH".into(), path.to_string_lossy().into_owned()));
    let variable = if *conda { "CONDA_PREFIX" } else { "VIRTUAL_ENV" };
    env.set.push((variable.into(), dir.to_string_lossy().into_owned()));
    env.remove.push("PYTHONHOME".into());
}
