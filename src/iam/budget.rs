//! A process-wide IAM call budget: every IAM call, read or write, takes a token from one
//! bucket first, so the fleet of PodIamRoles cannot outrun the account's IAM quota. The
//! bucket's rate adapts to throttling (AIMD), and transient failures are retried here, each
//! attempt paced by the bucket, so one throttled call does not fail a whole reconcile.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::{IamApi, IamError, RolePage, RoleSummary};
use crate::metrics::Metrics;
use irsa_core::{
    account::AccountName,
    failure::{is_throttling, worth_another_attempt},
    oidc::ObservedProvider,
    oidc::ProviderOp,
    plan::IamOp,
};

/// Attempts per IAM call, the first included. With a third of calls failing transiently,
/// six attempts leave about one call in 500 to fail the reconcile.
const MAX_ATTEMPTS: u32 = 6;
/// Full-jitter backoff between attempts: up to 50 ms, doubling, at most 2 s. The bucket
/// already paces the process; this only spreads the retries of one burst.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// AIMD in small steps, per call: each `Throttling` takes 2 % off the rate, each success
/// adds 1 % of the configured rate. The rate thus settles where about a third of the calls
/// are throttled: sporadic throttling (IAM's own, or another client's burst) does not slow
/// the fleet, a sustained overload does, within a few dozen throttled calls.
const DECREASE_FACTOR: f64 = 0.98;
const INCREASE_SHARE: f64 = 0.01;
/// The rate never drops below this share of the configured rate.
const MIN_RATE_SHARE: f64 = 0.1;

/// The delay before retry number `retry` (0 for the first), scaled by `jitter` in [0, 1).
pub fn backoff(retry: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A token bucket whose rate follows AIMD. Pure: every method takes the current time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    max_rate: f64,
    rate: f64,
    burst: f64,
    /// Negative while callers hold reservations for tokens not yet refilled.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second, holding at most `burst`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            max_rate: rate,
            rate,
            burst,
            tokens: burst,
            updated: now,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one token and returns how long the caller must wait before using it. Waiters
    /// reserve tokens in order, so they are served first come, first served.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Whether `calls` tokens are there now, with no caller waiting.
    pub fn has_spare(&mut self, calls: u32, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(calls)
    }

    pub fn on_throttled(&mut self, now: Instant) {
        self.refill(now);
        self.rate = (self.rate * DECREASE_FACTOR).max(self.max_rate * MIN_RATE_SHARE);
    }

    pub fn on_success(&mut self, now: Instant) {
        self.refill(now);
        self.rate = (self.rate + self.max_rate * INCREASE_SHARE).min(self.max_rate);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
    }
}

/// `IamApi` behind an account's budget: IAM's quota is per account, and one account's
/// throttling must not slow another.
pub struct Budgeted<I> {
    inner: I,
    bucket: Mutex<TokenBucket>,
    metrics: Arc<Metrics>,
    account: AccountName,
}

impl<I: IamApi> Budgeted<I> {
    /// `rate` calls per second on average, `burst` at once after a quiet spell.
    pub fn new(
        inner: I,
        rate: f64,
        burst: f64,
        metrics: Arc<Metrics>,
        account: AccountName,
    ) -> Self {
        metrics.set_iam_budget_rate(&account, rate);
        Self {
            inner,
            bucket: Mutex::new(TokenBucket::new(rate, burst, Instant::now())),
            metrics,
            account,
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // The bucket holds plain numbers; a panic elsewhere cannot leave it inconsistent.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `call` with a token per attempt, retrying transient failures.
    async fn paced<T, F, Fut>(&self, call: F) -> Result<T, IamError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, IamError>>,
    {
        let mut retry = 0;
        loop {
            let wait = self.bucket().take(Instant::now());
            self.metrics.record_iam_budget_wait(&self.account, wait);
            tokio::time::sleep(wait).await;
            let result = call().await;
            let rate = {
                let mut bucket = self.bucket();
                match &result {
                    Err(error) if is_throttling(&error.code) => {
                        self.metrics.record_iam_throttle(&self.account);
                        bucket.on_throttled(Instant::now());
                    }
                    Err(_) => {}
                    Ok(_) => bucket.on_success(Instant::now()),
                }
                bucket.rate()
            };
            self.metrics.set_iam_budget_rate(&self.account, rate);
            match result {
                Err(error) if worth_another_attempt(&error.code) && retry + 1 < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(retry, jitter())).await;
                    retry += 1;
                }
                Err(error) => return Err(error),
                Ok(value) => return Ok(value),
            }
        }
    }
}

/// A uniform number in [0, 1): each `RandomState` is freshly keyed, which is random enough
/// to spread retries and needs no extra crate.
fn jitter() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[async_trait]
impl<I: IamApi> IamApi for Budgeted<I> {
    async fn get_role(&self, role: &str) -> Result<Option<RoleSummary>, IamError> {
        self.paced(|| self.inner.get_role(role)).await
    }

