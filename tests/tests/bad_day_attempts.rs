//! End to end on a bad day: entry points that leave processes behind, a scheduler stopped
//! while NATS is gone, failures that cannot change, stages that succeed with nothing, and
//! chatty entry points.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use concurrent_tests::{NatsServer, mlflow_server};

const DEADLINE: Duration = Duration::from_secs(600);

/// A project whose `main` entry point runs `command`.
fn project(dir: &Path, name: &str, command: &str) -> PathBuf {
    let project = dir.join(name);
    std::fs::create_dir_all(&project).unwrap();
    let quoted = serde_json::to_string(command).unwrap();
    std::fs::write(project.join("MLproject"), format!("name: {name}\nentry_points:\n  main:\n    command: {quoted}\n"))
        .unwrap();
    project
}

/// `count` small input files under `dir/raw`.
fn inputs(dir: &Path, count: usize) -> PathBuf {
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for i in 0..count {
        std::fs::write(raw.join(format!("f{i}.txt")), format!("input {i}\n")).unwrap();
    }
    raw
}

fn write_dag(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("dag.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Live processes whose environment holds `entry` (`NAME=value`).
fn processes_with_env(entry: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(proc_entry.path().join("environ")) else { continue };
        if process_alive(pid) && environ.split(|b| *b == 0).any(|e| e == entry.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// The summary table's line of `stage`, split into its columns.
fn stage_row(stdout: &str, stage: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().is_some_and(|c| c == stage) && cols.len() >= 10)
        .unwrap_or_else(|| panic!("no summary line for {stage} in:\n{stdout}"))
}

#[test]
fn processes_an_entry_point_daemonises_do_not_outlive_its_attempt() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 2);
    let name = unique("daemons");
    // A new session (setsid) and a double fork (a subshell's background job): neither stays
    // in the entry point's process group.
    let p = project(
        dir.path(),
        "daemons",
        "setsid sleep 300 & (sleep 300 &); cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"",
    );
    let dag = write_dag(
        dir.path(),
        &format!("name: {name}\ninput: file:./raw\nstages:\n  a:\n    project: {}\n    partition: none\n", p.display()),
    );
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let mark = format!("CONCURRENT_DAG={name}");
    wait_until("no process of the run left", Duration::from_secs(10), || processes_with_env(&mark).is_empty());
}

#[test]
fn workers_stop_soon_after_their_scheduler_is_stopped_while_nats_is_gone() {
    let mut nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 2);
    let name = unique("nats-gone");
    let started = dir.path().join("started");
    std::fs::create_dir(&started).unwrap();
    let go = dir.path().join("go");
    // Each entry point waits for `go`, so that both finish once NATS is gone: their workers
    // then retry publishing their results.
    let p = project(
        dir.path(),
        "waits",
        // The loop also ends when the test's dir is gone: no entry point outlives a failed test.
        &format!(
            "touch {}/$CONCURRENT_SHARD; while [ ! -e {go} ] && [ -d {dir} ]; do sleep 0.05; done",
            started.display(),
            go = go.display(),
            dir = dir.path().display()
        ),
    );
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: {name}\ninput: file:./raw\nstages:\n  a:\n    project: {}\n    partition: {{by: object, shard_size: 1}}\n    parallelism: 2\n",
            p.display()
        ),
    );
    let mut scheduler = spawn_concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        "run",
    );
    wait_until("both entry points running", Duration::from_secs(120), || {
        std::fs::read_dir(&started).unwrap().count() == 2
    });
    let workers: Vec<u32> = children_of(scheduler.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("concurrent-worker"))
        })
        .collect();
    assert_eq!(workers.len(), 2, "{}", scheduler.describe());
    nats.kill();
    std::fs::write(&go, "").unwrap();
    let mark = format!("CONCURRENT_DAG={name}");
    wait_until("the entry points done", Duration::from_secs(30), || processes_with_env(&mark).is_empty());
    assert!(workers.iter().all(|pid| process_alive(*pid)), "the workers are publishing their results");
    signal(scheduler.pid(), "TERM");
    // Before, workers retried publishing for up to two minutes; now within 5 s of the stop
    // (the deadline only catches the old behaviour on a loaded machine).
    let stopped = std::time::Instant::now();
    wait_until("the workers gone", Duration::from_secs(10), || !workers.iter().any(|pid| process_alive(*pid)));
    eprintln!("workers gone {:?} after SIGTERM", stopped.elapsed());
    let _ = scheduler.wait(Duration::from_secs(60));
}

#[test]
fn an_input_that_vanished_fails_its_shard_once_permanently() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = inputs(dir.path(), 2);
    // Whichever shard runs first deletes the other shard's input before it is fetched.
    let p = project(
        dir.path(),
        "thief",
        &format!(
            "for f in {}/*; do [ -e \"$CONCURRENT_INPUT_DIR/$(basename $f)\" ] || rm -f \"$f\"; done; cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"",
            raw.display()
        ),
    );
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: vanished\ninput: file:./raw\nstages:\n  a:\n    project: {}\n    partition: {{by: object, shard_size: 1}}\n    retries: 2\n",
            p.display()
        ),
    );
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stage_row(&stdout, "a");
    // stage status shards ok failed attempts …
    assert_eq!(&row[1..6], ["FAILED", "2", "1", "1", "2"], "one attempt per shard, no retry: {stdout}");
    let note = stdout.lines().find(|l| l.contains("failed permanently (not retried)")).unwrap_or_else(|| {
        panic!("no permanent-failure note in:\n{stdout}");
    });
    assert!(note.starts_with("stage a shard ") && note.contains("fetching input") && note.contains(".txt"), "{note}");
}

