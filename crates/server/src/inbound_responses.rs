//! The OpenAI Responses API as a client speaks it to Plexus (`POST /v1/responses`): its request
//! into the canonical (Chat Completions) request, and the canonical answer, whole or streamed,
//! back into a `response` object and the Responses stream's semantic events. Pure conversions,
//! whatever provider serves the call.
//!
//! As for Anthropic clients, what has no canonical equivalent is dropped, never refused (Codex
//! and the Agents SDK retry a 400 in a loop): tools other than functions (`web_search`, Codex's
//! `namespace` and `custom` tools, ...), `reasoning` items of earlier turns, unknown item types.
//! `instructions` become the first system message; `developer` and `system` messages system
//! messages; `function_call` items an assistant message's tool calls (consecutive ones merged),
//! `function_call_output` items tool messages; `text.format` the response format;
//! `reasoning.effort` the reasoning effort; `max_output_tokens` the output cap.

use plexus_core::ApiError;
use plexus_protocol::openai::{
    self as oai, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ContentPart,
    FunctionCall, FunctionDefinition, ImageUrl, JsonSchemaFormat, Message, MessageContent,
    NamedFunction, NamedToolChoice, ResponseFormat, Role, StreamOptions, Tool, ToolCall,
    ToolChoice,
};
use plexus_protocol::responses::{
    Input, OutputTokensDetails, Response, ResponseUsage, ResponsesRequest, TokensDetails,
};
use serde::Serialize;
use serde_json::{json, Map, Value};

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message.into(), param)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A message item's content as canonical content (`None`: nothing usable).
fn content(v: Option<&Value>) -> Option<MessageContent> {
    match v? {
        Value::String(s) => Some(MessageContent::Text(s.clone())),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match str_of(p, "type").unwrap_or("") {
                    "input_text" | "output_text" | "text" => {
                        if let Some(t) = str_of(p, "text") {
                            out.push(ContentPart::text(t));
                        }
                    }
                    "input_image" => {
                        if let Some(url) = str_of(p, "image_url") {
                            out.push(ContentPart {
                                kind: "image_url".into(),
                                text: None,
                                image_url: Some(ImageUrl {
                                    url: url.to_owned(),
                                    detail: str_of(p, "detail").map(str::to_owned),
                                }),
                                extra: oai::Extra::new(),
                            });
                        }
                    }
                    "input_file" => {
                        if let Some(data) = str_of(p, "file_data") {
                            let mut file = Map::new();
                            file.insert("file_data".into(), Value::String(data.to_owned()));
                            if let Some(name) = str_of(p, "filename") {
                                file.insert("filename".into(), Value::String(name.to_owned()));
                            }
                            let mut extra = oai::Extra::new();
                            extra.insert("file".into(), Value::Object(file));
                            out.push(ContentPart {
                                kind: "file".into(),
                                text: None,
                                image_url: None,
                                extra,
                            });
                        }
                    }
                    // Refusals, file ids and future part types have no canonical form.
                    _ => {}
                }
            }
            if out.is_empty() {
                None
            } else if out.iter().all(|p| p.kind == "text") {
                Some(MessageContent::Text(
                    out.into_iter()
                        .filter_map(|p| p.text)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ))
            } else {
                Some(MessageContent::Parts(out))
            }
        }
        _ => None,
    }
}

/// Appends one input item as canonical messages.
fn push_item(out: &mut Vec<Message>, item: &Value) {
    let kind = str_of(item, "type").unwrap_or(if item.get("role").is_some() {
        "message"
    } else {
        ""
    });
    match kind {
        "message" => {
            let role = match str_of(item, "role").unwrap_or("user") {
                "assistant" => Role::Assistant,
                "system" => Role::System,
                "developer" => Role::Developer,
                _ => Role::User,
            };
            let Some(c) = content(item.get("content")) else {
                return;
            };
            let mut m = Message::text(role, String::new());
            m.content = Some(c);
            out.push(m);
        }
        "function_call" => {
            let call = ToolCall {
                id: str_of(item, "call_id")
                    .or_else(|| str_of(item, "id"))
                    .unwrap_or_default()
                    .to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: str_of(item, "name").unwrap_or_default().to_owned(),
                    arguments: str_of(item, "arguments").unwrap_or("{}").to_owned(),
                },
            };
            // Calls right after an assistant message (or each other) belong to that turn.
            match out.last_mut() {
                Some(last) if last.role == Role::Assistant => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call);
                }
                _ => {
                    let mut m = Message::text(Role::Assistant, String::new());
                    m.content = None;
                    m.tool_calls = Some(vec![call]);
                    out.push(m);
                }
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| str_of(p, "text"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let mut m = Message::text(Role::Tool, output);
            m.tool_call_id = str_of(item, "call_id").map(str::to_owned);
            out.push(m);
        }
        // Reasoning items, server-tool calls and unknown types have no canonical form.
        _ => {}
    }
}

