//! Reading one stage's fields (`stages.<name>`) into a [`Stage`]; the project itself is
//! resolved and checked later, in `project_check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use concurrent_mlflow::environment::EnvManager;
use serde_yaml::Value;

use super::duration::parse_duration;
use super::error::Errors;
use super::model::{Partition, ProjectRef, Resources, Stage};
use super::project_ref::parse_git;
use super::quantity::{byte_size, quantity};
use super::quote::quote;
use super::uri::parse_input;
use super::value::{Fields, boolean, describe, integer, join, nonempty_string, scalar_string, string_list};
use crate::partition::{Include, PartitionError};
use crate::run_core::{DEFAULT_SPECULATION, Speculation};
use concurrent_mlflow::duration::DurationError;

/// Default extra attempts per shard.
pub const DEFAULT_RETRIES: u32 = 2;
/// Most extra attempts per shard.
pub const MAX_RETRIES: u32 = 100;
/// Smallest `log_limit`: room for a head, a tail and the line between them.
pub const MIN_LOG_LIMIT: u64 = 1024;
/// Default entry point.
pub const DEFAULT_ENTRY_POINT: &str = "main";

/// Reads `stages.<name>`; `None` when the stage is unusable (errors are recorded).
pub(crate) fn read_stage(errors: &mut Errors, name: &str, v: &Value, base_dir: &Path) -> Option<Stage> {
    let place = join("stages", name);
    let mut f = Fields::open(errors, &place, v)?;
    let before = errors.0.len();

    let project = match f.take("project") {
        Some(v) => read_project(errors, &f.place_of("project"), v),
        None => {
            errors.push(f.place_of("project"), "required");
            None
        }
    };
    let entry_point = f
        .take("entry_point")
        .and_then(|v| nonempty_string(errors, &f.place_of("entry_point"), v))
        .unwrap_or_else(|| DEFAULT_ENTRY_POINT.to_string());
    let (parameters, parameter_order) =
        f.take("parameters").map(|v| read_parameters(errors, &f.place_of("parameters"), v)).unwrap_or_default();
    let include = f.take("include").map(|v| read_include(errors, &f.place_of("include"), v)).unwrap_or_default();
    let partition =
        f.take("partition").and_then(|v| read_partition(errors, &f.place_of("partition"), v)).unwrap_or_default();
    let parallelism = f
        .take("parallelism")
        .and_then(|v| {
            let p = f.place_of("parallelism");
            integer(errors, &p, v, "a positive integer", 1, u32::MAX.into())
        })
        .unwrap_or(1);
    let retries = f
        .take("retries")
        .and_then(|v| {
            let p = f.place_of("retries");
            integer(errors, &p, v, "a non-negative integer", 0, MAX_RETRIES.into())
        })
        .unwrap_or(DEFAULT_RETRIES);
    let timeout = f.take("timeout").and_then(|v| {
        let p = f.place_of("timeout");
        let result = match v {
            Value::String(s) => parse_duration(s),
            other => Err(format!("{}, found {}", DurationError::NotADuration, describe(other))),
        };
        result.map_err(|m| errors.push(p, m)).ok()
    });
    let resources =
        f.take("resources").map(|v| read_resources(errors, &f.place_of("resources"), v)).unwrap_or_default();
    let clusters = f.take("clusters").map(|v| string_list(errors, &f.place_of("clusters"), v)).unwrap_or_default();
    let image = f.take("image").and_then(|v| {
        let p = f.place_of("image");
        let text = nonempty_string(errors, &p, v)?;
        match text.parse::<oci_client::Reference>() {
            Ok(_) => Some(text),
            Err(error) => {
                errors.push(&p, format!("`{text}` is not an image reference ({error})"));
                None
            }
        }
    });
    let mut after = f.take("after").map(|v| string_list(errors, &f.place_of("after"), v)).unwrap_or_default();
    after.sort();
    after.dedup();
    let input = f.take("input").and_then(|v| {
        let p = f.place_of("input");
        let text = nonempty_string(errors, &p, v)?;
        parse_input(&text, base_dir).map_err(|m| errors.push(&p, m)).ok()
    });
    let fail_on_empty = f.take("fail_on_empty").and_then(|v| boolean(errors, &f.place_of("fail_on_empty"), v));
    let log_limit = f.take("log_limit").and_then(|v| byte_size(errors, &f.place_of("log_limit"), v, MIN_LOG_LIMIT));
    let speculate = f.take("speculate").map(|v| read_speculate(errors, &f.place_of("speculate"), v));
    let env_manager = f.take("env_manager").and_then(|v| {
        let p = f.place_of("env_manager");
        let name = nonempty_string(errors, &p, v)?;
        EnvManager::from_name(&name).map_err(|e| errors.push(p, e.to_string())).ok()
    });
    f.finish(errors);

    let project = project?;
    (errors.0.len() == before).then(|| Stage {
        name: name.to_string(),
        project,
        project_dir: PathBuf::new(),
        entry_point,
        parameters,
        parameter_order,
        undeclared_parameters: Vec::new(),
        resolved_parameters: BTreeMap::new(),
        git_commit: None,
        include,
        partition,
        parallelism,
        retries,
        timeout,
        resources,
        clusters,
        image,
        after,
        input,
        fail_on_empty: fail_on_empty.unwrap_or(false),
        log_limit,
        env_manager,
        speculate: speculate.unwrap_or(Some(DEFAULT_SPECULATION)),
    })
}

