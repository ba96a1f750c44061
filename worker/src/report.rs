//! How an attempt is reported: the `ShardResult` it publishes and what then happens to the
//! shard message (ack, nak for another attempt, or term after the last one). Pure.

use std::time::Duration;

use concurrent_mlflow::tracking::superseded_reason;
use concurrent_proto::{OutputObject, ShardMsg, ShardResult, ShardStatus, WIRE_VERSION};

/// How long JetStream waits before redelivering a shard whose attempt could not be recorded
/// in MLflow, so the tracking server has time to come back.
pub const UNRECORDED_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// How the reason of a permanent failure starts.
pub const PERMANENT_PREFIX: &str = "permanent failure (not retried): ";
/// The failure reason of an attempt cut short by SIGTERM/SIGINT.
pub const STOPPED_REASON: &str = "worker stopped (SIGTERM/SIGINT)";

/// What the worker does with the shard message once the result is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Success: the shard is done and leaves the stream.
    Ack,
    /// Attempts left: JetStream redelivers it (after `delay`, if any).
    Nak {
        /// Wait this long before redelivering; `None` = at once.
        delay: Option<Duration>,
    },
    /// Failure on the last attempt: the shard leaves the stream, failed.
    Term,
}

/// How an attempt ended, as far as the worker can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The entry point ran and its end is recorded: success, or a failure with its reason.
    Recorded(ShardStatus),
    /// The worker was told to stop (SIGTERM/SIGINT) first; the shard is handed back.
    Stopped,
    /// MLflow could not be reached to record the attempt (outage longer than the client's
    /// retries); handed back for later, not counted as the entry point's failure.
    Unrecorded {
        /// What could not be done, with its causes.
        reason: String,
    },
    /// A recorded failure whose cause cannot change (an unwritable outputs dir, an input that
    /// no longer exists, two inputs with one path): no attempt follows.
    Permanent {
        /// What failed, with its causes.
        reason: String,
    },
    /// Another attempt of the shard (a speculative copy, or the shard's own when this is the
    /// copy) decided it first; this one was stopped. No result is published: the shard is
    /// settled.
    Superseded {
        /// The attempt that decided the shard.
        by: u32,
    },
}

impl AttemptEnd {
    /// The status reported in the result.
    pub fn status(&self) -> ShardStatus {
        match self {
            AttemptEnd::Recorded(status) => status.clone(),
            AttemptEnd::Stopped => ShardStatus::Failed { reason: STOPPED_REASON.to_string() },
            AttemptEnd::Unrecorded { reason } => {
                ShardStatus::Failed { reason: format!("not recorded, MLflow unreachable (handed back): {reason}") }
            }
            AttemptEnd::Permanent { reason } => ShardStatus::Failed { reason: format!("{PERMANENT_PREFIX}{reason}") },
            AttemptEnd::Superseded { by } => ShardStatus::Failed { reason: superseded_reason(*by) },
        }
    }

    /// Whether the failure cannot change with another attempt.
    pub fn is_permanent(&self) -> bool {
        matches!(self, AttemptEnd::Permanent { .. })
    }

    /// Whether the attempt succeeded and is recorded.
    pub fn succeeded(&self) -> bool {
        *self == AttemptEnd::Recorded(ShardStatus::Succeeded)
    }
}

