//! Errors of the provider layer and their mapping onto the API error registry.

use plexus_core::{ApiError, ErrorCode};
use std::time::Duration;

/// Where a timeout struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstByte => "first byte",
            TimeoutPhase::Idle => "idle between chunks",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request uses a parameter this provider cannot express.
    #[error("`{param}` is not supported by the {provider} provider")]
    Unsupported {
        param: &'static str,
        provider: &'static str,
    },
    /// A field outside the typed request that this provider cannot express.
    #[error("`{param}` is not supported by the {provider} provider")]
    UnsupportedField {
        param: String,
        provider: &'static str,
    },
    /// The request is invalid for this provider (names the offending parameter).
    #[error("{message}")]
    InvalidRequest { param: String, message: String },
    /// The provider answered with a non-success status.
    #[error("provider answered {status}: {message}")]
    Upstream {
        status: u16,
        /// The provider's own error code or type, when it sent one (e.g. `insufficient_quota`).
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("provider timed out ({})", .0.as_str())]
    Timeout(TimeoutPhase),
    #[error("could not reach the provider: {0}")]
    Connect(String),
    /// The provider's answer could not be read.
    #[error("unreadable provider answer: {0}")]
    Decode(String),
    /// The provider sent an error event inside a stream.
    #[error("provider stream error: {0}")]
    Stream(String),
}

impl ProviderError {
    pub fn decode(err: impl std::fmt::Display) -> Self {
        ProviderError::Decode(err.to_string())
    }

    /// Whether retrying (on this or another target) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Upstream { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Timeout(_) | ProviderError::Connect(_) => true,
            _ => false,
        }
    }
}

/// Parses a `Retry-After` header: delta-seconds (fractions allowed), an HTTP-date, or the
/// provider-specific reset headers in the OpenAI duration format (`1s`, `6m0s`, `120ms`).
/// One parser for the whole gateway: the router's.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    plexus_router::parse_retry_after(value, now)
}

/// The client-facing text of a provider error. Errors returned by
/// [`crate::client::UpstreamClient`] are already scrubbed of the provider's credentials (see
/// [`crate::scrub`]); the secret patterns are applied once more here, for errors built
/// elsewhere.
impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        use plexus_core::redact::redact_credentials as redact;
        match err {
            ProviderError::Unsupported { param, provider } => {
                ApiError::unsupported(param, provider)
            }
            ProviderError::UnsupportedField { param, provider } => {
                ApiError::unsupported(&param, provider)
            }
            ProviderError::InvalidRequest { param, message } => {
                ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
            }
            ProviderError::Upstream {
                status,
                code,
                message,
                retry_after,
            } => {
                let code_str = code.as_deref().unwrap_or("");
                let lower = message.to_ascii_lowercase();
                let api_code = match status {
                    429 if code_str == "insufficient_quota" => ErrorCode::InsufficientQuota,
                    429 => ErrorCode::RateLimitExceeded,
                    401 | 403 => ErrorCode::UpstreamAuthError,
                    400 | 413
                        if code_str == "context_length_exceeded"
                            || lower.contains("context length")
                            || lower.contains("context window")
                            || lower.contains("prompt is too long")
                            || lower.contains("too many tokens")
                            || lower.contains("maximum number of tokens allowed") =>
                    {
                        ErrorCode::ContextLengthExceeded
                    }
                    408 | 504 => ErrorCode::UpstreamTimeout,
                    400..=499 => ErrorCode::UpstreamInvalidRequest,
                    _ => ErrorCode::UpstreamError,
                };
                let message = redact(&message);
                let text = match api_code {
                    ErrorCode::UpstreamAuthError => format!(
                        "the provider refused the gateway's credential (status {status}): {message}"
                    ),
                    _ => format!("provider error (status {status}): {message}"),
                };
                let mut api = ApiError::new(api_code, text).with_retry_after(retry_after);
                // Keep the provider's 4xx status (400, 404, 409, 422, ...) for invalid requests.
                if api_code == ErrorCode::UpstreamInvalidRequest {
                    api.status_override = Some(status);
                }
                api
            }
            ProviderError::Timeout(phase) => ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!("the provider did not answer in time ({})", phase.as_str()),
            ),
            ProviderError::Connect(msg) => ApiError::new(
                ErrorCode::UpstreamError,
                format!("could not reach the provider: {}", redact(&msg)),
            ),
            ProviderError::Decode(msg) => ApiError::new(
                ErrorCode::UpstreamError,
                format!("unreadable provider answer: {}", redact(&msg)),
            ),
            ProviderError::Stream(msg) => ApiError::new(
                ErrorCode::UpstreamError,
                format!("provider stream failed: {}", redact(&msg)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_formats() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_retry_after("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn upstream_status_mapping() {
        let map = |status, code: Option<&str>, msg: &str| {
            ApiError::from(ProviderError::Upstream {
                status,
                code: code.map(str::to_owned),
                message: msg.into(),
                retry_after: None,
            })
        };
        assert_eq!(map(429, None, "slow down").status(), 429);
        assert_eq!(
            map(429, Some("insufficient_quota"), "x").code,
            ErrorCode::InsufficientQuota
        );
        assert_eq!(map(401, None, "bad key").code, ErrorCode::UpstreamAuthError);
        assert_eq!(map(401, None, "bad key").status(), 502);
        assert_eq!(map(503, None, "down").status(), 502);
        assert_eq!(map(422, None, "bad").status(), 422);
        assert_eq!(
            map(400, None, "prompt is too long: 300000 tokens").code,
            ErrorCode::ContextLengthExceeded
        );
    }

    #[test]
    fn client_facing_text_has_no_secret_patterns() {
        let api = ApiError::from(ProviderError::Upstream {
            status: 401,
            code: Some("invalid_api_key".into()),
            message: "Incorrect API key provided: Bearer sk-proj-abc123DEF456ghi789".into(),
            retry_after: None,
        });
        assert_eq!(api.code, ErrorCode::UpstreamAuthError);
        assert!(!api.message.contains("abc123DEF456"), "{}", api.message);
        assert!(api.message.contains("[REDACTED]"), "{}", api.message);
        for err in [
            ProviderError::Stream("key sk-proj-abc123DEF456ghi789".into()),
            ProviderError::Decode("key sk-proj-abc123DEF456ghi789".into()),
            ProviderError::Connect("key sk-proj-abc123DEF456ghi789".into()),
        ] {
            let api = ApiError::from(err);
            assert!(!api.message.contains("abc123DEF456"), "{}", api.message);
        }
    }
}
