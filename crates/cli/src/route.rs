//! `plexus route train` and `plexus route eval`: the learned quality predictor of `model: auto`
//! trained offline from RouteLLM-format data, and its RouteLLM-style evaluation (APGR, CPT,
//! baselines). Offline commands: they read files and embed prompts in process
//! (all-MiniLM-L6-v2), and never talk to a server. docs/routing-eval.md has the method and the
//! measured table.
//!
//! `--embeddings-cache FILE` keeps the prompt embeddings between runs. Its format
//! (little-endian): the magic `PXRTEMB1`, the dimension (u32), the number of entries (u64), then
//! each entry: the SHA-256 of `embedder name + "\n" + prompt` (32 bytes) and its vector (f32s).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use plexus_embed::{Embedder, MiniLm};
use plexus_select::eval::{self, BaselineInput, BaselineScores, Metrics, Report};
use plexus_select::predictor::{self, QualityPredictor, TrainParams, TrainingExample};
use plexus_select::routellm::{self, LabelledPrompt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Train or evaluate the learned quality predictor (offline; reads RouteLLM-format CSV).
#[derive(Args, Debug)]
pub struct RouteCmd {
    #[command(subcommand)]
    cmd: RouteSub,
}

#[derive(Subcommand, Debug)]
enum RouteSub {
    /// Train a quality predictor from RouteLLM-format CSV files and write router.json.
    Train(TrainArgs),
    /// Evaluate a router (or train one on a seeded split) against the baselines: APGR,
    /// CPT(50%), CPT(80%) and the quality-versus-strong-share curve.
    Eval(EvalArgs),
}

/// Options shared by both commands: the data, the models, the embedder.
#[derive(Args, Debug)]
struct DataArgs {
    /// A RouteLLM-format CSV file (`prompt` column plus one True/False column per model), or a
    /// directory whose *.csv files are all read. Repeatable.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Prompts to exclude: a JSONL file of objects with `eval_prompt` (or `prompt`), such as
    /// RouteLLM's contaminated_prompts.jsonl.
    #[arg(long)]
    exclude: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 directory (`scripts/fetch-minilm.sh` prints it).
    #[arg(long, env = "PLEXUS_MINILM_DIR")]
    embedder_dir: Option<PathBuf>,
    /// Keep prompt embeddings in this file between runs (created if missing).
    #[arg(long)]
    embeddings_cache: Option<PathBuf>,
    /// Embedding threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A model the router covers, as `NAME=COLUMN`: the configured model name and the CSV
    /// column with its correctness. Repeatable.
    #[arg(long = "model", required = true, value_parser = parse_mapping)]
    models: Vec<(String, String)>,
    /// Where to write the trained router (JSON).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The weak and the strong model's CSV columns: `--model weak=COLUMN --model
    /// strong=COLUMN`. With --router, each column is looked up among the router's training
    /// columns, then among its model names.
    #[arg(long = "model", required = true, value_parser = parse_mapping)]
    models: Vec<(String, String)>,
    /// A trained router (router.json). Without --split every given prompt is a test prompt,
    /// and the kNN and subject baselines are fitted by 2-fold cross-fitting on them.
    #[arg(long)]
    router: Option<PathBuf>,
    /// Train on this share of the distinct prompts and test on the rest (seeded by --seed).
    /// Without --router a router is trained on the training share; with it only the
    /// baselines are.
    #[arg(long)]
    split: Option<f64>,
    /// Seed of --split and --sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep a seeded subsample of this many distinct prompts (for a quick run).
    #[arg(long)]
    sample: Option<usize>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_mapping(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, col)) if !name.trim().is_empty() && !col.trim().is_empty() => {
            Ok((name.trim().to_string(), col.trim().to_string()))
        }
        _ => Err(format!("expected NAME=COLUMN, got {s:?}")),
    }
}

pub async fn run(cmd: RouteCmd) -> Result<()> {
    tokio::task::spawn_blocking(move || match cmd.cmd {
        RouteSub::Train(args) => train(args),
        RouteSub::Eval(args) => evaluate(args),
    })
    .await
    .context("the route command's thread failed")?
}

