//! Per-entry similarity thresholds learned from verified outcomes, in the spirit of vCache
//! (Schroeder et al., 2025: per-prompt thresholds with a user-set error bound).
//!
//! Every outcome is a similarity at which an entry was served (or would have been) and whether
//! its answer was right for that question. An entry serves from the lowest observed similarity
//! at which the one-sided 95% Wilson upper bound of its error rate, over the outcomes at or
//! above it, stays under `delta`; never at or below a similarity where it was wrong; and at the
//! global threshold while it lacks that evidence.

/// Outcomes kept per entry.
const MAX_OUTCOMES: usize = 256;
/// One-sided 99% normal quantile for the Wilson bound. 99% rather than 95%: the floor is
/// tested again after every outcome, and each test is one more chance to open on a lucky run.
const Z: f64 = 2.326;

/// The learned threshold of one entry.
#[derive(Debug, Default, Clone)]
pub struct Outcomes {
    /// (similarity, the cached answer was right).
    seen: Vec<(f32, bool)>,
}

impl Outcomes {
    pub fn record(&mut self, similarity: f32, correct: bool) {
        if self.seen.len() == MAX_OUTCOMES {
            self.seen.remove(0);
        }
        self.seen.push((similarity, correct));
    }

    /// The similarity this entry needs. Evidence can lower it below the global threshold: to
    /// the lowest observed similarity `t` such that the outcomes at or above `t` bound the
    /// error rate under `delta` (Wilson upper bound). A wrong answer raises it above the
    /// similarity where it happened, and nothing lowers it back to there.
    pub fn threshold(&self, global: f32, delta: f64) -> f32 {
        let worst_wrong = self
            .seen
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| *s)
            .fold(f32::NEG_INFINITY, f32::max);
        let floor = worst_wrong + 1e-4;
        let mut candidates: Vec<f32> = self.seen.iter().map(|(s, _)| *s).collect();
        candidates.sort_by(|a, b| a.total_cmp(b));
        for t in candidates {
            if t < floor {
                continue;
            }
            let (n, wrong) = self
                .seen
                .iter()
                .filter(|(s, _)| *s >= t)
                .fold((0u32, 0u32), |(n, w), (_, ok)| (n + 1, w + u32::from(!ok)));
            if wilson_upper(wrong, n) <= delta {
                return t.min(global.max(floor));
            }
        }
        global.max(floor)
    }
}

/// Outcomes pooled over many entries (the gateway keeps one pool per model): the bound that
/// holds while entries lack evidence of their own. Its floor is the lowest similarity at which
/// the pooled error rate's Wilson upper bound, over the outcomes at or above it, is under
/// `delta` (see `compute`). Without such a similarity (no evidence yet, or evidence that
/// nothing it has seen is safe enough) the floor is `+inf`: no semantic hit is served until the
/// evidence says it may. Entries serve at the higher of their own threshold and this floor. A
/// `delta` of 1 bounds nothing: the floor is `-inf`.
///
/// The evidence comes from the judge: sampled re-checks of served hits, and the exploring judge,
/// which compares a refused candidate's cached answer with the fresh answer fetched for that
/// request anyway.
#[derive(Debug, Clone)]
pub struct Pool {
    seen: std::collections::VecDeque<(f32, bool)>,
    capacity: usize,
    delta: f64,
    floor: f32,
    since_update: usize,
}

/// Outcomes a pool keeps (the most recent), in the gateway and in the evaluation.
pub const POOL_CAPACITY: usize = 4096;

/// Outcomes at or above a similarity before the pool may serve from it, however loose the
/// bound: with fewer, one unlucky hit is a large share of what is served.
const POOL_MIN_EVIDENCE: u32 = 30;
/// Outcomes between two recomputations of the floor once the pool holds many.
const POOL_UPDATE_EVERY: usize = 16;
/// Below this many outcomes the floor is recomputed on every one (it is cheap, and the first
/// finite floor should not wait).
const POOL_UPDATE_ALWAYS_BELOW: usize = 512;

