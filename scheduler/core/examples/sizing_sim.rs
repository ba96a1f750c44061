//! Runs a synthetic stage (a fixed cost per shard, a cost per object) on a simulated clock cut
//! adaptively, by the default `4 × parallelism` shards, and by every fixed `shard_size` of a
//! sweep, on uniform and on skewed objects, and prints the makespans as a Markdown table.
//!
//! `cargo run --release -p concurrent-core --example sizing_sim -- [--objects N] [--workers N]
//! [--fixed-ms N] [--object-ms N] [--seed N] [--jitter-ms N]`
//!
//! `--jitter-ms N` makes every shard take up to N ms more (a start-up that varies, drawn from the
//! seed), as real processes do; the adaptive row is then the worst and the median over 20 seeds.

use std::process::ExitCode;
use std::time::Duration;

use concurrent_core::sizing::simulate::{SeededFractions, SimulatedStage, Sizing, simulate};

const USAGE: &str =
    "usage: sizing_sim [--objects N] [--workers N] [--fixed-ms N] [--object-ms N] [--seed N] [--jitter-ms N]";
/// Seeds of the noise a run with `--jitter-ms` is repeated over.
const JITTER_SEEDS: u64 = 20;
/// Share of the objects that are slow in the skewed case, and how much slower.
const SLOW_SHARE: f64 = 0.05;
const SLOWDOWN: u32 = 20;

fn main() -> ExitCode {
    let (mut objects, mut workers, mut fixed_ms, mut object_ms, mut seed, mut jitter_ms) =
        (10_000u64, 2u64, 2000u64, 10u64, 1u64, 0u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        let target = match flag.as_str() {
            "--objects" => &mut objects,
            "--workers" => &mut workers,
            "--fixed-ms" => &mut fixed_ms,
            "--object-ms" => &mut object_ms,
            "--seed" => &mut seed,
            "--jitter-ms" => &mut jitter_ms,
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
    // A fixed, seeded choice of the slow objects.
    let mut slow = SeededFractions::new(seed);
    let skewed =
        (0..objects).map(|_| if slow.next_fraction() < SLOW_SHARE { object * SLOWDOWN } else { object }).collect();
    let jitter = Duration::from_millis(jitter_ms);
    println!(
        "{objects} objects, {workers} workers, {fixed_ms} ms fixed per shard, {object_ms} ms per object \
         (skewed: {}% of objects {SLOWDOWN}× slower){}\n",
        SLOW_SHARE * 100.0,
        if jitter.is_zero() {
            String::new()
        } else {
            format!("; every shard up to {jitter_ms} ms longer, adaptive: median (worst) of {JITTER_SEEDS} seeds")
        }
    );
    println!(
        "| inputs | adaptive | shards (waves) | default 4×parallelism | best fixed shard_size | adaptive / best | adaptive / default |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut cuts = Vec::new();
    for (name, per_object) in [("uniform", uniform), ("skewed", skewed)] {
        let stage = SimulatedStage::new(Duration::from_millis(fixed_ms), per_object, workers);
        let default = simulate(&stage, Sizing::Count(4 * u64::from(workers)));
        let (best_size, best) = sweep(objects)
            .map(|size| (size, simulate(&stage, Sizing::Fixed(size)).makespan))
            .min_by_key(|(_, makespan)| *makespan)
            .expect("the sweep is not empty");
        let (d, b) = (default.makespan.as_secs_f64(), best.as_secs_f64());
        let seeds = if jitter.is_zero() { 1 } else { JITTER_SEEDS };
        let mut runs: Vec<_> = (1..=seeds)
            .map(|seed| simulate(&SimulatedStage { jitter, seed, ..stage.clone() }, Sizing::Adaptive))
            .collect();
        runs.sort_by_key(|run| run.makespan);
        let (median, worst) = (&runs[runs.len() / 2], &runs[runs.len() - 1]);
        let (a, w) = (median.makespan.as_secs_f64(), worst.makespan.as_secs_f64());
        let shown = |median: f64, worst: f64, digits: usize| match seeds {
            1 => format!("{median:.digits$}"),
            _ => format!("{median:.digits$} ({worst:.digits$})"),
        };
        println!(
            "| {name} | {} s | {} ({}) | {d:.1} s | {b:.1} s ({best_size}) | {} | {} |",
            shown(a, w, 1),
            median.cuts.len(),
            median.waves,
            shown(a / b, w / b, 3),
            shown(a / d, w / d, 3),
        );
        cuts.push(format!("{name}: {:?}", median.cuts));
    }
    println!("\nadaptive cuts, in shard order{}:", if jitter.is_zero() { "" } else { " (the median run)" });
    for line in cuts {
        println!("- {line}");
    }
    ExitCode::SUCCESS
}

/// Every shard size from 1 to `objects`: all of them up to 1,000, then steps of 1%.
fn sweep(objects: u64) -> impl Iterator<Item = u64> {
    let step = (objects / 100).max(1);
    (1..=objects.min(1000)).chain((1000..=objects).step_by(step as usize)).chain([objects.max(1)])
}
