//! From DAG text to a validated [`Dag`]: the YAML/JSON syntax, the top-level fields, the
//! overrides, then the stage, graph and project rules. Every error found is returned.

use concurrent_mlflow::environment::EnvManager;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::LoadOptions;
use super::error::{Errors, SpecError, SpecErrors};
use super::model::{Dag, InputSource, Overrides, Stage};
use super::project_check::{Projects, check_project};
use super::quote::{key, named, quote};
use super::rules::check_graph;
use super::stage::read_stage;
use super::syntax::parse_yaml;
use super::uri::parse_input;
use super::value::{Fields, describe, join, nonempty_string};

static DAG_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[a-z0-9-]{1,63}$").ok());
static STAGE_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,62}$").ok());

/// Most stages in one DAG.
pub const MAX_STAGES: usize = 10_000;

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(s))
}

/// Parses, applies `overrides` and validates.
pub(crate) fn parse(
    text: &str,
    base_dir: &Path,
    overrides: &Overrides,
    options: &LoadOptions,
) -> Result<Dag, SpecErrors> {
    let root = parse_yaml(text)?;
    if !root.is_mapping() {
        let message = format!("the DAG file must be a map, found {}", describe(&root));
        return Err(SpecError::new("line 1, column 1", message).into());
    }
    let mut errors = Errors::default();
    let Some(mut f) = Fields::open(&mut errors, "", &root) else {
        return Err(SpecErrors(errors.0));
    };

    let name = match f.take("name") {
        Some(v) => nonempty_string(&mut errors, "name", v).filter(|n| {
            let ok = matches(&DAG_NAME, n);
            if !ok {
                errors.push("name", format!("must match [a-z0-9-]{{1,63}}, found {}", quote(n)));
            }
            ok
        }),
        None => {
            errors.push("name", "required");
            None
        }
    };
    let experiment = f.take("experiment").and_then(|v| nonempty_string(&mut errors, "experiment", v));
    // When the input is present but invalid, `none` stands in, so that root stages are not
    // also reported without an input.
    let mut input = f.take("input").map(|v| {
        nonempty_string(&mut errors, "input", v)
            .and_then(|text| parse_input(&text, base_dir).map_err(|m| errors.push("input", m)).ok())
            .unwrap_or(InputSource::None)
    });
    if let Some(uri) = &overrides.input {
        input = Some(parse_input(uri, Path::new(".")).unwrap_or_else(|m| {
            errors.push("--input", m);
            InputSource::None
        }));
    }

    let mut names = BTreeSet::new();
    let mut stages = BTreeMap::new();
    match f.take("stages") {
        None => errors.push("stages", "required: at least one stage"),
        Some(v) => {
            if let Some(sf) = Fields::open(&mut errors, "stages", v) {
                let mut entries = sf.all();
                if entries.is_empty() {
                    errors.push("stages", "at least one stage is required");
                }
                if entries.len() > MAX_STAGES {
                    errors.push("stages", format!("{} stages, more than {MAX_STAGES} (the limit)", entries.len()));
                    entries.clear();
                }
                for (key, body) in entries {
                    names.insert(key.to_string());
                    if !matches(&STAGE_NAME, key) {
                        errors.push(join("stages", key), "stage names must match [a-z0-9][a-z0-9_-]{0,62}");
                    }
                    if let Some(stage) = read_stage(&mut errors, key, body, base_dir) {
                        stages.insert(key.to_string(), stage);
                    }
                }
            }
        }
    }
    f.finish(&mut errors);

    let param_places = apply_parameters(&mut errors, &mut stages, &names, overrides);
    if let Some(name) = &overrides.env_manager {
        match EnvManager::from_name(name) {
            Ok(manager) => stages.values_mut().for_each(|stage| stage.env_manager = Some(manager)),
            Err(e) => errors.push("--env-manager", e.to_string()),
        }
    }
    check_graph(&mut errors, &stages, &names, input.as_ref());
    let mut projects = Projects::new(&options.git_cache);
    for stage in stages.values_mut() {
        let places = param_places.get(&stage.name).cloned().unwrap_or_default();
        check_project(&mut errors, stage, base_dir, &mut projects, &places, options);
    }

    match name {
        Some(name) if errors.0.is_empty() => Ok(Dag {
            experiment: experiment.unwrap_or_else(|| name.clone()),
            name,
            input: input.unwrap_or(InputSource::None),
            stages,
            base_dir: base_dir.to_path_buf(),
            source_text: text.to_string(),
        }),
        _ => Err(SpecErrors(errors.0)),
    }
}

/// Applies `-P` overrides to the stages; returns, per stage, where each overridden parameter
/// was given (`-P stage.param`), so later errors about it name the command line.
fn apply_parameters(
    errors: &mut Errors,
    stages: &mut BTreeMap<String, Stage>,
    names: &BTreeSet<String>,
    overrides: &Overrides,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut places: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (stage, param, value) in &overrides.parameters {
        let place = format!("-P {}.{}", key(stage), key(param));
        match stages.get_mut(stage) {
            Some(s) => {
                s.parameters.insert(param.clone(), value.clone());
                if !s.parameter_order.contains(param) {
                    s.parameter_order.push(param.clone());
                }
                places.entry(stage.clone()).or_default().insert(param.clone(), place);
            }
            None if names.contains(stage) => {} // the stage has errors of its own
            None => errors.push(place, format!("unknown stage {}", named(stage))),
        }
    }
    places
}
