//! The lease of a worker in a Pod (`--lease-kv`): while an attempt runs, KV
//! `CONCURRENT_LEASES` holds, under `<run>.<stage>.<worker>`, the ack subject of its shard.
//! The Kubernetes executor reads it when it sees the worker's Pod fail or vanish, and hands the
//! shard back at once. The file lease of local workers (`entry_point.rs`) is separate.

use async_nats::jetstream::{self, kv};
use concurrent_proto::names::{LEASES_BUCKET, lease_key};

/// A worker's KV lease.
pub struct KvLease {
    store: kv::Store,
    key: String,
}

impl KvLease {
    /// Opens the bucket (the scheduler creates it); `None`, said in the log, when it is missing.
    pub async fn open(js: &jetstream::Context, run_id: &str, stage: &str, worker: &str) -> Option<KvLease> {
        match js.get_key_value(LEASES_BUCKET).await {
            Ok(store) => Some(KvLease { store, key: lease_key(run_id, stage, worker) }),
            Err(error) => {
                tracing::warn!(%error, "no lease bucket: a lost worker's shard comes back after ack_wait");
                None
            }
        }
    }

    /// Holds the lease for the shard whose message acks on `ack_subject`.
    pub async fn hold(&self, ack_subject: &str) {
        if let Err(error) = self.store.put(&self.key, ack_subject.to_string().into()).await {
            tracing::warn!(%error, "could not write the worker's lease");
        }
    }

    /// Gives the lease up: the attempt ended and its shard is settled or being settled.
    pub async fn release(&self) {
        if let Err(error) = self.store.purge(&self.key).await {
            tracing::warn!(%error, "could not release the worker's lease");
        }
    }
}
