//! RouteLLM-style evaluation of a weak/strong router: the quality-versus-strong-share curve,
//! APGR, CPT(50%) and CPT(80%), and the baselines (random, always-weak, always-strong, cosine
//! kNN with k = 10, 20, 50, and a per-subject prior when the subject is known).
//!
//! # Definitions
//!
//! A router gives each of the `n` test prompts a score, "how much it gains from the strong
//! model". Routing the share `s = i/n` of the highest-scored prompts to the strong model and the
//! rest to the weak one gives the quality `q(s)`, the mean correctness of the answers served.
//! Prompts with equal scores are one block: `q` grows linearly through a block, which is the
//! expected quality over a random order within it (so a constant score is random routing, in
//! exact expectation). `q` is thus exact at each of the `n + 1` steps `i/n` and linear in
//! between.
//!
//! - `PGR(s) = (q(s) − q_weak) / (q_strong − q_weak)`, with `q_weak = q(0)`, `q_strong = q(1)`.
//! - `APGR` is the area under `PGR` over `s ∈ [0, 1]`, computed exactly on the piecewise-linear
//!   curve (the trapezoid rule over the `n + 1` steps).
//! - `CPT(x)` is the smallest strong share `s` with `PGR(s) ≥ x` on that curve (interpolated
//!   within a step).
//! - **random**: all scores equal. Its curve is the straight line from `q_weak` to `q_strong`,
//!   so its APGR is exactly 0.5, CPT(50%) 0.5 and CPT(80%) 0.8 (the expectation over random
//!   orders, not one sampled order).
//! - **always_weak / always_strong** are single-point routers: they operate at one share (0 or
//!   1). Under a strong-call budget `s` a single-point router achieves its `PGR` only when its
//!   share fits the budget and 0 otherwise, so its APGR (the area under that step) is 0 for both;
//!   always-strong reaches any PGR at CPT = 1.0, always-weak never reaches one (`null`). Their
//!   objects add `strong_share`, `quality` and `pgr`.
//! - **kNN-k**: each test prompt's `k` most cosine-similar training prompts (dot products of the
//!   L2-normalized embeddings); the score is the mean of `strong_correct − weak_correct` over
//!   them (equivalently the strong model's minus the weak model's success rate among the
//!   neighbours).
//! - **subject_prior**: the training prompts' mean `strong_correct − weak_correct` for the test
//!   prompt's subject (the overall mean for a subject not seen in training). It knows the
//!   subject, which a real router is never told: a reference, not a competitor.

use crate::error::SelectError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// APGR and the strong shares needed to reach 50% and 80% of the quality gap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub apgr: f64,
    /// `None` (JSON `null`) when the router never reaches the level.
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    /// Single-point routers only: the strong share they use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_share: Option<f64>,
    /// Single-point routers only: their quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// Single-point routers only: their PGR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgr: Option<f64>,
}

/// The baselines of a report, in a fixed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    pub random: Metrics,
    pub always_weak: Metrics,
    pub always_strong: Metrics,
    pub knn10: Metrics,
    pub knn20: Metrics,
    pub knn50: Metrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prior: Option<Metrics>,
}

/// The evaluation report (`plexus route eval --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub router: Metrics,
    pub baselines: Baselines,
    /// `[strong_share, quality]` of the router at every 1% of strong share.
    pub curve: Vec<[f64; 2]>,
    /// Test prompts (rows with both labels).
    pub n_test: usize,
    /// Training prompts the baselines learned from.
    pub n_train: usize,
    pub q_weak: f64,
    pub q_strong: f64,
}

/// Quality at each step `i/n`, `i = 0..=n` (length `n + 1`), routing the highest scores to the
/// strong model; ties form blocks through which quality grows linearly (see the module doc).
pub fn quality_curve(scores: &[f64], weak: &[bool], strong: &[bool]) -> Vec<f64> {
    let n = scores.len().min(weak.len()).min(strong.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let w = |i: usize| if weak[i] { 1.0 } else { 0.0 };
    let s = |i: usize| if strong[i] { 1.0 } else { 0.0 };
    let base: f64 = (0..n).map(w).sum();
    let mut curve = Vec::with_capacity(n + 1);
    curve.push(base);
    let mut acc = base;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && scores[order[j]].total_cmp(&scores[order[i]]).is_eq() {
            j += 1;
        }
        let gain: f64 = order[i..j].iter().map(|&k| s(k) - w(k)).sum();
        let per = gain / (j - i) as f64;
        for _ in i..j {
            acc += per;
            curve.push(acc);
        }
        i = j;
    }
    let denom = n.max(1) as f64;
    curve.iter().map(|q| q / denom).collect()
}

