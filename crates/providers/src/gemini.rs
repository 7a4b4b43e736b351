//! Gemini generateContent adapter (Google AI `generativelanguage` v1beta).
//!
//! Pure conversions between the canonical OpenAI types and the Gemini wire types of
//! [`plexus_protocol::gemini`]; see the crate documentation for the contract.
//!
//! Choices worth knowing:
//! - **Tool schemas** go out as `functionDeclarations[].parametersJsonSchema` (JSON Schema,
//!   a free `google.protobuf.Value`) rather than `parameters` (an OpenAPI subset whose proto
//!   parser rejects unknown keywords such as `additionalProperties` or `const`). Only the
//!   top-level meta keys `$schema` and `strict` are dropped. `response_format: json_schema`
//!   likewise maps to `generationConfig.responseJsonSchema`.
//! - **Function-call ids** are never sent upstream: the generateContent request rejects
//!   `functionCall.id` / `functionResponse.id` (`Unknown name "id"`), so tool results are
//!   matched by function name, found from the assistant turn that issued the call.
//! - **Thought signatures** of `functionCall` parts (which Gemini 3 requires back on the next
//!   turn) travel inside the OpenAI tool-call id, as `<id>__thought__<signature>`: clients echo
//!   tool-call ids verbatim, so the signature survives any OpenAI client.
//! - `reasoning_effort` maps to `thinkingConfig {thinkingBudget, includeThoughts: true}`;
//!   thought parts come back as `reasoning_content`.

use std::collections::{BTreeMap, HashMap};

use plexus_protocol::gemini::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Blob, Candidate, Content,
    EmbedContentRequest, FileData, FunctionCall as GeminiFunctionCall, FunctionCallingConfig,
    FunctionCallingMode, FunctionDeclaration, FunctionResponse, GenerateContentRequest,
    GenerateContentResponse, GenerationConfig, Part, SafetySetting, ThinkingConfig,
    Tool as GeminiTool, ToolConfig, UsageMetadata,
};
use plexus_protocol::openai::{
    parse_data_url, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
    ChunkChoice, ContentPart, Delta, Embedding, EmbeddingRequest, EmbeddingResponse,
    EmbeddingUsage, EmbeddingVector, Extra, FunctionCall, FunctionCallDelta, Message,
    MessageContent, ResponseMessage, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde_json::{Map, Value};

use crate::{reasoning_budget, ConvertCtx, ProviderError, UpstreamErrorBody};

const PROVIDER: &str = "gemini";

/// Separates a tool-call id from the Gemini thought signature carried along with it.
pub const THOUGHT_SIGNATURE_SEPARATOR: &str = "__thought__";

/// Longest error text kept from a non-JSON error body.
const MAX_ERROR_TEXT: usize = 500;

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        param: param.into(),
        message: message.into(),
    }
}

fn unsupported(param: &str) -> ProviderError {
    ProviderError::UnsupportedField {
        param: param.to_owned(),
        provider: PROVIDER,
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Converts a chat completion request into a generateContent request body.
pub fn to_request(
    req: &ChatCompletionRequest,
    ctx: &ConvertCtx,
) -> Result<GenerateContentRequest, ProviderError> {
    let mut out = GenerateContentRequest::default();
    let mut config = GenerationConfig::default();

    apply_extra(&req.extra, &mut out, &mut config)?;

    let (system, contents) = convert_messages(&req.messages)?;
    out.system_instruction = system;
    out.contents = contents;

    if let Some(tools) = &req.tools {
        // Gemini has no switch for one call at a time; refusing beats silently ignoring it,
        // unless the client's format is one whose clients retry a refusal (then: dropped).
        if req.parallel_tool_calls == Some(false) && tools.len() > 1 && !ctx.lenient {
            return Err(unsupported("parallel_tool_calls"));
        }
        let declarations = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                if tool.kind != "function" {
                    return Err(invalid(
                        format!("tools[{i}].type"),
                        format!(
                            "tool type `{}` is not supported by the {PROVIDER} provider",
                            tool.kind
                        ),
                    ));
                }
                Ok(FunctionDeclaration {
                    name: tool.function.name.clone(),
                    description: tool.function.description.clone(),
                    parameters: None,
                    parameters_json_schema: tool.function.parameters.as_ref().map(clean_schema),
                    extra: Extra::new(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !declarations.is_empty() {
            out.tools = Some(vec![GeminiTool {
                function_declarations: Some(declarations),
                extra: Extra::new(),
            }]);
        }
    }

    if let Some(choice) = &req.tool_choice {
        out.tool_config = Some(tool_config(choice)?);
    }

    config.temperature = req.temperature;
    config.top_p = req.top_p;
    config.max_output_tokens = req.max_output_tokens();
    config.candidate_count = req.n;
    config.presence_penalty = req.presence_penalty;
    config.frequency_penalty = req.frequency_penalty;
    if let Some(stop) = &req.stop {
        let stop = stop.to_vec();
        if !stop.is_empty() {
            config.stop_sequences = Some(stop);
        }
    }
    if let Some(seed) = req.seed {
        let seed = i32::try_from(seed).map_err(|_| {
            invalid(
                "seed",
                format!("`seed` must fit in a 32-bit signed integer for the {PROVIDER} provider"),
            )
        })?;
        config.seed = Some(seed);
    }
    if let Some(format) = &req.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => config.response_mime_type = Some("application/json".to_owned()),
            "json_schema" => {
                config.response_mime_type = Some("application/json".to_owned());
                config.response_json_schema = format
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.schema.as_ref())
                    .map(clean_schema);
            }
            other => {
                return Err(invalid(
                    "response_format.type",
                    format!(
                        "response_format type `{other}` is not supported by the {PROVIDER} provider"
                    ),
                ))
            }
        }
    }
    if let Some(effort) = &req.reasoning_effort {
        config.thinking_config = Some(thinking_config(effort)?);
    }

    if config != GenerationConfig::default() {
        out.generation_config = Some(config);
    }
    Ok(out)
}

/// Top-level fields the typed request does not model: Gemini-native ones are mapped,
/// gateway-side information is ignored, anything else is refused.
fn apply_extra(
    extra: &Extra,
    out: &mut GenerateContentRequest,
    config: &mut GenerationConfig,
) -> Result<(), ProviderError> {
    for (key, value) in extra {
        match key.as_str() {
            "safetySettings" | "safety_settings" => {
                let settings: Vec<SafetySetting> =
                    serde_json::from_value(value.clone()).map_err(|e| {
                        invalid(
                            key.as_str(),
                            format!("`{key}` must be a list of Gemini safety settings: {e}"),
                        )
                    })?;
                out.safety_settings = Some(settings);
            }
            "cachedContent" | "cached_content" => {
                let name = value.as_str().ok_or_else(|| {
                    invalid(
                        key.as_str(),
                        format!("`{key}` must be a `cachedContents/...` name"),
                    )
                })?;
                out.cached_content = Some(name.to_owned());
            }
            "top_k" | "topK" => {
                let top_k = value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        invalid(
                            key.as_str(),
                            format!("`{key}` must be a non-negative integer"),
                        )
                    })?;
                config.top_k = Some(top_k);
            }
            "labels" => {
                out.extra.insert(key.clone(), value.clone());
            }
            // Gateway-side information, meaningless upstream.
            "store" | "stream_options" | "parallel_tool_calls" | "user" | "metadata" => {}
            "logprobs" => match value {
                Value::Null | Value::Bool(false) => {}
                _ => return Err(unsupported("logprobs")),
            },
            other => return Err(unsupported(other)),
        }
    }
    Ok(())
}

