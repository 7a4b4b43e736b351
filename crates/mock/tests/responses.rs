//! The OpenAI Responses API (`POST /v1/responses`) over real HTTP: the answer's shape, the
//! streamed events, the agent round trip and faults.
#![cfg(test)]

use plexus_mock::{MockConfig, MockServer};
use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};

const PROMPT: &str = "Run `echo hi` and tell me the output";

async fn start() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

fn responses(s: &MockServer) -> RequestBuilder {
    Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/v1/responses", s.url()))
        .bearer_auth("sk-test")
}

async fn json_of(req: RequestBuilder, body: &Value) -> Value {
    let resp = req.json(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The `(event, data)` pairs of an SSE body.
async fn events_of(req: RequestBuilder, body: &Value) -> Vec<(String, Value)> {
    let resp = req.json(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(d).unwrap());
            }
        }
        let (name, data) = (name.unwrap(), data.unwrap());
        assert_eq!(data["type"], name.as_str());
        out.push((name, data));
    }
    // Strictly increasing sequence numbers, from 0.
    for (i, (_, d)) in out.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64, "{d}");
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn tools() -> Value {
    json!([
        {"type": "web_search"},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        {"type": "function", "name": "exec_command", "description": "Runs a command", "strict": false,
         "parameters": {"type": "object",
            "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
            "required": ["cmd"]}}
    ])
}

fn first(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "tools": tools(), "tool_choice": "auto",
    "instructions": "You are Codex.",
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use `exec_command`."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}
    ]})
}

fn second(model: &str, stream: bool) -> Value {
    let mut body = first(model, stream);
    let input = body["input"].as_array_mut().unwrap();
    input.push(
        json!({"type": "function_call", "call_id": "call_abc", "name": "exec_command",
        "arguments": "{\"cmd\":\"echo hi\"}"}),
    );
    input.push(json!({"type": "function_call_output", "call_id": "call_abc", "output": "hi\n"}));
    body
}

