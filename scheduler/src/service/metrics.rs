//! The service's Prometheus metrics (`GET /metrics`, text format). Gauges of runs, shards and
//! workers are set from the runs' views when scraped; counters and histograms move as events
//! arrive. No label ever holds a token or a parameter value.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::view::RunView;

type Labels = Vec<(&'static str, String)>;

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Gauge>,
    shards: Family<Labels, Gauge>,
    workers: Family<Labels, Gauge>,
    worker_slots: Gauge,
    runs_submitted: Family<Labels, Counter>,
    attempts_failed: Family<Labels, Counter>,
    shards_decided: Family<Labels, Counter>,
    api_requests: Family<Labels, Counter>,
    submit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("concurrent");
        let metrics = Metrics {
            runs: Family::default(),
            shards: Family::default(),
            workers: Family::default(),
            worker_slots: Gauge::default(),
            runs_submitted: Family::default(),
            attempts_failed: Family::default(),
            shards_decided: Family::default(),
            api_requests: Family::default(),
            submit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register("runs", "Runs the service knows, by state", metrics.runs.clone());
        registry.register("shards", "Shards by run, stage and state", metrics.shards.clone());
        registry.register("workers", "Workers alive, by executor, cluster and state", metrics.workers.clone());
        registry.register("worker_slots", "Most workers at once, all runs together", metrics.worker_slots.clone());
        registry.register("runs_submitted", "Runs submitted, by who submitted them", metrics.runs_submitted.clone());
        registry.register(
            "attempts_failed",
            "Failed shard attempts that will be tried again, by run and stage",
            metrics.attempts_failed.clone(),
        );
        registry.register("shards_decided", "Shards decided, by run, stage and result", metrics.shards_decided.clone());
        registry.register("api_requests", "API calls, by interface and outcome", metrics.api_requests.clone());
        registry.register(
            "submit_seconds",
            "Time to validate, plan and record a submitted run",
            metrics.submit_seconds.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Sets the gauges from the runs' views and the pool's slots.
    pub fn refresh(&self, views: &[RunView], slots: u32) {
        self.runs.clear();
        self.shards.clear();
        self.workers.clear();
        self.worker_slots.set(i64::from(slots));
        for view in views {
            self.runs.get_or_create(&vec![("state", view.status.as_str().to_string())]).inc();
            for stage in &view.stages {
                for (state, n) in [
                    ("pending", stage.shards_pending),
                    ("running", stage.shards_running),
                    ("succeeded", stage.shards_succeeded),
                    ("failed", stage.shards_failed),
                ] {
                    let labels =
                        vec![("run", view.run_id.clone()), ("stage", stage.name.clone()), ("state", state.into())];
                    self.shards.get_or_create(&labels).set(i64::from(n));
                }
                for (cluster, n) in &stage.workers {
                    let labels =
                        vec![("executor", "local".into()), ("cluster", cluster.clone()), ("state", "running".into())];
                    self.workers.get_or_create(&labels).inc_by(i64::from(*n));
                }
            }
        }
    }

    /// A run was submitted by `who`, taking `took` to record.
    pub fn submitted(&self, who: &str, took: Duration) {
        self.runs_submitted.get_or_create(&vec![("submitted_by", who.to_string())]).inc();
        self.submit_seconds.observe(took.as_secs_f64());
    }

    /// An attempt failed and its shard will be tried again.
    pub fn attempt_failed(&self, run: &str, stage: &str) {
        self.attempts_failed.get_or_create(&vec![("run", run.to_string()), ("stage", stage.to_string())]).inc();
    }

    /// A shard was decided.
    pub fn shard_decided(&self, run: &str, stage: &str, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        let labels = vec![("run", run.to_string()), ("stage", stage.to_string()), ("result", result.to_string())];
        self.shards_decided.get_or_create(&labels).inc();
    }

    /// An API call ended with `outcome` (`ok`, `unauthenticated`, `invalid`, …).
    pub fn api_request(&self, interface: &'static str, outcome: &'static str) {
        self.api_requests.get_or_create(&vec![("interface", interface.into()), ("outcome", outcome.into())]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_show_in_the_text() {
        let metrics = Metrics::new();
        metrics.submitted("alice", Duration::from_millis(3));
        metrics.shard_decided("r1", "thumbs", true);
        metrics.refresh(&[], 4);
        let text = metrics.encode();
        assert!(text.contains("concurrent_runs_submitted_total{submitted_by=\"alice\"} 1"), "{text}");
        assert!(text.contains("concurrent_shards_decided_total{run=\"r1\",stage=\"thumbs\",result=\"succeeded\"} 1"));
        assert!(text.contains("concurrent_worker_slots 4"));
        assert!(text.contains("concurrent_submit_seconds_bucket"));
    }
}
