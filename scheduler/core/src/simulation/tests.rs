//! The simulation's figures, checked as a user of them would: nothing lost, bursting and
//! replacement as fast as the core promises, what returning capacity gets, and Concurrent
//! against the baselines on the reference trace.

use std::time::Duration;

use super::*;

const S: Duration = Duration::from_secs(1);

/// The reference trace, smaller so that it runs quickly in a debug build (about 9 min of
/// simulated time, with the same capacity changes at the same fractions of it).
fn reference() -> Trace {
    Trace::three_clusters(20_000, 7)
}

fn drop_at(trace: &Trace, cluster: &str, index: usize) -> Duration {
    trace.clusters.iter().find(|c| c.name == cluster).expect("cluster").changes()[index].0
}

#[test]
fn capacity_changes_apply_from_their_time_on() {
    let cluster = ClusterTrace::new("a", 10, 8).change(60 * S, 2).change(30 * S, 5).change(60 * S, 0);
    assert_eq!(cluster.changes(), [(Duration::ZERO, 8), (30 * S, 5), (60 * S, 0)]);
    assert_eq!(cluster.capacity_at(29 * S), 8);
    assert_eq!(cluster.capacity_at(30 * S), 5);
    assert_eq!(cluster.capacity_at(3600 * S), 0);
}

#[test]
fn shard_durations_are_seeded_and_spread_around_their_median() {
    let durations = shard_durations(10_000, 15 * S, 0.5, 3);
    assert_eq!(durations, shard_durations(10_000, 15 * S, 0.5, 3));
    assert_ne!(durations, shard_durations(10_000, 15 * S, 0.5, 4));
    let mut sorted = durations.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2].as_secs_f64();
    assert!((14.0..16.0).contains(&median), "median {median} s");
    assert!(sorted[0] >= Duration::from_millis(100) && sorted[sorted.len() - 1] < 200 * S);
}

#[test]
fn every_shard_succeeds_once_under_every_policy() {
    let trace = reference();
    let work: Duration = trace.durations.iter().sum();
    for policy in baselines() {
        let report = simulate(&trace, &policy);
        assert!(report.makespan.is_some(), "{}: the run did not end", policy.name);
        assert_eq!((report.finished, report.lost), (20_000, 0), "{}", policy.name);
        assert_eq!(report.duplicate_results, 0, "{}", policy.name);
        let lost_workers: u32 = report.recoveries.iter().map(|r| r.workers).sum();
        assert!(lost_workers >= 450, "{}: the trace kills workers: {:?}", policy.name, report.recoveries);
        assert!(
            report.run_twice > 0 && report.run_twice <= lost_workers,
            "{}: only shards whose worker was lost run again: {} of {lost_workers}",
            policy.name,
            report.run_twice
        );
        let busy: Duration = report.clusters.iter().map(|c| c.busy).sum();
        assert!(busy >= work, "{}: every shard's work was done: {busy:?} < {work:?}", policy.name);
        for cluster in &report.clusters {
            assert!(cluster.busy <= cluster.available, "{}: {cluster:?}", policy.name);
        }
    }
}

#[test]
fn a_full_cluster_bursts_after_burst_after_and_one_tick_at_most() {
    let trace = reference();
    let report = simulate(&trace, &Policy::concurrent());
    let first = report.bursts.first().expect("a burst");
    assert_eq!((first.from.as_str(), first.to.as_str()), ("onprem", "cloud-b"), "{first:?}");
    assert!(first.pending_from >= drop_at(&trace, "onprem", 1), "{first:?}");
    for burst in &report.bursts {
        assert!(burst.after >= trace.burst_after && burst.after <= trace.burst_after + DRIVER_TICK, "{burst:?}");
    }
    let polled = simulate(&trace, &Policy::polling(30 * S));
    for burst in &polled.bursts {
        assert!(burst.after <= trace.burst_after + 30 * S, "{burst:?}");
    }
}

#[test]
fn lost_workers_are_replaced_at_once_where_there_is_room_and_after_burst_after_where_it_is_hidden() {
    let trace = reference();
    let report = simulate(&trace, &Policy::concurrent());
    let after = |cluster: &str| {
        let recovery = report.recoveries.iter().find(|r| r.cluster == cluster).expect("a recovery");
        recovery.after.expect("recovered")
    };
    // onprem's nodes lose room that placement cannot see: the replacements wait out burst_after
    // there, then go to the next cluster with room.
    assert!(after("onprem") <= trace.burst_after + 2 * DRIVER_TICK, "{:?}", report.recoveries);
    // cloud-b loses workers while cloud-a has room again: replaced by the next decision.
    assert!(after("cloud-b") <= 2 * DRIVER_TICK, "{:?}", report.recoveries);
    let polled = simulate(&trace, &Policy::polling(30 * S));
    for (ours, theirs) in report.recoveries.iter().zip(&polled.recoveries) {
        assert!(ours.after <= theirs.after, "{ours:?} vs {theirs:?}");
    }
}

