//! Cutting a `log-batch` into requests that stay within MLflow's limits (a pure function).

use serde::Serialize;

use super::types::{Metric, Param, Tag};

/// MLflow's limits on one `runs/log-batch` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Metrics, params and tags together.
    pub max_items: usize,
    /// Params.
    pub max_params: usize,
    /// Tags.
    pub max_tags: usize,
    /// Serialized request body, in bytes.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    /// MLflow's documented limits: 1,000 items, 100 params, 100 tags, 1 MB.
    fn default() -> Self {
        BatchLimits { max_items: 1000, max_params: 100, max_tags: 100, max_bytes: 1_000_000 }
    }
}

/// The body of one `runs/log-batch` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogBatch {
    /// The run to log to.
    pub run_id: String,
    /// Metrics of this request.
    pub metrics: Vec<Metric>,
    /// Params of this request.
    pub params: Vec<Param>,
    /// Tags of this request.
    pub tags: Vec<Tag>,
}

impl LogBatch {
    fn items(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// Splits metrics, params and tags into as few requests as fit `limits`, in order (params
/// first, then tags, then metrics), each item in exactly one request.
///
/// An item that alone exceeds `max_bytes` gets a request of its own (the server rejects it
/// and the caller sees MLflow's error). Empty input gives no request.
pub fn split_batch(
    run_id: &str,
    metrics: &[Metric],
    params: &[Param],
    tags: &[Tag],
    limits: &BatchLimits,
) -> Vec<LogBatch> {
    let empty = LogBatch { run_id: run_id.to_owned(), ..LogBatch::default() };
    let envelope = json_len(&empty);
    let mut cutter = Cutter { limits, envelope, done: Vec::new(), current: empty, bytes: envelope };
    for param in params {
        cutter.push(Item::Param(param));
    }
    for tag in tags {
        cutter.push(Item::Tag(tag));
    }
    for metric in metrics {
        cutter.push(Item::Metric(metric));
    }
    cutter.finish()
}

enum Item<'a> {
    Metric(&'a Metric),
    Param(&'a Param),
    Tag(&'a Tag),
}

struct Cutter<'a> {
    limits: &'a BatchLimits,
    envelope: usize,
    done: Vec<LogBatch>,
    current: LogBatch,
    bytes: usize,
}

impl Cutter<'_> {
    fn push(&mut self, item: Item<'_>) {
        // Each item adds its JSON and, unless first in its array, a comma.
        let (size, list_len, list_max) = match &item {
            Item::Metric(m) => (json_len(m), self.current.metrics.len(), usize::MAX),
            Item::Param(p) => (json_len(p), self.current.params.len(), self.limits.max_params),
            Item::Tag(t) => (json_len(t), self.current.tags.len(), self.limits.max_tags),
        };
        let added = size + usize::from(list_len > 0);
        let full = self.current.items() >= self.limits.max_items
            || list_len >= list_max
            || (self.current.items() > 0 && self.bytes + added > self.limits.max_bytes);
        if full {
            self.cut();
        }
        let list_len = match &item {
            Item::Metric(_) => self.current.metrics.len(),
            Item::Param(_) => self.current.params.len(),
            Item::Tag(_) => self.current.tags.len(),
        };
        self.bytes += size + usize::from(list_len > 0);
        match item {
            Item::Metric(m) => self.current.metrics.push(m.clone()),
            Item::Param(p) => self.current.params.push(p.clone()),
            Item::Tag(t) => self.current.tags.push(t.clone()),
        }
    }

    fn cut(&mut self) {
        let next = LogBatch { run_id: self.current.run_id.clone(), ..LogBatch::default() };
        self.done.push(std::mem::replace(&mut self.current, next));
        self.bytes = self.envelope;
    }

    fn finish(mut self) -> Vec<LogBatch> {
        if self.current.items() > 0 {
            self.cut();
        }
        self.done
    }
}

fn json_len<T: Serialize>(value: &T) -> usize {
    // Serializing these plain structs cannot fail; a failure would only misjudge a size.
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n).map(|i| Metric { key: format!("m{i}"), value: i as f64, timestamp: 1, step: 0 }).collect()
    }
    fn params(n: usize, value_len: usize) -> Vec<Param> {
        (0..n).map(|i| Param::new(format!("p{i}"), "v".repeat(value_len))).collect()
    }
    fn tags(n: usize, value_len: usize) -> Vec<Tag> {
        (0..n).map(|i| Tag::new(format!("t{i}"), "x".repeat(value_len))).collect()
    }

