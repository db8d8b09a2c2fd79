//! An IAM call budget per account: every IAM call, read or write, takes a token from its
//! account's bucket first, so the fleet of PodIamRoles cannot outrun the account's IAM
//! quota. The bucket runs at a ceiling while IAM accepts calls, slows down on `Throttling`
//! and climbs back over seconds, as the AWS SDKs' adaptive retry mode does; transient
//! failures are retried here, each attempt paced by the bucket, so one throttled call does
//! not fail a whole reconcile.

use std::{
    collections::{VecDeque, hash_map::RandomState},
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
/// A `Throttling` cuts the rate to this share of the calls per second being sent.
const CUT_FACTOR: f64 = 0.7;
/// How fast the rate climbs back after a cut, in calls per second per cubed second: back
/// where it was cut from in 2 s from 10 calls/s, in 4 s from 100.
const CLIMB_SCALE: f64 = 0.4;
/// The rate never drops below one call per second: reconciles still make progress.
const MIN_RATE: f64 = 1.0;
/// The calls per second sent are measured over the last second, from at least 5 and at
/// most 32 calls; within `SENT_AT_RATE` of the rate, the bucket is what held them back.
const SENT_WINDOW: Duration = Duration::from_secs(1);
const SENT_MIN_SAMPLES: u32 = 5;
const SENT_SAMPLES: usize = 32;
const SENT_AT_RATE: f64 = 0.9;
/// Until the rate is back at the ceiling, it is cut again only if more than 8 of the last
/// 20 answers since the last cut were throttles: IAM's sporadic throttles (the fault tests
/// throttle 30 % of calls at random), and those of calls sent before the cut, do not stall
/// the fleet; a sustained overload keeps cutting.
const SUSTAINED_ANSWERS: u32 = 20;
const SUSTAINED_THROTTLES: u32 = 8;

/// The delay before retry number `retry` (0 for the first), scaled by `jitter` in [0, 1).
pub fn backoff(retry: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The last cut of the rate: when, and the calls per second it cut from.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: Instant,
    from: f64,
}

impl Cut {
    /// Seconds after the cut until the rate is back where it was cut from.
    fn recovery_seconds(&self) -> f64 {
        (self.from * (1.0 - CUT_FACTOR) / CLIMB_SCALE).cbrt()
    }

    /// The rate `now` along a cubic curve (CUBIC's, as in TCP and the AWS SDKs): quick
    /// at first, flat near the rate that was throttled, then quicker again beyond it.
    fn rate(&self, now: Instant) -> f64 {
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        self.from + CLIMB_SCALE * (since - self.recovery_seconds()).powi(3)
    }
}

/// A token bucket whose rate adapts to throttling. Pure: every method takes the current time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    ceiling: f64,
    burst: f64,
    /// Negative while callers hold reservations for tokens not yet refilled.
    tokens: f64,
    updated: Instant,
    /// When the latest calls go out (a reservation's, later than its take).
    sends: VecDeque<Instant>,
    /// None until IAM throttles.
    cut: Option<Cut>,
    /// The last answers since the last cut (at most `SUSTAINED_ANSWERS`), newest in bit
    /// 0, a throttle as 1.
    answers: u32,
    answer_count: u32,
}

impl TokenBucket {
    /// A full bucket refilling at most `ceiling` tokens per second, holding at most `burst`.
    pub fn new(ceiling: f64, burst: f64, now: Instant) -> Self {
        Self {
            ceiling,
            burst,
            tokens: burst,
            updated: now,
            sends: VecDeque::with_capacity(SENT_SAMPLES),
            cut: None,
            answers: 0,
            answer_count: 0,
        }
    }

    /// The calls per second allowed `now`: the ceiling, or less for a while after a cut.
    pub fn rate(&self, now: Instant) -> f64 {
        let floor = MIN_RATE.min(self.ceiling);
        self.cut
            .map_or(self.ceiling, |cut| cut.rate(now).clamp(floor, self.ceiling))
    }

