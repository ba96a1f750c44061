//! Speculative copies on a simulated clock: which attempt gets a copy and when, what a copy's
//! result decides, and what the workers are told.

use super::tests::stage;
use super::*;

const S: Duration = Duration::from_secs(1);

fn speculating(parallelism: u32) -> StageConfig {
    StageConfig { speculate: Some(DEFAULT_SPECULATION), ..stage("a", &[], parallelism) }
}

fn result(shard: u32, attempt: u32, result: AttemptResult, speculative: bool) -> Event {
    Event::Result { stage: "a".into(), shard, attempt, result, duration: S, redelivered: false, speculative }
}

fn success() -> AttemptResult {
    AttemptResult::Succeeded { outputs: 1 }
}

fn running(shard: u32, attempt: u32, started: Duration) -> Event {
    Event::Running { stage: "a".into(), shard, attempt, started, stream_sequence: 100 + u64::from(shard) }
}

fn copies(effects: &[Effect]) -> Vec<u32> {
    effects.iter().filter_map(|e| if let Effect::Speculate { shard, .. } = e { Some(*shard) } else { None }).collect()
}

/// A stage of 6 shards whose shards 0–3 succeeded in 1 s each; 4 and 5 are undecided.
fn tail_of(config: StageConfig) -> RunCore {
    let mut core = RunCore::new(vec![config], Timing::default());
    core.handle(Event::Begin);
    core.handle(Event::StagePublished { stage: "a".into(), shards: 6, objects: 6 });
    for shard in 0..4 {
        core.handle(result(shard, 1, success(), false));
    }
    core
}

#[test]
fn an_attempt_past_three_medians_is_copied_once_when_every_undecided_shard_runs() {
    let mut core = tail_of(speculating(3));
    core.handle(running(4, 1, S));
    assert!(copies(&core.handle(Event::Tick { now: 10 * S })).is_empty(), "shard 5 may still wait in the queue");
    core.handle(running(5, 1, 9 * S));
    assert!(copies(&core.handle(Event::Tick { now: 3 * S + S / 2 })).is_empty(), "2.5 s is not past 3 × 1 s");
    assert_eq!(core.wanted_workers(), 2);
    let effects = core.handle(Event::Tick { now: 10 * S });
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Speculate { .. })).count(), 1);
    assert!(effects.contains(&Effect::Speculate { stage: "a".into(), shard: 4, stream_sequence: 104 }));
    assert_eq!(core.wanted_workers(), 3, "the copy asks for a worker of its own");
    assert!(copies(&core.handle(Event::Tick { now: 30 * S })).is_empty(), "one copy per shard");

    let decided = core.handle(result(4, 4, success(), true));
    assert!(decided.contains(&Effect::Superseded { stage: "a".into(), shard: 4, attempt: 4 }), "{decided:?}");
    let late = core.handle(result(4, 1, success(), false));
    assert_eq!(late, [Effect::Record { stage: "a".into(), shard: 4, attempt: 1, verdict: Verdict::Duplicate }]);
    assert_eq!(core.wanted_workers(), 1);
}

#[test]
fn no_copy_without_a_free_worker_slot_or_a_median_or_when_the_stage_opts_out() {
    let mut full = tail_of(speculating(2));
    full.handle(running(4, 1, S));
    full.handle(running(5, 1, S));
    assert!(copies(&full.handle(Event::Tick { now: 60 * S })).is_empty(), "both slots run the stage's shards");

    let mut off = tail_of(stage("a", &[], 3));
    off.handle(running(4, 1, S));
    off.handle(running(5, 1, S));
    assert!(copies(&off.handle(Event::Tick { now: 60 * S })).is_empty());

    let mut early = RunCore::new(vec![speculating(3)], Timing::default());
    early.handle(Event::Begin);
    early.handle(Event::StagePublished { stage: "a".into(), shards: 3, objects: 3 });
    early.handle(result(0, 1, success(), false));
    early.handle(result(1, 1, success(), false));
    early.handle(running(2, 1, S));
    assert!(copies(&early.handle(Event::Tick { now: 60 * S })).is_empty(), "two durations are no median");
}

#[test]
fn a_failed_copy_never_decides_its_shard_and_no_other_copy_follows() {
    let mut core = tail_of(speculating(3));
    core.handle(running(4, 1, S));
    core.handle(running(5, 1, S));
    assert_eq!(copies(&core.handle(Event::Tick { now: 10 * S })), [4], "one free slot: the longest-running first");
    let failed = AttemptResult::Failed { last_attempt: true, permanent: true };
    let effects = core.handle(result(4, 4, failed, true));
    assert_eq!(effects, [Effect::Record { stage: "a".into(), shard: 4, attempt: 4, verdict: Verdict::AttemptFailed }]);
    assert_eq!(core.state().shards("a")[4], ShardOutcome::Pending);
    assert!(!copies(&core.handle(Event::Tick { now: 20 * S })).contains(&4));
    let decided = core.handle(result(4, 1, success(), false));
    assert!(!decided.iter().any(|e| matches!(e, Effect::Superseded { .. })), "no copy runs any more: {decided:?}");
}

#[test]
fn the_original_deciding_first_stops_the_copy_and_a_retried_attempt_is_not_copied_early() {
    let mut core = tail_of(speculating(4));
    core.handle(running(4, 1, S));
    core.handle(running(5, 1, 9 * S));
    assert_eq!(copies(&core.handle(Event::Tick { now: 10 * S })), [4]);
    let decided = core.handle(result(4, 1, success(), false));
    assert!(decided.contains(&Effect::Superseded { stage: "a".into(), shard: 4, attempt: 1 }), "{decided:?}");

    // Shard 5's first attempt fails: its retry is not known to run until its own notice.
    core.handle(result(5, 1, AttemptResult::Failed { last_attempt: false, permanent: false }, false));
    assert!(copies(&core.handle(Event::Tick { now: 30 * S })).is_empty());
    core.handle(running(5, 2, 29 * S));
    assert!(copies(&core.handle(Event::Tick { now: 31 * S })).is_empty());
    assert_eq!(copies(&core.handle(Event::Tick { now: 33 * S })), [5]);
}
