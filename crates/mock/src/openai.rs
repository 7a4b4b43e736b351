//! OpenAI Chat Completions, Embeddings and Models, and their Azure OpenAI variants.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::behavior::{Fault, Knobs};
use crate::common::{
    alnum, as_u32, bearer, content_text, json_response, key_ok, malformed_response, sse_response,
    unix_now, Ctx, Flavor, KeyError,
};
use crate::gen::{self, ChoiceOut, Finish, Input, Reply, Text, ToolMode, ToolSpec, Transcript};
use crate::sse::{self, Events, Framing};
use crate::state::MockState;

pub(crate) async fn chat(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::OpenAi).await;
    if let Err(resp) = openai_auth(&state, &ctx) {
        return resp;
    }
    chat_inner(&state, &ctx, None).await
}

pub(crate) async fn azure_chat(
    State(state): State<MockState>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Azure).await;
    if let Err(resp) = azure_gate(&state, &ctx) {
        return resp;
    }
    chat_inner(&state, &ctx, Some(&deployment)).await
}

pub(crate) async fn embeddings(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::OpenAi).await;
    if let Err(resp) = openai_auth(&state, &ctx) {
        return resp;
    }
    embeddings_inner(&state, &ctx, None).await
}

pub(crate) async fn azure_embeddings(
    State(state): State<MockState>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Azure).await;
    if let Err(resp) = azure_gate(&state, &ctx) {
        return resp;
    }
    embeddings_inner(&state, &ctx, Some(&deployment)).await
}

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

const MODEL_CREATED: u64 = 1_700_000_000;

pub(crate) async fn models(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::OpenAi).await;
    if let Err(resp) = openai_auth(&state, &ctx) {
        return resp;
    }
    let data: Vec<ModelObject<'_>> = state
        .config()
        .models
        .iter()
        .map(|id| ModelObject {
            id,
            object: "model",
            created: MODEL_CREATED,
            owned_by: "plexus-mock",
        })
        .collect();
    ctx.finish(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}

/// Every model exists: behaviour comes from the name.
pub(crate) async fn model(
    State(state): State<MockState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::OpenAi).await;
    if let Err(resp) = openai_auth(&state, &ctx) {
        return resp;
    }
    ctx.finish(json_response(
        StatusCode::OK,
        &ModelObject {
            id: &id,
            object: "model",
            created: MODEL_CREATED,
            owned_by: "plexus-mock",
        },
    ))
}

pub(crate) fn openai_auth(state: &MockState, ctx: &Ctx) -> Result<(), Response> {
    match key_ok(state, bearer(&ctx.headers)) {
        Ok(()) => Ok(()),
        Err(KeyError::Missing) => Err(ctx.error_full(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            Some("invalid_api_key"),
            None,
        )),
        Err(KeyError::Wrong) => Err(ctx.error_full(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            Some("invalid_api_key"),
            None,
        )),
    }
}

/// Azure wants `api-version` (404 without it, like the real service) and an `api-key` header
/// or an Entra ID bearer token.
fn azure_gate(state: &MockState, ctx: &Ctx) -> Result<(), Response> {
    if ctx.query("api-version").is_none_or(str::is_empty) {
        return Err(ctx.error(StatusCode::NOT_FOUND, "Resource not found"));
    }
    let key = ctx.header("api-key").or_else(|| bearer(&ctx.headers));
    key_ok(state, key).map_err(|_| {
        ctx.error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )
    })
}

