//! Running one request over a model's targets: balancing, the targets' provider limits,
//! circuit breakers, retries with backoff, and fallback models.
//!
//! A model's targets are ordered by its `balance` policy (open breakers last). Attempts walk
//! that order; a retryable failure (rate limited, unavailable, timeout) moves on to the next
//! target at once, and after every target has been tried the request backs off (full jitter,
//! at least the provider's `Retry-After`) before the next round, within the retry budget.
//! A target at its provider limit is skipped; if all are, the request waits for the first
//! one to free up (up to `limits.queue_timeout`). When the model gives up with a failure
//! class listed in its `fallback_on`, the next model of its `fallbacks` takes over, if the
//! caller may use it and it is within its own model limits.
//!
//! For streams the call includes the first event, so everything here happens before the first
//! byte reaches the client; after that a failure ends the stream with an error event.

use crate::limit::Hold;
use crate::runtime::{ModelRoute, Runtime, Target};
use crate::Gateway;
use plexus_auth::roles::Principal;
use plexus_core::config::{Balance, FailureClass};
use plexus_core::{ApiError, ErrorCode};
use plexus_providers::ProviderError;
use plexus_router::backoff::RetryPolicy;
use plexus_router::balance::{self, Candidate};
use plexus_router::health::{InFlight, Outcome};
use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

/// How an upstream failure counts: `None` is the client's own fault (a 400 that another
/// target would refuse too), which neither retries nor falls back.
pub fn classify(e: &ProviderError) -> Option<FailureClass> {
    match e {
        ProviderError::Upstream {
            status,
            code,
            message,
            ..
        } => {
            let code = code.as_deref().unwrap_or("");
            let lower = message.to_ascii_lowercase();
            match status {
                429 => Some(FailureClass::RateLimited),
                408 | 504 => Some(FailureClass::Timeout),
                // The gateway's credential for this target is wrong: another may work.
                401 | 403 => Some(FailureClass::Unavailable),
                400 | 413 | 422
                    if code.contains("content_filter")
                        || code.contains("content_policy")
                        || lower.contains("content management policy")
                        || lower.contains("safety") && lower.contains("block") =>
                {
                    Some(FailureClass::ContentFilter)
                }
                400 | 413
                    if code == "context_length_exceeded"
                        || lower.contains("context length")
                        || lower.contains("context window")
                        || lower.contains("prompt is too long")
                        || lower.contains("too many tokens")
                        || lower.contains("maximum number of tokens allowed") =>
                {
                    Some(FailureClass::ContextWindow)
                }
                s if *s >= 500 => Some(FailureClass::Unavailable),
                _ => None,
            }
        }
        ProviderError::Timeout(_) => Some(FailureClass::Timeout),
        ProviderError::Connect(_) | ProviderError::Decode(_) | ProviderError::Stream(_) => {
            Some(FailureClass::Unavailable)
        }
        ProviderError::Unsupported { .. }
        | ProviderError::UnsupportedField { .. }
        | ProviderError::InvalidRequest { .. } => None,
    }
}

fn retryable(class: Option<FailureClass>) -> bool {
    matches!(
        class,
        Some(FailureClass::RateLimited | FailureClass::Unavailable | FailureClass::Timeout)
    )
}

fn router_balance(b: Balance) -> balance::Balance {
    match b {
        Balance::Weighted => balance::Balance::Weighted,
        Balance::LeastBusy => balance::Balance::LeastBusy,
        Balance::Latency => balance::Balance::Latency,
        Balance::Cost => balance::Balance::Cost,
    }
}

/// A successful call and what it still holds: the target's in-flight slot (finish it with
/// the outcome) and its provider-limit hold (settle it with the tokens used).
pub struct Served<T> {
    pub value: T,
    pub target: Target,
    pub inflight: InFlight,
    pub target_hold: Option<Hold>,
    /// The fallback model's own limit, when a fallback served.
    pub model_hold: Option<Hold>,
    /// When the successful attempt started, on the limiter's clock.
    pub attempt_started_ns: u64,
}

