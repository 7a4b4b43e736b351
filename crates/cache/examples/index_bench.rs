//! Benchmark of the semantic cache's vector index: HNSW against an exact scan.
//!
//! ```text
//! cargo run --release -p plexus-cache --example index_bench            # 10k and 100k
//! cargo run --release -p plexus-cache --example index_bench -- 5000    # other sizes
//! ```
//!
//! Prints Markdown tables: the crossover (median latency of a scan and of a graph search by
//! size), then for each size the build time, single-thread query latency p50/p99 and recall@1
//! and @10 against the exact scan, for three kinds of query, and the same after deleting 30%.
//!
//! Data: 384-dimensional unit vectors (all-MiniLM-L6-v2's size). "Embedding-like" vectors have
//! a low intrinsic dimension, as sentence embeddings do: a 32-dimensional Gaussian through a
//! fixed random 384×32 map, plus 5% isotropic noise, normalized. Queries are fresh vectors of
//! the same kind ("unrelated": the nearest entry is at cosine ~0.65), near-duplicates of
//! entries ("paraphrase": cosine ~0.9 to their source, what a semantic-cache hit looks like),
//! and, for contrast, uniform random unit vectors against a uniform random index: the
//! worst case of every graph index, where all points are nearly equidistant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use plexus_cache::index::{IndexConfig, VectorIndex};

const DIM: usize = 384;
const LATENT: usize = 32;
const NOISE: f32 = 0.05;
const QUERIES: usize = 500;

/// SplitMix64 with Gaussian samples (Box–Muller): deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    EmbeddingLike,
    Uniform,
}

struct Data {
    rng: Rng,
    kind: Kind,
    map: Vec<f32>,
}

impl Data {
    fn new(seed: u64, kind: Kind) -> Self {
        let mut rng = Rng(seed);
        let map = (0..DIM * LATENT).map(|_| rng.gaussian()).collect();
        Self { rng, kind, map }
    }

    fn sample(&mut self) -> Vec<f32> {
        if self.kind == Kind::Uniform {
            return normalized((0..DIM).map(|_| self.rng.gaussian()).collect());
        }
        let z: Vec<f32> = (0..LATENT).map(|_| self.rng.gaussian()).collect();
        let scale = (LATENT as f32).sqrt();
        let v = self
            .map
            .chunks_exact(LATENT)
            .map(|row| row.iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() / scale)
            .map(|x| x + NOISE * self.rng.gaussian())
            .collect();
        normalized(v)
    }

    /// A near-duplicate of `v`: cosine ~0.9.
    fn paraphrase(&mut self, v: &[f32]) -> Vec<f32> {
        let sigma = 0.47 / (DIM as f32).sqrt();
        normalized(v.iter().map(|x| x + sigma * self.rng.gaussian()).collect())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

struct Measured {
    p50: Duration,
    p99: Duration,
    recall1: f64,
    recall10: f64,
}

/// Latency of `search` (graph or scan) and its recall against the exact scan.
fn measure(index: &VectorIndex, queries: &[Vec<f32>], exact: bool) -> Measured {
    measure_ef(index, queries, exact, index.config().ef_search)
}

fn measure_ef(index: &VectorIndex, queries: &[Vec<f32>], exact: bool, ef: usize) -> Measured {
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            index
                .search_exact(q, 10)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect()
        })
        .collect();
    let mut times = Vec::with_capacity(queries.len());
    let (mut hit1, mut hit10) = (0, 0);
    for (q, truth) in queries.iter().zip(&truth) {
        let start = Instant::now();
        let hits = if exact {
            index.search_exact(q, 10).unwrap()
        } else {
            index.search_with_ef(q, 10, ef).unwrap()
        };
        times.push(start.elapsed());
        let want: HashSet<u64> = truth.iter().copied().collect();
        hit10 += hits.iter().filter(|h| want.contains(&h.0)).count();
        hit1 += usize::from(hits.first().map(|h| h.0) == truth.first().copied());
    }
    times.sort();
    Measured {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        recall1: hit1 as f64 / queries.len() as f64,
        recall10: hit10 as f64 / (queries.len() * 10) as f64,
    }
}

fn graph_only() -> IndexConfig {
    IndexConfig {
        exact_below: 0,
        auto_compact: false,
        ..IndexConfig::default()
    }
}

