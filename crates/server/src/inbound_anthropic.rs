//! The Anthropic Messages API as a client speaks it to Plexus (`POST /v1/messages`): its
//! request into the canonical (OpenAI-shaped) request, and the canonical answer, whole or
//! streamed, back into Messages form. Pure conversions, whatever provider serves the call.
//!
//! What has no canonical equivalent is mapped or dropped as `docs/anthropic-compat.md` lists,
//! never refused: agent clients retry a 400 in a loop. In short:
//! - `system` (string or blocks) and `system`-role entries inside `messages` become system
//!   messages in place; `cache_control` marks are dropped;
//! - `thinking.budget_tokens` becomes `reasoning_effort` (≤ 2048 low, ≤ 8192 medium, more high);
//!   thinking blocks of earlier turns travel as `thinking_blocks` (with their signatures);
//! - `tool_choice` any → `required`, tool → named, none → `none`; `disable_parallel_tool_use`
//!   → `parallel_tool_calls: false`; server tools (typed other than `custom`) are dropped;
//! - `top_k`, `context_management`, `container`, `mcp_servers`, `service_tier` and any other
//!   unknown field are dropped (the canonical request goes to providers of every kind).
//!
//! A stream is translated event by event (`EventTranslator`): text and thinking stream as they
//! come; tool calls are gathered by their canonical index (an OpenAI upstream may interleave
//! the fragments of several calls with text, a Gemini upstream sends each whole) and each is
//! sent as one block (`content_block_start`, its whole input as one `input_json_delta`,
//! `content_block_stop`) when the choice finishes, so block indexes are sequential and each
//! call's id and input are complete and consistent.

use plexus_core::ApiError;
use plexus_protocol::anthropic as wire;
use plexus_protocol::openai::{
    self as oai, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ContentPart,
    FunctionCall, FunctionDefinition, ImageUrl, Message, MessageContent, NamedFunction,
    NamedToolChoice, Role, Stop, StreamOptions, Tool, ToolCall, ToolChoice,
};
use serde_json::{Map, Value};

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    let param = param.into();
    ApiError::invalid_request(message.into(), &param)
}

/// `thinking.budget_tokens` → `reasoning_effort`.
pub fn effort_for_budget(budget: u32) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

