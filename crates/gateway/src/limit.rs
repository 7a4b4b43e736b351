//! Admission: rate limits (requests, tokens, concurrency) and spend budgets, in process or in
//! Redis.
//!
//! With Redis configured every check goes there first (shared by all instances). When Redis
//! cannot be reached, `limits.on_redis_error: open` enforces the same limits in process (per
//! instance) and `closed` refuses with 503; either way Redis is tried again on its own.

use plexus_core::config::{Config, OnRedisError};
use plexus_core::{ApiError, ErrorCode};
use plexus_limits::rate::{LocalHold, LocalLimiter, Rejection, Snapshot, Subject};
use plexus_limits::redis::{BudgetRefusal, RedisLimiter, RemoteHold, RemoteReservation};
use plexus_limits::{BudgetKey, Budgets, Exceeded, Limit, Nanos, Reservation};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// How long one Redis round trip may take before the limiter treats Redis as down.
const REDIS_TIMEOUT: Duration = Duration::from_millis(150);

pub struct Limiter {
    local: Arc<LocalLimiter>,
    budgets: Arc<Budgets>,
    redis: Option<RedisLimiter>,
    /// Origin of the monotonic nanoseconds the in-process limiter runs on (pausable in tests).
    epoch: tokio::time::Instant,
}

/// A request's hold on its rate limits: concurrency slots and reserved tokens.
pub enum Hold {
    Local(LocalHold),
    Remote(RemoteHold),
}

impl Hold {
    /// Reconciles the reserved tokens with the reported usage and frees concurrency slots.
    pub fn settle(self, actual_tokens: Option<u64>, now_ns: u64) {
        match self {
            Hold::Local(mut h) => {
                if let Some(t) = actual_tokens {
                    h.settle_tokens(t, now_ns);
                }
                h.finish();
            }
            Hold::Remote(mut h) => {
                if let Some(t) = actual_tokens {
                    h.settle_tokens(t);
                }
                h.finish();
            }
        }
    }
}

/// A request's hold on its spend budgets.
pub enum BudgetHold {
    Local(Reservation),
    Remote(RemoteReservation),
}

impl BudgetHold {
    /// The smallest share any of its budgets has left after this hold.
    pub fn remaining_share(&self) -> Option<f64> {
        match self {
            BudgetHold::Local(r) => r.remaining_share(),
            BudgetHold::Remote(r) => r.remaining_share(),
        }
    }

    pub fn settle(self, actual_cost: Nanos) {
        match self {
            BudgetHold::Local(r) => r.settle(actual_cost),
            BudgetHold::Remote(r) => r.settle(actual_cost),
        }
    }
}

/// The budget refusal or failure, before it becomes an API error.
pub enum BudgetError {
    Exceeded(Exceeded),
    Unavailable(String),
}

