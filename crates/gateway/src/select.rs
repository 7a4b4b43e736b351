//! The model selector's driver: for a request to a `select` model, it decides which configured
//! candidate serves, then the ordinary pipeline serves it (stage 4, resolve). The decision
//! logic itself is `plexus-select`'s, free of I/O; here are its inputs (the request's needs,
//! the prompt's embedding, prices, live latency and health, the caller's budget and model
//! restrictions, feedback) and its state across requests (exploration pacing, session
//! affinity, learned output lengths and speeds, the feedback index).
//!
//! The chosen candidate's route serves with the other eligible candidates, in rank order, as
//! its fallbacks, so a retryable failure moves to the next-ranked one. The whole decision is
//! kept in the request's record (`route`), with the candidate that finally served.

use crate::ctx::CallCtx;
use crate::error::StartupError;
use crate::runtime::{ModelRoute, Runtime, Target};
use crate::Gateway;
use plexus_core::config::SelectConfig;
use plexus_core::{ApiError, ErrorCode};
use plexus_embed::Embedder;
use plexus_protocol::openai::{ChatCompletionRequest, MessageContent, Role, Usage};
use plexus_select::choose::{self, Candidate, ExplorationPacer, Objective, Policy, QualitySource};
use plexus_select::feedback::FeedbackIndex;
use plexus_select::predictor::QualityPredictor;
use plexus_select::requirements::{Capabilities, Needs};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Expected completion tokens before a candidate has served anything.
const DEFAULT_OUTPUT_TOKENS: f64 = 300.0;
/// Weight of the newest sample in the output-length and speed averages.
const EWMA_ALPHA: f64 = 0.2;
/// Sessions remembered for affinity, and for how long after their last request.
const AFFINITY_CAPACITY: u64 = 100_000;
const AFFINITY_IDLE: Duration = Duration::from_secs(3600);
/// How often every instance reads the feedback others stored.
const FEEDBACK_POLL: Duration = Duration::from_secs(2);
/// Feedback rows read per query.
const FEEDBACK_PAGE: u32 = 1000;

/// A `select` model as configured, with its trained router and embedder loaded.
pub struct SelectRoute {
    pub name: Arc<str>,
    pub config: SelectConfig,
    predictor: Option<QualityPredictor>,
    embedder: Option<Arc<dyn Embedder>>,
}

impl std::fmt::Debug for SelectRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectRoute")
            .field("name", &self.name)
            .field("candidates", &self.config.candidates)
            .field("router", &self.predictor.is_some())
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.name().to_owned()),
            )
            .finish()
    }
}

