//! Placement on simulated clusters with a simulated clock.

use proptest::prelude::*;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn cluster(name: &str, max_workers: u32) -> Cluster {
    Cluster { name: name.into(), max_workers, other_workers: 0, free_nodes: None }
}

fn with_nodes(mut cluster: Cluster, nodes: &[Amount]) -> Cluster {
    cluster.free_nodes = Some(nodes.to_vec());
    cluster
}

fn cpus(cores: u64) -> Amount {
    Amount { cpu_millis: cores * 1000, memory_bytes: 64 << 30, gpus: 0 }
}

/// What a worker asking for `cores` CPUs and 1 GiB asks of a node.
fn asking(cores: u64) -> Amount {
    Amount { cpu_millis: cores * 1000, memory_bytes: 1 << 30, gpus: 0 }
}

fn need(stage: &str, wanted: u32) -> StageNeed {
    StageNeed { stage: stage.into(), wanted, request: Amount::default(), clusters: Vec::new(), placed: Vec::new() }
}

fn placed(cluster: &str, running: u32, pending_since: &[Duration]) -> Placed {
    Placed { cluster: cluster.into(), running, pending_since: pending_since.to_vec() }
}

fn counts<'a>(placement: &Placement<'a>) -> Vec<(&'a str, &'a str, u32)> {
    placement.targets.iter().map(|t| (t.stage, t.cluster, t.workers)).collect()
}

#[test]
fn one_cluster_is_shared_fairly_between_stages() {
    let local = [cluster("local", 5)];
    let needs = [need("a", 10), need("b", 10)];
    let placement = place(&local, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "local", 3), ("b", "local", 2)]);
    assert_eq!(placement.unplaced, vec![("a", 7), ("b", 8)]);
    let needs = [need("a", 1), need("b", 10)];
    let placement = place(&local, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "local", 1), ("b", "local", 4)]);
}

#[test]
fn workers_already_running_are_kept_and_counted() {
    let local = [Cluster { other_workers: 3, ..cluster("local", 8) }];
    let mut a = need("a", 4);
    a.placed = vec![placed("local", 1, &[])];
    let needs = [a, need("b", 4)];
    let placement = place(&local, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    // 3 workers of other runs and 1 of `a` leave room for 4 more.
    assert_eq!(counts(&placement), vec![("a", "local", 3), ("b", "local", 2)]);
}

#[test]
fn clusters_fill_in_preference_order_up_to_max_workers() {
    let clusters = [cluster("onprem", 3), cluster("eks", 10)];
    let needs = [need("a", 5)];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 3), ("a", "eks", 2)]);
    assert!(placement.unplaced.is_empty());

    let mut reversed = need("a", 5);
    reversed.clusters = vec!["eks".into(), "onprem".into()];
    let needs = [reversed];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "eks", 5)]);
}

#[test]
fn a_stage_only_goes_where_it_may() {
    let clusters = [cluster("onprem", 2), cluster("eks", 10)];
    let mut a = need("a", 5);
    a.clusters = vec!["onprem".into()];
    let needs = [a];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2)]);
    assert_eq!(placement.unplaced, vec![("a", 3)]);
}

#[test]
fn node_resources_limit_what_a_cluster_takes() {
    // Two nodes of 4 free cores fit four 2-core workers; the fifth bursts to the next cluster.
    let clusters = [with_nodes(cluster("onprem", 100), &[cpus(4), cpus(4)]), cluster("eks", 100)];
    let mut a = need("a", 5);
    a.request = asking(2);
    let needs = [a];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 4), ("a", "eks", 1)]);

    // A 3-core worker fits once per node: what is left on each node is not pooled.
    let mut b = need("b", 5);
    b.request = asking(3);
    let needs = [b];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("b", "onprem", 2), ("b", "eks", 3)]);
}

#[test]
fn a_gpu_worker_skips_clusters_without_gpus() {
    let gpu_node = Amount { gpus: 2, ..cpus(16) };
    let clusters = [with_nodes(cluster("cpu-only", 100), &[cpus(64)]), with_nodes(cluster("gpu", 100), &[gpu_node])];
    let mut train = need("train", 3);
    train.request = Amount { gpus: 1, ..asking(1) };
    let needs = [train];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("train", "gpu", 2)]);
    assert_eq!(placement.unplaced, vec![("train", 1)]);
}

#[test]
fn workers_pending_past_burst_after_send_the_rest_to_the_next_cluster() {
    let clusters = [cluster("onprem", 10), cluster("eks", 10)];
    let mut a = need("a", 6);
    a.placed = vec![placed("onprem", 2, &[10 * SECOND, 10 * SECOND, 25 * SECOND, 25 * SECOND])];

    // At 39 s nothing has waited 30 s yet: all six stay on the preferred cluster.
    let placement = place(&clusters, std::slice::from_ref(&a), 39 * SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 6)]);

    // At 40 s two have: they are given up and go to eks, and onprem takes no new ones.
    let placement = place(&clusters, std::slice::from_ref(&a), 40 * SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 4), ("a", "eks", 2)]);

    // At 55 s the others have too: only the running two stay.
    let needs = [a];
    let placement = place(&clusters, &needs, 55 * SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2), ("a", "eks", 4)]);
}

