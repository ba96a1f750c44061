//! The scheduler's side of NATS JetStream (DESIGN §5): streams, KV, object store, per-stage
//! shard consumers, windowed shard publishing, and the durable consumer of a run's results.

use std::time::Duration;

use async_nats::jetstream::{
    self, consumer, kv, object_store,
    stream::{self, RetentionPolicy, StorageType},
};
use async_nats::{HeaderMap, header::NATS_MESSAGE_ID};
use concurrent_proto::{ShardMsg, StageSpec, encode, names};
use futures::future::try_join_all;

/// Publish acks awaited together: JetStream's throughput without unbounded memory.
const PUBLISH_WINDOW: usize = 512;
/// How long a worker may hold a shard between in-progress acks.
pub const SHARD_ACK_WAIT: Duration = Duration::from_secs(30);

/// A JetStream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("JetStream {what}: {source}")]
    JetStream { what: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl QueueError {
    fn js(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> QueueError {
        QueueError::JetStream { what: what.into(), source: Box::new(source) }
    }
}

/// Handles to the JetStream objects the scheduler uses.
#[derive(Clone)]
pub struct Queue {
    js: jetstream::Context,
    shards: stream::Stream,
    results: stream::Stream,
    stages: kv::Store,
    projects: object_store::ObjectStore,
}

impl Queue {
    /// Connects and makes sure the streams, the KV bucket and the object store exist.
    pub async fn connect(url: &str) -> Result<Queue, QueueError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .name("concurrent-scheduler")
            .connect(url);
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .unwrap_or_else(|_| Err(async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut)))
            .map_err(|source| QueueError::Connect { url: url.to_string(), source })?;
        let js = jetstream::new(client);
        let shards = js
            .get_or_create_stream(stream::Config {
                name: names::SHARDS_STREAM.into(),
                subjects: vec![names::SHARDS_SUBJECTS.into()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(120),
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
                duplicate_window: Duration::from_secs(120),
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
        Ok(Queue { js, shards, results, stages, projects })
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
        self.stages.put(&key, encode(spec).into()).await.map_err(|e| QueueError::js(format!("writing KV {key}"), e))?;
        Ok(())
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

    /// Removes a finished stage's consumer (its idle workers then exit) and its KV entry.
    pub async fn delete_shard_consumer(&self, run_id: &str, stage: &str) -> Result<(), QueueError> {
        let name = names::shard_consumer(run_id, stage);
        if let Err(e) = self.shards.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "deleting consumer");
        }
        Ok(())
    }

    /// Publishes shards, awaiting the acks in windows; JetStream drops duplicates by `Nats-Msg-Id`.
    pub async fn publish_shards(&self, shards: impl IntoIterator<Item = ShardMsg>) -> Result<(), QueueError> {
        let mut pending = Vec::with_capacity(PUBLISH_WINDOW);
        for shard in shards {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, names::shard_msg_id(&shard.run_id, &shard.stage, shard.shard).as_str());
            let subject = names::shard_subject(&shard.run_id, &shard.stage);
            let ack = self
                .js
                .publish_with_headers(subject, headers, encode(&shard).into())
                .await
                .map_err(|e| QueueError::js("publishing a shard", e))?;
            pending.push(ack.into_future());
            if pending.len() == PUBLISH_WINDOW {
                try_join_all(pending.drain(..)).await.map_err(|e| QueueError::js("publishing shards", e))?;
            }
        }
        try_join_all(pending).await.map_err(|e| QueueError::js("publishing shards", e))?;
        Ok(())
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
