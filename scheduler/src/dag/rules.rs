//! Rules over the whole DAG: `after` names existing stages, no self-edges, no cycles, and
//! every root stage has an input.

use std::collections::{BTreeMap, BTreeSet};

use super::error::Errors;
use super::model::{InputSource, Stage};
use super::quote::{key, named};
use super::value::join;

/// Checks the edges and inputs of `stages`. `names` holds every stage key of the file (also
/// those whose body had errors, so they are not reported again as unknown); `dag_input` is the
/// DAG's input after `--input`, if any.
pub(crate) fn check_graph(
    errors: &mut Errors,
    stages: &BTreeMap<String, Stage>,
    names: &BTreeSet<String>,
    dag_input: Option<&InputSource>,
) {
    for stage in stages.values() {
        let place = join(&join("stages", &stage.name), "after");
        for up in &stage.after {
            if up == &stage.name {
                errors.push(&place, "a stage cannot run after itself");
            } else if !names.contains(up) {
                errors.push(&place, format!("unknown stage {}", named(up)));
            }
        }
        if stage.after.is_empty() && stage.input.is_none() && dag_input.is_none() {
            errors.push(
                join("stages", &stage.name),
                "a root stage needs an input: set `input` on the DAG or on the stage, or pass \
                 --input (`input: none` runs one shard without inputs)",
            );
        }
    }
    for cycle in cycles(stages) {
        let names: Vec<String> = cycle.iter().map(|name| key(name)).collect();
        errors.push(join(&join("stages", &cycle[0]), "after"), format!("cycle: {}", names.join(" -> ")));
    }
}

/// One cycle per strongly connected component of two or more stages, in data-flow order
/// (upstream first), starting and ending at the component's smallest name.
fn cycles(stages: &BTreeMap<String, Stage>) -> Vec<Vec<String>> {
    // Data-flow edges: upstream -> stage.
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for stage in stages.values() {
        for up in &stage.after {
            if up != &stage.name && stages.contains_key(up) {
                next.entry(up.as_str()).or_default().push(stage.name.as_str());
            }
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for start in stages.keys().map(String::as_str) {
        if done.contains(start) {
            continue;
        }
        if let Some(path) = path_back_to(start, &next) {
            done.extend(path.iter().copied());
            found.push(path.iter().map(|s| s.to_string()).collect());
        }
    }
    found
}

/// The shortest path `start -> … -> start`, if any (breadth-first, neighbours by name).
fn path_back_to<'a>(start: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &n in next.get(node).into_iter().flatten() {
            if n == start {
                let mut path = vec![start];
                let mut at = node;
                while at != start {
                    path.push(at);
                    at = came_from.get(at).copied().unwrap_or(start);
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return Some(path);
            }
            if !came_from.contains_key(n) {
                came_from.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    None
}
