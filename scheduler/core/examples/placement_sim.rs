//! Runs a placement trace (three clusters whose capacity changes, or a flapping spot cluster)
//! under Concurrent's placement and the baseline policies, and prints the figures as a
//! Markdown table.
//!
//! `cargo run --release -p concurrent-core --example placement_sim -- [--trace three-clusters|spot]
//! [--shards N] [--seed N] [--parallelism N]`

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use concurrent_core::simulation::{Trace, baselines, simulate, table};

const USAGE: &str = "usage: placement_sim [--trace three-clusters|spot] [--shards N] [--seed N] [--parallelism N]";

fn main() -> ExitCode {
    let mut shards: u32 = 100_000;
    let mut seed: u64 = 1;
    let mut parallelism: Option<u32> = None;
    let mut spot = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value.as_deref()) {
            ("--shards", Some(v)) => v.parse().map(|n| shards = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|n| seed = n).is_ok(),
            ("--parallelism", Some(v)) => v.parse().map(|n| parallelism = Some(n)).is_ok(),
            ("--trace", Some("three-clusters")) => true,
            ("--trace", Some("spot")) => {
                spot = true;
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("error: bad argument {flag} {}\n{USAGE}", value.unwrap_or_default());
            return ExitCode::from(2);
        }
    }
    if shards == 0 || parallelism == Some(0) {
        eprintln!("error: --shards and --parallelism must be at least 1\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut trace = if spot { Trace::spot(shards, seed) } else { Trace::three_clusters(shards, seed) };
    if let Some(parallelism) = parallelism {
        trace.parallelism = parallelism;
    }
    let mut out = format!(
        "trace {}: {shards} shards, parallelism {}, seed {seed}, burst_after {} s\n",
        if spot { "spot" } else { "three-clusters" },
        trace.parallelism,
        trace.burst_after.as_secs()
    );
    for cluster in &trace.clusters {
        let changes: Vec<String> = cluster
            .changes()
            .iter()
            .map(|(at, workers)| format!("{workers} from {}m{:02}s", at.as_secs() / 60, at.as_secs() % 60))
            .collect();
        out += &format!("  {} (max_workers {}): {}\n", cluster.name, cluster.max_workers, changes.join(", "));
    }
    let started = Instant::now();
    let reports: Vec<_> = baselines().iter().map(|policy| simulate(&trace, policy)).collect();
    out += &format!("\n{}\nsimulated in {:.2} s\n", table(&reports), started.elapsed().as_secs_f64());
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(out.as_bytes());
    ExitCode::SUCCESS
}
