//! The JetStream side of a worker: reading the stage description, binding to the stage's
//! durable pull consumer, pulling one shard at a time, publishing results (retried until
//! JetStream acks them) and settling shard messages (ack, nak, term, in-progress).

use std::time::Duration;

use async_nats::StatusCode;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, ErrorCode};
use concurrent_proto::{StageSpec, names};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::link::Unreachable;
use crate::report::Disposition;
use concurrent_mlflow::retry::{RetryPolicy, retry};

/// Longest one pull waits for a shard; an idle worker pulls again until its idle time is up.
pub const PULL_SLICE: Duration = Duration::from_millis(250);
/// Shortest pull worth sending; less remaining idle time counts as idle.
pub const MIN_PULL: Duration = Duration::from_millis(10);
/// How long the result is retried once the worker is stopping (SIGTERM, or its parent gone),
/// counted from the stop even when publishing began before it: a stopping worker does not
/// linger; a result it cannot publish leaves the shard unacked, so JetStream hands it out
/// again.
pub const STOPPING_PUBLISH_BUDGET: Duration = Duration::from_millis(1500);

/// Talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The server could not be reached at start.
    #[error(transparent)]
    Connect(#[from] Unreachable),
    /// The stage description is missing from the KV bucket.
    #[error("stage description `{key}` is not in KV bucket {bucket}")]
    NoStageSpec {
        /// The bucket.
        bucket: &'static str,
        /// The key.
        key: String,
    },
    /// The stage description does not decode.
    #[error("stage description `{key}` does not decode")]
    BadStageSpec {
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: concurrent_proto::DecodeError,
    },
    /// The worker stopped before the request succeeded.
    #[error("{what}: given up, the worker is stopping")]
    Stopping {
        /// What was being done.
        what: String,
    },
    /// The subscription the answers to pulls come on ended.
    #[error("the inbox of the pulls from consumer {consumer} was closed; pulling on a new one")]
    InboxEnded {
        /// The stage's consumer.
        consumer: String,
    },
    /// A JetStream request failed.
    #[error("{what}")]
    JetStream {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: async_nats::Error,
    },
}

fn js_err<E: std::error::Error + Send + Sync + 'static>(what: impl Into<String>) -> impl FnOnce(E) -> QueueError {
    let what = what.into();
    move |e| QueueError::JetStream { what, source: Box::new(e) }
}

/// Reads the stage description `<run>.<stage>` from KV bucket `CONCURRENT_STAGES`.
pub async fn read_stage_spec(js: &jetstream::Context, run_id: &str, stage: &str) -> Result<StageSpec, QueueError> {
    let bucket = names::STAGES_BUCKET;
    let key = names::stage_key(run_id, stage);
    let kv = js.get_key_value(bucket).await.map_err(js_err(format!("opening KV bucket {bucket}")))?;
    let bytes = kv
        .get(key.as_str())
        .await
        .map_err(js_err(format!("reading `{key}` from KV bucket {bucket}")))?
        .ok_or_else(|| QueueError::NoStageSpec { bucket, key: key.clone() })?;
    concurrent_proto::decode(&bytes).map_err(|source| QueueError::BadStageSpec { key, source })
}

/// What one pull brought.
#[derive(Debug)]
pub enum Pulled {
    /// A shard message (not decoded yet).
    Message(Box<jetstream::Message>),
    /// Nothing arrived in time.
    Nothing,
    /// The stage's consumer no longer exists: the stage is over.
    ConsumerGone,
}

/// A worker's binding to one stage: its consumer, the inbox its pulls are answered on, and
/// its result subject.
pub struct StageQueue {
    js: jetstream::Context,
    consumer: PullConsumer,
    consumer_name: String,
    result_subject: String,
    replies: tokio::sync::Mutex<Replies>,
}

/// The inbox every pull of this worker is answered on (subscribed once), and the one pull
/// waiting for its answer.
struct Replies {
    inbox: async_nats::Subject,
    subscriber: async_nats::Subscriber,
    /// When the pull sent last is answered at the latest (its `expires` and a margin), while
    /// its answer has not come: no second pull is sent meanwhile, so a worker never has two
    /// shards coming.
    waiting: Option<tokio::time::Instant>,
}

impl Replies {
    /// A new inbox for the answers to pulls from `consumer`, subscribed.
    async fn subscribe(client: &async_nats::Client, consumer: &str) -> Result<Replies, QueueError> {
        let inbox = async_nats::Subject::from(client.new_inbox());
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(js_err(format!("subscribing to the answers of pulls from {consumer}")))?;
        Ok(Replies { inbox, subscriber, waiting: None })
    }
}

/// How long past its `expires` a pull's answer may come (the server sends a timeout status at
/// `expires`); past that it is taken as lost.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

