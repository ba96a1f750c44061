//! What a worker is told to do: the validated command-line configuration, and the parsing of
//! durations such as `5s` or `500ms`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `run` needs; built by `main.rs` from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server URL(s), e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Credentials and TLS files for NATS (`NATS_CREDS`, `NATS_CA`, `NATS_CERT`, `NATS_KEY`).
    pub nats_auth: concurrent_proto::nats_auth::NatsAuth,
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
    /// Hold a finished attempt's result up to this long, while more shards are queued, to
    /// publish it with the next ones (zero: each is published at once).
    pub result_hold: Duration,
    /// Parent of every attempt directory.
    pub work_dir: PathBuf,
    /// Where unpacked project snapshots are kept, one directory per content hash.
    pub cache_dir: PathBuf,
    /// The machine's cache of built environments (`python_env`, `conda_env`).
    pub env_cache: PathBuf,
    /// Keep the attempt directory of a failed attempt (for debugging).
    pub keep_failed: bool,
    /// Stop as on SIGTERM when standard input closes: the process that started this worker
    /// (the local executor) is gone.
    pub stop_when_stdin_closes: bool,
    /// Keep the lease in KV `CONCURRENT_LEASES` rather than a file (a worker in a Pod).
    pub lease_kv: bool,
    /// Where this worker reaches MLflow, when not at the URI the stage spec records.
    pub mlflow_tracking_uri: Option<String>,
    /// The environment manager to use instead of the stage's.
    pub env_manager: Option<String>,
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

pub use concurrent_mlflow::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_id_ends_with_the_pid() {
        assert!(default_worker_id().ends_with(&format!("-{}", std::process::id())));
    }
}
