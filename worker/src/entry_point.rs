//! Runs an entry point's command: `bash -c <command>` in its own process group, output appended
//! to the attempt's log, and the whole group killed on timeout, on interruption of the worker,
//! and after the command exits (no orphans). While it runs, the worker's lease names the shard
//! and the group, for an executor that sees the worker die.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use concurrent_proto::lease::Lease;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::env::EntryPointEnv;

/// One run of an entry point command.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The rendered command, run with `bash -c`.
    pub command: &'a str,
    /// Working directory: the unpacked project.
    pub cwd: &'a Path,
    /// Environment changes.
    pub env: &'a EntryPointEnv,
    /// File that stdout and stderr are appended to.
    pub log: &'a Path,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Where to keep the lease while the command runs.
    pub lease: Option<LeaseSlot<'a>>,
}

/// The lease file of the worker's slot, the ack subject of the shard it runs, and the input
/// dir its entry point is given (`CONCURRENT_INPUT_DIR`).
#[derive(Debug, Clone, Copy)]
pub struct LeaseSlot<'a> {
    pub path: &'a Path,
    pub ack_subject: &'a str,
    pub input_dir: &'a Path,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (not by the worker).
    Signal(i32),
    /// The worker killed it when the timeout expired.
    TimedOut(Duration),
    /// The worker killed it because the worker was asked to stop.
    Interrupted,
}

impl Exit {
    /// `None` on success, else the failure reason reported in the result.
    pub fn failure_reason(&self) -> Option<String> {
        match self {
            Exit::Code(0) => None,
            Exit::Code(code) => Some(format!("exit code {code}")),
            Exit::Signal(signal) => Some(format!("killed by signal {signal}")),
            Exit::TimedOut(after) => Some(format!("timed out after {}s", after.as_secs())),
            Exit::Interrupted => Some("worker stopped (SIGTERM/SIGINT) while the entry point ran".into()),
        }
    }
}

/// The command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum EntryPointError {
    /// The log file could not be opened.
    #[error("opening the entry point log {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `bash` could not be started.
    #[error("starting `bash -c` in {cwd}")]
    Spawn {
        /// The working directory.
        cwd: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for the entry point")]
    Wait(#[source] std::io::Error),
}

/// Runs the command to its end; kills its process group when `timeout` expires or `cancel`
/// fires.
pub async fn run(invocation: Invocation<'_>, cancel: &CancellationToken) -> Result<Exit, EntryPointError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(invocation.log)
        .map_err(|source| EntryPointError::Log { path: invocation.log.to_path_buf(), source })?;
    let log_err =
        log.try_clone().map_err(|source| EntryPointError::Log { path: invocation.log.to_path_buf(), source })?;
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(invocation.command)
        .current_dir(invocation.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(true);
    for name in &invocation.env.remove {
        command.env_remove(name);
    }
    command.envs(invocation.env.set.iter().map(|(k, v)| (k, v)));
    let mut child =
        command.spawn().map_err(|source| EntryPointError::Spawn { cwd: invocation.cwd.to_path_buf(), source })?;
    // With process_group(0) the group id is the leader's pid.
    let pgid = child.id();
    // Kills the group however this function ends, even when its future is dropped.
    let _group = RunningGroup::register(pgid, invocation.lease);

    let deadline = invocation.timeout.map(|t| tokio::time::Instant::now() + t);
    let timeout = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let exit = tokio::select! {
        status = child.wait() => from_status(status.map_err(EntryPointError::Wait)?),
        () = &mut timeout => {
            kill_group(pgid).await;
            child.wait().await.map_err(EntryPointError::Wait)?;
            Exit::TimedOut(invocation.timeout.unwrap_or_default())
        }
        () = cancel.cancelled() => {
            kill_group(pgid).await;
            child.wait().await.map_err(EntryPointError::Wait)?;
            Exit::Interrupted
        }
    };
    // Whatever the command left running in its group goes with it (`_group` kills it).
    Ok(exit)
}

fn from_status(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// Sends SIGKILL to every process of group `pgid`. A group that is already empty is fine.
pub async fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid else { return };
    killpg(pgid);
}

/// The process group of the entry point running now (0: none). A worker runs one at a time.
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);

/// Kills the process group of the entry point running now, if any: for a worker about to
/// exit at once (second SIGTERM/SIGINT) without unwinding.
pub fn kill_running_group() {
    let pgid = RUNNING_GROUP.load(Ordering::SeqCst);
    if let Ok(pgid @ 1..) = u32::try_from(pgid) {
        killpg(pgid);
    }
}

/// Registers the running entry point's group, and writes the lease; kills the group, clears
/// it and releases the lease when dropped.
struct RunningGroup {
    pgid: Option<u32>,
    lease: Option<PathBuf>,
}

impl RunningGroup {
    fn register(pgid: Option<u32>, lease: Option<LeaseSlot<'_>>) -> RunningGroup {
        if let Some(id) = pgid.and_then(|p| i32::try_from(p).ok()) {
            RUNNING_GROUP.store(id, Ordering::SeqCst);
        }
        let lease = match (pgid, lease) {
            (Some(pgid), Some(slot)) => {
                let input_dir = slot.input_dir.to_string_lossy().into_owned();
                let text = Lease { ack_subject: slot.ack_subject.to_string(), pgid, input_dir }.to_text();
                write_lease(slot.path, &text);
                Some(slot.path.to_path_buf())
            }
            _ => None,
        };
        RunningGroup { pgid, lease }
    }
}

impl Drop for RunningGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            RUNNING_GROUP.store(0, Ordering::SeqCst);
            killpg(pgid);
        }
        if let Some(path) = &self.lease {
            write_lease(path, "");
        }
    }
}

/// Writes the lease in place (the file is created once per worker, then overwritten).
fn write_lease(path: &Path, text: &str) {
    if let Err(error) = std::fs::write(path, text) {
        tracing::warn!(path = %path.display(), %error, "could not write the worker's lease");
    }
}

fn killpg(pgid: u32) {
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), nix::sys::signal::Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, %error, "could not stop the entry point's process group"),
    }
}

#[cfg(test)]
#[path = "entry_point_tests.rs"]
mod tests;
