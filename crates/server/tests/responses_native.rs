//! The OpenAI Responses API passed through to providers that serve it: the client's body
//! reaches `/v1/responses` with only `model` replaced, and the provider's answer comes back;
//! providers that do not serve it get the translated chat completion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_events, Gateway, MASTER_KEY};
use serde_json::{json, Value};

fn post(gw: &Gateway, body: &Value, request_id: &str) -> reqwest::RequestBuilder {
    gw.http
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth(MASTER_KEY)
        .header("x-request-id", request_id)
        .json(body)
}

/// A request with fields no translation knows.
fn body(model: &str) -> Value {
    json!({
        "model": model,
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "high", "summary": "auto"},
        "a_future_field": {"x": 1},
        "store": false,
        "max_output_tokens": 400
    })
}

/// Adds providers to the running gateway: `oai-chat` (kind openai, `responses: false`) and
/// `compat-native` (kind openai-compatible, `responses: true`).
async fn add_providers(gw: &Gateway) {
    let mut config = (*gw.state.runtime().config).clone();
    let oai = config
        .providers
        .iter()
        .find(|p| p.name == "oai")
        .unwrap()
        .clone();
    let compat = config
        .providers
        .iter()
        .find(|p| p.name == "compat")
        .unwrap()
        .clone();
    assert!(oai.responses, "on by default for kind openai");
    assert!(
        !compat.responses,
        "off by default for kind openai-compatible"
    );
    let mut plain = oai;
    plain.name = "oai-chat".into();
    plain.responses = false;
    let mut native = compat;
    native.name = "compat-native".into();
    native.responses = true;
    config.providers.push(plain);
    config.providers.push(native);
    gw.state.reload(config).await.unwrap();
}

