//! The YAML (or JSON) layer: text to a `serde_yaml::Value`, with syntax errors, duplicate
//! keys and empty files reported at their line and column.

use serde_yaml::Value;

use super::error::{SpecError, SpecErrors};

/// Parses the text; an empty document is an error.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, SpecErrors> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| yaml_error(text, &e))?;
    if root.is_null() {
        return Err(SpecError::new("line 1, column 1", "the DAG file is empty").into());
    }
    Ok(root)
}

fn yaml_error(text: &str, e: &serde_yaml::Error) -> SpecErrors {
    let message = e.to_string();
    let located = e.location().map(|l| (l.line(), l.column()));
    let (line, column) = duplicate_key_position(text, &message).or(located).unwrap_or((1, 1));
    let message = match located {
        Some((l, c)) => message.replace(&format!(" at line {l} column {c}"), ""),
        None => message,
    };
    SpecError::new(format!("line {line}, column {column}"), format!("not valid YAML or JSON: {message}")).into()
}

/// serde_yaml places a duplicate key (`duplicate entry with key "name"`) at the map's start:
/// find the second line that starts with that key (a best guess for nested or flow maps).
fn duplicate_key_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let quoted = message.strip_prefix("duplicate entry with key ")?;
    let key: String = serde_json::from_str(quoted).ok()?;
    let starts_key = |line: &str| {
        let rest = line
            .strip_prefix(key.as_str())
            .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
            .or_else(|| line.strip_prefix(&format!("'{key}'")));
        rest.is_some_and(|r| r.trim_start().starts_with(':'))
    };
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let trimmed = line.trim_start();
            starts_key(trimmed).then(|| (i + 1, line.len() - trimmed.len() + 1))
        })
        .nth(1)
}
