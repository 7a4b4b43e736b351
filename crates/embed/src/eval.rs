//! Pair classification on the labelled Quora Question Pairs: embed both questions of each pair,
//! call the pair a paraphrase when their cosine similarity reaches a threshold, and measure
//! precision, recall and F1 at thresholds 0.70 … 0.99, the best-F1 threshold, and ROC-AUC.
//!
//! The data is the `similiar_qqp_full.json` of GPTCache's benchmark (`examples/benchmark/` in
//! zilliztech/GPTCache, MIT licence, © Zilliz; a copy of the licence sits beside the data in
//! `../shared/data/qqp/`): 80,854 pairs `{"text_a", "text_b", "label"}` drawn from Quora Question
//! Pairs, `label` 1 for duplicates. [`load_qqp`] reads it from its `.tar.gz` (or a plain `.json`).
//!
//! A subsample is a pure function of the seed ([`subsample`]: SplitMix64 and a partial
//! Fisher–Yates shuffle written out here, so it does not change with a `rand` release), and the
//! metrics are exact (ROC-AUC by the Mann–Whitney rank statistic, ties averaged), so a report is
//! reproducible from (model, sample size, seed).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::{cosine, EmbedError, Embedder};

/// Where the data lives, relative to the workspace root.
pub const QQP_PATH: &str = "../shared/data/qqp/similiar_qqp_full.json.tar.gz";
/// The subsample CI runs.
pub const DEFAULT_SAMPLE: usize = 2_000;
pub const DEFAULT_SEED: u64 = 42;

/// One labelled question pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub text_a: String,
    pub text_b: String,
    /// The two questions ask the same thing.
    pub duplicate: bool,
}

#[derive(Deserialize)]
struct RawPair {
    text_a: String,
    text_b: String,
    label: u8,
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// Reads the pairs from `similiar_qqp_full.json.tar.gz` (the first `.json` member) or from the
/// `.json` itself.
pub fn load_qqp(path: &Path) -> Result<Vec<Pair>, EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_owned(),
        source,
    };
    let format = |message: String| EvalError::Format {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let mut json = Vec::new();
    if is_json {
        std::io::BufReader::new(file)
            .read_to_end(&mut json)
            .map_err(io)?;
    } else {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut found = false;
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let is_json_member = entry
                .path()
                .map_err(io)?
                .extension()
                .is_some_and(|e| e == "json");
            if is_json_member && entry.header().entry_type().is_file() {
                entry.read_to_end(&mut json).map_err(io)?;
                found = true;
                break;
            }
        }
        if !found {
            return Err(format("no .json member in the archive".into()));
        }
    }
    let raw: Vec<RawPair> = serde_json::from_slice(&json).map_err(|e| format(e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, p)| match p.label {
            0 | 1 => Ok(Pair {
                text_a: p.text_a,
                text_b: p.text_b,
                duplicate: p.label == 1,
            }),
            other => Err(format(format!(
                "pair {i}: label {other} is neither 0 nor 1"
            ))),
        })
        .collect()
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), by Lemire's multiply-shift (bias < n / 2⁶⁴).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Indices of `n` distinct pairs out of `len`, chosen by `seed`, in increasing order (all of them
/// when `n >= len`).
pub fn subsample(len: usize, n: usize, seed: u64) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    let mut rng = SplitMix64(seed);
    let mut idx: Vec<usize> = (0..len).collect();
    for i in 0..n {
        let j = i + rng.below(len - i);
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx.sort_unstable();
    idx
}

/// Which pairs were evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    All,
    Random { pairs: usize, seed: u64 },
}

impl Sample {
    /// The pairs this sample selects, in the data's order.
    pub fn select(&self, pairs: &[Pair]) -> Vec<Pair> {
        match *self {
            Sample::All => pairs.to_vec(),
            Sample::Random { pairs: n, seed } => subsample(pairs.len(), n, seed)
                .into_iter()
                .map(|i| pairs[i].clone())
                .collect(),
        }
    }
}

