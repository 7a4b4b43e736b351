//! The admin API under `/admin`: keys, teams, users and the audit log. Every route takes an
//! authenticated principal, checks the permission matrix (`plexus_auth::roles`) against the
//! resource's team and user, and records the action (allowed or denied) in the audit log.

use crate::chat::{parse_json, read_body};
use crate::error::HttpError;
use crate::middleware::{client_addr, Auth};
use crate::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexus_auth::audit::AuditEvent;
use plexus_auth::keys;
use plexus_auth::roles::{authorize, may_grant, Action, Principal, Role, Scope};
use plexus_core::config::parse_duration;
use plexus_core::{ApiError, ErrorCode};
use plexus_store::{
    AuditQuery, KeyFilter, KeyRecord, KeyUpdate, StoreError, TeamRecord, UserRecord,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", post(create_key).get(list_keys))
        .route(
            "/admin/keys/{id}",
            get(get_key).patch(update_key).delete(revoke_key),
        )
        .route("/admin/keys/{id}/rotate", post(rotate_key))
        .route("/admin/orgs", post(create_org).get(list_orgs))
        .route("/admin/orgs/{id}", get(get_org))
        .route("/admin/teams", post(create_team).get(list_teams))
        .route(
            "/admin/teams/{id}",
            get(get_team).patch(update_team).delete(delete_team),
        )
        .route("/admin/users", post(create_user).get(list_users))
        .route(
            "/admin/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/admin/audit", get(list_audit))
        .route("/admin/spend", get(spend))
        .route(
            "/admin/credentials",
            post(create_credential).get(list_credentials),
        )
        .route(
            "/admin/credentials/{id}",
            axum::routing::delete(retire_credential),
        )
        .route(
            "/admin/cache",
            axum::routing::delete(purge_cache).get(cache_stats),
        )
}

/// `GET /admin/cache`: the cache's size and the state of the semantic cache's learned
/// thresholds (admins only: the figures are cache-wide).
async fn cache_stats(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::CacheRead, Scope::default(), "cache.read", "cache")
        .await?;
    let Some(cache) = state.cache() else {
        return Err(HttpError(ApiError::new(
            ErrorCode::NotFound,
            "the response cache is not configured",
        )));
    };
    let (entries, bytes) = cache.store().local_size();
    Ok(Json(json!({
        "object": "cache.stats",
        "local_entries": entries,
        "local_bytes": bytes,
        "semantic": cache.semantic().map(|s| s.stats()),
    })))
}

/// `DELETE /admin/cache?namespace=&model=&tag=&key_prefix=`: every given filter must match;
/// none purges everything (admins only; team admins purge `namespace=team:<their team>`).
async fn purge_cache(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    for k in q.keys() {
        if !["namespace", "model", "tag", "key_prefix"].contains(&k.as_str()) {
            return Err(invalid(
                "filters are namespace, model, tag and key_prefix",
                k,
            ));
        }
    }
    let filter = plexus_cache::store::Purge {
        namespace: q.get("namespace").cloned(),
        model: q.get("model").cloned(),
        tag: q.get("tag").cloned(),
        key_prefix: q.get("key_prefix").cloned(),
    };
    let team = filter
        .namespace
        .as_deref()
        .and_then(|n| n.strip_prefix("team:"));
    actor
        .allow(
            Action::CacheWrite,
            Scope {
                team_id: team,
                user_id: None,
            },
            "cache.purge",
            "cache",
        )
        .await?;
    let Some(cache) = state.cache() else {
        return Err(HttpError(ApiError::new(
            ErrorCode::NotFound,
            "the response cache is not configured",
        )));
    };
    let deleted = cache.purge(&filter).await;
    actor
        .audit(
            "cache.purge",
            "cache",
            "ok",
            json!({"filter": filter, "deleted": deleted}),
        )
        .await;
    Ok(Json(json!({"object": "cache.purge", "deleted": deleted})))
}

fn store_error(e: StoreError) -> HttpError {
    HttpError(plexus_gateway::error::from_store(e))
}

fn not_found(what: &str, id: &str) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        format!("{what} `{id}` not found"),
    ))
}

/// One audited action in flight: who did it, from where.
struct Actor<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    source: String,
}

impl Actor<'_> {
    async fn audit(
        &self,
        action: &'static str,
        target: &str,
        outcome: &'static str,
        details: Value,
    ) {
        self.state
            .audit()
            .record(AuditEvent {
                ts_ms: self.state.clock().now_unix_ms(),
                actor: if self.principal.id.is_empty() {
                    "anonymous".to_owned()
                } else {
                    self.principal.id.clone()
                },
                action,
                target: target.to_owned(),
                outcome,
                source: self.source.clone(),
                details: details.to_string(),
            })
            .await;
    }

    /// The permission check; a denial is audited and answered 403.
    async fn allow(
        &self,
        action: Action,
        scope: Scope<'_>,
        audit_action: &'static str,
        target: &str,
    ) -> Result<(), HttpError> {
        match authorize(self.principal, action, scope) {
            Ok(()) => Ok(()),
            Err(denied) => Err(self.deny(audit_action, target, denied.0).await),
        }
    }

    async fn deny(&self, audit_action: &'static str, target: &str, why: String) -> HttpError {
        self.audit(audit_action, target, "denied", json!({"reason": why}))
            .await;
        HttpError(ApiError::new(ErrorCode::PermissionDenied, why))
    }
}

