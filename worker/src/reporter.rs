//! Reporting finished attempts: their results published to JetStream, then their shard
//! messages settled, never the other way round.
//!
//! A worker finishing short attempts while more shards are queued (tracking off) holds their
//! results for up to `--result-hold` ([`concurrent_proto::timing::RESULT_HOLD`] by default;
//! [`MAX_HELD`] at most) and publishes them as one message, while its next attempt runs: one
//! publish, one JetStream ack and one delivery to the scheduler for several shards instead of
//! one each. The last shard queued, a stopping worker, and one giving up its slot report at
//! once. Held shards are not acked, so a worker killed while holding them only means JetStream
//! hands them out again (their results were not stored, so nothing is counted twice).

use std::cell::Cell;

use async_nats::jetstream;
use concurrent_proto::timing::{HEARTBEAT_EVERY, RESULT_PUBLISH_BUDGET};
use concurrent_proto::{ShardResult, ShardResults, WIRE_VERSION, names};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::heartbeat::with_heartbeats;
use crate::queue::{self, QueueError, StageQueue};
use crate::report::{Disposition, reason_with_causes};

/// Most results held for one message.
pub const MAX_HELD: usize = 64;

/// Largest message of results made by joining several; a bigger set is split.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Finished attempts whose results are not published yet.
pub struct Reporter {
    /// How long a result is held at most (zero: not held).
    hold: std::time::Duration,
    /// Results to publish, in the order the attempts finished.
    results: Vec<ShardResult>,
    /// Shard messages to settle once the results are stored.
    settle: Vec<(jetstream::Message, Disposition)>,
    /// When the oldest held attempt finished.
    since: Option<Instant>,
}

impl Reporter {
    /// A reporter holding results up to `hold` ([`concurrent_proto::timing::RESULT_HOLD`]
    /// unless told otherwise).
    pub fn new(hold: std::time::Duration) -> Reporter {
        Reporter { hold, results: Vec::new(), settle: Vec::new(), since: None }
    }

    /// Whether a result may be held rather than published at once: one is held only while
    /// more shards are queued, so that the attempts that follow come soon.
    pub fn may_hold(&self) -> bool {
        !self.hold.is_zero() && !self.is_full()
    }

    /// Takes a finished attempt: its result (none for an attempt another one superseded), its
    /// shard message and what to do with it once the result is stored.
    pub fn hold(&mut self, result: Option<ShardResult>, message: jetstream::Message, disposition: Disposition) {
        self.results.extend(result);
        self.settle.push((message, disposition));
        self.since.get_or_insert_with(Instant::now);
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.settle.is_empty()
    }

    /// Whether as many results are held as one message takes.
    pub fn is_full(&self) -> bool {
        self.settle.len() >= MAX_HELD
    }

    /// When the held results are to be published at the latest.
    fn due(&self) -> Option<Instant> {
        match self.is_full() {
            true => Some(Instant::now()),
            false => self.since.map(|since| since + self.hold),
        }
    }

    /// Publishes every held result, then settles their shard messages. In-progress acks keep
    /// the shards meanwhile. Cancel-safe while nothing new is held: what is not published stays
    /// held, and publishing it again gives the same messages, which JetStream keeps once.
    pub async fn flush(&mut self, queue: &StageQueue, stop: &CancellationToken) -> Result<(), QueueError> {
        if self.is_empty() {
            return Ok(());
        }
        let messages = messages(&self.results);
        let settle = &self.settle;
        let publish = async {
            for (id, payload) in messages {
                queue.publish_results(payload, &id, RESULT_PUBLISH_BUDGET, stop).await?;
            }
            Ok::<(), QueueError>(())
        };
        let beat = || async {
            for (message, _) in settle {
                queue::in_progress(message).await;
            }
        };
        with_heartbeats(HEARTBEAT_EVERY, beat, publish).await?;
        for (message, disposition) in self.settle.drain(..) {
            if let Err(error) = queue::settle(&message, disposition).await {
                // The result is stored; the worst case is a redelivery and a duplicate result,
                // which the scheduler ignores.
                tracing::warn!(error = %reason_with_causes(&error), "result published but the shard message not settled");
            }
        }
        self.results.clear();
        self.since = None;
        Ok(())
    }

