//! The pipeline of a chat completion, its stages declared in order:
//!
//! 1. **receive**: the request is validated (the server parsed its wire format);
//! 2. **authenticate**: the principal arrives in the [`CallCtx`] (the server authenticated it;
//!    inner calls inherit their parent's, the gateway's own calls run as `system`);
//! 3. **authorize**: the key's allowed models;
//! 4. **resolve**: the model name to its route;
//! 5. **rate limits**: global, model, and the caller's key, user and team (an inner call takes
//!    only their token limits: its client request took the request rate and concurrency once);
//! 6. **cache**: exact, then semantic; a hit answers here and never touches a budget;
//! 7. **budget reservation**: the worst case over every target and fallback that may serve
//!    the request, or a draw from the parent's reservation for an inner call;
//! 8. **dispatch**: balancing, breakers, provider limits, retries and fallbacks
//!    ([`crate::dispatch`]);
//! 9. **execute**: the provider call ([`plexus_providers::client`]);
//! 10. **settle and record**: the [`Admission`] guard settles every hold with the real usage
//!     and cost and writes the one record of the call, on every path; dropped unsettled (the
//!     caller went away) it records the call as cancelled (499).

use crate::cache::{CacheFill, Hit};
use crate::composite::Draw;
use crate::ctx::{CallCtx, Origin};
use crate::dispatch::{self, Failed, Served};
use crate::limit::{BudgetError, BudgetHold, Hold};
use crate::metrics::TargetMetrics;
use crate::record;
use crate::runtime::{ModelRoute, Runtime, Target};
use crate::stream::{AnswerStream, StreamAccount};
use crate::Gateway;
use bytes::Bytes;
use futures::StreamExt;
use plexus_auth::roles::Principal;
use plexus_cache::coalesce::{self, Flight};
use plexus_core::config::{ProviderConfig, ProviderKind};
use plexus_core::log::RequestRecord;
use plexus_core::{ApiError, ErrorCode};
use plexus_limits::rate::{Snapshot, Subject};
use plexus_protocol::money::Nanos;
use plexus_protocol::openai::{ChatCompletion, ChatCompletionRequest, Usage};
pub use plexus_providers::client::NativeApi;
use plexus_providers::client::{ChatBody, ChunkStream};
use plexus_providers::ConvertCtx;
use plexus_router::health::{InFlight, Outcome};
use std::sync::Arc;
use std::time::Instant;

/// Output cap sent to providers that require one when neither the client nor the catalog
/// gives one.
pub const FALLBACK_MAX_OUTPUT: u32 = 4096;

/// The wire format a request arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI Chat Completions (also the canonical form).
    OpenAiChat,
    /// Anthropic Messages (`/v1/messages`), translated into the canonical form; the original
    /// bytes are kept for the record.
    AnthropicMessages,
    /// OpenAI Responses (`/v1/responses`), translated into the canonical form.
    OpenAiResponses,
    /// Made by the gateway itself (an inner or system call): no original bytes.
    Internal,
}

/// A chat request: the canonical form, and what arrived on the wire.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Boxed: it travels through several futures, and moves stay pointer-sized.
    pub chat: Box<ChatCompletionRequest>,
    pub wire: WireFormat,
    /// The original bytes (for the stored body and the prompt estimate); empty for inner
    /// calls.
    pub body: Bytes,
    /// Headers of the client's to forward when the request is passed through in its own format
    /// (Anthropic's `anthropic-beta`); empty otherwise.
    pub forward_headers: Vec<(String, String)>,
}

impl ChatRequest {
    pub fn openai(chat: impl Into<Box<ChatCompletionRequest>>, body: Bytes) -> ChatRequest {
        ChatRequest {
            chat: chat.into(),
            wire: WireFormat::OpenAiChat,
            body,
            forward_headers: Vec::new(),
        }
    }

    /// An Anthropic Messages request, translated into `chat`; `body` is what arrived. An
    /// Anthropic target gets `body` itself (only `model` replaced) with `forward_headers`.
    pub fn anthropic(
        chat: impl Into<Box<ChatCompletionRequest>>,
        body: Bytes,
        forward_headers: Vec<(String, String)>,
    ) -> ChatRequest {
        ChatRequest {
            chat: chat.into(),
            wire: WireFormat::AnthropicMessages,
            body,
            forward_headers,
        }
    }

    /// An OpenAI Responses request, translated into `chat`; `body` is what arrived.
    pub fn responses(chat: impl Into<Box<ChatCompletionRequest>>, body: Bytes) -> ChatRequest {
        ChatRequest {
            chat: chat.into(),
            wire: WireFormat::OpenAiResponses,
            body,
            forward_headers: Vec::new(),
        }
    }

    /// The endpoint its record is filed under.
    pub fn endpoint(&self) -> &'static str {
        match self.wire {
            WireFormat::AnthropicMessages => "messages",
            WireFormat::OpenAiResponses => "responses",
            WireFormat::OpenAiChat | WireFormat::Internal => "chat",
        }
    }

    /// A request the gateway makes itself.
    pub fn internal(chat: impl Into<Box<ChatCompletionRequest>>) -> ChatRequest {
        ChatRequest {
            chat: chat.into(),
            wire: WireFormat::Internal,
            body: Bytes::new(),
            forward_headers: Vec::new(),
        }
    }

    /// Prompt tokens by the coarse estimate (about 4 characters a token of the request).
    fn prompt_estimate(&self) -> u64 {
        let len = if self.body.is_empty() {
            serde_json::to_vec(&self.chat).map_or(0, |v| v.len())
        } else {
            self.body.len()
        };
        record::estimate_tokens(len)
    }
}

