//! The request pipeline of Plexus, free of HTTP.
//!
//! [`Gateway`] holds what every call needs (the runtime snapshot, the upstream client, the
//! limiter, the key lookup, the response cache, the log writer, the clock and the task
//! tracker), and its two entry points, [`Gateway::complete`] and [`Gateway::embed`], run a
//! call through the stages declared in [`pipeline`]. The HTTP handlers, the cache's own
//! upstream calls (the judge, model-based embeddings) and composite requests all call them,
//! so every upstream call is limited, billed and recorded exactly once.
//!
//! **Invariant:** this crate knows no inbound HTTP (no axum, no header maps). The server
//! translates wire formats and headers into a [`CallCtx`] and a request, and back.
#![forbid(unsafe_code)]

pub mod background;
pub mod cache;
pub mod composite;
pub mod ctx;
pub mod dispatch;
pub mod embed;
pub mod error;
pub mod feedback;
pub mod keyauth;
pub mod limit;
pub mod metrics;
pub mod orchestrate;
pub mod pipeline;
mod record;
pub mod runtime;
pub mod select;
pub mod semantic;
mod stored;
pub mod stream;
mod tokens;

pub use composite::{Composite, Drawdown};
pub use ctx::{AccessNote, CacheControls, CallCtx, Origin, Parent, SelectionHints};
pub use embed::EmbedAnswer;
pub use error::StartupError;
pub use pipeline::{
    Answer, AnswerMeta, ChatRequest, Failure, FullAnswer, NativeEvents, WireFormat,
};
pub use runtime::Runtime;
pub use stream::AnswerStream;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use plexus_core::clock::SharedClock;
use plexus_providers::client::UpstreamClient;
use plexus_store::{LogWriter, Store};
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The pipeline and everything it runs on; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Gateway {
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
    /// Stops the long-running background tasks (the cache's shared-state listener).
    background_stop: CancellationToken,
    /// Cancels the calls still running when shutdown's grace period is over: each is then
    /// settled and recorded (499) before the log writer stops.
    in_flight_stop: CancellationToken,
    /// Every task the gateway spawns: short jobs (indexing, judging, cache fills) and the
    /// listener; drained at shutdown.
    tasks: TaskTracker,
    vault: Option<Arc<plexus_auth::vault::Kek>>,
    runtime_built_at_ms: AtomicI64,
    /// `log.access` of the current runtime, read on every request without loading it.
    access_log: AtomicBool,
    metrics: Option<PrometheusHandle>,
    clock: SharedClock,
    started_unix: i64,
    /// The model selector's state across requests and reloads.
    selection: select::SelectionState,
    /// The background runs this instance drives.
    background: background::BackgroundRuns,
    /// Stored responses whose write has not landed yet.
    pending_responses: stored::PendingWrites,
}

