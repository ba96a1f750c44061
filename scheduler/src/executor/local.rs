//! The local executor: workers are child processes of the `concurrent-worker` binary on this
//! machine, at most `--workers N` at once. Each worker's log goes to a file in the state dir.
//! A worker that dies while its entry point runs leaves its lease: the executor kills the
//! orphaned entry point and reports the shard, for the driver to hand back at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use concurrent_proto::lease::{Lease, lease_path};

use super::orphans::kill_entry_point;
use super::{Abandoned, Executor, ExecutorError, Observation, StageRef};
use crate::placement::{Cluster, Placed};

/// The name of the local executor's one cluster: shard runs' `concurrent.cluster` tag.
pub const LOCAL_CLUSTER: &str = "local";

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
    /// Held open while this process lives: the worker stops when it closes, and gives up its
    /// slot after its shard when a drain line is written to it.
    lifeline: Option<std::fs::File>,
    /// Asked to drain already.
    draining: bool,
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
            .args(["--run", &stage.run_id, "--stage", &stage.stage, "--worker-id", &id, "--cluster", LOCAL_CLUSTER])
            .arg("--idle-timeout")
            .arg(concurrent_mlflow::duration::format_duration(self.config.idle_timeout))
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
        let lifeline = child.stdin.take().and_then(|stdin| stdin.into_owned_fd().ok()).map(std::fs::File::from);
        Ok(LocalWorker { stage: stage.clone(), id, child, log, lifeline, draining: false })
    }
}

impl LocalExecutor {
    /// Starts `count` more workers for `stage` (launching is immediate: no await needed).
    pub fn start_workers(&mut self, stage: &StageRef, count: u32) -> Result<(), ExecutorError> {
        for _ in 0..count {
            let worker = self.spawn(stage)?;
            tracing::debug!(worker = %worker.id, stage = %stage.stage, "worker launched");
            self.workers.push(worker);
        }
        Ok(())
    }

    /// Shards of `run_id` whose workers died mid-attempt; those of other runs stay.
    pub fn take_abandoned_of(&mut self, run_id: &str) -> Vec<Abandoned> {
        let (ours, others) = std::mem::take(&mut self.abandoned).into_iter().partition(|a| a.stage.run_id == run_id);
        self.abandoned = others;
        ours
    }

    /// Asks up to `count` workers of `run_id` not draining yet to exit after the shard in hand;
    /// returns how many were asked.
    pub fn drain(&mut self, run_id: &str, count: u32) -> u32 {
        use std::io::Write;
        let mut asked = 0;
        for worker in self.workers.iter_mut().filter(|w| w.stage.run_id == run_id && !w.draining) {
            if asked == count {
                break;
            }
            let line = format!("{}\n", concurrent_proto::names::DRAIN_LINE);
            if let Some(lifeline) = &mut worker.lifeline
                && lifeline.write_all(line.as_bytes()).is_ok()
            {
                worker.draining = true;
                asked += 1;
            }
        }
        asked
    }

    /// Workers of `run_id` alive and not draining, as of the last [`LocalExecutor::alive`].
    pub fn serving(&self, run_id: &str) -> u32 {
        self.workers.iter().filter(|w| w.stage.run_id == run_id && !w.draining).count() as u32
    }

    /// Tells the workers of `run_id` to stop and hands them over, forgotten here, for the
    /// caller to wait on ([`StoppingWorker::wait_until`]).
    pub fn stop_run(&mut self, run_id: &str) -> Vec<StoppingWorker> {
        self.stop_where(|worker| worker.stage.run_id == run_id)
    }

