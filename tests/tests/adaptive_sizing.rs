//! End to end: a stage that sets neither `shard_size` nor `shards` is sized adaptively. Its
//! shards are cut in waves (probes first, then larger shards once their results are in), every
//! object is copied exactly once, and a scheduler killed between waves resumes from the cuts it
//! recorded without losing or repeating an object.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(300);
const OBJECTS: usize = 300;

/// `OBJECTS` small files under `dir/raw`, some in subdirectories; their relative paths, sorted.
fn make_inputs(dir: &Path) -> Vec<String> {
    for i in 0..OBJECTS {
        let path = dir.join("raw").join(format!("d{}/f{i:03}.txt", i % 3));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("object {i}\n")).unwrap();
    }
    files_under(&dir.join("raw"))
}

/// A one-stage DAG copying its inputs with the `failing` example project, sleeping `sleep` s
/// per shard, with no `partition`.
fn copy_dag(dir: &Path, sleep: f64) -> PathBuf {
    let path = dir.join("dag.yaml");
    let text = format!(
        "name: adaptive\ninput: file:./raw\nstages:\n  copy:\n    project: {}/failing\n    parallelism: 2\n    parameters: {{sleep: {sleep}}}\n",
        example_projects().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The stage's outputs with `--tracking none`: files per shard directory, by shard number.
fn shard_outputs(dir: &Path) -> BTreeMap<u32, Vec<String>> {
    let outputs = dir.join("state/outputs");
    let run = std::fs::read_dir(&outputs).unwrap().next().expect("a run's outputs").unwrap().path();
    let mut shards: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for file in files_under(&run.join("copy")) {
        let (shard, path) = file.split_once('/').unwrap();
        shards.entry(shard.parse().expect("a shard directory")).or_default().push(path.to_string());
    }
    shards
}

/// Asserts that every input was copied exactly once, into shards numbered 0..n.
fn assert_each_object_once(shards: &BTreeMap<u32, Vec<String>>, inputs: &[String]) {
    let mut copied: Vec<String> = shards.values().flatten().cloned().collect();
    copied.sort();
    assert_eq!(copied, inputs, "every object copied exactly once");
    let numbers: Vec<u32> = shards.keys().copied().collect();
    assert_eq!(numbers, (0..shards.len() as u32).collect::<Vec<_>>(), "shard numbers are dense");
}

#[test]
fn a_stage_without_a_shard_size_is_cut_in_waves_and_copies_every_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path());
    let dag = copy_dag(dir.path(), 0.0);

    let validated = concurrent(&["validate", dag.to_str().unwrap()], &[], dir.path(), DEADLINE);
    assert_eq!(validated.status.code(), Some(0), "{}", describe(&validated));
    let stdout = String::from_utf8_lossy(&validated.stdout);
    assert!(stdout.contains(&format!("{OBJECTS} objects, shards sized adaptively")), "{stdout}");

    let output = concurrent(
        &["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"],
        &[],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let shards = shard_outputs(dir.path());
    assert_each_object_once(&shards, &inputs);
    let sizes: Vec<usize> = shards.values().map(Vec::len).collect();
    assert_eq!(sizes[..2], [1, 4], "a probe of 1 object and one of 4 first, one per worker: {sizes:?}");
    assert!(sizes.len() > 2 && sizes[2..].iter().all(|&n| n > 4), "then larger shards, cut later: {sizes:?}");
}

#[test]
fn a_scheduler_killed_between_waves_resumes_from_its_recorded_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path());
    let dag = copy_dag(dir.path(), 1.0);
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"];
    let mut run = spawn_concurrent(&args, &[], dir.path(), "run");
    let mut run_id = None;
    wait_until("the run id on stderr", DEADLINE, || {
        run_id = run.run_id();
        run_id.is_some()
    });
    let run_id = run_id.unwrap();
    // The first probe's output is in: the next wave is cut when the probes' results are read.
    let first = dir.path().join("state/outputs").join(&run_id).join("copy/0");
    wait_until("the first shard's output", DEADLINE, || first.exists());
    kill_then_resume(&mut run, &run_id, &[], dir.path(), DEADLINE);
    let shards = shard_outputs(dir.path());
    assert_each_object_once(&shards, &inputs);
    assert_eq!(shards[&0].len(), 1, "the probe decided before the kill stays as it was");
    assert!(shards.len() > 2, "the rest was cut after the resume: {shards:?}");
}