/// The classifier "duplicate when similarity ≥ threshold", counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdRow {
    pub threshold: f32,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// TP / (TP + FP); 0 when nothing reaches the threshold.
    pub precision: f64,
    /// TP / (TP + FN); 0 without positives.
    pub recall: f64,
    pub f1: f64,
}

impl ThresholdRow {
    fn new(threshold: f32, tp: usize, fp: usize, positives: usize) -> ThresholdRow {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, positives);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        ThresholdRow {
            threshold,
            true_positives: tp,
            false_positives: fp,
            false_negatives: positives - tp,
            precision,
            recall,
            f1,
        }
    }
}

/// Metrics of similarity scores against labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// At 0.70, 0.71, …, 0.99.
    pub grid: Vec<ThresholdRow>,
    /// The grid row with the highest F1 (the lowest threshold among equals).
    pub best_grid: ThresholdRow,
    /// The highest F1 over every threshold (each distinct score), the grid's range or not.
    pub best_any: ThresholdRow,
    /// Area under the ROC curve; `None` without both classes.
    pub roc_auc: Option<f64>,
}

/// The thresholds of the grid: 0.70 to 0.99 by 0.01.
pub fn threshold_grid() -> Vec<f32> {
    (70..=99).map(|c| c as f32 / 100.0).collect()
}

/// Precision, recall and F1 on the grid and at the best threshold, and ROC-AUC.
pub fn score(similarities: &[f32], duplicate: &[bool]) -> Scores {
    assert_eq!(similarities.len(), duplicate.len(), "one label per score");
    let positives = duplicate.iter().filter(|d| **d).count();
    let negatives = duplicate.len() - positives;

    let grid: Vec<ThresholdRow> = threshold_grid()
        .into_iter()
        .map(|t| {
            let (mut tp, mut fp) = (0, 0);
            for (&s, &d) in similarities.iter().zip(duplicate) {
                if s >= t {
                    if d {
                        tp += 1;
                    } else {
                        fp += 1;
                    }
                }
            }
            ThresholdRow::new(t, tp, fp, positives)
        })
        .collect();
    let best_of = |rows: &mut dyn Iterator<Item = ThresholdRow>| {
        rows.fold(None::<ThresholdRow>, |best, r| match best {
            Some(b) if b.f1 >= r.f1 => Some(b),
            _ => Some(r),
        })
    };
    let best_grid = best_of(&mut grid.iter().copied())
        .unwrap_or_else(|| ThresholdRow::new(0.7, 0, 0, positives));

    // Descending by score: each distinct score, taken as the threshold, admits a prefix.
    let mut order: Vec<usize> = (0..similarities.len()).collect();
    order.sort_by(|&a, &b| similarities[b].total_cmp(&similarities[a]));
    let mut best_any = ThresholdRow::new(f32::INFINITY, 0, 0, positives);
    let (mut tp, mut fp) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        if duplicate[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order
            .get(k + 1)
            .is_none_or(|&j| similarities[j] < similarities[i]);
        if last_of_tie {
            let row = ThresholdRow::new(similarities[i], tp, fp, positives);
            if row.f1 > best_any.f1 {
                best_any = row;
            }
        }
    }

    // Mann–Whitney: AUC = (sum of the positives' ranks − P(P+1)/2) / (P·N), tied scores
    // sharing their average rank.
    let roc_auc = (positives > 0 && negatives > 0).then(|| {
        let mut rank_sum = 0.0f64;
        let ascending: Vec<usize> = order.iter().rev().copied().collect();
        let mut k = 0;
        while k < ascending.len() {
            let mut end = k + 1;
            while end < ascending.len()
                && similarities[ascending[end]] == similarities[ascending[k]]
            {
                end += 1;
            }
            // Ranks k+1 ..= end, averaged.
            let avg = (k + 1 + end) as f64 / 2.0;
            rank_sum += avg * ascending[k..end].iter().filter(|&&i| duplicate[i]).count() as f64;
            k = end;
        }
        let p = positives as f64;
        (rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64)
    });

    Scores {
        grid,
        best_grid,
        best_any,
        roc_auc,
    }
}