impl StageQueue {
    /// Binds to the stage's durable pull consumer; `None` when it does not exist (the stage
    /// has finished and was cleaned up).
    pub async fn bind(js: &jetstream::Context, run_id: &str, stage: &str) -> Result<Option<StageQueue>, QueueError> {
        let consumer_name = names::shard_consumer(run_id, stage);
        let consumer = match js.get_consumer_from_stream(&consumer_name, names::SHARDS_STREAM).await {
            Ok(consumer) => consumer,
            Err(e) if is_not_found(e.kind()) => return Ok(None),
            Err(e) => return Err(js_err(format!("binding to consumer {consumer_name}"))(e)),
        };
        let replies = Replies::subscribe(&js.client(), &consumer_name).await?;
        Ok(Some(StageQueue {
            js: js.clone(),
            consumer,
            consumer_name,
            result_subject: names::result_subject(run_id, stage),
            replies: tokio::sync::Mutex::new(replies),
        }))
    }

    /// Waits up to `wait` for one shard message. Cancel-safe: a pull dropped before its answer
    /// came is answered to the next call, which sends no pull of its own meanwhile.
    pub async fn pull(&self, wait: Duration) -> Result<Pulled, QueueError> {
        self.answer(Some(wait)).await
    }

    /// The answer to a pull sent earlier and not yet read (one given up on when the attempt it
    /// overlapped ended first), without sending a new one: `Nothing` when no pull is waiting.
    /// A worker about to leave reads it first, so that a shard the server delivers to it does
    /// not wait out `ack_wait` and use up one of its attempts.
    pub async fn answer_to_waiting_pull(&self) -> Result<Pulled, QueueError> {
        self.answer(None).await
    }

    /// Reads the answer to the pull waiting for one, or, when none is and `send` gives how
    /// long to wait, sends a pull first.
    async fn answer(&self, send: Option<Duration>) -> Result<Pulled, QueueError> {
        let mut replies = self.replies.lock().await;
        loop {
            // An answer already here (to a pull given up on after a reconnection) is taken
            // first, without a new pull.
            let answer = match replies.subscriber.next().now_or_never() {
                Some(Some(answer)) => answer,
                Some(None) => return Err(self.subscribe_again(&mut replies).await),
                None => {
                    let now = tokio::time::Instant::now();
                    let answer_by = match (replies.waiting, send) {
                        (Some(by), _) if by > now => by,
                        (_, None) => {
                            replies.waiting = None;
                            return Ok(Pulled::Nothing);
                        }
                        (_, Some(wait)) => {
                            let expires = wait.max(MIN_PULL);
                            let request = BatchConfig { batch: 1, expires: Some(expires), ..BatchConfig::default() };
                            self.consumer
                                .request_batch(request, replies.inbox.clone())
                                .await
                                .map_err(js_err(format!("pulling from consumer {}", self.consumer_name)))?;
                            let by = now + expires + ANSWER_MARGIN;
                            replies.waiting = Some(by);
                            by
                        }
                    };
                    match tokio::time::timeout_at(answer_by, replies.subscriber.next()).await {
                        Ok(Some(answer)) => answer,
                        Ok(None) => return Err(self.subscribe_again(&mut replies).await),
                        // Never answered (the connection may have dropped it): the next call
                        // pulls anew.
                        Err(_) => {
                            replies.waiting = None;
                            return Ok(Pulled::Nothing);
                        }
                    }
                }
            };
            match answer.status {
                None | Some(StatusCode::OK) => {
                    replies.waiting = None;
                    let message = jetstream::Message { message: answer, context: self.js.clone() };
                    return Ok(Pulled::Message(Box::new(message)));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => continue,
                Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND) => {
                    replies.waiting = None;
                    return Ok(Pulled::Nothing);
                }
                Some(status) => {
                    replies.waiting = None;
                    drop(replies);
                    // A deleted consumer ends pulls with an error status; anything else is
                    // logged and the pull is retried by the caller.
                    if !self.consumer_exists().await? {
                        return Ok(Pulled::ConsumerGone);
                    }
                    let description = answer.description.unwrap_or_default();
                    tracing::warn!(consumer = %self.consumer_name, %status, %description, "pull ended with an error");
                    return Ok(Pulled::Nothing);
                }
            }
        }
    }

    /// The inbox's subscription ended (the client never ends it while it lives): a shard
    /// delivered there would reach no one, so no pull is sent to it again. The answers go to a
    /// new inbox from the next pull on; this one fails (the caller backs off).
    async fn subscribe_again(&self, replies: &mut Replies) -> QueueError {
        let ended = QueueError::InboxEnded { consumer: self.consumer_name.clone() };
        match Replies::subscribe(&self.js.client(), &self.consumer_name).await {
            Ok(fresh) => {
                *replies = fresh;
                ended
            }
            Err(error) => error,
        }
    }

