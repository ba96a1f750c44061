//! The image a stage's workers run in on Kubernetes (DESIGN §6): the stage's `image`, else the
//! MLproject's `docker_env` image, else one built in the cluster from the project snapshot and
//! its `python_env`, tagged by content hash and built only when the registry lacks that tag.
//!
//! [`choose_image`] decides (pure); [`registry::Registry::has_image`] asks the registry;
//! [`build_job::build_objects`] makes the build's ConfigMap and Job. The executor applies
//! them: choose, and for [`ImageChoice::Build`] look the tag up, create the build objects when
//! it is absent, wait for the Job, then start the workers on `plan.image`.

pub mod build_job;
pub mod recipe;
pub mod registry;

use std::path::Path;

use concurrent_mlflow::project::ProjectEnv;

pub use build_job::{BuildJobError, BuildJobSettings, BuildObjects, build_objects};
pub use concurrent_mlflow::environment::{PythonEnv, PythonEnvError};
pub use recipe::{BuildPlan, ImageSettings, plan_build};
pub use registry::{Registry, RegistryCredentials, RegistryError, credentials_from_docker_config};

/// Where a stage's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageChoice {
    /// The stage's own `image:`.
    Stage(String),
    /// The MLproject's `docker_env.image`.
    DockerEnv(String),
    /// To be built in the cluster (unless the registry has the tag already).
    Build(BuildPlan),
}

impl ImageChoice {
    /// The image workers run.
    pub fn image(&self) -> &str {
        match self {
            ImageChoice::Stage(image) | ImageChoice::DockerEnv(image) => image,
            ImageChoice::Build(plan) => &plan.image,
        }
    }
}

/// Why no image can be chosen for a stage.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A conda project cannot be built here.
    #[error(
        "the project declares conda_env ({file}); on Kubernetes give the stage an `image` \
         or the MLproject a `docker_env` (images are built for python_env projects only)"
    )]
    CondaNeedsImage {
        /// The conda file.
        file: String,
    },
    /// A project needs building but no registry is configured to push to.
    #[error("the project's image must be built, but no registry for built images is configured for this cluster")]
    NoRegistry,
    /// The `python_env` file cannot be read or is not valid.
    #[error(transparent)]
    PythonEnv(#[from] PythonEnvError),
    /// A value of the `python_env` file an image build cannot take.
    #[error("{file}: {place}: {problem}")]
    NotBuildable {
        /// The file as named in the MLproject.
        file: String,
        /// The key, e.g. `dependencies[2]`.
        place: String,
        /// What is wrong.
        problem: String,
    },
}

/// The image for a stage with `stage_image` whose project declares `env`; `python_env` is the
/// parsed `python_env` file when `env` names one ([`load_python_env`]).
pub fn choose_image(
    stage_image: Option<&str>,
    env: &ProjectEnv,
    python_env: Option<&PythonEnv>,
    snapshot_hash: &str,
    settings: &ImageSettings,
) -> Result<ImageChoice, ImageError> {
    if let Some(image) = stage_image {
        return Ok(ImageChoice::Stage(image.to_string()));
    }
    match env {
        ProjectEnv::Docker { image } => Ok(ImageChoice::DockerEnv(image.clone())),
        ProjectEnv::CondaEnv(file) => Err(ImageError::CondaNeedsImage { file: file.clone() }),
        ProjectEnv::PythonEnv(_) | ProjectEnv::Local => {
            if settings.registry.trim().is_empty() {
                return Err(ImageError::NoRegistry);
            }
            Ok(ImageChoice::Build(plan_build(snapshot_hash, python_env, settings)))
        }
    }
}

/// Reads the project's `python_env` file, when `env` names one (as the local environments read
/// it), and checks what an image build needs of it.
pub fn load_python_env(project_dir: &Path, env: &ProjectEnv) -> Result<Option<PythonEnv>, ImageError> {
    let ProjectEnv::PythonEnv(file) = env else { return Ok(None) };
    let python_env = PythonEnv::load(project_dir, file)?;
    buildable(&python_env, file)?;
    Ok(Some(python_env))
}