/// The conversation of a request: `instructions` first as a system message, then `history`
/// (the items of a stored conversation, for `previous_response_id`), then the input.
/// Instructions of earlier turns are not carried over, as at OpenAI.
pub fn messages(req: &ResponsesRequest, history: &[Value]) -> Vec<Message> {
    let mut out = Vec::new();
    if let Some(i) = req.instructions.as_ref().filter(|i| !i.is_empty()) {
        out.push(Message::text(Role::System, i.clone()));
    }
    for item in history {
        push_item(&mut out, item);
    }
    match &req.input {
        Input::Text(t) => out.push(Message::text(Role::User, t.clone())),
        Input::Items(items) => {
            for item in items {
                push_item(&mut out, item);
            }
        }
    }
    out
}

/// A request's input as items: a string input is one user message.
pub fn input_items(input: &Input) -> Vec<Value> {
    match input {
        Input::Text(t) => vec![json!({
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": t}]
        })],
        Input::Items(items) => items.clone(),
    }
}

/// One stored turn's items as the next turn's history: its input items, then its output
/// items. Ids are dropped except on reasoning items (a provider resolves those by id); the
/// rest were given by Plexus or a provider that would not know them again.
pub fn turn_history(input: &[Value], output: &[Value], out: &mut Vec<Value>) {
    for item in input.iter().chain(output) {
        let mut item = item.clone();
        if let Some(o) = item.as_object_mut() {
            if o.get("type").and_then(Value::as_str) != Some("reasoning") {
                o.remove("id");
            }
        }
        out.push(item);
    }
}

/// Items as `GET /v1/responses/{id}/input_items` lists them: each with an `id` (its own, else
/// one derived from the response id and its position, stable across reads), messages with
/// `type`, `status` and content parts.
pub fn listed_items(response_id: &str, items: &[Value]) -> Vec<Value> {
    let tag = short(response_id);
    items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let mut item = match item {
                Value::Object(o) => o.clone(),
                other => {
                    let mut o = Map::new();
                    o.insert("value".into(), other.clone());
                    o
                }
            };
            let kind = match item.get("type").and_then(Value::as_str) {
                Some(k) => k.to_owned(),
                None => {
                    item.insert("type".into(), json!("message"));
                    "message".to_owned()
                }
            };
            if kind == "message" {
                let output = item.get("role").and_then(Value::as_str) == Some("assistant");
                if let Some(Value::String(text)) = item.get("content") {
                    let part = if output {
                        json!([{"type": "output_text", "text": text, "annotations": []}])
                    } else {
                        json!([{"type": "input_text", "text": text}])
                    };
                    item.insert("content".into(), part);
                }
                item.entry("status").or_insert(json!("completed"));
            }
            if !item.contains_key("id") {
                let prefix = match kind.as_str() {
                    "message" => "msg",
                    "function_call" => "fc",
                    "function_call_output" => "fco",
                    "reasoning" => "rs",
                    _ => "item",
                };
                item.insert("id".into(), json!(format!("{prefix}_{tag}_in{n}")));
            }
            Value::Object(item)
        })
        .collect()
}

