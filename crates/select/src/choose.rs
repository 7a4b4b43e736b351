//! Steps 3 to 6 of a decision: filter, score by the objective, rank, and sometimes explore.
//!
//! Scores (higher is better), with `q` the predicted quality discounted by the candidate's
//! recent error rate, `r` its expected cost relative to the priciest eligible candidate and
//! `l` its expected latency relative to the slowest:
//! - `quality`: `q`;
//! - `balanced`: `q - w * r`, `w` the effective cost weight;
//! - `cost`: the cheapest first (`r`), then `q`;
//! - `latency`: the fastest first (`l`), then `q`.
//!
//! So `w = 0` picks the best predicted quality whatever it costs, and a large enough `w` picks
//! the cheapest capable candidate. Near the caller's budget limit `w` grows as
//! `w / max(remaining_share, 0.05)`.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// What the selector optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Quality,
    Cost,
    Latency,
    #[default]
    Balanced,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Quality => "quality",
            Objective::Cost => "cost",
            Objective::Latency => "latency",
            Objective::Balanced => "balanced",
        }
    }

    pub fn parse(s: &str) -> Option<Objective> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quality" => Some(Objective::Quality),
            "cost" => Some(Objective::Cost),
            "latency" => Some(Objective::Latency),
            "balanced" => Some(Objective::Balanced),
            _ => None,
        }
    }
}

/// The smallest remaining budget share the cost weight is divided by.
pub const MIN_BUDGET_SHARE: f64 = 0.05;

/// The cost weight in force: `cost_weight / max(remaining_share, 0.05)` near a budget's limit.
pub fn effective_cost_weight(cost_weight: f64, budget_remaining_share: Option<f64>) -> f64 {
    match budget_remaining_share {
        Some(share) => cost_weight / share.clamp(MIN_BUDGET_SHARE, 1.0),
        None => cost_weight,
    }
}

/// Where a candidate's predicted quality came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualitySource {
    /// The trained router (`select.router`).
    Router,
    /// The model's `quality:` in the config.
    Config,
    /// Neither: the catalog price order, a weak proxy (pricier is assumed better).
    PriceOrder,
}

/// One candidate, as the decision saw it (also its entry in the decision record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub name: String,
    /// Why it could not be chosen (unmet needs, key restriction, open breaker, a hard
    /// filter); `None` when eligible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
    /// Predicted quality before feedback, and its source.
    pub prior_quality: f64,
    pub quality_source: QualitySource,
    /// The predicted quality after feedback near this prompt.
    pub quality: f64,
    /// How much feedback near this prompt weighed in (kernel weight; 0: none).
    pub feedback_weight: f64,
    /// Expected cost of this request, in USD (`None`: price unknown, counted as the priciest).
    pub expected_cost_usd: Option<f64>,
    /// Expected time to the whole answer, in ms (`None`: not yet measured).
    pub expected_latency_ms: Option<f64>,
    /// Share of recent calls that failed.
    pub error_rate: f64,
    /// Set by [`rank`]: the score, and the 1-based rank among eligible candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
}

impl Candidate {
    pub fn new(name: impl Into<String>, prior_quality: f64, source: QualitySource) -> Candidate {
        Candidate {
            name: name.into(),
            excluded: None,
            prior_quality,
            quality_source: source,
            quality: prior_quality,
            feedback_weight: 0.0,
            expected_cost_usd: None,
            expected_latency_ms: None,
            error_rate: 0.0,
            score: None,
            rank: None,
        }
    }

    pub fn is_eligible(&self) -> bool {
        self.excluded.is_none()
    }

    /// Excludes it (the first reason stays).
    pub fn exclude(&mut self, why: impl Into<String>) {
        if self.excluded.is_none() {
            self.excluded = Some(why.into());
        }
    }
}

/// The hard filters and the objective of one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub objective: Objective,
    /// The effective cost weight (see [`effective_cost_weight`]).
    pub cost_weight: f64,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

/// Applies the hard filters (cost and latency caps) to the eligible candidates.
pub fn apply_filters(candidates: &mut [Candidate], policy: &Policy) {
    for c in candidates.iter_mut() {
        if let (Some(cap), Some(cost)) = (policy.max_cost_usd, c.expected_cost_usd) {
            if cost > cap {
                c.exclude(format!(
                    "expected cost ${cost:.6} is over max_cost_per_request_usd ${cap}"
                ));
            }
        }
        if let (Some(cap), Some(lat)) = (policy.max_latency_ms, c.expected_latency_ms) {
            if lat > cap {
                c.exclude(format!(
                    "expected latency {lat:.0} ms is over max_latency_ms {cap:.0}"
                ));
            }
        }
    }
}

