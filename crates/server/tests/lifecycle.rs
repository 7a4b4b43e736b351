//! Streams the client abandons, and upstreams that stall.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_data, user, Gateway};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_cancels_upstream_and_is_logged_as_499() {
    let gw = Gateway::start().await;
    for model in [
        "oai/gpt+tokens-400+tps-40",
        "claude/claude+tokens-400+tps-40",
        "gem/gemini+tokens-400+tps-40",
    ] {
        let rid = format!("drop-{}", &model[..3]);
        let mut req = user(model, "tell me a long story");
        req["stream"] = json!(true);
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-request-id", &rid)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut seen = 0;
        while seen < 3 {
            let bytes = body.next().await.unwrap().unwrap();
            seen += bytes.windows(6).filter(|w| w == b"data: ").count();
        }
        let cancelled_before = gw.mock.cancelled_streams();
        drop(body);
        wait_for("the upstream stream to be cancelled", || {
            gw.mock.cancelled_streams() > cancelled_before
        })
        .await;
        let row = gw.logged(&rid).await;
        assert_eq!(row.status, 499, "{model}");
        assert!(row.usage_estimated);
        assert!(row.completion_tokens > 0, "{model}: partial usage recorded");
        assert!(
            row.completion_tokens < 400,
            "{model}: only what was forwarded"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstreams_hit_the_first_byte_and_idle_timeouts() {
    let gw = Gateway::start_with("", "timeouts: {first_byte: 700ms, idle: 500ms}").await;
    let started = std::time::Instant::now();
    let resp = gw.chat(user("oai/gpt+timeout", "hello?")).await;
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut req = user("claude/claude+stall-after-2", "hello?");
    req["stream"] = json!(true);
    let resp = gw.chat(req).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    gw.shutdown().await;
}
