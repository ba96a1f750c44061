//! Criterion benches of the pure core: partitioning a million-object listing in every mode,
//! shard and result message encode/decode, validating a 200-stage DAG and DAGs at the parsing
//! limits (10,000 stages; 100,000-deep nesting refused), one autoscaler
//! decision over 1,000 stages, one placement decision of 1,000 stages on 10 clusters, and
//! applying 10,000 results to the run state.
//!
//! `cargo bench -p concurrent-benches -- --quick` runs them all in about a minute.

use std::time::Duration;

use concurrent_proto::{InputObject, OutputObject, ShardMsg, ShardResult, ShardStatus, WIRE_VERSION, decode, encode};
use concurrent_scheduler::autoscale::{StageDemand, worker_targets};
use concurrent_scheduler::dag::{MAX_STAGES, Overrides, Partition, parse_dag};
use concurrent_scheduler::partition::partition;
use concurrent_scheduler::placement::{Amount, Cluster, DEFAULT_BURST_AFTER, Placed, StageNeed, place};
use concurrent_scheduler::run_state::{AttemptResult, RunState};
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
        (
            "key",
            Partition::Key {
                pattern: regex::Regex::new(r"^(set-\d+)/").expect("the key pattern compiles"),
                shard_size: Some(10),
                shards: None,
            },
        ),
        ("none", Partition::None),
    ];
    let mut group = c.benchmark_group("partition 1M objects");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, mode) in modes {
        group.bench_function(name, |b| {
            b.iter_batched(|| objects.clone(), |objects| partition(objects, &mode, 10).unwrap(), BatchSize::LargeInput)
        });
    }
    group.finish();
}

fn result(shard: u32, outputs: usize) -> ShardResult {
    ShardResult {
        v: WIRE_VERSION,
        run_id: "mfx0a1b2c3".into(),
        stage: "thumbnails".into(),
        shard,
        attempt: 1,
        last_attempt: true,
        worker: "local-4242-7".into(),
        cluster: "local".into(),
        status: ShardStatus::Succeeded,
        permanent: false,
        mlflow_run_id: Some("0123456789abcdef0123456789abcdef".into()),
        outputs: (0..outputs)
            .map(|i| OutputObject {
                path: format!("set-{:03}/img-{i:07}.jpg", i % 1000),
                uri: format!(
                    "mlflow-artifacts:/1/0123456789abcdef/artifacts/outputs/set-{:03}/img-{i:07}.jpg",
                    i % 1000
                ),
                size: 4_000,
            })
            .collect(),
        duration_s: 1.25,
        objects_in: outputs as u64,
        bytes_in: 2_000_000,
        bytes_out: 400_000,
        speculative: false,
    }
}

fn messages(c: &mut Criterion) {
    let shard = ShardMsg {
        v: WIRE_VERSION,
        run_id: "mfx0a1b2c3".into(),
        stage: "thumbnails".into(),
        shard: 42,
        shards: 10_000,
        inputs: listing(100),
        speculative: false,
    };
    let bytes = encode(&shard);
    let mut group = c.benchmark_group("messages");
    group.bench_function("encode a 100-object shard", |b| b.iter(|| encode(&shard)));
    group.bench_function("decode a 100-object shard", |b| b.iter(|| decode::<ShardMsg>(&bytes).unwrap()));
    let result = result(42, 100);
    let bytes = encode(&result);
    group.bench_function("encode a 100-output result", |b| b.iter(|| encode(&result)));
    group.bench_function("decode a 100-output result", |b| b.iter(|| decode::<ShardResult>(&bytes).unwrap()));
    group.finish();
}

/// A 200-stage DAG text: `s000` first, then diamonds (`a` before `b` and `c`, both before
/// `d`, which is the next diamond's `a`), every stage on one tiny MLproject.
fn dag_text(stages: usize) -> String {
    let mut text = String::from("name: bench-dag\ninput: none\nstages:\n");
    for i in 0..stages {
        text.push_str(&format!("  s{i:03}:\n    project: ./project\n    parameters: {{size: {i}}}\n"));
        let after = match i {
            0 => vec![],
            _ if i % 3 == 0 => vec![i - 2, i - 1],
            _ if i % 3 == 1 => vec![i - 1],
            _ => vec![i - 2],
        };
        if !after.is_empty() {
            let names: Vec<String> = after.iter().map(|a| format!("s{a:03}")).collect();
            text.push_str(&format!("    after: [{}]\n", names.join(", ")));
        }
    }
    text
}

