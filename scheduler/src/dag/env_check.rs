//! Checking that a stage's environment can be built here, before anything is created: the
//! manager fits the project, its `python_env` file reads and names only files of the project,
//! uv finds its Python on this machine, conda or micromamba is on PATH for a `conda_env`, and
//! a `docker_env` project runs on an executor that runs images.

use std::path::Path;

use concurrent_mlflow::environment::{EnvManager, PythonEnv, RunEnv, conda, resolve, uv};
use concurrent_mlflow::project::ProjectEnv;

use super::LoadOptions;
use super::error::Errors;
use super::model::Stage;
use super::value::join;

/// Pushes an error for each reason the stage's environment cannot be built.
pub(crate) fn check_environment(
    errors: &mut Errors,
    stage: &Stage,
    project_dir: &Path,
    declared: &ProjectEnv,
    options: &LoadOptions,
) {
    let place = join("stages", &stage.name);
    let manager_place = match stage.env_manager {
        Some(_) => join(&place, "env_manager"),
        None => join(&place, "project"),
    };
    let project_place = join(&place, "project");
    let env = match resolve(declared, stage.env_manager) {
        Ok(env) => env,
        Err(e) => return errors.push(manager_place, e.to_string()),
    };
    match env {
        RunEnv::Local => {}
        RunEnv::Uv(file) => {
            let python = match &file {
                Some(file) => match PythonEnv::load(project_dir, file) {
                    Ok(env) => env.python,
                    Err(e) => return errors.push(project_place, e.to_string()),
                },
                None => None,
            };
            if let Err(e) = uv::find_python(python.as_deref()) {
                let what = file.map_or_else(|| format!("env_manager {}", manager_name(stage)), |f| f.clone());
                errors.push(project_place, format!("{what}: {e}"));
            }
        }
        RunEnv::Conda(file) => {
            if let Err(problem) = conda_file_problem(&project_dir.join(&file)) {
                return errors.push(project_place, format!("{file}: {problem}"));
            }
            if conda::program().is_none() {
                errors.push(
                    manager_place,
                    format!(
                        "the project's conda_env ({file}) needs conda or micromamba on PATH, and neither was found: \
                         install micromamba, or run the stage with env_manager: local"
                    ),
                );
            }
        }
        RunEnv::Docker(image) if !options.runs_images => errors.push(
            project_place,
            format!(
                "the project declares docker_env (image {image}), which only the Kubernetes executor runs; \
                 the local executor cannot"
            ),
        ),
        RunEnv::Docker(_) => {}
    }
}

fn manager_name(stage: &Stage) -> &'static str {
    stage.env_manager.map_or("", EnvManager::as_str)
}

/// Why a conda environment file cannot be used: not readable, not YAML, not a mapping.
fn conda_file_problem(path: &Path) -> Result<(), String> {
    let bytes = concurrent_mlflow::yaml_limits::read_file(path).map_err(|e| format!("cannot read: {e}"))?;
    let value: serde_yaml::Value = serde_yaml::from_slice(&bytes).map_err(|e| format!("not valid YAML: {e}"))?;
    match value {
        serde_yaml::Value::Mapping(_) => Ok(()),
        _ => Err("expected a mapping (name, channels, dependencies)".to_owned()),
    }
}
