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

/// The number a valid quantity stands for, suffixes applied (`500m` is 0.5, `2Gi` is 2³¹);
/// `None` when `s` is not a quantity.
pub fn quantity_value(s: &str) -> Option<f64> {
    if !is_quantity(s) {
        return None;
    }
    let s = s.trim_start_matches('+');
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| s.strip_suffix(suffix).map(|n| (n, *scale)))
        .or_else(|| s.strip_suffix('P').map(|n| (n, 1e15)))
        .or_else(|| s.strip_suffix('E').filter(|n| !n.is_empty()).map(|n| (n, 1e18)))
        .unwrap_or((s, 1.0));
    number.parse::<f64>().ok().map(|n| n * scale)
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

    #[test]
    fn quantity_values_apply_their_suffix() {
        let cases = [
            ("1", 1.0),
            ("0.5", 0.5),
            ("500m", 0.5),
            ("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("100M", 1e8),
            ("2P", 2e15),
            ("3E", 3e18),
            (".5", 0.5),
            ("+2", 2.0),
        ];
        for (text, value) in cases {
            assert_eq!(quantity_value(text), Some(value), "{text}");
        }
        assert_eq!(quantity_value("2GB"), None);
    }
}