    /// Forgets the pull waiting for its answer (the connection it was sent on is gone): the
    /// next call sends a new one.
    pub async fn forget_pull(&self) {
        self.replies.lock().await.waiting = None;
    }

    async fn consumer_exists(&self) -> Result<bool, QueueError> {
        match self
            .js
            .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                &self.consumer_name,
                names::SHARDS_STREAM,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(e.kind()) => Ok(false),
            Err(e) => Err(js_err(format!("looking up consumer {}", self.consumer_name))(e)),
        }
    }

    /// Publishes a message of results (its payload encoded, its `Nats-Msg-Id`) and waits for
    /// JetStream's ack, publishing it again (same id, so JetStream keeps one copy) until acked
    /// or `budget` runs out.
    ///
    /// When `stop` fires (before or during), the publishing gets [`STOPPING_PUBLISH_BUDGET`]
    /// more, then is given up.
    pub async fn publish_results(
        &self,
        payload: bytes::Bytes,
        id: &str,
        budget: Duration,
        stop: &CancellationToken,
    ) -> Result<(), QueueError> {
        let what = format!("publishing results ({id})");
        let policy = RetryPolicy::within(budget, Duration::from_millis(100), Duration::from_secs(5));
        let publishing = async {
            let published = retry(
                &policy,
                &what,
                |_| true,
                || async {
                    let publish = PublishMessage::build().payload(payload.clone()).message_id(id);
                    let ack =
                        self.js.send_publish(self.result_subject.clone(), publish).await.map_err(js_err(&what))?;
                    ack.await.map_err(js_err(&what))?;
                    Ok::<(), QueueError>(())
                },
            );
            published.await.map_err(|gave_up| gave_up.error)
        };
        tokio::pin!(publishing);
        tokio::select! {
            biased;
            published = &mut publishing => published,
            () = stop.cancelled() => tokio::time::timeout(STOPPING_PUBLISH_BUDGET, &mut publishing)
                .await
                .unwrap_or_else(|_| Err(QueueError::Stopping { what: what.clone() })),
        }
    }
}

impl StageQueue {
    /// Says that an attempt runs long, on core NATS: no ack is awaited, and a notice nobody
    /// hears only means the attempt gets no speculative copy.
    pub async fn announce_running(&self, notice: &concurrent_proto::AttemptRunning) {
        let subject = names::running_subject(&notice.run_id, &notice.stage);
        if let Err(error) = self.js.client().publish(subject, concurrent_proto::encode(notice).into()).await {
            tracing::debug!(%error, "could not say the attempt runs long");
        }
    }
}

fn is_not_found(kind: jetstream::stream::ConsumerErrorKind) -> bool {
    matches!(kind, jetstream::stream::ConsumerErrorKind::JetStream(e)
        if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND || e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Tells JetStream the shard is still being worked on (resets its ack wait). Best effort.
pub async fn in_progress(message: &jetstream::Message) {
    if let Err(error) = message.ack_with(AckKind::Progress).await {
        tracing::warn!(%error, "could not send an in-progress ack");
    }
}

/// Settles a shard message after its result is published. The server does not confirm it (a
/// round trip saved on every shard): an ack lost with a dying connection only means a
/// redelivery, whose result the scheduler counts as a duplicate and never uses.
pub async fn settle(message: &jetstream::Message, disposition: Disposition) -> Result<(), QueueError> {
    let kind = match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Nak { delay } => AckKind::Nak(delay),
        Disposition::Term => AckKind::Term,
    };
    message.ack_with(kind).await.map_err(|source| QueueError::JetStream {
        what: format!("settling the shard message ({disposition:?})"),
        source,
    })
}

/// Gives a shard this worker took but will not run back to JetStream at once (a nak without
/// delay), so another worker takes it without waiting for `ack_wait`. A delivery was used:
/// on its last one (`max_attempts`) nothing is sent, since JetStream would not deliver it
/// again (the scheduler then finds the shard lost).
pub async fn hand_back(message: &jetstream::Message, max_attempts: u32) {
    if attempt(message).unwrap_or(1) >= max_attempts {
        tracing::warn!("a shard taken during the last report was on its last delivery and is left to the scheduler");
        return;
    }
    if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
        tracing::warn!(%error, "could not hand a taken shard back; it comes back after its ack wait");
    }
}

/// Terminates a message that cannot be processed (does not decode, wrong version).
pub async fn terminate(message: &jetstream::Message) {
    if let Err(error) = message.ack_with(AckKind::Term).await {
        tracing::warn!(%error, "could not terminate an undecodable message");
    }
}

/// The 1-based delivery count of a message, i.e. the attempt number.
pub fn attempt(message: &jetstream::Message) -> Option<u32> {
    let info = message.info().ok()?;
    u32::try_from(info.delivered).ok().filter(|n| *n >= 1)
}
