//! Runs an entry point's command: `bash -c <command>` (`sh -c` where the image has no bash) in its own process group, contained (a
//! cgroup per attempt, else the worker as subreaper plus the environment mark, see
//! `concurrent_procs::containment`), its output appended to the attempt's log through a pipe
//! and capped (head and tail, `log_limit`). Every process it started is killed on timeout, on
//! interruption of the worker, and after the command exits, however it left the group. While
//! it runs, the worker's lease names the shard and the group, for an executor that sees the
//! worker die.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concurrent_procs::{Containment, Mark};
use concurrent_proto::lease::Lease;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::env::EntryPointEnv;
use crate::lease_file::LeaseFile;
use crate::log_cap::CappedLog;

/// One run of an entry point command.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The rendered command, run with `bash -c` (`sh -c` without bash).
    pub command: &'a str,
    /// Working directory: the unpacked project.
    pub cwd: &'a Path,
    /// Environment changes.
    pub env: &'a EntryPointEnv,
    /// File that stdout and stderr are appended to.
    pub log: &'a Path,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// The attempt's input dir (`CONCURRENT_INPUT_DIR`): every process of the attempt carries
    /// it in its environment, which is how the ones that leave the group are found.
    pub input_dir: &'a Path,
    /// Most bytes of output kept in the log (head and tail).
    pub log_limit: u64,
    /// Where to keep the lease while the command runs.
    pub lease: Option<LeaseSlot<'a>>,
    /// Told as soon as the command has exited (before its log is completed).
    pub exited: Option<&'a tokio::sync::Notify>,
}

/// The lease file of the worker's slot, the ack subject of the shard it runs, and the input
/// dir its entry point is given (`CONCURRENT_INPUT_DIR`).
#[derive(Debug, Clone, Copy)]
pub struct LeaseSlot<'a> {
    pub file: &'a LeaseFile,
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
    /// The shell (`bash`, else `sh`) could not be started.
    #[error("starting `{shell} -c` in {cwd}")]
    Spawn {
        /// The shell.
        shell: String,
        /// The working directory.
        cwd: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for the entry point")]
    Wait(#[source] std::io::Error),
    /// The pipe carrying its output could not be made.
    #[error("creating the pipe for the entry point's output")]
    Pipe(#[source] std::io::Error),
}

/// How long the log waits for the output pipe to close once every process of the attempt has
/// been killed (a process that escaped both the cgroup and the mark may hold it open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Runs the command to its end; kills every process of the attempt when `timeout` expires,
/// `cancel` fires, or the command exits.
pub async fn run(invocation: Invocation<'_>, cancel: &CancellationToken) -> Result<Exit, EntryPointError> {
    let log_error = |source| EntryPointError::Log { path: invocation.log.to_path_buf(), source };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(invocation.log).map_err(log_error)?;
    let (reader, writer) = std::io::pipe().map_err(EntryPointError::Pipe)?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(EntryPointError::Pipe)?;
    let writer_err = writer.try_clone().map_err(EntryPointError::Pipe)?;
    let containment = Containment::for_attempt(&next_cgroup_name());
    let (program, args) = containment.command_line(invocation.command);
    let mut command = Command::new(&program);
    command
        .args(args)
        .current_dir(invocation.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_err))
        .process_group(0)
        .kill_on_drop(true);
    for name in &invocation.env.remove {
        command.env_remove(name);
    }
    command.envs(invocation.env.set.iter().map(|(k, v)| (k, v)));
    command.env(Mark::VARIABLE, invocation.input_dir);
    let spawned = command.spawn();
    // The pipe's write ends now belong to the command alone: the log ends when it and every
    // process it started are gone.
    drop(command);
    let mut child = spawned.map_err(|source| EntryPointError::Spawn {
        shell: program,
        cwd: invocation.cwd.to_path_buf(),
        source,
    })?;
    let output = OutputPump::start(reader, log, invocation.log_limit);
    tracing::debug!(containment = containment.kind(), "entry point started");
    // With process_group(0) the group id is the leader's pid.
    let pgid = child.id();
    let mark = Mark::input_dir(&invocation.input_dir.to_string_lossy());
    // Kills every process of the attempt however this function ends, even when its future is
    // dropped.
    let running = RunningAttempt::register(pgid, containment, mark, invocation.lease);

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
            running.kill_all();
            child.wait().await.map_err(EntryPointError::Wait)?;
            Exit::TimedOut(invocation.timeout.unwrap_or_default())
        }
        () = cancel.cancelled() => {
            running.kill_all();
            child.wait().await.map_err(EntryPointError::Wait)?;
            Exit::Interrupted
        }
    };
    if let Some(exited) = invocation.exited {
        exited.notify_one();
        // Lets what waits for the exit go first (a pull sent now arrives while the attempt ends).
        tokio::task::yield_now().await;
    }
    // Whatever the command left running goes with it, then the log is completed.
    drop(running);
    output.finish(OUTPUT_DRAIN).await.map_err(log_error)?;
    Ok(exit)
}