/// The outcome of one evaluation run.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub model: String,
    pub dim: usize,
    pub sample: Sample,
    pub pairs: usize,
    pub positives: usize,
    pub negatives: usize,
    /// Distinct questions embedded (each once).
    pub sentences: usize,
    pub embed_seconds: f64,
    pub scores: Scores,
}

impl EvalReport {
    /// Questions embedded per second of wall time.
    pub fn sentences_per_second(&self) -> f64 {
        if self.embed_seconds > 0.0 {
            self.sentences as f64 / self.embed_seconds
        } else {
            0.0
        }
    }

    /// The report as Markdown: a summary list and the threshold table.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let sample = match self.sample {
            Sample::All => "all pairs".to_owned(),
            Sample::Random { pairs, seed } => {
                format!("seeded subsample of {pairs} pairs, seed {seed}")
            }
        };
        let s = &self.scores;
        let auc = s.roc_auc.map_or("n/a".to_owned(), |a| format!("{a:.4}"));
        let _ = writeln!(md, "- Model: {} ({} dimensions)", self.model, self.dim);
        let _ = writeln!(
            md,
            "- Pairs: {} ({} duplicates, {} not), {sample}",
            self.pairs, self.positives, self.negatives
        );
        let _ = writeln!(md, "- ROC-AUC: {auc}");
        let _ = writeln!(
            md,
            "- Best F1 on the grid: {:.4} at threshold {:.2} (precision {:.4}, recall {:.4})",
            s.best_grid.f1, s.best_grid.threshold, s.best_grid.precision, s.best_grid.recall
        );
        let _ = writeln!(
            md,
            "- Best F1 at any threshold: {:.4} at {:.4} (precision {:.4}, recall {:.4})",
            s.best_any.f1, s.best_any.threshold, s.best_any.precision, s.best_any.recall
        );
        let _ = writeln!(
            md,
            "- Embedding: {} distinct questions in {:.1} s, {:.0} sentences/s",
            self.sentences,
            self.embed_seconds,
            self.sentences_per_second()
        );
        let _ = writeln!(md);
        let _ = writeln!(md, "| threshold | precision | recall | F1 | TP | FP | FN |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
        for r in &s.grid {
            let mark = if r.threshold == s.best_grid.threshold {
                "**"
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {mark}{:.2}{mark} | {:.4} | {:.4} | {mark}{:.4}{mark} | {} | {} | {} |",
                r.threshold,
                r.precision,
                r.recall,
                r.f1,
                r.true_positives,
                r.false_positives,
                r.false_negatives
            );
        }
        md
    }
}

/// Texts embedded per `embed` call (progress is reported between calls).
const CHUNK: usize = 4_096;

