//! The scale benchmark of `benches/e2e.sh`: one stage of a million objects through the
//! scheduler's own code path, minus the file listing (which would take longer than everything
//! else: the listing is generated in memory).
//!
//! 1. Builds `--objects` [`InputObject`]s (`set-NNN/img-NNNNNNN.jpg`, 1,000 directories).
//! 2. `plan::shard_objects` with `partition: {by: object, shard_size: --shard-size}`.
//! 3. Records the stage in a [`Store`] and flushes, creates the stage's shard consumer and
//!    publishes the shards with the driver's own [`publish_shards`] (chunks of 2,048, a stage
//!    record and a flush after each), against the real nats-server at `--nats-url`.
//! 4. Records a decided shard (a success with one output per input) for every shard, as
//!    the driver does when results come in, and flushes: the state of a finished stage.
//! 5. Drops the store, reopens it and rebuilds the [`RunState`] as `Driver::resume` does
//!    (`RunState::new` + `restore_stage` from the stage and shard records).
//!
//! Prints one `key=value` per line (times in seconds, memory in MB); `VmHWM` (peak resident
//! memory) is read from `/proc/self/status` after step 3 and again at the end.
//!
//! ```sh
//! concurrent-scale-bench --nats-url nats://127.0.0.1:4222 [--objects 1000000]
//!                        [--shard-size 100] [--state-dir DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use concurrent_proto::{InputObject, OutputObject, ShardResult, ShardStatus, WIRE_VERSION};
use concurrent_scheduler::dag::Partition;
use concurrent_scheduler::driver::publish_shards;
use concurrent_scheduler::plan::{Sharding, shard_objects};
use concurrent_scheduler::queue::Queue;
use concurrent_scheduler::run_state::{RunState, ShardOutcome, StageStatus};
use concurrent_scheduler::store::{ShardRecord, StageRecord, Store};

const STAGE: &str = "thumbnails";

struct Args {
    nats_url: String,
    objects: usize,
    shard_size: u32,
    state_dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        nats_url: std::env::var("NATS_URL").unwrap_or_default(),
        objects: 1_000_000,
        shard_size: 100,
        state_dir: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-url" => args.nats_url = value()?,
            "--objects" => args.objects = value()?.parse().context("--objects")?,
            "--shard-size" => args.shard_size = value()?.parse().context("--shard-size")?,
            "--state-dir" => args.state_dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}; see the top of benches/src/bin/scale.rs"),
        }
    }
    if args.nats_url.is_empty() {
        bail!("--nats-url (or NATS_URL) is required");
    }
    Ok(args)
}

/// Peak resident set size of this process so far, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A listing like the one `file://` input of a million images gives.
fn listing(count: usize) -> Vec<InputObject> {
    (0..count)
        .map(|i| {
            let path = format!("set-{:03}/img-{i:07}.jpg", i % 1000);
            InputObject { uri: format!("file:///data/raw-images/{path}"), path, size: Some(20_000), upstream_run: None }
        })
        .collect()
}

fn report(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let temp = tempfile::tempdir()?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let run_id = format!("scale{}", std::process::id());
    report("objects", args.objects);
    report("rss_start_mb", format!("{:.1}", peak_rss_mb()));

    let t = Instant::now();
    let objects = listing(args.objects);
    report("listing_s", format!("{:.3}", t.elapsed().as_secs_f64()));
    report("rss_listing_mb", format!("{:.1}", peak_rss_mb()));

    let queue = Queue::connect(&args.nats_url).await.context("connecting to NATS")?;
    let store = Store::open(&state_dir.join("state")).context("opening the store")?;

    // Partition + publish: the part of a stage start that grows with its objects.
    let start = Instant::now();
    let how = Partition::Object { shard_size: Some(args.shard_size), shards: None };
    let planned = shard_objects(objects, &[], &how, 10)?;
    let partition_s = start.elapsed().as_secs_f64();
    let Sharding::Fixed(planned_shards) = planned.sharding else { bail!("a fixed shard_size cuts shards up front") };
    let shards = planned_shards.len() as u32;
    let record = StageRecord::new(StageStatus::Running, shards, planned.objects);
    store.put_stage(&run_id, STAGE, &record)?;
    store.flush().await?;
    queue.create_shard_consumer(&run_id, STAGE, 3).await?;
    let publish_start = Instant::now();
    publish_shards(&queue, &store, &run_id, STAGE, planned_shards, record).await?;
    let publish_s = publish_start.elapsed().as_secs_f64();
    let total_s = start.elapsed().as_secs_f64();
    report("shards", shards);
    report("partition_s", format!("{partition_s:.3}"));
    report("publish_s", format!("{publish_s:.3}"));
    report("partition_publish_s", format!("{total_s:.3}"));
    report("rss_peak_publish_mb", format!("{:.1}", peak_rss_mb()));

    // Every shard decided, as results would leave it: the largest state a resume reads.
    let t = Instant::now();
    for shard in 0..shards {
        let per_shard = args.shard_size as usize;
        let outputs = (0..per_shard)
            .map(|i| {
                let path = format!("set-{:03}/img-{:07}.jpg", i % 1000, shard as usize * per_shard + i);
                OutputObject {
                    uri: format!("file:///state/outputs/{run_id}/{STAGE}/{shard}/{path}"),
                    path,
                    size: 4_000,
                }
            })
            .collect();
        let result = ShardResult {
            v: WIRE_VERSION,
            run_id: run_id.clone(),
            stage: STAGE.into(),
            shard,
            attempt: 1,
            last_attempt: true,
            worker: "local-1-1".into(),
            cluster: "local".into(),
            status: ShardStatus::Succeeded,
            permanent: false,
            mlflow_run_id: None,
            outputs,
            duration_s: 1.0,
            objects_in: per_shard as u64,
            bytes_in: 2_000_000,
            bytes_out: 400_000,
            speculative: false,
        };
        let record = ShardRecord {
            outcome: ShardOutcome::Succeeded,
            attempts: vec![1],
            decided_by: Some(result),
            duplicates: 0,
        };
        store.put_shard(&run_id, STAGE, shard, &record)?;
    }
    store.flush().await?;
    report("record_results_s", format!("{:.3}", t.elapsed().as_secs_f64()));
    drop(store);

    // A restarted scheduler: reopen, rebuild the run state from the records.
    let t = Instant::now();
    let store = Store::open(&state_dir.join("state")).context("reopening the store")?;
    let after: Vec<String> = Vec::new();
    let mut state = RunState::new([(STAGE, after.as_slice())]);
    let record = store.stage(&run_id, STAGE)?.context("the stage record is missing")?;
    let mut outcomes = vec![ShardOutcome::Pending; record.shards_total as usize];
    for (index, shard) in store.shards(&run_id, STAGE)? {
        if let Some(slot) = outcomes.get_mut(index as usize) {
            *slot = shard.outcome;
        }
    }
    state.restore_stage(STAGE, record.status, outcomes, record.objects_in, 0);
    let load_s = t.elapsed().as_secs_f64();
    if state.backlog(STAGE) != 0 {
        bail!("the restored stage has {} undecided shards; expected none", state.backlog(STAGE));
    }
    report("load_state_s", format!("{load_s:.3}"));
    report("rss_peak_mb", format!("{:.1}", peak_rss_mb()));
    queue.remove_stage(&run_id, STAGE).await?;
    Ok(())
}
