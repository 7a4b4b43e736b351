//! The gateway's answers as HTTP headers, and the cache controls a request's headers carry.

use axum::http::{header, HeaderMap, HeaderValue};
use plexus_core::ApiError;
use plexus_gateway::{AnswerMeta, CacheControls, SelectionHints};
use plexus_limits::rate::{Remaining, Snapshot};
use plexus_protocol::money::Nanos;
use plexus_select::choose::Objective;

/// Reads the cache controls (`Cache-Control: no-cache | no-store`, `x-plexus-cache-ttl`,
/// `x-plexus-cache: force`); cheap when the request sent none.
pub fn cache_controls(headers: &HeaderMap) -> Result<CacheControls, ApiError> {
    let mut c = CacheControls::default();
    for v in headers.get_all(header::CACHE_CONTROL) {
        for directive in v.to_str().unwrap_or("").split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-cache" => c.no_cache = true,
                "no-store" => c.no_store = true,
                _ => {}
            }
        }
    }
    if let Some(v) = headers.get("x-plexus-cache-ttl") {
        let text = v.to_str().unwrap_or("");
        c.ttl = Some(
            plexus_core::config::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ApiError::invalid_request(
                        format!(
                            "`x-plexus-cache-ttl` must be a duration such as 10m, not `{text}`."
                        ),
                        "x-plexus-cache-ttl",
                    )
                })?,
        );
    }
    if let Some(v) = headers.get("x-plexus-cache") {
        c.force = v.as_bytes().eq_ignore_ascii_case(b"force");
    }
    Ok(c)
}

/// Whether the request carries any of the selection headers.
pub fn has_selection_hints(headers: &HeaderMap) -> bool {
    [
        "x-plexus-objective",
        "x-plexus-cost-weight",
        "x-plexus-session",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
}

/// Reads what the caller asks of a `select` model: `x-plexus-objective`,
/// `x-plexus-cost-weight` and `x-plexus-session`.
pub fn selection_hints(headers: &HeaderMap) -> Result<SelectionHints, ApiError> {
    let mut hints = SelectionHints::default();
    let text = |name: &'static str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::invalid_request(format!("`{name}` must be text."), name))
            })
            .transpose()
    };
    if let Some(v) = text("x-plexus-objective")? {
        hints.objective = Some(Objective::parse(v).ok_or_else(|| {
            ApiError::invalid_request(
                format!(
                    "`x-plexus-objective` must be one of quality, cost, latency, balanced, not `{v}`."
                ),
                "x-plexus-objective",
            )
        })?);
    }
    if let Some(v) = text("x-plexus-cost-weight")? {
        let weight = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| {
                ApiError::invalid_request(
                    format!("`x-plexus-cost-weight` must be a number at least 0, not `{v}`."),
                    "x-plexus-cost-weight",
                )
            })?;
        hints.cost_weight = Some(weight);
    }
    if let Some(v) = text("x-plexus-session")? {
        let v = v.trim();
        if v.is_empty() || v.len() > 256 {
            return Err(ApiError::invalid_request(
                "`x-plexus-session` must be 1 to 256 characters.",
                "x-plexus-session",
            ));
        }
        hints.session = Some(std::sync::Arc::from(v));
    }
    Ok(hints)
}

/// The headers every answer and failure carries: rate limits, what served, the cache status.
/// (The request ids are added to every response by the request-id layer.)
pub fn apply_meta(headers: &mut HeaderMap, meta: &AnswerMeta) {
    apply_limits(headers, &meta.limits);
    if let Some(v) = meta
        .served_by
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert("x-plexus-served-by", v);
    }
    if let Some(kind) = meta.cache {
        headers.insert("x-plexus-cache", HeaderValue::from_static(kind));
    }
    if let Some(v) = meta
        .route
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert("x-plexus-route", v);
    }
    if let Some(s) = meta.similarity {
        if let Ok(v) = HeaderValue::from_str(&format!("{s:.4}")) {
            headers.insert("x-plexus-cache-similarity", v);
        }
    }
    if let Some((id, confidence)) = &meta.orchestration {
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert("x-plexus-orchestration-id", v);
        }
        if let Some(Ok(v)) = confidence.map(|c| HeaderValue::from_str(&format!("{c:.4}"))) {
            headers.insert("x-plexus-confidence", v);
        }
    }
}

/// `x-plexus-cost-usd`: exact decimal dollars, trailing zeros trimmed (`0.0000207`, `0`).
pub fn apply_cost(headers: &mut HeaderMap, cost: Nanos) {
    if let Ok(v) = HeaderValue::from_str(&cost.to_string()) {
        headers.insert("x-plexus-cost-usd", v);
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

fn put_remaining(headers: &mut HeaderMap, names: [&'static str; 3], r: &Remaining) {
    put(headers, names[0], r.limit.to_string());
    put(headers, names[1], r.remaining.to_string());
    put(
        headers,
        names[2],
        plexus_router::format_reset_duration(r.reset),
    );
}

/// The `x-ratelimit-*` headers for the limits closest to exhaustion.
pub fn apply_limits(headers: &mut HeaderMap, snapshot: &Snapshot) {
    if let Some(r) = &snapshot.requests {
        put_remaining(
            headers,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            r,
        );
    }
    if let Some(r) = &snapshot.tokens {
        put_remaining(
            headers,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            r,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn controls_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(cache_controls(&h).unwrap(), CacheControls::default());
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("No-Cache, max-age=0"),
        );
        h.insert("x-plexus-cache-ttl", HeaderValue::from_static("10m"));
        h.insert("x-plexus-cache", HeaderValue::from_static("force"));
        let c = cache_controls(&h).unwrap();
        assert!(c.no_cache && !c.no_store && c.force);
        assert_eq!(c.ttl, Some(Duration::from_secs(600)));
        h.insert("x-plexus-cache-ttl", HeaderValue::from_static("soon"));
        let e = cache_controls(&h).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("x-plexus-cache-ttl"));
    }

    #[test]
    fn cost_is_exact_decimal_dollars() {
        let mut h = HeaderMap::new();
        let cost = |h: &HeaderMap| h["x-plexus-cost-usd"].to_str().unwrap().to_owned();
        apply_cost(&mut h, Nanos(200));
        assert_eq!(cost(&h), "0.0000002", "a 10-token embedding is not 0");
        apply_cost(&mut h, Nanos(62_100));
        assert_eq!(cost(&h), "0.0000621");
        apply_cost(&mut h, Nanos::ZERO);
        assert_eq!(cost(&h), "0");
    }
}
