//! Retrying requests: a bounded exponential backoff with jitter, and which failures qualify.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::error::MlflowError;

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub initial_backoff: Duration,
    /// Cap of one delay.
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first one.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 250 ms doubling up to 10 s, 60 s in all.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The delay after failed attempt number `attempt` (1-based), `elapsed` after the first
    /// started, or `None` when the budget is spent. `jitter` in `[0, 1)` scales the delay
    /// into `[50 %, 100 %)` of the exponential value.
    pub fn delay_after(&self, attempt: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let delay = exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }
}

/// Which failures a request may be retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it twice does no harm: retry every retryable failure.
    Idempotent,
    /// Sending it twice may do it twice (creating a run): retry only when the request surely
    /// did not reach the server (connect error, HTTP 429).
    NotIdempotent,
}

/// Runs `attempt` until it succeeds, fails for good, or `policy`'s budget is spent.
///
/// A failure that persisted through more than one attempt comes back as
/// [`MlflowError::GaveUp`] holding the last failure.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    idempotency: Idempotency,
    mut attempt: F,
) -> Result<T, MlflowError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MlflowError>>,
{
    let start = Instant::now();
    let mut number = 1;
    loop {
        let err = match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let retryable = match idempotency {
            Idempotency::Idempotent => err.is_retryable(),
            Idempotency::NotIdempotent => err.surely_not_processed(),
        };
        let jitter = rand::rng().random::<f64>();
        let delay = retryable.then(|| policy.delay_after(number, start.elapsed(), jitter)).flatten();
        match delay {
            Some(delay) => {
                tracing::debug!(what, attempt = number, ?delay, error = %err, "retrying");
                tokio::time::sleep(delay).await;
                number += 1;
            }
            None if number > 1 || retryable => {
                return Err(MlflowError::GaveUp { what: what.to_owned(), attempts: number, source: Box::new(err) });
            }
            None => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn api(status: u16) -> MlflowError {
        MlflowError::Api { what: "t".into(), status, error_code: "X".into(), message: String::new() }
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(5),
        }
    }

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
        // Huge attempt numbers do not overflow.
        let many = RetryPolicy { max_attempts: u32::MAX, ..p };
        assert_eq!(many.delay_after(100, Duration::ZERO, 1.0), Some(Duration::from_secs(10)));
    }

    async fn count(policy: &RetryPolicy, idem: Idempotency, err: fn() -> MlflowError) -> (u32, MlflowError) {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(policy, "t", idem, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(err()) }
        })
        .await;
        (calls.load(Ordering::SeqCst), result.unwrap_err())
    }

    #[tokio::test]
    async fn retryable_errors_use_the_whole_budget() {
        let (n, err) = count(&quick(4), Idempotency::Idempotent, || api(503)).await;
        assert_eq!(n, 4);
        assert!(matches!(err, MlflowError::GaveUp { attempts: 4, .. }));
        assert_eq!(err.status(), Some(503));
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let (n, err) = count(&quick(4), Idempotency::Idempotent, || api(400)).await;
        assert_eq!(n, 1);
        assert!(matches!(err, MlflowError::Api { status: 400, .. }));
    }

    #[tokio::test]
    async fn not_implemented_is_not_retried() {
        let (n, err) = count(&quick(4), Idempotency::Idempotent, || api(501)).await;
        assert_eq!(n, 1);
        assert!(matches!(err, MlflowError::Api { status: 501, .. }));
        let (n, _) = count(&quick(4), Idempotency::Idempotent, || api(502)).await;
        assert_eq!(n, 4);
    }

    #[tokio::test]
    async fn not_idempotent_requests_retry_only_unprocessed_failures() {
        let (n, _) = count(&quick(4), Idempotency::NotIdempotent, || api(503)).await;
        assert_eq!(n, 1);
        let (n, _) = count(&quick(4), Idempotency::NotIdempotent, || api(429)).await;
        assert_eq!(n, 4);
    }

    #[tokio::test]
    async fn success_after_failures() {
        let calls = AtomicU32::new(0);
        let result = with_retries(&quick(5), "t", Idempotency::Idempotent, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(api(502)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
    }
}
