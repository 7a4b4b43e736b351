//! `plexus cache eval`: the semantic cache measured on the labelled Quora Question Pairs.
//!
//! Embeds every distinct question of the chosen pairs once (all-MiniLM-L6-v2, in process),
//! then runs the pair classification of `plexus_embed::eval` (precision, recall, F1, ROC-AUC
//! across thresholds) and, for each `--entries` size, the cache simulation of
//! `plexus_cache::sim` (hit rate, precision of hits, recall, lookup latency, the adaptive
//! thresholds), and prints one Markdown report (also written to `--out`).
//!
//! `--vectors FILE` keeps the embeddings between runs: the questions found in it are not
//! embedded again, and the ones embedded now are added to it. Its format (little-endian):
//! the magic `PXVEC\x01\0\0`, the model's name (u32 length + UTF-8), the dimension (u32), the
//! number of questions (u64), each question (u32 length + UTF-8), then every vector (f32s, in
//! the questions' order).

use anyhow::{bail, Context, Result};
use clap::Args;
use plexus_cache::sim::{self, thousands, LabelledPair, SimConfig};
use plexus_embed::eval::{self, EvalReport, Sample};
use plexus_embed::{cosine, Embedder, MiniLm};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The all-MiniLM-L6-v2 directory (`scripts/fetch-minilm.sh` prints it).
    #[arg(long, env = "PLEXUS_MINILM_DIR")]
    model: Option<PathBuf>,
    /// The labelled pairs (`similiar_qqp_full.json.tar.gz` or the `.json`).
    #[arg(long, env = "PLEXUS_QQP_PATH", default_value = eval::QQP_PATH)]
    data: PathBuf,
    /// Pairs to evaluate: a seeded subsample of N, or `all`.
    #[arg(long, default_value = "2000", value_parser = parse_pairs)]
    pairs: PairCount,
    /// Seed of the subsample and of the simulation.
    #[arg(long, default_value_t = eval::DEFAULT_SEED)]
    seed: u64,
    /// Cache sizes to simulate, comma-separated (capped at what the pairs allow).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    entries: Vec<usize>,
    /// Also write the Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Read embeddings from this file and add the new ones to it.
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Embedding threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// The adaptive runs' global threshold (`cache.semantic.threshold`).
    #[arg(long, default_value_t = 0.95)]
    threshold: f32,
    /// Bounds (`cache.semantic.max_false_hit_rate`) of the adaptive runs, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.02,0.1,0.2,0.3,0.4,0.5"
    )]
    bounds: Vec<f64>,
    /// Wrong hits quoted per cache size (the first in the lookups' order), for a reader to
    /// judge.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// The similarity from which wrong hits are quoted.
    #[arg(long, default_value_t = 0.95)]
    examples_from: f32,
}

/// `--pairs`: a number, or every pair.
#[derive(Debug, Clone, Copy)]
pub struct PairCount(Option<usize>);

fn parse_pairs(s: &str) -> Result<PairCount, String> {
    if s == "all" {
        return Ok(PairCount(None));
    }
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("expected a positive number or `all`, got {s:?}")),
        Ok(n) => Ok(PairCount(Some(n))),
    }
}

/// Runs the evaluation on a blocking thread.
pub async fn run(args: EvalArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || evaluate(args))
        .await
        .context("the evaluation thread failed")?
}

/// Texts embedded per call (progress is reported between calls).
const CHUNK: usize = 4_096;