/// The CSV files named by `--data` (directories expanded to their *.csv, sorted).
fn csv_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "csv"))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no *.csv file in {}", p.display());
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Every row of the data, with the correctness of `columns`, minus the excluded prompts.
fn load_rows(args: &DataArgs, columns: &[String]) -> Result<Vec<LabelledPrompt>> {
    let mut rows = Vec::new();
    for file in csv_files(&args.data)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let table = routellm::parse_csv(&text, name.as_deref())
            .with_context(|| format!("in {}", file.display()))?;
        rows.extend(
            table
                .extract(columns)
                .with_context(|| format!("in {}", file.display()))?,
        );
    }
    if let Some(path) = &args.exclude {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let excluded = routellm::parse_contaminated(&text)
            .with_context(|| format!("in {}", path.display()))?;
        let before = rows.len();
        rows.retain(|r| !excluded.contains(&r.prompt));
        eprintln!(
            "excluded {} rows ({} prompts listed in {})",
            before - rows.len(),
            excluded.len(),
            path.display()
        );
    }
    if rows.is_empty() {
        bail!("no rows in the data");
    }
    Ok(rows)
}

const CACHE_MAGIC: &[u8; 8] = b"PXRTEMB1";

/// The embeddings cache in memory: key (SHA-256 of embedder and prompt) → vector.
type VectorCache = HashMap<[u8; 32], Vec<f32>>;

fn cache_key(embedder: &str, prompt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(embedder.as_bytes());
    h.update(b"\n");
    h.update(prompt.as_bytes());
    h.finalize().into()
}

fn read_cache(path: &Path) -> Result<(usize, VectorCache)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let bad = || anyhow::anyhow!("{} is not an embeddings cache", path.display());
    if bytes.len() < 20 || &bytes[..8] != CACHE_MAGIC {
        return Err(bad());
    }
    let dim = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| bad())?) as usize;
    let count = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| bad())?) as usize;
    let entry = 32 + 4 * dim;
    if bytes.len() != 20 + count * entry {
        return Err(bad());
    }
    let mut map = HashMap::with_capacity(count);
    for e in bytes[20..].chunks_exact(entry) {
        let mut key = [0u8; 32];
        key.copy_from_slice(&e[..32]);
        let v = e[32..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        map.insert(key, v);
    }
    Ok((dim, map))
}

