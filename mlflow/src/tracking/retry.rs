//! Retrying MLflow requests with the one retry helper ([`crate::retry`]): which failures
//! qualify, and how a failure that persisted is reported.

use std::future::Future;

use super::error::MlflowError;
use crate::retry::{GaveUp, RetryPolicy, retry};

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
    attempt: F,
) -> Result<T, MlflowError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MlflowError>>,
{
    let retryable = |err: &MlflowError| match idempotency {
        Idempotency::Idempotent => err.is_retryable(),
        Idempotency::NotIdempotent => err.surely_not_processed(),
    };
    retry(policy, what, retryable, attempt).await.map_err(|GaveUp { error, attempts }| {
        if attempts > 1 || retryable(&error) {
            MlflowError::GaveUp { what: what.to_owned(), attempts, source: Box::new(error) }
        } else {
            error
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

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
            jitter: true,
        }
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
