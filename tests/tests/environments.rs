//! End to end: projects that declare their environment. A `python_env` project runs in a uv
//! environment built once per machine (workers racing for it wait for one build), reused by
//! the next run; a broken build fails the attempt with uv's message in the log and leaves
//! nothing in the cache; a Python that is not installed is refused before anything starts.
//! Needs `uv` (scripts/setup.sh installs it in .venv) and PyPI.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use concurrent_tests::{NatsServer, workspace_dir};

const DEADLINE: Duration = Duration::from_secs(600);

/// A small package from PyPI that neither the venv nor the machine's Python has.
const PACKAGE: &str = "tomli_w==1.0.0";

/// The machine's Python version as `major.minor` (the one uv finds without downloading).
fn machine_python() -> String {
    let venv_python = workspace_dir().join(".venv/bin/python");
    let out = std::process::Command::new(venv_python)
        .args(["-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"])
        .output()
        .expect("the test venv's python runs (scripts/setup.sh)");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `python_env` project whose entry point writes, per input, which Python ran it and
/// whether the package imports.
fn python_env_project(dir: &Path, name: &str, python: &str, dependencies: &[&str]) -> PathBuf {
    let project = dir.join(name);
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        format!("name: {name}\npython_env: python_env.yaml\nentry_points:\n  main:\n    command: python probe.py\n"),
    )
    .unwrap();
    let deps: String = dependencies.iter().map(|d| format!("  - {d}\n")).collect();
    std::fs::write(project.join("python_env.yaml"), format!("python: \"{python}\"\ndependencies:\n{deps}")).unwrap();
    std::fs::write(
        project.join("probe.py"),
        r#"import os, sys
try:
    import tomli_w
    has = "tomli_w " + tomli_w.__name__
except ImportError:
    has = "no tomli_w"
out = os.environ["CONCURRENT_OUTPUT_DIR"]
for root, _, files in os.walk(os.environ["CONCURRENT_INPUT_DIR"]):
    for name in files:
        with open(os.path.join(out, name), "w") as f:
            f.write(f"{sys.prefix}\n{has}\n")
"#,
    )
    .unwrap();
    project
}

fn inputs(dir: &Path, count: usize) {
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for i in 0..count {
        std::fs::write(raw.join(format!("f{i}.txt")), format!("{i}\n")).unwrap();
    }
}

/// The built environments in the cache (`uv-<hash>` directories).
fn built_envs(cache: &Path) -> Vec<PathBuf> {
    let mut envs: Vec<PathBuf> = match std::fs::read_dir(cache) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    };
    envs.sort();
    envs
}

/// Every output file of a `--tracking none` run of `stage`: (path, text).
fn stage_outputs(state: &Path, stage: &str) -> Vec<(String, String)> {
    let outputs = state.join("outputs");
    let mut found = Vec::new();
    for run in std::fs::read_dir(&outputs).unwrap().flatten() {
        let dir = run.path().join(stage);
        for file in files_under(&dir) {
            found.push((file.clone(), std::fs::read_to_string(dir.join(&file)).unwrap()));
        }
    }
    found
}

/// The attempt logs a `--tracking none` run kept for `stage`.
fn stage_logs(state: &Path, stage: &str) -> Vec<String> {
    let mut logs = Vec::new();
    for run in std::fs::read_dir(state.join("outputs")).unwrap().flatten() {
        let dir = run.path().join("logs");
        for file in files_under(&dir).into_iter().filter(|f| f.starts_with(&format!("{stage}-"))) {
            logs.push(std::fs::read_to_string(dir.join(file)).unwrap());
        }
    }
    logs
}