/// APGR and CPTs of a quality curve (`n + 1` steps) whose ends are `q_weak` and `q_strong`.
pub fn curve_metrics(curve: &[f64], q_weak: f64, q_strong: f64) -> Metrics {
    let gap = q_strong - q_weak;
    let n = curve.len().saturating_sub(1).max(1) as f64;
    let pgr: Vec<f64> = curve.iter().map(|q| (q - q_weak) / gap).collect();
    let apgr = pgr.windows(2).map(|p| (p[0] + p[1]) / 2.0).sum::<f64>() / n;
    Metrics {
        apgr,
        cpt50: cpt(&pgr, 0.5),
        cpt80: cpt(&pgr, 0.8),
        strong_share: None,
        quality: None,
        pgr: None,
    }
}

/// The smallest share at which the piecewise-linear PGR curve (`n + 1` steps) reaches `x`.
pub fn cpt(pgr: &[f64], x: f64) -> Option<f64> {
    let n = pgr.len().saturating_sub(1).max(1) as f64;
    let first = pgr.iter().position(|p| *p >= x)?;
    if first == 0 {
        return Some(0.0);
    }
    let (a, b) = (pgr[first - 1], pgr[first]);
    let frac = if b > a { (x - a) / (b - a) } else { 1.0 };
    Some(((first - 1) as f64 + frac) / n)
}

/// The quality gap the PGR divides by; an error when there is none.
fn ends(weak: &[bool], strong: &[bool]) -> Result<(f64, f64), SelectError> {
    if weak.is_empty() || weak.len() != strong.len() {
        return Err(SelectError::Eval(format!(
            "need test prompts with both labels (weak {}, strong {})",
            weak.len(),
            strong.len()
        )));
    }
    let n = weak.len() as f64;
    let qw = weak.iter().filter(|c| **c).count() as f64 / n;
    let qs = strong.iter().filter(|c| **c).count() as f64 / n;
    if (qs - qw).abs() < 1e-12 {
        return Err(SelectError::Eval(format!(
            "the weak and strong models have the same quality ({qw:.4}) on the test prompts: \
             PGR is undefined"
        )));
    }
    Ok((qw, qs))
}

/// APGR and CPTs of a router's scores on test prompts with both labels.
pub fn evaluate(scores: &[f64], weak: &[bool], strong: &[bool]) -> Result<Metrics, SelectError> {
    let (qw, qs) = ends(weak, strong)?;
    if scores.len() != weak.len() {
        return Err(SelectError::Eval(format!(
            "{} scores for {} test prompts",
            scores.len(),
            weak.len()
        )));
    }
    Ok(curve_metrics(&quality_curve(scores, weak, strong), qw, qs))
}

/// A single-point router at `share` (0: always weak, 1: always strong); see the module doc.
pub fn single_point(share: f64, quality: f64, q_weak: f64, q_strong: f64) -> Metrics {
    let pgr = (quality - q_weak) / (q_strong - q_weak);
    let reach = |x: f64| (pgr >= x).then_some(share);
    Metrics {
        apgr: if share <= 0.0 { pgr } else { 0.0 },
        cpt50: reach(0.5),
        cpt80: reach(0.8),
        strong_share: Some(share),
        quality: Some(quality),
        pgr: Some(pgr),
    }
}

/// Samples the curve at every 1% of strong share (linear within a step).
pub fn sample_curve(curve: &[f64]) -> Vec<[f64; 2]> {
    let n = curve.len().saturating_sub(1);
    (0..=100)
        .map(|j| {
            let s = j as f64 / 100.0;
            if n == 0 {
                return [s, curve.first().copied().unwrap_or(0.0)];
            }
            let x = s * n as f64;
            let i = (x.floor() as usize).min(n - 1);
            let f = x - i as f64;
            [s, curve[i] + (curve[i + 1] - curve[i]) * f]
        })
        .collect()
}

/// Dot product (cosine of L2-normalized vectors).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len().min(b.len()) {
        s += a[i] * b[i];
    }
    s
}

/// The indices of the `k` most similar rows of `train` (row-major, `dim` wide) to `query`,
/// most similar first.
pub fn top_k(train: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let n = train.len().checked_div(dim).unwrap_or(0);
    let mut sims: Vec<(usize, f32)> = (0..n)
        .map(|i| (i, dot(&train[i * dim..(i + 1) * dim], query)))
        .collect();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    if k < n {
        sims.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        sims.truncate(k);
    }
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims
}

/// kNN scores for several `k` at once: for each test vector, the mean `gain` of its `k` nearest
/// training vectors (cosine), one score vector per entry of `ks`.
pub fn knn_scores(
    train: &[f32],
    dim: usize,
    gain: &[f64],
    test: &[f32],
    ks: &[usize],
) -> Vec<Vec<f64>> {
    let kmax = ks.iter().copied().max().unwrap_or(0);
    let n_test = test.len().checked_div(dim).unwrap_or(0);
    let mut out = vec![Vec::with_capacity(n_test); ks.len()];
    for t in 0..n_test {
        let nn = top_k(train, dim, &test[t * dim..(t + 1) * dim], kmax);
        for (o, &k) in out.iter_mut().zip(ks) {
            let take = k.min(nn.len());
            let s = if take == 0 {
                0.0
            } else {
                nn[..take].iter().map(|(i, _)| gain[*i]).sum::<f64>() / take as f64
            };
            o.push(s);
        }
    }
    out
}

