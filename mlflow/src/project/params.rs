//! Declared parameters of an entry point and the checks on the values given for them.
//!
//! MLflow itself checks little (that a `uri` has a scheme, that a local `path` exists); our
//! contract checks every declared value against its type too, so a bad DAG is rejected at
//! submit time rather than in a worker. Parameters the entry point does not declare are
//! passed after the command as `--key value`, in the order given, as `mlflow run` does.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EntryPoint, render};

/// The type of a declared parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A number Python's `float()` reads (integers included).
    Float,
    /// An integer.
    Int,
    /// A local path (made absolute, and it must exist) or a URI (downloaded first).
    Path,
    /// A URI: a value with a scheme, as Python's `urlparse` finds one.
    Uri,
}

impl ParamType {
    /// Every type, in the order MLflow documents them.
    pub const ALL: [ParamType; 5] = [Self::String, Self::Float, Self::Int, Self::Path, Self::Uri];

    /// The type's name in an MLproject file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Float => "float",
            Self::Int => "int",
            Self::Path => "path",
            Self::Uri => "uri",
        }
    }

    /// The type named `name` in an MLproject file (exact, lowercase), if any.
    pub fn from_name(name: &str) -> Option<ParamType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Checks that `value` is a value of this type; the error is a reason to show the user.
    pub fn check(self, value: &str) -> Result<(), &'static str> {
        if value.contains('\0') {
            return Err("contains a NUL byte, which no command line can carry");
        }
        match self {
            Self::String => Ok(()),
            Self::Int if is_int(value.trim()) => Ok(()),
            Self::Int => Err("not an integer"),
            Self::Float if value.trim().parse::<f64>().is_ok() => Ok(()),
            Self::Float => Err("not a number"),
            Self::Path | Self::Uri if value.is_empty() => Err("must not be empty"),
            Self::Path | Self::Uri if bad_ipv6_netloc(value) => Err("invalid IPv6 URL"),
            Self::Path => Ok(()),
            Self::Uri if url_scheme(value).is_none() => {
                Err("not a URI: it has no scheme (e.g. s3://bucket/key, file:///abs/path)")
            }
            Self::Uri => Ok(()),
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An optional sign and ASCII digits, as Python's `int()` reads them (without underscores).
fn is_int(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The scheme of `value` (lowercased) as Python's `urllib.parse.urlparse` finds it: after
/// leading spaces and control characters, a letter then letters, digits, `+`, `-` or `.`,
/// before the first `:`. MLflow's `is_uri` is "has a scheme".
pub fn url_scheme(value: &str) -> Option<String> {
    let value = value.trim_start_matches(|c: char| c <= ' ');
    let (scheme, _) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The part of a URI after `scheme://` up to the path, query or fragment (Python's netloc).
fn netloc(value: &str) -> Option<&str> {
    let scheme = url_scheme(value)?;
    let value = value.trim_start_matches(|c: char| c <= ' ');
    let rest = value[scheme.len() + 1..].strip_prefix("//")?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(""))
}

/// Python's `urlparse` refuses a netloc with one bracket of an IPv6 address.
fn bad_ipv6_netloc(value: &str) -> bool {
    netloc(value).is_some_and(|n| n.contains('[') != n.contains(']'))
}

/// The local path a `path` value names, as MLflow's `get_local_path_or_none` finds it: the
/// value itself when it has no scheme, the path of a `file:` URI without a host (percent-
/// decoded); `None` for a URI to download.
pub fn local_path(value: &str) -> Option<String> {
    match url_scheme(value).as_deref() {
        None => Some(value.to_owned()),
        Some("file") if netloc(value).is_none_or(str::is_empty) => {
            let rest = &value.trim_start_matches(|c: char| c <= ' ')["file:".len()..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split(['?', '#']).next().unwrap_or("");
            Some(percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned())
        }
        Some(_) => None,
    }
}

/// A declared parameter of an entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// The declared type (`string` when not given).
    pub kind: ParamType,
    /// The default, as Python's `str()` would print the YAML value; `None` when required.
    pub default: Option<String>,
}

/// Why parameters do not fit an entry point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A declared parameter without default was not given.
    #[error("parameter '{name}' is required (declared without a default) but was not given")]
    Missing {
        /// The declared name.
        name: String,
    },
    /// A value is not of the parameter's declared type.
    #[error("parameter '{name}': value '{value}' is not a valid {kind}: {reason}")]
    BadValue {
        /// The parameter.
        name: String,
        /// Its declared type.
        kind: ParamType,
        /// The value given (or the default).
        value: String,
        /// Why it does not fit.
        reason: String,
    },
    /// The command uses `{name}` but no parameter of that name is declared.
    #[error("the command uses {{{name}}} but the entry point declares no parameter '{name}'")]
    Undeclared {
        /// The name inside the braces.
        name: String,
    },
    /// The command is not a format string this renderer (and Python's `str.format`) accepts.
    #[error("the command is not a valid format string: {reason}")]
    Template {
        /// What is wrong, in Python's words where it has them.
        reason: String,
    },
}

impl Parameter {
    /// Checks one value of this parameter named `name`.
    pub fn check_value(&self, name: &str, value: &str) -> Result<(), ParamError> {
        self.kind.check(value).map_err(|reason| ParamError::BadValue {
            name: name.to_owned(),
            kind: self.kind,
            value: value.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

impl EntryPoint {
    /// Validates `given` against the declared parameters and the command template.
    ///
    /// Undeclared names are not checked (they are passed as `--key value`, see
    /// [`EntryPoint::render_command_in_order`]). A value (given or default) not of its declared type, or a declared
    /// parameter with neither value nor default that is not in `filled` (names the worker will
    /// provide, see [`EntryPoint::filled_parameters`]) is an error, and so is a `{name}` in the
    /// command that names no declared parameter. Returns every declared parameter's value with
    /// defaults applied; names in `filled` without a value are absent.
    pub fn check_parameters(
        &self,
        given: &BTreeMap<String, String>,
        filled: &[&str],
    ) -> Result<BTreeMap<String, String>, ParamError> {
        let template = render::Template::parse(&self.command)?;
        if let Some(name) = template.field_names().find(|n| !self.parameters.contains_key(*n)) {
            return Err(ParamError::Undeclared { name: name.to_owned() });
        }
        let mut values = BTreeMap::new();
        for (name, param) in &self.parameters {
            match given.get(name).or(param.default.as_ref()) {
                Some(value) => {
                    param.check_value(name, value)?;
                    values.insert(name.clone(), value.clone());
                }
                None if filled.contains(&name.as_str()) => {}
                None => return Err(ParamError::Missing { name: name.clone() }),
            }
        }
        Ok(values)
    }

    /// [`EntryPoint::render_command_in_order`] with undeclared parameters in name order.
    pub fn render_command(&self, params: &BTreeMap<String, String>) -> Result<String, ParamError> {
        self.render_command_in_order(params, &[])
    }

    /// Renders the command with MLflow's rules: `command.format(**params)` where every value
    /// (given, or the default) is shell-quoted like Python's `shlex.quote`, followed by
    /// ` --key value` for each parameter the entry point does not declare (both quoted), in
    /// the order of `order` (names not in it come after, by name).
    ///
    /// `params` must hold the worker-filled parameters too; errors are those of
    /// [`EntryPoint::check_parameters`] with nothing filled, and format errors of the command.
    pub fn render_command_in_order(
        &self,
        params: &BTreeMap<String, String>,
        order: &[String],
    ) -> Result<String, ParamError> {
        let values = self.check_parameters(params, &[])?;
        let quoted: BTreeMap<&str, String> =
            values.iter().map(|(name, value)| (name.as_str(), render::shell_quote(value))).collect();
        let mut command = render::Template::parse(&self.command)?.render(&quoted)?;
        for (name, value) in self.undeclared(params, order) {
            command.push_str(&format!(" --{} {}", render::shell_quote(name), render::shell_quote(value)));
        }
        Ok(command)
    }

    /// The parameters of `params` this entry point does not declare, in the order of `order`
    /// (then by name).
    pub fn undeclared<'p>(&self, params: &'p BTreeMap<String, String>, order: &[String]) -> Vec<(&'p str, &'p str)> {
        let mut extra: Vec<(&str, &str)> = params
            .iter()
            .filter(|(name, _)| !self.parameters.contains_key(*name))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        extra.sort_by_key(|(name, _)| (order.iter().position(|o| o == name).unwrap_or(usize::MAX), *name));
        extra
    }
}