/// What every answer (and failure) reports besides its body: for the caller's headers.
#[derive(Debug, Clone, Default)]
pub struct AnswerMeta {
    /// `provider/upstream_model` that served (or last failed).
    pub served_by: Option<String>,
    /// `hit`, `semantic-hit` or `miss` when the cache was consulted.
    pub cache: Option<&'static str>,
    pub similarity: Option<f32>,
    /// The limits closest to exhaustion.
    pub limits: Snapshot,
    /// For a `select` model: the chosen candidate and a short reason (`x-plexus-route`).
    pub route: Option<String>,
    /// The answer is in the client's own format, passed through from the provider (an
    /// Anthropic Messages body or an OpenAI Responses `response` object, or for a stream the
    /// provider's events in `native_tap`; see [`native_api`]).
    pub native: bool,
    pub native_tap: Option<NativeEvents>,
    /// For an orchestration: its id and, when it answered, its calibrated confidence
    /// (`x-plexus-orchestration-id`, `x-plexus-confidence`).
    pub orchestration: Option<(String, Option<f64>)>,
}

/// Runs a call's stages within its deadline, if it has one.
pub(crate) async fn within_deadline<T>(
    ctx: &CallCtx,
    run: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match ctx.deadline {
        None => run.await,
        // Boxed: only inner calls have deadlines; every call's future would carry the timer.
        Some(at) => Box::pin(tokio::time::timeout_at(at, run))
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::UpstreamTimeout,
                    "The call's deadline passed before its answer began.",
                ))
            }),
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct FullAnswer {
    pub meta: AnswerMeta,
    /// An OpenAI chat completion as JSON: the provider's own bytes when it spoke OpenAI; with
    /// `meta.native`, the provider's answer in the client's own format.
    pub body: Bytes,
    pub usage: Usage,
    /// What the call cost (0 for a cache hit).
    pub cost: Nanos,
}

/// A passed-through stream's events as the provider sent them, in order: (event name, data).
/// The chunks the stream yields are the gateway's decoded copies, for its accounting.
#[derive(Debug, Clone, Default)]
pub struct NativeEvents(plexus_providers::client::Tap);

impl NativeEvents {
    /// Takes the events received so far.
    pub fn drain(&self) -> Vec<(String, String)> {
        self.0.drain()
    }
}

impl FullAnswer {
    /// A passed-through body (`meta.native`) under the model name the client asked for.
    pub fn native_body_as(&self, model: &str) -> Result<Vec<u8>, ApiError> {
        plexus_providers::native::with_model(&self.body, model)
            .map_err(|e| ApiError::internal(format!("unreadable answer: {e}")))
    }

    /// The answer parsed (for callers that read it rather than forward it).
    pub fn completion(&self) -> Result<ChatCompletion, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::internal(format!("unreadable answer: {e}")))
    }
}

/// What [`Gateway::complete`] returns.
pub enum Answer {
    Full(FullAnswer),
    Stream(AnswerStream),
}

/// A call that failed, with what the caller's headers need.
#[derive(Debug)]
pub struct Failure {
    pub error: ApiError,
    pub meta: AnswerMeta,
}

/// A share of the caller's budgets held by a call.
pub(crate) enum BudgetClaim {
    Own(BudgetHold),
    Drawn(Draw),
}

/// How the serving target fared, for its health.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TargetFate {
    /// It answered; the first byte arrived at this time on the limiter's clock.
    Answered(u64),
    Failed,
    /// Nothing to learn (the caller went away, or no target served).
    Unknown,
}

/// How a call ended, for [`Admission::finish`].
pub(crate) struct Settlement<'a> {
    pub status: u16,
    pub error: Option<&'a ApiError>,
    /// The usage, and whether it is estimated.
    pub usage: Option<(&'a Usage, bool)>,
    pub fate: TargetFate,
}

impl<'a> Settlement<'a> {
    /// Answered with `usage`; the target's first byte came at `first_byte_ns`.
    pub(crate) fn answered(usage: &'a Usage, estimated: bool, first_byte_ns: u64) -> Self {
        Settlement {
            status: 200,
            error: None,
            usage: Some((usage, estimated)),
            fate: TargetFate::Answered(first_byte_ns),
        }
    }

    /// Answered without a provider call (a cache hit).
    pub(crate) fn from_cache() -> Self {
        Settlement {
            status: 200,
            error: None,
            usage: None,
            fate: TargetFate::Unknown,
        }
    }

    /// Failed before an answer began.
    pub(crate) fn failed(error: &'a ApiError) -> Self {
        Settlement {
            status: error.status(),
            error: Some(error),
            usage: None,
            fate: TargetFate::Unknown,
        }
    }
}

/// What an admitted call holds, and its record: settled exactly once, by [`Admission::finish`]
/// or, when dropped unsettled, as cancelled (499).
pub(crate) struct Admission {
    gateway: Gateway,
    record: Option<Box<RequestRecord>>,
    started: Instant,
    pub(crate) holds: Vec<Hold>,
    pub(crate) budget: Option<BudgetClaim>,
    inflight: Option<InFlight>,
    /// When the serving attempt started, on the limiter's clock (for the target's latency).
    attempt_started_ns: u64,
    target: Option<Target>,
    /// For a call cancelled before its usage was known.
    prompt_estimate: u64,
    /// Set when the caller went away while the call ran on (it is then recorded as 499).
    caller_gone: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The selector's decision, for a `select` model: completed with the candidate that
    /// served and written into the record when the call settles.
    pub(crate) decision: Option<Box<crate::select::Decision>>,
}

impl Admission {
    pub(crate) fn new(
        gateway: &Gateway,
        ctx: &CallCtx,
        endpoint: &'static str,
        model: &str,
        stream: bool,
    ) -> Admission {
        Admission {
            gateway: gateway.clone(),
            record: Some(record::base(gateway, ctx, endpoint, model, stream)),
            started: ctx.started,
            holds: Vec::new(),
            budget: None,
            inflight: None,
            attempt_started_ns: 0,
            target: None,
            prompt_estimate: 0,
            caller_gone: ctx.caller_gone.clone(),
            decision: None,
        }
    }

