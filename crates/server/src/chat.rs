//! `POST /v1/chat/completions`: parse, validate, resolve, call the provider, answer, record.

use crate::cache::{CacheFill, Controls, Hit};
use crate::dispatch::{self, Failed, Served};
use crate::error::HttpError;
use crate::limit::{BudgetError, BudgetHold, Hold};
use crate::middleware::{Auth, RequestId};
use crate::runtime::{ModelRoute, Runtime, Target};
use crate::stream::{self, StreamGuard};
use crate::{metrics, AppState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use plexus_auth::roles::Principal;
use plexus_cache::coalesce::{self, Flight};
use plexus_core::catalog::Catalog;
use plexus_core::config::BodyLogging;
use plexus_core::log::RequestRecord;
use plexus_core::{ApiError, ErrorCode};
use plexus_limits::rate::{Snapshot, Subject};
use plexus_protocol::openai::{ChatCompletion, ChatCompletionRequest, Usage};
use plexus_providers::client::{ChatBody, ChunkStream};
use plexus_providers::ConvertCtx;
use plexus_router::health::{InFlight, Outcome};
use serde::de::DeserializeOwned;
use std::time::Instant;

/// Output cap sent to providers that require one when neither the client nor the catalog
/// gives one.
const FALLBACK_MAX_OUTPUT: u32 = 4096;

/// Reads the body, refusing more than `limit` bytes with a 413.
pub(crate) async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = s.source();
            }
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Could not read the request body: {e}"),
            )
        })
}

/// Parses JSON, naming the offending parameter on failure. The fast path is plain serde; only
/// a failed parse is redone with path tracking to find the parameter.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) => Err(describe_json_error::<T>(body)),
    }
}

#[cold]
fn describe_json_error<T: DeserializeOwned>(body: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => return ApiError::new(ErrorCode::InvalidRequest, "Invalid JSON body."),
            Err(e) => {
                return ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("We could not parse the JSON body of your request: {e}"),
                )
            }
        },
        Err(e) => e,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::new(
            ErrorCode::InvalidRequest,
            format!("We could not parse the JSON body of your request: {inner}"),
        );
    }
    let text = inner.to_string();
    let param = match text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(field) if path == "." => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path,
    };
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("Invalid request: `{param}`: {text}"),
    )
    .with_param(param)
}

fn validate(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if req.model.is_empty() {
        return Err(ApiError::invalid_request(
            "`model` must not be empty.",
            "model",
        ));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid_request(
            "`messages` must contain at least one message.",
            "messages",
        ));
    }
    if req.n == Some(0) {
        return Err(ApiError::invalid_request("`n` must be at least 1.", "n"));
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid_request(
                "`temperature` must be between 0 and 2.",
                "temperature",
            ));
        }
    }
    if let Some(p) = req.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid_request(
                "`top_p` must be between 0 and 1.",
                "top_p",
            ));
        }
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(ApiError::invalid_request(
            "`stream_options` is only allowed when `stream` is true.",
            "stream_options",
        ));
    }
    if req.max_output_tokens() == Some(0) {
        return Err(ApiError::invalid_request(
            "`max_tokens` must be at least 1.",
            "max_tokens",
        ));
    }
    Ok(())
}

/// Rough token count for text when the provider reports none (about 4 characters a token).
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

pub(crate) fn cost_usd(target: &Target, usage: &Usage) -> f64 {
    Catalog::builtin()
        .lookup(target.provider.kind().as_str(), &target.upstream_model)
        .map(|m| {
            m.cost_usd(
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens(),
                usage.reasoning_tokens(),
            )
        })
        .unwrap_or(0.0)
}

/// The parts of a log record known before the call.
pub(crate) fn base_record(
    state: &AppState,
    request_id: &str,
    principal: &Principal,
    endpoint: &'static str,
    model: &str,
    stream: bool,
) -> RequestRecord {
    RequestRecord {
        ts_ms: state.clock().now_unix_ms(),
        request_id: request_id.to_owned(),
        key_id: principal.id.clone(),
        user_id: principal.user_id.clone(),
        team_id: principal.team_id.clone(),
        endpoint,
        model: model.to_owned(),
        stream,
        ..Default::default()
    }
}