fn actor<'a>(state: &'a AppState, principal: &'a Principal, req: &Request) -> Actor<'a> {
    Actor {
        state,
        principal,
        source: client_addr(req.extensions()),
    }
}

async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, HttpError> {
    let limit = state.runtime().config.max_request_bytes;
    let bytes = read_body(req, limit).await?;
    Ok(parse_json(&bytes)?)
}

/// The (team, user) a listing covers: what an admin asks for; for everyone else their own
/// scope, whatever they ask for (a team admin its team, others themselves or their team).
fn own_scope(
    principal: &Principal,
    team: Option<String>,
    user: Option<String>,
) -> (Option<String>, Option<String>) {
    match principal.role {
        Role::Admin => (team, user),
        Role::TeamAdmin => (principal.team_id.clone(), user),
        Role::Member | Role::Viewer => match &principal.user_id {
            Some(u) => (None, Some(u.clone())),
            None => (principal.team_id.clone(), user),
        },
    }
}

fn key_view(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "object": "key",
        "name": k.name,
        "team": k.team_id,
        "user": k.user_id,
        "role": k.role,
        "models": k.models,
        "metadata": k.metadata,
        "expires_at": k.expires_at.map(|ms| ms / 1000),
        "max_budget_usd": k.max_budget_usd,
        "budget_period": k.budget_period,
        "rpm": k.rpm,
        "tpm": k.tpm,
        "tpd": k.tpd,
        "max_parallel": k.max_parallel,
        "created_at": k.created_at / 1000,
        "revoked_at": k.revoked_at.map(|ms| ms / 1000),
        "rotated_from": k.rotated_from,
    })
}

fn invalid(message: impl Into<String>, param: &str) -> HttpError {
    HttpError(ApiError::new(ErrorCode::InvalidRequest, message.into()).with_param(param.to_owned()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    team: Option<String>,
    user: Option<String>,
    role: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
    /// A duration from now, e.g. `30d` (alternative to `expires_at`).
    expires_in: Option<String>,
    max_budget_usd: Option<f64>,
    budget_period: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    /// Tokens per day.
    tpd: Option<i64>,
    max_parallel: Option<i64>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The rate limits of a request body, named as the API names them (for `check_limits`).
fn rates(
    rpm: Option<i64>,
    tpm: Option<i64>,
    tpd: Option<i64>,
    max_parallel: Option<i64>,
) -> [(&'static str, Option<i64>); 4] {
    [
        ("rpm", rpm),
        ("tpm", tpm),
        ("tpd", tpd),
        ("max_parallel", max_parallel),
    ]
}

/// Validates a budget and rate limits: a non-negative budget, a non-zero period, positive
/// limits; the error names the parameter.
fn check_limits(
    budget: Option<f64>,
    period: Option<&str>,
    limits: &[(&str, Option<i64>)],
) -> Result<(), HttpError> {
    if let Some(b) = budget {
        if !b.is_finite() || b < 0.0 {
            return Err(invalid(
                "`max_budget_usd` must be a non-negative number",
                "max_budget_usd",
            ));
        }
    }
    if let Some(p) = period {
        if parse_duration(p).is_none_or(|d| d.is_zero()) {
            return Err(invalid(
                "`budget_period` must be a duration such as `1d` or `30d`",
                "budget_period",
            ));
        }
    }
    for &(name, v) in limits {
        if v.is_some_and(|v| v <= 0) {
            return Err(invalid(format!("`{name}` must be positive"), name));
        }
    }
    Ok(())
}

fn check_models(models: &[String]) -> Result<(), HttpError> {
    if models.len() > 1000 || models.iter().any(|m| m.is_empty() || m.len() > 256) {
        return Err(invalid(
            "`models` must hold up to 1000 non-empty names",
            "models",
        ));
    }
    Ok(())
}

async fn create_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let b: CreateKey = body(&state, req).await?;
    if b.name.trim().is_empty() || b.name.len() > 256 {
        return Err(invalid("`name` must be 1 to 256 characters", "name"));
    }
    let role = match b.role.as_deref() {
        None => Role::Member,
        Some(r) => Role::parse(r)
            .ok_or_else(|| invalid("`role` must be admin, team_admin, member or viewer", "role"))?,
    };
    check_models(&b.models)?;
    check_limits(
        b.max_budget_usd,
        b.budget_period.as_deref(),
        &rates(b.rpm, b.tpm, b.tpd, b.max_parallel),
    )?;
    // Non-admins create keys in their own scope unless they name one.
    let team = b.team.or_else(|| {
        (principal.role != Role::Admin)
            .then(|| principal.team_id.clone())
            .flatten()
    });
    let user = b.user.or_else(|| {
        (principal.role == Role::Member || principal.role == Role::Viewer)
            .then(|| principal.user_id.clone())
            .flatten()
    });
    let scope = Scope {
        team_id: team.as_deref(),
        user_id: user.as_deref(),
    };
    actor
        .allow(Action::KeyWrite, scope, "key.create", &b.name)
        .await?;
    if let Err(denied) = may_grant(&principal, role, &b.models) {
        return Err(actor.deny("key.create", &b.name, denied.0).await);
    }
    if let Some(t) = &team {
        if state
            .store()
            .get_team(t)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("team", t));
        }
    }
    if let Some(u) = &user {
        match state.store().get_user(u).await.map_err(store_error)? {
            None => return Err(not_found("user", u)),
            Some(rec) if team.is_some() && rec.team_id != team => {
                return Err(invalid("the user is not in that team", "user"));
            }
            Some(_) => {}
        }
    }
    let now = state.clock().now_unix_ms();
    let expires_at = match (&b.expires_at, &b.expires_in) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give `expires_at` or `expires_in`, not both",
                "expires_at",
            ))
        }
        (Some(secs), None) => Some(secs.saturating_mul(1000)),
        (None, Some(d)) => Some(
            now + parse_duration(d)
                .ok_or_else(|| {
                    invalid(
                        "`expires_in` must be a duration such as `30d`",
                        "expires_in",
                    )
                })?
                .as_millis() as i64,
        ),
        (None, None) => None,
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Err(invalid("the key would already be expired", "expires_at"));
    }
    let generated = keys::generate();
    let record = KeyRecord {
        id: generated.id.clone(),
        key_hash: generated.hash.clone(),
        name: b.name,
        team_id: team,
        user_id: user,
        role: role.as_str().to_owned(),
        models: b.models,
        metadata: b.metadata.unwrap_or_else(|| json!({})),
        expires_at,
        max_budget_usd: b.max_budget_usd,
        budget_period: b.budget_period,
        rpm: b.rpm,
        tpm: b.tpm,
        tpd: b.tpd,
        max_parallel: b.max_parallel,
        created_at: now,
        revoked_at: None,
        rotated_from: None,
    };
    state
        .store()
        .insert_key(&record)
        .await
        .map_err(store_error)?;
    state.auth().created(record.clone());
    actor
        .audit("key.create", &record.id, "ok", json!({"name": record.name, "role": record.role, "team": record.team_id, "user": record.user_id}))
        .await;
    let mut view = key_view(&record);
    view["key"] = Value::String(generated.key.expose_secret().to_owned());
    if state.runtime().master_key_hash.is_none() {
        const OPEN: &str = "no master key is set: the gateway accepts requests that present no \
            key as an administrator, and virtual keys only restrict the requests that present them";
        tracing::warn!(message = OPEN, key = %record.id);
        view["warning"] = Value::String(OPEN.to_owned());
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Loads a key and checks the caller may act on it. Unknown and forbidden look the same to
/// callers without read access, so ids cannot be probed.
async fn load_key(
    actor: &Actor<'_>,
    id: &str,
    action: Action,
    audit_action: &'static str,
) -> Result<KeyRecord, HttpError> {
    let Some(key) = actor.state.store().get_key(id).await.map_err(store_error)? else {
        return Err(not_found("key", id));
    };
    let scope = Scope {
        team_id: key.team_id.as_deref(),
        user_id: key.user_id.as_deref(),
    };
    if authorize(actor.principal, Action::KeyRead, scope).is_err() {
        return Err(not_found("key", id));
    }
    actor.allow(action, scope, audit_action, id).await?;
    Ok(key)
}

async fn get_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let key = load_key(&actor, &id, Action::KeyRead, "key.read").await?;
    Ok(Json(key_view(&key)))
}

