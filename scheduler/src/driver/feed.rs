//! The durable stream of a run's results, kept alive across NATS restarts: when the pull
//! stream breaks it is opened again, with backoff, from the same durable consumer.

use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::pull::Stream;
use concurrent_mlflow::retry::{Backoff, RetryPolicy};
use futures::{FutureExt, StreamExt};

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
}

impl ResultFeed {
    /// A feed that is not connected yet.
    pub fn new(queue: Queue, run_id: String) -> ResultFeed {
        ResultFeed { queue, run_id, stream: None }
    }

    /// Opens the durable consumer and its pull stream.
    pub async fn connect(&mut self) -> Result<(), QueueError> {
        let consumer = self.queue.results_consumer(&self.run_id).await?;
        let stream = consumer.messages().await.map_err(|e| QueueError::js("opening the results stream", e))?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Waits for at least one result and returns it with those already waiting (at most `max`).
    pub async fn next_batch(&mut self, max: usize) -> Vec<Message> {
        let mut backoff = reopening();
        loop {
            let Some(stream) = self.stream.as_mut() else {
                tokio::time::sleep(backoff.next_delay()).await;
                if let Err(error) = self.connect().await {
                    tracing::warn!(%error, "reopening the results stream");
                }
                continue;
            };
            match stream.next().await {
                Some(Ok(first)) => {
                    let mut batch = vec![first];
                    while batch.len() < max {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(message))) => batch.push(message),
                            Some(Some(Err(error))) => tracing::debug!(%error, "reading results"),
                            _ => break,
                        }
                    }
                    return batch;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading results; reopening the stream");
                    self.stream = None;
                }
                None => self.stream = None,
            }
        }
    }
}
