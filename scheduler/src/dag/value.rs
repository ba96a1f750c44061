//! Reading a `serde_yaml::Value` field by field, so that every error names its place.

use serde_yaml::Value;

use super::error::Errors;
use super::quote::{as_typed, key, quote};
use super::syntax::big_integer;

/// `parent.child`, or `child` at the top level; `child` is a key, quoted when it would make
/// the place ambiguous (`stages."a.b"`, `""`).
pub(crate) fn join(parent: &str, child: &str) -> String {
    join_raw(parent, &key(child))
}

/// [`join`] of a segment already fit for a place.
fn join_raw(parent: &str, segment: &str) -> String {
    if parent.is_empty() { segment.to_string() } else { format!("{parent}.{segment}") }
}

/// How a value is named in "expected …, found …" messages.
pub(crate) fn describe(v: &Value) -> String {
    if let Some(digits) = big_integer(v) {
        return digits.to_string();
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", as_typed(&t.tag.to_string())),
    }
}

/// A mapping read field by field; fields never taken are reported as unknown by `finish`.
pub(crate) struct Fields<'a> {
    place: String,
    entries: Vec<(&'a str, &'a Value, bool)>,
}

impl<'a> Fields<'a> {
    /// Opens `v` as a map of fields, or records "expected a map" and returns `None`.
    pub(crate) fn open(errors: &mut Errors, place: &str, v: &'a Value) -> Option<Self> {
        let Value::Mapping(map) = v else {
            errors.push(place, format!("expected a map, found {}", describe(v)));
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            match k {
                Value::String(k) => entries.push((k.as_str(), v, false)),
                other => errors.push(join_raw(place, &describe(other)), "field names must be strings"),
            }
        }
        Some(Fields { place: place.to_string(), entries })
    }

    /// The place of field `name`.
    pub(crate) fn place_of(&self, name: &str) -> String {
        join(&self.place, name)
    }

    /// The value of field `name`; a `null` value counts as absent.
    pub(crate) fn take(&mut self, name: &str) -> Option<&'a Value> {
        let entry = self.entries.iter_mut().find(|(k, _, _)| *k == name)?;
        entry.2 = true;
        match entry.1 {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// The entries in file order (for maps whose keys are names, like `stages`).
    pub(crate) fn all(mut self) -> Vec<(&'a str, &'a Value)> {
        self.entries.iter_mut().for_each(|e| e.2 = true);
        self.entries.iter().map(|(k, v, _)| (*k, *v)).collect()
    }

    /// Records "unknown field" for every field not taken.
    pub(crate) fn finish(self, errors: &mut Errors) {
        for (k, _, used) in &self.entries {
            if !used {
                errors.push(join(&self.place, k), "unknown field");
            }
        }
    }
}

/// A string, or records "expected a string".
pub(crate) fn string(errors: &mut Errors, place: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.push(place, format!("expected a string, found {}", describe(other)));
            None
        }
    }
}

/// A non-empty string.
pub(crate) fn nonempty_string(errors: &mut Errors, place: &str, v: &Value) -> Option<String> {
    let s = string(errors, place, v)?;
    if s.trim().is_empty() {
        errors.push(place, "must not be empty");
        return None;
    }
    Some(s)
}

/// An integer in `min..=max`; `what` names the expected type ("a positive integer").
pub(crate) fn integer(errors: &mut Errors, place: &str, v: &Value, what: &str, min: u64, max: u64) -> Option<u32> {
    let n = match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        // Beyond 64 bits: out of range whatever the range. YAML reads an integer beyond 128
        // bits as a float, so a whole float that large counts as such an integer.
        _ if big_integer(v).is_some_and(|digits| digits.starts_with('-')) => Some(i128::MIN),
        _ if big_integer(v).is_some() => Some(i128::MAX),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() >= i128::MAX as f64)
            .map(|f| if f < 0.0 { i128::MIN } else { i128::MAX }),
        _ => None,
    };
    let Some(n) = n else {
        errors.push(place, format!("expected {what}, found {}", describe(v)));
        return None;
    };
    if n < i128::from(min) {
        errors.push(place, format!("must be at least {min}"));
        return None;
    }
    if n > i128::from(max) {
        errors.push(place, format!("must be at most {max}"));
        return None;
    }
    u32::try_from(n).ok()
}

/// A list of strings; a single string counts as a list of one.
/// A `true`/`false` value.
pub(crate) fn boolean(errors: &mut Errors, place: &str, v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => {
            errors.push(place, format!("expected true or false, found {}", describe(other)));
            None
        }
    }
}

pub(crate) fn string_list(errors: &mut Errors, place: &str, v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| nonempty_string(errors, &format!("{place}[{i}]"), item))
            .collect(),
        other => {
            errors.push(place, format!("expected a list of strings, found {}", describe(other)));
            Vec::new()
        }
    }
}

/// A scalar as Python's `str()` would print it (`True`, `128`, `0.5`, `1e+20`), as MLflow
/// receives YAML parameter values.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    if let Some(digits) = big_integer(v) {
        return Some(digits.to_string());
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => python_float(f),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside `1e-4..1e16`.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-7", "1e20"
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = f.to_string();
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(1.5e-7), "1.5e-07");
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(123456789.0), "123456789.0");
        assert_eq!(python_float(f64::INFINITY), "inf");
    }

    #[test]
    fn scalars_print_like_python() {
        let v: Value = serde_yaml::from_str("[true, false, 128, -3, 0.25, text]").unwrap();
        let Value::Sequence(items) = v else { panic!() };
        let got: Vec<_> = items.iter().map(|v| scalar_string(v).unwrap()).collect();
        assert_eq!(got, ["True", "False", "128", "-3", "0.25", "text"]);
    }
}
