//! Resolving each stage's project to a local directory (cloning git projects) and checking
//! its entry point and parameters against the MLproject.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use concurrent_mlflow::project::snapshot::check_tree;
use concurrent_mlflow::project::{MlProject, ParamType, ProjectError, find_mlproject, local_path};

use super::LoadOptions;
use super::env_check::check_environment;
use super::error::Errors;
use super::model::{ProjectRef, Stage};
use super::project_ref::{FetchedGit, fetch_git};
use super::quote::{named, quote};
use super::uri::normalize;
use super::value::join;

/// The projects of one parse: each git repository is asked for its commit (and cloned) once,
/// and each project directory's MLproject read once, however many stages use them.
pub(crate) struct Projects<'a> {
    cache: &'a Path,
    fetched: BTreeMap<(String, Option<String>), Result<FetchedGit, String>>,
    loaded: BTreeMap<PathBuf, Loaded>,
}

/// A project directory as found: its canonical path and MLproject, or what is wrong with it.
type Loaded = Result<(PathBuf, MlProject), String>;

impl<'a> Projects<'a> {
    /// None fetched yet; clones go under `cache`.
    pub(crate) fn new(cache: &'a Path) -> Self {
        Projects { cache, fetched: BTreeMap::new(), loaded: BTreeMap::new() }
    }

    fn fetch(&mut self, url: &str, rev: Option<&str>) -> Result<FetchedGit, String> {
        let cache = self.cache;
        self.fetched
            .entry((url.to_string(), rev.map(str::to_string)))
            .or_insert_with(|| fetch_git(url, rev, cache).map_err(|e| e.to_string()))
            .clone()
    }

    fn load(&mut self, dir: PathBuf) -> &Loaded {
        self.loaded.entry(dir).or_insert_with_key(|dir| load_project(dir))
    }
}

