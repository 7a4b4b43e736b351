//! Admission control: spend budgets per key, user and team, enforced with reservations so
//! that concurrent requests cannot overshoot (`Budgets`, here), request/token/concurrency
//! limits (`rate`), and the same two shared by every gateway instance through Redis (`redis`).
//!
//! A request reserves its worst-case cost on every budget that applies before it is sent, and
//! settles the actual cost afterwards. Admission is checked against `spent + reserved`, so the
//! sum of what admitted requests can cost never exceeds a limit: concurrency cannot push spend
//! past it (only a request whose real cost exceeds its own worst case could, and the worst case
//! uses the output cap the upstream enforces).
//!
//! Money is integer nano-dollars ([`Nanos`]) throughout, so reservations and settlements add
//! up exactly: three reservations of $0.3 fit in a $0.9 budget, and a 10-token embedding is
//! charged rather than rounded away.
//!
//! **Invariant:** no I/O outside the `redis` module. The caller seeds a budget with the spend
//! already recorded in the current period (`seed`), and this crate keeps the running figures.
#![forbid(unsafe_code)]

pub mod rate;
pub mod redis;

pub use plexus_protocol::money::Nanos;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Whose budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// `key`, `user` or `team`.
    pub scope: &'static str,
    pub id: String,
}

/// A limit over a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The most the budget may spend in a period.
    pub max: Nanos,
    /// Period length; periods are aligned to the Unix epoch (`30d` resets every 30 days).
    pub period_ms: i64,
}