#[test]
fn a_python_env_project_runs_in_its_own_environment_built_once_and_reused() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("env-cache");
    inputs(dir.path(), 8);
    let python = machine_python();
    let with = python_env_project(dir.path(), "with", &python, &[PACKAGE]);
    let without = python_env_project(dir.path(), "without", &python, &[]);
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: {}\ninput: file:./raw\nstages:\n  with:\n    project: {}\n    partition: {{by: object, shards: 4}}\n    parallelism: 2\n  without:\n    project: {}\n    partition: none\n",
            unique("pyenv"),
            with.display(),
            without.display()
        ),
    )
    .unwrap();
    let env = [("NATS_URL", nats.url.as_str()), ("CONCURRENT_ENV_CACHE", cache.to_str().unwrap())];
    let run = |state: &str| {
        let output = concurrent(
            &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", state],
            &env,
            dir.path(),
            DEADLINE,
        );
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    };
    run("state1");

    let envs = built_envs(&cache);
    assert_eq!(envs.len(), 2, "one environment per distinct python_env: {envs:?}");
    let state1 = dir.path().join("state1");
    let with_outputs = stage_outputs(&state1, "with");
    assert_eq!(with_outputs.len(), 8, "{with_outputs:?}");
    let prefixes: std::collections::BTreeSet<&str> =
        with_outputs.iter().map(|(_, text)| text.lines().next().unwrap()).collect();
    assert_eq!(prefixes.len(), 1, "every shard ran in the one environment: {prefixes:?}");
    let prefix = Path::new(*prefixes.first().unwrap());
    assert!(envs.iter().any(|e| e == prefix), "{prefix:?} is a cached environment of {envs:?}");
    assert!(with_outputs.iter().all(|(_, text)| text.contains("tomli_w tomli_w")), "{with_outputs:?}");
    let without_outputs = stage_outputs(&state1, "without");
    assert_eq!(without_outputs.len(), 8);
    assert!(without_outputs.iter().all(|(_, text)| text.contains("no tomli_w")), "{without_outputs:?}");
    assert!(without_outputs.iter().all(|(_, text)| !text.starts_with(prefix.to_str().unwrap())));
    // Two workers started together on the stage: one built, the other waited for it.
    // The entry point prints nothing: the only log kept is the build's (an attempt that
    // printed nothing keeps none).
    let logs = stage_logs(&state1, "with");
    let builds = logs.iter().filter(|log| log.contains("concurrent-worker: uv venv")).count();
    assert_eq!((logs.len(), builds), (1, 1), "the environment was built by one attempt: {logs:#?}");

    let ready = |env: &Path| std::fs::metadata(env.join(".concurrent-ready")).unwrap().modified().unwrap();
    let before: Vec<_> = envs.iter().map(|e| ready(e)).collect();
    run("state2");
    assert_eq!(built_envs(&cache), envs, "the second run built nothing new");
    assert_eq!(envs.iter().map(|e| ready(e)).collect::<Vec<_>>(), before, "and rebuilt nothing");
    let state2 = dir.path().join("state2");
    assert!(stage_logs(&state2, "with").iter().all(|log| !log.contains("concurrent-worker: uv venv")));
    assert!(stage_outputs(&state2, "with").iter().all(|(_, text)| text.starts_with(prefix.to_str().unwrap())));
}

#[test]
fn a_broken_build_fails_the_attempt_with_uvs_message_and_caches_nothing() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("env-cache");
    inputs(dir.path(), 1);
    let project =
        python_env_project(dir.path(), "broken", &machine_python(), &["concurrent-no-such-package-on-pypi==0.0.1"]);
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: {}\ninput: file:./raw\nstages:\n  broken:\n    project: {}\n    partition: none\n    retries: 0\n",
            unique("broken-env"),
            project.display()
        ),
    )
    .unwrap();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "1", "--state-dir", "state"],
        &[("NATS_URL", nats.url.as_str()), ("CONCURRENT_ENV_CACHE", cache.to_str().unwrap())],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let logs = stage_logs(&dir.path().join("state"), "broken");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert!(log.contains("concurrent-no-such-package-on-pypi"), "uv's resolver names the package: {log}");
    assert!(log.contains("concurrent-worker: attempt failed: preparing the project's environment"), "{log}");
    assert!(built_envs(&cache).is_empty(), "nothing cached: {:?}", built_envs(&cache));
}

#[test]
fn a_python_that_is_not_installed_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let project = python_env_project(dir.path(), "old", "3.99", &[]);
    let dag = dir.path().join("dag.yaml");
    std::fs::write(&dag, format!("name: old\ninput: none\nstages:\n  train:\n    project: {}\n", project.display()))
        .unwrap();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--state-dir", "state"],
        &[("NATS_URL", "nats://127.0.0.1:9"), ("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stages.train.project: python_env.yaml: Python 3.99 is not installed on this machine ("),
        "{stderr}"
    );
    assert!(stderr.contains("install it (`uv python install 3.99`) or change `python:`"), "{stderr}");
    assert!(!dir.path().join("state").exists(), "nothing created");
}

#[test]
fn env_manager_local_runs_a_python_env_project_with_the_python_on_path() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("env-cache");
    inputs(dir.path(), 1);
    let project = python_env_project(dir.path(), "p", &machine_python(), &[PACKAGE]);
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: {}\ninput: file:./raw\nstages:\n  p:\n    project: {}\n",
            unique("local-env"),
            project.display()
        ),
    )
    .unwrap();
    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--env-manager", "local", "--state-dir", "state"],
        &[("NATS_URL", nats.url.as_str()), ("CONCURRENT_ENV_CACHE", cache.to_str().unwrap())],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let outputs = stage_outputs(&dir.path().join("state"), "p");
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].1.contains("no tomli_w"), "the venv's own python ran it: {outputs:?}");
    assert!(built_envs(&cache).is_empty(), "no environment built");
}