/// The request failed on every target and fallback it was allowed to try.
pub struct Failed {
    pub error: ApiError,
    /// The last target tried, if any.
    pub target: Option<Target>,
}

struct ModelFailure {
    error: ApiError,
    target: Option<Target>,
    class: Option<FailureClass>,
}

/// The fallback models a request to `route` may move to: those that exist and that
/// `principal` may use, in order.
pub fn allowed_fallbacks<'a>(
    rt: &'a Runtime,
    route: &'a ModelRoute,
    principal: &'a Principal,
) -> impl Iterator<Item = std::borrow::Cow<'a, ModelRoute>> + 'a {
    route
        .fallbacks
        .iter()
        .filter(|name| principal.may_use_model(name))
        .filter_map(|name| rt.resolve(name).ok())
}

/// Runs `call` over the route's targets and then its fallbacks until one succeeds.
pub async fn run<T, F, Fut>(
    gateway: &Gateway,
    rt: &Runtime,
    route: &ModelRoute,
    principal: &Principal,
    tokens: u64,
    mut call: F,
) -> Result<Served<T>, Failed>
where
    F: FnMut(Target) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let r = &rt.config.retries;
    let policy = RetryPolicy {
        // The attempts themselves are counted here; the policy only bounds the waiting.
        max_attempts: u32::MAX,
        base: r.base_delay,
        max_delay: r.max_delay,
        budget: r.budget,
    };
    let mut waited = Duration::ZERO;
    let mut current: Cow<'_, ModelRoute> = Cow::Borrowed(route);
    let mut next_fallback = 0;
    let limiter = gateway.limiter();
    let on_error = rt.config.limits.on_redis_error;
    let mut model_hold: Option<Hold> = None;
    loop {
        let failure = match try_model(
            gateway,
            rt,
            &current,
            tokens,
            &policy,
            &mut waited,
            &mut call,
        )
        .await
        {
            Ok(mut served) => {
                served.model_hold = model_hold;
                return Ok(served);
            }
            Err(f) => f,
        };
        if let Some(h) = model_hold.take() {
            // The fallback model was tried and spent nothing.
            h.settle(Some(0), limiter.now_ns());
        }
        // Fallbacks are the requested model's, tried in order.
        let class = failure.class.filter(|c| route.fallback_on.contains(c));
        let mut next = None;
        if let Some(class) = class {
            while next_fallback < route.fallbacks.len() {
                let name = &route.fallbacks[next_fallback];
                next_fallback += 1;
                if !principal.may_use_model(name) {
                    tracing::debug!(message = "Fallback not allowed for this key.", to = %name);
                    continue;
                }
                let Ok(candidate) = rt.resolve(name) else {
                    continue;
                };
                // A context overflow only moves to a model with a larger window.
                if class == FailureClass::ContextWindow {
                    match (candidate.context_window(), current.context_window()) {
                        (Some(bigger), Some(failed)) if bigger <= failed => continue,
                        _ => {}
                    }
                }
                // The fallback model's own limits apply; a model at its limit is passed over.
                if let Some(subject) = &candidate.limit {
                    match limiter.try_target(subject, tokens, on_error).await {
                        Ok(hold) => model_hold = hold,
                        Err(_) => {
                            tracing::info!(message = "Fallback model at its limit.", to = %name);
                            continue;
                        }
                    }
                }
                next = Some(candidate.into_owned());
                break;
            }
        }
        match next {
            Some(fallback) => {
                tracing::info!(
                    message = "Falling back to another model.",
                    from = %current.name,
                    to = %fallback.name,
                    reason = class.map_or("", |c| c.as_str())
                );
                metrics::counter!("plexus_fallbacks_total", "model" => route.name.to_string(), "reason" => class.map_or("", |c| c.as_str())).increment(1);
                current = Cow::Owned(fallback);
            }
            None => {
                return Err(Failed {
                    error: failure.error,
                    target: failure.target,
                })
            }
        }
    }
}

