//! Speculative copies, the driver's side: workers' notices of attempts that run long become the
//! core's `Running` events; a copy the core asks for is made from the shard's message still in
//! the shards stream; a shard with a copy that is decided is announced to its stage's workers
//! (the other attempt stops) and its copy removed from the queue if no worker took it.

use std::collections::BTreeMap;
use std::time::Duration;

use concurrent_proto::{AttemptRunning, decode};
use futures::StreamExt;

use super::{Driver, DriverError};
use crate::executor::Executor;
use crate::run_core::{Effect, Event};

/// The copies a run published, and the shards they were for.
#[derive(Debug, Default)]
pub(super) struct Copies {
    /// Copies whose shard is not decided yet, by stage and shard: their sequence in the shards
    /// stream.
    queued: BTreeMap<(String, u32), u64>,
    /// Shards that had a copy, by stage and shard: the attempt that decided them.
    superseded: BTreeMap<(String, u32), u32>,
}

impl Copies {
    /// The shards of `stage` that had a copy, and the attempt that decided each.
    pub(super) fn superseded_in(&self, stage: &str) -> BTreeMap<u32, u32> {
        self.superseded.iter().filter(|((s, _), _)| s == stage).map(|((_, shard), by)| (*shard, *by)).collect()
    }
}

/// The next running notice, when the run listens for them; never otherwise.
pub(super) async fn next_notice(running: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match running {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}

impl<E: Executor> Driver<E> {
    /// Listens for notices of long attempts, when a stage of the run speculates.
    pub(super) async fn running_notices(&self) -> Result<Option<async_nats::Subscriber>, DriverError> {
        if !self.setup.dag.stages.values().any(|s| s.speculate.is_some()) {
            return Ok(None);
        }
        Ok(Some(self.setup.queue.running_notices(&self.setup.run_id).await?))
    }

    /// A worker's notice that an attempt runs long, dated by this scheduler's clock.
    pub(super) fn attempt_running(&mut self, notice: &async_nats::Message) -> Vec<Effect> {
        let notice = match decode::<AttemptRunning>(&notice.payload) {
            Ok(notice) if notice.run_id == self.setup.run_id => notice,
            Ok(_) => return Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "ignoring a running notice that does not decode");
                return Vec::new();
            }
        };
        let started = self.started.elapsed().saturating_sub(Duration::from_millis(notice.elapsed_ms));
        self.core.handle(Event::Running {
            stage: notice.stage,
            shard: notice.shard,
            attempt: notice.attempt,
            started,
            stream_sequence: notice.stream_sequence,
        })
    }

    /// Publishes a speculative copy of a shard whose attempt runs long. Best effort: without
    /// it the shard's own attempt still decides it.
    pub(super) async fn copy_shard(&mut self, stage: String, shard: u32, stream_sequence: u64) {
        match self.setup.queue.publish_copy(&stage, shard, stream_sequence).await {
            Ok(Some(copy)) => {
                tracing::info!(stage, shard, "an attempt runs long: a speculative copy of its shard is published");
                self.copies.queued.insert((stage, shard), copy);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(stage, shard, %error, "could not publish a speculative copy"),
        }
    }

    /// A shard that had a copy is decided by `attempt`: its copy leaves the queue if no worker
    /// took it, and the stage's workers hear of it, so that the other attempt stops.
    pub(super) async fn superseded(&mut self, stage: String, shard: u32, attempt: u32) {
        if let Some(copy) = self.copies.queued.remove(&(stage.clone(), shard)) {
            self.setup.queue.remove_copy(copy).await;
        }
        self.setup.queue.announce_decided(&self.setup.run_id, &stage, shard, attempt).await;
        self.copies.superseded.insert((stage, shard), attempt);
    }
}