#[tokio::test]
async fn an_openai_target_gets_the_request_as_it_came() {
    let gw = Gateway::start_with("", "").await;
    for stream in [false, true] {
        let mut b = body("gpt");
        b["stream"] = json!(stream);
        let id = format!("native-{stream}");
        let before = gw.mock.requests().len();
        let resp = post(&gw, &b, &id).send().await.unwrap();
        assert_eq!(resp.status(), 200, "stream: {stream}");
        let sent = gw.mock.requests()[before..].to_vec();
        assert_eq!(sent.len(), 1);
        let up = &sent[0];
        assert_eq!(up.path, "/v1/responses");
        assert_eq!(up.header("authorization"), Some("Bearer sk-upstream"));
        // Only the model name changed.
        let mut expected = b.clone();
        expected["model"] = json!("gpt-4o-mini");
        assert_eq!(up.body, expected);

        let (input_tokens, output_tokens) = if stream {
            let ev = sse_events(resp).await;
            assert_eq!(ev[0].0, "response.created", "{ev:?}");
            let (last, done) = ev.last().unwrap();
            assert_eq!(last, "response.completed", "{ev:?}");
            assert_eq!(done["response"]["model"], "gpt", "the client's model name");
            // The simulator's own events, in order: every sequence number once.
            let seq: Vec<u64> = ev
                .iter()
                .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
                .collect();
            assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>());
            // A field of the simulator's events that the translation does not write.
            let part = ev
                .iter()
                .find(|(n, _)| n == "response.content_part.added")
                .unwrap();
            assert_eq!(part.1["part"]["logprobs"], json!([]), "{ev:?}");
            let usage = &done["response"]["usage"];
            (
                usage["input_tokens"].as_u64().unwrap(),
                usage["output_tokens"].as_u64().unwrap(),
            )
        } else {
            let r: Value = resp.json().await.unwrap();
            assert_eq!(r["object"], "response", "{r}");
            assert_eq!(r["model"], "gpt", "{r}");
            assert_eq!(r["status"], "completed", "{r}");
            // Fields of the provider's answer that no translation writes.
            assert_eq!(r["service_tier"], "default", "{r}");
            assert_eq!(r["reasoning"]["summary"], "auto", "{r}");
            let message = r["output"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "message")
                .unwrap();
            assert_eq!(message["content"][0]["logprobs"], json!([]), "{r}");
            assert!(!message["content"][0]["text"].as_str().unwrap().is_empty());
            (
                r["usage"]["input_tokens"].as_u64().unwrap(),
                r["usage"]["output_tokens"].as_u64().unwrap(),
            )
        };

        // Billed and recorded once, with the provider's usage.
        let row = gw.logged(&id).await;
        assert_eq!(row.endpoint, "responses");
        assert_eq!(row.provider, "oai");
        assert_eq!(row.upstream_model, "gpt-4o-mini");
        assert_eq!(row.status, 200);
        assert_eq!(row.stream, stream);
        assert!(!row.usage_estimated, "{row:?}");
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens),
            (input_tokens, output_tokens),
            "{row:?}"
        );
        assert!(row.cost > plexus_protocol::money::Nanos::ZERO, "{row:?}");
    }
    gw.state.writer().flush().await;
    let rows = gw.store.recent_requests(10).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.model == "gpt").count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn providers_without_the_responses_api_get_a_translated_call() {
    let gw = Gateway::start_with("", "").await;
    add_providers(&gw).await;
    for (model, path) in [
        // Kind openai with `responses: false`.
        ("oai-chat/gpt-4o-mini", "/v1/chat/completions"),
        // Kind openai-compatible: off unless configured.
        ("compat/gpt-4o-mini", "/v1/chat/completions"),
        ("compat-native/gpt-4o-mini", "/v1/responses"),
        // Other kinds always translate.
        ("sonnet", "/v1/messages"),
    ] {
        for stream in [false, true] {
            let mut b = body(model);
            b["stream"] = json!(stream);
            let id = format!("{model}-{stream}");
            let before = gw.mock.requests().len();
            let resp = post(&gw, &b, &id).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{model} stream: {stream}");
            let sent = gw.mock.requests()[before..].to_vec();
            assert_eq!(sent.len(), 1, "{model}");
            assert_eq!(sent[0].path, path, "{model}");
            if path == "/v1/responses" {
                assert_eq!(sent[0].body["a_future_field"], json!({"x": 1}), "{model}");
            }
            if stream {
                let ev = sse_events(resp).await;
                assert_eq!(
                    ev.last().unwrap().0,
                    "response.completed",
                    "{model}: {ev:?}"
                );
            } else {
                let r: Value = resp.json().await.unwrap();
                assert_eq!(r["object"], "response", "{model}: {r}");
                assert_eq!(r["status"], "completed", "{model}: {r}");
            }
            let row = gw.logged(&id).await;
            assert_eq!(row.endpoint, "responses", "{model}");
            assert!(row.completion_tokens > 0, "{model}: {row:?}");
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_native_answer_fills_the_cache() {
    let gw = Gateway::start_with("", "cache:\n  ttl: 1h").await;
    let b = json!({"model": "gpt", "temperature": 0, "input": "Cache me", "a_future_field": 1});
    let before = gw.mock.requests().len();
    let first = post(&gw, &b, "fill-1").send().await.unwrap();
    assert_eq!(
        first
            .headers()
            .get("x-plexus-cache")
            .and_then(|v| v.to_str().ok()),
        Some("miss")
    );
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["service_tier"], "default", "native: {first}");
    let second = post(&gw, &b, "fill-2").send().await.unwrap();
    assert_eq!(
        second
            .headers()
            .get("x-plexus-cache")
            .and_then(|v| v.to_str().ok()),
        Some("hit")
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["object"], "response", "{second}");
    let text = |r: &Value| {
        r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "message")
            .map(|m| m["content"][0]["text"].clone())
    };
    assert_eq!(text(&second), text(&first), "{first}\n{second}");
    assert_eq!(gw.mock.requests().len() - before, 1, "the hit made no call");
    gw.shutdown().await;
}