async fn try_model<T, F, Fut>(
    gateway: &Gateway,
    rt: &Runtime,
    route: &ModelRoute,
    tokens: u64,
    policy: &RetryPolicy,
    waited: &mut Duration,
    call: &mut F,
) -> Result<Served<T>, ModelFailure>
where
    F: FnMut(Target) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let limiter = gateway.limiter();
    let on_error = rt.config.limits.on_redis_error;
    let n = route.targets.len();
    if n == 0 {
        return Err(ModelFailure {
            error: ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("The model `{}` has no usable target.", route.name),
            ),
            target: None,
            class: Some(FailureClass::Unavailable),
        });
    }
    // A single target needs no balancing (the common case: nothing to allocate).
    let order: Cow<'_, [usize]> = if n == 1 {
        Cow::Borrowed(&[0])
    } else {
        let now = limiter.now_ns();
        let candidates: Vec<Candidate<'_>> = route
            .targets
            .iter()
            .map(|t| Candidate {
                weight: t.weight,
                cost_per_mtok: t.price_per_mtok,
                health: &t.health,
            })
            .collect();
        Cow::Owned(balance::order(
            router_balance(route.balance),
            &candidates,
            now,
            &mut rand::rng(),
        ))
    };
    let max_attempts = rt.config.retries.attempts.max(n as u32);
    let queue_deadline = tokio::time::Instant::now() + rt.config.limits.queue_timeout;
    let mut attempts = 0u32;
    let mut position = 0usize;
    let mut failed_since_backoff = 0usize;
    let mut backoffs = 0u32;
    let mut last: Option<ModelFailure> = None;
    // Targets that refused the gateway's credential: retrying them cannot help.
    let mut excluded = vec![false; n];

    while attempts < max_attempts {
        // The next target that may take the request: breaker closed (or probing) and
        // within its provider limits.
        let mut chosen = None;
        let mut limit_wait: Option<Duration> = None;
        let mut every_breaker_open = true;
        for _ in 0..n {
            let index = order[position % n];
            let target = &route.targets[index];
            position += 1;
            if excluded[index] {
                continue;
            }
            let now = limiter.now_ns();
            if !target.health.allows(now) {
                continue;
            }
            every_breaker_open = false;
            let hold = match &target.limit {
                None => None,
                Some(subject) => match limiter.try_target(subject, tokens, on_error).await {
                    Ok(hold) => hold,
                    Err(wait) => {
                        let wait = wait.unwrap_or(Duration::from_secs(1));
                        limit_wait = Some(limit_wait.map_or(wait, |w| w.min(wait)));
                        continue;
                    }
                },
            };
            let Some(inflight) = target.health.begin(now) else {
                continue;
            };
            chosen = Some((index, target.clone(), inflight, hold));
            break;
        }
        let Some((index, target, inflight, hold)) = chosen else {
            if excluded.iter().all(|e| *e) {
                break;
            }
            if every_breaker_open {
                let error = ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    format!(
                        "Every target of `{}` is failing (circuit breaker open); try again later.",
                        route.name
                    ),
                )
                .with_retry_after(Some(Duration::from_secs(1)));
                return Err(ModelFailure {
                    error,
                    target: last.and_then(|l| l.target),
                    class: Some(FailureClass::Unavailable),
                });
            }
            // Every target is at its provider limit: queue for the first to free up.
            let wait = limit_wait.unwrap_or(Duration::from_secs(1));
            if tokio::time::Instant::now() + wait <= queue_deadline {
                metrics::counter!("plexus_queued_total", "model" => route.name.to_string())
                    .increment(1);
                tokio::time::sleep(wait).await;
                continue;
            }
            let error = ApiError::new(
                ErrorCode::RateLimitExceeded,
                format!(
                    "Every target of `{}` is at its provider rate limit.",
                    route.name
                ),
            )
            .with_retry_after(Some(wait));
            return Err(ModelFailure {
                error,
                target: last.and_then(|l| l.target),
                class: Some(FailureClass::RateLimited),
            });
        };

        attempts += 1;
        let attempt_started_ns = limiter.now_ns();
        match call(target.clone()).await {
            Ok(value) => {
                return Ok(Served {
                    value,
                    target,
                    inflight,
                    target_hold: hold,
                    model_hold: None,
                    attempt_started_ns,
                })
            }
            Err(e) => {
                let class = classify(&e);
                if matches!(
                    e,
                    ProviderError::Upstream {
                        status: 401 | 403,
                        ..
                    }
                ) {
                    excluded[index] = true;
                }
                let health_outcome = match class {
                    Some(
                        FailureClass::RateLimited
                        | FailureClass::Unavailable
                        | FailureClass::Timeout,
                    ) => Outcome::Failure,
                    _ => Outcome::Neutral,
                };
                inflight.finish(limiter.now_ns(), health_outcome);
                if let Some(h) = hold {
                    // The provider saw the request but spent no tokens on it.
                    h.settle(Some(0), limiter.now_ns());
                }
                let error = ApiError::from(e);
                if !retryable(class) {
                    return Err(ModelFailure {
                        error,
                        target: Some(target),
                        class,
                    });
                }
                tracing::warn!(
                    message = "Target failed.",
                    target = %target.served_by(),
                    attempt = attempts,
                    error = %error.message
                );
                metrics::counter!("plexus_upstream_failures_total", "provider" => target.provider.name().to_owned(), "class" => class.map_or("client", |c| c.as_str())).increment(1);
                let retry_after = error.retry_after;
                last = Some(ModelFailure {
                    error,
                    target: Some(target),
                    class,
                });
                failed_since_backoff += 1;
                if attempts >= max_attempts {
                    break;
                }
                if failed_since_backoff >= n {
                    // Every target failed this round: back off before the next.
                    backoffs += 1;
                    let delay = policy.delay(backoffs, retry_after, *waited, &mut rand::rng());
                    let Some(delay) = delay else { break };
                    metrics::counter!("plexus_retries_total", "model" => route.name.to_string())
                        .increment(1);
                    tokio::time::sleep(delay).await;
                    *waited += delay;
                    failed_since_backoff = 0;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| ModelFailure {
        error: ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("No target of `{}` could serve the request.", route.name),
        ),
        target: None,
        class: Some(FailureClass::Unavailable),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_providers::TimeoutPhase;

    fn upstream(status: u16, code: Option<&str>, message: &str) -> ProviderError {
        ProviderError::Upstream {
            status,
            code: code.map(str::to_owned),
            message: message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn failures_are_classified() {
        let cases = [
            (
                upstream(429, None, "slow down"),
                Some(FailureClass::RateLimited),
            ),
            (
                upstream(503, None, "overloaded"),
                Some(FailureClass::Unavailable),
            ),
            (upstream(504, None, "gateway"), Some(FailureClass::Timeout)),
            (
                upstream(400, Some("context_length_exceeded"), "too long"),
                Some(FailureClass::ContextWindow),
            ),
            (
                upstream(
                    400,
                    None,
                    "prompt is too long: 250000 tokens > 200000 maximum",
                ),
                Some(FailureClass::ContextWindow),
            ),
            (
                upstream(400, Some("content_filter"), "filtered"),
                Some(FailureClass::ContentFilter),
            ),
            (upstream(400, None, "bad temperature"), None),
            (
                ProviderError::Timeout(TimeoutPhase::FirstByte),
                Some(FailureClass::Timeout),
            ),
            (
                ProviderError::Connect("refused".into()),
                Some(FailureClass::Unavailable),
            ),
        ];
        for (err, class) in cases {
            assert_eq!(classify(&err), class, "{err}");
        }
        assert!(retryable(Some(FailureClass::Timeout)));
        assert!(!retryable(Some(FailureClass::ContextWindow)));
        assert!(!retryable(None));
    }
}
