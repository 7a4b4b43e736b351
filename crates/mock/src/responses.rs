//! OpenAI Responses API (`POST /v1/responses`), plain and streamed.
//!
//! Stateless: `previous_response_id`, `store` and `background` are echoed but not acted on.
//! Tools other than `function` (hosted tools such as `web_search`, Codex's `custom` and
//! `namespace` tools) are ignored; so are images and files in the input.

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::behavior::{Fault, Knobs};
use crate::common::{
    alnum, as_u32, content_text, hex, json_response, malformed_response, sse_response, unix_now,
    Ctx, Flavor,
};
use crate::gen::{
    self, Finish, Input, Reply, Text, Thinking, ToolCallOut, ToolMode, ToolSpec, Transcript,
};
use crate::sse::{self, Events, Framing};
use crate::state::MockState;

pub(crate) async fn responses(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::OpenAi).await;
    if let Err(resp) = crate::openai::openai_auth(&state, &ctx) {
        return resp;
    }
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let model = match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m,
        _ => {
            return ctx.error_full(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: 'model'.",
                Some("missing_required_parameter"),
                Some("model"),
            )
        }
    };
    match body.get("input") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
        Some(other) => {
            let kind = match other {
                Value::Object(_) => "an object",
                Value::Number(_) => "a number",
                _ => "a boolean",
            };
            return ctx.error_full(
                StatusCode::BAD_REQUEST,
                &format!("Invalid type for 'input': expected one of a string or array of input items, but got {kind} instead."),
                Some("invalid_type"),
                Some("input"),
            );
        }
    }
    let knobs = Knobs::resolve(state.config(), model, &ctx.headers);
    if let Some(resp) = ctx.gate(&state, &knobs, model).await {
        return resp;
    }
    let input = input_of(&body);
    if let Some(resp) = ctx.context_gate(&knobs, gen::prompt_tokens(input.prompt_chars)) {
        return resp;
    }
    let reply = gen::generate(model, &input, &knobs);
    let r = Render::new(&body, model, &reply);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let events = r.stream_events();
        let b = sse::body(&state, events, &knobs, MALFORMED_EVENT);
        return ctx.finish(sse_response(b, "text/event-stream; charset=utf-8"));
    }
    ctx.generation_delay(&knobs, reply.output_tokens() + reply.reasoning_tokens())
        .await;
    if knobs.fault == Some(Fault::Malformed) {
        return ctx.finish(malformed_response(ctx.flavor));
    }
    ctx.finish(json_response(StatusCode::OK, &r.response(true)))
}

const MALFORMED_EVENT: &[u8] = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"delta\":\"unterminated\n\n";

fn item_type(item: &Value) -> Option<&str> {
    match item.get("type").and_then(Value::as_str) {
        Some(t) => Some(t),
        None if item.get("role").is_some() => Some("message"),
        None => None,
    }
}

/// An item the model produced: an assistant message or a call of any tool.
fn is_model_turn(item: &Value) -> bool {
    match item_type(item) {
        Some("message") => item.get("role").and_then(Value::as_str) == Some("assistant"),
        Some(t) => t.ends_with("_call"),
        None => false,
    }
}

/// The result of a tool call (`function_call_output`, `custom_tool_call_output`, …).
fn is_tool_output(item: &Value) -> bool {
    item_type(item).is_some_and(|t| t.ends_with("_call_output"))
}

fn output_text(item: &Value) -> String {
    item.get("output").map(content_text).unwrap_or_default()
}