/// The text of a `system` field or a system message's content.
fn system_text(system: &wire::System) -> String {
    match system {
        wire::System::Text(t) => t.clone(),
        wire::System::Blocks(blocks) => blocks
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

fn media_url(source: &wire::Source) -> Option<String> {
    match source.kind.as_str() {
        "base64" => Some(format!(
            "data:{};base64,{}",
            source
                .media_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
            source.data.as_deref().unwrap_or("")
        )),
        "url" => source.url.clone(),
        _ => None,
    }
}

/// A user block as a canonical content part (`None`: it has no equivalent and is dropped).
fn user_part(block: &wire::ContentBlock) -> Option<ContentPart> {
    match block {
        wire::ContentBlock::Text(t) => Some(ContentPart::text(t.text.clone())),
        wire::ContentBlock::Image(img) => {
            // A Files API id has no canonical form: dropped here (an Anthropic target, which
            // gets the request as it came, still resolves it).
            let url = media_url(&img.source)?;
            Some(ContentPart {
                kind: "image_url".into(),
                text: None,
                image_url: Some(ImageUrl { url, detail: None }),
                extra: oai::Extra::new(),
            })
        }
        wire::ContentBlock::Document(doc) => match doc.source.kind.as_str() {
            // Plain-text documents are text.
            "text" => Some(ContentPart::text(match &doc.title {
                Some(title) => format!("{title}\n\n{}", doc.source.data.as_deref().unwrap_or("")),
                None => doc.source.data.clone().unwrap_or_default(),
            })),
            _ => {
                let url = media_url(&doc.source)?;
                let mut file = Map::new();
                file.insert("file_data".into(), Value::String(url));
                if let Some(t) = &doc.title {
                    file.insert("filename".into(), Value::String(t.clone()));
                }
                let mut extra = oai::Extra::new();
                extra.insert("file".into(), Value::Object(file));
                Some(ContentPart {
                    kind: "file".into(),
                    text: None,
                    image_url: None,
                    extra,
                })
            }
        },
        // Server-tool results, search results and future block types have no canonical form.
        _ => None,
    }
}

fn tool_result_text(content: Option<&wire::ToolResultContent>) -> String {
    match content {
        None => String::new(),
        Some(wire::ToolResultContent::Text(t)) => t.clone(),
        Some(wire::ToolResultContent::Blocks(blocks)) => blocks
            .iter()
            .filter_map(|b| match b {
                wire::ContentBlock::Text(t) => Some(t.text.clone()),
                wire::ContentBlock::Image(_) => Some("[image]".to_owned()),
                wire::ContentBlock::Document(_) => Some("[document]".to_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn parts_content(parts: Vec<ContentPart>) -> MessageContent {
    if parts.iter().all(|p| p.kind == "text") {
        MessageContent::Text(
            parts
                .into_iter()
                .filter_map(|p| p.text)
                .collect::<Vec<_>>()
                .join("\n\n"),
        )
    } else {
        MessageContent::Parts(parts)
    }
}

/// Appends one Messages-API message as canonical messages: tool results become `tool`
/// messages (before the rest of the user's turn), the rest one user or assistant message.
fn push_message(out: &mut Vec<Message>, msg: &wire::Message, role: &str) {
    let blocks: Vec<wire::ContentBlock> = match &msg.content {
        wire::MessageContent::Text(t) => vec![wire::ContentBlock::text(t.clone())],
        wire::MessageContent::Blocks(b) => b.clone(),
    };
    match role {
        "assistant" => {
            let mut text = String::new();
            let mut calls = Vec::new();
            let mut thinking = Vec::new();
            for b in &blocks {
                match b {
                    wire::ContentBlock::Text(t) => text.push_str(&t.text),
                    wire::ContentBlock::ToolUse(u) => calls.push(ToolCall {
                        id: u.id.clone(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: u.name.clone(),
                            arguments: serde_json::to_string(&u.input)
                                .unwrap_or_else(|_| "{}".into()),
                        },
                    }),
                    wire::ContentBlock::Thinking(t) => thinking.push(oai::ThinkingBlock {
                        kind: "thinking".into(),
                        thinking: Some(t.thinking.clone()),
                        signature: t.signature.clone(),
                        data: None,
                    }),
                    wire::ContentBlock::RedactedThinking(t) => thinking.push(oai::ThinkingBlock {
                        kind: "redacted_thinking".into(),
                        thinking: None,
                        signature: None,
                        data: Some(t.data.clone()),
                    }),
                    _ => {}
                }
            }
            let mut m = Message::text(Role::Assistant, text);
            if m.content
                .as_ref()
                .is_some_and(|c| c.joined_text().is_empty())
                && !calls.is_empty()
            {
                m.content = None;
            }
            m.tool_calls = (!calls.is_empty()).then_some(calls);
            m.thinking_blocks = (!thinking.is_empty()).then_some(thinking);
            out.push(m);
        }
        _ => {
            let mut parts = Vec::new();
            for b in &blocks {
                if let wire::ContentBlock::ToolResult(r) = b {
                    let mut text = tool_result_text(r.content.as_ref());
                    if r.is_error == Some(true) {
                        text = format!("Error: {text}");
                    }
                    let mut m = Message::text(Role::Tool, text);
                    m.tool_call_id = Some(r.tool_use_id.clone());
                    out.push(m);
                } else if let Some(p) = user_part(b) {
                    parts.push(p);
                }
            }
            if !parts.is_empty() {
                let mut m = Message::text(Role::User, String::new());
                m.content = Some(parts_content(parts));
                out.push(m);
            }
        }
    }
}

/// A Messages API request as the canonical request.
pub fn to_canonical(req: &wire::MessagesRequest) -> Result<ChatCompletionRequest, ApiError> {
    if req.model.is_empty() {
        return Err(invalid("model", "`model` must not be empty."));
    }
    if req.max_tokens == 0 {
        return Err(invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(Message::text(Role::System, text));
        }
    }
    for m in &req.messages {
        // Claude Code 2.1 sends `system` entries inside `messages`; the typed role has only
        // user and assistant, so they arrive in `extra` as a role the enum cannot hold. They
        // are read from the raw request instead (see `system_entries`).
        let role = match m.role {
            wire::Role::User => "user",
            wire::Role::Assistant => "assistant",
        };
        push_message(&mut messages, m, role);
    }
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(invalid(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    let tools: Vec<Tool> = req
        .tools
        .iter()
        .flatten()
        .filter(|t| t.kind.as_deref().is_none_or(|k| k == "custom"))
        .map(|t| Tool {
            kind: "function".into(),
            function: FunctionDefinition {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.input_schema.clone(),
                strict: None,
            },
            extra: oai::Extra::new(),
        })
        .collect();
    let mut parallel_tool_calls = None;
    let tool_choice = match &req.tool_choice {
        None => None,
        Some(c) => {
            if c.disable_parallel_tool_use == Some(true) {
                parallel_tool_calls = Some(false);
            }
            match c.kind.as_str() {
                "auto" => Some(ToolChoice::Mode("auto".into())),
                "any" => Some(ToolChoice::Mode("required".into())),
                "none" => Some(ToolChoice::Mode("none".into())),
                "tool" => c.name.as_ref().map(|name| {
                    ToolChoice::Named(NamedToolChoice {
                        kind: "function".into(),
                        function: NamedFunction { name: name.clone() },
                    })
                }),
                _ => None,
            }
        }
    };
    let reasoning_effort = req
        .thinking
        .as_ref()
        .filter(|t| t.kind == "enabled")
        .map(|t| effort_for_budget(t.budget_tokens.unwrap_or(1024)).to_owned());
    let stream = req.stream == Some(true);
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then_some(StreamOptions {
            include_usage: Some(true),
            ..Default::default()
        }),
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: Some(req.max_tokens),
        stop: req
            .stop_sequences
            .clone()
            .filter(|s| !s.is_empty())
            .map(Stop::Many),
        user: req.metadata.as_ref().and_then(|m| m.user_id.clone()),
        tools: (!tools.is_empty()).then_some(tools.clone()),
        tool_choice: if tools.is_empty() { None } else { tool_choice },
        parallel_tool_calls: if tools.is_empty() {
            None
        } else {
            parallel_tool_calls
        },
        reasoning_effort,
        ..Default::default()
    })
}

/// `system`-role entries of a raw `messages` array (Claude Code 2.1 sends them mid-
/// conversation): their positions and texts. The caller removes them before parsing the rest
/// as typed messages and re-inserts them as system messages.
pub fn take_system_entries(body: &mut Value) -> Vec<(usize, String)> {
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut kept = Vec::with_capacity(messages.len());
    for (i, m) in std::mem::take(messages).into_iter().enumerate() {
        if m.get("role").and_then(Value::as_str) == Some("system") {
            let text = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(blocks)) => blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                _ => String::new(),
            };
            found.push((i - found.len(), text));
        } else {
            kept.push(m);
        }
    }
    *messages = kept;
    found
}

/// Re-inserts system entries taken by [`take_system_entries`]: before the canonical message
/// that came from the typed message at their position.
pub fn insert_system_entries(
    req: &mut ChatCompletionRequest,
    typed: &wire::MessagesRequest,
    entries: Vec<(usize, String)>,
) {
    if entries.is_empty() {
        return;
    }
    // Where each typed message starts among the canonical messages.
    let mut starts = Vec::with_capacity(typed.messages.len() + 1);
    let offset = usize::from(
        req.messages.first().is_some_and(|m| m.role == Role::System) && typed.system.is_some(),
    );
    let mut canonical = offset;
    for m in &typed.messages {
        starts.push(canonical);
        let mut one = Vec::new();
        let role = match m.role {
            wire::Role::User => "user",
            wire::Role::Assistant => "assistant",
        };
        push_message(&mut one, m, role);
        canonical += one.len();
    }
    starts.push(canonical);
    for (pos, text) in entries.into_iter().rev() {
        let at = starts
            .get(pos)
            .copied()
            .unwrap_or(req.messages.len())
            .min(req.messages.len());
        req.messages.insert(at, Message::text(Role::System, text));
    }
}

/// A canonical finish reason as a Messages `stop_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Canonical usage as Messages usage (input tokens exclude cache reads, as Anthropic counts).
pub fn usage(u: Option<&oai::Usage>) -> wire::Usage {
    let Some(u) = u else {
        return wire::Usage {
            input_tokens: Some(0),
            output_tokens: Some(0),
            ..Default::default()
        };
    };
    let cached = u.cached_tokens().min(u.prompt_tokens);
    let created = u
        .extra
        .get("cache_creation_input_tokens")
        .and_then(Value::as_u64);
    wire::Usage {
        input_tokens: Some(
            u.prompt_tokens - cached - created.unwrap_or(0).min(u.prompt_tokens - cached),
        ),
        output_tokens: Some(u.completion_tokens),
        cache_creation_input_tokens: created.or(Some(0)),
        cache_read_input_tokens: Some(cached),
        extra: wire::Extra::new(),
    }
}

fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => Value::Object(Map::new()),
        _ => {
            let mut m = Map::new();
            m.insert("arguments".into(), Value::String(arguments.to_owned()));
            Value::Object(m)
        }
    }
}

/// A Messages-style id from the canonical one (`msg_` prefix).
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-"))
    }
}

/// A tool call id in Anthropic's form, kept when it already is one.
fn tool_use_id(id: &str) -> String {
    if id.starts_with("toolu_") {
        id.to_owned()
    } else {
        format!("toolu_{}", id.trim_start_matches("call_"))
    }
}

/// A canonical completion as a Messages response, under the model name the client asked for.
pub fn from_completion(c: &ChatCompletion, model: &str) -> wire::MessagesResponse {
    let mut content = Vec::new();
    let choice = c.choices.first();
    if let Some(ch) = choice {
        let m = &ch.message;
        for t in m.thinking_blocks.iter().flatten() {
            match t.kind.as_str() {
                "redacted_thinking" => content.push(wire::ContentBlock::RedactedThinking(
                    wire::RedactedThinkingBlock {
                        data: t.data.clone().unwrap_or_default(),
                        extra: wire::Extra::new(),
                    },
                )),
                _ => content.push(wire::ContentBlock::Thinking(wire::ThinkingBlock {
                    thinking: t.thinking.clone().unwrap_or_default(),
                    signature: t.signature.clone(),
                    extra: wire::Extra::new(),
                })),
            }
        }
        if m.thinking_blocks.is_none() {
            if let Some(r) = m.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
                content.push(wire::ContentBlock::Thinking(wire::ThinkingBlock {
                    thinking: r.clone(),
                    signature: Some(String::new()),
                    extra: wire::Extra::new(),
                }));
            }
        }
        if let Some(t) = m.content.as_ref().filter(|t| !t.is_empty()) {
            content.push(wire::ContentBlock::text(t.clone()));
        }
        if let Some(r) = m.refusal.as_ref().filter(|r| !r.is_empty()) {
            content.push(wire::ContentBlock::text(r.clone()));
        }
        for call in m.tool_calls.iter().flatten() {
            content.push(wire::ContentBlock::ToolUse(wire::ToolUseBlock {
                id: tool_use_id(&call.id),
                name: call.function.name.clone(),
                input: tool_input(&call.function.arguments),
                cache_control: None,
                extra: wire::Extra::new(),
            }));
        }
    }
    let finish = choice.and_then(|c| c.finish_reason.as_deref());
    wire::MessagesResponse {
        id: message_id(&c.id),
        kind: "message".into(),
        role: "assistant".into(),
        content,
        model: model.to_owned(),
        stop_reason: Some(stop_reason(finish).to_owned()),
        stop_sequence: None,
        usage: usage(c.usage.as_ref()),
        extra: wire::Extra::new(),
    }
}

