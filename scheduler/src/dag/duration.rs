//! Durations as written in DAG files: `10m`, `30s`, `1h30m`, `500ms`.

use std::time::Duration;

use super::quote::quote;

/// The start of the message for a value that is not a duration.
pub const DURATION_EXPECTED: &str = "expected a duration like 10m, 30s, 1h30m or 500ms";

/// Parses `<n><unit>…` with units `h`, `m`, `s`, `ms`, each at most once and in that order.
/// Returns a message for the place's error on failure; zero is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{DURATION_EXPECTED}, found {}", quote(text));
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut last_rank = 0; // units must come in decreasing size
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, rank, len) = if rest.starts_with("ms") {
            (1, 4, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1, 1)
        } else if rest.starts_with('m') {
            (60_000, 2, 1)
        } else if rest.starts_with('s') {
            (1_000, 3, 1)
        } else {
            return Err(bad());
        };
        if rank <= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        rest = &rest[len..];
        total = total.saturating_add(n.saturating_mul(unit_ms));
    }
    let ms = u64::try_from(total).map_err(|_| "is too long".to_string())?;
    if ms == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s500ms"), Ok(Duration::from_millis(90_500)));
    }

    #[test]
    fn rejects_zero_and_garbage() {
        assert_eq!(parse_duration("0s"), Err("must be greater than 0".into()));
        for bad in ["", "10", "m", "1x", "30s10m", "1m1m", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("ten").unwrap_err(),
            "expected a duration like 10m, 30s, 1h30m or 500ms, found \"ten\""
        );
    }
}