impl SelectRoute {
    /// Loads the router file and the local embedder (`models[index].select`).
    pub(crate) fn new(
        index: usize,
        name: &str,
        config: &SelectConfig,
    ) -> Result<SelectRoute, StartupError> {
        let key = |field: &str| format!("models[{index}].select.{field}");
        let predictor = match &config.router {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    StartupError::setting(
                        key("router"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(QualityPredictor::from_json(&text).map_err(|e| {
                    StartupError::setting(key("router"), format!("{}: {e}", path.display()))
                })?)
            }
        };
        let dir = config.embedder.clone().or_else(plexus_embed::dir_from_env);
        let embedder: Option<Arc<dyn Embedder>> = match (dir, &predictor) {
            (Some(dir), _) => Some(Arc::new(plexus_embed::MiniLm::load(&dir).map_err(|e| {
                StartupError::setting(key("embedder"), format!("cannot load {}: {e}", dir.display()))
            })?)),
            (None, Some(_)) => {
                return Err(StartupError::setting(
                    key("embedder"),
                    "a trained router needs the local embedding model: set `embedder` to the all-MiniLM-L6-v2 directory, or PLEXUS_MINILM_DIR",
                ))
            }
            (None, None) => None,
        };
        if let (Some(p), Some(e)) = (&predictor, &embedder) {
            if p.dim() != e.dim() {
                return Err(StartupError::setting(
                    key("router"),
                    format!(
                        "the router was trained on {}-dimensional embeddings ({}), the embedder makes {}",
                        p.dim(),
                        p.embedder(),
                        e.dim()
                    ),
                ));
            }
        }
        Ok(SelectRoute {
            name: Arc::from(name),
            config: config.clone(),
            predictor,
            embedder,
        })
    }
}

/// An exponentially weighted average; `None` before the first sample.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma(Option<f64>);

impl Ewma {
    fn add(&mut self, sample: f64) {
        self.0 = Some(match self.0 {
            None => sample,
            Some(v) => v + EWMA_ALPHA * (sample - v),
        });
    }
}

/// What the selector learned about one candidate from the calls it served.
#[derive(Debug, Default)]
struct CandidateStats {
    chosen: AtomicU64,
    learned: Mutex<Learned>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Learned {
    /// Completion length (kept under the `select` model's name).
    output_tokens: Ewma,
    /// Streamed output speed, tokens per second after the first token.
    tokens_per_second: Ewma,
    /// Whole-answer latency of non-streamed calls, ms.
    latency_ms: Ewma,
}

/// The selector's state that outlives config reloads.
pub(crate) struct SelectionState {
    feedback: RwLock<FeedbackIndex>,
    /// The last feedback row id read from the store.
    feedback_cursor: AtomicU64,
    affinity: moka::sync::Cache<(Arc<str>, u64), Arc<str>>,
    pacers: Mutex<HashMap<Arc<str>, Arc<ExplorationPacer>>>,
    stats: Mutex<HashMap<Arc<str>, Arc<CandidateStats>>>,
    /// The budget share left at each principal's latest admission.
    budget_share: moka::sync::Cache<String, f64>,
}

impl SelectionState {
    pub(crate) fn new() -> SelectionState {
        SelectionState {
            feedback: RwLock::new(FeedbackIndex::default()),
            feedback_cursor: AtomicU64::new(0),
            affinity: moka::sync::Cache::builder()
                .max_capacity(AFFINITY_CAPACITY)
                .time_to_idle(AFFINITY_IDLE)
                .build(),
            pacers: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            budget_share: moka::sync::Cache::builder()
                .max_capacity(AFFINITY_CAPACITY)
                .time_to_idle(AFFINITY_IDLE)
                .build(),
        }
    }

    fn pacer(&self, model: &Arc<str>) -> Arc<ExplorationPacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
        pacers.entry(model.clone()).or_default().clone()
    }

    fn stats(&self, candidate: &str) -> Arc<CandidateStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stats.get(candidate) {
            return s.clone();
        }
        let s = Arc::new(CandidateStats::default());
        stats.insert(Arc::from(candidate), s.clone());
        s
    }

    fn learned(&self, candidate: &str) -> (u64, Learned) {
        let s = self.stats(candidate);
        let learned = *s.learned.lock().unwrap_or_else(|p| p.into_inner());
        (s.chosen.load(Ordering::Relaxed), learned)
    }
}

/// One decision, as the request's record keeps it (`route`, JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The `select` model asked for.
    pub model: String,
    /// The candidate chosen.
    pub chosen: String,
    /// The candidate that served (another one when the chosen one failed and the next-ranked
    /// took over); set when the call ends.
    pub served: Option<String>,
    /// A short reason, also sent in `x-plexus-route`.
    pub reason: String,
    pub objective: Objective,
    pub cost_weight: f64,
    /// The cost weight in force (raised near the caller's budget limit).
    pub effective_cost_weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_remaining_share: Option<f64>,
    /// It tried a non-preferred candidate, to keep estimates fresh.
    pub exploration: bool,
    /// It kept the session's earlier choice.
    pub affinity: bool,
    pub needs: Needs,
    /// Hard filters in force.
    pub filters: Vec<String>,
    /// Notes on the inputs (a weak quality proxy, no embedder, ...).
    pub notes: Vec<String>,
    pub candidates: Vec<Candidate>,
    /// Time spent embedding the prompt, and deciding, in microseconds.
    pub embed_us: u64,
    pub decide_us: u64,
}

/// A decision and what the pipeline needs to run it.
pub(crate) struct Selected<'a> {
    pub route: Cow<'a, ModelRoute>,
    pub decision: Box<Decision>,
    pub embedding: Option<Arc<[f32]>>,
}

