//! Request, token and concurrency limits, in process.
//!
//! Requests per minute and tokens per minute/day use GCRA (the generic cell rate algorithm):
//! one "theoretical arrival time" per limit, advanced by `cost × period / limit` on every
//! admission. It behaves like a token bucket that refills continuously, so there is no
//! window edge where twice the limit gets through. A request is admitted while the arrival
//! time stays within one period of now; the whole period's allowance can be used as a burst.
//!
//! Each limit is one `AtomicU64` updated with compare-and-swap: no lock is held on the hot
//! path (the subject table takes a read lock to find a cell; a write lock only to add one).
//! Admission over several subjects (key, team, model, ...) is all-or-nothing: a refusal rolls
//! back what was already taken.
//!
//! Time comes in as nanoseconds on a monotonic scale chosen by the caller, so tests drive it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const MINUTE_NS: u64 = 60_000_000_000;
pub const DAY_NS: u64 = 86_400_000_000_000;

/// The limits on one subject; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub max_parallel: Option<u64>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.tpd.is_none()
            && self.max_parallel.is_none()
    }

    pub fn limits_tokens(&self) -> bool {
        self.tpm.is_some() || self.tpd.is_some()
    }
}

/// Who a limit applies to: `scope` is `global`, `model`, `key`, `user`, `team` or `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub scope: &'static str,
    pub id: String,
    pub quota: Quota,
}

impl Subject {
    pub fn new(scope: &'static str, id: impl Into<String>, quota: Quota) -> Subject {
        Subject {
            scope,
            id: id.into(),
            quota,
        }
    }

    /// `scope:id`, the subject's name in tables and in Redis keys.
    pub fn name(&self) -> String {
        format!("{}:{}", self.scope, self.id)
    }
}

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Requests,
    TokensPerMinute,
    TokensPerDay,
    Parallel,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Requests => "requests per minute",
            Kind::TokensPerMinute => "tokens per minute",
            Kind::TokensPerDay => "tokens per day",
            Kind::Parallel => "concurrent requests",
        }
    }

    /// Short name used in Redis keys and metrics.
    pub fn slug(&self) -> &'static str {
        match self {
            Kind::Requests => "rpm",
            Kind::TokensPerMinute => "tpm",
            Kind::TokensPerDay => "tpd",
            Kind::Parallel => "par",
        }
    }

    pub fn period_ns(&self) -> u64 {
        match self {
            Kind::TokensPerDay => DAY_NS,
            _ => MINUTE_NS,
        }
    }
}

/// A refusal: which subject and limit, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub scope: &'static str,
    pub id: String,
    pub kind: Kind,
    pub limit: u64,
    /// How long until the request would fit; `None` when it never can (it alone exceeds the
    /// limit, e.g. more tokens than the per-minute limit).
    pub retry_after: Option<Duration>,
}

impl Rejection {
    pub fn message(&self) -> String {
        match self.retry_after {
            Some(_) => format!(
                "Rate limit reached for {} `{}`: limit {} {}.",
                self.scope,
                self.id,
                self.limit,
                self.kind.as_str()
            ),
            None => format!(
                "This request alone exceeds the limit of {} {} for {} `{}`.",
                self.limit,
                self.kind.as_str(),
                self.scope,
                self.id
            ),
        }
    }
}

/// What is left of one limit, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    /// Until the limit is back to its full allowance.
    pub reset: Duration,
}

impl Remaining {
    /// Whether `self` is closer to exhaustion than `other` (smaller share left).
    fn tighter_than(&self, other: &Remaining) -> bool {
        (self.remaining as u128) * (other.limit.max(1) as u128)
            < (other.remaining as u128) * (self.limit.max(1) as u128)
    }

    pub fn tightest(a: Option<Remaining>, b: Remaining) -> Option<Remaining> {
        Some(match a {
            Some(a) if !b.tighter_than(&a) => a,
            _ => b,
        })
    }
}

/// The limits closest to exhaustion after an admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: Option<Remaining>,
    pub tokens: Option<Remaining>,
}

/// GCRA arithmetic shared by both backends (Redis runs the same in Lua).
pub mod gcra {
    /// Nanoseconds one unit adds to the arrival time.
    pub fn increment(period_ns: u64, limit: u64) -> u64 {
        (period_ns / limit.max(1)).max(1)
    }

