//! The idle clock that decides when a worker has nothing left to do. Time comes from tokio, so
//! it is tested with a paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// When a worker has waited long enough for a shard. The clock restarts after every shard and
/// whenever the NATS connection comes back: time while NATS is unreachable is not idle time
/// (nobody could have handed the worker a shard), so a worker never exits because of an outage.
#[derive(Debug, Clone)]
pub struct IdleClock {
    timeout: Duration,
    since: Instant,
}

impl IdleClock {
    /// A clock that runs out `timeout` from now.
    pub fn start(timeout: Duration) -> IdleClock {
        IdleClock { timeout, since: Instant::now() }
    }

    /// Starts counting again from now.
    pub fn restart(&mut self) {
        self.since = Instant::now();
    }

    /// Idle time left before the worker should exit.
    pub fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_runs_out_and_restarts() {
        let mut idle = IdleClock::start(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(idle.remaining(), Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(idle.remaining(), Duration::ZERO);
        idle.restart();
        assert_eq!(idle.remaining(), Duration::from_secs(5));
    }
}