    pub(crate) fn record_mut(&mut self) -> Option<&mut RequestRecord> {
        self.record.as_deref_mut()
    }

    /// The target that serves (or last failed): for the record, the metrics and the cost.
    fn set_target(&mut self, target: Target) {
        if let Some(r) = &mut self.record {
            r.provider = target.provider.name().to_owned();
            r.upstream_model = target.upstream_model.to_string();
        }
        self.target = Some(target);
    }

    /// The target that serves, once dispatch chose it.
    pub(crate) fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Takes over what dispatch holds for the serving target.
    pub(crate) fn serving<T>(&mut self, served: Served<T>) -> T {
        self.set_target(served.target);
        self.holds.extend(served.target_hold);
        self.holds.extend(served.model_hold);
        self.inflight = Some(served.inflight);
        self.attempt_started_ns = served.attempt_started_ns;
        served.value
    }

    /// Moves everything into a new guard (the one a stream carries), leaving this one settled.
    pub(crate) fn take(&mut self) -> Admission {
        Admission {
            gateway: self.gateway.clone(),
            record: self.record.take(),
            started: self.started,
            holds: std::mem::take(&mut self.holds),
            budget: self.budget.take(),
            inflight: self.inflight.take(),
            attempt_started_ns: self.attempt_started_ns,
            target: self.target.take(),
            prompt_estimate: self.prompt_estimate,
            caller_gone: self.caller_gone.take(),
            decision: self.decision.take(),
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn limiter_now(&self) -> u64 {
        self.gateway.limiter().now_ns()
    }

    /// Settles every hold and completes the record; `None` when already settled. Returns the
    /// record to write and the call's cost.
    pub(crate) fn settle(&mut self, s: Settlement<'_>) -> Option<(Box<RequestRecord>, Nanos)> {
        let Settlement {
            status,
            error,
            usage,
            fate,
        } = s;
        let mut record = self.record.take()?;
        let cost = match (usage, &self.target) {
            (Some((u, _)), Some(t)) => t.cost(u).unwrap_or(Nanos::ZERO),
            _ => Nanos::ZERO,
        };
        let tokens = usage.map_or(0, |(u, _)| u.prompt_tokens + u.completion_tokens);
        let now = self.gateway.limiter().now_ns();
        for h in self.holds.drain(..) {
            h.settle(Some(tokens), now);
        }
        match self.budget.take() {
            Some(BudgetClaim::Own(b)) => b.settle(cost),
            Some(BudgetClaim::Drawn(d)) => d.settle(cost),
            None => {}
        }
        if let Some(f) = self.inflight.take() {
            let outcome = match fate {
                TargetFate::Answered(at) => Outcome::Success {
                    latency_ns: at.saturating_sub(self.attempt_started_ns),
                },
                TargetFate::Failed => Outcome::Failure,
                TargetFate::Unknown => Outcome::Neutral,
            };
            f.finish(now, outcome);
        }
        let gone = self
            .caller_gone
            .as_ref()
            .is_some_and(|g| g.load(std::sync::atomic::Ordering::Acquire));
        // A call that ran to its end after its caller left is billed as it ran, and marked.
        record.status = if gone && status < 300 { 499 } else { status };
        record.error_code = error.map(|e| e.code.as_str());
        if let Some((u, estimated)) = usage {
            record::apply_usage(&mut record, u, estimated);
        }
        record.cost = cost;
        record.latency_ms = self.started.elapsed().as_millis() as u64;
        if let Some(mut decision) = self.decision.take() {
            if let Some(t) = &self.target {
                decision.served = Some(t.model.to_string());
                if status < 300 {
                    // The candidate's own time: without the decision (the embedding).
                    let deciding_ms = decision.decide_us / 1000;
                    self.gateway.observe_selected(
                        &decision.model,
                        &t.model,
                        record.completion_tokens,
                        record.latency_ms.saturating_sub(deciding_ms),
                        record.ttft_ms.map(|t| t.saturating_sub(deciding_ms)),
                    );
                }
            }
            record.route = serde_json::to_string(&decision).ok();
        }
        Some((record, cost))
    }

    fn metrics(&self) -> Option<Arc<TargetMetrics>> {
        self.target.as_ref().map(|t| t.metrics.clone())
    }

    /// Settles and writes the record, waiting while the log's queue is full. Returns the cost.
    pub(crate) async fn finish(mut self, s: Settlement<'_>) -> Nanos {
        let Some((record, cost)) = self.settle(s) else {
            return Nanos::ZERO;
        };
        let metrics = self.metrics();
        record::write(&self.gateway, record, metrics.as_deref()).await;
        cost
    }

    /// Like [`Admission::finish`], for paths that cannot wait (a stream's poll, a `Drop`).
    pub(crate) fn finish_detached(&mut self, s: Settlement<'_>) {
        if let Some((record, _)) = self.settle(s) {
            let metrics = self.metrics();
            record::write_detached(&self.gateway, record, metrics.as_deref());
        }
    }

    /// Settles a call that failed before its answer began, and shapes the failure.
    pub(crate) async fn fail(self, error: ApiError, meta: AnswerMeta) -> Failure {
        self.finish(Settlement::failed(&error)).await;
        Failure { error, meta }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.record.is_none() {
            return;
        }
        // The caller went away before the call settled: the prompt was sent (if a target was
        // chosen), so it is billed by estimate.
        let usage = Usage::new(self.prompt_estimate, 0);
        self.finish_detached(Settlement {
            status: 499,
            error: None,
            usage: self.target.is_some().then_some((&usage, true)),
            fate: TargetFate::Unknown,
        });
    }
}

/// Marks the caller as gone when dropped before [`GoneOnDrop::disarm`].
struct GoneOnDrop(Option<Arc<std::sync::atomic::AtomicBool>>);

impl GoneOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// The model a refused body asks for: its top-level `model`, when the body is a JSON object
/// and that is a string (whatever else is wrong with it). `None` for anything else.
fn asked_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Asked {
        #[serde(default)]
        model: Option<String>,
    }
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice::<Asked>(body)
        .ok()?
        .model
        .filter(|m| !m.is_empty())
}

/// Semantic checks the types cannot express, naming the parameter.
pub fn validate(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    /// The most choices one request may ask for, as OpenAI.
    const MAX_N: u32 = 128;
    require_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid_request(
            "`messages` must contain at least one message.",
            "messages",
        ));
    }
    if let Some(n) = req.n {
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::invalid_request(
                "`n` must be between 1 and 128.",
                "n",
            ));
        }
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
    for (value, param) in [
        (req.max_tokens, "max_tokens"),
        (req.max_completion_tokens, "max_completion_tokens"),
    ] {
        if value == Some(0) {
            return Err(ApiError::invalid_request(
                format!("`{param}` must be at least 1."),
                param,
            ));
        }
    }
    Ok(())
}

