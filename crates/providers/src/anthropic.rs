//! Anthropic Messages API adapter: pure conversions between the canonical (OpenAI) types and
//! the Messages API (https://docs.anthropic.com/en/api/messages).
//!
//! Notable mappings:
//! - `system` and `developer` messages (wherever they appear) become the top-level `system`;
//!   `cache_control` on a content part (or on a message) is kept, so prompt caching works.
//! - `tool` messages become `tool_result` blocks of a user message; consecutive messages of the
//!   same Anthropic role are merged (Anthropic wants alternating turns).
//! - assistant `thinking_blocks` are sent back first in their message, so extended thinking
//!   survives tool turns; responses return them (with signatures) in `thinking_blocks` and their
//!   text in `reasoning_content`.
//! - `response_format: json_schema` is emulated as LiteLLM does: a tool whose `input_schema` is
//!   the schema, forced with `tool_choice`; its call comes back as the message content. The
//!   tool is named [`JSON_TOOL_PREFIX`] + the schema name, which is how responses recognise it.

use std::collections::HashMap;

use plexus_protocol::anthropic as wire;
use plexus_protocol::openai::{
    self as oai, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice,
    ContentPart, Delta, FunctionCall, FunctionCallDelta, MessageContent, ResponseMessage, Role,
    ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde_json::{json, Value};

use crate::{ConvertCtx, ProviderError, UpstreamErrorBody};

const PROVIDER: &str = "anthropic";

/// Name prefix of the tool that carries `response_format: json_schema`.
pub const JSON_TOOL_PREFIX: &str = "json_response_";

/// Anthropic tool names are limited to 64 characters of `[a-zA-Z0-9_-]`.
const MAX_TOOL_NAME: usize = 64;

/// The system instruction that stands in for `response_format: json_object`.
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond only with a single valid JSON object, without any text before or after it.";

/// Top-level request fields that are Messages API fields and pass through unchanged.
const PASSTHROUGH_FIELDS: &[&str] = &["service_tier", "container", "mcp_servers"];

/// Longest error text kept from a non-JSON error body.
const MAX_ERROR_TEXT: usize = 500;

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        param: param.into(),
        message: message.into(),
    }
}

fn unsupported(param: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        param,
        provider: PROVIDER,
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Converts a chat completion request into a Messages API request.
pub fn to_request(
    req: &ChatCompletionRequest,
    ctx: &ConvertCtx,
) -> Result<wire::MessagesRequest, ProviderError> {
    reject_unsupported(req)?;
    let TopLevelExtra {
        extra,
        top_k,
        thinking: native_thinking,
    } = split_extra(&req.extra)?;

    // Messages.
    let mut system: Vec<wire::SystemBlock> = Vec::new();
    let mut messages: Vec<wire::Message> = Vec::new();
    for (i, msg) in req.messages.iter().enumerate() {
        match msg.role {
            Role::System | Role::Developer => system.extend(system_blocks(msg, i)?),
            Role::User => push_blocks(&mut messages, wire::Role::User, user_blocks(msg, i)?),
            Role::Assistant => push_blocks(
                &mut messages,
                wire::Role::Assistant,
                assistant_blocks(msg, i)?,
            ),
            Role::Tool => push_blocks(&mut messages, wire::Role::User, vec![tool_result(msg, i)?]),
            Role::Function => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    "the legacy `function` role is not supported by the anthropic provider; use `tool` messages",
                ))
            }
        }
    }
    if messages.is_empty() {
        return Err(invalid(
            "messages",
            "the anthropic provider needs at least one user or assistant message",
        ));
    }
    let messages = messages.into_iter().map(finish_message).collect();

    // Thinking and the output cap.
    let thinking = match (req.reasoning_effort.as_deref(), native_thinking) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "thinking",
                "set either `reasoning_effort` or `thinking`, not both",
            ))
        }
        (Some(effort), None) => thinking_for_effort(effort)?,
        (None, native) => native,
    };
    let mut max_tokens = req.max_output_tokens().unwrap_or(ctx.default_max_tokens);
    if let Some(budget) = thinking
        .as_ref()
        .filter(|t| t.kind == "enabled")
        .and_then(|t| t.budget_tokens)
    {
        max_tokens = fit_thinking_budget(max_tokens, budget, ctx.default_max_tokens);
    }

    let thinking_on = thinking.as_ref().is_some_and(|t| t.kind != "disabled");

    // Tools.
    let mut tools = req
        .tools
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, tool)| convert_tool(tool, i))
        .collect::<Result<Vec<_>, _>>()?;
    let has_user_tools = !tools.is_empty();
    let mut tool_choice = convert_tool_choice(req.tool_choice.as_ref(), has_user_tools)?;

    // Response format.
    if let Some(format) = &req.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => system.push(wire::SystemBlock::text(JSON_OBJECT_INSTRUCTION)),
            "json_schema" => {
                let schema = format.json_schema.as_ref().ok_or_else(|| {
                    invalid(
                        "response_format",
                        "`response_format.json_schema` is required when `type` is `json_schema`",
                    )
                })?;
                if thinking_on {
                    return Err(invalid(
                        "response_format",
                        "`json_schema` response format is emulated with a forced tool call on the anthropic provider, which extended thinking does not allow",
                    ));
                }
                let name = json_tool_name(&schema.name);
                let description = schema.description.clone().unwrap_or_else(|| {
                    format!(
                        "Respond with a JSON object that matches the `{}` schema.",
                        schema.name
                    )
                });
                tools.push(wire::Tool {
                    kind: None,
                    name: name.clone(),
                    description: Some(description),
                    input_schema: Some(
                        schema
                            .schema
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    ),
                    cache_control: None,
                    extra: wire::Extra::new(),
                });
                tool_choice = Some(match tool_choice {
                    // The client forced one of its own tools: keep that.
                    Some(choice) if choice.kind == "tool" => choice,
                    // The client's tools stay callable; the answer comes through the JSON tool.
                    Some(choice) if has_user_tools && choice.kind != "none" => {
                        wire::ToolChoice::new("any")
                    }
                    None if has_user_tools => wire::ToolChoice::new("any"),
                    _ => wire::ToolChoice::tool(name),
                });
            }
            other => {
                return Err(invalid(
                    "response_format",
                    format!("unknown `response_format` type `{other}`"),
                ))
            }
        }
    }

    if thinking_on {
        if let Some(choice) = &tool_choice {
            if choice.kind == "any" || choice.kind == "tool" {
                return Err(invalid(
                    "tool_choice",
                    "forcing tool use is not compatible with extended thinking on the anthropic provider",
                ));
            }
        }
    }

    if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = tool_choice.get_or_insert_with(|| wire::ToolChoice::new("auto"));
        if choice.kind != "none" {
            choice.disable_parallel_tool_use = Some(true);
        }
    }

    Ok(wire::MessagesRequest {
        model: ctx.upstream_model.to_owned(),
        messages,
        max_tokens,
        system: system_field(system),
        metadata: req.user.as_ref().map(|user| wire::Metadata {
            user_id: Some(user.clone()),
            extra: wire::Extra::new(),
        }),
        stop_sequences: req.stop.as_ref().map(oai::Stop::to_vec),
        stream: req.stream,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        extra,
    })
}

/// Parameters the Messages API cannot express.
fn reject_unsupported(req: &ChatCompletionRequest) -> Result<(), ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n"));
    }
    if req.seed.is_some() {
        return Err(unsupported("seed"));
    }
    // A zero penalty is the OpenAI default and a no-op, so it is accepted.
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("frequency_penalty"));
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("presence_penalty"));
    }
    Ok(())
}

struct TopLevelExtra {
    extra: wire::Extra,
    top_k: Option<u32>,
    thinking: Option<wire::ThinkingConfig>,
}

/// Sorts the request's unknown top-level fields: Anthropic-native ones are kept, gateway-side
/// ones ignored, anything else refused.
fn split_extra(extra: &oai::Extra) -> Result<TopLevelExtra, ProviderError> {
    let mut out = TopLevelExtra {
        extra: wire::Extra::new(),
        top_k: None,
        thinking: None,
    };
    for (key, value) in extra {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "top_k" => {
                out.top_k = Some(
                    serde_json::from_value(value.clone())
                        .map_err(|_| invalid("top_k", "`top_k` must be a non-negative integer"))?,
                );
            }
            "thinking" => {
                out.thinking =
                    Some(serde_json::from_value(value.clone()).map_err(|e| {
                        invalid("thinking", format!("invalid `thinking` object: {e}"))
                    })?);
            }
            k if PASSTHROUGH_FIELDS.contains(&k) => {
                out.extra.insert(key.clone(), value.clone());
            }
            "store" => {}
            "logprobs" => {
                if value.as_bool() == Some(true) {
                    return Err(unsupported("logprobs"));
                }
            }
            _ => {
                return Err(ProviderError::UnsupportedField {
                    param: key.clone(),
                    provider: "anthropic",
                })
            }
        }
    }
    Ok(out)
}