/// Per-subject prior: the mean training `gain` of the test prompt's subject (the overall mean
/// for an unseen or missing subject).
pub fn subject_prior_scores(
    train_subjects: &[Option<&str>],
    gain: &[f64],
    test_subjects: &[Option<&str>],
) -> Vec<f64> {
    let mut sums: HashMap<&str, (f64, f64)> = HashMap::new();
    for (s, g) in train_subjects.iter().zip(gain) {
        if let Some(s) = s {
            let e = sums.entry(s).or_insert((0.0, 0.0));
            e.0 += g;
            e.1 += 1.0;
        }
    }
    let overall = if gain.is_empty() {
        0.0
    } else {
        gain.iter().sum::<f64>() / gain.len() as f64
    };
    test_subjects
        .iter()
        .map(|s| {
            s.and_then(|s| sums.get(s))
                .map(|(sum, n)| sum / n)
                .unwrap_or(overall)
        })
        .collect()
}

/// Training data for the kNN and subject-prior baselines, and the test prompts' vectors.
pub struct BaselineInput<'a> {
    /// Training vectors (row-major, `dim` wide) and `strong − weak` per training prompt.
    pub train: &'a [f32],
    pub train_gain: &'a [f64],
    pub test: &'a [f32],
    pub dim: usize,
    /// Subjects, when known: enable the subject prior (only when every test prompt has one).
    pub train_subjects: Option<Vec<Option<&'a str>>>,
    pub test_subjects: Option<Vec<Option<&'a str>>>,
}

/// The baselines' scores on the test prompts: kNN with k = 10, 20, 50, and the subject prior.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BaselineScores {
    pub knn10: Vec<f64>,
    pub knn20: Vec<f64>,
    pub knn50: Vec<f64>,
    pub subject_prior: Option<Vec<f64>>,
}

/// Fits the kNN and subject-prior baselines on `input`'s training side and scores its test side.
pub fn baseline_scores(input: &BaselineInput<'_>) -> BaselineScores {
    let mut knn = knn_scores(
        input.train,
        input.dim,
        input.train_gain,
        input.test,
        &[10, 20, 50],
    )
    .into_iter();
    let subject_prior = match (&input.train_subjects, &input.test_subjects) {
        (Some(tr), Some(te)) if te.iter().all(Option::is_some) => {
            Some(subject_prior_scores(tr, input.train_gain, te))
        }
        _ => None,
    };
    BaselineScores {
        knn10: knn.next().unwrap_or_default(),
        knn20: knn.next().unwrap_or_default(),
        knn50: knn.next().unwrap_or_default(),
        subject_prior,
    }
}

