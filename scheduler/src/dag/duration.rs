//! Durations in DAG files, in Concurrent's one duration grammar
//! ([`concurrent_mlflow::duration`]), with the error naming what was found.

use std::time::Duration;

use concurrent_mlflow::duration::{self, DurationError};

use super::quote::quote;

/// Parses a duration; the message for the place's error on failure.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse_duration(text).map_err(|error| match error {
        DurationError::NotADuration => format!("{error}, found {}", quote(text)),
        DurationError::Zero | DurationError::TooLong => error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_was_found() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0s"), Err("must be greater than 0".into()));
        assert_eq!(
            parse_duration("ten").unwrap_err(),
            "expected a duration like 10m, 30s, 1h30m or 500ms, found \"ten\""
        );
    }
}
