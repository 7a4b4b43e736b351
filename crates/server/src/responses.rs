//! The OpenAI Responses API in front of the gateway.
//!
//! `POST /v1/responses`, plain, streamed or in the background, on every provider kind: the
//! request runs through the gateway's pipeline like any chat request, translated
//! (`inbound_responses.rs`) or, for a provider that speaks the Responses API, passed through.
//! Responses are stored (`store`, default true) in the `responses` table, which
//! `previous_response_id`, `GET /v1/responses/{id}`, `DELETE`, `cancel` and `input_items`
//! read on any instance; only the key that created a response may use it (anyone else gets
//! 404). Errors are OpenAI-shaped.

use crate::chat::{failure_response, intake, json_response};
use crate::error::HttpError;
use crate::inbound_responses as convert;
use crate::middleware::{Auth, Call};
use crate::{headers, AppState};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use plexus_auth::roles::Principal;
use plexus_core::{ApiError, ErrorCode};
use plexus_gateway::{Answer, AnswerMeta, AnswerStream, CallCtx, ChatRequest, Gateway};
use plexus_protocol::money::Nanos;
use plexus_protocol::responses::ResponsesRequest;
use plexus_store::{StoredResponse, RUNNING};
use serde_json::{json, Value};
use std::convert::Infallible;

fn sse_event(out: &mut BytesMut, kind: &str, data: &[u8]) {
    out.reserve(data.len() + kind.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

fn sse_value(out: &mut BytesMut, kind: &str, data: &Value) {
    sse_event(out, kind, &serde_json::to_vec(data).unwrap_or_default());
}

fn store_error(e: plexus_store::StoreError) -> HttpError {
    HttpError(plexus_gateway::error::from_store(e))
}

/// A response id: `resp_` and the gateway's request id (unique across instances).
fn response_id(request_id: &str) -> String {
    format!("resp_{}", request_id.trim_start_matches("req_"))
}

/// The lifecycle events of the Responses stream, which carry the whole response object.
fn is_lifecycle(event: &str) -> bool {
    matches!(
        event,
        "response.created"
            | "response.in_progress"
            | "response.queued"
            | "response.completed"
            | "response.incomplete"
            | "response.failed"
    )
}

/// What a response the client reads must say whoever produced it: Plexus's id, the client's
/// model name, and the request's own settings (a passed-through answer has the provider's).
fn as_ours(response: &mut Value, echo: &convert::Echo) {
    if let Some(o) = response.as_object_mut() {
        o.insert("id".into(), json!(echo.id));
        o.insert("model".into(), json!(echo.model));
        o.insert(
            "previous_response_id".into(),
            json!(echo.previous_response_id),
        );
        o.insert("store".into(), json!(echo.store));
        o.insert("background".into(), json!(echo.background));
        // What a provider sent as null (or left out) that the object always has.
        let mut fill = |key: &str, value: Value| {
            if o.get(key).is_none_or(Value::is_null) {
                o.insert(key.into(), value);
            }
        };
        fill("metadata", Value::Object(echo.metadata.clone()));
        fill("parallel_tool_calls", json!(echo.parallel_tool_calls));
        fill("tools", Value::Array(echo.tools.clone()));
        fill("tool_choice", echo.tool_choice.clone());
        fill("output", json!([]));
    }
}

/// Everything a `POST /v1/responses` needs before it runs.
struct Plan {
    chat: plexus_protocol::openai::ChatCompletionRequest,
    /// The body a provider that speaks the Responses API receives (the stored conversation
    /// spelled out, gateway-only fields removed).
    upstream: Bytes,
    echo: convert::Echo,
    /// This turn's input items, for the stored row.
    input_items: Vec<Value>,
}

fn previous_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("Previous response with id '{id}' not found."),
    )
    .with_param("previous_response_id")
}

