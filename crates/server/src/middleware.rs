//! Request ids and authentication.

use crate::error::HttpError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::Response;
use plexus_auth::roles::Principal;
use plexus_core::ApiError;
use plexus_gateway::keyauth::AuthFailure;
use plexus_gateway::CallCtx;
use subtle::ConstantTimeEq;

/// The request's ids: the gateway's own (the key of its record), and the client's
/// `x-request-id` when it sent a sane one (kept and echoed, never a key).
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    pub client: Option<String>,
}

/// Who is calling: the master key, a virtual key, or nobody (auth off on loopback).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// A client call's context for the gateway: its ids, its authenticated principal and (for
/// chat, when a cache is configured) its cache controls. Every `/v1` handler takes one.
#[derive(Debug, Clone)]
pub struct Call(pub CallCtx);

impl FromRequestParts<AppState> for Call {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let ids = RequestId::from_request_parts(parts, state).await?;
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        let mut ctx = CallCtx::with_ids(principal, ids.id, ids.client);
        let chat = !parts.uri.path().ends_with("/embeddings");
        if chat && state.cache().is_some() {
            match crate::headers::cache_controls(&parts.headers) {
                Ok(controls) => ctx.cache = controls,
                Err(e) => {
                    state.record_rejected(&ctx, "chat", &e).await;
                    return Err(HttpError(e));
                }
            }
        }
        Ok(Call(ctx))
    }
}

const X_REQUEST_ID: &str = "x-request-id";

fn client_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// Gives every request a gateway id and every response (errors and 404s included) the
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
        let client_header = req.headers().get(X_REQUEST_ID);
        let client = client_header.and_then(client_request_id);
        let id = plexus_gateway::ctx::new_request_id();
        // `x-plexus-request-id` is the gateway's; `x-request-id` echoes the client's own, or
        // is the gateway's too (a shared value, not a second copy).
        let gateway_header = HeaderValue::from_str(&id).ok();
        let header = match (&client, client_header) {
            (Some(_), Some(h)) => Some(h.clone()),
            _ => gateway_header.clone(),
        };
        req.extensions_mut().insert(RequestId { id, client });
        RequestIdFuture {
            inner: self.inner.call(req),
            header,
            gateway_header,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
        gateway_header: Option<HeaderValue>,
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
        if let Some(h) = this.gateway_header.take() {
            resp.headers_mut().insert("x-plexus-request-id", h);
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
        let Some(key) = presented_key(parts).filter(|k| !k.is_empty()) else {
            return match rt.master_key_hash {
                // Open mode (no master key, loopback): a request without a credential is the
                // admin. One that presents a credential is still checked below.
                None => Ok(Auth(Principal::anonymous_admin())),
                Some(_) => Err(auth_failure(state, parts, AuthFailure::Missing).await),
            };
        };
        // Hash first so the comparison is constant-time whatever the lengths.
        let is_master = |m: &[u8; 32]| bool::from(plexus_gateway::runtime::hash_key(key).ct_eq(m));
        if rt.master_key_hash.as_ref().is_some_and(is_master) {
            return Ok(Auth(Principal::master()));
        }
        if let Some(validator) = &rt.jwt {
            if plexus_auth::jwt::looks_like_jwt(key) {
                return match validator.validate_at(key, state.clock().now_unix_secs()) {
                    Ok(identity) => match jwt_principal(identity) {
                        Some(p) => Ok(Auth(p)),
                        None => Err(auth_failure(state, parts, AuthFailure::JwtRole).await),
                    },
                    Err(e) => {
                        tracing::info!(message = "JWT rejected.", reason = %e);
                        Err(auth_failure(state, parts, AuthFailure::JwtInvalid).await)
                    }
                };
            }
        }
        // Open mode checks what claims to be a Plexus key; any other value is what SDKs send
        // when they insist on a key (`api_key="anything"`), and the gateway is open anyway.
        if rt.master_key_hash.is_none() && !key.starts_with(plexus_auth::keys::PREFIX) {
            return Ok(Auth(Principal::anonymous_admin()));
        }
        match state
            .auth()
            .authenticate(key, state.clock().now_unix_ms())
            .await
        {
            Ok(principal) => Ok(Auth(principal)),
            Err(reason) => Err(auth_failure(state, parts, reason).await),
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

/// Records the failure in the audit log (with the key's public id when it had one, never the
/// key) and answers 401.
fn auth_failure<'a>(
    state: &'a AppState,
    parts: &'a Parts,
    reason: AuthFailure,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpError> + Send + 'a>> {
    // Boxed: every request's extractor future would otherwise carry this rare path's state.
    Box::pin(async move {
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
                details: serde_json::json!({"reason": reason.as_str()}).to_string(),
            })
            .await;
        HttpError(ApiError::new(reason.code(), reason.message()))
    })
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
    fn client_ids_are_checked() {
        assert!(client_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(client_request_id(&HeaderValue::from_static("has space")).is_none());
        let long = "x".repeat(200);
        assert!(client_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}
