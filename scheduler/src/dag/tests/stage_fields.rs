//! Each field of a stage: defaults, types and the exact messages.

use super::*;

fn stage_errors(extra: &str) -> Vec<String> {
    errors(&one_stage(extra))
}

fn stage(extra: &str) -> Stage {
    ok(&one_stage(extra)).stages.remove("a").expect("stage a")
}

#[test]
fn defaults() {
    let a = stage("");
    assert_eq!(a.entry_point, "main");
    assert_eq!((a.parallelism, a.retries, a.timeout), (1, 2, None));
    assert_eq!(a.partition, Partition::Object { shard_size: None, shards: None });
    assert_eq!(a.resources, Resources::default());
    assert!(a.include.is_empty() && a.clusters.is_empty() && a.after.is_empty());
    assert_eq!(a.input, None);
    assert_eq!((a.fail_on_empty, a.log_limit), (false, None));
    assert_eq!(a.speculate, Some(crate::run_core::DEFAULT_SPECULATION));
}

#[test]
fn speculate_takes_a_factor_of_the_median_or_a_boolean() {
    use crate::run_core::Speculation;
    assert_eq!(stage("    speculate: false\n").speculate, None);
    assert_eq!(stage("    speculate: true\n").speculate, Some(crate::run_core::DEFAULT_SPECULATION));
    assert_eq!(stage("    speculate: 2\n").speculate, Some(Speculation { percent_of_median: 200 }));
    assert_eq!(stage("    speculate: 4.5\n").speculate, Some(Speculation { percent_of_median: 450 }));
    assert_eq!(stage_errors("    speculate: 1\n"), ["stages.a.speculate: must be above 1 and at most 100, found 1"]);
    assert_eq!(stage_errors("    speculate: -3\n"), ["stages.a.speculate: must be above 1 and at most 100, found -3"]);
    assert_eq!(
        stage_errors("    speculate: off\n"),
        ["stages.a.speculate: expected true, false or a factor of the median above 1 such as 3, found \"off\""]
    );
}

#[test]
fn fail_on_empty_and_log_limit() {
    let a = stage("    fail_on_empty: true\n    log_limit: 10MiB\n");
    assert_eq!((a.fail_on_empty, a.log_limit), (true, Some(10 << 20)));
    assert_eq!(stage("    log_limit: 4096\n").log_limit, Some(4096));
    assert_eq!(stage_errors("    fail_on_empty: 1\n"), ["stages.a.fail_on_empty: expected true or false, found 1"]);
    assert_eq!(
        stage_errors("    log_limit: \"1.5\"\n"),
        ["stages.a.log_limit: expected a size in bytes like 10MiB, 512Ki, 64M or 1048576, found \"1.5\""]
    );
    assert_eq!(stage("    log_limit: 1Ki\n").log_limit, Some(1024));
    assert_eq!(
        stage_errors("    log_limit: 1023\n"),
        ["stages.a.log_limit: must be at least 1024 bytes, found \"1023\""]
    );
}

#[test]
fn unknown_fields_are_named() {
    assert_eq!(stage_errors("    paralelism: 3\n"), ["stages.a.paralelism: unknown field"]);
    assert_eq!(stage_errors("    resources: {cpus: 1}\n"), ["stages.a.resources.cpus: unknown field"]);
    assert_eq!(stage_errors("    partition: {by: object, size: 3}\n"), ["stages.a.partition.size: unknown field"]);
}

#[test]
fn integers() {
    assert_eq!(
        stage_errors("    parallelism: ten\n"),
        ["stages.a.parallelism: expected a positive integer, found \"ten\""]
    );
    assert_eq!(stage_errors("    parallelism: 0\n"), ["stages.a.parallelism: must be at least 1"]);
    assert_eq!(
        stage_errors("    parallelism: 2.5\n"),
        ["stages.a.parallelism: expected a positive integer, found 2.5"]
    );
    assert_eq!(stage_errors("    retries: 101\n"), ["stages.a.retries: must be at most 100"]);
    assert_eq!(stage_errors("    retries: -1\n"), ["stages.a.retries: must be at least 0"]);
    assert_eq!(stage("    retries: 0\n").retries, 0);
    // Beyond 64 bits (kept as digits by the YAML layer) and beyond 128 bits (read as a float).
    for huge in ["99999999999999999999", "999999999999999999999999999999999999999999"] {
        assert_eq!(
            stage_errors(&format!("    parallelism: {huge}\n")),
            ["stages.a.parallelism: must be at most 4294967295"]
        );
    }
    assert_eq!(stage_errors("    retries: -99999999999999999999\n"), ["stages.a.retries: must be at least 0"]);
    assert_eq!(
        stage_errors("    resources: {gpu: [1]}\n"),
        ["stages.a.resources.gpu: expected a non-negative integer, found a list"]
    );
}