/// `reasoning_effort` → `thinking` (`none` turns thinking off).
fn thinking_for_effort(effort: &str) -> Result<Option<wire::ThinkingConfig>, ProviderError> {
    if effort == "none" {
        return Ok(None);
    }
    match crate::reasoning_budget(effort) {
        Some(budget) => Ok(Some(wire::ThinkingConfig::enabled(budget))),
        None => Err(invalid(
            "reasoning_effort",
            format!(
                "unknown `reasoning_effort` `{effort}` (expected none, minimal, low, medium or high)"
            ),
        )),
    }
}

/// Anthropic requires `max_tokens > budget_tokens` (the budget is part of `max_tokens`).
/// When the cap leaves no room, it becomes budget + the cap asked for, bounded by the model's
/// maximum output (`model_max`) as long as that maximum is above the budget.
fn fit_thinking_budget(max_tokens: u32, budget: u32, model_max: u32) -> u32 {
    if max_tokens > budget {
        return max_tokens;
    }
    let raised = budget.saturating_add(max_tokens);
    if model_max > budget {
        raised.min(model_max)
    } else {
        raised
    }
}

/// Appends blocks as a message of `role`, merged into the previous message when it has the
/// same role. Empty block lists add nothing.
fn push_blocks(
    messages: &mut Vec<wire::Message>,
    role: wire::Role,
    blocks: Vec<wire::ContentBlock>,
) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last.role == role {
            if let wire::MessageContent::Blocks(existing) = &mut last.content {
                existing.extend(blocks);
                return;
            }
        }
    }
    messages.push(wire::Message {
        role,
        content: wire::MessageContent::Blocks(blocks),
        extra: wire::Extra::new(),
    });
}

/// Puts an assistant message's thinking blocks first (required by Anthropic, and merged
/// messages may have them in the middle), and shortens a lone plain text block to a string.
fn finish_message(mut message: wire::Message) -> wire::Message {
    if let wire::MessageContent::Blocks(blocks) = &mut message.content {
        if message.role == wire::Role::Assistant {
            let (mut ordered, rest): (Vec<_>, Vec<_>) =
                std::mem::take(blocks).into_iter().partition(|b| {
                    matches!(
                        b,
                        wire::ContentBlock::Thinking(_) | wire::ContentBlock::RedactedThinking(_)
                    )
                });
            ordered.extend(rest);
            *blocks = ordered;
        }
        if let [wire::ContentBlock::Text(text)] = blocks.as_slice() {
            if text.cache_control.is_none() && text.extra.is_empty() {
                message.content = wire::MessageContent::Text(text.text.clone());
            }
        }
    }
    message
}

fn system_field(blocks: Vec<wire::SystemBlock>) -> Option<wire::System> {
    match blocks.as_slice() {
        [] => None,
        [only] if only.cache_control.is_none() && only.extra.is_empty() => {
            Some(wire::System::Text(only.text.clone()))
        }
        _ => Some(wire::System::Blocks(blocks)),
    }
}

/// `cache_control` of a content part or message (kept in its `extra`).
fn cache_control(
    extra: &oai::Extra,
    param: &str,
) -> Result<Option<wire::CacheControl>, ProviderError> {
    match extra.get("cache_control") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                invalid(
                    format!("{param}.cache_control"),
                    format!("invalid `cache_control`: {e}"),
                )
            }),
    }
}

/// Sets a message-level `cache_control` on the message's last block that has none.
fn apply_message_cache_control(
    blocks: &mut [wire::ContentBlock],
    control: Option<wire::CacheControl>,
) {
    let Some(control) = control else { return };
    let slot = match blocks.last_mut() {
        Some(wire::ContentBlock::Text(b)) => &mut b.cache_control,
        Some(wire::ContentBlock::Image(b)) => &mut b.cache_control,
        Some(wire::ContentBlock::Document(b)) => &mut b.cache_control,
        Some(wire::ContentBlock::ToolUse(b)) => &mut b.cache_control,
        Some(wire::ContentBlock::ToolResult(b)) => &mut b.cache_control,
        _ => return,
    };
    if slot.is_none() {
        *slot = Some(control);
    }
}

fn text_block(text: &str, cache_control: Option<wire::CacheControl>) -> wire::ContentBlock {
    wire::ContentBlock::Text(wire::TextBlock {
        text: text.to_owned(),
        cache_control,
        extra: wire::Extra::new(),
    })
}

fn system_blocks(msg: &oai::Message, i: usize) -> Result<Vec<wire::SystemBlock>, ProviderError> {
    let param = format!("messages[{i}]");
    let message_cache = cache_control(&msg.extra, &param)?;
    let mut out = Vec::new();
    match &msg.content {
        None => {}
        Some(MessageContent::Text(text)) if text.is_empty() => {}
        Some(MessageContent::Text(text)) => out.push(wire::SystemBlock::text(text.as_str())),
        Some(MessageContent::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_param = format!("messages[{i}].content[{j}]");
                if part.kind != "text" {
                    return Err(invalid(
                        part_param,
                        format!(
                            "content part type `{}` is not allowed in a system message",
                            part.kind
                        ),
                    ));
                }
                let text = part.text.as_deref().unwrap_or_default();
                if text.is_empty() {
                    continue;
                }
                let mut block = wire::SystemBlock::text(text);
                block.cache_control = cache_control(&part.extra, &part_param)?;
                out.push(block);
            }
        }
    }
    if let (Some(control), Some(last)) = (message_cache, out.last_mut()) {
        if last.cache_control.is_none() {
            last.cache_control = Some(control);
        }
    }
    Ok(out)
}

fn user_blocks(msg: &oai::Message, i: usize) -> Result<Vec<wire::ContentBlock>, ProviderError> {
    let param = format!("messages[{i}]");
    let mut blocks = content_blocks(msg.content.as_ref(), i)?;
    apply_message_cache_control(&mut blocks, cache_control(&msg.extra, &param)?);
    Ok(blocks)
}

/// A message's content as Anthropic blocks (text, images, documents); empty texts are dropped.
fn content_blocks(
    content: Option<&MessageContent>,
    i: usize,
) -> Result<Vec<wire::ContentBlock>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![text_block(text, None)]),
        Some(MessageContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(block) = convert_part(part, &format!("messages[{i}].content[{j}]"))? {
                    blocks.push(block);
                }
            }
            Ok(blocks)
        }
    }
}

