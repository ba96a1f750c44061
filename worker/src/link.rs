//! The worker's NATS connection and what it knows about its health. The client reconnects by
//! itself, forever (async-nats keeps subscriptions and queues what is sent meanwhile); [`Link`]
//! lets the pull loop wait while the connection is down and notice when it drops or comes
//! back, since a pull request sent before a reconnect may have been lost with the server.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, Event};
use concurrent_mlflow::nats_options::secured_options;
use concurrent_proto::nats_auth::NatsAuth;
use tokio::sync::watch;

/// Timeout of one connection attempt (TCP, INFO, CONNECT, PONG).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of a request (JetStream API calls, publish acks, double acks).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the client pings the server; two missed pongs count as a lost connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait between two reconnect attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// NATS could not be reached at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url} within {}s", waited.as_secs_f64())]
pub struct Unreachable {
    /// The URL tried.
    pub url: String,
    /// How long the worker waited.
    pub waited: Duration,
    /// The client's own complaint, when it made one.
    #[source]
    pub source: Option<async_nats::ConnectError>,
}

/// A connection to NATS that reconnects by itself, and its health.
#[derive(Clone)]
pub struct Link {
    url: String,
    client: Client,
    changes: watch::Receiver<u64>,
}

impl Link {
    /// Connects to `url`, waiting at most `within` for the first connection; afterwards the
    /// client reconnects without limit (delays 0, 100 ms, 200 ms, … up to 2 s).
    pub async fn connect(url: &str, auth: &NatsAuth, worker_id: &str, within: Duration) -> Result<Link, Unreachable> {
        let (changes_tx, changes) = watch::channel(0u64);
        let unreachable = |source| Unreachable { url: url.to_string(), waited: within, source };
        let options = async_nats::ConnectOptions::new()
            .name(format!("concurrent-worker {worker_id}"))
            .connection_timeout(CONNECTION_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .ping_interval(PING_INTERVAL)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let changes_tx = changes_tx.clone();
                async move { on_event(&changes_tx, event) }
            });
        let options = secured_options(options, auth).await.map_err(|e| unreachable(Some(e)))?;
        let client = options.connect(url).await.map_err(|e| unreachable(Some(e)))?;
        let link = Link { url: url.to_string(), client, changes };
        if tokio::time::timeout(within, link.up()).await.is_err() {
            return Err(unreachable(None));
        }
        Ok(link)
    }

    /// The URL it connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client (for JetStream).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection is up right now.
    pub fn is_up(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// How many times the connection went down or up so far.
    pub fn changes(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Waits until the connection is up.
    pub async fn up(&self) {
        let mut changes = self.changes.clone();
        // The state is polled too: events arrive through a channel, slightly after the fact.
        while !self.is_up() {
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }

    /// Waits until the connection has gone down or come back since `seen` changes.
    pub async fn changed_since(&self, seen: u64) {
        let mut changes = self.changes.clone();
        if changes.wait_for(|now| *now != seen).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn on_event(changes: &watch::Sender<u64>, event: Event) {
    match event {
        Event::Connected => {
            tracing::info!("connected to NATS");
            changes.send_modify(|n| *n += 1);
        }
        Event::Disconnected => {
            tracing::warn!("lost the NATS connection; reconnecting");
            changes.send_modify(|n| *n += 1);
        }
        Event::Closed => tracing::warn!("the NATS connection is closed"),
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}

/// Delay before reconnect attempt `attempts` (1-based): at once, then 100 ms doubling to 2 s.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(100).saturating_mul(1u32 << exp).min(MAX_RECONNECT_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_start_at_once_and_back_off_to_two_seconds() {
        let delays: Vec<u128> = (1..=8).map(|n| reconnect_delay(n).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }
}