fn evaluate(args: EvalArgs) -> Result<()> {
    let model_dir = args
        .model
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .context("no model: pass --model DIR or set PLEXUS_MINILM_DIR (scripts/fetch-minilm.sh)")?;
    let started = Instant::now();
    let mut embedder = MiniLm::load(&model_dir)
        .with_context(|| format!("cannot load the model from {}", model_dir.display()))?;
    if let Some(t) = args.threads {
        embedder = embedder.with_threads(t.max(1));
    }
    eprintln!("model loaded in {:.2} s", started.elapsed().as_secs_f64());
    let all = eval::load_qqp(&args.data).with_context(|| {
        format!(
            "cannot read the pairs (--data or PLEXUS_QQP_PATH; the default is relative to the \
             workspace root): {}",
            args.data.display()
        )
    })?;
    let sample = match args.pairs.0 {
        Some(n) if n < all.len() => Sample::Random {
            pairs: n,
            seed: args.seed,
        },
        _ => Sample::All,
    };
    let selected = sample.select(&all);
    eprintln!("{} of {} pairs", selected.len(), all.len());

    // Each distinct question once.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    let mut labelled: Vec<LabelledPair> = Vec::with_capacity(selected.len());
    for p in &selected {
        let mut side = [0; 2];
        for (slot, t) in side.iter_mut().zip([p.text_a.as_str(), p.text_b.as_str()]) {
            *slot = *ids.entry(t).or_insert_with(|| {
                texts.push(t);
                texts.len() - 1
            });
        }
        labelled.push(LabelledPair {
            q1: side[0],
            q2: side[1],
            duplicate: p.duplicate,
        });
    }

    let (vectors, fresh) = embed_all(&embedder, &texts, args.vectors.as_deref())?;

    let similarities: Vec<f32> = labelled
        .iter()
        .map(|p| cosine(&vectors[p.q1], &vectors[p.q2]))
        .collect();
    let duplicate: Vec<bool> = labelled.iter().map(|p| p.duplicate).collect();
    let positives = duplicate.iter().filter(|d| **d).count();
    let classification = EvalReport {
        model: embedder.name().to_owned(),
        dim: embedder.dim(),
        sample,
        pairs: labelled.len(),
        positives,
        negatives: labelled.len() - positives,
        sentences: texts.len(),
        embed_seconds: fresh.seconds,
        scores: eval::score(&similarities, &duplicate),
    };

    let mut md = String::new();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(md, "# Semantic cache evaluation\n");
    let _ = writeln!(md, "`plexus {}`\n", command.join(" "));
    let _ = writeln!(
        md,
        "- Data: {} ({} pairs)",
        args.data.display(),
        thousands(all.len())
    );
    let _ = writeln!(
        md,
        "- Vectors: {} distinct questions; {} embedded now in {:.1} s ({:.0} sentences/s, {} \
         threads available){}",
        thousands(texts.len()),
        thousands(fresh.embedded),
        fresh.seconds,
        if fresh.seconds > 0.0 {
            fresh.embedded as f64 / fresh.seconds
        } else {
            0.0
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        match &args.vectors {
            Some(p) => format!(", {} read from {}", thousands(fresh.reused), p.display()),
            None => String::new(),
        }
    );
    let _ = writeln!(md, "\n## Pair classification\n");
    // The embedding line of the classification report is replaced by the one above.
    for line in classification
        .to_markdown()
        .lines()
        .filter(|l| !l.starts_with("- Embedding:"))
    {
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md, "\n## Cache simulation\n");
    let _ = writeln!(
        md,
        "One partition; the q1 of each paired query is cached, its q2 is asked; unrelated \
         queries (half as many as the paired ones) are q2s whose q1 is not cached; filler \
         entries (questions of other pairs) make up the size. A hit is correct only on the \
         query's own q1 with the pair labelled duplicate. Recall: correct hits over the paired \
         queries labelled duplicate. Seed {}.",
        args.seed
    );
    if let Some(b) = args.bounds.iter().find(|b| !(**b > 0.0 && **b <= 1.0)) {
        bail!("--bounds: {b} is not in (0, 1]");
    }
    let config = SimConfig {
        global_threshold: args.threshold,
        bounds: args.bounds.clone(),
        seed: args.seed,
        examples: args.examples,
        examples_from: args.examples_from,
        ..SimConfig::default()
    };
    let mut done: Vec<sim::Plan> = Vec::new();
    for &n in &args.entries {
        let started = Instant::now();
        let plan = sim::plan(&labelled, n, args.seed);
        if plan.capped() && done.iter().any(|p| p.entries == plan.entries) {
            let _ = writeln!(
                md,
                "\n{} entries requested: capped to the {} entries above.",
                thousands(n),
                thousands(plan.entries.len())
            );
            continue;
        }
        eprintln!(
            "simulating {} entries ({} paired, {} unrelated lookups)",
            thousands(plan.entries.len()),
            thousands(plan.paired.len()),
            thousands(plan.unrelated.len())
        );
        let report = sim::simulate(&vectors, &labelled, &plan, &config)?;
        eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
        done.push(plan);
        let _ = writeln!(md, "\n### {} entries\n", thousands(report.entries));
        md.push_str(&report.to_markdown());
        if !report.examples.is_empty() {
            let _ = writeln!(
                md,
                "\nWrong hits at similarity ≥ {:.2}, the first {} in the lookups' order:\n",
                config.examples_from,
                report.examples.len()
            );
            let _ = writeln!(md, "| similarity | wrong because | asked | cached |");
            let _ = writeln!(md, "|---:|---|---|---|");
            for e in &report.examples {
                let _ = writeln!(
                    md,
                    "| {:.3} | {} | {} | {} |",
                    e.similarity,
                    e.kind,
                    cell(texts[e.query]),
                    cell(texts[e.entry])
                );
            }
        }
    }

    let calibration = sim::Calibration::default();
    let _ = writeln!(md, "\n## The pooled floor on a known error curve\n");
    md.push_str(&calibration.to_markdown(&calibration.run()));

    print!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, &md).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `text` as one Markdown table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// What the embedding step did.
struct Fresh {
    embedded: usize,
    reused: usize,
    seconds: f64,
}

/// The vectors of `texts`, in order: from the vectors file where it has them, embedded
/// otherwise (and then added to the file).
fn embed_all(
    embedder: &MiniLm,
    texts: &[&str],
    file: Option<&Path>,
) -> Result<(Vec<Vec<f32>>, Fresh)> {
    let mut stored = match file {
        Some(path) if path.exists() => {
            let f = read_vectors(path)?;
            if f.model != embedder.name() || f.dim != embedder.dim() {
                bail!(
                    "{} holds {} vectors of {} dimensions, the model is {} ({} dimensions): \
                     delete the file or name another",
                    path.display(),
                    f.model,
                    f.dim,
                    embedder.name(),
                    embedder.dim()
                );
            }
            f
        }
        _ => VectorFile {
            model: embedder.name().to_owned(),
            dim: embedder.dim(),
            texts: Vec::new(),
            vectors: Vec::new(),
        },
    };
    let known: HashMap<&str, usize> = stored
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let missing: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| !known.contains_key(t))
        .collect();
    let reused = texts.len() - missing.len();
    if reused > 0 {
        eprintln!("{} questions read from the vectors file", thousands(reused));
    }
    let started = Instant::now();
    let mut embedded = Vec::with_capacity(missing.len());
    for chunk in missing.chunks(CHUNK) {
        embedded.extend(embedder.embed(chunk)?);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "  {}/{} questions embedded, {secs:.0} s, {:.0}/s",
            embedded.len(),
            missing.len(),
            embedded.len() as f64 / secs.max(1e-9)
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let fresh: HashMap<&str, usize> = missing.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| match known.get(t) {
            Some(&i) => stored.vectors[i].clone(),
            None => fresh
                .get(t)
                .map(|&i| embedded[i].clone())
                .unwrap_or_default(),
        })
        .collect();
    drop(known);
    if let (Some(path), false) = (file, missing.is_empty()) {
        stored.texts.extend(missing.iter().map(|t| (*t).to_owned()));
        stored.vectors.extend(embedded);
        write_vectors(path, &stored)?;
        eprintln!(
            "{} vectors saved to {}",
            thousands(stored.texts.len()),
            path.display()
        );
    }
    Ok((
        vectors,
        Fresh {
            embedded: missing.len(),
            reused,
            seconds,
        },
    ))
}