/// A Responses request as the canonical request (`history`: see [`messages`]).
pub fn to_canonical(
    req: &ResponsesRequest,
    history: &[Value],
) -> Result<ChatCompletionRequest, ApiError> {
    if req.model.is_empty() {
        return Err(invalid("model", "`model` must not be empty."));
    }
    let messages = messages(req, history);
    if messages
        .iter()
        .all(|m| matches!(m.role, Role::System | Role::Developer))
    {
        return Err(invalid(
            "input",
            "`input` must contain at least one message.",
        ));
    }
    let tools: Vec<Tool> = req
        .tools
        .iter()
        .flatten()
        .filter(|t| str_of(t, "type") == Some("function"))
        .filter_map(|t| {
            Some(Tool {
                kind: "function".into(),
                function: FunctionDefinition {
                    name: str_of(t, "name")?.to_owned(),
                    description: str_of(t, "description").map(str::to_owned),
                    parameters: t.get("parameters").cloned(),
                    strict: t.get("strict").and_then(Value::as_bool),
                },
                extra: oai::Extra::new(),
            })
        })
        .collect();
    let tool_choice = match &req.tool_choice {
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Some(ToolChoice::Mode(s.clone()))
        }
        Some(v) if str_of(v, "type") == Some("function") => str_of(v, "name").map(|n| {
            ToolChoice::Named(NamedToolChoice {
                kind: "function".into(),
                function: NamedFunction { name: n.to_owned() },
            })
        }),
        _ => None,
    };
    let response_format =
        req.text
            .as_ref()
            .and_then(|t| t.get("format"))
            .and_then(|f| match str_of(f, "type") {
                Some("json_schema") => Some(ResponseFormat {
                    kind: "json_schema".into(),
                    json_schema: Some(JsonSchemaFormat {
                        name: str_of(f, "name").unwrap_or("response").to_owned(),
                        description: str_of(f, "description").map(str::to_owned),
                        schema: f.get("schema").cloned(),
                        strict: f.get("strict").and_then(Value::as_bool),
                    }),
                }),
                Some("json_object") => Some(ResponseFormat {
                    kind: "json_object".into(),
                    json_schema: None,
                }),
                _ => None,
            });
    let reasoning_effort = req
        .reasoning
        .as_ref()
        .and_then(|r| str_of(r, "effort"))
        .map(str::to_owned);
    let stream = req.stream == Some(true);
    let has_tools = !tools.is_empty();
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
        max_completion_tokens: req.max_output_tokens,
        user: req.user.clone(),
        tools: has_tools.then_some(tools),
        tool_choice: if has_tools { tool_choice } else { None },
        parallel_tool_calls: if has_tools {
            req.parallel_tool_calls
        } else {
            None
        },
        response_format,
        reasoning_effort,
        ..Default::default()
    })
}

/// Canonical usage in the Responses form.
pub fn usage(u: Option<&oai::Usage>) -> ResponseUsage {
    let Some(u) = u else {
        return ResponseUsage::default();
    };
    ResponseUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: TokensDetails {
            cached_tokens: u.cached_tokens(),
        },
        output_tokens: u.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u.reasoning_tokens(),
        },
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status
    })
}

/// What a response echoes of its request.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub id: String,
    pub created_at: i64,
    /// The model name the client asked for.
    pub model: String,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Map<String, Value>,
    pub background: bool,
}

impl Echo {
    pub fn of(req: &ResponsesRequest, id: String, created_at: i64) -> Echo {
        Echo {
            id,
            created_at,
            model: req.model.clone(),
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            previous_response_id: req.previous_response_id.clone(),
            store: req.store.unwrap_or(true),
            temperature: req.temperature,
            top_p: req.top_p,
            tools: req.tools.clone().unwrap_or_default(),
            tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            metadata: req.metadata.clone().unwrap_or_default(),
            background: req.background.unwrap_or(false),
        }
    }

    /// A response with this echo, `status` and `output`.
    pub fn response(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<ResponseUsage>,
    ) -> Response {
        Response {
            id: self.id.clone(),
            object: "response".into(),
            created_at: self.created_at,
            status: status.into(),
            error: None,
            incomplete_details: (status == "incomplete")
                .then(|| json!({"reason": "max_output_tokens"})),
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            model: self.model.clone(),
            output,
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: self.previous_response_id.clone(),
            store: self.store,
            temperature: self.temperature,
            top_p: self.top_p,
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            usage,
            metadata: self.metadata.clone(),
            background: self.background,
            extra: Map::new(),
        }
    }
}

