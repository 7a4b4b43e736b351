//! The admin API under `/admin`: keys, teams, users, organizations, spend, credentials, the
//! cache and the audit log. Every route takes an authenticated principal, checks the
//! permission matrix (`plexus_auth::roles`) against the resource's team and user, and records
//! the action (allowed or denied) in the audit log.
//!
//! Bodies in and out are the wire types of `plexus_protocol::admin`, which the SDK's admin
//! client and the CLI read back and `docs/openapi.json` is checked against.

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
use plexus_protocol::admin::{self as wire, Limits};
use plexus_protocol::money::Nanos;
use plexus_store::{KeyFilter, KeyRecord, KeyUpdate, StoreError, TeamRecord, UserRecord};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
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
        .route("/admin/requests/{id}", get(get_request))
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

/// A `list` object's `object` field.
const LIST: &str = "list";

/// Teams and users per page of `GET /admin/teams` and `GET /admin/users`.
const OWNER_PAGE: u32 = 1000;

/// `GET /admin/cache`: the cache's size and the state of the semantic cache's learned
/// thresholds (admins only: the figures are cache-wide).
async fn cache_stats(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Json<wire::CacheStats>, HttpError> {
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
    let semantic = match cache.semantic() {
        Some(s) => Some(
            serde_json::to_value(s.stats())
                .map_err(|e| HttpError(ApiError::internal(format!("cannot encode: {e}"))))?,
        ),
        None => None,
    };
    Ok(Json(wire::CacheStats {
        object: "cache.stats".into(),
        local_entries: entries,
        local_bytes: bytes,
        semantic,
        extra: Map::new(),
    }))
}

/// `DELETE /admin/cache?namespace=&model=&tag=&key_prefix=`: every given filter must match;
/// none purges everything (admins only; team admins purge `namespace=team:<their team>`).
async fn purge_cache(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<wire::CachePurged>, HttpError> {
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
    Ok(Json(wire::CachePurged {
        object: "cache.purge".into(),
        deleted: deleted as u64,
        extra: Map::new(),
    }))
}

fn store_error(e: StoreError) -> HttpError {
    match e {
        // The id is taken: 409, naming the id.
        StoreError::Conflict(what) => HttpError(
            ApiError::new(ErrorCode::Conflict, format!("{what} already exists")).with_param("id"),
        ),
        other => HttpError(plexus_gateway::error::from_store(other)),
    }
}

/// A change to a revoked key: 409 (the key stays readable, but is final).
fn revoked(what: &str) -> HttpError {
    HttpError(
        ApiError::new(
            ErrorCode::Conflict,
            format!("a revoked key cannot be {what}"),
        )
        .with_param("id"),
    )
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

/// Reads and parses a JSON body (at most `max_request_bytes`), naming the offending field.
pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, HttpError> {
    let limit = state.runtime().config.max_request_bytes;
    let bytes = read_body(req, limit).await?;
    parse_json(&bytes).map_err(|e| HttpError(name_the_field(e, &bytes)))
}

/// serde gives no path for a field of a flattened struct (the limits) nor for an unknown field
/// next to one: name the limit whose value does not parse, or the unknown field, as `param`.
#[cold]
fn name_the_field(e: ApiError, body: &[u8]) -> ApiError {
    if e.param.as_deref().is_some_and(|p| p != ".") {
        return e;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return e;
    };
    for name in Limits::FIELDS {
        let Some(v) = fields.get(name) else { continue };
        let one = Value::Object(Map::from_iter([(name.to_owned(), v.clone())]));
        if let Err(err) = serde_json::from_value::<Limits>(one) {
            return invalid(format!("Invalid request: `{name}`: {err}"), name).0;
        }
    }
    let unknown = e
        .message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    match unknown {
        Some(field) => ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Invalid request: unknown field `{field}`"),
        )
        .with_param(field),
        None => e,
    }
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

/// Stored milliseconds as the API's seconds.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn key_view(k: &KeyRecord) -> wire::Key {
    wire::Key {
        id: k.id.clone(),
        object: wire::Key::OBJECT.into(),
        name: k.name.clone(),
        team: k.team_id.clone(),
        user: k.user_id.clone(),
        role: k.role.clone(),
        models: k.models.clone(),
        metadata: k.metadata.clone(),
        expires_at: k.expires_at.map(secs),
        limits: k.limits.clone(),
        created_at: secs(k.created_at),
        revoked: k.revoked_at.is_some(),
        revoked_at: k.revoked_at.map(secs),
        rotated_from: k.rotated_from.clone(),
        key: None,
        warning: None,
        extra: Map::new(),
    }
}

fn invalid(message: impl Into<String>, param: &str) -> HttpError {
    HttpError(ApiError::new(ErrorCode::InvalidRequest, message.into()).with_param(param.to_owned()))
}

/// Validates a budget and rate limits: a non-negative budget, a non-zero period, positive
/// limits; the error names the parameter.
fn check_limits(l: &Limits) -> Result<(), HttpError> {
    if l.max_budget_usd.is_some_and(|b| b < Nanos::ZERO) {
        return Err(invalid(
            "`max_budget_usd` must be a non-negative number",
            "max_budget_usd",
        ));
    }
    if let Some(p) = &l.budget_period {
        if !wire::is_period(p) {
            return Err(invalid(
                "`budget_period` must be a duration such as `1d` or `30d` (a whole number of ms, s, m, h or d)",
                "budget_period",
            ));
        }
    }
    for (name, v) in l.rates() {
        if v.is_some_and(|v| v <= 0) {
            return Err(invalid(format!("`{name}` must be positive"), name));
        }
    }
    Ok(())
}

fn check_models(models: &[String]) -> Result<(), HttpError> {
    if models.len() > 1000
        || models
            .iter()
            .any(|m| m.is_empty() || m.chars().count() > 256)
    {
        return Err(invalid(
            "`models` must hold up to 1000 non-empty names",
            "models",
        ));
    }
    Ok(())
}

/// A display name: 1 to 256 characters.
fn check_name(name: &str) -> Result<(), HttpError> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(invalid("`name` must be 1 to 256 characters", "name"));
    }
    Ok(())
}