/// The request reduced to the generator's [`Input`], the same way as a chat completion with
/// `instructions` as a leading system message and the items as messages.
fn input_of(body: &Value) -> Input<'_> {
    let mut input = Input::new();
    let mut transcript = Transcript::default();
    if let Some(instructions) = body.get("instructions") {
        transcript.add(&content_text(instructions));
    }
    let empty = Vec::new();
    let items: &[Value] = match body.get("input") {
        Some(Value::String(s)) => {
            transcript.add(s);
            input.first_user = s.clone();
            input.last_user = s.clone();
            &[]
        }
        Some(Value::Array(items)) => items,
        _ => &empty,
    };
    let mut seen_user = false;
    for item in items {
        match item_type(item) {
            Some("message") => {
                let text = item.get("content").map(content_text).unwrap_or_default();
                transcript.add(&text);
                if item.get("role").and_then(Value::as_str) == Some("user") {
                    if !seen_user {
                        seen_user = true;
                        input.first_user = text.clone();
                    }
                    input.last_user = text;
                }
            }
            _ if is_tool_output(item) => transcript.add(&output_text(item)),
            _ => {}
        }
    }
    transcript.finish(&mut input);

    // Tool outputs after the model's last turn (an agent client may add a user message of
    // its own after them).
    let trailing: Vec<String> = items
        .iter()
        .rev()
        .take_while(|item| !is_model_turn(item))
        .filter(|item| is_tool_output(item))
        .map(output_text)
        .collect();
    if !trailing.is_empty() {
        let ordered: Vec<String> = trailing.into_iter().rev().collect();
        input.tool_results = Some(ordered.join("; "));
    }

    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        input.tools = tools
            .iter()
            .filter(|t| {
                matches!(
                    t.get("type").and_then(Value::as_str),
                    Some("function") | None
                )
            })
            .filter_map(|t| {
                Some(ToolSpec {
                    name: t.get("name")?.as_str()?,
                    schema: t.get("parameters"),
                })
            })
            .collect();
    }
    input.tool_mode = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => ToolMode::None,
        Some(Value::String(s)) if s == "required" => ToolMode::Required,
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => ToolMode::Named(name),
                None => ToolMode::Auto,
            }
        }
        Some(Value::Object(o))
            if o.get("type").and_then(Value::as_str) == Some("allowed_tools") =>
        {
            if o.get("mode").and_then(Value::as_str) == Some("required") {
                ToolMode::Required
            } else {
                ToolMode::Auto
            }
        }
        _ => ToolMode::Auto,
    };
    input.parallel_tool_calls = body
        .get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    input.json_schema = body
        .pointer("/text/format")
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"))
        .and_then(|f| f.get("schema"));
    input.max_tokens = as_u32(body.get("max_output_tokens"));
    input.thinking = match (
        body.pointer("/reasoning/effort").and_then(Value::as_str),
        body.pointer("/reasoning/summary").and_then(Value::as_str),
    ) {
        (Some("none"), _) => Thinking::Off,
        (_, Some(_)) => Thinking::Visible,
        _ => Thinking::Hidden,
    };
    input
}

/// One item of the response's `output`, with its ids fixed up front so that the streamed
/// events and the final response agree.
enum Out<'r> {
    Reasoning {
        id: String,
        summary: Option<&'r Text>,
    },
    Message {
        id: String,
        text: Option<&'r Text>,
        cut: bool,
    },
    Call {
        id: String,
        call_id: String,
        call: &'r ToolCallOut,
    },
}

impl Out<'_> {
    fn id(&self) -> &str {
        match self {
            Out::Reasoning { id, .. } | Out::Message { id, .. } | Out::Call { id, .. } => id,
        }
    }

    /// The item as `output_item.added` announces it (`done: false`) or as it ends.
    fn json(&self, done: bool) -> Value {
        match self {
            Out::Reasoning { id, summary } => {
                let summary = match (done, summary) {
                    (true, Some(t)) => json!([{"type": "summary_text", "text": t.full}]),
                    _ => json!([]),
                };
                json!({"id": id, "type": "reasoning", "summary": summary})
            }
            Out::Message { id, text, cut } => {
                let status = match (done, cut) {
                    (false, _) => "in_progress",
                    (true, true) => "incomplete",
                    (true, false) => "completed",
                };
                let content = if done {
                    json!([text_part(text.map_or("", |t| t.full.as_str()))])
                } else {
                    json!([])
                };
                json!({"id": id, "type": "message", "status": status, "role": "assistant",
                    "content": content})
            }
            Out::Call { id, call_id, call } => json!({
                "id": id,
                "type": "function_call",
                "status": if done { "completed" } else { "in_progress" },
                "call_id": call_id,
                "name": call.name,
                "arguments": if done { call.args_json.as_str() } else { "" },
            }),
        }
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

struct Render<'a> {
    body: &'a Value,
    id: String,
    created_at: u64,
    model: &'a str,
    reply: &'a Reply,
    output: Vec<Out<'a>>,
    incomplete: bool,
}

