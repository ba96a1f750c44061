//! A real MLflow tracking server (sqlite backend, proxied local artifacts) on a free loopback
//! port, in a temp dir, whose whole process group dies with the test process.
//!
//! `mlflow server` forks uvicorn/gunicorn workers, and a test binary may exit without dropping
//! statics or may be killed. So the server does not run as our child directly: a small `sh`
//! watchdog starts it with `setsid` (its own process group) and then blocks reading its stdin,
//! a pipe whose write end only this process holds. When [`MlflowServer`] is dropped, or when
//! the test process dies for any reason, the pipe closes, `read` returns, and the watchdog
//! kills the server's whole group (TERM, then KILL) and removes the temp dir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{find_tool, free_port, workspace_dir};

/// How long [`MlflowServer::start`] waits for `GET /health` to answer.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The watchdog script: `$0` = mlflow binary, `$1` = temp dir, `$2..` = `server` arguments.
///
/// It starts the server in its own session (so its process group id is its pid), waits for
/// stdin to close, then terminates the group, escalates to KILL after 5 s, and removes the dir.
const WATCHDOG: &str = r#"
mlflow="$0"; dir="$1"; shift
setsid "$mlflow" "$@" </dev/null >"$dir/mlflow.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/server.pid"
read _ignored
kill -TERM "-$pid" 2>/dev/null
i=0
while kill -0 "-$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -KILL "-$pid" 2>/dev/null
rm -rf "$dir"
"#;

/// A running `mlflow server`; stopped (with its children) when dropped or when this process dies.
pub struct MlflowServer {
    /// Tracking URI, e.g. `http://127.0.0.1:41234`.
    pub uri: String,
    /// Port the server listens on.
    pub port: u16,
    dir: PathBuf,
    watchdog_stdin: Option<ChildStdin>,
    watchdog: Child,
    mlflow: PathBuf,
    /// How the server keeps artifacts (its command-line options) and what it adds to its
    /// environment.
    artifacts: Vec<String>,
    env: Vec<(String, String)>,
    /// Watchdogs of servers started by [`MlflowServer::restart`], stopped on drop like the first.
    restarted: Vec<(Option<ChildStdin>, Child)>,
}

impl MlflowServer {
    /// Starts a server on a free port with a sqlite store and proxied artifacts in a temp dir,
    /// and waits (at most 60 s) until `GET /health` answers.
    pub fn start() -> anyhow::Result<MlflowServer> {
        MlflowServer::start_with(None, &[])
    }

    /// Starts a server whose new experiments keep their artifacts under `root` (an object
    /// store URI such as `s3://bucket/mlflow`), read and written by clients directly
    /// (`--no-serve-artifacts`); `env` is added to the server's environment (the store's
    /// endpoint and credentials).
    pub fn start_with_artifact_root(root: &str, env: &[(&str, String)]) -> anyhow::Result<MlflowServer> {
        MlflowServer::start_with(Some(root), env)
    }

