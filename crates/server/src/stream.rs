//! Server-sent events for streamed completions, and the guard that records every stream,
//! also the ones the client abandons.

use crate::chat::{cost_usd, estimate_tokens};
use crate::runtime::Target;
use crate::{metrics, AppState};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use plexus_core::log::RequestRecord;
use plexus_core::ApiError;
use plexus_protocol::openai::{ChatCompletionChunk, Usage};
use plexus_providers::client::ChunkStream;
use std::convert::Infallible;
use std::time::Instant;

/// Settles the log record of a stream exactly once: at its end, on error, or on drop when the
/// client went away (status 499, with the completion tokens forwarded so far, estimated).
pub struct StreamGuard {
    state: AppState,
    record: Option<RequestRecord>,
    target: Target,
    started: Instant,
    prompt_estimate: u64,
    /// Characters of content, reasoning and tool arguments forwarded so far.
    forwarded_chars: usize,
    usage: Option<Usage>,
    first_token_at: Option<Instant>,
    /// Rate-limit holds, budget reservation and the target's in-flight slot, settled with
    /// the stream's usage and cost.
    claims: Option<crate::chat::Claims>,
    /// When the first chunk arrived, on the limiter's clock.
    first_chunk_ns: Option<u64>,
    /// The answer being assembled for the response cache (a miss that will be stored).
    cache_fill: Option<crate::cache::CacheFill>,
    /// The streamed text, kept only when `request_bodies` stores bodies.
    capture: Option<(plexus_core::config::BodyLogging, String)>,
}

impl StreamGuard {
    pub fn new(
        state: AppState,
        record: RequestRecord,
        target: Target,
        started: Instant,
        prompt_estimate: u64,
        claims: crate::chat::Claims,
        bodies: plexus_core::config::BodyLogging,
    ) -> Self {
        StreamGuard {
            state,
            record: Some(record),
            target,
            started,
            prompt_estimate,
            forwarded_chars: 0,
            usage: None,
            first_token_at: None,
            claims: Some(claims),
            first_chunk_ns: None,
            cache_fill: None,
            capture: (bodies != plexus_core::config::BodyLogging::Off)
                .then(|| (bodies, String::new())),
        }
    }

    /// Stores the stream in the response cache when it ends well.
    pub fn with_cache(mut self, fill: Option<crate::cache::CacheFill>) -> Self {
        self.cache_fill = fill;
        self
    }