pub(crate) async fn finish_error(
    state: &AppState,
    mut record: RequestRecord,
    target: Option<&Target>,
    started: Instant,
    err: ApiError,
) -> HttpError {
    record.status = err.status();
    record.error_code = Some(err.code.as_str());
    record.latency_ms = started.elapsed().as_millis() as u64;
    metrics::observe(&record, target.map(|t| &*t.metrics));
    state.writer().record(record).await;
    HttpError(err)
}

/// Reserves the request's worst-case cost on every budget that applies (key, user, team);
/// `None` when none does. Refusal is a 429 `budget_exceeded`, before any upstream call.
pub(crate) async fn admit_budget(
    state: &AppState,
    principal: &Principal,
    target: &Target,
    prompt_tokens: u64,
    max_output_tokens: u64,
) -> Result<Option<BudgetHold>, ApiError> {
    let limits = state.auth().limits_for(principal).await.map_err(|e| {
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("cannot read budgets: {e}"),
        )
    })?;
    if limits.is_empty() {
        return Ok(None);
    }
    let now = state.clock().now_unix_ms();
    let worst = cost_usd(target, &Usage::new(prompt_tokens, max_output_tokens));
    let store = state.auth().store();
    let seed = |key: plexus_limits::BudgetKey, since: i64| async move {
        store
            .spend_since(key.scope, &key.id, since)
            .await
            .map_err(|e| format!("cannot read spend: {e}"))
    };
    let on_error = state.runtime().config.limits.on_redis_error;
    match state
        .limiter()
        .reserve_budget(&limits, worst, now, on_error, seed)
        .await
    {
        Ok(hold) => Ok(Some(hold)),
        Err(BudgetError::Unavailable(e)) => Err(ApiError::new(ErrorCode::ServiceUnavailable, e)),
        Err(BudgetError::Exceeded(ex)) => Err(ApiError::new(
            ErrorCode::BudgetExceeded,
            format!(
                "The {} `{}` has spent ${:.4} of its ${:.4} budget (${:.4} more reserved by requests in flight); this request could cost up to ${:.4}.",
                ex.key.scope, ex.key.id, ex.spent_usd, ex.limit_usd, ex.reserved_usd, worst
            ),
        )
        .with_retry_after(
            u64::try_from(ex.resets_at_ms - now)
                .ok()
                .filter(|_| ex.resets_at_ms > 0 && ex.resets_at_ms < i64::MAX / 2)
                .map(std::time::Duration::from_millis),
        )),
    }
}

/// The rate-limit subjects of a request: global, model, and the caller's key, user and team.
pub(crate) async fn rate_subjects(
    state: &AppState,
    rt: &Runtime,
    principal: &Principal,
    route: &ModelRoute,
) -> Result<Vec<Subject>, ApiError> {
    let mut subjects = state.auth().rate_subjects(principal).await.map_err(|e| {
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("cannot read rate limits: {e}"),
        )
    })?;
    for s in [&rt.global_limit, &route.limit].into_iter().flatten() {
        subjects.push(Subject::clone(s));
    }
    Ok(subjects)
}

/// Whether any limit on the request or its targets counts tokens (only then are they
/// counted).
pub(crate) fn limits_tokens(subjects: &[Subject], route: &ModelRoute) -> bool {
    subjects.iter().any(|s| s.quota.limits_tokens())
        || route
            .targets
            .iter()
            .any(|t| t.limit.as_ref().is_some_and(|l| l.quota.limits_tokens()))
}

/// What an admitted request holds until it ends: its rate-limit holds (the caller's and the
/// target's), its budget reservation and the target's in-flight slot.
#[derive(Default)]
pub struct Claims {
    pub holds: Vec<Hold>,
    pub budget: Option<BudgetHold>,
    pub inflight: Option<InFlight>,
    /// When the serving attempt started, on the limiter's clock (for the target's latency).
    pub attempt_started_ns: u64,
}