fn dag_validation(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = dir.path().join("project");
    std::fs::create_dir(&project).expect("the project directory");
    std::fs::write(
        project.join("MLproject"),
        "name: tiny\nentry_points:\n  main:\n    parameters:\n      size: {type: int, default: 1}\n    command: \"true\"\n",
    )
    .expect("the MLproject file");
    let text = dag_text(200);
    let overrides = Overrides::default();
    let dag = parse_dag(&text, dir.path(), &overrides).expect("the generated DAG is valid");
    assert_eq!(dag.stages.len(), 200);
    c.bench_function("validate a 200-stage DAG", |b| b.iter(|| parse_dag(&text, dir.path(), &overrides).unwrap()));

    // The limits: the most stages a DAG may have, in a chain (the longest path for the graph
    // rules), and a small file nested 100,000 deep, refused.
    let chain = chain_text(MAX_STAGES);
    let dag = parse_dag(&chain, dir.path(), &overrides).expect("the generated chain is valid");
    assert_eq!(dag.order().len(), MAX_STAGES);
    let deep = format!("name: deep\ninput: none\nstages: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let refused = parse_dag(&deep, dir.path(), &overrides).expect_err("nesting beyond the limit is refused");
    assert!(refused.to_string().contains("nested more than"), "{refused}");
    let mut group = c.benchmark_group("DAG limits");
    group.sample_size(10);
    group.bench_function("validate and order a 10,000-stage chain", |b| {
        b.iter(|| parse_dag(&chain, dir.path(), &overrides).unwrap().order().len())
    });
    group.bench_function("refuse a 200 KB file nested 100,000 deep", |b| {
        b.iter(|| parse_dag(&deep, dir.path(), &overrides).unwrap_err())
    });
    group.finish();
}

/// `stages` stages in one chain, each after the one before, every stage on one MLproject.
fn chain_text(stages: usize) -> String {
    let mut text = String::from("name: bench-chain\ninput: none\nstages:\n");
    for i in 0..stages {
        let after = if i == 0 { String::new() } else { format!(", after: [s{:05}]", i - 1) };
        text.push_str(&format!("  s{i:05}: {{project: ./project{after}}}\n"));
    }
    text
}

fn core(c: &mut Criterion) {
    let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let none: Vec<String> = Vec::new();
    c.bench_function("apply 10,000 results to a run state", |b| {
        b.iter_batched(
            || {
                let mut run = RunState::new([(names[0].as_str(), none.as_slice())]);
                run.start();
                run.stage_published(&names[0], 10_000, 10_000);
                run
            },
            |mut run| {
                for shard in 0..10_000 {
                    run.apply_result(&names[0], shard, AttemptResult::Succeeded { outputs: 1 });
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
            request: Amount::default(),
            clusters: Vec::new(),
        })
        .collect();
    let local = [Cluster { name: "local".into(), max_workers: 500, other_workers: 0, free_nodes: None }];
    let placed = std::collections::BTreeMap::new();
    c.bench_function("autoscale 1,000 stages", |b| {
        b.iter(|| worker_targets(&demands, &local, &placed, Duration::ZERO, Duration::from_secs(30)))
    });

    // 10 clusters of 20 nodes each; every stage prefers 3 of them, already has a few workers
    // (some Pending long enough to burst) and wants up to 10.
    let clusters: Vec<Cluster> = (0..10)
        .map(|c| Cluster {
            name: format!("cluster-{c}"),
            max_workers: 400,
            other_workers: 10,
            free_nodes: Some(vec![Amount { cpu_millis: 16_000, memory_bytes: 64 << 30, gpus: 0 }; 20]),
        })
        .collect();
    let needs: Vec<StageNeed> = names
        .iter()
        .enumerate()
        .map(|(i, stage)| StageNeed {
            stage: stage.clone(),
            wanted: 1 + (i % 10) as u32,
            request: Amount { cpu_millis: 1000, memory_bytes: 2 << 30, gpus: 0 },
            clusters: (0..3).map(|k| format!("cluster-{}", (i + k) % 10)).collect(),
            placed: vec![Placed {
                cluster: format!("cluster-{}", i % 10),
                running: (i % 3) as u32,
                pending_since: vec![Duration::from_secs((i % 60) as u64)],
            }],
        })
        .collect();
    c.bench_function("placement 1,000 stages on 10 clusters", |b| {
        b.iter(|| place(&clusters, &needs, Duration::from_secs(60), DEFAULT_BURST_AFTER))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = partitioning, messages, dag_validation, core
}
criterion_main!(benches);
