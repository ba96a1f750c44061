//! The tags of speculative copies' shard runs, written by the worker that ran the attempt and,
//! for an attempt still RUNNING when its stage ends, by the scheduler.

/// Tag of the shard run of a speculative copy (`true`).
pub const SPECULATIVE_COPY_TAG: &str = "concurrent.speculative_copy";
/// Tag of a shard run stopped (KILLED) because another attempt decided its shard first: which.
pub const SPECULATIVE_TAG: &str = "concurrent.speculative";

/// Why an attempt was stopped when attempt `by` decided its shard first (the value of
/// [`SPECULATIVE_TAG`]).
pub fn superseded_reason(by: u32) -> String {
    format!("stopped: attempt {by} of the shard decided it first")
}