/// Checks the request and rebuilds the stored conversation it continues.
async fn plan(
    gateway: &Gateway,
    ctx: &CallCtx,
    typed: &ResponsesRequest,
    body: &Bytes,
) -> Result<Plan, ApiError> {
    let store = typed.store.unwrap_or(true);
    let background = typed.background.unwrap_or(false);
    if background && !store {
        return Err(ApiError::invalid_request(
            "`background` needs `store` (a background response is read back by its id).",
            "store",
        ));
    }
    if background && typed.stream == Some(true) {
        return Err(ApiError::invalid_request(
            "Streaming a background response is not supported; poll `GET /v1/responses/{id}` instead.",
            "stream",
        ));
    }
    let mut history = Vec::new();
    if let Some(previous) = &typed.previous_response_id {
        let chain = gateway
            .response_chain(previous)
            .await
            .map_err(plexus_gateway::error::from_store)?;
        match chain.last() {
            Some(last) if last.key_id == ctx.principal.id => {
                if last.is_running() {
                    return Err(ApiError::invalid_request(
                        format!(
                            "Previous response '{previous}' is still {}; wait until it ends.",
                            last.status
                        ),
                        "previous_response_id",
                    ));
                }
            }
            _ => return Err(previous_not_found(previous)),
        }
        for turn in &chain {
            let input: Vec<Value> = serde_json::from_str(&turn.input_items).unwrap_or_default();
            let response: Value = serde_json::from_str(&turn.response).unwrap_or(Value::Null);
            let output = response
                .get("output")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            convert::turn_history(&input, output, &mut history);
        }
    }
    let chat = convert::to_canonical(typed, &history)?;
    let input_items = convert::input_items(&typed.input);
    let upstream = if typed.previous_response_id.is_some() || typed.background.is_some() {
        let mut v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON: {e}"), "body"))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("previous_response_id");
            o.remove("background");
            if !history.is_empty() {
                history.extend(input_items.iter().cloned());
                o.insert("input".into(), Value::Array(history));
            }
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    } else {
        body.clone()
    };
    let echo = convert::Echo::of(
        typed,
        response_id(&ctx.request_id),
        gateway.clock().now_unix_secs(),
    );
    Ok(Plan {
        chat,
        upstream,
        echo,
        input_items,
    })
}