fn short(id: &str) -> &str {
    id.trim_start_matches("resp_")
}

/// A canonical completion as a `response` object.
pub fn from_completion(c: &ChatCompletion, echo: &Echo) -> Response {
    let mut output = Vec::new();
    let choice = c.choices.first();
    let tag = short(&echo.id);
    if let Some(ch) = choice {
        let m = &ch.message;
        if let Some(t) = m.content.as_ref().filter(|t| !t.is_empty()) {
            output.push(message_item(&format!("msg_{tag}"), t, "completed"));
        }
        for (i, call) in m.tool_calls.iter().flatten().enumerate() {
            output.push(call_item(
                &format!("fc_{tag}_{i}"),
                &call.id,
                &call.function.name,
                &call.function.arguments,
                "completed",
            ));
        }
    }
    let status = match choice.and_then(|c| c.finish_reason.as_deref()) {
        Some("length") => "incomplete",
        _ => "completed",
    };
    echo.response(status, output, Some(usage(c.usage.as_ref())))
}

/// One tool call of a translated stream, gathered until the choice finishes.
#[derive(Debug, Clone, Default)]
struct Call {
    call_id: String,
    name: String,
    arguments: String,
}

/// Where translated stream events go: the server frames them as SSE as they come; tests
/// collect them as values.
pub trait EventSink {
    fn event<T: Serialize>(&mut self, kind: &'static str, data: &T);
}

impl EventSink for Vec<(String, Value)> {
    fn event<T: Serialize>(&mut self, kind: &'static str, data: &T) {
        self.push((
            kind.to_owned(),
            serde_json::to_value(data).unwrap_or(Value::Null),
        ));
    }
}

/// An event's data with its `type` and `sequence_number` first.
#[derive(Serialize)]
struct Sequenced<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    data: &'a T,
}

/// `response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`.
#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a Response,
}

/// `response.output_text.delta`, the most frequent event: written without a JSON tree.
#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

/// Canonical stream chunks → Responses stream events, each with its `sequence_number`. Text
/// streams as it comes; function calls are gathered by index and sent (added, arguments
/// delta, done) when the choice finishes.
#[derive(Debug)]
pub struct EventTranslator {
    echo: Echo,
    sequence: u64,
    started: bool,
    /// `msg_<id>`, the text item's id.
    message_id: String,
    text: Option<String>,
    calls: Vec<(u32, Call)>,
    finish: Option<String>,
    usage: Option<oai::Usage>,
    output: Vec<Value>,
    /// The response of the closing event, once sent.
    last: Option<Response>,
}

impl EventTranslator {
    pub fn new(echo: Echo) -> Self {
        let message_id = format!("msg_{}", short(&echo.id));
        EventTranslator {
            echo,
            sequence: 0,
            started: false,
            message_id,
            text: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            output: Vec::new(),
            last: None,
        }
    }

    fn emit<T: Serialize>(&mut self, out: &mut impl EventSink, kind: &'static str, data: &T) {
        out.event(
            kind,
            &Sequenced {
                kind,
                sequence_number: self.sequence,
                data,
            },
        );
        self.sequence += 1;
    }

    /// The response of the closing event (`completed`, `incomplete` or `failed`), once it was
    /// sent.
    pub fn take_last(&mut self) -> Option<Response> {
        self.last.take()
    }

