//! End to end: parameters as `mlflow run` passes them. A script entry point of a project
//! without an MLproject takes the stage's parameters as `--key value` in the order given; a
//! `path` parameter is made absolute against the DAG file's folder, or downloaded first when
//! it is a URI; undeclared parameters follow the command.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;

const DEADLINE: Duration = Duration::from_secs(300);

/// A script that writes its arguments (JSON) and the text of the file each `--*` option
/// naming an existing file holds, to `args.json` in its output dir.
const RECORD_ARGS: &str = r#"import json, os, sys
args = sys.argv[1:]
files = {a: open(a).read() for a in args if os.path.isfile(a)}
with open(os.path.join(os.environ["CONCURRENT_OUTPUT_DIR"], "args.json"), "w") as f:
    json.dump({"args": args, "files": files}, f)
"#;

fn run_dag(dir: &Path, dag: &str, nats: &NatsServer) -> serde_json::Value {
    let path = dir.join("dag.yaml");
    std::fs::write(&path, dag).unwrap();
    let output = concurrent(
        &["run", path.to_str().unwrap(), "--tracking", "none", "--state-dir", "state"],
        &[("NATS_URL", nats.url.as_str())],
        dir,
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let outputs = dir.join("state/outputs");
    let run = std::fs::read_dir(&outputs).unwrap().next().unwrap().unwrap().path();
    let found: Vec<String> = files_under(&run).into_iter().filter(|f| f.ends_with("args.json")).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    serde_json::from_slice(&std::fs::read(run.join(&found[0])).unwrap()).unwrap()
}

#[test]
fn a_script_entry_point_takes_its_parameters_in_the_order_given() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("scripts");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("train.py"), RECORD_ARGS).unwrap();
    let dag = format!(
        "name: {}\ninput: none\nstages:\n  train:\n    project: ./scripts\n    entry_point: train.py\n    \
         parameters: {{epochs: 3, name: \"a b; echo no\", lr: 0.1}}\n",
        unique("script-params")
    );
    let recorded = run_dag(dir.path(), &dag, &nats);
    assert_eq!(recorded["args"], serde_json::json!(["--epochs", "3", "--name", "a b; echo no", "--lr", "0.1"]));
    let validated = concurrent(&["validate", "dag.yaml"], &[], dir.path(), DEADLINE);
    assert_eq!(validated.status.code(), Some(0), "{}", describe(&validated));
    let stdout = String::from_utf8_lossy(&validated.stdout);
    assert!(
        stdout.contains(
            "parameters not declared by entry point train.py, passed after its command: --epochs --name --lr"
        ),
        "validate lists them: {stdout}"
    );
}

/// A `python -m http.server` serving `root` on a free loopback port, killed on drop.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(root: &Path) -> HttpServer {
        let python = concurrent_tests::workspace_dir().join(".venv/bin/python");
        let mut child = Command::new(python)
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line.split(" port ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
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
fn path_parameters_are_absolute_local_paths_or_downloaded_uris() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("model.bin"), "weights").unwrap();
    let http = HttpServer::start(&served);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/train.csv"), "a,b\n").unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("record.py"), RECORD_ARGS).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "name: p\nentry_points:\n  main:\n    parameters:\n      data: path\n      model: path\n      \
         source: uri\n    command: python record.py {data} {model} {source}\n",
    )
    .unwrap();
    let dag = format!(
        "name: {}\ninput: none\nstages:\n  p:\n    project: ./project\n    parameters:\n      data: data/train.csv\n      \
         extra: 1\n      model: {}/model.bin\n      source: s3://bucket/key\n",
        unique("path-params"),
        http.url
    );
    let recorded = run_dag(dir.path(), &dag, &nats);
    let args: Vec<String> = serde_json::from_value(recorded["args"].clone()).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join("data/train.csv").display().to_string();
    assert_eq!(args[0], data, "made absolute against the DAG file's folder");
    assert!(args[1].ends_with("/params/param_1/model.bin"), "downloaded: {args:?}");
    assert_eq!(args[2..], ["s3://bucket/key", "--extra", "1"]);
    assert_eq!(recorded["files"][&data], "a,b\n");
    assert_eq!(recorded["files"][&args[1]], "weights");
}
