//! A stage run on a simulated clock: workers take shards in order from a queue, a shard takes
//! its fixed cost plus the cost of each of its objects, and an adaptive stage is cut in waves as
//! results come in. Used by the tests and by the `sizing_sim` example that compares adaptive
//! sizes with fixed ones.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Cutter, ShardCost, spans};

/// How a simulated stage is cut into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// By a [`Cutter`], in waves.
    Adaptive,
    /// Shards of this many objects (`shard_size`).
    Fixed(u64),
    /// This many near-equal shards (`shards`, or the default `4 × parallelism`).
    Count(u64),
}

/// Fractions in `[0, 1)`, in steps of 1/10,000, from a seeded xorshift64: the same sequence for
/// the same seed. The simulated shards' noise, and the `sizing_sim` example's slow objects.
#[derive(Debug, Clone)]
pub struct SeededFractions(u64);

impl SeededFractions {
    /// The sequence of `seed` (0 is taken as 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> SeededFractions {
        SeededFractions(seed.max(1))
    }

    /// The next fraction.
    pub fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
}

/// A simulated stage: what each shard costs whatever its size, what each object costs, and its
/// workers.
#[derive(Debug, Clone)]
pub struct SimulatedStage {
    pub fixed: Duration,
    /// The cost of each object, in listing order.
    pub per_object: Vec<Duration>,
    pub workers: u32,
    /// Noise: each shard takes up to this much longer (a start-up that varies), drawn from
    /// `seed` in the order the shards start.
    pub jitter: Duration,
    pub seed: u64,
}

impl SimulatedStage {
    /// A stage without noise.
    pub fn new(fixed: Duration, per_object: Vec<Duration>, workers: u32) -> SimulatedStage {
        SimulatedStage { fixed, per_object, workers, jitter: Duration::ZERO, seed: 1 }
    }
}

/// How a simulated stage went.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedRun {
    /// From the first shard's start to the last shard's end.
    pub makespan: Duration,
    /// The shards' sizes, in shard order.
    pub cuts: Vec<u32>,
    /// Times shards were cut: 1 for a stage cut all at once.
    pub waves: usize,
}

/// Runs `stage` cut by `sizing` to its end.
pub fn simulate(stage: &SimulatedStage, sizing: Sizing) -> SimulatedRun {
    let objects = stage.per_object.len() as u64;
    let workers = stage.workers.max(1);
    let mut prefix = Vec::with_capacity(stage.per_object.len() + 1);
    prefix.push(Duration::ZERO);
    for cost in &stage.per_object {
        prefix.push(*prefix.last().expect("starts with zero") + *cost);
    }
    let mut noise = SeededFractions::new(stage.seed);
    let mut shard_time = |span: &std::ops::Range<u64>| {
        let extra = if stage.jitter.is_zero() { Duration::ZERO } else { stage.jitter.mul_f64(noise.next_fraction()) };
        stage.fixed + extra + (prefix[span.end as usize] - prefix[span.start as usize])
    };

    let mut cutter = match sizing {
        Sizing::Adaptive => Some(Cutter::new(objects, workers)),
        _ => None,
    };
    let mut cuts: Vec<u32> = match sizing {
        Sizing::Adaptive => Vec::new(),
        Sizing::Fixed(size) => fixed_sizes(objects, size),
        Sizing::Count(count) => equal_sizes(objects, count),
    };
    let mut waves = usize::from(cutter.is_none());
    let mut queue: VecDeque<std::ops::Range<u64>> = spans(&cuts).collect();
    let mut busy: Vec<Option<(Duration, std::ops::Range<u64>, Duration)>> = vec![None; workers as usize];
    let mut now = Duration::ZERO;
    let cut_more = |cutter: &mut Option<Cutter>, undecided: &[u32], queue: &mut VecDeque<_>, cuts: &mut Vec<u32>| {
        let Some(cutter) = cutter else { return 0 };
        let before = cutter.cuts().len();
        let sizes = cutter.wave(undecided);
        if sizes.is_empty() {
            return 0;
        }
        cuts.extend(&sizes);
        queue.extend(spans(cutter.cuts()).skip(before));
        1
    };
    waves += cut_more(&mut cutter, &[], &mut queue, &mut cuts);
    loop {
        for slot in busy.iter_mut().filter(|slot| slot.is_none()) {
            let Some(span) = queue.pop_front() else { break };
            let took = shard_time(&span);
            *slot = Some((now + took, span, took));
        }
        let next = busy.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|(at, ..)| (*at, i))).min();
        let Some((at, index)) = next else { break };
        now = at;
        let (_, span, took) = busy[index].take().expect("the earliest busy worker");
        if let Some(cutter) = cutter.as_mut() {
            cutter.observe(ShardCost { objects: span.end - span.start, duration: took });
        }
        let mut undecided: Vec<&std::ops::Range<u64>> =
            queue.iter().chain(busy.iter().flatten().map(|(_, span, _)| span)).collect();
        undecided.sort_by_key(|span| span.start);
        let undecided: Vec<u32> = undecided.iter().map(|span| (span.end - span.start) as u32).collect();
        waves += cut_more(&mut cutter, &undecided, &mut queue, &mut cuts);
    }
    SimulatedRun { makespan: now, cuts, waves }
}

/// Sizes of `shard_size` chunks.
fn fixed_sizes(objects: u64, size: u64) -> Vec<u32> {
    let size = size.max(1);
    (0..objects.div_ceil(size)).map(|i| (objects - i * size).min(size) as u32).collect()
}

/// Sizes of `count` near-equal shards (at most one per object), larger first.
fn equal_sizes(objects: u64, count: u64) -> Vec<u32> {
    let count = count.clamp(1, objects.max(1));
    if objects == 0 {
        return Vec::new();
    }
    (0..count).map(|i| (objects / count + u64::from(i < objects % count)) as u32).collect()
}
