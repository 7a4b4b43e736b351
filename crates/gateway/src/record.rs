//! The request log record of a call: built once from its context, filled by the stages, and
//! written with its metrics in one place.

use crate::ctx::CallCtx;
use crate::metrics::{self, TargetMetrics};
use crate::Gateway;
use plexus_core::config::BodyLogging;
use plexus_core::log::RequestRecord;
use plexus_protocol::openai::Usage;

/// Stored bodies are cut at this size.
const MAX_STORED_BODY: usize = 256 * 1024;

/// The parts of a record known before the call. Boxed from the start: the writer queues it
/// boxed, and until then it travels through the call's futures as a pointer.
pub(crate) fn base(
    gateway: &Gateway,
    ctx: &CallCtx,
    endpoint: &'static str,
    model: &str,
    stream: bool,
) -> Box<RequestRecord> {
    let p = &ctx.principal;
    if let Some(note) = &ctx.access {
        if !model.is_empty() {
            let _ = note.model.set(model.to_owned());
        }
    }
    Box::new(RequestRecord {
        ts_ms: gateway.clock().now_unix_ms(),
        request_id: ctx.request_id.clone(),
        client_request_id: ctx.client_request_id.clone(),
        parent_request_id: ctx.parent.as_ref().map(|p| p.request_id.clone()),
        step: ctx.parent.as_ref().map(|p| p.step),
        key_id: p.id.clone(),
        user_id: p.user_id.clone(),
        team_id: p.team_id.clone(),
        overhead_team_id: if ctx.is_system() {
            ctx.overhead_team.clone()
        } else {
            None
        },
        endpoint,
        model: model.to_owned(),
        stream,
        ..Default::default()
    })
}

/// Copies a call's usage into its record (the one place that does).
pub(crate) fn apply_usage(record: &mut RequestRecord, usage: &Usage, estimated: bool) {
    record.prompt_tokens = usage.prompt_tokens;
    record.completion_tokens = usage.completion_tokens;
    record.cached_tokens = usage.cached_tokens();
    record.reasoning_tokens = usage.reasoning_tokens();
    record.usage_estimated = estimated;
}

/// Observes the record's metrics and queues it, waiting while the writer's queue is full.
pub(crate) async fn write(
    gateway: &Gateway,
    record: Box<RequestRecord>,
    target: Option<&TargetMetrics>,
) {
    metrics::observe(&record, target);
    gateway.writer().record(record).await;
}

/// Like [`write`], for paths that cannot wait (a `Drop`, a stream's poll).
pub(crate) fn write_detached(
    gateway: &Gateway,
    record: Box<RequestRecord>,
    target: Option<&TargetMetrics>,
) {
    metrics::observe(&record, target);
    gateway.writer().record_detached(record);
}

/// The body to keep in the request log under `request_bodies` (off by default).
pub(crate) fn keep_body(mode: BodyLogging, bytes: &[u8]) -> Option<String> {
    if mode == BodyLogging::Off {
        return None;
    }
    let cut = &bytes[..bytes.len().min(MAX_STORED_BODY)];
    let text = String::from_utf8_lossy(cut);
    Some(match mode {
        BodyLogging::Redacted => plexus_core::redact::redact(&text),
        _ => text.into_owned(),
    })
}

/// Rough token count for text when the provider reports none (about 4 characters a token).
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}
