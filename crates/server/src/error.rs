//! Turning [`ApiError`] into the OpenAI-shaped HTTP response. No side effects here: the
//! gateway recorded the failure (log and metrics) before it became a response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plexus_core::ApiError;

/// Wrapper so handlers can `?` an [`ApiError`].
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

pub fn error_body_bytes(err: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&err.to_body()).unwrap_or_else(|_| b"{}".to_vec())
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status =
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, error_body_bytes(&err)).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(ra) = err.retry_after {
            // Whole seconds, rounded up, as `Retry-After` requires.
            let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&ra.as_millis().to_string()) {
                headers.insert("retry-after-ms", v);
            }
        }
        resp
    }
}