/// Scores the eligible candidates and returns their indices, best first (ties keep the
/// configured order). Sets each eligible candidate's `score` and `rank`.
pub fn rank(candidates: &mut [Candidate], policy: &Policy) -> Vec<usize> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].is_eligible())
        .collect();
    let max_cost = eligible
        .iter()
        .filter_map(|&i| candidates[i].expected_cost_usd)
        .fold(0.0_f64, f64::max);
    let max_latency = eligible
        .iter()
        .filter_map(|&i| candidates[i].expected_latency_ms)
        .fold(0.0_f64, f64::max);
    let relative = |v: Option<f64>, max: f64| match v {
        // Unknown counts as the worst.
        None => 1.0,
        Some(_) if max <= 0.0 => 0.0,
        Some(v) => v / max,
    };
    // (primary, secondary) keys, higher is better.
    let mut keyed: Vec<(usize, f64, f64)> = eligible
        .iter()
        .map(|&i| {
            let c = &candidates[i];
            let q = c.quality * (1.0 - c.error_rate.clamp(0.0, 1.0));
            let r = relative(c.expected_cost_usd, max_cost);
            let l = relative(c.expected_latency_ms, max_latency);
            let (primary, secondary) = match policy.objective {
                Objective::Quality => (q, -r),
                Objective::Balanced => (q - policy.cost_weight * r, q),
                Objective::Cost => (-r, q),
                Objective::Latency => (-l, q),
            };
            (i, primary, secondary)
        })
        .collect();
    keyed.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(b.2.total_cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    for (rank, &(i, primary, _)) in keyed.iter().enumerate() {
        candidates[i].score = Some(primary);
        candidates[i].rank = Some(rank + 1);
    }
    keyed.into_iter().map(|(i, _, _)| i).collect()
}

/// Paces exploration: of every `n` decisions, at most `floor(n * share)` explore, however many
/// run at once (one atomic counter, no lock).
#[derive(Debug, Default)]
pub struct ExplorationPacer {
    decisions: AtomicU64,
}

impl ExplorationPacer {
    /// Counts one decision; true when it is one of the share that explores.
    pub fn next(&self, share: f64) -> bool {
        if share <= 0.0 {
            self.decisions.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let n = self.decisions.fetch_add(1, Ordering::Relaxed);
        let share = share.min(1.0);
        // Decision n (0-based) explores when it crosses the next whole multiple of 1/share.
        let before = (n as f64 * share).floor();
        let after = ((n + 1) as f64 * share).floor();
        after > before
    }

    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}

/// The candidate an exploring decision tries instead of `ranked[0]`: among the other eligible
/// ones, the one chosen least often so far (its estimates are the stalest), `u` in [0,1)
/// breaking ties.
pub fn exploration_pick(ranked: &[usize], times_chosen: &[u64], u: f64) -> Option<usize> {
    let others = ranked.get(1..)?;
    let least = others.iter().map(|&i| times_chosen[i]).min()?;
    let tied: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&i| times_chosen[i] == least)
        .collect();
    let at = ((u.clamp(0.0, 0.999_999) * tied.len() as f64) as usize).min(tied.len() - 1);
    Some(tied[at])
}