fn convert_part(
    part: &ContentPart,
    param: &str,
) -> Result<Option<wire::ContentBlock>, ProviderError> {
    let control = cache_control(&part.extra, param)?;
    match part.kind.as_str() {
        "text" => {
            let text = part.text.as_deref().unwrap_or_default();
            Ok((!text.is_empty()).then(|| text_block(text, control)))
        }
        "image_url" => {
            let url = part
                .image_url
                .as_ref()
                .map(|u| u.url.as_str())
                .ok_or_else(|| invalid(param, "an `image_url` part needs `image_url.url`"))?;
            media_block(url, None, control, param).map(Some)
        }
        "file" => {
            let file = part.extra.get("file");
            let data = file
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str);
            let title = file
                .and_then(|f| f.get("filename"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match data {
                Some(url) if url.starts_with("data:") => {
                    media_block(url, title, control, param).map(Some)
                }
                _ => Err(invalid(
                    param,
                    "the anthropic provider accepts `file` parts only with `file.file_data` as a base64 data URL",
                )),
            }
        }
        other => Err(invalid(
            param,
            format!("content part type `{other}` is not supported by the anthropic provider"),
        )),
    }
}

/// An image or PDF from a `data:` URL (base64 source) or an `http(s)` URL (url source).
fn media_block(
    url: &str,
    title: Option<String>,
    cache_control: Option<wire::CacheControl>,
    param: &str,
) -> Result<wire::ContentBlock, ProviderError> {
    let source = if url.starts_with("data:") {
        let (media_type, data) = oai::parse_data_url(url).ok_or_else(|| {
            invalid(
                param,
                "data URLs must be base64-encoded: `data:<media type>;base64,<data>`",
            )
        })?;
        wire::Source::base64(media_type, data)
    } else if has_http_scheme(url) {
        wire::Source::url(url)
    } else {
        return Err(invalid(
            param,
            "image URLs must be `https://`, `http://` or base64 `data:` URLs",
        ));
    };
    let is_pdf = source.media_type.as_deref() == Some("application/pdf")
        || (source.kind == "url" && url_path_ends_with(url, ".pdf"));
    Ok(if is_pdf {
        wire::ContentBlock::Document(wire::DocumentBlock {
            source,
            title,
            cache_control,
            extra: wire::Extra::new(),
        })
    } else {
        wire::ContentBlock::Image(wire::ImageBlock {
            source,
            cache_control,
            extra: wire::Extra::new(),
        })
    })
}

fn has_http_scheme(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

fn url_path_ends_with(url: &str, suffix: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.to_ascii_lowercase().ends_with(suffix)
}

fn assistant_blocks(
    msg: &oai::Message,
    i: usize,
) -> Result<Vec<wire::ContentBlock>, ProviderError> {
    let mut blocks = Vec::new();

    // Thinking first: Anthropic checks the signed blocks of the turn that called the tools.
    for (j, block) in msg.thinking_blocks.iter().flatten().enumerate() {
        let param = format!("messages[{i}].thinking_blocks[{j}]");
        match block.kind.as_str() {
            "thinking" => {
                // A thinking block without its signature cannot be verified: it is dropped.
                if let Some(signature) = &block.signature {
                    blocks.push(wire::ContentBlock::Thinking(wire::ThinkingBlock {
                        thinking: block.thinking.clone().unwrap_or_default(),
                        signature: Some(signature.clone()),
                        extra: wire::Extra::new(),
                    }));
                }
            }
            "redacted_thinking" => {
                let data = block
                    .data
                    .clone()
                    .ok_or_else(|| invalid(param, "a `redacted_thinking` block needs `data`"))?;
                blocks.push(wire::ContentBlock::RedactedThinking(
                    wire::RedactedThinkingBlock {
                        data,
                        extra: wire::Extra::new(),
                    },
                ));
            }
            other => {
                return Err(invalid(
                    param,
                    format!("unknown thinking block type `{other}`"),
                ))
            }
        }
    }

    match &msg.content {
        None => {}
        Some(MessageContent::Text(text)) if text.is_empty() => {}
        Some(MessageContent::Text(text)) => blocks.push(text_block(text, None)),
        Some(MessageContent::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                match part.kind.as_str() {
                    "text" => {
                        if let Some(block) = convert_part(part, &param)? {
                            blocks.push(block);
                        }
                    }
                    // A refusal of a previous turn is not sent back.
                    "refusal" => {}
                    other => {
                        return Err(invalid(
                            param,
                            format!(
                            "content part type `{other}` is not allowed in an assistant message"
                        ),
                        ))
                    }
                }
            }
        }
    }

    for (j, call) in msg.tool_calls.iter().flatten().enumerate() {
        if call.kind != "function" {
            return Err(invalid(
                format!("messages[{i}].tool_calls"),
                format!("tool call {j} has unsupported type `{}`", call.kind),
            ));
        }
        blocks.push(wire::ContentBlock::ToolUse(wire::ToolUseBlock {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: parse_arguments(&call.function.arguments).ok_or_else(|| {
                invalid(
                    format!("messages[{i}].tool_calls"),
                    format!(
                        "`messages[{i}].tool_calls[{j}].function.arguments` must be a JSON object"
                    ),
                )
            })?,
            cache_control: None,
            extra: wire::Extra::new(),
        }));
    }

    let param = format!("messages[{i}]");
    apply_message_cache_control(&mut blocks, cache_control(&msg.extra, &param)?);
    Ok(blocks)
}

/// Tool-call arguments (a JSON string) as a JSON object; an empty string is `{}`.
fn parse_arguments(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

fn tool_result(msg: &oai::Message, i: usize) -> Result<wire::ContentBlock, ProviderError> {
    let tool_use_id = msg.tool_call_id.clone().ok_or_else(|| {
        invalid(
            format!("messages[{i}].tool_call_id"),
            "a `tool` message needs `tool_call_id`",
        )
    })?;
    let content = match &msg.content {
        None => None,
        Some(MessageContent::Text(text)) if text.is_empty() => None,
        Some(MessageContent::Text(text)) => Some(wire::ToolResultContent::Text(text.clone())),
        Some(parts @ MessageContent::Parts(_)) => {
            let blocks = content_blocks(Some(parts), i)?;
            (!blocks.is_empty()).then_some(wire::ToolResultContent::Blocks(blocks))
        }
    };
    Ok(wire::ContentBlock::ToolResult(wire::ToolResultBlock {
        tool_use_id,
        content,
        is_error: None,
        cache_control: cache_control(&msg.extra, &format!("messages[{i}]"))?,
        extra: wire::Extra::new(),
    }))
}

fn convert_tool(tool: &oai::Tool, i: usize) -> Result<wire::Tool, ProviderError> {
    if tool.kind != "function" {
        return Err(invalid(
            format!("tools[{i}].type"),
            format!(
                "tool type `{}` is not supported by the anthropic provider",
                tool.kind
            ),
        ));
    }
    let function = &tool.function;
    Ok(wire::Tool {
        kind: None,
        name: function.name.clone(),
        description: function.description.clone(),
        input_schema: Some(
            function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
        ),
        cache_control: cache_control(&tool.extra, &format!("tools[{i}]"))?,
        extra: wire::Extra::new(),
    })
}

fn convert_tool_choice(
    choice: Option<&ToolChoice>,
    has_tools: bool,
) -> Result<Option<wire::ToolChoice>, ProviderError> {
    let Some(choice) = choice else {
        return Ok(None);
    };
    let converted = match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => wire::ToolChoice::new("auto"),
            "required" => wire::ToolChoice::new("any"),
            "none" => wire::ToolChoice::new("none"),
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("unknown `tool_choice` `{other}` (expected auto, required or none)"),
                ))
            }
        },
        ToolChoice::Named(named) => {
            if named.kind != "function" {
                return Err(invalid(
                    "tool_choice",
                    format!("unsupported `tool_choice` type `{}`", named.kind),
                ));
            }
            wire::ToolChoice::tool(named.function.name.clone())
        }
    };
    if has_tools {
        return Ok(Some(converted));
    }
    match converted.kind.as_str() {
        // Nothing to choose from: harmless, and Anthropic wants no tool_choice without tools.
        "auto" | "none" => Ok(None),
        _ => Err(invalid("tool_choice", "`tool_choice` requires `tools`")),
    }
}

/// The forced tool's name for a `json_schema` response format.
fn json_tool_name(schema_name: &str) -> String {
    let room = MAX_TOOL_NAME - JSON_TOOL_PREFIX.len();
    let sanitized: String = schema_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(room)
        .collect();
    format!("{JSON_TOOL_PREFIX}{sanitized}")
}

fn is_json_tool(name: &str) -> bool {
    name.starts_with(JSON_TOOL_PREFIX)
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Converts a Messages API response into a chat completion.
pub fn from_response(
    resp: wire::MessagesResponse,
    ctx: &ConvertCtx,
) -> Result<ChatCompletion, ProviderError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_output: Option<String> = None;

    for block in resp.content {
        match block {
            wire::ContentBlock::Text(b) => text.push_str(&b.text),
            wire::ContentBlock::ToolUse(b) => {
                let arguments = serde_json::to_string(&b.input).map_err(ProviderError::decode)?;
                if is_json_tool(&b.name) {
                    json_output = Some(arguments);
                } else {
                    tool_calls.push(ToolCall {
                        id: b.id,
                        kind: "function".to_owned(),
                        function: FunctionCall {
                            name: b.name,
                            arguments,
                        },
                    });
                }
            }
            wire::ContentBlock::Thinking(b) => {
                if !reasoning.is_empty() && !b.thinking.is_empty() {
                    reasoning.push_str(THINKING_SEPARATOR);
                }
                reasoning.push_str(&b.thinking);
                thinking_blocks.push(oai::ThinkingBlock {
                    kind: "thinking".to_owned(),
                    thinking: Some(b.thinking),
                    signature: b.signature,
                    data: None,
                });
            }
            wire::ContentBlock::RedactedThinking(b) => thinking_blocks.push(oai::ThinkingBlock {
                kind: "redacted_thinking".to_owned(),
                thinking: None,
                signature: None,
                data: Some(b.data),
            }),
            // Server tool blocks, documents and unknown blocks have no chat completion form.
            _ => {}
        }
    }

    // The JSON tool's input is the answer; any text Claude put before it is not.
    if let Some(json) = json_output {
        text = json;
    }
    let has_tool_calls = !tool_calls.is_empty();
    let content = (!text.is_empty() || !has_tool_calls).then_some(text);

    let model = if resp.model.is_empty() {
        ctx.upstream_model.to_owned()
    } else {
        resp.model
    };
    Ok(ChatCompletion {
        id: resp.id,
        object: "chat.completion".to_owned(),
        created: ctx.created,
        model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content,
                tool_calls: has_tool_calls.then_some(tool_calls),
                refusal: None,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
                extra: oai::Extra::new(),
            },
            finish_reason: resp
                .stop_reason
                .as_deref()
                .map(|r| finish_reason(r, has_tool_calls)),
            logprobs: None,
        }],
        usage: Some(convert_usage(&resp.usage)),
        system_fingerprint: None,
        extra: oai::Extra::new(),
    })
}

