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
fn user_part(block: &wire::ContentBlock, param: &str) -> Result<Option<ContentPart>, ApiError> {
    Ok(match block {
        wire::ContentBlock::Text(t) => Some(ContentPart::text(t.text.clone())),
        wire::ContentBlock::Image(img) => {
            let url = media_url(&img.source).ok_or_else(|| {
                invalid(
                    format!("{param}.source.type"),
                    format!(
                        "image source `{}` is not supported; use base64 or url",
                        img.source.kind
                    ),
                )
            })?;
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
                let url = media_url(&doc.source).ok_or_else(|| {
                    invalid(
                        format!("{param}.source.type"),
                        format!(
                            "document source `{}` is not supported; use base64, url or text",
                            doc.source.kind
                        ),
                    )
                })?;
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
    })
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
fn push_message(
    out: &mut Vec<Message>,
    msg: &wire::Message,
    i: usize,
    role: &str,
) -> Result<(), ApiError> {
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
            for (j, b) in blocks.iter().enumerate() {
                if let wire::ContentBlock::ToolResult(r) = b {
                    let mut text = tool_result_text(r.content.as_ref());
                    if r.is_error == Some(true) {
                        text = format!("Error: {text}");
                    }
                    let mut m = Message::text(Role::Tool, text);
                    m.tool_call_id = Some(r.tool_use_id.clone());
                    out.push(m);
                } else if let Some(p) = user_part(b, &format!("messages[{i}].content[{j}]"))? {
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
    Ok(())
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
    for (i, m) in req.messages.iter().enumerate() {
        // Claude Code 2.1 sends `system` entries inside `messages`; the typed role has only
        // user and assistant, so they arrive in `extra` as a role the enum cannot hold. They
        // are read from the raw request instead (see `system_entries`).
        let role = match m.role {
            wire::Role::User => "user",
            wire::Role::Assistant => "assistant",
        };
        push_message(&mut messages, m, i, role)?;
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
    for (i, m) in typed.messages.iter().enumerate() {
        starts.push(canonical);
        let mut one = Vec::new();
        let role = match m.role {
            wire::Role::User => "user",
            wire::Role::Assistant => "assistant",
        };
        if push_message(&mut one, m, i, role).is_ok() {
            canonical += one.len();
        }
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
