//! Building `conda_env` environments with conda or micromamba, whichever is on PATH
//! (`CONDA_EXE`, as conda's own activation sets it, first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The programs tried, in order, after `CONDA_EXE`.
pub const PROGRAMS: [&str; 3] = ["micromamba", "mamba", "conda"];

/// A conda step failed.
#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    /// Neither conda nor micromamba is on PATH.
    #[error(
        "needs conda or micromamba on PATH (neither was found; install micromamba, or run with env_manager: local)"
    )]
    Missing,
    /// The environment file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The create command could not run or failed.
    #[error("`{program} create` failed: {message}")]
    Create {
        /// The program.
        program: String,
        /// Its last error lines, or why it could not start.
        message: String,
    },
}

/// The conda-like program on this machine, if any.
pub fn program() -> Option<PathBuf> {
    if let Some(exe) = std::env::var_os("CONDA_EXE").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(exe);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| PROGRAMS.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The hash naming the environment built from `file` of the project.
pub fn content_hash(project_dir: &Path, file: &str) -> Result<String, CondaError> {
    let path = project_dir.join(file);
    let content = std::fs::read(&path).map_err(|source| CondaError::Read { path, source })?;
    let digest = Sha256::new().chain_update(b"concurrent conda_env v1\0").chain_update(&content).finalize();
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates the environment of `file` (in the project at `project_dir`) at `dir`; the
/// program's output goes to `log`.
pub fn build(dir: &Path, project_dir: &Path, file: &str, log: &mut std::fs::File) -> Result<(), CondaError> {
    let program = program().ok_or(CondaError::Missing)?;
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut command = Command::new(&program);
    if name.starts_with("micromamba") {
        command.args(["create", "--yes", "--prefix"]).arg(dir).arg("--file").arg(project_dir.join(file));
    } else {
        command.args(["env", "create", "--prefix"]).arg(dir).arg("--file").arg(project_dir.join(file));
    }
    let failed = |message: String| CondaError::Create { program: name.clone(), message };
    let out = command.current_dir(project_dir).output().map_err(|e| failed(e.to_string()))?;
    let _ = writeln!(log, "concurrent-worker: {name} create")
        .and_then(|()| log.write_all(&out.stdout))
        .and_then(|()| log.write_all(&out.stderr));
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(failed(lines[lines.len().saturating_sub(8)..].join("\n")))
}