/// Between the texts of two thinking blocks in `reasoning_content`.
const THINKING_SEPARATOR: &str = "\n\n";

/// Anthropic `stop_reason` → OpenAI `finish_reason`. `tool_use` is `tool_calls` only when the
/// client gets tool calls (not for the `json_schema` tool).
fn finish_reason(stop_reason: &str, has_tool_calls: bool) -> String {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if has_tool_calls => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn, the json_schema tool, and future reasons.
        _ => "stop",
    }
    .to_owned()
}

/// Anthropic usage → OpenAI usage. Anthropic's `input_tokens` excludes cached tokens, so the
/// prompt total adds cache reads and cache writes.
/// The usage of a Messages response body, in canonical form (a pass-through's billing).
pub fn usage_of(bytes: &[u8]) -> Result<Usage, ProviderError> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        #[serde(default)]
        usage: wire::Usage,
    }
    let parsed: WithUsage = serde_json::from_slice(bytes).map_err(ProviderError::decode)?;
    Ok(convert_usage(&parsed.usage))
}

fn convert_usage(usage: &wire::Usage) -> Usage {
    let input = usage.input_tokens.unwrap_or(0);
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let cache_creation = usage.cache_creation_input_tokens.unwrap_or(0);
    let thinking = usage
        .extra
        .get("output_tokens_details")
        .and_then(|d| d.get("thinking_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut out = Usage::new(
        input + cache_read + cache_creation,
        usage.output_tokens.unwrap_or(0),
    )
    .with_cached(cache_read)
    .with_reasoning(thinking);
    if cache_creation > 0 {
        // Cache writes are priced differently from plain input; keep the count (LiteLLM's name).
        out.extra.insert(
            "cache_creation_input_tokens".to_owned(),
            cache_creation.into(),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// What the stream knows about the content block at an Anthropic index.
#[derive(Debug)]
enum BlockState {
    Text,
    /// A tool call, with its OpenAI `index` (tool calls counted from 0).
    Tool(u32),
    /// The `json_schema` tool: its input is streamed as content.
    JsonTool,
    Thinking {
        text: String,
        signature: String,
        /// A separator is owed before this block's first reasoning text.
        separator_pending: bool,
    },
    Redacted(String),
    Other,
}

/// Converts Anthropic stream events into chat completion chunks, one event at a time.
#[derive(Debug)]
pub struct StreamState {
    id: String,
    model: String,
    created: i64,
    blocks: HashMap<u32, BlockState>,
    tool_calls: u32,
    reasoning_emitted: bool,
    usage: wire::Usage,
    done: bool,
}

impl StreamState {
    pub fn new(ctx: &ConvertCtx) -> Self {
        StreamState {
            id: String::new(),
            model: ctx.upstream_model.to_owned(),
            created: ctx.created,
            blocks: HashMap::new(),
            tool_calls: 0,
            reasoning_emitted: false,
            usage: wire::Usage::default(),
            done: false,
        }
    }

    /// Whether `message_stop` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one SSE event (`event` is its name, possibly empty; `data` its payload).
    pub fn on_event(
        &mut self,
        event: &str,
        data: &str,
    ) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        let kind = if event.is_empty() {
            event_type(data)?
        } else {
            event.to_owned()
        };
        match kind.as_str() {
            "message_start" => {
                let ev: wire::MessageStartEvent = parse(data)?;
                self.on_message_start(ev.message)
            }
            "content_block_start" => {
                let ev: wire::ContentBlockStartEvent = parse(data)?;
                Ok(self.on_block_start(ev.index, ev.content_block))
            }
            "content_block_delta" => {
                let ev: wire::ContentBlockDeltaEvent = parse(data)?;
                Ok(self.on_block_delta(ev.index, ev.delta))
            }
            "content_block_stop" => {
                let ev: wire::ContentBlockStopEvent = parse(data)?;
                Ok(self.on_block_stop(ev.index))
            }
            "message_delta" => {
                let ev: wire::MessageDeltaEvent = parse(data)?;
                Ok(self.on_message_delta(ev))
            }
            "message_stop" => {
                self.done = true;
                let mut chunk = self.empty_chunk();
                chunk.usage = Some(convert_usage(&self.usage));
                Ok(vec![chunk])
            }
            "error" => {
                let ev: wire::ErrorEvent = parse(data)?;
                let message = if ev.error.message.is_empty() {
                    ev.error.kind
                } else {
                    ev.error.message
                };
                Err(ProviderError::Stream(message))
            }
            // `ping` and event types added later.
            _ => Ok(Vec::new()),
        }
    }

    fn on_message_start(
        &mut self,
        message: wire::MessagesResponse,
    ) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        self.id = message.id;
        if !message.model.is_empty() {
            self.model = message.model;
        }
        merge_usage(&mut self.usage, message.usage);
        Ok(vec![self.chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )])
    }

    fn on_block_start(
        &mut self,
        index: u32,
        block: wire::ContentBlock,
    ) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        let state = match block {
            wire::ContentBlock::Text(b) => {
                if !b.text.is_empty() {
                    out.push(self.content_chunk(b.text));
                }
                BlockState::Text
            }
            wire::ContentBlock::ToolUse(b) if is_json_tool(&b.name) => BlockState::JsonTool,
            wire::ContentBlock::ToolUse(b) => {
                let tool_index = self.tool_calls;
                self.tool_calls += 1;
                out.push(self.chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: tool_index,
                            id: Some(b.id),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionCallDelta {
                                name: Some(b.name),
                                arguments: Some(String::new()),
                            }),
                        }]),
                        ..Delta::default()
                    },
                    None,
                ));
                BlockState::Tool(tool_index)
            }
            wire::ContentBlock::Thinking(b) => {
                let mut state = BlockState::Thinking {
                    text: String::new(),
                    signature: b.signature.unwrap_or_default(),
                    separator_pending: self.reasoning_emitted,
                };
                out.extend(self.thinking_text(&mut state, b.thinking));
                state
            }
            wire::ContentBlock::RedactedThinking(b) => BlockState::Redacted(b.data),
            _ => BlockState::Other,
        };
        self.blocks.insert(index, state);
        out
    }

    fn on_block_delta(
        &mut self,
        index: u32,
        delta: wire::ContentDelta,
    ) -> Vec<ChatCompletionChunk> {
        let mut state = self.blocks.remove(&index);
        let out = match (delta.kind.as_str(), &mut state) {
            ("text_delta", _) => match delta.text {
                Some(text) if !text.is_empty() => vec![self.content_chunk(text)],
                _ => Vec::new(),
            },
            ("input_json_delta", Some(BlockState::Tool(tool_index))) => {
                let tool_index = *tool_index;
                match delta.partial_json {
                    Some(json) if !json.is_empty() => vec![self.chunk(
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: tool_index,
                                id: None,
                                kind: None,
                                function: Some(FunctionCallDelta {
                                    name: None,
                                    arguments: Some(json),
                                }),
                            }]),
                            ..Delta::default()
                        },
                        None,
                    )],
                    _ => Vec::new(),
                }
            }
            ("input_json_delta", Some(BlockState::JsonTool)) => match delta.partial_json {
                Some(json) if !json.is_empty() => vec![self.content_chunk(json)],
                _ => Vec::new(),
            },
            ("thinking_delta", Some(block @ BlockState::Thinking { .. })) => {
                self.thinking_text(block, delta.thinking.unwrap_or_default())
            }
            ("signature_delta", Some(BlockState::Thinking { signature, .. })) => {
                signature.push_str(delta.signature.as_deref().unwrap_or_default());
                Vec::new()
            }
            // citations_delta, deltas of server tool blocks, future delta types.
            _ => Vec::new(),
        };
        if let Some(state) = state {
            self.blocks.insert(index, state);
        }
        out
    }

    /// Emits thinking text as `reasoning_content` and keeps it for the finished block.
    fn thinking_text(&mut self, block: &mut BlockState, text: String) -> Vec<ChatCompletionChunk> {
        let BlockState::Thinking {
            text: acc,
            separator_pending,
            ..
        } = block
        else {
            return Vec::new();
        };
        if text.is_empty() {
            return Vec::new();
        }
        acc.push_str(&text);
        let emitted = if std::mem::take(separator_pending) {
            format!("{THINKING_SEPARATOR}{text}")
        } else {
            text
        };
        self.reasoning_emitted = true;
        vec![self.chunk(
            Delta {
                reasoning_content: Some(emitted),
                ..Delta::default()
            },
            None,
        )]
    }

    fn on_block_stop(&mut self, index: u32) -> Vec<ChatCompletionChunk> {
        let block = match self.blocks.remove(&index) {
            Some(BlockState::Thinking {
                text, signature, ..
            }) => oai::ThinkingBlock {
                kind: "thinking".to_owned(),
                thinking: Some(text),
                signature: (!signature.is_empty()).then_some(signature),
                data: None,
            },
            Some(BlockState::Redacted(data)) => oai::ThinkingBlock {
                kind: "redacted_thinking".to_owned(),
                thinking: None,
                signature: None,
                data: Some(data),
            },
            _ => return Vec::new(),
        };
        vec![self.chunk(
            Delta {
                thinking_blocks: Some(vec![block]),
                ..Delta::default()
            },
            None,
        )]
    }

    fn on_message_delta(&mut self, ev: wire::MessageDeltaEvent) -> Vec<ChatCompletionChunk> {
        if let Some(usage) = ev.usage {
            merge_usage(&mut self.usage, usage);
        }
        match ev.delta.stop_reason {
            Some(reason) => {
                let finish = finish_reason(&reason, self.tool_calls > 0);
                vec![self.chunk(Delta::default(), Some(finish))]
            }
            None => Vec::new(),
        }
    }

    fn empty_chunk(&self) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, self.created, &self.model)
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatCompletionChunk {
        let mut chunk = self.empty_chunk();
        chunk.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        });
        chunk
    }

    fn content_chunk(&self, text: String) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }
}