impl Claims {
    /// Settles everything with the request's real cost and tokens. `first_byte_ns` is when the
    /// answer (or first token) arrived, for the target's latency estimate; `None` when the
    /// target failed.
    pub fn settle(self, state: &AppState, cost: f64, tokens: u64, first_byte_ns: Option<u64>) {
        let limiter = state.limiter();
        let now = limiter.now_ns();
        for h in self.holds {
            h.settle(Some(tokens), now);
        }
        if let Some(b) = self.budget {
            b.settle(cost);
        }
        if let Some(f) = self.inflight {
            let outcome = match first_byte_ns {
                Some(at) => Outcome::Success {
                    latency_ns: at.saturating_sub(self.attempt_started_ns),
                },
                None => Outcome::Failure,
            };
            f.finish(now, outcome);
        }
    }
}

/// An error response with the rate-limit headers of the limits that applied.
fn error_with_headers(err: HttpError, snapshot: &Snapshot) -> Response {
    let mut resp = err.into_response();
    crate::limit::apply_headers(resp.headers_mut(), snapshot);
    resp
}

/// The key's allowed models: a 403 naming the model, before anything else happens.
pub(crate) fn check_model_access(principal: &Principal, model: &str) -> Result<(), ApiError> {
    if principal.may_use_model(model) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("This key may not use the model `{model}`."),
        )
        .with_param("model"))
    }
}

pub(crate) fn served_by_header(target: &Target) -> Option<HeaderValue> {
    HeaderValue::from_str(&target.served_by()).ok()
}

/// Reads, parses and validates a request body. A failure is answered, and logged like every
/// request, before any model is known.
pub(crate) async fn intake<T: DeserializeOwned>(
    state: &AppState,
    req: Request,
    request_id: &str,
    principal: &Principal,
    endpoint: &'static str,
    validate: fn(&T) -> Result<(), ApiError>,
) -> Result<(T, Bytes), HttpError> {
    let started = Instant::now();
    let limit = state.runtime().config.max_request_bytes;
    let parsed = match read_body(req, limit).await {
        Ok(body) => parse_json::<T>(&body).and_then(|v| validate(&v).map(|()| (v, body))),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(ok) => Ok(ok),
        Err(e) => {
            let record = base_record(state, request_id, principal, endpoint, "", false);
            Err(finish_error(state, record, None, started, e).await)
        }
    }
}

/// Stored bodies are cut at this size.
const MAX_STORED_BODY: usize = 256 * 1024;

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

/// A successful JSON answer with the gateway's headers.
pub(crate) fn json_response(
    body: Bytes,
    cost: f64,
    target: &Target,
    snapshot: &Snapshot,
) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    crate::limit::apply_headers(headers, snapshot);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{cost:.8}")) {
        headers.insert("x-plexus-cost-usd", v);
    }
    if let Some(v) = served_by_header(target) {
        headers.insert("x-plexus-served-by", v);
    }
    resp
}

