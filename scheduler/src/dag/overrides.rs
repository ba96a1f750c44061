//! Command-line overrides: `-P STAGE.PARAM=VALUE`.

use super::error::SpecError;
use super::quote::as_typed;

/// Parses `STAGE.PARAM=VALUE` (`thumbnails.size=64`) into `(stage, param, value)`; the value
/// may contain `=` and be empty.
pub fn parse_override(s: &str) -> Result<(String, String, String), SpecError> {
    let bad = || SpecError::new(format!("-P {}", as_typed(s)), "expected STAGE.PARAM=VALUE");
    let (key, value) = s.split_once('=').ok_or_else(bad)?;
    let (stage, param) = key.trim().split_once('.').ok_or_else(bad)?;
    if stage.is_empty() || param.is_empty() {
        return Err(bad());
    }
    Ok((stage.to_string(), param.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_stage_param_and_value() {
        let got = parse_override("thumbnails.size=64").unwrap();
        assert_eq!(got, ("thumbnails".into(), "size".into(), "64".into()));
        let got = parse_override("a.expr=x=1").unwrap();
        assert_eq!(got.2, "x=1");
        assert_eq!(parse_override("a.b=").unwrap().2, "");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["size=64", "thumbnails.size", ".x=1", "a.=1", ""] {
            let e = parse_override(bad).unwrap_err();
            assert_eq!(e.to_string(), format!("-P {bad}: expected STAGE.PARAM=VALUE"));
        }
    }
}
