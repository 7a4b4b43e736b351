//! What the router knows about one upstream target, shared by all requests to it
//! (`Arc<TargetHealth>`): requests in flight, peak-EWMA latency, and a circuit breaker.
//!
//! Peak EWMA (Finagle's `PeakEwma`, also tower's): a sample above the current estimate replaces
//! it at once, a lower sample is blended in with weight `1 - exp(-elapsed / tau)`, and between
//! samples the estimate decays toward zero with the same time constant, so a target that was
//! slow a while ago is tried again. The load-aware cost is `latency × (in_flight + 1)`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit};
use crate::nanos;

/// Per-target health settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    pub breaker: BreakerConfig,
    /// Time constant of the latency average's decay.
    pub tau: Duration,
    /// Latency assumed for a target with no sample yet. Zero (the default) makes new targets
    /// look fastest, so they get tried and measured.
    pub default_latency: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            breaker: BreakerConfig::default(),
            tau: Duration::from_secs(10),
            default_latency: Duration::ZERO,
        }
    }
}

/// How a request to a target ended, as far as the target's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered; `latency_ns` is what the caller measured (e.g. time to first byte).
    Success { latency_ns: u64 },
    /// The target failed (5xx, timeout, connection error, rate limit...).
    Failure,
    /// Says nothing about the target (e.g. a 400 for the client's own request).
    Neutral,
}

/// Health of one upstream target. `Send + Sync`; share it as `Arc<TargetHealth>`.
#[derive(Debug)]
pub struct TargetHealth {
    tau_ns: f64,
    default_latency_ns: f64,
    in_flight: AtomicU64,
    /// Latency estimate in nanoseconds as `f64` bits; NaN until the first sample.
    ewma: AtomicU64,
    /// When `ewma` was last updated.
    stamp: AtomicU64,
    breaker: CircuitBreaker,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth::new(HealthConfig::default())
    }
}

impl TargetHealth {
    pub fn new(config: HealthConfig) -> Self {
        TargetHealth {
            tau_ns: nanos(config.tau) as f64,
            default_latency_ns: nanos(config.default_latency) as f64,
            in_flight: AtomicU64::new(0),
            ewma: AtomicU64::new(f64::NAN.to_bits()),
            stamp: AtomicU64::new(0),
            breaker: CircuitBreaker::new(config.breaker),
        }
    }

    /// Starts a request at `now` if the breaker admits it (`None` if it refuses). The guard
    /// counts the request as in flight until [`InFlight::finish`] or drop.
    pub fn begin(self: &Arc<Self>, now: u64) -> Option<InFlight> {
        let permit = self.breaker.allow(now)?;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight {
            health: Arc::clone(self),
            permit: Some(permit),
            started: now,
        })
    }

    /// Requests started and not yet finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The latency estimate at `now`, in nanoseconds (the configured default before any sample).
    pub fn latency_ns(&self, now: u64) -> f64 {
        let value = f64::from_bits(self.ewma.load(Ordering::Acquire));
        if value.is_nan() {
            return self.default_latency_ns;
        }
        let stamp = self.stamp.load(Ordering::Acquire);
        value * self.decay(now.saturating_sub(stamp))
    }

    /// Like [`TargetHealth::latency_ns`], but `None` before the first sample.
    pub fn measured_latency_ns(&self, now: u64) -> Option<f64> {
        let value = f64::from_bits(self.ewma.load(Ordering::Acquire));
        (!value.is_nan()).then(|| self.latency_ns(now))
    }

    /// Load-aware cost at `now`: `latency × (in_flight + 1)`. Lower is better.
    pub fn cost(&self, now: u64) -> f64 {
        self.latency_ns(now) * (self.in_flight() as f64 + 1.0)
    }

    /// Feeds one latency sample into the peak EWMA. [`InFlight::finish`] does this on success.
    pub fn record_latency(&self, now: u64, latency_ns: u64) {
        let sample = latency_ns as f64;
        let mut bits = self.ewma.load(Ordering::Acquire);
        loop {
            let old = f64::from_bits(bits);
            let next = if old.is_nan() || sample >= old {
                sample
            } else {
                let elapsed = now.saturating_sub(self.stamp.load(Ordering::Acquire));
                let w = self.decay(elapsed);
                old * w + sample * (1.0 - w)
            };
            match self.ewma.compare_exchange_weak(
                bits,
                next.to_bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => bits = current,
            }
        }
        self.stamp.fetch_max(now, Ordering::AcqRel);
    }

    /// Whether the breaker would admit a request at `now` (no permit taken).
    pub fn allows(&self, now: u64) -> bool {
        self.breaker.allows(now)
    }

    pub fn breaker_state(&self, now: u64) -> BreakerState {
        self.breaker.state(now)
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Weight of the old estimate after `elapsed_ns`: `exp(-elapsed / tau)`.
    fn decay(&self, elapsed_ns: u64) -> f64 {
        if self.tau_ns <= 0.0 {
            return if elapsed_ns == 0 { 1.0 } else { 0.0 };
        }
        (-(elapsed_ns as f64) / self.tau_ns).exp()
    }
}

