//! A stage's costs learned from its finished shards: `duration ≈ fixed + objects × per_object`,
//! fitted by least squares.

use super::ShardCost;

/// What a shard of a stage costs: a fixed part (start-up, reporting) and a part per object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Seconds a shard takes whatever its size.
    pub fixed_s: f64,
    /// Seconds each object adds.
    pub per_object_s: f64,
}

impl CostModel {
    /// The least-squares line through the samples; `None` until two sizes differ. Noise never
    /// makes a cost negative: a falling line means all the time is fixed, a line below zero at
    /// no object means it is all per object.
    pub fn fit(samples: &[ShardCost]) -> Option<CostModel> {
        if samples.len() < 2 {
            return None;
        }
        let n = samples.len() as f64;
        let x = |s: &ShardCost| s.objects as f64;
        let y = |s: &ShardCost| s.duration.as_secs_f64();
        let mean_x = samples.iter().map(x).sum::<f64>() / n;
        let mean_y = samples.iter().map(y).sum::<f64>() / n;
        let var: f64 = samples.iter().map(|s| (x(s) - mean_x).powi(2)).sum();
        if var <= f64::EPSILON {
            return None;
        }
        let cov: f64 = samples.iter().map(|s| (x(s) - mean_x) * (y(s) - mean_y)).sum();
        let slope = cov / var;
        if slope <= 0.0 {
            return Some(CostModel { fixed_s: mean_y.max(0.0), per_object_s: 0.0 });
        }
        let intercept = mean_y - slope * mean_x;
        if intercept < 0.0 {
            let through_origin =
                samples.iter().map(|s| x(s) * y(s)).sum::<f64>() / samples.iter().map(|s| x(s) * x(s)).sum::<f64>();
            return Some(CostModel { fixed_s: 0.0, per_object_s: through_origin.max(0.0) });
        }
        Some(CostModel { fixed_s: intercept, per_object_s: slope })
    }

    /// Seconds a shard of `objects` objects is expected to take.
    pub fn predict_s(&self, objects: u64) -> f64 {
        self.fixed_s + self.per_object_s * objects as f64
    }

    /// The fewest objects for which the fixed cost is at most `share` of a shard's time
    /// (`u64::MAX` when objects cost nothing measurable).
    pub fn smallest_efficient(&self, share: f64) -> u64 {
        if self.fixed_s <= 0.0 {
            return 1;
        }
        if self.per_object_s <= 0.0 {
            return u64::MAX;
        }
        let objects = (self.fixed_s * (1.0 - share) / share / self.per_object_s).ceil();
        if objects >= u64::MAX as f64 { u64::MAX } else { (objects as u64).max(1) }
    }
}
