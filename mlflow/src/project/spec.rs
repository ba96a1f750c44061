//! Parsing MLproject YAML into an [`MlProject`], with errors that name the bad key.
//!
//! Follows `mlflow/projects/_project_spec.py`: keys `name`, `python_env`, `conda_env`,
//! `docker_env: {image}`, `entry_points` (other keys are ignored, as MLflow ignores them);
//! parameters as `name: type` or `name: {type, default}`, type `string` when not given, and
//! YAML defaults turned into text the way Python's `str()` prints them. Stricter than MLflow:
//! an unknown type, a default not of its type or a missing `command` is an error here.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use crate::yaml_limits::{self, Scan};

use super::{EntryPoint, MlProject, ParamType, Parameter, ProjectEnv, ProjectError};

/// Parses MLproject text; `origin` starts every error message.
pub(super) fn parse(text: &str, origin: &str) -> Result<MlProject, ProjectError> {
    let scanned = yaml_limits::scan(text);
    match &scanned {
        Scan::TooDeep(at) => return Err(Places { origin }.invalid(&at.to_string(), yaml_limits::too_deep_message())),
        Scan::Invalid(at, problem) if !scanned.loadable(text) => {
            return Err(Places { origin }.invalid(&at.to_string(), format!("not valid YAML: {problem}")));
        }
        _ => {}
    }
    let doc: Value =
        serde_yaml::from_str(text).map_err(|source| ProjectError::Yaml { origin: origin.to_owned(), source })?;
    // Read again as MLflow's PyYAML reads it (YAML 1.1 scalars).
    let doc = super::yaml11::load(text).unwrap_or(doc);
    let at = Places { origin };
    let top = match doc {
        Value::Mapping(map) => map,
        Value::Null => return Err(at.invalid("(top level)", "the file is empty")),
        _ => return Err(at.invalid("(top level)", "expected a mapping of keys")),
    };
    let mut name = None;
    let mut envs: Vec<(&str, ProjectEnv)> = Vec::new();
    let mut entry_points = BTreeMap::new();
    for (key, value) in &top {
        let key = at.key(key, "")?;
        match key.as_str() {
            "name" if !value.is_null() => name = Some(at.scalar(value, "name")?),
            "python_env" if !value.is_null() => {
                envs.push(("python_env", ProjectEnv::PythonEnv(at.string(value, "python_env")?)))
            }
            "conda_env" if !value.is_null() => {
                envs.push(("conda_env", ProjectEnv::CondaEnv(at.string(value, "conda_env")?)))
            }
            "docker_env" if !value.is_null() => envs.push(("docker_env", at.docker(value)?)),
            "entry_points" if !value.is_null() => {
                let map = at.mapping(value, "entry_points")?;
                for (ep_name, ep) in map {
                    let ep_name = at.key(ep_name, "entry_points.")?;
                    let entry = at.entry_point(&ep_name, ep)?;
                    entry_points.insert(ep_name, entry);
                }
            }
            _ => {}
        }
    }
    let env = match envs.len() {
        0 => ProjectEnv::Local,
        1 => envs.remove(0).1,
        _ => {
            let keys: Vec<&str> = envs.iter().map(|(k, _)| *k).collect();
            return Err(at.invalid(&keys.join(", "), "declare at most one of python_env, conda_env and docker_env"));
        }
    };
    Ok(MlProject { name, env, entry_points })
}

/// Builds errors that name the origin and the dotted place.
struct Places<'a> {
    origin: &'a str,
}

