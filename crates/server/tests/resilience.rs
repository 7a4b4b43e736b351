//! Rate limits, retries, balancing, fallbacks and circuit breakers, driven through the
//! simulator's fault injection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_data, user, Gateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn error_of(resp: reqwest::Response) -> Value {
    resp.json::<Value>().await.unwrap()["error"].clone()
}

/// How many requests the simulator saw for an upstream model name.
fn upstream_hits(gw: &Gateway, model: &str) -> usize {
    gw.mock
        .requests()
        .iter()
        .filter(|r| r.body["model"] == model)
        .count()
}

#[tokio::test]
async fn model_limit_sheds_with_openai_headers_and_names_the_limit() {
    let gw = Gateway::start_with(
        "  - name: limited\n    limits: {rpm: 3}\n    targets: [{provider: oai, model: gpt-4o-mini}]",
        "",
    )
    .await;
    for left in ["2", "1", "0"] {
        let resp = gw.chat(user("limited", "hi")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), Some(left));
        let reset = header(&resp, "x-ratelimit-reset-requests").unwrap();
        assert!(reset.ends_with('s'), "{reset}");
    }
    let resp = gw.chat(user("limited", "hi")).await;
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let err = error_of(resp).await;
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert_eq!(err["type"], "rate_limit_error");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("model `limited`") && msg.contains("requests per minute"),
        "{msg}"
    );
    // Other models are not affected.
    assert_eq!(gw.chat(user("gpt", "hi")).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn key_limits_from_the_admin_api_apply_per_key() {
    let gw = Gateway::start().await;
    let created: Value = gw
        .post("/admin/keys")
        .json(&json!({"name": "tight", "rpm": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let call = || {
        gw.http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&user("gpt", "hi"))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(call().await.unwrap().status(), 200);
    let resp = call().await.unwrap();
    assert_eq!(resp.status(), 429);
    let msg = error_of(resp).await["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("key `"), "{msg}");
    // The master key has no such limit.
    assert_eq!(gw.chat(user("gpt", "hi")).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn token_limits_reserve_the_estimate_and_reconcile_with_usage() {
    let gw = Gateway::start_with(
        "  - name: tokens\n    limits: {tpm: 1000}\n    targets: [{provider: oai, model: gpt-4o-mini}]",
        "",
    )
    .await;
    let mut body = user("tokens", "hello there");
    body["max_tokens"] = json!(600);
    let resp = gw.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), Some("1000"));
    let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining < 400,
        "the estimate (prompt + 600) was reserved: {remaining}"
    );
    // Reconciled with the small real usage, so a second worst case of 600 fits again.
    let resp = gw.chat(body.clone()).await;
    assert_eq!(resp.status(), 200, "reservation was reconciled");
    // A request that alone exceeds the limit can never pass: no pointless retry hint.
    body["max_tokens"] = json!(5000);
    let resp = gw.chat(body).await;
    assert_eq!(resp.status(), 429);
    let msg = error_of(resp).await["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("alone exceeds") && msg.contains("tokens per minute"),
        "{msg}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let gw = Gateway::start_with(
        "  - name: flaky\n    targets: [{provider: oai, model: 'gpt-4o-mini+fail-first-2'}]",
        "retries: {attempts: 3, base_delay: 20ms, max_delay: 50ms}",
    )
    .await;
    let resp = gw.chat(user("flaky", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+fail-first-2"), 3);
    gw.shutdown().await;

    let gw = Gateway::start_with(
        "  - name: flaky\n    targets: [{provider: oai, model: 'gpt-4o-mini+fail-first-2'}]",
        "retries: {attempts: 2, base_delay: 20ms}",
    )
    .await;
    let resp = gw.chat(user("flaky", "hi")).await;
    assert_eq!(resp.status(), 502, "two attempts, both failed");
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+fail-first-2"), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured_within_the_retry_budget() {
    let model = "gpt-4o-mini+fault-429+retry-after-1";
    let gw = Gateway::start_with(
        &format!("  - name: busy\n    targets: [{{provider: oai, model: '{model}'}}]"),
        "retries: {attempts: 2, base_delay: 10ms, budget: 5s}",
    )
    .await;
    let t0 = Instant::now();
    let resp = gw.chat(user("busy", "hi")).await;
    assert!(t0.elapsed() >= Duration::from_secs(1), "waited Retry-After");
    assert_eq!(resp.status(), 429, "the provider's 429 stays a 429");
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(upstream_hits(&gw, model), 2);
    gw.shutdown().await;

    // A Retry-After beyond the budget is not waited for.
    let gw = Gateway::start_with(
        &format!("  - name: busy\n    targets: [{{provider: oai, model: '{model}'}}]"),
        "retries: {attempts: 3, base_delay: 10ms, budget: 200ms}",
    )
    .await;
    let t0 = Instant::now();
    let resp = gw.chat(user("busy", "hi")).await;
    assert!(t0.elapsed() < Duration::from_millis(900));
    assert_eq!(resp.status(), 429);
    assert_eq!(upstream_hits(&gw, model), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn failing_target_fails_over_then_falls_back_to_another_model() {
    let gw = Gateway::start_with(
        "  - name: primary\n    fallbacks: [backup]\n    targets: [{provider: oai, model: 'gpt-4o-mini+fault-500'}, {provider: compat, model: 'gpt-4o+fault-503'}]\n  - name: backup\n    targets: [{provider: claude, model: claude-sonnet-4-5}]",
        "retries: {attempts: 2, base_delay: 10ms}",
    )
    .await;
    for stream in [false, true] {
        let mut body = user("primary", "hi");
        body["stream"] = json!(stream);
        let resp = gw.chat(body).await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(
            header(&resp, "x-plexus-served-by"),
            Some("claude/claude-sonnet-4-5")
        );
        if stream {
            let data = sse_data(resp).await;
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        }
    }
    assert!(upstream_hits(&gw, "gpt-4o-mini+fault-500") >= 2);
    assert!(upstream_hits(&gw, "gpt-4o+fault-503") >= 2);
    gw.shutdown().await;

    // Not a fallback class: the failure is answered as it is.
    let gw = Gateway::start_with(
        "  - name: primary\n    fallbacks: [backup]\n    fallback_on: [context_window]\n    targets: [{provider: oai, model: 'gpt-4o-mini+fault-500'}]\n  - name: backup\n    targets: [{provider: claude, model: claude-sonnet-4-5}]",
        "retries: {attempts: 1}",
    )
    .await;
    let resp = gw.chat(user("primary", "hi")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        header(&resp, "x-plexus-served-by"),
        Some("oai/gpt-4o-mini+fault-500")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_neither_retried_nor_fallen_back() {
    let gw = Gateway::start_with(
        "  - name: strict\n    fallbacks: [gpt]\n    targets: [{provider: oai, model: 'gpt-4o-mini+fault-400'}]",
        "retries: {attempts: 3, base_delay: 10ms}",
    )
    .await;
    let resp = gw.chat(user("strict", "hi")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+fault-400"), 1);
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini"), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn context_overflow_falls_back_to_a_larger_window() {
    let gw = Gateway::start_with(
        "  - name: small\n    fallbacks: [large]\n    targets: [{provider: oai, model: 'gpt-4o-mini+context-20'}]\n  - name: large\n    targets: [{provider: gem, model: gemini-2.5-flash}]",
        "",
    )
    .await;
    let long = "word ".repeat(200);
    let resp = gw.chat(user("small", &long)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-plexus-served-by"),
        Some("gem/gemini-2.5-flash")
    );
    // A short prompt fits the small model and stays there.
    let resp = gw.chat(user("small", "hi")).await;
    assert_eq!(
        header(&resp, "x-plexus-served-by"),
        Some("oai/gpt-4o-mini+context-20")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn circuit_breaker_opens_fails_fast_and_probes_after_cooldown() {
    let model = "gpt-4o-mini+fault-500";
    let gw = Gateway::start_with(
        &format!("  - name: broken\n    targets: [{{provider: oai, model: '{model}'}}]"),
        "retries: {attempts: 1}\ncircuit_breaker: {consecutive_failures: 2, cooldown: 400ms}",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(gw.chat(user("broken", "hi")).await.status(), 502);
    }
    assert_eq!(upstream_hits(&gw, model), 2);
    let t0 = Instant::now();
    let resp = gw.chat(user("broken", "hi")).await;
    assert!(t0.elapsed() < Duration::from_millis(300), "fails fast");
    assert_eq!(resp.status(), 503);
    let msg = error_of(resp).await["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("circuit breaker open"), "{msg}");
    assert_eq!(upstream_hits(&gw, model), 2, "no traffic while open");
    // Fails fast until the cooldown has passed; then one probe goes upstream (and fails).
    let deadline = Instant::now() + Duration::from_secs(5);
    let probed = loop {
        let status = gw.chat(user("broken", "hi")).await.status();
        if status != 503 {
            break status;
        }
        assert!(Instant::now() < deadline, "no probe after the cooldown");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "not before the cooldown"
    );
    assert_eq!(probed, 502);
    assert_eq!(upstream_hits(&gw, model), 3, "one half-open probe");
    assert_eq!(gw.chat(user("broken", "hi")).await.status(), 503);
    gw.shutdown().await;
}

#[tokio::test]
async fn open_breaker_moves_traffic_to_the_healthy_target() {
    let bad = "gpt-4o-mini+fault-500";
    let gw = Gateway::start_with(
        &format!("  - name: pair\n    targets: [{{provider: oai, model: '{bad}'}}, {{provider: oai, model: gpt-4o}}]"),
        "retries: {attempts: 2, base_delay: 5ms}\ncircuit_breaker: {consecutive_failures: 3, cooldown: 60s}",
    )
    .await;
    for _ in 0..30 {
        assert_eq!(gw.chat(user("pair", "hi")).await.status(), 200);
    }
    assert_eq!(upstream_hits(&gw, bad), 3, "open after three failures");
    assert_eq!(upstream_hits(&gw, "gpt-4o"), 30);
    gw.shutdown().await;
}

#[tokio::test]
async fn weighted_balancing_follows_the_weights() {
    let gw = Gateway::start_with(
        "  - name: split\n    targets: [{provider: oai, model: gpt-4o-mini, weight: 3}, {provider: oai, model: gpt-4o, weight: 1}]",
        "",
    )
    .await;
    for _ in 0..400 {
        assert_eq!(gw.chat(user("split", "hi")).await.status(), 200);
    }
    let heavy = upstream_hits(&gw, "gpt-4o-mini") as f64 / 400.0;
    assert!((0.67..=0.83).contains(&heavy), "share {heavy}");
    gw.shutdown().await;
}

#[tokio::test]
async fn latency_balancing_prefers_the_faster_target() {
    let slow = "gpt-4o-mini+latency-60";
    let gw = Gateway::start_with(
        &format!("  - name: quick\n    balance: latency\n    targets: [{{provider: oai, model: '{slow}'}}, {{provider: oai, model: gpt-4o}}]"),
        "",
    )
    .await;
    for _ in 0..60 {
        assert_eq!(gw.chat(user("quick", "hi")).await.status(), 200);
    }
    let slow_hits = upstream_hits(&gw, slow);
    assert!(slow_hits <= 10, "slow target got {slow_hits} of 60");
    gw.shutdown().await;
}

#[tokio::test]
async fn provider_limits_spread_load_and_queue() {
    // The preferred target's account allows 5 requests a minute: the rest go elsewhere.
    let gw = Gateway::start_with(
        "  - name: spread\n    targets: [{provider: oai, model: gpt-4o-mini, weight: 1000, rpm: 5}, {provider: oai, model: gpt-4o, weight: 1}]",
        "",
    )
    .await;
    for _ in 0..20 {
        assert_eq!(gw.chat(user("spread", "hi")).await.status(), 200);
    }
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini"), 5);
    assert_eq!(upstream_hits(&gw, "gpt-4o"), 15);
    gw.shutdown().await;

    // One target at 60 a minute: the 61st request waits about a second for its turn.
    let gw = Gateway::start_with(
        "  - name: queued\n    targets: [{provider: oai, model: gpt-4o-mini, rpm: 60}]",
        "limits: {queue_timeout: 3s}",
    )
    .await;
    for _ in 0..60 {
        assert_eq!(gw.chat(user("queued", "hi")).await.status(), 200);
    }
    let t0 = Instant::now();
    assert_eq!(gw.chat(user("queued", "hi")).await.status(), 200);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(300), "queued {waited:?}");
    gw.shutdown().await;

    // Without a queue, the request is refused at once and says why.
    let gw = Gateway::start_with(
        "  - name: queued\n    targets: [{provider: oai, model: gpt-4o-mini, rpm: 1}]",
        "limits: {queue_timeout: 0s}",
    )
    .await;
    assert_eq!(gw.chat(user("queued", "hi")).await.status(), 200);
    let resp = gw.chat(user("queued", "hi")).await;
    assert_eq!(resp.status(), 429);
    let msg = error_of(resp).await["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("provider rate limit"), "{msg}");
    gw.shutdown().await;
}

#[tokio::test]
async fn streams_retry_before_the_first_byte_only() {
    let gw = Gateway::start_with(
        "  - name: flaky\n    targets: [{provider: oai, model: 'gpt-4o-mini+fail-first-1'}]\n  - name: cut\n    fallbacks: [gpt]\n    targets: [{provider: oai, model: 'gpt-4o-mini+cut-after-3'}]",
        "retries: {attempts: 3, base_delay: 10ms}",
    )
    .await;
    let mut body = user("flaky", "hi");
    body["stream"] = json!(true);
    let resp = gw.chat(body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+fail-first-1"), 2);

    // Cut after output reached the client: an explicit error event, no retry, no [DONE].
    let mut body = user("cut", "tell me a long story");
    body["stream"] = json!(true);
    let resp = gw.chat(body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    let last = data.last().unwrap();
    assert!(last.contains("\"error\""), "{last}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+cut-after-3"), 1);
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini"), 0);
    gw.shutdown().await;
}

/// Twice the limit offered at once: the gateway admits the limit, sheds the rest with 429s,
/// and every request ends.
#[tokio::test]
async fn twice_the_limit_sheds_half_and_nothing_hangs() {
    let gw = Gateway::start_with(
        "  - name: capped\n    limits: {rpm: 100}\n    targets: [{provider: oai, model: 'gpt-4o-mini+latency-20'}]",
        "",
    )
    .await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(20), gw.chat(user("capped", "hi")))
                .await
                .expect("every request ends")
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => shed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // GCRA refills 100/min: a few more may be admitted while the burst is in flight.
    assert!((100..=104).contains(&ok), "admitted {ok}");
    assert_eq!(ok + shed, 200);
    let gw = std::sync::Arc::into_inner(gw).unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrency_limit_counts_requests_in_flight() {
    let gw = Gateway::start_with(
        "  - name: narrow\n    limits: {max_parallel: 2}\n    targets: [{provider: oai, model: 'gpt-4o-mini+latency-300'}]",
        "",
    )
    .await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.chat(user("narrow", "hi")).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
    // Slots are released when requests end.
    assert_eq!(gw.chat(user("narrow", "hi")).await.status(), 200);
    let gw = std::sync::Arc::into_inner(gw).unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn no_limits_means_no_rate_limit_headers() {
    let gw = Gateway::start().await;
    let resp = gw.chat(user("gpt", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-ratelimit-limit-requests").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_resets_fail_over_to_the_next_target() {
    let gw = Gateway::start_with(
        "  - name: hung\n    targets: [{provider: oai, model: 'gpt-4o-mini+timeout', weight: 1000000}, {provider: oai, model: gpt-4o, weight: 1}]\n  - name: reset\n    targets: [{provider: oai, model: 'gpt-4o-mini+reset', weight: 1000000}, {provider: oai, model: gpt-4o, weight: 1}]",
        "timeouts: {first_byte: 300ms}\nretries: {attempts: 2, base_delay: 10ms}",
    )
    .await;
    // The heavy weight sends the request to the failing target first; gpt-4o answers.
    for model in ["hung", "reset"] {
        for stream in [false, true] {
            let mut body = user(model, "hi");
            body["stream"] = json!(stream);
            let t0 = Instant::now();
            let resp = gw.chat(body).await;
            assert_eq!(resp.status(), 200, "{model} stream={stream}");
            assert_eq!(header(&resp, "x-plexus-served-by"), Some("oai/gpt-4o"));
            assert!(t0.elapsed() < Duration::from_secs(5));
            let _ = resp.bytes().await;
        }
    }
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+timeout"), 2);
    assert_eq!(upstream_hits(&gw, "gpt-4o-mini+reset"), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn cost_balancing_prefers_the_cheaper_target() {
    let gw = Gateway::start_with(
        "  - name: thrifty\n    balance: cost\n    targets: [{provider: oai, model: gpt-4o}, {provider: oai, model: gpt-4o-mini}]",
        "",
    )
    .await;
    for _ in 0..20 {
        let resp = gw.chat(user("thrifty", "hi")).await;
        assert_eq!(header(&resp, "x-plexus-served-by"), Some("oai/gpt-4o-mini"));
    }
    assert_eq!(upstream_hits(&gw, "gpt-4o"), 0);
    gw.shutdown().await;
}
