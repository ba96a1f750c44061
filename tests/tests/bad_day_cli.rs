//! A bad day, with real processes: stdout closed early, SIGINT and SIGTERM through a pipeline's
//! process group, a disk filling up, NATS and MLflow URLs that refuse or are not what they
//! claim, and an unusable state dir. Each error is checked as a user sees it: exit code,
//! the message naming the place, nothing created, no process left, MLflow runs ended.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use concurrent_tests::mlflow_server;
use concurrent_tests::{NatsServer, find_tool, workspace_bin, workspace_dir};

const DEADLINE: Duration = Duration::from_secs(300);
/// Catches a hang where an error should come at once (the promise is about 3 s).
const QUICK: Duration = Duration::from_secs(8);

/// A DAG of one stage of the `failing` example project (it copies its inputs), each attempt
/// sleeping `sleep` seconds first.
fn copy_dag(dir: &Path, experiment: &str, sleep: f64) -> PathBuf {
    let path = dir.join("dag.yaml");
    let text = format!(
        "name: bad-day\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  copy:\n    project: {p}/failing\n    partition: {{by: object, shard_size: 1}}\n    parallelism: 2\n    parameters: {{sleep: {sleep}}}\n",
        p = example_projects().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The venv first on PATH, as a user who ran scripts/setup.sh has it.
fn path_with_venv() -> String {
    format!("{}:{}", workspace_dir().join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default())
}

/// `concurrent ARGS | tee LOG`, as one process group of its own (like a shell's job): the
/// group id is `concurrent`'s pid. Its stderr goes to a file.
struct Pipeline {
    concurrent: Child,
    tee: Child,
    stderr: PathBuf,
}

impl Pipeline {
    fn start(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Pipeline {
        let stderr = cwd.join("concurrent.stderr");
        let mut command = Command::new(workspace_bin("concurrent"));
        command.args(args).current_dir(cwd).env("PATH", path_with_venv()).env("MLFLOW_DISABLE_TELEMETRY", "true");
        command.env_remove("NATS_URL").env_remove("MLFLOW_TRACKING_URI");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut concurrent = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0)
            .spawn()
            .expect("starting concurrent");
        let pipe = concurrent.stdout.take().unwrap();
        let tee = Command::new("tee")
            .arg(cwd.join("run.log"))
            .stdin(pipe)
            .stdout(Stdio::null())
            .process_group(concurrent.id() as i32)
            .spawn()
            .expect("starting tee");
        Pipeline { concurrent, tee, stderr }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn run_id(&self) -> String {
        let mut id = None;
        wait_until("the run id on stderr", DEADLINE, || {
            id = self.stderr_text().lines().find_map(|l| Some(l.strip_prefix("run ")?.split(':').next()?.to_string()));
            id.is_some()
        });
        id.unwrap()
    }

    /// Sends `signal` to the whole group, as a terminal's Ctrl-C does.
    fn signal_group(&self, signal: &str) {
        let status =
            Command::new("kill").args(["-s", signal, "--", &format!("-{}", self.concurrent.id())]).status().unwrap();
        assert!(status.success(), "kill -s {signal} to the group");
    }

    fn wait(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.concurrent.try_wait().unwrap() {
                let _ = self.tee.wait();
                return status;
            }
            assert!(start.elapsed() < deadline, "concurrent did not exit within {deadline:?}:\n{}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.concurrent.kill();
        let _ = self.concurrent.wait();
        let _ = self.tee.kill();
        let _ = self.tee.wait();
    }
}

#[test]
fn a_closed_stdout_neither_ends_the_run_nor_loses_its_summary() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 3);
    let dag = copy_dag(dir.path(), "closed-stdout", 0.0);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(workspace_bin("concurrent"))
        .args(["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"])
        .current_dir(dir.path())
        .env("PATH", path_with_venv())
        .env("NATS_URL", &nats.url)
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert!(stderr.contains(" SUCCEEDED in "), "the summary comes on stderr when stdout is gone:\n{stderr}");
    let run = std::fs::read_dir(dir.path().join("state/outputs")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(files_under(&run.join("copy")).len(), 3, "every output is there");

    // Both streams closed, with logs on: still no panic, the run still ends well.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(workspace_bin("concurrent"))
        .args(["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state2"])
        .current_dir(dir.path())
        .env("PATH", path_with_venv())
        .env("NATS_URL", &nats.url)
        .env("RUST_LOG", "info")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let run = std::fs::read_dir(dir.path().join("state2/outputs")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(files_under(&run.join("copy")).len(), 3, "every output is there");
}

#[test]
fn sigint_through_a_pipeline_cancels_ends_every_mlflow_run_and_leaves_no_process() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 4);
    let experiment = unique("pipeline-sigint");
    let dag = copy_dag(dir.path(), &experiment, 60.0);
    let args = ["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"];
    let mut pipeline = Pipeline::start(&args, &[("MLFLOW_TRACKING_URI", &mlflow.uri)], dir.path());
    let workdir = dir.path().join("state/work").display().to_string();
    wait_until("two entry points running", DEADLINE, || {
        pids_matching(&format!("failing.py --input-dir {workdir}")).len() >= 2
    });
    pipeline.signal_group("INT");
    let status = pipeline.wait(Duration::from_secs(60));
    let stderr = pipeline.stderr_text();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(" CANCELLED in "), "the summary is not lost when tee died:\n{stderr}");
    assert_no_process_left(&dir.path().display().to_string());

    let rest = MlflowRest::new(&mlflow.uri);
    let runs = rest.runs(&rest.experiment_id(&experiment).unwrap());
    let statuses: Vec<(&str, &str)> = runs.iter().map(|r| (run_name(r), run_status(r))).collect();
    assert!(runs.len() >= 4, "DAG run, stage run and two shard runs: {statuses:?}");
    assert!(runs.iter().all(|r| run_status(r) == "KILLED"), "every run ends KILLED: {statuses:?}");
}

#[test]
fn sigterm_through_a_pipeline_stops_leaves_the_run_resumable_and_says_how() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 4);
    let experiment = unique("pipeline-sigterm");
    let dag = copy_dag(dir.path(), &experiment, 5.0);
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let args = ["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"];
    let mut pipeline = Pipeline::start(&args, &env, dir.path());
    let run_id = pipeline.run_id();
    let workdir = dir.path().join("state/work").display().to_string();
    wait_until("an entry point running", DEADLINE, || {
        !pids_matching(&format!("failing.py --input-dir {workdir}")).is_empty()
    });
    pipeline.signal_group("TERM");
    let status = pipeline.wait(Duration::from_secs(60));
    let stderr = pipeline.stderr_text();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains(&format!("concurrent resume {run_id}")), "the resume hint:\n{stderr}");
    assert_no_process_left(&dir.path().display().to_string());
    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).unwrap();
    let shard_runs: Vec<_> =
        rest.runs(&experiment_id).into_iter().filter(|r| run_name(r).starts_with("copy-")).collect();
    assert!(shard_runs.iter().all(|r| run_status(r) != "RUNNING"), "stopped attempts are ended");

    let resumed = concurrent(&["resume", &run_id, "--state-dir", "state"], &env, dir.path(), DEADLINE);
    assert_eq!(resumed.status.code(), Some(0), "the stopped run resumes to its end: {}", describe(&resumed));
    let runs = rest.runs(&experiment_id);
    let statuses: Vec<(&str, &str)> = runs.iter().map(|r| (run_name(r), run_status(r))).collect();
    assert!(runs.iter().all(|r| run_status(r) != "RUNNING"), "{statuses:?}");
    let finished = runs.iter().filter(|r| run_name(r).starts_with("copy-") && run_status(r) == "FINISHED").count();
    assert_eq!(finished, 4, "each shard finished once: {statuses:?}");
}