/// The row of a stored response.
/// The row of a stored response; `text` is `response` serialized (when the caller has it).
fn row(
    gateway: &Gateway,
    owner: &str,
    plan_items: &[Value],
    response: &Value,
    text: Option<String>,
) -> StoredResponse {
    let now = gateway.clock().now_unix_ms();
    let str_field = |k: &str| response.get(k).and_then(Value::as_str).map(str::to_owned);
    StoredResponse {
        id: str_field("id").unwrap_or_default(),
        key_id: owner.to_owned(),
        previous_response_id: str_field("previous_response_id"),
        status: str_field("status").unwrap_or_else(|| "completed".into()),
        background: response.get("background").and_then(Value::as_bool) == Some(true),
        input_items: serde_json::to_string(plan_items).unwrap_or_else(|_| "[]".into()),
        response: text.unwrap_or_else(|| response.to_string()),
        interrupted: None,
        instance_id: None,
        heartbeat_ms: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// A whole answer as the client's response object.
fn answered(full: &plexus_gateway::FullAnswer, echo: &convert::Echo) -> Result<Value, ApiError> {
    let mut response = if full.meta.native {
        serde_json::from_slice::<Value>(&full.body)
            .map_err(|e| ApiError::internal(format!("unreadable answer: {e}")))?
    } else {
        let completion = full.completion()?;
        serde_json::to_value(convert::from_completion(&completion, echo))
            .map_err(|e| ApiError::internal(format!("cannot encode: {e}")))?
    };
    as_ours(&mut response, echo);
    Ok(response)
}

/// A failed run as a response object.
fn failed(echo: &convert::Echo, error: &ApiError) -> Value {
    let mut r = echo.response("failed", Vec::new(), None);
    r.error = Some(json!({"code": error.code.as_str(), "message": error.message}));
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// Stores the final response of a stream, when it is to be stored.
struct Keep {
    gateway: Gateway,
    owner: String,
    input_items: Vec<Value>,
}

impl Keep {
    fn save(&self, response: &Value) {
        self.save_text(response, None);
    }

    fn save_text(&self, response: &Value, text: Option<String>) {
        let row = row(
            &self.gateway,
            &self.owner,
            &self.input_items,
            response,
            text,
        );
        self.gateway.save_response(row);
    }
}

fn sse_response(
    body: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
    meta: &AnswerMeta,
) -> Response {
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers::apply_meta(h, meta);
    resp
}

/// Translated events, framed as SSE as they come.
struct SseSink(BytesMut);

impl SseSink {
    fn take(&mut self) -> Bytes {
        self.0.split().freeze()
    }
}

impl convert::EventSink for SseSink {
    fn event<T: serde::Serialize>(&mut self, kind: &'static str, data: &T) {
        let out = &mut self.0;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        // Writing into memory cannot fail, and the events' types always serialize.
        let _ = serde_json::to_writer((&mut *out).writer(), data);
        out.put_slice(b"\n\n");
    }
}

/// A translated stream: canonical chunks become the Responses stream's semantic events.
fn stream_response(mut answer: AnswerStream, echo: convert::Echo, keep: Option<Keep>) -> Response {
    if let Some(tap) = answer.meta.native_tap.take() {
        return native_stream_response(answer, tap, echo, keep);
    }
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        let mut translator = convert::EventTranslator::new(echo);
        let mut sink = SseSink(BytesMut::with_capacity(1024));
        translator.start(&mut sink);
        yield Ok::<Bytes, Infallible>(sink.take());
        let mut failed = false;
        while let Some(item) = answer.next().await {
            match item {
                Ok(chunk) => translator.on_chunk(&chunk, &mut sink),
                Err(err) => {
                    translator.failed(err.code.as_str(), &err.message, &mut sink);
                    failed = true;
                    break;
                }
            }
            if !sink.0.is_empty() {
                yield Ok(sink.take());
            }
        }
        if !failed {
            translator.finish(&mut sink);
        }
        if let (Some(keep), Some(r)) = (&keep, translator.take_last()) {
            if let Ok(r) = serde_json::to_value(r) {
                keep.save(&r);
            }
        }
        yield Ok(sink.take());
    };
    sse_response(body, &meta)
}

/// A passed-through stream: the provider's own events, the lifecycle ones (which carry the
/// response object) made to say Plexus's id and the client's model name.
fn native_stream_response(
    mut answer: AnswerStream,
    tap: plexus_gateway::NativeEvents,
    echo: convert::Echo,
    keep: Option<Keep>,
) -> Response {
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        let forward = |out: &mut BytesMut, event: &str, data: &str| {
            if !is_lifecycle(event) {
                sse_event(out, event, data.as_bytes());
                return None;
            }
            let mut v: Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(_) => {
                    sse_event(out, event, data.as_bytes());
                    return None;
                }
            };
            if let Some(r) = v.get_mut("response") {
                as_ours(r, &echo);
            }
            sse_value(out, event, &v);
            let ended = !matches!(event, "response.created" | "response.in_progress" | "response.queued");
            ended.then(|| v.get("response").cloned()).flatten()
        };
        // The closing response is stored before the client can read it, so a follow-up
        // (`previous_response_id`) finds it.
        let save = |last: &mut Option<Value>| {
            if let (Some(keep), Some(r)) = (&keep, last.take()) {
                keep.save(&r);
            }
        };
        let mut last = None;
        let mut ended = false;
        while let Some(item) = answer.next().await {
            let mut out = BytesMut::new();
            let mut provider_error = false;
            for (event, data) in tap.drain() {
                provider_error |= event == "error" || event == "response.failed";
                if let Some(r) = forward(&mut out, &event, &data) {
                    last = Some(r);
                }
            }
            save(&mut last);
            if let Err(err) = item {
                if !provider_error {
                    let data = json!({"type": "error", "code": err.code.as_str(), "message": err.message, "param": null});
                    sse_value(&mut out, "error", &data);
                }
                yield Ok::<Bytes, Infallible>(out.freeze());
                ended = true;
                break;
            }
            if !out.is_empty() {
                yield Ok(out.freeze());
            }
        }
        if !ended {
            let mut out = BytesMut::new();
            for (event, data) in tap.drain() {
                if let Some(r) = forward(&mut out, &event, &data) {
                    last = Some(r);
                }
            }
            save(&mut last);
            if !out.is_empty() {
                yield Ok(out.freeze());
            }
        }
    };
    sse_response(body, &meta)
}

