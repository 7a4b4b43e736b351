//! The HTTP face of Plexus: the OpenAI-compatible API, the admin API, health, readiness,
//! metrics, and the pages for people (`/`, and the API docs at `/docs`).
//!
//! **Invariant:** this is the only crate that knows inbound HTTP. Handlers translate a wire
//! format into a call of the gateway (`plexus_gateway::Gateway`) and its answer back; the
//! pipeline never sees a request or a header map, and nothing here calls an upstream.
#![forbid(unsafe_code)]

mod admin;
mod chat;
mod embeddings;
pub mod error;
mod feedback;
mod headers;
mod inbound;
mod inbound_anthropic;
mod inbound_responses;
mod messages;
mod middleware;
mod orchestrations;
mod pages;
mod responses;
mod serve;
mod sse;

pub use error::HttpError;
pub use plexus_gateway::{rotate_kek, run_housekeeping, Runtime};
pub use serve::{serve, Listener, ServeOptions};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::openai::{ModelList, ModelObject};
use std::time::Duration;

/// What every handler runs on: the gateway (the pipeline and everything it holds).
pub type AppState = plexus_gateway::Gateway;

/// The whole HTTP API as a router, so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/v1/feedback", post(feedback::feedback))
        .route("/feedback", post(feedback::feedback))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route("/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/v1/responses/{id}/cancel", post(responses::cancel))
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/orchestrations", post(orchestrations::create))
        .route("/orchestrations", post(orchestrations::create))
        .route("/v1/orchestrations/{id}", get(orchestrations::get))
        .route("/orchestrations/{id}", get(orchestrations::get))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .merge(admin::routes());
    Router::new()
        .route("/", get(pages::landing))
        .route("/docs", get(pages::docs))
        .route(pages::RAPIDOC_PATH, get(pages::rapidoc_js))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::RequestIdLayer::new(&state))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await;
    match db {
        Ok(Ok(())) => {
            Json(serde_json::json!({"status": "ready", "database": "ok"})).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not_ready", "database": e.to_string()})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not_ready", "database": "timeout"})),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let body = state.render_metrics();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// The OpenAPI description of this API (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// `GET /v1/models`: the configured models, in OpenAI's shape, or in Anthropic's when the
/// request carries `anthropic-version` (as Anthropic's SDKs and Claude Code send it).
async fn list_models(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    auth: Result<middleware::Auth, HttpError>,
) -> Response {
    let anthropic = headers.contains_key("anthropic-version");
    if let Err(HttpError(e)) = auth {
        return if anthropic {
            messages::error_response(&e)
        } else {
            HttpError(e).into_response()
        };
    }
    let rt = state.runtime();
    let created = state.started_unix();
    if anthropic {
        let data: Vec<serde_json::Value> = rt
            .model_names()
            .map(|(name, _)| {
                serde_json::json!({
                    "type": "model",
                    "id": name,
                    "display_name": name,
                    "created_at": plexus_core::clock::rfc3339(created),
                })
            })
            .collect();
        let first = data.first().and_then(|m| m.get("id")).cloned();
        let last = data.last().and_then(|m| m.get("id")).cloned();
        return Json(serde_json::json!({
            "data": data, "has_more": false, "first_id": first, "last_id": last,
        }))
        .into_response();
    }
    let data = rt
        .model_names()
        .map(|(name, owner)| ModelObject {
            id: name.to_owned(),
            object: "model".into(),
            created,
            owned_by: owner.to_owned(),
        })
        .collect();
    Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

/// The documented paths (from the OpenAPI description), for hints on unknown routes.
fn documented_paths() -> &'static [String] {
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        serde_json::from_str::<serde_json::Value>(OPENAPI)
            .ok()
            .and_then(|spec| {
                spec.get("paths")
                    .and_then(|p| p.as_object())
                    .map(|p| p.keys().cloned().collect())
            })
            .unwrap_or_default()
    })
}

/// An unknown route: the closest documented one, and where the whole list is.
fn unknown_route_message(path: &str) -> String {
    let nearest = documented_paths()
        .iter()
        .map(|p| (strsim::normalized_levenshtein(path, p), p))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, p)) => format!(
            "Unknown route `{path}`. Did you mean `{p}`? `GET /openapi.json` describes every route."
        ),
        None => format!("Unknown route `{path}`. `GET /openapi.json` describes every route."),
    }
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        unknown_route_message(uri.path()),
    ))
}

async fn method_not_allowed() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "This route does not accept this method.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_point_to_the_nearest_documented_one() {
        let m = unknown_route_message("/v1/chat/completion");
        assert!(m.contains("Did you mean `/v1/chat/completions`?"), "{m}");
        assert!(m.contains("/openapi.json"));
        let m = unknown_route_message("/zzzzzzzzzzzzzzzzzzzzzzzz");
        assert!(!m.contains("Did you mean"), "{m}");
    }

    /// The 404 hints come from the spec, so every route is in it, or deliberately not: OpenAI's
    /// paths without `/v1` (for clients configured without it; the hints name the `/v1` ones)
    /// and the docs' script, which only `/docs` loads.
    #[test]
    fn every_route_is_documented_or_deliberately_left_out() {
        let left_out = [
            "/chat/completions",
            "/embeddings",
            "/models",
            "/feedback",
            "/orchestrations",
            "/orchestrations/{id}",
            "/responses",
        ];
        let documented = documented_paths();
        let mut routes = 0;
        for line in include_str!("lib.rs").lines() {
            let Some(rest) = line.trim().strip_prefix(".route(\"") else {
                continue;
            };
            let path = rest.split('"').next().unwrap_or_default();
            routes += 1;
            assert!(
                documented.iter().any(|p| p == path) != left_out.contains(&path),
                "{path}: document it in docs/openapi.json, or list it as left out"
            );
        }
        assert!(routes >= 10, "found {routes} routes");
        assert!(!documented.iter().any(|p| p == pages::RAPIDOC_PATH));
        assert_eq!(
            unknown_route_message("/doc"),
            "Unknown route `/doc`. Did you mean `/docs`? `GET /openapi.json` describes every route."
        );
    }
}