    /// `response.created` and `response.in_progress`, once.
    pub fn start(&mut self, out: &mut impl EventSink) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.echo.response("in_progress", Vec::new(), None);
        self.emit(out, "response.created", &WithResponse { response: &r });
        self.emit(out, "response.in_progress", &WithResponse { response: &r });
    }

    /// The events for one canonical chunk.
    pub fn on_chunk(&mut self, chunk: &ChatCompletionChunk, out: &mut impl EventSink) {
        self.start(out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else {
            return;
        };
        if let Some(t) = choice.delta.content.as_ref().filter(|t| !t.is_empty()) {
            if self.text.is_none() {
                self.text = Some(String::new());
                let id = &self.message_id;
                let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                let added = json!({"output_index": 0, "item": item});
                let part = json!({"item_id": id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}});
                self.emit(out, "response.output_item.added", &added);
                self.emit(out, "response.content_part.added", &part);
            }
            if let Some(text) = self.text.as_mut() {
                text.push_str(t);
            }
            let delta = TextDelta {
                item_id: &self.message_id,
                output_index: 0,
                content_index: 0,
                delta: t,
                logprobs: [],
            };
            out.event(
                "response.output_text.delta",
                &Sequenced {
                    kind: "response.output_text.delta",
                    sequence_number: self.sequence,
                    data: &delta,
                },
            );
            self.sequence += 1;
        }
        for tc in choice.delta.tool_calls.iter().flatten() {
            let pos = match self.calls.iter().position(|(k, _)| *k == tc.index) {
                Some(p) => p,
                None => {
                    self.calls.push((tc.index, Call::default()));
                    self.calls.len() - 1
                }
            };
            let c = &mut self.calls[pos].1;
            if let Some(id) = tc.id.as_ref().filter(|i| !i.is_empty()) {
                if c.call_id.is_empty() {
                    c.call_id = id.clone();
                }
            }
            if let Some(f) = &tc.function {
                if let Some(n) = f.name.as_ref().filter(|n| !n.is_empty()) {
                    if c.name.is_empty() {
                        c.name = n.clone();
                    }
                }
                if let Some(a) = &f.arguments {
                    c.arguments.push_str(a);
                }
            }
        }
        if let Some(f) = &choice.finish_reason {
            self.finish = Some(f.clone());
        }
    }

    /// The closing events: the text's done events, the gathered calls, `response.completed`
    /// (or `response.incomplete`) with the whole response.
    pub fn finish(&mut self, out: &mut impl EventSink) {
        self.start(out);
        if let Some(text) = self.text.take() {
            let id = self.message_id.clone();
            let done = json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []});
            self.emit(out, "response.output_text.done", &done);
            let part = json!({"item_id": id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": text, "annotations": []}});
            self.emit(out, "response.content_part.done", &part);
            let item = message_item(&id, &text, "completed");
            self.emit(
                out,
                "response.output_item.done",
                &json!({"output_index": 0, "item": item}),
            );
            self.output.push(item);
        }
        self.calls.sort_by_key(|(k, _)| *k);
        let tag = short(&self.echo.id).to_owned();
        for (k, c) in std::mem::take(&mut self.calls) {
            let index = self.output.len();
            let id = format!("fc_{tag}_{k}");
            let call_id = if c.call_id.is_empty() {
                format!("call_{tag}_{k}")
            } else {
                c.call_id
            };
            let added = call_item(&id, &call_id, &c.name, "", "in_progress");
            self.emit(
                out,
                "response.output_item.added",
                &json!({"output_index": index, "item": added}),
            );
            self.emit(
                out,
                "response.function_call_arguments.delta",
                &json!({"item_id": id, "output_index": index, "delta": c.arguments}),
            );
            self.emit(
                out,
                "response.function_call_arguments.done",
                &json!({"item_id": id, "output_index": index, "arguments": c.arguments}),
            );
            let done = call_item(&id, &call_id, &c.name, &c.arguments, "completed");
            self.emit(
                out,
                "response.output_item.done",
                &json!({"output_index": index, "item": done}),
            );
            self.output.push(done);
        }
        let status = if self.finish.as_deref() == Some("length") {
            "incomplete"
        } else {
            "completed"
        };
        let r = self.echo.response(
            status,
            std::mem::take(&mut self.output),
            Some(usage(self.usage.as_ref())),
        );
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, &WithResponse { response: &r });
        self.last = Some(r);
    }

    /// A failure mid-stream: `response.failed` with the error.
    pub fn failed(&mut self, code: &str, message: &str, out: &mut impl EventSink) {
        self.start(out);
        let mut r = self
            .echo
            .response("failed", std::mem::take(&mut self.output), None);
        r.error = Some(json!({"code": code, "message": message}));
        self.emit(out, "response.failed", &WithResponse { response: &r });
        self.last = Some(r);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn req(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).unwrap()
    }

    /// A Codex-style turn: developer instructions, a user message, the earlier shell call and
    /// its output, tools of several types.
    #[test]
    fn a_codex_turn_becomes_canonical() {
        let r = req(json!({
            "model": "gpt-5-codex", "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: none."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run `ls`."}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "exec_command", "arguments": "{\"cmd\":\"pwd\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
                {"type": "function_call_output", "call_id": "call_2", "output": "/tmp"}
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}, "strict": false},
                {"type": "web_search"}, {"type": "namespace", "name": "mcp"}, {"type": "custom", "name": "apply_patch"}
            ],
            "tool_choice": "auto", "parallel_tool_calls": true,
            "reasoning": {"effort": "high", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 500, "store": false, "stream": true, "include": ["reasoning.encrypted_content"]
        }));
        let c = serde_json::to_value(to_canonical(&r, &[]).unwrap()).unwrap();
        let roles: Vec<&str> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "developer", "user", "assistant", "tool", "tool"]
        );
        assert_eq!(c["messages"][0]["content"], "You are Codex.");
        assert_eq!(c["messages"][3]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            c["messages"][3]["tool_calls"][1]["function"]["arguments"],
            "{\"cmd\":\"pwd\"}"
        );
        assert_eq!(c["messages"][5]["tool_call_id"], "call_2");
        assert_eq!(
            c["tools"].as_array().unwrap().len(),
            1,
            "only function tools"
        );
        assert_eq!(c["reasoning_effort"], "high");
        assert_eq!(c["response_format"]["json_schema"]["name"], "out");
        assert_eq!(c["max_completion_tokens"], 500);
        assert_eq!(c["stream_options"]["include_usage"], true);
        assert!(c.get("include").is_none() && c.get("store").is_none());
        // A string input and a stored history.
        let r = req(json!({"model": "m", "input": "Again?"}));
        let history = vec![
            json!({"role": "user", "content": "Hi"}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}),
            json!({"type": "reasoning", "id": "rs_1", "summary": []}),
        ];
        let c = serde_json::to_value(to_canonical(&r, &history).unwrap()).unwrap();
        let roles: Vec<&str> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        let err = to_canonical(&req(json!({"model": "m", "input": []})), &[]).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }

    fn echo() -> Echo {
        Echo::of(
            &req(json!({"model": "gpt-x", "input": "x"})),
            "resp_abc".into(),
            7,
        )
    }

    #[test]
    fn a_completion_becomes_a_response() {
        let c: ChatCompletion = serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Running it.",
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35, "prompt_tokens_details": {"cached_tokens": 10}}
        }))
        .unwrap();
        let r = serde_json::to_value(from_completion(&c, &echo())).unwrap();
        assert_eq!(r["id"], "resp_abc");
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], "gpt-x");
        assert_eq!(r["output"][0]["content"][0]["text"], "Running it.");
        assert_eq!(r["output"][1]["type"], "function_call");
        assert_eq!(r["output"][1]["call_id"], "call_9");
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 10);
        assert_eq!(r["usage"]["total_tokens"], 35);
    }

    #[test]
    fn a_stream_becomes_semantic_events_with_increasing_sequence_numbers() {
        let chunk = |v: Value| -> ChatCompletionChunk {
            let mut base = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x", "choices": []});
            for (k, val) in v.as_object().unwrap() {
                base[k] = val.clone();
            }
            serde_json::from_value(base).unwrap()
        };
        let mut t = EventTranslator::new(echo());
        let mut ev = Vec::new();
        for c in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
        ] {
            t.on_chunk(&chunk(c), &mut ev);
        }
        t.finish(&mut ev);
        assert_eq!(t.take_last().unwrap().status, "completed");
        let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (k, d)) in ev.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64);
            assert_eq!(d["type"], k.as_str());
        }
        assert_eq!(ev[6].1["text"], "Hello");
        assert_eq!(ev[11].1["arguments"], "{\"a\":1}");
        let done = &ev[13].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["usage"]["output_tokens"], 4);
        let mut t = EventTranslator::new(echo());
        let mut failed = Vec::new();
        t.failed("upstream_error", "boom", &mut failed);
        assert_eq!(failed.last().unwrap().0, "response.failed");
        assert_eq!(
            failed.last().unwrap().1["response"]["error"]["code"],
            "upstream_error"
        );
    }
}
