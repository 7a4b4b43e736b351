//! The Anthropic Messages API in front of the gateway: `POST /v1/messages` (plain and streamed)
//! and `POST /v1/messages/count_tokens`, on every provider kind. The request is translated into
//! the canonical one and runs through `Gateway::complete` like any chat request (auth, limits,
//! budgets, the cache, `model: auto`, orchestration models, retries, fallbacks, recording); the
//! answer is translated back (`inbound_anthropic.rs`). Every error, including
//! authentication and a failure mid-stream, is in Anthropic's shape with Anthropic's status.

use crate::chat::read_body;
use crate::error::HttpError;
use crate::headers;
use crate::inbound_anthropic as convert;
use crate::middleware::Call;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use plexus_core::{ApiError, ErrorCode};
use plexus_gateway::{Answer, AnswerStream, CallCtx, ChatRequest, Failure};
use plexus_protocol::anthropic as wire;
use serde_json::Value;
use std::convert::Infallible;

/// An error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`, with the
/// status Anthropic uses (529 for overloaded).
pub(crate) fn error_response(err: &ApiError) -> Response {
    let status = convert::error_status(err.status());
    let body = convert::error_body(err.status(), &err.message);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(ra) = err.retry_after {
        let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn failure_response(f: Failure) -> Response {
    let mut resp = error_response(&f.error);
    headers::apply_meta(resp.headers_mut(), &f.meta);
    resp
}

/// Parses a Messages request body: the `system` entries inside `messages` are taken out first
/// (the typed roles are user and assistant), and errors name the parameter.
fn parse(
    body: &[u8],
    count_only: bool,
) -> Result<(wire::MessagesRequest, Vec<(usize, String)>), ApiError> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "The request body must be a JSON object.",
        ));
    }
    if count_only && value.get("max_tokens").is_none() {
        // count_tokens takes no `max_tokens`.
        value["max_tokens"] = Value::from(1);
    }
    let system = convert::take_system_entries(&mut value);
    let req: wire::MessagesRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let param = match inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(field) if path == "." => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        ApiError::invalid_request(format!("{param}: {inner}"), &param)
    })?;
    Ok((req, system))
}

fn canonical(
    req: &wire::MessagesRequest,
    system: Vec<(usize, String)>,
) -> Result<Box<plexus_protocol::openai::ChatCompletionRequest>, ApiError> {
    let mut chat = convert::to_canonical(req)?;
    convert::insert_system_entries(&mut chat, req, system);
    Ok(Box::new(chat))
}

