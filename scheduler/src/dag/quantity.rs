//! Kubernetes resource quantities (`1`, `0.5`, `500m`, `2Gi`, `512Mi`, `1e3`).

use std::sync::LazyLock;

use regex::Regex;
use serde_yaml::Value;

use super::error::Errors;
use super::quote::quote;
use super::syntax::big_integer;
use super::value::{describe, python_float};

static QUANTITY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$").ok()
});

/// Whether `s` is a non-negative Kubernetes quantity.
pub fn is_quantity(s: &str) -> bool {
    QUANTITY.as_ref().is_some_and(|re| re.is_match(s))
}

/// Reads a quantity written as a string or a number (`cpu: 1`).
pub(crate) fn quantity(errors: &mut Errors, place: &str, v: &Value) -> Option<String> {
    let text = match v {
        _ if big_integer(v).is_some() => big_integer(v).unwrap_or_default().to_string(),
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::Number(n) if n.as_f64().is_some_and(|f| f >= 0.0 && f.is_finite()) => {
            python_float(n.as_f64().unwrap_or_default())
        }
        other => {
            errors.push(
                place,
                format!("expected a Kubernetes quantity like 1, 500m, 2Gi or 512Mi, found {}", describe(other)),
            );
            return None;
        }
    };
    if !is_quantity(&text) {
        errors
            .push(place, format!("expected a Kubernetes quantity like 1, 500m, 2Gi or 512Mi, found {}", quote(&text)));
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities() {
        for ok in ["1", "0.5", "500m", "2Gi", "512Mi", "1e3", "100M", ".5", "+2"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "-1", "2GB", "lots", "1 Gi", "Gi", "1.2.3"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