async fn list_keys(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| invalid("`limit` must be 1 to 1000", "limit"))?,
    };
    let mut filter = KeyFilter {
        team_id: q.get("team").cloned(),
        user_id: q.get("user").cloned(),
        include_revoked: q.get("include_revoked").is_some_and(|v| v == "true"),
        after: q.get("cursor").cloned(),
        limit,
    };
    (filter.team_id, filter.user_id) =
        own_scope(&principal, filter.team_id.take(), filter.user_id.take());
    let scope = Scope {
        team_id: filter.team_id.as_deref(),
        user_id: filter.user_id.as_deref(),
    };
    actor
        .allow(Action::KeyRead, scope, "key.list", "keys")
        .await?;
    let (page, next) = state
        .store()
        .list_keys(&filter)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "object": "list",
        "data": page.iter().map(key_view).collect::<Vec<_>>(),
        "next_cursor": next,
        "has_more": next.is_some(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchKey {
    name: Option<String>,
    models: Option<Vec<String>>,
    metadata: Option<Value>,
    #[serde(default, with = "double_option")]
    expires_at: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    max_budget_usd: Option<Option<f64>>,
    #[serde(default, with = "double_option")]
    budget_period: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    rpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpd: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    max_parallel: Option<Option<i64>>,
}

/// Absent → `None` (leave as is); `null` → `Some(None)` (clear).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn update_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut key = load_key(&actor, &id, Action::KeyWrite, "key.update").await?;
    let p: PatchKey = body(&state, req).await?;
    if let Some(models) = &p.models {
        check_models(models)?;
        let role = Role::parse(&key.role).unwrap_or(Role::Viewer);
        if let Err(denied) = may_grant(&principal, role, models) {
            return Err(actor.deny("key.update", &id, denied.0).await);
        }
    }
    if let Some(name) = &p.name {
        if name.trim().is_empty() || name.len() > 256 {
            return Err(invalid("`name` must be 1 to 256 characters", "name"));
        }
    }
    check_limits(
        p.max_budget_usd.flatten(),
        p.budget_period.clone().flatten().as_deref(),
        &rates(
            p.rpm.flatten(),
            p.tpm.flatten(),
            p.tpd.flatten(),
            p.max_parallel.flatten(),
        ),
    )?;
    let changed = changed(&[
        ("name", p.name.is_some()),
        ("models", p.models.is_some()),
        ("metadata", p.metadata.is_some()),
        ("expires_at", p.expires_at.is_some()),
        ("max_budget_usd", p.max_budget_usd.is_some()),
        ("budget_period", p.budget_period.is_some()),
        ("rpm", p.rpm.is_some()),
        ("tpm", p.tpm.is_some()),
        ("tpd", p.tpd.is_some()),
        ("max_parallel", p.max_parallel.is_some()),
    ]);
    KeyUpdate {
        name: p.name,
        models: p.models,
        metadata: p.metadata,
        expires_at: p.expires_at.map(|v| v.map(|s| s.saturating_mul(1000))),
        max_budget_usd: p.max_budget_usd,
        budget_period: p.budget_period,
        rpm: p.rpm,
        tpm: p.tpm,
        tpd: p.tpd,
        max_parallel: p.max_parallel,
    }
    .apply(&mut key);
    state.store().update_key(&key).await.map_err(store_error)?;
    state.auth().invalidate(&id);
    actor
        .audit("key.update", &id, "ok", json!({"changed": changed}))
        .await;
    Ok(Json(key_view(&key)))
}