#[test]
fn timeouts() {
    assert_eq!(stage("    timeout: 1h30m\n").timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(stage_errors("    timeout: 0s\n"), ["stages.a.timeout: must be greater than 0"]);
    assert_eq!(
        stage_errors("    timeout: 600\n"),
        ["stages.a.timeout: expected a duration like 10m, 30s, 1h30m or 500ms, found 600"]
    );
    assert_eq!(
        stage_errors("    timeout: soon\n"),
        ["stages.a.timeout: expected a duration like 10m, 30s, 1h30m or 500ms, found \"soon\""]
    );
}

#[test]
fn resources() {
    let a = stage("    resources: {cpu: 500m, memory: 512Mi, gpu: 2}\n");
    assert_eq!(a.resources, Resources { cpu: Some("500m".into()), memory: Some("512Mi".into()), gpu: 2 });
    assert_eq!(stage("    resources: {cpu: 1}\n").resources.cpu.as_deref(), Some("1"));
    assert_eq!(stage("    resources: {cpu: 0.5}\n").resources.cpu.as_deref(), Some("0.5"));
    assert_eq!(
        stage_errors("    resources: {memory: 2GB}\n"),
        ["stages.a.resources.memory: expected a Kubernetes quantity like 1, 500m, 2Gi or 512Mi, \
          found \"2GB\""]
    );
}

#[test]
fn partitions() {
    let p = |extra: &str| stage(extra).partition;
    assert_eq!(p("    partition: directory\n"), Partition::Directory);
    assert_eq!(p("    partition: {by: none}\n"), Partition::None);
    assert_eq!(p("    partition: {shards: 3}\n"), Partition::Object { shard_size: None, shards: Some(3) });
    assert_eq!(
        stage_errors("    partition: {by: object, shard_size: 0}\n"),
        ["stages.a.partition.shard_size: must be at least 1"]
    );
    assert_eq!(
        stage_errors("    partition: {shard_size: 2, shards: 3}\n"),
        ["stages.a.partition: shard_size and shards cannot both be set"]
    );
    assert_eq!(
        stage_errors("    partition: {by: rows}\n"),
        ["stages.a.partition.by: expected one of object, directory, key, none, found \"rows\""]
    );
    assert_eq!(stage_errors("    partition: {by: key}\n"), ["stages.a.partition.pattern: required with by: key"]);
    assert_eq!(
        stage_errors("    partition: {by: key, pattern: \"(a)(b)\"}\n"),
        ["stages.a.partition.pattern: must have exactly one capture group, found 2"]
    );
    assert_eq!(
        stage_errors("    partition: {by: key, pattern: \"^[^/]+\"}\n"),
        ["stages.a.partition.pattern: must have exactly one capture group, found 0"]
    );
    assert_eq!(
        stage_errors("    partition: {by: key, pattern: \"([a-z\"}\n"),
        ["stages.a.partition.pattern: invalid regex: unclosed character class"]
    );
    assert_eq!(
        stage_errors("    partition: {by: key, pattern: \"(a\"}\n"),
        ["stages.a.partition.pattern: invalid regex: unclosed group"]
    );
    assert_eq!(
        stage_errors("    partition: {by: object, pattern: \"(a)\"}\n"),
        ["stages.a.partition.pattern: only allowed with by: key"]
    );
    assert_eq!(
        stage_errors("    partition: {by: directory, shards: 2}\n"),
        ["stages.a.partition: shard_size and shards are not allowed with by: directory"]
    );
}

#[test]
fn include_globs_must_compile() {
    assert_eq!(stage("    include: \"*.jpg\"\n").include, ["*.jpg"]);
    assert_eq!(
        stage_errors("    include: [\"*.jpg\", \"[a-\"]\n"),
        ["stages.a.include[1]: invalid include glob \"[a-\": unclosed character class; missing ']'"]
    );
    assert_eq!(stage_errors("    include: [\"/\"]\n"), ["stages.a.include[0]: include glob \"/\" is empty"]);
    assert_eq!(stage_errors("    include: {a: 1}\n"), ["stages.a.include: expected a list of strings, found a map"]);
}

#[test]
fn inputs() {
    assert_eq!(stage("    input: s3://bucket/x\n").input, Some(InputSource::Uri("s3://bucket/x".into())));
    let want = url::Url::from_file_path(data_dir().join("raw")).unwrap().to_string();
    assert_eq!(stage("    input: file:raw\n").input, Some(InputSource::Uri(want)));
    assert_eq!(stage("    input: none\n").input, Some(InputSource::None));
    assert_eq!(stage_errors("    input: s3://\n"), ["stages.a.input: s3 URI needs a bucket or host, found \"s3://\""]);
}

#[test]
fn clusters_image_and_after_lists() {
    let a = stage("    clusters: eks\n    image: reg/x:1\n");
    assert_eq!(a.clusters, ["eks"]);
    assert_eq!(stage_errors("    clusters: [\"\"]\n"), ["stages.a.clusters[0]: must not be empty"]);
    assert_eq!(stage_errors("    image: 3\n"), ["stages.a.image: expected a string, found 3"]);
}

#[test]
fn huge_values_are_shortened_in_messages() {
    let huge = "x".repeat(1_000_000);
    assert_eq!(
        stage_errors(&format!("    partition: {{by: {huge}}}\n")),
        [format!(
            "stages.a.partition.by: expected one of object, directory, key, none, found \"{}…\" (1000000 characters)",
            "x".repeat(100)
        )]
    );
}

#[test]
fn odd_keys_are_quoted_in_places() {
    assert_eq!(stage_errors("    \"\": 1\n"), ["stages.a.\"\": unknown field"]);
    assert_eq!(stage_errors("    my field: 1\n"), ["stages.a.\"my field\": unknown field"]);
    assert_eq!(
        stage_errors("    parameters: {\"a.b\": [1]}\n"),
        ["stages.a.parameters.\"a.b\": expected a string, number or boolean, found a list"]
    );
}

#[test]
fn image_is_an_image_reference() {
    assert_eq!(
        stage("    image: registry.example.com:5000/ml/thumbs:1.2\n").image.as_deref(),
        Some("registry.example.com:5000/ml/thumbs:1.2")
    );
    assert_eq!(stage("    image: python:3.12-slim\n").image.as_deref(), Some("python:3.12-slim"));
    let errors = stage_errors("    image: Registry/Thumbs:1\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("stages.a.image: `Registry/Thumbs:1` is not an image reference ("), "{errors:?}");
    assert_eq!(stage_errors("    image: \"\"\n").len(), 1);
}
