//! The parsers of user input never panic: the DAG parser and `MlProject::parse` on arbitrary
//! text and on structured-but-random YAML (maps of known keys holding values of random types),
//! and `parse_override` and `parse_duration` on arbitrary strings. Errors always name a place.

use std::collections::BTreeMap;
use std::path::Path;

use concurrent_mlflow::project::MlProject;
use concurrent_scheduler::dag::{LoadOptions, Overrides, parse_dag_with, parse_duration, parse_override};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_yaml::{Mapping, Value};

/// Cases per property: enough to find shallow bugs, a few seconds in a debug build.
const CASES: u32 = 384;

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() })
}

/// A valid project at `./project` and a file at `./file.txt`, so random DAGs also reach the
/// MLproject checks.
fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("project")).unwrap();
    std::fs::write(
        dir.path().join("project/MLproject"),
        "entry_points:\n  main:\n    parameters:\n      input_dir: path\n      size: {type: int, default: 64}\n      \
         ratio: {type: float, default: 0.5}\n      src: {type: uri, default: \"s3://b/x\"}\n    \
         command: \"echo {input_dir} {size} {ratio} {src}\"\n  train:\n    parameters:\n      width: int\n    \
         command: \"echo {width}\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("file.txt"), "x").unwrap();
    dir
}

/// Strings that mean something somewhere in a DAG or an MLproject, plus random ones. None
/// contains `git`, so no random project is ever cloned.
fn text() -> BoxedStrategy<String> {
    let known = prop::sample::select(vec![
        "",
        " ",
        "none",
        "main",
        "train",
        "a",
        "b",
        "Bad",
        "./project",
        "project",
        "./nope",
        "file.txt",
        "/",
        "..",
        "10m",
        "0s",
        "1h30m",
        "500ms",
        "30s10m",
        "99999999999999999999999h",
        "object",
        "directory",
        "key",
        "key ",
        "^([a-z]+)/",
        "^[a-z]+/",
        "(a)(b)",
        "([a-z",
        "(?P<x>a)",
        "*.jpg",
        "[a-",
        "**",
        "/",
        "{a,b}",
        "s3://",
        "s3://b/x",
        "file:///x",
        "file://host/x",
        "file:x",
        "runs:/",
        "runs:/r/p",
        "mlflow-artifacts:/x",
        "http://[::1",
        "ftp://h/x",
        "gs:///x",
        "az://c/x",
        "1",
        "500m",
        "2Gi",
        "2GB",
        "-1",
        "1e3",
        "int",
        "float",
        "string",
        "path",
        "uri",
        "integer",
        "echo {size}",
        "echo {nope}",
        "{",
        "}",
        "{size!r}",
        "{size:>{w}}",
        "{0}",
        "{a.b}",
        "{a[0]}",
        "{size:=^99999999}",
        "{size:.5}",
        "python_env.yaml",
        "conda.yaml",
        "\u{0}",
        "é",
        "a\nb",
        "x.py",
        "run.sh",
        "../x.py",
    ]);
    prop_oneof![
        3 => known.prop_map(str::to_string),
        1 => "[a-z0-9./:{}()\\[\\]*^$?!@#_ -]{0,16}",
        1 => "\\PC{0,12}",
    ]
    .prop_filter("never a git project", |s: &String| !s.contains("git"))
    .boxed()
}

/// A YAML value of a random type: scalars of every kind, lists and maps, a few levels deep.
fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        prop::sample::select(vec![0i64, 1, 2, -1, 100, 101, 4_294_967_295, 4_294_967_296])
            .prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|entries| Value::Mapping(entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect())),
        ]
    })
    .boxed()
}

/// A map whose keys are drawn from `keys` (and now and then a random one), each holding the
/// value its strategy in `keys` gives, or a value of a random type.
fn fields(keys: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = keys
        .into_iter()
        .map(|(key, typed)| {
            prop_oneof![
                2 => Just(None),
                3 => typed.prop_map(move |v| Some((key.to_string(), v))),
                1 => value().prop_map(move |v| Some((key.to_string(), v))),
            ]
            .boxed()
        })
        .collect();
    let extra = prop::option::weighted(0.1, (text(), value()));
    (entries, extra)
        .prop_map(|(entries, extra)| {
            let mut map = Mapping::new();
            for (key, value) in entries.into_iter().flatten().chain(extra) {
                map.insert(Value::String(key), value);
            }
            Value::Mapping(map)
        })
        .boxed()
}