/// `POST /v1/responses`.
pub async fn create(
    State(gateway): State<AppState>,
    Call(ctx): Call,
    req: Request,
) -> Result<Response, HttpError> {
    let (typed, body) = intake::<ResponsesRequest>(&gateway, &ctx, req, "responses").await?;
    let plan = match plan(&gateway, &ctx, &typed, &body).await {
        Ok(p) => p,
        Err(e) => {
            gateway.record_rejected(&ctx, "responses", &body, &e).await;
            return Err(HttpError(e));
        }
    };
    let Plan {
        chat,
        upstream,
        echo,
        input_items,
    } = plan;
    let owner = ctx.principal.id.clone();
    let request = ChatRequest::responses(Box::new(chat), upstream);
    if echo.background {
        return start_background(gateway, ctx, request, echo, input_items).await;
    }
    let keep = echo.store.then(|| Keep {
        gateway: gateway.clone(),
        owner,
        input_items,
    });
    match gateway.complete_detached(ctx, request).await {
        Ok(Answer::Full(full)) => {
            let response = answered(&full, &echo).map_err(HttpError)?;
            let text = serde_json::to_string(&response)
                .map_err(|e| HttpError(ApiError::internal(format!("cannot encode: {e}"))))?;
            let body = Bytes::from(text);
            if let Some(keep) = &keep {
                // One serialization for the client and the row (the row gets a copy).
                let stored = std::str::from_utf8(&body).map(str::to_owned).ok();
                keep.save_text(&response, stored);
            }
            Ok(json_response(body, full.cost, &full.meta))
        }
        Ok(Answer::Stream(stream)) => Ok(stream_response(stream, echo, keep)),
        Err(f) => Ok(failure_response(f)),
    }
}

/// `background: true`: the status row first (what every instance reports), then the run in a
/// tracked task; the client gets the queued response at once.
async fn start_background(
    gateway: Gateway,
    ctx: CallCtx,
    request: ChatRequest,
    echo: convert::Echo,
    input_items: Vec<Value>,
) -> Result<Response, HttpError> {
    let queued = serde_json::to_value(echo.response("queued", Vec::new(), None))
        .map_err(|e| HttpError(ApiError::internal(format!("cannot encode: {e}"))))?;
    let mut status_row = row(&gateway, &ctx.principal.id, &input_items, &queued, None);
    status_row.instance_id = Some(gateway.instance_id().to_owned());
    status_row.heartbeat_ms = Some(status_row.created_at_ms);
    if let Err(e) = gateway.store().put_response(&status_row).await {
        let error = plexus_gateway::error::from_store(e);
        gateway
            .record_rejected(&ctx, "responses", b"", &error)
            .await;
        return Err(HttpError(error));
    }
    let id = echo.id.clone();
    let runner = gateway.clone();
    gateway.spawn_background_run(id.clone(), async move {
        let (status, response) = match runner.complete(&ctx, request).await {
            Ok(Answer::Full(full)) => match answered(&full, &echo) {
                Ok(r) => (
                    r.get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("completed")
                        .to_owned(),
                    r,
                ),
                Err(e) => ("failed".to_owned(), failed(&echo, &e)),
            },
            // `plan` refuses a streamed background request.
            Ok(Answer::Stream(_)) => (
                "failed".to_owned(),
                failed(&echo, &ApiError::internal("a background run streamed")),
            ),
            Err(f) => ("failed".to_owned(), failed(&echo, &f.error)),
        };
        let now = runner.clock().now_unix_ms();
        let finished = runner
            .store()
            .finish_response(&id, &status, &response.to_string(), now)
            .await;
        if let Err(e) = finished {
            tracing::error!(message = "Cannot store a background run's outcome.", response_id = %id, error = %e);
        }
    });
    let bytes = serde_json::to_vec(&queued).unwrap_or_default();
    Ok(json_response(
        Bytes::from(bytes),
        Nanos::ZERO,
        &AnswerMeta::default(),
    ))
}

/// The stored response `id` if `principal` created it; the same 404 otherwise.
async fn owned(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
) -> Result<StoredResponse, HttpError> {
    match gateway.stored_response(id).await.map_err(store_error)? {
        Some(row) if row.key_id == principal.id => Ok(row),
        _ => Err(HttpError(ApiError::new(
            ErrorCode::NotFound,
            format!("Response with id '{id}' not found."),
        ))),
    }
}

/// A row as the client reads it: the status column wins over the stored object's, and a run
/// whose instance is gone is ended as `incomplete`.
async fn reported(gateway: &Gateway, mut row: StoredResponse) -> Value {
    let now = gateway.clock().now_unix_ms();
    if plexus_gateway::background::run_lost(&row, now) {
        let ended = gateway
            .store()
            .transition_response(&row.id, &RUNNING, "incomplete", Some("instance_lost"), now)
            .await;
        if matches!(ended, Ok(true)) {
            row.status = "incomplete".into();
            row.interrupted = Some("instance_lost".into());
        }
    }
    let mut response: Value = serde_json::from_str(&row.response).unwrap_or(Value::Null);
    if let Some(o) = response.as_object_mut() {
        o.insert("status".into(), json!(row.status));
        if let Some(cause) = &row.interrupted {
            o.insert(
                "incomplete_details".into(),
                json!({"reason": "interrupted", "cause": cause}),
            );
        }
    }
    response
}

