//! Anthropic Messages API.

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::behavior::{Fault, Knobs};
use crate::common::{
    alnum, as_u32, bearer, content_text, json_response, key_ok, malformed_response, signature,
    sse_response, Ctx, Flavor, KeyError,
};
use crate::gen::{
    self, ChoiceOut, Finish, Input, Reply, Text, Thinking, ToolMode, ToolSpec, Transcript,
};
use crate::sse::{self, Events, Framing};
use crate::state::MockState;

pub(crate) async fn messages(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Anthropic).await;
    let body = match preflight(&state, &ctx) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return ctx.error(StatusCode::BAD_REQUEST, "model: Field required");
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return ctx.error(StatusCode::BAD_REQUEST, "messages: Field required");
    }
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return ctx.error(StatusCode::BAD_REQUEST, "max_tokens: Field required");
    }
    let knobs = Knobs::resolve(state.config(), model, &ctx.headers);
    if let Some(resp) = ctx.gate(&state, &knobs, model).await {
        return resp;
    }
    let input = input_of(&body);
    if let Some(resp) = ctx.context_gate(&knobs, gen::prompt_tokens(input.prompt_chars)) {
        return resp;
    }
    let mut reply = gen::generate(model, &input, &knobs);
    // Messages has no `n`.
    reply.choices.truncate(1);
    let r = Render {
        id: format!("msg_01{}", alnum(22)),
        model,
        reply: &reply,
    };
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
    ctx.finish(r.message())
}

pub(crate) async fn count_tokens(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Anthropic).await;
    let body = match preflight(&state, &ctx) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let input = input_of(&body);
    ctx.finish(json_response(
        StatusCode::OK,
        &json!({"input_tokens": gen::prompt_tokens(input.prompt_chars)}),
    ))
}

/// Key, version header and JSON body, checked in that order.
fn preflight(state: &MockState, ctx: &Ctx) -> Result<Value, Response> {
    let key = ctx.header("x-api-key").or_else(|| bearer(&ctx.headers));
    match key_ok(state, key) {
        Ok(()) => {}
        Err(KeyError::Missing) => {
            return Err(ctx.error(StatusCode::UNAUTHORIZED, "x-api-key header is required"))
        }
        Err(KeyError::Wrong) => {
            return Err(ctx.error(StatusCode::UNAUTHORIZED, "invalid x-api-key"))
        }
    }
    if ctx.header("anthropic-version").is_none_or(str::is_empty) {
        return Err(ctx.error(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
        ));
    }
    ctx.json()
}

fn input_of(body: &Value) -> Input<'_> {
    let mut input = Input::new();
    let mut transcript = Transcript::default();
    let mut seen_user = false;
    if let Some(system) = body.get("system") {
        transcript.add(&content_text(system));
    }
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for m in messages {
        let user = m.get("role").and_then(Value::as_str) == Some("user");
        match m.get("content") {
            Some(Value::String(s)) => {
                transcript.add(s);
                if user {
                    if !seen_user {
                        seen_user = true;
                        input.first_user = s.clone();
                    }
                    input.last_user = s.clone();
                }
            }
            Some(Value::Array(blocks)) => {
                let mut text = String::new();
                for b in blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(t) = b.get("text").and_then(Value::as_str) {
                                transcript.add(t);
                                text.push_str(t);
                            }
                        }
                        Some("tool_result") => {
                            transcript.add(&b.get("content").map(content_text).unwrap_or_default());
                        }
                        _ => {}
                    }
                }
                if user {
                    if !seen_user {
                        seen_user = true;
                        input.first_user = text.clone();
                    }
                    input.last_user = text;
                }
            }
            _ => {}
        }
    }
    transcript.finish(&mut input);

    // The conversation ends with tool results when the last user turn carries some.
    if let Some(Value::Array(blocks)) = messages.last().and_then(|m| m.get("content")) {
        let results: Vec<&Value> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .collect();
        input.tool_error = results
            .iter()
            .any(|b| b.get("is_error").and_then(Value::as_bool) == Some(true));
        // `content` is a string or an array of blocks, of which the text ones count.
        let results: Vec<String> = results
            .iter()
            .map(|b| b.get("content").map(content_text).unwrap_or_default())
            .collect();
        if !results.is_empty() {
            input.tool_results = Some(results.join("; "));
        }
    }

    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        input.tools = tools
            .iter()
            .filter_map(|t| {
                Some(ToolSpec {
                    name: t.get("name")?.as_str()?,
                    schema: Some(t.get("input_schema")?),
                })
            })
            .collect();
    }
    let choice = body.get("tool_choice");
    input.tool_mode = match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("none") => ToolMode::None,
        Some("any") => ToolMode::Required,
        Some("tool") => match choice.and_then(|c| c.get("name")).and_then(Value::as_str) {
            Some(name) => ToolMode::Named(name),
            None => ToolMode::Required,
        },
        _ => ToolMode::Auto,
    };
    input.parallel_tool_calls = choice
        .and_then(|c| c.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        != Some(true);
    input.json_schema = body
        .pointer("/output_format/schema")
        .or_else(|| body.pointer("/output_config/format/schema"));
    input.max_tokens = as_u32(body.get("max_tokens"));
    input.thinking = match body.pointer("/thinking/type").and_then(Value::as_str) {
        Some("enabled" | "adaptive") => Thinking::Visible,
        _ => Thinking::Off,
    };
    input
}

