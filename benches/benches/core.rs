//! Criterion benches of the pure core: partitioning large listings, message encode/decode,
//! the run state machine and the autoscaler.

use concurrent_proto::{InputObject, ShardMsg, WIRE_VERSION, decode, encode};
use concurrent_scheduler::autoscale::{StageDemand, plan_launches};
use concurrent_scheduler::dag::Partition;
use concurrent_scheduler::partition::partition;
use concurrent_scheduler::run_state::RunState;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn listing(count: usize) -> Vec<InputObject> {
    (0..count)
        .map(|i| InputObject {
            path: format!("set-{:03}/img-{i:07}.jpg", i % 1000),
            uri: format!("s3://bucket/raw/set-{:03}/img-{i:07}.jpg", i % 1000),
            size: Some(1000 + i as u64),
            upstream_run: None,
        })
        .collect()
}

fn partitioning(c: &mut Criterion) {
    let objects = listing(1_000_000);
    let modes = [
        ("object", Partition::Object { shard_size: Some(100), shards: None }),
        ("directory", Partition::Directory),
        ("none", Partition::None),
    ];
    let mut group = c.benchmark_group("partition 1M objects");
    group.sample_size(10);
    for (name, mode) in modes {
        group.bench_function(name, |b| {
            b.iter_batched(|| objects.clone(), |objects| partition(objects, &mode, 10).unwrap(), BatchSize::LargeInput)
        });
    }
    group.finish();
}

fn messages(c: &mut Criterion) {
    let shard = ShardMsg {
        v: WIRE_VERSION,
        run_id: "mfx0a1b2c3".into(),
        stage: "thumbnails".into(),
        shard: 42,
        shards: 10_000,
        inputs: listing(100),
    };
    let bytes = encode(&shard);
    c.bench_function("encode a 100-object shard", |b| b.iter(|| encode(&shard)));
    c.bench_function("decode a 100-object shard", |b| b.iter(|| decode::<ShardMsg>(&bytes).unwrap()));
}

fn core(c: &mut Criterion) {
    let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let none: Vec<String> = Vec::new();
    c.bench_function("apply 10,000 results to a run state", |b| {
        b.iter_batched(
            || {
                let mut run = RunState::new([(names[0].as_str(), none.as_slice())]);
                run.start();
                run.stage_published(&names[0], 10_000);
                run
            },
            |mut run| {
                for shard in 0..10_000 {
                    run.apply_result(&names[0], shard, true, false);
                }
                run
            },
            BatchSize::SmallInput,
        )
    });
    let demands: Vec<StageDemand> = names
        .iter()
        .enumerate()
        .map(|(i, stage)| StageDemand {
            stage: stage.clone(),
            parallelism: 1 + (i % 10) as u32,
            backlog: 50,
            running: 0,
        })
        .collect();
    c.bench_function("autoscale 1,000 stages", |b| b.iter(|| plan_launches(&demands, 500, 0)));
}

criterion_group!(benches, partitioning, messages, core);
criterion_main!(benches);
