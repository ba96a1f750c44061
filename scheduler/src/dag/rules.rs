//! Rules over the whole DAG: `after` names existing stages, no self-edges, no cycles, and
//! every root stage has an input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

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
/// (upstream first), starting and ending at the component's smallest name; components in the
/// order of their smallest names. Linear in stages and edges.
fn cycles(stages: &BTreeMap<String, Stage>) -> Vec<Vec<String>> {
    // Nodes are stages in name order; data-flow edges upstream -> stage, added in name order of
    // the downstream stage so that neighbours are visited by name.
    let mut graph: DiGraph<&str, ()> = DiGraph::with_capacity(stages.len(), 0);
    let index: BTreeMap<&str, NodeIndex> = stages.keys().map(|name| (name.as_str(), graph.add_node(name))).collect();
    for stage in stages.values() {
        for up in &stage.after {
            if let (Some(&from), Some(&to)) = (index.get(up.as_str()), index.get(stage.name.as_str()))
                && from != to
            {
                graph.add_edge(from, to, ());
            }
        }
    }
    let mut components: Vec<Vec<NodeIndex>> = tarjan_scc(&graph).into_iter().filter(|c| c.len() > 1).collect();
    for component in &mut components {
        component.sort();
    }
    components.sort();
    components.iter().map(|component| path_back_to(&graph, component)).collect()
}

/// The shortest path `start -> … -> start` inside `component` (sorted, its first node the
/// start), breadth-first with neighbours by name.
fn path_back_to(graph: &DiGraph<&str, ()>, component: &[NodeIndex]) -> Vec<String> {
    let start = component[0];
    let inside = |n: NodeIndex| component.binary_search(&n).is_ok();
    let mut came_from: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(node).filter(|&n| inside(n)).collect();
        next.sort();
        for n in next {
            if n == start {
                let mut path = vec![node];
                while let Some(&before) = came_from.get(path.last().unwrap_or(&start)) {
                    path.push(before);
                }
                path.reverse(); // start, …, node
                path.push(start);
                return path.into_iter().map(|n| graph[n].to_string()).collect();
            }
            if n != start && !came_from.contains_key(&n) {
                came_from.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    // A component of two or more nodes has a cycle through each of them.
    vec![graph[start].to_string(), graph[start].to_string()]
}