/// Which block is open in a translated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// One tool call of the stream, gathered until the choice finishes.
#[derive(Debug, Clone, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// Canonical stream chunks → Messages stream events (see the module docs).
#[derive(Debug)]
pub struct EventTranslator {
    model: String,
    started: bool,
    next_block: u32,
    open: Option<(Open, u32)>,
    calls: Vec<(u32, Call)>,
    stop: Option<String>,
    usage: Option<oai::Usage>,
    finished: bool,
    had_tools: bool,
}

fn delta_event(
    index: u32,
    kind: &str,
    set: impl FnOnce(&mut wire::ContentDelta),
) -> wire::StreamEvent {
    let mut delta = wire::ContentDelta {
        kind: kind.into(),
        text: None,
        partial_json: None,
        thinking: None,
        signature: None,
        extra: wire::Extra::new(),
    };
    set(&mut delta);
    wire::StreamEvent::ContentBlockDelta(wire::ContentBlockDeltaEvent {
        index,
        delta,
        extra: wire::Extra::new(),
    })
}

fn start_event(index: u32, block: wire::ContentBlock) -> wire::StreamEvent {
    wire::StreamEvent::ContentBlockStart(wire::ContentBlockStartEvent {
        index,
        content_block: block,
        extra: wire::Extra::new(),
    })
}

