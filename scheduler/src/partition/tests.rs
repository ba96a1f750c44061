//! Tests of selection and partitioning: each mode, the edge cases, and proptest invariants.

use concurrent_proto::InputObject;
use proptest::prelude::*;
use regex::Regex;

use super::*;
use crate::dag::Partition;

fn obj(path: &str) -> InputObject {
    InputObject { path: path.to_string(), uri: format!("file:///in/{path}"), size: None, upstream_run: None }
}

fn objs(paths: &[&str]) -> Vec<InputObject> {
    paths.iter().map(|p| obj(p)).collect()
}

fn paths(shards: &[Vec<InputObject>]) -> Vec<Vec<&str>> {
    shards.iter().map(|s| s.iter().map(|o| o.path.as_str()).collect()).collect()
}

fn object(shard_size: Option<u32>, shards: Option<u32>) -> Partition {
    Partition::Object { shard_size, shards }
}

fn key(pattern: &str, shard_size: Option<u32>, shards: Option<u32>) -> Partition {
    Partition::Key { pattern: Regex::new(pattern).unwrap(), shard_size, shards }
}

#[test]
fn object_by_shard_size_sorts_and_cuts() {
    let got = partition(objs(&["e", "a", "d", "c", "b"]), &object(Some(2), None), 1).unwrap();
    assert_eq!(paths(&got), [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
}

#[test]
fn object_by_shard_count_is_balanced() {
    let input = objs(&["a", "b", "c", "d", "e", "f", "g"]);
    let got = partition(input, &object(None, Some(3)), 1).unwrap();
    assert_eq!(paths(&got), [vec!["a", "b", "c"], vec!["d", "e"], vec!["f", "g"]]);
}

#[test]
fn object_default_is_four_shards_per_worker() {
    let input: Vec<_> = (0..100).map(|i| obj(&format!("{i:03}"))).collect();
    let got = partition(input, &object(None, None), 2).unwrap();
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|s| s.len() == 12 || s.len() == 13));
    let few = partition(objs(&["a", "b"]), &object(None, None), 10).unwrap();
    assert_eq!(paths(&few), [vec!["a"], vec!["b"]]);
}

#[test]
fn more_shards_than_objects_gives_one_object_per_shard() {
    let got = partition(objs(&["b", "a", "c"]), &object(None, Some(10)), 1).unwrap();
    assert_eq!(paths(&got), [vec!["a"], vec!["b"], vec!["c"]]);
}

#[test]
fn shard_size_larger_than_input_gives_one_shard() {
    let got = partition(objs(&["b", "a"]), &object(Some(100), None), 1).unwrap();
    assert_eq!(paths(&got), [vec!["a", "b"]]);
}

#[test]
fn zero_objects_give_zero_shards_in_every_mode() {
    for how in
        [object(None, None), object(Some(3), None), Partition::Directory, key("(.*)", None, None), Partition::None]
    {
        assert!(partition(Vec::new(), &how, 4).unwrap().is_empty(), "{how:?}");
    }
}

#[test]
fn one_object_gives_one_shard_in_every_mode() {
    for how in [object(None, Some(5)), Partition::Directory, key("^(\\w+)", None, None), Partition::None] {
        let got = partition(objs(&["x/y.jpg"]), &how, 4).unwrap();
        assert_eq!(paths(&got), [vec!["x/y.jpg"]], "{how:?}");
    }
}

#[test]
fn directory_gives_one_shard_per_parent_in_directory_order() {
    let input = objs(&["a/c", "a/b/x", "root.txt", "a/d", "a/b/w", "b/z"]);
    let got = partition(input, &Partition::Directory, 1).unwrap();
    assert_eq!(paths(&got), [vec!["root.txt"], vec!["a/c", "a/d"], vec!["a/b/w", "a/b/x"], vec!["b/z"]]);
}

#[test]
fn key_groups_equal_keys_and_never_splits_them() {
    let input = objs(&["s2/1", "s1/2", "s3/1", "s1/1", "s2/2", "s1/3"]);
    let got = partition(input, &key("^(s\\d)/", Some(2), None), 1).unwrap();
    assert_eq!(paths(&got), [vec!["s1/1", "s1/2", "s1/3", "s2/1", "s2/2"], vec!["s3/1"]]);
    let input = objs(&["s2/1", "s1/2", "s3/1", "s1/1"]);
    let got = partition(input, &key("^(s\\d)/", None, Some(10)), 1).unwrap();
    assert_eq!(paths(&got), [vec!["s1/1", "s1/2"], vec!["s2/1"], vec!["s3/1"]]);
}

#[test]
fn unmatched_key_is_an_error_naming_the_object() {
    let err = partition(objs(&["s1/a", "other/b"]), &key("^(s\\d)/", None, None), 1).unwrap_err();
    assert!(matches!(&err, PartitionError::NoKey { path, .. } if path == "other/b"));
    assert_eq!(err.to_string(), "object \"other/b\" does not match the key pattern \"^(s\\\\d)/\"");
}

