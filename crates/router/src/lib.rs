//! Routing decisions: which upstream target to try, in what order, when to give up on a target
//! for a while, and how long to wait before retrying.
//!
//! - [`health`]: [`TargetHealth`], shared by every request to one upstream target: requests in
//!   flight, peak-EWMA latency and a [`CircuitBreaker`].
//! - [`breaker`]: the circuit breaker (closed → open → half-open → closed).
//! - [`balance`]: the order in which a model's targets are tried ([`Balance`], [`order`]).
//! - [`backoff`]: retry delays with full jitter, `Retry-After` and OpenAI reset durations.
//!
//! Failure classes (which failures retry and which fall back) are configuration, in
//! `plexus_core::config::FailureClass`; the server maps provider errors onto them.
//!
//! **Invariants:**
//! - Pure logic. No I/O, no clock reads, no global random generator: the current time is an
//!   argument `now: u64`, monotonic nanoseconds since an arbitrary epoch chosen by the caller
//!   (e.g. an `Instant` taken at start-up), and randomness is an `&mut impl Rng` argument. Under
//!   test every decision is deterministic.
//! - Every [`InFlight`] guard is settled exactly once: [`InFlight::finish`] or `Drop` decrements
//!   the in-flight count, and a half-open probe slot is always given back, so a dropped request
//!   (client gone, task cancelled) can never leave a breaker stuck half-open.
//! - [`order`] returns a permutation of the candidate indices; targets whose breaker refuses
//!   traffic come last, so they are only reached when everything else has failed (and then
//!   [`TargetHealth::begin`] refuses them again unless the breaker has meanwhile let go).
//! - Hot paths are lock-free (atomics); a small mutex serializes breaker state transitions only.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod health;

pub use backoff::{format_reset_duration, parse_reset_duration, parse_retry_after, RetryPolicy};
pub use balance::{order, Balance, Candidate, UnknownBalance};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit};
pub use health::{HealthConfig, InFlight, Outcome, TargetHealth};

use std::time::Duration;

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
