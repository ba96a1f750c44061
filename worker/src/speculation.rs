//! A speculating stage's side of speculative copies: the scheduler's word that a shard is
//! decided ([`ShardDecided`] on the stage's decided subject), which stops this worker's
//! attempt of it when another attempt decided it, and which spares a worker from running a
//! shard already decided. Best effort: an attempt that does not hear the word runs to its end,
//! and its result is a duplicate the scheduler ignores.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use concurrent_proto::{ShardDecided, decode, names};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Decided shards remembered, the most recent ones: a stage copies few shards.
const REMEMBERED: usize = 4096;

/// What this worker heard of its stage's decided shards.
#[derive(Clone)]
pub struct Decisions {
    heard: Arc<Mutex<Heard>>,
}

impl Decisions {
    /// Listens for the stage's decided shards; `None` when the subscription fails (attempts
    /// then run to their end).
    pub async fn listen(client: &async_nats::Client, run_id: &str, stage: &str) -> Option<Decisions> {
        let mut notices = match client.subscribe(names::decided_subject(run_id, stage)).await {
            Ok(notices) => notices,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for decided shards: attempts superseded by a copy run to their end");
                return None;
            }
        };
        let heard = Arc::new(Mutex::new(Heard::default()));
        let weak = Arc::downgrade(&heard);
        tokio::spawn(async move {
            while let Some(notice) = notices.next().await {
                let Some(heard) = weak.upgrade() else { break };
                match decode::<ShardDecided>(&notice.payload) {
                    Ok(decided) => lock(&heard).decided(decided.shard, decided.attempt),
                    Err(error) => tracing::debug!(%error, "ignoring a decided notice that does not decode"),
                }
            }
        });
        Some(Decisions { heard })
    }

    /// The attempt that decided `shard`, if this worker heard of it.
    pub fn decided_by(&self, shard: u32) -> Option<u32> {
        lock(&self.heard).decided_by(shard)
    }

    /// Watches attempt `attempt` of `shard` while it runs: `stop` is cancelled when another
    /// attempt decides the shard (at once if one already has).
    pub fn watch(&self, shard: u32, attempt: u32, stop: CancellationToken) -> Watch {
        lock(&self.heard).watch(shard, attempt, stop);
        Watch { heard: self.heard.clone() }
    }
}

/// The attempt being watched; the watch ends when this is dropped.
pub struct Watch {
    heard: Arc<Mutex<Heard>>,
}

impl Watch {
    /// The attempt that decided the watched shard, when another attempt did.
    pub fn superseded_by(&self) -> Option<u32> {
        lock(&self.heard).watching.as_ref().and_then(|w| w.superseded_by)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock(&self.heard).watching = None;
    }
}

fn lock(heard: &Mutex<Heard>) -> std::sync::MutexGuard<'_, Heard> {
    heard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decided shards heard, and the attempt running now. Pure.
#[derive(Debug, Default)]
struct Heard {
    decided: VecDeque<(u32, u32)>,
    watching: Option<Watched>,
}

#[derive(Debug)]
struct Watched {
    shard: u32,
    attempt: u32,
    stop: CancellationToken,
    superseded_by: Option<u32>,
}

impl Heard {
    fn decided(&mut self, shard: u32, attempt: u32) {
        if self.decided.len() >= REMEMBERED {
            self.decided.pop_front();
        }
        self.decided.push_back((shard, attempt));
        if let Some(watched) = &mut self.watching
            && watched.shard == shard
            && watched.attempt != attempt
        {
            watched.superseded_by = Some(attempt);
            watched.stop.cancel();
        }
    }

    fn decided_by(&self, shard: u32) -> Option<u32> {
        self.decided.iter().rev().find(|(s, _)| *s == shard).map(|(_, attempt)| *attempt)
    }

    fn watch(&mut self, shard: u32, attempt: u32, stop: CancellationToken) {
        let superseded_by = self.decided_by(shard).filter(|by| *by != attempt);
        if superseded_by.is_some() {
            stop.cancel();
        }
        self.watching = Some(Watched { shard, attempt, stop, superseded_by });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_attempt_deciding_the_watched_shard_stops_it_and_says_which() {
        let mut heard = Heard::default();
        let stop = CancellationToken::new();
        heard.watch(3, 1, stop.clone());
        heard.decided(2, 4);
        assert!(!stop.is_cancelled(), "another shard");
        heard.decided(3, 1);
        assert!(!stop.is_cancelled(), "the watched attempt itself decided it");
        heard.decided(3, 4);
        assert!(stop.is_cancelled());
        assert_eq!(heard.watching.as_ref().and_then(|w| w.superseded_by), Some(4));
    }

    #[test]
    fn a_shard_decided_before_its_attempt_starts_is_stopped_at_once_and_remembered() {
        let mut heard = Heard::default();
        heard.decided(5, 1);
        assert_eq!(heard.decided_by(5), Some(1));
        assert_eq!(heard.decided_by(6), None);
        let stop = CancellationToken::new();
        heard.watch(5, 4, stop.clone());
        assert!(stop.is_cancelled());
        for shard in 0..REMEMBERED as u32 {
            heard.decided(100 + shard, 1);
        }
        assert_eq!(heard.decided_by(5), None, "only the most recent are kept");
    }
}
