//! Runs a synthetic stage (a fixed cost per shard, a cost per object) on a simulated clock cut
//! adaptively, by the default `4 × parallelism` shards, and by every fixed `shard_size` of a
//! sweep, on uniform and on skewed objects, and prints the makespans as a Markdown table.
//!
//! `cargo run --release -p concurrent-core --example sizing_sim -- [--objects N] [--workers N]
//! [--fixed-ms N] [--object-ms N] [--seed N]`

use std::process::ExitCode;
use std::time::Duration;

use concurrent_core::sizing::simulate::{SimulatedStage, Sizing, simulate};

const USAGE: &str = "usage: sizing_sim [--objects N] [--workers N] [--fixed-ms N] [--object-ms N] [--seed N]";
/// Share of the objects that are slow in the skewed case, and how much slower.
const SLOW_SHARE: f64 = 0.05;
const SLOWDOWN: u32 = 20;

fn main() -> ExitCode {
    let (mut objects, mut workers, mut fixed_ms, mut object_ms, mut seed) = (10_000u64, 2u64, 2000u64, 10u64, 1u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        let target = match flag.as_str() {
            "--objects" => &mut objects,
            "--workers" => &mut workers,
            "--fixed-ms" => &mut fixed_ms,
            "--object-ms" => &mut object_ms,
            "--seed" => &mut seed,
            _ => {
                eprintln!("error: unknown argument {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        match value {
            Some(value) => *target = value,
            None => {
                eprintln!("error: {flag} needs a whole number\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(workers) = u32::try_from(workers).ok().filter(|w| (1..=1024).contains(w)) else {
        eprintln!("error: --workers must be 1 to 1024\n{USAGE}");
        return ExitCode::from(2);
    };
    let object = Duration::from_millis(object_ms);
    let uniform = vec![object; objects as usize];
    let mut state = seed.max(1);
    let skewed = (0..objects)
        .map(|_| {
            // xorshift64: a fixed, seeded choice of the slow objects.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if (state % 10_000) as f64 / 10_000.0 < SLOW_SHARE { object * SLOWDOWN } else { object }
        })
        .collect();
    println!(
        "{objects} objects, {workers} workers, {fixed_ms} ms fixed per shard, {object_ms} ms per object \
         (skewed: {}% of objects {SLOWDOWN}× slower)\n",
        SLOW_SHARE * 100.0
    );
    println!(
        "| inputs | adaptive | shards (waves) | default 4×parallelism | best fixed shard_size | adaptive / best | adaptive / default |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, per_object) in [("uniform", uniform), ("skewed", skewed)] {
        let stage = SimulatedStage { fixed: Duration::from_millis(fixed_ms), per_object, workers };
        let adaptive = simulate(&stage, Sizing::Adaptive);
        let default = simulate(&stage, Sizing::Count(4 * u64::from(workers)));
        let (best_size, best) = sweep(objects)
            .map(|size| (size, simulate(&stage, Sizing::Fixed(size)).makespan))
            .min_by_key(|(_, makespan)| *makespan)
            .expect("the sweep is not empty");
        let (a, d, b) = (adaptive.makespan.as_secs_f64(), default.makespan.as_secs_f64(), best.as_secs_f64());
        println!(
            "| {name} | {a:.1} s | {} ({}) | {d:.1} s | {b:.1} s ({best_size}) | {:.3} | {:.3} |",
            adaptive.cuts.len(),
            adaptive.waves,
            a / b,
            a / d
        );
    }
    ExitCode::SUCCESS
}

/// Every shard size from 1 to `objects`: all of them up to 1,000, then steps of 1%.
fn sweep(objects: u64) -> impl Iterator<Item = u64> {
    let step = (objects / 100).max(1);
    (1..=objects.min(1000)).chain((1000..=objects).step_by(step as usize)).chain([objects.max(1)])
}