fn string_of(choices: &[&'static str]) -> BoxedStrategy<Value> {
    prop::sample::select(choices.to_vec()).prop_map(|s| Value::String(s.to_string())).boxed()
}

fn number_of(choices: &[i64]) -> BoxedStrategy<Value> {
    prop::sample::select(choices.to_vec()).prop_map(|n| Value::Number(n.into())).boxed()
}

const STAGES: &[&str] = &["a", "b", "c", "Bad"];

fn stage() -> BoxedStrategy<Value> {
    let names = prop::collection::vec(string_of(STAGES), 0..3).prop_map(Value::Sequence).boxed();
    let parameters = prop::collection::btree_map(
        prop::sample::select(vec!["size", "ratio", "src", "width", "input_dir", "nope"]),
        value(),
        0..3,
    )
    .prop_map(|m| Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k.to_string()), v)).collect()))
    .boxed();
    let partition = fields(vec![
        ("by", string_of(&["object", "directory", "key", "none", "hash"])),
        ("shard_size", number_of(&[0, 1, 10, 4_294_967_296])),
        ("shards", number_of(&[0, 1, 4])),
        ("pattern", string_of(&["^([a-z]+)/", "^[a-z]+/", "(a)(b)", "([a-z", ""])),
    ]);
    let resources = fields(vec![
        ("cpu", string_of(&["1", "500m", "lots", "-1"])),
        ("memory", string_of(&["2Gi", "2GB", ""])),
        ("gpu", number_of(&[0, 1, -1])),
    ]);
    fields(vec![
        ("project", string_of(&["./project", "project", "./nope", "./file.txt", "", "git:ftp://h/r.git"])),
        ("entry_point", string_of(&["main", "train", "nope", "", "x.py"])),
        ("parameters", parameters),
        (
            "include",
            prop::collection::vec(string_of(&["*.jpg", "[a-", "/", "a/**/b", ""]), 0..3)
                .prop_map(Value::Sequence)
                .boxed(),
        ),
        ("partition", partition),
        ("parallelism", number_of(&[0, 1, 4, -1, 4_294_967_296])),
        ("retries", number_of(&[0, 2, 100, 101])),
        ("timeout", string_of(&["10m", "0s", "ten", "30s10m", "99999999999999999999999h"])),
        ("resources", resources),
        ("clusters", names.clone()),
        ("image", string_of(&["registry/x:tag", " "])),
        ("after", names),
        ("input", string_of(&["none", "s3://b/x", "ftp://h/x", "./data", "runs:/"])),
    ])
}

fn dag_value() -> BoxedStrategy<Value> {
    let stages = prop::collection::btree_map(prop::sample::select(STAGES.to_vec()), stage(), 0..4)
        .prop_map(|m| Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k.to_string()), v)).collect()))
        .boxed();
    fields(vec![
        ("name", string_of(&["fuzz", "Bad_Name", ""])),
        ("experiment", string_of(&["exp", ""])),
        ("input", string_of(&["none", "s3://b/x", "file:///nowhere", "ftp://h/x", "s3://", "./data"])),
        ("stages", stages),
    ])
}

fn overrides() -> BoxedStrategy<Overrides> {
    let input = prop::option::weighted(0.2, text());
    let param = (string_of(STAGES), string_of(&["size", "ratio", "nope", "width"]), text()).prop_map(|(s, p, v)| {
        (s.as_str().unwrap_or_default().to_string(), p.as_str().unwrap_or_default().to_string(), v)
    });
    (input, prop::collection::vec(param, 0..3))
        .prop_map(|(input, parameters)| Overrides { input, parameters, env_manager: None })
        .boxed()
}

/// Parses DAG text with every error required to name a place and say something.
fn check_dag(text: &str, base: &Path, overrides: &Overrides, options: &LoadOptions) -> Result<(), TestCaseError> {
    if let Err(errors) = parse_dag_with(text, base, overrides, options) {
        prop_assert!(!errors.0.is_empty(), "an error without any message");
        for e in &errors.0 {
            prop_assert!(!e.place.trim().is_empty(), "an error without a place: {e:?}\nfor:\n{text}");
            prop_assert!(!e.message.trim().is_empty(), "an error without a message: {e:?}\nfor:\n{text}");
        }
    }
    Ok(())
}

fn options(dir: &Path) -> LoadOptions {
    LoadOptions { git_cache: dir.join("git-cache"), ..LoadOptions::default() }
}

#[test]
fn dag_parser_never_panics_on_arbitrary_text() {
    let dir = project_dir();
    let opts = options(dir.path());
    runner().run(&"\\PC{0,200}", |text| check_dag(&text, dir.path(), &Overrides::default(), &opts)).unwrap();
}

#[test]
fn dag_parser_never_panics_on_yaml_like_text() {
    let dir = project_dir();
    let opts = options(dir.path());
    runner()
        .run(&"[a-z0-9:{}\\[\\], \n\t\"'#&*!|>%@`.-]{0,120}", |text| {
            check_dag(&text, dir.path(), &Overrides::default(), &opts)
        })
        .unwrap();
}