async fn revoke_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut key = load_key(&actor, &id, Action::KeyWrite, "key.revoke").await?;
    if key.revoked_at.is_none() {
        key.revoked_at = Some(state.clock().now_unix_ms());
        state.store().update_key(&key).await.map_err(store_error)?;
    }
    state.auth().invalidate(&id);
    actor.audit("key.revoke", &id, "ok", json!({})).await;
    Ok(Json(
        json!({"id": id, "object": "key", "deleted": true, "revoked_at": key.revoked_at.map(|ms| ms / 1000)}),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    grace_seconds: u64,
}

async fn rotate_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut old = load_key(&actor, &id, Action::KeyWrite, "key.rotate").await?;
    let r: Rotate = body(&state, req).await?;
    if old.revoked_at.is_some() {
        return Err(invalid("a revoked key cannot be rotated", "id"));
    }
    if r.grace_seconds > 30 * 86_400 {
        return Err(invalid(
            "`grace_seconds` must be at most 30 days",
            "grace_seconds",
        ));
    }
    let now = state.clock().now_unix_ms();
    let generated = keys::generate();
    let new = KeyRecord {
        id: generated.id.clone(),
        key_hash: generated.hash.clone(),
        created_at: now,
        revoked_at: None,
        rotated_from: Some(old.id.clone()),
        ..old.clone()
    };
    state.store().insert_key(&new).await.map_err(store_error)?;
    // The old key keeps working until the grace period ends (or its own expiry, if sooner).
    let grace_end = now + (r.grace_seconds as i64) * 1000;
    old.expires_at = Some(old.expires_at.map_or(grace_end, |e| e.min(grace_end)));
    if r.grace_seconds == 0 {
        old.revoked_at = Some(now);
    }
    state.store().update_key(&old).await.map_err(store_error)?;
    state.auth().invalidate(&old.id);
    state.auth().created(new.clone());
    actor
        .audit(
            "key.rotate",
            &old.id,
            "ok",
            json!({"new_key": new.id, "grace_seconds": r.grace_seconds}),
        )
        .await;
    let mut view = key_view(&new);
    view["key"] = Value::String(generated.key.expose_secret().to_owned());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn team_view(t: &TeamRecord) -> Value {
    json!({"id": t.id, "object": "team", "name": t.name, "org": t.org_id, "max_budget_usd": t.max_budget_usd,
           "budget_period": t.budget_period, "rpm": t.rpm, "tpm": t.tpm, "tpd": t.tpd,
           "max_parallel": t.max_parallel, "metadata": t.metadata, "created_at": t.created_at / 1000})
}

fn user_view(u: &UserRecord) -> Value {
    json!({"id": u.id, "object": "user", "name": u.name, "team": u.team_id, "role": u.role,
           "max_budget_usd": u.max_budget_usd, "budget_period": u.budget_period,
           "rpm": u.rpm, "tpm": u.tpm, "tpd": u.tpd, "max_parallel": u.max_parallel,
           "created_at": u.created_at / 1000})
}

/// The names of the fields a PATCH body gives (set or cleared), for the audit log.
fn changed(fields: &[(&'static str, bool)]) -> Vec<&'static str> {
    fields.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect()
}

fn valid_id(id: &str, param: &str) -> Result<(), HttpError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("`{param}` must be 1 to 64 letters, digits, `-` or `_`"),
            param,
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    id: String,
    name: Option<String>,
}

fn org_view(o: &plexus_store::OrgRecord, teams: Option<&[TeamRecord]>) -> Value {
    let mut v = json!({"id": o.id, "object": "organization", "name": o.name, "created_at": o.created_at / 1000});
    if let Some(teams) = teams {
        v["teams"] = json!(teams.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    }
    v
}

/// Organizations group teams; managing them is an admin's job.
async fn create_org(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "org.create", "orgs")
        .await?;
    let b: CreateOrg = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    let org = plexus_store::OrgRecord {
        name: b.name.unwrap_or_else(|| b.id.clone()),
        id: b.id,
        created_at: state.clock().now_unix_ms(),
    };
    state.store().insert_org(&org).await.map_err(store_error)?;
    actor
        .audit("org.create", &org.id, "ok", json!({"name": org.name}))
        .await;
    Ok((StatusCode::CREATED, Json(org_view(&org, None))).into_response())
}

async fn list_orgs(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "org.list", "orgs")
        .await?;
    let orgs = state.store().list_orgs().await.map_err(store_error)?;
    Ok(Json(
        json!({"object": "list", "data": orgs.iter().map(|o| org_view(o, None)).collect::<Vec<_>>()}),
    ))
}

async fn get_org(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "org.read", &id)
        .await?;
    let Some(org) = state.store().get_org(&id).await.map_err(store_error)? else {
        return Err(not_found("organization", &id));
    };
    let teams = state.store().teams_of_org(&id).await.map_err(store_error)?;
    Ok(Json(org_view(&org, Some(&teams))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    id: String,
    name: Option<String>,
    /// The organization the team belongs to.
    org: Option<String>,
    max_budget_usd: Option<f64>,
    budget_period: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    tpd: Option<i64>,
    max_parallel: Option<i64>,
    metadata: Option<Value>,
}

async fn create_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "team.create", "teams")
        .await?;
    let b: CreateTeam = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    check_limits(
        b.max_budget_usd,
        b.budget_period.as_deref(),
        &rates(b.rpm, b.tpm, b.tpd, b.max_parallel),
    )?;
    if let Some(org) = &b.org {
        if state
            .store()
            .get_org(org)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("organization", org));
        }
    }
    let team = TeamRecord {
        name: b.name.unwrap_or_else(|| b.id.clone()),
        id: b.id,
        org_id: b.org,
        max_budget_usd: b.max_budget_usd,
        budget_period: b.budget_period,
        rpm: b.rpm,
        tpm: b.tpm,
        tpd: b.tpd,
        max_parallel: b.max_parallel,
        metadata: b.metadata.unwrap_or_else(|| json!({})),
        created_at: state.clock().now_unix_ms(),
    };
    state
        .store()
        .insert_team(&team)
        .await
        .map_err(store_error)?;
    actor
        .audit("team.create", &team.id, "ok", json!({"name": team.name}))
        .await;
    Ok((StatusCode::CREATED, Json(team_view(&team))).into_response())
}

