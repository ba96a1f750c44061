//! Loading projects from disk and choosing entry points.

use std::collections::BTreeMap;
use std::fs;

use crate::project::{MlProject, ProjectEnv, ProjectError};

const MLPROJECT: &str = r#"
name: demo
entry_points:
  main:
    parameters:
      input_dir: path
      output_dir: path
      size: {type: int, default: 64}
    command: "python main.py {input_dir} {output_dir} {size}"
"#;

fn project_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }
    dir
}

#[test]
fn load_reads_the_mlproject_file() {
    let dir = project_dir(&[("MLproject", MLPROJECT)]);
    let project = MlProject::load(dir.path()).expect("loads");
    assert_eq!(project.name.as_deref(), Some("demo"));
    assert_eq!(project.env, ProjectEnv::Local);
    let main = project.entry_point(dir.path(), "main").expect("main");
    assert_eq!(main.filled_parameters(), vec!["input_dir", "output_dir"]);
}

#[test]
fn load_matches_the_file_name_case_insensitively_like_mlflow() {
    let dir = project_dir(&[("mlproject", MLPROJECT)]);
    assert!(MlProject::load(dir.path()).is_ok());
}

#[test]
fn missing_mlproject_names_the_directory() {
    let dir = project_dir(&[("MLproject.yaml", MLPROJECT)]);
    let err = MlProject::load(dir.path()).expect_err("no MLproject");
    assert!(matches!(err, ProjectError::NotFound { .. }));
    assert_eq!(err.to_string(), format!("{}: no MLproject file in this directory", dir.path().display()));
}

#[test]
fn load_errors_name_the_file() {
    let dir = project_dir(&[("MLproject", "entry_points:\n  main: {}")]);
    let err = MlProject::load(dir.path()).expect_err("no command");
    let file = dir.path().join("MLproject");
    assert_eq!(
        err.to_string(),
        format!("{}: entry_points.main.command: missing (every entry point needs a command)", file.display())
    );
}

#[test]
fn conda_yaml_is_the_default_environment_like_mlflow() {
    let dir = project_dir(&[("MLproject", MLPROJECT), ("conda.yaml", "name: x")]);
    let project = MlProject::load(dir.path()).expect("loads");
    assert_eq!(project.env, ProjectEnv::CondaEnv("conda.yaml".into()));
}

#[test]
fn declared_environment_file_must_exist() {
    let dir = project_dir(&[("MLproject", "python_env: python_env.yaml")]);
    let err = MlProject::load(dir.path()).expect_err("missing env file");
    assert!(err.to_string().ends_with("MLproject: python_env: file 'python_env.yaml' not found in the project"));
}

#[test]
fn missing_entry_point_lists_the_declared_ones() {
    let dir = project_dir(&[("MLproject", MLPROJECT)]);
    let project = MlProject::load(dir.path()).expect("loads");
    let err = project.entry_point(dir.path(), "train").expect_err("no such entry point");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no entry point 'train' (declared: main) and no .py or .sh file of that name \
             in the project",
            dir.path().join("MLproject").display()
        )
    );
}

#[test]
fn synthesizes_python_and_shell_entry_points() {
    let dir = project_dir(&[
        ("MLproject", MLPROJECT),
        ("train.py", "print(1)"),
        ("scripts/my job.sh", "echo hi"),
        ("odd{name}.py", ""),
    ]);
    let project = MlProject::load(dir.path()).expect("loads");
    let none = BTreeMap::new();

    let py = project.entry_point(dir.path(), "train.py").expect("py");
    assert!(py.parameters.is_empty());
    assert_eq!(py.render_command(&none).expect("renders"), "python train.py");

    let sh = project.entry_point(dir.path(), "scripts/my job.sh").expect("sh");
    assert_eq!(sh.render_command(&none).expect("renders"), "bash 'scripts/my job.sh'");

    let odd = project.entry_point(dir.path(), "odd{name}.py").expect("odd");
    assert_eq!(odd.render_command(&none).expect("renders"), "python 'odd{name}.py'");

    let extra = sh.render_command(&super::params(&[("x", "1")])).expect("renders");
    assert_eq!(extra, "bash 'scripts/my job.sh' --x 1", "a script takes its parameters as --key value");
}

#[test]
fn synthesized_entry_points_need_a_project_file() {
    let dir = project_dir(&[("MLproject", MLPROJECT), ("notes.txt", "")]);
    let project = MlProject::load(dir.path()).expect("loads");
    for name in ["missing.py", "notes.txt", "../outside.py", "/etc/x.sh"] {
        let err = project.entry_point(dir.path(), name).expect_err(name);
        assert!(matches!(err, ProjectError::NoEntryPoint { .. }), "{name}: {err:?}");
    }
}
