//! In-progress heartbeats: runs a piece of work while calling a heartbeat at a fixed period,
//! so JetStream's ack wait never expires on a shard that is still being worked on.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

/// Runs `work` to its end, calling `beat` every `every` (first after one period) meanwhile.
pub async fn with_heartbeats<T, F, Fut>(every: Duration, mut beat: F, work: impl Future<Output = T>) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(work);
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            _ = ticks.tick() => beat().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beats_once_per_period_while_the_work_runs() {
        let beats = Cell::new(0);
        let work = async {
            tokio::time::sleep(Duration::from_secs(35)).await;
            "done"
        };
        let out = with_heartbeats(Duration::from_secs(10), || async { beats.set(beats.get() + 1) }, work).await;
        assert_eq!(out, "done");
        assert_eq!(beats.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn quick_work_sends_no_heartbeat() {
        let beats = Cell::new(0);
        with_heartbeats(Duration::from_secs(10), || async { beats.set(beats.get() + 1) }, async {}).await;
        assert_eq!(beats.get(), 0);
    }
}
