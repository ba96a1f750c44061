//! Edges, cycles, order and inputs of root stages.

use super::*;

/// A DAG of stages using the thumbnail project, each `(name, after)`.
fn dag_text(input: &str, stages: &[(&str, &str)]) -> String {
    let mut text = format!("name: g\n{input}stages:\n");
    for (name, after) in stages {
        text.push_str(&format!("  {name}:\n    project: projects/thumbnail\n    after: [{after}]\n"));
    }
    text
}

fn names(stages: Vec<&Stage>) -> Vec<&str> {
    stages.into_iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn order_is_topological_with_ties_by_name() {
    let dag = ok(&dag_text("input: none\n", &[("z", ""), ("b", "z"), ("a", "z"), ("c", "a, b"), ("y", "")]));
    assert_eq!(names(dag.order()), ["y", "z", "a", "b", "c"]);
    assert_eq!(names(dag.downstream("z")), ["a", "b"]);
    assert_eq!(names(dag.upstream("c")), ["a", "b"]);
    assert_eq!(names(dag.descendants("z")), ["a", "b", "c"]);
    assert_eq!(names(dag.roots()), ["y", "z"]);
}

#[test]
fn after_must_name_existing_stages() {
    assert_eq!(
        errors(&dag_text("input: none\n", &[("a", ""), ("b", "a, nope")])),
        ["stages.b.after: unknown stage `nope`"]
    );
}

#[test]
fn no_self_edges() {
    assert_eq!(errors(&dag_text("input: none\n", &[("a", "a")])), ["stages.a.after: a stage cannot run after itself",]);
}

#[test]
fn cycles_are_named() {
    assert_eq!(
        errors(&dag_text("input: none\n", &[("r", ""), ("a", "b"), ("b", "a")])),
        ["stages.a.after: cycle: a -> b -> a"]
    );
    // Data flows a -> b -> c -> a.
    assert_eq!(
        errors(&dag_text("input: none\n", &[("r", ""), ("a", "c, r"), ("b", "a"), ("c", "b")])),
        ["stages.a.after: cycle: a -> b -> c -> a"]
    );
}

#[test]
fn root_stages_need_an_input() {
    let msg = "stages.a: a root stage needs an input: set `input` on the DAG or on the stage, or \
               pass --input (`input: none` runs one shard without inputs)";
    assert_eq!(errors(&dag_text("", &[("a", ""), ("b", "a")])), [msg]);
    // The stage's own input, `none`, or --input are enough.
    ok("name: g\nstages:\n  a: {project: projects/thumbnail, input: none}\n");
    ok("name: g\nstages:\n  a: {project: projects/thumbnail, input: \"s3://b/x\"}\n");
    // A DAG input that is present but invalid is one error, not also a missing input.
    assert_eq!(errors(&dag_text("input: [a, b]\n", &[("a", "")])), ["input: expected a string, found a list"]);
    assert_eq!(errors(&dag_text("input: \"\"\n", &[("a", "")])), ["input: must not be empty"]);
    let with_input = Overrides { input: Some("gs://bucket/in".into()), ..Overrides::default() };
    let dag = parse_with(&dag_text("", &[("a", "")]), &with_input).unwrap();
    assert_eq!(dag.input, InputSource::Uri("gs://bucket/in".into()));
}

#[test]
fn input_override_replaces_the_dag_input() {
    let over = Overrides { input: Some("/elsewhere".into()), ..Overrides::default() };
    let dag = parse_with(&dag_text("input: s3://b/x\n", &[("a", "")]), &over).unwrap();
    assert_eq!(dag.input, InputSource::Uri("file:///elsewhere".into()));
    let bad = Overrides { input: Some("ftp://x/y".into()), ..Overrides::default() };
    let e = errors_with(&dag_text("input: none\n", &[("a", "")]), &bad);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("--input: unsupported URI scheme `ftp`"), "{e:?}");
}
