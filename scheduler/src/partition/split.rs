//! The partition rules of DESIGN §2: `object`, `directory`, `key` and `none`.

use std::cmp::Ordering;

use concurrent_proto::InputObject;

use super::PartitionError;
use crate::dag::Partition;

/// Cuts `objects` into shards by `how`; `parallelism` sets the default shard count
/// (`4 × parallelism`). Zero objects give zero shards; every shard is non-empty and sorted by
/// path; shards come in path (or directory, or key) order.
pub fn partition(
    objects: Vec<InputObject>,
    how: &Partition,
    parallelism: u32,
) -> Result<Vec<Vec<InputObject>>, PartitionError> {
    if parallelism == 0 {
        return Err(PartitionError::Zero { field: "parallelism" });
    }
    if let Partition::Object { shard_size, shards } | Partition::Key { shard_size, shards, .. } = how {
        check_sizes(*shard_size, *shards)?;
    }
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    match how {
        Partition::Object { shard_size, shards } => {
            let objects = sort_by_path(objects);
            let sizes = shard_sizes(objects.len(), *shard_size, *shards, parallelism);
            Ok(cut(objects, sizes))
        }
        Partition::None => Ok(vec![sort_by_path(objects)]),
        Partition::Directory => {
            let spans = objects.iter().map(|o| (0, parent(&o.path).len())).collect();
            let (objects, spans) = sort_by_span(objects, spans);
            let runs = run_lengths(&objects, &spans);
            Ok(cut(objects, runs))
        }
        Partition::Key { pattern, shard_size, shards } => by_key(objects, pattern, *shard_size, *shards, parallelism),
    }
}

/// Objects sorted by path (then URI): the order shards are cut in.
pub fn sort(objects: Vec<InputObject>) -> Vec<InputObject> {
    sort_by_path(objects)
}

fn check_sizes(shard_size: Option<u32>, shards: Option<u32>) -> Result<(), PartitionError> {
    match (shard_size, shards) {
        (Some(_), Some(_)) => Err(PartitionError::BothSizes),
        (Some(0), _) => Err(PartitionError::Zero { field: "shard_size" }),
        (_, Some(0)) => Err(PartitionError::Zero { field: "shards" }),
        _ => Ok(()),
    }
}

/// The bytes of `o.path` in `span`.
fn key(o: &InputObject, (start, end): (usize, usize)) -> &[u8] {
    &o.path.as_bytes()[start..end]
}

fn by_path(a: &InputObject, b: &InputObject) -> Ordering {
    a.path.cmp(&b.path).then_with(|| a.uri.cmp(&b.uri))
}

/// The parent directory of a relative path; `""` for objects at the root.
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
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
    let mut spans = Vec::with_capacity(objects.len());
    for object in &objects {
        let span = pattern.captures_read(&mut locations, &object.path).and_then(|_| locations.get(1));
        let Some(span) = span else {
            return Err(PartitionError::NoKey { path: object.path.clone(), pattern: pattern.as_str().to_string() });
        };
        spans.push(span);
    }
    let (objects, spans) = sort_by_span(objects, spans);
    let key_runs = run_lengths(&objects, &spans);
    let keys_per_shard = shard_sizes(key_runs.len(), shard_size, shards, parallelism);
    let mut runs = key_runs.into_iter();
    let sizes = keys_per_shard.into_iter().map(|keys| runs.by_ref().take(keys).sum()).collect();
    Ok(cut(objects, sizes))
}

/// Objects sorted by path (then URI).
fn sort_by_path(mut objects: Vec<InputObject>) -> Vec<InputObject> {
    objects.sort_unstable_by(by_path);
    objects
}

/// Sorts objects by the slice `path[start..end]` of each (its span), then by path and URI;
/// returns the spans in the new order too.
fn sort_by_span(objects: Vec<InputObject>, spans: Vec<(usize, usize)>) -> (Vec<InputObject>, Vec<(usize, usize)>) {
    let mut pairs: Vec<((usize, usize), InputObject)> = spans.into_iter().zip(objects).collect();
    pairs.sort_unstable_by(|(s1, a), (s2, b)| key(a, *s1).cmp(key(b, *s2)).then_with(|| by_path(a, b)));
    pairs.into_iter().map(|(span, o)| (o, span)).unzip()
}

/// Lengths of the runs of consecutive objects whose spans hold the same text.
fn run_lengths(objects: &[InputObject], spans: &[(usize, usize)]) -> Vec<usize> {
    let text = |i: usize| &objects[i].path[spans[i].0..spans[i].1];
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=objects.len() {
        if i == objects.len() || text(i - 1) != text(i) {
            runs.push(i - start);
            start = i;
        }
    }
    runs
}

/// Sizes of the shards `n` items are cut into: chunks of `shard_size`, or `shards` (default
/// `4 × parallelism`, at most `n`) near-equal shards, larger ones first.
fn shard_sizes(n: usize, shard_size: Option<u32>, shards: Option<u32>, parallelism: u32) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if let Some(size) = shard_size {
        let size = (size as usize).max(1);
        let mut sizes = vec![size; n / size];
        if !n.is_multiple_of(size) {
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
fn cut(mut objects: Vec<InputObject>, sizes: Vec<usize>) -> Vec<Vec<InputObject>> {
    // From the end, so every split is one `memcpy` of the tail, and the input's allocation
    // shrinks as its tail moves out (in place for a large one), so the listing is never held
    // twice: at most an eighth more than what is left.
    let mut shards: Vec<Vec<InputObject>> = sizes
        .iter()
        .rev()
        .map(|size| {
            let shard = objects.split_off(objects.len().saturating_sub(*size));
            if objects.capacity() - objects.len() > objects.len() / 8 {
                objects.shrink_to_fit();
            }
            shard
        })
        .collect();
    shards.reverse();
    shards
}
