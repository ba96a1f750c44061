//! Unit tests of the MLproject module: parsing, parameters, rendering, snapshots.

mod entry;
mod params;
mod render;
mod snapshot;
mod spec;

use std::collections::BTreeMap;

use super::{EntryPoint, MlProject};

/// The `main` entry point of an MLproject given as text.
fn main_entry(yaml: &str) -> EntryPoint {
    let project = MlProject::parse(yaml, "MLproject").expect("test MLproject parses");
    project.entry_points["main"].clone()
}

/// A parameter map from pairs.
fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
