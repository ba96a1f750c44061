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
fn one_cycle_is_named_per_group_of_stages_that_reach_each_other() {
    // a, b, c and d reach each other through two cycles (a -> b -> a, a -> c -> d -> a);
    // x -> y -> x is a group of its own; r is on no cycle.
    let text = dag_text(
        "input: none\n",
        &[("r", ""), ("a", "b, d, r"), ("b", "a"), ("c", "a"), ("d", "c"), ("x", "y"), ("y", "x")],
    );
    assert_eq!(errors(&text), ["stages.a.after: cycle: a -> b -> a", "stages.x.after: cycle: x -> y -> x"]);
}

#[test]
fn a_long_chain_is_ordered_and_a_long_cycle_named() {
    let n = 2_000;
    let chain: Vec<(String, String)> =
        (0..n).map(|i| (format!("s{i:04}"), if i == 0 { String::new() } else { format!("s{:04}", i - 1) })).collect();
    let stages: Vec<(&str, &str)> = chain.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let dag = ok(&dag_text("input: none\n", &stages));
    let order = names(dag.order());
    assert_eq!(order.len(), n);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "a chain in name order is ordered by name");
    assert_eq!(dag.descendants("s0000").len(), n - 1);

    let mut cyclic = stages.clone();
    cyclic[0].1 = chain[n - 1].0.as_str();
    let found = errors(&dag_text("input: none\n", &cyclic));
    assert_eq!(found.len(), 1, "{found:?}");
    let expected: Vec<&str> = chain.iter().map(|(name, _)| name.as_str()).chain(["s0000"]).collect();
    assert_eq!(found[0], format!("stages.s0000.after: cycle: {}", expected.join(" -> ")));
}

#[test]
fn more_stages_than_the_limit_are_refused_naming_it() {
    let mut text = String::from("name: g\ninput: none\nstages:\n");
    for i in 0..=MAX_STAGES {
        text.push_str(&format!("  s{i}: {{project: projects/thumbnail}}\n"));
    }
    assert_eq!(errors(&text), [format!("stages: {} stages, more than {MAX_STAGES} (the limit)", MAX_STAGES + 1)]);
}

#[test]
fn nesting_beyond_the_limit_is_refused_at_its_place() {
    let deep = 100_000;
    let text = format!("name: g\ninput: none\nstages: {}{}\n", "[".repeat(deep), "]".repeat(deep));
    let column = "stages: ".len() + MAX_NESTING;
    assert_eq!(
        errors(&text),
        [format!(
            "line 3, column {column}: lists and maps nested more than {MAX_NESTING} levels deep (the limit for a YAML \
             file)"
        )]
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