    /// Every batch within every limit, and the union is the input, in order.
    fn check(m: &[Metric], p: &[Param], t: &[Tag], limits: &BatchLimits) -> Vec<LogBatch> {
        let batches = split_batch("0123456789abcdef0123456789abcdef", m, p, t, limits);
        for b in &batches {
            assert!(b.items() > 0);
            assert!(b.items() <= limits.max_items, "{} items", b.items());
            assert!(b.params.len() <= limits.max_params);
            assert!(b.tags.len() <= limits.max_tags);
            let body = serde_json::to_vec(b).unwrap().len();
            assert!(body <= limits.max_bytes || b.items() == 1, "{body} bytes");
        }
        let all_m: Vec<_> = batches.iter().flat_map(|b| b.metrics.clone()).collect();
        let all_p: Vec<_> = batches.iter().flat_map(|b| b.params.clone()).collect();
        let all_t: Vec<_> = batches.iter().flat_map(|b| b.tags.clone()).collect();
        assert_eq!((all_m.as_slice(), all_p.as_slice(), all_t.as_slice()), (m, p, t));
        batches
    }

    #[test]
    fn empty_input_gives_no_request() {
        assert!(split_batch("r", &[], &[], &[], &BatchLimits::default()).is_empty());
    }

    #[test]
    fn small_batch_is_one_request() {
        let b = check(&metrics(10), &params(10, 5), &tags(10, 5), &BatchLimits::default());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn item_limit_counts_all_kinds() {
        let b = check(&metrics(2500), &[], &[], &BatchLimits::default());
        assert_eq!(b.iter().map(LogBatch::items).collect::<Vec<_>>(), [1000, 1000, 500]);
        let b = check(&metrics(950), &params(60, 1), &[], &BatchLimits::default());
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].items(), 1000);
    }

    #[test]
    fn param_and_tag_limits() {
        let b = check(&[], &params(250, 1), &tags(150, 1), &BatchLimits::default());
        for batch in &b {
            assert!(batch.params.len() <= 100 && batch.tags.len() <= 100);
        }
        assert_eq!(b.iter().map(|x| x.params.len()).sum::<usize>(), 250);
        assert_eq!(b.len(), 4); // 100, 100, 50+50 tags, 100 tags
    }

    #[test]
    fn byte_limit_with_huge_values() {
        // 100 tags of 8,000 bytes and 100 params of 6,000 bytes: 1.4 MB in all.
        let b = check(&metrics(5), &params(100, 6000), &tags(100, 8000), &BatchLimits::default());
        assert!(b.len() >= 2);
        // A tight byte limit: each request just fits, and one too-big item goes alone.
        let limits = BatchLimits { max_bytes: 2_000, ..BatchLimits::default() };
        let mut p = params(20, 100);
        p.push(Param::new("huge", "h".repeat(5_000)));
        let b = check(&metrics(30), &p, &[], &limits);
        assert!(b.iter().any(|x| x.params.len() == 1 && x.params[0].key == "huge"));
    }

    #[test]
    fn body_size_is_exact_at_the_limit() {
        let p = params(3, 10);
        let one = split_batch("r", &[], &p, &[], &BatchLimits::default());
        let exact = serde_json::to_vec(&one[0]).unwrap().len();
        let fits = BatchLimits { max_bytes: exact, ..BatchLimits::default() };
        assert_eq!(split_batch("r", &[], &p, &[], &fits).len(), 1);
        let tight = BatchLimits { max_bytes: exact - 1, ..BatchLimits::default() };
        assert_eq!(split_batch("r", &[], &p, &[], &tight).len(), 2);
    }
}
