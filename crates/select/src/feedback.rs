//! Learning from feedback: scores users gave to answers, kept per model with the prompt's
//! embedding, refine that model's predicted quality near that prompt (and nowhere else).
//!
//! The refinement is a kernel-weighted average shrunk toward the prior: with feedback scores
//! `s_i` at cosine similarity `sim_i` to the prompt, weights
//! `w_i = ((sim_i - radius) / (1 - radius))^2` for `sim_i > radius` (0 otherwise),
//! `quality = (k * prior + sum w_i s_i) / (k + sum w_i)`, where `k` is the prior's strength in
//! feedback units. Feedback without an embedding (a request that was not embedded) counts for
//! the model everywhere, with a small weight.

use std::collections::{HashMap, VecDeque};

/// Tunables of [`FeedbackIndex`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackParams {
    /// Cosine similarity below which a feedback says nothing about a prompt.
    pub radius: f32,
    /// The prior's weight, in feedbacks at similarity 1.
    pub prior_strength: f64,
    /// Weight of a feedback without an embedding, for every prompt.
    pub global_weight: f64,
    /// Feedbacks kept per model (the oldest go first).
    pub capacity: usize,
}

impl Default for FeedbackParams {
    fn default() -> Self {
        FeedbackParams {
            radius: 0.6,
            prior_strength: 2.0,
            global_weight: 0.02,
            capacity: 8192,
        }
    }
}

#[derive(Debug, Default)]
struct ModelFeedback {
    /// (request id, embedding, score), oldest first.
    near: VecDeque<(Box<str>, Box<[f32]>, f32)>,
    /// Scores without an embedding, by request id.
    global: HashMap<Box<str>, f64>,
}

/// Every feedback the selector learned from, by model name. One feedback per request: a new
/// score for the same request replaces the old one, so learning the same row twice (from the
/// endpoint, then from the store) counts it once.
#[derive(Debug, Default)]
pub struct FeedbackIndex {
    params: FeedbackParams,
    models: HashMap<String, ModelFeedback>,
    /// The model each request's feedback is kept under.
    owners: HashMap<Box<str>, String>,
}

/// A prior refined by feedback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refined {
    pub quality: f64,
    /// Total kernel weight of the feedback that counted (0: none did).
    pub weight: f64,
}

impl FeedbackIndex {
    pub fn new(params: FeedbackParams) -> FeedbackIndex {
        FeedbackIndex {
            params,
            models: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    /// Learns the score in [0, 1] given to `request_id`, served by `model`, near `embedding`
    /// when given; replaces an earlier score of the same request.
    pub fn add(&mut self, request_id: &str, model: &str, embedding: Option<&[f32]>, score: f64) {
        let score = score.clamp(0.0, 1.0);
        if let Some(old_model) = self.owners.remove(request_id) {
            if let Some(m) = self.models.get_mut(&old_model) {
                m.near.retain(|(id, _, _)| &**id != request_id);
                m.global.remove(request_id);
            }
        }
        let entry = self.models.entry(model.to_owned()).or_default();
        match embedding {
            Some(e) if !e.is_empty() => {
                if entry.near.len() >= self.params.capacity {
                    if let Some((dropped, _, _)) = entry.near.pop_front() {
                        self.owners.remove(&dropped);
                    }
                }
                entry
                    .near
                    .push_back((request_id.into(), e.into(), score as f32));
            }
            _ => {
                entry.global.insert(request_id.into(), score);
            }
        }
        self.owners.insert(request_id.into(), model.to_owned());
    }

    /// How many feedbacks `model` has.
    pub fn len(&self, model: &str) -> usize {
        self.models
            .get(model)
            .map_or(0, |m| m.near.len() + m.global.len())
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// `prior` for `model`, refined by its feedback near `embedding`.
    pub fn refine(&self, model: &str, embedding: Option<&[f32]>, prior: f64) -> Refined {
        let Some(m) = self.models.get(model) else {
            return Refined {
                quality: prior,
                weight: 0.0,
            };
        };
        let p = &self.params;
        let mut weight = p.global_weight * m.global.len() as f64;
        let mut sum = p.global_weight * m.global.values().sum::<f64>();
        if let Some(e) = embedding {
            let span = 1.0 - p.radius;
            for (_, v, s) in &m.near {
                if v.len() != e.len() {
                    continue;
                }
                let sim: f32 = v.iter().zip(e).map(|(a, b)| a * b).sum();
                if sim > p.radius {
                    let w = f64::from((sim - p.radius) / span).powi(2);
                    weight += w;
                    sum += w * f64::from(*s);
                }
            }
        }
        Refined {
            quality: (p.prior_strength * prior + sum) / (p.prior_strength + weight),
            weight,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn feedback_moves_the_estimate_near_that_prompt_and_not_elsewhere() {
        let mut index = FeedbackIndex::default();
        let here = unit(&[1.0, 0.0, 0.0]);
        let nearby = unit(&[1.0, 0.1, 0.0]);
        let elsewhere = unit(&[0.0, 1.0, 0.0]);
        for i in 0..10 {
            index.add(&format!("r{i}"), "mini", Some(&here), 0.0);
        }
        let at = index.refine("mini", Some(&here), 0.8);
        assert!(at.quality < 0.2, "{at:?}");
        let near = index.refine("mini", Some(&nearby), 0.8);
        assert!(near.quality < 0.3, "{near:?}");
        let far = index.refine("mini", Some(&elsewhere), 0.8);
        assert_eq!(far.quality, 0.8);
        assert_eq!(far.weight, 0.0);
        // Another model is untouched.
        assert_eq!(index.refine("pro", Some(&here), 0.8).quality, 0.8);
    }

    #[test]
    fn feedback_without_an_embedding_counts_a_little_everywhere() {
        let mut index = FeedbackIndex::default();
        for i in 0..50 {
            index.add(&format!("r{i}"), "mini", None, 1.0);
        }
        let r = index.refine("mini", Some(&[1.0, 0.0]), 0.5);
        assert!(r.quality > 0.5 && r.quality < 0.8, "{r:?}");
        assert_eq!(index.len("mini"), 50);
    }

    #[test]
    fn capacity_drops_the_oldest() {
        let mut index = FeedbackIndex::new(FeedbackParams {
            capacity: 3,
            ..FeedbackParams::default()
        });
        let e = [1.0_f32, 0.0];
        index.add("old", "m", Some(&e), 0.0);
        for i in 0..3 {
            index.add(&format!("r{i}"), "m", Some(&e), 1.0);
        }
        assert_eq!(index.len("m"), 3);
        assert!(index.refine("m", Some(&e), 1.0).quality > 0.999);
    }

    #[test]
    fn a_request_counts_once_and_a_new_score_replaces_the_old() {
        let mut index = FeedbackIndex::default();
        let e = [1.0_f32, 0.0];
        index.add("r", "m", Some(&e), 0.0);
        let once = index.refine("m", Some(&e), 1.0);
        // The same row learned again (the endpoint, then the store): no change.
        index.add("r", "m", Some(&e), 0.0);
        assert_eq!(index.refine("m", Some(&e), 1.0), once);
        assert_eq!(index.len("m"), 1);
        // Re-scored: the new score replaces the old.
        index.add("r", "m", Some(&e), 1.0);
        assert_eq!(index.refine("m", Some(&e), 1.0).quality, 1.0);
        // Moved to another model (never in practice, but consistent).
        index.add("r", "other", None, 0.0);
        assert_eq!((index.len("m"), index.len("other")), (0, 1));
    }
}
