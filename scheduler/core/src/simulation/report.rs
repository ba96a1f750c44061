//! What a simulation measured, and the table that sets policies side by side.

use std::fmt::Write;
use std::time::Duration;

/// One policy's run of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub policy: String,
    pub shards: u32,
    /// Shards that succeeded.
    pub finished: u32,
    /// Shards decided lost, or never decided by the end.
    pub lost: u32,
    /// Shards whose work started more than once (a worker lost mid-shard).
    pub run_twice: u32,
    /// Results for a shard already decided.
    pub duplicate_results: u32,
    /// Simulated time until the run ended; `None` when it had not ended by the time limit.
    pub makespan: Option<Duration>,
    /// Pods asked for, all clusters together.
    pub workers_created: u32,
    /// By cluster, in preference order.
    pub clusters: Vec<ClusterUse>,
    /// Each time a cluster filled up and work went to a later one.
    pub bursts: Vec<Burst>,
    /// Each time a cluster's capacity grew.
    pub returns: Vec<Return>,
    /// Each time a capacity drop lost bound workers.
    pub recoveries: Vec<Recovery>,
}

/// How much of a cluster's capacity did work.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterUse {
    pub name: String,
    /// Worker-seconds spent on shards (lost attempts included).
    pub busy: Duration,
    /// Worker-seconds its nodes held, up to its `max_workers`, until the run ended.
    pub available: Duration,
}

impl ClusterUse {
    /// `busy / available`.
    pub fn utilization(&self) -> f64 {
        ratio(self.busy, self.available)
    }
}

/// A cluster filled up: its oldest unbound worker was asked for at `pending_from`, and `after`
/// that its Pending workers were removed and workers asked for on a later cluster instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub from: String,
    pub to: String,
    pub pending_from: Duration,
    pub after: Duration,
}

/// A cluster's capacity grew at `at`; a worker was next bound there `after` that (`None`: no
/// worker went there again before the run ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub cluster: String,
    pub at: Duration,
    pub after: Option<Duration>,
}

/// A capacity drop on `cluster` at `at` lost `workers` bound workers; `after` that, the stage
/// had as many bound workers again as before the drop (or as its clusters still held, or as it
/// still wanted); `None`: not before the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub cluster: String,
    pub at: Duration,
    pub workers: u32,
    pub after: Option<Duration>,
}

impl Report {
    /// Busy worker-seconds over available capacity-seconds, all clusters together.
    pub fn utilization(&self) -> f64 {
        let busy = self.clusters.iter().map(|c| c.busy).sum();
        let available = self.clusters.iter().map(|c| c.available).sum();
        ratio(busy, available)
    }
}

fn ratio(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() { 0.0 } else { part.as_secs_f64() / whole.as_secs_f64() }
}

/// The reports side by side as a Markdown table, one row per policy, then each policy's
/// bursts and returns.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else { return out };
    let names: Vec<&str> = first.clusters.iter().map(|c| c.name.as_str()).collect();
    let _ = write!(out, "| policy | makespan | utilization |");
    for name in &names {
        let _ = write!(out, " {name} |");
    }
    let _ = writeln!(
        out,
        " time to burst (max) | time to replace lost workers (max) | time to return | run twice | lost | workers created |"
    );
    let _ = writeln!(out, "|---|---:|---:|{}---:|---:|---|---:|---:|---:|", "---:|".repeat(names.len()));
    for report in reports {
        let makespan = report.makespan.map_or("not ended".to_string(), minutes);
        let _ = write!(out, "| {} | {makespan} | {} |", report.policy, percent(report.utilization()));
        for cluster in &report.clusters {
            let _ = write!(out, " {} |", percent(cluster.utilization()));
        }
        let burst = report.bursts.iter().map(|b| b.after).max().map_or("none".to_string(), seconds);
        let replace = if report.recoveries.iter().any(|r| r.after.is_none()) {
            "not before the end".to_string()
        } else {
            report.recoveries.iter().filter_map(|r| r.after).max().map_or("none".to_string(), seconds)
        };
        let returns: Vec<String> = names.iter().filter_map(|name| returns_of(report, name)).collect();
        let _ = writeln!(
            out,
            " {burst} | {replace} | {} | {} | {} | {} |",
            returns.join(", "),
            report.run_twice,
            report.lost,
            report.workers_created
        );
    }
    for report in reports {
        let _ = writeln!(out, "\n{}:", report.policy);
        for run in report.bursts.chunk_by(|a, b| a.from == b.from && a.to == b.to) {
            let (first, longest) = (&run[0], run.iter().map(|b| b.after).max().unwrap_or_default());
            let times = if run.len() > 1 {
                format!(" ({} times, the last from {})", run.len(), minutes(run[run.len() - 1].pending_from))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  burst  {} -> {}: Pending from {}, workers on {} {} later{times}",
                first.from,
                first.to,
                minutes(first.pending_from),
                first.to,
                seconds(longest)
            );
        }
        for recovery in &report.recoveries {
            let after = recovery.after.map_or("not before the end".to_string(), |a| format!("{} later", seconds(a)));
            let _ = writeln!(
                out,
                "  lost   {}: {} workers at {}, as many bound again {after}",
                recovery.cluster,
                recovery.workers,
                minutes(recovery.at)
            );
        }
        for back in &report.returns {
            let after =
                back.after.map_or("no worker went there again".to_string(), |a| format!("{} later", seconds(a)));
            let _ = writeln!(
                out,
                "  return {}: capacity back at {}, a worker bound {after}",
                back.cluster,
                minutes(back.at)
            );
        }
    }
    out
}

/// A cluster's returns in a few words: the time, or the longest of several, and how many never
/// got a worker; `None` when its capacity never grew.
fn returns_of(report: &Report, cluster: &str) -> Option<String> {
    let returns: Vec<&Return> = report.returns.iter().filter(|r| r.cluster == cluster).collect();
    let longest = returns.iter().filter_map(|r| r.after).max();
    let never = returns.iter().filter(|r| r.after.is_none()).count();
    let text = match (returns.len(), longest) {
        (0, _) => return None,
        (1, Some(after)) => seconds(after),
        (1, None) => "never".to_string(),
        (n, Some(after)) if never == 0 => format!("{} at most, {n} times", seconds(after)),
        (n, Some(after)) => format!("{} at most, {n} times, {never} never", seconds(after)),
        (n, None) => format!("never, {n} times"),
    };
    Some(format!("{cluster} {text}"))
}

fn percent(value: f64) -> String {
    format!("{:.1} %", value * 100.0)
}

fn seconds(value: Duration) -> String {
    format!("{:.1} s", value.as_secs_f64())
}

fn minutes(value: Duration) -> String {
    let secs = value.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}
