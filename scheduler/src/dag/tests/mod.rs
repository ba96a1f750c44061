//! Tests of DAG parsing and validation, against tiny MLprojects in `tests/data/dag/`.

mod files;
mod graph;
mod projects;
mod stage_fields;

use std::path::PathBuf;

use super::*;

/// `scheduler/tests/data/dag`.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/dag")
}

fn options() -> LoadOptions {
    LoadOptions { git_cache: std::env::temp_dir().join("concurrent-dag-tests-git"), ..LoadOptions::default() }
}

/// Parses `text` as a DAG file living in the test data directory.
fn parse_with(text: &str, overrides: &Overrides) -> Result<Dag, SpecErrors> {
    parse_dag_with(text, &data_dir(), overrides, &options())
}

fn ok(text: &str) -> Dag {
    match parse_with(text, &Overrides::default()) {
        Ok(dag) => dag,
        Err(e) => panic!("expected a valid DAG, got:\n{e}"),
    }
}

/// The errors of `text`, as `place: message` lines.
fn errors(text: &str) -> Vec<String> {
    errors_with(text, &Overrides::default())
}

fn errors_with(text: &str, overrides: &Overrides) -> Vec<String> {
    match parse_with(text, overrides) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.lines(),
    }
}

/// A valid one-stage DAG with `extra` appended to stage `a`'s fields.
fn one_stage(extra: &str) -> String {
    format!("name: t\ninput: none\nstages:\n  a:\n    project: projects/thumbnail\n{extra}")
}
