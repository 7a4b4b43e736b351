//! OpenAI Responses API (`POST /v1/responses`) passed through to a provider that serves it.
//!
//! The request is the client's own body (only `model` replaced, see [`crate::native`]), and
//! the answer goes back to the client as the provider sent it. What the gateway needs of that
//! answer is read here, without I/O:
//! - [`usage_of`]: the usage of a `response` object, for billing and the request log;
//! - [`from_response`]: the `response` object as a canonical chat completion, for the cache;
//! - [`StreamState`]: the stream's semantic events as canonical chunks, for the accounting of
//!   a streamed answer (the raw events themselves go to the client).

use crate::{ConvertCtx, ProviderError};
use plexus_protocol::openai::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionCallDelta, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The parts of a `response` object the gateway reads; everything else is ignored (and stays
/// in the bytes the client receives).
#[derive(Debug, Default, Deserialize)]
struct ResponseView {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<ErrorView>,
    #[serde(default)]
    incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    output: Vec<OutputItem>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct IncompleteDetails {
    #[serde(default)]
    reason: Option<String>,
}

/// `{"code", "message"}` of a failed response or an `error` event (`code` may be a number).
#[derive(Debug, Default, Deserialize)]
struct ErrorView {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl ErrorView {
    fn into_error(self, fallback: &str) -> ProviderError {
        let code = match self.code {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => self.kind,
        };
        let message = match (self.message.filter(|m| !m.is_empty()), code) {
            (Some(m), _) => m,
            (None, Some(c)) => c,
            (None, None) => fallback.to_owned(),
        };
        ProviderError::Stream(message)
    }
}

/// An item of `output`: the message and function call fields; other item types (reasoning,
/// hosted tool calls) are read as their type only.
#[derive(Debug, Default, Deserialize)]
struct OutputItem {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    content: Vec<ContentPart>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// A JSON string; some compatible servers send the object itself.
    #[serde(default)]
    arguments: Option<Value>,
}

impl OutputItem {
    fn arguments(&self) -> String {
        match &self.arguments {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    fn tool_call(&self) -> ToolCall {
        ToolCall {
            id: self
                .call_id
                .clone()
                .or_else(|| self.id.clone())
                .unwrap_or_default(),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: self.name.clone().unwrap_or_default(),
                arguments: self.arguments(),
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ContentPart {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

fn convert_usage(u: &WireUsage) -> Usage {
    let cached = u
        .input_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    let reasoning = u
        .output_tokens_details
        .as_ref()
        .and_then(|d| d.reasoning_tokens)
        .unwrap_or(0);
    // `output_tokens` includes the reasoning tokens, as `completion_tokens` does.
    Usage::new(u.input_tokens, u.output_tokens)
        .with_cached(cached)
        .with_reasoning(reasoning)
}

/// The finish reason of a finished response: `length` (or `content_filter`) when it is
/// incomplete, `tool_calls` when it called functions, else `stop`.
fn finish_reason(r: &ResponseView, called: bool) -> &'static str {
    if r.status.as_deref() == Some("incomplete") {
        let reason = r
            .incomplete_details
            .as_ref()
            .and_then(|d| d.reason.as_deref());
        return match reason {
            Some("content_filter") => "content_filter",
            _ => "length",
        };
    }
    if called {
        "tool_calls"
    } else {
        "stop"
    }
}

/// The usage of a `response` object; zeros when it reports none (a background response).
pub fn usage_of(body: &[u8]) -> Result<Usage, ProviderError> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        usage: Option<WireUsage>,
    }
    let view: View = serde_json::from_slice(body).map_err(ProviderError::decode)?;
    Ok(view.usage.as_ref().map(convert_usage).unwrap_or_default())
}

/// A `response` object as a canonical chat completion: the assistant text of its `message`
/// items, its `function_call` items as tool calls, and the usage.
pub fn from_response(body: &[u8], ctx: &ConvertCtx) -> Result<ChatCompletion, ProviderError> {
    let r: ResponseView = serde_json::from_slice(body).map_err(ProviderError::decode)?;
    let mut text: Option<String> = None;
    let mut refusal: Option<String> = None;
    let mut tool_calls = Vec::new();
    for item in &r.output {
        match item.kind.as_str() {
            "message" => {
                let t = text.get_or_insert_with(String::new);
                for part in &item.content {
                    match part.kind.as_str() {
                        "output_text" => t.push_str(part.text.as_deref().unwrap_or("")),
                        "refusal" => refusal
                            .get_or_insert_with(String::new)
                            .push_str(part.refusal.as_deref().unwrap_or("")),
                        _ => {}
                    }
                }
            }
            "function_call" => tool_calls.push(item.tool_call()),
            _ => {}
        }
    }
    let finish = finish_reason(&r, !tool_calls.is_empty());
    Ok(ChatCompletion {
        id: r.id.clone(),
        object: "chat.completion".to_owned(),
        created: r.created_at.unwrap_or(ctx.created),
        model: r
            .model
            .clone()
            .unwrap_or_else(|| ctx.upstream_model.to_owned()),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content: text,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal,
                ..ResponseMessage::default()
            },
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
        }],
        usage: r.usage.as_ref().map(convert_usage),
        system_fingerprint: None,
        extra: Map::new(),
    })
}

/// One streamed event: the fields of every event type the decoder reads.
#[derive(Debug, Default, Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    item: Option<OutputItem>,
    #[serde(default)]
    response: Option<ResponseView>,
    /// `error` events: `code` and `message` at the top level, or (some servers) an `error`
    /// object.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<ErrorView>,
}

/// Decodes the semantic events of a streamed response into canonical chunks, one event at a
/// time: text deltas as content, function calls as tool call deltas, and at the end the finish
/// reason and the usage.
#[derive(Debug)]
pub struct StreamState {
    id: String,
    model: String,
    created: i64,
    /// Tool call index of each function call item, by output index and by item id.
    by_output: HashMap<u64, u32>,
    by_item: HashMap<String, u32>,
    tool_calls: u32,
    done: bool,
}

impl StreamState {
    pub fn new(ctx: &ConvertCtx) -> Self {
        StreamState {
            id: String::new(),
            model: ctx.upstream_model.to_owned(),
            created: ctx.created,
            by_output: HashMap::new(),
            by_item: HashMap::new(),
            tool_calls: 0,
            done: false,
        }
    }

    /// Whether the response finished (`response.completed` or `response.incomplete`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one SSE event (`event` is its name, possibly empty: the `type` in `data`
    /// decides).
    pub fn on_event(
        &mut self,
        event: &str,
        data: &str,
    ) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            // Not sent by OpenAI; some compatible servers end this way.
            self.done = true;
            return Ok(Vec::new());
        }
        let ev: Event = serde_json::from_str(data).map_err(ProviderError::decode)?;
        let kind = if ev.kind.is_empty() {
            event
        } else {
            ev.kind.as_str()
        };
        match kind {
            "response.created" => Ok(self.on_created(ev.response)),
            "response.output_text.delta" => Ok(match ev.delta {
                Some(text) if !text.is_empty() => vec![self.chunk(
                    Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                    None,
                )],
                _ => Vec::new(),
            }),
            "response.refusal.delta" => Ok(match ev.delta {
                Some(text) if !text.is_empty() => vec![self.chunk(
                    Delta {
                        refusal: Some(text),
                        ..Delta::default()
                    },
                    None,
                )],
                _ => Vec::new(),
            }),
            "response.output_item.added" => Ok(self.on_item_added(ev)),
            "response.function_call_arguments.delta" => Ok(self.on_arguments(ev)),
            "response.completed" | "response.incomplete" => Ok(self.on_finished(ev.response)),
            "response.failed" => {
                let error = ev
                    .response
                    .and_then(|r| r.error)
                    .unwrap_or_default()
                    .into_error("the response failed");
                Err(error)
            }
            "error" => {
                let error = match ev.error {
                    Some(e) => e,
                    None => ErrorView {
                        code: ev.code,
                        message: ev.message,
                        kind: None,
                    },
                };
                Err(error.into_error("the provider reported an error"))
            }
            // Lifecycle, content part, reasoning, hosted tool and future events.
            _ => Ok(Vec::new()),
        }
    }

    fn on_created(&mut self, response: Option<ResponseView>) -> Vec<ChatCompletionChunk> {
        if let Some(r) = response {
            self.adopt(&r);
        }
        vec![self.chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )]
    }

    /// Takes the id, model and creation time of the response.
    fn adopt(&mut self, r: &ResponseView) {
        if !r.id.is_empty() {
            self.id.clone_from(&r.id);
        }
        if let Some(m) = r.model.as_deref().filter(|m| !m.is_empty()) {
            m.clone_into(&mut self.model);
        }
        if let Some(c) = r.created_at {
            self.created = c;
        }
    }

    fn on_item_added(&mut self, ev: Event) -> Vec<ChatCompletionChunk> {
        let Some(item) = ev.item else {
            return Vec::new();
        };
        if item.kind != "function_call" {
            return Vec::new();
        }
        let index = self.tool_calls;
        self.tool_calls += 1;
        if let Some(o) = ev.output_index {
            self.by_output.insert(o, index);
        }
        if let Some(id) = &item.id {
            self.by_item.insert(id.clone(), index);
        }
        let call = item.tool_call();
        vec![self.chunk(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: Some(call.id),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(call.function.arguments),
                    }),
                }]),
                ..Delta::default()
            },
            None,
        )]
    }

    fn on_arguments(&mut self, ev: Event) -> Vec<ChatCompletionChunk> {
        let index = ev
            .item_id
            .as_ref()
            .and_then(|id| self.by_item.get(id))
            .or_else(|| ev.output_index.and_then(|o| self.by_output.get(&o)))
            .copied();
        match (index, ev.delta) {
            (Some(index), Some(fragment)) if !fragment.is_empty() => vec![self.chunk(
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(fragment),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            )],
            // Arguments of a call whose start was not seen: nothing to attach them to.
            _ => Vec::new(),
        }
    }

    fn on_finished(&mut self, response: Option<ResponseView>) -> Vec<ChatCompletionChunk> {
        self.done = true;
        let r = response.unwrap_or_default();
        self.adopt(&r);
        let called = self.tool_calls > 0 || r.output.iter().any(|i| i.kind == "function_call");
        let finish = finish_reason(&r, called);
        let mut out = vec![self.chunk(Delta::default(), Some(finish.to_owned()))];
        if let Some(u) = &r.usage {
            let mut chunk = ChatCompletionChunk::new(&self.id, self.created, &self.model);
            chunk.usage = Some(convert_usage(u));
            out.push(chunk);
        }
        out
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatCompletionChunk {
        let mut chunk = ChatCompletionChunk::new(&self.id, self.created, &self.model);
        chunk.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        });
        chunk
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const RESPONSE_TEXT: &str =
        include_str!("../tests/fixtures/openai_responses/response_text.json");
    const RESPONSE_FUNCTION_CALL: &str =
        include_str!("../tests/fixtures/openai_responses/response_function_call.json");
    const RESPONSE_REASONING: &str =
        include_str!("../tests/fixtures/openai_responses/response_reasoning.json");
    const STREAM_TEXT: &str = include_str!("../tests/fixtures/openai_responses/stream_text.sse");
    const STREAM_FUNCTION_CALL: &str =
        include_str!("../tests/fixtures/openai_responses/stream_function_call.sse");
    const EVENT_FAILED: &str = include_str!("../tests/fixtures/openai_responses/event_failed.json");
    const EVENT_INCOMPLETE: &str =
        include_str!("../tests/fixtures/openai_responses/event_incomplete.json");
    const EVENT_ERROR: &str = include_str!("../tests/fixtures/openai_responses/event_error.json");

    fn ctx() -> ConvertCtx<'static> {
        ConvertCtx {
            upstream_model: "gpt-4.1",
            created: 7,
            default_max_tokens: 4096,
            lenient: true,
        }
    }

    /// (event, data) pairs of an SSE text.
    fn events(sse: &str) -> Vec<(String, String)> {
        sse.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_owned();
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn decode(sse: &str) -> (StreamState, Vec<ChatCompletionChunk>) {
        let mut s = StreamState::new(&ctx());
        let mut out = Vec::new();
        for (event, data) in events(sse) {
            out.extend(s.on_event(&event, &data).unwrap());
        }
        (s, out)
    }

    fn content(chunks: &[ChatCompletionChunk]) -> String {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.as_deref())
            .collect()
    }

    fn finish(chunks: &[ChatCompletionChunk]) -> Vec<&str> {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason.as_deref())
            .collect()
    }

    #[test]
    fn usage_with_cached_and_reasoning_tokens() {
        let u = usage_of(RESPONSE_TEXT.as_bytes()).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (36, 87, 123)
        );
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (0, 0));
        let u = usage_of(RESPONSE_REASONING.as_bytes()).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (81, 1035));
        assert_eq!(u.reasoning_tokens(), 832);
        // The function call example has no `input_tokens_details`.
        let u = usage_of(RESPONSE_FUNCTION_CALL.as_bytes()).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (291, 23, 314)
        );
        let cached = br#"{"usage": {"input_tokens": 12033, "input_tokens_details": {"cached_tokens": 11904},
            "output_tokens": 44, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12077}}"#;
        let u = usage_of(cached).unwrap();
        assert_eq!((u.prompt_tokens, u.cached_tokens()), (12033, 11904));
        // A background response reports none yet.
        assert_eq!(
            usage_of(br#"{"status": "queued", "usage": null}"#).unwrap(),
            Usage::default()
        );
        assert!(usage_of(b"not json").is_err());
    }

    #[test]
    fn a_text_response_is_an_assistant_message() {
        let c = from_response(RESPONSE_TEXT.as_bytes(), &ctx()).unwrap();
        assert_eq!(
            c.id,
            "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
        );
        assert_eq!(c.object, "chat.completion");
        assert_eq!(
            (c.created, c.model.as_str()),
            (1741476542, "gpt-4.1-2025-04-14")
        );
        let choice = &c.choices[0];
        assert_eq!(choice.message.role, "assistant");
        assert!(choice
            .message
            .content
            .as_deref()
            .unwrap()
            .starts_with("In a peaceful grove"));
        assert!(choice.message.tool_calls.is_none());
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.as_ref().unwrap().total_tokens, 123);
        // It round-trips as the canonical type the cache stores.
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ChatCompletion>(&json).unwrap(), c);

        // Reasoning items carry no text of the answer.
        let r = from_response(RESPONSE_REASONING.as_bytes(), &ctx()).unwrap();
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("The classic tongue twister...")
        );
        assert_eq!(r.usage.unwrap().reasoning_tokens(), 832);
    }

    #[test]
    fn function_calls_are_tool_calls() {
        let c = from_response(RESPONSE_FUNCTION_CALL.as_bytes(), &ctx()).unwrap();
        let choice = &c.choices[0];
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(choice.message.content, None);
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "call_unLAR8MvFNptuiZK6K6HCy5k");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_current_weather");
        assert_eq!(
            calls[0].function.arguments,
            r#"{"location":"Boston, MA","unit":"celsius"}"#
        );
    }

    #[test]
    fn incomplete_and_minimal_responses() {
        let mut v: Value = serde_json::from_str(RESPONSE_TEXT).unwrap();
        v["status"] = "incomplete".into();
        v["incomplete_details"] = serde_json::json!({"reason": "max_output_tokens"});
        let c = from_response(v.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("length"));
        v["incomplete_details"] = serde_json::json!({"reason": "content_filter"});
        let c = from_response(v.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(
            c.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );

        // A compatible server's sparse object: the context fills what is missing.
        let sparse = br#"{"id": "r1", "output": [{"type": "message", "content": [
            {"type": "output_text", "text": "a"}, {"type": "refusal", "refusal": "no"},
            {"type": "output_text", "text": "b"}]}]}"#;
        let c = from_response(sparse, &ctx()).unwrap();
        assert_eq!((c.created, c.model.as_str()), (7, "gpt-4.1"));
        assert_eq!(c.choices[0].message.content.as_deref(), Some("ab"));
        assert_eq!(c.choices[0].message.refusal.as_deref(), Some("no"));
        assert!(c.usage.is_none());
    }

    #[test]
    fn a_text_stream_decodes_to_content_then_finish_and_usage() {
        let (s, chunks) = decode(STREAM_TEXT);
        assert!(s.is_done());
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert!(chunks.iter().all(|c| c.id
            == "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
            && c.model == "gpt-4.1-2025-04-14"
            && c.created == 1741290958));
        assert_eq!(content(&chunks), "Hi");
        assert_eq!(finish(&chunks), ["stop"]);
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        let u = last.usage.as_ref().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (37, 11, 48)
        );
    }

    #[test]
    fn a_function_call_stream_decodes_to_tool_call_deltas() {
        let (s, chunks) = decode(STREAM_FUNCTION_CALL);
        assert!(s.is_done());
        let deltas: Vec<&ToolCallDelta> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(deltas.len(), 3);
        assert!(deltas.iter().all(|d| d.index == 0));
        assert_eq!(
            deltas[0].id.as_deref(),
            Some("call_unLAR8MvFNptuiZK6K6HCy5k")
        );
        assert_eq!(deltas[0].kind.as_deref(), Some("function"));
        let f = deltas[0].function.as_ref().unwrap();
        assert_eq!(f.name.as_deref(), Some("get_current_weather"));
        let args: String = deltas
            .iter()
            .filter_map(|d| d.function.as_ref()?.arguments.as_deref())
            .collect();
        assert_eq!(args, r#"{"location":"Boston, MA","unit":"celsius"}"#);
        assert_eq!(finish(&chunks), ["tool_calls"]);
        assert_eq!(
            chunks.last().unwrap().usage.as_ref().unwrap().total_tokens,
            314
        );
    }

    #[test]
    fn two_calls_get_their_own_indexes_and_events_without_names_decode() {
        let mut s = StreamState::new(&ctx());
        let mut out = Vec::new();
        // No `event:` lines (some compatible servers): `type` decides.
        for data in [
            r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"function_call","id":"fc_a","call_id":"call_a","name":"f","arguments":""}}"#,
            r#"{"type":"response.output_item.added","output_index":2,"item":{"type":"function_call","id":"fc_b","call_id":"call_b","name":"g","arguments":""}}"#,
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc_b","output_index":2,"delta":"{}"}"#,
            r#"{"type":"response.function_call_arguments.delta","output_index":1,"delta":"{\"x\":1}"}"#,
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc_unknown","output_index":9,"delta":"lost"}"#,
            r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[]}}"#,
            r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"hmm"}"#,
        ] {
            out.extend(s.on_event("", data).unwrap());
        }
        let deltas: Vec<(u32, Option<&str>)> = out
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .map(|d| {
                (
                    d.index,
                    d.function.as_ref().and_then(|f| f.arguments.as_deref()),
                )
            })
            .collect();
        assert_eq!(
            deltas,
            [
                (0, Some("")),
                (1, Some("")),
                (1, Some("{}")),
                (0, Some("{\"x\":1}"))
            ]
        );
        assert!(!s.is_done());
    }

    #[test]
    fn incomplete_failed_and_error_events() {
        let mut s = StreamState::new(&ctx());
        let chunks = s.on_event("response.incomplete", EVENT_INCOMPLETE).unwrap();
        assert!(s.is_done());
        assert_eq!(finish(&chunks), ["length"]);
        // That example reports no usage: the gateway estimates it.
        assert!(chunks.iter().all(|c| c.usage.is_none()));

        let mut s = StreamState::new(&ctx());
        match s.on_event("response.failed", EVENT_FAILED) {
            Err(ProviderError::Stream(m)) => {
                assert_eq!(m, "The model failed to generate a response.")
            }
            other => panic!("{other:?}"),
        }
        match s.on_event("error", EVENT_ERROR) {
            Err(ProviderError::Stream(m)) => assert_eq!(m, "Something went wrong"),
            other => panic!("{other:?}"),
        }
        // The nested shape some servers send, and a code without a message.
        let nested = r#"{"type":"error","error":{"type":"invalid_request_error","code":"context_length_exceeded","message":"Too long."}}"#;
        assert!(
            matches!(s.on_event("", nested), Err(ProviderError::Stream(m)) if m == "Too long.")
        );
        let bare = r#"{"type":"error","code":"server_error"}"#;
        assert!(
            matches!(s.on_event("", bare), Err(ProviderError::Stream(m)) if m == "server_error")
        );
        assert!(matches!(
            s.on_event("", "{not json"),
            Err(ProviderError::Decode(_))
        ));
        assert!(s.on_event("", "").unwrap().is_empty());
        assert!(s.on_event("", "[DONE]").unwrap().is_empty());
        assert!(s.is_done());
    }
}