/// Overwrites the counts `update` carries (`message_delta` usage is cumulative).
fn merge_usage(into: &mut wire::Usage, update: wire::Usage) {
    if update.input_tokens.is_some() {
        into.input_tokens = update.input_tokens;
    }
    if update.output_tokens.is_some() {
        into.output_tokens = update.output_tokens;
    }
    if update.cache_creation_input_tokens.is_some() {
        into.cache_creation_input_tokens = update.cache_creation_input_tokens;
    }
    if update.cache_read_input_tokens.is_some() {
        into.cache_read_input_tokens = update.cache_read_input_tokens;
    }
    into.extra.extend(update.extra);
}

fn parse<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, ProviderError> {
    serde_json::from_str(data).map_err(ProviderError::decode)
}

/// The `type` of an event whose SSE `event:` line was missing.
fn event_type(data: &str) -> Result<String, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type", default)]
        kind: String,
    }
    Ok(parse::<Typed>(data)?.kind)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Reads an Anthropic error body: `{"type":"error","error":{"type","message"}}`; any other
/// body becomes the message (its first 500 characters).
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamErrorBody {
    if let Ok(err) = serde_json::from_slice::<wire::ErrorResponse>(body) {
        if !err.error.kind.is_empty() || !err.error.message.is_empty() {
            return UpstreamErrorBody {
                code: (!err.error.kind.is_empty()).then_some(err.error.kind),
                message: err.error.message,
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    UpstreamErrorBody {
        code: None,
        message: if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text.chars().take(MAX_ERROR_TEXT).collect()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RESPONSE_TEXT: &str = include_str!("../tests/fixtures/anthropic/response_text.json");
    const RESPONSE_TOOL_USE: &str =
        include_str!("../tests/fixtures/anthropic/response_tool_use.json");
    const RESPONSE_THINKING_TOOL_USE: &str =
        include_str!("../tests/fixtures/anthropic/response_thinking_tool_use.json");
    const RESPONSE_REDACTED_THINKING: &str =
        include_str!("../tests/fixtures/anthropic/response_redacted_thinking.json");
    const STREAM_TEXT: &str = include_str!("../tests/fixtures/anthropic/stream_text.sse");
    const STREAM_TOOL_USE: &str = include_str!("../tests/fixtures/anthropic/stream_tool_use.sse");
    const STREAM_TOOL_USE_SDK: &str =
        include_str!("../tests/fixtures/anthropic/stream_tool_use_sdk.sse");
    const STREAM_THINKING: &str = include_str!("../tests/fixtures/anthropic/stream_thinking.sse");
    const STREAM_REFUSAL: &str = include_str!("../tests/fixtures/anthropic/stream_refusal.sse");
    const STREAM_ERROR: &str = include_str!("../tests/fixtures/anthropic/stream_error.sse");
    const ERROR_NOT_FOUND: &str = include_str!("../tests/fixtures/anthropic/error_not_found.json");
    const ERROR_OVERLOADED: &str =
        include_str!("../tests/fixtures/anthropic/error_overloaded.json");

    const CREATED: i64 = 1_700_000_000;

    fn ctx() -> ConvertCtx<'static> {
        ConvertCtx {
            upstream_model: "claude-sonnet-4-5",
            created: CREATED,
            default_max_tokens: 64_000,
            lenient: false,
        }
    }

    fn request(body: Value) -> ChatCompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    fn convert(body: Value) -> Result<wire::MessagesRequest, ProviderError> {
        to_request(&request(body), &ctx())
    }

    fn convert_json(body: Value) -> Value {
        serde_json::to_value(convert(body).unwrap()).unwrap()
    }

    fn invalid_param(err: ProviderError) -> String {
        match err {
            ProviderError::InvalidRequest { param, .. } => param,
            other => panic!("InvalidRequest expected, got {other:?}"),
        }
    }

    fn unsupported_param(err: ProviderError) -> &'static str {
        match err {
            ProviderError::Unsupported { param, provider } => {
                assert_eq!(provider, "anthropic");
                param
            }
            other => panic!("Unsupported expected, got {other:?}"),
        }
    }

    fn weather_tool() -> Value {
        // The tool of the docs' "Streaming request with tool use", in OpenAI form.
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA"
                    }
                },
                "required": ["location"]
            }
        }})
    }

    fn response(fixture: &str) -> wire::MessagesResponse {
        serde_json::from_str(fixture).unwrap()
    }

    // ---- request -----------------------------------------------------------------------------

    #[test]
    fn text_request_matches_the_docs_basic_request() {
        // Streaming docs, "Basic streaming request".
        let got = convert_json(json!({
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 256,
            "stream": true
        }));
        assert_eq!(
            got,
            json!({
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 256,
                "stream": true
            })
        );
    }

    #[test]
    fn max_tokens_falls_back_to_the_catalog_default_and_prefers_max_completion_tokens() {
        let req = convert(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .unwrap();
        assert_eq!(req.max_tokens, 64_000);
        let req = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100, "max_completion_tokens": 200}),
        )
        .unwrap();
        assert_eq!(req.max_tokens, 200);
        assert_eq!(req.model, "claude-sonnet-4-5", "the upstream model is sent");
    }

    #[test]
    fn system_and_developer_messages_become_system_with_cache_control() {
        let got = convert_json(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "You are a helpful assistant."},
                    {"type": "text", "text": "<the entire contents of Pride and Prejudice>",
                     "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
                {"role": "system", "content": "Late system text."}
            ]
        }));
        assert_eq!(
            got["system"],
            json!([
                {"type": "text", "text": "You are a helpful assistant."},
                {"type": "text", "text": "<the entire contents of Pride and Prejudice>",
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Answer in French."},
                {"type": "text", "text": "Late system text."}
            ])
        );
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": "Hello"}])
        );

        // One plain system message stays a string.
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}));
        assert_eq!(got["system"], json!("be brief"));
    }

    #[test]
    fn user_cache_control_is_kept_on_parts_and_messages() {
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "text", "text": "question"}
            ]},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "follow-up", "cache_control": {"type": "ephemeral"}}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                    {"type": "text", "text": "question"}
                ]},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": [
                    {"type": "text", "text": "follow-up", "cache_control": {"type": "ephemeral"}}
                ]}
            ])
        );
    }

    #[test]
    fn images_from_data_and_https_urls() {
        // Target shapes: the vision docs' base64 and URL image sources.
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg==", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
                {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBERi0x"}},
                {"type": "text", "text": "Describe this image."}
            ]}]}),
        );
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
                {"type": "text", "text": "Describe this image."}
            ])
        );
    }

    #[test]
    fn bad_image_urls_and_parts_are_rejected_with_their_path() {
        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(invalid_param(err), "messages[0].content[1]");
        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(invalid_param(err), "messages[0].content[0]");
        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(invalid_param(err), "messages[0].content[0]");
    }

    #[test]
    fn tools_and_tool_choice_variants() {
        let base = |choice: Value| {
            convert_json(
                json!({"model": "m", "messages": [{"role": "user", "content": "What is the weather like in San Francisco?"}],
                "tools": [weather_tool()], "tool_choice": choice}),
            )
        };
        let got = base(json!("required"));
        // Docs' "Streaming request with tool use": the same tool and `tool_choice: any`.
        assert_eq!(
            got["tools"],
            json!([{
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "location": {
                            "type": "string",
                            "description": "The city and state, e.g. San Francisco, CA"
                        }
                    },
                    "required": ["location"]
                }
            }])
        );
        assert_eq!(got["tool_choice"], json!({"type": "any"}));
        assert_eq!(base(json!("auto"))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(base(json!("none"))["tool_choice"], json!({"type": "none"}));
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "get_weather"}}))["tool_choice"],
            json!({"type": "tool", "name": "get_weather"})
        );
        assert_eq!(
            invalid_param(
                convert(
                    json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [weather_tool()], "tool_choice": "sometimes"})
                )
                .unwrap_err()
            ),
            "tool_choice"
        );

        // parallel_tool_calls: false
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool()], "parallel_tool_calls": false}),
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool()], "tool_choice": "required", "parallel_tool_calls": false}),
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );

        // A tool without parameters gets an empty object schema; cache_control is kept.
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "now"}, "cache_control": {"type": "ephemeral"}}]}),
        );
        assert_eq!(
            got["tools"],
            json!([{"name": "now", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}])
        );

        // tool_choice without tools.
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "auto"}),
        );
        assert!(got.get("tool_choice").is_none() && got.get("tools").is_none());
        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required"}),
        )
        .unwrap_err();
        assert_eq!(invalid_param(err), "tool_choice");
    }

    #[test]
    fn tool_result_turn_with_parallel_calls() {
        // The docs' parallel-tool-use message history: one assistant turn with both calls,
        // then one user turn with both results.
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "user", "content": "What's the weather in SF and NYC?"},
            {"role": "assistant", "content": "I'll check both.", "tool_calls": [
                {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"San Francisco, CA\"}"}},
                {"id": "toolu_02", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"New York, NY\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "68°F"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "45°F"}]},
            {"role": "user", "content": "Thanks, which is warmer?"}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": "What's the weather in SF and NYC?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "I'll check both."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "San Francisco, CA"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"location": "New York, NY"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "68°F"},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "45°F"}]},
                    {"type": "text", "text": "Thanks, which is warmer?"}
                ]}
            ])
        );
    }

    #[test]
    fn consecutive_same_role_messages_are_merged() {
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "three"}
            ])
        );
    }

    #[test]
    fn tool_call_arguments_must_be_a_json_object() {
        let body = |args: &str| {
            json!({"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": args}}]}
            ]})
        };
        assert_eq!(
            invalid_param(convert(body("{not json")).unwrap_err()),
            "messages[1].tool_calls"
        );
        assert_eq!(
            invalid_param(convert(body("[1, 2]")).unwrap_err()),
            "messages[1].tool_calls"
        );
        let got = serde_json::to_value(convert(body("")).unwrap()).unwrap();
        assert_eq!(got["messages"][1]["content"][0]["input"], json!({}));
        let err = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]}))
        .unwrap_err();
        assert_eq!(invalid_param(err), "messages[1].tool_call_id");
    }

    #[test]
    fn thinking_blocks_survive_a_tool_turn() {
        // Extended-thinking docs: the first response has thinking, text and tool_use; the
        // second request must send `[thinking_block, tool_use_block]` back unmodified.
        let completion = from_response(response(RESPONSE_THINKING_TOOL_USE), &ctx()).unwrap();
        let answer = &completion.choices[0].message;
        let assistant = json!({
            "role": "assistant",
            "content": answer.content,
            "tool_calls": answer.tool_calls,
            "thinking_blocks": answer.thinking_blocks,
            "reasoning_content": answer.reasoning_content
        });
        let got = convert_json(json!({"model": "m", "reasoning_effort": "medium",
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Get current weather for a location",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            assistant,
            {"role": "tool", "tool_call_id": "toolu_01CswdEQBMshySk6Y9DFKrfq", "content": "Current temperature: 88°F"}
        ]}));
        let original: Value = serde_json::from_str(RESPONSE_THINKING_TOOL_USE).unwrap();
        assert_eq!(got["messages"][1]["role"], "assistant");
        assert_eq!(got["messages"][1]["content"], original["content"]);
        assert_eq!(
            got["messages"][2],
            json!({"role": "user", "content": [{"type": "tool_result",
                "tool_use_id": "toolu_01CswdEQBMshySk6Y9DFKrfq", "content": "Current temperature: 88°F"}]})
        );
        assert_eq!(
            got["thinking"],
            json!({"type": "enabled", "budget_tokens": 8192})
        );
    }

    #[test]
    fn redacted_and_unsigned_thinking_blocks_on_the_request_side() {
        let completion = from_response(response(RESPONSE_REDACTED_THINKING), &ctx()).unwrap();
        let answer = &completion.choices[0].message;
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": answer.content, "thinking_blocks": answer.thinking_blocks},
            {"role": "user", "content": "and?"}
        ]}));
        let original: Value = serde_json::from_str(RESPONSE_REDACTED_THINKING).unwrap();
        assert_eq!(got["messages"][1]["content"], original["content"]);

        // Thinking without a signature (e.g. from another provider) cannot be sent back.
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "thinking_blocks": [{"type": "thinking", "thinking": "hmm"}]},
        ]}));
        assert_eq!(got["messages"][1]["content"], json!("a"));
    }

    #[test]
    fn reasoning_effort_maps_to_a_thinking_budget() {
        let body = |effort: &str, max: Option<u32>| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": effort});
            if let Some(max) = max {
                b["max_tokens"] = max.into();
            }
            b
        };
        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 2048),
            ("medium", 8192),
            ("high", 24576),
        ] {
            let req = convert(body(effort, None)).unwrap();
            assert_eq!(req.thinking, Some(wire::ThinkingConfig::enabled(budget)));
            assert_eq!(req.max_tokens, 64_000);
        }
        // A cap at or below the budget is raised to budget + cap, within the model maximum.
        assert_eq!(convert(body("low", Some(1000))).unwrap().max_tokens, 3048);
        assert_eq!(
            convert(body("high", Some(60_000))).unwrap().max_tokens,
            60_000
        );
        let small = ConvertCtx {
            default_max_tokens: 4096,
            ..ctx()
        };
        let req = to_request(&request(body("high", None)), &small).unwrap();
        assert_eq!(req.max_tokens, 24576 + 4096);
        assert!(req.max_tokens > 24576);

        assert_eq!(convert(body("none", None)).unwrap().thinking, None);
        assert_eq!(
            invalid_param(convert(body("extreme", None)).unwrap_err()),
            "reasoning_effort"
        );
        // Forced tool use is refused by Anthropic when thinking is on.
        let mut forced = body("low", None);
        forced["tools"] = json!([weather_tool()]);
        forced["tool_choice"] = json!("required");
        assert_eq!(invalid_param(convert(forced).unwrap_err()), "tool_choice");
    }

    #[test]
    fn json_schema_is_a_forced_tool() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
            "required": ["city", "temp"], "additionalProperties": false});
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather_report", "schema": schema, "strict": true}}}),
        );
        assert_eq!(
            got["tools"],
            json!([{"name": "json_response_weather_report",
                "description": "Respond with a JSON object that matches the `weather_report` schema.",
                "input_schema": schema}])
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "tool", "name": "json_response_weather_report"})
        );

        // With the client's own tools, Claude must call a tool but may pick either.
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool()],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}}),
        );
        assert_eq!(got["tools"].as_array().unwrap().len(), 2);
        assert_eq!(got["tool_choice"], json!({"type": "any"}));

        // Cannot be combined with thinking.
        let err = convert(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}}))
        .unwrap_err();
        assert_eq!(invalid_param(err), "response_format");

        // Long or odd schema names still make a valid tool name.
        let name = json_tool_name(&format!("weird name/{}", "x".repeat(100)));
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("json_response_weird_name_"));

        // The response: the forced tool's input becomes the content, finish_reason `stop`.
        // (Hand-written in the shape of the docs' tool_use response.)
        let resp = response(
            r#"{"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "tool_use", "id": "toolu_01", "name": "json_response_weather_report",
                             "input": {"city": "Paris", "temp": 18.5}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 400, "output_tokens": 30}}"#,
        );
        let completion = from_response(resp, &ctx()).unwrap();
        let choice = &completion.choices[0];
        let content: Value =
            serde_json::from_str(choice.message.content.as_deref().unwrap()).unwrap();
        assert_eq!(content, json!({"city": "Paris", "temp": 18.5}));
        assert_eq!(choice.message.tool_calls, None);
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));

        // Streaming: the tool's input arrives as content deltas.
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":400,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"json_response_weather_report","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\","}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":" \"temp\": 18.5}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ];
        let streamed = collect(
            &events
                .iter()
                .map(|(e, d)| ((*e).to_owned(), (*d).to_owned()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(streamed.content, r#"{"city": "Paris", "temp": 18.5}"#);
        assert!(streamed.tool_calls.is_empty());
        assert_eq!(streamed.finish_reasons, vec!["stop"]);
    }

    #[test]
    fn json_object_adds_a_system_instruction() {
        let got = convert_json(json!({"model": "m", "messages": [
            {"role": "system", "content": "You extract data."}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}));
        assert_eq!(
            got["system"],
            json!([{"type": "text", "text": "You extract data."},
                   {"type": "text", "text": JSON_OBJECT_INSTRUCTION}])
        );
        assert!(got.get("tools").is_none());
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"}}),
        );
        assert!(got.get("system").is_none());
    }

    #[test]
    fn unsupported_parameters_are_rejected() {
        let with = |key: &str, value: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            b[key] = value;
            convert(b)
        };
        assert_eq!(unsupported_param(with("n", json!(2)).unwrap_err()), "n");
        assert_eq!(
            unsupported_param(with("seed", json!(7)).unwrap_err()),
            "seed"
        );
        assert_eq!(
            unsupported_param(with("frequency_penalty", json!(0.5)).unwrap_err()),
            "frequency_penalty"
        );
        assert_eq!(
            unsupported_param(with("presence_penalty", json!(-1.0)).unwrap_err()),
            "presence_penalty"
        );
        assert_eq!(
            unsupported_param(with("logprobs", json!(true)).unwrap_err()),
            "logprobs"
        );
        // No-op values are accepted.
        assert!(with("n", json!(1)).is_ok());
        assert!(with("frequency_penalty", json!(0)).is_ok());
        assert!(with("logprobs", json!(false)).is_ok());
    }

    #[test]
    fn unknown_fields_pass_through_are_ignored_or_are_refused() {
        let got = convert_json(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "top_k": 5, "service_tier": "auto", "store": true, "logprobs": false,
            "stream_options": {"include_usage": true}, "metadata": {"team": "a"},
            "user": "user-123", "temperature": 0.2, "top_p": 0.9, "stop": ["END", "STOP"],
            "logit_bias": null}),
        );
        assert_eq!(got["top_k"], 5);
        assert_eq!(got["service_tier"], "auto");
        assert_eq!(got["metadata"], json!({"user_id": "user-123"}));
        assert_eq!(got["stop_sequences"], json!(["END", "STOP"]));
        assert_eq!(got["temperature"], 0.2);
        assert_eq!(got["top_p"], 0.9);
        for absent in ["store", "logprobs", "stream_options", "logit_bias", "user"] {
            assert!(got.get(absent).is_none(), "{absent} must not be sent");
        }

        // Native `thinking` passes through (and fits into max_tokens).
        let req = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 1000, "thinking": {"type": "enabled", "budget_tokens": 2000}}),
        )
        .unwrap();
        assert_eq!(req.thinking, Some(wire::ThinkingConfig::enabled(2000)));
        assert_eq!(req.max_tokens, 3000);
        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low", "thinking": {"type": "enabled", "budget_tokens": 2000}}),
        )
        .unwrap_err();
        assert_eq!(invalid_param(err), "thinking");

        let err = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "logit_bias": {"50256": -100}}),
        )
        .unwrap_err();
        match err {
            ProviderError::UnsupportedField { param, provider } => {
                assert_eq!(param, "logit_bias");
                assert_eq!(provider, "anthropic");
            }
            other => panic!("UnsupportedField expected, got {other:?}"),
        }
        assert_eq!(
            invalid_param(
                convert(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": "many"}))
                    .unwrap_err()
            ),
            "top_k"
        );
        assert_eq!(
            invalid_param(
                convert(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]}))
                    .unwrap_err()
            ),
            "messages"
        );
    }

    // ---- response ----------------------------------------------------------------------------

    #[test]
    fn text_response_with_cache_usage() {
        let completion = from_response(response(RESPONSE_TEXT), &ctx()).unwrap();
        assert_eq!(completion.id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
        assert_eq!(completion.object, "chat.completion");
        assert_eq!(completion.created, CREATED);
        assert_eq!(completion.model, "claude-opus-4-6");
        let choice = &completion.choices[0];
        assert_eq!(choice.index, 0);
        assert_eq!(choice.message.role, "assistant");
        assert_eq!(
            choice.message.content.as_deref(),
            Some("Hi! My name is Claude.")
        );
        assert_eq!(choice.message.tool_calls, None);
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        let usage = completion.usage.unwrap();
        // input 2095 + cache read 2051 + cache write 2051.
        assert_eq!(usage.prompt_tokens, 6197);
        assert_eq!(usage.cached_tokens(), 2051);
        assert_eq!(usage.completion_tokens, 503);
        assert_eq!(usage.total_tokens, 6700);
        assert_eq!(usage.extra["cache_creation_input_tokens"], 2051);
    }

    #[test]
    fn tool_use_response() {
        let completion = from_response(response(RESPONSE_TOOL_USE), &ctx()).unwrap();
        assert_eq!(completion.id, "msg_01Aq9w938a90dw8q");
        let choice = &completion.choices[0];
        assert_eq!(
            choice.message.content.as_deref(),
            Some("I'll check the current weather in San Francisco for you.")
        );
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        // The docs' example has no usage: zeros.
        assert_eq!(completion.usage.unwrap().total_tokens, 0);
    }

    #[test]
    fn thinking_blocks_are_returned() {
        let completion = from_response(response(RESPONSE_REDACTED_THINKING), &ctx()).unwrap();
        let message = &completion.choices[0].message;
        assert_eq!(message.content.as_deref(), Some("Based on my analysis..."));
        assert_eq!(
            message.reasoning_content.as_deref(),
            Some("Let me analyze this step by step...")
        );
        let blocks = message.thinking_blocks.as_ref().unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].kind, "thinking");
        assert_eq!(
            blocks[0].signature.as_deref(),
            Some("WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL....")
        );
        assert_eq!(blocks[1].kind, "redacted_thinking");
        assert!(blocks[1]
            .data
            .as_deref()
            .unwrap()
            .starts_with("EmwKAhgBEgy3va3pzix"));

        let completion = from_response(response(RESPONSE_THINKING_TOOL_USE), &ctx()).unwrap();
        let message = &completion.choices[0].message;
        assert_eq!(
            message.tool_calls.as_ref().unwrap()[0].id,
            "toolu_01CswdEQBMshySk6Y9DFKrfq"
        );
        assert!(message
            .reasoning_content
            .as_deref()
            .unwrap()
            .starts_with("The user wants to know the current weather in Paris."));
        // Model missing from the docs' partial example: the upstream model stands in.
        assert_eq!(completion.model, "claude-sonnet-4-5");
    }

    #[test]
    fn every_stop_reason_maps_to_a_finish_reason() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("pause_turn", "stop"),
            ("refusal", "content_filter"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "stop"), // no tool call in the text fixture
            ("some_future_reason", "stop"),
        ] {
            let mut resp = response(RESPONSE_TEXT);
            resp.stop_reason = Some(stop.to_owned());
            let completion = from_response(resp, &ctx()).unwrap();
            assert_eq!(
                completion.choices[0].finish_reason.as_deref(),
                Some(finish),
                "{stop}"
            );
        }
        let mut resp = response(RESPONSE_TOOL_USE);
        resp.stop_reason = Some("max_tokens".to_owned());
        assert_eq!(
            from_response(resp, &ctx()).unwrap().choices[0]
                .finish_reason
                .as_deref(),
            Some("length")
        );
    }

    // ---- streaming ---------------------------------------------------------------------------

    /// The (event, data) pairs of an SSE body.
    fn sse_events(body: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for raw in body.split("\n\n") {
            let mut event = String::new();
            let mut data = Vec::new();
            for line in raw.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !data.is_empty() {
                out.push((event, data.join("\n")));
            }
        }
        out
    }

    #[derive(Debug, Default)]
    struct Collected {
        chunks: Vec<ChatCompletionChunk>,
        content: String,
        reasoning: String,
        /// (index, id, name, arguments)
        tool_calls: Vec<(u32, String, String, String)>,
        thinking_blocks: Vec<oai::ThinkingBlock>,
        finish_reasons: Vec<String>,
        usage: Option<Usage>,
        done: bool,
    }

    fn collect(events: &[(String, String)]) -> Collected {
        let mut state = StreamState::new(&ctx());
        let mut out = Collected::default();
        for (event, data) in events {
            assert!(!state.is_done());
            out.chunks.extend(state.on_event(event, data).unwrap());
        }
        out.done = state.is_done();
        for chunk in &out.chunks {
            if chunk.usage.is_some() {
                out.usage = chunk.usage.clone();
            }
            for choice in &chunk.choices {
                let d = &choice.delta;
                out.content.push_str(d.content.as_deref().unwrap_or(""));
                out.reasoning
                    .push_str(d.reasoning_content.as_deref().unwrap_or(""));
                out.thinking_blocks
                    .extend(d.thinking_blocks.clone().unwrap_or_default());
                for call in d.tool_calls.iter().flatten() {
                    let function = call.function.clone().unwrap_or_default();
                    match out.tool_calls.iter_mut().find(|c| c.0 == call.index) {
                        Some(existing) => existing
                            .3
                            .push_str(function.arguments.as_deref().unwrap_or("")),
                        None => out.tool_calls.push((
                            call.index,
                            call.id.clone().unwrap(),
                            function.name.unwrap(),
                            function.arguments.unwrap_or_default(),
                        )),
                    }
                }
                if let Some(f) = &choice.finish_reason {
                    out.finish_reasons.push(f.clone());
                }
            }
        }
        out
    }

    fn assert_envelope(collected: &Collected, id: &str, model: &str) {
        for chunk in &collected.chunks {
            assert_eq!(chunk.id, id);
            assert_eq!(chunk.model, model);
            assert_eq!(chunk.created, CREATED);
            assert_eq!(chunk.object, "chat.completion.chunk");
        }
        let first = &collected.chunks[0].choices[0].delta;
        assert_eq!(first.role.as_deref(), Some("assistant"));
        let last = collected.chunks.last().unwrap();
        assert!(last.choices.is_empty(), "the usage chunk has no choices");
        assert!(last.usage.is_some());
        assert!(collected.done);
    }

    #[test]
    fn stream_text() {
        let c = collect(&sse_events(STREAM_TEXT));
        assert_envelope(
            &c,
            "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "claude-sonnet-4-5-20250929",
        );
        assert_eq!(c.content, "Hello!");
        assert_eq!(c.finish_reasons, vec!["stop"]);
        let usage = c.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (25, 15, 40)
        );
        // role chunk, 2 text deltas, finish chunk, usage chunk (ping and block start/stop
        // produce nothing).
        assert_eq!(c.chunks.len(), 5);
    }

    #[test]
    fn stream_tool_use_with_input_json_delta() {
        let c = collect(&sse_events(STREAM_TOOL_USE));
        assert_envelope(
            &c,
            "msg_014p7gG3wDgGV9EUtLvnow3U",
            "claude-sonnet-4-5-20250929",
        );
        assert_eq!(
            c.content,
            "Okay, let's check the weather for San Francisco, CA:"
        );
        assert_eq!(c.tool_calls.len(), 1);
        let (index, id, name, args) = &c.tool_calls[0];
        // Anthropic block index 1 is the first tool call: OpenAI index 0.
        assert_eq!(*index, 0);
        assert_eq!(id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        let usage = c.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (472, 89));

        // The tool call's first chunk carries id, type, name and empty arguments.
        let start = c
            .chunks
            .iter()
            .find_map(|ch| ch.choices.first()?.delta.tool_calls.clone())
            .unwrap();
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}])
        );
    }

    #[test]
    fn stream_tool_use_from_the_sdk_fixture() {
        let c = collect(&sse_events(STREAM_TOOL_USE_SDK));
        assert_envelope(
            &c,
            "msg_019Q1hrJbZG26Fb9BQhrkHEr",
            "claude-sonnet-4-20250514",
        );
        assert_eq!(
            c.content,
            "I'll check the current weather in Paris for you."
        );
        assert_eq!(c.tool_calls[0].0, 0);
        assert_eq!(c.tool_calls[0].3, r#"{"location": "Paris"}"#);
        let usage = c.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (377, 65));
        assert_eq!(usage.cached_tokens(), 0);
    }

    #[test]
    fn stream_parallel_tool_calls_get_consecutive_indexes() {
        // Hand-written in the docs' event shapes: text at 0, two tool_use blocks at 1 and 2.
        let events: Vec<(String, String)> = [
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_p","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":500,"cache_read_input_tokens":100,"cache_creation_input_tokens":50,"output_tokens":1}}}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking both."}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"SF\"}"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"timezone\": \"America/New_York\"}"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":120}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]
        .iter()
        .map(|(e, d)| ((*e).to_owned(), (*d).to_owned()))
        .collect();
        let c = collect(&events);
        assert_eq!(
            c.tool_calls,
            vec![
                (
                    0,
                    "toolu_a".into(),
                    "get_weather".into(),
                    r#"{"location": "SF"}"#.into()
                ),
                (
                    1,
                    "toolu_b".into(),
                    "get_time".into(),
                    r#"{"timezone": "America/New_York"}"#.into()
                ),
            ]
        );
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        let usage = c.usage.unwrap();
        assert_eq!(usage.prompt_tokens, 650);
        assert_eq!(usage.cached_tokens(), 100);
        assert_eq!(usage.completion_tokens, 120);
    }

    #[test]
    fn stream_thinking_with_signature() {
        let c = collect(&sse_events(STREAM_THINKING));
        assert_envelope(&c, "msg_01...", "claude-sonnet-4-5-20250929");
        let thinking = "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3\n3. 27 * 400 = 10,800\n4. 27 * 50 = 1,350\n5. 27 * 3 = 81\n6. 10,800 + 1,350 + 81 = 12,231";
        assert_eq!(c.reasoning, thinking);
        assert_eq!(
            c.thinking_blocks,
            vec![oai::ThinkingBlock {
                kind: "thinking".into(),
                thinking: Some(thinking.into()),
                signature: Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...".into()),
                data: None,
            }]
        );
        assert_eq!(c.content, "27 * 453 = 12,231");
        assert_eq!(c.finish_reasons, vec!["stop"]);
        // This docs example carries no usage at all.
        assert_eq!(c.usage.unwrap().total_tokens, 0);
    }

    #[test]
    fn stream_redacted_thinking_and_separators() {
        let events: Vec<(String, String)> = [
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_r","type":"message","role":"assistant","model":"m","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"First."}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig1"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgB"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":2,"content_block":{"type":"thinking","thinking":""}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"thinking_delta","thinking":"Second."}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"signature_delta","signature":"sig2"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]
        .iter()
        .map(|(e, d)| ((*e).to_owned(), (*d).to_owned()))
        .collect();
        let c = collect(&events);
        assert_eq!(c.reasoning, "First.\n\nSecond.");
        let kinds: Vec<_> = c.thinking_blocks.iter().map(|b| b.kind.as_str()).collect();
        assert_eq!(kinds, ["thinking", "redacted_thinking", "thinking"]);
        assert_eq!(c.thinking_blocks[1].data.as_deref(), Some("EmwKAhgB"));
        assert_eq!(c.thinking_blocks[2].signature.as_deref(), Some("sig2"));
    }

    #[test]
    fn stream_refusal() {
        let c = collect(&sse_events(STREAM_REFUSAL));
        assert_envelope(&c, "msg_01RefusalTestMessage123456789", "claude-opus-4-7");
        assert_eq!(c.content, "");
        assert_eq!(c.finish_reasons, vec!["content_filter"]);
        let usage = c.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 120));
        assert_eq!(usage.reasoning_tokens(), 67);
    }

    #[test]
    fn stream_error_event() {
        let events = sse_events(STREAM_ERROR);
        let mut state = StreamState::new(&ctx());
        let (event, data) = &events[0];
        match state.on_event(event, data) {
            Err(ProviderError::Stream(message)) => assert_eq!(message, "Overloaded"),
            other => panic!("stream error expected, got {other:?}"),
        }
        assert!(!state.is_done());
    }

    #[test]
    fn stream_events_without_names_and_unknown_events() {
        let events = sse_events(STREAM_TEXT);
        // Without `event:` lines, the data's `type` decides.
        let unnamed: Vec<_> = events
            .iter()
            .map(|(_, d)| (String::new(), d.clone()))
            .collect();
        let c = collect(&unnamed);
        assert_eq!(c.content, "Hello!");
        assert!(c.done);

        let mut state = StreamState::new(&ctx());
        assert!(state
            .on_event("future_event", r#"{"type":"future_event","x":1}"#)
            .unwrap()
            .is_empty());
        assert!(state
            .on_event("ping", r#"{"type": "ping"}"#)
            .unwrap()
            .is_empty());
        assert!(matches!(
            state.on_event("message_start", "{not json"),
            Err(ProviderError::Decode(_))
        ));
    }

    // ---- errors ------------------------------------------------------------------------------

    #[test]
    fn parse_error_bodies() {
        assert_eq!(
            parse_error(404, ERROR_NOT_FOUND.as_bytes()),
            UpstreamErrorBody {
                code: Some("not_found_error".into()),
                message: "The requested resource could not be found.".into(),
            }
        );
        assert_eq!(
            parse_error(529, ERROR_OVERLOADED.as_bytes()),
            UpstreamErrorBody {
                code: Some("overloaded_error".into()),
                message: "Overloaded".into(),
            }
        );
        let html = format!("<html><body>{}</body></html>", "x".repeat(1000));
        let parsed = parse_error(502, html.as_bytes());
        assert_eq!(parsed.code, None);
        assert_eq!(parsed.message.chars().count(), 500);
        assert!(parsed.message.starts_with("<html><body>xxx"));
        assert_eq!(parse_error(503, b"  ").message, "HTTP 503");
        assert_eq!(
            parse_error(500, "é".repeat(600).as_bytes())
                .message
                .chars()
                .count(),
            500
        );
    }
}