    /// Takes one token and returns how long the caller must wait before using it. Waiters
    /// reserve tokens in order, so they are served first come, first served.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        let wait = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate(now))
        };
        if self.sends.len() == SENT_SAMPLES {
            self.sends.pop_front();
        }
        self.sends.push_back(now + wait);
        wait
    }

    /// Whether `calls` tokens are there now, with no caller waiting.
    pub fn has_spare(&mut self, calls: u32, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(calls)
    }

    /// Counts IAM's answer to a call. A throttle cuts the rate to a share of what was sent
    /// when the rate is at the ceiling, or when the throttles are sustained.
    pub fn on_answer(&mut self, throttled: bool, now: Instant) {
        let window = (1 << SUSTAINED_ANSWERS) - 1;
        self.answers = ((self.answers << 1) | u32::from(throttled)) & window;
        self.answer_count = (self.answer_count + 1).min(SUSTAINED_ANSWERS);
        if !throttled {
            return;
        }
        self.refill(now);
        let rate = self.rate(now);
        let sustained = self.answer_count == SUSTAINED_ANSWERS
            && self.answers.count_ones() > SUSTAINED_THROTTLES;
        if rate < self.ceiling && !sustained {
            return;
        }
        // Cut from what was sent: far below the rate when IAM's latency, not the bucket,
        // held the calls back.
        let from = match self.sent_rate(now) {
            Some(sent) if sent < rate * SENT_AT_RATE => sent.max(MIN_RATE.min(self.ceiling)),
            _ => rate,
        };
        self.cut = Some(Cut { at: now, from });
        (self.answers, self.answer_count) = (0, 0);
    }

    /// Calls per second sent in the last second; None when too few were sent to tell.
    fn sent_rate(&self, now: Instant) -> Option<f64> {
        let since = now.checked_sub(SENT_WINDOW).unwrap_or(now);
        let mut recent = self.sends.iter().copied().filter(|at| *at >= since);
        let first = recent.next()?;
        let (calls, earliest, latest) = recent.fold((1u32, first, first), |(calls, lo, hi), at| {
            (calls + 1, lo.min(at), hi.max(at))
        });
        let span = latest.saturating_duration_since(earliest).as_secs_f64();
        (calls >= SENT_MIN_SAMPLES).then(|| {
            if span > 0.0 {
                f64::from(calls - 1) / span
            } else {
                f64::from(calls) / SENT_WINDOW.as_secs_f64()
            }
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        // The rate changes along the way: the mean of both ends is close enough.
        let rate = (self.rate(self.updated) + self.rate(now)) / 2.0;
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
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
    /// At most `ceiling` calls per second on average, `burst` at once after a quiet spell.
    pub fn new(
        inner: I,
        ceiling: f64,
        burst: f64,
        metrics: Arc<Metrics>,
        account: AccountName,
    ) -> Self {
        metrics.set_iam_budget_rate(&account, ceiling);
        Self {
            inner,
            bucket: Mutex::new(TokenBucket::new(ceiling, burst, Instant::now())),
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
                let now = Instant::now();
                let throttled = matches!(&result, Err(error) if is_throttling(&error.code));
                if throttled {
                    self.metrics.record_iam_throttle(&self.account);
                }
                bucket.on_answer(throttled, now);
                bucket.rate(now)
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

    /// Sends `calls` calls `every` seconds after `start`; returns when the last was sent.
    fn send(bucket: &mut TokenBucket, start: Instant, every: f64, calls: u32) -> Instant {
        let mut now = start;
        for _ in 0..calls {
            now += secs(every);
            bucket.take(now);
        }
        now
    }

    /// A bucket of 100 calls a second that sent 20 a second for 5 s (IAM's latency, not the
    /// bucket, held them back), then saw a throttle: returned with when.
    fn throttled_at_twenty_calls_a_second() -> (TokenBucket, Instant) {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 20.0, t0);
        let t1 = send(&mut bucket, t0, 0.05, 100);
        bucket.on_answer(true, t1);
        (bucket, t1)
    }

    /// A caller that always has a call to make, each taking 10 ms, against an IAM that
    /// throttles when `throttles(call, now)` says so, for `seconds`: (calls sent, calls
    /// throttled) in the second half.
    fn busy_caller(
        bucket: &mut TokenBucket,
        start: Instant,
        seconds: f64,
        mut throttles: impl FnMut(u32, Instant) -> bool,
    ) -> (u32, u32) {
        let (mut now, mut call) = (start, 0);
        let (mut sent, mut throttled) = (0, 0);
        while now < start + secs(seconds) {
            now += bucket.take(now) + secs(0.01);
            call += 1;
            let throttle = throttles(call, now);
            bucket.on_answer(throttle, now);
            if now >= start + secs(seconds / 2.0) {
                sent += 1;
                throttled += u32::from(throttle);
            }
        }
        (sent, throttled)
    }

    #[test]
    fn the_rate_holds_at_the_ceiling_until_iam_throttles() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 20.0, t0);
        let later = send(&mut bucket, t0, 0.05, 100);
        assert_eq!(bucket.rate(t0), 100.0);
        assert_eq!(bucket.rate(later), 100.0);
    }

    #[test]
    fn a_throttle_cuts_the_rate_to_a_share_of_the_calls_sent() {
        let (bucket, t1) = throttled_at_twenty_calls_a_second();
        let rate = bucket.rate(t1);
        assert!((rate - 0.7 * 20.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn the_rate_climbs_back_gradually_then_up_to_the_ceiling() {
        let (bucket, t1) = throttled_at_twenty_calls_a_second();
        let cut = bucket.rate(t1);
        let sent = cut / 0.7;
        let rates: Vec<f64> = (0..=100)
            .map(|tenth| bucket.rate(t1 + secs(0.1 * f64::from(tenth))))
            .collect();
        assert!(rates.windows(2).all(|pair| pair[0] <= pair[1]), "{rates:?}");
        // Most of the way back within a second, then slowly past the rate throttled.
        assert!(
            rates[10] > cut + 0.5 * (sent - cut) && rates[10] < sent,
            "{rates:?}"
        );
        assert!(rates[50] < 1.5 * sent, "{rates:?}");
        assert_eq!(rates[100], 100.0);
    }

    #[test]
    fn sporadic_throttles_cut_the_rate_only_once_it_is_back_at_the_ceiling() {
        let (mut bucket, t1) = throttled_at_twenty_calls_a_second();
        let first_cut = bucket.rate(t1);
        // 10 calls a second while it climbs back, throttled now and then.
        let t2 = send(&mut bucket, t1, 0.1, 10);
        let climbing = bucket.rate(t2);
        bucket.on_answer(true, t2);
        assert_eq!(bucket.rate(t2), climbing);
        // Back at the ceiling: the next throttle cuts from what is sent now.
        let t3 = send(&mut bucket, t2, 0.1, 80);
        assert_eq!(bucket.rate(t3), 100.0);
        bucket.on_answer(true, t3);
        let second_cut = bucket.rate(t3);
        assert!(second_cut < first_cut, "{second_cut} {first_cut}");
        assert!((second_cut - 0.7 * 10.0).abs() < 1.0, "{second_cut}");
    }

    #[test]
    fn sustained_throttles_cut_again_while_the_rate_climbs_back() {
        let (mut bucket, t1) = throttled_at_twenty_calls_a_second();
        let first_cut = bucket.rate(t1);
        // Half of the next 20 calls throttled: more than sporadic.
        let mut now = t1;
        for call in 0..20 {
            now += secs(0.07);
            bucket.take(now);
            bucket.on_answer(call % 2 == 1, now);
        }
        let second_cut = bucket.rate(now);
        assert!(second_cut < 0.8 * first_cut, "{second_cut} {first_cut}");
    }

    #[test]
    fn the_rate_stays_between_one_call_a_second_and_the_ceiling() {
        let t0 = Instant::now();
        // Nothing sent lately: the cut is from the rate, 1.2 calls a second, to the floor.
        let mut low = TokenBucket::new(1.2, 1.0, t0);
        low.on_answer(true, t0);
        assert_eq!(low.rate(t0), 1.0);
        low.take(t0);
        assert_eq!(low.take(t0), secs(1.0));

        let mut slow = TokenBucket::new(0.5, 1.0, t0);
        slow.on_answer(true, t0);
        for second in 0..100 {
            assert_eq!(slow.rate(t0 + secs(f64::from(second))), 0.5);
        }
    }

    #[test]
    fn under_a_quota_the_rate_comes_down_from_the_ceiling() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 20.0, t0);
        // IAM serves 10 calls a second to this account, with a burst of 10.
        let mut quota = TokenBucket::new(10.0, 10.0, t0);
        let (sent, throttled) = busy_caller(&mut bucket, t0, 60.0, |_, now| {
            let served = quota.has_spare(1, now);
            if served {
                quota.take(now);
            }
            !served
        });
        // Down from 100 calls a second, to where at most about 40 % are throttled.
        let per_second = f64::from(sent) / 30.0;
        let throttled_share = f64::from(throttled) / f64::from(sent);
        assert!(per_second < 20.0, "{per_second}");
        assert!(throttled_share < 0.45, "{throttled_share}");
    }

    #[test]
    fn a_third_of_calls_throttled_at_random_does_not_stall_the_fleet() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 20.0, t0);
        let (sent, _) = busy_caller(&mut bucket, t0, 120.0, |call, _| call % 3 == 0);
        let per_second = f64::from(sent) / 60.0;
        assert!(per_second > 15.0, "{per_second}");
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