    /// The new arrival time if `cost` units fit at `now`, else `Err(wait_ns)` (`u64::MAX` when
    /// they never can).
    pub fn admit(tat: u64, now: u64, cost: u64, period_ns: u64, limit: u64) -> Result<u64, u64> {
        let inc = increment(period_ns, limit);
        let needed = cost.saturating_mul(inc);
        if cost > limit {
            return Err(u64::MAX);
        }
        let new_tat = tat.max(now).saturating_add(needed);
        let ahead = new_tat - now;
        if ahead <= period_ns {
            Ok(new_tat)
        } else {
            Err(ahead - period_ns)
        }
    }

    /// Units left and time to full after the arrival time `tat`.
    pub fn remaining(tat: u64, now: u64, period_ns: u64, limit: u64) -> (u64, u64) {
        let inc = increment(period_ns, limit);
        let ahead = tat.saturating_sub(now);
        let left = period_ns.saturating_sub(ahead) / inc;
        (left.min(limit), ahead)
    }
}

#[derive(Debug, Default)]
struct Cells {
    requests: AtomicU64,
    tokens_minute: AtomicU64,
    tokens_day: AtomicU64,
    parallel: AtomicU64,
}

impl Cells {
    fn tat(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::Requests => &self.requests,
            Kind::TokensPerMinute => &self.tokens_minute,
            Kind::TokensPerDay => &self.tokens_day,
            Kind::Parallel => &self.parallel,
        }
    }
}

/// The in-process backend.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    /// Scope, then id: looked up by `&str` without building a key per request.
    subjects: RwLock<HashMap<&'static str, HashMap<String, Arc<Cells>>>>,
}

/// One limit taken by an admission, to roll back or reconcile.
#[derive(Debug, Clone)]
struct Taken {
    cells: Arc<Cells>,
    kind: Kind,
    limit: u64,
    amount: u64,
}

/// What a local admission holds: concurrency slots and reserved tokens.
#[derive(Debug)]
pub struct LocalHold {
    taken: Vec<Taken>,
    released: bool,
}

impl LocalLimiter {
    pub fn new() -> Arc<LocalLimiter> {
        Arc::new(LocalLimiter::default())
    }

    fn cells(&self, subject: &Subject) -> Arc<Cells> {
        if let Ok(map) = self.subjects.read() {
            if let Some(c) = map
                .get(subject.scope)
                .and_then(|ids| ids.get(subject.id.as_str()))
            {
                return c.clone();
            }
        }
        let mut map = match self.subjects.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(subject.scope)
            .or_default()
            .entry(subject.id.clone())
            .or_default()
            .clone()
    }

