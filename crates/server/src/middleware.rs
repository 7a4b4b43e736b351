//! Request ids and authentication.

use crate::error::HttpError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use plexus_core::{ApiError, ErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// The request id: the client's `x-request-id` when it sent a sane one, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is calling. Today: the master key or nobody (auth off on loopback).
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: &'static str,
}

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

pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(client_request_id)
        .unwrap_or_else(new_request_id);
    let header = HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id));
    let mut resp = next.run(req).await;
    if let Some(h) = header {
        resp.headers_mut().insert(X_REQUEST_ID, h);
    }
    resp
}

fn presented_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
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

pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, HttpError> {
    let rt = state.runtime();
    let principal = match &rt.master_key_hash {
        None => Principal { key_id: "" },
        Some(expected) => {
            let key = presented_key(&req).filter(|k| !k.is_empty()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidApiKey,
                    "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
                )
            })?;
            // Hash first so the comparison is constant-time whatever the lengths.
            let presented = crate::runtime::hash_key(key);
            if !bool::from(presented.ct_eq(expected)) {
                return Err(HttpError(ApiError::new(
                    ErrorCode::InvalidApiKey,
                    "Incorrect API key provided.",
                )));
            }
            Principal { key_id: "master" }
        }
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
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
