//! The OpenAI Responses API in front of the gateway: `POST /v1/responses`, plain and streamed,
//! on every provider kind. The request is translated into the canonical one and runs through
//! `Gateway::complete` like any chat request; the answer comes back as a `response` object or
//! the Responses stream's semantic events (`inbound_responses.rs`). Errors are
//! OpenAI-shaped.

use crate::chat::{failure_response, intake, json_response};
use crate::error::HttpError;
use crate::inbound_responses as convert;
use crate::middleware::Call;
use crate::{headers, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use plexus_core::ApiError;
use plexus_gateway::{Answer, AnswerStream, ChatRequest};
use plexus_protocol::responses::ResponsesRequest;
use serde_json::Value;
use std::convert::Infallible;

fn sse_event(out: &mut BytesMut, kind: &str, data: &Value) {
    let json = serde_json::to_vec(data).unwrap_or_default();
    out.reserve(json.len() + kind.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(&json);
    out.put_slice(b"\n\n");
}

fn stream_response(mut answer: AnswerStream, echo: convert::Echo) -> Response {
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        let mut translator = convert::EventTranslator::new(echo);
        let mut out = BytesMut::new();
        for (k, d) in translator.start() {
            sse_event(&mut out, &k, &d);
        }
        yield Ok::<Bytes, Infallible>(out.freeze());
        while let Some(item) = answer.next().await {
            let events = match item {
                Ok(chunk) => translator.on_chunk(&chunk),
                Err(err) => {
                    let mut out = BytesMut::new();
                    for (k, d) in translator.failed(err.code.as_str(), &err.message) {
                        sse_event(&mut out, &k, &d);
                    }
                    yield Ok(out.freeze());
                    return;
                }
            };
            if !events.is_empty() {
                let mut out = BytesMut::new();
                for (k, d) in &events {
                    sse_event(&mut out, k, d);
                }
                yield Ok(out.freeze());
            }
        }
        let mut out = BytesMut::new();
        for (k, d) in translator.finish() {
            sse_event(&mut out, &k, &d);
        }
        yield Ok(out.freeze());
    };
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers::apply_meta(h, &meta);
    resp
}

/// A response id: `resp_` and the gateway's request id (unique across instances).
fn response_id(request_id: &str) -> String {
    format!("resp_{}", request_id.trim_start_matches("req_"))
}

/// What this version does not do yet, refused by name rather than silently ignored: stored
/// conversations (`previous_response_id`) and background runs.
fn not_yet(req: &ResponsesRequest) -> Result<(), ApiError> {
    if req.previous_response_id.is_some() {
        return Err(ApiError::invalid_request(
            "`previous_response_id` is not supported by this version of Plexus (responses are not stored yet); send the whole conversation in `input`.",
            "previous_response_id",
        ));
    }
    if req.background == Some(true) {
        return Err(ApiError::invalid_request(
            "`background` is not supported by this version of Plexus.",
            "background",
        ));
    }
    Ok(())
}

/// `POST /v1/responses`.
pub async fn create(
    State(gateway): State<AppState>,
    Call(ctx): Call,
    req: Request,
) -> Result<Response, HttpError> {
    let (typed, body) = intake::<ResponsesRequest>(&gateway, &ctx, req, "responses").await?;
    let chat = match not_yet(&typed).and_then(|()| convert::to_canonical(&typed, Vec::new())) {
        Ok(c) => c,
        Err(e) => {
            gateway.record_rejected(&ctx, "responses", &body, &e).await;
            return Err(HttpError(e));
        }
    };
    let mut echo = convert::Echo::of(
        &typed,
        response_id(&ctx.request_id),
        gateway.clock().now_unix_secs(),
    );
    // Responses are not stored yet (`store` is accepted and reported as not done).
    echo.store = false;
    match gateway
        .complete_detached(ctx, ChatRequest::responses(Box::new(chat), body))
        .await
    {
        Ok(Answer::Full(full)) => {
            let completion = full.completion().map_err(HttpError)?;
            let response = convert::from_completion(&completion, &echo);
            let bytes = serde_json::to_vec(&response)
                .map_err(|e| HttpError(ApiError::internal(format!("cannot encode: {e}"))))?;
            Ok(json_response(Bytes::from(bytes), full.cost, &full.meta))
        }
        Ok(Answer::Stream(stream)) => Ok(stream_response(stream, echo)),
        Err(f) => Ok(failure_response(f)),
    }
}
