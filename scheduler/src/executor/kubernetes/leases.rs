//! The leases of workers in Pods, in KV `CONCURRENT_LEASES` (key `<run>.<stage>.<worker>`, the
//! worker being its Pod's name): the ack subject of the shard whose entry point runs.

use async_nats::jetstream::kv;
use concurrent_proto::names::lease_key;

/// Reads and clears leases.
#[derive(Clone)]
pub struct Leases(pub kv::Store);

impl Leases {
    /// The ack subject a dead worker's lease names, if it held one; the lease is removed.
    pub async fn take(&self, run_id: &str, stage: &str, worker: &str) -> Option<String> {
        let key = lease_key(run_id, stage, worker);
        let value = match self.0.get(&key).await {
            Ok(value) => value?,
            Err(error) => {
                tracing::warn!(%key, %error, "cannot read a worker's lease; its shard comes back after ack_wait");
                return None;
            }
        };
        let _ = self.0.purge(&key).await;
        let subject = String::from_utf8(value.to_vec()).ok()?;
        (!subject.trim().is_empty()).then(|| subject.trim().to_string())
    }
}