/// A tmpfs of `size` mounted on `dir` while it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason printed) when this process may not mount.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let output =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(output) => {
                println!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&output.stderr).trim());
                None
            }
            Err(error) => {
                println!("skipped: cannot run mount: {error}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_disk_filling_up_stops_the_run_at_once_naming_the_filesystem_and_path() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(_tmpfs) = Tmpfs::mount(&small, "48m") else { return };
    let project = dir.path().join("filler");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "name: filler\nentry_points:\n  main:\n    command: \"dd if=/dev/zero of=$CONCURRENT_OUTPUT_DIR/big bs=1M count=40 2>/dev/null; sleep 120\"\n",
    )
    .unwrap();
    let dag = dir.path().join("dag.yaml");
    std::fs::write(&dag, "name: filler\ninput: none\nstages:\n  fill:\n    project: ./filler\n    retries: 0\n")
        .unwrap();
    let state = small.join("state");
    let args = [
        "run",
        dag.to_str().unwrap(),
        "--tracking",
        "none",
        "--min-free-space",
        "16Mi",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut run = spawn_concurrent(&args, &[("NATS_URL", &nats.url)], dir.path(), "run");
    let run_id = {
        let mut id = None;
        wait_until("the run id", DEADLINE, || {
            id = run.run_id();
            id.is_some()
        });
        id.unwrap()
    };
    let status = run.wait(Duration::from_secs(60));
    let stderr = run.stderr_text();
    assert_eq!(status.code(), Some(3), "{}", run.describe());
    let named = format!("state dir {}: only ", state.display());
    assert!(stderr.contains(&named), "the path is named:\n{stderr}");
    assert!(stderr.contains(&format!("filesystem {} (tmpfs)", small.display())), "the filesystem is named:\n{stderr}");
    assert!(stderr.contains(&format!("concurrent resume {run_id}")), "left resumable:\n{stderr}");
    assert_no_process_left(&small.display().to_string());
}

#[test]
fn too_little_free_space_refuses_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 1);
    let dag = copy_dag(dir.path(), "no-space", 0.0);
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--min-free-space", "1Ei", "--state-dir", "state"];
    let output = concurrent(&args, &[], dir.path(), QUICK);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(stderr.contains(&format!("state dir {}", dir.path().join("state").display())), "{stderr}");
    assert!(stderr.contains("--min-free-space"), "{stderr}");
    assert!(!dir.path().join("state/state").exists(), "no run was created");
}

