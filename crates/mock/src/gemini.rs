//! Gemini API (`generativelanguage.googleapis.com` shapes): generateContent, streaming,
//! embeddings, token counting and the model list.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::behavior::{Fault, Knobs};
use crate::common::{
    alnum, as_u32, content_text, json_response, key_ok, malformed_response, sse_response, Ctx,
    Flavor, KeyError,
};
use crate::gen::{self, ChoiceOut, Finish, Input, Reply, Thinking, ToolMode, ToolSpec, Transcript};
use crate::sse::{self, Events, Framing};
use crate::state::MockState;

/// `POST .../models/{model}:{action}`: one path segment, split at the last `:`.
pub(crate) async fn model_action(
    State(state): State<MockState>,
    Path(target): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Gemini).await;
    if let Err(resp) = auth(&state, &ctx) {
        return resp;
    }
    let Some((model, action)) = target.rsplit_once(':') else {
        return not_found(&ctx, &target);
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    match action {
        "generateContent" => generate(&state, &ctx, model, None).await,
        "streamGenerateContent" => {
            let framing = if ctx.query("alt") == Some("sse") {
                Framing::Sse("\r\n\r\n")
            } else {
                Framing::JsonArray
            };
            generate(&state, &ctx, model, Some(framing)).await
        }
        "embedContent" => embed(&state, &ctx, model, false).await,
        "batchEmbedContents" => embed(&state, &ctx, model, true).await,
        "countTokens" => count_tokens(&ctx),
        _ => not_found(&ctx, &target),
    }
}

pub(crate) async fn list_models(State(state): State<MockState>, req: Request) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Gemini).await;
    if let Err(resp) = auth(&state, &ctx) {
        return resp;
    }
    let models: Vec<Value> = state
        .config()
        .models
        .iter()
        .map(|m| model_json(m))
        .collect();
    ctx.finish(json_response(StatusCode::OK, &json!({ "models": models })))
}

pub(crate) async fn get_model(
    State(state): State<MockState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::read(&state, req, Flavor::Gemini).await;
    if let Err(resp) = auth(&state, &ctx) {
        return resp;
    }
    ctx.finish(json_response(StatusCode::OK, &model_json(&name)))
}

fn model_json(name: &str) -> Value {
    json!({
        "name": format!("models/{name}"),
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "embedContent", "batchEmbedContents"],
    })
}

fn not_found(ctx: &Ctx, target: &str) -> Response {
    ctx.error(
        StatusCode::NOT_FOUND,
        &format!("models/{target} is not found for API version v1beta, or is not supported."),
    )
}

/// `x-goog-api-key` header or `key` query parameter.
fn auth(state: &MockState, ctx: &Ctx) -> Result<(), Response> {
    let key = ctx.header("x-goog-api-key").or_else(|| ctx.query("key"));
    match key_ok(state, key) {
        Ok(()) => Ok(()),
        Err(KeyError::Missing) => Err(ctx.error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
        Err(KeyError::Wrong) => Err(ctx.error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
        )),
    }
}

/// A field by its REST (camelCase) name, or the snake_case spelling the API also accepts.
fn field<'v>(v: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parts_text(content: &Value) -> String {
    let mut out = String::new();
    if let Some(parts) = content.get("parts").and_then(Value::as_array) {
        for p in parts {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                out.push_str(t);
            }
        }
    }
    out
}

/// The text of a `functionResponse.response`: its `result`/`output`/`content` when it has
/// one, else the whole object as JSON.
fn function_response_text(resp: &Value) -> String {
    for key in ["result", "output", "content"] {
        if let Some(v) = resp.get(key) {
            return content_text(v);
        }
    }
    resp.to_string()
}

/// The text of a `functionResponse.response` that reports a failure: Gemini's convention
/// is an `error` field instead of `output`.
fn function_error(resp: &Value) -> Option<String> {
    let error = resp.get("error").filter(|e| !e.is_null())?;
    if ["result", "output", "content"]
        .iter()
        .any(|k| resp.get(*k).is_some())
    {
        return None;
    }
    Some(content_text(error))
}