/// What a build takes: a version that can name a base image (`3.11`, `3.11.9`), and one
/// non-empty requirement per line.
fn buildable(env: &PythonEnv, file: &str) -> Result<(), ImageError> {
    let invalid = |place: String, problem: &str| ImageError::NotBuildable {
        file: file.to_string(),
        place,
        problem: problem.to_string(),
    };
    if let Some(python) = &env.python {
        let parts: Vec<&str> = python.split('.').collect();
        let version_ok = (1..=3).contains(&parts.len())
            && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(invalid("python".into(), "must be a version such as 3.11 or 3.11.9"));
        }
    }
    for (key, list) in [("build_dependencies", &env.build_dependencies), ("dependencies", &env.dependencies)] {
        for (i, entry) in list.iter().enumerate() {
            if entry.trim().is_empty() {
                return Err(invalid(format!("{key}[{i}]"), "must not be empty"));
            }
            if entry.contains(['\n', '\r', '\0']) {
                return Err(invalid(format!("{key}[{i}]"), "must be one line"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ImageSettings {
        ImageSettings { registry: "registry.example.com".into(), ..ImageSettings::default() }
    }

    #[test]
    fn the_stage_image_wins_then_docker_env_then_a_build() {
        let docker = ProjectEnv::Docker { image: "ghcr.io/acme/thumbs:1".into() };
        let python = ProjectEnv::PythonEnv("python_env.yaml".into());
        let env =
            PythonEnv { python: Some("3.11".into()), build_dependencies: vec![], dependencies: vec!["numpy".into()] };
        assert_eq!(
            choose_image(Some("acme/own:2"), &docker, None, "ab", &settings()).unwrap(),
            ImageChoice::Stage("acme/own:2".into())
        );
        assert_eq!(
            choose_image(None, &docker, None, "ab", &settings()).unwrap(),
            ImageChoice::DockerEnv("ghcr.io/acme/thumbs:1".into())
        );
        let built = choose_image(None, &python, Some(&env), "ab", &settings()).unwrap();
        assert_eq!(built, ImageChoice::Build(plan_build("ab", Some(&env), &settings())));
        assert!(built.image().starts_with("registry.example.com/concurrent-projects:"));
    }

    #[test]
    fn what_cannot_be_built_is_said() {
        let conda = ProjectEnv::CondaEnv("conda.yaml".into());
        let message = choose_image(None, &conda, None, "ab", &settings()).unwrap_err().to_string();
        assert!(message.starts_with("the project declares conda_env (conda.yaml)"), "{message}");
        let no_registry = ImageSettings::default();
        assert!(matches!(
            choose_image(None, &ProjectEnv::Local, None, "ab", &no_registry),
            Err(ImageError::NoRegistry)
        ));
    }

    #[test]
    fn the_python_env_file_is_read_from_the_project() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("python_env.yaml"), "python: \"3.10\"\ndependencies: [pillow]\n").unwrap();
        let env = load_python_env(dir.path(), &ProjectEnv::PythonEnv("python_env.yaml".into())).unwrap().unwrap();
        assert_eq!(env.python.as_deref(), Some("3.10"));
        assert_eq!(load_python_env(dir.path(), &ProjectEnv::Local).unwrap(), None);
        let missing = load_python_env(dir.path(), &ProjectEnv::PythonEnv("nope.yaml".into())).unwrap_err();
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
    }

    #[test]
    fn values_a_build_cannot_take_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let message = |text: &str| {
            std::fs::write(dir.path().join("python_env.yaml"), text).unwrap();
            load_python_env(dir.path(), &ProjectEnv::PythonEnv("python_env.yaml".into())).unwrap_err().to_string()
        };
        assert_eq!(
            message("python: \"3.11; rm -rf /\"\n"),
            "python_env.yaml: python: must be a version such as 3.11 or 3.11.9"
        );
        assert_eq!(
            message("python: \"3.11\"\ndependencies: [\"a\\n--index-url http://x\"]\n"),
            "python_env.yaml: dependencies[0]: must be one line"
        );
        assert_eq!(
            message("python: \"3\"\nbuild_dependencies: [\" \"]\n"),
            "python_env.yaml: build_dependencies[0]: must not be empty"
        );
    }
}
