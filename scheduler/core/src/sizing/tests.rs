//! The cutter on a simulated clock: exactly-once cover across waves and resumes, probes first,
//! shards shrinking toward the end, the fixed cost kept small once learned, every worker fed.

use std::time::Duration;

use proptest::prelude::*;

use super::simulate::{SimulatedStage, Sizing, simulate};
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cost(objects: u64, fixed_ms: u64, per_object_ms: u64) -> ShardCost {
    ShardCost { objects, duration: ms(fixed_ms + objects * per_object_ms) }
}

/// Asserts that `cuts` cover `0..objects` once, in order, with no empty shard.
fn assert_covers(cuts: &[u32], objects: u64) {
    assert!(!cuts.contains(&0), "an empty shard in {cuts:?}");
    let mut next = 0;
    for span in spans(cuts) {
        assert_eq!(span.start, next, "shards follow each other");
        next = span.end;
    }
    assert_eq!(next, objects, "every object is in a shard");
}

#[test]
fn the_first_wave_is_one_probe_per_worker_and_the_next_waits_for_what_they_tell() {
    let mut cutter = Cutter::new(100_000, 3);
    assert_eq!(cutter.wave(&[]), [1, 4, 1], "small probes of two sizes, one per worker");
    assert!(cutter.wave(&[4, 1]).is_empty(), "one size learned: the other probes are awaited");
    cutter.observe(cost(1, 500, 10));
    assert!(cutter.model().is_none());
    assert!(cutter.wave(&[4, 1]).is_empty());
    cutter.observe(cost(4, 500, 10));
    let wave = cutter.wave(&[1]);
    assert_eq!(wave.len(), 5, "one shard running, five more keep every worker fed and one queued each");
    assert_eq!(cutter.uncut(), 100_000 - 6 - wave.iter().map(|&n| u64::from(n)).sum::<u64>());
}

#[test]
fn without_a_model_an_empty_queue_gets_a_guided_shard() {
    let mut cutter = Cutter::new(1000, 1);
    assert_eq!(cutter.wave(&[]), [1]);
    cutter.observe(cost(1, 500, 10));
    assert_eq!(cutter.wave(&[]), [(999.0f64 / GUIDED_FACTOR).ceil() as u32]);
}

#[test]
fn the_model_tells_fixed_cost_from_cost_per_object() {
    let samples = [cost(1, 2000, 10), cost(2, 2000, 10), cost(400, 2000, 10)];
    let model = CostModel::fit(&samples).unwrap();
    assert!((model.fixed_s - 2.0).abs() < 1e-9 && (model.per_object_s - 0.01).abs() < 1e-9, "{model:?}");
    assert_eq!(model.smallest_efficient(FIXED_SHARE), 1800, "2 s fixed is 10% of 18 s of objects and itself");
    assert!(CostModel::fit(&[cost(5, 1, 1), cost(5, 1, 1)]).is_none(), "one size says nothing of the split");
    assert!(CostModel::fit(&[cost(5, 1, 1)]).is_none());
    let flat = CostModel::fit(&[cost(1, 300, 0), cost(9, 290, 0)]).unwrap();
    assert_eq!((flat.per_object_s, flat.smallest_efficient(FIXED_SHARE)), (0.0, u64::MAX));
    let proportional = CostModel::fit(&[cost(1, 0, 50), cost(3, 0, 50), cost(2, 0, 48)]).unwrap();
    assert!(proportional.fixed_s >= 0.0 && proportional.per_object_s > 0.0);
}

#[test]
fn once_learned_shards_shrink_and_keep_the_fixed_cost_small_and_the_rest_feeds_every_worker() {
    let (fixed_ms, per_object_ms, workers) = (500, 2, 4);
    let stage = SimulatedStage::new(ms(fixed_ms), vec![ms(per_object_ms); 100_000], workers);
    let run = simulate(&stage, Sizing::Adaptive);
    assert_covers(&run.cuts, 100_000);
    let model = CostModel { fixed_s: fixed_ms as f64 / 1e3, per_object_s: per_object_ms as f64 / 1e3 };
    let learned = &run.cuts[workers as usize..];
    let (body, tail) = learned.split_at(learned.len() - workers as usize);
    assert!(body.len() > workers as usize, "cut in several waves: {:?}", run.cuts);
    assert!(
        body.iter().all(|&n| model.fixed_s <= FIXED_SHARE * model.predict_s(u64::from(n)) + 1e-9),
        "the fixed cost is at most 10% of every shard's time: {body:?}"
    );
    assert!(body.last() < body.first(), "shards shrink toward the end: {body:?}");
    assert!(tail.iter().max().unwrap() - tail.iter().min().unwrap() <= 1, "the rest in equal parts: {tail:?}");
    assert!(tail[0] < body[0], "{:?}", run.cuts);
}

