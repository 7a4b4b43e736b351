//! A circuit breaker per upstream target.
//!
//! ```text
//!            consecutive failures ≥ N, or
//!            failure rate ≥ r over the window (with ≥ min_requests)
//!   Closed ───────────────────────────────────────────────► Open { until }
//!     ▲                                                        │ now ≥ until
//!     │ probe succeeds                                         ▼
//!     └──────────────────────────────────────────────────── HalfOpen { probes }
//!                            probe fails: Open { until = now + cooldown } ◄┘
//! ```
//!
//! Closed admits everything. Open refuses everything until the cooldown has elapsed. HalfOpen
//! admits at most `half_open_probes` concurrent requests, each marked as a probe ([`Permit`]);
//! the first probe outcome decides: success closes the breaker and clears its counters, failure
//! opens it for another cooldown. A probe that ends without an outcome (neutral answer, dropped
//! guard) gives its slot back.
//!
//! Counting is lock-free: a consecutive-failure counter and a ring of time buckets (requests and
//! failures packed in one atomic word each). The mutex is taken only to change state, and to
//! admit or release half-open probes. A sample that races a bucket rotation may be lost; the
//! window is a statistical signal and that does not change it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::nanos;

/// Number of time buckets in the rolling window.
const BUCKETS: usize = 10;
/// Bucket epoch of a bucket that holds nothing.
const EMPTY: u64 = u64::MAX;
/// One request in a bucket's packed counts (requests in the high half, failures in the low).
const REQUEST: u64 = 1 << 32;
const FAILURE: u64 = 1;

