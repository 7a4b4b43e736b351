//! Prometheus metrics. Labels are low-cardinality by construction: endpoint, configured
//! model, provider, status class, error code. Never a key, a user or a prompt.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const REQUESTS: &str = "plexus_requests_total";
pub const REQUEST_DURATION: &str = "plexus_request_duration_seconds";
pub const TTFT: &str = "plexus_time_to_first_token_seconds";
pub const TOKENS: &str = "plexus_tokens_total";
pub const ERRORS: &str = "plexus_errors_total";
/// Nano-dollars (counters are integers; the request log's unit, so the two sum alike).
pub const COST: &str = "plexus_cost_nanousd_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(TTFT.into()), LATENCY_BUCKETS));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(message = "Could not install the metrics recorder.", error = %e);
                    None
                }
            }
        })
        .clone()
}

/// Every metric's `# HELP` text, from wherever in the workspace it is recorded.
fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        REQUESTS,
        "Requests answered, by endpoint, configured model, provider and status class."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from arrival to the end of the answer."
    );
    describe_histogram!(TTFT, Unit::Seconds, "Time to the first streamed token.");
    describe_counter!(
        TOKENS,
        "Prompt and completion tokens, by model, provider and kind."
    );
    describe_counter!(ERRORS, "Failed requests, by stable error code.");
    describe_counter!(
        COST,
        "Spend in nano-dollars (1e-9 USD), by model and provider."
    );
    describe_counter!(
        "plexus_cache_hits_total",
        "Answers served from the response cache, by kind (hit, semantic-hit)."
    );
    describe_counter!(
        "plexus_cache_judged_total",
        "Semantic hits the judge re-checked, by verdict."
    );
    describe_counter!(
        "plexus_cache_redis_errors_total",
        "Response-cache operations on Redis that failed (each a miss)."
    );
    describe_counter!(
        "plexus_cache_background_dropped_total",
        "Background cache jobs skipped because the queue was full."
    );
    describe_counter!(
        "plexus_credentials_expiring_total",
        "Provider credentials found expiring within a week, by provider."
    );
    describe_counter!(
        "plexus_fallbacks_total",
        "Requests moved to a fallback model, by model and reason."
    );
    describe_counter!(
        "plexus_limiter_redis_errors_total",
        "Limit checks that could not reach Redis."
    );
    describe_counter!(
        "plexus_queued_total",
        "Requests that waited for a target's provider limit."
    );
    describe_counter!(
        "plexus_retries_total",
        "Backoff rounds after every target of a model failed."
    );
    describe_counter!(
        "plexus_upstream_failures_total",
        "Failed upstream attempts, by provider and failure class."
    );
    describe_counter!(
        "plexus_stored_responses_total",
        "Stored Responses API responses written, by outcome (written, failed)."
    );
    describe_counter!(
        "plexus_background_runs_total",
        "Background runs this instance drove, by how they ended (finished, cancelled, interrupted, failed)."
    );
    metrics::describe_gauge!(
        "plexus_background_runs_active",
        "Background runs this instance drives now."
    );
}

/// Metric handles of one (endpoint, model, provider), each registered on its first use and
/// kept, so the request path neither builds label sets nor looks them up after that, and
/// `/metrics` shows a series only once it has a value (not a zero for every configured
/// target, endpoint and status class).
#[derive(Debug)]
pub struct EndpointMetrics {
    endpoint: &'static str,
    model: String,
    provider: String,
    requests: [OnceLock<metrics::Counter>; 3],
    duration: OnceLock<metrics::Histogram>,
    ttft: OnceLock<metrics::Histogram>,
    prompt_tokens: OnceLock<metrics::Counter>,
    completion_tokens: OnceLock<metrics::Counter>,
    cost: OnceLock<metrics::Counter>,
}

impl EndpointMetrics {
    pub fn new(endpoint: &'static str, model: &str, provider: &str) -> Self {
        EndpointMetrics {
            endpoint,
            model: model.to_owned(),
            provider: provider.to_owned(),
            requests: Default::default(),
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
            prompt_tokens: OnceLock::new(),
            completion_tokens: OnceLock::new(),
            cost: OnceLock::new(),
        }
    }

    fn labels(&self) -> (String, String) {
        (self.model.clone(), self.provider.clone())
    }

