//! The one duration grammar of Concurrent, for DAG files, the clusters file and command-line
//! flags alike: `10m`, `30s`, `1h30m`, `500ms` (units `h`, `m`, `s`, `ms`, each at most once and
//! in that order; no bare numbers, no fractions, never zero).

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration like 10m, 30s, 1h30m or 500ms")]
    NotADuration,
    #[error("must be greater than 0")]
    Zero,
    #[error("is too long")]
    TooLong,
}

/// Parses `<n><unit>…`; see the module's grammar.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::NotADuration);
    }
    let mut total: u128 = 0;
    let mut last_rank = 0; // units must come in decreasing size
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::NotADuration);
        }
        let n: u128 = rest[..digits].parse().map_err(|_| DurationError::TooLong)?;
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
            return Err(DurationError::NotADuration);
        };
        if rank <= last_rank {
            return Err(DurationError::NotADuration);
        }
        last_rank = rank;
        rest = &rest[len..];
        total = total.saturating_add(n.saturating_mul(unit_ms));
    }
    let ms = u64::try_from(total).map_err(|_| DurationError::TooLong)?;
    if ms == 0 {
        return Err(DurationError::Zero);
    }
    Ok(Duration::from_millis(ms))
}

/// `duration` written in the grammar, exactly (`1m30s500ms`), for passing it on to a worker.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis().max(1);
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let parts = [(h, "h"), (m, "m"), (s, "s"), (rest, "ms")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
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
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        for bad in ["", "10", "m", "1x", "30s10m", "1m1m", "-1s", "1.5h", "5 s"] {
            assert_eq!(parse_duration(bad), Err(DurationError::NotADuration), "{bad}");
        }
        assert_eq!(parse_duration("99999999999999999999999999999999999999999h"), Err(DurationError::TooLong));
    }

    #[test]
    fn a_formatted_duration_parses_back_to_itself() {
        for ms in [1, 999, 1000, 61_001, 3_600_000, 5_400_250, 86_400_000] {
            let duration = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration), "{ms} ms");
        }
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
    }
}
