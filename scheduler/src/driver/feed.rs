//! The durable stream of a run's results, kept alive across NATS restarts: when the pull
//! stream breaks it is opened again, with backoff, from the same durable consumer.

use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::pull::Stream;
use concurrent_mlflow::retry::{Backoff, RetryPolicy};
use futures::StreamExt;

use crate::queue::{Queue, QueueError};

/// Pauses between two attempts to reopen the results stream: 50 ms doubling up to 2 s.
fn reopening() -> Backoff {
    RetryPolicy::within(Duration::MAX, Duration::from_millis(50), Duration::from_secs(2)).backoff()
}

/// Results of one run, in batches.
pub(super) struct ResultFeed {
    queue: Queue,
    run_id: String,
    stream: Option<Stream>,
    /// The batch being gathered, and until when: kept here so that a call dropped while it
    /// gathers (the driver's other events win its `select!`) loses nothing.
    gathering: Vec<Message>,
    gather_until: tokio::time::Instant,
}

impl ResultFeed {
    /// A feed that is not connected yet.
    pub fn new(queue: Queue, run_id: String) -> ResultFeed {
        ResultFeed { queue, run_id, stream: None, gathering: Vec::new(), gather_until: tokio::time::Instant::now() }
    }

    /// Opens the durable consumer and its pull stream.
    pub async fn connect(&mut self) -> Result<(), QueueError> {
        let consumer = self.queue.results_consumer(&self.run_id).await?;
        let stream = consumer.messages().await.map_err(|e| QueueError::js("opening the results stream", e))?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Waits for at least one result, then gathers those that come within `gather` of it (at
    /// most `max`), so that one flush of the store covers them all. Cancel-safe: what a dropped
    /// call took is returned by the next.
    pub async fn next_batch(&mut self, max: usize, gather: Duration) -> Vec<Message> {
        let mut backoff = reopening();
        loop {
            let Some(stream) = self.stream.as_mut() else {
                if !self.gathering.is_empty() {
                    return std::mem::take(&mut self.gathering);
                }
                tokio::time::sleep(backoff.next_delay()).await;
                if let Err(error) = self.connect().await {
                    tracing::warn!(%error, "reopening the results stream");
                }
                continue;
            };
            if self.gathering.is_empty() {
                match stream.next().await {
                    Some(Ok(first)) => {
                        self.gathering.push(first);
                        self.gather_until = tokio::time::Instant::now() + gather;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "reading results; reopening the stream");
                        self.stream = None;
                        continue;
                    }
                    None => {
                        self.stream = None;
                        continue;
                    }
                }
            }
            while self.gathering.len() < max {
                match tokio::time::timeout_at(self.gather_until, stream.next()).await {
                    Ok(Some(Ok(message))) => self.gathering.push(message),
                    Ok(Some(Err(error))) => tracing::debug!(%error, "reading results"),
                    Ok(None) | Err(_) => break,
                }
            }
            return std::mem::take(&mut self.gathering);
        }
    }
}
