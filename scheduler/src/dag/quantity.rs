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

const SIZE_EXPECTED: &str = "expected a size in bytes like 10MiB, 512Ki, 64M or 1048576";

/// Reads a size in bytes: a whole number, or a quantity (`10Mi`, `64M`) with an optional `B`
/// (`10MiB`, `64MB`); at least `min`.
pub(crate) fn byte_size(errors: &mut Errors, place: &str, v: &Value, min: u64) -> Option<u64> {
    let text = match v {
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => {
            errors.push(place, format!("{SIZE_EXPECTED}, found {}", describe(other)));
            return None;
        }
    };
    let Some(bytes) = byte_size_value(&text) else {
        errors.push(place, format!("{SIZE_EXPECTED}, found {}", quote(&text)));
        return None;
    };
    if bytes < min {
        errors.push(place, format!("must be at least {min} bytes, found {}", quote(&text)));
        return None;
    }
    Some(bytes)
}

/// The whole number of bytes `text` stands for (`10MiB`, `10Mi`, `64MB`, `1024`); `None` when
/// it is not a size or not a whole number of bytes.
pub fn byte_size_value(text: &str) -> Option<u64> {
    let without_b = text.strip_suffix('B').filter(|t| t.ends_with(|c: char| c.is_ascii_alphabetic()));
    let value = quantity_value(without_b.unwrap_or(text))?;
    (value.fract() == 0.0 && value >= 0.0 && value < u64::MAX as f64).then_some(value as u64)
}

impl super::Resources {
    /// What one worker of the stage asks of a node, in whole units; what is not given asks
    /// for nothing.
    pub fn per_worker(&self) -> concurrent_core::placement::Amount {
        let value = |q: &Option<String>| q.as_deref().and_then(quantity_value).unwrap_or(0.0);
        concurrent_core::placement::Amount {
            cpu_millis: (value(&self.cpu) * 1000.0).ceil() as u64,
            memory_bytes: value(&self.memory).ceil() as u64,
            gpus: self.gpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        let cases = [("10MiB", 10 << 20), ("10Mi", 10 << 20), ("64MB", 64_000_000), ("1024", 1024), ("2KiB", 2048)];
        for (text, bytes) in cases {
            assert_eq!(byte_size_value(text), Some(bytes), "{text}");
        }
        for bad in ["10 MiB", "1.5", "500m", "B", "-1", "lots", "10iB"] {
            assert_eq!(byte_size_value(bad), None, "{bad}");
        }
    }

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
    fn stage_resources_become_whole_units() {
        use concurrent_core::placement::Amount;
        let resources = super::super::Resources { cpu: Some("500m".into()), memory: Some("2Gi".into()), gpu: 1 };
        assert_eq!(resources.per_worker(), Amount { cpu_millis: 500, memory_bytes: 2 << 30, gpus: 1 });
        assert_eq!(super::super::Resources::default().per_worker(), Amount::default());
        let cpu = super::super::Resources { cpu: Some("1.5".into()), ..Default::default() };
        assert_eq!(cpu.per_worker().cpu_millis, 1500);
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