/// Decides the disposition of attempt `attempt` (1-based) out of `max_attempts`.
///
/// Anything but a recorded success on the last attempt is terminated: JetStream would not
/// redeliver it (`max_deliver`), so a nak would leave the shard undecided forever.
pub fn disposition(end: &AttemptEnd, attempt: u32, max_attempts: u32) -> Disposition {
    match end {
        AttemptEnd::Recorded(ShardStatus::Succeeded) | AttemptEnd::Superseded { .. } => Disposition::Ack,
        AttemptEnd::Permanent { .. } => Disposition::Term,
        _ if attempt >= max_attempts => Disposition::Term,
        AttemptEnd::Recorded(ShardStatus::Failed { .. }) | AttemptEnd::Stopped => Disposition::Nak { delay: None },
        AttemptEnd::Unrecorded { .. } => Disposition::Nak { delay: Some(UNRECORDED_REDELIVERY_DELAY) },
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
    /// Recorded (succeeded or failed), stopped, or not recorded.
    pub end: AttemptEnd,
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
    let Outcome { end, mlflow_run_id, outputs, stats } = outcome;
    let last_attempt = !matches!(disposition(&end, attempt, max_attempts), Disposition::Nak { .. });
    let permanent = end.is_permanent();
    let status = end.status();
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
        permanent,
        mlflow_run_id,
        outputs,
        duration_s: stats.duration_s,
        objects_in: stats.objects_in,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        speculative: shard.speculative,
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

    fn failed() -> AttemptEnd {
        AttemptEnd::Recorded(ShardStatus::Failed { reason: "exit code 1".into() })
    }

    fn succeeded() -> AttemptEnd {
        AttemptEnd::Recorded(ShardStatus::Succeeded)
    }

    fn unrecorded() -> AttemptEnd {
        AttemptEnd::Unrecorded { reason: "POST runs/create: connection refused".into() }
    }

    fn shard() -> ShardMsg {
        ShardMsg {
            v: WIRE_VERSION,
            run_id: "r".into(),
            stage: "s".into(),
            shard: 2,
            shards: 4,
            inputs: vec![],
            speculative: false,
        }
    }

    fn who() -> WorkerIdentity {
        WorkerIdentity { worker: "w".into(), cluster: "local".into() }
    }

    #[test]
    fn success_is_acked_and_failures_retry_until_the_last_attempt() {
        let nak = Disposition::Nak { delay: None };
        assert_eq!(disposition(&succeeded(), 1, 3), Disposition::Ack);
        assert_eq!(disposition(&succeeded(), 3, 3), Disposition::Ack);
        assert_eq!(disposition(&failed(), 1, 3), nak);
        assert_eq!(disposition(&failed(), 2, 3), nak);
        assert_eq!(disposition(&failed(), 3, 3), Disposition::Term);
        assert_eq!(disposition(&failed(), 4, 3), Disposition::Term);
        assert_eq!(disposition(&failed(), 1, 1), Disposition::Term);
    }

    #[test]
    fn results_say_whether_another_attempt_follows() {
        let out = OutputObject { path: "a".into(), uri: "file:///a".into(), size: 1 };
        let outcome = |end, outputs| Outcome { end, mlflow_run_id: None, outputs, stats: AttemptStats::default() };
        let first = shard_result(&shard(), 1, 2, &who(), outcome(failed(), vec![out.clone()]));
        assert!(!first.last_attempt);
        assert!(first.outputs.is_empty(), "a failed attempt reports no outputs");
        let last = shard_result(&shard(), 2, 2, &who(), outcome(failed(), vec![]));
        assert!(last.last_attempt);
        let ok = shard_result(&shard(), 1, 2, &who(), outcome(succeeded(), vec![out]));
        assert!(ok.last_attempt);
        assert_eq!(ok.outputs.len(), 1);
        assert_eq!((ok.run_id.as_str(), ok.stage.as_str(), ok.shard), ("r", "s", 2));
    }

    #[test]
    fn a_stopped_attempt_is_handed_back_unless_it_was_the_last() {
        assert_eq!(disposition(&AttemptEnd::Stopped, 1, 3), Disposition::Nak { delay: None });
        assert_eq!(disposition(&AttemptEnd::Stopped, 3, 3), Disposition::Term);
        let result = shard_result(
            &shard(),
            1,
            3,
            &who(),
            Outcome {
                end: AttemptEnd::Stopped,
                mlflow_run_id: Some("run".into()),
                outputs: vec![],
                stats: AttemptStats::default(),
            },
        );
        assert_eq!(result.status, ShardStatus::Failed { reason: STOPPED_REASON.into() });
        assert!(!result.last_attempt);
        assert_eq!(result.mlflow_run_id.as_deref(), Some("run"));
    }

    #[test]
    fn an_unrecorded_attempt_comes_back_later_and_never_reports_success() {
        let later = Disposition::Nak { delay: Some(UNRECORDED_REDELIVERY_DELAY) };
        assert_eq!(disposition(&unrecorded(), 1, 2), later);
        assert_eq!(disposition(&unrecorded(), 2, 2), Disposition::Term);
        let out = OutputObject { path: "a".into(), uri: "file:///a".into(), size: 1 };
        let outcome = Outcome { end: unrecorded(), mlflow_run_id: None, outputs: vec![out], stats: Default::default() };
        let result = shard_result(&shard(), 1, 2, &who(), outcome);
        let ShardStatus::Failed { reason } = &result.status else { panic!("{result:?}") };
        assert!(reason.contains("MLflow unreachable") && reason.contains("connection refused"), "{reason}");
        assert!(!result.last_attempt);
        assert!(result.outputs.is_empty());
    }

    #[test]
    fn a_permanent_failure_is_terminated_on_its_first_attempt_and_says_so() {
        let end = AttemptEnd::Permanent { reason: "fetching input `file:///gone`: no such file".into() };
        assert_eq!(disposition(&end, 1, 3), Disposition::Term);
        let outcome = Outcome { end, mlflow_run_id: None, outputs: vec![], stats: AttemptStats::default() };
        let result = shard_result(&shard(), 1, 3, &who(), outcome);
        assert!(result.permanent && result.last_attempt);
        let ShardStatus::Failed { reason } = &result.status else { panic!("{result:?}") };
        assert!(reason.starts_with(PERMANENT_PREFIX) && reason.ends_with("no such file"), "{reason}");
        let retryable = shard_result(
            &shard(),
            1,
            3,
            &who(),
            Outcome { end: failed(), mlflow_run_id: None, outputs: vec![], stats: AttemptStats::default() },
        );
        assert!(!retryable.permanent && !retryable.last_attempt);
    }

    #[test]
    fn a_superseded_attempt_settles_its_shard_and_says_which_attempt_won() {
        let end = AttemptEnd::Superseded { by: 4 };
        assert_eq!(disposition(&end, 1, 3), Disposition::Ack);
        assert_eq!(disposition(&end, 3, 3), Disposition::Ack);
        assert_eq!(
            end.status(),
            ShardStatus::Failed { reason: "stopped: attempt 4 of the shard decided it first".into() }
        );
        assert!(!end.succeeded() && !end.is_permanent());
    }

    #[test]
    fn a_copy_s_result_says_it_is_one() {
        let copy = ShardMsg { speculative: true, ..shard() };
        let outcome = Outcome { end: succeeded(), mlflow_run_id: None, outputs: vec![], stats: Default::default() };
        assert!(shard_result(&copy, 4, 3, &who(), outcome).speculative);
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
