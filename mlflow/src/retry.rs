//! The one way Concurrent retries: a capped exponential backoff ([`RetryPolicy`]), run by
//! [`retry`] until a step succeeds, fails for good, or the policy's budget is spent, and the
//! same delays as a [`Backoff`] for loops that never give up (reconnecting, pulling). MLflow
//! requests, JetStream operations in the scheduler and the worker, and result publishing all go
//! through here; time comes from tokio, so every policy is tested on a paused clock.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How a failed step is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1; `u32::MAX`: until `max_elapsed`).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub initial_backoff: Duration,
    /// Cap of one delay.
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first one.
    pub max_elapsed: Duration,
    /// Random jitter: each delay is scaled into `[50 %, 100 %)` of its exponential value, so
    /// that many clients failing together do not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 8 attempts, 250 ms doubling up to 10 s, 60 s in all, with jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Retries for `budget` in all, `initial` doubling up to `max`, without jitter.
    pub fn within(budget: Duration, initial: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: initial,
            max_backoff: max,
            max_elapsed: budget,
            jitter: false,
        }
    }

    /// The delay after failed attempt number `attempt` (1-based), `elapsed` after the first
    /// started, or `None` when the budget is spent. `jitter` in `[0, 1)` scales the delay into
    /// `[50 %, 100 %)` of the exponential value when the policy asks for jitter.
    pub fn delay_after(&self, attempt: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let exp = self.exponential(attempt);
        let delay = if self.jitter { exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)) } else { exp };
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }

    /// The policy's delays without a budget, for a loop that never gives up.
    pub fn backoff(&self) -> Backoff {
        Backoff { policy: self.clone(), failures: 0 }
    }

    fn exponential(&self, attempt: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max_backoff)
    }
}

/// A policy's delays for a loop that never gives up: each failure waits longer, up to the cap;
/// a success starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    /// The delay before the next try after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.policy.exponential(self.failures);
        if self.policy.jitter { exp.mul_f64(0.5 + 0.5 * rand::rng().random::<f64>()) } else { exp }
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A step that failed for good: its last error and how many attempts were made.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
}

/// Runs `step` until it succeeds, fails with an error `retryable` refuses, or `policy`'s
/// budget is spent; each retry is logged at warn with `what`.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    retryable: impl Fn(&E) -> bool,
    mut step: F,
) -> Result<T, GaveUp<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempts = 1u32;
    loop {
        let error = match step().await {
            Ok(value) => {
                if attempts > 1 {
                    tracing::info!(what, attempts, "succeeded after retrying");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        let jitter = rand::rng().random::<f64>();
        let delay = retryable(&error).then(|| policy.delay_after(attempts, started.elapsed(), jitter)).flatten();
        let Some(delay) = delay else {
            if attempts > 1 {
                tracing::warn!(what, attempts, %error, "giving up");
            }
            return Err(GaveUp { error, attempts });
        };
        tracing::warn!(what, attempts, ?delay, %error, "failed; retrying");
        tokio::time::sleep(delay).await;
        attempts += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn delays_grow_cap_and_stop() {
        let p = RetryPolicy::default();
        let d = |n| p.delay_after(n, Duration::ZERO, 1.0);
        assert_eq!(d(1), Some(Duration::from_millis(250)));
        assert_eq!(d(2), Some(Duration::from_millis(500)));
        assert_eq!(d(7), Some(Duration::from_secs(10)));
        assert_eq!(d(8), None);
        assert_eq!(p.delay_after(1, Duration::ZERO, 0.0), Some(Duration::from_millis(125)));
        assert_eq!(p.delay_after(1, Duration::from_secs(60), 0.0), None);
        assert_eq!(RetryPolicy::none().delay_after(1, Duration::ZERO, 0.0), None);
        let many = RetryPolicy { max_attempts: u32::MAX, ..p };
        assert_eq!(many.delay_after(100, Duration::ZERO, 1.0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_backoff_doubles_up_to_its_cap_and_resets() {
        let policy = RetryPolicy::within(Duration::MAX, Duration::from_millis(100), Duration::from_millis(500));
        let mut backoff = policy.backoff();
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_recovers_is_retried_until_it_succeeds() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let policy = RetryPolicy::within(Duration::from_secs(120), Duration::from_secs(1), Duration::from_secs(5));
        let out: Result<u32, GaveUp<String>> = retry(
            &policy,
            "t",
            |_| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err(format!("down {n}")) } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(out.unwrap(), 4);
        // Waited 1 + 2 + 4 s between the four tries.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_recovers_gives_up_within_the_budget() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let policy = RetryPolicy::within(Duration::from_secs(20), Duration::from_secs(1), Duration::from_secs(5));
        let out: Result<(), GaveUp<String>> = retry(
            &policy,
            "t",
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("down".to_string()) }
            },
        )
        .await;
        let gave_up = out.unwrap_err();
        assert_eq!((gave_up.error.as_str(), gave_up.attempts), ("down", calls.get()));
        // 1 + 2 + 4 + 5 + 5 = 17 s; one more 5 s wait would pass the 20 s budget.
        assert_eq!(started.elapsed(), Duration::from_secs(17));
        assert_eq!(calls.get(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_not_retryable_is_returned_at_once() {
        let calls = Cell::new(0);
        let out: Result<(), GaveUp<String>> = retry(
            &RetryPolicy::default(),
            "t",
            |e: &String| e != "bad",
            || {
                calls.set(calls.get() + 1);
                async { Err("bad".to_string()) }
            },
        )
        .await;
        assert_eq!(out.unwrap_err().attempts, 1);
        assert_eq!(calls.get(), 1);
    }
}
