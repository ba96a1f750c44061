//! How an attempt is reported: the `ShardResult` it publishes and what then happens to the
//! shard message (ack, nak for another attempt, or term after the last one). Pure.

use concurrent_proto::{OutputObject, ShardMsg, ShardResult, ShardStatus, WIRE_VERSION};

/// What the worker does with the shard message once the result is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Success: the shard is done and leaves the stream.
    Ack,
    /// Failure with attempts left: JetStream redelivers it.
    Nak,
    /// Failure on the last attempt: the shard leaves the stream, failed.
    Term,
}

/// Decides the disposition of attempt `attempt` (1-based) out of `max_attempts`.
pub fn disposition(status: &ShardStatus, attempt: u32, max_attempts: u32) -> Disposition {
    match status {
        ShardStatus::Succeeded => Disposition::Ack,
        ShardStatus::Failed { .. } if attempt < max_attempts => Disposition::Nak,
        ShardStatus::Failed { .. } => Disposition::Term,
    }
}

/// Counters of one attempt, reported in the result and as MLflow metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttemptStats {
    /// Wall-clock seconds from pulling the shard to the end of the attempt.
    pub duration_s: f64,
    /// Number of input objects.
    pub objects_in: u64,
    /// Bytes of input materialized.
    pub bytes_in: u64,
    /// Bytes of output produced.
    pub bytes_out: u64,
}

/// Who ran the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    /// The worker id (`--worker-id`).
    pub worker: String,
    /// The cluster (`--cluster`).
    pub cluster: String,
}

/// How an attempt ended, before it is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Succeeded or failed, with the reason.
    pub status: ShardStatus,
    /// The shard run, when tracking is on.
    pub mlflow_run_id: Option<String>,
    /// Where the outputs are now (empty unless succeeded).
    pub outputs: Vec<OutputObject>,
    /// Counters of the attempt.
    pub stats: AttemptStats,
}

/// Builds the result of an attempt. Outputs are only reported on success.
pub fn shard_result(
    shard: &ShardMsg,
    attempt: u32,
    max_attempts: u32,
    who: &WorkerIdentity,
    outcome: Outcome,
) -> ShardResult {
    let Outcome { status, mlflow_run_id, outputs, stats } = outcome;
    let last_attempt = disposition(&status, attempt, max_attempts) != Disposition::Nak;
    let outputs = if status == ShardStatus::Succeeded { outputs } else { Vec::new() };
    ShardResult {
        v: WIRE_VERSION,
        run_id: shard.run_id.clone(),
        stage: shard.stage.clone(),
        shard: shard.shard,
        attempt,
        last_attempt,
        worker: who.worker.clone(),
        cluster: who.cluster.clone(),
        status,
        mlflow_run_id,
        outputs,
        duration_s: stats.duration_s,
        objects_in: stats.objects_in,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
    }
}

/// A failure reason with its chain of causes, `outer: inner: innermost`.
pub fn reason_with_causes(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> ShardStatus {
        ShardStatus::Failed { reason: "exit code 1".into() }
    }

    fn shard() -> ShardMsg {
        ShardMsg { v: WIRE_VERSION, run_id: "r".into(), stage: "s".into(), shard: 2, shards: 4, inputs: vec![] }
    }

    fn who() -> WorkerIdentity {
        WorkerIdentity { worker: "w".into(), cluster: "local".into() }
    }

    #[test]
    fn success_is_acked_and_failures_retry_until_the_last_attempt() {
        assert_eq!(disposition(&ShardStatus::Succeeded, 1, 3), Disposition::Ack);
        assert_eq!(disposition(&failed(), 1, 3), Disposition::Nak);
        assert_eq!(disposition(&failed(), 2, 3), Disposition::Nak);
        assert_eq!(disposition(&failed(), 3, 3), Disposition::Term);
        assert_eq!(disposition(&failed(), 4, 3), Disposition::Term);
        assert_eq!(disposition(&failed(), 1, 1), Disposition::Term);
    }

    #[test]
    fn results_say_whether_another_attempt_follows() {
        let out = OutputObject { path: "a".into(), uri: "file:///a".into(), size: 1 };
        let outcome =
            |status, outputs| Outcome { status, mlflow_run_id: None, outputs, stats: AttemptStats::default() };
        let first = shard_result(&shard(), 1, 2, &who(), outcome(failed(), vec![out.clone()]));
        assert!(!first.last_attempt);
        assert!(first.outputs.is_empty(), "a failed attempt reports no outputs");
        let last = shard_result(&shard(), 2, 2, &who(), outcome(failed(), vec![]));
        assert!(last.last_attempt);
        let ok = shard_result(&shard(), 1, 2, &who(), outcome(ShardStatus::Succeeded, vec![out]));
        assert!(ok.last_attempt);
        assert_eq!(ok.outputs.len(), 1);
        assert_eq!((ok.run_id.as_str(), ok.stage.as_str(), ok.shard), ("r", "s", 2));
    }

    #[test]
    fn reasons_keep_their_causes() {
        let io = std::io::Error::other("disk full");
        #[derive(Debug, thiserror::Error)]
        #[error("writing the manifest")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(reason_with_causes(&Outer(io)), "writing the manifest: disk full");
    }
}