fn parse_role(r: Option<&str>) -> Result<Role, HttpError> {
    match r {
        None => Ok(Role::Member),
        Some(r) => Role::parse(r)
            .ok_or_else(|| invalid("`role` must be admin, team_admin, member or viewer", "role")),
    }
}

async fn create_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let b: wire::CreateKey = body(&state, req).await?;
    check_name(&b.name)?;
    let role = parse_role(b.role.as_deref())?;
    check_models(&b.models)?;
    check_limits(&b.limits)?;
    // Non-admins create keys in their own scope unless they name one.
    let mut team = b.team.or_else(|| {
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
            // A user's key belongs to the user's team: its spend counts there.
            Some(rec) if team.is_none() && rec.team_id.is_some() => {
                team = rec.team_id;
                let scope = Scope {
                    team_id: team.as_deref(),
                    user_id: Some(u),
                };
                actor
                    .allow(Action::KeyWrite, scope, "key.create", &b.name)
                    .await?;
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
        (Some(secs), None) => Some(unix_seconds_to_ms(*secs, "expires_at")?),
        (None, Some(d)) => Some(
            now + parse_duration(d)
                .filter(|_| wire::is_period(d))
                .ok_or_else(|| {
                    invalid(
                        "`expires_in` must be a duration such as `30d` (a whole number of ms, s, m, h or d)",
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
        metadata: Value::Object(b.metadata.unwrap_or_default()),
        expires_at,
        limits: b.limits,
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
    view.key = Some(generated.key.expose_secret().to_owned());
    if state.runtime().master_key_hash.is_none() {
        const OPEN: &str = "no master key is set: the gateway accepts requests that present no \
            key as an administrator, and virtual keys only restrict the requests that present them";
        tracing::warn!(message = OPEN, key = %record.id);
        view.warning = Some(OPEN.to_owned());
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

/// `GET /admin/keys/{id}`: revoked keys too (`revoked: true`), so what was revoked when stays
/// readable.
async fn get_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::Key>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let key = load_key(&actor, &id, Action::KeyRead, "key.read").await?;
    Ok(Json(key_view(&key)))
}

/// A `limit` query parameter: `default` when absent, else 1 to `max`.
fn page_limit(q: &HashMap<String, String>, default: u32, max: u32) -> Result<u32, HttpError> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| invalid(format!("`limit` must be 1 to {max}"), "limit")),
    }
}

async fn list_keys(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<wire::KeyList>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let limit = page_limit(&q, 100, 1000)?;
    let mut filter = KeyFilter {
        team_id: q.get("team").cloned(),
        user_id: q.get("user").cloned(),
        include_revoked: match q.get("include_revoked").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(invalid(
                    "`include_revoked` must be true or false",
                    "include_revoked",
                ))
            }
        },
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
    Ok(Json(wire::KeyList {
        object: LIST.into(),
        data: page.iter().map(key_view).collect(),
        has_more: next.is_some(),
        next_cursor: next,
        extra: Map::new(),
    }))
}

async fn update_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::Key>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut key = load_key(&actor, &id, Action::KeyWrite, "key.update").await?;
    let p: wire::PatchKey = body(&state, req).await?;
    if key.revoked_at.is_some() {
        return Err(revoked("changed"));
    }
    if let Some(models) = &p.models {
        check_models(models)?;
        let role = Role::parse(&key.role).unwrap_or(Role::Viewer);
        if let Err(denied) = may_grant(&principal, role, models) {
            return Err(actor.deny("key.update", &id, denied.0).await);
        }
    }
    if let Some(name) = &p.name {
        check_name(name)?;
    }
    check_limits(&p.limits.values())?;
    let changed = p.given();
    let expires_at = match p.expires_at {
        Some(Some(secs)) => Some(Some(unix_seconds_to_ms(secs, "expires_at")?)),
        other => other,
    };
    KeyUpdate {
        name: p.name,
        models: p.models,
        metadata: p.metadata.map(Value::Object),
        expires_at,
        limits: p.limits,
    }
    .apply(&mut key);
    state.store().update_key(&key).await.map_err(store_error)?;
    state.auth().invalidate(&id);
    actor
        .audit("key.update", &id, "ok", json!({"changed": changed}))
        .await;
    Ok(Json(key_view(&key)))
}

/// `DELETE /admin/keys/{id}` revokes: the key stops authenticating at once and stays readable
/// as `revoked`. Revoking again changes nothing and answers the same.
async fn revoke_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::KeyRevoked>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut key = load_key(&actor, &id, Action::KeyWrite, "key.revoke").await?;
    let revoked_at = match key.revoked_at {
        Some(at) => at,
        None => {
            let now = state.clock().now_unix_ms();
            key.revoked_at = Some(now);
            state.store().update_key(&key).await.map_err(store_error)?;
            now
        }
    };
    state.auth().invalidate(&id);
    actor.audit("key.revoke", &id, "ok", json!({})).await;
    Ok(Json(wire::KeyRevoked {
        id,
        object: wire::Key::OBJECT.into(),
        deleted: true,
        revoked: true,
        revoked_at: secs(revoked_at),
        extra: Map::new(),
    }))
}

async fn rotate_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut old = load_key(&actor, &id, Action::KeyWrite, "key.rotate").await?;
    let r: wire::RotateKey = body(&state, req).await?;
    if old.revoked_at.is_some() {
        return Err(revoked("rotated"));
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
    view.key = Some(generated.key.expose_secret().to_owned());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn team_view(t: &TeamRecord) -> wire::Team {
    wire::Team {
        id: t.id.clone(),
        object: wire::Team::OBJECT.into(),
        name: t.name.clone(),
        org: t.org_id.clone(),
        limits: t.limits.clone(),
        metadata: t.metadata.clone(),
        created_at: secs(t.created_at),
        extra: Map::new(),
    }
}

fn user_view(u: &UserRecord) -> wire::User {
    wire::User {
        id: u.id.clone(),
        object: wire::User::OBJECT.into(),
        name: u.name.clone(),
        team: u.team_id.clone(),
        role: u.role.clone(),
        limits: u.limits.clone(),
        created_at: secs(u.created_at),
        extra: Map::new(),
    }
}

fn deleted(id: String, object: &str) -> wire::Deleted {
    wire::Deleted {
        id,
        object: object.into(),
        deleted: true,
        extra: Map::new(),
    }
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

fn org_view(o: &plexus_store::OrgRecord, teams: Option<&[TeamRecord]>) -> wire::Org {
    wire::Org {
        id: o.id.clone(),
        object: wire::Org::OBJECT.into(),
        name: o.name.clone(),
        created_at: secs(o.created_at),
        teams: teams.map(|ts| ts.iter().map(|t| t.id.clone()).collect()),
        extra: Map::new(),
    }
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
    let b: wire::CreateOrg = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    if let Some(name) = &b.name {
        check_name(name)?;
    }
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
) -> Result<Json<wire::OrgList>, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "org.list", "orgs")
        .await?;
    let orgs = state.store().list_orgs().await.map_err(store_error)?;
    Ok(Json(wire::OrgList {
        object: LIST.into(),
        data: orgs.iter().map(|o| org_view(o, None)).collect(),
        extra: Map::new(),
    }))
}

async fn get_org(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::Org>, HttpError> {
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

async fn create_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    actor
        .allow(Action::TeamWrite, Scope::default(), "team.create", "teams")
        .await?;
    let b: wire::CreateTeam = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    if let Some(name) = &b.name {
        check_name(name)?;
    }
    check_limits(&b.limits)?;
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
        limits: b.limits,
        metadata: Value::Object(b.metadata.unwrap_or_default()),
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
) -> Result<Json<wire::Team>, HttpError> {
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

async fn update_team(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::Team>, HttpError> {
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
    let p: wire::PatchTeam = body(&state, req).await?;
    let Some(mut team) = state.store().get_team(&id).await.map_err(store_error)? else {
        return Err(not_found("team", &id));
    };
    if let Some(name) = &p.name {
        check_name(name)?;
    }
    check_limits(&p.limits.values())?;
    let changed = p.given();
    if let Some(n) = p.name {
        team.name = n;
    }
    p.limits.apply(&mut team.limits);
    if let Some(m) = p.metadata {
        team.metadata = Value::Object(m);
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
) -> Result<Json<wire::Deleted>, HttpError> {
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
    Ok(Json(deleted(id, wire::Team::OBJECT)))
}

async fn list_teams(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<wire::TeamList>, HttpError> {
    let actor = actor(&state, &principal, &req);
    if principal.role != Role::Admin {
        // Everyone else sees their own team only.
        let team = match &principal.team_id {
            Some(t) => state.store().get_team(t).await.map_err(store_error)?,
            None => None,
        };
        return Ok(Json(wire::TeamList {
            object: LIST.into(),
            data: team.iter().map(team_view).collect(),
            has_more: false,
            extra: Map::new(),
        }));
    }
    actor
        .allow(Action::TeamRead, Scope::default(), "team.list", "teams")
        .await?;
    let teams = state
        .store()
        .list_teams(q.get("cursor").map(String::as_str), OWNER_PAGE)
        .await
        .map_err(store_error)?;
    Ok(Json(wire::TeamList {
        object: LIST.into(),
        has_more: teams.len() >= OWNER_PAGE as usize,
        data: teams.iter().map(team_view).collect(),
        extra: Map::new(),
    }))
}

async fn create_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let actor = actor(&state, &principal, &req);
    let b: wire::CreateUser = body(&state, req).await?;
    valid_id(&b.id, "id")?;
    if let Some(name) = &b.name {
        check_name(name)?;
    }
    let role = parse_role(b.role.as_deref())?;
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
    check_limits(&b.limits)?;
    let user = UserRecord {
        name: b.name.unwrap_or_else(|| b.id.clone()),
        id: b.id,
        team_id: team,
        role: role.as_str().to_owned(),
        limits: b.limits,
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

async fn update_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::User>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let mut user = load_user(&actor, &id, Action::UserWrite, "user.update").await?;
    let p: wire::PatchUser = body(&state, req).await?;
    let changed = p.given();
    if let Some(name) = &p.name {
        check_name(name)?;
    }
    if let Some(r) = &p.role {
        let role = parse_role(Some(r))?;
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
    check_limits(&p.limits.values())?;
    if let Some(n) = p.name {
        user.name = n;
    }
    p.limits.apply(&mut user.limits);
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
) -> Result<Json<wire::User>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let user = load_user(&actor, &id, Action::UserRead, "user.read").await?;
    Ok(Json(user_view(&user)))
}

async fn list_users(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<wire::UserList>, HttpError> {
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
        .list_users(
            team.as_deref(),
            q.get("cursor").map(String::as_str),
            OWNER_PAGE,
        )
        .await
        .map_err(store_error)?;
    Ok(Json(wire::UserList {
        object: LIST.into(),
        has_more: users.len() >= OWNER_PAGE as usize,
        data: users.iter().map(user_view).collect(),
        extra: Map::new(),
    }))
}

async fn delete_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::Deleted>, HttpError> {
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
    Ok(Json(deleted(id, wire::User::OBJECT)))
}

async fn list_audit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Json<wire::AuditList>, HttpError> {
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
    let limit = page_limit(&q, 100, 10_000)?;
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
        .list_audit(&plexus_store::AuditQuery {
            actor: q.get("actor").cloned(),
            action: q.get("action").cloned(),
            after_seq,
            limit,
        })
        .await
        .map_err(store_error)?;
    Ok(Json(wire::AuditList {
        object: LIST.into(),
        data: entries
            .into_iter()
            .map(|e| wire::AuditEntry {
                details: serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                seq: e.seq,
                ts_ms: e.ts_ms,
                actor: e.actor,
                action: e.action,
                target: e.target,
                outcome: e.outcome,
                source: e.source,
                prev_hash: e.prev_hash,
                hash: e.hash,
                extra: Map::new(),
            })
            .collect(),
        extra: Map::new(),
    }))
}

/// The spend report's label for rows with nothing to group by (by model: requests refused
/// before they named one, such as an unreadable body).
const NO_GROUP: &str = "(none)";

fn spend_row(group: wire::SpendGroup, r: &plexus_store::SpendRow) -> wire::SpendRow {
    let name = match (group, r.group.as_deref()) {
        // Days are counted from the epoch; the API gives the day's start in seconds.
        (wire::SpendGroup::Day, g) => g
            .and_then(|g| g.parse::<i64>().ok())
            .map_or(0, |d| d.saturating_mul(86_400))
            .to_string(),
        (_, Some(g)) => g.to_owned(),
        // Nothing to group by: by model, requests refused before they named one.
        (_, None) => NO_GROUP.to_owned(),
    };
    wire::SpendRow {
        name: Some(wire::SpendName::new(group, Some(name))),
        requests: r.requests,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        cost_usd: r.cost,
        extra: Map::new(),
    }
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
) -> Result<Json<wire::Spend>, HttpError> {
    let actor = actor(&state, &principal, &req);
    let group = match q.get("group") {
        None => wire::SpendGroup::Key,
        Some(g) => wire::SpendGroup::parse(g)
            .ok_or_else(|| invalid("`group` must be key, user, team, model or day", "group"))?,
    };
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
        .spend_report(group.as_str(), since_ms, team.as_deref(), user.as_deref())
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
    let data: Vec<wire::SpendRow> = rows.iter().map(|r| spend_row(group, r)).collect();
    Ok(Json(wire::Spend {
        object: "spend".into(),
        group: group.as_str().into(),
        total_usd: data.iter().map(|r| r.cost_usd).sum(),
        data,
        cache_overhead: overhead
            .iter()
            .map(|r| spend_row(wire::SpendGroup::Team, r))
            .collect(),
        extra: Map::new(),
    }))
}

/// A logged request as the API shows it: never the prompt's embedding; the bodies only when
/// they were logged.
fn request_entry(r: plexus_store::LoggedRequest) -> wire::RequestEntry {
    let route = r.route.map(|text| {
        // Written by the gateway as JSON; should it not parse, the text is shown as it is.
        serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
    });
    wire::RequestEntry {
        object: wire::RequestEntry::OBJECT.into(),
        created_at: secs(r.ts_ms),
        request_id: r.request_id,
        client_request_id: r.client_request_id,
        parent_request_id: r.parent_request_id,
        step: r.step,
        upstream_request_id: r.upstream_request_id,
        key_id: r.key_id,
        user: r.user_id,
        team: r.team_id,
        endpoint: r.endpoint,
        model: r.model,
        provider: r.provider,
        upstream_model: r.upstream_model,
        stream: r.stream,
        status: r.status,
        error_code: r.error_code,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        cached_tokens: r.cached_tokens,
        reasoning_tokens: r.reasoning_tokens,
        usage_estimated: r.usage_estimated,
        cost_usd: r.cost,
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        cache: r.cache_status,
        route,
        children: Vec::new(),
        request_body: r.request_body,
        response_body: r.response_body,
        extra: Map::new(),
    }
}

/// `GET /admin/requests/{id}`: one request of the log by its gateway id, with the calls made
/// for it (`children`, in step order). Readable as spend is (admins any; team admins their
/// team's; members and viewers their own); unknown and forbidden look the same.
async fn get_request(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<wire::RequestEntry>, HttpError> {
    let store = state.store();
    let mut record = store.request_by_id(&id).await.map_err(store_error)?;
    if record.is_none() {
        // It may still be queued for the log writer.
        state.writer().flush().await;
        record = store.request_by_id(&id).await.map_err(store_error)?;
    }
    let Some(record) = record else {
        return Err(not_found("request", &id));
    };
    let scope = Scope {
        team_id: record.team_id.as_deref(),
        user_id: record.user_id.as_deref(),
    };
    if authorize(&principal, Action::SpendRead, scope).is_err() {
        return Err(not_found("request", &id));
    }
    let children = store.requests_by_parent(&id).await.map_err(store_error)?;
    let mut entry = request_entry(record);
    entry.children = children.into_iter().map(request_entry).collect();
    Ok(Json(entry))
}

fn credential_view(c: &plexus_store::CredentialRecord) -> wire::Credential {
    wire::Credential {
        id: c.id.clone(),
        object: wire::Credential::OBJECT.into(),
        provider: c.provider.clone(),
        version: c.version,
        secret: c.masked.clone(),
        kek_id: c.kek_id.clone(),
        created_at: secs(c.created_at),
        expires_at: c.expires_at.map(secs),
        retired_at: c.retired_at.map(secs),
        extra: Map::new(),
    }
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
    let mut b: wire::CreateCredential = body(&state, req).await?;
    // Held as a secret (zeroized on drop) from here on.
    let secret = secrecy::SecretString::from(std::mem::take(&mut b.secret));
    // No vault: the configuration error that says what to set.
    let kek = state.require_vault()?;
    if state.runtime().config.provider(&b.provider).is_none() {
        return Err(HttpError(
            ApiError::new(
                ErrorCode::NotFound,
                format!("no configured provider `{}`", b.provider),
            )
            .with_param("provider"),
        ));
    }
    let secret = secret.expose_secret();
    if secret.is_empty() || secret.chars().count() > 4096 || secret.chars().any(char::is_control) {
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
        expires_at: b
            .expires_at
            .map(|secs| unix_seconds_to_ms(secs, "expires_at"))
            .transpose()?,
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
) -> Result<Json<wire::CredentialList>, HttpError> {
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
    Ok(Json(wire::CredentialList {
        object: LIST.into(),
        data: all.iter().map(credential_view).collect(),
        extra: Map::new(),
    }))
}

async fn retire_credential(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<wire::CredentialRetired>, HttpError> {
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
    Ok(Json(wire::CredentialRetired {
        id,
        object: wire::Credential::OBJECT.into(),
        retired: true,
        extra: Map::new(),
    }))
}

/// The latest accepted timestamp: 9999-12-31T23:59:59Z, as in the OpenAPI description.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// A timestamp field given in Unix seconds, as the milliseconds the store keeps; refused
/// (naming `field`) before 1970 or after the year 9999.
fn unix_seconds_to_ms(secs: i64, field: &str) -> Result<i64, HttpError> {
    if (0..=MAX_UNIX_SECONDS).contains(&secs) {
        Ok(secs * 1000)
    } else {
        Err(invalid(
            format!("`{field}` must be Unix seconds from 0 to {MAX_UNIX_SECONDS} (year 9999)"),
            field,
        ))
    }
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