impl<'a> Render<'a> {
    fn new(body: &'a Value, model: &'a str, reply: &'a Reply) -> Render<'a> {
        let mut output = Vec::new();
        let mut incomplete = false;
        // The Responses API has no `n`: the first choice is the answer.
        if let Some(c) = reply.choices.first() {
            incomplete = c.finish == Finish::Length;
            if c.reasoning_tokens > 0 {
                output.push(Out::Reasoning {
                    id: format!("rs_{}", hex(48)),
                    summary: c.thinking.as_ref(),
                });
            }
            if c.tool_calls.is_empty() {
                output.push(Out::Message {
                    id: format!("msg_{}", hex(48)),
                    text: c.text.as_ref(),
                    cut: incomplete,
                });
            }
            for call in &c.tool_calls {
                output.push(Out::Call {
                    id: format!("fc_{}", hex(48)),
                    call_id: format!("call_{}", alnum(24)),
                    call,
                });
            }
        }
        Render {
            body,
            id: format!("resp_{}", hex(48)),
            created_at: unix_now(),
            model,
            reply,
            output,
            incomplete,
        }
    }

    fn usage(&self) -> Value {
        let reply = self.reply;
        let output = reply.output_tokens() + reply.reasoning_tokens();
        json!({
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": reply.cached_tokens},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens()},
            "total_tokens": reply.prompt_tokens + output,
        })
    }

    fn status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// The response object: finished (`done`), or as `response.created` announces it.
    fn response(&self, done: bool) -> Value {
        let b = self.body;
        let echo = |key: &str, default: Value| b.get(key).cloned().unwrap_or(default);
        let (status, output, usage, incomplete_details) = if done {
            (
                self.status(),
                Value::Array(self.output.iter().map(|o| o.json(true)).collect()),
                self.usage(),
                if self.incomplete {
                    json!({"reason": "max_output_tokens"})
                } else {
                    Value::Null
                },
            )
        } else {
            ("in_progress", json!([]), Value::Null, Value::Null)
        };
        let reasoning = json!({
            "effort": b.pointer("/reasoning/effort").cloned().unwrap_or(Value::Null),
            "summary": b.pointer("/reasoning/summary").cloned().unwrap_or(Value::Null),
        });
        let mut text = match b.get("text") {
            Some(Value::Object(t)) => t.clone(),
            _ => Map::new(),
        };
        text.entry("format")
            .or_insert_with(|| json!({"type": "text"}));
        text.entry("verbosity").or_insert_with(|| json!("medium"));
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": echo("background", json!(false)),
            "error": null,
            "incomplete_details": incomplete_details,
            "instructions": echo("instructions", Value::Null),
            "max_output_tokens": echo("max_output_tokens", Value::Null),
            "max_tool_calls": echo("max_tool_calls", Value::Null),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": echo("parallel_tool_calls", json!(true)),
            "previous_response_id": echo("previous_response_id", Value::Null),
            "prompt_cache_key": echo("prompt_cache_key", Value::Null),
            "reasoning": reasoning,
            "safety_identifier": echo("safety_identifier", Value::Null),
            "service_tier": "default",
            "store": echo("store", json!(true)),
            "temperature": echo("temperature", json!(1.0)),
            "text": text,
            "tool_choice": echo("tool_choice", json!("auto")),
            "tools": echo("tools", json!([])),
            "top_logprobs": echo("top_logprobs", json!(0)),
            "top_p": echo("top_p", json!(1.0)),
            "truncation": echo("truncation", json!("disabled")),
            "usage": usage,
            "user": echo("user", Value::Null),
            "metadata": echo("metadata", json!({})),
        })
    }

    fn stream_events(&self) -> Vec<sse::Ev> {
        let mut s = Seq {
            ev: Events::new(Framing::Sse("\n\n"), 64),
            n: 0,
        };
        s.emit(
            "response.created",
            json!({"response": self.response(false)}),
            false,
        );
        s.emit(
            "response.in_progress",
            json!({"response": self.response(false)}),
            false,
        );
        for (index, out) in self.output.iter().enumerate() {
            let item_id = out.id();
            s.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": out.json(false)}),
                false,
            );
            match out {
                Out::Reasoning { summary, .. } => {
                    if let Some(t) = summary {
                        let at =
                            json!({"item_id": item_id, "output_index": index, "summary_index": 0});
                        s.emit(
                            "response.reasoning_summary_part.added",
                            with(&at, "part", json!({"type": "summary_text", "text": ""})),
                            false,
                        );
                        for piece in t.pieces() {
                            s.emit(
                                "response.reasoning_summary_text.delta",
                                with(&at, "delta", json!(piece)),
                                true,
                            );
                        }
                        s.emit(
                            "response.reasoning_summary_text.done",
                            with(&at, "text", json!(t.full)),
                            false,
                        );
                        s.emit(
                            "response.reasoning_summary_part.done",
                            with(&at, "part", json!({"type": "summary_text", "text": t.full})),
                            false,
                        );
                    }
                }
                Out::Message { text, .. } => {
                    let at = json!({"item_id": item_id, "output_index": index, "content_index": 0});
                    s.emit(
                        "response.content_part.added",
                        with(&at, "part", text_part("")),
                        false,
                    );
                    for piece in text.iter().flat_map(|t| t.pieces()) {
                        let mut v = with(&at, "delta", json!(piece));
                        v["logprobs"] = json!([]);
                        s.emit("response.output_text.delta", v, true);
                    }
                    let full = text.map_or("", |t| t.full.as_str());
                    let mut v = with(&at, "text", json!(full));
                    v["logprobs"] = json!([]);
                    s.emit("response.output_text.done", v, false);
                    s.emit(
                        "response.content_part.done",
                        with(&at, "part", text_part(full)),
                        false,
                    );
                }
                Out::Call { call, .. } => {
                    let at = json!({"item_id": item_id, "output_index": index});
                    for piece in Text::chunks(&call.args_json, 8).pieces() {
                        s.emit(
                            "response.function_call_arguments.delta",
                            with(&at, "delta", json!(piece)),
                            true,
                        );
                    }
                    let mut v = with(&at, "arguments", json!(call.args_json));
                    v["name"] = json!(call.name);
                    s.emit("response.function_call_arguments.done", v, false);
                }
            }
            s.emit(
                "response.output_item.done",
                json!({"output_index": index, "item": out.json(true)}),
                false,
            );
        }
        let last = if self.incomplete {
            "response.incomplete"
        } else {
            "response.completed"
        };
        s.emit(last, json!({"response": self.response(true)}), false);
        s.ev.into_vec()
    }
}