/// A name for the next attempt's cgroup, unique on the machine.
fn next_cgroup_name() -> String {
    static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
    format!("concurrent-worker-{}-{}", std::process::id(), ATTEMPTS.fetch_add(1, Ordering::Relaxed))
}

fn from_status(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// Copies the entry point's output from the pipe into the capped log, as a task of the
/// worker's runtime (no thread started per attempt).
struct OutputPump {
    log: Arc<Mutex<Option<CappedLog<std::fs::File>>>>,
    copying: tokio::task::JoinHandle<()>,
}

impl OutputPump {
    fn start(mut reader: tokio::net::unix::pipe::Receiver, file: std::fs::File, limit: u64) -> OutputPump {
        use tokio::io::AsyncReadExt as _;
        let log = Arc::new(Mutex::new(Some(CappedLog::new(file, limit))));
        let shared = Arc::clone(&log);
        let copying = tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = match reader.read(&mut buffer).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut guard = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(log) = guard.as_mut() else { break };
                if let Err(error) = log.write_output(&buffer[..read]) {
                    tracing::warn!(%error, "could not write the entry point's log");
                }
            }
        });
        OutputPump { log, copying }
    }

    /// Waits up to `drain` for the pipe to close, then writes the log's tail.
    async fn finish(mut self, drain: Duration) -> std::io::Result<()> {
        if tokio::time::timeout(drain, &mut self.copying).await.is_err() {
            tracing::warn!("a process of the entry point still holds its output open; the log ends here");
            self.copying.abort();
        }
        let taken = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match taken {
            Some(log) => log.finish().map(drop),
            None => Ok(()),
        }
    }
}

/// The attempt running now, for a worker about to exit at once (second SIGTERM/SIGINT)
/// without unwinding. A worker runs one attempt at a time.
static RUNNING: Mutex<Option<Arc<Running>>> = Mutex::new(None);

/// Kills every process of the attempt running now, if any.
pub fn kill_running_group() {
    let running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if let Some(running) = running {
        running.kill_all();
    }
}

/// What holds an attempt's processes: its group, its containment and its mark.
struct Running {
    pgid: Option<u32>,
    containment: Containment,
    mark: Mark,
}

impl Running {
    fn kill_all(&self) {
        if let Some(pgid) = self.pgid
            && let Err(error) = concurrent_procs::kill_group(pgid, nix::sys::signal::Signal::SIGKILL)
        {
            tracing::warn!(pgid, %error, "could not stop the entry point's process group");
        }
        let left = self.containment.kill_all(&self.mark, self.pgid);
        if left > 0 {
            tracing::info!(processes = left, "killed processes the entry point left outside its group");
        }
    }
}

/// Registers the running attempt and writes the lease; kills every process of the attempt,
/// clears it and releases the lease when dropped.
struct RunningAttempt<'a> {
    running: Arc<Running>,
    lease: Option<&'a LeaseFile>,
}

impl<'a> RunningAttempt<'a> {
    fn register(
        pgid: Option<u32>,
        containment: Containment,
        mark: Mark,
        lease: Option<LeaseSlot<'a>>,
    ) -> RunningAttempt<'a> {
        let running = Arc::new(Running { pgid, containment, mark });
        *RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&running));
        let lease = match (pgid, lease) {
            (Some(pgid), Some(slot)) => {
                let input_dir = slot.input_dir.to_string_lossy().into_owned();
                let text = Lease { ack_subject: slot.ack_subject.to_string(), pgid, input_dir }.to_text();
                write_lease(slot.file, &text);
                Some(slot.file)
            }
            _ => None,
        };
        RunningAttempt { running, lease }
    }

    fn kill_all(&self) {
        self.running.kill_all();
    }
}

impl Drop for RunningAttempt<'_> {
    fn drop(&mut self) {
        self.running.kill_all();
        RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(file) = self.lease {
            write_lease(file, concurrent_proto::lease::RELEASED);
        }
    }
}

fn write_lease(file: &LeaseFile, text: &str) {
    if let Err(error) = file.write(text) {
        tracing::warn!(path = %file.path().display(), %error, "could not write the worker's lease");
    }
}

#[cfg(test)]
#[path = "entry_point_tests.rs"]
mod tests;
