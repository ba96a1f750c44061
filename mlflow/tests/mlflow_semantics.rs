//! MLflow's parameter semantics, checked against MLflow itself: the Python package in the
//! workspace's `.venv` (scripts/setup.sh) computes, for the same inputs, what `mlflow run`
//! would: whether a value is a URI (`mlflow.utils.data_utils.is_uri`), the local path of a
//! `path` value (`get_local_path_or_none`), the default of each parameter as `str()` prints it
//! after PyYAML read the MLproject, and the command with undeclared parameters appended
//! (`EntryPoint.compute_command`).

use std::collections::BTreeMap;
use std::process::Command;

use concurrent_mlflow::project::{MlProject, local_path, url_scheme};
use serde_json::Value;

/// Runs `script` with the venv's Python (MLflow installed); its stdout is JSON.
fn mlflow_says(script: &str, input: &Value) -> Value {
    let python = concurrent_tests::workspace_dir().join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", script, &input.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", python.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the script")
}

#[test]
fn uri_and_local_path_rules_are_mlflows() {
    let values = [
        "s3://bucket/x",
        "file:///data/x.csv",
        "file:rel/x",
        "file://host/x",
        "file:///a%20b",
        "runs:/abc/model",
        "mlflow-artifacts:/1/2",
        "./data",
        "/abs/path",
        "C:\\data",
        "s3://bad host/x",
        "data:x",
        "a1+.-:x",
        "1a:x",
        " s3://x",
        "localhost:5000",
        "abc",
        "",
        "x:",
        ":x",
        "ftp://h/p",
    ];
    let script = r#"
import json, sys
from mlflow.utils.data_utils import is_uri
from mlflow.utils.file_utils import get_local_path_or_none
print(json.dumps([[is_uri(v), get_local_path_or_none(v)] for v in json.loads(sys.argv[1])]))
"#;
    let theirs = mlflow_says(script, &serde_json::json!(values));
    for (value, expected) in values.iter().zip(theirs.as_array().unwrap()) {
        assert_eq!(url_scheme(value).is_some(), expected[0].as_bool().unwrap(), "is_uri({value:?})");
        assert_eq!(local_path(value).as_deref(), expected[1].as_str(), "get_local_path_or_none({value:?})");
    }
}

#[test]
fn commands_with_undeclared_parameters_are_mlflows() {
    let mlproject = "entry_points:\n  main:\n    parameters:\n      alpha: {type: float, default: 0.5}\n      \
                     name: string\n    command: python train.py --alpha {alpha} --name {name}\n";
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("name", "a b")],
        vec![("name", "x"), ("zeta", "1"), ("beta", "it's"), ("alpha", "2")],
        vec![("epochs", "3"), ("name", "$(rm -rf /)"), ("lr", "1e-05"), ("with space", "v")],
    ];
    let script = r#"
import json, sys
from mlflow.projects._project_spec import EntryPoint
args = json.loads(sys.argv[1])
ep = EntryPoint("main", args["parameters"], args["command"])
print(json.dumps([ep.compute_command(dict(case), None) for case in args["cases"]]))
"#;
    let project = MlProject::parse(mlproject, "MLproject").unwrap();
    let entry = &project.entry_points["main"];
    let input = serde_json::json!({
        "parameters": {"alpha": {"type": "float", "default": 0.5}, "name": "string"},
        "command": entry.command,
        "cases": cases,
    });
    let theirs = mlflow_says(script, &input);
    for (case, expected) in cases.iter().zip(theirs.as_array().unwrap()) {
        let params: BTreeMap<String, String> = case.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let order: Vec<String> = case.iter().map(|(k, _)| k.to_string()).collect();
        let ours = entry.render_command_in_order(&params, &order).unwrap();
        assert_eq!(ours, expected.as_str().unwrap(), "{case:?}");
    }
}

#[test]
fn script_entry_points_take_their_parameters_as_mlflow_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.py"), "").unwrap();
    let script = r#"
import json, sys
from mlflow.projects._project_spec import load_project
args = json.loads(sys.argv[1])
project = load_project(args["dir"])
ep = project.get_entry_point("train.py")
print(json.dumps(ep.compute_command(dict(args["params"]), None)))
"#;
    let given = [("epochs", "3"), ("data dir", "/tmp/a b")];
    let theirs = mlflow_says(script, &serde_json::json!({"dir": dir.path(), "params": given}));
    let project = MlProject::open(dir.path()).unwrap();
    let entry = project.entry_point(dir.path(), "train.py").unwrap();
    let params: BTreeMap<String, String> = given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let order: Vec<String> = given.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(entry.render_command_in_order(&params, &order).unwrap(), theirs.as_str().unwrap());
}

#[test]
fn defaults_read_as_pyyaml_reads_them_and_print_as_python_str() {
    let defaults = [
        "1.0",
        "1",
        "-3",
        "0.5",
        "1e-05",
        "1.0e-5",
        "1.5E+3",
        "3.",
        ".5",
        "True",
        "true",
        "False",
        "yes",
        "no",
        "on",
        "off",
        "Yes",
        "NO",
        "y",
        "n",
        "~",
        "null",
        "0x1F",
        "0o17",
        "017",
        "1_000",
        "1_0.5",
        "+7",
        ".inf",
        "-.inf",
        ".nan",
        "12:30",
        "1:20:30",
        "2001-12-14",
        "'quoted yes'",
        "\"1.0\"",
        "abc",
        "0",
        "-0",
        "00",
        "0.0",
        "9223372036854775808",
        "1e3",
        "6.02e23",
        "0b101",
        "+.5",
    ];
    let mut mlproject = String::from("entry_points:\n  main:\n    parameters:\n");
    for (i, default) in defaults.iter().enumerate() {
        mlproject.push_str(&format!("      p{i}: {{type: string, default: {default}}}\n"));
    }
    mlproject.push_str("    command: run\n");
    let script = r#"
import json, sys, yaml
doc = yaml.safe_load(json.loads(sys.argv[1]))
params = doc["entry_points"]["main"]["parameters"]
print(json.dumps({k: (None if v.get("default") is None else str(v["default"])) for k, v in params.items()}))
"#;
    let theirs = mlflow_says(script, &Value::String(mlproject.clone()));
    let project = MlProject::parse(&mlproject, "MLproject").unwrap();
    let entry = &project.entry_points["main"];
    let mut wrong = Vec::new();
    for (i, default) in defaults.iter().enumerate() {
        let expected = theirs[format!("p{i}")].as_str().map(str::to_owned);
        let ours = entry.parameters[&format!("p{i}")].default.clone();
        if ours != expected {
            wrong.push(format!("{default}: ours {ours:?}, MLflow's {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "defaults read differently from MLflow:\n{}", wrong.join("\n"));
}