/// `base` (an object) with one more field.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    v[key] = value;
    v
}

/// Named SSE events carrying their `type` and a strictly increasing `sequence_number`.
struct Seq {
    ev: Events,
    n: u64,
}

impl Seq {
    fn emit(&mut self, kind: &str, mut fields: Value, content: bool) {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.n);
        self.n += 1;
        self.ev.data(Some(kind), &fields, content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_input_is_one_user_message() {
        let body = json!({"model": "m", "input": "Hello there", "max_output_tokens": 7});
        let input = input_of(&body);
        assert_eq!(input.first_user, "Hello there");
        assert_eq!(input.last_user, "Hello there");
        assert_eq!(input.tool_results, None);
        assert_eq!(input.max_tokens, Some(7));
        assert_eq!(input.prompt_chars, "Hello there".len());
        assert!(input.tools.is_empty());
    }

    #[test]
    fn items_with_roles_and_instructions() {
        let body = json!({"model": "m", "instructions": "Be brief.", "input": [
            {"role": "developer", "content": "dev note"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "first "},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                {"type": "input_text", "text": "question"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "an answer"}]},
            {"role": "user", "content": "second question"}
        ]});
        let input = input_of(&body);
        assert_eq!(input.first_user, "first question");
        assert_eq!(input.last_user, "second question");
        assert_eq!(input.tool_results, None);
        let expected = [
            "Be brief.",
            "dev note",
            "first question",
            "an answer",
            "second question",
        ];
        assert_eq!(
            input.prompt_chars,
            expected.iter().map(|s| s.len()).sum::<usize>()
        );
        // The same conversation as a chat completion hashes the same.
        let chat = json!({"messages": expected.iter().map(|s| json!({"role": "user", "content": s})).collect::<Vec<_>>()});
        let mut t = Transcript::default();
        for m in chat["messages"].as_array().unwrap() {
            t.add(m["content"].as_str().unwrap());
        }
        let mut other = Input::new();
        t.finish(&mut other);
        assert_eq!(input.hash, other.hash);