/// What the request needs, from its content.
fn needs_of(chat: &ChatCompletionRequest, prompt_tokens: u64) -> Needs {
    let vision = chat.messages.iter().any(|m| match &m.content {
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .any(|p| p.image_url.is_some() || p.kind == "image_url" || p.kind == "input_image"),
        _ => false,
    });
    Needs {
        tools: chat.tools.as_ref().is_some_and(|t| !t.is_empty()),
        vision,
        json_schema: chat
            .response_format
            .as_ref()
            .is_some_and(|f| f.kind == "json_schema"),
        reasoning: chat.reasoning_effort.is_some(),
        prompt_tokens,
        max_output_tokens: chat.max_output_tokens().map_or(0, u64::from),
    }
}

/// The text the quality predictor reads: the last user message.
pub(crate) fn prompt_text(chat: &ChatCompletionRequest) -> Option<String> {
    chat.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_ref())
        .map(MessageContent::joined_text)
        .filter(|t| !t.trim().is_empty())
}

/// The session a request belongs to: the explicit id, or its conversation's opening (the
/// system prompt and first user message), per caller.
fn session_of(ctx: &CallCtx, chat: &ChatCompletionRequest) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ctx.principal.id.hash(&mut h);
    match &ctx.selection.session {
        Some(id) => {
            0u8.hash(&mut h);
            id.hash(&mut h);
        }
        None => {
            1u8.hash(&mut h);
            for m in chat
                .messages
                .iter()
                .take_while(|m| m.role != Role::Assistant)
            {
                if let Some(c) = &m.content {
                    c.joined_text().hash(&mut h);
                }
                if m.role == Role::User {
                    break;
                }
            }
        }
    }
    h.finish()
}

/// What a candidate model can do for sure, over its targets.
fn capabilities_of(route: &ModelRoute) -> Capabilities {
    let per_target: Vec<Capabilities> = route.targets.iter().map(|t| t.capabilities).collect();
    Capabilities::all_of(&per_target)
}