impl Pool {
    pub fn new(capacity: usize, delta: f64) -> Pool {
        Pool {
            seen: std::collections::VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            delta,
            floor: if delta >= 1.0 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            },
            since_update: 0,
        }
    }

    /// Whether the pool constrains anything (`delta` < 1).
    pub fn bounded(&self) -> bool {
        self.delta < 1.0
    }

    pub fn record(&mut self, similarity: f32, correct: bool) {
        if self.seen.len() == self.capacity {
            self.seen.pop_front();
        }
        self.seen.push_back((similarity, correct));
        self.since_update += 1;
        if self.since_update >= POOL_UPDATE_EVERY || self.seen.len() < POOL_UPDATE_ALWAYS_BELOW {
            self.since_update = 0;
            self.floor = self.compute();
        }
    }

    /// The similarity every entry needs at least: `+inf` while the evidence allows nothing,
    /// `-inf` when unbounded.
    pub fn floor(&self) -> f32 {
        self.floor
    }

    /// Outcomes held, and how many of them were wrong.
    pub fn counts(&self) -> (usize, usize) {
        let wrong = self.seen.iter().filter(|(_, ok)| !ok).count();
        (self.seen.len(), wrong)
    }

    /// The floor: the lowest similarity `t` such that the Wilson upper bound of the error rate
    /// over the outcomes at or above `t` (what a floor at `t` serves) is under `delta`, with at
    /// least `POOL_MIN_EVIDENCE` outcomes there. Choosing the lowest of many passing
    /// similarities favours lucky ones; the 99% quantile leaves the margin for that (measured on
    /// a known error curve in `sim::Calibration`).
    fn compute(&self) -> f32 {
        if !self.bounded() {
            return f32::NEG_INFINITY;
        }
        let mut sorted: Vec<(f32, bool)> = self.seen.iter().copied().collect();
        sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut n, mut wrong) = (0u32, 0u32);
        let mut best = f32::INFINITY;
        for (i, (s, ok)) in sorted.iter().enumerate() {
            n += 1;
            wrong += u32::from(!ok);
            // A threshold at `s` serves every outcome at `s`: judge it after the last of them.
            let last_of_ties = sorted.get(i + 1).is_none_or(|(next, _)| next < s);
            if last_of_ties && n >= POOL_MIN_EVIDENCE && wilson_upper(wrong, n) <= self.delta {
                best = *s;
            }
        }
        best
    }
}

/// Upper bound of a binomial proportion (Wilson score interval, one-sided 99%).
pub fn wilson_upper(failures: u32, n: u32) -> f64 {
    wilson_interval(failures, n, Z).1
}