    /// Runs `work`; meanwhile publishes the held results when they are due. A publish that
    /// has begun is finished before this returns. When publishing fails, `stop` is cancelled
    /// (the worker stops) and the error is returned beside `work`'s output.
    pub async fn meanwhile<T>(
        &mut self,
        queue: &StageQueue,
        stop: &CancellationToken,
        work: impl std::future::Future<Output = T>,
    ) -> (T, Result<(), QueueError>) {
        let Some(due) = self.due() else { return (work.await, Ok(())) };
        tokio::pin!(work);
        let begun = Cell::new(false);
        let flush = async {
            tokio::time::sleep_until(due).await;
            begun.set(true);
            let flushed = self.flush(queue, stop).await;
            if flushed.is_err() {
                stop.cancel();
            }
            flushed
        };
        tokio::pin!(flush);
        let mut flushed = None;
        let output = loop {
            tokio::select! {
                biased;
                output = &mut work => break output,
                done = &mut flush, if flushed.is_none() => flushed = Some(done),
            }
        };
        let flushed = match flushed {
            Some(done) => done,
            None if begun.get() => flush.await,
            None => Ok(()),
        };
        (output, flushed)
    }
}

/// The held results as messages of at most [`MAX_MESSAGE_BYTES`] (a single result bigger than
/// that goes alone), each with its `Nats-Msg-Id`.
fn messages(results: &[ShardResult]) -> Vec<(String, bytes::Bytes)> {
    let Some(first) = results.first() else { return Vec::new() };
    let payload = match results {
        [one] => concurrent_proto::encode(one),
        _ => concurrent_proto::encode(&ShardResults { v: WIRE_VERSION, results: results.to_vec() }),
    };
    if payload.len() > MAX_MESSAGE_BYTES && results.len() > 1 {
        let (a, b) = results.split_at(results.len() / 2);
        let mut both = messages(a);
        both.extend(messages(b));
        return both;
    }
    let id = names::results_msg_id(&first.run_id, &first.stage, first.shard, first.attempt, results.len() - 1);
    vec![(id, payload.into())]
}

#[cfg(test)]
mod tests {
    use concurrent_proto::{OutputObject, ShardStatus, decode_results};

    use super::*;

    fn result(shard: u32, outputs: usize) -> ShardResult {
        ShardResult {
            v: WIRE_VERSION,
            run_id: "r1".into(),
            stage: "s".into(),
            shard,
            attempt: 1,
            last_attempt: true,
            worker: "w".into(),
            cluster: "local".into(),
            status: ShardStatus::Succeeded,
            permanent: false,
            mlflow_run_id: None,
            outputs: (0..outputs)
                .map(|i| OutputObject { path: format!("{i:0100}"), uri: format!("file:///o/{i:0100}"), size: 1 })
                .collect(),
            duration_s: 0.1,
            objects_in: 1,
            bytes_in: 0,
            bytes_out: 0,
            speculative: false,
        }
    }

    #[test]
    fn held_results_go_in_one_message_named_by_the_first() {
        let results: Vec<ShardResult> = (0..5).map(|shard| result(shard, 0)).collect();
        let together = messages(&results);
        assert_eq!(together.len(), 1);
        assert_eq!(together[0].0, "r1/s/0/1+4");
        assert_eq!(decode_results(&together[0].1).unwrap(), results);
        let one = messages(&results[2..3]);
        assert_eq!(one[0].0, "r1/s/2/1", "a single result keeps the id it always had");
        assert_eq!(decode_results(&one[0].1).unwrap(), vec![results[2].clone()]);
    }

    #[test]
    fn big_results_are_split_into_messages_under_the_cap_and_none_is_lost() {
        // About 20 KB a result: 40 of them do not fit in one message.
        let results: Vec<ShardResult> = (0..40).map(|shard| result(shard, 100)).collect();
        let split = messages(&results);
        assert!(split.len() > 1);
        let mut seen = Vec::new();
        for (id, payload) in &split {
            assert!(payload.len() <= MAX_MESSAGE_BYTES, "{id}: {} bytes", payload.len());
            seen.extend(decode_results(payload).unwrap());
        }
        assert_eq!(seen, results);
        let ids: std::collections::BTreeSet<&String> = split.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), split.len(), "every message has its own id");
    }
}
