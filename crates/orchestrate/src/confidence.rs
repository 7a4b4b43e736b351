//! The confidence of a vote, and its calibration.
//!
//! **The raw confidence** is the posterior probability that the winning answer is right under a
//! naive-Bayes model of the ballots:
//!
//! - member `i` answers correctly with probability `p_i`, its recorded accuracy shrunk toward a
//!   prior: `p_i = (acc_i · n_i + prior · k) / (n_i + k)` (`n_i` observations, strength `k`),
//!   clamped to [0.01, 0.99]; a member with no record gets the prior;
//! - a wrong ballot picks one of `W` wrong answers uniformly ([`ConfidenceParams::wrong_answers`],
//!   4 for `choice`, more for open answers), so there are `W + 1` candidate answers;
//! - under candidate `a`, ballot `i` has likelihood `p_i` if it voted `a`, `(1 - p_i) / W`
//!   otherwise; abstentions carry no evidence;
//! - samples of one member are correlated, so each of a member's `s` ballots counts with weight
//!   `1 / √s` (its log-likelihood is tempered), so `s` samples weigh `√s` ballots;
//! - with a uniform prior over the candidates, the confidence is
//!   `L(winner) / (Σ_{a voted} L(a) + (W + 1 - r) · L(unvoted))` for `r` distinct answers voted.
//!
//! One member with one sample gets exactly its accuracy; agreement between accurate members
//! drives the confidence toward 1, a split toward the winning share. The model assumes
//! independent errors, so it is overconfident when members share mistakes: that is what the
//! calibration is for.
//!
//! **Calibration**: on labelled (confidence, correct) pairs, [`reliability_table`] buckets the
//! confidences, [`expected_calibration_error`] sums the gaps between accuracy and mean confidence
//! weighted by bucket size, and a [`Calibrator`] (Platt scaling on the logit, or isotonic
//! regression by pool-adjacent-violators) is fitted on pairs and maps a raw confidence to a
//! calibrated one. It serializes, so a fitted map can be stored and loaded.

use serde::{Deserialize, Serialize};

use crate::extract::AnswerKind;
use crate::vote::{Ballot, Member, VoteOutcome};
use crate::OrchestrateError;

/// Parameters of the raw confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceParams {
    /// The accuracy assumed of a member with no record, and the shrinkage target.
    pub prior_accuracy: f64,
    /// How many observations the prior is worth (`k`).
    pub prior_strength: f64,
    /// How many equally likely wrong answers a wrong ballot picks from (`W`, at least 1).
    pub wrong_answers: f64,
}

impl Default for ConfidenceParams {
    fn default() -> Self {
        Self {
            prior_accuracy: 0.6,
            prior_strength: 20.0,
            wrong_answers: 20.0,
        }
    }
}

impl ConfidenceParams {
    /// Defaults for an answer kind: 4 wrong answers for `choice` (A to E), 20 otherwise.
    pub fn for_kind(kind: AnswerKind) -> Self {
        let wrong_answers = match kind {
            AnswerKind::Choice => 4.0,
            AnswerKind::Number | AnswerKind::Json | AnswerKind::Text => 20.0,
        };
        Self {
            wrong_answers,
            ..Self::default()
        }
    }

    /// A member's accuracy shrunk toward the prior, clamped to [0.01, 0.99].
    pub fn shrunk_accuracy(&self, member: Option<&Member>) -> f64 {
        let prior = finite_or(self.prior_accuracy, 0.6).clamp(0.0, 1.0);
        let k = finite_or(self.prior_strength, 0.0).max(0.0);
        let p = match member.and_then(|m| m.quality().map(|a| (a, m.observations))) {
            Some((acc, n)) if n > 0 || k == 0.0 => {
                let n = f64::from(n);
                let denominator = n + k;
                if denominator > 0.0 {
                    (acc.clamp(0.0, 1.0) * n + prior * k) / denominator
                } else {
                    acc.clamp(0.0, 1.0)
                }
            }
            _ => prior,
        };
        p.clamp(0.01, 0.99)
    }
}

fn finite_or(x: f64, default: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        default
    }
}

/// The raw confidence in [0, 1] that `outcome`'s winner is right (see the module docs); 0 when
/// there is no winner.
pub fn vote_confidence(
    ballots: &[Ballot],
    outcome: &VoteOutcome,
    members: &[Member],
    params: &ConfidenceParams,
) -> f64 {
    match outcome.winner.as_deref() {
        None => 0.0,
        Some(winner) => answer_confidence(ballots, winner, members, params),
    }
}

