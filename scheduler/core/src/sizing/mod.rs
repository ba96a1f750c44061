//! Adaptive shard sizes for a stage that sets neither `shard_size` nor `shards`.
//!
//! A [`Cutter`] holds a stage's object count and the sizes of the shards cut so far (shard `i`
//! holds the objects after those of shards `0..i`, in listing order), learns the stage's fixed
//! cost per shard and cost per object from the shards that succeed ([`CostModel`], least squares
//! over (objects, duration)), and decides the sizes of the next shards in waves:
//!
//! - before any shard has finished, one small probe shard per worker (1 and [`LARGE_PROBE`]
//!   objects, alternately, so the first results already tell the fixed cost from the cost per
//!   object), then guided shards;
//! - guided self-scheduling: a shard takes `remaining / (GUIDED_FACTOR × workers)` objects, so
//!   shards shrink toward the end of the stage and its last shards finish together;
//! - once the costs are known, no shard is so small that its fixed cost exceeds
//!   [`FIXED_SHARE`] of its time; when the next guided shard would be smaller than that, or
//!   what is left cannot give every worker a shard that large, the rest is cut at once (when
//!   the queue has room for them) into one shard per worker, so every worker still gets work:
//!   near-equal shards, or, when this wave already gave some workers a guided shard, sized so
//!   that every worker finishes what the wave gave it at the same time;
//! - a wave tops the shards cut and not yet decided up to [`QUEUED_PER_WORKER`] + 1 per
//!   worker, so an idle worker finds a shard queued instead of waiting for the next cut.
//!
//! Pure: durations come in as data, so tests drive it on a simulated clock. A cutter rebuilt
//! from the recorded cuts ([`Cutter::resume`]) continues exactly where the first left off.

mod model;
pub mod simulate;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use model::CostModel;

/// Most of a shard's time its fixed cost may take, once the costs are known.
pub const FIXED_SHARE: f64 = 0.10;
/// `k` of guided self-scheduling: a shard takes `remaining / (k × workers)` objects.
pub const GUIDED_FACTOR: f64 = 1.5;
/// Objects of every other probe shard (the others hold one): the cost per object is then told
/// from three objects' time, which a start-up that varies by some tens of ms hides less than one
/// object's.
pub const LARGE_PROBE: u64 = 4;
/// How much of a running shard's expected time is taken to be left, its start being unknown.
const RUNNING_LEFT: f64 = 0.5;
/// Shards kept cut ahead of each worker besides the one it runs.
pub const QUEUED_PER_WORKER: u32 = 1;

/// What one successful shard cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardCost {
    /// Input objects of the shard.
    pub objects: u64,
    /// Its attempt's duration.
    pub duration: Duration,
}

/// The cuts of one adaptively sized stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Cutter {
    objects: u64,
    workers: u32,
    cuts: Vec<u32>,
    cut: u64,
    samples: Vec<ShardCost>,
}

impl Cutter {
    /// A stage of `objects` objects worked on by up to `workers` workers, nothing cut yet.
    pub fn new(objects: u64, workers: u32) -> Cutter {
        Cutter { objects, workers: workers.max(1), cuts: Vec::new(), cut: 0, samples: Vec::new() }
    }

    /// A cutter that continues after the recorded `cuts`, knowing the costs of the shards that
    /// succeeded; `None` when the cuts do not fit the stage (an empty cut, or more objects cut
    /// than it has).
    pub fn resume(objects: u64, workers: u32, cuts: Vec<u32>, samples: Vec<ShardCost>) -> Option<Cutter> {
        let cut: u64 = cuts.iter().map(|&size| u64::from(size)).sum();
        if cut > objects || cuts.contains(&0) {
            return None;
        }
        Some(Cutter { objects, workers: workers.max(1), cuts, cut, samples })
    }

    /// Sizes the next waves for `workers` workers (the executor may hold fewer than the
    /// stage's parallelism).
    pub fn set_workers(&mut self, workers: u32) {
        self.workers = workers.max(1);
    }

    /// Learns from a shard that succeeded.
    pub fn observe(&mut self, cost: ShardCost) {
        self.samples.push(cost);
    }

    /// The stage's costs as learned so far; `None` until shards of two different sizes have
    /// succeeded.
    pub fn model(&self) -> Option<CostModel> {
        CostModel::fit(&self.samples)
    }

    /// Sizes of every shard cut so far, in shard order.
    pub fn cuts(&self) -> &[u32] {
        &self.cuts
    }

    /// Objects of the stage.
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// Objects not cut into a shard yet.
    pub fn uncut(&self) -> u64 {
        self.objects - self.cut
    }