    fn start_with(artifact_root: Option<&str>, env: &[(&str, String)]) -> anyhow::Result<MlflowServer> {
        let mlflow = find_mlflow()?;
        // The watchdog removes the dir itself (statics are never dropped), so keep it.
        let dir = tempfile::Builder::new()
            .prefix("concurrent-mlflow-")
            .tempdir()
            .context("creating the MLflow server dir")?
            .keep();
        let port = free_port()?;
        let artifacts = match artifact_root {
            Some(root) => {
                vec!["--no-serve-artifacts".to_string(), "--default-artifact-root".to_string(), root.to_string()]
            }
            None => vec!["--artifacts-destination".to_string(), dir.join("artifacts").display().to_string()],
        };
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut watchdog = spawn_watchdog(&mlflow, &dir, port, &artifacts, &env)?;
        let watchdog_stdin = watchdog.stdin.take();
        let mut server = MlflowServer {
            artifacts,
            env,
            uri: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            watchdog_stdin,
            watchdog,
            mlflow,
            restarted: Vec::new(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Kills the server's whole process group with SIGKILL (an outage), keeping its store and
    /// artifacts, and waits (at most 20 s) until its port refuses connections.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.dir.join("server.pid")).context("reading the server's pid")?;
        let pid: u32 = pid.trim().parse().context("the server's pid")?;
        anyhow::ensure!(pid > 1, "refusing to kill process group {pid}");
        // The shell's builtin `kill` takes a negative pid as a group (procps' does not).
        let _ = Command::new("sh").args(["-c", &format!("kill -KILL -{pid} 2>/dev/null")]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        // The killed leader stays a zombie until the watchdog exits, so the port tells.
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            if Instant::now() > deadline {
                bail!("the mlflow server (group {pid}) still answers 20 s after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the server again on the same port, store and artifacts (killing it first if it
    /// runs), and waits (at most 60 s) until it is healthy.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if is_healthy(self.port) {
            self.kill()?;
        }
        let mut watchdog = spawn_watchdog(&self.mlflow, &self.dir, self.port, &self.artifacts, &self.env)?;
        let stdin = watchdog.stdin.take();
        self.restarted.push((stdin, watchdog));
        self.wait_ready()
    }

    /// The one server of this test binary, started on first use and stopped when it exits.
    ///
    /// Panics if the server cannot be started (tests cannot run without it).
    pub fn shared() -> &'static MlflowServer {
        shared()
    }

    /// The server's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mlflow.log")).unwrap_or_default()
    }

    /// Directory holding the sqlite store, the artifacts and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if is_healthy(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mlflow server on port {} was not healthy within {} s; log tail:\n{}",
                    self.port,
                    READY_DEADLINE.as_secs(),
                    tail(&self.log(), 40)
                );
            }
            if let Some(status) = self.watchdog.try_wait()? {
                bail!(
                    "the mlflow watchdog exited ({status}) before the server was healthy; log tail:\n{}",
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog stop the server's group and remove the dir.
        drop(self.watchdog_stdin.take());
        let _ = self.watchdog.wait();
        for (stdin, mut watchdog) in self.restarted.drain(..) {
            drop(stdin);
            let _ = watchdog.wait();
        }
    }
}

/// Starts a watchdog that runs `mlflow server` on `port` with its store and artifacts in `dir`.
fn spawn_watchdog(
    mlflow: &Path,
    dir: &Path,
    port: u16,
    artifacts: &[String],
    env: &[(String, String)],
) -> anyhow::Result<Child> {
    let backend = format!("sqlite:///{}", dir.join("mlflow.db").display());
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(mlflow)
        .arg(dir)
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--backend-store-uri", &backend])
        .args(artifacts)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--workers", "1"])
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting the watchdog of {}", mlflow.display()))
}

/// The server shared by all tests of this test binary (started lazily, once).
///
/// Panics if the server cannot be started (tests cannot run without it).
pub fn shared() -> &'static MlflowServer {
    static SERVER: OnceLock<MlflowServer> = OnceLock::new();
    SERVER.get_or_init(|| match MlflowServer::start() {
        Ok(server) => server,
        Err(err) => panic!("cannot start the shared MLflow server: {err:#}"),
    })
}

/// `mlflow` on PATH, else in the workspace's `.venv/bin`.
fn find_mlflow() -> anyhow::Result<PathBuf> {
    find_tool("mlflow").with_context(|| {
        format!("MLflow is needed for these tests; run {}", workspace_dir().join("scripts/setup.sh").display())
    })
}

/// Path of `name` in the workspace's `.venv/bin`, if it exists.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let path = workspace_dir().join(".venv/bin").join(name);
    path.is_file().then_some(path)
}

/// Whether `GET /health` on the loopback `port` answers 200.
///
/// Plain `std` networking, so that [`shared`] may be called from inside an async runtime
/// (a blocking HTTP client would panic there).
fn is_healthy(port: u16) -> bool {
    let timeout = Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[8..].starts_with(b" 200")
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any process of the process group `pgid` is alive.
    fn group_alive(pgid: &str) -> bool {
        Command::new("sh").args(["-c", &format!("kill -0 -{pgid} 2>/dev/null")]).status().is_ok_and(|s| s.success())
    }

    #[test]
    fn starts_answers_and_stops_with_its_children() {
        let server = MlflowServer::start().expect("an MLflow server");
        assert!(is_healthy(server.port));
        let dir = server.dir().to_path_buf();
        let pgid = std::fs::read_to_string(dir.join("server.pid")).expect("the server's pid");
        let pgid = pgid.trim().to_owned();
        assert!(group_alive(&pgid));
        drop(server);
        assert!(!group_alive(&pgid), "the server's process group outlived the drop");
        assert!(!dir.exists(), "the server dir was not removed");
    }

    #[test]
    fn shared_is_started_once() {
        assert!(std::ptr::eq(shared(), MlflowServer::shared()));
        assert!(is_healthy(shared().port));
    }
}
