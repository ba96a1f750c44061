//! End to end: a project from a real git repository (served over `file://`) at a tag. Its
//! stage run carries the commit and the repository as `mlflow run` tags them, and the run
//! works again with the remote gone (the tag's clone is in the cache).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use concurrent_tests::{NatsServer, mlflow_server};

const DEADLINE: Duration = Duration::from_secs(300);

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_git_project_at_a_tag_records_its_commit_and_runs_again_without_the_remote() {
    let nats = NatsServer::start().unwrap();
    let mlflow = mlflow_server::shared();
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(repo.join("proj")).unwrap();
    std::fs::write(repo.join("proj/MLproject"), "name: g\nentry_points:\n  main:\n    command: echo from-git\n")
        .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "v1"]);
    git(&repo, &["tag", "v1"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());
    let experiment = unique("git");
    let dag = root.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: g\nexperiment: {experiment}\ninput: none\nstages:\n  a:\n    project: {{git: \"{url}#proj@v1\"}}\n"
        ),
    )
    .unwrap();
    let cache = root.path().join("git-cache");
    let env = [
        ("NATS_URL", nats.url.as_str()),
        ("MLFLOW_TRACKING_URI", mlflow.uri.as_str()),
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
    ];
    let run =
        |state: &str| concurrent(&["run", dag.to_str().unwrap(), "--state-dir", state], &env, root.path(), DEADLINE);
    let output = run("state1");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let rest = MlflowRest::new(&mlflow.uri);
    let experiment_id = rest.experiment_id(&experiment).unwrap();
    let runs = rest.runs(&experiment_id);
    let stage_run = runs.iter().find(|r| tag(r, "concurrent.stage") == Some("a") && run_name(r) == "a").unwrap();
    assert_eq!(tag(stage_run, "mlflow.source.git.commit"), Some(commit.as_str()));
    assert_eq!(tag(stage_run, "mlflow.source.git.repoURL"), Some(url.as_str()));
    assert_eq!(tag(stage_run, "mlflow.gitRepoURL"), Some(url.as_str()));

    std::fs::rename(&repo, root.path().join("gone")).unwrap();
    let output = run("state2");
    assert_eq!(output.status.code(), Some(0), "the tag's clone runs without the remote: {}", describe(&output));
}