/// The quality a candidate without a router column or `quality:` gets from the price order:
/// spread over [0.4, 0.8], the priciest highest. `prices` holds every such candidate's price
/// (`None`: unknown, placed lowest).
pub fn price_order_quality(prices: &[Option<f64>], index: usize) -> f64 {
    let Some(own) = prices.get(index).copied() else {
        return 0.5;
    };
    let n = prices.len();
    if n <= 1 {
        return 0.6;
    }
    let key = |p: Option<f64>| p.unwrap_or(-1.0);
    let below = prices.iter().filter(|p| key(**p) < key(own)).count();
    0.4 + 0.4 * below as f64 / (n - 1) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cand(name: &str, q: f64, cost: f64, latency: f64) -> Candidate {
        let mut c = Candidate::new(name, q, QualitySource::Config);
        c.expected_cost_usd = Some(cost);
        c.expected_latency_ms = Some(latency);
        c
    }

    /// mini: cheap, fast, weakest; sonnet: middle; pro: best, priciest, slowest.
    fn three() -> Vec<Candidate> {
        vec![
            cand("mini", 0.60, 0.001, 300.0),
            cand("sonnet", 0.80, 0.006, 900.0),
            cand("pro", 0.90, 0.020, 2500.0),
        ]
    }

    fn first(policy: Policy) -> String {
        let mut c = three();
        let order = rank(&mut c, &policy);
        c[order[0]].name.clone()
    }

    fn policy(objective: Objective, w: f64) -> Policy {
        Policy {
            objective,
            cost_weight: w,
            max_cost_usd: None,
            max_latency_ms: None,
        }
    }

    #[test]
    fn each_objective() {
        assert_eq!(first(policy(Objective::Quality, 5.0)), "pro");
        assert_eq!(first(policy(Objective::Cost, 0.0)), "mini");
        assert_eq!(first(policy(Objective::Latency, 0.0)), "mini");
        // Balanced at 0.5: pro 0.9-0.5 = 0.4, sonnet 0.8-0.15 = 0.65, mini 0.6-0.025 = 0.575.
        assert_eq!(first(policy(Objective::Balanced, 0.5)), "sonnet");
    }

    #[test]
    fn cost_weight_extremes() {
        assert_eq!(first(policy(Objective::Balanced, 0.0)), "pro");
        assert_eq!(first(policy(Objective::Balanced, 100.0)), "mini");
        // Monotone: as the weight grows the chosen candidate never gets pricier.
        let mut last_cost = f64::INFINITY;
        for step in 0..200 {
            let w = step as f64 * 0.05;
            let mut c = three();
            let order = rank(&mut c, &policy(Objective::Balanced, w));
            let cost = c[order[0]].expected_cost_usd.unwrap();
            assert!(cost <= last_cost, "w {w}");
            last_cost = cost;
        }
    }

    #[test]
    fn errors_discount_quality_and_unknown_cost_counts_as_priciest() {
        let mut c = three();
        c[2].error_rate = 0.5;
        let order = rank(&mut c, &policy(Objective::Quality, 0.0));
        assert_eq!(c[order[0]].name, "sonnet");
        let mut c = three();
        c[0].expected_cost_usd = None;
        let order = rank(&mut c, &policy(Objective::Cost, 0.0));
        assert_eq!(c[order[0]].name, "sonnet");
        assert_eq!(c[order[2]].name, "mini");
    }

    #[test]
    fn filters_exclude_and_ranks_skip_the_excluded() {
        let mut c = three();
        let p = Policy {
            max_cost_usd: Some(0.01),
            max_latency_ms: Some(2000.0),
            ..policy(Objective::Quality, 0.0)
        };
        apply_filters(&mut c, &p);
        assert!(c[2]
            .excluded
            .as_deref()
            .unwrap()
            .contains("max_cost_per_request_usd"));
        let order = rank(&mut c, &p);
        assert_eq!(order.len(), 2);
        assert_eq!(c[order[0]].name, "sonnet");
        assert_eq!(c[2].rank, None);
    }

    #[test]
    fn a_budget_near_its_limit_raises_the_weight() {
        assert_eq!(effective_cost_weight(0.5, None), 0.5);
        assert_eq!(effective_cost_weight(0.5, Some(1.0)), 0.5);
        assert!((effective_cost_weight(0.5, Some(0.1)) - 5.0).abs() < 1e-12);
        assert!((effective_cost_weight(0.5, Some(0.0)) - 10.0).abs() < 1e-12);
        // Plenty left: sonnet; 5% left: mini.
        assert_eq!(
            first(policy(
                Objective::Balanced,
                effective_cost_weight(0.5, Some(0.9))
            )),
            "sonnet"
        );
        assert_eq!(
            first(policy(
                Objective::Balanced,
                effective_cost_weight(0.5, Some(0.05))
            )),
            "mini"
        );
    }

    #[test]
    fn exploration_is_paced_to_its_share() {
        let pacer = ExplorationPacer::default();
        let explored = (0..10_000).filter(|_| pacer.next(0.02)).count();
        assert_eq!(explored, 200);
        let none = ExplorationPacer::default();
        assert_eq!((0..1000).filter(|_| none.next(0.0)).count(), 0);
        // Concurrent decisions keep the bound.
        let pacer = std::sync::Arc::new(ExplorationPacer::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = pacer.clone();
                std::thread::spawn(move || (0..5000).filter(|_| p.next(0.05)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 2000);
    }

    #[test]
    fn exploration_tries_the_least_chosen_other_candidate() {
        assert_eq!(exploration_pick(&[2, 0, 1], &[5, 3, 100], 0.0), Some(1));
        assert_eq!(exploration_pick(&[2, 0, 1], &[4, 4, 100], 0.0), Some(0));
        assert_eq!(exploration_pick(&[2, 0, 1], &[4, 4, 100], 0.9), Some(1));
        assert_eq!(exploration_pick(&[2], &[0, 0, 0], 0.5), None);
    }

    #[test]
    fn price_order_is_a_weak_proxy() {
        let prices = [Some(1.0), Some(10.0), None];
        assert!((price_order_quality(&prices, 1) - 0.8).abs() < 1e-12);
        assert!((price_order_quality(&prices, 0) - 0.6).abs() < 1e-12);
        assert!((price_order_quality(&prices, 2) - 0.4).abs() < 1e-12);
    }
}
