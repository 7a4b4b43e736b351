//! The gateway end to end in-process: real sockets, the simulator as every provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_data, user, Gateway, MASTER_KEY};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_chat_through_every_wire_format() {
    let gw = Gateway::start().await;
    for model in ["gpt", "sonnet", "flash"] {
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-request-id", format!("rid-plain-{model}"))
            .json(&user(model, "Say hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let h = resp.headers().clone();
        assert_eq!(h["x-request-id"], format!("rid-plain-{model}").as_str());
        assert!(h.contains_key("x-plexus-cost-usd"));
        assert!(h["x-plexus-served-by"].to_str().unwrap().contains('/'));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .len()
                > 3
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

        let row = gw.logged(&format!("rid-plain-{model}")).await;
        assert_eq!(row.status, 200);
        assert_eq!(row.key_id, "master");
        assert!(row.completion_tokens > 0);
        assert!(!row.usage_estimated);
        assert!(
            row.upstream_request_id.is_some() || model == "flash",
            "{model}: {row:?}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_through_every_wire_format() {
    let gw = Gateway::start().await;
    for model in ["gpt", "sonnet", "flash"] {
        // Without include_usage: no usage chunk reaches the client.
        let mut req = user(model, "Stream please");
        req["stream"] = json!(true);
        let resp = gw.chat(req.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = sse_data(resp).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{model}");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty(), "{model}");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));

        // With include_usage: the last chunk carries usage and no choices.
        req["stream_options"] = json!({"include_usage": true});
        let events = sse_data(gw.chat(req).await).await;
        let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(last["choices"], json!([]), "{model}");
        assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication() {
    let gw = Gateway::start().await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let body = user("gpt", "hi");
    let missing = gw.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    let wrong = gw
        .http
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let x_api_key = gw
        .http
        .post(&url)
        .header("x-api-key", MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(x_api_key.status(), 200);
    for open in ["/health", "/ready", "/metrics"] {
        let r = gw
            .http
            .get(format!("{}{open}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
    let models = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let list: Value = models.json().await.unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt", "sonnet", "flash", "embed"]);
    gw.shutdown().await;
}

async fn error_of(resp: reqwest::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_openai_shaped() {
    let gw = Gateway::start_with("", "max_request_bytes: 4096").await;
    let raw = gw
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body, _) = error_of(raw).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body, _) = error_of(
        gw.chat(json!({"model": "gpt", "messages": [{"role": "user", "content": 5}]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages[0].content");

    let (status, body, _) = error_of(gw.chat(user("no-such-model", "hi")).await).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");

    let big = "x".repeat(10_000);
    let (status, body, _) = error_of(gw.chat(user("gpt", &big)).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");

    let mut n2 = user("sonnet", "hi");
    n2["n"] = json!(2);
    let (status, body, _) = error_of(gw.chat(n2).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "n");

    let (status, body, _) = error_of(
        gw.post("/v1/embeddings")
            .json(&json!({"model": "sonnet", "input": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "model");

    let (status, body, headers) = error_of(
        gw.http
            .get(format!("{}/v2/nothing", gw.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        headers.contains_key("x-request-id"),
        "errors carry the id too"
    );
    assert_eq!(body["error"]["code"], "not_found");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_mapped_faithfully() {
    let gw = Gateway::start().await;
    let (status, body, headers) = error_of(
        gw.chat(user("oai/gpt-4o+fault-429+retry-after-2", "hi"))
            .await,
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(headers["retry-after"], "2");

    let (status, body, _) = error_of(gw.chat(user("claude/claude+fault-401", "hi")).await).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_auth_error");

    let (status, body, _) = error_of(gw.chat(user("gem/gemini+fault-503", "hi")).await).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_error");

    let (status, _, _) = error_of(gw.chat(user("oai/gpt+malformed", "hi")).await).await;
    assert_eq!(status, 502);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    let gw = Gateway::start().await;
    for model in [
        "oai/gpt+cut-after-2",
        "claude/claude+cut-after-2",
        "gem/gemini+cut-after-2",
    ] {
        let mut req = user(model, "long answer please");
        req["stream"] = json!(true);
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-request-id", format!("cut-{}", model.len()))
            .json(&req)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status != 200 {
            panic!("{model}: {}", resp.text().await.unwrap());
        }
        let events = sse_data(resp).await;
        let last = events.last().unwrap();
        assert_ne!(last, "[DONE]", "{model}");
        let err: Value = serde_json::from_str(last).unwrap();
        assert!(err["error"]["message"].is_string(), "{model}: {last}");
        assert!(events.len() >= 2, "some content came first: {model}");
        let row = gw.logged(&format!("cut-{}", model.len())).await;
        assert_eq!(row.status, 502, "{model}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_float_and_base64() {
    let gw = Gateway::start().await;
    for (model, format) in [
        ("embed", "float"),
        ("embed", "base64"),
        ("gem/text-embedding-004", "base64"),
    ] {
        let resp = gw
            .post("/v1/embeddings")
            .json(&json!({"model": model, "input": ["one", "two"], "encoding_format": format}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        match format {
            "float" => assert!(body["data"][0]["embedding"].is_array()),
            _ => assert!(body["data"][0]["embedding"].is_string(), "{model}: {body}"),
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_next_target_on_upstream_failure() {
    let gw = Gateway::start_with(
        "  - name: resilient\n    targets: [{provider: oai, model: gpt+fault-500}, {provider: claude, model: claude-haiku-4-5}]",
        "",
    )
    .await;
    let resp = gw.chat(user("resilient", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-plexus-served-by"],
        "claude/claude-haiku-4-5"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_requests_and_latency_buckets() {
    let gw = Gateway::start().await;
    assert_eq!(gw.chat(user("gpt", "count me")).await.status(), 200);
    let text = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("plexus_requests_total"), "{text}");
    assert!(
        text.contains("plexus_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("plexus_tokens_total"), "{text}");
    assert!(!text.contains(MASTER_KEY));
    // Every metric is described.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reaches_each_upstream() {
    let gw = Gateway::start().await;
    let last = |path_part: &str| {
        gw.mock
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.path.contains(path_part))
            .unwrap()
    };

    // OpenAI format: unknown fields pass through unchanged, the model is rewritten, the
    // gateway's own key replaces the client's, and streams always ask for usage.
    let mut req = user("gpt", "hi");
    req["logit_bias"] = json!({"50256": -100});
    req["prediction"] = json!({"type": "content", "content": "x"});
    req["stream"] = json!(true);
    sse_data(gw.chat(req).await).await;
    let up = last("/v1/chat/completions");
    assert_eq!(up.body["model"], "gpt-4o-mini");
    assert_eq!(up.body["logit_bias"], json!({"50256": -100}));
    assert_eq!(up.body["prediction"]["content"], "x");
    assert_eq!(up.body["stream_options"]["include_usage"], true);
    assert_eq!(up.headers["authorization"], "Bearer sk-upstream");

    // Anthropic: no max_tokens from the client → the catalog's max output for the model.
    assert_eq!(gw.chat(user("sonnet", "hi")).await.status(), 200);
    let up = last("/v1/messages");
    let catalog_max = plexus_core::catalog::Catalog::builtin()
        .lookup("anthropic", "claude-sonnet-4-5")
        .and_then(|m| m.max_output_tokens)
        .unwrap();
    assert_eq!(up.body["max_tokens"], catalog_max);
    assert_eq!(up.headers["x-api-key"], "sk-ant-upstream");
    assert_eq!(up.headers["anthropic-version"], "2023-06-01");

    // Gemini: the key goes in x-goog-api-key, never in the URL.
    assert_eq!(gw.chat(user("flash", "hi")).await.status(), 200);
    let up = last(":generateContent");
    assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(up.headers["x-goog-api-key"], "gem-upstream");
    assert_eq!(up.body["contents"][0]["parts"][0]["text"], "hi");

    // Azure: deployment URL, api-version and api-key header.
    assert_eq!(gw.chat(user("az/my-deployment", "hi")).await.status(), 200);
    let up = last("/openai/deployments/");
    assert_eq!(
        up.path,
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_eq!(up.query, "api-version=2024-10-21");
    assert_eq!(up.headers["api-key"], "az-upstream");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_reasoning_tokens_survive_translation() {
    let gw = Gateway::start().await;
    for model in [
        "oai/gpt-think+cached-7",
        "claude/claude-think+cached-7",
        "gem/gemini-think+cached-7",
    ] {
        let mut req = user(model, "think about it, at length please");
        req["reasoning_effort"] = json!("low");
        let resp = gw.chat(req.clone()).await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        let usage = &body["usage"];
        assert_eq!(
            usage["prompt_tokens_details"]["cached_tokens"], 7,
            "{model}: {usage}"
        );
        assert!(
            usage["completion_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .unwrap_or(0)
                > 0
                || body["choices"][0]["message"]["reasoning_content"].is_string(),
            "{model}: {body}"
        );

        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
        let events = sse_data(gw.chat(req).await).await;
        let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(
            last["usage"]["prompt_tokens_details"]["cached_tokens"], 7,
            "{model}: {last}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_ignore_include_usage_get_estimated_usage() {
    let gw = Gateway::start().await;
    let mut req = user("compat/llama-3", "stream without usage");
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "estimated-usage")
        .json(&req)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let events = sse_data(resp).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(
        last["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{events:?}"
    );
    let up = gw.mock.requests().into_iter().last().unwrap();
    assert!(
        up.body.get("stream_options").is_none(),
        "not asked upstream: {}",
        up.body
    );
    let row = gw.logged("estimated-usage").await;
    assert!(row.usage_estimated);
    assert!(row.completion_tokens > 0);

    // The preset's quirk: no n > 1.
    let mut n2 = user("compat/llama-3", "hi");
    n2["n"] = json!(2);
    let resp = gw.chat(n2).await;
    assert_eq!(resp.status(), 400);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_not_stored_by_default_and_redacted_when_asked() {
    let gw = Gateway::start().await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "no-bodies")
        .json(&user("gpt", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let row = gw.logged("no-bodies").await;
    assert_eq!((row.request_body, row.response_body), (None, None));
    gw.shutdown().await;

    let gw = Gateway::start_with("", "request_bodies: redacted").await;
    let secret_prompt = "my mail is ada@example.com and my key sk-live-0123456789abcdefXYZ";
    for (rid, stream) in [("redacted-plain", false), ("redacted-stream", true)] {
        let mut req = user("oai/echo", secret_prompt);
        req["stream"] = json!(stream);
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-request-id", rid)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
        let row = gw.logged(rid).await;
        let stored_req = row.request_body.unwrap();
        let stored_resp = row.response_body.unwrap();
        for stored in [&stored_req, &stored_resp] {
            assert!(!stored.contains("ada@example.com"), "{stored}");
            assert!(!stored.contains("sk-live-0123456789abcdefXYZ"), "{stored}");
            assert!(stored.contains("[REDACTED]"), "{stored}");
        }
        assert!(
            stored_req.contains("my mail is"),
            "the rest is kept: {stored_req}"
        );
    }
    gw.shutdown().await;
}