pub async fn chat_completions(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let controls = match state.cache() {
        Some(_) => match Controls::from_headers(req.headers()) {
            Ok(c) => c,
            Err(e) => {
                let record = base_record(&state, &request_id, &principal, "chat", "", false);
                return Err(finish_error(&state, record, None, started, e).await);
            }
        },
        None => Controls::default(),
    };
    let (chat, body) =
        intake::<ChatCompletionRequest>(&state, req, &request_id, &principal, "chat", validate)
            .await?;
    let rt = state.runtime();
    let mut record = base_record(
        &state,
        &request_id,
        &principal,
        "chat",
        &chat.model,
        chat.is_stream(),
    );
    if let Err(e) = check_model_access(&principal, &chat.model) {
        return Err(finish_error(&state, record, None, started, e).await);
    }
    let route = match rt.resolve(&chat.model) {
        Ok(r) if !r.targets.is_empty() => r,
        Ok(_) => {
            let e = ApiError::new(ErrorCode::ServiceUnavailable, "The model has no target.");
            return Err(finish_error(&state, record, None, started, e).await);
        }
        Err(e) => return Err(finish_error(&state, record, None, started, e).await),
    };
    let first = &route.targets[0];
    let created = state.clock().now_unix_secs();
    let prompt_estimate = estimate_tokens(body.len());
    let bodies = rt.config.request_bodies;
    record.request_body = keep_body(bodies, &body);
    drop(body);
    let worst_output = {
        let catalog_max = Catalog::builtin()
            .lookup(first.provider.kind().as_str(), &first.upstream_model)
            .and_then(|m| m.max_output_tokens);
        u64::from(
            chat.max_output_tokens()
                .or(catalog_max)
                .unwrap_or(FALLBACK_MAX_OUTPUT),
        ) * u64::from(chat.n.unwrap_or(1).max(1))
    };

    // Rate limits: the caller's, the model's and the global ones, all or nothing.
    let subjects = match rate_subjects(&state, &rt, &principal, &route).await {
        Ok(s) => s,
        Err(e) => return Err(finish_error(&state, record, None, started, e).await),
    };
    let tokens = if limits_tokens(&subjects, &route) {
        crate::tokens::count_prompt(first.provider.kind(), &first.upstream_model, &chat)
            + worst_output
    } else {
        0
    };
    let on_error = rt.config.limits.on_redis_error;
    let (hold, snapshot) = match state.limiter().acquire(&subjects, tokens, on_error).await {
        Ok(ok) => ok,
        Err(e) => {
            let err = finish_error(&state, record, None, started, e).await;
            return Ok(error_with_headers(err, &Snapshot::default()));
        }
    };
    let mut claims = Claims {
        holds: hold.into_iter().collect(),
        ..Claims::default()
    };

    // The response cache answers here, before any budget or upstream call.
    let mut cache_fill: Option<CacheFill> = None;
    if let Some(cache) = state.cache() {
        if let Some(plan) = cache.plan(controls, &chat, &principal, &route) {
            let mut leader = None;
            let mut probe = None;
            if plan.lookup {
                let found = cache.lookup(&state, &plan).await;
                probe = found.probe;
                if let Some(hit) = found.hit {
                    if hit.kind == "semantic-hit" {
                        cache.maybe_judge(&state, &plan, &hit, &chat);
                    }
                    return Ok(
                        serve_hit(&state, record, hit, claims, started, &snapshot, &chat).await,
                    );
                }
                match cache.flight(&plan.key) {
                    Flight::Follower(slot) => {
                        let first_byte = rt.config.timeouts.first_byte;
                        if let Ok(Some(entry)) =
                            tokio::time::timeout(first_byte, coalesce::wait(slot)).await
                        {
                            let hit = Hit {
                                entry,
                                kind: "hit",
                                similarity: None,
                            };
                            return Ok(serve_hit(
                                &state, record, hit, claims, started, &snapshot, &chat,
                            )
                            .await);
                        }
                    }
                    Flight::Leader(l) => {
                        // The previous flight may have filled the entry just now.
                        if let Some(entry) = cache.store().get(&plan.key).await {
                            let hit = Hit {
                                entry,
                                kind: "hit",
                                similarity: None,
                            };
                            return Ok(serve_hit(
                                &state, record, hit, claims, started, &snapshot, &chat,
                            )
                            .await);
                        }
                        leader = Some(l);
                    }
                }
            }
            record.cache = Some("miss");
            cache_fill = Some(CacheFill::new(cache.clone(), plan, leader, probe));
        }
    }

    claims.budget =
        match admit_budget(&state, &principal, first, prompt_estimate, worst_output).await {
            Ok(r) => r,
            Err(e) => {
                claims.settle(&state, 0.0, 0, None);
                let err = finish_error(&state, record, None, started, e).await;
                return Ok(error_with_headers(err, &snapshot));
            }
        };

    let client = state.client();
    let chat = &chat;
    let ctx_for = |target: &Target| {
        let info =
            Catalog::builtin().lookup(target.provider.kind().as_str(), &target.upstream_model);
        info.and_then(|m| m.max_output_tokens)
            .unwrap_or(FALLBACK_MAX_OUTPUT)
    };

    if chat.is_stream() {
        let outcome = dispatch::run(&state, &rt, &route, tokens, |target: Target| async move {
            let ctx = ConvertCtx {
                upstream_model: &target.upstream_model,
                created,
                default_max_tokens: ctx_for(&target),
            };
            let mut upstream = client.chat_stream(&target.provider, chat, &ctx).await?;
            // The first event decides: a failure before it can still go elsewhere.
            let first: ChunkStream = match upstream.chunks.next().await {
                Some(Err(e)) => return Err(e),
                Some(Ok(chunk)) => {
                    Box::pin(futures::stream::once(async move { Ok(chunk) }).chain(upstream.chunks))
                }
                None => Box::pin(futures::stream::empty()),
            };
            Ok((upstream.upstream_request_id, first))
        })
        .await;
        return match outcome {
            Ok(served) => {
                let Served {
                    value: (upstream_request_id, chunks),
                    target,
                    inflight,
                    target_hold,
                    attempt_started_ns,
                } = served;
                record.provider = target.provider.name().to_owned();
                record.upstream_model = target.upstream_model.to_string();
                record.upstream_request_id = upstream_request_id;
                claims.holds.extend(target_hold);
                claims.inflight = Some(inflight);
                claims.attempt_started_ns = attempt_started_ns;
                let served_by = served_by_header(&target);
                let cache_miss = cache_fill.is_some();
                let guard = StreamGuard::new(
                    state.clone(),
                    record,
                    target,
                    started,
                    prompt_estimate,
                    claims,
                    bodies,
                )
                .with_cache(cache_fill);
                let mut resp =
                    stream::sse_response(chunks, guard, chat.wants_stream_usage(), served_by);
                crate::limit::apply_headers(resp.headers_mut(), &snapshot);
                if cache_miss {
                    resp.headers_mut()
                        .insert("x-plexus-cache", HeaderValue::from_static("miss"));
                }
                Ok(resp)
            }
            Err(failed) => Ok(failure(&state, record, claims, started, failed, &snapshot).await),
        };
    }

    let outcome = dispatch::run(&state, &rt, &route, tokens, |target: Target| async move {
        let ctx = ConvertCtx {
            upstream_model: &target.upstream_model,
            created,
            default_max_tokens: ctx_for(&target),
        };
        client.chat(&target.provider, chat, &ctx).await
    })
    .await;
    match outcome {
        Ok(served) => {
            let first_byte_ns = state.limiter().now_ns();
            record.provider = served.target.provider.name().to_owned();
            record.upstream_model = served.target.upstream_model.to_string();
            record.upstream_request_id = served.value.upstream_request_id;
            claims.holds.extend(served.target_hold);
            claims.inflight = Some(served.inflight);
            claims.attempt_started_ns = served.attempt_started_ns;
            Ok(answer(
                &state,
                record,
                &served.target,
                started,
                served.value.response,
                prompt_estimate,
                claims,
                first_byte_ns,
                &snapshot,
                cache_fill,
            )
            .await)
        }
        Err(failed) => Ok(failure(&state, record, claims, started, failed, &snapshot).await),
    }
}