/// The largest `speculate` factor: beyond it, no attempt would ever be copied in practice.
pub const MAX_SPECULATE_FACTOR: f64 = 100.0;

/// `speculate: true` (three times the median), `false` (never), or a factor of the median
/// above 1, such as `2` or `4.5` (kept to the hundredth).
fn read_speculate(errors: &mut Errors, place: &str, v: &Value) -> Option<Speculation> {
    let expected = "expected true, false or a factor of the median above 1 such as 3";
    match v {
        Value::Bool(true) => Some(DEFAULT_SPECULATION),
        Value::Bool(false) => None,
        Value::Number(n) => match n.as_f64() {
            Some(factor) if factor > 1.0 && factor <= MAX_SPECULATE_FACTOR => {
                Some(Speculation { percent_of_median: (factor * 100.0).round() as u32 })
            }
            _ => {
                errors.push(place, format!("must be above 1 and at most {MAX_SPECULATE_FACTOR}, found {n}"));
                None
            }
        },
        other => {
            errors.push(place, format!("{expected}, found {}", describe(other)));
            None
        }
    }
}

/// `project: ./dir`, `project: {git: URL#subdir@rev}` or `project: "git: URL…"`.
fn read_project(errors: &mut Errors, place: &str, v: &Value) -> Option<ProjectRef> {
    let git = |errors: &mut Errors, place: &str, spec: &str| parse_git(spec).map_err(|m| errors.push(place, m)).ok();
    match v {
        Value::String(s) => match s.trim().strip_prefix("git:") {
            Some(spec) => git(errors, place, spec),
            None if s.trim().is_empty() => {
                errors.push(place, "must not be empty");
                None
            }
            None => Some(ProjectRef::Local(PathBuf::from(s.trim()))),
        },
        Value::Mapping(_) => {
            let mut f = Fields::open(errors, place, v)?;
            let spec = f.take("git");
            let spec_place = f.place_of("git");
            f.finish(errors);
            match spec {
                Some(spec) => {
                    let spec = nonempty_string(errors, &spec_place, spec)?;
                    git(errors, &spec_place, &spec)
                }
                None => {
                    errors.push(spec_place, "required");
                    None
                }
            }
        }
        other => {
            errors.push(place, format!("expected a project directory or {{git: URL}}, found {}", describe(other)));
            None
        }
    }
}

/// The parameters and their names in the order the file gives them.
fn read_parameters(errors: &mut Errors, place: &str, v: &Value) -> (BTreeMap<String, String>, Vec<String>) {
    let Some(f) = Fields::open(errors, place, v) else {
        return (BTreeMap::new(), Vec::new());
    };
    let mut params = BTreeMap::new();
    let mut order = Vec::new();
    for (name, value) in f.all() {
        match scalar_string(value) {
            Some(s) => {
                params.insert(name.to_string(), s);
                order.push(name.to_string());
            }
            None => errors
                .push(join(place, name), format!("expected a string, number or boolean, found {}", describe(value))),
        }
    }
    (params, order)
}