#[test]
fn returning_capacity_is_taken_within_burst_after_while_the_stage_wants_more_workers() {
    // The stage wants more workers than both clusters' nodes hold, and `b`'s `max_workers`
    // would take them, so its missing workers wait Pending on `a`, then on `b`, each for
    // `burst_after`, in turn. When `a` gets its nodes back, those Pending there are bound at
    // once; while they wait on `b`, `a` gets them when `b`'s have waited `burst_after`.
    let trace = |back: Duration| Trace {
        clusters: vec![
            ClusterTrace::new("a", 20, 20).change(60 * S, 0).change(back, 20),
            ClusterTrace::new("b", 40, 10),
        ],
        parallelism: 30,
        durations: shard_durations(2_000, 10 * S, 0.3, 11),
        pod_startup: 2 * S,
        idle_exit: 5 * S,
        burst_after: 30 * S,
    };
    let mut fastest = Duration::MAX;
    for back in (200..262).step_by(2).map(|secs| secs * S) {
        let report = simulate(&trace(back), &Policy::concurrent());
        assert_eq!(report.lost, 0);
        let returned = report.returns.iter().find(|r| r.cluster == "a").expect("a's capacity returns");
        assert_eq!(returned.at, back);
        let after = returned.after.expect("workers go back to a");
        assert!(after <= 30 * S + 2 * DRIVER_TICK, "capacity back at {back:?}: {returned:?}");
        fastest = fastest.min(after);
    }
    assert!(fastest <= DRIVER_TICK, "while workers wait Pending on a, they are bound at once: {fastest:?}");
}

#[test]
fn running_workers_stay_where_they_are_when_a_preferred_cluster_gets_capacity_back() {
    // cloud-a gets its nodes back while the stage has all its workers on onprem and cloud-b:
    // nothing moves back, and the next worker bound on cloud-a is the first one the stage
    // needs afterwards, when cloud-b loses workers.
    let trace = reference();
    let report = simulate(&trace, &Policy::concurrent());
    let back = report.returns.iter().find(|r| r.cluster == "cloud-a").expect("cloud-a's capacity returns");
    assert_eq!(back.at, drop_at(&trace, "cloud-a", 2));
    let cloud_b_drop = drop_at(&trace, "cloud-b", 1);
    let bound_at = back.at + back.after.expect("bound when cloud-b loses workers");
    assert!(bound_at >= cloud_b_drop && bound_at <= cloud_b_drop + 2 * DRIVER_TICK, "{back:?}");
}

#[test]
fn concurrent_finishes_first_against_polling_and_lost_worker_timeouts() {
    // One run's makespan moves by tens of seconds with where the longest shards fall, so the
    // comparison with polling is over five seeds of the flapping trace, where polling leaves
    // returned spot capacity idle until its next poll.
    let mut ours = Duration::ZERO;
    let mut polled = Duration::ZERO;
    for seed in 1..=5 {
        let trace = Trace::spot(10_000, seed);
        ours += simulate(&trace, &Policy::concurrent()).makespan.expect("ended");
        polled += simulate(&trace, &Policy::polling(30 * S)).makespan.expect("ended");
    }
    assert!(ours < polled, "makespans over five seeds: {ours:?} vs polling {polled:?}");
    // A lost shard that waits out a timeout delays the end whenever it is among the last.
    let trace = Trace::spot(10_000, 1);
    let makespan = |policy: &Policy| simulate(&trace, policy).makespan.expect("ended");
    let (concurrent, five, fifteen) = (
        makespan(&Policy::concurrent()),
        makespan(&Policy::lost_timeout(300 * S)),
        makespan(&Policy::lost_timeout(900 * S)),
    );
    assert!(concurrent < five && five < fifteen, "{concurrent:?} vs timeouts {five:?}, {fifteen:?}");
}

#[test]
fn the_same_trace_and_policy_give_the_same_report() {
    let trace = Trace::three_clusters(3_000, 5);
    let policy = Policy::concurrent();
    assert_eq!(simulate(&trace, &policy), simulate(&trace, &policy));
    let table = table(&[simulate(&trace, &policy)]);
    assert!(table.starts_with("| policy | makespan | utilization | onprem | cloud-a | cloud-b |"), "{table}");
    assert!(table.contains("| concurrent |"), "{table}");
}