/// `concurrent run` of a small DAG with `NATS_URL` set to `url`: exits 3 at once naming the
/// URL and `cause`, and creates no state dir.
fn assert_nats_url_refused(url: &str, cause: &str) {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 1);
    let dag = copy_dag(dir.path(), "nats-url", 0.0);
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--state-dir", "state"];
    let output = concurrent(&args, &[("NATS_URL", url)], dir.path(), QUICK);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stderr.contains(url), "the URL is named:\n{stderr}");
    assert!(stderr.contains(cause), "the cause `{cause}` is named:\n{stderr}");
    assert!(!dir.path().join("state").exists(), "the state dir is not touched");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `python -m http.server` on a free loopback port; killed on drop.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port = free_port();
        let python = find_tool("python3").or_else(|_| find_tool("python")).expect("python");
        let child = Command::new(python)
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("http.server listening", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        HttpServer { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_nats_url_on_a_closed_port_is_named_at_once() {
    assert_nats_url_refused(&format!("nats://127.0.0.1:{}", free_port()), "cannot connect to 127.0.0.1:");
}

#[test]
fn a_nats_url_whose_host_does_not_resolve_is_named_at_once() {
    assert_nats_url_refused("nats://no-such-host.invalid:4222", "host `no-such-host.invalid` does not resolve");
}

#[test]
fn a_nats_url_that_is_not_nats_is_named_at_once() {
    let site = tempfile::tempdir().unwrap();
    let http = HttpServer::start(site.path());
    let url = http.url.replace("http://", "nats://");
    assert_nats_url_refused(&url, "is not a NATS server");
}

#[test]
fn a_tracking_uri_that_is_not_mlflow_exits_3_and_creates_nothing() {
    let nats = NatsServer::start().unwrap();
    let site = tempfile::tempdir().unwrap();
    let http = HttpServer::start(site.path());
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 1);
    let dag = copy_dag(dir.path(), "not-mlflow", 0.0);
    let args = ["run", dag.to_str().unwrap(), "--state-dir", "state"];
    let output = concurrent(&args, &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &http.url)], dir.path(), QUICK);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stderr.contains(&format!("tracking URI {} is not an MLflow tracking server", http.url)), "{stderr}");
    assert!(stderr.lines().count() <= 3, "one error, not a page of HTML:\n{stderr}");
    assert!(!dir.path().join("state").exists(), "the state dir is not touched");
}