fn load_project(dir: &Path) -> Loaded {
    if !dir.is_dir() {
        return Err(if dir.exists() {
            format!("{} is not a directory", dir.display())
        } else {
            format!("directory {} not found", dir.display())
        });
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let project = match MlProject::load(&dir) {
        Ok(project) => project,
        Err(ProjectError::NotFound { .. }) => MlProject::without_file(&dir),
        Err(e) => return Err(e.to_string()),
    };
    // What the snapshot would refuse at run time (a link leaving the project) is refused now.
    check_tree(&dir).map_err(|e| e.to_string())?;
    Ok((dir, project))
}

/// Sets `stage.project_dir` and checks the entry point and parameters. `param_places` maps a
/// parameter name to where it was given when that is not the DAG file (`-P stage.param`).
pub(crate) fn check_project(
    errors: &mut Errors,
    stage: &mut Stage,
    base_dir: &Path,
    projects: &mut Projects<'_>,
    param_places: &BTreeMap<String, String>,
    options: &LoadOptions,
) {
    let place = join("stages", &stage.name);
    let project_place = join(&place, "project");
    let dir = match &stage.project {
        ProjectRef::Local(path) => match options.project_dirs.get(&path.display().to_string()) {
            Some(uploaded) => uploaded.clone(),
            None => {
                let dir = normalize(&base_dir.join(path));
                if let Some(root) = &options.local_root
                    && !dir.starts_with(root)
                {
                    let problem = format!(
                        "{} was not uploaded and is outside the project root {} this service allows \
                         (`concurrent run --scheduler` uploads local projects)",
                        path.display(),
                        root.display()
                    );
                    return errors.push(project_place, problem);
                }
                dir
            }
        },
        ProjectRef::Git { url, subdir, rev } => match projects.fetch(url, rev.as_deref()) {
            Ok(fetched) => {
                stage.git_commit = Some(fetched.commit.clone());
                fetched.root.join(subdir.as_deref().unwrap_or(""))
            }
            Err(e) => return errors.push(project_place, e),
        },
    };
    let (dir, project) = match projects.load(dir) {
        Ok((dir, project)) => (dir, project),
        Err(message) => return errors.push(project_place, message.clone()),
    };
    stage.project_dir = dir.clone();
    check_environment(errors, stage, dir, &project.env, options);
    let entry_place = join(&place, "entry_point");
    let entry = match project.entry_point(dir, &stage.entry_point) {
        Ok(entry) => entry,
        Err(ProjectError::NoEntryPoint { .. }) if matches!(find_mlproject(dir), Ok(None)) => {
            return errors.push(
                project_place,
                format!(
                    "no MLproject file in {}, and entry point {} is not a .py or .sh file of it (a project without \
                     an MLproject runs its scripts, e.g. entry_point: train.py)",
                    dir.display(),
                    named(&stage.entry_point)
                ),
            );
        }
        Err(ProjectError::NoEntryPoint { declared, .. }) => {
            let declared = if declared.is_empty() { "none".to_string() } else { declared.join(", ") };
            return errors.push(
                entry_place,
                format!(
                    "no entry point {} in the MLproject of {} (declared: {declared})",
                    named(&stage.entry_point),
                    dir.display()
                ),
            );
        }
        Err(e) => return errors.push(entry_place, e.to_string()),
    };

    let before = errors.0.len();
    let param_place =
        |name: &str| param_places.get(name).cloned().unwrap_or_else(|| join(&join(&place, "parameters"), name));
    let filled = entry.filled_parameters();
    for name in filled.iter().filter(|name| stage.parameters.contains_key(**name)) {
        errors.push(
            param_place(name),
            format!(
                "the worker sets {} to {} for each shard (entry point {} declares it), so this value \
                 would be ignored; remove it",
                named(name),
                filled_meaning(name),
                named(&stage.entry_point)
            ),
        );
    }
    for (name, value) in &stage.parameters {
        if let Some(param) = entry.parameters.get(name)
            && !filled.contains(&name.as_str())
            && let Err(e) = param.check_value(name, value)
        {
            errors.push(param_place(name), bad_value_message(&e));
        }
    }
    stage.undeclared_parameters =
        entry.undeclared(&stage.parameters, &stage.parameter_order).into_iter().map(|(n, _)| n.to_string()).collect();
    if errors.0.len() == before {
        resolve_paths(errors, stage, &entry, base_dir, &param_place);
    }
    for (name, param) in &entry.parameters {
        let given = stage.parameters.contains_key(name) || param.default.is_some();
        if !given && !filled.contains(&name.as_str()) {
            errors.push(
                join(&place, "parameters"),
                format!(
                    "missing parameter {} (entry point {} declares it without a default)",
                    named(name),
                    named(&stage.entry_point)
                ),
            );
        }
    }
    if errors.0.len() == before
        && let Err(e) = entry.check_parameters(&stage.parameters, &filled)
    {
        errors.push(entry_place, format!("entry point {} cannot be used: {e}", named(&stage.entry_point)));
    }
}

/// Resolves the stage's `path` parameters (given, or defaults) as `mlflow run` does: a local
/// path (no scheme, or a `file:` URI without a host) is made absolute against `base_dir` and
/// must exist; a URI is left for the worker to download. Resolved values go to
/// `stage.resolved_parameters`.
fn resolve_paths(
    errors: &mut Errors,
    stage: &mut Stage,
    entry: &concurrent_mlflow::project::EntryPoint,
    base_dir: &Path,
    param_place: &dyn Fn(&str) -> String,
) {
    for (name, param) in &entry.parameters {
        if param.kind != ParamType::Path {
            continue;
        }
        let Some(value) = stage.parameters.get(name).or(param.default.as_ref()) else { continue };
        let Some(local) = local_path(value) else { continue };
        let path = normalize(&base_dir.join(&local));
        if !path.exists() {
            let place = if stage.parameters.contains_key(name) {
                param_place(name)
            } else {
                format!("{} (the default of entry point {})", param_place(name), named(&stage.entry_point))
            };
            errors.push(place, format!("no such file or directory: {}", path.display()));
            continue;
        }
        stage.resolved_parameters.insert(name.clone(), path.display().to_string());
    }
}

/// What the worker puts in a parameter it fills.
fn filled_meaning(name: &str) -> &'static str {
    match name {
        "input_dir" => "the shard's input directory",
        "output_dir" => "the shard's output directory",
        _ => "the path of the shard's manifest",
    }
}

fn bad_value_message(e: &concurrent_mlflow::project::ParamError) -> String {
    match e {
        concurrent_mlflow::project::ParamError::BadValue { kind, value, reason, .. } => {
            format!("expected {}, found {} ({reason})", kind.as_str(), quote(value))
        }
        other => other.to_string(),
    }
}
