//! The scheduler's side of NATS JetStream (DESIGN §5): streams, KV, object store, per-stage
//! shard consumers, windowed shard publishing, and the durable consumer of a run's results.

use std::time::Duration;

use concurrent_mlflow::nats_options::secured_options;
use concurrent_mlflow::retry::{RetryPolicy, retry};
use concurrent_proto::nats_auth::NatsAuth;
use concurrent_proto::timing::{RESULT_DEDUPE_WINDOW, SHARD_ACK_WAIT, SHARD_DEDUPE_WINDOW};

use async_nats::jetstream::{
    self, consumer, kv, object_store,
    stream::{self, RetentionPolicy, StorageType},
};
use async_nats::{HeaderMap, header::NATS_MESSAGE_ID};
use concurrent_proto::{ShardDecided, ShardMsg, StageSpec, encode, names};
use futures::future::try_join_all;

/// Publish acks awaited together: JetStream's throughput without unbounded memory.
const PUBLISH_WINDOW: usize = 512;

/// A JetStream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("cannot connect to NATS at {url} within {waited:?}: {reason}")]
    NotConnected { url: String, waited: Duration, reason: String },
    #[error("JetStream {what}: {source}")]
    JetStream { what: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl QueueError {
    pub(crate) fn js(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> QueueError {
        QueueError::JetStream { what: what.into(), source: Box::new(source) }
    }
}

/// How long the first connection to NATS may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// How long a JetStream operation is retried while NATS is unreachable (a restart, say).
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Runs `op` until it succeeds or [`RETRY_FOR`] has passed, with capped exponential backoff.
async fn retrying<T, F, Fut>(what: &str, op: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let policy = RetryPolicy::within(RETRY_FOR, Duration::from_millis(100), Duration::from_secs(5));
    retry(&policy, what, |_| true, op).await.map_err(|gave_up| gave_up.error)
}

/// Handles to the JetStream objects the scheduler uses.
#[derive(Clone)]
pub struct Queue {
    client: async_nats::Client,
    js: jetstream::Context,
    shards: stream::Stream,
    results: stream::Stream,
    stages: kv::Store,
    leases: kv::Store,
    projects: object_store::ObjectStore,
}

impl Queue {
    /// Connects and makes sure the streams, the KV bucket and the object store exist.
    pub async fn connect(url: &str) -> Result<Queue, QueueError> {
        let auth = NatsAuth::from_lookup(|name| std::env::var_os(name))
            .map_err(|source| QueueError::js("reading the NATS credentials", source))?;
        // The client's complaints while it connects (a TLS handshake refused, say), kept to
        // explain a connection that never comes up.
        let last_error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let complaints = last_error.clone();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .name("concurrent-scheduler")
            .event_callback(move |event| {
                let complaints = complaints.clone();
                async move {
                    if let async_nats::Event::ClientError(error) = event {
                        *complaints.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
                    }
                }
            });
        let shown = crate::nats_probe::redact(url);
        let options = secured_options(options, &auth)
            .await
            .map_err(|source| QueueError::Connect { url: shown.clone(), source })?;
        let client = options.connect(url);
        let client = tokio::time::timeout(CONNECT_WITHIN, client)
            .await
            .unwrap_or_else(|_| Err(async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut)))
            .map_err(|source| QueueError::Connect { url: shown.clone(), source })?;
        let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                let reason = last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let reason = reason.unwrap_or_else(|| "no connection".to_string());
                return Err(QueueError::NotConnected { url: shown, waited: CONNECT_WITHIN, reason });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let js = jetstream::new(client.clone());
        let shards = js
            .get_or_create_stream(stream::Config {
                name: names::SHARDS_STREAM.into(),
                subjects: vec![names::SHARDS_SUBJECTS.into()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: SHARD_DEDUPE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| QueueError::js(format!("creating stream {}", names::SHARDS_STREAM), e))?;
        let results = js
            .get_or_create_stream(stream::Config {
                name: names::RESULTS_STREAM.into(),
                subjects: vec![names::RESULTS_SUBJECTS.into()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                max_age: Duration::from_secs(14 * 24 * 3600),
                duplicate_window: RESULT_DEDUPE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| QueueError::js(format!("creating stream {}", names::RESULTS_STREAM), e))?;
        let stages = match js.get_key_value(names::STAGES_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: names::STAGES_BUCKET.into(),
                    history: 1,
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| QueueError::js(format!("creating KV bucket {}", names::STAGES_BUCKET), e))?,
        };
        let leases = match js.get_key_value(names::LEASES_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: names::LEASES_BUCKET.into(),
                    history: 1,
                    storage: StorageType::File,
                    max_age: concurrent_proto::timing::LEASE_MAX_AGE,
                    ..Default::default()
                })
                .await
                .map_err(|e| QueueError::js(format!("creating KV bucket {}", names::LEASES_BUCKET), e))?,
        };
        let projects = match js.get_object_store(names::PROJECTS_STORE).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: names::PROJECTS_STORE.into(),
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| QueueError::js(format!("creating object store {}", names::PROJECTS_STORE), e))?,
        };
        Ok(Queue { client, js, shards, results, stages, leases, projects })
    }

    /// The leases of workers in Pods.
    pub fn leases(&self) -> kv::Store {
        self.leases.clone()
    }

    /// Stores a project snapshot under its content hash, unless it is there already.
    pub async fn put_project(&self, hash: &str, bytes: &[u8]) -> Result<(), QueueError> {
        if self.projects.info(hash).await.is_ok() {
            return Ok(());
        }
        let mut reader = bytes;
        self.projects
            .put(hash, &mut reader)
            .await
            .map_err(|e| QueueError::js(format!("storing project snapshot {hash}"), e))?;
        Ok(())
    }

    /// Stores what workers need to run a stage.
    pub async fn put_stage_spec(&self, spec: &StageSpec) -> Result<(), QueueError> {
        let key = names::stage_key(&spec.run_id, &spec.stage);
        let value = bytes::Bytes::from(encode(spec));
        retrying("writing a stage description", || async {
            self.stages.put(&key, value.clone()).await.map_err(|e| QueueError::js(format!("writing KV {key}"), e))?;
            Ok(())
        })
        .await
    }

    /// Creates (or finds) the durable consumer workers pull a stage's shards from.
    pub async fn create_shard_consumer(&self, run_id: &str, stage: &str, max_deliver: u32) -> Result<(), QueueError> {
        let name = names::shard_consumer(run_id, stage);
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: names::shard_subject(run_id, stage),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: SHARD_ACK_WAIT,
            max_deliver: i64::from(max_deliver),
            max_ack_pending: 10_000,
            ..Default::default()
        };
        self.shards
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| QueueError::js(format!("creating consumer {name}"), e))?;
        Ok(())
    }

    /// Removes a finished stage's consumer (its idle workers then exit), the shards left in
    /// the stream (those whose attempts were used up), and its KV description.
    pub async fn remove_stage(&self, run_id: &str, stage: &str) -> Result<(), QueueError> {
        let name = names::shard_consumer(run_id, stage);
        if let Err(e) = self.shards.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "deleting consumer");
        }
        retrying("purging a stage's shards", || async {
            self.shards
                .purge()
                .filter(names::shard_subject(run_id, stage))
                .await
                .map_err(|e| QueueError::js(format!("purging the shards of {stage}"), e))?;
            Ok(())
        })
        .await?;
        if let Err(e) = self.stages.delete(names::stage_key(run_id, stage)).await {
            tracing::debug!(stage, error = %e, "deleting the stage description");
        }
        Ok(())
    }

    /// True when a stage's consumer has no shard waiting and none in flight.
    pub async fn shards_idle(&self, run_id: &str, stage: &str) -> Result<bool, QueueError> {
        match self.shards.consumer_info(names::shard_consumer(run_id, stage)).await {
            Ok(info) => Ok(info.num_pending == 0 && info.num_ack_pending == 0),
            Err(error) => {
                tracing::debug!(%error, stage, "shard consumer info");
                Ok(false)
            }
        }
    }

    /// True when no result of the run waits to be read or acked.
    pub async fn results_idle(&self, run_id: &str) -> Result<bool, QueueError> {
        match self.results.consumer_info(names::results_consumer(run_id)).await {
            Ok(info) => Ok(info.num_pending == 0 && info.num_ack_pending == 0),
            Err(error) => {
                tracing::debug!(%error, "results consumer info");
                Ok(false)
            }
        }
    }

    /// Requests about a run (cancel) sent to its scheduler.
    pub async fn control(&self, run_id: &str) -> Result<async_nats::Subscriber, QueueError> {
        self.client
            .subscribe(names::control_subject(run_id))
            .await
            .map_err(|e| QueueError::js("listening for control requests", e))
    }

    /// Answers a cancel request.
    pub async fn reply_cancelled(&self, request: &async_nats::Message) {
        if let Some(reply) = &request.reply
            && let Err(error) = self.client.publish(reply.clone(), "cancelled".into()).await
        {
            tracing::warn!(%error, "answering a cancel request");
        }
        let _ = self.client.flush().await;
    }

    /// Naks a shard message by its ack subject, on behalf of a worker that died holding it, so
    /// it is handed out again now rather than after `ack_wait`. Best effort: when the nak is
    /// lost, `ack_wait` still brings the shard back.
    pub async fn hand_back(&self, ack_subject: &str) {
        if let Err(error) = self.client.publish(ack_subject.to_string(), "-NAK".into()).await {
            tracing::warn!(%error, "handing back the shard of a dead worker");
        }
        let _ = self.client.flush().await;
    }

    /// Publishes shards, awaiting the acks in windows; a window that fails is published again
    /// (JetStream drops the duplicates by `Nats-Msg-Id`).
    pub async fn publish_shards(&self, shards: Vec<ShardMsg>) -> Result<(), QueueError> {
        for window in shards.chunks(PUBLISH_WINDOW) {
            retrying("publishing shards", || self.publish_window(window)).await?;
        }
        Ok(())
    }

    async fn publish_window(&self, window: &[ShardMsg]) -> Result<(), QueueError> {
        let mut pending = Vec::with_capacity(window.len());
        for shard in window {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, names::shard_msg_id(&shard.run_id, &shard.stage, shard.shard).as_str());
            let subject = names::shard_subject(&shard.run_id, &shard.stage);
            let ack = self
                .js
                .publish_with_headers(subject, headers, encode(shard).into())
                .await
                .map_err(|e| QueueError::js("publishing a shard", e))?;
            pending.push(ack.into_future());
        }
        try_join_all(pending).await.map_err(|e| QueueError::js("publishing shards", e))?;
        Ok(())
    }

    /// Notices of a run's attempts that run long ([`concurrent_proto::AttemptRunning`]).
    pub async fn running_notices(&self, run_id: &str) -> Result<async_nats::Subscriber, QueueError> {
        self.client
            .subscribe(names::run_running_filter(run_id))
            .await
            .map_err(|e| QueueError::js("listening for running attempts", e))
    }

    /// Publishes a speculative copy of the shard message at `stream_sequence` (still in the
    /// stream while an attempt of it runs) on its stage's subject; returns the copy's
    /// sequence, or `None` when the message has left the stream (its shard was settled) or is
    /// not a shard of `stage`.
    pub async fn publish_copy(&self, stage: &str, shard: u32, stream_sequence: u64) -> Result<Option<u64>, QueueError> {
        let original = match self.shards.get_raw_message(stream_sequence).await {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, stage, shard, "the shard to copy has left the stream");
                return Ok(None);
            }
        };
        let mut copy = match concurrent_proto::decode::<ShardMsg>(&original.payload) {
            Ok(message) if message.stage == stage && message.shard == shard && !message.speculative => message,
            _ => return Ok(None),
        };
        copy.speculative = true;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, names::speculative_msg_id(&copy.run_id, stage, shard).as_str());
        let subject = names::shard_subject(&copy.run_id, stage);
        let payload: bytes::Bytes = encode(&copy).into();
        let published = retrying("publishing a speculative copy", || async {
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| QueueError::js("publishing a speculative copy", e))?;
            ack.await.map_err(|e| QueueError::js("publishing a speculative copy", e))
        })
        .await?;
        Ok(Some(published.sequence))
    }

    /// Removes a speculative copy from the stream if no worker has settled it yet. Best effort:
    /// a copy that stays is run, and its result is a duplicate.
    pub async fn remove_copy(&self, stream_sequence: u64) {
        if let Err(error) = self.shards.delete_message(stream_sequence).await {
            tracing::debug!(%error, stream_sequence, "removing a speculative copy");
        }
    }

    /// Tells a stage's workers that `shard` was decided by `attempt`, so that its other
    /// attempt stops. Best effort: an attempt that does not hear it runs on, and its result is
    /// a duplicate.
    pub async fn announce_decided(&self, run_id: &str, stage: &str, shard: u32, attempt: u32) {
        let notice = ShardDecided {
            v: concurrent_proto::WIRE_VERSION,
            run_id: run_id.to_string(),
            stage: stage.to_string(),
            shard,
            attempt,
        };
        if let Err(error) = self.client.publish(names::decided_subject(run_id, stage), encode(&notice).into()).await {
            tracing::warn!(%error, stage, shard, "announcing a decided shard");
        }
        let _ = self.client.flush().await;
    }

    /// The durable consumer through which the scheduler reads a run's results.
    pub async fn results_consumer(&self, run_id: &str) -> Result<consumer::PullConsumer, QueueError> {
        let name = names::results_consumer(run_id);
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: names::run_results_filter(run_id),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            ..Default::default()
        };
        self.results
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| QueueError::js(format!("creating consumer {name}"), e))
    }

    /// Removes a finished run's results consumer.
    pub async fn delete_results_consumer(&self, run_id: &str) {
        let name = names::results_consumer(run_id);
        if let Err(e) = self.results.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "deleting consumer");
        }
    }
}