/// A fresh, uncached answer to `chat` (the semantic cache's judge): the text of its first
/// choice. Logged like any request, under the key id `cache-judge`.
pub(crate) async fn fresh_answer(state: &AppState, chat: &ChatCompletionRequest) -> Option<String> {
    let rt = state.runtime();
    let route = rt.resolve(&chat.model).ok()?;
    let started = Instant::now();
    let created = state.clock().now_unix_secs();
    let client = state.client();
    let served = dispatch::run(state, &rt, &route, 0, |target: Target| async move {
        let ctx = ConvertCtx {
            upstream_model: &target.upstream_model,
            created,
            default_max_tokens: FALLBACK_MAX_OUTPUT,
        };
        client.chat(&target.provider, chat, &ctx).await
    })
    .await
    .ok()?;
    let completion = match served.value.response {
        ChatBody::Parsed(c) => c,
        ChatBody::Raw { bytes, .. } => serde_json::from_slice(&bytes).ok()?,
    };
    let usage = completion.usage.clone().unwrap_or_default();
    let cost = cost_usd(&served.target, &usage);
    served
        .inflight
        .finish(state.limiter().now_ns(), Outcome::Neutral);
    let record = RequestRecord {
        ts_ms: state.clock().now_unix_ms(),
        request_id: format!("judge-{}", uuid::Uuid::new_v4().simple()),
        key_id: "cache-judge".into(),
        endpoint: "chat",
        model: chat.model.clone(),
        provider: served.target.provider.name().to_owned(),
        upstream_model: served.target.upstream_model.to_string(),
        status: 200,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cost_usd: cost,
        latency_ms: started.elapsed().as_millis() as u64,
        ..Default::default()
    };
    state.writer().record(record).await;
    Some(crate::cache::answer_text(&completion))
}

