//! What the end-to-end tests share: sample images, running the `concurrent` CLI with a
//! deadline, and reading MLflow through its REST API (independently of our own client).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use concurrent_tests::{find_tool, workspace_bin, workspace_dir};
use serde_json::{Value, json};

/// Makes `count` sample images under `dir` with the example's generator.
pub fn make_images(dir: &Path, count: usize) {
    let python = find_tool("python3").or_else(|_| find_tool("python")).expect("python");
    let script = workspace_dir().join("examples/images/make_images.py");
    let status = Command::new(python)
        .arg(script)
        .args(["--count", &count.to_string(), "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("running make_images.py");
    assert!(status.success(), "make_images.py failed");
}

/// Relative paths of every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

/// The example projects' directory.
pub fn example_projects() -> PathBuf {
    workspace_dir().join("examples/images/projects")
}

/// Runs `concurrent` with `args`, the venv first on PATH, `env` set, killed after `deadline`.
pub fn concurrent(args: &[&str], env: &[(&str, &str)], cwd: &Path, deadline: Duration) -> Output {
    concurrent_with_stdin(args, env, cwd, None, deadline)
}

/// [`concurrent`] with `stdin` written to its standard input (then closed), or the test's own
/// standard input when `None`.
pub fn concurrent_with_stdin(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Output {
    let venv = workspace_dir().join(".venv/bin");
    let path = format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(workspace_bin("concurrent"));
    command.args(args).current_dir(cwd).env("PATH", path).env("MLFLOW_DISABLE_TELEMETRY", "true");
    command.env_remove("NATS_URL").env_remove("MLFLOW_TRACKING_URI");
    for (key, value) in env {
        command.env(key, value);
    }
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting concurrent");
    let pid = child.id();
    let feeder = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A writer thread: the child may refuse the input and exit before reading it all.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&bytes);
        })
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog_done = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if watchdog_done.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        true
    });
    let output = child.wait_with_output().expect("waiting for concurrent");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let timed_out = watchdog.join().unwrap();
    assert!(!timed_out, "concurrent did not finish within {deadline:?}:\n{}", describe(&output));
    output
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A read-only view of an MLflow server through its REST API.
pub struct MlflowRest {
    base: String,
    http: reqwest::blocking::Client,
}

impl MlflowRest {
    pub fn new(uri: &str) -> MlflowRest {
        MlflowRest { base: uri.trim_end_matches('/').to_string(), http: reqwest::blocking::Client::new() }
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).query(query).send().expect("MLflow GET");
        response.json().expect("MLflow JSON")
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.base)).json(&body).send().expect("MLflow POST");
        response.json().expect("MLflow JSON")
    }

    /// The id of an experiment, if it exists.
    pub fn experiment_id(&self, name: &str) -> Option<String> {
        let reply = self.get("/api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", name)]);
        reply["experiment"]["experiment_id"].as_str().map(str::to_string)
    }

    /// Creates experiment `name` whose runs keep their artifacts under `artifact_location`;
    /// returns its id.
    pub fn create_experiment(&self, name: &str, artifact_location: &str) -> String {
        let reply = self
            .post("/api/2.0/mlflow/experiments/create", json!({"name": name, "artifact_location": artifact_location}));
        reply["experiment_id"].as_str().unwrap_or_else(|| panic!("experiments/create: {reply}")).to_string()
    }

    /// The tags of an experiment, by key.
    pub fn experiment_tags(&self, experiment_id: &str) -> std::collections::BTreeMap<String, String> {
        let reply = self.get("/api/2.0/mlflow/experiments/get", &[("experiment_id", experiment_id)]);
        let tags = reply["experiment"]["tags"].as_array().cloned().unwrap_or_default();
        tags.iter().filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str()?.to_string()))).collect()
    }

    /// Every run of an experiment.
    pub fn runs(&self, experiment_id: &str) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"experiment_ids": [experiment_id], "max_results": 1000});
            if let Some(token) = &token {
                body["page_token"] = json!(token);
            }
            let reply = self.post("/api/2.0/mlflow/runs/search", body);
            runs.extend(reply["runs"].as_array().cloned().unwrap_or_default());
            match reply["next_page_token"].as_str() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return runs,
            }
        }
    }

    /// Files under `path` of a run's artifacts, recursively, relative to `path`.
    pub fn artifact_files(&self, run_id: &str, path: &str) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![path.to_string()];
        while let Some(dir) = dirs.pop() {
            let reply = self.get("/api/2.0/mlflow/artifacts/list", &[("run_id", run_id), ("path", &dir)]);
            for file in reply["files"].as_array().cloned().unwrap_or_default() {
                let file_path = file["path"].as_str().unwrap().to_string();
                if file["is_dir"].as_bool().unwrap_or(false) {
                    dirs.push(file_path);
                } else {
                    files.push(file_path.strip_prefix(&format!("{path}/")).unwrap_or(&file_path).to_string());
                }
            }
        }
        files.sort();
        files
    }

    /// The bytes of one artifact of a run.
    pub fn artifact(&self, run: &Value, path: &str) -> Vec<u8> {
        let artifact_uri = run["info"]["artifact_uri"].as_str().unwrap();
        let rest = artifact_uri.strip_prefix("mlflow-artifacts:/").expect("proxied artifacts");
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{path}", self.base, rest.trim_start_matches('/'));
        let response = self.http.get(url).send().expect("artifact GET");
        assert!(response.status().is_success(), "artifact {path}: {}", response.status());
        response.bytes().unwrap().to_vec()
    }
}

