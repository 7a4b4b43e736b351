//! Key listing at scale: fills a database with N keys (default 1,000,000) spread over 1,000
//! teams, then times `list_keys` pages (first page, deep cursors, per-team filters).
//!
//! `cargo run --release -p plexus-store --example keys_at_scale -- sqlite:///tmp/keys.db [N]`
//! `cargo run --release -p plexus-store --example keys_at_scale -- postgres://postgres@127.0.0.1/test [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_store::{KeyFilter, Store};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "sqlite:///tmp/plexus-keys.db".into());
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let store = Store::connect(&url).await.unwrap();
    let have = store.count_keys().await.unwrap();
    if have < n {
        let t = Instant::now();
        store.bulk_fill_keys_for_benchmark(have, n).await.unwrap();
        println!(
            "filled {} keys in {:.1}s",
            n - have,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "{} keys in {}",
        store.count_keys().await.unwrap(),
        store.backend()
    );
    let mut times = Vec::new();
    let mut after: Option<String> = None;
    for i in 0..200u64 {
        // Cursor jumps around the id space; every 4th call filters by a team.
        if i % 10 == 0 {
            after = Some(format!("k{:08}", (i * 4_999) % n));
        }
        let filter = KeyFilter {
            team_id: (i % 4 == 0).then(|| format!("team{:04}", i % 1000)),
            after: after.clone(),
            limit: 100,
            ..Default::default()
        };
        let t = Instant::now();
        let (page, next) = store.list_keys(&filter).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!page.is_empty() || next.is_none());
        after = next;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "list_keys (100 per page, 200 calls): p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
}