async fn get_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    if authorize(
        &principal,
        Action::TeamRead,
        Scope {
            team_id: Some(&id),
            user_id: None,
        },
    )
    .is_err()
    {
        return Err(not_found("team", &id));
    }
    let team = state.store().get_team(&id).await.map_err(store_error)?;
    team.map(|t| Json(team_view(&t)))
        .ok_or_else(|| not_found("team", &id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTeam {
    name: Option<String>,
    #[serde(default, with = "double_option")]
    max_budget_usd: Option<Option<f64>>,
    #[serde(default, with = "double_option")]
    budget_period: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    rpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpd: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    max_parallel: Option<Option<i64>>,
    metadata: Option<Value>,
}

async fn update_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(
            Action::TeamWrite,
            Scope {
                team_id: Some(&id),
                user_id: None,
            },
            "team.update",
            &id,
        )
        .await?;
    let p: PatchTeam = body(&state, req).await?;
    let Some(mut team) = state.store().get_team(&id).await.map_err(store_error)? else {
        return Err(not_found("team", &id));
    };
    check_limits(
        p.max_budget_usd.flatten(),
        p.budget_period.clone().flatten().as_deref(),
        &rates(
            p.rpm.flatten(),
            p.tpm.flatten(),
            p.tpd.flatten(),
            p.max_parallel.flatten(),
        ),
    )?;
    let changed = changed(&[
        ("name", p.name.is_some()),
        ("max_budget_usd", p.max_budget_usd.is_some()),
        ("budget_period", p.budget_period.is_some()),
        ("rpm", p.rpm.is_some()),
        ("tpm", p.tpm.is_some()),
        ("tpd", p.tpd.is_some()),
        ("max_parallel", p.max_parallel.is_some()),
        ("metadata", p.metadata.is_some()),
    ]);
    if let Some(n) = p.name {
        team.name = n;
    }
    if let Some(b) = p.max_budget_usd {
        team.max_budget_usd = b;
    }
    if let Some(b) = p.budget_period {
        team.budget_period = b;
    }
    if let Some(v) = p.rpm {
        team.rpm = v;
    }
    if let Some(v) = p.tpm {
        team.tpm = v;
    }
    if let Some(v) = p.tpd {
        team.tpd = v;
    }
    if let Some(v) = p.max_parallel {
        team.max_parallel = v;
    }
    if let Some(m) = p.metadata {
        team.metadata = m;
    }
    state
        .store()
        .update_team(&team)
        .await
        .map_err(store_error)?;
    state.auth().invalidate_team(&id);
    actor
        .audit("team.update", &id, "ok", json!({"changed": changed}))
        .await;
    Ok(Json(team_view(&team)))
}

async fn delete_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(
            Action::TeamWrite,
            Scope {
                team_id: Some(&id),
                user_id: None,
            },
            "team.delete",
            &id,
        )
        .await?;
    state.store().delete_team(&id).await.map_err(store_error)?;
    state.auth().invalidate_team(&id);
    actor.audit("team.delete", &id, "ok", json!({})).await;
    Ok(Json(json!({"id": id, "object": "team", "deleted": true})))
}

