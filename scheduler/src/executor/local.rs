//! The local executor: workers are child processes of the `concurrent-worker` binary on this
//! machine, at most `--workers N` at once. Each worker's log goes to a file in the state dir.
//! A worker that dies while its entry point runs leaves its lease: the executor kills the
//! orphaned entry point and reports the shard, for the driver to hand back at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, ChildStdin, Command};

use concurrent_proto::lease::{Lease, lease_path};

use super::orphans::kill_entry_point;
use super::{Abandoned, Executor, ExecutorError, StageRef};

/// How a local worker is started.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `concurrent-worker` binary.
    pub worker_binary: PathBuf,
    pub nats_url: String,
    /// Most workers alive at once.
    pub max_workers: u32,
    /// Workers exit after this long without a shard.
    pub idle_timeout: Duration,
    /// Root of the workers' scratch dirs, project cache and logs.
    pub state_dir: PathBuf,
}

struct LocalWorker {
    stage: StageRef,
    id: String,
    child: Child,
    log: PathBuf,
    /// Held open while this process lives: the worker stops when it closes.
    lifeline: Option<ChildStdin>,
}

/// Runs workers as local child processes.
pub struct LocalExecutor {
    config: LocalConfig,
    workers: Vec<LocalWorker>,
    launched: u64,
    abandoned: Vec<Abandoned>,
}

impl LocalExecutor {
    /// An executor with no worker running yet.
    pub fn new(config: LocalConfig) -> LocalExecutor {
        LocalExecutor { config, workers: Vec::new(), launched: 0, abandoned: Vec::new() }
    }

    /// The `concurrent-worker` binary installed beside the running executable.
    pub fn default_worker_binary() -> PathBuf {
        if let Some(path) = std::env::var_os("CONCURRENT_WORKER_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().unwrap_or_default();
        exe.parent().unwrap_or(Path::new(".")).join("concurrent-worker")
    }

    fn spawn(&mut self, stage: &StageRef) -> Result<LocalWorker, ExecutorError> {
        self.launched += 1;
        let id = format!("local-{}-{}", std::process::id(), self.launched);
        let log_dir = self.config.state_dir.join("logs").join(&stage.run_id);
        std::fs::create_dir_all(&log_dir)
            .map_err(|source| ExecutorError::LogDir { dir: log_dir.display().to_string(), source })?;
        let log = log_dir.join(format!("{}-{id}.log", stage.stage));
        let log_file = std::fs::File::create(&log)
            .map_err(|source| ExecutorError::LogDir { dir: log_dir.display().to_string(), source })?;
        let binary = &self.config.worker_binary;
        let mut child = Command::new(binary)
            .arg("--nats-url")
            .arg(&self.config.nats_url)
            .args(["--run", &stage.run_id, "--stage", &stage.stage, "--worker-id", &id, "--cluster", "local"])
            .arg("--idle-timeout")
            .arg(format!("{}ms", self.config.idle_timeout.as_millis()))
            .arg("--work-dir")
            .arg(self.config.state_dir.join("work"))
            .arg("--cache-dir")
            .arg(self.config.state_dir.join("projects"))
            .arg("--stop-when-stdin-closes")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecutorError::Spawn { binary: binary.display().to_string(), source })?;
        let lifeline = child.stdin.take();
        Ok(LocalWorker { stage: stage.clone(), id, child, log, lifeline })
    }
}

impl Executor for LocalExecutor {
    fn capacity(&self) -> u32 {
        self.config.max_workers
    }

    async fn launch(&mut self, stage: &StageRef, count: u32) -> Result<(), ExecutorError> {
        for _ in 0..count {
            let worker = self.spawn(stage)?;
            tracing::debug!(worker = %worker.id, stage = %stage.stage, "worker launched");
            self.workers.push(worker);
        }
        Ok(())
    }

    fn alive(&mut self) -> BTreeMap<StageRef, u32> {
        let work_dir = self.config.state_dir.join("work");
        let abandoned = &mut self.abandoned;
        self.workers.retain_mut(|worker| match worker.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                if !status.success() {
                    tracing::warn!(worker = %worker.id, %status, log = %worker.log.display(), "worker exited with an error");
                }
                abandoned.extend(reclaim(&work_dir, worker));
                false
            }
            Err(error) => {
                tracing::warn!(worker = %worker.id, %error, "cannot check worker");
                false
            }
        });
        let mut alive = BTreeMap::new();
        for worker in &self.workers {
            *alive.entry(worker.stage.clone()).or_insert(0) += 1;
        }
        alive
    }

    fn take_abandoned(&mut self) -> Vec<Abandoned> {
        std::mem::take(&mut self.abandoned)
    }

    /// Closes each worker's standard input, which stops it as SIGTERM does (entry point
    /// killed, shard run KILLED, shard handed back). No signal is sent: a worker that already
    /// got the terminal's SIGINT would take a second signal as "exit at once" and leave its
    /// shard run RUNNING. A worker still alive after `grace` is killed, and so is the entry
    /// point its lease names.
    async fn shutdown(&mut self, grace: Duration) {
        for worker in &mut self.workers {
            drop(worker.lifeline.take());
        }
        let deadline = tokio::time::Instant::now() + grace;
        let work_dir = self.config.state_dir.join("work");
        for worker in &mut self.workers {
            if tokio::time::timeout_at(deadline, worker.child.wait()).await.is_err() {
                tracing::warn!(worker = %worker.id, "worker did not stop within {grace:?}: killed");
                let _ = worker.child.kill().await;
                reclaim(&work_dir, worker);
            }
        }
        self.workers.clear();
    }
}

/// After a worker exited: when its lease is still held (it died while its entry point ran),
/// kills the orphaned entry point's process group and returns the shard to hand back. Removes
/// what the worker left in the work dir.
fn reclaim(work_dir: &Path, worker: &LocalWorker) -> Option<Abandoned> {
    let stage = &worker.stage;
    let lease_file = lease_path(work_dir, &stage.run_id, &stage.stage, &worker.id);
    let lease = std::fs::read_to_string(&lease_file).ok().and_then(|text| Lease::parse(&text));
    let _ = std::fs::remove_file(&lease_file);
    let _ = std::fs::remove_dir_all(work_dir.join(&stage.run_id).join(&stage.stage).join(&worker.id));
    let lease = lease?;
    match kill_entry_point(lease.pgid, &lease.input_dir) {
        Ok(true) => {
            tracing::warn!(worker = %worker.id, pgid = lease.pgid, "killed the entry point its dead worker left")
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(worker = %worker.id, pgid = lease.pgid, %error, "could not kill the orphaned entry point")
        }
    }
    Some(Abandoned { stage: stage.clone(), ack_subject: lease.ack_subject })
}

/// Kills the entry points the leases of run `run_id` under `<state dir>/work` still name,
/// when their workers died with their scheduler; returns how many were killed.
pub fn kill_leftover_entry_points(state_dir: &Path, run_id: &str) -> usize {
    let run_dir = state_dir.join("work").join(run_id);
    let stages = std::fs::read_dir(&run_dir).into_iter().flatten().flatten();
    let leases = stages
        .flat_map(|stage| std::fs::read_dir(stage.path()).into_iter().flatten().flatten())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "lease"));
    leases
        .filter_map(|entry| Lease::parse(&std::fs::read_to_string(entry.path()).ok()?))
        .filter(|lease| kill_entry_point(lease.pgid, &lease.input_dir).unwrap_or(false))
        .count()
}