fn tool_config(choice: &ToolChoice) -> Result<ToolConfig, ProviderError> {
    let (mode, allowed) = match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => (FunctionCallingMode::Auto, None),
            "required" => (FunctionCallingMode::Any, None),
            "none" => (FunctionCallingMode::None, None),
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("unknown tool_choice `{other}`; expected auto, required or none"),
                ))
            }
        },
        ToolChoice::Named(named) => {
            if named.kind != "function" {
                return Err(invalid(
                    "tool_choice.type",
                    format!(
                        "tool_choice type `{}` is not supported by the {PROVIDER} provider",
                        named.kind
                    ),
                ));
            }
            (
                FunctionCallingMode::Any,
                Some(vec![named.function.name.clone()]),
            )
        }
    };
    Ok(ToolConfig {
        function_calling_config: Some(FunctionCallingConfig {
            mode: Some(mode),
            allowed_function_names: allowed,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

fn thinking_config(effort: &str) -> Result<ThinkingConfig, ProviderError> {
    if effort == "none" {
        return Ok(ThinkingConfig {
            thinking_budget: Some(0),
            ..Default::default()
        });
    }
    let budget = reasoning_budget(effort).ok_or_else(|| {
        invalid(
            "reasoning_effort",
            format!(
                "unknown reasoning_effort `{effort}`; expected none, minimal, low, medium or high"
            ),
        )
    })?;
    Ok(ThinkingConfig {
        thinking_budget: Some(i32::try_from(budget).unwrap_or(i32::MAX)),
        include_thoughts: Some(true),
        extra: Extra::new(),
    })
}

/// Drops the top-level JSON Schema keys Gemini has no use for (`$schema`, OpenAI's `strict`).
/// Nested keys are left alone: below the top level a key may be a property name.
fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "$schema" && k.as_str() != "strict")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Splits `<id>__thought__<signature>` into the id and the Gemini thought signature.
fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(THOUGHT_SIGNATURE_SEPARATOR) {
        Some((base, sig)) if !sig.is_empty() => (base, Some(sig)),
        _ => (id, None),
    }
}

fn convert_messages(
    messages: &[Message],
) -> Result<(Option<Content>, Vec<Content>), ProviderError> {
    let mut system_parts: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut call_names: HashMap<&str, &str> = HashMap::new();

    for (i, msg) in messages.iter().enumerate() {
        match msg.role {
            Role::System | Role::Developer => {
                if let Some(content) = &msg.content {
                    system_parts.extend(text_only_parts(content, i)?);
                }
            }
            Role::User => {
                let parts = match &msg.content {
                    Some(content) => user_parts(content, i)?,
                    None => Vec::new(),
                };
                push_turn(&mut contents, "user", parts);
            }
            Role::Assistant => {
                let mut parts = match &msg.content {
                    Some(content) => text_only_parts(content, i)?,
                    None => Vec::new(),
                };
                for (j, call) in msg.tool_calls.iter().flatten().enumerate() {
                    // Some clients send "" for a call without arguments.
                    let raw = match call.function.arguments.trim() {
                        "" => "{}",
                        raw => raw,
                    };
                    let args: Value = serde_json::from_str(raw)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| {
                            invalid(
                                format!("messages[{i}].tool_calls"),
                                format!(
                                    "messages[{i}].tool_calls[{j}].function.arguments is not a JSON object"
                                ),
                            )
                        })?;
                    call_names.insert(call.id.as_str(), call.function.name.as_str());
                    let (_, signature) = split_call_id(&call.id);
                    parts.push(Part {
                        function_call: Some(GeminiFunctionCall {
                            id: None,
                            name: call.function.name.clone(),
                            args: Some(args),
                            extra: Extra::new(),
                        }),
                        thought_signature: signature.map(str::to_owned),
                        ..Default::default()
                    });
                }
                push_turn(&mut contents, "model", parts);
            }
            Role::Tool | Role::Function => {
                let name = msg
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| call_names.get(id).copied())
                    .or(msg.name.as_deref())
                    .ok_or_else(|| {
                        invalid(
                            format!("messages[{i}].tool_call_id"),
                            format!(
                                "messages[{i}] answers no tool call of an earlier assistant message"
                            ),
                        )
                    })?;
                let text = msg
                    .content
                    .as_ref()
                    .map(MessageContent::joined_text)
                    .unwrap_or_default();
                let content = match serde_json::from_str::<Value>(&text) {
                    Ok(value @ Value::Object(_)) => value,
                    _ => Value::String(text),
                };
                let mut response = Map::new();
                response.insert("content".to_owned(), content);
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: None,
                        name: name.to_owned(),
                        response: Value::Object(response),
                        extra: Extra::new(),
                    }),
                    ..Default::default()
                };
                push_turn(&mut contents, "user", vec![part]);
            }
        }
    }

    let system = (!system_parts.is_empty()).then(|| Content {
        role: None,
        parts: system_parts,
        extra: Extra::new(),
    });
    Ok((system, contents))
}

/// Appends parts to the conversation, merging into the previous turn when the role repeats.
fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content::new(role, parts)),
    }
}

/// Text of system, developer and assistant messages (only text parts are allowed there).
fn text_only_parts(content: &MessageContent, i: usize) -> Result<Vec<Part>, ProviderError> {
    match content {
        MessageContent::Text(text) => Ok(non_empty_text(text)),
        MessageContent::Parts(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(text)) => out.extend(non_empty_text(text)),
                    ("refusal", _) => {}
                    (kind, _) => {
                        return Err(invalid(
                            format!("messages[{i}].content[{j}].type"),
                            format!(
                                "content part type `{kind}` is not allowed in this message for the {PROVIDER} provider"
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn non_empty_text(text: &str) -> Vec<Part> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Part::text(text)]
    }
}

fn user_parts(content: &MessageContent, i: usize) -> Result<Vec<Part>, ProviderError> {
    match content {
        MessageContent::Text(text) => Ok(non_empty_text(text)),
        MessageContent::Parts(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                out.extend(user_part(part, i, j)?);
            }
            Ok(out)
        }
    }
}

fn user_part(part: &ContentPart, i: usize, j: usize) -> Result<Option<Part>, ProviderError> {
    let at = |field: &str| format!("messages[{i}].content[{j}].{field}");
    match part.kind.as_str() {
        "text" => {
            let text = part
                .text
                .as_deref()
                .ok_or_else(|| invalid(at("text"), "a text part needs `text`"))?;
            Ok(non_empty_text(text).pop())
        }
        "image_url" => {
            let url = part
                .image_url
                .as_ref()
                .map(|u| u.url.as_str())
                .ok_or_else(|| invalid(at("image_url"), "an image_url part needs `image_url`"))?;
            if url.starts_with("data:") {
                let (mime_type, data) = parse_data_url(url).ok_or_else(|| {
                    invalid(
                        at("image_url.url"),
                        "a data URL must be `data:<media type>;base64,<data>`",
                    )
                })?;
                Ok(Some(inline_part(mime_type, data)))
            } else if url.starts_with("https://") || url.starts_with("http://") {
                Ok(Some(Part {
                    file_data: Some(FileData {
                        mime_type: Some(mime_from_url(url).to_owned()),
                        file_uri: url.to_owned(),
                        extra: Extra::new(),
                    }),
                    ..Default::default()
                }))
            } else {
                Err(invalid(
                    at("image_url.url"),
                    "an image URL must be an http(s) URL or a base64 data URL",
                ))
            }
        }
        "input_audio" => {
            let audio = part.extra.get("input_audio");
            let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
            let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str);
            match (data, format) {
                (Some(data), Some(format)) => {
                    Ok(Some(inline_part(&format!("audio/{format}"), data)))
                }
                _ => Err(invalid(
                    at("input_audio"),
                    "an input_audio part needs `input_audio.data` and `input_audio.format`",
                )),
            }
        }
        "file" => {
            let file_data = part
                .extra
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        at("file"),
                        format!(
                            "only `file.file_data` (a base64 data URL) is supported by the {PROVIDER} provider"
                        ),
                    )
                })?;
            if file_data.starts_with("https://") || file_data.starts_with("http://") {
                // A document by URL (an Anthropic client's `document` with a `url` source).
                return Ok(Some(Part {
                    file_data: Some(FileData {
                        mime_type: Some(
                            match mime_from_url(file_data) {
                                // No image extension: a document.
                                "image/jpeg" if !file_data.to_ascii_lowercase().contains(".jp") => {
                                    "application/pdf"
                                }
                                m => m,
                            }
                            .to_owned(),
                        ),
                        file_uri: file_data.to_owned(),
                        extra: Extra::new(),
                    }),
                    ..Default::default()
                }));
            }
            let (mime_type, data) = parse_data_url(file_data).ok_or_else(|| {
                invalid(
                    at("file.file_data"),
                    "`file_data` must be an http(s) URL or `data:<media type>;base64,<data>`",
                )
            })?;
            Ok(Some(inline_part(mime_type, data)))
        }
        other => Err(invalid(
            at("type"),
            format!("content part type `{other}` is not supported by the {PROVIDER} provider"),
        )),
    }
}

