//! Micro-benchmark of the canonical request/response (de)serialization:
//! `cargo run --release -p plexus-protocol --example parse_bench`.
#![allow(clippy::unwrap_used)]
use plexus_protocol::openai::{ChatCompletion, ChatCompletionRequest};
use std::time::Instant;

fn main() {
    let req = br#"{"model":"gpt","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Give me one short sentence about load testing."}],"max_tokens":32}"#;
    let resp = br#"{"id":"chatcmpl-123","object":"chat.completion","created":1727346142,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Load testing reveals how a system behaves under expected and peak traffic.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":12,"total_tokens":26,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_b40fb1c6fb"}"#;
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let r: ChatCompletionRequest = serde_json::from_slice(req).unwrap();
        std::hint::black_box(r);
    }
    println!(
        "parse request: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let r: ChatCompletionRequest = serde_json::from_slice(req).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let c = r.clone();
        std::hint::black_box(serde_json::to_vec(&c).unwrap());
    }
    println!(
        "clone + serialize request: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let c: ChatCompletion = serde_json::from_slice(resp).unwrap();
        std::hint::black_box(serde_json::to_vec(&c).unwrap());
    }
    println!(
        "parse + serialize response: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
