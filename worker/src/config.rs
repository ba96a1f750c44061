//! What a worker is told to do: the validated command-line configuration, and the parsing of
//! durations such as `5s` or `500ms`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `run` needs; built by `main.rs` from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server URL(s), e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The DAG run whose stage this worker serves.
    pub run_id: String,
    /// The stage this worker serves.
    pub stage: String,
    /// Name of this worker in results and MLflow tags.
    pub worker_id: String,
    /// Name of the cluster this worker runs in (`local` for the local executor).
    pub cluster: String,
    /// Exit when no shard arrives for this long (time while NATS is unreachable not counted).
    pub idle_timeout: Duration,
    /// Exit 3 when NATS cannot be reached for this long at start.
    pub connect_timeout: Duration,
    /// Parent of every attempt directory.
    pub work_dir: PathBuf,
    /// Where unpacked project snapshots are kept, one directory per content hash.
    pub cache_dir: PathBuf,
    /// Keep the attempt directory of a failed attempt (for debugging).
    pub keep_failed: bool,
    /// Stop as on SIGTERM when standard input closes: the process that started this worker
    /// (the local executor) is gone.
    pub stop_when_stdin_closes: bool,
    /// Keep the lease in KV `CONCURRENT_LEASES` rather than a file (a worker in a Pod).
    pub lease_kv: bool,
}

/// The default worker id: `<hostname>-<pid>`.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

/// A duration could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a duration: use a number with a unit (ms, s, m, h), e.g. 5s")]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare number of seconds (`5`, `0.5`).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let error = || DurationError { input: input.to_string() };
    let text = input.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| error())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(error()),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "s", "5x", "-1s", "five"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worker_id_ends_with_the_pid() {
        assert!(default_worker_id().ends_with(&format!("-{}", std::process::id())));
    }
}