    /// Cuts the next shards, given the sizes of the shards already cut and not decided yet, in
    /// shard order (the oldest, taken to be running, first); returns their sizes (empty when nothing needs cutting now). The new shards follow the
    /// cuts so far.
    pub fn wave(&mut self, undecided: &[u32]) -> Vec<u32> {
        let workers = u64::from(self.workers);
        let target = workers * (1 + u64::from(QUEUED_PER_WORKER));
        let first = self.cuts.len();
        let mut outstanding = undecided.len() as u64;
        let Some(model) = self.model() else {
            while self.uncut() > 0 && outstanding < target {
                let left = self.uncut();
                let probes_left = workers.saturating_sub(self.cuts.len() as u64);
                let size = if self.samples.is_empty() && self.cuts.len() < self.workers as usize {
                    // Two sizes tell the fixed cost from the cost per object, as long as
                    // every worker still gets a probe.
                    let large = self.cuts.len() % 2 == 1 && left >= probes_left + LARGE_PROBE - 1;
                    if large { LARGE_PROBE } else { 1 }
                } else if outstanding == 0 {
                    (left as f64 / (GUIDED_FACTOR * workers as f64)).ceil() as u64
                } else {
                    // The probes are out: wait for what they tell.
                    break;
                };
                self.push(size.clamp(1, left));
                outstanding += 1;
            }
            return self.cuts[first..].to_vec();
        };
        let smallest = model.smallest_efficient(FIXED_SHARE);
        let mut free_at = vec![0.0; self.workers as usize];
        for (index, &size) in undecided.iter().enumerate() {
            // The oldest undecided shards are the ones running, RUNNING_LEFT of the way through.
            let share = if index < self.workers as usize { RUNNING_LEFT } else { 1.0 };
            let slot = earliest(&free_at);
            free_at[slot] += share * model.predict_s(u64::from(size));
        }
        // What this wave gives each worker, in expected time.
        let mut given = vec![0.0; self.workers as usize];
        while self.uncut() > 0 && outstanding < target {
            let left = self.uncut();
            let busy: f64 = free_at.iter().sum();
            let end = (busy + model.per_object_s * left as f64 + model.fixed_s * workers as f64) / workers as f64;
            let slot = earliest(&free_at);
            let size = guided(&model, end - free_at[slot]);
            // The stage's end: what is left cannot be cut into guided shards that large (nor
            // give every worker one), so it is cut at once, one shard per worker, sized so that
            // the workers finish what this wave gives them together.
            if size < smallest || left <= workers.saturating_mul(smallest) {
                let parts = balanced(&model, &given, left);
                if outstanding + parts.len() as u64 > target {
                    break;
                }
                parts.into_iter().for_each(|size| self.push(size));
                break;
            }
            let size = size.min(left);
            free_at[slot] += model.predict_s(size);
            given[slot] += model.predict_s(size);
            self.push(size);
            outstanding += 1;
        }
        self.cuts[first..].to_vec()
    }

    fn push(&mut self, size: u64) {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.cuts.push(size);
        self.cut += u64::from(size);
    }
}

/// Guided self-scheduling in time: the objects a worker free `until_end` seconds before the
/// stage's expected end takes, `1 / GUIDED_FACTOR` of that time.
fn guided(model: &CostModel, until_end: f64) -> u64 {
    if model.per_object_s <= 0.0 {
        return u64::MAX;
    }
    let objects = ((until_end / GUIDED_FACTOR - model.fixed_s) / model.per_object_s).ceil();
    if objects >= u64::MAX as f64 { u64::MAX } else { objects.max(1.0) as u64 }
}

/// The last `left` objects as one shard for each worker that can still take some before the
/// others are done, sized so that the workers finish together what they were `given` (expected
/// seconds each, water-filled), the least loaded worker's shard first: near-equal shards when
/// they were given nothing yet. When objects cost nothing measurable, near-equal shards, one
/// per worker.
fn balanced(model: &CostModel, given: &[f64], left: u64) -> Vec<u64> {
    let workers = (given.len() as u64).min(left).max(1);
    if model.per_object_s <= 0.0 {
        return (0..workers).map(|part| left / workers + u64::from(part < left % workers)).collect();
    }
    let mut free = given.to_vec();
    free.sort_by(f64::total_cmp);
    free.truncate(workers as usize);
    let work = model.per_object_s * left as f64;
    // The most workers whose shards would all hold at least one object; one always does.
    let (taking, end) = (1..=free.len())
        .rev()
        .map(|m| (m, (work + free[..m].iter().map(|f| f + model.fixed_s).sum::<f64>()) / m as f64))
        .find(|&(m, end)| end - free[m - 1] - model.fixed_s >= model.per_object_s)
        .unwrap_or((1, 0.0));
    let mut sizes: Vec<u64> = free[..taking]
        .iter()
        .map(|f| (((end - f - model.fixed_s) / model.per_object_s).floor() as u64).max(1))
        .collect();
    // Rounding: the sizes sum to `left`; the first (largest) ones take what is short or over.
    let total: u64 = sizes.iter().sum();
    if total < left {
        let short = left - total;
        sizes.iter_mut().take(short as usize).for_each(|size| *size += 1);
        sizes[0] += short.saturating_sub(taking as u64);
    }
    let mut over = sizes.iter().sum::<u64>().saturating_sub(left);
    for size in sizes.iter_mut() {
        let less = over.min(*size - 1);
        *size -= less;
        over -= less;
    }
    sizes
}

/// The worker that is free first.
fn earliest(free_at: &[f64]) -> usize {
    (0..free_at.len()).min_by(|&a, &b| free_at[a].total_cmp(&free_at[b])).expect("at least one worker")
}

/// The shard boundaries of `cuts`: shard `i` holds the objects `start..end` of the listing.
pub fn spans(cuts: &[u32]) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
    cuts.iter().scan(0u64, |start, &size| {
        let span = *start..*start + u64::from(size);
        *start = span.end;
        Some(span)
    })
}