/// The raw confidence in [0, 1] that `answer` is right given `ballots` (the same model as
/// [`vote_confidence`]), for an answer chosen otherwise than by plurality: a judge's pick, an
/// aggregator's synthesis. 0 when no ballot has an answer and `answer` is not among them.
pub fn answer_confidence(
    ballots: &[Ballot],
    winner: &str,
    members: &[Member],
    params: &ConfidenceParams,
) -> f64 {
    let wrong = finite_or(params.wrong_answers, 1.0).max(1.0);
    // (weight, accuracy, answer) for each valid ballot.
    let valid: Vec<(f64, f64, &str)> = ballots
        .iter()
        .filter_map(|b| {
            let answer = b.answer.as_deref()?;
            let samples = ballots
                .iter()
                .filter(|o| o.member == b.member && o.answer.is_some())
                .count()
                .max(1);
            let member = members.iter().find(|m| m.name == b.member);
            Some((
                1.0 / (samples as f64).sqrt(),
                params.shrunk_accuracy(member),
                answer,
            ))
        })
        .collect();
    if valid.is_empty() {
        return 0.0;
    }
    let log_likelihood = |candidate: Option<&str>| -> f64 {
        valid
            .iter()
            .map(|&(w, p, answer)| {
                if Some(answer) == candidate {
                    w * p.ln()
                } else {
                    w * ((1.0 - p) / wrong).ln()
                }
            })
            .sum()
    };
    let mut voted: Vec<&str> = Vec::new();
    for &(_, _, answer) in &valid {
        if !voted.contains(&answer) {
            voted.push(answer);
        }
    }
    if !voted.contains(&winner) {
        voted.push(winner);
    }
    let unvoted = (wrong + 1.0 - voted.len() as f64).max(0.0);
    let mut terms: Vec<f64> = voted.iter().map(|a| log_likelihood(Some(a))).collect();
    if unvoted > 0.0 {
        terms.push(unvoted.ln() + log_likelihood(None));
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    let confidence = (log_likelihood(Some(winner)) - max).exp() / total;
    if confidence.is_finite() {
        confidence.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// Calibration

/// One bucket of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's confidence range, `[lower, upper)` (the last bucket includes 1).
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_confidence: f64,
    /// The share of the bucket's answers that were right.
    pub accuracy: f64,
}

/// The reliability table of (confidence, correct) pairs over `bins` equal-width buckets of
/// [0, 1]; empty buckets are left out, as are pairs whose confidence is not a finite number.
/// Confidences outside [0, 1] are clamped.
pub fn reliability_table(pairs: &[(f64, bool)], bins: usize) -> Vec<Bucket> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(c, correct) in pairs {
        if !c.is_finite() {
            continue;
        }
        let c = c.clamp(0.0, 1.0);
        let index = ((c * bins as f64) as usize).min(bins - 1);
        let slot = &mut sums[index];
        slot.0 += 1;
        slot.1 += c;
        slot.2 += usize::from(correct);
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 0)
        .map(|(i, &(count, sum, right))| Bucket {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count,
            mean_confidence: sum / count as f64,
            accuracy: right as f64 / count as f64,
        })
        .collect()
}

/// The expected calibration error over `bins` buckets: `Σ (n_b / N) · |accuracy_b −
/// mean confidence_b|`; 0 for no pairs.
pub fn expected_calibration_error(pairs: &[(f64, bool)], bins: usize) -> f64 {
    let table = reliability_table(pairs, bins);
    let total: usize = table.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    table
        .iter()
        .map(|b| b.count as f64 / total as f64 * (b.accuracy - b.mean_confidence).abs())
        .sum()
}

/// A map from a raw confidence to a calibrated one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// No recalibration.
    Identity,
    /// Platt scaling on the logit: `σ(a · logit(c) + b)`.
    Platt { a: f64, b: f64 },
    /// Isotonic regression: a non-decreasing step function through `(confidence, probability)`
    /// points, linearly interpolated between them and flat beyond the ends.
    Isotonic { points: Vec<[f64; 2]> },
}

const EPS: f64 = 1e-6;

