//! Server-sent events: an [`AnswerStream`] framed as OpenAI's chat completion chunks.
//!
//! The gateway's stream settles its own accounting; here only the wire format is decided: the
//! usage chunk is passed on only if the client asked for it (`stream_options.include_usage`),
//! an upstream failure after the start ends the stream with a final `data: {"error":...}` event
//! and no `[DONE]`.

use crate::headers;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use plexus_core::ApiError;
use plexus_gateway::AnswerStream;
use std::convert::Infallible;

fn sse_event(out: &mut BytesMut, json: &[u8]) {
    out.reserve(json.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(json);
    out.put_slice(b"\n\n");
}

fn error_event(err: &ApiError) -> Bytes {
    let mut out = BytesMut::new();
    sse_event(&mut out, &crate::error::error_body_bytes(err));
    out.freeze()
}

/// The SSE response of a streamed answer, with the gateway's headers.
pub fn sse_response(mut answer: AnswerStream, client_wants_usage: bool) -> Response {
    let meta = answer.meta.clone();
    let body = async_stream::stream! {
        while let Some(item) = answer.next().await {
            match item {
                Ok(mut chunk) => {
                    if !client_wants_usage {
                        if chunk.choices.is_empty() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    if chunk.choices.is_empty() && chunk.usage.is_none() {
                        continue;
                    }
                    match serde_json::to_vec(&chunk) {
                        Ok(json) => {
                            let mut out = BytesMut::new();
                            sse_event(&mut out, &json);
                            yield Ok::<Bytes, Infallible>(out.freeze());
                        }
                        Err(e) => {
                            let err = ApiError::internal(format!("cannot encode chunk: {e}"));
                            yield Ok(error_event(&err));
                            return;
                        }
                    }
                }
                Err(err) => {
                    yield Ok(error_event(&err));
                    return;
                }
            }
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
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
    if meta.cache.is_some_and(|c| c != "miss") {
        headers::apply_cost(h, plexus_protocol::money::Nanos::ZERO);
    }
    resp
}