/// The Wilson score interval of a binomial proportion for the normal quantile `z`.
pub fn wilson_interval(failures: u32, n: u32, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = f64::from(n);
    let p = f64::from(failures) / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    (
        ((centre - margin) / scale).max(0.0),
        ((centre + margin) / scale).min(1.0),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn thresholds_start_global_and_learn_from_outcomes() {
        let mut o = Outcomes::default();
        assert_eq!(o.threshold(0.9, 0.05), 0.9);
        // A wrong answer at 0.93 raises this entry above it.
        o.record(0.93, false);
        assert!(o.threshold(0.9, 0.05) > 0.93);
        // Many right answers at 0.95 and above let it serve from 0.95 (still above the wrong one).
        let mut o2 = o.clone();
        for i in 0..200 {
            o2.record(0.95 + (i % 5) as f32 * 0.01, true);
        }
        let t = o2.threshold(0.9, 0.05);
        assert!((0.93..=0.95).contains(&t), "{t}");
        // Many right answers at 0.85 lower a clean entry's threshold below the global one.
        let mut clean = Outcomes::default();
        for _ in 0..200 {
            clean.record(0.85, true);
        }
        assert_eq!(clean.threshold(0.9, 0.05), 0.85);
        // A few are not enough evidence.
        let mut few = Outcomes::default();
        for _ in 0..5 {
            few.record(0.85, true);
        }
        assert_eq!(few.threshold(0.9, 0.05), 0.9);
    }

    #[test]
    fn evidence_of_correct_answers_never_makes_a_clean_entry_stricter() {
        let mut o = Outcomes::default();
        for _ in 0..300 {
            o.record(0.97, true);
        }
        assert_eq!(o.threshold(0.9, 0.05), 0.9);
    }

    #[test]
    fn the_pool_bounds_the_error_rate_of_what_it_serves() {
        let mut pool = Pool::new(1000, 0.05);
        assert_eq!(pool.floor(), f32::INFINITY, "no evidence, no hits");
        // Wrong below 0.95, right above: the floor settles at the right ones.
        for i in 0..400 {
            let s = 0.90 + (i % 10) as f32 * 0.01;
            pool.record(s, s >= 0.95);
        }
        let f = pool.floor();
        assert!((0.95..=0.96).contains(&f), "{f}");
        assert_eq!(pool.counts(), (400, 200));
        // Everything wrong: nothing is served, however similar.
        let mut bad = Pool::new(1000, 0.05);
        for _ in 0..100 {
            bad.record(0.99, false);
        }
        assert_eq!(bad.floor(), f32::INFINITY);
    }

    #[test]
    fn the_pool_needs_enough_clean_outcomes_before_it_serves() {
        // With no failure, the Wilson bound falls under 0.02 after 266 outcomes.
        let mut pool = Pool::new(1000, 0.02);
        for _ in 0..265 {
            pool.record(0.97, true);
        }
        assert_eq!(pool.floor(), f32::INFINITY);
        pool.record(0.97, true);
        assert_eq!(pool.floor(), 0.97);
        // One wrong answer at 0.96 does not move it; many push it up past them.
        pool.record(0.96, false);
        assert_eq!(pool.floor(), 0.97);
        for _ in 0..30 {
            pool.record(0.98, false);
        }
        assert_eq!(pool.floor(), f32::INFINITY, "{}", pool.floor());
        // However loose the bound, a handful of outcomes is not evidence.
        let mut loose = Pool::new(1000, 0.5);
        for _ in 0..29 {
            loose.record(0.99, true);
        }
        assert_eq!(loose.floor(), f32::INFINITY);
        loose.record(0.99, true);
        assert_eq!(loose.floor(), 0.99);
    }

    #[test]
    fn the_floor_answers_for_everything_it_serves() {
        // Clean at 0.99, a bad band at 0.97 (half wrong), clean again at 0.96. A floor at 0.96
        // serves all three: 10 wrong of 570, under 0.05 even at its upper bound. With fewer
        // clean answers below the band, the floor stays above it.
        let mut pool = Pool::new(4096, 0.05);
        for _ in 0..150 {
            pool.record(0.99, true);
        }
        for i in 0..20 {
            pool.record(0.97, i % 2 == 0);
        }
        assert_eq!(pool.floor(), 0.99);
        for _ in 0..400 {
            pool.record(0.96, true);
        }
        assert!(wilson_upper(10, 570) <= 0.05);
        assert_eq!(pool.floor(), 0.96);
    }

    #[test]
    fn a_bound_of_one_bounds_nothing() {
        let mut pool = Pool::new(10, 1.0);
        assert!(!pool.bounded());
        assert_eq!(pool.floor(), f32::NEG_INFINITY);
        pool.record(0.5, false);
        assert_eq!(pool.floor(), f32::NEG_INFINITY);
    }

    #[test]
    fn the_pool_keeps_the_most_recent_outcomes() {
        let mut pool = Pool::new(200, 0.05);
        for _ in 0..200 {
            pool.record(0.99, false);
        }
        assert_eq!(pool.floor(), f32::INFINITY);
        // The evidence changes: after a full window of right answers the old ones are gone.
        for _ in 0..200 {
            pool.record(0.99, true);
        }
        assert_eq!(pool.counts(), (200, 0));
        assert_eq!(pool.floor(), 0.99);
    }

    #[test]
    fn wilson_bound() {
        assert!(wilson_upper(0, 266) < 0.02);
        assert!(wilson_upper(0, 265) > 0.02);
        assert!(wilson_upper(0, 5) > 0.3);
        assert!(wilson_upper(10, 100) > 0.1);
        // One wrong of one says little: the 95% interval spans most of [0, 1].
        let (lo, hi) = wilson_interval(1, 1, 1.96);
        assert!(lo < 0.3 && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson_interval(110, 469, 1.96);
        assert!(lo > 0.19 && hi < 0.28, "{lo} {hi}");
    }
}