    async fn list_role_policy_names(&self, role: &str) -> Result<Vec<String>, IamError> {
        self.paced(|| self.inner.list_role_policy_names(role)).await
    }

    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Value, IamError> {
        self.paced(|| self.inner.get_role_policy(role, policy))
            .await
    }

    async fn list_attached_policy_arns(
        &self,
        role: &str,
    ) -> Result<std::collections::BTreeSet<String>, IamError> {
        self.paced(|| self.inner.list_attached_policy_arns(role))
            .await
    }

    async fn execute(&self, role: &str, op: &IamOp) -> Result<(), IamError> {
        self.paced(|| self.inner.execute(role, op)).await
    }

    fn has_spare_calls(&self, calls: u32) -> bool {
        self.bucket().has_spare(calls, Instant::now())
    }

    async fn get_oidc_provider(&self, arn: &str) -> Result<Option<ObservedProvider>, IamError> {
        self.paced(|| self.inner.get_oidc_provider(arn)).await
    }

    async fn execute_provider(&self, arn: &str, op: &ProviderOp) -> Result<(), IamError> {
        self.paced(|| self.inner.execute_provider(arn, op)).await
    }

    async fn list_roles_page(&self, marker: Option<&str>) -> Result<RolePage, IamError> {
        self.paced(|| self.inner.list_roles_page(marker)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn spare_calls_exist_only_while_no_one_waits_for_them() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 4.0, start);
        assert!(bucket.has_spare(4, start));
        bucket.take(start);
        assert!(!bucket.has_spare(4, start), "one token is taken");
        assert!(bucket.has_spare(3, start));
        assert!(bucket.has_spare(4, start + secs(0.1)), "refilled at 10/s");
    }

    #[test]
    fn a_full_bucket_serves_its_burst_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Duration::ZERO);
        }
        // Reservations queue: the 4th waits one interval, the 5th two.
        assert_eq!(bucket.take(t0), secs(0.1));
        assert_eq!(bucket.take(t0), secs(0.2));
        // A second later 10 tokens came back, 2 of them owed: 3 remain (capped by burst).
        let t1 = t0 + secs(1.0);
        for _ in 0..3 {
            assert_eq!(bucket.take(t1), Duration::ZERO);
        }
        assert_eq!(bucket.take(t1), secs(0.1));
    }

    #[test]
    fn throttling_cuts_the_rate_multiplicatively_down_to_a_floor() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 1.0, t0);
        bucket.on_throttled(t0);
        bucket.on_throttled(t0);
        assert!(
            (bucket.rate() - 20.0 * 0.98 * 0.98).abs() < 1e-9,
            "{}",
            bucket.rate()
        );
        for _ in 0..200 {
            bucket.on_throttled(t0);
        }
        assert!((bucket.rate() - 2.0).abs() < 1e-9, "{}", bucket.rate());
        // At the lower rate a token takes longer to come back.
        bucket.take(t0);
        assert_eq!(bucket.take(t0), secs(0.5));
    }

    #[test]
    fn successes_restore_the_configured_rate_additively() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 20.0, t0);
        for _ in 0..10 {
            bucket.on_throttled(t0);
        }
        let lowered = bucket.rate();
        bucket.on_success(t0);
        assert!((bucket.rate() - (lowered + 0.2)).abs() < 1e-9);
        for _ in 0..100 {
            bucket.on_success(t0);
        }
        assert_eq!(bucket.rate(), 20.0);
    }

    #[test]
    fn the_rate_holds_under_a_third_of_calls_throttled_and_falls_above() {
        let t0 = Instant::now();
        let settle = |throttled_of_ten: usize| {
            let mut bucket = TokenBucket::new(100.0, 1.0, t0);
            for call in 0..10_000 {
                if call % 10 < throttled_of_ten {
                    bucket.on_throttled(t0);
                } else {
                    bucket.on_success(t0);
                }
            }
            bucket.rate()
        };
        assert!(settle(3) > 90.0, "{}", settle(3));
        assert!(settle(5) < 60.0, "{}", settle(5));
    }

    #[test]
    fn backoff_is_jittered_doubling_and_capped() {
        assert_eq!(backoff(0, 0.0), Duration::ZERO);
        assert_eq!(backoff(0, 0.5), Duration::from_millis(25));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(30, 0.5), Duration::from_secs(1));
        assert!(backoff(30, 0.999_9) < BACKOFF_MAX);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn only_throttling_5xx_and_transport_errors_are_retried() {
        for code in ["Throttling", "ServiceFailure", "Unavailable"] {
            assert!(worth_another_attempt(code), "{code}");
        }
        for code in ["AccessDenied", "NoSuchEntity", "Timeout", "DeleteConflict"] {
            assert!(!worth_another_attempt(code), "{code}");
        }
        assert!(is_throttling("Throttling"));
        assert!(!is_throttling("ServiceFailure"));
    }
}
