//! The HTTP face of Plexus: the OpenAI-compatible API, health, readiness and metrics.
//!
//! **Invariant:** this is the only crate that knows inbound HTTP. Handlers parse, call the
//! components and shape responses; the components never see a request or a header map.
#![forbid(unsafe_code)]

mod admin;
mod cache;
mod chat;
mod dispatch;
mod embeddings;
pub mod error;
mod keyauth;
pub mod limit;
pub mod metrics;
mod middleware;
pub mod runtime;
mod semantic;
mod serve;
mod stream;
mod tokens;

pub use error::HttpError;
pub use runtime::Runtime;
pub use serve::{serve, Listener, ServeOptions};

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use plexus_core::clock::{SharedClock, SystemClock};
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::openai::{ModelList, ModelObject};
use plexus_providers::client::UpstreamClient;
use plexus_store::{LogWriter, Store};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs, shared by all of them.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: ArcSwap<Runtime>,
    client: UpstreamClient,
    store: Store,
    writer: LogWriter,
    audit: plexus_auth::audit::AuditWriter,
    keys: keyauth::KeyAuth,
    limiter: limit::Limiter,
    cache: Option<Arc<cache::ResponseCache>>,
    /// Stops the background tasks (the cache's purge listener).
    background_stop: tokio_util::sync::CancellationToken,
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Short background jobs (the semantic cache's judge), awaited at shutdown.
    tasks: tokio_util::task::TaskTracker,
    vault: Option<Arc<plexus_auth::vault::Kek>>,
    runtime_built_at_ms: std::sync::atomic::AtomicI64,
    metrics: Option<PrometheusHandle>,
    clock: SharedClock,
    started_unix: i64,
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        client: UpstreamClient,
        store: Store,
        writer: LogWriter,
        audit: plexus_auth::audit::AuditWriter,
        vault: Option<Arc<plexus_auth::vault::Kek>>,
    ) -> Result<Self, ApiError> {
        let clock: SharedClock = Arc::new(SystemClock);
        let started_unix = clock.now_unix_secs();
        let limiter = limit::Limiter::new(&runtime.config)?;
        let cache = match &runtime.config.cache {
            None => None,
            Some(settings) => Some(Arc::new(cache::ResponseCache::new(
                settings,
                clock.clone(),
            )?)),
        };
        let background_stop = tokio_util::sync::CancellationToken::new();
        let mut background = Vec::new();
        if let Some(c) = &cache {
            if c.store().redis().is_some() {
                let for_shared = c.clone();
                let shared_clock = clock.clone();
                let on_shared: Arc<dyn Fn(plexus_cache::store::Shared) + Send + Sync> =
                    Arc::new(move |shared| {
                        let Some(s) = for_shared.semantic() else {
                            return;
                        };
                        match shared {
                            plexus_cache::store::Shared::Vector(rec) => {
                                s.accept(rec, shared_clock.now_unix_ms())
                            }
                            plexus_cache::store::Shared::Outcome(rec) => s.accept_outcome(rec),
                        }
                    });
                background.push(tokio::spawn(plexus_cache::store::listen(
                    c.store().clone(),
                    on_shared,
                    background_stop.clone(),
                )));
            }
        }
        Ok(AppState {
            inner: Arc::new(Inner {
                runtime: ArcSwap::from_pointee(runtime),
                client,
                keys: keyauth::KeyAuth::new(store.clone()),
                limiter,
                cache,
                background_stop,
                background: std::sync::Mutex::new(background),
                tasks: tokio_util::task::TaskTracker::new(),
                vault,
                runtime_built_at_ms: std::sync::atomic::AtomicI64::new(clock.now_unix_ms()),
                store,
                writer,
                audit,
                metrics: metrics::install(),
                clock,
                started_unix,
            }),
        })
    }

    /// The current runtime snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// Swaps in a new snapshot (config reload); in-flight requests keep the old one.
    pub fn replace_runtime(&self, mut runtime: Runtime) {
        runtime.inherit_health(&self.inner.runtime.load());
        self.inner.runtime.store(Arc::new(runtime));
        self.inner.runtime_built_at_ms.store(
            self.inner.clock.now_unix_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// When the current runtime snapshot was installed.
    pub fn runtime_built_at_ms(&self) -> i64 {
        self.inner
            .runtime_built_at_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn writer(&self) -> &LogWriter {
        &self.inner.writer
    }

    pub fn audit(&self) -> &plexus_auth::audit::AuditWriter {
        &self.inner.audit
    }

    pub(crate) fn auth(&self) -> &keyauth::KeyAuth {
        &self.inner.keys
    }

    pub fn vault(&self) -> Option<&plexus_auth::vault::Kek> {
        self.inner.vault.as_deref()
    }

    /// Rebuilds the runtime from `config` (with the vault's credentials) and swaps it in.
    pub async fn reload(&self, config: plexus_core::config::Config) -> Result<(), ApiError> {
        let rt = Runtime::load(config, &self.inner.client, &self.inner.store, self.vault()).await?;
        self.replace_runtime(rt);
        Ok(())
    }

    /// The in-process budgets (used when no Redis is configured, or it is down and the
    /// policy is fail-open).
    pub fn budgets(&self) -> &Arc<plexus_limits::Budgets> {
        self.inner.limiter.local_budgets()
    }

    pub fn limiter(&self) -> &limit::Limiter {
        &self.inner.limiter
    }

    /// Whether no short background job (indexing a question, judging an answer) is running:
    /// what tests wait for before they look at the results.
    pub fn background_idle(&self) -> bool {
        self.inner.tasks.is_empty()
    }

    pub(crate) fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.inner.tasks
    }

    pub(crate) fn cache(&self) -> Option<&Arc<cache::ResponseCache>> {
        self.inner.cache.as_ref()
    }

    /// Stops the background work after the server has drained: queued limit releases reach
    /// Redis, and the cache's purge listener ends.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait()).await;
        self.inner.limiter.shutdown().await;
        self.inner.background_stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.inner.client
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }
}