    fn requests(&self, idx: usize, class: &'static str) -> Option<&metrics::Counter> {
        let slot = self.requests.get(idx)?;
        Some(slot.get_or_init(|| {
            let (m, p) = self.labels();
            metrics::counter!(REQUESTS, "endpoint" => self.endpoint, "model" => m, "provider" => p, "status_class" => class)
        }))
    }

    fn duration(&self) -> &metrics::Histogram {
        self.duration.get_or_init(|| {
            let (m, p) = self.labels();
            metrics::histogram!(REQUEST_DURATION, "endpoint" => self.endpoint, "model" => m, "provider" => p)
        })
    }

    fn ttft(&self) -> &metrics::Histogram {
        self.ttft.get_or_init(|| {
            let (m, p) = self.labels();
            metrics::histogram!(TTFT, "model" => m, "provider" => p)
        })
    }

    fn tokens(&self, kind: &'static str) -> &metrics::Counter {
        let slot = if kind == "prompt" {
            &self.prompt_tokens
        } else {
            &self.completion_tokens
        };
        slot.get_or_init(|| {
            let (m, p) = self.labels();
            metrics::counter!(TOKENS, "model" => m, "provider" => p, "kind" => kind)
        })
    }

    fn cost(&self) -> &metrics::Counter {
        self.cost.get_or_init(|| {
            let (m, p) = self.labels();
            metrics::counter!(COST, "model" => m, "provider" => p)
        })
    }
}

/// The handles of one target for each endpoint.
#[derive(Debug)]
pub struct TargetMetrics {
    pub chat: EndpointMetrics,
    /// Chat requests that arrived as Anthropic Messages (`/v1/messages`).
    pub messages: EndpointMetrics,
    /// Chat requests that arrived as OpenAI Responses (`/v1/responses`).
    pub responses: EndpointMetrics,
    pub embeddings: EndpointMetrics,
}

impl TargetMetrics {
    pub fn new(model: &str, provider: &str) -> Self {
        TargetMetrics {
            chat: EndpointMetrics::new("chat", model, provider),
            messages: EndpointMetrics::new("messages", model, provider),
            responses: EndpointMetrics::new("responses", model, provider),
            embeddings: EndpointMetrics::new("embeddings", model, provider),
        }
    }

    fn for_endpoint(&self, endpoint: &str) -> &EndpointMetrics {
        match endpoint {
            "embeddings" => &self.embeddings,
            "messages" => &self.messages,
            "responses" => &self.responses,
            _ => &self.chat,
        }
    }
}

fn class_index(status: u16) -> (usize, &'static str) {
    match status {
        200..=299 => (0, "2xx"),
        400..=499 => (1, "4xx"),
        _ => (2, "5xx"),
    }
}

/// Records the metrics of one finished request. `target` is `None` when the request failed
/// before a target was chosen (unknown model, bad body): those share the label `unknown`, so
/// clients cannot create series.
pub fn observe(r: &plexus_core::log::RequestRecord, target: Option<&TargetMetrics>) {
    let (idx, class) = class_index(r.status);
    let Some(m) = target.map(|t| t.for_endpoint(r.endpoint)) else {
        metrics::counter!(REQUESTS, "endpoint" => r.endpoint, "model" => "unknown", "provider" => "none", "status_class" => class)
            .increment(1);
        if let Some(code) = r.error_code {
            metrics::counter!(ERRORS, "code" => code, "model" => "unknown", "provider" => "none", "status_class" => class)
                .increment(1);
        }
        return;
    };
    if let Some(c) = m.requests(idx, class) {
        c.increment(1);
    }
    m.duration().record(r.latency_ms as f64 / 1000.0);
    if let Some(ttft) = r.ttft_ms {
        m.ttft().record(ttft as f64 / 1000.0);
    }
    if r.prompt_tokens > 0 {
        m.tokens("prompt").increment(r.prompt_tokens);
    }
    if r.completion_tokens > 0 {
        m.tokens("completion").increment(r.completion_tokens);
    }
    if let Ok(nanos) = u64::try_from(r.cost.0) {
        if nanos > 0 {
            m.cost().increment(nanos);
        }
    }
    if let Some(code) = r.error_code {
        metrics::counter!(ERRORS, "code" => code, "model" => m.model.clone(), "provider" => m.provider.clone(), "status_class" => class)
            .increment(1);
    }
}