#[test]
fn workers_pending_past_burst_after_wait_where_they_are_when_no_cluster_has_room() {
    let clusters = [cluster("onprem", 10), cluster("eks", 2)];
    let mut a = need("a", 6);
    a.placed = vec![placed("onprem", 0, &[Duration::ZERO; 4]), placed("eks", 2, &[])];
    // eks is at max_workers: onprem's stale Pending workers are not removed to be asked for
    // again (on onprem, closed, or nowhere); they keep their place in its queue.
    let placement = place(&clusters, std::slice::from_ref(&a), 60 * SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 4), ("a", "eks", 2)]);
    assert!(placement.unplaced.is_empty());
    // Room on eks: two of them go there, the other two keep waiting on onprem.
    let roomier = [cluster("onprem", 10), cluster("eks", 4)];
    let placement = place(&roomier, std::slice::from_ref(&a), 60 * SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2), ("a", "eks", 4)]);
}

#[test]
fn a_shrinking_stage_gives_up_its_least_preferred_workers_first() {
    let clusters = [cluster("onprem", 10), cluster("eks", 10)];
    let mut a = need("a", 3);
    a.placed = vec![placed("onprem", 2, &[]), placed("eks", 3, &[])];
    let needs = [a];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2), ("a", "eks", 1)]);

    let mut done = need("a", 0);
    done.placed = vec![placed("onprem", 2, &[])];
    let needs = [done];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 0)]);
}

#[test]
fn workers_on_a_cluster_the_stage_no_longer_lists_go_to_zero() {
    let clusters = [cluster("onprem", 10), cluster("eks", 10)];
    let mut a = need("a", 2);
    a.clusters = vec!["onprem".into()];
    a.placed = vec![placed("eks", 2, &[])];
    let needs = [a];
    let placement = place(&clusters, &needs, Duration::ZERO, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2), ("a", "eks", 0)]);
}

#[test]
fn kept_pending_workers_use_up_node_resources() {
    let clusters = [with_nodes(cluster("onprem", 100), &[cpus(4)]), cluster("eks", 100)];
    let mut a = need("a", 3);
    a.request = asking(2);
    a.placed = vec![placed("onprem", 0, &[Duration::ZERO])];
    let needs = [a];
    let placement = place(&clusters, &needs, SECOND, DEFAULT_BURST_AFTER);
    assert_eq!(counts(&placement), vec![("a", "onprem", 2), ("a", "eks", 1)]);
}

fn arbitrary_cluster() -> impl Strategy<Value = Cluster> {
    let node = (0u64..8, 0u32..3).prop_map(|(cores, gpus)| Amount { gpus, ..cpus(cores) });
    (0u32..20, 0u32..5, prop::option::of(prop::collection::vec(node, 0..4))).prop_map(
        |(max_workers, other_workers, free_nodes)| Cluster {
            name: String::new(),
            max_workers,
            other_workers,
            free_nodes,
        },
    )
}

fn arbitrary_need() -> impl Strategy<Value = StageNeed> {
    let request = (0u64..4, 0u32..2).prop_map(|(cores, gpus)| Amount { gpus, ..asking(cores) });
    let placed = (0usize..4, 0u32..4, prop::collection::vec(0u64..60, 0..3));
    (0u32..30, request, prop::collection::vec(0usize..4, 0..4), prop::collection::vec(placed, 0..3)).prop_map(
        |(wanted, request, clusters, placed)| StageNeed {
            stage: String::new(),
            wanted,
            request,
            clusters: clusters.into_iter().map(|c| format!("c{c}")).collect(),
            placed: placed
                .into_iter()
                .map(|(c, running, pending)| Placed {
                    cluster: format!("c{c}"),
                    running,
                    pending_since: pending.into_iter().map(Duration::from_secs).collect(),
                })
                .collect(),
        },
    )
}

proptest! {
    #[test]
    fn placement_never_exceeds_what_a_stage_wants_or_a_cluster_holds(
        mut clusters in prop::collection::vec(arbitrary_cluster(), 1..4),
        mut needs in prop::collection::vec(arbitrary_need(), 1..6),
        now in 0u64..120,
    ) {
        for (i, cluster) in clusters.iter_mut().enumerate() {
            cluster.name = format!("c{i}");
        }
        for (i, need) in needs.iter_mut().enumerate() {
            need.stage = format!("s{i}");
            need.placed.sort_by(|a, b| a.cluster.cmp(&b.cluster));
            need.placed.dedup_by(|a, b| a.cluster == b.cluster);
        }
        let placement = place(&clusters, &needs, Duration::from_secs(now), DEFAULT_BURST_AFTER);
        for need in &needs {
            let total: u32 = placement.targets.iter().filter(|t| t.stage == need.stage).map(|t| t.workers).sum();
            let unplaced = placement.unplaced.iter().find(|(stage, _)| *stage == need.stage).map_or(0, |(_, n)| *n);
            prop_assert_eq!(total + unplaced, need.wanted, "every wanted worker is placed or reported");
        }
        for cluster in &clusters {
            let now_there = |need: &StageNeed| {
                need.placed.iter().find(|p| p.cluster == cluster.name).map_or(0, |p| p.running + p.pending_since.len() as u32)
            };
            let grew = needs.iter().any(|need| placement.workers(&need.stage, &cluster.name) > now_there(need));
            let total: u32 = needs.iter().map(|need| placement.workers(&need.stage, &cluster.name)).sum();
            let room = cluster.max_workers.saturating_sub(cluster.other_workers);
            prop_assert!(!grew || total <= room, "cluster {} was given {total} workers with room for {room}", cluster.name);
        }
    }
}