fn inline_part(mime_type: &str, data: &str) -> Part {
    Part {
        inline_data: Some(Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
            extra: Extra::new(),
        }),
        ..Default::default()
    }
}

/// Media type of a URL from its file extension; `image/jpeg` when unknown.
fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = file
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Converts a generateContent response into a chat completion.
pub fn from_response(
    resp: GenerateContentResponse,
    ctx: &ConvertCtx,
) -> Result<ChatCompletion, ProviderError> {
    let id = resp
        .response_id
        .clone()
        .unwrap_or_else(|| fallback_id(ctx.created));
    let model = resp
        .model_version
        .clone()
        .unwrap_or_else(|| ctx.upstream_model.to_owned());

    let mut choices: Vec<Choice> = resp
        .candidates
        .iter()
        .enumerate()
        .map(|(pos, candidate)| candidate_choice(candidate, pos))
        .collect();

    if choices.is_empty() {
        if resp.prompt_feedback.is_none() {
            return Err(ProviderError::Decode(
                "gemini answered with neither candidates nor promptFeedback".to_owned(),
            ));
        }
        // The prompt was blocked: no candidates are generated.
        choices.push(Choice {
            index: 0,
            message: assistant_message(None, None, Vec::new()),
            finish_reason: Some("content_filter".to_owned()),
            logprobs: None,
        });
    }

    Ok(ChatCompletion {
        id,
        object: "chat.completion".to_owned(),
        created: ctx.created,
        model,
        choices,
        usage: resp.usage_metadata.as_ref().map(usage),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}

fn fallback_id(created: i64) -> String {
    format!("chatcmpl-gemini-{created}")
}

fn candidate_index(candidate: &Candidate, pos: usize) -> u32 {
    candidate
        .index
        .unwrap_or_else(|| u32::try_from(pos).unwrap_or(u32::MAX))
}

fn candidate_choice(candidate: &Candidate, pos: usize) -> Choice {
    let index = candidate_index(candidate, pos);
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for part in candidate.content.iter().flat_map(|c| c.parts.iter()) {
        if let Some(call) = &part.function_call {
            tool_calls.push(tool_call(part, call, index, tool_calls.len()));
        } else if let Some(t) = &part.text {
            let target = if part.is_thought() {
                &mut reasoning
            } else {
                &mut text
            };
            target.get_or_insert_with(String::new).push_str(t);
        }
    }
    let finish = finish_reason(candidate.finish_reason.as_deref(), !tool_calls.is_empty());
    Choice {
        index,
        message: assistant_message(text, reasoning, tool_calls),
        finish_reason: Some(finish.to_owned()),
        logprobs: None,
    }
}

fn assistant_message(
    content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Vec<ToolCall>,
) -> ResponseMessage {
    ResponseMessage {
        role: "assistant".to_owned(),
        content,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning_content: reasoning,
        ..Default::default()
    }
}

/// The OpenAI id of a function call: Gemini's own id, else `call_<candidate>_<n>`, with the
/// part's thought signature appended after [`THOUGHT_SIGNATURE_SEPARATOR`].
fn tool_call_id(part: &Part, call: &GeminiFunctionCall, candidate: u32, n: usize) -> String {
    let base = call
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("call_{candidate}_{n}"));
    match &part.thought_signature {
        Some(sig) if !sig.is_empty() => format!("{base}{THOUGHT_SIGNATURE_SEPARATOR}{sig}"),
        _ => base,
    }
}

fn arguments_json(call: &GeminiFunctionCall) -> String {
    match &call.args {
        Some(args) => args.to_string(),
        None => "{}".to_owned(),
    }
}

fn tool_call(part: &Part, call: &GeminiFunctionCall, candidate: u32, n: usize) -> ToolCall {
    ToolCall {
        id: tool_call_id(part, call, candidate, n),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: call.name.clone(),
            arguments: arguments_json(call),
        },
    }
}

/// Maps a Gemini `finishReason` onto an OpenAI `finish_reason`.
fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match reason {
        None | Some("STOP") if has_tool_calls => "tool_calls",
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        _ => "stop",
    }
}

fn usage(meta: &UsageMetadata) -> Usage {
    let thoughts = meta.thoughts_token_count.unwrap_or(0);
    let completion = meta.candidates_token_count.unwrap_or(0) + thoughts;
    Usage::new(meta.prompt_token_count.unwrap_or(0), completion)
        .with_cached(meta.cached_content_token_count.unwrap_or(0))
        .with_reasoning(thoughts)
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct CandidateState {
    tool_calls: u32,
    finished: bool,
}

/// Turns `streamGenerateContent?alt=sse` events (each a full `GenerateContentResponse`
/// holding the next slice of output) into chat completion chunks.
#[derive(Debug)]
pub struct StreamState {
    created: i64,
    upstream_model: String,
    /// Chosen at the first event, then kept for every chunk.
    id: Option<String>,
    model: Option<String>,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<UsageMetadata>,
    done: bool,
    finished: bool,
}

impl StreamState {
    pub fn new(ctx: &ConvertCtx) -> Self {
        StreamState {
            created: ctx.created,
            upstream_model: ctx.upstream_model.to_owned(),
            id: None,
            model: None,
            candidates: BTreeMap::new(),
            usage: None,
            done: false,
            finished: false,
        }
    }

    /// Whether a `finishReason` (or a prompt block) ended every candidate seen so far.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one SSE event. Gemini sends unnamed events, so `event` is not inspected.
    pub fn on_event(
        &mut self,
        _event: &str,
        data: &str,
    ) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_str(data).map_err(ProviderError::decode)?;
        if let Some(message) = error_message(&value) {
            return Err(ProviderError::Stream(message));
        }
        // Without `alt=sse` the endpoint streams one JSON array; accept its elements too.
        let responses = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut chunks = Vec::new();
        for item in responses {
            let resp: GenerateContentResponse =
                serde_json::from_value(item).map_err(ProviderError::decode)?;
            chunks.extend(self.on_response(resp));
        }
        Ok(chunks)
    }

    /// Called once at the end of the stream: the usage chunk (`choices: []`) with the last
    /// `usageMetadata` seen, if any.
    pub fn finish(&mut self) -> Vec<ChatCompletionChunk> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let Some(meta) = &self.usage else {
            return Vec::new();
        };
        let mut chunk = self.chunk(Vec::new());
        chunk.usage = Some(usage(meta));
        vec![chunk]
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        let id = self.id.clone().unwrap_or_else(|| fallback_id(self.created));
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| self.upstream_model.clone());
        let mut chunk = ChatCompletionChunk::new(&id, self.created, &model);
        chunk.choices = choices;
        chunk
    }

    fn delta_chunk(&self, index: u32, delta: Delta, finish: Option<&str>) -> ChatCompletionChunk {
        self.chunk(vec![ChunkChoice {
            index,
            delta,
            finish_reason: finish.map(str::to_owned),
            logprobs: None,
        }])
    }

    /// Starts a candidate on first sight: the chunk with `role: "assistant"`.
    fn start(&mut self, index: u32, chunks: &mut Vec<ChatCompletionChunk>) {
        if self.candidates.contains_key(&index) {
            return;
        }
        self.candidates.insert(index, CandidateState::default());
        let delta = Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
            ..Default::default()
        };
        chunks.push(self.delta_chunk(index, delta, None));
    }

    fn on_response(&mut self, resp: GenerateContentResponse) -> Vec<ChatCompletionChunk> {
        if self.id.is_none() {
            self.id = Some(
                resp.response_id
                    .clone()
                    .unwrap_or_else(|| fallback_id(self.created)),
            );
            self.model = Some(
                resp.model_version
                    .clone()
                    .unwrap_or_else(|| self.upstream_model.clone()),
            );
        }
        if let Some(meta) = resp.usage_metadata {
            self.usage = Some(meta);
        }

        let mut chunks = Vec::new();
        if resp.candidates.is_empty() {
            let blocked = resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some() || f.block_reason_message.is_some());
            if blocked {
                self.start(0, &mut chunks);
                let open: Vec<u32> = self
                    .candidates
                    .iter()
                    .filter(|(_, st)| !st.finished)
                    .map(|(index, _)| *index)
                    .collect();
                for index in open {
                    chunks.push(self.delta_chunk(index, Delta::default(), Some("content_filter")));
                    if let Some(st) = self.candidates.get_mut(&index) {
                        st.finished = true;
                    }
                }
                self.done = true;
            }
            return chunks;
        }

        for (pos, candidate) in resp.candidates.iter().enumerate() {
            let index = candidate_index(candidate, pos);
            self.start(index, &mut chunks);
            for part in candidate.content.iter().flat_map(|c| c.parts.iter()) {
                if let Some(call) = &part.function_call {
                    let n = self.candidates.get(&index).map_or(0, |st| st.tool_calls);
                    let delta = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: n,
                            id: Some(tool_call_id(part, call, index, n as usize)),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionCallDelta {
                                name: Some(call.name.clone()),
                                arguments: Some(arguments_json(call)),
                            }),
                        }]),
                        ..Default::default()
                    };
                    chunks.push(self.delta_chunk(index, delta, None));
                    if let Some(st) = self.candidates.get_mut(&index) {
                        st.tool_calls += 1;
                    }
                } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    let delta = if part.is_thought() {
                        Delta {
                            reasoning_content: Some(text.to_owned()),
                            ..Default::default()
                        }
                    } else {
                        Delta {
                            content: Some(text.to_owned()),
                            ..Default::default()
                        }
                    };
                    chunks.push(self.delta_chunk(index, delta, None));
                }
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                let has_calls = self
                    .candidates
                    .get(&index)
                    .is_some_and(|st| st.tool_calls > 0);
                let finish = finish_reason(Some(reason), has_calls);
                chunks.push(self.delta_chunk(index, Delta::default(), Some(finish)));
                if let Some(st) = self.candidates.get_mut(&index) {
                    st.finished = true;
                }
            }
        }
        self.done = !self.candidates.is_empty() && self.candidates.values().all(|st| st.finished);
        chunks
    }
}

