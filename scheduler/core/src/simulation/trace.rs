//! What a simulation replays: clusters in preference order with their capacity over time, and
//! one stage's shards with how long each takes, drawn from a seeded generator.

use std::time::Duration;

use crate::placement::DEFAULT_BURST_AFTER;

/// One cluster: its configured `max_workers` and the workers its nodes really hold over time
/// (what other tenants leave, what spot reclaims take). Placement sees only `max_workers`; a
/// worker past the real capacity stays Pending, as a Pod does on a full shared cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTrace {
    pub name: String,
    pub max_workers: u32,
    /// `(from, workers)`, sorted by time, the first from zero.
    capacity: Vec<(Duration, u32)>,
}

impl ClusterTrace {
    /// A cluster whose nodes hold `capacity` workers from the start.
    pub fn new(name: &str, max_workers: u32, capacity: u32) -> ClusterTrace {
        ClusterTrace { name: name.to_string(), max_workers, capacity: vec![(Duration::ZERO, capacity)] }
    }

    /// From `at` on, its nodes hold `capacity` workers (a later change at the same time wins).
    pub fn change(mut self, at: Duration, capacity: u32) -> ClusterTrace {
        let index = self.capacity.partition_point(|(from, _)| *from <= at);
        if index > 0 && self.capacity[index - 1].0 == at {
            self.capacity[index - 1].1 = capacity;
        } else {
            self.capacity.insert(index, (at, capacity));
        }
        self
    }

    /// Workers its nodes hold at `at`.
    pub fn capacity_at(&self, at: Duration) -> u32 {
        let index = self.capacity.partition_point(|(from, _)| *from <= at);
        self.capacity[index.saturating_sub(1)].1
    }

    /// The capacity changes, in time order, the first at zero.
    pub fn changes(&self) -> &[(Duration, u32)] {
        &self.capacity
    }
}

/// A trace: clusters, one stage's shards and the timings of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// In the stage's preference order.
    pub clusters: Vec<ClusterTrace>,
    /// The stage's `parallelism`.
    pub parallelism: u32,
    /// How long each shard's attempt takes, by shard index (a retry takes as long).
    pub durations: Vec<Duration>,
    /// From a Pod bound to a node to its worker asking for a shard (image, start).
    pub pod_startup: Duration,
    /// A worker finding the queue empty this long exits.
    pub idle_exit: Duration,
    /// How long a worker may stay Pending before its cluster counts as full.
    pub burst_after: Duration,
}

impl Trace {
    /// The reference trace: `shards` shards of about 17 s each (log-normal, median 15 s), at
    /// `parallelism` 600, over three clusters in preference order:
    /// - `onprem` (`max_workers` 300): other tenants take 200 of its workers' room at 20 % of the
    ///   expected makespan and give it back at 60 %;
    /// - `cloud-a` (200): all of it reclaimed at 40 %, back at 80 %;
    /// - `cloud-b` (300): half of it reclaimed at 95 %, near the end.
    ///
    /// The expected makespan is `shards` × 17 s / 600 (47 min for 100,000 shards).
    pub fn three_clusters(shards: u32, seed: u64) -> Trace {
        let durations = shard_durations(shards, Duration::from_secs(15), 0.5, seed);
        let parallelism = 600;
        let expected = durations.iter().sum::<Duration>() / parallelism;
        let at = |percent: u32| Duration::from_secs((expected * percent / 100).as_secs());
        Trace {
            clusters: vec![
                ClusterTrace::new("onprem", 300, 300).change(at(20), 100).change(at(60), 300),
                ClusterTrace::new("cloud-a", 200, 200).change(at(40), 0).change(at(80), 200),
                ClusterTrace::new("cloud-b", 300, 300).change(at(95), 150),
            ],
            parallelism,
            durations,
            pod_startup: Duration::from_secs(5),
            idle_exit: Duration::from_secs(5),
            burst_after: DEFAULT_BURST_AFTER,
        }
    }

    /// A flapping trace: `shards` shards as in [`Trace::three_clusters`], at `parallelism` 400,
    /// over `onprem` (`max_workers` 100, always there) then `spot` (300), whose nodes are
    /// reclaimed down to 100 workers for 127 s out of every 311 s (times that do not line up
    /// with a 30 s poll), for twice the expected makespan.
    pub fn spot(shards: u32, seed: u64) -> Trace {
        let durations = shard_durations(shards, Duration::from_secs(15), 0.5, seed);
        let parallelism = 400;
        let horizon = durations.iter().sum::<Duration>() / parallelism * 2;
        let mut spot = ClusterTrace::new("spot", 300, 300);
        let mut at = Duration::from_secs(173);
        while at < horizon {
            spot = spot.change(at, 100).change(at + Duration::from_secs(127), 300);
            at += Duration::from_secs(311);
        }
        Trace {
            clusters: vec![ClusterTrace::new("onprem", 100, 100), spot],
            parallelism,
            durations,
            pod_startup: Duration::from_secs(5),
            idle_exit: Duration::from_secs(5),
            burst_after: DEFAULT_BURST_AFTER,
        }
    }
}

/// `shards` attempt durations, log-normal around `median` with `sigma` the spread of their
/// logarithm, at least 100 ms, the same for the same seed.
pub fn shard_durations(shards: u32, median: Duration, sigma: f64, seed: u64) -> Vec<Duration> {
    let mut random = SplitMix64(seed);
    (0..shards)
        .map(|_| {
            let normal = random.normal();
            Duration::from_secs_f64(median.as_secs_f64() * (sigma * normal).exp()).max(Duration::from_millis(100))
        })
        .collect()
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, seeded, well-mixed generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