    /// Admits one request costing `tokens` (estimated) on every subject, or none.
    pub fn acquire(
        self: &Arc<Self>,
        subjects: &[Subject],
        tokens: u64,
        now: u64,
    ) -> Result<(LocalHold, Snapshot), Rejection> {
        let mut hold = LocalHold {
            taken: Vec::with_capacity(subjects.len() * 2),
            released: false,
        };
        let mut snapshot = Snapshot::default();
        for subject in subjects {
            let q = &subject.quota;
            if q.is_empty() {
                continue;
            }
            let cells = self.cells(subject);
            let limits = [
                (Kind::Requests, q.rpm, 1),
                (Kind::TokensPerMinute, q.tpm, tokens),
                (Kind::TokensPerDay, q.tpd, tokens),
            ];
            for (kind, limit, cost) in limits {
                let Some(limit) = limit else { continue };
                let cell = cells.tat(kind);
                let period = kind.period_ns();
                let mut current = cell.load(Ordering::Acquire);
                let new_tat = loop {
                    match gcra::admit(current, now, cost, period, limit) {
                        Ok(new_tat) => match cell.compare_exchange_weak(
                            current,
                            new_tat,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => break new_tat,
                            Err(seen) => current = seen,
                        },
                        Err(wait) => {
                            hold.rollback(now);
                            return Err(Rejection {
                                scope: subject.scope,
                                id: subject.id.clone(),
                                kind,
                                limit,
                                retry_after: (wait != u64::MAX).then(|| Duration::from_nanos(wait)),
                            });
                        }
                    }
                };
                hold.taken.push(Taken {
                    cells: cells.clone(),
                    kind,
                    limit,
                    amount: cost,
                });
                let (left, ahead) = gcra::remaining(new_tat, now, period, limit);
                let r = Remaining {
                    limit,
                    remaining: left,
                    reset: Duration::from_nanos(ahead),
                };
                if kind == Kind::Requests {
                    snapshot.requests = Remaining::tightest(snapshot.requests, r);
                } else {
                    snapshot.tokens = Remaining::tightest(snapshot.tokens, r);
                }
            }
            if let Some(max) = q.max_parallel {
                let admitted = cells
                    .parallel
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    hold.rollback(now);
                    return Err(Rejection {
                        scope: subject.scope,
                        id: subject.id.clone(),
                        kind: Kind::Parallel,
                        limit: max,
                        retry_after: Some(Duration::from_secs(1)),
                    });
                }
                hold.taken.push(Taken {
                    cells: cells.clone(),
                    kind: Kind::Parallel,
                    limit: max,
                    amount: 1,
                });
            }
        }
        Ok((hold, snapshot))
    }

    /// Forgets subjects with nothing in flight whose limits are back to full, so the table
    /// does not grow with every key ever seen.
    pub fn purge_idle(&self, now: u64) -> usize {
        let mut map = match self.subjects.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut purged = 0;
        for ids in map.values_mut() {
            let before = ids.len();
            ids.retain(|_, c| {
                Arc::strong_count(c) > 1
                    || c.parallel.load(Ordering::Acquire) > 0
                    || c.requests.load(Ordering::Acquire) > now
                    || c.tokens_minute.load(Ordering::Acquire) > now
                    || c.tokens_day.load(Ordering::Acquire) > now
            });
            purged += before - ids.len();
        }
        map.retain(|_, ids| !ids.is_empty());
        purged
    }

    pub fn len(&self) -> usize {
        self.subjects
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Moves an arrival time back by `amount` units, not before `now` (a refund cannot bank
/// allowance beyond a full bucket).
fn refund(cell: &AtomicU64, amount: u64, limit: u64, period: u64, now: u64) {
    let back = amount.saturating_mul(gcra::increment(period, limit));
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
        Some(tat.saturating_sub(back).max(now.min(tat)))
    });
}

impl LocalHold {
    fn rollback(&mut self, now: u64) {
        for t in self.taken.drain(..) {
            release_one(&t, now);
        }
        self.released = true;
    }

