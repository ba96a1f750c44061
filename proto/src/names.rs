//! Names of the JetStream streams, subjects, consumers, KV buckets and object stores (DESIGN §5).

/// Work-queue stream that holds published shards until a worker acks them.
pub const SHARDS_STREAM: &str = "CONCURRENT_SHARDS";
/// The line a local executor writes to a worker's standard input to ask it to give up its
/// slot after the shard in hand (fair share between runs).
pub const DRAIN_LINE: &str = "drain";
/// Stream of shard results, consumed durably by the scheduler.
pub const RESULTS_STREAM: &str = "CONCURRENT_RESULTS";
/// KV bucket of stage descriptions (key `<run>.<stage>`).
pub const STAGES_BUCKET: &str = "CONCURRENT_STAGES";
/// KV bucket of the leases of workers in Pods (key [`lease_key`]: the ack subject of the shard
/// whose entry point runs; deleted when the attempt ends).
pub const LEASES_BUCKET: &str = "CONCURRENT_LEASES";

/// Key of a worker's lease in [`LEASES_BUCKET`].
pub fn lease_key(run_id: &str, stage: &str, worker: &str) -> String {
    format!("{run_id}.{stage}.{worker}")
}

/// Object store of project snapshots, keyed by content hash.
pub const PROJECTS_STORE: &str = "CONCURRENT_PROJECTS";

/// Subject filter that covers every shard subject.
pub const SHARDS_SUBJECTS: &str = "concurrent.shards.>";
/// Subject filter that covers every result subject.
pub const RESULTS_SUBJECTS: &str = "concurrent.results.>";

/// Subject a stage's shards are published on.
pub fn shard_subject(run_id: &str, stage: &str) -> String {
    format!("concurrent.shards.{run_id}.{stage}")
}

/// Subject a stage's shard results are published on.
pub fn result_subject(run_id: &str, stage: &str) -> String {
    format!("concurrent.results.{run_id}.{stage}")
}

/// Subject filter of every result of a run.
pub fn run_results_filter(run_id: &str) -> String {
    format!("concurrent.results.{run_id}.>")
}

/// Core NATS subject a running scheduler listens on for requests about a run (cancel).
pub fn control_subject(run_id: &str) -> String {
    format!("concurrent.control.{run_id}")
}

/// Core NATS subject on which a speculating stage's workers say an attempt runs long
/// ([`crate::AttemptRunning`]).
pub fn running_subject(run_id: &str, stage: &str) -> String {
    format!("concurrent.running.{run_id}.{stage}")
}

/// Subject filter of every running notice of a run.
pub fn run_running_filter(run_id: &str) -> String {
    format!("concurrent.running.{run_id}.>")
}

/// Core NATS subject on which the scheduler says a shard with a speculative copy is decided
/// ([`crate::ShardDecided`]); the stage's workers listen on it.
pub fn decided_subject(run_id: &str, stage: &str) -> String {
    format!("concurrent.decided.{run_id}.{stage}")
}

/// Durable pull consumer that hands a stage's shards to workers.
pub fn shard_consumer(run_id: &str, stage: &str) -> String {
    format!("shards-{run_id}-{stage}")
}

/// Durable pull consumer through which the scheduler reads a run's results.
pub fn results_consumer(run_id: &str) -> String {
    format!("results-{run_id}")
}

/// KV key of a stage description.
pub fn stage_key(run_id: &str, stage: &str) -> String {
    format!("{run_id}.{stage}")
}

/// `Nats-Msg-Id` of a shard message, for JetStream's duplicate window.
pub fn shard_msg_id(run_id: &str, stage: &str, shard: u32) -> String {
    format!("{run_id}/{stage}/{shard}")
}

/// `Nats-Msg-Id` of a shard's speculative copy: one copy per shard.
pub fn speculative_msg_id(run_id: &str, stage: &str, shard: u32) -> String {
    format!("{run_id}/{stage}/{shard}/copy")
}

/// `Nats-Msg-Id` of a shard result: one per attempt.
pub fn result_msg_id(run_id: &str, stage: &str, shard: u32, attempt: u32) -> String {
    format!("{run_id}/{stage}/{shard}/{attempt}")
}

/// `Nats-Msg-Id` of a message of results: its first result's, with `+<n>` when `n` more
/// follow. An attempt is reported once, so no two messages share their first result.
pub fn results_msg_id(run_id: &str, stage: &str, first_shard: u32, first_attempt: u32, more: usize) -> String {
    match more {
        0 => result_msg_id(run_id, stage, first_shard, first_attempt),
        n => format!("{}+{n}", result_msg_id(run_id, stage, first_shard, first_attempt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_consumers_follow_the_design() {
        assert_eq!(shard_subject("r1", "thumbs"), "concurrent.shards.r1.thumbs");
        assert_eq!(result_subject("r1", "thumbs"), "concurrent.results.r1.thumbs");
        assert_eq!(shard_consumer("r1", "thumbs"), "shards-r1-thumbs");
        assert_eq!(stage_key("r1", "thumbs"), "r1.thumbs");
        assert_eq!(shard_msg_id("r1", "thumbs", 7), "r1/thumbs/7");
        assert_eq!(speculative_msg_id("r1", "thumbs", 7), "r1/thumbs/7/copy");
        assert_eq!(running_subject("r1", "thumbs"), "concurrent.running.r1.thumbs");
        assert_eq!(decided_subject("r1", "thumbs"), "concurrent.decided.r1.thumbs");
    }
}