async fn list_teams(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    if principal.role != Role::Admin {
        // Everyone else sees their own team only.
        let team = match &principal.team_id {
            Some(t) => state.store().get_team(t).await.map_err(store_error)?,
            None => None,
        };
        return Ok(Json(
            json!({"object": "list", "data": team.iter().map(team_view).collect::<Vec<_>>(), "has_more": false}),
        ));
    }
    actor
        .allow(Action::TeamRead, Scope::default(), "team.list", "teams")
        .await?;
    let teams = state
        .store()
        .list_teams(q.get("cursor").map(String::as_str), 1000)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"object": "list", "data": teams.iter().map(team_view).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    id: String,
    name: Option<String>,
    team: Option<String>,
    role: Option<String>,
    max_budget_usd: Option<f64>,
    budget_period: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    tpd: Option<i64>,
    max_parallel: Option<i64>,
}

async fn create_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let b: CreateUser = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    let role = match b.role.as_deref() {
        None => Role::Member,
        Some(r) => Role::parse(r)
            .ok_or_else(|| invalid("`role` must be admin, team_admin, member or viewer", "role"))?,
    };
    let team = b.team.or_else(|| {
        (principal.role != Role::Admin)
            .then(|| principal.team_id.clone())
            .flatten()
    });
    actor
        .allow(
            Action::UserWrite,
            Scope {
                team_id: team.as_deref(),
                user_id: None,
            },
            "user.create",
            &b.id,
        )
        .await?;
    if let Err(denied) = may_grant(&principal, role, &principal.models.clone()) {
        return Err(actor.deny("user.create", &b.id, denied.0).await);
    }
    if let Some(t) = &team {
        if state
            .store()
            .get_team(t)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("team", t));
        }
    }
    check_limits(
        b.max_budget_usd,
        b.budget_period.as_deref(),
        &rates(b.rpm, b.tpm, b.tpd, b.max_parallel),
    )?;
    let user = UserRecord {
        name: b.name.unwrap_or_else(|| b.id.clone()),
        id: b.id,
        team_id: team,
        role: role.as_str().to_owned(),
        max_budget_usd: b.max_budget_usd,
        budget_period: b.budget_period,
        rpm: b.rpm,
        tpm: b.tpm,
        tpd: b.tpd,
        max_parallel: b.max_parallel,
        created_at: state.clock().now_unix_ms(),
    };
    state
        .store()
        .insert_user(&user)
        .await
        .map_err(store_error)?;
    actor
        .audit(
            "user.create",
            &user.id,
            "ok",
            json!({"team": user.team_id, "role": user.role}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(user_view(&user))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    name: Option<String>,
    team: Option<String>,
    role: Option<String>,
    #[serde(default, with = "double_option")]
    max_budget_usd: Option<Option<f64>>,
    #[serde(default, with = "double_option")]
    budget_period: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    rpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpm: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    tpd: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    max_parallel: Option<Option<i64>>,
}

async fn update_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut user = load_user(&actor, &id, Action::UserWrite, "user.update").await?;
    let p: PatchUser = body(&state, req).await?;
    let changed = changed(&[
        ("name", p.name.is_some()),
        ("team", p.team.is_some()),
        ("role", p.role.is_some()),
        ("max_budget_usd", p.max_budget_usd.is_some()),
        ("budget_period", p.budget_period.is_some()),
        ("rpm", p.rpm.is_some()),
        ("tpm", p.tpm.is_some()),
        ("tpd", p.tpd.is_some()),
        ("max_parallel", p.max_parallel.is_some()),
    ]);
    if let Some(r) = &p.role {
        let role = Role::parse(r)
            .ok_or_else(|| invalid("`role` must be admin, team_admin, member or viewer", "role"))?;
        if let Err(denied) = may_grant(&principal, role, &principal.models.clone()) {
            return Err(actor.deny("user.update", &id, denied.0).await);
        }
        user.role = role.as_str().to_owned();
    }
    if let Some(t) = p.team {
        // Moving a user between teams is an admin's call.
        if principal.role != Role::Admin {
            return Err(actor
                .deny(
                    "user.update",
                    &id,
                    "only admins move users between teams".into(),
                )
                .await);
        }
        if state
            .store()
            .get_team(&t)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("team", &t));
        }
        user.team_id = Some(t);
    }
    check_limits(
        p.max_budget_usd.flatten(),
        p.budget_period.clone().flatten().as_deref(),
        &rates(
            p.rpm.flatten(),
            p.tpm.flatten(),
            p.tpd.flatten(),
            p.max_parallel.flatten(),
        ),
    )?;
    if let Some(n) = p.name {
        user.name = n;
    }
    if let Some(b) = p.max_budget_usd {
        user.max_budget_usd = b;
    }
    if let Some(b) = p.budget_period {
        user.budget_period = b;
    }
    if let Some(v) = p.rpm {
        user.rpm = v;
    }
    if let Some(v) = p.tpm {
        user.tpm = v;
    }
    if let Some(v) = p.tpd {
        user.tpd = v;
    }
    if let Some(v) = p.max_parallel {
        user.max_parallel = v;
    }
    state
        .store()
        .update_user(&user)
        .await
        .map_err(store_error)?;
    state.auth().invalidate_user(&id);
    actor
        .audit(
            "user.update",
            &id,
            "ok",
            json!({"role": user.role, "team": user.team_id, "changed": changed}),
        )
        .await;
    Ok(Json(user_view(&user)))
}