fn input_of(body: &Value) -> Input<'_> {
    let mut input = Input::new();
    let mut transcript = Transcript::default();
    let mut seen_user = false;
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for m in messages {
        let text = m.get("content").map(content_text).unwrap_or_default();
        transcript.add(&text);
        if m.get("role").and_then(Value::as_str) == Some("user") {
            if !seen_user {
                seen_user = true;
                input.first_user = text.clone();
            }
            input.last_user = text;
        }
    }
    transcript.finish(&mut input);

    // Tool results after the last assistant turn (an agent client may add a user message of
    // its own, such as a reminder, after them).
    let trailing: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m.get("role").and_then(Value::as_str) != Some("assistant"))
        .filter(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("tool" | "function")
            )
        })
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
        .collect();
    if !trailing.is_empty() {
        let ordered: Vec<String> = trailing.into_iter().rev().collect();
        input.tool_results = Some(ordered.join("; "));
    }

    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        input.tools = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function")?;
                Some(ToolSpec {
                    name: f.get("name")?.as_str()?,
                    schema: f.get("parameters"),
                })
            })
            .collect();
    } else if let Some(functions) = body.get("functions").and_then(Value::as_array) {
        input.tools = functions
            .iter()
            .filter_map(|f| {
                Some(ToolSpec {
                    name: f.get("name")?.as_str()?,
                    schema: f.get("parameters"),
                })
            })
            .collect();
    }
    let choice = body
        .get("tool_choice")
        .or_else(|| body.get("function_call"));
    input.tool_mode = match choice {
        Some(Value::String(s)) if s == "none" => ToolMode::None,
        Some(Value::String(s)) if s == "required" => ToolMode::Required,
        Some(Value::Object(o)) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| o.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => ToolMode::Named(name),
            None => ToolMode::Auto,
        },
        _ => ToolMode::Auto,
    };
    input.parallel_tool_calls = body
        .get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    input.json_schema = body
        .get("response_format")
        .and_then(|f| f.get("json_schema"))
        .and_then(|s| s.get("schema"));
    input.max_tokens = as_u32(body.get("max_completion_tokens")).or(as_u32(body.get("max_tokens")));
    input.n = as_u32(body.get("n")).unwrap_or(1);
    input.seed = body.get("seed").and_then(Value::as_i64);
    input.thinking = match body.get("reasoning_effort").and_then(Value::as_str) {
        Some("none") => gen::Thinking::Off,
        _ => gen::Thinking::Hidden,
    };
    input
}

async fn chat_inner(state: &MockState, ctx: &Ctx, deployment: Option<&str>) -> Response {
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let model = match (deployment, body.get("model").and_then(Value::as_str)) {
        (Some(d), _) => d,
        (None, Some(m)) if !m.is_empty() => m,
        (None, _) => {
            return ctx.error_full(
                StatusCode::BAD_REQUEST,
                "you must provide a model parameter",
                None,
                None,
            )
        }
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return ctx.error_full(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'messages'.",
            Some("missing_required_parameter"),
            Some("messages"),
        );
    }
    let knobs = Knobs::resolve(state.config(), model, &ctx.headers);
    if let Some(resp) = ctx.gate(state, &knobs, model).await {
        return resp;
    }
    let input = input_of(&body);
    if let Some(resp) = ctx.context_gate(&knobs, gen::prompt_tokens(input.prompt_chars)) {
        return resp;
    }
    let reply = gen::generate(model, &input, &knobs);
    let azure = ctx.flavor == Flavor::Azure;
    let r = Render {
        id: format!("chatcmpl-{}", alnum(29)),
        created: unix_now(),
        model,
        reply: &reply,
        azure,
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let events = r.stream_events(include_usage);
        let b = sse::body(state, events, &knobs, MALFORMED_CHUNK);
        return ctx.finish(sse_response(b, "text/event-stream; charset=utf-8"));
    }
    ctx.generation_delay(&knobs, reply.output_tokens() + reply.reasoning_tokens())
        .await;
    if knobs.fault == Some(Fault::Malformed) {
        return ctx.finish(malformed_response(ctx.flavor));
    }
    ctx.finish(json_response(StatusCode::OK, &r.completion()))
}

const MALFORMED_CHUNK: &[u8] =
    b"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"unterminated\n\n";

