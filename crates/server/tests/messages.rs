//! The Anthropic Messages API in front of every provider kind: plain and streamed answers,
//! tools, thinking, `count_tokens`, and errors in Anthropic's shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_events, Gateway, MASTER_KEY};
use serde_json::{json, Value};

fn post(gw: &Gateway, path: &str, body: &Value) -> reqwest::RequestBuilder {
    gw.http
        .post(format!("{}{path}", gw.url))
        .header("x-api-key", MASTER_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// `event:` names and parsed `data:` payloads of an SSE body.
const MODELS: &str = "  - name: agent-oai\n    targets: [{provider: oai, model: gpt-4o-mini+agent}]\n  - name: agent-claude\n    targets: [{provider: claude, model: claude-sonnet-4-5+agent}]\n  - name: agent-gem\n    targets: [{provider: gem, model: gemini-2.5-flash+agent}]\n";

#[tokio::test]
async fn plain_and_streamed_answers_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    for model in ["gpt", "sonnet", "flash"] {
        let body = json!({
            "model": model, "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Say hello"}],
            "metadata": {"user_id": "u-1"}, "context_management": {"edits": []}, "top_k": 5
        });
        let resp = post(&gw, "/v1/messages", &body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let m: Value = resp.json().await.unwrap();
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["model"], model, "the name the client asked for");
        assert!(m["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(m["content"][0]["type"], "text");
        assert!(!m["content"][0]["text"].as_str().unwrap().is_empty());
        assert_eq!(m["stop_reason"], "end_turn");
        assert!(m["usage"]["input_tokens"].as_u64().is_some());
        assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let mut body = body.clone();
        body["stream"] = json!(true);
        let resp = post(&gw, "/v1/messages", &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let ev = sse_events(resp).await;
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "message_start", "{names:?}");
        assert!(names.contains(&"ping"), "{names:?}");
        assert!(names.contains(&"content_block_start"), "{names:?}");
        assert_eq!(*names.last().unwrap(), "message_stop");
        assert_eq!(names[names.len() - 2], "message_delta");
        for (name, data) in &ev {
            assert_eq!(
                data["type"],
                name.as_str(),
                "the event name is the data's type"
            );
        }
        let text: String = ev
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, m["content"][0]["text"].as_str().unwrap(), "{model}");
        let delta = &ev[ev.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_bash_tool_round_trip_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    let tools = json!([{"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]);
    for model in ["agent-oai", "agent-claude", "agent-gem"] {
        for stream in [false, true] {
            let first = json!({"model": model, "max_tokens": 256, "tools": tools, "stream": stream,
                "messages": [{"role": "user", "content": "Run `echo hi-42` and tell me what it printed."}]});
            let resp = post(&gw, "/v1/messages", &first).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{model}");
            let (id, input) = if stream {
                let ev = sse_events(resp).await;
                let start = ev
                    .iter()
                    .find(|(n, d)| {
                        n == "content_block_start" && d["content_block"]["type"] == "tool_use"
                    })
                    .unwrap_or_else(|| panic!("{model}: {ev:?}"));
                let index = start.1["index"].clone();
                let json: String = ev
                    .iter()
                    .filter(|(n, d)| n == "content_block_delta" && d["index"] == index)
                    .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
                    .collect();
                let stop = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
                assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");
                (
                    start.1["content_block"]["id"].as_str().unwrap().to_owned(),
                    serde_json::from_str::<Value>(&json).unwrap(),
                )
            } else {
                let m: Value = resp.json().await.unwrap();
                assert_eq!(m["stop_reason"], "tool_use", "{model}: {m}");
                let call = m["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["type"] == "tool_use")
                    .unwrap()
                    .clone();
                assert_eq!(call["name"], "Bash");
                (
                    call["id"].as_str().unwrap().to_owned(),
                    call["input"].clone(),
                )
            };
            assert!(id.starts_with("toolu_"), "{id}");
            assert_eq!(input, json!({"command": "echo hi-42"}), "{model}");

            let second = json!({"model": model, "max_tokens": 256, "tools": tools,
            "messages": [
                {"role": "user", "content": "Run `echo hi-42` and tell me what it printed."},
                {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": input}]},
                // As Claude Code sends it: a reminder after the tool's result.
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id,
                    "content": [{"type": "text", "text": "hi-42\n"}]},
                    {"type": "text", "text": "<system-reminder>Keep going.</system-reminder>"}]}
            ]});
            let resp = post(&gw, "/v1/messages", &second).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let m: Value = resp.json().await.unwrap();
            assert!(
                m["content"][0]["text"].as_str().unwrap().contains("hi-42"),
                "{model}: {m}"
            );
            assert_eq!(m["stop_reason"], "end_turn");
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn errors_are_anthropic_shaped_and_count_tokens_answers() {
    let gw = Gateway::start_with(MODELS, "").await;
    // No key.
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .json(&json!({"model": "gpt", "max_tokens": 8, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "authentication_error");
    // Bad bodies.
    for (body, text) in [
        (
            json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "gpt", "max_tokens": 8, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "nope", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}),
            "nope",
        ),
    ] {
        let resp = post(&gw, "/v1/messages", &body).send().await.unwrap();
        let status = resp.status().as_u16();
        let e: Value = resp.json().await.unwrap();
        assert!(status == 400 || status == 404, "{status}: {e}");
        assert_eq!(e["type"], "error");
        let kind = e["error"]["type"].as_str().unwrap();
        assert!(
            kind == "invalid_request_error" || kind == "not_found_error",
            "{e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains(text),
            "{e}"
        );
    }
    // An upstream failure.
    let resp = post(
        &gw,
        "/v1/messages",
        &json!({"model": "oai/gpt-4o-mini+fault-429", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 429);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error", "{e}");

    // What a provider cannot express is dropped for an Anthropic client, never refused:
    // Gemini has no switch for one tool call at a time.
    let two_tools = json!([
        {"name": "a", "input_schema": {"type": "object"}},
        {"name": "b", "input_schema": {"type": "object"}}
    ]);
    let resp = post(
        &gw,
        "/v1/messages",
        &json!({"model": "flash", "max_tokens": 16, "tools": two_tools,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [{"role": "user", "content": "x"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        &json!({"model": "gpt", "system": "You are terse.", "messages": [{"role": "user", "content": "Hello there, how are you today?"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let c: Value = resp.json().await.unwrap();
    let n = c["input_tokens"].as_u64().unwrap();
    assert!((10..40).contains(&n), "{c}");
    gw.shutdown().await;
}

#[tokio::test]
async fn models_are_listed_in_anthropic_shape_when_asked_so() {
    let gw = Gateway::start_with(MODELS, "").await;
    let get = |version: bool, key: &str| {
        let mut r = gw
            .http
            .get(format!("{}/v1/models", gw.url))
            .header("x-api-key", key.to_owned());
        if version {
            r = r.header("anthropic-version", "2023-06-01");
        }
        r.send()
    };
    let list: Value = get(true, MASTER_KEY).await.unwrap().json().await.unwrap();
    assert_eq!(list["has_more"], false);
    assert_eq!(list["data"][0]["type"], "model");
    assert_eq!(list["data"][0]["id"], "gpt");
    assert_eq!(list["first_id"], "gpt");
    assert!(list["data"][0]["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let openai: Value = get(false, MASTER_KEY).await.unwrap().json().await.unwrap();
    assert_eq!(openai["object"], "list");
    let resp = get(true, "sk-wrong").await.unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_keys_budget_applies_and_metrics_name_the_endpoint() {
    let gw = Gateway::start_with(MODELS, "").await;
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "poor", "max_budget_usd": 0.000001}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let key: Value = resp.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let body =
        json!({"model": "gpt", "max_tokens": 4096, "messages": [{"role": "user", "content": "x"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("budget"),
        "{e}"
    );

    let resp = post(&gw, "/v1/messages", &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.state.writer().flush().await;
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("plexus_requests_total")
                && l.contains("endpoint=\"messages\"")
                && l.contains("model=\"gpt\"")),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_anthropic_target_gets_the_request_as_it_came() {
    let gw = Gateway::start_with(MODELS, "").await;
    let body = json!({
        "model": "sonnet", "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "a_future_field": {"x": [1, 2]}, "top_k": 5,
        "messages": [{"role": "user", "content": "Hello"}]
    });
    for stream in [false, true] {
        let mut b = body.clone();
        b["stream"] = json!(stream);
        let before = gw.mock.requests().len();
        let resp = post(&gw, "/v1/messages", &b)
            .header("anthropic-beta", "context-management-2025-06-27")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let sent = gw.mock.requests()[before..].to_vec();
        assert_eq!(sent.len(), 1);
        let up = &sent[0];
        // Only the model name changed; unknown fields, the exact thinking budget and the beta
        // header reached the provider.
        assert_eq!(up.body["model"], "claude-sonnet-4-5");
        assert_eq!(up.body["thinking"]["budget_tokens"], 3000);
        assert_eq!(up.body["a_future_field"], json!({"x": [1, 2]}));
        assert_eq!(
            up.body["context_management"]["edits"][0]["type"],
            "clear_tool_uses_20250919"
        );
        assert_eq!(up.body["top_k"], 5);
        assert_eq!(
            up.headers.get("anthropic-beta").map(String::as_str),
            Some("context-management-2025-06-27")
        );
        if stream {
            let ev = sse_events(resp).await;
            assert_eq!(ev[0].0, "message_start");
            assert_eq!(
                ev[0].1["message"]["model"], "sonnet",
                "the client's model name"
            );
            assert_eq!(ev.last().unwrap().0, "message_stop");
            assert!(
                ev.iter()
                    .any(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta"),
                "{ev:?}"
            );
        } else {
            let m: Value = resp.json().await.unwrap();
            assert_eq!(m["model"], "sonnet");
            assert_eq!(m["content"][0]["type"], "text", "{m}");
            // A field of the provider's own answer that no translation writes.
            assert_eq!(m["usage"]["service_tier"], "standard", "{m}");
            assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);
        }
    }
    // Billed and recorded like any call.
    gw.state.writer().flush().await;
    let rows = gw.store.recent_requests(10).await.unwrap();
    let ours: Vec<_> = rows.iter().filter(|r| r.model == "sonnet").collect();
    assert_eq!(ours.len(), 2);
    for r in ours {
        assert_eq!(r.endpoint, "messages");
        assert_eq!(r.provider, "claude");
        assert!(
            r.completion_tokens > 0 && r.cost > plexus_protocol::money::Nanos::ZERO,
            "{r:?}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event() {
    let gw = Gateway::start_with(MODELS, "").await;
    for model in [
        "oai/gpt-4o-mini+cut-after-2",
        "claude/claude-sonnet-4-5+cut-after-2",
    ] {
        let body = json!({"model": model, "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "Say hello"}]});
        let resp = post(&gw, "/v1/messages", &body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let ev = sse_events(resp).await;
        let (name, data) = ev.last().unwrap();
        assert_eq!(name, "error", "{model}: {ev:?}");
        assert_eq!(data["type"], "error");
        assert!(data["error"]["type"].is_string());
        assert_eq!(
            ev.iter().filter(|(n, _)| n == "error").count(),
            1,
            "{model}"
        );
        assert!(!ev.iter().any(|(n, _)| n == "message_stop"), "{model}");
    }
    gw.shutdown().await;
}
