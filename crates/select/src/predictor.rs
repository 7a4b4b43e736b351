//! The learned quality predictor: for a prompt's embedding (all-MiniLM-L6-v2, 384 dimensions,
//! L2-normalized), the probability that each covered model answers it correctly.
//!
//! # Method (docs/routing-eval.md has the measurements)
//!
//! Per model, the prediction blends two estimates of `P(correct | prompt)`:
//!
//! 1. **A logistic regression on the embedding** (L2-regularized, `C = 0.1`, unpenalized
//!    intercept, fitted by Nesterov-accelerated gradient descent).
//! 2. **A learned topic prior**: the training embeddings are clustered without any labels by
//!    k-means (greedy k-means++ seeding, Lloyd iterations) several times (`k` = 10, 20, 40,
//!    80, 160, four seeds each). For each clustering and model, each cluster keeps the model's
//!    success rate among its training prompts, shrunk towards the model's overall rate
//!    (`(successes + a·overall) / (count + a)`, `a = 5`). A prompt's prior is the mean, over
//!    the clusterings, of the rate of its nearest centroid. No subject label is used: the
//!    clusters find the topics themselves.
//!
//! The blend is `w·logistic + (1 − w)·prior`, with `w` chosen at training so that both parts
//! weigh the same in the *difference* between models (each part weighted by the inverse of the
//! standard deviation, over the training prompts, of its difference between models): the sum
//! of the two z-scored differences is what the exploration found best. For a weak/strong pair
//! the routing score is `predict(strong) − predict(weak)` ([`QualityPredictor::benefit`]).
//!
//! `router.json` holds the centroids (4 × 310 = 1,240 of 384 floats), the per-cluster rates
//! and the logistic weights; no training prompt or embedding.

use crate::error::SelectError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The format tag written in `router.json`.
pub const FORMAT: &str = "plexus-quality-predictor/1";

/// One training prompt: its embedding and each model's correctness (`None`: not labelled).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingExample {
    pub embedding: Vec<f32>,
    pub correct: Vec<Option<bool>>,
}

/// Training hyper-parameters (the defaults are the ones tuned on seeds 0–9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// The embedder's name, recorded in the router.
    pub embedder: String,
    /// Inverse L2 strength of the logistic regression (scikit-learn's `C`).
    pub logistic_c: f64,
    /// Most gradient iterations of the logistic regression.
    pub logistic_iterations: usize,
    /// Cluster counts of the k-means clusterings.
    pub cluster_counts: Vec<usize>,
    /// Clusterings (seeds) per cluster count.
    pub restarts: usize,
    /// Shrinkage of each cluster's success rate towards the overall rate (pseudo-count).
    pub shrinkage: f64,
    /// Most Lloyd iterations per clustering.
    pub kmeans_iterations: usize,
    /// Seed of the clusterings.
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            embedder: "all-MiniLM-L6-v2".to_string(),
            logistic_c: 0.1,
            logistic_iterations: 600,
            cluster_counts: vec![10, 20, 40, 80, 160],
            restarts: 4,
            shrinkage: 5.0,
            kmeans_iterations: 100,
            seed: 0,
        }
    }
}

/// A covered model: its configured name and the CSV column it was trained from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Training prompts labelled for this model, and its success rate among them.
    pub trained_on: usize,
    pub base_rate: f64,
}

/// A logistic regression: `σ(weights · x + bias)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub weights: Vec<f32>,
    pub bias: f64,
}

/// One k-means clustering: centroids (row-major) and each model's shrunk rate per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clustering {
    pub k: usize,
    pub centroids: Vec<f32>,
    /// `rates[model][cluster]`.
    pub rates: Vec<Vec<f64>>,
    /// Training prompts per cluster.
    pub counts: Vec<usize>,
}

/// The trained router (`router.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityPredictor {
    pub format: String,
    pub embedder: String,
    pub dim: usize,
    pub models: Vec<ModelEntry>,
    pub params: TrainParams,
    /// Weight of the logistic part; the topic prior gets `1 − blend_logistic`.
    pub blend_logistic: f64,
    /// One per model, in `models` order.
    pub logistic: Vec<Logistic>,
    pub clusterings: Vec<Clustering>,
}