/// Azure's first streamed chunk: prompt filter results and no choices.
const AZURE_PROMPT_FILTER_CHUNK: &[u8] = b"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n";

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u32,
    audio_tokens: u32,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u32,
    audio_tokens: u32,
    accepted_prediction_tokens: u32,
    rejected_prediction_tokens: u32,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct ChoiceJson<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<Value>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceJson<'a>>,
    usage: UsageOut,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_filter_results: Option<Value>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// `null` on every chunk when the client asked for usage, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a UsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<()>>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

struct Render<'a> {
    id: String,
    created: u64,
    model: &'a str,
    reply: &'a Reply,
    azure: bool,
}

fn call_id() -> String {
    format!("call_{}", alnum(24))
}

impl Render<'_> {
    fn usage(&self) -> UsageOut {
        let reply = self.reply;
        let completion = reply.output_tokens() + reply.reasoning_tokens();
        UsageOut {
            prompt_tokens: reply.prompt_tokens,
            completion_tokens: completion,
            total_tokens: reply.prompt_tokens + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: reply.cached_tokens,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: reply.reasoning_tokens(),
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }

    fn completion(&self) -> Completion<'_> {
        let choices = self
            .reply
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| ChoiceJson {
                index: i as u32,
                message: MessageOut {
                    role: "assistant",
                    content: if c.tool_calls.is_empty() {
                        Some(c.text.as_ref().map_or("", |t| t.full.as_str()))
                    } else {
                        None
                    },
                    refusal: None,
                    tool_calls: c
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallOut {
                            id: call_id(),
                            kind: "function",
                            function: FunctionOut {
                                name: &t.name,
                                arguments: &t.args_json,
                            },
                        })
                        .collect(),
                    annotations: [],
                },
                logprobs: None,
                finish_reason: finish_reason(c.finish),
                content_filter_results: self.azure.then(|| json!({})),
            })
            .collect();
        Completion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices,
            usage: self.usage(),
            service_tier: "default",
            system_fingerprint: "fp_plexus_mock",
            prompt_filter_results: self
                .azure
                .then(|| json!([{"prompt_index": 0, "content_filter_results": {}}])),
        }
    }

    fn chunk<'c>(&'c self, choices: &'c [ChunkChoice<'c>], include_usage: bool) -> Chunk<'c> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            service_tier: "default",
            system_fingerprint: "fp_plexus_mock",
            choices,
            usage: include_usage.then_some(None),
        }
    }

    fn stream_events(&self, include_usage: bool) -> Vec<sse::Ev> {
        let mut lists = Vec::with_capacity(self.reply.choices.len() + 2);
        for (i, c) in self.reply.choices.iter().enumerate() {
            lists.push(self.choice_events(i as u32, c, include_usage));
        }
        let mut events = sse::interleave(lists);
        let mut tail = Events::new(Framing::Sse("\n\n"), 2);
        if include_usage {
            let usage = self.usage();
            let mut chunk = self.chunk(&[], false);
            chunk.usage = Some(Some(&usage));
            tail.data(None, &chunk, false);
        }
        tail.raw(b"data: [DONE]\n\n", false);
        let mut head = Vec::with_capacity(events.len() + 3);
        if self.azure {
            let mut first = Events::new(Framing::Sse("\n\n"), 1);
            first.raw(AZURE_PROMPT_FILTER_CHUNK, false);
            head.extend(first.into_vec());
        }
        head.append(&mut events);
        head.extend(tail.into_vec());
        head
    }

    fn choice_events(&self, index: u32, c: &ChoiceOut, include_usage: bool) -> Vec<sse::Ev> {
        let text = c.text.as_ref();
        let pieces = text.map_or(0, |t| t.tokens() as usize);
        let mut ev = Events::new(Framing::Sse("\n\n"), pieces + 8);
        let emit =
            |ev: &mut Events, delta: Delta<'_>, finish: Option<&'static str>, content: bool| {
                let choice = [ChunkChoice {
                    index,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                }];
                ev.data(None, &self.chunk(&choice, include_usage), content);
            };
        if c.tool_calls.is_empty() {
            emit(
                &mut ev,
                Delta {
                    role: Some("assistant"),
                    content: Some(Some("")),
                    refusal: Some(None),
                    ..Delta::default()
                },
                None,
                false,
            );
            for piece in text.iter().flat_map(|t| t.pieces()) {
                emit(
                    &mut ev,
                    Delta {
                        content: Some(Some(piece)),
                        ..Delta::default()
                    },
                    None,
                    true,
                );
            }
        }
        for (k, call) in c.tool_calls.iter().enumerate() {
            let id = call_id();
            let header = ToolCallDelta {
                index: k as u32,
                id: Some(&id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(&call.name),
                    arguments: "",
                },
            };
            let first = k == 0;
            emit(
                &mut ev,
                Delta {
                    role: first.then_some("assistant"),
                    content: first.then_some(None),
                    tool_calls: Some([header]),
                    refusal: first.then_some(None),
                },
                None,
                !first,
            );
            for piece in Text::chunks(&call.args_json, 8).pieces() {
                emit(
                    &mut ev,
                    Delta {
                        tool_calls: Some([ToolCallDelta {
                            index: k as u32,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: piece,
                            },
                        }]),
                        ..Delta::default()
                    },
                    None,
                    true,
                );
            }
        }
        emit(
            &mut ev,
            Delta::default(),
            Some(finish_reason(c.finish)),
            false,
        );
        ev.into_vec()
    }
}