#[test]
fn when_a_guided_shard_would_be_too_small_the_rest_is_one_equal_shard_per_worker() {
    // 4 workers, 2 s fixed and 10 ms an object: a guided shard, 1/1.5 of a worker's 25 s left,
    // would hold 1,599 objects, fewer than the 1,800 that keep the fixed cost at 10 %.
    let mut cutter = Cutter::new(10_000, 4);
    assert_eq!(cutter.wave(&[]), [1, 4, 1, 4]);
    for objects in [1, 4, 1, 4] {
        cutter.observe(cost(objects, 2000, 10));
    }
    assert_eq!(cutter.wave(&[]), [2498, 2498, 2497, 2497], "no worker is left a shard behind the others");
    assert_eq!(cutter.uncut(), 0);
}

#[test]
fn a_simulated_stage_too_small_for_guided_shards_costs_no_more_than_its_probes_over_one_shard_each() {
    // 2 s fixed and 10 ms an object, 10,000 objects: from 4 workers on, a guided shard would
    // be smaller than the 1,800 objects that keep the fixed cost at 10 %.
    for workers in [4, 5, 6, 8] {
        let stage = SimulatedStage::new(ms(2000), vec![ms(10); 10_000], workers);
        let run = simulate(&stage, Sizing::Adaptive);
        let adaptive = run.makespan.as_secs_f64();
        let one_each = simulate(&stage, Sizing::Count(u64::from(workers))).makespan.as_secs_f64();
        let default = simulate(&stage, Sizing::Count(4 * u64::from(workers))).makespan.as_secs_f64();
        let probes = 2.0 * 1.1;
        assert!(adaptive <= one_each + probes, "{workers} workers: {adaptive} s against {one_each} s: {:?}", run.cuts);
        assert!(adaptive < default, "{workers} workers: adaptive {adaptive} s, default cut {default} s");
    }
}

#[test]
fn the_end_cut_in_the_middle_of_a_wave_evens_out_what_the_wave_gave_each_worker() {
    // 1 s fixed and 10 ms an object: guided shards of about 1,000 objects go to three workers,
    // then what is left no longer gives every worker 900; the fourth, given nothing yet, gets
    // the largest of the last shards.
    let stage = SimulatedStage::new(ms(1000), vec![ms(10); 6000], 4);
    let run = simulate(&stage, Sizing::Adaptive);
    assert_covers(&run.cuts, 6000);
    let (guided, last) = run.cuts[4..].split_at(3);
    assert!(guided.iter().all(|&n| n >= 900), "{:?}", run.cuts);
    assert!(last[0] > guided[0] && last[1..].iter().all(|&n| n < guided[0]), "{:?}", run.cuts);
    let best = simulate(&stage, Sizing::Fixed(1540)).makespan.as_secs_f64();
    let default = simulate(&stage, Sizing::Count(16)).makespan.as_secs_f64();
    let adaptive = run.makespan.as_secs_f64();
    assert!(adaptive <= 1.10 * best && adaptive < default, "{adaptive} s; best {best} s, default {default} s");
}

#[test]
fn fewer_objects_than_workers_give_one_object_per_shard() {
    let mut cutter = Cutter::new(3, 8);
    assert_eq!(cutter.wave(&[]), [1, 1, 1]);
    assert_eq!(cutter.uncut(), 0);
    assert_eq!(Cutter::new(6, 3).wave(&[]), [1, 4, 1], "a large probe only when every worker still gets one");
    assert_eq!(Cutter::new(5, 3).wave(&[]), [1, 1, 1]);
    assert!(Cutter::new(0, 2).wave(&[]).is_empty());
}

#[test]
fn resume_refuses_cuts_that_do_not_fit_the_stage() {
    assert!(Cutter::resume(10, 2, vec![4, 7], Vec::new()).is_none());
    assert!(Cutter::resume(10, 2, vec![4, 0], Vec::new()).is_none());
    let resumed = Cutter::resume(10, 2, vec![4, 6], Vec::new()).unwrap();
    assert_eq!(resumed.uncut(), 0);
}