impl Gateway {
    /// A gateway on `clock` (wall-clock time: records, budgets' periods, cache expiry;
    /// `SystemClock` outside tests).
    pub fn new(
        runtime: Runtime,
        client: UpstreamClient,
        store: Store,
        writer: LogWriter,
        audit: plexus_auth::audit::AuditWriter,
        vault: Option<Arc<plexus_auth::vault::Kek>>,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let started_unix = clock.now_unix_secs();
        let limiter = limit::Limiter::new(&runtime.config)?;
        let cache = match &runtime.config.cache {
            None => None,
            Some(settings) => Some(Arc::new(cache::ResponseCache::new(
                settings,
                clock.clone(),
            )?)),
        };
        let background_stop = CancellationToken::new();
        let tasks = TaskTracker::new();
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
                tasks.spawn(plexus_cache::store::listen(
                    c.store().clone(),
                    on_shared,
                    background_stop.clone(),
                ));
            }
        }
        let access_log = AtomicBool::new(runtime.config.log.access);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                access_log,
                runtime: ArcSwap::from_pointee(runtime),
                client,
                keys: keyauth::KeyAuth::new(store.clone()),
                limiter,
                cache,
                background_stop,
                in_flight_stop: CancellationToken::new(),
                tasks,
                vault,
                runtime_built_at_ms: AtomicI64::new(clock.now_unix_ms()),
                store,
                writer,
                audit,
                metrics: metrics::install(),
                clock,
                started_unix,
                selection: select::SelectionState::new(),
                background: background::BackgroundRuns::new(),
                pending_responses: stored::PendingWrites::default(),
            }),
        };
        gateway.inner.tasks.spawn(select::follow_feedback(
            gateway.clone(),
            gateway.inner.background_stop.clone(),
        ));
        Ok(gateway)
    }

    pub(crate) fn selection(&self) -> &select::SelectionState {
        &self.inner.selection
    }

    /// The current runtime snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// Swaps in a new snapshot; in-flight requests keep the old one.
    pub fn replace_runtime(&self, mut runtime: Runtime) {
        runtime.inherit_health(&self.inner.runtime.load());
        self.inner
            .access_log
            .store(runtime.config.log.access, Ordering::Relaxed);
        self.inner.runtime.store(Arc::new(runtime));
        self.inner
            .runtime_built_at_ms
            .store(self.inner.clock.now_unix_ms(), Ordering::Relaxed);
    }

    /// Whether the server writes an access log line per request (`log.access`; a reload
    /// turns it on or off).
    pub fn access_log(&self) -> bool {
        self.inner.access_log.load(Ordering::Relaxed)
    }

    /// When the current runtime snapshot was installed.
    pub fn runtime_built_at_ms(&self) -> i64 {
        self.inner.runtime_built_at_ms.load(Ordering::Relaxed)
    }

    /// Rebuilds the runtime from `config` (with the vault's credentials) and swaps it in.
    ///
    /// The response cache and the shared Redis are built once, at start-up: a config whose
    /// `cache:` or `redis:` differs from the running one is refused whole, naming the setting,
    /// rather than half applied.
    pub async fn reload(&self, config: plexus_core::config::Config) -> Result<(), StartupError> {
        let current = self.runtime();
        if let Some(key) = restart_only_changes(&current.config, &config)
            .into_iter()
            .next()
        {
            return Err(StartupError::NeedsRestart(key));
        }
        let rt = Runtime::load(config, &self.inner.client, &self.inner.store, self.vault()).await?;
        self.replace_runtime(rt);
        Ok(())
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

    pub fn auth(&self) -> &keyauth::KeyAuth {
        &self.inner.keys
    }

    pub fn vault(&self) -> Option<&plexus_auth::vault::Kek> {
        self.inner.vault.as_deref()
    }

    /// The key-encryption key, or the configuration error saying how to set one (for actions
    /// that store or open an encrypted provider credential).
    pub fn require_vault(&self) -> Result<&plexus_auth::vault::Kek, plexus_core::ApiError> {
        self.vault().ok_or_else(error::vault_not_configured)
    }

    /// The in-process budgets (used when no Redis is configured, or it is down and the
    /// policy is fail-open).
    pub fn budgets(&self) -> &Arc<plexus_limits::Budgets> {
        self.inner.limiter.local_budgets()
    }

    pub fn limiter(&self) -> &limit::Limiter {
        &self.inner.limiter
    }

    pub fn cache(&self) -> Option<&Arc<cache::ResponseCache>> {
        self.inner.cache.as_ref()
    }

    /// The Prometheus exposition of every metric.
    pub fn render_metrics(&self) -> String {
        self.inner
            .metrics
            .as_ref()
            .map(|h| h.render())
            .unwrap_or_default()
    }

    /// When this process started (Unix seconds), the `created` of listed models.
    pub fn started_unix(&self) -> i64 {
        self.inner.started_unix
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.inner.client
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Whether no short background job (indexing a question, judging an answer, filling the
    /// cache) is running: what tests wait for before they look at the results.
    pub fn background_idle(&self) -> bool {
        // The shared-state listener and the feedback follower run for the gateway's whole
        // life.
        let listener = usize::from(
            self.inner
                .cache
                .as_ref()
                .is_some_and(|c| c.store().redis().is_some()),
        );
        self.inner.tasks.len() <= listener + 1
    }

    /// Cancels every call still running (shutdown's grace period is over): each settles and
    /// records itself as cancelled, with the usage seen so far. [`Gateway::shutdown`] then
    /// waits for them.
    pub fn cancel_in_flight(&self) {
        self.inner.in_flight_stop.cancel();
    }

    pub(crate) fn in_flight_stop(&self) -> &CancellationToken {
        &self.inner.in_flight_stop
    }

    /// Stops the background work after the server has drained: calls running on (detached
    /// calls, live streams) and short jobs finish or settle (within 10 s), queued limit
    /// releases reach Redis, and the cache's listener ends. The log writer is stopped after
    /// this, so every record is in its queue first.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.background_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait()).await;
        self.inner.limiter.shutdown().await;
    }
}

/// The settings a reload cannot apply, by config key.
fn restart_only_changes(
    old: &plexus_core::config::Config,
    new: &plexus_core::config::Config,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let secret =
        |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
    if secret(&old.redis) != secret(&new.redis) {
        out.push("redis");
    }
    let cache = |c: &Option<plexus_core::config::CacheSettings>| {
        c.as_ref().map(|c| (format!("{c:?}"), secret(&c.redis)))
    };
    if cache(&old.cache) != cache(&new.cache) {
        out.push("cache");
    }
    out
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

/// Deletes what is past its retention (`retention:`): request records, stored responses,
/// and the bodies kept in request records.
pub async fn apply_retention(gateway: &Gateway, now_ms: i64) {
    fn report(what: &str, done: Result<u64, plexus_store::StoreError>) {
        match done {
            Ok(n) if n > 0 => tracing::info!(message = "Retention pass.", what, rows = n),
            Ok(_) => {}
            Err(e) => tracing::warn!(message = "Retention pass failed.", what, error = %e),
        }
    }
    let retention = gateway.runtime().config.retention;
    let store = gateway.store();
    let cutoff = |keep: Duration| now_ms.saturating_sub(keep.as_millis() as i64);
    if let Some(keep) = retention.requests {
        let done = store.delete_requests_before(cutoff(keep)).await;
        report("request records", done);
    }
    if let Some(keep) = retention.responses {
        let done = store.delete_responses_before(cutoff(keep)).await;
        report("stored responses", done);
    }
    if let Some(keep) = retention.bodies {
        let done = store.clear_bodies_before(cutoff(keep)).await;
        report("request bodies", done);
    }
}

/// Background upkeep until `stop`: deletes what is past its retention, warns (log,
/// metric, audit entry) about provider credentials expiring within a week, and reloads the
/// runtime when a credential in use has expired, so it leaves the rotation.
pub async fn run_housekeeping(gateway: Gateway, every: Duration, stop: CancellationToken) {
    loop {
        let now = gateway.clock().now_unix_ms();
        apply_retention(&gateway, now).await;
        check_credentials(&gateway, now).await;
        let forgotten = gateway.limiter().purge_idle();
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

/// The one place that reports expiring credentials (log, metric, audit entry).
async fn check_credentials(gateway: &Gateway, now: i64) {
    let records = match gateway.store().list_credentials().await {
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
            expired_in_use |= gateway.runtime_built_at_ms() < expires;
        } else if expires - now < CREDENTIAL_NOTICE_MS {
            tracing::warn!(message = "A provider credential expires soon.", credential = %r.id, provider = %r.provider, expires_in_hours = (expires - now) / 3_600_000);
            ::metrics::counter!("plexus_credentials_expiring_total", "provider" => r.provider.clone()).increment(1);
            gateway
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
        let config = (*gateway.runtime().config).clone();
        match gateway.reload(config).await {
            Ok(()) => tracing::info!(message = "Expired credentials left the rotation."),
            Err(e) => {
                tracing::error!(message = "Reload after a credential expired failed.", error = %e)
            }
        }
    }
}