/// The full report: the router's metrics and curve, and every baseline. `weak` and `strong` are
/// the test prompts' correctness; `n_train` is recorded in the report.
pub fn report(
    router_scores: &[f64],
    weak: &[bool],
    strong: &[bool],
    baselines: &BaselineScores,
    n_train: usize,
) -> Result<Report, SelectError> {
    let (qw, qs) = ends(weak, strong)?;
    let router = evaluate(router_scores, weak, strong)?;
    let curve = sample_curve(&quality_curve(router_scores, weak, strong));
    let n = weak.len();
    let random = evaluate(&vec![0.0; n], weak, strong)?;
    let subject_prior = match &baselines.subject_prior {
        Some(s) => Some(evaluate(s, weak, strong)?),
        None => None,
    };
    Ok(Report {
        router,
        baselines: Baselines {
            random,
            always_weak: single_point(0.0, qw, qw, qs),
            always_strong: single_point(1.0, qs, qw, qs),
            knn10: evaluate(&baselines.knn10, weak, strong)?,
            knn20: evaluate(&baselines.knn20, weak, strong)?,
            knn50: evaluate(&baselines.knn50, weak, strong)?,
            subject_prior,
        },
        curve,
        n_test: n,
        n_train,
        q_weak: qw,
        q_strong: qs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    // 4 prompts: 0 and 1 gain from strong, 2 is answered by both, 3 by neither.
    const WEAK: [bool; 4] = [false, false, true, false];
    const STRONG: [bool; 4] = [true, true, true, false];

    #[test]
    fn perfect_router_apgr() {
        let m = evaluate(&[1.0, 0.9, 0.0, -1.0], &WEAK, &STRONG).unwrap();
        // PGR steps: 0, 0.5, 1, 1, 1 → area (0.25 + 0.75 + 1 + 1) / 4.
        assert!(close(m.apgr, 0.75), "{m:?}");
        assert!(close(m.cpt50.unwrap(), 0.25));
        assert!(close(m.cpt80.unwrap(), 0.25 + 0.25 * 0.6));
    }

    #[test]
    fn reversed_router_apgr() {
        let m = evaluate(&[-1.0, -0.9, 0.0, 1.0], &WEAK, &STRONG).unwrap();
        // PGR steps: 0, 0, 0, 0.5, 1 → area (0 + 0 + 0.25 + 0.75) / 4.
        assert!(close(m.apgr, 0.25), "{m:?}");
        assert!(close(m.cpt50.unwrap(), 0.75));
        assert!(close(m.cpt80.unwrap(), 0.75 + 0.25 * 0.6));
    }

    #[test]
    fn random_is_exactly_one_half() {
        let m = evaluate(&[0.3; 4], &WEAK, &STRONG).unwrap();
        assert!(close(m.apgr, 0.5));
        assert!(close(m.cpt50.unwrap(), 0.5));
        assert!(close(m.cpt80.unwrap(), 0.8));
    }

    #[test]
    fn ties_are_averaged() {
        // Prompts 0 and 3 tie: one gains, one does not.
        let q = quality_curve(&[1.0, 0.0, -1.0, 1.0], &WEAK, &STRONG);
        assert!(close(q[1], 1.5 / 4.0) && close(q[2], 2.0 / 4.0), "{q:?}");
    }

    #[test]
    fn cpt_on_a_known_curve() {
        let pgr = [0.0, 0.2, 0.6, 0.9, 1.0];
        assert!(close(cpt(&pgr, 0.5).unwrap(), (1.0 + 0.75) / 4.0));
        assert!(close(cpt(&pgr, 0.8).unwrap(), (2.0 + 2.0 / 3.0) / 4.0));
        assert!(close(cpt(&pgr, 0.0).unwrap(), 0.0));
        assert_eq!(cpt(&pgr, 1.5), None);
        // A curve above 1 before the end: CPT is the first crossing.
        let over = [0.0, 1.2, 1.0];
        assert!(close(cpt(&over, 0.8).unwrap(), 0.5 * (0.8 / 1.2)));
    }

    #[test]
    fn single_points() {
        let w = single_point(0.0, 0.25, 0.25, 0.75);
        assert_eq!((w.apgr, w.cpt50, w.cpt80), (0.0, None, None));
        let s = single_point(1.0, 0.75, 0.25, 0.75);
        assert_eq!((s.apgr, s.cpt50, s.cpt80), (0.0, Some(1.0), Some(1.0)));
    }

    #[test]
    fn no_gap_is_an_error() {
        assert!(evaluate(&[0.0, 1.0], &[true, false], &[true, false]).is_err());
        assert!(evaluate(&[], &[], &[]).is_err());
    }

    #[test]
    fn knn_and_subject_prior() {
        // 2-d unit vectors: two clusters.
        let train = [1.0, 0.0, 0.99, 0.141, 0.0, 1.0, 0.141, 0.99];
        let gain = [1.0, 1.0, -1.0, 0.0];
        let test = [0.98, 0.199, 0.1, 0.995];
        let s = knn_scores(&train, 2, &gain, &test, &[1, 2, 10]);
        assert_eq!(s[0], vec![1.0, 0.0]);
        assert_eq!(s[1], vec![1.0, -0.5]);
        assert_eq!(s[2], vec![0.25, 0.25]);
        let p = subject_prior_scores(
            &[Some("a"), Some("a"), Some("b"), None],
            &gain,
            &[Some("b"), Some("c")],
        );
        assert_eq!(p, vec![-1.0, 0.25]);
    }

    #[test]
    fn report_shape() {
        let train = [1.0, 0.0, 0.0, 1.0];
        let test = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.8, 0.6];
        let input = BaselineInput {
            train: &train,
            train_gain: &[1.0, 0.0],
            test: &test,
            dim: 2,
            train_subjects: None,
            test_subjects: Some(vec![Some("a"), None, Some("a"), Some("a")]),
        };
        let b = baseline_scores(&input);
        assert!(b.subject_prior.is_none());
        let r = report(&[1.0, 0.9, 0.0, -1.0], &WEAK, &STRONG, &b, 2).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["router"]["apgr"].is_f64());
        assert!(v["baselines"]["knn50"]["cpt80"].is_f64());
        assert!(v["baselines"]["always_weak"]["cpt50"].is_null());
        assert!(v["baselines"].get("subject_prior").is_none());
        assert_eq!(v["curve"].as_array().unwrap().len(), 101);
        assert!(close(r.curve[100][1], 0.75) && close(r.curve[0][1], 0.25));
    }
}