impl Places<'_> {
    fn invalid(&self, place: &str, problem: impl Into<String>) -> ProjectError {
        ProjectError::Invalid { origin: self.origin.to_owned(), place: place.to_owned(), problem: problem.into() }
    }

    fn mapping<'v>(&self, value: &'v Value, place: &str) -> Result<&'v Mapping, ProjectError> {
        value.as_mapping().ok_or_else(|| self.invalid(place, format!("expected a mapping, found {}", kind(value))))
    }

    fn string(&self, value: &Value, place: &str) -> Result<String, ProjectError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.invalid(place, format!("expected a string, found {}", kind(value))))
    }

    /// A scalar printed as Python's `str()` would print it.
    fn scalar(&self, value: &Value, place: &str) -> Result<String, ProjectError> {
        python_str(value).ok_or_else(|| self.invalid(place, format!("expected a scalar, found {}", kind(value))))
    }

    /// A mapping key as text; `prefix` is the place of the mapping, with its trailing dot.
    fn key(&self, key: &Value, prefix: &str) -> Result<String, ProjectError> {
        python_str(key).ok_or_else(|| self.invalid(&format!("{prefix}{}", kind(key)), "keys must be scalars (names)"))
    }

    fn docker(&self, value: &Value) -> Result<ProjectEnv, ProjectError> {
        let map = self.mapping(value, "docker_env")?;
        match map.get("image") {
            None | Some(Value::Null) => {
                Err(self.invalid("docker_env.image", "missing (docker_env needs the image to run in)"))
            }
            Some(image) => {
                let image = self.string(image, "docker_env.image")?;
                if image.trim().is_empty() {
                    return Err(self.invalid("docker_env.image", "must not be empty"));
                }
                Ok(ProjectEnv::Docker { image })
            }
        }
    }

    fn entry_point(&self, name: &str, value: &Value) -> Result<EntryPoint, ProjectError> {
        let place = format!("entry_points.{name}");
        let map = self.mapping(value, &place)?;
        let command = match map.get("command") {
            None | Some(Value::Null) => {
                return Err(self.invalid(&format!("{place}.command"), "missing (every entry point needs a command)"));
            }
            Some(command) => self.string(command, &format!("{place}.command"))?,
        };
        let mut parameters = BTreeMap::new();
        if let Some(params) = map.get("parameters").filter(|v| !v.is_null()) {
            let params_place = format!("{place}.parameters");
            for (key, decl) in self.mapping(params, &params_place)? {
                let param_name = self.key(key, &format!("{params_place}."))?;
                let param_place = format!("{params_place}.{param_name}");
                let param = self.parameter(&param_place, decl)?;
                if let Some(default) = &param.default {
                    param.check_value(&param_name, default).map_err(|source| ProjectError::BadDefault {
                        origin: self.origin.to_owned(),
                        place: format!("{param_place}.default"),
                        source: Box::new(source),
                    })?;
                }
                parameters.insert(param_name, param);
            }
        }
        Ok(EntryPoint { name: name.to_owned(), command, parameters })
    }

    fn parameter(&self, place: &str, decl: &Value) -> Result<Parameter, ProjectError> {
        let (type_value, type_place, default) = match decl {
            Value::String(_) => (Some(decl), place.to_owned(), None),
            Value::Mapping(map) => {
                let default = match map.get("default") {
                    None | Some(Value::Null) => None,
                    Some(d) => Some(self.scalar(d, &format!("{place}.default"))?),
                };
                let type_value = map.get("type").filter(|t| !t.is_null());
                (type_value, format!("{place}.type"), default)
            }
            _ => {
                return Err(self.invalid(
                    place,
                    format!("expected a type name or a mapping {{type, default}}, found {}", kind(decl)),
                ));
            }
        };
        let kind = match type_value {
            None => ParamType::String,
            Some(t) => {
                let name = self.scalar(t, &type_place)?;
                ParamType::from_name(&name).ok_or_else(|| {
                    self.invalid(
                        &type_place,
                        format!("unknown type '{name}' (expected string, float, int, path or uri)"),
                    )
                })?
            }
        };
        Ok(Parameter { kind, default })
    }
}

/// What kind of YAML value this is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A YAML scalar as Python's `str()` prints what PyYAML loads; `None` for non-scalars.
pub(crate) fn python_str(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("None".to_owned()),
        Value::Bool(true) => Some("True".to_owned()),
        Value::Bool(false) => Some("False".to_owned()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => python_float_str(f),
            (None, None, None) => n.to_string(),
        }),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

/// Python's `repr()`/`str()` of a float: shortest round-trip digits, `1.0` not `1`,
/// exponent notation below 1e-4 and from 1e16 (`1e-05`, `1e+16`).
pub(super) fn python_float_str(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` gives a shortest round-trip digit string, e.g. "-1.2345e-7"; when several
    // exist Python picks the closest to the value, which is the correctly rounded one.
    let shortest = format!("{value:e}");
    let digit_count = shortest.split('e').next().map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let rounded = format!("{value:.*e}", digit_count.saturating_sub(1));
    let sci = if rounded.parse::<f64>() == Ok(value) { rounded } else { shortest };
    let (sign, sci) = match sci.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exp) {
        let point = exp + 1;
        let len = digits.len() as i32;
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point >= len {
            format!("{digits}{}.0", "0".repeat((point - len) as usize))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    };
    format!("{sign}{body}")
}