/// One request in flight to a target, from [`TargetHealth::begin`]. Report how it ended with
/// [`finish`](Self::finish); dropping it unfinished counts as [`Outcome::Neutral`].
#[derive(Debug)]
#[must_use = "dropping the guard ends the request at once"]
pub struct InFlight {
    health: Arc<TargetHealth>,
    /// Taken by `finish`; `Drop` releases what is left.
    permit: Option<Permit>,
    started: u64,
}

impl InFlight {
    /// Whether this request is a half-open probe whose outcome decides the breaker.
    pub fn is_probe(&self) -> bool {
        self.permit.as_ref().is_some_and(Permit::is_probe)
    }

    /// The `now` given to [`TargetHealth::begin`].
    pub fn started(&self) -> u64 {
        self.started
    }

    pub fn health(&self) -> &Arc<TargetHealth> {
        &self.health
    }

    /// Ends the request at `now` with `outcome`.
    pub fn finish(mut self, now: u64, outcome: Outcome) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let health = &self.health;
        match outcome {
            Outcome::Success { latency_ns } => {
                health.record_latency(now, latency_ns);
                health.breaker.record_success(permit, now);
            }
            Outcome::Failure => health.breaker.record_failure(permit, now),
            Outcome::Neutral => health.breaker.release(permit),
        }
        // `Drop` decrements the in-flight count.
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.health.breaker.release(permit);
        }
        self.health.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn health() -> Arc<TargetHealth> {
        Arc::new(TargetHealth::default())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TargetHealth>();
        check::<Arc<TargetHealth>>();
        check::<InFlight>();
    }

    #[test]
    fn defaults() {
        let c = HealthConfig::default();
        assert_eq!(c.tau, Duration::from_secs(10));
        assert_eq!(c.default_latency, Duration::ZERO);
        assert_eq!(c.breaker, BreakerConfig::default());
    }

    #[test]
    fn guards_count_requests_in_flight() {
        let h = health();
        let a = h.begin(0).unwrap();
        let b = h.begin(0).unwrap();
        assert_eq!(h.in_flight(), 2);
        assert_eq!(a.started(), 0);
        assert!(!a.is_probe());
        a.finish(5 * MS, Outcome::Success { latency_ns: 5 * MS });
        assert_eq!(h.in_flight(), 1);
        drop(b);
        assert_eq!(h.in_flight(), 0);
        let c = h.begin(0).unwrap();
        c.finish(0, Outcome::Failure);
        let d = h.begin(0).unwrap();
        d.finish(0, Outcome::Neutral);
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn no_sample_uses_the_default_latency() {
        let h = health();
        assert_eq!(h.latency_ns(0), 0.0);
        assert_eq!(h.cost(0), 0.0);
        let h = TargetHealth::new(HealthConfig {
            default_latency: Duration::from_millis(250),
            ..HealthConfig::default()
        });
        assert_eq!(h.latency_ns(123 * SEC), 250.0 * MS as f64);
        // The first sample replaces the default, even a lower one.
        h.record_latency(SEC, 10 * MS);
        assert_eq!(h.latency_ns(SEC), 10.0 * MS as f64);
    }

    #[test]
    fn a_higher_sample_is_taken_at_once() {
        let h = health();
        h.record_latency(0, 10 * MS);
        h.record_latency(SEC, 100 * MS);
        assert_eq!(h.latency_ns(SEC), 100.0 * MS as f64);
    }

    #[test]
    fn a_lower_sample_is_blended_by_elapsed_time() {
        let h = health();
        h.record_latency(0, 100 * MS);
        // One tau later: w = e^-1.
        h.record_latency(10 * SEC, 10 * MS);
        let w = (-1.0f64).exp();
        let expected = 100.0 * MS as f64 * w + 10.0 * MS as f64 * (1.0 - w);
        assert!(
            close(h.latency_ns(10 * SEC), expected),
            "{}",
            h.latency_ns(10 * SEC)
        );
        // A lower sample at the same instant leaves the peak alone.
        let h = health();
        h.record_latency(SEC, 100 * MS);
        h.record_latency(SEC, MS);
        assert_eq!(h.latency_ns(SEC), 100.0 * MS as f64);
    }

    #[test]
    fn the_estimate_decays_between_samples() {
        let h = health();
        h.record_latency(SEC, 80 * MS);
        assert_eq!(h.latency_ns(SEC), 80.0 * MS as f64);
        let half = 10.0 * SEC as f64 * 2f64.ln();
        let later = SEC + half as u64;
        assert!(close(h.latency_ns(later), 40.0 * MS as f64));
        // Reading does not change the estimate.
        assert_eq!(h.latency_ns(SEC), 80.0 * MS as f64);
        // Long idle: almost nothing left; a `now` before the last sample counts as no time.
        assert!(h.latency_ns(SEC + 600 * SEC) < 1.0);
        assert_eq!(h.latency_ns(0), 80.0 * MS as f64);
    }

    #[test]
    fn zero_tau_keeps_only_the_last_sample() {
        let h = TargetHealth::new(HealthConfig {
            tau: Duration::ZERO,
            ..HealthConfig::default()
        });
        h.record_latency(0, 100 * MS);
        assert_eq!(h.latency_ns(0), 100.0 * MS as f64);
        h.record_latency(1, 5 * MS);
        assert_eq!(h.latency_ns(1), 5.0 * MS as f64);
        assert_eq!(h.latency_ns(2), 0.0);
    }

    #[test]
    fn cost_grows_with_requests_in_flight() {
        let h = health();
        h.record_latency(0, 10 * MS);
        assert_eq!(h.cost(0), 10.0 * MS as f64);
        let _a = h.begin(0).unwrap();
        let _b = h.begin(0).unwrap();
        assert_eq!(h.cost(0), 30.0 * MS as f64);
    }

    #[test]
    fn success_records_latency() {
        let h = health();
        let g = h.begin(0).unwrap();
        g.finish(
            20 * MS,
            Outcome::Success {
                latency_ns: 20 * MS,
            },
        );
        assert_eq!(h.latency_ns(20 * MS), 20.0 * MS as f64);
        // Failures and neutral outcomes leave the latency alone.
        h.begin(0).unwrap().finish(20 * MS, Outcome::Failure);
        h.begin(0).unwrap().finish(20 * MS, Outcome::Neutral);
        assert_eq!(h.latency_ns(20 * MS), 20.0 * MS as f64);
    }

    #[test]
    fn failures_open_the_breaker_and_begin_refuses() {
        let h = health();
        for _ in 0..5 {
            h.begin(0).unwrap().finish(0, Outcome::Failure);
        }
        assert_eq!(h.breaker_state(0), BreakerState::Open);
        assert!(!h.allows(0));
        assert!(h.begin(SEC).is_none());
        assert_eq!(h.in_flight(), 0, "a refused begin is not in flight");
    }

    #[test]
    fn neutral_outcomes_do_not_count_against_the_target() {
        let h = health();
        for _ in 0..100 {
            h.begin(0).unwrap().finish(0, Outcome::Neutral);
        }
        assert_eq!(h.breaker().window_counts(0), (0, 0));
        assert_eq!(h.breaker_state(0), BreakerState::Closed);
        // Nor do they break a streak of failures.
        for _ in 0..4 {
            h.begin(0).unwrap().finish(0, Outcome::Failure);
            h.begin(0).unwrap().finish(0, Outcome::Neutral);
        }
        h.begin(0).unwrap().finish(0, Outcome::Failure);
        assert_eq!(h.breaker_state(0), BreakerState::Open);
    }

    fn opened() -> Arc<TargetHealth> {
        let h = health();
        for _ in 0..5 {
            h.begin(0).unwrap().finish(0, Outcome::Failure);
        }
        h
    }

    #[test]
    fn a_dropped_probe_releases_its_slot() {
        let h = opened();
        let probe = h.begin(30 * SEC).unwrap();
        assert!(probe.is_probe());
        assert!(h.begin(30 * SEC).is_none(), "one probe at a time");
        drop(probe);
        assert_eq!(h.breaker_state(30 * SEC), BreakerState::HalfOpen);
        let probe = h.begin(31 * SEC).unwrap();
        assert!(probe.is_probe());
        probe.finish(31 * SEC, Outcome::Neutral);
        let probe = h.begin(31 * SEC).unwrap();
        probe.finish(32 * SEC, Outcome::Success { latency_ns: MS });
        assert_eq!(h.breaker_state(32 * SEC), BreakerState::Closed);
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let h = opened();
        h.begin(30 * SEC)
            .unwrap()
            .finish(31 * SEC, Outcome::Failure);
        assert_eq!(h.breaker_state(31 * SEC), BreakerState::Open);
        assert!(h.begin(60 * SEC).is_none());
        assert!(h.begin(61 * SEC).unwrap().is_probe());
    }

    #[test]
    fn concurrent_guards_settle_to_zero() {
        let h = health();
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for j in 0..1000u64 {
                        let g = h.begin(j).unwrap();
                        match (i + j) % 3 {
                            0 => g.finish(j, Outcome::Success { latency_ns: j }),
                            1 => g.finish(j, Outcome::Neutral),
                            _ => drop(g),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.in_flight(), 0);
        assert!(h.latency_ns(1000) > 0.0);
    }
}
