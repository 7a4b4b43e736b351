//! The `agent` behaviour over real HTTP, in every wire format, plain and streamed: a first
//! request with tools gets a call of the shell tool with the command from the prompt, the
//! second (ending in the tool result) gets text quoting the result.
#![cfg(test)]

use plexus_mock::{MockConfig, MockServer};
use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};

const PROMPT: &str = "Run `echo hello-42` and tell me the output";

async fn start() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn openai(s: &MockServer) -> RequestBuilder {
    client()
        .post(format!("{}/v1/chat/completions", s.url()))
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

async fn json_of(req: RequestBuilder, body: &Value) -> Value {
    let resp = req.json(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn text_of(req: RequestBuilder, body: &Value) -> String {
    let resp = req.json(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The JSON `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<Value> {
    body.split(['\n', '\r'])
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

// --- OpenAI chat ------------------------------------------------------------------------------

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "apply_patch", "parameters": {
            "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}},
        {"type": "function", "function": {"name": "exec_command", "parameters": {
            "type": "object",
            "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}, "yield_time_ms": {"type": "number"}},
            "required": ["cmd"]}}}
    ])
}

fn openai_first(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "tools": openai_tools(), "messages": [
        {"role": "system", "content": "You are Codex. Use `exec_command`."},
        {"role": "user", "content": [{"type": "text", "text": PROMPT}]}
    ]})
}

fn openai_second(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "tools": openai_tools(), "messages": [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
            "function": {"name": "exec_command", "arguments": "{\"cmd\":\"echo hello-42\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "hello-42\n"}
    ]})
}

#[tokio::test]
async fn openai_agent_calls_the_shell_then_quotes_the_result() {
    let s = start().await;
    for model in ["gpt-agent", "gpt-4o+agent"] {
        let r = json_of(openai(&s), &openai_first(model, false)).await;
        let choice = &r["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}");
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(calls[0]["function"]["name"], "exec_command");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"cmd": "echo hello-42"}));

        let r = json_of(openai(&s), &openai_second(model, false)).await;
        assert_eq!(
            r["choices"][0]["message"]["content"],
            "The command printed: hello-42"
        );
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
    }

    // Without the keyword or directive the model behaves as before: a sentence.
    let r = json_of(openai(&s), &openai_first("gpt-4o", false)).await;
    assert!(r["choices"][0]["message"]["tool_calls"].is_null());
    // Without a command in backticks the agent falls back too.
    let mut body = openai_first("agent", false);
    body["messages"][1]["content"] = json!("Say hello");
    let r = json_of(openai(&s), &body).await;
    assert!(r["choices"][0]["message"]["tool_calls"].is_null());
    assert!(r["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn openai_agent_streamed() {
    let s = start().await;
    let chunks = sse_data(&text_of(openai(&s), &openai_first("agent", true)).await);
    let deltas: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(deltas[0]["function"]["name"], "exec_command");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"cmd": "echo hello-42"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    let chunks = sse_data(&text_of(openai(&s), &openai_second("agent", true)).await);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "The command printed: hello-42");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn openai_agent_uses_codex_shell_with_an_array() {
    let s = start().await;
    let body = json!({"model": "agent", "tools": [{"type": "function", "function": {
        "name": "shell", "parameters": {"type": "object", "properties": {
            "command": {"type": "array", "items": {"type": "string"}},
            "workdir": {"type": "string"}}, "required": ["command"]}}}],
        "messages": [{"role": "user", "content": "Please run:\n```bash\nls -la /tmp\n```"}]});
    let r = json_of(openai(&s), &body).await;
    let call = &r["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "shell");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"command": ["bash", "-lc", "ls -la /tmp"]}));
}

// --- Anthropic Messages -----------------------------------------------------------------------

fn claude_code_tools() -> Value {
    json!([
        {"name": "Task", "input_schema": {"type": "object", "properties": {
            "description": {"type": "string"}, "prompt": {"type": "string"}}, "required": ["description", "prompt"]}},
        {"name": "Bash", "input_schema": {"type": "object", "properties": {
            "command": {"type": "string"}, "timeout": {"type": "number"}, "description": {"type": "string"}},
            "required": ["command"]}},
        {"name": "Read", "input_schema": {"type": "object", "properties": {
            "file_path": {"type": "string"}}, "required": ["file_path"]}}
    ])
}

fn anthropic_first(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 1024, "stream": stream, "tools": claude_code_tools(),
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "messages": [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nUse `rg` rather than `grep`.\n</system-reminder>"},
        {"type": "text", "text": PROMPT}
    ]}]})
}

fn anthropic_second(model: &str, stream: bool, result: Value, is_error: bool) -> Value {
    json!({"model": model, "max_tokens": 1024, "stream": stream, "tools": claude_code_tools(),
    "messages": [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01abc", "name": "Bash",
            "input": {"command": "echo hello-42"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01abc",
            "content": result, "is_error": is_error}]}
    ]})
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

#[tokio::test]
async fn anthropic_agent_calls_bash_then_quotes_the_result() {
    let s = start().await;
    for model in ["claude-agent", "claude-sonnet-4-5-20250929+agent"] {
        let m = json_of(anthropic(&s), &anthropic_first(model, false)).await;
        assert_eq!(m["stop_reason"], "tool_use", "{model}");
        let content = m["content"].as_array().unwrap();
        assert_eq!(content.len(), 1);
        assert_eq!(content[0]["type"], "tool_use");
        assert!(content[0]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(content[0]["name"], "Bash");
        assert_eq!(content[0]["input"], json!({"command": "echo hello-42"}));

        // The result as a string, and as an array of text blocks.
        for result in [
            json!("hello-42\n"),
            json!([{"type": "text", "text": "hello-42"}]),
        ] {
            let m = json_of(
                anthropic(&s),
                &anthropic_second(model, false, result, false),
            )
            .await;
            assert_eq!(m["stop_reason"], "end_turn");
            assert_eq!(m["content"][0]["type"], "text");
            assert_eq!(m["content"][0]["text"], "The command printed: hello-42");
        }
    }
    let m = json_of(
        anthropic(&s),
        &anthropic_second(
            "agent",
            false,
            json!([{"type": "text", "text": "bash: frob: command not found"}]),
            true,
        ),
    )
    .await;
    assert_eq!(
        m["content"][0]["text"],
        "The command failed: bash: frob: command not found"
    );
}

#[tokio::test]
async fn anthropic_agent_streamed() {
    let s = start().await;
    let events = sse_events(&text_of(anthropic(&s), &anthropic_first("agent", true)).await);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let start = events
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .unwrap();
    assert_eq!(start.1["index"], 0);
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "Bash");
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
        json!({"command": "echo hello-42"})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    let body = anthropic_second(
        "agent",
        true,
        json!([{"type": "text", "text": "hello-42"}]),
        false,
    );
    let events = sse_events(&text_of(anthropic(&s), &body).await);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "The command printed: hello-42");
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
}

// --- Gemini generateContent -------------------------------------------------------------------

fn gemini_tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "read_file", "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]}},
        {"name": "run_shell_command", "parameters": {"type": "OBJECT", "properties": {
            "command": {"type": "STRING"}, "description": {"type": "STRING"}}, "required": ["command"]}}
    ]}])
}

fn gemini_first() -> Value {
    json!({"tools": gemini_tools(), "contents": [{"role": "user", "parts": [{"text": PROMPT}]}]})
}

fn gemini_second(response: Value) -> Value {
    json!({"tools": gemini_tools(), "contents": [
        {"role": "user", "parts": [{"text": PROMPT}]},
        {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command",
            "args": {"command": "echo hello-42"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command", "response": response}}]}
    ]})
}

#[tokio::test]
async fn gemini_agent_calls_the_shell_then_quotes_the_result() {
    let s = start().await;
    for model in ["gemini-agent", "gemini-2.5-pro+agent"] {
        let r = json_of(
            gemini(&s, &format!("{model}:generateContent")),
            &gemini_first(),
        )
        .await;
        let cand = &r["candidates"][0];
        assert_eq!(cand["finishReason"], "STOP", "{model}");
        let parts = cand["content"]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["functionCall"]["name"], "run_shell_command");
        assert_eq!(
            parts[0]["functionCall"]["args"],
            json!({"command": "echo hello-42"})
        );

        for response in [
            json!({"output": "hello-42\n"}),
            json!({"result": "hello-42"}),
            json!({"content": [{"text": "hello-42"}]}),
        ] {
            let r = json_of(
                gemini(&s, &format!("{model}:generateContent")),
                &gemini_second(response),
            )
            .await;
            assert_eq!(
                r["candidates"][0]["content"]["parts"][0]["text"],
                "The command printed: hello-42"
            );
        }
    }
    // A response without a known field is quoted as JSON; `error` is a failure.
    let r = json_of(
        gemini(&s, "agent:generateContent"),
        &gemini_second(json!({"stdout": "hello-42"})),
    )
    .await;
    assert_eq!(
        r["candidates"][0]["content"]["parts"][0]["text"],
        "The command printed: {\"stdout\":\"hello-42\"}"
    );
    let r = json_of(
        gemini(&s, "agent:generateContent"),
        &gemini_second(json!({"error": "exit status 127"})),
    )
    .await;
    assert_eq!(
        r["candidates"][0]["content"]["parts"][0]["text"],
        "The command failed: exit status 127"
    );
}

#[tokio::test]
async fn gemini_agent_streamed() {
    let s = start().await;
    let text = text_of(
        gemini(&s, "agent:streamGenerateContent?alt=sse"),
        &gemini_first(),
    )
    .await;
    let chunks = sse_data(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array())
        .flatten()
        .filter(|p| p.get("functionCall").is_some())
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["functionCall"]["name"], "run_shell_command");
    assert_eq!(
        calls[0]["functionCall"]["args"],
        json!({"command": "echo hello-42"})
    );

    let text = text_of(
        gemini(&s, "agent:streamGenerateContent?alt=sse"),
        &gemini_second(json!({"output": "hello-42"})),
    )
    .await;
    let said: String = sse_data(&text)
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array())
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(said, "The command printed: hello-42");
}