/// Embeds both sides of every pair (each distinct question once) and scores the cosine
/// similarities. `progress(done, total)` is called after each chunk of questions.
pub fn evaluate(
    embedder: &dyn Embedder,
    sample: Sample,
    pairs: &[Pair],
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    let mut sides = Vec::with_capacity(pairs.len());
    for p in pairs {
        let mut side = [0; 2];
        for (slot, t) in side.iter_mut().zip([p.text_a.as_str(), p.text_b.as_str()]) {
            *slot = *index.entry(t).or_insert_with(|| {
                texts.push(t);
                texts.len() - 1
            });
        }
        sides.push((side[0], side[1]));
    }

    let started = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(CHUNK) {
        vectors.extend(embedder.embed(chunk)?);
        progress(vectors.len(), texts.len());
    }
    let embed_seconds = started.elapsed().as_secs_f64();

    let similarities: Vec<f32> = sides
        .iter()
        .map(|&(a, b)| cosine(&vectors[a], &vectors[b]))
        .collect();
    let duplicate: Vec<bool> = pairs.iter().map(|p| p.duplicate).collect();
    let positives = duplicate.iter().filter(|d| **d).count();
    Ok(EvalReport {
        model: embedder.name().to_owned(),
        dim: embedder.dim(),
        sample,
        pairs: pairs.len(),
        positives,
        negatives: pairs.len() - positives,
        sentences: texts.len(),
        embed_seconds,
        scores: score(&similarities, &duplicate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_exact_with_ties() {
        let d = [true, true, false, false];
        assert_eq!(score(&[0.9, 0.8, 0.2, 0.1], &d).roc_auc, Some(1.0));
        assert_eq!(score(&[0.1, 0.2, 0.8, 0.9], &d).roc_auc, Some(0.0));
        assert_eq!(score(&[0.5, 0.5, 0.5, 0.5], &d).roc_auc, Some(0.5));
        // Positives 0.9, 0.4; negatives 0.6, 0.4: pairs (0.9>0.6), (0.9>0.4), (0.4<0.6), (0.4=0.4)
        // → (1 + 1 + 0 + 0.5) / 4.
        assert_eq!(score(&[0.9, 0.4, 0.6, 0.4], &d).roc_auc, Some(0.625));
        assert_eq!(score(&[0.9, 0.4], &[true, true]).roc_auc, None);
    }

    #[test]
    fn precision_recall_f1_on_the_grid() {
        // Two duplicates at 0.95 and 0.75, two others at 0.85 and 0.5.
        let s = score(&[0.95, 0.75, 0.85, 0.5], &[true, true, false, false]);
        let at = |t: f32| *s.grid.iter().find(|r| r.threshold == t).unwrap();
        let r = at(0.70);
        assert_eq!(
            (r.true_positives, r.false_positives, r.false_negatives),
            (2, 1, 0)
        );
        assert!((r.precision - 2.0 / 3.0).abs() < 1e-12 && r.recall == 1.0);
        assert!((r.f1 - 0.8).abs() < 1e-12);
        let r = at(0.90);
        assert_eq!(
            (r.true_positives, r.false_positives, r.false_negatives),
            (1, 0, 1)
        );
        assert_eq!((r.precision, r.recall), (1.0, 0.5));
        let r = at(0.99);
        assert_eq!((r.precision, r.recall, r.f1), (0.0, 0.0, 0.0));
        assert_eq!(s.grid.len(), 30);
        assert_eq!(s.best_grid.threshold, 0.70);
        assert_eq!(s.best_any.threshold, 0.75);
        assert!((s.best_any.f1 - 0.8).abs() < 1e-12);
    }

    #[test]
    fn grid_thresholds_are_exact_hundredths() {
        // 0.8 must count as reaching 0.80, however the grid is computed.
        let s = score(&[0.8], &[true]);
        assert_eq!(
            s.grid
                .iter()
                .find(|r| r.threshold == 0.8)
                .unwrap()
                .true_positives,
            1
        );
    }

    #[test]
    fn subsample_is_deterministic_distinct_and_sorted() {
        let a = subsample(80_854, 2_000, 42);
        assert_eq!(a, subsample(80_854, 2_000, 42));
        assert_ne!(a, subsample(80_854, 2_000, 43));
        assert_eq!(a.len(), 2_000);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(*a.last().unwrap() < 80_854);
        assert_eq!(subsample(5, 10, 1), vec![0, 1, 2, 3, 4]);
        // Pinned: a change of the sampler changes every published figure.
        assert_eq!(&subsample(1_000, 5, 42), &SAMPLE_1000_5_42);
    }

    const SAMPLE_1000_5_42: [usize; 5] = [41, 160, 280, 346, 741];

    #[test]
    fn splitmix64_matches_its_reference_output() {
        // First outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn reads_the_json_member_of_a_tar_gz() {
        let json = br#"[{"text_a": "a?", "text_b": "b?", "label": 1},
                        {"text_a": "c?", "text_b": "d?", "label": 0}]"#;
        let dir = std::env::temp_dir().join(format!("plexus-embed-qqp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pairs.json.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut readme = tar::Header::new_gnu();
        readme.set_size(2);
        readme.set_cksum();
        tar.append_data(&mut readme, "examples/README.md", &b"hi"[..])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "examples/benchmark/pairs.json", &json[..])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();

        let pairs = load_qqp(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            pairs,
            vec![
                Pair {
                    text_a: "a?".into(),
                    text_b: "b?".into(),
                    duplicate: true
                },
                Pair {
                    text_a: "c?".into(),
                    text_b: "d?".into(),
                    duplicate: false
                },
            ]
        );
    }
}