impl Gateway {
    /// Decides which candidate of `select` serves `chat` (stage 4 for a `select` model).
    pub(crate) async fn select<'rt>(
        &self,
        ctx: &CallCtx,
        rt: &'rt Runtime,
        select: &SelectRoute,
        chat: &ChatCompletionRequest,
        prompt_tokens: u64,
    ) -> Result<Selected<'rt>, ApiError> {
        let started = Instant::now();
        let cfg = &select.config;
        let state = self.selection();
        let needs = needs_of(chat, prompt_tokens);
        let hints = &ctx.selection;
        let objective = hints.objective.unwrap_or(cfg.objective);
        let cost_weight = hints.cost_weight.unwrap_or(cfg.cost_weight);
        let budget_share = state.budget_share.get(&ctx.principal.id);
        let effective = if objective == Objective::Balanced {
            choose::effective_cost_weight(cost_weight, budget_share)
        } else {
            cost_weight
        };
        let now_ns = self.limiter().now_ns();
        let mut notes = Vec::new();

        // Step 1: who can serve it at all.
        let mut candidates = Vec::with_capacity(cfg.candidates.len());
        let mut routes = Vec::with_capacity(cfg.candidates.len());
        for name in &cfg.candidates {
            let route = rt.resolve(name)?;
            let mut c = Candidate::new(name.clone(), 0.5, QualitySource::PriceOrder);
            if !ctx.principal.may_use_model(name) {
                c.exclude("this key may not use it");
            }
            let unmet = needs.unmet(&capabilities_of(&route));
            if !unmet.is_empty() {
                c.exclude(format!("cannot serve: needs {}", unmet.join(", ")));
            }
            if !route.targets.iter().any(|t| t.health.allows(now_ns)) {
                c.exclude("circuit breaker open on every target");
            }
            let (requests, failures) = route.targets.iter().fold((0, 0), |(r, f), t| {
                let (tr, tf) = t.health.breaker().window_counts(now_ns);
                (r + tr, f + tf)
            });
            if requests > 0 {
                c.error_rate = failures as f64 / requests as f64;
            }
            candidates.push(c);
            routes.push(route);
        }

        // Step 8: a session keeps its earlier choice while that stays eligible.
        let affinity_key = (cfg.affinity && !hints.overrides())
            .then(|| (select.name.clone(), session_of(ctx, chat)));
        if let Some(key) = &affinity_key {
            if let Some(kept) = state.affinity.get(key) {
                if let Some(i) = candidates
                    .iter()
                    .position(|c| *c.name == *kept && c.is_eligible())
                {
                    let decision = Decision {
                        model: select.name.to_string(),
                        chosen: kept.to_string(),
                        served: None,
                        reason: "session affinity".into(),
                        objective,
                        cost_weight,
                        effective_cost_weight: effective,
                        budget_remaining_share: budget_share,
                        exploration: false,
                        affinity: true,
                        needs,
                        filters: Vec::new(),
                        notes,
                        candidates,
                        embed_us: 0,
                        decide_us: started.elapsed().as_micros() as u64,
                    };
                    state.stats(&kept).chosen.fetch_add(1, Ordering::Relaxed);
                    let route = self.with_fallbacks(rt, routes, i, &[i], select)?;
                    return Ok(Selected {
                        route,
                        decision: Box::new(decision),
                        embedding: None,
                    });
                }
            }
        }

        // Step 2: predicted quality, from the router near this prompt, refined by feedback.
        let embed_started = Instant::now();
        let embedding = match (&select.embedder, prompt_text(chat)) {
            (Some(embedder), Some(text)) => embed(embedder.clone(), text).await,
            (None, _) => {
                notes.push("no local embedder: quality is not predicted per prompt".into());
                None
            }
            (Some(_), None) => None,
        };
        let embed_us = embed_started.elapsed().as_micros() as u64;
        let prices: Vec<Option<f64>> = routes
            .iter()
            .map(|r| r.targets.first().and_then(|t| t.price_per_mtok))
            .collect();
        // One pass of the router for every model it covers (its cost is the same for one).
        let predicted: Option<(Vec<&str>, Vec<f64>)> = match (&select.predictor, &embedding) {
            (Some(p), Some(e)) => p.predict_all(e).map(|q| (p.models(), q)),
            _ => None,
        };
        let mut price_order = false;
        for (i, c) in candidates.iter_mut().enumerate() {
            let model_cfg = rt.config.models.iter().find(|m| m.name == c.name);
            let from_router = predicted
                .as_ref()
                .and_then(|(names, q)| names.iter().position(|n| *n == c.name).map(|j| q[j]));
            let (prior, source) = match (from_router, model_cfg.and_then(|m| m.quality)) {
                (Some(q), _) => (q, QualitySource::Router),
                (None, Some(q)) => (q, QualitySource::Config),
                (None, None) => {
                    price_order = true;
                    (
                        choose::price_order_quality(&prices, i),
                        QualitySource::PriceOrder,
                    )
                }
            };
            c.prior_quality = prior;
            c.quality_source = source;
            let refined = state
                .feedback
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .refine(&c.name, embedding.as_deref(), prior);
            c.quality = refined.quality;
            c.feedback_weight = refined.weight;
        }
        if price_order {
            notes.push(
                "no router column or `quality:` for some candidates: their quality is guessed from the price order (pricier assumed better)"
                    .into(),
            );
        }

        // Steps 3 and 4: expected cost and latency. The answer's length depends on the
        // request more than on the model, so one learned length (per `select` model) serves
        // every candidate: a candidate that has not served yet is not thought dearer.
        let output = if needs.max_output_tokens > 0 {
            needs.max_output_tokens as f64
        } else {
            let (_, learned) = state.learned(&select.name);
            learned.output_tokens.0.unwrap_or(DEFAULT_OUTPUT_TOKENS)
        };
        for (c, route) in candidates.iter_mut().zip(&routes) {
            let (_, learned) = state.learned(&c.name);
            let usage = Usage::new(prompt_tokens, output.round() as u64);
            c.expected_cost_usd = route
                .targets
                .first()
                .and_then(|t| t.cost(&usage))
                .map(|n| n.usd());
            c.expected_latency_ms =
                expected_latency_ms(route, now_ns, learned, output, chat.is_stream());
        }

        // Steps 5 and 6: filters, ranking, exploration.
        let policy = Policy {
            objective,
            cost_weight: effective,
            max_cost_usd: cfg.max_cost_per_request.map(|n| n.usd()),
            max_latency_ms: cfg.max_latency.map(|d| d.as_millis() as f64),
        };
        let mut filters = Vec::new();
        if let Some(cap) = policy.max_cost_usd {
            filters.push(format!("max_cost_per_request_usd {cap}"));
        }
        if let Some(cap) = policy.max_latency_ms {
            filters.push(format!("max_latency_ms {cap}"));
        }
        choose::apply_filters(&mut candidates, &policy);
        let ranked = choose::rank(&mut candidates, &policy);
        let Some(&best) = ranked.first() else {
            return Err(nothing_eligible(&select.name, &needs, &candidates));
        };
        let mut chosen = best;
        let mut exploration = false;
        if ranked.len() > 1 && state.pacer(&select.name).next(cfg.explore) {
            let times: Vec<u64> = candidates
                .iter()
                .map(|c| state.learned(&c.name).0)
                .collect();
            let u = (now_ns % 1_000_003) as f64 / 1_000_003.0;
            if let Some(pick) = choose::exploration_pick(&ranked, &times, u) {
                chosen = pick;
                exploration = true;
            }
        }
        let reason = if exploration {
            format!("exploration (preferred: {})", candidates[best].name)
        } else {
            match objective {
                Objective::Quality => "highest predicted quality".to_owned(),
                Objective::Cost => "lowest expected cost".to_owned(),
                Objective::Latency => "lowest expected latency".to_owned(),
                Objective::Balanced => {
                    format!("best quality for cost (cost weight {effective:.3})")
                }
            }
        };
        let chosen_name = candidates[chosen].name.clone();
        state
            .stats(&chosen_name)
            .chosen
            .fetch_add(1, Ordering::Relaxed);
        if let (Some(key), false) = (affinity_key, exploration) {
            state.affinity.insert(key, Arc::from(chosen_name.as_str()));
        }
        let route = self.with_fallbacks(rt, routes, chosen, &ranked, select)?;
        let decision = Decision {
            model: select.name.to_string(),
            chosen: chosen_name,
            served: None,
            reason,
            objective,
            cost_weight,
            effective_cost_weight: effective,
            budget_remaining_share: budget_share,
            exploration,
            affinity: false,
            needs,
            filters,
            notes,
            candidates,
            embed_us,
            decide_us: started.elapsed().as_micros() as u64,
        };
        metrics::counter!("plexus_selections_total", "model" => select.name.to_string(), "chosen" => decision.chosen.clone(), "exploration" => if exploration { "true" } else { "false" }).increment(1);
        Ok(Selected {
            route,
            decision: Box::new(decision),
            embedding,
        })
    }

    /// The chosen candidate's route, with the other ranked candidates as its fallbacks.
    fn with_fallbacks<'rt>(
        &self,
        _rt: &'rt Runtime,
        mut routes: Vec<Cow<'rt, ModelRoute>>,
        chosen: usize,
        ranked: &[usize],
        select: &SelectRoute,
    ) -> Result<Cow<'rt, ModelRoute>, ApiError> {
        let fallbacks: Vec<String> = ranked
            .iter()
            .filter(|&&i| i != chosen)
            .map(|&i| routes[i].name.to_string())
            .collect();
        let on = select_fallback_classes(select);
        let route = routes.swap_remove(chosen);
        if fallbacks.is_empty() {
            return Ok(route);
        }
        let mut owned = route.into_owned();
        owned.fallbacks = fallbacks;
        owned.fallback_on = on;
        Ok(Cow::Owned(owned))
    }

    /// Learns from a call `select_model` sent to `candidate`: the answer's length (for the
    /// `select` model) and the candidate's speed.
    pub(crate) fn observe_selected(
        &self,
        select_model: &str,
        candidate: &str,
        completion_tokens: u64,
        latency_ms: u64,
        ttft_ms: Option<u64>,
    ) {
        if completion_tokens > 0 {
            let stats = self.selection().stats(select_model);
            let mut learned = stats.learned.lock().unwrap_or_else(|p| p.into_inner());
            learned.output_tokens.add(completion_tokens as f64);
        }
        let stats = self.selection().stats(candidate);
        let mut learned = stats.learned.lock().unwrap_or_else(|p| p.into_inner());
        match ttft_ms {
            Some(ttft) if latency_ms > ttft && completion_tokens > 1 => {
                let secs = (latency_ms - ttft) as f64 / 1000.0;
                learned
                    .tokens_per_second
                    .add(completion_tokens as f64 / secs);
            }
            Some(_) => {}
            None => learned.latency_ms.add(latency_ms as f64),
        }
    }

    /// Remembers the budget share a principal had left at its latest admission.
    pub(crate) fn note_budget_share(&self, principal_id: &str, share: f64) {
        self.selection()
            .budget_share
            .insert(principal_id.to_owned(), share.clamp(0.0, 1.0));
    }

    /// Learns one feedback score for `model` near `embedding` (the feedback endpoint, and the
    /// rows other instances stored).
    pub(crate) fn learn_from_feedback(
        &self,
        request_id: &str,
        model: &str,
        embedding: Option<&[f32]>,
        score: f64,
    ) {
        self.selection()
            .feedback
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(request_id, model, embedding, score);
    }

    /// The predicted quality of `model` for `prompt` as the selector `select_model` would
    /// see it now (router or config prior, refined by feedback): for tests and operators.
    pub async fn predicted_quality(
        &self,
        select_model: &str,
        model: &str,
        prompt: &str,
    ) -> Option<f64> {
        let rt = self.runtime();
        let select = rt.selector(select_model)?;
        let embedding = match &select.embedder {
            Some(e) => embed(e.clone(), prompt.to_owned()).await,
            None => None,
        };
        let prior = match (&select.predictor, &embedding) {
            (Some(p), Some(e)) => p.predict(e, model),
            _ => None,
        }
        .or_else(|| rt.config.models.iter().find(|m| m.name == model)?.quality)
        .unwrap_or(0.5);
        Some(
            self.selection()
                .feedback
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .refine(model, embedding.as_deref(), prior)
                .quality,
        )
    }

    /// Reads the feedback rows stored since the last read (by any instance) into the index.
    pub async fn sync_feedback(&self) -> Result<usize, plexus_store::StoreError> {
        let state = self.selection();
        let mut total = 0;
        loop {
            let after = state.feedback_cursor.load(Ordering::Acquire) as i64;
            let page = self.store().feedback_page(after, FEEDBACK_PAGE).await?;
            let n = page.len();
            for (id, row) in page {
                self.learn_from_feedback(
                    &row.request_id,
                    &row.model,
                    row.embedding.as_deref(),
                    row.score,
                );
                state
                    .feedback_cursor
                    .fetch_max(id.max(0) as u64, Ordering::AcqRel);
            }
            total += n;
            if n < FEEDBACK_PAGE as usize {
                return Ok(total);
            }
        }
    }
}