#[test]
fn a_simulated_stage_with_a_slow_start_up_is_cut_into_few_large_shards() {
    let stage = SimulatedStage::new(ms(2000), vec![ms(10); 10_000], 2);
    let run = simulate(&stage, Sizing::Adaptive);
    assert_covers(&run.cuts, 10_000);
    assert!(run.waves > 1, "cut in waves");
    let fixed_time = 2.0 * run.cuts.len() as f64;
    let busy = fixed_time + 100.0;
    assert!(fixed_time <= 0.2 * busy, "fixed costs {fixed_time} s of {busy} s: {:?}", run.cuts);
}

/// One step of a run of waves: a wave with some shards undecided, a shard's cost learned, or
/// the cutter rebuilt from what was recorded (a resume).
#[derive(Debug, Clone)]
enum Step {
    Wave { undecided: Vec<u32> },
    Learn { objects: u64, duration_ms: u64 },
    Resume,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::collection::vec(1u32..3000, 0..12).prop_map(|undecided| Step::Wave { undecided }),
        (1u64..5000, 0u64..100_000).prop_map(|(objects, duration_ms)| Step::Learn { objects, duration_ms }),
        Just(Step::Resume),
    ]
}

proptest! {
    #[test]
    fn every_object_is_in_exactly_one_shard_in_order_across_waves_and_resumes(
        objects in 0u64..20_000, workers in 1u32..9, steps in prop::collection::vec(step(), 0..40),
    ) {
        let mut cutter = Cutter::new(objects, workers);
        let mut recorded: Vec<u32> = Vec::new();
        let mut samples = Vec::new();
        for step in steps {
            match step {
                Step::Wave { undecided } => {
                    let wave = cutter.wave(&undecided);
                    let room = (2 * workers).saturating_sub(undecided.len() as u32);
                    prop_assert!(wave.len() as u32 <= room,
                        "a wave keeps the queue bounded: {} after {}", wave.len(), undecided.len());
                    prop_assert!(room > 0 || wave.is_empty(), "nothing is cut while the queue is full");
                    recorded.extend(&wave);
                }
                Step::Learn { objects, duration_ms } => {
                    let sample = ShardCost { objects, duration: ms(duration_ms) };
                    samples.push(sample);
                    cutter.observe(sample);
                }
                Step::Resume => {
                    cutter = Cutter::resume(objects, workers, recorded.clone(), samples.clone()).unwrap();
                }
            }
            prop_assert_eq!(cutter.cuts(), recorded.as_slice());
        }
        while cutter.uncut() > 0 {
            let before = cutter.uncut();
            recorded.extend(cutter.wave(&[]));
            prop_assert!(cutter.uncut() < before, "an empty queue always gets a shard");
        }
        assert_covers(&recorded, objects);
    }

    #[test]
    fn the_last_shards_hold_every_object_left_none_empty_at_most_one_per_worker(
        left in 1u64..100_000, given in prop::collection::vec(0.0f64..500.0, 1..17),
        fixed_s in 0.0f64..10.0, per_object_s in 0.0f64..1.0,
    ) {
        let model = CostModel { fixed_s, per_object_s };
        let sizes = balanced(&model, &given, left);
        prop_assert_eq!(sizes.iter().sum::<u64>(), left, "{:?}", sizes);
        prop_assert!(!sizes.contains(&0) && sizes.len() <= given.len(), "{:?}", sizes);
        prop_assert!(sizes.windows(2).all(|w| w[0] + 1 >= w[1]), "the worker free first gets the most: {:?}", sizes);
    }

    #[test]
    fn a_simulated_stage_covers_its_objects_and_every_worker_gets_work(
        costs in prop::collection::vec(0u64..50, 0..3000), fixed_ms in 0u64..5000, workers in 1u32..6,
    ) {
        let stage = SimulatedStage::new(ms(fixed_ms), costs.iter().map(|c| ms(*c)).collect(), workers);
        let run = simulate(&stage, Sizing::Adaptive);
        assert_covers(&run.cuts, costs.len() as u64);
        let fed = (costs.len() as u64).min(u64::from(workers));
        prop_assert!(run.cuts.len() as u64 >= fed, "{} shards for {workers} workers", run.cuts.len());
    }
}