/// A tag of a run from `runs/search`.
pub fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

/// A param of a run from `runs/search`.
pub fn param<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["params"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

/// A metric of a run from `runs/search`.
pub fn metric(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_f64()
}

/// The run's name.
pub fn run_name(run: &Value) -> &str {
    run["info"]["run_name"].as_str().unwrap_or_default()
}

/// The run's status.
pub fn run_status(run: &Value) -> &str {
    run["info"]["status"].as_str().unwrap_or_default()
}

/// When the run started, in ms since the epoch.
pub fn start_time_ms(run: &Value) -> i64 {
    let start = &run["info"]["start_time"];
    start.as_i64().or_else(|| start.as_str().and_then(|s| s.parse().ok())).expect("a start_time")
}

/// The run's id.
pub fn mlflow_run_id(run: &Value) -> &str {
    run["info"]["run_id"].as_str().unwrap_or_default()
}

/// A unique experiment name for one test.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `concurrent` running in the background; killed when dropped.
pub struct Background {
    child: std::process::Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Background {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// What it wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The run id it printed (`run <id>: …`), once it has.
    pub fn run_id(&self) -> Option<String> {
        let text = self.stderr_text();
        let line = text.lines().find(|l| l.starts_with("run ") || l.starts_with("resuming run "))?;
        let rest = line.strip_prefix("resuming run ").or_else(|| line.strip_prefix("run "))?;
        Some(rest.split(':').next()?.to_string())
    }

    /// Its exit status, when it has exited.
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for it to exit; panics with its output after `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                panic!(
                    "concurrent did not exit within {deadline:?}\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout_text(), self.stderr_text())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `concurrent` with `args` in the background, its output in files under `cwd`.
pub fn spawn_concurrent(args: &[&str], env: &[(&str, &str)], cwd: &Path, name: &str) -> Background {
    let venv = workspace_dir().join(".venv/bin");
    let path = format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default());
    let stdout = cwd.join(format!("{name}.stdout"));
    let stderr = cwd.join(format!("{name}.stderr"));
    let mut command = Command::new(workspace_bin("concurrent"));
    command.args(args).current_dir(cwd).env("PATH", path).env("MLFLOW_DISABLE_TELEMETRY", "true");
    command.env_remove("NATS_URL").env_remove("MLFLOW_TRACKING_URI");
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("starting concurrent");
    Background { child, stdout, stderr }
}

/// Waits until `done` holds, polling; panics naming `what` after `deadline`.
/// SIGKILLs the scheduler `run` of `run_id` (state dir `state` under `dir`), waits until its
/// workers and nats-server are gone, then runs `concurrent resume` there to its end, which must
/// succeed within `deadline`.
pub fn kill_then_resume(run: &mut Background, run_id: &str, env: &[(&str, &str)], dir: &Path, deadline: Duration) {
    signal(run.pid(), "KILL");
    run.wait(Duration::from_secs(10));
    let state = dir.join("state");
    wait_until("the killed scheduler's workers and nats-server to go", Duration::from_secs(30), || {
        pids_matching(&state.display().to_string()).is_empty()
    });
    let mut resumed =
        spawn_concurrent(&["resume", run_id, "--workers", "2", "--state-dir", "state"], env, dir, "resume");
    let status = resumed.wait(deadline);
    assert_eq!(status.code(), Some(0), "{}", resumed.describe());
}

pub fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Process ids whose command line contains `pattern` (`pgrep -f`).
pub fn pids_matching(pattern: &str) -> Vec<u32> {
    let output = Command::new("pgrep").args(["-f", "--", pattern]).output().expect("pgrep");
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The child processes of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let output = Command::new("pgrep").args(["-P", &pid.to_string()]).output().expect("pgrep");
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the `(comm)` field.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|state| state != "Z")
}

/// Sends a signal (`KILL`, `TERM`, `INT`, `STOP`, `CONT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args(["-s", name, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -s {name} {pid}");
}

/// Waits up to 10 s for every process whose command line contains `pattern` to be gone;
/// panics listing those left.
pub fn assert_no_process_left(pattern: &str) {
    let start = Instant::now();
    loop {
        let pids = pids_matching(pattern);
        if pids.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let listing = Command::new("ps")
                .arg("-o")
                .arg("pid,ppid,stat,args")
                .arg("-p")
                .arg(pids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("processes left behind:\n{listing}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
