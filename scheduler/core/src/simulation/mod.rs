//! Trace-driven simulation of placement (DESIGN §6) on a simulated clock: one stage's shards
//! over clusters whose capacity changes, driven by the real [`RunCore`](crate::run_core::RunCore)
//! (its events in, its effects carried out by a simulated world of Pods and workers), and
//! measured: makespan, utilization, time to burst, time to return, shards lost and run twice.
//!
//! The same trace runs under baseline policies for comparison: desired workers decided only
//! every 30 s (KEDA's polling), and a lost worker's shard coming back only after a timeout
//! (the 5 to 15 min of Kueue MultiKueue and Armada) instead of at once through the lease watch.
//! Pure and deterministic: the same trace and policy give the same report.

mod measure;
mod report;
#[cfg(test)]
mod tests;
mod trace;
mod world;

use std::time::Duration;

pub use report::{Burst, ClusterUse, Recovery, Report, Return, table};
pub use trace::{ClusterTrace, Trace, shard_durations};

/// The scheduler driver's tick: how often it tells the core of the clock and the executor.
pub const DRIVER_TICK: Duration = Duration::from_millis(100);

/// How a lost worker's shard comes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostShard {
    /// Handed back by the core with the next decision (the lease watch's report).
    HandedBack,
    /// Redelivered by the queue this long after the worker was lost.
    After(Duration),
}

/// How often desired workers are decided, and how lost shards come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// Between two decisions of desired workers (the core's `Workers` event).
    pub decide_every: Duration,
    pub lost_shard: LostShard,
}

impl Policy {
    /// Concurrent: a decision every driver tick, lost shards handed back at once.
    pub fn concurrent() -> Policy {
        Policy { name: "concurrent".into(), decide_every: DRIVER_TICK, lost_shard: LostShard::HandedBack }
    }

    /// Desired workers decided only every `every` (KEDA polls its scalers every 30 s by
    /// default); lost shards handed back with the next decision.
    pub fn polling(every: Duration) -> Policy {
        Policy {
            name: format!("polling every {} s (KEDA)", every.as_secs()),
            decide_every: every,
            lost_shard: LostShard::HandedBack,
        }
    }

    /// Decisions as Concurrent's, but a lost worker's shard comes back only `after` it was
    /// lost (Kueue MultiKueue's and Armada's lost-worker timeouts: 5 to 15 min).
    pub fn lost_timeout(after: Duration) -> Policy {
        Policy {
            name: format!("lost-worker timeout {} min (MultiKueue, Armada)", after.as_secs() / 60),
            decide_every: DRIVER_TICK,
            lost_shard: LostShard::After(after),
        }
    }
}

/// The policies a trace is compared under: Concurrent, 30 s polling, 5 and 15 min timeouts.
pub fn baselines() -> Vec<Policy> {
    vec![
        Policy::concurrent(),
        Policy::polling(Duration::from_secs(30)),
        Policy::lost_timeout(Duration::from_secs(5 * 60)),
        Policy::lost_timeout(Duration::from_secs(15 * 60)),
    ]
}

/// Runs `trace` under `policy` until the run ends (or ten times its expected makespan and an
/// hour have passed: then the report's makespan is `None`).
pub fn simulate(trace: &Trace, policy: &Policy) -> Report {
    let expected = trace.durations.iter().sum::<Duration>() / trace.parallelism.max(1);
    let limit = expected * 10 + Duration::from_secs(3600);
    world::World::new(trace, policy).run(limit)
}