const MAGIC: &[u8; 8] = b"PXVEC\x01\0\0";

struct VectorFile {
    model: String,
    dim: usize,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn read_vectors(path: &Path) -> Result<VectorFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_vectors(&bytes).with_context(|| format!("{} is not a vectors file", path.display()))
}

fn parse_vectors(bytes: &[u8]) -> Result<VectorFile> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        bail!("bad magic");
    };
    let mut cursor = Cursor { rest };
    let model = cursor.string()?;
    let dim = cursor.u32()? as usize;
    let count = usize::try_from(cursor.u64()?)?;
    let mut texts = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        texts.push(cursor.string()?);
    }
    let mut vectors = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        let raw = cursor.take(dim.checked_mul(4).context("dimension overflow")?)?;
        vectors.push(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    if !cursor.rest.is_empty() {
        bail!("{} trailing bytes", cursor.rest.len());
    }
    Ok(VectorFile {
        model,
        dim,
        texts,
        vectors,
    })
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            bail!("truncated");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        Ok(std::str::from_utf8(self.take(n)?)?.to_owned())
    }
}

/// Writes the file beside its final name, then renames it into place.
fn write_vectors(path: &Path, f: &VectorFile) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        let string = |w: &mut BufWriter<std::fs::File>, s: &str| -> std::io::Result<()> {
            let len = u32::try_from(s.len()).map_err(std::io::Error::other)?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(s.as_bytes())
        };
        w.write_all(MAGIC)?;
        string(&mut w, &f.model)?;
        let dim = u32::try_from(f.dim).map_err(std::io::Error::other)?;
        w.write_all(&dim.to_le_bytes())?;
        w.write_all(&(f.texts.len() as u64).to_le_bytes())?;
        for t in &f.texts {
            string(&mut w, t)?;
        }
        for v in &f.vectors {
            if v.len() != f.dim {
                return Err(std::io::Error::other("a vector of another dimension"));
            }
            for x in v {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn vector_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.bin");
        let f = VectorFile {
            model: "m".into(),
            dim: 2,
            texts: vec!["a?".into(), "héllo".into()],
            vectors: vec![vec![0.5, -1.0], vec![f32::MIN_POSITIVE, 3.0]],
        };
        write_vectors(&path, &f).unwrap();
        let g = read_vectors(&path).unwrap();
        assert_eq!((g.model.as_str(), g.dim), ("m", 2));
        assert_eq!(g.texts, f.texts);
        assert_eq!(g.vectors, f.vectors);
        let bytes = std::fs::read(&path).unwrap();
        assert!(parse_vectors(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_vectors(b"PXVEC\x02\0\0").is_err());
    }

    #[test]
    fn pairs_are_a_number_or_all() {
        assert!(parse_pairs("all").unwrap().0.is_none());
        assert_eq!(parse_pairs("2000").unwrap().0, Some(2000));
        assert!(parse_pairs("0").is_err() && parse_pairs("x").is_err());
    }
}