    fn observe(&mut self, chunk: &ChatCompletionChunk) {
        if let Some(fill) = &mut self.cache_fill {
            fill.observe(chunk);
        }
        if self.first_chunk_ns.is_none() {
            self.first_chunk_ns = Some(self.state.limiter().now_ns());
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let mut chars = 0;
        if let Some((_, text)) = &mut self.capture {
            for c in &chunk.choices {
                if text.len() < 256 * 1024 {
                    text.push_str(c.delta.content.as_deref().unwrap_or(""));
                    for t in c.delta.tool_calls.iter().flatten() {
                        if let Some(f) = &t.function {
                            text.push_str(f.arguments.as_deref().unwrap_or(""));
                        }
                    }
                }
            }
        }
        for c in &chunk.choices {
            let d = &c.delta;
            chars += d.content.as_deref().map_or(0, str::len);
            chars += d.reasoning_content.as_deref().map_or(0, str::len);
            for t in d.tool_calls.iter().flatten() {
                if let Some(f) = &t.function {
                    chars += f.arguments.as_deref().map_or(0, str::len);
                    chars += f.name.as_deref().map_or(0, str::len);
                }
            }
        }
        if chars > 0 && self.first_token_at.is_none() {
            self.first_token_at = Some(Instant::now());
        }
        self.forwarded_chars += chars;
    }

    /// The usage to report: the provider's, or an estimate (marked as such).
    fn settled_usage(&mut self) -> (Usage, bool) {
        match &self.usage {
            Some(u) => (u.clone(), false),
            None => (
                Usage::new(self.prompt_estimate, estimate_tokens(self.forwarded_chars)),
                true,
            ),
        }
    }

    fn settle(&mut self, status: u16, error: Option<&ApiError>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let (usage, estimated) = self.settled_usage();
        record.status = status;
        record.error_code = error.map(|e| e.code.as_str());
        record.prompt_tokens = usage.prompt_tokens;
        record.completion_tokens = usage.completion_tokens;
        record.cached_tokens = usage.cached_tokens();
        record.reasoning_tokens = usage.reasoning_tokens();
        record.usage_estimated = estimated;
        record.cost_usd = cost_usd(&self.target, &usage);
        if let Some((mode, text)) = self.capture.take() {
            record.response_body = crate::chat::keep_body(mode, text.as_bytes());
        }
        if let Some(claims) = self.claims.take() {
            // A stream the upstream broke counts against the target; one the client left
            // does not.
            let target_ok = status == 200 || status == 499;
            claims.settle(
                &self.state,
                record.cost_usd,
                usage.prompt_tokens + usage.completion_tokens,
                if target_ok {
                    Some(
                        self.first_chunk_ns
                            .unwrap_or_else(|| self.state.limiter().now_ns()),
                    )
                } else {
                    None
                },
            );
        }
        record.latency_ms = self.started.elapsed().as_millis() as u64;
        record.ttft_ms = self
            .first_token_at
            .map(|t| t.duration_since(self.started).as_millis() as u64);
        metrics::observe(&record, Some(&self.target.metrics));
        // Never wait here: this runs inside the response body (or its Drop).
        self.state.writer().record_detached(record);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // Reached only when the stream did not settle: the client went away.
        self.settle(499, None);
    }
}

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

/// A cached completion replayed as an SSE stream (the same framing as a live one).
pub fn replay_response(
    completion: &plexus_protocol::openai::ChatCompletion,
    include_usage: bool,
) -> Response {
    let mut out = BytesMut::new();
    for chunk in plexus_cache::replay::replay(completion, include_usage) {
        if let Ok(json) = serde_json::to_vec(&chunk) {
            sse_event(&mut out, &json);
        }
    }
    out.put_slice(b"data: [DONE]\n\n");
    let mut resp = Body::from(out.freeze()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Builds the SSE response. The usage chunk is passed on only if the client asked for it
/// (the gateway always asks upstream); if the provider sent none, an estimate is produced.
pub fn sse_response(
    mut chunks: ChunkStream,
    mut guard: StreamGuard,
    client_wants_usage: bool,
    served_by: Option<HeaderValue>,
) -> Response {
    let body = async_stream::stream! {
        let mut last_meta: Option<(String, i64, String)> = None;
        while let Some(item) = chunks.next().await {
            match item {
                Ok(mut chunk) => {
                    guard.observe(&chunk);
                    if last_meta.is_none() {
                        last_meta = Some((chunk.id.clone(), chunk.created, chunk.model.clone()));
                    }
                    let usage_only = chunk.choices.is_empty() && chunk.usage.is_some();
                    if !client_wants_usage {
                        if usage_only {
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
                            guard.settle(500, Some(&err));
                            yield Ok(error_event(&err));
                            return;
                        }
                    }
                }
                Err(e) => {
                    let err = ApiError::from(e);
                    tracing::warn!(message = "Stream failed after it started.", error = %err);
                    guard.settle(err.status(), Some(&err));
                    yield Ok(error_event(&err));
                    return;
                }
            }
        }
        if client_wants_usage && guard.usage.is_none() {
            let (usage, _) = guard.settled_usage();
            let (id, created, model) = last_meta.unwrap_or_default();
            let mut chunk = ChatCompletionChunk::new(&id, created, &model);
            chunk.usage = Some(usage);
            if let Ok(json) = serde_json::to_vec(&chunk) {
                let mut out = BytesMut::new();
                sse_event(&mut out, &json);
                yield Ok(out.freeze());
            }
        }
        let (usage, _) = guard.settled_usage();
        let fill = guard.cache_fill.take();
        let served_by = guard.target.served_by();
        guard.settle(200, None);
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        // After the client has everything: store the answer for the next ones.
        if let Some(fill) = fill {
            fill.complete_stream(&guard.state, usage, served_by).await;
        }
    };
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(v) = served_by {
        headers.insert("x-plexus-served-by", v);
    }
    resp
}