fn sse_event(out: &mut BytesMut, event: &wire::StreamEvent) {
    let name = match event {
        wire::StreamEvent::MessageStart(_) => "message_start",
        wire::StreamEvent::ContentBlockStart(_) => "content_block_start",
        wire::StreamEvent::ContentBlockDelta(_) => "content_block_delta",
        wire::StreamEvent::ContentBlockStop(_) => "content_block_stop",
        wire::StreamEvent::MessageDelta(_) => "message_delta",
        wire::StreamEvent::MessageStop => "message_stop",
        wire::StreamEvent::Ping => "ping",
        wire::StreamEvent::Error(_) => "error",
    };
    let json = serde_json::to_vec(event).unwrap_or_default();
    out.reserve(json.len() + name.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(&json);
    out.put_slice(b"\n\n");
}

fn error_event(err: &ApiError) -> wire::StreamEvent {
    wire::StreamEvent::Error(wire::ErrorEvent {
        error: convert::error_body(err.status(), &err.message).error,
        extra: wire::Extra::new(),
    })
}

/// A passed-through event with the client's model name in `message_start`.
fn raw_event(out: &mut BytesMut, event: &str, data: &str, model: &str) {
    let rewritten;
    let data = if event == "message_start" {
        match serde_json::from_str::<Value>(data) {
            Ok(mut v) => {
                if let Some(m) = v.get_mut("message").and_then(Value::as_object_mut) {
                    m.insert("model".into(), Value::String(model.to_owned()));
                }
                rewritten = v.to_string();
                rewritten.as_str()
            }
            Err(_) => data,
        }
    } else {
        data
    };
    out.reserve(event.len() + data.len() + 16);
    if !event.is_empty() {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_slice(b"\n");
    }
    out.put_slice(b"data: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

/// An Anthropic target's own events, passed through (the chunks decoded from them are the
/// gateway's accounting).
fn native_stream_response(
    mut answer: AnswerStream,
    tap: plexus_gateway::NativeEvents,
    model: String,
) -> Response {
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        while let Some(item) = answer.next().await {
            let mut out = BytesMut::new();
            let mut provider_error = false;
            for (event, data) in tap.drain() {
                provider_error |= event == "error";
                raw_event(&mut out, &event, &data, &model);
            }
            if let Err(err) = item {
                // The provider's own error event, when it sent one, already says it.
                if !provider_error {
                    sse_event(&mut out, &error_event(&err));
                }
                yield Ok::<Bytes, Infallible>(out.freeze());
                return;
            }
            if !out.is_empty() {
                yield Ok(out.freeze());
            }
        }
        let mut out = BytesMut::new();
        for (event, data) in tap.drain() {
            raw_event(&mut out, &event, &data, &model);
        }
        if !out.is_empty() {
            yield Ok(out.freeze());
        }
    };
    sse_headers(Body::from_stream(body).into_response(), &meta)
}

fn sse_headers(mut resp: Response, meta: &plexus_gateway::AnswerMeta) -> Response {
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

/// An answer stream as Anthropic's event stream.
fn stream_response(mut answer: AnswerStream, model: String) -> Response {
    if let Some(tap) = answer.meta.native_tap.take() {
        return native_stream_response(answer, tap, model);
    }
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        let mut translator = convert::EventTranslator::new(&model);
        while let Some(item) = answer.next().await {
            let events = match item {
                Ok(chunk) => translator.on_chunk(&chunk),
                Err(err) => {
                    let mut out = BytesMut::new();
                    sse_event(&mut out, &error_event(&err));
                    yield Ok::<Bytes, Infallible>(out.freeze());
                    return;
                }
            };
            if !events.is_empty() {
                let mut out = BytesMut::new();
                for e in &events {
                    sse_event(&mut out, e);
                }
                yield Ok(out.freeze());
            }
        }
        let mut out = BytesMut::new();
        for e in &translator.finish() {
            sse_event(&mut out, e);
        }
        yield Ok(out.freeze());
    };
    sse_headers(Body::from_stream(body).into_response(), &meta)
}

/// Reads and parses the body; a refusal is recorded like every request, then answered.
async fn intake(
    gateway: &AppState,
    ctx: &CallCtx,
    req: Request,
    count_only: bool,
) -> Result<
    (
        Box<plexus_protocol::openai::ChatCompletionRequest>,
        String,
        Bytes,
    ),
    Response,
> {
    let limit = gateway.runtime().config.max_request_bytes;
    let body = match read_body(req, limit).await {
        Ok(b) => b,
        Err(e) => {
            gateway.record_rejected(ctx, "messages", &[], &e).await;
            return Err(error_response(&e));
        }
    };
    let parsed = parse(&body, count_only).and_then(|(typed, system)| {
        let model = typed.model.clone();
        canonical(&typed, system).map(|chat| (chat, model))
    });
    match parsed {
        Ok((chat, model)) => Ok((chat, model, body)),
        Err(e) => {
            gateway.record_rejected(ctx, "messages", &body, &e).await;
            Err(error_response(&e))
        }
    }
}

/// `POST /v1/messages`.
pub async fn messages(
    State(gateway): State<AppState>,
    call: Result<Call, HttpError>,
    req: Request,
) -> Response {
    let ctx = match call {
        Ok(Call(ctx)) => ctx,
        Err(HttpError(e)) => return error_response(&e),
    };
    // Beta features go to an Anthropic target with the request as it came.
    let forward: Vec<(String, String)> = req
        .headers()
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| ("anthropic-beta".to_owned(), v.to_owned()))
        .collect();
    let (chat, model, body) = match intake(&gateway, &ctx, req, false).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match gateway
        .complete_detached(ctx, ChatRequest::anthropic(chat, body, forward))
        .await
    {
        Ok(Answer::Full(full)) => {
            let bytes = if full.meta.native {
                // The provider's own answer, with the model name the client asked for.
                match full.native_body_as(&model) {
                    Ok(b) => b,
                    Err(e) => return error_response(&e),
                }
            } else {
                let completion = match full.completion() {
                    Ok(c) => c,
                    Err(e) => return error_response(&e),
                };
                serde_json::to_vec(&convert::from_completion(&completion, &model))
                    .unwrap_or_default()
            };
            let mut resp = (StatusCode::OK, bytes).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers::apply_meta(h, &full.meta);
            headers::apply_cost(h, full.cost);
            resp
        }
        Ok(Answer::Stream(stream)) => stream_response(stream, model),
        Err(f) => failure_response(f),
    }
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens as the model that would serve it
/// counts them (exact for OpenAI models, a calibrated estimate for others).
pub async fn count_tokens(
    State(gateway): State<AppState>,
    call: Result<Call, HttpError>,
    req: Request,
) -> Response {
    let ctx = match call {
        Ok(Call(ctx)) => ctx,
        Err(HttpError(e)) => return error_response(&e),
    };
    let (chat, _, _) = match intake(&gateway, &ctx, req, true).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match gateway.count_prompt_tokens(&ctx, &chat) {
        Ok(n) => axum::Json(serde_json::json!({ "input_tokens": n })).into_response(),
        Err(e) => error_response(&e),
    }
}
