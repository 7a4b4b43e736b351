//! Open-loop load generator for the limits benchmark (`bench/limits.sh`).
//!
//! Requests are sent on a fixed schedule (`--rate` per second), whatever the answers do, and
//! each latency is measured from its scheduled time, so a slow gateway cannot hide its delay
//! by slowing the load down (no coordinated omission). Latencies are reported per status, so
//! the admitted requests' p99 can be read apart from the fast 429s.
//!
//! `cargo run --profile bench-release -p plexus-cli --example openloop -- --url URL --rate 1000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// The chat completions URL.
    #[arg(long, default_value = "http://127.0.0.1:4000/v1/chat/completions")]
    url: String,
    #[arg(long, default_value = "sk-bench-master-key")]
    key: String,
    #[arg(long, default_value = "gpt")]
    model: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Most requests in flight; a request due beyond it is counted as not sent.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.max_in_flight)
        .build()
        .unwrap();
    let body = serde_json::json!({
        "model": args.model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Give me one short sentence about load testing."}
        ],
        "max_tokens": 32
    })
    .to_string();
    let results: Arc<Mutex<BTreeMap<u16, Vec<u64>>>> = Arc::default();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let total = (args.rate * args.duration).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = tokio::time::Instant::now();
    let mut not_sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        let (client, body, url, key, results) = (
            client.clone(),
            body.clone(),
            args.url.clone(),
            args.key.clone(),
            results.clone(),
        );
        tasks.spawn(async move {
            let status = match client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            let micros = due.elapsed().as_micros() as u64;
            results
                .lock()
                .unwrap()
                .entry(status)
                .or_default()
                .push(micros);
            drop(permit);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let results = results.lock().unwrap();
    let done: usize = results.values().map(Vec::len).sum();
    println!(
        "offered {:.0}/s for {:.1}s: {} requests, {} not sent (over {} in flight), {:.0}/s completed",
        args.rate,
        args.duration,
        total,
        not_sent,
        args.max_in_flight,
        done as f64 / elapsed
    );
    println!("| status | count | share | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (status, lat) in results.iter() {
        let mut lat = lat.clone();
        lat.sort_unstable();
        println!(
            "| {} | {} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.2} |",
            if *status == 0 {
                "error".to_owned()
            } else {
                status.to_string()
            },
            lat.len(),
            100.0 * lat.len() as f64 / done.max(1) as f64,
            percentile(&lat, 0.50),
            percentile(&lat, 0.90),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
    }
}
