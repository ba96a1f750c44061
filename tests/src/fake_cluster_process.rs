//! A `concurrent-fake-cluster` child for tests: started on a free port with a kubeconfig in a
//! temp dir, stopped (its Pods' processes with it) when dropped, and when the test process dies
//! (it watches its standard input).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::workspace_bin;

/// A running fake cluster.
pub struct FakeClusterProcess {
    pub name: String,
    /// The kubeconfig that points at it (context = name).
    pub kubeconfig: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    stdin: Option<ChildStdin>,
    _dir: tempfile::TempDir,
}

impl FakeClusterProcess {
    /// Starts a fake cluster named `name` with extra flags (`--nodes`, `--node-cpu`, `--path-map`, …).
    pub fn start(name: &str, flags: &[&str]) -> anyhow::Result<FakeClusterProcess> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join(format!("{name}.kubeconfig"));
        // Pods get this PATH, standing for their image's: the venv's python and tools first.
        let venv = crate::workspace_dir().join(".venv/bin");
        let path = format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default());
        let mut child = Command::new(workspace_bin("concurrent-fake-cluster"))
            .env("PATH", path)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .args(["--name", name, "--stop-when-stdin-closes", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting concurrent-fake-cluster")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("fake cluster stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("ready ") => line,
            other => {
                let _ = child.kill();
                bail!("concurrent-fake-cluster did not start: {other:?}")
            }
        };
        let url = format!("http://{}", line.trim_start_matches("ready ").trim());
        Ok(FakeClusterProcess { name: name.to_string(), kubeconfig, url, child, stdin, _dir: dir })
    }

    /// Kills a Pod's process at once, as a crash or an OOM kill would.
    pub fn fail_pod(&self, namespace: &str, pod: &str) -> anyhow::Result<()> {
        let url = format!("{}/fake/v1/namespaces/{namespace}/pods/{pod}/fail", self.url);
        let response = reqwest::blocking::Client::new().post(&url).send()?;
        if !response.status().is_success() {
            bail!("failing pod {pod}: {}", response.text()?);
        }
        Ok(())
    }

    /// Stops the cluster: its API server stops answering and its Pods' processes are killed.
    pub fn stop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FakeClusterProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a kubeconfig for a cluster that does not answer: loopback port 1, which nothing
/// listens on. (A free port picked and released here could be handed to the next server a
/// test starts, which would then answer for the "unreachable" cluster.)
pub fn unreachable_kubeconfig(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let port = 1;
    anyhow::ensure!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on 127.0.0.1:{port}; the unreachable cluster would answer"
    );
    let path = dir.join(format!("{name}.kubeconfig"));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    std::fs::write(&path, crate::fake_cluster::kubeconfig(name, addr, "default"))?;
    Ok(path)
}