fn write_cache(path: &Path, dim: usize, map: &VectorCache) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        w.write_all(CACHE_MAGIC)?;
        w.write_all(&(dim as u32).to_le_bytes())?;
        w.write_all(&(map.len() as u64).to_le_bytes())?;
        let mut keys: Vec<&[u8; 32]> = map.keys().collect();
        keys.sort();
        for k in keys {
            w.write_all(k)?;
            for x in &map[k] {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The embedder's name, the dimension and one vector per prompt (each distinct prompt embedded
/// once, from the cache when it has it).
fn embed_all(args: &DataArgs, prompts: &[&str]) -> Result<(String, usize, Vec<Vec<f32>>)> {
    let dir = args
        .embedder_dir
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .context(
            "no embedder: pass --embedder-dir DIR or set PLEXUS_MINILM_DIR \
             (scripts/fetch-minilm.sh prints it)",
        )?;
    let mut embedder = MiniLm::load(&dir)
        .with_context(|| format!("cannot load the embedder from {}", dir.display()))?;
    if let Some(t) = args.threads {
        embedder = embedder.with_threads(t.max(1));
    }
    let name = embedder.name().to_string();
    let dim = embedder.dim();
    let mut cache = match &args.embeddings_cache {
        Some(p) if p.exists() => {
            let (d, map) = read_cache(p)?;
            if d != dim {
                bail!("{} holds {d}-dimensional vectors, not {dim}", p.display());
            }
            map
        }
        _ => HashMap::new(),
    };
    let mut missing: Vec<&str> = prompts
        .iter()
        .copied()
        .filter(|p| !cache.contains_key(&cache_key(&name, p)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let started = Instant::now();
        eprintln!("embedding {} distinct prompts with {name}", missing.len());
        let mut done = 0;
        for chunk in missing.chunks(1024) {
            let vecs = embedder
                .embed(chunk)
                .context("embedding the prompts failed")?;
            for (p, v) in chunk.iter().zip(vecs) {
                cache.insert(cache_key(&name, p), v);
            }
            done += chunk.len();
            eprintln!(
                "  {done}/{} ({:.1} s)",
                missing.len(),
                started.elapsed().as_secs_f64()
            );
        }
        if let Some(p) = &args.embeddings_cache {
            write_cache(p, dim, &cache)?;
            eprintln!(
                "embeddings cache: {} entries in {}",
                cache.len(),
                p.display()
            );
        }
    }
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        let v = cache
            .get(&cache_key(&name, p))
            .with_context(|| format!("no embedding for {p:?}"))?;
        out.push(v.clone());
    }
    Ok((name, dim, out))
}

fn train(args: TrainArgs) -> Result<()> {
    let names: Vec<String> = args.models.iter().map(|(n, _)| n.clone()).collect();
    let columns: Vec<String> = args.models.iter().map(|(_, c)| c.clone()).collect();
    let rows = load_rows(&args.data, &columns)?;
    let prompts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
    let (embedder, dim, vectors) = embed_all(&args.data, &prompts)?;
    let examples: Vec<TrainingExample> = rows
        .iter()
        .zip(vectors)
        .map(|(r, embedding)| TrainingExample {
            embedding,
            correct: r.correct.clone(),
        })
        .collect();
    let started = Instant::now();
    let params = TrainParams {
        embedder: embedder.clone(),
        ..TrainParams::default()
    };
    let mut router = predictor::train(&examples, &names, &params)?;
    router.set_columns(&columns);
    let json = router.to_json();
    std::fs::write(&args.out, &json)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "trained on {} rows ({} models, {embedder}, {dim} dimensions) in {:.1} s: {} ({} bytes)",
        examples.len(),
        names.len(),
        started.elapsed().as_secs_f64(),
        args.out.display(),
        json.len()
    );
    Ok(())
}

/// The weak and strong columns of `--model weak=COL --model strong=COL`.
fn roles(models: &[(String, String)]) -> Result<(String, String)> {
    let get = |role: &str| {
        models
            .iter()
            .find(|(n, _)| n == role)
            .map(|(_, c)| c.clone())
            .with_context(|| format!("pass --model {role}=COLUMN"))
    };
    Ok((get("weak")?, get("strong")?))
}

fn evaluate(args: EvalArgs) -> Result<()> {
    let (weak_col, strong_col) = roles(&args.models)?;
    let columns = vec![weak_col.clone(), strong_col.clone()];
    let mut rows = load_rows(&args.data, &columns)?;
    if let Some(n) = args.sample {
        let prompts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
        let keep = routellm::sample_unique(&prompts, n, args.seed);
        let mut it = keep.iter();
        rows.retain(|_| it.next().copied().unwrap_or(false));
    }
    let loaded = match &args.router {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(
                QualityPredictor::from_json(&text)
                    .with_context(|| format!("in {}", p.display()))?,
            )
        }
        None => None,
    };
    if loaded.is_none() && args.split.is_none() {
        bail!("pass --router router.json, or --split 0.5 to train on half of the data");
    }
    let prompts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
    let (embedder, dim, vectors) = embed_all(&args.data, &prompts)?;
    let is_train = match args.split {
        Some(share) if share > 0.0 && share < 1.0 => {
            routellm::split_unique(&prompts, share, args.seed)
        }
        Some(share) => bail!("--split must be between 0 and 1 (exclusive), got {share}"),
        None => vec![false; rows.len()],
    };
    // Test prompts: rows of the test side with both labels.
    let test: Vec<usize> = (0..rows.len())
        .filter(|&i| !is_train[i] && rows[i].correct.iter().all(Option::is_some))
        .collect();
    let train_idx: Vec<usize> = (0..rows.len()).filter(|&i| is_train[i]).collect();

    // The router and the names of its weak and strong models.
    let started = Instant::now();
    let (router, weak_name, strong_name) = match loaded {
        Some(r) => {
            if r.embedder() != embedder || r.dim() != dim {
                bail!(
                    "the router was trained on {} ({} dimensions), the data is embedded with \
                     {embedder} ({dim})",
                    r.embedder(),
                    r.dim()
                );
            }
            let w = r
                .model_for(&weak_col)
                .with_context(|| format!("the router covers no model for column {weak_col:?}"))?;
            let s = r
                .model_for(&strong_col)
                .with_context(|| format!("the router covers no model for column {strong_col:?}"))?;
            (r.clone(), w.to_string(), s.to_string())
        }
        None => {
            let examples: Vec<TrainingExample> = train_idx
                .iter()
                .map(|&i| TrainingExample {
                    embedding: vectors[i].clone(),
                    correct: rows[i].correct.clone(),
                })
                .collect();
            let params = TrainParams {
                embedder: embedder.clone(),
                ..TrainParams::default()
            };
            let names = vec!["weak".to_string(), "strong".to_string()];
            let mut r = predictor::train(&examples, &names, &params)?;
            r.set_columns(&columns);
            (r, "weak".to_string(), "strong".to_string())
        }
    };
    let train_secs = started.elapsed().as_secs_f64();

    let weak: Vec<bool> = test
        .iter()
        .map(|&i| rows[i].correct[0] == Some(true))
        .collect();
    let strong: Vec<bool> = test
        .iter()
        .map(|&i| rows[i].correct[1] == Some(true))
        .collect();
    let started = Instant::now();
    let mut scores = Vec::with_capacity(test.len());
    for &i in &test {
        scores.push(
            router
                .benefit(&vectors[i], &weak_name, &strong_name)
                .context("the router cannot score this prompt")?,
        );
    }
    let predict_us = started.elapsed().as_secs_f64() * 1e6 / test.len().max(1) as f64;

    // The baselines: fitted on the split's training side; without --split, by 2-fold
    // cross-fitting on the test prompts (each half scored from the other half).
    let both_train: Vec<usize> = train_idx
        .iter()
        .copied()
        .filter(|&i| rows[i].correct.iter().all(Option::is_some))
        .collect();
    let (baselines, n_train) = if args.split.is_some() {
        (
            baselines_for(&rows, &vectors, dim, &both_train, &test),
            both_train.len(),
        )
    } else {
        let test_prompts: Vec<&str> = test.iter().map(|&i| rows[i].prompt.as_str()).collect();
        let fold = routellm::split_unique(&test_prompts, 0.5, args.seed);
        let mut out = eval::BaselineScores {
            knn10: vec![0.0; test.len()],
            knn20: vec![0.0; test.len()],
            knn50: vec![0.0; test.len()],
            subject_prior: Some(vec![0.0; test.len()]),
        };
        for side in [true, false] {
            let fit: Vec<usize> = (0..test.len())
                .filter(|&j| fold[j] == side)
                .map(|j| test[j])
                .collect();
            let at: Vec<usize> = (0..test.len()).filter(|&j| fold[j] != side).collect();
            let scored: Vec<usize> = at.iter().map(|&j| test[j]).collect();
            let b = baselines_for(&rows, &vectors, dim, &fit, &scored);
            for (n, &j) in at.iter().enumerate() {
                out.knn10[j] = b.knn10[n];
                out.knn20[j] = b.knn20[n];
                out.knn50[j] = b.knn50[n];
            }
            match (&mut out.subject_prior, b.subject_prior) {
                (Some(all), Some(part)) => {
                    for (n, &j) in at.iter().enumerate() {
                        all[j] = part[n];
                    }
                }
                (slot, _) => *slot = None,
            }
        }
        (out, test.len() / 2)
    };
    let report = eval::report(&scores, &weak, &strong, &baselines, n_train)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, train_secs, predict_us);
    }
    Ok(())
}