#[test]
fn an_unusable_state_dir_exits_2_naming_it() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 1);
    let dag = copy_dag(dir.path(), "state-dir", 0.0);
    std::fs::write(dir.path().join("a-file"), "not a directory").unwrap();
    for (state, problem) in
        [("a-file", "cannot use it: not a directory"), ("/proc/concurrent-state", "cannot create it")]
    {
        let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--state-dir", state];
        let output = concurrent(&args, &[("NATS_URL", &nats.url)], dir.path(), QUICK);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let path = std::path::absolute(dir.path().join(state)).unwrap();
        assert!(stderr.contains(&format!("--state-dir {}: {problem}", path.display())), "{stderr}");
    }
}

#[test]
fn cancel_after_the_scheduler_died_kills_its_entry_points_and_ends_its_mlflow_runs() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 4);
    let experiment = unique("orphan-cancel");
    let dag = copy_dag(dir.path(), &experiment, 60.0);
    let env = [("MLFLOW_TRACKING_URI", mlflow.uri.as_str())];
    let args = ["run", dag.to_str().unwrap(), "--workers", "2", "--state-dir", "state"];
    let mut pipeline = Pipeline::start(&args, &env, dir.path());
    let run_id = pipeline.run_id();
    let workdir = dir.path().join("state/work").display().to_string();
    let entry_points = format!("failing.py --input-dir {workdir}");
    wait_until("two entry points running", DEADLINE, || pids_matching(&entry_points).len() >= 2);
    // The scheduler and its workers die at once (entry points run in groups of their own).
    pipeline.signal_group("KILL");
    pipeline.wait(Duration::from_secs(60));
    // Where entry points can outlive their workers, `cancel` must kill them.
    let survivors = pids_matching(&entry_points).len();
    println!("{survivors} entry points outlived their workers");
    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).unwrap();
    let running = || rest.runs(&experiment_id).into_iter().filter(|r| run_status(r) == "RUNNING").count();
    assert!(running() >= 2, "the DAG and stage runs were left RUNNING by the killed scheduler");

    let output = concurrent(&["cancel", &run_id, "--state-dir", "state"], &env, dir.path(), Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stdout.contains("no scheduler was running it") && stdout.contains("ended KILLED"), "{stdout}");
    assert_no_process_left(&dir.path().display().to_string());
    let runs = rest.runs(&experiment_id);
    let statuses: Vec<(&str, &str)> = runs.iter().map(|r| (run_name(r), run_status(r))).collect();
    assert!(runs.iter().all(|r| run_status(r) == "KILLED"), "every run ends KILLED: {statuses:?}");
    let again = concurrent(&["cancel", &run_id, "--state-dir", "state"], &env, dir.path(), Duration::from_secs(60));
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
}

#[test]
fn what_a_failing_nats_server_says_reaches_the_screen() {
    let dir = tempfile::tempdir().unwrap();
    make_images(&dir.path().join("raw"), 1);
    let dag = copy_dag(dir.path(), "nats-fails", 0.0);
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("nats-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '[FTL] Error creating store directory: no space left on device' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), path_with_venv());
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--state-dir", "state"];
    let output = concurrent(&args, &[("PATH", &path)], dir.path(), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stderr.contains("nats-server exited before it was ready"), "{stderr}");
    assert!(stderr.contains("no space left on device"), "the end of its log is shown:\n{stderr}");
}
