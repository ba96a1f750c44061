//! Parsing MLproject text.

use crate::project::spec::python_float_str;
use crate::project::{MlProject, ParamType, Parameter, ProjectEnv, ProjectError};

fn parse_err(yaml: &str) -> String {
    MlProject::parse(yaml, "MLproject").expect_err("MLproject should be refused").to_string()
}

#[test]
fn parses_both_parameter_forms_and_defaults() {
    let project = MlProject::parse(
        r#"
name: thumbnails
entry_points:
  main:
    parameters:
      alpha: float
      size: {type: int, default: 128}
      label: {default: cat}
      data_path: path
      plain: {}
    command: "python train.py --alpha {alpha} --size {size}"
"#,
        "MLproject",
    )
    .expect("parses");
    assert_eq!(project.name.as_deref(), Some("thumbnails"));
    assert_eq!(project.env, ProjectEnv::Local);
    let main = &project.entry_points["main"];
    assert_eq!(main.name, "main");
    assert_eq!(main.command, "python train.py --alpha {alpha} --size {size}");
    let p = &main.parameters;
    let param = |kind, default: Option<&str>| Parameter { kind, default: default.map(str::to_owned) };
    assert_eq!(p["alpha"], param(ParamType::Float, None));
    assert_eq!(p["size"], param(ParamType::Int, Some("128")));
    assert_eq!(p["label"], param(ParamType::String, Some("cat")));
    assert_eq!(p["data_path"], param(ParamType::Path, None));
    assert_eq!(p["plain"], param(ParamType::String, None));
}

#[test]
fn numeric_and_boolean_defaults_print_like_python_str() {
    let main = super::main_entry(
        r#"
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      one: {type: float, default: 1.0}
      tiny: {type: float, default: 1.0e-5}
      neg: {type: float, default: -2.5}
      n: {type: int, default: 128}
      flag: {type: string, default: true}
      disabled: {default: false}
      quoted: {type: string, default: "0.10"}
    command: "python x.py"
"#,
    );
    let default = |name: &str| main.parameters[name].default.clone();
    assert_eq!(default("lr").as_deref(), Some("0.1"));
    assert_eq!(default("one").as_deref(), Some("1.0"));
    assert_eq!(default("tiny").as_deref(), Some("1e-05"));
    assert_eq!(default("neg").as_deref(), Some("-2.5"));
    assert_eq!(default("n").as_deref(), Some("128"));
    assert_eq!(default("flag").as_deref(), Some("True"));
    assert_eq!(default("disabled").as_deref(), Some("False"));
    assert_eq!(default("quoted").as_deref(), Some("0.10"));
}

#[test]
fn floats_print_like_python_repr() {
    let cases = [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (100.0, "100.0"),
        (2.5, "2.5"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1.5e300, "1.5e+300"),
        (0.1 + 0.2, "0.30000000000000004"),
        (72834427353823.62, "72834427353823.62"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
    ];
    for (value, python) in cases {
        assert_eq!(python_float_str(value), python, "str({value:?})");
    }
}

#[test]
fn environments() {
    let env = |yaml: &str| MlProject::parse(yaml, "MLproject").expect("parses").env;
    assert_eq!(env("python_env: python_env.yaml\nentry_points: {}"), ProjectEnv::PythonEnv("python_env.yaml".into()));
    assert_eq!(env("conda_env: env.yaml"), ProjectEnv::CondaEnv("env.yaml".into()));
    assert_eq!(
        env("docker_env:\n  image: registry/x:1\n  volumes: [a]"),
        ProjectEnv::Docker { image: "registry/x:1".into() }
    );
    assert_eq!(env("name: x"), ProjectEnv::Local);
}

#[test]
fn refuses_bad_environments() {
    assert_eq!(
        parse_err("docker_env: {volumes: []}"),
        "MLproject: docker_env.image: missing (docker_env needs the image to run in)"
    );
    assert_eq!(
        parse_err("python_env: p.yaml\ndocker_env: {image: x}"),
        "MLproject: python_env, docker_env: declare at most one of python_env, conda_env and docker_env"
    );
    assert_eq!(parse_err("conda_env: [a]"), "MLproject: conda_env: expected a string, found a list");
}

#[test]
fn unknown_type_names_the_place() {
    let err = parse_err("entry_points:\n  main:\n    parameters:\n      size: {type: integer}\n    command: x");
    assert_eq!(
        err,
        "MLproject: entry_points.main.parameters.size.type: unknown type 'integer' \
         (expected string, float, int, path or uri)"
    );
    let err = parse_err("entry_points:\n  main:\n    parameters: {size: Float}\n    command: x");
    assert_eq!(
        err,
        "MLproject: entry_points.main.parameters.size: unknown type 'Float' \
         (expected string, float, int, path or uri)"
    );
}

#[test]
fn entry_point_requires_a_command() {
    assert_eq!(
        parse_err("entry_points:\n  main:\n    parameters: {a: float}"),
        "MLproject: entry_points.main.command: missing (every entry point needs a command)"
    );
    assert_eq!(
        parse_err("entry_points:\n  main: python x.py"),
        "MLproject: entry_points.main: expected a mapping, found a string"
    );
    assert_eq!(
        parse_err("entry_points:\n  main:\n    command: [python]"),
        "MLproject: entry_points.main.command: expected a string, found a list"
    );
}

#[test]
fn default_must_fit_its_type() {
    let err = MlProject::parse(
        "entry_points:\n  main:\n    parameters:\n      n: {type: int, default: 0.5}\n    command: x",
        "MLproject",
    )
    .expect_err("refused");
    assert!(matches!(err, ProjectError::BadDefault { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "MLproject: entry_points.main.parameters.n.default: bad default: \
         parameter 'n': value '0.5' is not a valid int: not an integer"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn refuses_bad_shapes() {
    assert_eq!(parse_err(""), "MLproject: (top level): the file is empty");
    assert_eq!(parse_err("- a\n- b"), "MLproject: (top level): expected a mapping of keys");
    assert_eq!(
        parse_err("entry_points:\n  main:\n    parameters: {a: [1]}\n    command: x"),
        "MLproject: entry_points.main.parameters.a: expected a type name or a mapping \
         {type, default}, found a list"
    );
    let yaml_err = MlProject::parse("entry_points: [\n", "projects/x/MLproject").expect_err("not YAML");
    assert!(matches!(yaml_err, ProjectError::Yaml { .. }));
    assert!(yaml_err.to_string().starts_with("projects/x/MLproject: not valid YAML: "));
}

#[test]
fn unknown_top_level_keys_are_ignored_like_mlflow() {
    let project = MlProject::parse("name: x\nowner: someone\nentry_points: {}", "MLproject").expect("parses");
    assert!(project.entry_points.is_empty());
}