const MALFORMED_EVENT: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"unterminated\n\n";

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

#[derive(Serialize)]
struct UsageOut {
    input_tokens: u32,
    cache_creation_input_tokens: u32,
    cache_read_input_tokens: u32,
    output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: UsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    MessageStart {
        message: MessageOut<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block<'a>,
    },
    Ping,
    ContentBlockDelta {
        index: u32,
        delta: DeltaOut<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaOut,
        usage: UsageOut,
    },
    MessageStop,
}

impl StreamEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
struct MessageDeltaOut {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

struct Render<'a> {
    id: String,
    model: &'a str,
    reply: &'a Reply,
}

/// What one choice turns into: ids and signature are made once, shared by both renderings.
struct Parts<'c> {
    choice: &'c ChoiceOut,
    signature: String,
    tool_ids: Vec<String>,
}

impl<'c> Parts<'c> {
    fn of(choice: &'c ChoiceOut) -> Parts<'c> {
        Parts {
            choice,
            signature: signature(choice.seed),
            tool_ids: choice
                .tool_calls
                .iter()
                .map(|_| format!("toolu_01{}", alnum(22)))
                .collect(),
        }
    }

    /// The text block is there unless the answer is only tool calls.
    fn text(&self) -> Option<&'c str> {
        match (&self.choice.text, self.choice.tool_calls.is_empty()) {
            (Some(t), _) => Some(t.full.as_str()),
            (None, true) => Some(""),
            (None, false) => None,
        }
    }
}

