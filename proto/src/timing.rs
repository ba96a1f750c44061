//! The timing constants that scheduler and workers must agree on, in one place, with the rules
//! that tie them together checked by the tests below.

use std::time::Duration;

/// How long a worker may hold a shard between in-progress acks (the shard consumer's
/// `ack_wait`); a shard whose worker went silent this long is handed out again.
pub const SHARD_ACK_WAIT: Duration = Duration::from_secs(30);

/// How often a worker sends an in-progress ack while an attempt runs: well inside
/// [`SHARD_ACK_WAIT`], so that two heartbeats may be late before the shard is given away.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How long JetStream remembers a shard's `Nats-Msg-Id`: a scheduler restarted within this
/// window never publishes a shard twice.
pub const SHARD_DEDUPE_WINDOW: Duration = Duration::from_secs(3600);

/// How long JetStream remembers a result's `Nats-Msg-Id` (the results stream's duplicate
/// window).
pub const RESULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// How long a worker publishes a result again (same `Nats-Msg-Id`) until JetStream acks it:
/// never longer than [`RESULT_DEDUPE_WINDOW`], so that retries are never stored twice.
pub const RESULT_PUBLISH_BUDGET: Duration = Duration::from_secs(120);

/// How long a worker holds the result of a finished attempt, while more shards are queued,
/// to publish it with the results of the attempts that follow (one message for several
/// shards). Well inside the scheduler's latency budgets: the last shard queued is reported at
/// once.
pub const RESULT_HOLD: Duration = Duration::from_millis(20);

/// How long KV `CONCURRENT_LEASES` keeps a worker's lease that is not written again: one
/// older belongs to a worker long gone, whose shard `ack_wait` handed back.
pub const LEASE_MAX_AGE: Duration = Duration::from_secs(3600);

/// How often a worker in a Pod writes its lease again while an attempt runs, so that an
/// attempt longer than [`LEASE_MAX_AGE`] keeps it.
pub const LEASE_REFRESH_EVERY: Duration = Duration::from_secs(600);

/// How long an attempt of a speculating stage runs before its worker says so
/// ([`crate::AttemptRunning`]): no shorter attempt is ever copied, and attempts this short
/// cost no notice.
pub const RUNNING_NOTICE_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_attempt_never_loses_its_lease() {
        assert!(LEASE_REFRESH_EVERY + HEARTBEAT_EVERY * 2 < LEASE_MAX_AGE);
    }

    #[test]
    fn two_heartbeats_may_be_late_before_a_shard_is_given_away() {
        assert!(HEARTBEAT_EVERY * 3 <= SHARD_ACK_WAIT);
    }

    #[test]
    fn a_held_result_never_outlives_its_shards_ack_wait() {
        assert!(RESULT_HOLD * 100 < SHARD_ACK_WAIT);
    }

    #[test]
    fn a_result_published_again_is_always_recognised_as_the_same() {
        assert!(RESULT_PUBLISH_BUDGET <= RESULT_DEDUPE_WINDOW);
    }
}
