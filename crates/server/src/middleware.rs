//! Request ids and authentication.

use crate::error::HttpError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::Response;
use plexus_auth::roles::Principal;
use plexus_core::{ApiError, ErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// The request id: the client's `x-request-id` when it sent a sane one, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is calling: the master key, a virtual key, or nobody (auth off on loopback).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

const X_REQUEST_ID: &str = "x-request-id";

fn new_request_id() -> String {
    // A random per-process prefix plus a counter: unique across instances, and no syscall or
    // RNG per request.
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("req_{prefix}{n:010x}")
}

fn client_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// Tags every request with its id and every response (errors and 404s included) with the
/// `x-request-id` header. A hand-written layer rather than `from_fn`: no boxed future per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S> tower::Service<Request> for RequestIdService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = req
            .headers()
            .get(X_REQUEST_ID)
            .and_then(client_request_id)
            .unwrap_or_else(new_request_id);
        let header = HeaderValue::from_str(&id).ok();
        req.extensions_mut().insert(RequestId(id));
        RequestIdFuture {
            inner: self.inner.call(req),
            header,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
    }
}

impl<F, E> std::future::Future for RequestIdFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(h) = this.header.take() {
            resp.headers_mut().insert(X_REQUEST_ID, h);
        }
        std::task::Poll::Ready(Ok(resp))
    }
}

impl FromRequestParts<AppState> for RequestId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, HttpError> {
        // Taken rather than cloned: the layer put it there for exactly this handler.
        parts
            .extensions
            .remove::<RequestId>()
            .ok_or_else(|| HttpError(ApiError::internal("request id layer missing")))
    }
}

fn presented_key(parts: &Parts) -> Option<&str> {
    let headers = &parts.headers;
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Authentication as an extractor: every `/v1` and `/admin` handler takes an `Auth`, so no
/// route can forget it, and no middleware future is boxed per request.
impl FromRequestParts<AppState> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let rt = state.runtime();
        let Some(master) = &rt.master_key_hash else {
            return Ok(Auth(Principal::anonymous_admin()));
        };
        let Some(key) = presented_key(parts).filter(|k| !k.is_empty()) else {
            return Err(auth_failure(
                state,
                parts,
                "missing",
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
            )
            .await);
        };
        // Hash first so the comparison is constant-time whatever the lengths.
        if bool::from(crate::runtime::hash_key(key).ct_eq(master)) {
            return Ok(Auth(Principal::master()));
        }
        if let Some(validator) = &rt.jwt {
            if plexus_auth::jwt::looks_like_jwt(key) {
                return match validator.validate_at(key, state.clock().now_unix_secs()) {
                    Ok(identity) => match jwt_principal(identity) {
                        Some(p) => Ok(Auth(p)),
                        None => Err(auth_failure(
                            state,
                            parts,
                            "jwt_role",
                            "The token's role is not one of admin, team_admin, member, viewer.",
                        )
                        .await),
                    },
                    Err(e) => {
                        tracing::info!(message = "JWT rejected.", reason = %e);
                        Err(auth_failure(
                            state,
                            parts,
                            "jwt_invalid",
                            "The bearer token is not valid.",
                        )
                        .await)
                    }
                };
            }
        }
        match state
            .auth()
            .authenticate(key, state.clock().now_unix_ms())
            .await
        {
            Ok(principal) => Ok(Auth(principal)),
            Err(reason) => Err(auth_failure(state, parts, reason, reason_text(reason)).await),
        }
    }
}

/// A validated token's identity as a principal; a missing role means `member`.
fn jwt_principal(identity: plexus_auth::jwt::JwtIdentity) -> Option<Principal> {
    let role = match identity.role.as_deref() {
        None => plexus_auth::roles::Role::Member,
        Some(r) => plexus_auth::roles::Role::parse(r)?,
    };
    Some(Principal {
        id: format!("jwt:{}", identity.subject),
        key_id: None,
        user_id: identity.user,
        team_id: identity.team,
        role,
        models: Vec::new(),
    })
}

fn reason_text(reason: &'static str) -> &'static str {
    match reason {
        "revoked" => "This API key has been revoked.",
        "expired" => "This API key has expired.",
        "unavailable" => "The key store is unavailable; try again.",
        _ => "Incorrect API key provided.",
    }
}

/// Records the failure in the audit log (with the key's public id when it had one, never the
/// key) and answers 401.
async fn auth_failure(
    state: &AppState,
    parts: &Parts,
    reason: &'static str,
    message: &'static str,
) -> HttpError {
    let actor = presented_key(parts)
        .and_then(plexus_auth::keys::id_of)
        .unwrap_or("anonymous")
        .to_owned();
    state
        .audit()
        .record(plexus_auth::audit::AuditEvent {
            ts_ms: state.clock().now_unix_ms(),
            actor,
            action: "auth.failure",
            target: parts.uri.path().to_owned(),
            outcome: "denied",
            source: client_addr(&parts.extensions),
            details: serde_json::json!({"reason": reason}).to_string(),
        })
        .await;
    let code = if reason == "unavailable" {
        ErrorCode::ServiceUnavailable
    } else {
        ErrorCode::InvalidApiKey
    };
    HttpError(ApiError::new(code, message))
}

/// The peer address, when the server was started with connection info.
pub fn client_addr(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_client_ids_are_checked() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(a.starts_with("req_"));
        assert!(client_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(client_request_id(&HeaderValue::from_static("has space")).is_none());
        let long = "x".repeat(200);
        assert!(client_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}