fn json_value(v: &Value) -> Response {
    let mut resp = serde_json::to_vec(v).unwrap_or_default().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// A query's parameters as sent (never a rejection outside the API's error shape); the last
/// value of a repeated one wins.
type Params = Query<Vec<(String, String)>>;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, HttpError> {
    match param(&params, "stream") {
        None | Some("false") => {}
        Some("true") => {
            return Err(HttpError(ApiError::invalid_request(
                "Streaming a stored response again is not supported; read it whole.",
                "stream",
            )))
        }
        Some(_) => {
            return Err(HttpError(ApiError::invalid_request(
                "`stream` must be `true` or `false`.",
                "stream",
            )))
        }
    }
    let row = owned(&gateway, &principal, &id).await?;
    Ok(json_value(&reported(&gateway, row).await))
}

/// `DELETE /v1/responses/{id}`: a run still going is cancelled first.
pub async fn delete(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let row = owned(&gateway, &principal, &id).await?;
    let store = gateway.store();
    if row.is_running() {
        let now = gateway.clock().now_unix_ms();
        store
            .transition_response(&id, &RUNNING, "cancelled", None, now)
            .await
            .map_err(store_error)?;
        gateway.stop_background_run(&id);
    }
    gateway.response_written(&id).await;
    store.delete_response(&id).await.map_err(store_error)?;
    Ok(json_value(
        &json!({"id": id, "object": "response", "deleted": true}),
    ))
}

/// `POST /v1/responses/{id}/cancel`: only background runs; cancelling a cancelled one returns
/// it again.
pub async fn cancel(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let row = owned(&gateway, &principal, &id).await?;
    if !row.background {
        return Err(HttpError(ApiError::invalid_request(
            "Only responses created with `background: true` can be cancelled.",
            "response_id",
        )));
    }
    let now = gateway.clock().now_unix_ms();
    gateway
        .store()
        .transition_response(&id, &RUNNING, "cancelled", None, now)
        .await
        .map_err(store_error)?;
    gateway.stop_background_run(&id);
    let row = owned(&gateway, &principal, &id).await?;
    if row.status != "cancelled" {
        return Err(HttpError(ApiError::invalid_request(
            format!(
                "The response is already {} and cannot be cancelled.",
                row.status
            ),
            "response_id",
        )));
    }
    Ok(json_value(&reported(&gateway, row).await))
}

/// `GET /v1/responses/{id}/input_items`: the items the response was generated from (the
/// conversation it continues, then its own input), newest first unless `order=asc`.
pub async fn input_items(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, HttpError> {
    let limit = match param(&params, "limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return Err(HttpError(ApiError::invalid_request(
                "`limit` must be an integer from 1 to 100.",
                "limit",
            )))
        }
    };
    let ascending = match param(&params, "order") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(HttpError(ApiError::invalid_request(
                "`order` must be `asc` or `desc`.",
                "order",
            )))
        }
    };
    owned(&gateway, &principal, &id).await?;
    let chain = gateway.response_chain(&id).await.map_err(store_error)?;
    let mut items = Vec::new();
    for (n, turn) in chain.iter().enumerate() {
        let input: Vec<Value> = serde_json::from_str(&turn.input_items).unwrap_or_default();
        items.extend(convert::listed_items(&turn.id, &input));
        if n + 1 < chain.len() {
            let response: Value = serde_json::from_str(&turn.response).unwrap_or(Value::Null);
            if let Some(output) = response.get("output").and_then(Value::as_array) {
                items.extend(output.iter().cloned());
            }
        }
    }
    if !ascending {
        items.reverse();
    }
    let start = match param(&params, "after") {
        None => 0,
        Some(after) => items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
            .map(|p| p + 1)
            .ok_or_else(|| {
                HttpError(ApiError::invalid_request(
                    format!("No item with id '{after}' in this response's input."),
                    "after",
                ))
            })?,
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < items.len();
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json_value(&json!({
        "object": "list",
        "data": page,
        "first_id": id_of(page.first()),
        "last_id": id_of(page.last()),
        "has_more": has_more,
    })))
}