        // Instructions change the hash.
        let mut without = body.clone();
        without.as_object_mut().unwrap().remove("instructions");
        assert_ne!(input_of(&without).hash, input.hash);
    }

    #[test]
    fn trailing_function_call_outputs_are_tool_results() {
        let body = json!({"model": "m", "input": [
            {"role": "user", "content": "Run `ls`"},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call", "call_id": "call_2", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_2", "output": "b.txt"},
            {"type": "function_call_output", "call_id": "call_3", "output": [{"type": "input_text", "text": "c.txt"}]},
            {"role": "user", "content": "<system-reminder>keep going</system-reminder>"}
        ]});
        let input = input_of(&body);
        assert_eq!(input.tool_results.as_deref(), Some("b.txt; c.txt"));
        assert_eq!(input.first_user, "Run `ls`");

        // Outputs before the model's last turn are history, not results.
        let body = json!({"input": [
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "x"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "again"}
        ]});
        assert_eq!(input_of(&body).tool_results, None);
    }

    #[test]
    fn tools_choice_format_and_reasoning() {
        let body = json!({
            "input": "x",
            "tools": [
                {"type": "web_search"},
                {"type": "custom", "name": "apply_patch"},
                {"type": "namespace", "name": "mcp", "tools": []},
                {"type": "function", "name": "exec_command", "parameters": {"type": "object",
                    "properties": {"cmd": {"type": "string"}}}}
            ],
            "tool_choice": {"type": "function", "name": "exec_command"},
            "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
            "reasoning": {"effort": "high", "summary": "auto"}
        });
        let input = input_of(&body);
        assert_eq!(input.tools.len(), 1);
        assert_eq!(input.tools[0].name, "exec_command");
        assert!(input.tools[0].schema.is_some());
        assert_eq!(input.tool_mode, ToolMode::Named("exec_command"));
        assert!(!input.parallel_tool_calls);
        assert_eq!(input.json_schema, Some(&json!({"type": "object"})));
        assert_eq!(input.thinking, Thinking::Visible);

        let body = json!({"tool_choice": "none", "reasoning": {"effort": "none"}});
        let input = input_of(&body);
        assert_eq!(input.tool_mode, ToolMode::None);
        assert_eq!(input.thinking, Thinking::Off);
        assert_eq!(
            input_of(&json!({"tool_choice": "required"})).tool_mode,
            ToolMode::Required
        );
        assert_eq!(input_of(&json!({})).thinking, Thinking::Hidden);
    }
}
