//! Declared parameters of an entry point and the checks on the values given for them.
//!
//! MLflow itself checks little (only that a `uri` has a scheme); our contract (DESIGN §2, §3)
//! checks every value against its declared type and refuses undeclared parameters, so a bad
//! DAG is rejected at submit time rather than in a worker.

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
    /// A non-empty path.
    Path,
    /// An absolute URI or a local path.
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
            Self::Path => Ok(()),
            Self::Uri if looks_like_uri(value) && url::Url::parse(value).is_err() => {
                Err("not a valid absolute URI nor a local path")
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

/// Whether `value` starts with a URI scheme (`scheme:`); one letter is a Windows drive.
fn looks_like_uri(value: &str) -> bool {
    let Some((scheme, _)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    scheme.len() > 1
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
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
    /// A parameter was given that the entry point does not declare.
    #[error("parameter '{name}' is not declared by the entry point")]
    Unknown {
        /// The given name.
        name: String,
    },
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
    /// An undeclared name, a value (given or default) not of its declared type, or a declared
    /// parameter with neither value nor default that is not in `filled` (names the worker will
    /// provide, see [`EntryPoint::filled_parameters`]) is an error, and so is a `{name}` in the
    /// command that names no declared parameter. Returns every declared parameter's value with
    /// defaults applied; names in `filled` without a value are absent.
    pub fn check_parameters(
        &self,
        given: &BTreeMap<String, String>,
        filled: &[&str],
    ) -> Result<BTreeMap<String, String>, ParamError> {
        if let Some(name) = given.keys().find(|n| !self.parameters.contains_key(*n)) {
            return Err(ParamError::Unknown { name: name.clone() });
        }
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

    /// Renders the command with MLflow's rules: `command.format(**params)` where every value
    /// (given, or the default) is shell-quoted like Python's `shlex.quote`.
    ///
    /// `params` must hold the worker-filled parameters too; errors are those of
    /// [`EntryPoint::check_parameters`] with nothing filled, and format errors of the command.
    pub fn render_command(&self, params: &BTreeMap<String, String>) -> Result<String, ParamError> {
        let values = self.check_parameters(params, &[])?;
        let quoted: BTreeMap<&str, String> =
            values.iter().map(|(name, value)| (name.as_str(), render::shell_quote(value))).collect();
        render::Template::parse(&self.command)?.render(&quoted)
    }
}
