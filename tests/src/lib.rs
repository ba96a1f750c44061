//! Test kit: real `nats-server` and MLflow tracking servers on loopback, started on free ports
//! by the tests themselves and stopped afterwards, plus paths to the workspace's binaries.

pub mod counting_proxy;
pub mod fake_cluster;
pub mod fake_cluster_process;
pub mod mlflow_server;
pub mod names;
pub mod nats_server;
pub mod oci_registry;
pub mod s3_server;

use std::path::PathBuf;

use anyhow::bail;

pub use nats_server::{NatsServer, workspace_dir};

/// Finds an external tool on PATH, else in the workspace's `.venv/bin` (made by `scripts/setup.sh`).
pub fn find_tool(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file())
    {
        return Ok(path);
    }
    let venv = workspace_dir().join(".venv/bin").join(name);
    if venv.is_file() {
        return Ok(venv);
    }
    bail!("`{name}` is not on PATH nor in .venv/bin: run scripts/setup.sh")
}

/// A TCP port free on 127.0.0.1 now (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Path of a binary of this workspace, built by `cargo build --bins` into the same target dir.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile> dir");
    let path = profile_dir.join(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}
