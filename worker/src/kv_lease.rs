//! The lease of a worker in a Pod (`--lease-kv`): while an attempt runs, KV
//! `CONCURRENT_LEASES` holds, under `<run>.<stage>.<worker>`, the ack subject of its shard.
//! The Kubernetes executor reads it when it sees the worker's Pod fail or vanish, and hands the
//! shard back at once. A long attempt writes it again every [`LEASE_REFRESH_EVERY`], inside
//! the bucket's `max_age`. The file lease of local workers (`entry_point.rs`) is separate.

use std::sync::Mutex;

use async_nats::jetstream::{self, kv};
use concurrent_proto::names::{LEASES_BUCKET, lease_key};
use concurrent_proto::timing::LEASE_REFRESH_EVERY;
use tokio::time::Instant;

/// A worker's KV lease.
pub struct KvLease {
    store: kv::Store,
    key: String,
    /// When the lease was last written.
    written: Mutex<Option<Instant>>,
}

impl KvLease {
    /// Opens the bucket (the scheduler creates it); `None`, said in the log, when it is missing.
    pub async fn open(js: &jetstream::Context, run_id: &str, stage: &str, worker: &str) -> Option<KvLease> {
        match js.get_key_value(LEASES_BUCKET).await {
            Ok(store) => Some(KvLease { store, key: lease_key(run_id, stage, worker), written: Mutex::new(None) }),
            Err(error) => {
                tracing::warn!(%error, "no lease bucket: a lost worker's shard comes back after ack_wait");
                None
            }
        }
    }

    /// Holds the lease for the shard whose message acks on `ack_subject`.
    pub async fn hold(&self, ack_subject: &str) {
        match self.store.put(&self.key, ack_subject.to_string().into()).await {
            Ok(_) => *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now()),
            Err(error) => tracing::warn!(%error, "could not write the worker's lease"),
        }
    }

    /// Writes the lease again when it was last written [`LEASE_REFRESH_EVERY`] ago or more
    /// (called with every heartbeat).
    pub async fn refresh(&self, ack_subject: &str) {
        let written = *self.written.lock().unwrap_or_else(|p| p.into_inner());
        if refresh_due(written, Instant::now()) {
            self.hold(ack_subject).await;
        }
    }

    /// Gives the lease up: the attempt ended and its shard is settled or being settled.
    pub async fn release(&self) {
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Err(error) = self.store.purge(&self.key).await {
            tracing::warn!(%error, "could not release the worker's lease");
        }
    }
}

/// Whether a lease last written at `written` (never: `None`) is to be written again at `now`.
fn refresh_due(written: Option<Instant>, now: Instant) -> bool {
    written.is_none_or(|at| now.duration_since(at) >= LEASE_REFRESH_EVERY)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_is_written_again_once_per_refresh_period_and_when_a_write_failed() {
        let start = Instant::now();
        assert!(refresh_due(None, start), "a lease whose write failed is written at the next heartbeat");
        assert!(!refresh_due(Some(start), start + Duration::from_secs(10)));
        assert!(!refresh_due(Some(start), start + LEASE_REFRESH_EVERY - Duration::from_millis(1)));
        assert!(refresh_due(Some(start), start + LEASE_REFRESH_EVERY));
    }
}
