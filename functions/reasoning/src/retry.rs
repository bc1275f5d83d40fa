//! One retry policy for every model call (InvokeAgent, each Converse turn): throttling is retried from the start of
//! the call with exponential backoff; anything else fails at once; nothing runs past the deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::ReasonerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub max_attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { max_attempts: 3, first_backoff: Duration::from_secs(2) }
    }
}

impl Retry {
    /// Runs `attempt` until it succeeds, fails other than by throttling, or the attempts or the time run out.
    /// `on_retry(n)` is told before attempt `n` (2, 3, ...) starts; `limit` is the time limit the deadline came from,
    /// for the error.
    pub async fn run<T, F, Fut>(
        &self,
        deadline: Instant,
        limit: Duration,
        mut attempt: F,
        on_retry: &(dyn Fn(u32) + Sync),
    ) -> Result<T, ReasonerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ReasonerError>>,
    {
        let mut backoff = self.first_backoff;
        let mut n = 1;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result =
                tokio::time::timeout(left, attempt()).await.unwrap_or(Err(ReasonerError::TimedOut(limit.as_secs())));
            match result {
                Err(ReasonerError::Throttled(m)) if n < self.max_attempts => {
                    tracing::warn!(attempt = n, message = m, "model throttled; retrying");
                    on_retry(n + 1);
                    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                    backoff *= 2;
                    n += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn throttling_is_retried_with_backoff_and_other_errors_are_not() {
        let retry = Retry { max_attempts: 3, first_backoff: Duration::from_millis(20) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<u32, _> = retry
            .run(
                deadline,
                Duration::from_secs(60),
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => Err(ReasonerError::Throttled("slow down".into())),
                        n => Ok(n),
                    }
                },
                &|_| {},
            )
            .await;
        assert_eq!(result.unwrap(), 2);
        assert!(started.elapsed() >= Duration::from_millis(60), "20 ms, then 40 ms: {:?}", started.elapsed());

        let calls = AtomicU32::new(0);
        let failed: Result<(), _> = retry
            .run(
                deadline,
                Duration::from_secs(60),
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(ReasonerError::Failed("bad request".into()))
                },
                &|_| {},
            )
            .await;
        assert!(matches!(failed, Err(ReasonerError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let timed_out: Result<(), _> = retry
            .run(
                Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
                || async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                },
                &|_| {},
            )
            .await;
        assert!(matches!(timed_out, Err(ReasonerError::TimedOut(1))));
    }
}
