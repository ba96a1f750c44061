//! Whole files: the good examples, JSON, syntax errors, the top-level fields.

use super::*;

#[test]
fn good_yaml_with_two_stages() {
    let dag = load_dag_with(&data_dir().join("good.yaml"), &Overrides::default(), &options())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dag.name, "image-preprocess");
    assert_eq!(dag.experiment, "images");
    assert_eq!(dag.input, InputSource::Uri("file:///data/raw-images".into()));
    assert!(dag.source_text.starts_with("# Two stages"));
    let order: Vec<&str> = dag.order().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["thumbnails", "histograms"]);
    let down: Vec<&str> = dag.downstream("thumbnails").iter().map(|s| s.name.as_str()).collect();
    assert_eq!(down, ["histograms"]);

    let t = &dag.stages["thumbnails"];
    assert_eq!(t.project, ProjectRef::Local("./projects/thumbnail".into()));
    assert!(t.project_dir.is_absolute());
    assert!(t.project_dir.join("MLproject").is_file());
    assert_eq!(t.entry_point, "main");
    assert_eq!(t.parameters["size"], "64");
    assert_eq!(t.include, ["*.jpg", "*.png"]);
    assert_eq!(t.partition, Partition::Object { shard_size: Some(100), shards: None });
    assert_eq!((t.parallelism, t.retries), (10, 3));
    assert_eq!(t.timeout, Some(std::time::Duration::from_secs(600)));
    assert_eq!(t.resources, Resources { cpu: Some("1".into()), memory: Some("2Gi".into()), gpu: 0 });
    assert_eq!(t.clusters, ["onprem-gpu", "eks"]);
    assert_eq!(t.image.as_deref(), Some("registry/x:tag"));

    let h = &dag.stages["histograms"];
    assert_eq!(h.after, ["thumbnails"]);
    assert_eq!((h.parallelism, h.retries, h.timeout), (1, 2, None));
    assert!(matches!(&h.partition, Partition::Key { pattern, shards: Some(4), .. }
        if pattern.as_str() == "^([^/]+)/"));
}

#[test]
fn good_json_and_relative_input() {
    let dag = load_dag_with(&data_dir().join("good.json"), &Overrides::default(), &options())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dag.experiment, "json-dag");
    let want = url::Url::from_file_path(data_dir().join("images")).unwrap().to_string();
    assert_eq!(dag.input, InputSource::Uri(want));
    assert_eq!(dag.stages["histograms"].partition, Partition::None);
    assert_eq!(dag.stages["thumbnails"].partition, Partition::default());
}

#[test]
fn empty_file_and_syntax_errors_have_line_and_column() {
    assert_eq!(errors(""), ["line 1, column 1: the DAG file is empty"]);
    assert_eq!(errors("# only a comment\n"), ["line 1, column 1: the DAG file is empty"]);
    let e = errors("name: x\nstages: [a\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("line 3, column 1: not valid YAML or JSON: "), "{e:?}");
    let e = errors("name: x\nstages: {a: [}\n");
    assert_eq!(
        e,
        ["line 2, column 14: not valid YAML or JSON: did not find expected node content, while \
          parsing a flow node"]
    );
    let e = errors("{\"name\": \"x\"");
    assert!(e[0].ends_with("did not find expected ',' or '}', while parsing a flow mapping"));
    assert_eq!(errors("just text"), ["line 1, column 1: the DAG file must be a map, found \"just text\""]);
    let e = errors("name: x\nname: y\nstages: {}\n");
    assert_eq!(e, ["line 2, column 1: not valid YAML or JSON: duplicate entry with key \"name\""]);
}

#[test]
fn binary_garbage_is_an_error_with_a_place() {
    let e = load_dag_with(&data_dir().join("not-utf8.yaml"), &Overrides::default(), &options()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.to_string().ends_with("not-utf8.yaml: line 2, column 1: the DAG file is not UTF-8 text"));
    let e = errors("\u{0}\u{1}\u{7f}garbage\u{2}");
    assert!(e[0].starts_with("line 1, column 1: not valid YAML or JSON"), "{e:?}");
}

#[test]
fn a_missing_file_names_it() {
    let path = data_dir().join("absent.yaml");
    let e = load_dag(&path, &Overrides::default()).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{}: cannot read the DAG file", path.display())));
}

#[test]
fn top_level_rules() {
    assert_eq!(errors("input: none\nstages:\n  a: {project: projects/thumbnail}\n"), ["name: required"]);
    assert_eq!(
        errors("name: Bad_Name\ninput: none\nstages:\n  a: {project: projects/thumbnail}\n"),
        ["name: must match [a-z0-9-]{1,63}, found \"Bad_Name\""]
    );
    assert_eq!(
        errors("name: 12\ninput: none\nstages:\n  a: {project: projects/thumbnail}\n"),
        ["name: expected a string, found 12"]
    );
    assert_eq!(errors("name: x\n"), ["stages: required: at least one stage"]);
    assert_eq!(errors("name: x\nstages: {}\n"), ["stages: at least one stage is required"]);
    assert_eq!(errors("name: x\nstages: [a]\n"), ["stages: expected a map, found a list"]);
    assert_eq!(
        errors("name: x\nexperment: y\ninput: none\nstages:\n  a: {project: projects/thumbnail}\n"),
        ["experment: unknown field"]
    );
    assert_eq!(
        errors("name: x\ninput: none\nstages:\n  Bad.Name: {project: projects/thumbnail}\n"),
        ["stages.\"Bad.Name\": stage names must match [a-z0-9][a-z0-9_-]{0,62}"]
    );
    assert_eq!(
        errors("name: x\ninput: none\n\"\": 1\nstages:\n  a: {project: projects/thumbnail}\n"),
        ["\"\": unknown field"]
    );
    assert_eq!(
        errors("name: x\ninput: none\nstages:\n  \"\": {project: projects/thumbnail}\n"),
        ["stages.\"\": stage names must match [a-z0-9][a-z0-9_-]{0,62}"]
    );
    assert_eq!(errors("[{name: x}]"), ["line 1, column 1: the DAG file must be a map, found a list"]);
    let dag = ok("name: x\ninput: none\nstages:\n  a: {project: projects/thumbnail}\n");
    assert_eq!(dag.experiment, "x");
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let e = errors(
        "name: X\ninput: ftp://h/x\nstages:\n  a:\n    project: projects/thumbnail\n    \
         parallelism: 0\n    retries: 101\n    paralelism: 3\n",
    );
    assert_eq!(
        e,
        [
            "name: must match [a-z0-9-]{1,63}, found \"X\"",
            "input: unsupported URI scheme `ftp`; expected one of file, s3, gs, az, http, https, \
             mlflow-artifacts, runs or `none`",
            "stages.a.parallelism: must be at least 1",
            "stages.a.retries: must be at most 100",
            "stages.a.paralelism: unknown field",
        ]
    );
}

proptest::proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC*") {
        let _ = parse_with(&text, &Overrides::default());
    }

    #[test]
    fn parse_never_panics_on_yamlish_text(text in "[a-z:{}\\[\\], \n\"'#&*!|>-]{0,80}") {
        let _ = parse_with(&text, &Overrides::default());
    }
}
