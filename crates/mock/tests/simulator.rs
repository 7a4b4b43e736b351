//! The simulator over real HTTP: every format plain and streamed, tools, faults, auth,
//! recording and stream accounting.
#![cfg(test)]

use std::time::{Duration, Instant};

use base64::Engine;
use plexus_mock::{MockConfig, MockServer, ModelProfile};
use plexus_protocol::openai::{ChatCompletion, ChatCompletionChunk, EmbeddingResponse};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn openai(s: &MockServer, path: &str) -> RequestBuilder {
    client()
        .post(format!("{}{path}", s.url()))
        .bearer_auth("sk-test")
}

fn anthropic(s: &MockServer) -> RequestBuilder {
    client()
        .post(format!("{}/v1/messages", s.url()))
        .header("x-api-key", "sk-ant")
        .header("anthropic-version", "2023-06-01")
}

fn gemini(s: &MockServer, model_action: &str) -> RequestBuilder {
    client()
        .post(format!("{}/v1beta/models/{model_action}", s.url()))
        .header("x-goog-api-key", "gm")
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer"}},
            "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
    ])
}

/// The `data:` payloads of an SSE body (any line ending).
fn sse_data(body: &str) -> Vec<String> {
    body.split(['\n', '\r'])
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// `(event, data)` pairs of an Anthropic stream.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the body chunk by chunk until it ends, errors or `limit` passes.
async fn read_body(resp: &mut Response, limit: Duration) -> (String, Result<(), String>) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return (text, Err("deadline".into())),
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) => return (text, Ok(())),
            Ok(Err(e)) => return (text, Err(format!("{e:?}"))),
        }
    }
}

// --- OpenAI -----------------------------------------------------------------------------------

#[tokio::test]
async fn openai_plain_is_deterministic_and_typed() {
    let s = start().await;
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt-4o", "Hello there, simulator"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    assert!(resp.headers().contains_key("openai-processing-ms"));
    assert!(resp.headers().contains_key("x-ratelimit-limit-requests"));
    let a: ChatCompletion = resp.json().await.unwrap();
    assert_eq!(a.object, "chat.completion");
    assert_eq!(a.model, "gpt-4o");
    let text = a.choices[0].message.content.clone().unwrap();
    assert_eq!(text.split_whitespace().count(), 12);
    assert!(text.ends_with('.'));
    let usage = a.usage.unwrap();
    assert_eq!(usage.completion_tokens, 12);
    // "Hello there, simulator" is 22 characters.
    assert_eq!(usage.prompt_tokens, 5);

    let b: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt-4o", "Hello there, simulator"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b.choices[0].message.content.as_deref(), Some(text.as_str()));
    let c: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt-4o", "Something else"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(c.choices[0].message.content.as_deref(), Some(text.as_str()));
}

#[tokio::test]
async fn openai_tokens_max_tokens_n_and_echo() {
    let s = start().await;
    let mut body = chat("gpt+tokens-30", "x");
    body["max_tokens"] = json!(4);
    body["n"] = json!(2);
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r.choices.len(), 2);
    for (i, c) in r.choices.iter().enumerate() {
        assert_eq!(c.index, i as u32);
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        assert_eq!(c.message.content.as_ref().unwrap().split(' ').count(), 4);
    }
    assert_ne!(r.choices[0].message.content, r.choices[1].message.content);
    assert_eq!(r.usage.unwrap().completion_tokens, 8);

    let r: Value = openai(&s, "/v1/chat/completions")
        .header("x-mock-tokens", "3")
        .json(&chat("gpt", "x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["usage"]["completion_tokens"], 3);

    let r: Value = openai(&s, "/v1/chat/completions")
        .json(&json!({"model": "echo", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "parts "}, {"type": "text", "text": "joined"}]}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "parts joined");
}