/// The kNN and subject-prior baselines fitted on the rows `fit` and scored on the rows `scored`.
fn baselines_for(
    rows: &[LabelledPrompt],
    vectors: &[Vec<f32>],
    dim: usize,
    fit: &[usize],
    scored: &[usize],
) -> BaselineScores {
    let train: Vec<f32> = fit
        .iter()
        .flat_map(|&i| vectors[i].iter().copied())
        .collect();
    let test: Vec<f32> = scored
        .iter()
        .flat_map(|&i| vectors[i].iter().copied())
        .collect();
    let train_gain: Vec<f64> = fit.iter().map(|&i| gain(&rows[i].correct)).collect();
    eval::baseline_scores(&BaselineInput {
        train: &train,
        train_gain: &train_gain,
        test: &test,
        dim,
        train_subjects: Some(fit.iter().map(|&i| rows[i].subject.as_deref()).collect()),
        test_subjects: Some(scored.iter().map(|&i| rows[i].subject.as_deref()).collect()),
    })
}

fn gain(correct: &[Option<bool>]) -> f64 {
    let v = |b: Option<bool>| if b == Some(true) { 1.0 } else { 0.0 };
    v(correct[1]) - v(correct[0])
}

fn print_report(r: &Report, train_secs: f64, predict_us: f64) {
    println!(
        "{} test prompts, {} training prompts for the baselines; quality weak {:.4}, strong {:.4}",
        r.n_test, r.n_train, r.q_weak, r.q_strong
    );
    println!("router trained in {train_secs:.1} s, {predict_us:.0} µs per scored prompt");
    println!();
    println!("| router | APGR | CPT(50%) | CPT(80%) |");
    println!("|---|---|---|---|");
    let cell = |c: Option<f64>| c.map_or("never".to_string(), |v| format!("{:.1}%", v * 100.0));
    let line = |name: &str, m: &Metrics| {
        println!(
            "| {name} | {:.4} | {} | {} |",
            m.apgr,
            cell(m.cpt50),
            cell(m.cpt80)
        );
    };
    line("router", &r.router);
    let b = &r.baselines;
    line("random", &b.random);
    line("always_weak", &b.always_weak);
    line("always_strong", &b.always_strong);
    line("knn10", &b.knn10);
    line("knn20", &b.knn20);
    line("knn50", &b.knn50);
    if let Some(m) = &b.subject_prior {
        line("subject_prior (knows the subject)", m);
    }
    println!();
    println!("router curve (strong share → quality):");
    for p in r.curve.iter().step_by(10) {
        println!("  {:>4.0}% → {:.4}", p[0] * 100.0, p[1]);
    }
}