    /// Closes the standard input of the workers `which` picks, which stops them as SIGTERM
    /// does (entry point killed, shard run KILLED, shard handed back). No signal is sent: a
    /// worker that already got the terminal's SIGINT would take a second signal as "exit at
    /// once" and leave its shard run RUNNING.
    fn stop_where(&mut self, which: impl Fn(&LocalWorker) -> bool) -> Vec<StoppingWorker> {
        let (ours, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.workers).into_iter().partition(|w| which(w));
        self.workers = others;
        let work_dir = self.config.state_dir.join("work");
        ours.into_iter()
            .map(|mut worker| {
                drop(worker.lifeline.take());
                StoppingWorker { worker, work_dir: work_dir.clone() }
            })
            .collect()
    }
}

/// A worker told to stop, to be waited on.
pub struct StoppingWorker {
    worker: LocalWorker,
    work_dir: PathBuf,
}

impl StoppingWorker {
    /// Waits until `deadline` for the worker to exit; a worker still alive then is killed, and
    /// so is the entry point its lease names.
    pub async fn wait_until(mut self, deadline: tokio::time::Instant) {
        let worker = &mut self.worker;
        if tokio::time::timeout_at(deadline, worker.child.wait()).await.is_err() {
            tracing::warn!(worker = %worker.id, "worker did not stop in time: killed");
            let _ = worker.child.kill().await;
            reclaim(&self.work_dir, worker);
        }
    }
}

impl LocalExecutor {
    /// Workers alive now, per stage; forgets those that have exited (keeping what the dead
    /// ones' leases say for [`LocalExecutor::take_abandoned_of`]).
    pub fn alive(&mut self) -> BTreeMap<StageRef, u32> {
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

    /// Most workers alive at once.
    pub fn capacity(&self) -> u32 {
        self.config.max_workers
    }

    /// Starts workers for `stage` until it has `workers` alive. Draining ones count, as they
    /// do in what [`Executor::observe`] reports: a slot is free only once its worker has
    /// exited. Fewer wanted than it has: nothing to do, local workers exit when their queue is
    /// idle.
    pub fn start_up_to(&mut self, stage: &StageRef, workers: u32) -> Result<(), ExecutorError> {
        let alive = self.workers.iter().filter(|w| &w.stage == stage).count() as u32;
        self.start_workers(stage, workers.saturating_sub(alive))
    }
}

/// The local executor as the one cluster, without nodes, that [`crate::placement`] places on.
pub(super) fn local_cluster(max_workers: u32, other_workers: u32) -> Cluster {
    Cluster { name: LOCAL_CLUSTER.to_string(), max_workers, other_workers, free_nodes: None }
}

/// Workers alive per stage, as an observation of the one local cluster.
pub(super) fn observation(alive: BTreeMap<StageRef, u32>, abandoned: Vec<Abandoned>) -> Observation {
    let placed = alive
        .into_iter()
        .map(|(stage, running)| {
            (stage, vec![Placed { cluster: LOCAL_CLUSTER.to_string(), running, pending_since: Vec::new() }])
        })
        .collect();
    Observation { placed, abandoned, failed_stages: Vec::new() }
}

impl Executor for LocalExecutor {
    fn clusters(&mut self) -> Vec<Cluster> {
        vec![local_cluster(self.config.max_workers, 0)]
    }

    async fn set_desired(&mut self, stage: &StageRef, _cluster: &str, workers: u32) -> Result<(), ExecutorError> {
        self.start_up_to(stage, workers)
    }

    fn observe(&mut self, _now: Duration) -> Observation {
        let alive = self.alive();
        observation(alive, std::mem::take(&mut self.abandoned))
    }

    /// Closes each worker's standard input, which stops it as SIGTERM does (entry point
    /// killed, shard run KILLED, shard handed back). No signal is sent: a worker that already
    /// got the terminal's SIGINT would take a second signal as "exit at once" and leave its
    /// shard run RUNNING. A worker still alive after `grace` is killed, and so is the entry
    /// point its lease names.
    async fn shutdown(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let stopping = self.stop_where(|_| true);
        futures::future::join_all(stopping.into_iter().map(|worker| worker.wait_until(deadline))).await;
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