#[test]
fn none_puts_everything_in_one_sorted_shard() {
    let got = partition(objs(&["b", "a/z", "a"]), &Partition::None, 3).unwrap();
    assert_eq!(paths(&got), [vec!["a", "a/z", "b"]]);
}

#[test]
fn bad_sizes_are_errors_not_panics() {
    let err = partition(objs(&["a"]), &object(Some(0), None), 1).unwrap_err();
    assert_eq!(err.to_string(), "partition.shard_size must be at least 1");
    assert!(partition(objs(&["a"]), &object(Some(1), Some(1)), 1).is_err());
    assert!(partition(objs(&["a"]), &object(None, None), 0).is_err());
}

#[test]
fn include_without_slash_matches_file_names_at_any_depth() {
    let input = objs(&["a/b/c.jpg", "c.jpg", "a/c.png", "jpg/x.txt"]);
    let got = select(input, &["*.jpg".to_string()]).unwrap();
    let got: Vec<_> = got.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(got, ["a/b/c.jpg", "c.jpg"]);
}

#[test]
fn include_with_slash_is_anchored_at_the_root() {
    let input = objs(&["raw/a.png", "x/raw/b.png", "raw/sub/c.png", "raw/d.jpg"]);
    let got = select(input, &["raw/*.png".to_string()]).unwrap();
    let got: Vec<_> = got.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(got, ["raw/a.png"]);
    let input = objs(&["raw/a.png", "x/raw/b.png", "raw/sub/c.png"]);
    let got = select(input, &["/raw/**/*.png".to_string()]).unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn include_of_a_directory_takes_everything_under_it() {
    let input = objs(&["logs/a", "x/logs/b/c", "keep"]);
    let got = select(input, &["logs".to_string()]).unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn empty_include_keeps_all_and_bad_globs_are_errors() {
    assert_eq!(select(objs(&["a", "b"]), &[]).unwrap().len(), 2);
    let err = select(objs(&["a"]), &["a[".to_string()]).unwrap_err();
    assert!(err.to_string().starts_with("invalid include glob \"a[\""), "{err}");
    assert!(select(objs(&["a"]), &["/".to_string()]).is_err());
}

fn arb_paths() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[abc]{1,2}(/[abc]{1,2}){0,2}", 0..60)
}

fn arb_partition() -> impl Strategy<Value = Partition> {
    let sizes = prop_oneof![
        Just((None, None)),
        (1u32..8).prop_map(|s| (Some(s), None)),
        (1u32..8).prop_map(|n| (None, Some(n))),
    ];
    (0u8..4, sizes).prop_map(|(mode, (shard_size, shards))| match mode {
        0 => object(shard_size, shards),
        1 => Partition::Directory,
        2 => key("^([^/]*)", shard_size, shards),
        _ => Partition::None,
    })
}

proptest! {
    #[test]
    fn every_object_lands_in_exactly_one_sorted_nonempty_shard(
        input in arb_paths(), how in arb_partition(), parallelism in 1u32..5,
    ) {
        let objects: Vec<_> = input.iter().map(|p| obj(p)).collect();
        let shards = partition(objects, &how, parallelism).unwrap();
        let mut seen: Vec<&str> = shards.iter().flatten().map(|o| o.path.as_str()).collect();
        seen.sort_unstable();
        let mut want: Vec<&str> = input.iter().map(String::as_str).collect();
        want.sort_unstable();
        prop_assert_eq!(seen, want);
        for shard in &shards {
            prop_assert!(!shard.is_empty());
            prop_assert!(shard.windows(2).all(|w| w[0].path <= w[1].path));
        }
        let group = |p: &str| -> String {
            match &how {
                Partition::Directory => p.rsplit_once('/').map_or("", |x| x.0).to_string(),
                Partition::Key { .. } => p.split('/').next().unwrap_or("").to_string(),
                _ => String::new(),
            }
        };
        if matches!(how, Partition::Directory | Partition::Key { .. }) {
            // A key (directory) is never split, and shards come in key order.
            let per_shard: Vec<Vec<String>> = shards
                .iter()
                .map(|s| s.iter().map(|o| group(&o.path)).collect())
                .collect();
            for (i, keys) in per_shard.iter().enumerate() {
                for later in &per_shard[i + 1..] {
                    for k in keys {
                        prop_assert!(later.iter().all(|l| l > k));
                    }
                }
            }
        }
        if let Partition::Object { shard_size: None, shards: Some(n) } = how {
            prop_assert_eq!(shards.len(), (n as usize).min(input.len()));
            let (min, max) = shards.iter().fold((usize::MAX, 0), |(a, b), s| (a.min(s.len()), b.max(s.len())));
            prop_assert!(shards.is_empty() || max - min <= 1);
        }
        if let Partition::Object { shard_size: Some(s), .. } = how {
            prop_assert!(shards.iter().all(|sh| sh.len() <= s as usize));
        }
    }
}
