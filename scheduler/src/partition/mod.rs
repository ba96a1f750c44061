//! Cutting a stage's input objects into shards: [`select`] keeps the objects the stage's
//! `include` globs match, [`partition`] groups them by the stage's `partition` rule. A stage
//! partitioned `by: object` with neither `shard_size` nor `shards` is [`sized_adaptively`]:
//! its objects are sorted by path ([`sort`]) and cut later, in waves.
//!
//! Both are pure functions over `Vec<InputObject>`; they move objects, never clone their
//! strings, and do `O(n log n)` work.

mod select;
mod split;

pub use select::{Include, select};
pub use split::{partition, sort};

use crate::dag::Partition;

/// Whether a stage's shards are sized as its results come in rather than cut up front: `by:
/// object` with neither `shard_size` nor `shards`.
pub fn sized_adaptively(how: &Partition) -> bool {
    matches!(how, Partition::Object { shard_size: None, shards: None })
}

/// Why objects could not be selected or partitioned.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// An object's path does not match the stage's key pattern.
    #[error("object {path:?} does not match the key pattern {pattern:?}")]
    NoKey {
        /// The object's relative path.
        path: String,
        /// The key regex.
        pattern: String,
    },
    /// An include glob does not compile.
    #[error("invalid include glob {glob:?}: {source}")]
    Glob {
        /// The glob as written.
        glob: String,
        /// Why it does not compile.
        #[source]
        source: globset::Error,
    },
    /// An include glob that matches nothing but the root (`""`, `/`).
    #[error("include glob {glob:?} is empty")]
    EmptyGlob {
        /// The glob as written.
        glob: String,
    },
    /// A shard count or size of zero.
    #[error("partition.{field} must be at least 1")]
    Zero {
        /// `shard_size`, `shards` or `parallelism`.
        field: &'static str,
    },
    /// Both `shard_size` and `shards` are set.
    #[error("partition.shard_size and partition.shards cannot both be set")]
    BothSizes,
}

#[cfg(test)]
mod tests;