fn logit(c: f64) -> f64 {
    let c = c.clamp(EPS, 1.0 - EPS);
    (c / (1.0 - c)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn check(pairs: &[(f64, bool)]) -> Result<(), OrchestrateError> {
    if pairs.is_empty() {
        return Err(OrchestrateError::EmptyCalibrationSet);
    }
    match pairs
        .iter()
        .find(|(c, _)| !c.is_finite() || !(0.0..=1.0).contains(c))
    {
        Some(&(c, _)) => Err(OrchestrateError::InvalidConfidence(c)),
        None => Ok(()),
    }
}

impl Calibrator {
    /// Fits Platt scaling by Newton's method with a backtracking line search, on Platt's
    /// smoothed targets (`(N₊ + 1) / (N₊ + 2)` and `1 / (N₋ + 2)`), which keeps the fit finite on
    /// separable data.
    pub fn fit_platt(pairs: &[(f64, bool)]) -> Result<Self, OrchestrateError> {
        check(pairs)?;
        let positives = pairs.iter().filter(|(_, y)| *y).count() as f64;
        let negatives = pairs.len() as f64 - positives;
        let hi = (positives + 1.0) / (positives + 2.0);
        let lo = 1.0 / (negatives + 2.0);
        let data: Vec<(f64, f64)> = pairs
            .iter()
            .map(|&(c, y)| (logit(c), if y { hi } else { lo }))
            .collect();
        let loss = |a: f64, b: f64| -> f64 {
            data.iter()
                .map(|&(x, t)| {
                    let z = a * x + b;
                    // −[t·ln σ(z) + (1−t)·ln(1−σ(z))], stable: softplus(z) − t·z.
                    let softplus = if z > 0.0 {
                        z + (-z).exp().ln_1p()
                    } else {
                        z.exp().ln_1p()
                    };
                    softplus - t * z
                })
                .sum()
        };
        let (mut a, mut b) = (1.0, 0.0);
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for &(x, t) in &data {
                let p = sigmoid(a * x + b);
                let r = p - t;
                let w = p * (1.0 - p);
                ga += r * x;
                gb += r;
                haa += w * x * x;
                hab += w * x;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-300 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-10 {
                let (na, nb) = (a - step * da, b - step * db);
                let next = loss(na, nb);
                if next.is_finite() && next <= current {
                    (a, b) = (na, nb);
                    improved = current - next > 1e-12;
                    current = next;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        Ok(Calibrator::Platt { a, b })
    }

    /// Fits isotonic regression by pool-adjacent-violators: the non-decreasing function of the
    /// confidence closest to the outcomes in squared error. Each pooled block maps its whole
    /// confidence range to its accuracy (two points, its lowest and highest confidence), so raw
    /// confidences that take few distinct values (a vote's) map exactly to their block's accuracy.
    pub fn fit_isotonic(pairs: &[(f64, bool)]) -> Result<Self, OrchestrateError> {
        check(pairs)?;
        let mut sorted: Vec<(f64, f64)> = pairs
            .iter()
            .map(|&(c, y)| (c, if y { 1.0 } else { 0.0 }))
            .collect();
        sorted.sort_by(|x, y| x.0.total_cmp(&y.0));
        // Blocks: (lowest confidence, highest confidence, sum of outcomes, count); equal
        // confidences start pooled.
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        for (c, y) in sorted {
            match blocks.last_mut() {
                Some(last) if last.1 == c => {
                    last.2 += y;
                    last.3 += 1.0;
                }
                _ => blocks.push((c, c, y, 1.0)),
            }
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (prev, last) = (blocks[n - 2], blocks[n - 1]);
                if prev.2 / prev.3 <= last.2 / last.3 {
                    break;
                }
                blocks.truncate(n - 2);
                blocks.push((prev.0, last.1, prev.2 + last.2, prev.3 + last.3));
            }
        }
        // Flat across each block's confidences, linear between blocks.
        let mut points = Vec::with_capacity(blocks.len() * 2);
        for &(lower, upper, ys, n) in &blocks {
            points.push([lower, ys / n]);
            if upper > lower {
                points.push([upper, ys / n]);
            }
        }
        Ok(Calibrator::Isotonic { points })
    }

    /// The calibrated confidence of `raw`, in [0, 1]; a non-finite `raw` gives 0.
    pub fn apply(&self, raw: f64) -> f64 {
        if !raw.is_finite() {
            return 0.0;
        }
        let raw = raw.clamp(0.0, 1.0);
        let out = match self {
            Calibrator::Identity => raw,
            Calibrator::Platt { a, b } => sigmoid(a * logit(raw) + b),
            Calibrator::Isotonic { points } => interpolate(points, raw),
        };
        if out.is_finite() {
            out.clamp(0.0, 1.0)
        } else {
            raw
        }
    }
}

/// Piecewise-linear interpolation through points sorted by x, flat beyond the ends.
fn interpolate(points: &[[f64; 2]], x: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return x;
    };
    if x <= first[0] {
        return first[1];
    }
    if x >= last[0] {
        return last[1];
    }
    for w in points.windows(2) {
        let ([x0, y0], [x1, y1]) = (w[0], w[1]);
        if x <= x1 {
            if x1 - x0 <= f64::EPSILON {
                return y1;
            }
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    last[1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::plurality;

    /// A tiny seeded generator (xorshift64*), enough for synthetic data.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: usize) -> usize {
            ((self.next_f64() * n as f64) as usize).min(n - 1)
        }
    }

    fn member(name: &str, acc: f64) -> Member {
        Member::new(name, Some(acc), 10_000)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn single_ballot_confidence_is_the_members_accuracy() {
        let ballots = vec![Ballot::new("a", 0, Some("42"))];
        let ms = vec![Member::new("a", Some(0.8), 1_000_000)];
        let out = plurality(&ballots, &ms);
        for params in [
            ConfidenceParams::default(),
            ConfidenceParams::for_kind(AnswerKind::Choice),
        ] {
            let c = vote_confidence(&ballots, &out, &ms, &params);
            assert!(close(c, 0.8, 1e-4), "{c}");
        }
    }

    #[test]
    fn shrinkage_pulls_few_observations_toward_the_prior() {
        let params = ConfidenceParams::default();
        let few = Member::new("a", Some(1.0), 2);
        let many = Member::new("a", Some(1.0), 100_000);
        let none = Member::new("a", None, 0);
        assert!(close(
            params.shrunk_accuracy(Some(&few)),
            (2.0 + 0.6 * 20.0) / 22.0,
            1e-12
        ));
        assert!(close(params.shrunk_accuracy(Some(&many)), 0.99, 1e-9));
        assert!(close(params.shrunk_accuracy(Some(&none)), 0.6, 1e-12));
        assert!(close(params.shrunk_accuracy(None), 0.6, 1e-12));
        let nan = Member::new("a", Some(f64::NAN), 50);
        assert!(close(params.shrunk_accuracy(Some(&nan)), 0.6, 1e-12));
    }

    #[test]
    fn agreement_raises_confidence_and_splits_lower_it() {
        let ms = vec![member("a", 0.7), member("b", 0.7), member("c", 0.7)];
        let params = ConfidenceParams::for_kind(AnswerKind::Choice);
        let conf = |answers: [&str; 3]| {
            let ballots: Vec<Ballot> = ["a", "b", "c"]
                .iter()
                .zip(answers)
                .map(|(m, x)| Ballot::new(*m, 0, Some(x)))
                .collect();
            let out = plurality(&ballots, &ms);
            vote_confidence(&ballots, &out, &ms, &params)
        };
        let unanimous = conf(["A", "A", "A"]);
        let majority = conf(["A", "A", "B"]);
        let split = conf(["A", "B", "C"]);
        assert!(
            unanimous > majority && majority > split,
            "{unanimous} {majority} {split}"
        );
        assert!(unanimous > 0.99);
        // All different: each answer equally likely, a third minus the unvoted candidates' share.
        assert!(split < 1.0 / 3.0 && split > 0.2, "{split}");
    }

    #[test]
    fn accurate_members_outweigh_weak_ones() {
        let ms = vec![
            member("strong", 0.95),
            member("weak1", 0.3),
            member("weak2", 0.3),
        ];
        let ballots = vec![
            Ballot::new("strong", 0, Some("7")),
            Ballot::new("weak1", 0, Some("8")),
            Ballot::new("weak2", 0, Some("9")),
        ];
        let out = plurality(&ballots, &ms);
        assert_eq!(out.winner.as_deref(), Some("7"));
        let c = vote_confidence(&ballots, &out, &ms, &ConfidenceParams::default());
        assert!(c > 0.9, "{c}");
    }

    #[test]
    fn samples_of_one_member_are_discounted() {
        let ms = vec![member("a", 0.6), member("b", 0.6), member("c", 0.6)];
        let params = ConfidenceParams::default();
        let same: Vec<Ballot> = (0..3).map(|s| Ballot::new("a", s, Some("5"))).collect();
        let distinct: Vec<Ballot> = ["a", "b", "c"]
            .iter()
            .map(|m| Ballot::new(*m, 0, Some("5")))
            .collect();
        let c_same = vote_confidence(&same, &plurality(&same, &ms), &ms, &params);
        let c_distinct = vote_confidence(&distinct, &plurality(&distinct, &ms), &ms, &params);
        assert!(c_same < c_distinct, "{c_same} {c_distinct}");
        assert!(c_same > 0.6, "{c_same}");
    }

    #[test]
    fn no_winner_gives_zero_and_abstentions_carry_no_evidence() {
        let ms = vec![member("a", 0.8), member("b", 0.8)];
        let abstain = vec![Ballot::new("a", 0, None)];
        let out = plurality(&abstain, &ms);
        assert_eq!(
            vote_confidence(&abstain, &out, &ms, &ConfidenceParams::default()),
            0.0
        );
        let one = vec![Ballot::new("a", 0, Some("1"))];
        let with_abstention = vec![Ballot::new("a", 0, Some("1")), Ballot::new("b", 0, None)];
        let p = ConfidenceParams::default();
        let c1 = vote_confidence(&one, &plurality(&one, &ms), &ms, &p);
        let c2 = vote_confidence(&with_abstention, &plurality(&with_abstention, &ms), &ms, &p);
        assert!(close(c1, c2, 1e-12));
    }

    #[test]
    fn reliability_table_and_ece_by_hand() {
        let pairs = [
            (0.05, false),
            (0.15, false),
            (0.95, true),
            (0.85, false),
            (1.0, true),
        ];
        let table = reliability_table(&pairs, 10);
        assert_eq!(table.len(), 4);
        assert_eq!(table[0].count, 1);
        assert!(close(table[0].lower, 0.0, 1e-12) && close(table[0].upper, 0.1, 1e-12));
        let last = &table[3];
        assert_eq!(last.count, 2);
        assert!(close(last.mean_confidence, 0.975, 1e-12));
        assert!(close(last.accuracy, 1.0, 1e-12));
        // ECE = (0.05 + 0.15 + 0.85 + 2·0.025) / 5.
        let ece = expected_calibration_error(&pairs, 10);
        assert!(
            close(ece, (0.05 + 0.15 + 0.85 + 0.05) / 5.0, 1e-12),
            "{ece}"
        );
        assert_eq!(expected_calibration_error(&[], 10), 0.0);
        // Non-finite confidences are skipped.
        assert_eq!(reliability_table(&[(f64::NAN, true)], 10).len(), 0);
    }

    #[test]
    fn fitting_refuses_empty_and_invalid_data() {
        assert_eq!(
            Calibrator::fit_platt(&[]),
            Err(OrchestrateError::EmptyCalibrationSet)
        );
        assert_eq!(
            Calibrator::fit_isotonic(&[(1.5, true)]),
            Err(OrchestrateError::InvalidConfidence(1.5))
        );
        assert!(Calibrator::fit_platt(&[(f64::NAN, true)]).is_err());
    }

    /// Raw confidences distorted from the true probability `q`: overconfident.
    fn synthetic(seed: u64, n: usize) -> Vec<(f64, bool)> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let q = 0.3 + 0.7 * rng.next_f64();
                let raw = sigmoid(2.5 * logit(q) + 0.8);
                (raw, rng.next_f64() < q)
            })
            .collect()
    }

    #[test]
    fn platt_recalibration_lowers_ece_on_held_out_data() {
        let train = synthetic(7, 5_000);
        let test = synthetic(8, 5_000);
        let platt = Calibrator::fit_platt(&train);
        assert!(platt.is_ok());
        let platt = platt.unwrap_or(Calibrator::Identity);
        // The distortion is σ(2.5·logit q + 0.8), so the inverse is a ≈ 0.4, b ≈ −0.32.
        if let Calibrator::Platt { a, b } = platt {
            assert!(close(a, 0.4, 0.06) && close(b, -0.32, 0.1), "a {a} b {b}");
        } else {
            panic!("not a Platt map: {platt:?}");
        }
        let raw_ece = expected_calibration_error(&test, 10);
        let recal: Vec<(f64, bool)> = test.iter().map(|&(c, y)| (platt.apply(c), y)).collect();
        let recal_ece = expected_calibration_error(&recal, 10);
        assert!(raw_ece > 0.1, "raw {raw_ece}");
        assert!(
            recal_ece < 0.03 && recal_ece < raw_ece / 3.0,
            "raw {raw_ece} recal {recal_ece}"
        );
    }

    #[test]
    fn isotonic_recalibration_lowers_ece_on_held_out_data() {
        let train = synthetic(11, 5_000);
        let test = synthetic(12, 5_000);
        let iso = Calibrator::fit_isotonic(&train).unwrap_or(Calibrator::Identity);
        let Calibrator::Isotonic { points } = &iso else {
            panic!("not an isotonic map: {iso:?}");
        };
        assert!(points
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        let raw_ece = expected_calibration_error(&test, 10);
        let recal: Vec<(f64, bool)> = test.iter().map(|&(c, y)| (iso.apply(c), y)).collect();
        let recal_ece = expected_calibration_error(&recal, 10);
        assert!(
            recal_ece < 0.04 && recal_ece < raw_ece / 3.0,
            "raw {raw_ece} recal {recal_ece}"
        );
    }

    #[test]
    fn calibrators_serialize_round_trip_and_apply_stays_in_range() {
        let maps = [
            Calibrator::Identity,
            Calibrator::Platt { a: 0.5, b: -0.2 },
            Calibrator::Isotonic {
                points: vec![[0.2, 0.1], [0.8, 0.7]],
            },
        ];
        for map in maps {
            let text = serde_json::to_string(&map).unwrap_or_default();
            assert!(text.contains("\"method\""), "{text}");
            let back: Result<Calibrator, _> = serde_json::from_str(&text);
            assert_eq!(back.ok().as_ref(), Some(&map));
            for raw in [-1.0, 0.0, 0.3, 0.5, 1.0, 2.0, f64::NAN] {
                let c = map.apply(raw);
                assert!((0.0..=1.0).contains(&c), "{map:?} {raw} → {c}");
            }
        }
        let iso = Calibrator::Isotonic {
            points: vec![[0.2, 0.1], [0.8, 0.7]],
        };
        assert!(close(iso.apply(0.5), 0.4, 1e-12));
        assert!(close(iso.apply(0.0), 0.1, 1e-12));
        assert!(close(iso.apply(1.0), 0.7, 1e-12));
    }

    /// The vote's raw confidence on simulated members whose wrong answers collide (they share
    /// three wrong answers, so the independence model is overconfident); the isotonic map fitted
    /// on one run brings a fresh run's ECE over 10 bins to at most 0.05 (issue 13's target).
    #[test]
    fn vote_confidence_recalibrated_on_simulated_members() {
        let ms = vec![member("a", 0.7), member("b", 0.6), member("c", 0.5)];
        let params = ConfidenceParams::for_kind(AnswerKind::Number);
        let run = |seed: u64, n: usize| -> Vec<(f64, bool)> {
            let mut rng = Rng::new(seed);
            (0..n)
                .map(|_| {
                    let ballots: Vec<Ballot> = ms
                        .iter()
                        .map(|m| {
                            let right = rng.next_f64() < m.accuracy.unwrap_or(0.5);
                            let answer = if right {
                                "right".to_string()
                            } else {
                                format!("wrong{}", rng.below(3))
                            };
                            Ballot::new(m.name.clone(), 0, Some(&answer))
                        })
                        .collect();
                    let out = plurality(&ballots, &ms);
                    let c = vote_confidence(&ballots, &out, &ms, &params);
                    (c, out.winner.as_deref() == Some("right"))
                })
                .collect()
        };
        let train = run(21, 6_000);
        let test = run(22, 6_000);
        let raw_ece = expected_calibration_error(&test, 10);
        let iso = Calibrator::fit_isotonic(&train).unwrap_or(Calibrator::Identity);
        let recal: Vec<(f64, bool)> = test.iter().map(|&(c, y)| (iso.apply(c), y)).collect();
        let recal_ece = expected_calibration_error(&recal, 10);
        eprintln!("vote: raw {raw_ece} recal {recal_ece}");
        assert!(raw_ece > recal_ece, "raw {raw_ece} recal {recal_ece}");
        assert!(recal_ece <= 0.05, "raw {raw_ece} recal {recal_ece}");
    }
}