fn read_include(errors: &mut Errors, place: &str, v: &Value) -> Vec<String> {
    let globs = string_list(errors, place, v);
    for (i, glob) in globs.iter().enumerate() {
        let problem = match Include::new(std::slice::from_ref(glob)) {
            Ok(_) => continue,
            // globset's own message names the pattern as rewritten (`**/[a-`): name the glob
            // as written instead.
            Err(PartitionError::Glob { source, .. }) => {
                format!("invalid include glob {}: {}", quote(glob), source.kind())
            }
            Err(PartitionError::EmptyGlob { .. }) => format!("include glob {} is empty", quote(glob)),
            Err(other) => other.to_string(),
        };
        errors.push(format!("{place}[{i}]"), problem);
    }
    globs
}

/// What is wrong with a regex, on one line: the regex crate's syntax errors show the pattern
/// and a caret over several lines, and end with `error: <what>`.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn read_partition(errors: &mut Errors, place: &str, v: &Value) -> Option<Partition> {
    const MODES: &str = "expected one of object, directory, key, none";
    let (by, by_place, mut f) = match v {
        Value::String(s) => (Some(s.as_str()), place.to_string(), None),
        _ => {
            let mut f = Fields::open(errors, place, v)?;
            let by_place = f.place_of("by");
            let by = match f.take("by") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(other) => {
                    errors.push(&by_place, format!("{MODES}, found {}", describe(other)));
                    return None;
                }
                None => None,
            };
            (by, by_place, Some(f))
        }
    };
    let mut take = |name: &str| f.as_mut().and_then(|f| f.take(name).map(|v| (f.place_of(name), v)));
    let mut size = |errors: &mut Errors, name: &str| {
        take(name).and_then(|(p, v)| integer(errors, &p, v, "a positive integer", 1, u32::MAX.into()))
    };
    let shard_size = size(errors, "shard_size");
    let shards = size(errors, "shards");
    let pattern = take("pattern");
    let sizes_given = shard_size.is_some() || shards.is_some();
    if shard_size.is_some() && shards.is_some() {
        errors.push(place, "shard_size and shards cannot both be set");
    }
    let partition = match by.unwrap_or("object") {
        "object" => Partition::Object { shard_size, shards },
        "key" => {
            let Some((p, v)) = pattern else {
                errors.push(format!("{place}.pattern"), "required with by: key");
                return None;
            };
            let text = nonempty_string(errors, &p, v)?;
            let regex = match regex::Regex::new(&text) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(&p, format!("invalid regex: {}", regex_problem(&e)));
                    return None;
                }
            };
            let groups = regex.captures_len() - 1;
            if groups != 1 {
                errors.push(&p, format!("must have exactly one capture group, found {groups}"));
                return None;
            }
            return finish(errors, f, Partition::Key { pattern: regex, shard_size, shards });
        }
        mode @ ("directory" | "none") => {
            if sizes_given {
                errors.push(place, format!("shard_size and shards are not allowed with by: {mode}"));
            }
            if mode == "directory" { Partition::Directory } else { Partition::None }
        }
        other => {
            errors.push(by_place, format!("{MODES}, found {}", quote(other)));
            return None;
        }
    };
    if let Some((p, _)) = pattern {
        errors.push(p, "only allowed with by: key");
    }
    finish(errors, f, partition)
}

fn finish(errors: &mut Errors, f: Option<Fields<'_>>, p: Partition) -> Option<Partition> {
    if let Some(f) = f {
        f.finish(errors);
    }
    Some(p)
}

fn read_resources(errors: &mut Errors, place: &str, v: &Value) -> Resources {
    let Some(mut f) = Fields::open(errors, place, v) else {
        return Resources::default();
    };
    let cpu = f.take("cpu").and_then(|v| quantity(errors, &f.place_of("cpu"), v));
    let memory = f.take("memory").and_then(|v| quantity(errors, &f.place_of("memory"), v));
    let gpu = f
        .take("gpu")
        .and_then(|v| {
            let p = f.place_of("gpu");
            integer(errors, &p, v, "a non-negative integer", 0, u32::MAX.into())
        })
        .unwrap_or(0);
    f.finish(errors);
    Resources { cpu, memory, gpu }
}