impl Limiter {
    pub fn new(config: &Config) -> Result<Limiter, crate::StartupError> {
        let redis = match &config.redis {
            None => None,
            Some(url) => Some(
                RedisLimiter::new(url.expose_secret(), "plexus:", REDIS_TIMEOUT)
                    .map_err(|e| crate::StartupError::setting("redis", e.to_string()))?,
            ),
        };
        Ok(Limiter {
            local: LocalLimiter::new(),
            budgets: Budgets::new(),
            redis,
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Nanoseconds on the in-process limiter's clock.
    pub fn now_ns(&self) -> u64 {
        tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
            // Start one day in, so that a full day's allowance is available from the start.
            + plexus_limits::rate::DAY_NS
    }

    /// Forgets in-process limit state that is back to full (housekeeping), so the table does
    /// not grow with every key ever seen.
    pub fn purge_idle(&self) -> usize {
        self.local.purge_idle(self.now_ns())
    }

    pub fn local_budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    pub fn redis(&self) -> Option<&RedisLimiter> {
        self.redis.as_ref()
    }

    /// Admits a request on every subject, or refuses it (429 naming the limit, or 503 when
    /// Redis is down and the policy is fail-closed).
    pub async fn acquire(
        &self,
        subjects: &[Subject],
        tokens: u64,
        on_error: OnRedisError,
    ) -> Result<(Option<Hold>, Snapshot), ApiError> {
        if subjects.is_empty() {
            return Ok((None, Snapshot::default()));
        }
        if let Some(redis) = &self.redis {
            // Boxed: the Redis round trip's future is large, and most requests take the
            // in-process path.
            match Box::pin(redis.acquire(subjects, tokens)).await {
                Ok(Ok((hold, snapshot))) => return Ok((Some(Hold::Remote(hold)), snapshot)),
                Ok(Err(rejection)) => return Err(rejected(&rejection)),
                Err(e) => {
                    metrics::counter!("plexus_limiter_redis_errors_total").increment(1);
                    if on_error == OnRedisError::Closed {
                        return Err(ApiError::new(
                            ErrorCode::ServiceUnavailable,
                            format!("The rate limiter is unavailable ({e}); try again shortly."),
                        )
                        .with_retry_after(Some(Duration::from_secs(1))));
                    }
                    tracing::warn!(message = "Redis unreachable; enforcing limits in process.", error = %e);
                }
            }
        }
        match self.local.acquire(subjects, tokens, self.now_ns()) {
            Ok((hold, snapshot)) => Ok((Some(Hold::Local(hold)), snapshot)),
            Err(rejection) => Err(rejected(&rejection)),
        }
    }

    /// A non-blocking check of one target's provider limits (requests and tokens), for
    /// spreading load: `Err(wait)` says how long until it would fit.
    pub async fn try_target(
        &self,
        subject: &Subject,
        tokens: u64,
        on_error: OnRedisError,
    ) -> Result<Option<Hold>, Option<Duration>> {
        if subject.quota.is_empty() {
            return Ok(None);
        }
        match self
            .acquire(std::slice::from_ref(subject), tokens, on_error)
            .await
        {
            Ok((hold, _)) => Ok(hold),
            Err(e) => Err(e.retry_after),
        }
    }

    /// Reserves `cost` on every budget (all or nothing). `seed` reads the spend recorded in
    /// the current period from the database, for budgets not yet known to the backend.
    pub async fn reserve_budget<F, Fut>(
        &self,
        budgets: &[(BudgetKey, Limit)],
        cost: Nanos,
        now_ms: i64,
        on_error: OnRedisError,
        seed: F,
    ) -> Result<BudgetHold, BudgetError>
    where
        F: Fn(BudgetKey, i64) -> Fut,
        Fut: std::future::Future<Output = Result<Nanos, String>>,
    {
        if let Some(redis) = &self.redis {
            // Two rounds at most: the second after seeding what Redis did not know yet.
            for _ in 0..2 {
                match Box::pin(redis.budget_reserve(budgets, cost, now_ms)).await {
                    Ok(Ok(r)) => return Ok(BudgetHold::Remote(r)),
                    Ok(Err(BudgetRefusal::Exceeded(ex))) => return Err(BudgetError::Exceeded(ex)),
                    Ok(Err(BudgetRefusal::NeedsSeed(keys))) => {
                        for key in keys {
                            let Some((_, limit)) = budgets.iter().find(|(k, _)| *k == key) else {
                                continue;
                            };
                            let spent = seed(key.clone(), limit.period_start(now_ms))
                                .await
                                .map_err(BudgetError::Unavailable)?;
                            if let Err(e) = redis.budget_seed(&key, limit, now_ms, spent).await {
                                return self
                                    .budget_fallback(budgets, cost, now_ms, on_error, &seed, e)
                                    .await;
                            }
                        }
                    }
                    Err(e) => {
                        return self
                            .budget_fallback(budgets, cost, now_ms, on_error, &seed, e)
                            .await
                    }
                }
            }
            return Err(BudgetError::Unavailable(
                "budgets could not be seeded in Redis".into(),
            ));
        }
        self.reserve_local(budgets, cost, now_ms, &seed).await
    }

    async fn budget_fallback<F, Fut>(
        &self,
        budgets: &[(BudgetKey, Limit)],
        cost: Nanos,
        now_ms: i64,
        on_error: OnRedisError,
        seed: &F,
        error: impl std::fmt::Display,
    ) -> Result<BudgetHold, BudgetError>
    where
        F: Fn(BudgetKey, i64) -> Fut,
        Fut: std::future::Future<Output = Result<Nanos, String>>,
    {
        metrics::counter!("plexus_limiter_redis_errors_total").increment(1);
        match on_error {
            OnRedisError::Closed => Err(BudgetError::Unavailable(format!(
                "the budget store is unavailable ({error})"
            ))),
            OnRedisError::Open => self.reserve_local(budgets, cost, now_ms, seed).await,
        }
    }

    async fn reserve_local<F, Fut>(
        &self,
        budgets: &[(BudgetKey, Limit)],
        cost: Nanos,
        now_ms: i64,
        seed: &F,
    ) -> Result<BudgetHold, BudgetError>
    where
        F: Fn(BudgetKey, i64) -> Fut,
        Fut: std::future::Future<Output = Result<Nanos, String>>,
    {
        for (key, limit) in budgets {
            if self.budgets.needs_seed(key, limit, now_ms) {
                let spent = seed(key.clone(), limit.period_start(now_ms))
                    .await
                    .map_err(BudgetError::Unavailable)?;
                self.budgets.seed(key.clone(), limit, now_ms, spent);
            }
        }
        self.budgets
            .reserve(budgets, cost, now_ms)
            .map(BudgetHold::Local)
            .map_err(BudgetError::Exceeded)
    }

    /// Waits for queued releases to reach Redis (shutdown).
    pub async fn shutdown(&self) {
        if let Some(r) = &self.redis {
            r.shutdown().await;
        }
    }
}

fn rejected(r: &Rejection) -> ApiError {
    ApiError::new(ErrorCode::RateLimitExceeded, r.message())
        .with_retry_after(Some(r.retry_after.unwrap_or(Duration::from_secs(60))))
}