    /// Reconciles the token reservation with the tokens the provider reported: the difference
    /// is charged (or refunded) on every token limit taken.
    pub fn settle_tokens(&mut self, actual: u64, now: u64) {
        for t in &mut self.taken {
            if !matches!(t.kind, Kind::TokensPerMinute | Kind::TokensPerDay) {
                continue;
            }
            let cell = t.cells.tat(t.kind);
            let period = t.kind.period_ns();
            if actual > t.amount {
                let extra = (actual - t.amount).saturating_mul(gcra::increment(period, t.limit));
                let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                    Some(tat.max(now).saturating_add(extra))
                });
            } else {
                refund(cell, t.amount - actual, t.limit, period, now);
            }
            t.amount = actual;
        }
    }

    /// Releases the concurrency slots (token and request charges stay).
    pub fn finish(mut self) {
        self.release_parallel();
    }

    fn release_parallel(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        for t in &self.taken {
            if t.kind == Kind::Parallel {
                let _ = t
                    .cells
                    .parallel
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
    }
}

fn release_one(t: &Taken, now: u64) {
    match t.kind {
        Kind::Parallel => {
            let _ = t
                .cells
                .parallel
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        kind => refund(t.cells.tat(kind), t.amount, t.limit, kind.period_ns(), now),
    }
}

impl Drop for LocalHold {
    fn drop(&mut self) {
        self.release_parallel();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(rpm: Option<u64>, tpm: Option<u64>, par: Option<u64>) -> Subject {
        Subject::new(
            "key",
            "k1",
            Quota {
                rpm,
                tpm,
                tpd: None,
                max_parallel: par,
            },
        )
    }

    #[test]
    fn rpm_admits_the_limit_then_refills_smoothly() {
        let l = LocalLimiter::new();
        let s = [key(Some(60), None, None)];
        let t0 = 1000 * SEC;
        for i in 0..60 {
            let (_, snap) = l.acquire(&s, 0, t0).unwrap();
            assert_eq!(snap.requests.unwrap().remaining, 59 - i);
        }
        let r = l.acquire(&s, 0, t0).unwrap_err();
        assert_eq!(r.kind, Kind::Requests);
        assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
        // One request's worth comes back each second: no window edge.
        assert!(l.acquire(&s, 0, t0 + SEC / 2).is_err());
        assert!(l.acquire(&s, 0, t0 + SEC).is_ok());
        assert!(l.acquire(&s, 0, t0 + SEC).is_err());
        let (_, snap) = l.acquire(&s, 0, t0 + 31 * SEC).unwrap();
        assert_eq!(snap.requests.unwrap().remaining, 29);
        assert_eq!(snap.requests.unwrap().reset, Duration::from_secs(31));
    }

    #[test]
    fn tokens_reserve_and_reconcile() {
        let l = LocalLimiter::new();
        let s = [key(None, Some(1000), None)];
        let now = 10 * SEC;
        let (mut hold, snap) = l.acquire(&s, 600, now).unwrap();
        assert_eq!(snap.tokens.unwrap().remaining, 400);
        assert!(l.acquire(&s, 600, now).is_err(), "the estimate is held");
        hold.settle_tokens(100, now);
        let (_, snap) = l.acquire(&s, 600, now).unwrap();
        assert_eq!(snap.tokens.unwrap().remaining, 300, "refund of 500");
        let err = l.acquire(&s, 2000, now).unwrap_err();
        assert_eq!(err.retry_after, None, "never fits");
        assert!(err.message().contains("alone exceeds"));
    }

    #[test]
    fn all_or_nothing_across_subjects() {
        let l = LocalLimiter::new();
        let team = Subject::new(
            "team",
            "t",
            Quota {
                rpm: Some(2),
                ..Quota::default()
            },
        );
        let a = [key(Some(10), None, None), team.clone()];
        let now = 5 * SEC;
        l.acquire(&a, 0, now).unwrap();
        l.acquire(&a, 0, now).unwrap();
        let err = l.acquire(&a, 0, now).unwrap_err();
        assert_eq!(err.scope, "team");
        // The key's own charge for the refused request was rolled back: 8 left, not 7.
        let (_, snap) = l.acquire(&[key(Some(10), None, None)], 0, now).unwrap();
        assert_eq!(snap.requests.unwrap().remaining, 7);
    }

    #[test]
    fn parallel_slots_are_released_on_drop() {
        let l = LocalLimiter::new();
        let s = [key(None, None, Some(2))];
        let a = l.acquire(&s, 0, 0).unwrap();
        let b = l.acquire(&s, 0, 0).unwrap();
        assert_eq!(l.acquire(&s, 0, 0).unwrap_err().kind, Kind::Parallel);
        drop(a);
        let c = l.acquire(&s, 0, 0).unwrap();
        b.0.finish();
        drop(c);
        assert!(l.acquire(&s, 0, 0).is_ok());
    }

    #[test]
    fn headers_report_the_limit_closest_to_exhaustion() {
        let l = LocalLimiter::new();
        let team = Subject::new(
            "team",
            "t",
            Quota {
                rpm: Some(1000),
                ..Quota::default()
            },
        );
        let s = [key(Some(4), None, None), team];
        let (_, snap) = l.acquire(&s, 0, 0).unwrap();
        assert_eq!(snap.requests.unwrap().limit, 4);
        assert_eq!(snap.requests.unwrap().remaining, 3);
    }

    #[test]
    fn threads_never_overshoot() {
        let l = LocalLimiter::new();
        let s = [key(Some(500), None, None)];
        let admitted = AtomicU64::new(0);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..400 {
                        if l.acquire(&s, 0, 7 * SEC).is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 500);
    }

    #[test]
    fn idle_subjects_are_purged() {
        let l = LocalLimiter::new();
        let s = [key(Some(60), None, None)];
        drop(l.acquire(&s, 0, 0).unwrap());
        assert_eq!(l.purge_idle(0), 0, "still refilling");
        assert_eq!(l.purge_idle(2 * SEC), 1);
        assert!(l.is_empty());
    }
}