#[test]
fn dag_parser_never_panics_on_random_dags() {
    let dir = project_dir();
    let opts = options(dir.path());
    runner()
        .run(&(dag_value(), overrides(), any::<bool>()), |(dag, overrides, as_json)| {
            let text = if as_json {
                match serde_json::to_string_pretty(&dag) {
                    Ok(text) => text,
                    Err(_) => serde_yaml::to_string(&dag).unwrap(),
                }
            } else {
                serde_yaml::to_string(&dag).unwrap()
            };
            check_dag(&text, dir.path(), &overrides, &opts)
        })
        .unwrap();
    assert!(!dir.path().join("git-cache").exists(), "a random DAG reached a git clone");
}

/// Parses MLproject text; on success also picks entry points and renders their commands
/// with random parameters, which must not panic either.
fn check_mlproject(text: &str, dir: &Path, params: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    let Ok(project) = MlProject::parse(text, "MLproject") else { return Ok(()) };
    for name in project.entry_points.keys().cloned().chain(["x.py".to_string(), "nope".to_string()]) {
        if let Ok(entry) = project.entry_point(dir, &name) {
            let filled = entry.filled_parameters();
            let _ = entry.check_parameters(params, &filled);
            let _ = entry.render_command(params);
        }
    }
    Ok(())
}

fn mlproject_value() -> BoxedStrategy<Value> {
    let param = prop_oneof![
        string_of(&["int", "float", "string", "path", "uri", "integer", ""]),
        fields(vec![("type", string_of(&["int", "float", "string", "path", "uri", "Int"])), ("default", value()),]),
        value(),
    ];
    let parameters = prop::collection::btree_map(
        prop::sample::select(vec!["size", "ratio", "src", "input_dir", "w", "0"]),
        param,
        0..4,
    )
    .prop_map(|m| Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k.to_string()), v)).collect()))
    .boxed();
    let command = prop_oneof![
        string_of(&[
            "echo {size}",
            "echo {nope}",
            "{",
            "}",
            "{{x}}",
            "{size!r}",
            "{size!s:>10}",
            "{size:{w}}",
            "{0}",
            "{}",
            "{a.b}",
            "{a[0]}",
            "{size:=^99999999999}",
            "{size:.5}",
            "{size:+}",
            "{size:,}",
            "{size:d}",
            "{size!",
            "{size:",
        ]),
        "[a-z{}!:<>^=.,+0-9 \\[\\]]{0,24}".prop_map(Value::String),
        value(),
    ];
    let entry = fields(vec![("command", command.boxed()), ("parameters", parameters)]);
    let entry_points = prop::collection::btree_map(prop::sample::select(vec!["main", "train", "x.py"]), entry, 0..3)
        .prop_map(|m| Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k.to_string()), v)).collect()))
        .boxed();
    fields(vec![
        ("name", value()),
        ("python_env", string_of(&["python_env.yaml", ""])),
        ("conda_env", string_of(&["conda.yaml"])),
        ("docker_env", fields(vec![("image", string_of(&["python:3.11", ""]))])),
        ("entry_points", entry_points),
    ])
}

fn given_parameters() -> BoxedStrategy<BTreeMap<String, String>> {
    prop::collection::btree_map(prop::sample::select(vec!["size", "ratio", "src", "w", "nope"]), text(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        .boxed()
}

#[test]
fn mlproject_parser_never_panics_on_arbitrary_text() {
    let dir = project_dir();
    runner()
        .run(&("\\PC{0,200}", given_parameters()), |(text, params)| check_mlproject(&text, dir.path(), &params))
        .unwrap();
}

#[test]
fn mlproject_parser_never_panics_on_random_mlprojects() {
    let dir = project_dir();
    runner()
        .run(&(mlproject_value(), given_parameters()), |(project, params)| {
            let text = serde_yaml::to_string(&project).unwrap();
            check_mlproject(&text, dir.path(), &params)
        })
        .unwrap();
}

proptest! {
    #![proptest_config(Config { cases: CASES * 4, failure_persistence: None, ..Config::default() })]

    #[test]
    fn parse_override_never_panics(text in prop_oneof!["\\PC{0,40}", "[a-z. =]{0,12}"]) {
        match parse_override(&text) {
            Ok((stage, param, value)) => {
                prop_assert!(!stage.is_empty() && !param.is_empty());
                let suffix = format!("={value}");
                prop_assert!(text.contains(&suffix), "{:?} lost its value", text);
            }
            Err(e) => {
                prop_assert!(e.place.starts_with("-P "), "{e:?}");
                prop_assert_eq!(e.message, "expected STAGE.PARAM=VALUE");
            }
        }
    }

    #[test]
    fn parse_duration_never_panics(text in prop_oneof![
        "\\PC{0,24}",
        "( ?[0-9]{0,25}(h|m|s|ms|x|)){0,5} ?",
    ]) {
        match parse_duration(&text) {
            Ok(d) => prop_assert!(!d.is_zero(), "{:?} gave zero", text),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }
}