/// A directory made unwritable for the test's length: read-only bind mount when running as
/// root (which ignores permissions), mode 0555 otherwise.
struct Unwritable(PathBuf, bool);

impl Unwritable {
    fn make(dir: &Path) -> Unwritable {
        std::fs::create_dir_all(dir).unwrap();
        let root = running_as_root();
        if root {
            let run = |args: &[&str]| std::process::Command::new("mount").args(args).arg(dir).arg(dir).status();
            assert!(run(&["--bind"]).unwrap().success(), "mount --bind");
            let remount = std::process::Command::new("mount").args(["-o", "remount,ro,bind"]).arg(dir).status();
            assert!(remount.unwrap().success(), "remount read-only");
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        assert!(std::fs::write(dir.join("probe"), "").is_err(), "{} is still writable", dir.display());
        Unwritable(dir.to_path_buf(), root)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().next() == Some("0"))
}

#[test]
fn an_unwritable_outputs_dir_fails_each_shard_once_permanently() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 2);
    let copy = project(dir.path(), "copy", "cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"");
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: unwritable\ninput: file:./raw\nstages:\n  a:\n    project: {}\n    partition: {{by: object, shard_size: 1}}\n    retries: 2\n",
            copy.display()
        ),
    );
    // With tracking off, outputs are kept under <state dir>/outputs/.
    let _outputs = Unwritable::make(&dir.path().join("state/outputs"));
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // stage status shards ok failed attempts …: one attempt per shard instead of three.
    assert_eq!(&stage_row(&stdout, "a")[1..6], ["FAILED", "2", "0", "2", "2"], "{stdout}");
    let notes: Vec<&str> = stdout.lines().filter(|l| l.contains("failed permanently (not retried)")).collect();
    assert_eq!(notes.len(), 2, "{stdout}");
    assert!(notes.iter().all(|n| n.contains("outputs")), "{notes:#?}");
}

#[test]
fn a_stage_with_no_output_from_its_inputs_fails_with_fail_on_empty_and_skips_what_follows() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 3);
    let nothing = project(dir.path(), "nothing", "true");
    let copy = project(dir.path(), "copy", "cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"");
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: empty\ninput: file:./raw\nstages:\n  empty:\n    project: {}\n    fail_on_empty: true\n  next:\n    project: {}\n    after: [empty]\n",
            nothing.display(),
            copy.display()
        ),
    );
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--state-dir", "state"],
        &[("NATS_URL", &nats.url)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stage_row(&stdout, "empty")[1], "FAILED", "{stdout}");
    assert_eq!(stage_row(&stdout, "next")[1], "skipped", "{stdout}");
    assert!(stdout.contains("stage empty FAILED: 0 outputs from 3 input objects (fail_on_empty: true)"), "{stdout}");
}

#[test]
fn an_empty_success_is_reported_and_a_chatty_log_is_capped() {
    let mlflow = mlflow_server::shared();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path(), 2);
    let experiment = unique("bad-day");
    let chatty = project(dir.path(), "chatty", "echo FIRST; seq 1 200000; echo LAST >&2");
    let dag = write_dag(
        dir.path(),
        &format!(
            "name: chatty\nexperiment: {experiment}\ninput: file:./raw\nstages:\n  chatty:\n    project: {}\n    partition: none\n    log_limit: 8KiB\n",
            chatty.display()
        ),
    );
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--state-dir", "state"],
        &[("NATS_URL", &nats.url), ("MLFLOW_TRACKING_URI", &mlflow.uri)],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("warning: stage chatty succeeded with 0 outputs from 2 input objects"), "{stdout}");

    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).expect("the experiment");
    let runs = rest.runs(&experiment_id);
    let stage = runs.iter().find(|r| run_name(r) == "chatty").expect("the stage run");
    assert_eq!(tag(stage, "concurrent.warning"), Some("0 outputs from 2 input objects"));
    let shard = runs.iter().find(|r| run_name(r) == "chatty-0").expect("the shard run");
    let log = String::from_utf8(rest.artifact(shard, "logs/entry_point.log")).unwrap();
    assert!(log.starts_with("FIRST\n1\n2\n3\n"), "{}", &log[..log.len().min(200)]);
    assert!(log.ends_with("200000\nLAST\n"), "{}", &log[log.len().saturating_sub(200)..]);
    let total = "FIRST\n".len() + (1..=200_000u32).map(|i| i.to_string().len() + 1).sum::<usize>() + "LAST\n".len();
    let line = format!("[concurrent-worker: {} bytes of output dropped here;", total - 8192);
    assert!(log.contains(&line), "{line} not in the log");
    assert!(log.len() < 8192 + 200, "the log is {} bytes", log.len());
}