impl Render<'_> {
    fn usage(&self, output_tokens: u32, with_tier: bool) -> UsageOut {
        let r = self.reply;
        UsageOut {
            input_tokens: r.prompt_tokens.saturating_sub(r.cached_tokens),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: r.cached_tokens,
            output_tokens,
            service_tier: with_tier.then_some("standard"),
        }
    }

    fn total_output(&self) -> u32 {
        self.reply.output_tokens() + self.reply.reasoning_tokens()
    }

    fn message(&self) -> Response {
        let Some(choice) = self.reply.choices.first() else {
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null);
        };
        let parts = Parts::of(choice);
        let mut content = Vec::new();
        if let Some(t) = &choice.thinking {
            content.push(Block::Thinking {
                thinking: &t.full,
                signature: &parts.signature,
            });
        }
        if let Some(text) = parts.text() {
            content.push(Block::Text { text });
        }
        for (call, id) in choice.tool_calls.iter().zip(&parts.tool_ids) {
            content.push(Block::ToolUse {
                id,
                name: &call.name,
                input: &call.args,
            });
        }
        let msg = MessageOut {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: self.model,
            content,
            stop_reason: Some(stop_reason(choice.finish)),
            stop_sequence: None,
            usage: self.usage(self.total_output(), true),
        };
        json_response(StatusCode::OK, &msg)
    }

    fn stream_events(&self) -> Vec<sse::Ev> {
        let Some(choice) = self.reply.choices.first() else {
            return Vec::new();
        };
        let parts = Parts::of(choice);
        let pieces = choice.text.as_ref().map_or(0, |t| t.tokens() as usize);
        let mut ev = Events::new(Framing::Sse("\n\n"), pieces + 16);
        let put = |ev: &mut Events, e: StreamEvent<'_>, content: bool| {
            ev.data(Some(e.name()), &e, content);
        };
        put(
            &mut ev,
            StreamEvent::MessageStart {
                message: MessageOut {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: self.model,
                    content: Vec::new(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: self.usage(1, true),
                },
            },
            false,
        );
        let mut index = 0u32;
        let mut pinged = false;
        let mut start = |ev: &mut Events, index: u32, block: Block<'_>| {
            put(
                ev,
                StreamEvent::ContentBlockStart {
                    index,
                    content_block: block,
                },
                false,
            );
            if !pinged {
                pinged = true;
                put(ev, StreamEvent::Ping, false);
            }
        };
        if let Some(t) = &choice.thinking {
            start(
                &mut ev,
                index,
                Block::Thinking {
                    thinking: "",
                    signature: "",
                },
            );
            for piece in t.pieces() {
                let delta = DeltaOut::Thinking { thinking: piece };
                ev.data(
                    Some("content_block_delta"),
                    &StreamEvent::ContentBlockDelta { index, delta },
                    true,
                );
            }
            let delta = DeltaOut::Signature {
                signature: &parts.signature,
            };
            ev.data(
                Some("content_block_delta"),
                &StreamEvent::ContentBlockDelta { index, delta },
                false,
            );
            ev.data(
                Some("content_block_stop"),
                &StreamEvent::ContentBlockStop { index },
                false,
            );
            index += 1;
        }
        if parts.text().is_some() {
            start(&mut ev, index, Block::Text { text: "" });
            for piece in choice.text.iter().flat_map(Text::pieces) {
                let delta = DeltaOut::Text { text: piece };
                ev.data(
                    Some("content_block_delta"),
                    &StreamEvent::ContentBlockDelta { index, delta },
                    true,
                );
            }
            ev.data(
                Some("content_block_stop"),
                &StreamEvent::ContentBlockStop { index },
                false,
            );
            index += 1;
        }
        let empty = Value::Object(serde_json::Map::new());
        for (call, id) in choice.tool_calls.iter().zip(&parts.tool_ids) {
            start(
                &mut ev,
                index,
                Block::ToolUse {
                    id,
                    name: &call.name,
                    input: &empty,
                },
            );
            let first = DeltaOut::InputJson { partial_json: "" };
            ev.data(
                Some("content_block_delta"),
                &StreamEvent::ContentBlockDelta {
                    index,
                    delta: first,
                },
                false,
            );
            for piece in Text::chunks(&call.args_json, 8).pieces() {
                let delta = DeltaOut::InputJson {
                    partial_json: piece,
                };
                ev.data(
                    Some("content_block_delta"),
                    &StreamEvent::ContentBlockDelta { index, delta },
                    true,
                );
            }
            ev.data(
                Some("content_block_stop"),
                &StreamEvent::ContentBlockStop { index },
                false,
            );
            index += 1;
        }
        ev.data(
            Some("message_delta"),
            &StreamEvent::MessageDelta {
                delta: MessageDeltaOut {
                    stop_reason: stop_reason(choice.finish),
                    stop_sequence: None,
                },
                usage: self.usage(self.total_output(), false),
            },
            false,
        );
        ev.data(Some("message_stop"), &StreamEvent::MessageStop, false);
        ev.into_vec()
    }
}