async fn load_user(
    actor: &Actor<'_>,
    id: &str,
    action: Action,
    audit_action: &'static str,
) -> Result<UserRecord, HttpError> {
    let Some(user) = actor
        .state
        .store()
        .get_user(id)
        .await
        .map_err(store_error)?
    else {
        return Err(not_found("user", id));
    };
    let scope = Scope {
        team_id: user.team_id.as_deref(),
        user_id: Some(&user.id),
    };
    if authorize(actor.principal, Action::UserRead, scope).is_err() {
        return Err(not_found("user", id));
    }
    actor.allow(action, scope, audit_action, id).await?;
    Ok(user)
}

async fn get_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let user = load_user(&actor, &id, Action::UserRead, "user.read").await?;
    Ok(Json(user_view(&user)))
}

async fn list_users(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let team = match principal.role {
        Role::Admin => q.get("team").cloned(),
        _ => principal.team_id.clone(),
    };
    actor
        .allow(
            Action::UserRead,
            Scope {
                team_id: team.as_deref(),
                user_id: None,
            },
            "user.list",
            "users",
        )
        .await
        .or_else(|e| {
            if principal.role == Role::Admin {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    let users = state
        .store()
        .list_users(team.as_deref(), q.get("cursor").map(String::as_str), 1000)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"object": "list", "data": users.iter().map(user_view).collect::<Vec<_>>()}),
    ))
}

