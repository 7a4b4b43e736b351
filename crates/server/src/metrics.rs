//! Prometheus metrics. Labels are low-cardinality by construction: endpoint, configured
//! model, provider, status class, error code. Never a key, a user or a prompt.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const REQUESTS: &str = "plexus_requests_total";
pub const REQUEST_DURATION: &str = "plexus_request_duration_seconds";
pub const TTFT: &str = "plexus_time_to_first_token_seconds";
pub const TOKENS: &str = "plexus_tokens_total";
pub const ERRORS: &str = "plexus_errors_total";
/// Micro-dollars (counters are integers).
pub const COST: &str = "plexus_cost_microusd_total";
pub const IN_FLIGHT: &str = "plexus_in_flight_requests";

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
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::error!(message = "Could not install the metrics recorder.", error = %e);
                    None
                }
            }
        })
        .clone()
}

/// Records the metrics of one finished request.
pub fn observe(r: &plexus_core::log::RequestRecord) {
    let class = match r.status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    // Unresolved models (unknown names) share one label value so clients cannot create series.
    let (model, provider) = if r.provider.is_empty() {
        ("unknown".to_owned(), "none".to_owned())
    } else {
        (r.model.clone(), r.provider.clone())
    };
    metrics::counter!(REQUESTS, "endpoint" => r.endpoint, "model" => model.clone(), "provider" => provider.clone(), "status_class" => class)
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "endpoint" => r.endpoint, "model" => model.clone(), "provider" => provider.clone())
        .record(r.latency_ms as f64 / 1000.0);
    if let Some(ttft) = r.ttft_ms {
        metrics::histogram!(TTFT, "model" => model.clone(), "provider" => provider.clone())
            .record(ttft as f64 / 1000.0);
    }
    if r.prompt_tokens > 0 {
        metrics::counter!(TOKENS, "model" => model.clone(), "provider" => provider.clone(), "kind" => "prompt")
            .increment(r.prompt_tokens);
    }
    if r.completion_tokens > 0 {
        metrics::counter!(TOKENS, "model" => model.clone(), "provider" => provider.clone(), "kind" => "completion")
            .increment(r.completion_tokens);
    }
    if r.cost_usd > 0.0 {
        metrics::counter!(COST, "model" => model.clone(), "provider" => provider.clone())
            .increment((r.cost_usd * 1_000_000.0) as u64);
    }
    if let Some(code) = r.error_code {
        metrics::counter!(ERRORS, "code" => code, "model" => model, "provider" => provider, "status_class" => class)
            .increment(1);
    }
}