/// The whole HTTP API as a router, so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .merge(admin::routes());
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::RequestIdLayer)
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
    let body = state
        .inner
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
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

async fn list_models(State(state): State<AppState>, _auth: middleware::Auth) -> Json<ModelList> {
    let rt = state.runtime();
    let created = state.inner.started_unix;
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
}

async fn not_found() -> HttpError {
    HttpError(ApiError::new(ErrorCode::NotFound, "Unknown route."))
}

async fn method_not_allowed() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "This route does not accept this method.",
    ))
}

/// Re-wraps every stored credential's data key under `new` (for `plexus vault rotate-kek`).
/// Records already under `new` are skipped, so an interrupted rotation resumes where it
/// stopped. Returns (re-wrapped, already under `new`).
pub async fn rotate_kek(
    store: &Store,
    old: &plexus_auth::vault::Kek,
    new: &plexus_auth::vault::Kek,
) -> Result<(usize, usize), String> {
    let mut rewrapped = 0;
    let mut already = 0;
    for record in store.list_credentials().await.map_err(|e| e.to_string())? {
        if record.kek_id == new.kek_id() {
            already += 1;
            continue;
        }
        let sealed: plexus_auth::vault::SealedSecret = serde_json::from_str(&record.sealed)
            .map_err(|_| format!("credential {} is corrupt", record.id))?;
        let next = plexus_auth::vault::rewrap(old, new, &record.id, &sealed)
            .map_err(|e| format!("credential {}: {e}", record.id))?;
        let text = serde_json::to_string(&next).map_err(|e| e.to_string())?;
        if store
            .rewrap_credential(&record.id, &record.kek_id, new.kek_id(), &text)
            .await
            .map_err(|e| e.to_string())?
        {
            rewrapped += 1;
        } else {
            already += 1;
        }
    }
    Ok((rewrapped, already))
}

/// Background upkeep until `stop`: deletes request records past the retention, warns (log,
/// metric, audit entry) about provider credentials expiring within a week, and reloads the
/// runtime when a credential in use has expired, so it leaves the rotation.
pub async fn run_housekeeping(
    state: AppState,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = state.clock().now_unix_ms();
        if let Some(keep) = state.runtime().config.request_retention {
            let cutoff = now - keep.as_millis() as i64;
            match state.store().delete_requests_before(cutoff).await {
                Ok(n) if n > 0 => {
                    tracing::info!(message = "Deleted expired request records.", rows = n)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(message = "Retention pass failed.", error = %e),
            }
        }
        check_credentials(&state, now).await;
        let forgotten = state.limiter().purge_idle();
        if forgotten > 0 {
            tracing::debug!(
                message = "Forgot idle rate-limit subjects.",
                subjects = forgotten
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

const CREDENTIAL_NOTICE_MS: i64 = 7 * 86_400_000;

async fn check_credentials(state: &AppState, now: i64) {
    let records = match state.store().list_credentials().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(message = "Cannot read credentials.", error = %e);
            return;
        }
    };
    let mut expired_in_use = false;
    for r in records.iter().filter(|r| r.retired_at.is_none()) {
        let Some(expires) = r.expires_at else {
            continue;
        };
        if expires <= now {
            // In use if it was active when the runtime was built (built before it expired).
            expired_in_use |= state.runtime_built_at_ms() < expires;
        } else if expires - now < CREDENTIAL_NOTICE_MS {
            tracing::warn!(message = "A provider credential expires soon.", credential = %r.id, provider = %r.provider);
            ::metrics::counter!("plexus_credentials_expiring_total", "provider" => r.provider.clone()).increment(1);
            state
                .audit()
                .record(plexus_auth::audit::AuditEvent {
                    ts_ms: now,
                    actor: "plexus".into(),
                    action: "credential.expiring",
                    target: r.id.clone(),
                    outcome: "warning",
                    source: "housekeeping".into(),
                    details:
                        serde_json::json!({"provider": r.provider, "expires_at": expires / 1000})
                            .to_string(),
                })
                .await;
        }
    }
    if expired_in_use {
        let config = (*state.runtime().config).clone();
        match state.reload(config).await {
            Ok(()) => tracing::info!(message = "Expired credentials left the rotation."),
            Err(e) => {
                tracing::error!(message = "Reload after a credential expired failed.", error = %e)
            }
        }
    }
}
