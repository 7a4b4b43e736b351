//! Runs the QQP pair-classification evaluation and prints the Markdown report.
//!
//! ```text
//! cargo run --release -p plexus-embed --example qqp_eval -- \
//!     [--model DIR] [--data PATH] [--pairs N|all] [--seed S] [--threads T] [--out FILE]
//! ```
//! Defaults: `--model $PLEXUS_MINILM_DIR`, `--data ../shared/data/qqp/similiar_qqp_full.json.tar.gz`
//! (from the workspace root), 2,000 pairs, seed 42, all cores.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use plexus_embed::eval::{self, Sample};
use plexus_embed::{dir_from_env, MiniLm};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qqp_eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut model = dir_from_env();
    let mut data = PathBuf::from(eval::QQP_PATH);
    let mut pairs = Some(eval::DEFAULT_SAMPLE);
    let mut seed = eval::DEFAULT_SEED;
    let mut threads = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(value()?.into()),
            "--data" => data = value()?.into(),
            "--pairs" => {
                let v = value()?;
                pairs = if v == "all" { None } else { Some(v.parse()?) };
            }
            "--seed" => seed = value()?.parse()?,
            "--threads" => threads = Some(value()?.parse()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let model = model.ok_or("no model: pass --model DIR or set PLEXUS_MINILM_DIR")?;

    let started = Instant::now();
    let mut embedder = MiniLm::load(&model)?;
    if let Some(t) = threads {
        embedder = embedder.with_threads(t);
    }
    eprintln!("model loaded in {:.2} s", started.elapsed().as_secs_f64());
    let all = eval::load_qqp(&data)?;
    let sample = match pairs {
        Some(n) if n < all.len() => Sample::Random { pairs: n, seed },
        _ => Sample::All,
    };
    let selected = sample.select(&all);
    eprintln!("{} of {} pairs", selected.len(), all.len());
    let started = Instant::now();
    let report = eval::evaluate(&embedder, sample, &selected, |done, total| {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "  {done}/{total} questions, {secs:.0} s, {:.0}/s",
            done as f64 / secs
        );
    })?;
    let md = report.to_markdown();
    print!("{md}");
    if let Some(path) = out {
        std::fs::write(&path, &md)?;
    }
    Ok(())
}