impl QualityPredictor {
    pub fn from_json(text: &str) -> Result<QualityPredictor, SelectError> {
        let p: QualityPredictor =
            serde_json::from_str(text).map_err(|e| SelectError::InvalidRouter(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), SelectError> {
        let bad = |m: String| Err(SelectError::InvalidRouter(m));
        if self.format != FORMAT {
            return bad(format!("format {:?}, expected {FORMAT:?}", self.format));
        }
        let n = self.models.len();
        if n == 0 || self.dim == 0 {
            return bad("no model or no dimension".into());
        }
        if self.logistic.len() != n || self.logistic.iter().any(|l| l.weights.len() != self.dim) {
            return bad("logistic weights do not match the models and dimension".into());
        }
        for c in &self.clusterings {
            if c.k == 0
                || c.centroids.len() != c.k * self.dim
                || c.rates.len() != n
                || c.rates.iter().any(|r| r.len() != c.k)
            {
                return bad(format!("a clustering with k = {} is inconsistent", c.k));
            }
        }
        if !(0.0..=1.0).contains(&self.blend_logistic) {
            return bad("blend weight outside [0, 1]".into());
        }
        Ok(())
    }

    pub fn embedder(&self) -> &str {
        &self.embedder
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The configured model names it covers.
    pub fn models(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// Records the CSV column each model was trained from (in `models` order).
    pub fn set_columns(&mut self, columns: &[String]) {
        for (m, c) in self.models.iter_mut().zip(columns) {
            m.column = Some(c.clone());
        }
    }

    /// The model trained from `column_or_name` (matched on the column first, then the name).
    pub fn model_for(&self, column_or_name: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|m| m.column.as_deref() == Some(column_or_name))
            .or_else(|| self.models.iter().find(|m| m.name == column_or_name))
            .map(|m| m.name.as_str())
    }

    /// Predicted probability in [0,1] that `model` answers this prompt well; None if the model
    /// is not covered or the dimension does not match.
    pub fn predict(&self, embedding: &[f32], model: &str) -> Option<f64> {
        let m = self.models.iter().position(|e| e.name == model)?;
        if embedding.len() != self.dim {
            return None;
        }
        let logistic =
            sigmoid(dot(&self.logistic[m].weights, embedding) as f64 + self.logistic[m].bias);
        let prior = self.prior(embedding, Some(m)).first().copied()?;
        Some(self.blend(logistic, prior))
    }

    /// Every covered model's prediction, in `models()` order (one pass over the centroids).
    pub fn predict_all(&self, embedding: &[f32]) -> Option<Vec<f64>> {
        if embedding.len() != self.dim {
            return None;
        }
        let priors = self.prior(embedding, None);
        Some(
            self.logistic
                .iter()
                .zip(priors)
                .map(|(l, p)| self.blend(sigmoid(dot(&l.weights, embedding) as f64 + l.bias), p))
                .collect(),
        )
    }

    /// The routing score of a weak/strong pair: `predict(strong) − predict(weak)`.
    pub fn benefit(&self, embedding: &[f32], weak: &str, strong: &str) -> Option<f64> {
        let all = self.predict_all(embedding)?;
        let at = |name: &str| self.models.iter().position(|e| e.name == name);
        Some(all[at(strong)?] - all[at(weak)?])
    }

    fn blend(&self, logistic: f64, prior: f64) -> f64 {
        (self.blend_logistic * logistic + (1.0 - self.blend_logistic) * prior).clamp(0.0, 1.0)
    }

    /// The topic prior of one model (`Some(m)`) or of every model, averaged over clusterings.
    fn prior(&self, embedding: &[f32], only: Option<usize>) -> Vec<f64> {
        let n_models = self.models.len();
        let models: Vec<usize> = match only {
            Some(m) => vec![m],
            None => (0..n_models).collect(),
        };
        let mut sums = vec![0.0; models.len()];
        if self.clusterings.is_empty() {
            return models.iter().map(|&m| self.models[m].base_rate).collect();
        }
        for c in &self.clusterings {
            let j = nearest(&c.centroids, self.dim, embedding);
            for (s, &m) in sums.iter_mut().zip(&models) {
                *s += c.rates[m][j];
            }
        }
        let n = self.clusterings.len() as f64;
        sums.iter().map(|s| s / n).collect()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Dot product, eight lanes at a time.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::eval::dot(a, b)
}

/// The centroid closest (Euclidean) to `x`.
fn nearest(centroids: &[f32], dim: usize, x: &[f32]) -> usize {
    let mut best = (0, f32::INFINITY);
    for (j, c) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist(c, x);
        if d < best.1 {
            best = (j, d);
        }
    }
    best.0
}

#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len().min(b.len()) {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

/// Trains the predictor on `examples` for `models` (names, in the order of each example's
/// `correct`).
pub fn train(
    examples: &[TrainingExample],
    models: &[String],
    params: &TrainParams,
) -> Result<QualityPredictor, SelectError> {
    let fail = |m: String| Err(SelectError::Training(m));
    if models.is_empty() {
        return fail("no model to train".into());
    }
    let Some(first) = examples.first() else {
        return fail("no training example".into());
    };
    let dim = first.embedding.len();
    if dim == 0 {
        return fail("empty embeddings".into());
    }
    for (i, e) in examples.iter().enumerate() {
        if e.embedding.len() != dim || e.correct.len() != models.len() {
            return fail(format!(
                "example {i} has {} dimensions and {} labels (expected {dim} and {})",
                e.embedding.len(),
                e.correct.len(),
                models.len()
            ));
        }
    }
    let n = examples.len();
    let flat: Vec<f32> = examples
        .iter()
        .flat_map(|e| e.embedding.iter().copied())
        .collect();

    // Per model: labelled rows, base rate, logistic regression.
    let mut entries = Vec::with_capacity(models.len());
    let mut logistic = Vec::with_capacity(models.len());
    for (m, name) in models.iter().enumerate() {
        let labelled: Vec<(usize, f64)> = examples
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.correct[m].map(|c| (i, if c { 1.0 } else { 0.0 })))
            .collect();
        if labelled.is_empty() {
            return fail(format!("no labelled example for model {name:?}"));
        }
        let base = labelled.iter().map(|(_, y)| y).sum::<f64>() / labelled.len() as f64;
        entries.push(ModelEntry {
            name: name.clone(),
            column: None,
            trained_on: labelled.len(),
            base_rate: base,
        });
        logistic.push(fit_logistic(&flat, dim, &labelled, params));
    }

    // Clusterings, in parallel.
    let mut jobs = Vec::new();
    for (ki, &k) in params.cluster_counts.iter().enumerate() {
        for r in 0..params.restarts {
            let k = k.min(n);
            if k >= 1 {
                jobs.push((k, params.seed.wrapping_add((ki * 1000 + r) as u64)));
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(jobs.len().max(1));
    let mut results: Vec<Option<(Vec<f32>, Vec<usize>)>> = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = results
            .chunks_mut(jobs.len().div_ceil(threads).max(1))
            .zip(jobs.chunks(jobs.len().div_ceil(threads).max(1)))
            .collect();
        for (out, js) in chunks {
            let flat = &flat;
            let iters = params.kmeans_iterations;
            scope.spawn(move || {
                for (o, &(k, seed)) in out.iter_mut().zip(js) {
                    *o = Some(kmeans(flat, dim, k, seed, iters));
                }
            });
        }
    });
    let mut clusterings = Vec::with_capacity(jobs.len());
    for ((k, _), res) in jobs.iter().zip(results) {
        let Some((centroids, labels)) = res else {
            return fail("a clustering did not finish".into());
        };
        let mut counts = vec![0usize; *k];
        for &l in &labels {
            counts[l] += 1;
        }
        let rates = (0..models.len())
            .map(|m| {
                let mut succ = vec![0.0; *k];
                let mut cnt = vec![0.0; *k];
                for (i, e) in examples.iter().enumerate() {
                    if let Some(c) = e.correct[m] {
                        cnt[labels[i]] += 1.0;
                        if c {
                            succ[labels[i]] += 1.0;
                        }
                    }
                }
                let base = entries[m].base_rate;
                (0..*k)
                    .map(|j| (succ[j] + params.shrinkage * base) / (cnt[j] + params.shrinkage))
                    .collect()
            })
            .collect();
        clusterings.push(Clustering {
            k: *k,
            centroids,
            rates,
            counts,
        });
    }

    let mut p = QualityPredictor {
        format: FORMAT.to_string(),
        embedder: params.embedder.clone(),
        dim,
        models: entries,
        params: params.clone(),
        blend_logistic: 0.5,
        logistic,
        clusterings,
    };
    p.blend_logistic = blend_weight(&p, examples);
    Ok(p)
}

/// The logistic part's weight: each part weighted by the inverse standard deviation (over the
/// training prompts) of its difference between models, averaged over model pairs.
fn blend_weight(p: &QualityPredictor, examples: &[TrainingExample]) -> f64 {
    let n_models = p.models.len();
    if n_models < 2 {
        return 0.5;
    }
    // Per example: each part's prediction for every model.
    let mut logistic: Vec<Vec<f64>> = Vec::with_capacity(examples.len());
    let mut prior: Vec<Vec<f64>> = Vec::with_capacity(examples.len());
    for e in examples {
        logistic.push(
            p.logistic
                .iter()
                .map(|l| sigmoid(dot(&l.weights, &e.embedding) as f64 + l.bias))
                .collect(),
        );
        prior.push(p.prior(&e.embedding, None));
    }
    let std_of = |part: &[Vec<f64>]| {
        let mut total = 0.0;
        let mut pairs = 0.0;
        for a in 0..n_models {
            for b in a + 1..n_models {
                let d: Vec<f64> = part.iter().map(|x| x[b] - x[a]).collect();
                let mean = d.iter().sum::<f64>() / d.len() as f64;
                let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.len() as f64;
                total += var.sqrt();
                pairs += 1.0;
            }
        }
        total / pairs
    };
    let sl = std_of(&logistic);
    let sp = std_of(&prior);
    let (il, ip) = (
        if sl > 1e-9 { 1.0 / sl } else { 0.0 },
        if sp > 1e-9 { 1.0 / sp } else { 0.0 },
    );
    if il + ip == 0.0 {
        0.5
    } else {
        il / (il + ip)
    }
}

/// L2-regularized logistic regression (`Σ logloss + ‖w‖² / (2C)`, intercept unpenalized) by
/// Nesterov-accelerated gradient descent with step `1/L`.
fn fit_logistic(
    flat: &[f32],
    dim: usize,
    labelled: &[(usize, f64)],
    params: &TrainParams,
) -> Logistic {
    let lambda = 1.0 / params.logistic_c.max(1e-12);
    let n = labelled.len();
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    // Largest eigenvalue of [X 1]ᵀ[X 1] by power iteration (an upper bound after a margin).
    let mut v = vec![1.0f64; dim + 1];
    let mut eig = 0.0;
    for _ in 0..30 {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        v.iter_mut().for_each(|x| *x /= norm);
        let mut out = vec![0.0f64; dim + 1];
        for &(i, _) in labelled {
            let x = row(i);
            let xv: f64 = x.iter().zip(&v).map(|(a, b)| *a as f64 * b).sum::<f64>() + v[dim];
            for (o, a) in out.iter_mut().zip(x) {
                *o += xv * *a as f64;
            }
            out[dim] += xv;
        }
        eig = out.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
        v = out;
    }
    let lipschitz = 0.25 * eig * 1.1 + lambda;
    let step = 1.0 / lipschitz;
    let base = labelled.iter().map(|(_, y)| y).sum::<f64>() / n.max(1) as f64;
    let b0 = (base.clamp(1e-6, 1.0 - 1e-6) / (1.0 - base.clamp(1e-6, 1.0 - 1e-6))).ln();
    let mut w = vec![0.0f64; dim + 1];
    w[dim] = b0;
    let mut prev = w.clone();
    let mut y_point = w.clone();
    let mut t = 1.0f64;
    let mut xw = vec![0f32; dim];
    for _ in 0..params.logistic_iterations {
        let mut grad = vec![0.0f64; dim + 1];
        xw.iter_mut()
            .zip(&y_point)
            .for_each(|(a, b)| *a = *b as f32);
        for &(i, y) in labelled {
            let x = row(i);
            let z = crate::eval::dot(x, &xw) as f64 + y_point[dim];
            let r = sigmoid(z) - y;
            for (g, a) in grad.iter_mut().zip(x) {
                *g += r * *a as f64;
            }
            grad[dim] += r;
        }
        for j in 0..dim {
            grad[j] += lambda * y_point[j];
        }
        let gnorm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        let next: Vec<f64> = y_point
            .iter()
            .zip(&grad)
            .map(|(p, g)| p - step * g)
            .collect();
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let mom = (t - 1.0) / t_next;
        y_point = next
            .iter()
            .zip(&prev)
            .map(|(a, b)| a + mom * (a - b))
            .collect();
        prev = next;
        t = t_next;
        if gnorm < 1e-7 * n.max(1) as f64 {
            break;
        }
    }
    Logistic {
        weights: prev[..dim].iter().map(|x| *x as f32).collect(),
        bias: prev[dim],
    }
}

/// k-means (k-means++ seeding, Lloyd iterations) over the rows of `flat`: centroids and labels.
fn kmeans(
    flat: &[f32],
    dim: usize,
    k: usize,
    seed: u64,
    iterations: usize,
) -> (Vec<f32>, Vec<usize>) {
    let n = flat.len() / dim;
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    let mut rng = StdRng::seed_from_u64(seed);
    // k-means++ seeding.
    let mut centroids: Vec<f32> = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(row(first));
    let mut d2: Vec<f64> = (0..n).map(|i| sq_dist(row(i), row(first)) as f64).collect();
    // Greedy k-means++ (as scikit-learn): of 2 + ln k candidates drawn in proportion to the
    // squared distance, keep the one that lowers the total squared distance most.
    let trials = 2 + (k as f64).ln() as usize;
    for _ in 1..k {
        let total: f64 = d2.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let pick = if total <= 0.0 {
                rng.random_range(0..n)
            } else {
                let mut target = rng.random::<f64>() * total;
                let mut chosen = n - 1;
                for (i, d) in d2.iter().enumerate() {
                    target -= d;
                    if target <= 0.0 {
                        chosen = i;
                        break;
                    }
                }
                chosen
            };
            let c = row(pick);
            let nd: Vec<f64> = d2
                .iter()
                .enumerate()
                .map(|(i, d)| d.min(sq_dist(row(i), c) as f64))
                .collect();
            let sum: f64 = nd.iter().sum();
            if best.as_ref().is_none_or(|b| sum < b.0) {
                best = Some((sum, pick, nd));
            }
        }
        if let Some((_, pick, nd)) = best {
            centroids.extend_from_slice(row(pick));
            d2 = nd;
        }
    }
    let mut labels = vec![usize::MAX; n];
    for _ in 0..iterations.max(1) {
        let mut changed = false;
        for (i, l) in labels.iter_mut().enumerate() {
            let j = nearest(&centroids, dim, row(i));
            if *l != j {
                *l = j;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &l) in labels.iter().enumerate() {
            counts[l] += 1;
            for (s, x) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row(i)) {
                *s += *x as f64;
            }
        }
        for j in 0..k {
            if counts[j] > 0 {
                for d in 0..dim {
                    centroids[j * dim + d] = (sums[j * dim + d] / counts[j] as f64) as f32;
                }
            }
        }
    }
    (centroids, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two topics on the unit circle of a 4-d space: the weak model fails topic B, the strong
    /// model answers both.
    fn fixture() -> Vec<TrainingExample> {
        let mut out = Vec::new();
        for i in 0..60 {
            let a = i as f32 * 0.01;
            let (x, topic_b) = if i % 2 == 0 {
                (vec![a.cos(), a.sin(), 0.0, 0.0], false)
            } else {
                (vec![0.0, 0.0, a.cos(), a.sin()], true)
            };
            out.push(TrainingExample {
                embedding: x,
                correct: vec![Some(!topic_b || i % 10 == 1), Some(true)],
            });
        }
        out
    }

    fn small_params() -> TrainParams {
        TrainParams {
            cluster_counts: vec![2, 4],
            ..TrainParams::default()
        }
    }

    #[test]
    fn learns_which_topic_the_weak_model_fails() {
        let models = vec!["mini".to_string(), "pro".to_string()];
        let p = train(&fixture(), &models, &small_params()).unwrap();
        let a = [1.0, 0.0, 0.0, 0.0];
        let b = [0.0, 0.0, 1.0, 0.0];
        let wa = p.predict(&a, "mini").unwrap();
        let wb = p.predict(&b, "mini").unwrap();
        assert!(wa > 0.6 && wb < 0.5, "{wa} {wb}");
        assert!(p.predict(&b, "pro").unwrap() > 0.8);
        assert!(p.benefit(&b, "mini", "pro").unwrap() > p.benefit(&a, "mini", "pro").unwrap());
        assert_eq!(p.predict(&a, "other"), None);
        assert_eq!(p.predict(&[1.0, 0.0], "mini"), None);
        let all = p.predict_all(&a).unwrap();
        assert!((all[0] - wa).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&p.blend_logistic));
    }

    #[test]
    fn json_round_trip() {
        let models = vec!["mini".to_string(), "pro".to_string()];
        let mut p = train(&fixture(), &models, &small_params()).unwrap();
        p.set_columns(&["weak_col".to_string(), "strong_col".to_string()]);
        let text = p.to_json();
        let q = QualityPredictor::from_json(&text).unwrap();
        assert_eq!(q.embedder(), "all-MiniLM-L6-v2");
        assert_eq!(q.dim(), 4);
        assert_eq!(q.models(), vec!["mini", "pro"]);
        assert_eq!(q.model_for("strong_col"), Some("pro"));
        assert_eq!(q.model_for("mini"), Some("mini"));
        let x = [0.6, 0.0, 0.8, 0.0];
        assert_eq!(p.predict(&x, "mini"), q.predict(&x, "mini"));
        assert!(QualityPredictor::from_json("{}").is_err());
        let mut broken: serde_json::Value = serde_json::from_str(&text).unwrap();
        broken["dim"] = serde_json::json!(5);
        assert!(QualityPredictor::from_json(&broken.to_string()).is_err());
    }

    #[test]
    fn training_is_deterministic_and_validates_inputs() {
        let models = vec!["mini".to_string(), "pro".to_string()];
        let a = train(&fixture(), &models, &small_params()).unwrap();
        let b = train(&fixture(), &models, &small_params()).unwrap();
        assert_eq!(a, b);
        assert!(train(&[], &models, &small_params()).is_err());
        assert!(train(&fixture(), &[], &small_params()).is_err());
        let mut bad = fixture();
        bad[3].correct.pop();
        assert!(train(&bad, &models, &small_params()).is_err());
    }

    #[test]
    fn logistic_fits_a_separable_direction() {
        let ex = fixture();
        let flat: Vec<f32> = ex.iter().flat_map(|e| e.embedding.clone()).collect();
        let labelled: Vec<(usize, f64)> = (0..ex.len())
            .map(|i| (i, if i % 2 == 0 { 1.0 } else { 0.0 }))
            .collect();
        let l = fit_logistic(
            &flat,
            4,
            &labelled,
            &TrainParams {
                logistic_c: 10.0,
                ..TrainParams::default()
            },
        );
        assert!(l.weights[0] > 0.5 && l.weights[2] < -0.5, "{l:?}");
    }

    #[test]
    fn kmeans_separates_two_blobs() {
        let ex = fixture();
        let flat: Vec<f32> = ex.iter().flat_map(|e| e.embedding.clone()).collect();
        let (_, labels) = kmeans(&flat, 4, 2, 3, 50);
        for i in 0..ex.len() {
            assert_eq!(labels[i] == labels[0], i % 2 == 0);
        }
    }
}