pub(crate) fn require_model(model: &str) -> Result<(), ApiError> {
    if model.is_empty() {
        return Err(ApiError::invalid_request(
            "`model` must not be empty.",
            "model",
        ));
    }
    Ok(())
}

/// The key's allowed models: a 403 naming the model, before anything else happens.
pub fn check_model_access(principal: &Principal, model: &str) -> Result<(), ApiError> {
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

/// Whether any limit on the request or its targets counts tokens (only then are they
/// counted).
fn limits_tokens(subjects: &[Subject], route: &ModelRoute) -> bool {
    subjects.iter().any(|s| s.quota.limits_tokens())
        || route
            .targets
            .iter()
            .any(|t| t.limit.as_ref().is_some_and(|l| l.quota.limits_tokens()))
}

fn price_unknown(target: &Target) -> ApiError {
    ApiError::new(
        ErrorCode::PriceUnknown,
        format!(
            "A budget applies to this key, but the price of `{}` is unknown, so its cost cannot be bounded. An administrator must declare the target's `price` in the config.",
            target.served_by()
        ),
    )
}

impl Gateway {
    /// Runs a chat completion through the pipeline.
    pub async fn complete(&self, ctx: &CallCtx, mut req: ChatRequest) -> Result<Answer, Failure> {
        let orchestration = {
            let rt = self.inner.runtime.load();
            // An alias (`aliases:`) becomes the configured model it stands for, so that
            // selection, orchestration, resolution, the key's allowed models, limits and the
            // record all see that model.
            let canonical = rt.canonical_model(&req.chat.model);
            if canonical != req.chat.model.as_str() {
                let canonical = canonical.into_owned();
                req.chat.model = canonical;
            }
            rt.orchestration(&req.chat.model).cloned()
        };
        if let Some(route) = orchestration {
            let spec = route.config.clone();
            return Box::pin(self.complete_orchestrated(ctx, spec, req)).await;
        }
        let mut admission = Admission::new(
            self,
            ctx,
            req.endpoint(),
            &req.chat.model,
            req.chat.is_stream(),
        );
        let mut meta = AnswerMeta::default();
        // Boxed: the pipeline's state machine is large, and moving it through every layer of
        // awaits above it (callgrind: ~37 copies a request) costs far more than one allocation.
        let run = Box::pin(self.run_chat(ctx, req, &mut admission, &mut meta));
        match within_deadline(ctx, run).await {
            Ok(answer) => Ok(answer),
            // Boxed: the failure path's state would otherwise grow every call's future.
            Err(error) => Err(Box::pin(admission.fail(error, meta)).await),
        }
    }

    /// Like [`Gateway::complete`], but a non-streamed call runs to its end in a tracked task:
    /// if the caller goes away (its future is dropped), the provider call still finishes, so
    /// its real usage is billed and recorded (as 499), and shutdown waits for it. A streamed
    /// call returns at once, and its stream settles itself.
    ///
    /// Either way the call ends (settled, recorded) when [`Gateway::cancel_in_flight`] fires.
    pub async fn complete_detached(
        &self,
        mut ctx: CallCtx,
        req: ChatRequest,
    ) -> Result<Answer, Failure> {
        if req.chat.is_stream() {
            return self.complete_or_cancel(&ctx, req).await;
        }
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        ctx.caller_gone = Some(gone.clone());
        let watch = GoneOnDrop(Some(gone));
        let gateway = self.clone();
        let task = self
            .tasks()
            .spawn(async move { gateway.complete_or_cancel(&ctx, req).await });
        let result = task.await;
        watch.disarm();
        match result {
            Ok(answer) => answer,
            Err(e) => Err(Failure {
                error: ApiError::internal(format!("the call's task failed: {e}")),
                meta: AnswerMeta::default(),
            }),
        }
    }

    /// [`Gateway::complete`] until shutdown cancels what is left: the call's future is then
    /// dropped, which settles and records it (499).
    async fn complete_or_cancel(&self, ctx: &CallCtx, req: ChatRequest) -> Result<Answer, Failure> {
        tokio::select! {
            biased;
            result = self.complete(ctx, req) => result,
            () = self.in_flight_stop().cancelled() => Err(Failure {
                error: ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "The gateway is shutting down; the call was cancelled.",
                )
                .with_retry_after(Some(std::time::Duration::from_secs(1))),
                meta: AnswerMeta::default(),
            }),
        }
    }

    /// Records a request refused before it could enter the pipeline (an unreadable body): every
    /// request that reached the gateway has a record. `body` is what arrived (empty when it
    /// was not read): the record keeps the model it names, if any, so the refusal is reported
    /// under the model the client asked for. Boxed, so that callers' futures (on every
    /// request's path) do not carry this rare path's state.
    pub fn record_rejected<'a>(
        &'a self,
        ctx: &'a CallCtx,
        endpoint: &'static str,
        body: &'a [u8],
        error: &'a ApiError,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let model = asked_model(body);
            let admission =
                Admission::new(self, ctx, endpoint, model.as_deref().unwrap_or(""), false);
            admission.finish(Settlement::failed(error)).await;
        })
    }

    async fn run_chat(
        &self,
        ctx: &CallCtx,
        req: ChatRequest,
        admission: &mut Admission,
        meta: &mut AnswerMeta,
    ) -> Result<Answer, ApiError> {
        let rt = self.runtime();
        // 1. receive
        validate(&req.chat)?;
        let prompt_estimate = req.prompt_estimate();
        admission.prompt_estimate = prompt_estimate;
        let bodies = rt.config.request_bodies;
        if let Some(r) = admission.record_mut() {
            r.request_body = record::keep_body(bodies, &req.body);
        }
        let lenient = matches!(
            req.wire,
            WireFormat::AnthropicMessages | WireFormat::OpenAiResponses
        );
        let ChatRequest {
            chat,
            body: original,
            forward_headers,
            ..
        } = req;
        // A Messages or Responses request goes to a target that speaks its API as it came
        // (only `model` replaced); see `native_api`.
        let wire = req.wire;
        let native = matches!(
            wire,
            WireFormat::AnthropicMessages | WireFormat::OpenAiResponses
        )
        .then_some(plexus_providers::client::NativeRequest {
            body: &original,
            headers: &forward_headers,
        });
        let tap = native.map(|_| plexus_providers::client::Tap::default());
        // 2. authenticate: `ctx.principal`. 3. authorize
        check_model_access(&ctx.principal, &chat.model)?;
        // 4. resolve (a `select` model decides here which candidate serves)
        let route = match rt.selector(&chat.model) {
            None => rt.resolve(&chat.model)?,
            Some(select) => {
                let selected = self
                    .select(ctx, &rt, select, &chat, prompt_estimate)
                    .await?;
                let d = &selected.decision;
                meta.route = Some(format!("{}; {}", d.chosen, d.reason));
                if let Some(r) = admission.record_mut() {
                    r.prompt_embedding = selected.embedding;
                }
                admission.decision = Some(selected.decision);
                selected.route
            }
        };
        let Some(first) = route.targets.first() else {
            return Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The model has no target.",
            ));
        };
        // 5. rate limits
        let n = u64::from(chat.n.unwrap_or(1).max(1));
        let worst_output = u64::from(
            chat.max_output_tokens()
                .or(first.max_output_tokens())
                .unwrap_or(FALLBACK_MAX_OUTPUT),
        ) * n;
        let subjects = self.rate_subjects(ctx, &rt, &route).await?;
        let tokens = if limits_tokens(&subjects, &route) {
            crate::tokens::count_prompt(first.provider.kind(), &first.upstream_model, &chat)
                + worst_output
        } else {
            0
        };
        let on_error = rt.config.limits.on_redis_error;
        let (hold, snapshot) = self.limiter().acquire(&subjects, tokens, on_error).await?;
        admission.holds.extend(hold);
        meta.limits = snapshot;

        // 6. cache: a hit answers here, before any budget or upstream call.
        let mut cache_fill: Option<CacheFill> = None;
        if let Some(cache) = self.cache() {
            let salt = ctx.cache_salt.as_deref();
            if let Some(plan) = cache.plan(ctx.cache, salt, &chat, &ctx.principal, &route) {
                let origin = ctx.origin();
                let mut leader = None;
                let mut probe = None;
                if plan.lookup {
                    let found = cache.lookup(self, &origin, &plan).await;
                    probe = found.probe;
                    if let Some(hit) = found.hit {
                        if hit.kind == "semantic-hit" {
                            cache.maybe_judge(self, &origin, &plan, &hit, &chat);
                        }
                        return Ok(self.serve_hit(admission.take(), meta, hit, &chat).await);
                    }
                    match cache.flight(&plan.key) {
                        Flight::Follower(slot) => {
                            let first_byte = rt.config.timeouts.first_byte;
                            if let Ok(Some(entry)) =
                                tokio::time::timeout(first_byte, coalesce::wait(slot)).await
                            {
                                let hit = Hit::exact(entry);
                                return Ok(self
                                    .serve_hit(admission.take(), meta, hit, &chat)
                                    .await);
                            }
                        }
                        Flight::Leader(l) => {
                            // The previous flight may have filled the entry just now.
                            if let Some(entry) = cache.store().get(&plan.key).await {
                                let hit = Hit::exact(entry);
                                return Ok(self
                                    .serve_hit(admission.take(), meta, hit, &chat)
                                    .await);
                            }
                            leader = Some(l);
                        }
                    }
                }
                meta.cache = Some("miss");
                if let Some(r) = admission.record_mut() {
                    r.cache = Some("miss");
                }
                cache_fill = Some(CacheFill::new(cache.clone(), plan, leader, probe, origin));
            }
        }

        // 7. budget reservation
        admission.budget = self
            .reserve_budget(ctx, &rt, &route, prompt_estimate, |t: &Target| {
                u64::from(
                    chat.max_output_tokens()
                        .or(t.max_output_tokens())
                        .unwrap_or(FALLBACK_MAX_OUTPUT),
                ) * n
            })
            .await?;

        // 8. dispatch and 9. execute
        let created = self.clock().now_unix_secs();
        let client = self.client();
        let chat = &chat;
        if chat.is_stream() {
            let outcome = self
                .dispatch(&rt, &route, ctx, tokens, |target: Target| {
                    let tap = tap.clone();
                    async move {
                        let ctx = convert(&target, created, lenient);
                        let api = native_api(wire, &target.provider.config);
                        let mut upstream = match (native, tap, api) {
                            (Some(n), Some(tap), Some(api)) => {
                                // An earlier attempt's events are not this answer's.
                                tap.clear();
                                client
                                    .native_stream(&target.provider, api, &n, &ctx, tap)
                                    .await?
                            }
                            _ => client.chat_stream(&target.provider, chat, &ctx).await?,
                        };
                        // The first event decides: a failure before it can still go elsewhere.
                        let first: ChunkStream = match upstream.chunks.next().await {
                            Some(Err(e)) => return Err(e),
                            Some(Ok(chunk)) => Box::pin(
                                futures::stream::once(async move { Ok(chunk) })
                                    .chain(upstream.chunks),
                            ),
                            None => Box::pin(futures::stream::empty()),
                        };
                        Ok((upstream.upstream_request_id, first))
                    }
                })
                .await;
            let served = self.served_or_failed(outcome, admission, meta)?;
            let (upstream_request_id, chunks) = admission.serving(served);
            if admission
                .target()
                .is_some_and(|t| native_api(wire, &t.provider.config).is_some())
            {
                meta.native_tap = tap.map(NativeEvents);
            }
            if let Some(r) = admission.record_mut() {
                r.upstream_request_id = upstream_request_id;
            }
            let account = StreamAccount::new(admission.take(), prompt_estimate, bodies, cache_fill);
            return Ok(Answer::Stream(AnswerStream::live(
                self.clone(),
                std::mem::take(meta),
                chunks,
                account,
            )));
        }

        let outcome = self
            .dispatch(&rt, &route, ctx, tokens, |target: Target| async move {
                let ctx = convert(&target, created, lenient);
                let p = &target.provider;
                match (native, native_api(wire, &p.config)) {
                    (Some(n), Some(api)) => client.native(p, api, &n, &ctx).await,
                    _ => client.chat(p, chat, &ctx).await,
                }
            })
            .await;
        let served = self.served_or_failed(outcome, admission, meta)?;
        let first_byte_ns = admission.limiter_now();
        let outcome = admission.serving(served);
        let (body, usage, estimated) = match outcome.response {
            ChatBody::Raw { bytes, usage } => (bytes, usage, false),
            ChatBody::Native { bytes, usage } => {
                meta.native = true;
                (bytes, usage, false)
            }
            ChatBody::Parsed(mut response) => {
                let (usage, estimated) = match &response.usage {
                    Some(u) => (u.clone(), false),
                    None => {
                        // The upstream sent no usage: estimate, mark it, and tell the client.
                        let u = Usage::new(
                            prompt_estimate,
                            record::estimate_tokens(response_chars(&response)),
                        );
                        response.usage = Some(u.clone());
                        (u, true)
                    }
                };
                let bytes = serde_json::to_vec(&response)
                    .map(Bytes::from)
                    .map_err(|e| ApiError::internal(format!("cannot encode response: {e}")))?;
                (bytes, usage, estimated)
            }
        };
        // The cache keeps canonical completions: a passed-through Responses answer is
        // converted into one; an Anthropic Messages body is not cached.
        let cache_text = match (&cache_fill, meta.native) {
            (None, _) => None,
            (Some(_), false) => std::str::from_utf8(&body).ok().map(str::to_owned),
            (Some(_), true) if wire == WireFormat::OpenAiResponses => admission
                .target()
                .and_then(|t| {
                    let ctx = convert(t, created, lenient);
                    plexus_providers::responses_native::from_response(&body, &ctx).ok()
                })
                .and_then(|c| serde_json::to_string(&c).ok()),
            (Some(_), true) => None,
        };
        if let Some(r) = admission.record_mut() {
            r.upstream_request_id = outcome.upstream_request_id;
            r.response_body = record::keep_body(bodies, &body);
        }
        let cost = admission
            .take()
            .finish(Settlement::answered(&usage, estimated, first_byte_ns))
            .await;
        if let (Some(fill), Some(served_by), Some(text)) = (cache_fill, &meta.served_by, cache_text)
        {
            fill.complete(self, text, served_by.clone()).await;
        }
        Ok(Answer::Full(FullAnswer {
            meta: std::mem::take(meta),
            body,
            usage,
            cost,
        }))
    }

    /// Stage 8: the call over the route's targets and fallbacks. Boxed, like the pipeline: its
    /// state machine is large, and this keeps it out of the caller's.
    pub(crate) async fn dispatch<T, F, Fut>(
        &self,
        rt: &Runtime,
        route: &ModelRoute,
        ctx: &CallCtx,
        tokens: u64,
        call: F,
    ) -> Result<Served<T>, Failed>
    where
        F: FnMut(Target) -> Fut,
        Fut: std::future::Future<Output = Result<T, plexus_providers::ProviderError>>,
    {
        Box::pin(dispatch::run(self, rt, route, &ctx.principal, tokens, call)).await
    }

    /// The served attempt, or the failure with its last target in the record and meta.
    pub(crate) fn served_or_failed<T>(
        &self,
        outcome: Result<Served<T>, Failed>,
        admission: &mut Admission,
        meta: &mut AnswerMeta,
    ) -> Result<Served<T>, ApiError> {
        match outcome {
            Ok(served) => {
                meta.served_by = Some(served.target.served_by());
                Ok(served)
            }
            Err(failed) => {
                if let Some(t) = failed.target {
                    meta.served_by = Some(t.served_by());
                    admission.set_target(t);
                }
                Err(failed.error)
            }
        }
    }

    /// Answers from the cache: the stored completion, or replayed as a stream. Nothing was
    /// spent, so the call settles at cost 0.
    async fn serve_hit(
        &self,
        mut admission: Admission,
        meta: &mut AnswerMeta,
        hit: Hit,
        chat: &ChatCompletionRequest,
    ) -> Answer {
        let served_by = hit.entry.served_by.as_str();
        let (provider, upstream) = served_by.split_once('/').unwrap_or(("", served_by));
        if let Some(r) = admission.record_mut() {
            r.provider = provider.to_owned();
            r.upstream_model = upstream.to_owned();
            r.cache = Some(hit.kind);
        }
        meta.cache = Some(hit.kind);
        meta.similarity = hit.similarity;
        meta.served_by = Some(served_by.to_owned());
        ::metrics::counter!("plexus_cache_hits_total", "kind" => hit.kind).increment(1);
        if chat.is_stream() {
            match serde_json::from_str::<ChatCompletion>(&hit.entry.body) {
                Ok(c) => {
                    admission.finish(Settlement::from_cache()).await;
                    Answer::Stream(AnswerStream::replay(std::mem::take(meta), &c))
                }
                Err(e) => {
                    // Unreadable entries are not served; the call fails loudly.
                    let err = ApiError::internal(format!("unreadable cache entry: {e}"));
                    admission.finish(Settlement::failed(&err)).await;
                    let stream = AnswerStream::failed(std::mem::take(meta), err);
                    Answer::Stream(stream)
                }
            }
        } else {
            admission.finish(Settlement::from_cache()).await;
            Answer::Full(FullAnswer {
                meta: std::mem::take(meta),
                body: Bytes::from(hit.entry.body.clone()),
                usage: Usage::default(),
                cost: Nanos::ZERO,
            })
        }
    }

    /// The rate-limit subjects of a call: global and model always; the caller's key, user and
    /// team for a client request, only their token limits for an inner call, none for the
    /// gateway's own calls.
    pub(crate) async fn rate_subjects(
        &self,
        ctx: &CallCtx,
        rt: &Runtime,
        route: &ModelRoute,
    ) -> Result<Vec<Subject>, ApiError> {
        let mut subjects = if ctx.is_system() {
            Vec::new()
        } else {
            self.auth()
                .rate_subjects(&ctx.principal)
                .await
                .map_err(crate::error::from_store)?
        };
        if ctx.is_inner() {
            subjects.retain_mut(|s| {
                s.quota.rpm = None;
                s.quota.max_parallel = None;
                !s.quota.is_empty()
            });
        }
        for s in [&rt.global_limit, &route.limit].into_iter().flatten() {
            subjects.push(Subject::clone(s));
        }
        Ok(subjects)
    }

    /// The worst-case cost of a call over every target and fallback that may serve it, with
    /// `output(target)` tokens out. A target with no known price cannot be bounded.
    fn worst_case(
        &self,
        rt: &Runtime,
        route: &ModelRoute,
        principal: &Principal,
        prompt_tokens: u64,
        output: &dyn Fn(&Target) -> u64,
    ) -> Result<Nanos, ApiError> {
        let fallbacks: Vec<_> = dispatch::allowed_fallbacks(rt, route, principal).collect();
        let mut worst = Nanos::ZERO;
        for t in route
            .targets
            .iter()
            .chain(fallbacks.iter().flat_map(|r| r.targets.iter()))
        {
            let cost = t
                .cost(&Usage::new(prompt_tokens, output(t)))
                .ok_or_else(|| price_unknown(t))?;
            worst = worst.max(cost);
        }
        Ok(worst)
    }

    /// Stage 7: the call's hold on the caller's budgets. The gateway's own calls hold none
    /// (their spend is nobody's budget); an inner call draws from its parent's reservation;
    /// a client call reserves its worst case on every budget that applies.
    pub(crate) async fn reserve_budget(
        &self,
        ctx: &CallCtx,
        rt: &Runtime,
        route: &ModelRoute,
        prompt_tokens: u64,
        output: impl Fn(&Target) -> u64,
    ) -> Result<Option<BudgetClaim>, ApiError> {
        if ctx.is_system() {
            return Ok(None);
        }
        if let Some(drawdown) = &ctx.budget {
            let worst = if drawdown.limited() {
                self.worst_case(rt, route, &ctx.principal, prompt_tokens, &output)?
            } else {
                Nanos::ZERO
            };
            return Ok(Some(BudgetClaim::Drawn(drawdown.draw(worst)?)));
        }
        let Some(limits) = self.budgets_of(&ctx.principal).await? else {
            return Ok(None);
        };
        let worst = self.worst_case(rt, route, &ctx.principal, prompt_tokens, &output)?;
        let hold = self.reserve_on(&limits, worst).await?;
        // What is left, for the selector's next decision for this caller (no extra trip).
        if let Some(share) = hold.remaining_share() {
            self.note_budget_share(&ctx.principal.id, share);
        }
        Ok(Some(BudgetClaim::Own(hold)))
    }

    /// The budgets that apply to `principal`, if any.
    async fn budgets_of(
        &self,
        principal: &Principal,
    ) -> Result<Option<Vec<(plexus_limits::BudgetKey, plexus_limits::Limit)>>, ApiError> {
        let limits = self
            .auth()
            .limits_for(principal)
            .await
            .map_err(crate::error::from_store)?;
        Ok((!limits.is_empty()).then_some(limits))
    }

    /// Reserves `amount` on the caller's own budgets (a composite's reservation); `None` when
    /// none applies.
    pub(crate) async fn reserve_own_budget(
        &self,
        ctx: &CallCtx,
        amount: Nanos,
    ) -> Result<Option<BudgetHold>, ApiError> {
        let Some(limits) = self.budgets_of(&ctx.principal).await? else {
            return Ok(None);
        };
        self.reserve_on(&limits, amount).await.map(Some)
    }

    async fn reserve_on(
        &self,
        limits: &[(plexus_limits::BudgetKey, plexus_limits::Limit)],
        worst: Nanos,
    ) -> Result<BudgetHold, ApiError> {
        let now = self.clock().now_unix_ms();
        let store = self.auth().store();
        let seed = |key: plexus_limits::BudgetKey, since: i64| async move {
            store
                .spend_since(key.scope, &key.id, since)
                .await
                .map_err(|e| format!("cannot read spend: {e}"))
        };
        let on_error = self.runtime().config.limits.on_redis_error;
        match self
            .limiter()
            .reserve_budget(limits, worst, now, on_error, seed)
            .await
        {
            Ok(hold) => Ok(hold),
            Err(BudgetError::Unavailable(e)) => Err(ApiError::new(ErrorCode::ServiceUnavailable, e)),
            Err(BudgetError::Exceeded(ex)) => Err(ApiError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "The {} `{}` has spent ${} of its ${} budget (${} more reserved by requests in flight); this request could cost up to ${}.",
                    ex.key.scope, ex.key.id, ex.spent, ex.limit, ex.reserved, worst
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

    /// A fresh, uncached answer to `chat` for the semantic cache's judge: a system call made
    /// for `origin`, limited, retried and recorded like any other. The text of its first
    /// choice.
    pub(crate) async fn fresh_answer(
        &self,
        origin: &Origin,
        mut chat: ChatCompletionRequest,
    ) -> Option<String> {
        chat.stream = None;
        chat.stream_options = None;
        let ctx = CallCtx::system(origin);
        match self.complete(&ctx, ChatRequest::internal(chat)).await {
            Ok(Answer::Full(full)) => full
                .completion()
                .ok()
                .map(|c| crate::cache::answer_text(&c)),
            Ok(Answer::Stream(_)) => None,
            Err(f) => {
                tracing::debug!(message = "The judge's call failed.", error = %f.error);
                None
            }
        }
    }
}

/// Whether a request that arrived in `wire` goes to `provider` as it came, in the API both
/// speak (only `model` replaced): Anthropic Messages to an Anthropic provider; OpenAI
/// Responses to an OpenAI or OpenAI-compatible provider whose `responses` is on. `None`:
/// the canonical request is translated into the provider's format.
pub fn native_api(wire: WireFormat, provider: &ProviderConfig) -> Option<NativeApi> {
    match (wire, provider.kind) {
        (WireFormat::AnthropicMessages, ProviderKind::Anthropic) => {
            Some(NativeApi::AnthropicMessages)
        }
        (WireFormat::OpenAiResponses, ProviderKind::OpenAi | ProviderKind::OpenAiCompatible)
            if provider.responses =>
        {
            Some(NativeApi::OpenAiResponses)
        }
        _ => None,
    }
}

/// The conversion context of a call to `target`.
fn convert(target: &Target, created: i64, lenient: bool) -> ConvertCtx<'_> {
    ConvertCtx {
        upstream_model: &target.upstream_model,
        created,
        default_max_tokens: target.max_output_tokens().unwrap_or(FALLBACK_MAX_OUTPUT),
        lenient,
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(body: &[u8]) -> ChatCompletionRequest {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn what_goes_through_natively() {
        let provider = |kind: ProviderKind, responses: bool| ProviderConfig {
            name: "p".into(),
            kind,
            base_url: "http://127.0.0.1:1".into(),
            api_key: None,
            api_version: None,
            headers: Vec::new(),
            preset: None,
            supports_n: true,
            stream_usage: true,
            responses,
        };
        use NativeApi::{AnthropicMessages as Messages, OpenAiResponses as Responses};
        use ProviderKind::*;
        let cases = [
            (
                WireFormat::AnthropicMessages,
                Anthropic,
                false,
                Some(Messages),
            ),
            (WireFormat::AnthropicMessages, OpenAi, true, None),
            (WireFormat::OpenAiResponses, OpenAi, true, Some(Responses)),
            (
                WireFormat::OpenAiResponses,
                OpenAiCompatible,
                true,
                Some(Responses),
            ),
            (WireFormat::OpenAiResponses, OpenAi, false, None),
            (WireFormat::OpenAiResponses, OpenAiCompatible, false, None),
            // Azure and the others always translate, whatever `responses` says.
            (WireFormat::OpenAiResponses, Azure, true, None),
            (WireFormat::OpenAiResponses, Anthropic, true, None),
            (WireFormat::OpenAiResponses, Gemini, true, None),
            (WireFormat::OpenAiChat, OpenAi, true, None),
            (WireFormat::Internal, OpenAi, true, None),
        ];
        for (wire, kind, responses, expected) in cases {
            assert_eq!(
                native_api(wire, &provider(kind, responses)),
                expected,
                "{wire:?} to {kind:?} (responses: {responses})"
            );
        }
    }

    #[test]
    fn validation_names_the_param() {
        let base = parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        assert!(validate(&base).is_ok());
        type Mutation = fn(&mut ChatCompletionRequest);
        let cases: [(&str, Mutation); 7] = [
            ("model", |r| r.model.clear()),
            ("messages", |r| r.messages.clear()),
            ("n", |r| r.n = Some(0)),
            ("n", |r| r.n = Some(129)),
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
        for n in [1, 128] {
            let mut r = base.clone();
            r.n = Some(n);
            assert!(validate(&r).is_ok(), "n = {n} is allowed");
        }
        let mut r = base.clone();
        r.n = Some(129);
        assert_eq!(
            validate(&r).unwrap_err().message,
            "`n` must be between 1 and 128."
        );
    }

    #[test]
    fn refused_bodies_keep_the_model_they_ask_for() {
        let asked = |b: &str| asked_model(b.as_bytes());
        assert_eq!(
            asked(r#"{"model":"gpt-x","messages":"not a list","n":-1}"#).as_deref(),
            Some("gpt-x")
        );
        assert_eq!(asked(r#"{"messages":[]}"#), None);
        assert_eq!(asked(r#"{"model":""}"#), None);
        assert_eq!(asked(r#"{"model":42}"#), None);
        assert_eq!(asked(r#"{"model":"gpt""#), None, "not JSON");
        assert_eq!(asked("[1]"), None);
        assert_eq!(asked(""), None);
    }

    #[test]
    fn model_access_is_checked_by_pattern() {
        let mut p = Principal::master();
        assert!(check_model_access(&p, "anything").is_ok());
        p.models = vec!["cheap-*".into()];
        assert!(check_model_access(&p, "cheap-mini").is_ok());
        let e = check_model_access(&p, "pricey").unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (ErrorCode::PermissionDenied, Some("model"))
        );
    }
}