fn stop_event(index: u32) -> wire::StreamEvent {
    wire::StreamEvent::ContentBlockStop(wire::ContentBlockStopEvent {
        index,
        extra: wire::Extra::new(),
    })
}

impl EventTranslator {
    pub fn new(model: &str) -> Self {
        EventTranslator {
            model: model.to_owned(),
            started: false,
            next_block: 0,
            open: None,
            calls: Vec::new(),
            stop: None,
            usage: None,
            finished: false,
            had_tools: false,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<wire::StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(wire::StreamEvent::MessageStart(wire::MessageStartEvent {
            message: wire::MessagesResponse {
                id: message_id(id),
                kind: "message".into(),
                role: "assistant".into(),
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: wire::Usage {
                    input_tokens: Some(0),
                    output_tokens: Some(0),
                    ..Default::default()
                },
                extra: wire::Extra::new(),
            },
            extra: wire::Extra::new(),
        }));
        out.push(wire::StreamEvent::Ping);
    }

    fn close_open(&mut self, out: &mut Vec<wire::StreamEvent>) {
        if let Some((_, index)) = self.open.take() {
            out.push(stop_event(index));
        }
    }

    /// Opens a block of `kind` unless it is the open one; returns its index.
    fn ensure(
        &mut self,
        kind: Open,
        block: impl FnOnce() -> wire::ContentBlock,
        out: &mut Vec<wire::StreamEvent>,
    ) -> u32 {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close_open(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push(start_event(index, block()));
        self.open = Some((kind, index));
        index
    }

    /// The events for one canonical chunk (the first also starts the message).
    pub fn on_chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<wire::StreamEvent> {
        let mut out = Vec::new();
        self.start(&chunk.id, &mut out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        // Only the first choice becomes the message.
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else {
            return out;
        };
        let d = &choice.delta;
        for t in d.thinking_blocks.iter().flatten() {
            let index = self.ensure(
                Open::Thinking,
                || {
                    wire::ContentBlock::Thinking(wire::ThinkingBlock {
                        thinking: String::new(),
                        signature: None,
                        extra: wire::Extra::new(),
                    })
                },
                &mut out,
            );
            if let Some(text) = t.thinking.as_ref().filter(|t| !t.is_empty()) {
                out.push(delta_event(index, "thinking_delta", |x| {
                    x.thinking = Some(text.clone())
                }));
            }
            if let Some(sig) = t.signature.as_ref().filter(|s| !s.is_empty()) {
                out.push(delta_event(index, "signature_delta", |x| {
                    x.signature = Some(sig.clone())
                }));
            }
        }
        if d.thinking_blocks.is_none() {
            if let Some(r) = d.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
                let index = self.ensure(
                    Open::Thinking,
                    || {
                        wire::ContentBlock::Thinking(wire::ThinkingBlock {
                            thinking: String::new(),
                            signature: None,
                            extra: wire::Extra::new(),
                        })
                    },
                    &mut out,
                );
                out.push(delta_event(index, "thinking_delta", |x| {
                    x.thinking = Some(r.clone())
                }));
            }
        }
        for text in [d.content.as_ref(), d.refusal.as_ref()]
            .into_iter()
            .flatten()
        {
            if text.is_empty() {
                continue;
            }
            let index = self.ensure(
                Open::Text,
                || wire::ContentBlock::text(String::new()),
                &mut out,
            );
            out.push(delta_event(index, "text_delta", |x| {
                x.text = Some(text.clone())
            }));
        }
        for tc in d.tool_calls.iter().flatten() {
            self.on_tool_fragment(tc);
        }
        if let Some(f) = &choice.finish_reason {
            self.stop = Some(stop_reason(Some(f)).to_owned());
        }
        out
    }

    fn on_tool_fragment(&mut self, tc: &oai::ToolCallDelta) {
        let pos = match self.calls.iter().position(|(k, _)| *k == tc.index) {
            Some(p) => p,
            None => {
                self.calls.push((tc.index, Call::default()));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos].1;
        if let Some(id) = tc.id.as_ref().filter(|i| !i.is_empty()) {
            if call.id.is_empty() {
                call.id = tool_use_id(id);
            }
        }
        if let Some(f) = &tc.function {
            if let Some(n) = f.name.as_ref().filter(|n| !n.is_empty()) {
                if call.name.is_empty() {
                    call.name = n.clone();
                }
            }
            if let Some(a) = &f.arguments {
                call.arguments.push_str(a);
            }
        }
    }

    /// The closing events: the open block's stop, the gathered tool calls (in their canonical
    /// order), `message_delta` with the stop reason and usage, `message_stop`.
    pub fn finish(&mut self) -> Vec<wire::StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        self.start("", &mut out);
        self.close_open(&mut out);
        self.calls.sort_by_key(|(k, _)| *k);
        for (k, c) in std::mem::take(&mut self.calls) {
            let index = self.next_block;
            self.next_block += 1;
            let id = if c.id.is_empty() {
                format!("toolu_{:024x}", u128::from(k) + 1)
            } else {
                c.id
            };
            out.push(start_event(
                index,
                wire::ContentBlock::ToolUse(wire::ToolUseBlock {
                    id,
                    name: c.name,
                    input: Value::Object(Map::new()),
                    cache_control: None,
                    extra: wire::Extra::new(),
                }),
            ));
            if !c.arguments.is_empty() {
                out.push(delta_event(index, "input_json_delta", |x| {
                    x.partial_json = Some(c.arguments)
                }));
            }
            out.push(stop_event(index));
            self.had_tools = true;
        }
        let stop = self.stop.clone().unwrap_or_else(|| {
            if self.had_tools {
                "tool_use"
            } else {
                "end_turn"
            }
            .to_owned()
        });
        out.push(wire::StreamEvent::MessageDelta(wire::MessageDeltaEvent {
            delta: wire::MessageDelta {
                stop_reason: Some(stop),
                stop_sequence: None,
                extra: wire::Extra::new(),
            },
            usage: Some(usage(self.usage.as_ref())),
            extra: wire::Extra::new(),
        }));
        out.push(wire::StreamEvent::MessageStop);
        out
    }
}

/// An error as Anthropic's `type` for its HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 408 | 409 | 413 | 422 | 431 => match status {
            413 => "request_too_large",
            _ => "invalid_request_error",
        },
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Anthropic's status for a gateway status (`overloaded_error` is 529 at Anthropic).
pub fn error_status(status: u16) -> u16 {
    match status {
        503 => 529,
        s => s,
    }
}

/// An error body in Anthropic's shape.
pub fn error_body(status: u16, message: &str) -> wire::ErrorResponse {
    wire::ErrorResponse {
        kind: "error".into(),
        error: wire::ErrorDetail {
            kind: error_type(status).into(),
            message: message.to_owned(),
            extra: wire::Extra::new(),
        },
        extra: wire::Extra::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> (wire::MessagesRequest, Vec<(usize, String)>) {
        let mut v = v;
        let system = take_system_entries(&mut v);
        (serde_json::from_value(v).unwrap(), system)
    }

    fn canonical(v: Value) -> Value {
        let (req, system) = request(v);
        let mut chat = to_canonical(&req).unwrap();
        insert_system_entries(&mut chat, &req, system);
        serde_json::to_value(chat).unwrap()
    }

    /// The request of the Messages API reference's tool-use example, with Claude Code's extras.
    #[test]
    fn a_tool_conversation_becomes_canonical() {
        let c = canonical(json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "tools": [
                {"name": "get_weather", "description": "Get the weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "What's the weather in Paris and London?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig-1"},
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"location": "London"}}
                ]},
                {"role": "system", "content": "Mid-conversation note."},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 degrees"},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "rain"}], "is_error": true},
                    {"type": "text", "text": "<system-reminder>go on</system-reminder>"}
                ]}
            ],
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "user-7"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "top_k": 5, "stream": true
        }));
        assert_eq!(c["model"], "claude-sonnet-4-5");
        assert_eq!(c["max_tokens"], 1024);
        assert_eq!(c["reasoning_effort"], "medium");
        assert_eq!(c["stop"], json!(["\n\nHuman:"]));
        assert_eq!(c["user"], "user-7");
        assert_eq!(c["stream"], true);
        assert_eq!(c["stream_options"]["include_usage"], true);
        assert_eq!(c["tool_choice"], "required");
        assert_eq!(c["parallel_tool_calls"], false);
        // Server tools and Anthropic-only fields are dropped, never forwarded.
        assert_eq!(c["tools"].as_array().unwrap().len(), 1);
        assert_eq!(
            c["tools"][0]["function"]["parameters"]["required"],
            json!(["location"])
        );
        for dropped in [
            "context_management",
            "top_k",
            "thinking",
            "metadata",
            "system",
        ] {
            assert!(c.get(dropped).is_none(), "{dropped}");
        }
        let m = c["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "system",
                "tool",
                "tool",
                "user"
            ]
        );
        assert_eq!(m[0]["content"], "You are Claude Code.");
        assert_eq!(m[2]["content"], "Checking both.");
        assert_eq!(m[2]["tool_calls"][1]["id"], "toolu_02");
        assert_eq!(
            m[2]["tool_calls"][1]["function"]["arguments"],
            "{\"location\":\"London\"}"
        );
        assert_eq!(m[2]["thinking_blocks"][0]["signature"], "sig-1");
        assert_eq!(m[3]["content"], "Mid-conversation note.");
        assert_eq!(m[4]["tool_call_id"], "toolu_01");
        assert_eq!(m[5]["content"], "Error: rain");
        assert_eq!(m[6]["content"], "<system-reminder>go on</system-reminder>");
    }

    #[test]
    fn images_documents_and_tool_choices() {
        let c = canonical(json!({
            "model": "m", "max_tokens": 10,
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "t"},
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}, "title": "a.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
                {"type": "text", "text": "Describe them."}
            ]}]
        }));
        let parts = c["messages"][0]["content"].as_array().unwrap();
        assert_eq!(parts[0]["image_url"]["url"], "data:image/png;base64,iVBOR");
        assert_eq!(parts[1]["image_url"]["url"], "https://example.com/a.jpg");
        assert_eq!(parts[2]["type"], "file");
        assert_eq!(
            parts[2]["file"]["file_data"],
            "data:application/pdf;base64,JVBER"
        );
        assert_eq!(parts[3]["text"], "plain words");
        assert_eq!(c["tool_choice"]["function"]["name"], "t");
        for (choice, expected) in [("auto", json!("auto")), ("none", json!("none"))] {
            let c = canonical(json!({"model": "m", "max_tokens": 5,
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": choice}, "messages": [{"role": "user", "content": "x"}]}));
            assert_eq!(c["tool_choice"], expected);
        }
        // A Files API id has no canonical form: the block is dropped, the request not refused.
        let c = canonical(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
            {"type": "text", "text": "What is it?"}]}]}),
        );
        assert_eq!(c["messages"][0]["content"], "What is it?");
        assert_eq!(effort_for_budget(1024), "low");
        assert_eq!(effort_for_budget(16000), "high");
        let (req, _) = request(json!({"model": "m", "max_tokens": 5, "messages": []}));
        assert_eq!(
            to_canonical(&req).unwrap_err().param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn a_completion_becomes_a_message() {
        let c: ChatCompletion = serde_json::from_value(json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.",
                "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"ls\"}"}}]
            }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 60}}
        }))
        .unwrap();
        let m = serde_json::to_value(from_completion(&c, "claude-sonnet-4-5-20250929")).unwrap();
        assert_eq!(m["id"], "msg_abc");
        assert_eq!(m["type"], "message");
        assert_eq!(m["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(m["stop_reason"], "tool_use");
        let kinds: Vec<&str> = m["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["thinking", "text", "tool_use"]);
        assert_eq!(m["content"][0]["signature"], "s");
        assert_eq!(m["content"][2]["id"], "toolu_1");
        assert_eq!(m["content"][2]["input"], json!({"command": "ls"}));
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 40, "output_tokens": 20,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60})
        );
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
        ] {
            assert_eq!(stop_reason(Some(finish)), stop);
        }
    }

    fn chunk(v: Value) -> ChatCompletionChunk {
        let mut base = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "x", "choices": []});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn names(events: &[wire::StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// An OpenAI upstream interleaving text with the fragments of two tool calls.
    #[test]
    fn interleaved_tool_calls_become_sequential_blocks() {
        let mut t = EventTranslator::new("claude-x");
        let mut events = Vec::new();
        let tc = |i: u32, id: Option<&str>, name: Option<&str>, args: &str| json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": args}});
        for c in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "think"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Running "}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [tc(0, Some("call_a"), Some("Bash"), "{\"comm")]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [tc(1, Some("call_b"), Some("Bash"), "{\"command\":")]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "both."}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [tc(0, None, None, "and\":\"ls\"}")]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [tc(1, None, None, "\"pwd\"}")]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}}),
        ] {
            events.extend(t.on_chunk(&chunk(c)));
        }
        events.extend(t.finish());
        assert!(t.finish().is_empty(), "finishes once");
        let n = names(&events);
        assert_eq!(
            n,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta", // thinking 0
                "content_block_stop",
                "content_block_start",
                "content_block_delta", // text 1
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop", // tool 2
                "content_block_start",
                "content_block_delta",
                "content_block_stop", // tool 3
                "message_delta",
                "message_stop"
            ]
        );
        let v: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(v[0]["message"]["id"], "msg_9");
        assert_eq!(v[0]["message"]["model"], "claude-x");
        assert_eq!(v[2]["content_block"]["type"], "thinking");
        assert_eq!(
            v[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "think"})
        );
        assert_eq!(
            v[6]["delta"],
            json!({"type": "text_delta", "text": "Running "})
        );
        assert_eq!(v[9]["index"], 2);
        assert_eq!(
            v[9]["content_block"],
            json!({"type": "tool_use", "id": "toolu_a", "name": "Bash", "input": {}})
        );
        assert_eq!(
            v[10]["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"command\":\"ls\"}"})
        );
        assert_eq!(v[12]["content_block"]["id"], "toolu_b");
        assert_eq!(v[13]["delta"]["partial_json"], "{\"command\":\"pwd\"}");
        // Every start has its stop, in order, at increasing indexes.
        let starts: Vec<u64> = v
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        let stops: Vec<u64> = v
            .iter()
            .filter(|e| e["type"] == "content_block_stop")
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert_eq!(starts, [0, 1, 2, 3]);
        assert_eq!(stops, starts);
        assert_eq!(v[15]["delta"]["stop_reason"], "tool_use");
        assert_eq!(v[15]["usage"]["output_tokens"], 9);
        assert_eq!(v[15]["usage"]["input_tokens"], 50);
    }

    #[test]
    fn thinking_signatures_and_an_empty_stream() {
        let mut t = EventTranslator::new("m");
        let events = t.on_chunk(&chunk(json!({"choices": [{"index": 0, "delta": {
            "thinking_blocks": [{"type": "thinking", "thinking": "a", "signature": "sig"}]}, "finish_reason": null}]})));
        let v: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(
            v[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "a"})
        );
        assert_eq!(
            v[4]["delta"],
            json!({"type": "signature_delta", "signature": "sig"})
        );
        // A stream that ends without a chunk still has a well-formed message.
        let mut empty = EventTranslator::new("m");
        assert_eq!(
            names(&empty.finish()),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
        let err = error_body(503, "busy");
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        );
        assert_eq!(error_status(503), 529);
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(413), "request_too_large");
    }
}
