//! The order in which a model's targets are tried.
//!
//! [`order`] returns every candidate index exactly once: the chosen target first, then the
//! fallbacks. Targets whose breaker refuses traffic at `now` come after all the others (ordered
//! among themselves by the same policy), so they are reached only when everything else failed.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::health::TargetHealth;

/// How to choose among a model's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    /// Weighted random: a target is first with probability `weight / Σ weights`; the fallbacks
    /// follow in weighted random order too (sampling without replacement). Weight 0 is never
    /// first unless every weight is 0.
    #[default]
    Weighted,
    /// Fewest requests in flight; ties broken at random.
    LeastBusy,
    /// Power of two choices over the peak-EWMA cost (`latency × (in_flight + 1)`): of two random
    /// targets the cheaper goes first, the rest follow by ascending cost.
    Latency,
    /// Lowest price per million tokens first (unknown price last); equal prices in weighted
    /// random order.
    Cost,
}

impl Balance {
    pub const ALL: [Balance; 4] = [
        Balance::Weighted,
        Balance::LeastBusy,
        Balance::Latency,
        Balance::Cost,
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Weighted => "weighted",
            Balance::LeastBusy => "least_busy",
            Balance::Latency => "latency",
            Balance::Cost => "cost",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A balance name that is none of [`Balance::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBalance(pub String);

impl fmt::Display for UnknownBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown balance `{}`; expected one of: ", self.0)?;
        for (i, b) in Balance::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(b.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownBalance {}

impl FromStr for Balance {
    type Err = UnknownBalance;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Balance::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBalance(s.to_owned()))
    }
}

/// One target as the balancer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Relative share for [`Balance::Weighted`] (and among equal prices for [`Balance::Cost`]).
    pub weight: u32,
    /// Price per million tokens; `None` when unknown (sorts last under [`Balance::Cost`]).
    pub cost_per_mtok: Option<f64>,
    pub health: &'a TargetHealth,
}

/// The order in which to try `candidates` at `now`: indices into `candidates`, each exactly
/// once, the chosen target first. Targets whose breaker refuses traffic come last.
pub fn order(
    balance: Balance,
    candidates: &[Candidate<'_>],
    now: u64,
    rng: &mut impl Rng,
) -> Vec<usize> {
    let (open, refused): (Vec<usize>, Vec<usize>) =
        (0..candidates.len()).partition(|&i| candidates[i].health.allows(now));
    let mut out = arrange(balance, candidates, open, now, rng);
    out.extend(arrange(balance, candidates, refused, now, rng));
    out
}

fn arrange(
    balance: Balance,
    candidates: &[Candidate<'_>],
    mut indices: Vec<usize>,
    now: u64,
    rng: &mut impl Rng,
) -> Vec<usize> {
    if indices.len() < 2 {
        return indices;
    }
    match balance {
        Balance::Weighted => weighted(candidates, indices, rng),
        Balance::LeastBusy => {
            // Shuffle, then a stable sort: equal loads stay in random order.
            indices.shuffle(rng);
            indices.sort_by_key(|&i| candidates[i].health.in_flight());
            indices
        }
        Balance::Latency => power_of_two(candidates, indices, now, rng),
        Balance::Cost => {
            let mut indices = weighted(candidates, indices, rng);
            indices.sort_by(|&a, &b| {
                by_price(candidates[a].cost_per_mtok, candidates[b].cost_per_mtok)
            });
            indices
        }
    }
}

/// Weighted random order without replacement (Efraimidis–Spirakis: sort by `u^(1/w)`, kept in
/// log space as `ln(u) / w`). Zero weights go last, in uniform random order.
fn weighted(
    candidates: &[Candidate<'_>],
    mut indices: Vec<usize>,
    rng: &mut impl Rng,
) -> Vec<usize> {
    indices.shuffle(rng);
    let mut keyed: Vec<(f64, usize)> = indices
        .into_iter()
        .map(|i| {
            let weight = candidates[i].weight;
            let key = if weight == 0 {
                f64::NEG_INFINITY
            } else {
                // u in (0, 1], so ln(u) is finite.
                let u = 1.0 - rng.random::<f64>();
                u.ln() / f64::from(weight)
            };
            (key, i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Power of two choices: the cheaper of two distinct random targets first, then the rest by
/// ascending cost (ties in random order).
fn power_of_two(
    candidates: &[Candidate<'_>],
    mut indices: Vec<usize>,
    now: u64,
    rng: &mut impl Rng,
) -> Vec<usize> {
    // One snapshot per target, so the comparison is consistent while requests come and go.
    let load = |i: usize| {
        let health = candidates[i].health;
        let in_flight = health.in_flight();
        (health.latency_ns(now) * (in_flight as f64 + 1.0), in_flight)
    };
    let mut keyed: Vec<((f64, u64), usize)> = indices.drain(..).map(|i| (load(i), i)).collect();
    keyed.shuffle(rng);
    let cheaper = |a: &(f64, u64), b: &(f64, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));

    // The shuffle made positions 0 and 1 two distinct random picks.
    if cheaper(&keyed[1].0, &keyed[0].0) == Ordering::Less {
        keyed.swap(0, 1);
    }
    keyed[1..].sort_by(|a, b| cheaper(&a.0, &b.0));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Ascending price, unknown (or NaN) last.
fn by_price(a: Option<f64>, b: Option<f64>) -> Ordering {
    let known = |p: Option<f64>| p.filter(|p| !p.is_nan());
    match (known(a), known(b)) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::health::{HealthConfig, Outcome};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;
    const DRAWS: usize = 10_000;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x5EED)
    }

    fn targets(n: usize) -> Vec<Arc<TargetHealth>> {
        (0..n).map(|_| Arc::new(TargetHealth::default())).collect()
    }

    fn weighted_candidates<'a>(hs: &'a [Arc<TargetHealth>], weights: &[u32]) -> Vec<Candidate<'a>> {
        hs.iter()
            .zip(weights)
            .map(|(h, &weight)| Candidate {
                weight,
                cost_per_mtok: None,
                health: h,
            })
            .collect()
    }

    /// Fraction of `DRAWS` orders whose first index is each candidate.
    fn first_shares(balance: Balance, cands: &[Candidate<'_>], now: u64) -> Vec<f64> {
        let mut rng = rng();
        let mut counts = vec![0usize; cands.len()];
        for _ in 0..DRAWS {
            counts[order(balance, cands, now, &mut rng)[0]] += 1;
        }
        counts.iter().map(|&c| c as f64 / DRAWS as f64).collect()
    }

    fn assert_near(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= 0.03,
            "{what}: {actual:.3} not within 0.03 of {expected:.3}"
        );
    }

    fn open_breaker(h: &Arc<TargetHealth>) {
        for _ in 0..5 {
            h.begin(0).unwrap().finish(0, Outcome::Failure);
        }
    }

    #[test]
    fn parses_and_names_every_policy() {
        for b in Balance::ALL {
            assert_eq!(b.as_str().parse::<Balance>(), Ok(b));
            assert_eq!(b.to_string(), b.as_str());
        }
        assert_eq!("least_busy".parse(), Ok(Balance::LeastBusy));
        assert_eq!(Balance::default(), Balance::Weighted);
        let err = "fastest".parse::<Balance>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown balance `fastest`; expected one of: weighted, least_busy, latency, cost"
        );
        assert!(
            "Weighted".parse::<Balance>().is_err(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn every_order_is_a_permutation() {
        let mut rng = rng();
        for n in 0..7 {
            let hs = targets(n);
            for (i, h) in hs.iter().enumerate() {
                if i % 3 == 1 {
                    open_breaker(h);
                }
                if i % 2 == 0 {
                    h.record_latency(0, (i as u64 + 1) * MS);
                }
            }
            let cands: Vec<Candidate<'_>> = hs
                .iter()
                .enumerate()
                .map(|(i, h)| Candidate {
                    weight: (i % 3) as u32,
                    cost_per_mtok: (i % 2 == 0).then_some(i as f64),
                    health: h,
                })
                .collect();
            for b in Balance::ALL {
                for _ in 0..50 {
                    let mut o = order(b, &cands, MS, &mut rng);
                    o.sort_unstable();
                    assert_eq!(o, (0..n).collect::<Vec<_>>(), "{b} with {n} candidates");
                }
            }
        }
    }

    #[test]
    fn weighted_three_to_one() {
        let hs = targets(2);
        let cands = weighted_candidates(&hs, &[3, 1]);
        let shares = first_shares(Balance::Weighted, &cands, 0);
        assert_near(shares[0], 0.75, "weight 3 of 4");
    }

    #[test]
    fn weighted_equal_weights_are_uniform() {
        let hs = targets(3);
        let cands = weighted_candidates(&hs, &[5, 5, 5]);
        for share in first_shares(Balance::Weighted, &cands, 0) {
            assert_near(share, 1.0 / 3.0, "equal weights");
        }
    }

    #[test]
    fn weighted_fallbacks_are_sampled_without_replacement() {
        // Weights 2:1:1. P(first = 0) = 1/2; P(order = 1, 0, 2) = 1/4 · 2/3 = 1/6;
        // P(order = 1, 2, 0) = 1/4 · 1/3 = 1/12.
        let hs = targets(3);
        let cands = weighted_candidates(&hs, &[2, 1, 1]);
        let mut rng = rng();
        let (mut first0, mut seq102, mut seq120) = (0, 0, 0);
        for _ in 0..DRAWS {
            let o = order(Balance::Weighted, &cands, 0, &mut rng);
            first0 += usize::from(o[0] == 0);
            seq102 += usize::from(o == [1, 0, 2]);
            seq120 += usize::from(o == [1, 2, 0]);
        }
        assert_near(first0 as f64 / DRAWS as f64, 0.5, "first = 0");
        assert_near(seq102 as f64 / DRAWS as f64, 1.0 / 6.0, "1, 0, 2");
        assert_near(seq120 as f64 / DRAWS as f64, 1.0 / 12.0, "1, 2, 0");
    }

    #[test]
    fn weight_zero_is_never_first_unless_all_are_zero() {
        let hs = targets(3);
        let cands = weighted_candidates(&hs, &[0, 1, 0]);
        let mut rng = rng();
        for _ in 0..1000 {
            assert_eq!(order(Balance::Weighted, &cands, 0, &mut rng)[0], 1);
        }
        // The zero weights still follow as fallbacks, in random order.
        let shares_second = {
            let mut zero_second = 0;
            for _ in 0..DRAWS {
                zero_second += usize::from(order(Balance::Weighted, &cands, 0, &mut rng)[1] == 0);
            }
            zero_second as f64 / DRAWS as f64
        };
        assert_near(shares_second, 0.5, "zero weights among themselves");

        let cands = weighted_candidates(&hs, &[0, 0, 0]);
        for share in first_shares(Balance::Weighted, &cands, 0) {
            assert_near(share, 1.0 / 3.0, "all zero");
        }
    }

    #[test]
    fn least_busy_takes_the_fewest_in_flight() {
        let hs = targets(3);
        let _busy: Vec<_> = (0..2).map(|_| hs[0].begin(0).unwrap()).collect();
        let _one = hs[2].begin(0).unwrap();
        let cands = weighted_candidates(&hs, &[1, 1, 1]);
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(order(Balance::LeastBusy, &cands, 0, &mut rng), [1, 2, 0]);
        }
    }

    #[test]
    fn least_busy_breaks_ties_at_random() {
        let hs = targets(3);
        let _busy: Vec<_> = (0..5).map(|_| hs[2].begin(0).unwrap()).collect();
        let cands = weighted_candidates(&hs, &[1, 1, 1]);
        let shares = first_shares(Balance::LeastBusy, &cands, 0);
        assert_near(shares[0], 0.5, "tie");
        assert_near(shares[1], 0.5, "tie");
        assert_eq!(shares[2], 0.0);
    }

    #[test]
    fn latency_always_picks_the_faster_of_two() {
        let hs = targets(2);
        hs[0].record_latency(0, 100 * MS);
        hs[1].record_latency(0, 10 * MS);
        let cands = weighted_candidates(&hs, &[1, 1]);
        let mut rng = rng();
        for _ in 0..1000 {
            assert_eq!(order(Balance::Latency, &cands, 0, &mut rng), [1, 0]);
        }
    }

    #[test]
    fn latency_power_of_two_choices() {
        // Among three, the fastest is first whenever it is one of the two picks (2/3); each
        // slow target wins only when paired with the other slow one and is the random pick.
        let hs = targets(3);
        hs[0].record_latency(0, 100 * MS);
        hs[1].record_latency(0, 10 * MS);
        hs[2].record_latency(0, 100 * MS);
        let cands = weighted_candidates(&hs, &[1, 1, 1]);
        let shares = first_shares(Balance::Latency, &cands, 0);
        assert_near(shares[1], 2.0 / 3.0, "fastest");
        assert_near(shares[0], 1.0 / 6.0, "slow");
        assert_near(shares[2], 1.0 / 6.0, "slow");
        // The fallbacks are by ascending cost: the fast one is never last.
        let mut rng = rng();
        for _ in 0..1000 {
            let o = order(Balance::Latency, &cands, 0, &mut rng);
            assert_ne!(o[2], 1, "{o:?}");
        }
    }

    #[test]
    fn latency_prefers_the_faster_target_in_most_picks() {
        let hs = targets(5);
        for (i, h) in hs.iter().enumerate() {
            h.record_latency(0, if i == 3 { 5 * MS } else { 50 * MS });
        }
        let cands = weighted_candidates(&hs, &[1; 5]);
        let shares = first_shares(Balance::Latency, &cands, 0);
        // P(fast among two of five) = 1 - C(4,2)/C(5,2) = 0.4; each other ≈ 0.15.
        assert_near(shares[3], 0.4, "fast");
        assert!(shares
            .iter()
            .enumerate()
            .all(|(i, &s)| i == 3 || s < shares[3]));
    }

    #[test]
    fn latency_accounts_for_load() {
        let hs = targets(2);
        hs[0].record_latency(0, 100 * MS);
        hs[1].record_latency(0, 10 * MS);
        // 10 ms × (20 + 1) = 210 ms > 100 ms.
        let _busy: Vec<_> = (0..20).map(|_| hs[1].begin(0).unwrap()).collect();
        let cands = weighted_candidates(&hs, &[1, 1]);
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(order(Balance::Latency, &cands, 0, &mut rng), [0, 1]);
        }
    }

    #[test]
    fn latency_tries_unmeasured_targets_and_breaks_ties_by_load() {
        let hs = targets(2);
        hs[0].record_latency(0, 10 * MS);
        let cands = weighted_candidates(&hs, &[1, 1]);
        let mut rng = rng();
        assert_eq!(
            order(Balance::Latency, &cands, 0, &mut rng),
            [1, 0],
            "default latency 0"
        );

        // Both unmeasured (cost 0): the one with fewer in flight goes first.
        let hs = targets(2);
        let _g = hs[0].begin(0).unwrap();
        let cands = weighted_candidates(&hs, &[1, 1]);
        for _ in 0..100 {
            assert_eq!(order(Balance::Latency, &cands, 0, &mut rng), [1, 0]);
        }

        // A pessimistic default makes unmeasured targets wait their turn.
        let slow_default = HealthConfig {
            default_latency: std::time::Duration::from_secs(1),
            ..HealthConfig::default()
        };
        let hs = [
            Arc::new(TargetHealth::new(slow_default)),
            Arc::new(TargetHealth::new(slow_default)),
        ];
        hs[0].record_latency(0, 10 * MS);
        let cands = weighted_candidates(&hs, &[1, 1]);
        assert_eq!(order(Balance::Latency, &cands, 0, &mut rng), [0, 1]);
    }

    #[test]
    fn cost_sorts_by_price_unknown_last() {
        let hs = targets(4);
        let prices = [Some(3.0), None, Some(0.5), Some(2.0)];
        let cands: Vec<_> = hs
            .iter()
            .zip(prices)
            .map(|(h, cost_per_mtok)| Candidate {
                weight: 1,
                cost_per_mtok,
                health: h,
            })
            .collect();
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(order(Balance::Cost, &cands, 0, &mut rng), [2, 3, 0, 1]);
        }
    }

    #[test]
    fn cost_breaks_equal_prices_by_weight() {
        let hs = targets(3);
        let cands = vec![
            Candidate {
                weight: 3,
                cost_per_mtok: Some(1.0),
                health: &hs[0],
            },
            Candidate {
                weight: 1,
                cost_per_mtok: Some(1.0),
                health: &hs[1],
            },
            Candidate {
                weight: 100,
                cost_per_mtok: Some(9.0),
                health: &hs[2],
            },
        ];
        let shares = first_shares(Balance::Cost, &cands, 0);
        assert_near(shares[0], 0.75, "weight 3 of 4 at equal price");
        assert_eq!(shares[2], 0.0, "the expensive one is never first");
    }

    #[test]
    fn an_open_breaker_sorts_last_under_every_policy() {
        let hs = targets(3);
        // Target 0 is the best by every measure...
        hs[0].record_latency(0, MS);
        hs[1].record_latency(0, 50 * MS);
        hs[2].record_latency(0, 50 * MS);
        let _busy = [hs[1].begin(0).unwrap(), hs[2].begin(0).unwrap()];
        let prices = [Some(0.1), Some(1.0), Some(2.0)];
        let weights = [1, 0, 0];
        let cands: Vec<_> = (0..3)
            .map(|i| Candidate {
                weight: weights[i],
                cost_per_mtok: prices[i],
                health: &hs[i],
            })
            .collect();
        let mut rng = rng();
        for b in Balance::ALL {
            for _ in 0..200 {
                let o = order(b, &cands, MS, &mut rng);
                if b == Balance::Latency {
                    // Power of two choices: first only when drawn, never last.
                    assert_ne!(o[2], 0, "{b} before opening");
                } else {
                    assert_eq!(o[0], 0, "{b} before opening");
                }
            }
        }
        // ...until its breaker opens.
        for _ in 0..5 {
            hs[0].begin(MS).unwrap().finish(MS, Outcome::Failure);
        }
        for b in Balance::ALL {
            for _ in 0..200 {
                assert_eq!(order(b, &cands, 2 * MS, &mut rng)[2], 0, "{b} while open");
            }
        }
        // After the cooldown it may take a probe, so it competes again.
        let cooled = MS + 30_000 * MS;
        assert_eq!(order(Balance::Cost, &cands, cooled, &mut rng)[0], 0);
        // While its single probe is in flight it is refused again.
        let probe = hs[0].begin(cooled).unwrap();
        assert_eq!(order(Balance::Cost, &cands, cooled, &mut rng)[2], 0);
        drop(probe);
    }

    #[test]
    fn refused_targets_are_ordered_among_themselves_by_the_policy() {
        let hs = targets(4);
        for h in &hs[..3] {
            open_breaker(h);
        }
        let prices = [Some(3.0), Some(1.0), Some(2.0), Some(10.0)];
        let cands: Vec<_> = hs
            .iter()
            .zip(prices)
            .map(|(h, cost_per_mtok)| Candidate {
                weight: 1,
                cost_per_mtok,
                health: h,
            })
            .collect();
        let mut rng = rng();
        assert_eq!(order(Balance::Cost, &cands, 0, &mut rng), [3, 1, 2, 0]);
    }

    #[test]
    fn single_and_empty() {
        let mut rng = rng();
        let hs = targets(1);
        let cands = weighted_candidates(&hs, &[0]);
        for b in Balance::ALL {
            assert_eq!(order(b, &cands, 0, &mut rng), [0]);
            assert!(order(b, &[], 0, &mut rng).is_empty());
        }
    }

    #[test]
    fn nan_price_counts_as_unknown() {
        assert_eq!(by_price(Some(f64::NAN), Some(1.0)), Ordering::Greater);
        assert_eq!(by_price(Some(f64::NAN), None), Ordering::Equal);
        assert_eq!(by_price(Some(0.0), Some(1.0)), Ordering::Less);
    }
}
