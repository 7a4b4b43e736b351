//! Anthropic Messages API wire types (https://docs.anthropic.com/en/api/messages).
//!
//! Every object keeps the fields Plexus does not model in `extra`, and content blocks of types
//! Plexus does not know are kept verbatim ([`ContentBlock::Other`]), so bodies round-trip.

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Unknown fields, kept verbatim.
pub type Extra = Map<String, Value>;

fn is_empty(extra: &Extra) -> bool {
    extra.is_empty()
}

/// A `u32` that may be spelled as a whole float (`2.0`), as JSON Schema's `integer` allows.
fn whole_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    crate::whole::Int::<u32>::deserialize(d).map(|crate::whole::Int(v)| v)
}

/// `POST /v1/messages` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// Required by Anthropic.
    #[serde(deserialize_with = "whole_u32")]
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(
        default,
        deserialize_with = "crate::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `system`: a string or an array of text blocks (which may carry `cache_control`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

/// One block of `system` (always `{"type":"text"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemBlock {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

impl SystemBlock {
    pub fn text(text: impl Into<String>) -> Self {
        SystemBlock {
            kind: "text".to_owned(),
            text: text.into(),
            cache_control: None,
            extra: Extra::new(),
        }
    }
}

/// `{"type":"ephemeral","ttl":"5m"|"1h"}`: a prompt-caching breakpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// A tool definition: a client tool (`name`, `description`, `input_schema`) or a server tool
/// (`type` such as `web_search_20250305`, other fields in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `custom` (optional for client tools) or a server tool type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `tool_choice`: `{"type":"auto"|"any"|"tool"|"none","name"?,"disable_parallel_tool_use"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

impl ToolChoice {
    pub fn new(kind: &str) -> Self {
        ToolChoice {
            kind: kind.to_owned(),
            name: None,
            disable_parallel_tool_use: None,
            extra: Extra::new(),
        }
    }

    pub fn tool(name: impl Into<String>) -> Self {
        ToolChoice {
            name: Some(name.into()),
            ..ToolChoice::new("tool")
        }
    }
}

/// `thinking`: `{"type":"enabled","budget_tokens":N}` (or `disabled`, `adaptive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "crate::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_tokens: Option<u32>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

impl ThinkingConfig {
    pub fn enabled(budget_tokens: u32) -> Self {
        ThinkingConfig {
            kind: "enabled".to_owned(),
            budget_tokens: Some(budget_tokens),
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One input message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: MessageContent,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `content`: a string (shorthand for one text block) or content blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// A content block, of requests and responses alike. Blocks of other types (`document`
/// variants, server tool blocks, `search_result`, future types) are kept verbatim in
/// [`ContentBlock::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    /// Any other block, including its `type`.
    Other(Value),
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text(TextBlock {
            text: text.into(),
            cache_control: None,
            extra: Extra::new(),
        })
    }

    /// The block's `type`.
    pub fn kind(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Image(_) => "image",
            ContentBlock::Document(_) => "document",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            ContentBlock::Thinking(_) => "thinking",
            ContentBlock::RedactedThinking(_) => "redacted_thinking",
            ContentBlock::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// Reads a block from JSON: known types into their struct (an error if malformed),
    /// anything else into [`ContentBlock::Other`].
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut map) = value else {
            return Err(de::Error::custom("a content block must be a JSON object"));
        };
        let kind = match map.get("type").and_then(Value::as_str) {
            Some(
                k @ ("text" | "image" | "document" | "tool_use" | "tool_result" | "thinking"
                | "redacted_thinking"),
            ) => k.to_owned(),
            _ => return Ok(ContentBlock::Other(Value::Object(map))),
        };
        map.remove("type");
        let body = Value::Object(map);
        Ok(match kind.as_str() {
            "text" => ContentBlock::Text(serde_json::from_value(body)?),
            "image" => ContentBlock::Image(serde_json::from_value(body)?),
            "document" => ContentBlock::Document(serde_json::from_value(body)?),
            "tool_use" => ContentBlock::ToolUse(serde_json::from_value(body)?),
            "tool_result" => ContentBlock::ToolResult(serde_json::from_value(body)?),
            "thinking" => ContentBlock::Thinking(serde_json::from_value(body)?),
            _ => ContentBlock::RedactedThinking(serde_json::from_value(body)?),
        })
    }
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged<'a> {
            Text(&'a TextBlock),
            Image(&'a ImageBlock),
            Document(&'a DocumentBlock),
            ToolUse(&'a ToolUseBlock),
            ToolResult(&'a ToolResultBlock),
            Thinking(&'a ThinkingBlock),
            RedactedThinking(&'a RedactedThinkingBlock),
        }
        match self {
            ContentBlock::Text(b) => Tagged::Text(b).serialize(serializer),
            ContentBlock::Image(b) => Tagged::Image(b).serialize(serializer),
            ContentBlock::Document(b) => Tagged::Document(b).serialize(serializer),
            ContentBlock::ToolUse(b) => Tagged::ToolUse(b).serialize(serializer),
            ContentBlock::ToolResult(b) => Tagged::ToolResult(b).serialize(serializer),
            ContentBlock::Thinking(b) => Tagged::Thinking(b).serialize(serializer),
            ContentBlock::RedactedThinking(b) => Tagged::RedactedThinking(b).serialize(serializer),
            ContentBlock::Other(v) => v.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ContentBlock::from_value(value).map_err(de::Error::custom)
    }
}

/// `{"type":"text","text":..}` (citations and other fields in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `{"type":"image","source":{..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `{"type":"document","source":{..},"title"?}` (PDFs and plain text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentBlock {
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// The `source` of an image or document: `{"type":"base64","media_type","data"}`,
/// `{"type":"url","url"}`, `{"type":"text","media_type","data"}`, `{"type":"file","file_id"}`..
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

impl Source {
    pub fn base64(media_type: impl Into<String>, data: impl Into<String>) -> Self {
        Source {
            kind: "base64".to_owned(),
            media_type: Some(media_type.into()),
            data: Some(data.into()),
            url: None,
            extra: Extra::new(),
        }
    }

    pub fn url(url: impl Into<String>) -> Self {
        Source {
            kind: "url".to_owned(),
            media_type: None,
            data: None,
            url: Some(url.into()),
            extra: Extra::new(),
        }
    }
}

/// `{"type":"tool_use","id","name","input"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `{"type":"tool_result","tool_use_id","content"?,"is_error"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ToolResultContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// A tool result's `content`: a string or content blocks (text, image, document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// `{"type":"thinking","thinking","signature"}`. `signature` is absent in a stream's
/// `content_block_start` (it arrives as a `signature_delta`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    #[serde(default)]
    pub thinking: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `{"type":"redacted_thinking","data"}`: encrypted thinking, to be passed back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    pub data: String,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// The `message` object: a non-streaming response body, and the payload of `message_start`
/// (with empty `content`). Fields are defaulted so partial objects (as in the docs) parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub model: String,
    /// `end_turn | max_tokens | stop_sequence | tool_use | pause_turn | refusal`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// Token usage. All counts are optional because `message_delta` sends only some of them
/// (and may send `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// A streaming event (the `data:` of one SSE event; its `type` matches the SSE event name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart(MessageStartEvent),
    ContentBlockStart(ContentBlockStartEvent),
    ContentBlockDelta(ContentBlockDeltaEvent),
    ContentBlockStop(ContentBlockStopEvent),
    MessageDelta(MessageDeltaEvent),
    MessageStop,
    Ping,
    Error(ErrorEvent),
}

/// `message_start`: the message with empty `content` and the input usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStartEvent {
    pub message: MessagesResponse,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `content_block_start`: the block at `index`, with empty text / input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockStartEvent {
    pub index: u32,
    pub content_block: ContentBlock,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `content_block_delta`: an update of the block at `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockDeltaEvent {
    pub index: u32,
    pub delta: ContentDelta,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// A block delta: `text_delta {text}`, `input_json_delta {partial_json}`,
/// `thinking_delta {thinking}`, `signature_delta {signature}`, or another type (e.g.
/// `citations_delta`, fields in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentDelta {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockStopEvent {
    pub index: u32,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// `message_delta`: top-level changes (stop reason) and the cumulative usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaEvent {
    pub delta: MessageDelta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// The `error` stream event: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub error: ErrorDetail,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

/// An error body: `{"type":"error","error":{"type","message"},"request_id"?}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `error`.
    #[serde(rename = "type", default)]
    pub kind: String,
    pub error: ErrorDetail,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `overloaded_error`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(flatten, skip_serializing_if = "is_empty")]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_blocks_round_trip_including_unknown_types() {
        let blocks = json!([
            {"type": "text", "text": "hi", "citations": [{"type": "char_location"}]},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}], "is_error": false},
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "T"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "future_block", "payload": {"x": 1}}
        ]);
        let parsed: Vec<ContentBlock> = serde_json::from_value(blocks.clone()).unwrap();
        assert!(matches!(parsed[0], ContentBlock::Text(_)));
        assert!(matches!(parsed[3], ContentBlock::ToolUse(_)));
        assert!(matches!(parsed[4], ContentBlock::ToolResult(_)));
        assert!(matches!(parsed[8], ContentBlock::Other(_)));
        assert_eq!(parsed[9].kind(), "future_block");
        assert_eq!(serde_json::to_value(&parsed).unwrap(), blocks);
    }

    #[test]
    fn malformed_known_block_is_an_error() {
        let err = serde_json::from_value::<ContentBlock>(json!({"type": "tool_use", "id": 1}));
        assert!(err.is_err());
    }

    #[test]
    fn request_round_trips() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hello"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"user_id": "u1"},
            "service_tier": "auto"
        });
        let req: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra.len(), 1);
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn stream_events_parse() {
        let ev: StreamEvent = serde_json::from_str(r#"{"type": "ping"}"#).unwrap();
        assert_eq!(ev, StreamEvent::Ping);
        let ev: StreamEvent =
            serde_json::from_str(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#)
                .unwrap();
        assert!(matches!(ev, StreamEvent::ContentBlockStart(_)));
        let ev: StreamEvent = serde_json::from_str(
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        )
        .unwrap();
        let StreamEvent::Error(e) = ev else {
            panic!("error event expected")
        };
        assert_eq!(e.error.kind, "overloaded_error");
    }
}