async fn delete_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let user = load_user(&actor, &id, Action::UserWrite, "user.delete").await?;
    let (keys, _) = state
        .store()
        .list_keys(&KeyFilter {
            user_id: Some(user.id.clone()),
            include_revoked: true,
            limit: 1000,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    state.store().delete_user(&id).await.map_err(store_error)?;
    state.auth().invalidate_user(&id);
    for k in &keys {
        state.auth().invalidate(&k.id);
    }
    actor
        .audit(
            "user.delete",
            &id,
            "ok",
            json!({"keys_deleted": keys.len()}),
        )
        .await;
    Ok(Json(json!({"id": id, "object": "user", "deleted": true})))
}

async fn list_audit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    // The audit log is the admins' in this version; scoped audit reads come with spend.
    if principal.role != Role::Admin {
        return Err(actor
            .deny(
                "audit.read",
                "audit",
                "only admins may read the audit log".into(),
            )
            .await);
    }
    let limit = q
        .get("limit")
        .map(|l| l.parse::<u32>().ok().filter(|l| (1..=10_000).contains(l)))
        .unwrap_or(Some(100))
        .ok_or_else(|| invalid("`limit` must be 1 to 10000", "limit"))?;
    let after_seq = match q.get("after") {
        None => None,
        Some(a) => Some(
            a.parse::<i64>()
                .map_err(|_| invalid("`after` must be a sequence number", "after"))?,
        ),
    };
    state.audit().flush().await;
    let entries = state
        .store()
        .list_audit(&AuditQuery {
            actor: q.get("actor").cloned(),
            action: q.get("action").cloned(),
            after_seq,
            limit,
        })
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = entries
        .iter()
        .map(|e| json!({"seq": e.seq, "ts_ms": e.ts_ms, "actor": e.actor, "action": e.action, "target": e.target,
                        "outcome": e.outcome, "source": e.source,
                        "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                        "prev_hash": e.prev_hash, "hash": e.hash}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /admin/spend?group=key|user|team|model|day&since=<unix secs>&team=&user=`: spend from
/// the request log. Non-admins see their own scope only. `requests` counts client requests
/// (a composite request once); cost and tokens are those of every call. `cache_overhead` is the
/// spend of the gateway's own calls (the semantic cache's judge, model-based embeddings) per
/// originating team, within the `team` asked for; it is empty when a `user` scope applies, as
/// overhead belongs to teams, not users.
async fn spend(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let group = q.get("group").map(String::as_str).unwrap_or("key");
    if !["key", "user", "team", "model", "day"].contains(&group) {
        return Err(invalid(
            "`group` must be key, user, team, model or day",
            "group",
        ));
    }
    let since_ms = match q.get("since") {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| invalid("`since` must be Unix seconds", "since"))?
            .saturating_mul(1000),
    };
    let (team, user) = own_scope(&principal, q.get("team").cloned(), q.get("user").cloned());
    actor
        .allow(
            Action::SpendRead,
            Scope {
                team_id: team.as_deref(),
                user_id: user.as_deref(),
            },
            "spend.read",
            "spend",
        )
        .await?;
    state.writer().flush().await;
    let rows = state
        .store()
        .spend_report(group, since_ms, team.as_deref(), user.as_deref())
        .await
        .map_err(store_error)?;
    let overhead = if user.is_some() {
        Vec::new()
    } else {
        state
            .store()
            .overhead_by_team(since_ms, team.as_deref())
            .await
            .map_err(store_error)?
    };
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    Ok(Json(json!({
        "object": "spend",
        "group": group,
        "total_usd": total,
        "data": rows.iter().map(|r| json!({
            group: if group == "day" { json!(r.group.parse::<i64>().map(|d| d * 86_400).unwrap_or(0)) } else { json!(r.group) },
            "requests": r.requests,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_usd": r.cost_usd,
        })).collect::<Vec<_>>(),
        "cache_overhead": overhead.iter().map(|r| json!({
            "team": r.group,
            "requests": r.requests,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_usd": r.cost_usd,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    provider: String,
    secret: secrecy::SecretString,
    /// Unix seconds.
    expires_at: Option<i64>,
}

fn credential_view(c: &plexus_store::CredentialRecord) -> Value {
    json!({"id": c.id, "object": "credential", "provider": c.provider, "version": c.version,
           "secret": c.masked, "kek_id": c.kek_id, "created_at": c.created_at / 1000,
           "expires_at": c.expires_at.map(|ms| ms / 1000),
           "retired_at": c.retired_at.map(|ms| ms / 1000)})
}

/// Rebuilds the runtime so credential changes take effect at once (in-flight requests keep
/// the provider handles they hold).
async fn apply_credentials(state: &AppState) -> Result<(), HttpError> {
    let config = (*state.runtime().config).clone();
    state
        .reload(config)
        .await
        .map_err(|e| HttpError(ApiError::internal(e.to_string())))
}

async fn create_credential(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(
            Action::CredentialWrite,
            Scope::default(),
            "credential.create",
            "credentials",
        )
        .await?;
    let b: CreateCredential = body(&state, req).await?;
    let Some(kek) = state.vault() else {
        return Err(HttpError(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the credential vault is not configured: set PLEXUS_ENCRYPTION_KEY (base64 of 32 bytes) or vault.key_file",
        )));
    };
    if state.runtime().config.provider(&b.provider).is_none() {
        return Err(invalid(
            format!("no configured provider `{}`", b.provider),
            "provider",
        ));
    }
    let secret = b.secret.expose_secret();
    if secret.is_empty() || secret.len() > 4096 || secret.chars().any(char::is_control) {
        return Err(invalid(
            "`secret` must be 1 to 4096 printable characters",
            "secret",
        ));
    }
    let existing = state
        .store()
        .list_credentials()
        .await
        .map_err(store_error)?;
    let version = existing.iter().filter(|c| c.provider == b.provider).count() as i64 + 1;
    let id = format!("cred_{}", &keys::generate().id);
    let sealed = plexus_auth::vault::seal(kek, &id, version as u32, secret.as_bytes())
        .map_err(|e| HttpError(ApiError::internal(format!("cannot seal the secret: {e}"))))?;
    let now = state.clock().now_unix_ms();
    let record = plexus_store::CredentialRecord {
        id: id.clone(),
        provider: b.provider.clone(),
        version,
        kek_id: sealed.kek_id.clone(),
        sealed: serde_json::to_string(&sealed)
            .map_err(|e| HttpError(ApiError::internal(format!("cannot encode: {e}"))))?,
        masked: plexus_auth::vault::mask(secret),
        created_at: now,
        expires_at: b.expires_at.map(|s| s.saturating_mul(1000)),
        retired_at: None,
    };
    if record.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid(
            "the credential would already be expired",
            "expires_at",
        ));
    }
    state
        .store()
        .insert_credential(&record)
        .await
        .map_err(store_error)?;
    apply_credentials(&state).await?;
    actor
        .audit(
            "credential.create",
            &id,
            "ok",
            json!({"provider": b.provider, "version": version}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(credential_view(&record))).into_response())
}

async fn list_credentials(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(
            Action::CredentialRead,
            Scope::default(),
            "credential.list",
            "credentials",
        )
        .await?;
    let all = state
        .store()
        .list_credentials()
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"object": "list", "data": all.iter().map(credential_view).collect::<Vec<_>>()}),
    ))
}

async fn retire_credential(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<Value>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(
            Action::CredentialWrite,
            Scope::default(),
            "credential.retire",
            &id,
        )
        .await?;
    state
        .store()
        .retire_credential(&id, state.clock().now_unix_ms())
        .await
        .map_err(store_error)?;
    apply_credentials(&state).await?;
    actor.audit("credential.retire", &id, "ok", json!({})).await;
    Ok(Json(
        json!({"id": id, "object": "credential", "retired": true}),
    ))
}

#[cfg(test)]
mod tests {
    /// Every admin route is described in `docs/openapi.json`, and the document parses.
    #[test]
    fn openapi_describes_every_route() {
        let spec: serde_json::Value = serde_json::from_str(crate::OPENAPI).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        let source = include_str!("admin.rs");
        let mut checked = 0;
        for line in source.lines() {
            let line = line.trim();
            let rest = line
                .strip_prefix(".route(\"")
                .or_else(|| line.strip_prefix('"').filter(|r| r.starts_with("/admin")));
            if let Some(rest) = rest {
                let path = rest.split('"').next().unwrap();
                assert!(
                    paths.contains_key(path),
                    "{path} missing from docs/openapi.json"
                );
                checked += 1;
            }
        }
        assert!(checked >= 8, "found {checked} routes");
        for path in [
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/models",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
    }
}
