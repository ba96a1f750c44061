//! The S3 listing benchmark of `benches/e2e.sh`: a stage input of many keys on a real
//! S3-protocol server (the script starts moto on loopback and fills a bucket), through the
//! scheduler's own code path.
//!
//! Times what a stage start does with an `s3://` input: [`list_uri`] (the paged listing, with
//! the standard AWS environment — `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, … — pointing at the
//! server), `plan::shard_objects` with `partition: {by: object, shard_size: --shard-size}`, the
//! stage record, the shard consumer and [`publish_shards`] into the real nats-server at
//! `--nats-url`. Fails when the listing does not hold `--objects` keys.
//!
//! Prints one `key=value` per line (times in seconds).
//!
//! ```sh
//! concurrent-s3-listing-bench --nats-url nats://127.0.0.1:4222 --input s3://bench/raw/
//!                             --objects 100000 [--shard-size 100]
//! ```

use std::time::Instant;

use anyhow::{Context, bail};
use concurrent_scheduler::dag::Partition;
use concurrent_scheduler::driver::publish_shards;
use concurrent_scheduler::inputs::list_uri;
use concurrent_scheduler::plan::{Sharding, shard_objects};
use concurrent_scheduler::queue::Queue;
use concurrent_scheduler::run_state::StageStatus;
use concurrent_scheduler::store::{StageRecord, Store};

const STAGE: &str = "thumbnails";

struct Args {
    nats_url: String,
    input: String,
    objects: usize,
    shard_size: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        nats_url: std::env::var("NATS_URL").unwrap_or_default(),
        input: String::new(),
        objects: 0,
        shard_size: 100,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-url" => args.nats_url = value()?,
            "--objects" => args.objects = value()?.parse().context("--objects")?,
            "--shard-size" => args.shard_size = value()?.parse().context("--shard-size")?,
            "--input" => args.input = value()?,
            other => bail!("unknown argument {other}; see the top of benches/src/bin/s3_listing.rs"),
        }
    }
    if args.nats_url.is_empty() || args.input.is_empty() || args.objects == 0 {
        bail!("--nats-url (or NATS_URL), --input and --objects are required");
    }
    Ok(args)
}

fn report(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let temp = tempfile::tempdir()?;
    let run_id = format!("s3list{}", std::process::id());
    let queue = Queue::connect(&args.nats_url).await.context("connecting to NATS")?;
    let store = Store::open(&temp.path().join("state")).context("opening the store")?;

    let start = Instant::now();
    let listed = list_uri(&args.input, None).await.context("listing the bucket")?;
    let list_s = start.elapsed().as_secs_f64();
    let listed_count = listed.objects.len();
    if listed_count != args.objects {
        bail!("listed {listed_count} objects under {}; expected {}", args.input, args.objects);
    }
    let how = Partition::Object { shard_size: Some(args.shard_size), shards: None };
    let planned = shard_objects(listed.objects, &[], &how, 10)?;
    let Sharding::Fixed(planned_shards) = planned.sharding else { bail!("a fixed shard_size cuts shards up front") };
    let shards = planned_shards.len() as u32;
    let record = StageRecord::new(StageStatus::Running, shards, planned.objects);
    store.put_stage(&run_id, STAGE, &record)?;
    store.flush().await?;
    queue.create_shard_consumer(&run_id, STAGE, 3).await?;
    let publish_start = Instant::now();
    publish_shards(&queue, &store, &run_id, STAGE, planned_shards, record).await?;
    let publish_s = publish_start.elapsed().as_secs_f64();
    report("objects", listed_count);
    report("shards", shards);
    report("list_s", format!("{list_s:.3}"));
    report("publish_s", format!("{publish_s:.3}"));
    report("list_partition_publish_s", format!("{:.3}", start.elapsed().as_secs_f64()));
    queue.remove_stage(&run_id, STAGE).await?;
    Ok(())
}
