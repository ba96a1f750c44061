//! Waiting out faults: a capped exponential backoff, retrying a fallible step within a time
//! budget, and the idle clock that decides when a worker has nothing left to do. Time comes
//! from tokio, so all of it is tested with a paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A capped exponential backoff: `initial`, doubling, never more than `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { next: initial, initial, max }
    }

    /// The delay before the next try; each call doubles the following one (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Runs `step` until it succeeds or `budget` (measured from the first try) would be exceeded
/// by the next wait; returns the last error then. Each failure is logged at warn with `what`.
pub async fn retry_within<T, E, F, Fut>(budget: Duration, mut backoff: Backoff, what: &str, mut step: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut tries = 1u32;
    loop {
        let error = match step().await {
            Ok(value) => {
                if tries > 1 {
                    tracing::info!(what, tries, "succeeded after retrying");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        if started.elapsed() + delay > budget {
            tracing::warn!(what, tries, %error, "giving up");
            return Err(error);
        }
        tracing::warn!(what, tries, ?delay, %error, "failed; retrying");
        tokio::time::sleep(delay).await;
        tries += 1;
    }
}

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
    use std::cell::Cell;

    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_recovers_is_retried_until_it_succeeds() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let out: Result<u32, String> = retry_within(
            Duration::from_secs(120),
            Backoff::new(Duration::from_secs(1), Duration::from_secs(5)),
            "t",
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err(format!("down {n}")) } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(out, Ok(4));
        // Waited 1 + 2 + 4 seconds between the four tries.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_keeps_failing_gives_up_within_the_budget() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let out: Result<(), String> = retry_within(
            Duration::from_secs(30),
            Backoff::new(Duration::from_secs(1), Duration::from_secs(5)),
            "t",
            || {
                calls.set(calls.get() + 1);
                async { Err("down".to_string()) }
            },
        )
        .await;
        assert_eq!(out, Err("down".to_string()));
        assert!(started.elapsed() <= Duration::from_secs(30), "{:?}", started.elapsed());
        // 1 + 2 + 4 + 5 + 5 + 5 + 5 = 27 s of waits, then the next 5 s wait would pass 30 s.
        assert_eq!(calls.get(), 8);
    }

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
