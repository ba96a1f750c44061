//! The partition rules of DESIGN §2: `object`, `directory`, `key` and `none`.

use std::cmp::Ordering;

use concurrent_proto::InputObject;

use super::PartitionError;
use crate::dag::Partition;

/// Cuts `objects` into shards by `how`; `parallelism` sets the default shard count
/// (`4 × parallelism`). Zero objects give zero shards; every shard is non-empty and sorted by
/// path; shards come in path (or directory, or key) order.
pub fn partition(
    mut objects: Vec<InputObject>,
    how: &Partition,
    parallelism: u32,
) -> Result<Vec<Vec<InputObject>>, PartitionError> {
    if parallelism == 0 {
        return Err(PartitionError::Zero {
            field: "parallelism",
        });
    }
    if let Partition::Object { shard_size, shards } | Partition::Key {
        shard_size, shards, ..
    } = how
    {
        check_sizes(*shard_size, *shards)?;
    }
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    match how {
        Partition::Object { shard_size, shards } => {
            objects.sort_unstable_by(by_path);
            let sizes = shard_sizes(objects.len(), *shard_size, *shards, parallelism);
            Ok(cut(objects, sizes))
        }
        Partition::None => {
            objects.sort_unstable_by(by_path);
            Ok(vec![objects])
        }
        Partition::Directory => {
            objects.sort_unstable_by(|a, b| {
                split_dir(&a.path)
                    .cmp(&split_dir(&b.path))
                    .then_with(|| a.uri.cmp(&b.uri))
            });
            let runs = run_lengths(&objects, |a, b| parent(&a.path) == parent(&b.path));
            Ok(cut(objects, runs))
        }
        Partition::Key {
            pattern,
            shard_size,
            shards,
        } => by_key(objects, pattern, *shard_size, *shards, parallelism),
    }
}

fn check_sizes(shard_size: Option<u32>, shards: Option<u32>) -> Result<(), PartitionError> {
    match (shard_size, shards) {
        (Some(_), Some(_)) => Err(PartitionError::BothSizes),
        (Some(0), _) => Err(PartitionError::Zero { field: "shard_size" }),
        (_, Some(0)) => Err(PartitionError::Zero { field: "shards" }),
        _ => Ok(()),
    }
}

fn by_path(a: &InputObject, b: &InputObject) -> Ordering {
    a.path.cmp(&b.path).then_with(|| a.uri.cmp(&b.uri))
}

/// `(parent directory, file name)`; objects at the root have the directory `""`.
fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn parent(path: &str) -> &str {
    split_dir(path).0
}

/// Objects by key, keys grouped into shards like objects are by `object`.
fn by_key(
    objects: Vec<InputObject>,
    pattern: &regex::Regex,
    shard_size: Option<u32>,
    shards: Option<u32>,
    parallelism: u32,
) -> Result<Vec<Vec<InputObject>>, PartitionError> {
    let mut locations = pattern.capture_locations();
    let mut keyed = Vec::with_capacity(objects.len());
    for object in objects {
        let span = pattern
            .captures_read(&mut locations, &object.path)
            .and_then(|_| locations.get(1));
        let Some((start, end)) = span else {
            return Err(PartitionError::NoKey {
                path: object.path,
                pattern: pattern.as_str().to_string(),
            });
        };
        keyed.push((start, end, object));
    }
    keyed.sort_unstable_by(|(s1, e1, a), (s2, e2, b)| {
        a.path[*s1..*e1]
            .cmp(&b.path[*s2..*e2])
            .then_with(|| by_path(a, b))
    });
    let key_runs = run_lengths(&keyed, |(s1, e1, a), (s2, e2, b)| {
        a.path[*s1..*e1] == b.path[*s2..*e2]
    });
    let keys_per_shard = shard_sizes(key_runs.len(), shard_size, shards, parallelism);
    let mut runs = key_runs.into_iter();
    let sizes = keys_per_shard
        .into_iter()
        .map(|keys| runs.by_ref().take(keys).sum())
        .collect();
    let objects = keyed.into_iter().map(|(_, _, o)| o).collect();
    Ok(cut(objects, sizes))
}

/// Lengths of the runs of consecutive items that `same` says belong together.
fn run_lengths<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<usize> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=items.len() {
        if i == items.len() || !same(&items[i - 1], &items[i]) {
            runs.push(i - start);
            start = i;
        }
    }
    runs
}

/// Sizes of the shards `n` items are cut into: chunks of `shard_size`, or `shards` (default
/// `4 × parallelism`, at most `n`) near-equal shards, larger ones first.
fn shard_sizes(
    n: usize,
    shard_size: Option<u32>,
    shards: Option<u32>,
    parallelism: u32,
) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if let Some(size) = shard_size {
        let size = (size as usize).max(1);
        let mut sizes = vec![size; n / size];
        if n % size != 0 {
            sizes.push(n % size);
        }
        return sizes;
    }
    let wanted = shards.map_or(4 * u64::from(parallelism), u64::from);
    let count = usize::try_from(wanted).unwrap_or(usize::MAX).clamp(1, n);
    let (base, extra) = (n / count, n % count);
    (0..count).map(|i| base + usize::from(i < extra)).collect()
}

/// Splits sorted `objects` into consecutive shards of the given sizes (which sum to the length).
fn cut(objects: Vec<InputObject>, sizes: Vec<usize>) -> Vec<Vec<InputObject>> {
    let mut rest = objects.into_iter();
    sizes
        .into_iter()
        .map(|size| rest.by_ref().take(size).collect())
        .collect()
}
