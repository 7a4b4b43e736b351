//! Request ids, the access log, and authentication.

use crate::error::HttpError;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use plexus_auth::roles::Principal;
use plexus_core::ApiError;
use plexus_gateway::keyauth::AuthFailure;
use plexus_gateway::{AccessNote, CallCtx};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The access log's `tracing` target: one INFO line per request when `log.access` (or
/// `serve --access-log`) is on.
pub const ACCESS_TARGET: &str = "plexus::access";

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
        ctx.access = parts.extensions.get::<Arc<AccessNote>>().cloned();
        let chat = !parts.uri.path().ends_with("/embeddings");
        if chat && state.cache().is_some() {
            match crate::headers::cache_controls(&parts.headers) {
                Ok(controls) => ctx.cache = controls,
                Err(e) => {
                    state.record_rejected(&ctx, "chat", &[], &e).await;
                    return Err(HttpError(e));
                }
            }
        }
        // The runtime is loaded only when a selection header is there to check.
        if chat
            && crate::headers::has_selection_hints(&parts.headers)
            && state.runtime().has_selectors()
        {
            match crate::headers::selection_hints(&parts.headers) {
                Ok(hints) => ctx.selection = hints,
                Err(e) => {
                    state.record_rejected(&ctx, "chat", &[], &e).await;
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
/// `x-request-id` header, and writes the access log when it is on. A hand-written layer rather
/// than `from_fn`: no boxed future per request.
#[derive(Clone)]
pub struct RequestIdLayer {
    state: AppState,
}

impl RequestIdLayer {
    pub fn new(state: &AppState) -> RequestIdLayer {
        RequestIdLayer {
            state: state.clone(),
        }
    }
}

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
    state: AppState,
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
        // Off (the default), the access log costs this one load.
        let access = self
            .state
            .access_log()
            .then(|| AccessLine::start(&mut req, &id));
        req.extensions_mut().insert(RequestId { id, client });
        RequestIdFuture {
            inner: self.inner.call(req),
            header,
            gateway_header,
            access,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
        gateway_header: Option<HeaderValue>,
        // Dropped with the future when the client goes away before the response: logged then.
        access: Option<AccessLine>,
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
        if let Some(mut line) = this.access.take() {
            line.status = Some(resp.status().as_u16());
            // The line is written when the body ends (or is dropped): a stream's duration and
            // size are known only then.
            resp = resp.map(|inner| Body::new(AccessBody { inner, line }));
        }
        std::task::Poll::Ready(Ok(resp))
    }
}

/// One request's access-log line, written exactly once: when its response body ends, or when
/// it is dropped (the client went away; without a response the status is 499).
struct AccessLine {
    method: Method,
    path: String,
    request_id: String,
    started: Instant,
    status: Option<u16>,
    /// What the handlers learned: the key id and the model.
    note: Arc<AccessNote>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    written: bool,
}

impl AccessLine {
    /// Starts the line of `req`: shares the note with the handlers (through the request's
    /// extensions) and counts the request body as it is read.
    fn start(req: &mut Request, request_id: &str) -> AccessLine {
        let note = Arc::new(AccessNote::default());
        req.extensions_mut().insert(note.clone());
        let bytes_in = Arc::new(AtomicU64::new(0));
        let body = std::mem::take(req.body_mut());
        *req.body_mut() = Body::new(CountingBody {
            inner: body,
            count: bytes_in.clone(),
        });
        AccessLine {
            method: req.method().clone(),
            // The path only: a query string is the client's business.
            path: req.uri().path().to_owned(),
            request_id: request_id.to_owned(),
            started: Instant::now(),
            status: None,
            note,
            bytes_in,
            bytes_out: 0,
            written: false,
        }
    }

    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        // Text a client chose (the model, a presented key's id) is quoted and escaped.
        tracing::info!(
            target: ACCESS_TARGET,
            method = %self.method,
            path = %self.path,
            status = self.status.unwrap_or(499),
            duration_ms = self.started.elapsed().as_millis() as u64,
            request_id = %self.request_id,
            model = self.note.model.get().map(String::as_str),
            key_id = self.note.key_id.get().map(String::as_str),
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
        );
    }
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        self.write();
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts what it sends and writes the access line at its end.
    struct AccessBody {
        #[pin]
        inner: Body,
        line: AccessLine,
    }
}

impl hyper::body::Body for AccessBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.line.bytes_out += data.len() as u64;
                }
            }
            // The end, or a failure: the response is over.
            _ => this.line.write(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that counts what the handler reads.
    struct CountingBody {
        #[pin]
        inner: Body,
        count: Arc<AtomicU64>,
    }
}

impl hyper::body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
        let auth = authenticate(parts, state).await;
        if let (Ok(Auth(p)), Some(note)) = (&auth, parts.extensions.get::<Arc<AccessNote>>()) {
            // Open mode's anonymous administrator has no key id.
            if !p.id.is_empty() {
                let _ = note.key_id.set(p.id.clone());
            }
        }
        auth
    }
}

/// The principal of the request's credential, or the failure (audited).
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Auth, HttpError> {
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
        if let Some(note) = parts.extensions.get::<Arc<AccessNote>>() {
            let _ = note.key_id.set(actor.clone());
        }
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