#[tokio::test]
async fn openai_stream_with_usage_matches_the_real_shape() {
    let s = start().await;
    let mut body = chat("gpt+tokens-4+cached-2", "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role chunk, 4 words, finish chunk, usage chunk
    assert_eq!(chunks.len(), 7);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &chunks[..6] {
        assert!(c.get("usage").unwrap().is_null());
        let _: ChatCompletionChunk = serde_json::from_value(c.clone()).unwrap();
    }
    let words: String = chunks[1..5]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words.split(' ').count(), 4);
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    let last = &chunks[6];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 2);

    // Without include_usage there is no usage key at all.
    let mut body = chat("gpt+tokens-2", "x");
    body["stream"] = json!(true);
    let text = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for d in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(v.get("usage").is_none());
        assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn openai_tool_calls_plain_streamed_and_results() {
    let s = start().await;
    let mut body = chat("tool-parallel", "weather and time");
    body["tools"] = weather_tools();
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].function.name, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
    assert_eq!(args, json!({"city": "mock-city", "unit": "c"}));

    // parallel_tool_calls: false keeps one call; a named tool_choice picks the tool.
    body["parallel_tool_calls"] = json!(false);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.name, "get_time");

    // tool_choice none: text.
    body["tool_choice"] = json!("none");
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.choices[0].message.tool_calls.is_none());

    // Streamed: the arguments arrive in pieces that join into the JSON.
    let mut body = chat("tool", "weather");
    body["tools"] = weather_tools();
    body["stream"] = json!(true);
    let text = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<ChatCompletionChunk> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let first = &chunks[0].choices[0].delta;
    assert_eq!(first.role.as_deref(), Some("assistant"));
    let head = &first.tool_calls.as_ref().unwrap()[0];
    assert!(head.id.as_ref().unwrap().starts_with("call_"));
    assert_eq!(
        head.function.as_ref().unwrap().name.as_deref(),
        Some("get_weather")
    );
    let args: String = chunks
        .iter()
        .flat_map(|c| c.choices[0].delta.tool_calls.iter().flatten())
        .filter_map(|t| t.function.as_ref()?.arguments.clone())
        .collect();
    assert!(chunks.len() > 3, "arguments are streamed in several chunks");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "mock-city", "unit": "c"})
    );
    assert_eq!(
        chunks.last().unwrap().choices[0].finish_reason.as_deref(),
        Some("tool_calls")
    );

    // A conversation ending in tool results gets them acknowledged.
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&json!({"model": "tool", "tools": weather_tools(), "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Tool result received: sunny")
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn openai_json_and_reasoning_models() {
    let s = start().await;
    let mut body = chat("json", "x");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "p", "schema": {
        "type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "tags"]}}});
    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(r.choices[0].message.content.as_deref().unwrap()).unwrap();
    assert_eq!(v, json!({"name": "mock-name", "tags": ["mock-tags"]}));

    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&chat("json", "x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(r.choices[0].message.content.as_deref().unwrap()).unwrap();
    assert!(v["answer"].is_string());

    let r: ChatCompletion = openai(&s, "/v1/chat/completions")
        .json(&chat("o3-reasoning", "x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let usage = r.usage.unwrap();
    assert!(usage.reasoning_tokens() > 0);
    assert_eq!(usage.completion_tokens, 12 + usage.reasoning_tokens());
}

#[tokio::test]
async fn openai_embeddings_float_and_base64() {
    let s = start().await;
    let r: EmbeddingResponse = openai(&s, "/v1/embeddings")
        .json(&json!({"model": "emb", "input": ["same", "other", "same"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vecs: Vec<Vec<f32>> = r
        .data
        .iter()
        .map(|d| match &d.embedding {
            plexus_protocol::openai::EmbeddingVector::Float(v) => v.clone(),
            plexus_protocol::openai::EmbeddingVector::Base64(_) => panic!("floats expected"),
        })
        .collect();
    assert_eq!(vecs[0].len(), 16);
    assert_eq!(vecs[0], vecs[2]);
    assert_ne!(vecs[0], vecs[1]);
    let norm: f32 = vecs[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);

    let r: Value = openai(&s, "/v1/embeddings")
        .json(
            &json!({"model": "emb", "input": "same", "encoding_format": "base64", "dimensions": 4}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(r["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 16);
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let norm: f32 = floats.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert_eq!(r["object"], "list");
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() >= 1);

    let r: Value = openai(&s, "/v1/embeddings")
        .json(&json!({"model": "emb", "input": [1, 2, 3]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);

    let models: Value = client()
        .get(format!("{}/v1/models", s.url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "echo"));
}

#[tokio::test]
async fn openai_auth_and_validation_errors() {
    let s = MockServer::start(MockConfig {
        require_key: Some("sk-right".into()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/chat/completions", s.url());
    let resp = client()
        .post(&url)
        .json(&chat("m", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let resp = client()
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&chat("m", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&chat("m", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = client()
        .post(&url)
        .bearer_auth("sk-right")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "messages");

    let resp = client()
        .post(format!("{}/v1/nope", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

// --- Azure ------------------------------------------------------------------------------------

#[tokio::test]
async fn azure_deployments() {
    let s = start().await;
    let base = format!("{}/openai/deployments/my-echo/chat/completions", s.url());
    let resp = client()
        .post(&base)
        .header("api-key", "k")
        .json(&json!({"messages": [{"role": "user", "content": "azure hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "404");

    let url = format!("{base}?api-version=2024-10-21");
    let resp = client()
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "azure hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client()
        .post(&url)
        .header("api-key", "k")
        .json(&json!({"messages": [{"role": "user", "content": "azure hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("apim-request-id"));
    let r: ChatCompletion = resp.json().await.unwrap();
    assert_eq!(r.model, "my-echo");
    assert_eq!(r.choices[0].message.content.as_deref(), Some("azure hi"));

    let text = client()
        .post(&url)
        .header("api-key", "k")
        .json(&json!({"stream": true, "messages": [{"role": "user", "content": "azure hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first: Value = serde_json::from_str(&sse_data(&text)[0]).unwrap();
    assert_eq!(first["choices"], json!([]));
    assert!(first["prompt_filter_results"].is_array());

    let resp = client()
        .post(format!(
            "{}/openai/deployments/emb/embeddings?api-version=2024-10-21",
            s.url()
        ))
        .header("api-key", "k")
        .json(&json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "emb");

    let resp = client()
        .post(&url)
        .header("api-key", "k")
        .header("x-mock-fault", "429;retry-after=3")
        .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(resp.headers()["retry-after-ms"], "3000");
}

// --- Anthropic --------------------------------------------------------------------------------

#[tokio::test]
async fn anthropic_plain_and_validation() {
    let s = start().await;
    let resp = anthropic(&s)
        .json(
            &json!({"model": "claude-x", "max_tokens": 100, "system": "be nice",
            "messages": [{"role": "user", "content": "hello"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["stop_sequence"].is_null());
    assert_eq!(m["content"][0]["type"], "text");
    assert_eq!(m["usage"]["output_tokens"], 12);
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));

    let resp = anthropic(&s)
        .json(&json!({"model": "claude-x", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));

    let resp = client()
        .post(format!("{}/v1/messages", s.url()))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "c", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");

    let resp = client()
        .post(format!("{}/v1/messages", s.url()))
        .header("x-api-key", "k")
        .json(&json!({"model": "c", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Cached tokens: input_tokens excludes what was read from the cache.
    let m: Value = anthropic(&s)
        .json(&json!({"model": "claude+cached-50", "max_tokens": 3,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["usage"]["cache_read_input_tokens"], 50);
    assert_eq!(m["usage"]["input_tokens"], 0);
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn anthropic_stream_event_order_with_thinking() {
    let s = start().await;
    let text = anthropic(&s)
        .json(
            &json!({"model": "claude-think+tokens-3", "max_tokens": 1000, "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 500},
            "messages": [{"role": "user", "content": "hello"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(names[0], "message_start");
    assert_eq!(names[1], "content_block_start");
    assert_eq!(names[2], "ping");
    assert_eq!(
        &names[names.len() - 2..],
        &["message_delta", "message_stop"]
    );
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    let deltas: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["type"].as_str().unwrap())
        .collect();
    let sig = deltas.iter().position(|d| *d == "signature_delta").unwrap();
    assert!(deltas[..sig].iter().all(|d| *d == "thinking_delta"));
    assert!(deltas[sig + 1..].iter().all(|d| *d == "text_delta"));
    assert_eq!(deltas.len() - sig - 1, 3);
    let start = &events[0].1["message"];
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["content"], json!([]));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 3);

    // Without `thinking` in the request a thinking model shows no thinking.
    let m: Value = anthropic(&s)
        .json(&json!({"model": "claude-think", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["content"].as_array().unwrap().len(), 1);
    assert_eq!(m["content"][0]["type"], "text");
}

#[tokio::test]
async fn anthropic_tools_and_forced_choice() {
    let s = start().await;
    let tools = json!([
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
    ]);
    let text = anthropic(&s)
        .json(
            &json!({"model": "tool", "max_tokens": 100, "stream": true, "tools": tools,
            "messages": [{"role": "user", "content": "weather"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let start = events
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["input"], json!({}));
    assert!(start.1["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_"));
    let json_text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"city": "mock-city"})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    let m: Value = anthropic(&s)
        .json(&json!({"model": "json", "max_tokens": 100, "tools": tools,
            "tool_choice": {"type": "tool", "name": "get_time"},
            "messages": [{"role": "user", "content": "time"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["content"][0]["type"], "tool_use");
    assert_eq!(m["content"][0]["name"], "get_time");
    assert_eq!(m["content"][0]["input"], json!({"tz": "mock-tz"}));

    let m: Value = anthropic(&s)
        .json(&json!({"model": "tool", "max_tokens": 100, "tools": tools, "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "cold"}]}]}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["content"][0]["text"], "Tool result received: cold");
}

// --- Gemini -----------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_generate_stream_and_keys() {
    let s = start().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}],
        "generationConfig": {"candidateCount": 2}});
    let r: Value = gemini(&s, "gemini-2.0-flash:generateContent")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(r["candidates"][0]["content"]["role"], "model");
    assert_eq!(r["candidates"][0]["finishReason"], "STOP");
    assert_eq!(r["usageMetadata"]["candidatesTokenCount"], 24);
    assert_eq!(r["modelVersion"], "gemini-2.0-flash");

    // Key as a query parameter; SSE events end with CRLF CRLF like the real API.
    let resp = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.0-flash+tokens-3:streamGenerateContent?alt=sse&key=k",
            s.url()
        ))
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("\r\n\r\n"));
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 3);
    assert!(chunks[..2]
        .iter()
        .all(|c| c["candidates"][0].get("finishReason").is_none()));
    let last = &chunks[2];
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3);

    // Without alt=sse: a streamed JSON array.
    let text = gemini(&s, "g+tokens-2:streamGenerateContent")
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let arr: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(arr.len(), 2);

    let resp = client()
        .post(format!("{}/v1beta/models/g:generateContent", s.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(e["error"]["code"], 403);

    let resp = gemini(&s, "g:generateContent")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");

    let resp = gemini(&s, "g:unknownAction")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn gemini_tools_json_thoughts_and_embeddings() {
    let s = start().await;
    let tools = json!([{"functionDeclarations": [
        {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
        {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
    ]}]);
    let r: Value = gemini(&s, "gemini-tool-parallel:generateContent")
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "both"}]}], "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts = &r["candidates"][0]["content"]["parts"];
    assert_eq!(parts[0]["functionCall"]["name"], "get_weather");
    assert_eq!(
        parts[0]["functionCall"]["args"],
        json!({"city": "mock-city"})
    );
    assert_eq!(parts[1]["functionCall"]["args"], json!({"tz": "mock-tz"}));

    let r: Value = gemini(&s, "gemini-tool:generateContent")
        .json(&json!({"tools": tools, "contents": [
            {"role": "user", "parts": [{"text": "weather"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "hot"}}}]}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["candidates"][0]["content"]["parts"][0]["text"],
        "Tool result received: hot"
    );

    let r: Value = gemini(&s, "gemini-json:generateContent")
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = r["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"n": 1})
    );

    let text = client()
        .post(format!(
            "{}/v1beta/models/gemini-think+tokens-2:streamGenerateContent?alt=sse",
            s.url()
        ))
        .header("x-goog-api-key", "k")
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": true}}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["thought"],
        true
    );
    let last = chunks.last().unwrap();
    assert!(
        last["usageMetadata"]["thoughtsTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(last["candidates"][0]["content"]["parts"][0]
        .get("thought")
        .is_none());

    let one: Value = gemini(&s, "text-embedding-004:embedContent")
        .json(&json!({"content": {"parts": [{"text": "same"}]}, "outputDimensionality": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["embedding"]["values"].as_array().unwrap().len(), 8);
    let batch: Value = gemini(&s, "text-embedding-004:batchEmbedContents")
        .json(&json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "same"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "same"}]}, "outputDimensionality": 8}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        batch["embeddings"][0]["values"].as_array().unwrap().len(),
        16
    );
    assert_eq!(batch["embeddings"][1]["values"], one["embedding"]["values"]);

    // The same text embeds to the same vector through OpenAI too.
    let oa: Value = openai(&s, "/v1/embeddings")
        .json(&json!({"model": "e", "input": "same", "dimensions": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oa["data"][0]["embedding"], one["embedding"]["values"]);
}

// --- Faults -----------------------------------------------------------------------------------

#[tokio::test]
async fn status_faults_are_provider_shaped() {
    let s = start().await;
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+fault-429+retry-after-2", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");

    let resp = anthropic(&s)
        .header("x-mock-fault", "529")
        .json(
            &json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "overloaded_error");

    let resp = gemini(&s, "g+fault-429+retry-after-7:generateContent")
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(e["error"]["details"][0]["retryDelay"], "7s");

    for (fault, status) in [("500", 500), ("503", 503), ("401", 401), ("418", 418)] {
        let resp = openai(&s, "/v1/chat/completions")
            .header("x-mock-fault", fault)
            .json(&chat("gpt", "x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        let e: Value = resp.json().await.unwrap();
        assert!(e["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn fail_first_counts_per_model_name() {
    let s = start().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = openai(&s, "/v1/chat/completions")
            .json(&chat("gpt+fail-first-2", "x"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![500, 500, 200, 200]);
    let resp = openai(&s, "/v1/chat/completions")
        .header("x-mock-fault", "fail-first=1")
        .json(&chat("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    s.clear();
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+fail-first-2", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500, "clear() resets the counters");
}

#[tokio::test]
async fn timeout_fault_never_answers() {
    let s = start().await;
    let err = openai(&s, "/v1/chat/completions")
        .timeout(Duration::from_millis(300))
        .json(&chat("gpt+timeout", "x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let err = gemini(&s, "g:generateContent")
        .timeout(Duration::from_millis(200))
        .header("x-mock-fault", "timeout")
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn reset_fault_sends_rst_without_a_response() {
    let s = start().await;
    let err = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+reset", "x"))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");

    // On a raw socket: no byte of a response, then ECONNRESET.
    let mut sock = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let body = r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\nx-mock-fault: reset\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(buf.is_empty(), "got {:?}", String::from_utf8_lossy(&buf));
    assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);

    // The server keeps serving.
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn malformed_fault_plain_and_streamed() {
    let s = start().await;
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+malformed", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());

    let mut body = chat("gpt+malformed", "x");
    body["stream"] = json!(true);
    let text = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bad = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);

    let text = anthropic(&s)
        .header("x-mock-fault", "malformed")
        .json(&json!({"model": "c", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse_data(&text)
        .iter()
        .any(|d| serde_json::from_str::<Value>(d).is_err()));
}

#[tokio::test]
async fn cut_after_closes_mid_stream() {
    let s = start().await;
    let mut body = chat("gpt+cut-after-3+tokens-10", "x");
    body["stream"] = json!(true);
    let mut resp = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (text, end) = read_body(&mut resp, Duration::from_secs(5)).await;
    assert!(end.is_err() && end != Err("deadline".into()), "{end:?}");
    assert!(!text.contains("[DONE]"));
    let content = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(content, 3);

    let mut resp = anthropic(&s)
        .header("x-mock-fault", "cut-after=2")
        .json(&json!({"model": "c", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let (text, end) = read_body(&mut resp, Duration::from_secs(5)).await;
    assert!(end.is_err());
    assert!(!text.contains("message_stop"));
    assert_eq!(text.matches("text_delta").count(), 2);
    // A cut is the server's doing, not a client cancellation.
    wait_until("streams to end", || s.active_streams() == 0).await;
    assert_eq!(s.cancelled_streams(), 0);
}

#[tokio::test]
async fn stall_after_hangs_and_counts_cancellation() {
    let s = start().await;
    let mut body = chat("gpt+stall-after-2+tokens-10", "x");
    body["stream"] = json!(true);
    let mut resp = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (text, end) = read_body(&mut resp, Duration::from_millis(400)).await;
    assert_eq!(end, Err("deadline".into()));
    let contents = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(contents, 2);
    assert_eq!(s.active_streams(), 1);
    drop(resp);
    wait_until("the stalled stream to be cancelled", || {
        s.cancelled_streams() == 1 && s.active_streams() == 0
    })
    .await;
}

#[tokio::test]
async fn client_going_away_is_counted_as_cancelled() {
    let s = start().await;
    let mut body = chat("gpt+tps-50+tokens-100", "x");
    body["stream"] = json!(true);
    let mut resp = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    wait_until("the stream to be active", || s.active_streams() == 1).await;
    drop(resp);
    wait_until("the cancellation", || {
        s.cancelled_streams() == 1 && s.active_streams() == 0
    })
    .await;

    // A stream read to its end is not cancelled.
    let mut body = chat("gpt+tokens-3", "x");
    body["stream"] = json!(true);
    openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    wait_until("streams to end", || s.active_streams() == 0).await;
    assert_eq!(s.cancelled_streams(), 1);
}

// --- Timing -----------------------------------------------------------------------------------

#[tokio::test]
async fn latency_ttft_and_pacing() {
    let s = start().await;
    let t = Instant::now();
    let resp = openai(&s, "/v1/chat/completions")
        .header("x-mock-latency-ms", "150")
        .json(&chat("gpt", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    // Streams: head after latency, first chunk after ttft, then 10 tokens at 50/s.
    let mut body = chat("gpt+latency-50+ttft-700+tps-50+tokens-10", "x");
    body["stream"] = json!(true);
    let t = Instant::now();
    let mut resp = openai(&s, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let head = t.elapsed();
    assert!(head >= Duration::from_millis(50) && head < Duration::from_millis(600));
    resp.chunk().await.unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(750));
    resp.text().await.unwrap();
    // 9 intervals of 20 ms after the first token.
    assert!(
        t.elapsed() >= Duration::from_millis(750 + 170),
        "{:?}",
        t.elapsed()
    );

    // Non-streamed answers take as long as generating them would.
    let t = Instant::now();
    openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+ttft-100+tps-100+tokens-11", "x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(195),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn profiles_apply_by_glob() {
    let s = MockServer::start(MockConfig {
        profiles: vec![
            ModelProfile {
                model: "flaky-*".into(),
                fault: Some("503".into()),
                ..ModelProfile::default()
            },
            ModelProfile {
                model: "short*".into(),
                tokens: Some(2),
                ..ModelProfile::default()
            },
        ],
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("flaky-gpt", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let r: Value = openai(&s, "/v1/chat/completions")
        .json(&chat("short-model", "x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["usage"]["completion_tokens"], 2);
    // The request's own directives win over the profile.
    let r: Value = openai(&s, "/v1/chat/completions")
        .json(&chat("short-model+tokens-5", "x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["usage"]["completion_tokens"], 5);
}

// --- Recording --------------------------------------------------------------------------------

#[tokio::test]
async fn requests_are_recorded_and_cleared() {
    let s = start().await;
    openai(&s, "/v1/chat/completions?trace=1")
        .header("X-Custom", "Value")
        .json(&chat("gpt", "recorded"))
        .send()
        .await
        .unwrap();
    client()
        .post(format!("{}/v1/messages", s.url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(s.request_count(), 2);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].query, "trace=1");
    assert_eq!(reqs[0].header("x-custom"), Some("Value"));
    assert_eq!(reqs[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(reqs[0].body["messages"][0]["content"], "recorded");
    assert_eq!(reqs[1].body, Value::Null);
    assert_eq!(&reqs[1].raw_body[..], b"not json");
    s.clear();
    assert_eq!(s.request_count(), 0);
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn recording_ring_is_bounded() {
    let s = MockServer::start(MockConfig {
        record_limit: 3,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for i in 0..5 {
        openai(&s, "/v1/chat/completions")
            .json(&chat("gpt", &format!("m{i}")))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(s.request_count(), 5);
    let contents: Vec<Value> = s
        .requests()
        .iter()
        .map(|r| r.body["messages"][0]["content"].clone())
        .collect();
    assert_eq!(contents, vec![json!("m2"), json!("m3"), json!("m4")]);
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let s = start().await;
    let url = s.url();
    s.shutdown().await;
    assert!(client().get(format!("{url}/health")).send().await.is_err());
}

#[tokio::test]
async fn serve_runs_until_shutdown_future() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(plexus_mock::serve(listener, MockConfig::default(), async {
        let _ = rx.await;
    }));
    let body = client()
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok");
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn context_window_errors_in_each_providers_words() {
    let s = start().await;
    let long = "word ".repeat(400);
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+context-50", &long))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "messages");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("This model's maximum context length is 50 tokens."));
    let resp = openai(&s, "/v1/chat/completions")
        .json(&chat("gpt+context-50", "short"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a prompt that fits is answered");

    let resp = anthropic(&s)
        .json(&json!({"model": "c+context-50", "max_tokens": 5, "messages": [{"role": "user", "content": long}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("prompt is too long:"));

    let resp = gemini(&s, "g+context-50:generateContent")
        .json(&json!({"contents": [{"parts": [{"text": long}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the maximum number of tokens allowed (50)"));
}
