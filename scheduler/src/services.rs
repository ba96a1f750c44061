//! The local defaults of DESIGN §7: a `nats-server` with JetStream and an `mlflow server`
//! started as children when `NATS_URL` / `MLFLOW_TRACKING_URI` are unset, stopped at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, ChildStdin, Command};

/// A child service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("`{tool}` was not found on PATH (run scripts/setup.sh, or set {env} to use a running server)")]
    NotFound { tool: &'static str, env: &'static str },
    #[error("cannot start {tool}: {source}")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} did not become ready within {seconds} s; the end of its log {log}:\n{tail}")]
    NotReady { tool: &'static str, seconds: u64, log: String, tail: String },
    #[error("{tool} exited before it was ready ({status}); the end of its log {log}:\n{tail}")]
    Exited { tool: &'static str, status: std::process::ExitStatus, log: String, tail: String },
    #[error("cannot prepare {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
}

/// Runs a command and, when this script's standard input closes (this process ended, even by
/// SIGKILL), stops the command's whole process group: SIGTERM, then SIGKILL after 5 s. The
/// script exits when the command does, so an early exit is seen at once.
const WATCHDOG: &str = r#"exec 3<&0
"$@" 3<&- &
child=$!
trap '' TERM INT HUP
(
  read _ <&3
  kill -TERM 0 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL 0
) &
wait "$child""#;

/// A service running as a child process group under a watchdog: it goes when this process
/// goes, however it ends.
pub struct ChildService {
    /// URL clients use.
    pub url: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    name: &'static str,
    child: Child,
    watchdog: Option<ChildStdin>,
}

impl ChildService {
    fn spawn(name: &'static str, command: std::process::Command, log: &Path) -> Result<Child, ServiceError> {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = command.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
        let mut watched = Command::new("sh");
        watched.arg("-c").arg(WATCHDOG).arg("sh").arg(program).args(args);
        for (key, value) in envs {
            match value {
                Some(value) => watched.env(key, value),
                None => watched.env_remove(key),
            };
        }
        watched
            .stdin(Stdio::piped())
            .stdout(log_file(log)?)
            .stderr(log_file(log)?)
            .process_group(0)
            .spawn()
            .map_err(|source| ServiceError::Spawn { tool: name, source })
    }

    /// Stops the whole process group and waits for it.
    pub async fn stop(mut self) {
        drop(self.watchdog.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err()
            && let Some(pid) = self.child.id()
        {
            let _ = concurrent_procs::kill_group(pid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        tracing::debug!(service = self.name, "stopped");
    }
}

/// Finds a tool on PATH, then beside this executable, then in `./.venv/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    on_path
        .chain(beside)
        .chain(std::env::current_dir().ok().map(|d| d.join(".venv/bin")))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn prepare(dir: &Path) -> Result<(), ServiceError> {
    std::fs::create_dir_all(dir).map_err(|source| ServiceError::Dir { dir: dir.display().to_string(), source })
}

fn log_file(path: &Path) -> Result<std::fs::File, ServiceError> {
    std::fs::File::create(path).map_err(|source| ServiceError::Dir { dir: path.display().to_string(), source })
}

/// Starts `nats-server -js` on a free loopback port, its store under `dir`.
pub async fn start_nats(dir: &Path) -> Result<ChildService, ServiceError> {
    const TOOL: &str = "nats-server";
    let binary = find_tool(TOOL).ok_or(ServiceError::NotFound { tool: TOOL, env: "NATS_URL" })?;
    let ports = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports);
    prepare(&ports)?;
    let log = dir.join("nats-server.log");
    let mut command = std::process::Command::new(binary);
    command
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(dir.join("jetstream"))
        .arg("--ports_file_dir")
        .arg(&ports);
    let mut child = ChildService::spawn(TOOL, command, &log)?;
    let watchdog = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(url) = read_ports_file(&ports) {
            return Ok(ChildService { url, log, name: TOOL, child, watchdog });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServiceError::Exited {
                tool: TOOL,
                status,
                log: log.display().to_string(),
                tail: log_tail(&log),
            });
        }
        if Instant::now() > deadline {
            let tail = log_tail(&log);
            return Err(ServiceError::NotReady { tool: TOOL, seconds: 20, log: log.display().to_string(), tail });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_ports_file(dir: &Path) -> Option<String> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    Some(json.get("nats")?.get(0)?.as_str()?.to_string())
}

/// Starts `mlflow server` on a free loopback port: sqlite store and artifacts under `dir`.
/// New experiments get a `file://` artifact root there, so workers and entry points on this
/// machine read and write artifacts as files instead of through the server's artifact proxy
/// (which still serves experiments created with one earlier).
pub async fn start_mlflow(dir: &Path) -> Result<ChildService, ServiceError> {
    const TOOL: &str = "mlflow";
    const READY_WITHIN: u64 = 120;
    let binary = find_tool(TOOL).ok_or(ServiceError::NotFound { tool: TOOL, env: "MLFLOW_TRACKING_URI" })?;
    prepare(dir)?;
    let port = free_port().map_err(|source| ServiceError::Spawn { tool: TOOL, source })?;
    let log = dir.join("mlflow-server.log");
    let db = dir.join("mlflow.db");
    let artifacts = dir.join("artifacts");
    let mut command = std::process::Command::new(binary);
    command
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", db.display()))
        .arg("--artifacts-destination")
        .arg(&artifacts)
        .arg("--default-artifact-root")
        .arg(concurrent_mlflow::artifacts::file_uri(&artifacts))
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env("MLFLOW_DISABLE_TELEMETRY", "true");
    let mut child = ChildService::spawn(TOOL, command, &log)?;
    let watchdog = child.stdin.take();
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/health");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a plain HTTP client");
    let deadline = Instant::now() + Duration::from_secs(READY_WITHIN);
    loop {
        if http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(ChildService { url, log, name: TOOL, child, watchdog });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServiceError::Exited {
                tool: TOOL,
                status,
                log: log.display().to_string(),
                tail: log_tail(&log),
            });
        }
        if Instant::now() > deadline {
            let tail = log_tail(&log);
            return Err(ServiceError::NotReady {
                tool: TOOL,
                seconds: READY_WITHIN,
                log: log.display().to_string(),
                tail,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of a child's log shown when it explains a failure.
const LOG_TAIL_LINES: usize = 12;

/// The last lines of a child's log, indented, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = match std::fs::read(log) {
        Ok(bytes) => String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64 * 1024)..]).into_owned(),
        Err(error) => return format!("  (cannot read it: {error})"),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "  (empty)".to_string();
    }
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_lines_indented() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let text: String = (1..=20).map(|i| format!("line {i}\n\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.starts_with("  line 9\n") && tail.ends_with("  line 20"), "{tail}");
        assert!(log_tail(&dir.path().join("missing")).starts_with("  (cannot read it:"));
    }
}