#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: u32,
    embedding: EmbeddingVector,
}

#[derive(Serialize)]
struct EmbeddingsOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

async fn embeddings_inner(state: &MockState, ctx: &Ctx, deployment: Option<&str>) -> Response {
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let model = match (deployment, body.get("model").and_then(Value::as_str)) {
        (Some(d), _) => d,
        (None, Some(m)) if !m.is_empty() => m,
        (None, _) => {
            return ctx.error(
                StatusCode::BAD_REQUEST,
                "you must provide a model parameter",
            )
        }
    };
    // Each input: its hash and its length in characters.
    let inputs: Vec<(u64, usize)> = match body.get("input") {
        Some(Value::String(s)) => vec![(gen::hash_str(s), s.chars().count())],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_number) {
                vec![(gen::hash_tokens(items), items.len() * 4)]
            } else {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => (gen::hash_str(s), s.chars().count()),
                        Value::Array(tokens) => (gen::hash_tokens(tokens), tokens.len() * 4),
                        other => (gen::hash_str(&other.to_string()), 1),
                    })
                    .collect()
            }
        }
        _ => {
            return ctx.error_full(
                StatusCode::BAD_REQUEST,
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                None,
                None,
            )
        }
    };
    let knobs = Knobs::resolve(state.config(), model, &ctx.headers);
    if let Some(resp) = ctx.gate(state, &knobs, model).await {
        return resp;
    }
    if knobs.fault == Some(Fault::Malformed) {
        return ctx.finish(malformed_response(ctx.flavor));
    }
    let dims = as_u32(body.get("dimensions"))
        .filter(|d| *d > 0)
        .unwrap_or(state.config().embedding_dimensions)
        .min(gen::MAX_DIMENSIONS) as usize;
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut prompt_chars = 0;
    let data: Vec<EmbeddingOut> = inputs
        .iter()
        .enumerate()
        .map(|(i, (hash, chars))| {
            prompt_chars += chars;
            let v = gen::embedding(*hash, dims);
            EmbeddingOut {
                object: "embedding",
                index: i as u32,
                embedding: if base64 {
                    EmbeddingVector::Base64(gen::embedding_base64(&v))
                } else {
                    EmbeddingVector::Float(v)
                },
            }
        })
        .collect();
    let tokens = gen::prompt_tokens(prompt_chars);
    ctx.finish(json_response(
        StatusCode::OK,
        &EmbeddingsOut {
            object: "list",
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        },
    ))
}