fn input_of(body: &Value) -> Input<'_> {
    let mut input = Input::new();
    let mut transcript = Transcript::default();
    let mut seen_user = false;
    if let Some(system) = field(body, "systemInstruction", "system_instruction") {
        transcript.add(&parts_text(system));
    }
    let empty = Vec::new();
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for c in contents {
        let user = c
            .get("role")
            .and_then(Value::as_str)
            .is_none_or(|r| r == "user");
        let text = parts_text(c);
        transcript.add(&text);
        for p in c.get("parts").and_then(Value::as_array).unwrap_or(&empty) {
            if let Some(r) = field(p, "functionResponse", "function_response") {
                transcript.add(&function_response_text(
                    r.get("response").unwrap_or(&Value::Null),
                ));
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
    transcript.finish(&mut input);

    // Function responses after the last model turn (a client may add text of its own after
    // them).
    {
        let mut after_model: Vec<&Value> = contents
            .iter()
            .rev()
            .take_while(|c| c.get("role").and_then(Value::as_str) != Some("model"))
            .collect();
        after_model.reverse();
        let responses: Vec<&Value> = after_model
            .iter()
            .flat_map(|c| {
                c.get("parts")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty)
                    .iter()
            })
            .filter_map(|p| field(p, "functionResponse", "function_response"))
            .map(|r| r.get("response").unwrap_or(&Value::Null))
            .collect();
        input.tool_error = responses.iter().any(|r| function_error(r).is_some());
        let results: Vec<String> = responses
            .iter()
            .map(|r| function_error(r).unwrap_or_else(|| function_response_text(r)))
            .collect();
        if !results.is_empty() {
            input.tool_results = Some(results.join("; "));
        }
    }

    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for t in tools {
            let decls =
                field(t, "functionDeclarations", "function_declarations").and_then(Value::as_array);
            for d in decls.into_iter().flatten() {
                if let Some(name) = d.get("name").and_then(Value::as_str) {
                    let schema = field(d, "parametersJsonSchema", "parameters_json_schema")
                        .or_else(|| d.get("parameters"));
                    input.tools.push(ToolSpec { name, schema });
                }
            }
        }
    }
    let calling = field(body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"));
    if let Some(calling) = calling {
        let allowed: Vec<&str> = field(calling, "allowedFunctionNames", "allowed_function_names")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        input.tool_mode = match calling.get("mode").and_then(Value::as_str) {
            Some("NONE") => ToolMode::None,
            Some("ANY") => match allowed.as_slice() {
                [only] => ToolMode::Named(only),
                _ => ToolMode::Required,
            },
            _ => ToolMode::Auto,
        };
    }

    let config = field(body, "generationConfig", "generation_config");
    if let Some(cfg) = config {
        input.json_schema = field(cfg, "responseJsonSchema", "response_json_schema")
            .or_else(|| field(cfg, "responseSchema", "response_schema"));
        input.max_tokens = as_u32(field(cfg, "maxOutputTokens", "max_output_tokens"));
        input.n = as_u32(field(cfg, "candidateCount", "candidate_count")).unwrap_or(1);
        input.seed = cfg.get("seed").and_then(Value::as_i64);
        let thinking = field(cfg, "thinkingConfig", "thinking_config");
        let include = thinking
            .and_then(|t| field(t, "includeThoughts", "include_thoughts"))
            .and_then(Value::as_bool)
            == Some(true);
        let budget = thinking
            .and_then(|t| field(t, "thinkingBudget", "thinking_budget"))
            .and_then(Value::as_i64);
        input.thinking = match (include, budget) {
            (_, Some(0)) => Thinking::Off,
            (true, _) => Thinking::Visible,
            (false, _) => Thinking::Hidden,
        };
    }
    input
}

async fn generate(state: &MockState, ctx: &Ctx, model: &str, stream: Option<Framing>) -> Response {
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !body.get("contents").is_some_and(Value::is_array) {
        return ctx.error(
            StatusCode::BAD_REQUEST,
            "* GenerateContentRequest.contents: contents is not specified\n",
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
    let r = Render {
        id: alnum(22),
        model,
        reply: &reply,
    };
    if let Some(framing) = stream {
        let events = r.stream_events(framing);
        let (malformed, content_type) = match framing {
            Framing::Sse(_) => (MALFORMED_SSE, "text/event-stream"),
            Framing::JsonArray => (MALFORMED_ARRAY, "application/json; charset=UTF-8"),
        };
        let b = sse::body(state, events, &knobs, malformed);
        return ctx.finish(sse_response(b, content_type));
    }
    ctx.generation_delay(&knobs, reply.output_tokens() + reply.reasoning_tokens())
        .await;
    if knobs.fault == Some(Fault::Malformed) {
        return ctx.finish(malformed_response(ctx.flavor));
    }
    ctx.finish(json_response(StatusCode::OK, &r.response()))
}

const MALFORMED_SSE: &[u8] =
    b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"unterminated\r\n\r\n";
const MALFORMED_ARRAY: &[u8] =
    b",\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"unterminated";

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageOut {
    prompt_token_count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    candidates_token_count: u32,
    total_token_count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u32,
    prompt_tokens_details: [ModalityCount; 1],
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct ModalityCount {
    modality: &'static str,
    #[serde(rename = "tokenCount")]
    token_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut<'a>>,
}

impl<'a> Part<'a> {
    fn text(text: &'a str) -> Part<'a> {
        Part {
            text: Some(text),
            thought: None,
            function_call: None,
        }
    }

    fn thought(text: &'a str) -> Part<'a> {
        Part {
            text: Some(text),
            thought: Some(true),
            function_call: None,
        }
    }
}

#[derive(Serialize)]
struct FunctionCallOut<'a> {
    name: &'a str,
    args: &'a Value,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    parts: Vec<Part<'a>>,
    role: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    candidates: Vec<Candidate<'a>>,
    usage_metadata: UsageOut,
    model_version: &'a str,
    response_id: &'a str,
}

struct Render<'a> {
    id: String,
    model: &'a str,
    reply: &'a Reply,
}

impl Render<'_> {
    /// Usage with `candidates` output tokens so far.
    fn usage(&self, candidates: u32) -> UsageOut {
        let r = self.reply;
        let thoughts = r.reasoning_tokens();
        UsageOut {
            prompt_token_count: r.prompt_tokens,
            candidates_token_count: candidates,
            total_token_count: r.prompt_tokens + candidates + thoughts,
            cached_content_token_count: r.cached_tokens,
            prompt_tokens_details: [ModalityCount {
                modality: "TEXT",
                token_count: r.prompt_tokens,
            }],
            thoughts_token_count: thoughts,
        }
    }

    fn parts<'c>(c: &'c ChoiceOut) -> Vec<Part<'c>> {
        let mut parts = Vec::new();
        if let Some(t) = &c.thinking {
            parts.push(Part::thought(&t.full));
        }
        if let Some(t) = &c.text {
            parts.push(Part::text(&t.full));
        }
        for call in &c.tool_calls {
            parts.push(Part {
                text: None,
                thought: None,
                function_call: Some(FunctionCallOut {
                    name: &call.name,
                    args: &call.args,
                }),
            });
        }
        if parts.is_empty() {
            parts.push(Part::text(""));
        }
        parts
    }

    fn response(&self) -> ResponseOut<'_> {
        ResponseOut {
            candidates: self
                .reply
                .choices
                .iter()
                .enumerate()
                .map(|(i, c)| Candidate {
                    content: ContentOut {
                        parts: Self::parts(c),
                        role: "model",
                    },
                    finish_reason: Some(finish_reason(c.finish)),
                    index: i as u32,
                })
                .collect(),
            usage_metadata: self.usage(self.reply.output_tokens()),
            model_version: self.model,
            response_id: &self.id,
        }
    }

    fn stream_events(&self, framing: Framing) -> Vec<sse::Ev> {
        let mut lists = Vec::with_capacity(self.reply.choices.len());
        let mut first = true;
        let total = self.reply.output_tokens();
        for (i, c) in self.reply.choices.iter().enumerate() {
            // One chunk per piece of thought or text; the function calls come in one chunk.
            let mut groups: Vec<(Vec<Part<'_>>, u32)> = Vec::new();
            if let Some(t) = &c.thinking {
                groups.extend(t.pieces().map(|p| (vec![Part::thought(p)], 0)));
            }
            if let Some(t) = &c.text {
                groups.extend(t.pieces().map(|p| (vec![Part::text(p)], 1)));
            }
            if !c.tool_calls.is_empty() {
                let calls: Vec<Part<'_>> = Self::parts(c)
                    .into_iter()
                    .filter(|p| p.function_call.is_some())
                    .collect();
                let tokens = c
                    .output_tokens
                    .saturating_sub(c.text.as_ref().map_or(0, |t| t.tokens()));
                groups.push((calls, tokens));
            }
            if groups.is_empty() {
                groups.push((vec![Part::text("")], 0));
            }
            // Array framing: only the first list of the stream opens the array.
            let mut ev = if first {
                Events::new(framing, groups.len())
            } else {
                Events::new_continuing(framing, groups.len())
            };
            first = false;
            let count = groups.len();
            let mut so_far = 0;
            for (k, (parts, tokens)) in groups.into_iter().enumerate() {
                so_far += tokens;
                let last = k + 1 == count;
                let chunk = ResponseOut {
                    candidates: vec![Candidate {
                        content: ContentOut {
                            parts,
                            role: "model",
                        },
                        finish_reason: last.then(|| finish_reason(c.finish)),
                        index: i as u32,
                    }],
                    usage_metadata: self.usage(if last { total } else { so_far }),
                    model_version: self.model,
                    response_id: &self.id,
                };
                ev.data(None, &chunk, true);
            }
            lists.push(ev.into_vec());
        }
        let mut events = sse::interleave(lists);
        if framing == Framing::JsonArray {
            let mut tail = Events::new_continuing(framing, 1);
            tail.end();
            events.extend(tail.into_vec());
        }
        events
    }
}

async fn embed(state: &MockState, ctx: &Ctx, model: &str, batch: bool) -> Response {
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let requests: Vec<&Value> = if batch {
        match body.get("requests").and_then(Value::as_array) {
            Some(r) => r.iter().collect(),
            None => {
                return ctx.error(
                    StatusCode::BAD_REQUEST,
                    "* BatchEmbedContentsRequest.requests: requests is not specified\n",
                )
            }
        }
    } else {
        vec![&body]
    };
    if requests.iter().any(|r| r.get("content").is_none()) {
        return ctx.error(
            StatusCode::BAD_REQUEST,
            "* EmbedContentRequest.content: content is not specified\n",
        );
    }
    let knobs = Knobs::resolve(state.config(), model, &ctx.headers);
    if let Some(resp) = ctx.gate(state, &knobs, model).await {
        return resp;
    }
    if knobs.fault == Some(Fault::Malformed) {
        return ctx.finish(malformed_response(ctx.flavor));
    }
    let embeddings: Vec<Values> = requests
        .iter()
        .map(|r| {
            let text = r.get("content").map(parts_text).unwrap_or_default();
            let dims = as_u32(field(r, "outputDimensionality", "output_dimensionality"))
                .filter(|d| *d > 0)
                .unwrap_or(state.config().embedding_dimensions)
                .min(gen::MAX_DIMENSIONS);
            Values {
                values: gen::embedding(gen::hash_str(&text), dims as usize),
            }
        })
        .collect();
    if batch {
        return ctx.finish(json_response(StatusCode::OK, &Batch { embeddings }));
    }
    match embeddings.into_iter().next() {
        Some(embedding) => ctx.finish(json_response(StatusCode::OK, &Single { embedding })),
        None => ctx.error(StatusCode::BAD_REQUEST, "content is not specified"),
    }
}

/// Vectors as f32, like OpenAI's, so the same text prints the same numbers in both APIs.
#[derive(Serialize)]
struct Values {
    values: Vec<f32>,
}

#[derive(Serialize)]
struct Batch {
    embeddings: Vec<Values>,
}

#[derive(Serialize)]
struct Single {
    embedding: Values,
}

fn count_tokens(ctx: &Ctx) -> Response {
    let body = match ctx.json() {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let req = field(&body, "generateContentRequest", "generate_content_request").unwrap_or(&body);
    let input = input_of(req);
    let tokens = gen::prompt_tokens(input.prompt_chars);
    ctx.finish(json_response(
        StatusCode::OK,
        &json!({
            "totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        }),
    ))
}