/// Follows the feedback table while the gateway runs (only when a `select` model is
/// configured), so that every instance learns from every instance's feedback.
pub(crate) async fn follow_feedback(gateway: Gateway, stop: tokio_util::sync::CancellationToken) {
    loop {
        if gateway.runtime().has_selectors() {
            if let Err(e) = gateway.sync_feedback().await {
                tracing::warn!(message = "Cannot read the selector's feedback.", error = %e);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(FEEDBACK_POLL) => {}
        }
    }
}

/// The failure classes on which the next-ranked candidate takes over.
fn select_fallback_classes(_select: &SelectRoute) -> Vec<plexus_core::config::FailureClass> {
    plexus_core::config::FailureClass::ALL.to_vec()
}

/// Expected time to the whole answer: the measured time to first byte, plus the output at
/// the learned speed (streams), or the learned whole-answer latency.
fn expected_latency_ms(
    route: &ModelRoute,
    now_ns: u64,
    learned: Learned,
    output_tokens: f64,
    stream: bool,
) -> Option<f64> {
    let ttfb_ms = route
        .targets
        .iter()
        .filter_map(|t: &Target| t.health.measured_latency_ns(now_ns))
        .reduce(f64::min)
        .map(|ns| ns / 1e6);
    match (learned.tokens_per_second.0, learned.latency_ms.0, ttfb_ms) {
        (Some(tps), _, Some(ttfb)) if stream && tps > 0.0 => {
            Some(ttfb + output_tokens / tps * 1000.0)
        }
        (_, Some(whole), _) if !stream => Some(whole),
        (Some(tps), _, Some(ttfb)) if tps > 0.0 => Some(ttfb + output_tokens / tps * 1000.0),
        (_, Some(whole), _) => Some(whole),
        (_, _, ttfb) => ttfb,
    }
}

/// Embeds `text` on the blocking pool (a few milliseconds of CPU).
async fn embed(embedder: Arc<dyn Embedder>, text: String) -> Option<Arc<[f32]>> {
    match tokio::task::spawn_blocking(move || embedder.embed(&[text.as_str()])).await {
        Ok(Ok(mut v)) => v.pop().map(Arc::from),
        Ok(Err(e)) => {
            tracing::warn!(message = "Cannot embed the prompt for the selector.", error = %e);
            None
        }
        Err(_) => None,
    }
}

/// The error when no candidate is left: what the request needed, and why each was out.
fn nothing_eligible(model: &str, needs: &Needs, candidates: &[Candidate]) -> ApiError {
    let why: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c.name,
                c.excluded.as_deref().unwrap_or("eligible")
            )
        })
        .collect();
    let all = |what: &str| {
        candidates
            .iter()
            .all(|c| c.excluded.as_deref().is_some_and(|e| e.starts_with(what)))
    };
    let code = if all("this key may not use it") {
        ErrorCode::PermissionDenied
    } else if all("circuit breaker open") {
        ErrorCode::ServiceUnavailable
    } else {
        ErrorCode::InvalidRequest
    };
    ApiError::new(
        code,
        format!(
            "No candidate of `{model}` can serve this request (it needs {}): {}.",
            needs.describe(),
            why.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use plexus_protocol::openai::{ContentPart, Message};

    fn chat(messages: Vec<Message>) -> ChatCompletionRequest {
        serde_json::from_value(serde_json::json!({"model": "auto", "messages": []}))
            .map(|mut c: ChatCompletionRequest| {
                c.messages = messages;
                c
            })
            .unwrap()
    }

    #[test]
    fn needs_from_the_request() {
        let mut image = Message::text(Role::User, "");
        image.content = Some(MessageContent::Parts(vec![
            ContentPart::text("what is this?"),
            serde_json::from_value(serde_json::json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}})).unwrap(),
        ]));
        let c = chat(vec![image]);
        let n = needs_of(&c, 10);
        assert!(n.vision && !n.tools && !n.json_schema);
        let mut c = chat(vec![Message::text(Role::User, "hi")]);
        c.response_format = serde_json::from_value(
            serde_json::json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
        )
        .unwrap();
        c.reasoning_effort = Some("high".into());
        c.max_tokens = Some(77);
        let n = needs_of(&c, 10);
        assert!(n.json_schema && n.reasoning && !n.vision);
        assert_eq!(n.max_output_tokens, 77);
    }

    #[test]
    fn a_conversation_is_one_session_and_its_last_user_turn_is_the_prompt() {
        let ctx = CallCtx::client(plexus_auth::roles::Principal::master(), None);
        let opening = vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::User, "first question"),
        ];
        let mut later = opening.clone();
        later.push(Message::text(Role::Assistant, "an answer"));
        later.push(Message::text(Role::User, "second question"));
        assert_eq!(
            session_of(&ctx, &chat(opening.clone())),
            session_of(&ctx, &chat(later.clone()))
        );
        let other = vec![Message::text(Role::User, "another conversation")];
        assert_ne!(
            session_of(&ctx, &chat(opening)),
            session_of(&ctx, &chat(other))
        );
        assert_eq!(
            prompt_text(&chat(later)).as_deref(),
            Some("second question")
        );
        let mut explicit = ctx.clone();
        explicit.selection.session = Some(Arc::from("s-1"));
        let a = session_of(&explicit, &chat(vec![Message::text(Role::User, "x")]));
        let b = session_of(&explicit, &chat(vec![Message::text(Role::User, "y")]));
        assert_eq!(a, b);
    }
}
