//! Embedding throughput on real questions (the first QQP pairs), one thread and all cores.
//!
//! ```text
//! cargo run --release -p plexus-embed --example throughput -- [QUESTIONS]
//! ```
//! The model comes from `PLEXUS_MINILM_DIR`; the data from the workspace's default path.

use std::path::PathBuf;
use std::time::Instant;

use plexus_embed::{dir_from_env, eval, Embedder, MiniLm};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000);
    let dir = dir_from_env().ok_or("set PLEXUS_MINILM_DIR")?;
    let pairs = eval::load_qqp(&PathBuf::from(eval::QQP_PATH))?;
    let texts: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.text_a.as_str(), p.text_b.as_str()])
        .take(n)
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let tokens: usize = {
        let m = MiniLm::load(&dir)?;
        texts.iter().map(|t| m.tokenize(t).len()).sum()
    };
    println!(
        "{} questions, {:.1} tokens each on average",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );
    for threads in [1, cores] {
        let m = MiniLm::load(&dir)?.with_threads(threads);
        m.embed(&texts[..texts.len().min(64)])?; // warm-up
        let started = Instant::now();
        m.embed(&texts)?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "threads {threads}: {:.0} sentences/s ({secs:.2} s)",
            texts.len() as f64 / secs
        );
        // Single-sentence calls: a cache lookup's latency.
        let started = Instant::now();
        for t in texts.iter().take(200) {
            m.embed(&[t])?;
        }
        let per = started.elapsed().as_secs_f64() / texts.len().min(200) as f64;
        println!(
            "threads {threads}: one question per call: {:.2} ms each",
            per * 1e3
        );
    }
    Ok(())
}