impl Limit {
    pub fn period_start(&self, now_ms: i64) -> i64 {
        if self.period_ms <= 0 {
            return 0;
        }
        now_ms - now_ms.rem_euclid(self.period_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    period_start: i64,
    spent: Nanos,
    reserved: Nanos,
}

/// Refusal: which budget, and what it has left.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub key: BudgetKey,
    pub limit: Nanos,
    pub spent: Nanos,
    pub reserved: Nanos,
    /// When the period resets (Unix ms).
    pub resets_at_ms: i64,
}

#[derive(Debug, Default)]
pub struct Budgets {
    entries: Mutex<HashMap<BudgetKey, Entry>>,
}

impl Budgets {
    pub fn new() -> Arc<Budgets> {
        Arc::new(Budgets::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<BudgetKey, Entry>> {
        // Poisoning cannot leave an entry half-updated (updates are single assignments).
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether the budget's current period must be seeded from recorded spend first.
    pub fn needs_seed(&self, key: &BudgetKey, limit: &Limit, now_ms: i64) -> bool {
        self.lock()
            .get(key)
            .is_none_or(|e| e.period_start != limit.period_start(now_ms))
    }

    /// Sets the spend recorded so far in the current period (first use, or a new period). An
    /// entry already seeded for this period keeps its running figures.
    pub fn seed(&self, key: BudgetKey, limit: &Limit, now_ms: i64, recorded_spend: Nanos) {
        let start = limit.period_start(now_ms);
        let mut entries = self.lock();
        let entry = entries.entry(key).or_insert(Entry {
            period_start: start,
            spent: recorded_spend,
            reserved: Nanos::ZERO,
        });
        if entry.period_start != start {
            // A new period: what was reserved in the old one still settles, into the new one.
            entry.period_start = start;
            entry.spent = recorded_spend;
        }
    }

    /// Reserves `cost` (a negative cost is 0) on every listed budget, or on none
    /// (all-or-nothing).
    pub fn reserve(
        self: &Arc<Self>,
        budgets: &[(BudgetKey, Limit)],
        cost: Nanos,
        now_ms: i64,
    ) -> Result<Reservation, Exceeded> {
        let cost = cost.max(Nanos::ZERO);
        let mut entries = self.lock();
        let mut least: Option<f64> = None;
        for (key, limit) in budgets {
            let start = limit.period_start(now_ms);
            let entry = entries.entry(key.clone()).or_insert(Entry {
                period_start: start,
                spent: Nanos::ZERO,
                reserved: Nanos::ZERO,
            });
            if entry.period_start != start {
                entry.period_start = start;
                entry.spent = Nanos::ZERO;
            }
            // A spent budget refuses even free requests; otherwise the worst case must fit.
            if entry.spent + entry.reserved + cost > limit.max || entry.spent >= limit.max {
                return Err(Exceeded {
                    key: key.clone(),
                    limit: limit.max,
                    spent: entry.spent,
                    reserved: entry.reserved,
                    resets_at_ms: start + limit.period_ms,
                });
            }
            if limit.max > Nanos::ZERO {
                let left =
                    (limit.max - entry.spent - entry.reserved - cost).0 as f64 / limit.max.0 as f64;
                least = Some(least.map_or(left, |l: f64| l.min(left)));
            }
        }
        for (key, _) in budgets {
            if let Some(e) = entries.get_mut(key) {
                e.reserved += cost;
            }
        }
        Ok(Reservation {
            budgets: self.clone(),
            keys: budgets.iter().map(|(k, _)| k.clone()).collect(),
            amount: cost,
            settled: false,
            remaining_share: least.map(|l| l.clamp(0.0, 1.0)),
        })
    }

    /// Spent and reserved amounts of a budget (for headers, reports and tests).
    pub fn usage(&self, key: &BudgetKey) -> Option<(Nanos, Nanos)> {
        self.lock().get(key).map(|e| (e.spent, e.reserved))
    }

    fn settle(&self, keys: &[BudgetKey], reserved: Nanos, actual: Nanos) {
        let actual = actual.max(Nanos::ZERO);
        let mut entries = self.lock();
        for key in keys {
            if let Some(e) = entries.get_mut(key) {
                e.reserved = (e.reserved - reserved).max(Nanos::ZERO);
                e.spent += actual;
            }
        }
    }
}

/// A request's hold on its budgets. `settle` with the actual cost; dropped unsettled, it
/// releases the hold and charges nothing (the caller settles every path it can).
#[derive(Debug)]
pub struct Reservation {
    budgets: Arc<Budgets>,
    keys: Vec<BudgetKey>,
    amount: Nanos,
    settled: bool,
    remaining_share: Option<f64>,
}

impl Reservation {
    pub fn amount(&self) -> Nanos {
        self.amount
    }

    /// The smallest share (0..=1) any of its budgets has left after this reservation.
    pub fn remaining_share(&self) -> Option<f64> {
        self.remaining_share
    }

    pub fn settle(mut self, actual_cost: Nanos) {
        self.budgets.settle(&self.keys, self.amount, actual_cost);
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budgets.settle(&self.keys, self.amount, Nanos::ZERO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn usd(v: f64) -> Nanos {
        Nanos::from_usd(v)
    }

    fn key(id: &str) -> BudgetKey {
        BudgetKey {
            scope: "key",
            id: id.into(),
        }
    }

    #[test]
    fn reservations_bound_concurrent_spend() {
        let b = Budgets::new();
        let limit = Limit {
            max: usd(1.0),
            period_ms: DAY,
        };
        let budgets = [(key("k"), limit)];
        // Ten in flight at 0.3 worst case: only three fit.
        let mut held = Vec::new();
        for _ in 0..10 {
            if let Ok(r) = b.reserve(&budgets, usd(0.3), 0) {
                held.push(r);
            }
        }
        assert_eq!(held.len(), 3);
        for r in held {
            r.settle(usd(0.1));
        }
        assert_eq!(
            b.usage(&key("k")),
            Some((usd(0.3), Nanos::ZERO)),
            "exact: no float drift"
        );
        // Spend is now 0.3: two more worst cases fit.
        let a = b.reserve(&budgets, usd(0.3), 0).unwrap();
        let c = b.reserve(&budgets, usd(0.3), 0).unwrap();
        assert!(b.reserve(&budgets, usd(0.3), 0).is_err());
        drop(a);
        drop(c);
        assert_eq!(
            b.usage(&key("k")).unwrap().1,
            Nanos::ZERO,
            "dropped holds are released"
        );
    }

    #[test]
    fn a_reservation_reports_the_smallest_share_left() {
        let b = Budgets::new();
        let day = |max: f64| Limit {
            max: usd(max),
            period_ms: DAY,
        };
        let budgets = [(key("k"), day(1.0)), (key("team"), day(10.0))];
        let first = b.reserve(&budgets, usd(0.25), 0).unwrap();
        assert_eq!(first.remaining_share(), Some(0.75));
        first.settle(usd(0.5));
        // The key has $0.5 spent and $0.3 held: 20% left; the team has 92%.
        let second = b.reserve(&budgets, usd(0.3), 0).unwrap();
        assert!((second.remaining_share().unwrap() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn all_or_nothing_across_scopes_and_periods_reset() {
        let b = Budgets::new();
        let roomy = Limit {
            max: usd(10.0),
            period_ms: DAY,
        };
        let tight = Limit {
            max: usd(0.5),
            period_ms: DAY,
        };
        let team = BudgetKey {
            scope: "team",
            id: "red".into(),
        };
        let both = [(key("k"), roomy), (team.clone(), tight)];
        let r = b.reserve(&both, usd(0.4), 10).unwrap();
        let err = b.reserve(&both, usd(0.4), 10).unwrap_err();
        assert_eq!(err.key, team);
        assert_eq!(err.resets_at_ms, DAY);
        assert_eq!(
            b.usage(&key("k")).unwrap().1,
            usd(0.4),
            "nothing reserved on refusal"
        );
        r.settle(usd(0.5));
        assert!(
            b.reserve(&both, usd(0.0), 20).is_err(),
            "a spent budget refuses even free calls"
        );
        assert!(b.reserve(&both, usd(0.4), DAY + 1).is_ok(), "new period");
    }

    #[test]
    fn seeding_uses_recorded_spend_once_per_period() {
        let b = Budgets::new();
        let limit = Limit {
            max: usd(1.0),
            period_ms: DAY,
        };
        assert!(b.needs_seed(&key("k"), &limit, 5));
        b.seed(key("k"), &limit, 5, usd(0.9));
        assert!(!b.needs_seed(&key("k"), &limit, 6));
        assert!(b.reserve(&[(key("k"), limit)], usd(0.2), 6).is_err());
        b.seed(key("k"), &limit, 7, Nanos::ZERO);
        assert!(
            b.reserve(&[(key("k"), limit)], usd(0.2), 7).is_err(),
            "a re-seed keeps the running spend"
        );
        assert!(b.needs_seed(&key("k"), &limit, DAY + 1));
    }

    #[test]
    fn threads_cannot_overshoot() {
        let b = Budgets::new();
        let limit = Limit {
            max: usd(5.0),
            period_ms: DAY,
        };
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(r) = b.reserve(&[(key("k"), limit)], usd(0.1), 0) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            r.settle(usd(0.1));
                        }
                    }
                });
            }
        });
        let n = admitted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, 50, "exactly the budget's worth");
        assert_eq!(b.usage(&key("k")).unwrap().0, usd(5.0));
    }
}
