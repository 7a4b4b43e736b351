//! The OpenAI Responses API (`POST /v1/responses`) on every provider kind, plain and streamed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, MASTER_KEY};
use serde_json::{json, Value};

const MODELS: &str = "  - name: agent-oai\n    targets: [{provider: oai, model: gpt-4o-mini+agent}]\n  - name: agent-claude\n    targets: [{provider: claude, model: claude-sonnet-4-5+agent}]\n  - name: agent-gem\n    targets: [{provider: gem, model: gemini-2.5-flash+agent}]\n";

fn post(gw: &Gateway, body: &Value) -> reqwest::RequestBuilder {
    gw.http
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(body)
}

async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
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

#[tokio::test]
async fn plain_and_streamed_responses_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    for model in ["gpt", "sonnet", "flash"] {
        let body = json!({"model": model, "instructions": "Be brief.", "input": "Say hello",
            "tools": [{"type": "web_search"}], "max_output_tokens": 64});
        let resp = post(&gw, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["object"], "response", "{r}");
        assert!(r["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], model);
        let text = r["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!text.is_empty());
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let mut b = body.clone();
        b["stream"] = json!(true);
        let resp = post(&gw, &b).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ev = events(resp).await;
        assert_eq!(ev[0].0, "response.created");
        assert_eq!(ev.last().unwrap().0, "response.completed");
        let deltas: String = ev
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, text, "{model}");
        for (i, (n, d)) in ev.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64);
            assert_eq!(d["type"], n.as_str());
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_shell_round_trip_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    let tools = json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object",
        "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}, {"type": "namespace", "name": "mcp"}]);
    for model in ["agent-oai", "agent-claude", "agent-gem"] {
        let first = json!({"model": model, "tools": tools, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run `echo hi-7` please."}]}]});
        let r: Value = post(&gw, &first)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let call = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: {r}"))
            .clone();
        assert_eq!(call["name"], "exec_command");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"cmd": "echo hi-7"}));
        let second = json!({"model": model, "tools": tools, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run `echo hi-7` please."}]},
            {"type": "function_call", "call_id": call["call_id"], "name": "exec_command", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "hi-7\n"}]});
        let r: Value = post(&gw, &second)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = r["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("hi-7"), "{model}: {r}");
    }
    for (body, param) in [
        (json!({"model": "gpt", "input": []}), "input"),
        (
            json!({"model": "gpt", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "gpt", "input": "x", "background": true}),
            "background",
        ),
    ] {
        let resp = post(&gw, &body).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    gw.shutdown().await;
}