/// Answers from the cache: the stored completion as JSON, or replayed as an SSE stream.
async fn serve_hit(
    state: &AppState,
    mut record: RequestRecord,
    hit: Hit,
    claims: Claims,
    started: Instant,
    snapshot: &Snapshot,
    chat: &ChatCompletionRequest,
) -> Response {
    claims.settle(state, 0.0, 0, None);
    let served_by = hit.entry.served_by.as_str();
    let (provider, upstream) = served_by.split_once('/').unwrap_or(("", served_by));
    record.provider = provider.to_owned();
    record.upstream_model = upstream.to_owned();
    record.status = 200;
    record.cache = Some(hit.kind);
    record.latency_ms = started.elapsed().as_millis() as u64;
    ::metrics::counter!("plexus_cache_hits_total", "kind" => hit.kind).increment(1);
    let mut resp = if chat.is_stream() {
        match serde_json::from_str::<ChatCompletion>(&hit.entry.body) {
            Ok(c) => stream::replay_response(&c, chat.wants_stream_usage()),
            Err(e) => {
                let err = ApiError::internal(format!("unreadable cache entry: {e}"));
                return finish_error(state, record, None, started, err)
                    .await
                    .into_response();
            }
        }
    } else {
        let mut r = Bytes::from(hit.entry.body.clone()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    state.writer().record(record).await;
    let headers = resp.headers_mut();
    crate::limit::apply_headers(headers, snapshot);
    headers.insert("x-plexus-cache", HeaderValue::from_static(hit.kind));
    headers.insert("x-plexus-cost-usd", HeaderValue::from_static("0.00000000"));
    if let Ok(v) = HeaderValue::from_str(served_by) {
        headers.insert("x-plexus-served-by", v);
    }
    if let Some(s) = hit.similarity {
        if let Ok(v) = HeaderValue::from_str(&format!("{s:.4}")) {
            headers.insert("x-plexus-cache-similarity", v);
        }
    }
    resp
}

/// Every target and fallback failed: log, release the holds, answer with the last error.
async fn failure(
    state: &AppState,
    mut record: RequestRecord,
    claims: Claims,
    started: Instant,
    failed: Failed,
    snapshot: &Snapshot,
) -> Response {
    claims.settle(state, 0.0, 0, None);
    if let Some(t) = &failed.target {
        record.provider = t.provider.name().to_owned();
        record.upstream_model = t.upstream_model.to_string();
    }
    let err = finish_error(state, record, failed.target.as_ref(), started, failed.error).await;
    let mut resp = error_with_headers(err, snapshot);
    if let Some(v) = failed.target.as_ref().and_then(served_by_header) {
        resp.headers_mut().insert("x-plexus-served-by", v);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    state: &AppState,
    mut record: RequestRecord,
    target: &Target,
    started: Instant,
    response: ChatBody,
    prompt_estimate: u64,
    claims: Claims,
    first_byte_ns: u64,
    snapshot: &Snapshot,
    cache_fill: Option<CacheFill>,
) -> Response {
    let bodies = state.runtime().config.request_bodies;
    let (body, usage) = match response {
        ChatBody::Raw { bytes, usage } => (Ok(bytes), usage),
        ChatBody::Parsed(mut response) => {
            let usage = match &response.usage {
                Some(u) => u.clone(),
                None => {
                    // The upstream sent no usage: estimate, mark it, and tell the client.
                    record.usage_estimated = true;
                    let u = Usage::new(prompt_estimate, estimate_tokens(response_chars(&response)));
                    response.usage = Some(u.clone());
                    u
                }
            };
            (serde_json::to_vec(&response).map(Bytes::from), usage)
        }
    };
    let cost = cost_usd(target, &usage);
    claims.settle(
        state,
        cost,
        usage.prompt_tokens + usage.completion_tokens,
        Some(first_byte_ns),
    );
    record.status = 200;
    record.prompt_tokens = usage.prompt_tokens;
    record.completion_tokens = usage.completion_tokens;
    record.cached_tokens = usage.cached_tokens();
    record.reasoning_tokens = usage.reasoning_tokens();
    record.cost_usd = cost;
    record.latency_ms = started.elapsed().as_millis() as u64;
    if let Ok(b) = &body {
        record.response_body = keep_body(bodies, b);
    }
    let record_cache_miss = record.cache.is_some();
    metrics::observe(&record, Some(&target.metrics));
    state.writer().record(record).await;
    if let (Some(fill), Ok(b)) = (cache_fill, &body) {
        if let Ok(text) = std::str::from_utf8(b) {
            fill.complete(state, text.to_owned(), target.served_by())
                .await;
        }
    }

    match body {
        Ok(b) => {
            let mut resp = json_response(b, cost, target, snapshot);
            if record_cache_miss {
                resp.headers_mut()
                    .insert("x-plexus-cache", HeaderValue::from_static("miss"));
            }
            resp
        }
        Err(e) => {
            HttpError(ApiError::internal(format!("cannot encode response: {e}"))).into_response()
        }
    }
}

/// Characters of content and tool arguments, for estimating completion tokens.
fn response_chars(response: &ChatCompletion) -> usize {
    response
        .choices
        .iter()
        .map(|c| {
            c.message.content.as_deref().map_or(0, str::len)
                + c.message
                    .tool_calls
                    .iter()
                    .flatten()
                    .map(|t| t.function.arguments.len())
                    .sum::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_param() {
        let e = parse_json::<ChatCompletionRequest>(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse_json::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse_json::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse_json::<ChatCompletionRequest>(b"{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.param.is_none());
        assert!(
            parse_json::<ChatCompletionRequest>(br#"{"model":"m","messages":[]} trailing"#)
                .is_err()
        );
    }

    #[test]
    fn validation_names_the_param() {
        let base: ChatCompletionRequest =
            parse_json(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(validate(&base).is_ok());
        type Mutation = fn(&mut ChatCompletionRequest);
        let cases: [(&str, Mutation); 5] = [
            ("messages", |r| r.messages.clear()),
            ("n", |r| r.n = Some(0)),
            ("temperature", |r| r.temperature = Some(3.0)),
            ("top_p", |r| r.top_p = Some(1.5)),
            ("stream_options", |r| {
                r.stream_options = Some(Default::default())
            }),
        ];
        for (param, mutate) in cases {
            let mut r = base.clone();
            mutate(&mut r);
            assert_eq!(validate(&r).unwrap_err().param.as_deref(), Some(param));
        }
    }
}