const TAG_CLOSED: u8 = 0;
const TAG_OPEN: u8 = 1;
const TAG_HALF_OPEN: u8 = 2;

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (0 disables this rule).
    pub consecutive_failures: u32,
    /// Open when failures / requests over the window reach this fraction...
    pub failure_rate: f64,
    /// ...provided the window holds at least this many requests.
    pub min_requests: u32,
    /// Length of the rolling window for the failure rate (kept in 10 buckets).
    pub window: Duration,
    /// How long an open breaker refuses traffic before admitting a probe.
    pub cooldown: Duration,
    /// Concurrent probes admitted while half-open (at least 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(format!(
                "failure_rate must be in (0, 1], got {}",
                self.failure_rate
            ));
        }
        if self.window.is_zero() {
            return Err("window must be positive".to_owned());
        }
        if self.half_open_probes == 0 {
            return Err("half_open_probes must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// The breaker's state as seen from outside (metrics, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// A stable lowercase name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Permission to send one request, from [`CircuitBreaker::allow`]. Hand it back with exactly one
/// of [`CircuitBreaker::record_success`], [`CircuitBreaker::record_failure`] or
/// [`CircuitBreaker::release`]; a probe permit that is never handed back keeps its half-open slot.
/// [`crate::InFlight`] does this for you.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be handed back with record_success, record_failure or release"]
pub struct Permit {
    /// `Some(generation of the half-open period)` for a probe.
    probe: Option<u64>,
}

impl Permit {
    /// Whether this request is a half-open probe, whose outcome closes or re-opens the breaker.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: u64 },
    HalfOpen { probes: u32 },
}

#[derive(Debug)]
struct Transitions {
    state: State,
    /// Incremented on every entry into HalfOpen, so a probe from an earlier half-open period can
    /// neither release a slot of the current one nor decide it.
    generation: u64,
}

#[derive(Debug)]
struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

/// A circuit breaker; see the module documentation. `Send + Sync`, shared through
/// [`crate::TargetHealth`].
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    bucket_ns: u64,
    /// Mirror of `transitions.state` for the lock-free fast path (`TAG_*`).
    tag: AtomicU8,
    /// Mirror of `Open { until }`, written before `tag` switches to open.
    open_until: AtomicU64,
    consecutive: AtomicU32,
    buckets: [Bucket; BUCKETS],
    transitions: Mutex<Transitions>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            bucket_ns: (nanos(config.window) / BUCKETS as u64).max(1),
            config,
            tag: AtomicU8::new(TAG_CLOSED),
            open_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            buckets: std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(EMPTY),
                counts: AtomicU64::new(0),
            }),
            transitions: Mutex::new(Transitions {
                state: State::Closed,
                generation: 0,
            }),
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to send one request at `now`: `None` if the breaker refuses, otherwise a permit
    /// (a probe permit when half-open). An open breaker whose cooldown has elapsed turns
    /// half-open here.
    pub fn allow(&self, now: u64) -> Option<Permit> {
        match self.tag.load(Ordering::Acquire) {
            TAG_CLOSED => return Some(Permit { probe: None }),
            TAG_OPEN if now < self.open_until.load(Ordering::Acquire) => return None,
            _ => {}
        }
        let mut t = self.lock();
        match t.state {
            State::Closed => Some(Permit { probe: None }),
            State::Open { until } if now < until => None,
            State::Open { .. } => {
                t.generation += 1;
                self.set_state(&mut t, State::HalfOpen { probes: 1 });
                Some(Permit {
                    probe: Some(t.generation),
                })
            }
            State::HalfOpen { probes } if probes < self.max_probes() => {
                t.state = State::HalfOpen { probes: probes + 1 };
                Some(Permit {
                    probe: Some(t.generation),
                })
            }
            State::HalfOpen { .. } => None,
        }
    }

    /// Whether [`allow`](Self::allow) would admit a request at `now`, without taking a permit or
    /// changing state. For ordering targets.
    pub fn allows(&self, now: u64) -> bool {
        match self.tag.load(Ordering::Acquire) {
            TAG_CLOSED => true,
            TAG_OPEN if now < self.open_until.load(Ordering::Acquire) => false,
            _ => match self.lock().state {
                State::Closed => true,
                State::Open { until } => now >= until,
                State::HalfOpen { probes } => probes < self.max_probes(),
            },
        }
    }

    /// The state at `now`; an open breaker whose cooldown has elapsed reports `HalfOpen`.
    pub fn state(&self, now: u64) -> BreakerState {
        match self.tag.load(Ordering::Acquire) {
            TAG_CLOSED => BreakerState::Closed,
            TAG_OPEN if now < self.open_until.load(Ordering::Acquire) => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// The request succeeded: resets the consecutive-failure count; a current probe closes the
    /// breaker and clears its counters.
    pub fn record_success(&self, permit: Permit, now: u64) {
        if let Some(generation) = permit.probe {
            let mut t = self.lock();
            if matches!(t.state, State::HalfOpen { .. }) && t.generation == generation {
                self.consecutive.store(0, Ordering::Relaxed);
                self.reset_window();
                self.set_state(&mut t, State::Closed);
                return;
            }
        }
        self.count(now, false);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// The request failed in a way that says the target is unhealthy: a current probe re-opens
    /// the breaker for another cooldown; otherwise the failure is counted and may open it.
    pub fn record_failure(&self, permit: Permit, now: u64) {
        if let Some(generation) = permit.probe {
            let mut t = self.lock();
            if matches!(t.state, State::HalfOpen { .. }) && t.generation == generation {
                self.open(&mut t, now);
                return;
            }
        }
        self.count(now, true);
        let consecutive = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if self.tag.load(Ordering::Acquire) != TAG_CLOSED {
            // Already open or probing: failures of requests admitted earlier change nothing.
            return;
        }
        let by_streak =
            self.config.consecutive_failures > 0 && consecutive >= self.config.consecutive_failures;
        if by_streak || self.rate_exceeded(now) {
            let mut t = self.lock();
            if t.state == State::Closed {
                self.open(&mut t, now);
            }
        }
    }

    /// The request ended without saying anything about the target's health (a client error, or
    /// the guard was dropped): nothing is counted, and a probe gives its slot back.
    pub fn release(&self, permit: Permit) {
        if let Some(generation) = permit.probe {
            let mut t = self.lock();
            if let State::HalfOpen { probes } = t.state {
                if t.generation == generation {
                    t.state = State::HalfOpen {
                        probes: probes.saturating_sub(1),
                    };
                }
            }
        }
    }

    /// Requests and failures counted in the window ending at `now`.
    pub fn window_counts(&self, now: u64) -> (u64, u64) {
        let current = now / self.bucket_ns;
        let mut requests = 0;
        let mut failures = 0;
        for bucket in &self.buckets {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            if epoch != EMPTY && epoch <= current && current - epoch < BUCKETS as u64 {
                let counts = bucket.counts.load(Ordering::Relaxed);
                requests += counts >> 32;
                failures += counts & 0xFFFF_FFFF;
            }
        }
        (requests, failures)
    }

    fn rate_exceeded(&self, now: u64) -> bool {
        let (requests, failures) = self.window_counts(now);
        requests > 0
            && requests >= u64::from(self.config.min_requests)
            && failures as f64 / requests as f64 >= self.config.failure_rate
    }

    fn count(&self, now: u64, failed: bool) {
        let epoch = now / self.bucket_ns;
        let bucket = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let current = bucket.epoch.load(Ordering::Acquire);
        if current != epoch {
            if current != EMPTY && current > epoch {
                // A sample older than what the bucket holds now (a caller's `now` was stale by
                // a whole window): it belongs to a window that is gone.
                return;
            }
            if bucket
                .epoch
                .compare_exchange(current, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
                && current != EMPTY
            {
                // A fresh bucket already holds zero; zeroing it again could wipe a sample
                // added by a thread that saw the new epoch first.
                bucket.counts.store(0, Ordering::Release);
            }
        }
        let add = if failed { REQUEST | FAILURE } else { REQUEST };
        bucket.counts.fetch_add(add, Ordering::AcqRel);
    }

    fn reset_window(&self) {
        for bucket in &self.buckets {
            bucket.epoch.store(EMPTY, Ordering::Release);
            bucket.counts.store(0, Ordering::Release);
        }
    }

    fn open(&self, t: &mut Transitions, now: u64) {
        let until = now.saturating_add(nanos(self.config.cooldown));
        self.set_state(t, State::Open { until });
    }

    fn set_state(&self, t: &mut Transitions, state: State) {
        t.state = state;
        let tag = match state {
            State::Closed => TAG_CLOSED,
            State::Open { until } => {
                self.open_until.store(until, Ordering::Release);
                TAG_OPEN
            }
            State::HalfOpen { .. } => TAG_HALF_OPEN,
        };
        self.tag.store(tag, Ordering::Release);
    }

    fn max_probes(&self) -> u32 {
        self.config.half_open_probes.max(1)
    }

    fn lock(&self) -> MutexGuard<'_, Transitions> {
        // The critical sections cannot panic half-way; a poisoned lock still holds valid state.
        self.transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::default())
    }

    fn ok(b: &CircuitBreaker, now: u64) {
        let p = b.allow(now).expect("admitted");
        b.record_success(p, now);
    }

    fn fail(b: &CircuitBreaker, now: u64) {
        let p = b.allow(now).expect("admitted");
        b.record_failure(p, now);
    }

    /// Opens a default breaker at `now` with five failures in a row.
    fn opened_at(now: u64) -> CircuitBreaker {
        let b = breaker();
        for _ in 0..5 {
            fail(&b, now);
        }
        assert_eq!(b.state(now), BreakerState::Open);
        b
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = BreakerConfig::default();
        assert_eq!(c.consecutive_failures, 5);
        assert_eq!(c.failure_rate, 0.5);
        assert_eq!(c.min_requests, 10);
        assert_eq!(c.window, Duration::from_secs(30));
        assert_eq!(c.cooldown, Duration::from_secs(30));
        assert_eq!(c.half_open_probes, 1);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut BreakerConfig)| {
            let mut c = BreakerConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.failure_rate = 0.0).contains("failure_rate"));
        assert!(bad(|c| c.failure_rate = 1.5).contains("failure_rate"));
        assert!(bad(|c| c.failure_rate = f64::NAN).contains("failure_rate"));
        assert!(bad(|c| c.window = Duration::ZERO).contains("window"));
        assert!(bad(|c| c.half_open_probes = 0).contains("half_open_probes"));
    }

    #[test]
    fn closed_admits_normal_requests() {
        let b = breaker();
        assert_eq!(b.state(0), BreakerState::Closed);
        assert!(b.allows(0));
        let p = b.allow(0).unwrap();
        assert!(!p.is_probe());
        b.release(p);
    }

    #[test]
    fn opens_on_the_fifth_consecutive_failure_not_before() {
        let b = breaker();
        for i in 0..4 {
            fail(&b, i * MS);
            assert_eq!(
                b.state(i * MS),
                BreakerState::Closed,
                "after {} failures",
                i + 1
            );
        }
        fail(&b, 4 * MS);
        assert_eq!(b.state(4 * MS), BreakerState::Open);
        assert!(b.allow(4 * MS).is_none());
        assert!(!b.allows(4 * MS));
    }

    #[test]
    fn a_success_resets_the_streak() {
        // Rate rule off (100% needed), so only the streak can open it.
        let b = CircuitBreaker::new(BreakerConfig {
            failure_rate: 1.0,
            ..BreakerConfig::default()
        });
        for _ in 0..3 {
            for _ in 0..4 {
                fail(&b, 0);
            }
            ok(&b, 0);
        }
        assert_eq!(b.state(0), BreakerState::Closed);
        fail(&b, 0);
        assert_eq!(
            b.state(0),
            BreakerState::Closed,
            "streak of 1 after a success"
        );
    }

    #[test]
    fn opens_on_failure_rate_once_min_requests_reached() {
        // Alternate failure/success: never two failures in a row, 50% failure rate.
        let b = breaker();
        for i in 0..9u64 {
            if i % 2 == 0 {
                fail(&b, i * MS);
            } else {
                ok(&b, i * MS);
            }
            assert_eq!(b.state(i * MS), BreakerState::Closed, "request {}", i + 1);
        }
        // 9 requests, 5 failures: rate 0.56 but below min_requests. The 10th (a success) is
        // not a failure so cannot trip; the 11th, a failure, gives 6/11 ≥ 0.5 with 11 ≥ 10.
        ok(&b, 9 * MS);
        assert_eq!(b.state(9 * MS), BreakerState::Closed);
        fail(&b, 10 * MS);
        assert_eq!(b.state(10 * MS), BreakerState::Open);
        assert_eq!(b.window_counts(10 * MS), (11, 6));
    }

    #[test]
    fn failure_rate_below_threshold_keeps_it_closed() {
        let b = breaker();
        // 40% failures (F S F S S ...), never 50% once 10 requests are in.
        for i in 0..100u64 {
            if i % 5 == 0 || i % 5 == 2 {
                fail(&b, i * MS);
            } else {
                ok(&b, i * MS);
            }
        }
        assert_eq!(b.state(SEC), BreakerState::Closed);
        assert_eq!(b.window_counts(SEC), (100, 40));
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let b = breaker();
        // 4 failures + 4 successes at t=0 (alternating so no streak).
        for _ in 0..4 {
            fail(&b, 0);
            ok(&b, 0);
        }
        assert_eq!(b.window_counts(0), (8, 4));
        // 31 s later the first bucket has left the window.
        let later = 31 * SEC;
        assert_eq!(b.window_counts(later), (0, 0));
        for _ in 0..4 {
            ok(&b, later);
            fail(&b, later);
        }
        ok(&b, later);
        ok(&b, later);
        // Window: 10 requests, 4 failures → still closed; with the old ones it would be 8/18.
        assert_eq!(b.window_counts(later), (10, 4));
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn the_window_spans_its_buckets() {
        // Neither rule may open it: this test only looks at the counts.
        let b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            min_requests: u32::MAX,
            ..BreakerConfig::default()
        });
        // One failure per 3 s bucket across 10 buckets: all are in the window at the last one.
        for i in 0..10u64 {
            let p = b.allow(i * 3 * SEC).unwrap();
            b.record_failure(p, i * 3 * SEC);
        }
        assert_eq!(b.window_counts(27 * SEC), (10, 10));
        // At 30 s the bucket of t=0 rotates out.
        assert_eq!(b.window_counts(30 * SEC), (9, 9));
        // A sample landing in a reused slot replaces its stale counts.
        ok(&b, 30 * SEC);
        assert_eq!(b.window_counts(30 * SEC), (10, 9));
    }

    #[test]
    fn open_refuses_until_the_cooldown_then_admits_one_probe() {
        let t0 = 100 * SEC;
        let b = opened_at(t0);
        let cooled = t0 + 30 * SEC;
        assert!(b.allow(cooled - 1).is_none());
        assert_eq!(b.state(cooled - 1), BreakerState::Open);
        assert_eq!(b.state(cooled), BreakerState::HalfOpen);
        assert!(b.allows(cooled));

        let probe = b.allow(cooled).unwrap();
        assert!(probe.is_probe());
        // Only one concurrent probe by default.
        assert!(b.allow(cooled).is_none());
        assert!(!b.allows(cooled));
        assert_eq!(b.state(cooled), BreakerState::HalfOpen);

        b.record_success(probe, cooled + MS);
        assert_eq!(b.state(cooled + MS), BreakerState::Closed);
        assert_eq!(
            b.window_counts(cooled + MS),
            (0, 0),
            "counters reset on close"
        );
        let p = b.allow(cooled + MS).unwrap();
        assert!(!p.is_probe());
        b.release(p);
    }

    #[test]
    fn closing_resets_the_streak() {
        let b = opened_at(0);
        let probe = b.allow(30 * SEC).unwrap();
        b.record_success(probe, 30 * SEC);
        for _ in 0..4 {
            fail(&b, 31 * SEC);
        }
        assert_eq!(b.state(31 * SEC), BreakerState::Closed);
        fail(&b, 31 * SEC);
        assert_eq!(b.state(31 * SEC), BreakerState::Open);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let b = opened_at(0);
        let probe = b.allow(30 * SEC).unwrap();
        b.record_failure(probe, 32 * SEC);
        assert_eq!(b.state(32 * SEC), BreakerState::Open);
        // The new cooldown counts from the probe's failure.
        assert!(b.allow(62 * SEC - 1).is_none());
        let probe = b.allow(62 * SEC).unwrap();
        assert!(probe.is_probe());
        b.record_success(probe, 62 * SEC);
        assert_eq!(b.state(62 * SEC), BreakerState::Closed);
    }

    #[test]
    fn a_released_probe_frees_its_slot() {
        let b = opened_at(0);
        let probe = b.allow(30 * SEC).unwrap();
        assert!(b.allow(30 * SEC).is_none());
        b.release(probe);
        assert_eq!(b.state(30 * SEC), BreakerState::HalfOpen);
        assert!(b.allows(30 * SEC));
        let again = b.allow(30 * SEC).unwrap();
        assert!(again.is_probe());
        b.record_success(again, 30 * SEC);
        assert_eq!(b.state(30 * SEC), BreakerState::Closed);
    }

    #[test]
    fn several_probes_when_configured() {
        let b = CircuitBreaker::new(BreakerConfig {
            half_open_probes: 2,
            ..BreakerConfig::default()
        });
        for _ in 0..5 {
            fail(&b, 0);
        }
        let p1 = b.allow(30 * SEC).unwrap();
        let p2 = b.allow(30 * SEC).unwrap();
        assert!(p1.is_probe() && p2.is_probe());
        assert!(b.allow(30 * SEC).is_none());
        // The first outcome decides; the other probe's late failure is an ordinary failure.
        b.record_success(p1, 30 * SEC);
        assert_eq!(b.state(30 * SEC), BreakerState::Closed);
        b.record_failure(p2, 30 * SEC);
        assert_eq!(b.state(30 * SEC), BreakerState::Closed);
        assert_eq!(b.window_counts(30 * SEC), (1, 1));
    }

    #[test]
    fn a_stale_probe_does_not_touch_a_later_half_open_period() {
        let b = CircuitBreaker::new(BreakerConfig {
            half_open_probes: 2,
            ..BreakerConfig::default()
        });
        for _ in 0..5 {
            fail(&b, 0);
        }
        let stale = b.allow(30 * SEC).unwrap();
        let failing = b.allow(30 * SEC).unwrap();
        b.record_failure(failing, 30 * SEC); // re-open until 60 s
        let current = b.allow(60 * SEC).unwrap();
        let current2 = b.allow(60 * SEC).unwrap();
        assert!(b.allow(60 * SEC).is_none());
        // The probe from the first half-open period neither frees a slot...
        b.release(stale);
        assert!(b.allow(60 * SEC).is_none());
        // ...nor would its success close the breaker.
        b.release(current2);
        let stale = Permit {
            probe: Some(current.probe.unwrap() - 1),
        };
        b.record_success(stale, 60 * SEC);
        assert_eq!(b.state(60 * SEC), BreakerState::HalfOpen);
        b.record_success(current, 60 * SEC);
        assert_eq!(b.state(60 * SEC), BreakerState::Closed);
    }

    #[test]
    fn late_failures_while_open_do_not_extend_it() {
        let b = breaker();
        let late: Vec<Permit> = (0..3).map(|_| b.allow(0).unwrap()).collect();
        for _ in 0..5 {
            fail(&b, 0);
        }
        for p in late {
            b.record_failure(p, 10 * SEC);
        }
        // Still opens for probes at 30 s (cooldown counted from when it opened).
        assert!(b.allow(30 * SEC).unwrap().is_probe());
    }

    #[test]
    fn a_normal_success_does_not_close_a_half_open_breaker() {
        let b = breaker();
        let early = b.allow(0).unwrap();
        for _ in 0..5 {
            fail(&b, 0);
        }
        let probe = b.allow(30 * SEC).unwrap();
        b.record_success(early, 30 * SEC);
        assert_eq!(b.state(30 * SEC), BreakerState::HalfOpen);
        b.record_failure(probe, 30 * SEC);
        assert_eq!(b.state(30 * SEC), BreakerState::Open);
    }

    #[test]
    fn the_streak_rule_can_be_disabled() {
        let b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            ..BreakerConfig::default()
        });
        for _ in 0..9 {
            fail(&b, 0);
        }
        assert_eq!(
            b.state(0),
            BreakerState::Closed,
            "rate rule needs 10 requests"
        );
        fail(&b, 0);
        assert_eq!(b.state(0), BreakerState::Open);
    }

    #[test]
    fn a_stale_sample_from_an_old_window_is_dropped() {
        let b = breaker();
        ok(&b, 40 * SEC); // bucket slot of epoch 13
        let p = b.allow(10 * SEC).unwrap(); // epoch 3, same slot, older
        b.record_failure(p, 10 * SEC);
        assert_eq!(b.window_counts(40 * SEC), (1, 0));
    }

    #[test]
    fn state_names() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }

    #[test]
    fn concurrent_counting_loses_nothing_within_one_bucket() {
        let b = std::sync::Arc::new(CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            failure_rate: 1.0,
            min_requests: u32::MAX,
            ..BreakerConfig::default()
        }));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for j in 0..1000 {
                        let p = b.allow(SEC).unwrap();
                        if (i + j) % 4 == 0 {
                            b.record_failure(p, SEC);
                        } else {
                            b.record_success(p, SEC);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.window_counts(SEC), (8000, 2000));
    }
}