#[tokio::test]
async fn plain_text_answer_has_the_response_shape() {
    let s = start().await;
    let body = json!({"model": "gpt-4o+tokens-5", "input": "Hello", "instructions": "Be nice.",
        "metadata": {"k": "v"}});
    let r = json_of(responses(&s), &body).await;
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert!(r["created_at"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "gpt-4o+tokens-5");
    assert!(r["error"].is_null());
    assert!(r["incomplete_details"].is_null());
    assert_eq!(r["instructions"], "Be nice.");
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["text"]["format"]["type"], "text");
    let output = r["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{r}");
    let msg = &output[0];
    assert_eq!(msg["type"], "message");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["status"], "completed");
    assert_eq!(msg["role"], "assistant");
    let part = &msg["content"][0];
    assert_eq!(part["type"], "output_text");
    assert_eq!(part["annotations"], json!([]));
    let text = part["text"].as_str().unwrap();
    assert_eq!(text.split(' ').count(), 5);
    assert!(text.ends_with('.'));
    let u = &r["usage"];
    assert_eq!(u["output_tokens"], 5);
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + 5
    );

    // The same request gets the same text.
    let again = json_of(responses(&s), &body).await;
    assert_eq!(again["output"][0]["content"][0]["text"], text);

    // Reasoning models add a reasoning item; a summary when asked for one.
    let body = json!({"model": "o-think", "input": "Hello", "reasoning": {"effort": "low", "summary": "auto"}});
    let r = json_of(responses(&s), &body).await;
    assert_eq!(r["output"][0]["type"], "reasoning");
    assert!(r["output"][0]["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(r["output"][0]["summary"][0]["type"], "summary_text");
    assert_eq!(r["output"][1]["type"], "message");
    assert!(
        r["usage"]["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Cut by max_output_tokens: incomplete.
    let body = json!({"model": "gpt-4o+tokens-20", "input": "Hello", "max_output_tokens": 3});
    let r = json_of(responses(&s), &body).await;
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"][0]["status"], "incomplete");
    assert_eq!(r["usage"]["output_tokens"], 3);

    // Echo and JSON output with a schema.
    let r = json_of(
        responses(&s),
        &json!({"model": "echo", "input": [{"role": "user", "content": "say this back"}]}),
    )
    .await;
    assert_eq!(r["output"][0]["content"][0]["text"], "say this back");
    let body = json!({"model": "gpt-json", "input": "x", "text": {"format": {"type": "json_schema",
        "name": "out", "schema": {"type": "object", "properties": {"n": {"type": "integer"}},
        "required": ["n"]}}}});
    let r = json_of(responses(&s), &body).await;
    let out: Value =
        serde_json::from_str(r["output"][0]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert!(out["n"].is_i64(), "{out}");
}

#[tokio::test]
async fn streamed_events_come_in_order() {
    let s = start().await;
    let body = json!({"model": "gpt-4o+tokens-6", "input": "Hello", "stream": true});
    let events = events_of(responses(&s), &body).await;
    let n = names(&events);
    assert_eq!(
        &n[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        &n[n.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert!(n[4..n.len() - 4]
        .iter()
        .all(|e| *e == "response.output_text.delta"));
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["output"], json!([]));
    let item_id = events[2].1["item"]["id"].as_str().unwrap().to_owned();
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(deltas.len(), 6);
    assert!(deltas.iter().all(|d| d["item_id"] == item_id.as_str()
        && d["output_index"] == 0
        && d["content_index"] == 0));
    let joined: String = deltas
        .iter()
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    let (_, done) = events
        .iter()
        .find(|(n, _)| n == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], joined.as_str());
    let (last, fin) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    let r = &fin["response"];
    assert_eq!(r["status"], "completed");
    assert_eq!(r["id"], events[0].1["response"]["id"]);
    assert_eq!(r["output"][0]["id"], item_id.as_str());
    assert_eq!(r["output"][0]["content"][0]["text"], joined.as_str());
    assert_eq!(r["usage"]["output_tokens"], 6);

    // Cut short: response.incomplete.
    let body = json!({"model": "gpt-4o+tokens-20", "input": "Hello", "stream": true,
        "max_output_tokens": 2});
    let events = events_of(responses(&s), &body).await;
    let (last, fin) = events.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(
        fin["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[tokio::test]
async fn agent_calls_the_shell_then_quotes_the_output() {
    let s = start().await;
    for model in ["gpt-agent", "gpt-5-codex+agent"] {
        let r = json_of(responses(&s), &first(model, false)).await;
        let output = r["output"].as_array().unwrap();
        let call = output
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: {r}"));
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["name"], "exec_command");
        assert_eq!(call["status"], "completed");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"cmd": "echo hi"}));
        assert!(output.iter().all(|o| o["type"] != "message"));
        assert_eq!(r["status"], "completed");

        let r = json_of(responses(&s), &second(model, false)).await;
        let msg = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "message")
            .unwrap();
        assert_eq!(msg["content"][0]["text"], "The command printed: hi");
    }
    // Without the keyword: an ordinary answer.
    let r = json_of(responses(&s), &first("gpt-4o", false)).await;
    assert_eq!(r["output"][0]["type"], "message");
}

#[tokio::test]
async fn agent_streamed() {
    let s = start().await;
    let events = events_of(responses(&s), &first("agent", true)).await;
    let n = names(&events);
    assert_eq!(n[2], "response.output_item.added");
    assert_eq!(events[2].1["item"]["type"], "function_call");
    assert_eq!(events[2].1["item"]["arguments"], "");
    let item_id = events[2].1["item"]["id"].as_str().unwrap().to_owned();
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .inspect(|(_, d)| assert_eq!(d["item_id"], item_id.as_str()))
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"cmd": "echo hi"})
    );
    let (_, done) = events
        .iter()
        .find(|(n, _)| n == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], args.as_str());
    assert_eq!(
        &n[n.len() - 2..],
        ["response.output_item.done", "response.completed"]
    );
    let item = &events[events.len() - 2].1["item"];
    assert_eq!(item["name"], "exec_command");
    assert_eq!(item["arguments"], args.as_str());
    assert_eq!(events.last().unwrap().1["response"]["output"][0], *item);

    let events = events_of(responses(&s), &second("agent", true)).await;
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "The command printed: hi");
}

#[tokio::test]
async fn faults_and_errors_are_openai_shaped() {
    let s = start().await;
    let resp = responses(&s)
        .json(&json!({"model": "gpt-4o+fault-429+retry-after-2", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert!(resp.headers().contains_key("x-request-id"));
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Rate limit"));
    assert!(e["error"]["type"].is_string());

    // No key.
    let resp = Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/v1/responses", s.url()))
        .json(&json!({"model": "gpt-4o", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_api_key");

    // No model; a bad input.
    let resp = responses(&s)
        .json(&json!({"input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "model");
    let resp = responses(&s)
        .json(&json!({"model": "m", "input": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "input");
}

#[tokio::test]
async fn cut_after_drops_the_stream_mid_text() {
    let s = start().await;
    let body = json!({"model": "gpt-4o+cut-after-3+tokens-10", "input": "x", "stream": true});
    let resp = responses(&s).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut text = Vec::new();
    let end = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), resp.chunk()).await {
            Ok(Ok(Some(c))) => text.extend_from_slice(&c),
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) => break Err(e.to_string()),
            Err(_) => break Err("deadline".to_owned()),
        }
    };
    assert!(end.is_err() && end != Err("deadline".into()), "{end:?}");
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.matches("event: response.output_text.delta").count(), 3);
    assert!(!text.contains("response.completed"));
}