fn crossover() {
    println!("### Crossover: median latency of one top-10 search (embedding-like data)\n");
    println!("| entries | exact scan p50 | HNSW p50 | HNSW recall@10 |");
    println!("|---:|---:|---:|---:|");
    let mut data = Data::new(7, Kind::EmbeddingLike);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| data.sample()).collect();
    let mut id = 0u64;
    for size in [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000] {
        while (id as usize) < size {
            index.insert(id, &data.sample()).unwrap();
            id += 1;
        }
        // Interleaved, so that load from elsewhere on the machine hits both alike.
        let (mut scan, mut graph) = (Vec::new(), Vec::new());
        let mut found = 0;
        for q in &queries {
            let start = Instant::now();
            let exact = index.search_exact(q, 10).unwrap();
            scan.push(start.elapsed());
            let start = Instant::now();
            let approx = index.search(q, 10).unwrap();
            graph.push(start.elapsed());
            found += approx.iter().filter(|h| exact.contains(h)).count();
        }
        scan.sort();
        graph.sort();
        println!(
            "| {size} | {} | {} | {:.3} |",
            us(percentile(&scan, 0.5)),
            us(percentile(&graph, 0.5)),
            found as f64 / (queries.len() * 10) as f64
        );
    }
    println!();
}

fn row(label: &str, m: &Measured) {
    println!(
        "| {label} | {} | {} | {:.3} | {:.3} |",
        us(m.p50),
        us(m.p99),
        m.recall1,
        m.recall10
    );
}

fn at_size(n: usize) {
    let mut data = Data::new(11, Kind::EmbeddingLike);
    let entries: Vec<Vec<f32>> = (0..n).map(|_| data.sample()).collect();
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    let start = Instant::now();
    for (id, v) in entries.iter().enumerate() {
        index.insert(id as u64, v).unwrap();
    }
    let build = start.elapsed();
    let unrelated: Vec<Vec<f32>> = (0..QUERIES).map(|_| data.sample()).collect();
    let paraphrases: Vec<Vec<f32>> = (0..QUERIES)
        .map(|i| data.paraphrase(&entries[(i * 7_919) % n]))
        .collect();

    let config = index.config();
    println!(
        "### {n} entries (m = {}, ef_construction = {}, ef_search = {})\n",
        config.m, config.ef_construction, config.ef_search
    );
    println!(
        "Build: {:.1} s ({:.0} µs per insert, one thread); {} graph layers.\n",
        build.as_secs_f64(),
        build.as_secs_f64() * 1e6 / n as f64,
        index.stats().layers
    );
    println!("| search | p50 | p99 | recall@1 | recall@10 |");
    println!("|---|---:|---:|---:|---:|");
    row("exact scan", &measure(&index, &unrelated, true));
    row(
        "HNSW, unrelated queries",
        &measure(&index, &unrelated, false),
    );
    row(
        "HNSW, paraphrase queries",
        &measure(&index, &paraphrases, false),
    );
    for ef in [32, 64, 256] {
        let label = format!("HNSW, unrelated queries, ef_search = {ef}");
        row(&label, &measure_ef(&index, &unrelated, false, ef));
    }

    for id in (0..n as u64).filter(|id| id % 10 < 3) {
        index.remove(id);
    }
    let mut deleted_ok = true;
    for q in unrelated.iter().chain(&paraphrases) {
        deleted_ok &= index.search(q, 10).unwrap().iter().all(|h| h.0 % 10 >= 3);
    }
    row(
        "HNSW after deleting 30% (tombstones)",
        &measure(&index, &unrelated, false),
    );
    let start = Instant::now();
    index.compact();
    let compaction = start.elapsed();
    row("HNSW after compaction", &measure(&index, &unrelated, false));
    let start = Instant::now();
    let refill = n / 10;
    for i in 0..refill {
        index.insert(10_000_000 + i as u64, &data.sample()).unwrap();
    }
    let per_insert = start.elapsed().as_secs_f64() * 1e6 / refill as f64;
    row(
        "HNSW after inserting 10% more",
        &measure(&index, &unrelated, false),
    );
    println!(
        "\nDeleted entries returned: {}. Compaction of {} live entries: {:.1} s. \
         Inserts at this size: {per_insert:.0} µs each.\n",
        if deleted_ok { "none" } else { "SOME (bug)" },
        n - (n * 3).div_ceil(10),
        compaction.as_secs_f64()
    );
}

fn uniform(n: usize) {
    let mut data = Data::new(13, Kind::Uniform);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    for id in 0..n as u64 {
        index.insert(id, &data.sample()).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..QUERIES / 2).map(|_| data.sample()).collect();
    println!("### Worst case: {n} uniform random unit vectors\n");
    println!("| search | p50 | p99 | recall@1 | recall@10 |");
    println!("|---|---:|---:|---:|---:|");
    row("exact scan", &measure(&index, &queries, true));
    row("HNSW", &measure(&index, &queries, false));
    println!();
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    crossover();
    for &n in &sizes {
        at_size(n);
    }
    uniform(sizes[0].min(20_000));
}