/// The message of an `{"error": {...}}` payload (or `[{"error": {...}}]`), with its status.
fn error_message(value: &Value) -> Option<String> {
    let error = match value {
        Value::Array(items) => items.first()?.get("error")?,
        other => other.get("error")?,
    };
    if let Some(text) = error.as_str() {
        return Some(text.to_owned());
    }
    let message = error.get("message").and_then(Value::as_str);
    let status = error.get("status").and_then(Value::as_str);
    Some(match (status, message) {
        (Some(status), Some(message)) => format!("{status}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(status), None) => status.to_owned(),
        (None, None) => error.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// Converts an embeddings request into a `batchEmbedContents` body: one request per input.
pub fn to_embed_request(
    req: &EmbeddingRequest,
    upstream_model: &str,
) -> Result<BatchEmbedContentsRequest, ProviderError> {
    let texts = req.input.texts().ok_or_else(|| {
        invalid(
            "input",
            format!("token-array `input` is not supported by the {PROVIDER} provider; send text"),
        )
    })?;
    if texts.is_empty() {
        return Err(invalid("input", "`input` must not be empty"));
    }
    let mut task_type = None;
    for (key, value) in &req.extra {
        match key.as_str() {
            "task_type" | "taskType" => {
                let task = value.as_str().ok_or_else(|| {
                    invalid(key.as_str(), format!("`{key}` must be a Gemini task type"))
                })?;
                task_type = Some(task.to_owned());
            }
            other => return Err(unsupported(other)),
        }
    }
    let model = if upstream_model.starts_with("models/") {
        upstream_model.to_owned()
    } else {
        format!("models/{upstream_model}")
    };
    let requests = texts
        .into_iter()
        .map(|text| EmbedContentRequest {
            model: model.clone(),
            content: Content {
                role: None,
                parts: vec![Part::text(text)],
                extra: Extra::new(),
            },
            task_type: task_type.clone(),
            title: None,
            output_dimensionality: req.dimensions,
            extra: Extra::new(),
        })
        .collect();
    Ok(BatchEmbedContentsRequest {
        requests,
        extra: Extra::new(),
    })
}

/// Converts a `batchEmbedContents` response into an embeddings response (float vectors;
/// `base64` encoding, when asked for, is the caller's business). Gemini reports no usage for
/// this method, so usage is 0 unless a `usageMetadata.promptTokenCount` is present.
pub fn from_embed_response(resp: BatchEmbedContentsResponse, model: &str) -> EmbeddingResponse {
    let prompt_tokens = resp
        .extra
        .get("usageMetadata")
        .and_then(|u| u.get("promptTokenCount"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let data = resp
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(i, embedding)| Embedding {
            object: "embedding".to_owned(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            embedding: EmbeddingVector::Float(embedding.values),
        })
        .collect();
    EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }),
        extra: Extra::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Reads a Gemini error body: `{"error": {"code", "message", "status"}}`, possibly wrapped in
/// a JSON array by the streaming endpoint. `code` is the `google.rpc` status name
/// (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...). Other bodies give their text, cut to 500
/// characters.
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamErrorBody {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(error) = error_object(&value) {
            if let Some(text) = error.as_str() {
                return UpstreamErrorBody {
                    code: None,
                    message: text.to_owned(),
                };
            }
            let code = error
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let message = error.get("message").and_then(Value::as_str);
            if code.is_some() || message.is_some() {
                return UpstreamErrorBody {
                    code,
                    message: message.map_or_else(|| format!("HTTP {status}"), str::to_owned),
                };
            }
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

/// The `error` object of a Gemini error body, unwrapped from the JSON array the streaming
/// endpoint sends.
fn error_object(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => items.first().and_then(|v| v.get("error")),
        other => other.get("error"),
    }
}

/// The status to act on for a Gemini error answer. Google refuses a wrong API key with 400
/// `INVALID_ARGUMENT` (an `ErrorInfo` detail with reason `API_KEY_INVALID`, message "API key
/// not valid. Please pass a valid API key."), where the other providers answer 401. That is
/// the gateway's own credential failing, not the client's request, so it is reported as 401:
/// every mapping downstream then treats it as an auth failure (502 `upstream_auth_error`, the
/// target left out of retries). Any other answer keeps its status.
pub fn upstream_status(status: u16, body: &[u8]) -> u16 {
    if status == 400 && is_api_key_invalid(body) {
        401
    } else {
        status
    }
}

/// Whether a Gemini error body says the API key was refused.
fn is_api_key_invalid(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(error) = error_object(&value) else {
        return false;
    };
    let reason_says_so = error
        .get("details")
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details
                .iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let message_says_so = error.get("status").and_then(Value::as_str) == Some("INVALID_ARGUMENT")
        && error
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.starts_with("api key not valid") || m.starts_with("api key not found")
            });
    reason_says_so || message_says_so
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Fixtures copied verbatim from Google's references; see
    /// `tests/fixtures/gemini/SOURCES.md` for where each one comes from.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/fixtures/gemini/", $name))
        };
    }

    const CREATED: i64 = 1_700_000_000;

    fn ctx() -> ConvertCtx<'static> {
        ConvertCtx {
            upstream_model: "gemini-2.5-flash",
            created: CREATED,
            default_max_tokens: 8192,
            lenient: false,
        }
    }

    fn chat(body: Value) -> ChatCompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    fn convert(body: Value) -> Value {
        serde_json::to_value(to_request(&chat(body), &ctx()).unwrap()).unwrap()
    }

    fn convert_err(body: Value) -> (String, String) {
        match to_request(&chat(body), &ctx()) {
            Err(ProviderError::InvalidRequest { param, message }) => (param, message),
            Err(ProviderError::UnsupportedField { param, provider }) => {
                let message = format!("`{param}` is not supported by the {provider} provider");
                (param, message)
            }
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    fn response(raw: &str) -> GenerateContentResponse {
        serde_json::from_str(raw).unwrap()
    }

    fn complete(raw: &str) -> ChatCompletion {
        from_response(response(raw), &ctx()).unwrap()
    }

    /// The `data:` payloads of an SSE capture (lines without the prefix are taken whole).
    fn sse_events(raw: &str) -> Vec<&str> {
        raw.lines()
            .map(|line| line.trim_end_matches('\r'))
            .filter(|line| !line.is_empty())
            .map(|line| line.strip_prefix("data: ").unwrap_or(line))
            .collect()
    }

    fn stream(raw: &str) -> (Vec<ChatCompletionChunk>, StreamState) {
        let mut state = StreamState::new(&ctx());
        let mut chunks = Vec::new();
        for data in sse_events(raw) {
            chunks.extend(state.on_event("", data).unwrap());
        }
        (chunks, state)
    }

    fn deltas(chunks: &[ChatCompletionChunk]) -> Vec<&Delta> {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .map(|c| &c.delta)
            .collect()
    }

    fn finish_reasons(chunks: &[ChatCompletionChunk]) -> Vec<&str> {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason.as_deref())
            .collect()
    }

    fn joined(chunks: &[ChatCompletionChunk], pick: fn(&Delta) -> Option<&String>) -> String {
        deltas(chunks)
            .into_iter()
            .filter_map(pick)
            .cloned()
            .collect()
    }

    // --- requests ---------------------------------------------------------------------------

    #[test]
    fn sampling_parameters_and_safety_settings_match_google_sample() {
        let body = json!({
            "model": "gemini",
            "messages": [user("Write a story about a magic backpack.")],
            "stop": ["Title"],
            "temperature": 1.0,
            "max_tokens": 800,
            "top_p": 0.8,
            "top_k": 10,
            "safetySettings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_ONLY_HIGH"}
            ]
        });
        let mut expected: Value =
            serde_json::from_str(fixture!("request-configure-model-parameters.json")).unwrap();
        // The sample omits the optional role of its single turn; Plexus always sets it.
        expected["contents"][0]["role"] = json!("user");
        assert_eq!(convert(body), expected);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let out = convert(json!({"model": "m", "messages": [user("hi")],
            "max_tokens": 10, "max_completion_tokens": 20}));
        assert_eq!(out["generationConfig"], json!({"maxOutputTokens": 20}));
    }

    #[test]
    fn plain_text_request_has_no_generation_config() {
        let out = convert(json!({"model": "m", "messages": [user("Hello there")]}));
        assert_eq!(
            out,
            json!({"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]})
        );
    }

    #[test]
    fn system_and_developer_become_system_instruction_and_roles_map() {
        let out = convert(json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a cat."},
            {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
            user("Hello there"),
            user("Are you there?"),
            {"role": "assistant", "content": "Meow.", "reasoning_content": "dropped"},
            user("Good cat.")
        ]}));
        assert_eq!(
            out,
            json!({
                "systemInstruction": {"parts": [
                    {"text": "You are a cat."}, {"text": "Your name is Neko."}
                ]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hello there"}, {"text": "Are you there?"}]},
                    {"role": "model", "parts": [{"text": "Meow."}]},
                    {"role": "user", "parts": [{"text": "Good cat."}]}
                ]
            })
        );
    }

    #[test]
    fn images_inline_and_by_url() {
        let out = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.WEBP?size=2#x"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photo"}}
            ]}]}),
        );
        assert_eq!(
            out["contents"][0]["parts"],
            json!([
                {"text": "Compare these."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a/cat.WEBP?size=2#x"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}}
            ])
        );

        let bad_scheme = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]});
        assert_eq!(
            convert_err(bad_scheme).0,
            "messages[0].content[0].image_url.url"
        );
        let bad_data = json!({"model": "m", "messages": [user("x"), {"role": "user", "content": [
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]});
        assert_eq!(
            convert_err(bad_data).0,
            "messages[1].content[1].image_url.url"
        );
        let unknown = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}]}]});
        assert_eq!(convert_err(unknown).0, "messages[0].content[0].type");
    }

    #[test]
    fn tool_calls_and_results_round_trip() {
        let out = convert(json!({"model": "m", "messages": [
            user("Which theaters in Mountain View show Barbie movie?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0_0", "type": "function", "function": {
                    "name": "find_theaters",
                    "arguments": "{\"location\":\"Mountain View, CA\",\"movie\":\"Barbie\"}"}},
                {"id": "call_0_1__thought__c2lnbmF0dXJl", "type": "function", "function": {
                    "name": "get_showtimes", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0_0",
             "content": "{\"movie\":\"Barbie\",\"theaters\":[{\"name\":\"AMC Mountain View 16\"}]}"},
            {"role": "tool", "tool_call_id": "call_0_1__thought__c2lnbmF0dXJl", "content": "no showtimes"},
            user("Thanks!")
        ]}));
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Which theaters in Mountain View show Barbie movie?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "find_theaters",
                        "args": {"location": "Mountain View, CA", "movie": "Barbie"}}},
                    {"functionCall": {"name": "get_showtimes", "args": {}},
                     "thoughtSignature": "c2lnbmF0dXJl"}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "find_theaters", "response": {"content":
                        {"movie": "Barbie", "theaters": [{"name": "AMC Mountain View 16"}]}}}},
                    {"functionResponse": {"name": "get_showtimes",
                        "response": {"content": "no showtimes"}}},
                    {"text": "Thanks!"}
                ]}
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_name_the_message() {
        let body = json!({"model": "m", "messages": [user("hi"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{not json"}}]}]});
        let (param, message) = convert_err(body);
        assert_eq!(param, "messages[1].tool_calls");
        assert!(message.contains("tool_calls[0]"), "{message}");
        let array_args = json!({"model": "m", "messages": [user("hi"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "[1]"}}]}]});
        assert_eq!(convert_err(array_args).0, "messages[1].tool_calls");
        let empty_args = convert(json!({"model": "m", "messages": [user("hi"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": ""}}]}]}));
        assert_eq!(
            empty_args["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "f", "args": {}}})
        );
    }

    #[test]
    fn tool_result_needs_an_earlier_call() {
        let body = json!({"model": "m", "messages": [user("hi"),
            {"role": "tool", "tool_call_id": "call_unknown", "content": "42"}]});
        assert_eq!(convert_err(body).0, "messages[1].tool_call_id");
    }

    #[test]
    fn tools_become_function_declarations_with_json_schema() {
        let body = json!({"model": "m", "messages": [user("Turn on the lights please.")],
        "tools": [
            {"type": "function", "function": {"name": "enable_lights",
                "description": "Turn on the lighting system."}},
            {"type": "function", "function": {"name": "set_light_color",
                "description": "Set the light color. Lights must be enabled for this to work.",
                "strict": true,
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"rgb_hex": {"type": "string",
                        "description": "The light color as a 6-digit hex string, e.g. ff0000 for red."},
                        "strict": {"type": "boolean"}},
                    "required": ["rgb_hex"],
                    "additionalProperties": false}}}
        ]});
        let out = convert(body);
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "enable_lights", "description": "Turn on the lighting system."},
                {"name": "set_light_color",
                 "description": "Set the light color. Lights must be enabled for this to work.",
                 "parametersJsonSchema": {
                    "type": "object",
                    "properties": {"rgb_hex": {"type": "string",
                        "description": "The light color as a 6-digit hex string, e.g. ff0000 for red."},
                        "strict": {"type": "boolean"}},
                    "required": ["rgb_hex"],
                    "additionalProperties": false}}
            ]}])
        );
        assert!(out.get("toolConfig").is_none());

        let custom = json!({"model": "m", "messages": [user("x")],
            "tools": [{"type": "custom", "function": {"name": "f"}}]});
        assert_eq!(convert_err(custom).0, "tools[0].type");
    }

    #[test]
    fn every_tool_choice() {
        let with = |choice: Value| {
            let body = json!({"model": "m", "messages": [user("x")], "tool_choice": choice,
                "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
            convert(body)["toolConfig"].clone()
        };
        assert_eq!(
            with(json!("auto")),
            json!({"functionCallingConfig": {"mode": "AUTO"}})
        );
        assert_eq!(
            with(json!("required")),
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            with(json!("none")),
            json!({"functionCallingConfig": {"mode": "NONE"}})
        );
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "get_weather"}})),
            json!({"functionCallingConfig": {"mode": "ANY",
                "allowedFunctionNames": ["get_weather"]}})
        );
        let bad = json!({"model": "m", "messages": [user("x")], "tool_choice": "sometimes"});
        assert_eq!(convert_err(bad).0, "tool_choice");
    }

    #[test]
    fn response_formats() {
        let with = |format: Value| {
            let body = json!({"model": "m", "messages": [user("List 5 popular cookie recipes")],
                "response_format": format});
            convert(body).get("generationConfig").cloned()
        };
        assert_eq!(with(json!({"type": "text"})), None);
        assert_eq!(
            with(json!({"type": "json_object"})),
            Some(json!({"responseMimeType": "application/json"}))
        );
        let schema = json!({"type": "array", "items": {"type": "object",
            "properties": {"recipe_name": {"type": "string"}},
            "required": ["recipe_name"], "additionalProperties": false}});
        assert_eq!(
            with(json!({"type": "json_schema", "json_schema": {
                "name": "recipes", "strict": true, "schema": schema.clone()}})),
            Some(json!({"responseMimeType": "application/json", "responseJsonSchema": schema}))
        );
        let body = json!({"model": "m", "messages": [user("x")],
            "response_format": {"type": "yaml"}});
        assert_eq!(convert_err(body).0, "response_format.type");
    }

    #[test]
    fn reasoning_effort_maps_to_thinking_config() {
        let with = |effort: &str| {
            let body = json!({"model": "m", "messages": [user("x")], "reasoning_effort": effort});
            convert(body)["generationConfig"]["thinkingConfig"].clone()
        };
        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 2048),
            ("medium", 8192),
            ("high", 24576),
        ] {
            assert_eq!(
                with(effort),
                json!({"thinkingBudget": budget, "includeThoughts": true})
            );
        }
        assert_eq!(with("none"), json!({"thinkingBudget": 0}));
        let body = json!({"model": "m", "messages": [user("x")], "reasoning_effort": "extreme"});
        assert_eq!(convert_err(body).0, "reasoning_effort");
    }

    #[test]
    fn n_seed_stop_and_penalties() {
        let out = convert(
            json!({"model": "m", "messages": [user("x")], "n": 2, "seed": 42,
            "stop": "END", "presence_penalty": 0.5, "frequency_penalty": -0.25}),
        );
        assert_eq!(
            out["generationConfig"],
            json!({"candidateCount": 2, "seed": 42, "stopSequences": ["END"],
                "presencePenalty": 0.5, "frequencyPenalty": -0.25})
        );
        let big = json!({"model": "m", "messages": [user("x")], "seed": 4_294_967_296_i64});
        assert_eq!(convert_err(big).0, "seed");
    }

    #[test]
    fn unknown_fields_are_mapped_ignored_or_refused() {
        let out = convert(json!({"model": "m", "messages": [user("x")],
            "store": true, "logprobs": false, "stream": true,
            "stream_options": {"include_usage": true}, "parallel_tool_calls": false,
            "user": "u-1", "metadata": {"k": "v"},
            "cachedContent": "cachedContents/abc123", "labels": {"team": "search"}}));
        assert_eq!(
            out,
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "cachedContent": "cachedContents/abc123", "labels": {"team": "search"}})
        );

        let (param, message) =
            convert_err(json!({"model": "m", "messages": [user("x")], "logit_bias": {"1": 2}}));
        assert_eq!(param, "logit_bias");
        assert_eq!(
            message,
            "`logit_bias` is not supported by the gemini provider"
        );
        let (param, _) =
            convert_err(json!({"model": "m", "messages": [user("x")], "logprobs": true}));
        assert_eq!(param, "logprobs");
        let (param, _) = convert_err(json!({"model": "m", "messages": [user("x")], "top_k": -1}));
        assert_eq!(param, "top_k");
        let (param, _) = convert_err(
            json!({"model": "m", "messages": [user("x")], "safetySettings": "BLOCK_NONE"}),
        );
        assert_eq!(param, "safetySettings");
    }

    // --- responses --------------------------------------------------------------------------

    #[test]
    fn text_response() {
        let out = complete(fixture!("response-text.json"));
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({
                "id": "chatcmpl-gemini-1700000000",
                "object": "chat.completion",
                "created": CREATED,
                "model": "gemini-2.0-flash",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content":
                        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"},
                    "finish_reason": "stop",
                    "logprobs": null
                }],
                "usage": {"prompt_tokens": 7, "completion_tokens": 22, "total_tokens": 29}
            })
        );
    }

    #[test]
    fn model_falls_back_to_upstream_model() {
        let out = complete(fixture!("response-parallel-function-calls.json"));
        assert_eq!(out.model, "gemini-2.5-flash");
        assert_eq!(out.id, "chatcmpl-gemini-1700000000");
        assert_eq!(out.usage, None);
    }

    #[test]
    fn thought_parts_become_reasoning_content() {
        let out = complete(fixture!("response-thinking.json"));
        assert_eq!(out.id, "2pmHaJqQEoqC-8YP6eStyAY");
        assert_eq!(out.model, "gemini-2.5-flash");
        let message = &out.choices[0].message;
        assert_eq!(message.content.as_deref(), Some("Mountain View"));
        assert!(message
            .reasoning_content
            .as_deref()
            .unwrap()
            .starts_with("**Thinking About Google's Headquarters**"));
        let usage = out.usage.unwrap();
        // candidatesTokenCount 2 + thoughtsTokenCount 24; the total matches totalTokenCount.
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (14, 26, 40)
        );
        assert_eq!(usage.reasoning_tokens(), 24);
        assert_eq!(usage.cached_tokens(), 0);
    }

    #[test]
    fn function_call_response() {
        let out = complete(fixture!("response-function-call.json"));
        let choice = &out.choices[0];
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(choice.message.content, None);
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "call_0_0");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "find_theaters");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(
            args,
            json!({"movie": "Barbie", "location": "Mountain View, CA"})
        );
    }

    #[test]
    fn parallel_function_calls() {
        let out = complete(fixture!("response-parallel-function-calls.json"));
        let calls = out.choices[0].message.tool_calls.as_ref().unwrap();
        let got: Vec<(&str, &str, Value)> = calls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.function.name.as_str(),
                    serde_json::from_str(&c.function.arguments).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("call_0_0", "sum", json!({"x": 2, "y": 1})),
                ("call_0_1", "multiply", json!({"x": 4, "y": 3})),
                ("call_0_2", "subtract", json!({"x": 6, "y": 5})),
            ]
        );
        assert_eq!(out.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn function_call_carries_thought_signature_and_gemini_id() {
        let raw = fixture!("response-thinking-function-call.json");
        let resp = response(raw);
        let signature = resp.candidates[0].content.as_ref().unwrap().parts[1]
            .thought_signature
            .clone()
            .unwrap();
        let out = from_response(resp.clone(), &ctx()).unwrap();
        let choice = &out.choices[0];
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(choice.message.content, None);
        assert!(choice.message.reasoning_content.is_some());
        let call = &choice.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id, format!("call_0_0__thought__{signature}"));
        assert_eq!(call.function.arguments, "{}");
        let usage = out.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (38, 509, 547)
        );

        // Sending the call back restores the signature on the functionCall part.
        let back = convert(json!({"model": "m", "messages": [
            user("How many days until New Year's Eve?"),
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call.id, "content": "2025-07-28T18:34:27Z"}
        ]}));
        assert_eq!(
            back["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "now", "args": {}}, "thoughtSignature": signature})
        );
        assert_eq!(
            back["contents"][2]["parts"][0]["functionResponse"]["name"],
            "now"
        );

        // A Gemini-issued id is kept as the OpenAI id.
        let mut with_id = resp;
        if let Some(call) = with_id.candidates[0].content.as_mut().unwrap().parts[1]
            .function_call
            .as_mut()
        {
            call.id = Some("fc-7".to_owned());
        }
        with_id.candidates[0].content.as_mut().unwrap().parts[1].thought_signature = None;
        let out = from_response(with_id, &ctx()).unwrap();
        assert_eq!(
            out.choices[0].message.tool_calls.as_ref().unwrap()[0].id,
            "fc-7"
        );
    }

    #[test]
    fn cached_and_reasoning_usage() {
        let usage = complete(fixture!("response-implicit-caching.json"))
            .usage
            .unwrap();
        assert_eq!(usage.prompt_tokens, 12013);
        assert_eq!(usage.completion_tokens, 15 + 73);
        assert_eq!(usage.total_tokens, 12101);
        assert_eq!(usage.cached_tokens(), 11243);
        assert_eq!(usage.reasoning_tokens(), 73);
    }

    #[test]
    fn every_finish_reason() {
        // Values of `Candidate.FinishReason` in google/ai/generativelanguage/v1beta.
        let cases = [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            ("LANGUAGE", "stop"),
            ("OTHER", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("UNEXPECTED_TOOL_CALL", "stop"),
            ("FINISH_REASON_UNSPECIFIED", "stop"),
        ];
        for (reason, expected) in cases {
            let mut resp = response(fixture!("response-text.json"));
            resp.candidates[0].finish_reason = Some(reason.to_owned());
            let out = from_response(resp, &ctx()).unwrap();
            assert_eq!(
                out.choices[0].finish_reason.as_deref(),
                Some(expected),
                "{reason}"
            );
        }
        for (reason, expected) in [("STOP", "tool_calls"), ("MAX_TOKENS", "length")] {
            let mut resp = response(fixture!("response-function-call.json"));
            resp.candidates[0].finish_reason = Some(reason.to_owned());
            let out = from_response(resp, &ctx()).unwrap();
            assert_eq!(
                out.choices[0].finish_reason.as_deref(),
                Some(expected),
                "{reason}"
            );
        }
    }

    #[test]
    fn safety_finish_keeps_partial_text() {
        let out = complete(fixture!("response-finish-reason-safety.json"));
        assert_eq!(
            out.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(
            out.choices[0].message.content.as_deref(),
            Some("Safety error incoming in 5, 4, 3, 2...")
        );
    }

    #[test]
    fn blocked_prompt_gives_content_filter_choice() {
        // The last event of the blocked stream is a complete response without candidates.
        let events = sse_events(fixture!("stream-prompt-blocked.sse"));
        let blocked = events.last().unwrap();
        for raw in [*blocked, fixture!("response-only-prompt-feedback.json")] {
            let out = complete(raw);
            assert_eq!(out.choices.len(), 1);
            assert_eq!(out.choices[0].index, 0);
            assert_eq!(out.choices[0].message.content, None);
            assert_eq!(
                out.choices[0].finish_reason.as_deref(),
                Some("content_filter")
            );
        }
        assert!(matches!(
            from_response(GenerateContentResponse::default(), &ctx()),
            Err(ProviderError::Decode(_))
        ));
    }

    #[test]
    fn one_choice_per_candidate() {
        let mut resp = response(fixture!("response-text.json"));
        let mut second = response(fixture!("response-thinking.json"))
            .candidates
            .remove(0);
        second.index = Some(1);
        resp.candidates.push(second);
        let out = from_response(resp, &ctx()).unwrap();
        assert_eq!(out.choices.len(), 2);
        assert_eq!(out.choices[0].index, 0);
        assert_eq!(out.choices[1].index, 1);
        assert_eq!(
            out.choices[1].message.content.as_deref(),
            Some("Mountain View")
        );
        assert!(out.choices[0].message.reasoning_content.is_none());
    }

    // --- streaming --------------------------------------------------------------------------

    #[test]
    fn stream_text() {
        let (chunks, mut state) = stream(fixture!("stream-text.sse"));
        assert!(state.is_done());
        assert!(chunks.iter().all(|c| c.id == "chatcmpl-gemini-1700000000"
            && c.model == "gemini-3.1-flash-lite"
            && c.object == "chat.completion.chunk"
            && c.created == CREATED
            && c.usage.is_none()));
        let d = deltas(&chunks);
        assert_eq!(d[0].role.as_deref(), Some("assistant"));
        assert_eq!(
            joined(&chunks, |d| d.content.as_ref()),
            "The capital of Wyoming is **Cheyenne**.\n"
        );
        assert_eq!(chunks.len(), 5);
        assert_eq!(finish_reasons(&chunks), vec!["stop"]);
        assert_eq!(chunks[4].choices[0].finish_reason.as_deref(), Some("stop"));

        let last = state.finish();
        assert_eq!(last.len(), 1);
        assert!(last[0].choices.is_empty());
        assert_eq!(last[0].id, "chatcmpl-gemini-1700000000");
        let usage = last[0].usage.as_ref().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (7, 10, 17)
        );
        assert!(state.finish().is_empty());
    }

    #[test]
    fn stream_is_not_done_before_finish_reason() {
        let events = sse_events(fixture!("stream-text.sse"));
        let mut state = StreamState::new(&ctx());
        let first = state.on_event("", events[0]).unwrap();
        assert_eq!(first.len(), 2);
        assert!(!state.is_done());
        assert!(state.on_event("", "").unwrap().is_empty());
        assert!(!state.is_done());
    }

    #[test]
    fn stream_thoughts() {
        let (chunks, mut state) = stream(fixture!("stream-thinking.sse"));
        assert!(state.is_done());
        assert!(chunks.iter().all(|c| c.id == "0J-HaJetAqv0jrEPwu-tsQ0"));
        let reasoning = joined(&chunks, |d| d.reasoning_content.as_ref());
        assert!(reasoning.starts_with("**Exploring Sky Color**"));
        assert!(reasoning.contains("**Constructing a Concise Answer**"));
        assert_eq!(
            joined(&chunks, |d| d.content.as_ref()),
            "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered in all directions, making the sky appear blue to our eyes."
        );
        assert_eq!(finish_reasons(&chunks), vec!["stop"]);
        let usage = state.finish().remove(0).usage.unwrap();
        assert_eq!(usage.prompt_tokens, 10);
        assert_eq!(usage.completion_tokens, 48 + 540);
        assert_eq!(usage.total_tokens, 598);
        assert_eq!(usage.reasoning_tokens(), 540);
    }

    #[test]
    fn stream_function_call() {
        let raw = fixture!("stream-thinking-function-call.sse");
        let (chunks, mut state) = stream(raw);
        assert!(state.is_done());
        let calls: Vec<&ToolCallDelta> = deltas(&chunks)
            .into_iter()
            .filter_map(|d| d.tool_calls.as_ref())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 1);
        let signature = response(sse_events(raw)[2]).candidates[0]
            .content
            .as_ref()
            .unwrap()
            .parts[0]
            .thought_signature
            .clone()
            .unwrap();
        assert_eq!(
            calls[0],
            &ToolCallDelta {
                index: 0,
                id: Some(format!("call_0_0__thought__{signature}")),
                kind: Some("function".to_owned()),
                function: Some(FunctionCallDelta {
                    name: Some("now".to_owned()),
                    arguments: Some("{}".to_owned()),
                }),
            }
        );
        assert_eq!(finish_reasons(&chunks), vec!["tool_calls"]);
        assert!(
            joined(&chunks, |d| d.reasoning_content.as_ref()).contains("**Calculating the Days**")
        );
        assert_eq!(joined(&chunks, |d| d.content.as_ref()), "");
        let usage = state.finish().remove(0).usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (38, 174));
    }

    #[test]
    fn stream_parallel_calls_are_indexed() {
        let mut state = StreamState::new(&ctx());
        let data = fixture!("response-parallel-function-calls.json");
        let chunks = state.on_event("", data).unwrap();
        let calls: Vec<(u32, Option<&str>)> = deltas(&chunks)
            .into_iter()
            .filter_map(|d| d.tool_calls.as_ref())
            .flatten()
            .map(|c| (c.index, c.id.as_deref()))
            .collect();
        assert_eq!(
            calls,
            vec![
                (0, Some("call_0_0")),
                (1, Some("call_0_1")),
                (2, Some("call_0_2"))
            ]
        );
        assert_eq!(finish_reasons(&chunks), vec!["tool_calls"]);
        assert!(state.finish().is_empty(), "no usageMetadata was sent");
    }

    #[test]
    fn stream_recitation_ends_with_content_filter() {
        let (chunks, mut state) = stream(fixture!("stream-recitation.sse"));
        assert!(state.is_done());
        assert_eq!(
            joined(&chunks, |d| d.content.as_ref()),
            "text1text2text3text4text5text6text7text8"
        );
        assert_eq!(finish_reasons(&chunks), vec!["content_filter"]);
        let usage = state.finish().remove(0).usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 261));
    }

    #[test]
    fn stream_blocked_prompt_ends_with_content_filter() {
        let (chunks, mut state) = stream(fixture!("stream-prompt-blocked.sse"));
        assert!(state.is_done());
        assert_eq!(joined(&chunks, |d| d.content.as_ref()), "text1text2text3");
        assert_eq!(finish_reasons(&chunks), vec!["content_filter"]);
        let usage = state.finish().remove(0).usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 0));
    }

    #[test]
    fn stream_error_payload() {
        let events = sse_events(fixture!("stream-error.sse"));
        let mut state = StreamState::new(&ctx());
        let first = state.on_event("", events[0]).unwrap();
        assert_eq!(joined(&first, |d| d.content.as_ref()), "The");
        match state.on_event("", events[1]) {
            Err(ProviderError::Stream(message)) => assert_eq!(message, "INTERNAL: Internal error"),
            other => panic!("expected a stream error, got {other:?}"),
        }
        // The array-wrapped form of the non-SSE endpoint.
        match state.on_event("", fixture!("error-resource-exhausted-array.json")) {
            Err(ProviderError::Stream(message)) => {
                assert!(message.starts_with("RESOURCE_EXHAUSTED: Resource exhausted."))
            }
            other => panic!("expected a stream error, got {other:?}"),
        }
        assert!(matches!(
            state.on_event("", "{not json"),
            Err(ProviderError::Decode(_))
        ));
    }

    // --- embeddings -------------------------------------------------------------------------

    fn embedding_request(body: Value) -> EmbeddingRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn embed_request_matches_google_sample() {
        let req = embedding_request(json!({"model": "embed", "input": [
            "What is the meaning of life?",
            "How much wood would a woodchuck chuck?",
            "How does the brain work?"
        ]}));
        let expected: Value = serde_json::from_str(fixture!("embed-batch-request.json")).unwrap();
        let out = to_embed_request(&req, "gemini-embedding-001").unwrap();
        assert_eq!(serde_json::to_value(&out).unwrap(), expected);
        let prefixed = to_embed_request(&req, "models/gemini-embedding-001").unwrap();
        assert_eq!(serde_json::to_value(&prefixed).unwrap(), expected);
    }

    #[test]
    fn embed_request_options() {
        let req = embedding_request(json!({"model": "embed", "input": "Hello world",
            "dimensions": 768, "task_type": "RETRIEVAL_DOCUMENT", "encoding_format": "float"}));
        let out =
            serde_json::to_value(to_embed_request(&req, "gemini-embedding-001").unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"requests": [{"model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "Hello world"}]},
                "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}]})
        );

        let tokens = embedding_request(json!({"model": "embed", "input": [[1, 2, 3]]}));
        assert!(matches!(
            to_embed_request(&tokens, "gemini-embedding-001"),
            Err(ProviderError::InvalidRequest { param, .. }) if param == "input"
        ));
        let unknown = embedding_request(json!({"model": "embed", "input": "x", "truncate": "END"}));
        assert!(matches!(
            to_embed_request(&unknown, "gemini-embedding-001"),
            Err(ProviderError::UnsupportedField { param, .. }) if param == "truncate"
        ));
    }

    #[test]
    fn embed_response() {
        let resp: BatchEmbedContentsResponse =
            serde_json::from_str(fixture!("embed-batch-response.json")).unwrap();
        let out = from_embed_response(resp, "gemini-embedding-001");
        assert_eq!(out.object, "list");
        assert_eq!(out.model, "gemini-embedding-001");
        assert_eq!(out.data.len(), 3);
        for (i, item) in out.data.iter().enumerate() {
            assert_eq!(item.index as usize, i);
            assert_eq!(item.object, "embedding");
        }
        match &out.data[0].embedding {
            EmbeddingVector::Float(v) => {
                assert_eq!(v.len(), 7);
                assert_eq!(v[0], -0.010_632_277_f32);
                assert_eq!(v[6], -0.028_534_694_f32);
            }
            other => panic!("expected floats, got {other:?}"),
        }
        assert_eq!(
            out.usage,
            Some(EmbeddingUsage {
                prompt_tokens: 0,
                total_tokens: 0
            })
        );
    }

    // --- errors -----------------------------------------------------------------------------

    #[test]
    fn parse_error_bodies() {
        let body = |raw: &str| raw.as_bytes().to_vec();
        assert_eq!(
            parse_error(400, &body(fixture!("error-api-key.json"))),
            UpstreamErrorBody {
                code: Some("INVALID_ARGUMENT".to_owned()),
                message: "API key not valid. Please pass a valid API key.".to_owned(),
            }
        );
        let not_found = parse_error(404, &body(fixture!("error-not-found.json")));
        assert_eq!(not_found.code.as_deref(), Some("NOT_FOUND"));
        assert!(not_found
            .message
            .starts_with("models/gemini-5.0-flash is not found"));
        let exhausted = parse_error(429, &body(fixture!("error-resource-exhausted-array.json")));
        assert_eq!(exhausted.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(
            exhausted.message,
            "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
        );
        assert_eq!(
            parse_error(500, &body(fixture!("error-server.json"))),
            UpstreamErrorBody {
                code: Some("SERVER_INTERNAL ERROR".to_owned()),
                message: "error message".to_owned(),
            }
        );
        assert_eq!(
            parse_error(503, &body(fixture!("error-not-json.txt"))),
            UpstreamErrorBody {
                code: None,
                message: r#"{"data": {"key1": "value1", "key2"}"#.to_owned(),
            }
        );
        let long = "é".repeat(600);
        assert_eq!(
            parse_error(502, long.as_bytes()).message.chars().count(),
            500
        );
        assert_eq!(parse_error(503, b"  ").message, "HTTP 503");
    }

    /// Google's 400 for a wrong API key is the gateway's credential failing: reported as 401,
    /// it maps to 502 `upstream_auth_error` with Google's message kept.
    #[test]
    fn refused_api_key_is_an_auth_failure() {
        let body = fixture!("error-api-key.json").as_bytes();
        assert_eq!(upstream_status(400, body), 401);
        let parsed = parse_error(400, body);
        let api = plexus_core::ApiError::from(ProviderError::Upstream {
            status: upstream_status(400, body),
            code: parsed.code,
            message: parsed.message,
            retry_after: None,
        });
        assert_eq!(api.code, plexus_core::ErrorCode::UpstreamAuthError);
        assert_eq!(api.status(), 502);
        assert!(
            api.message
                .contains("API key not valid. Please pass a valid API key."),
            "{}",
            api.message
        );

        // The reason alone, the message alone, and the array the streaming endpoint sends.
        let reason_only = json!({"error": {"code": 400, "message": "API Key not found. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
        let message_only = json!({"error": {"code": 400,
            "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}});
        let streamed = Value::Array(vec![message_only.clone()]);
        for body in [reason_only, message_only, streamed] {
            assert_eq!(
                upstream_status(400, body.to_string().as_bytes()),
                401,
                "{body}"
            );
        }

        // Other 400s and other statuses keep theirs.
        let invalid_argument = json!({"error": {"code": 400,
            "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}});
        assert_eq!(
            upstream_status(400, invalid_argument.to_string().as_bytes()),
            400
        );
        assert_eq!(
            upstream_status(400, fixture!("error-not-json.txt").as_bytes()),
            400
        );
        assert_eq!(upstream_status(400, b""), 400);
        let not_found = fixture!("error-not-found.json").as_bytes();
        assert_eq!(upstream_status(404, not_found), 404);
        assert_eq!(upstream_status(429, body), 429);
    }

    #[test]
    fn a_document_by_url_becomes_file_data() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_data": "https://example.com/paper"}},
                {"type": "text", "text": "Summarize."}
            ]}]
        }))
        .unwrap();
        let wire = to_request(&req, &ctx()).unwrap();
        let v = serde_json::to_value(&wire).unwrap();
        let part = &v["contents"][0]["parts"][0]["fileData"];
        assert_eq!(part["fileUri"], "https://example.com/paper");
        assert_eq!(part["mimeType"], "application/pdf");
    }
}
