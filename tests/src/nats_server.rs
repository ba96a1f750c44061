//! A real `nats-server` with JetStream on a free loopback port, in a temp dir, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::find_tool;

/// A running `nats-server -js`; stopped (SIGKILL) and its store removed when dropped.
pub struct NatsServer {
    /// Client URL, e.g. `nats://127.0.0.1:41234`.
    pub url: String,
    /// Port the server listens on; a restart reuses it.
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// Options beyond the defaults (TLS, say), kept for restarts.
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server on a free port with JetStream file storage in a fresh temp dir.
    pub fn start() -> anyhow::Result<NatsServer> {
        NatsServer::start_with(&[])
    }

    /// Starts a server as [`NatsServer::start`] does, with more `nats-server` options (e.g.
    /// `--tls --tlscert F --tlskey F`).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<NatsServer> {
        let store = tempfile::tempdir().context("creating the nats-server store dir")?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, port) = spawn(store.path(), None, &extra)?;
        Ok(NatsServer { url: format!("nats://127.0.0.1:{port}"), port, store, child: Some(child), extra })
    }

    /// Kills the server with SIGKILL, keeping its store (to restart it later).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let (child, _) = spawn(self.store.path(), Some(self.port), &self.extra)?;
        self.child = Some(child);
        Ok(())
    }

    /// Directory holding the JetStream store.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &Path, port: Option<u16>, extra: &[String]) -> anyhow::Result<(Child, u16)> {
    let binary = find_tool("nats-server")?;
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir)?;
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut child = Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
        .arg(dir.join("js"))
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = read_port(&ports_dir)
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Ok((child, port));
        }
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited before it was ready: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("nats-server was not ready within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the client port from the `*.ports` file nats-server writes.
fn read_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = json.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// The workspace root (parent of the `tests/` crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}
