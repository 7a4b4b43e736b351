//! The registry of stable error codes. Every error a client sees comes from here: each code has
//! one HTTP status and one OpenAI error `type`, so clients can match on `code`.

use plexus_protocol::openai::{ErrorObject, ErrorResponse};
use std::borrow::Cow;
use std::time::Duration;

/// Stable error codes. OpenAI's strings are used where OpenAI has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is not valid JSON or a field has the wrong type or value.
    InvalidRequest,
    /// The target provider cannot express a parameter the request uses.
    UnsupportedParameter,
    /// Missing or wrong API key.
    InvalidApiKey,
    /// The key is valid but may not do this.
    PermissionDenied,
    /// No such model (neither configured nor `provider/model` of a configured provider).
    ModelNotFound,
    /// No such route.
    NotFound,
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// The resource already exists, or its state forbids the change (a revoked key).
    Conflict,
    /// Body larger than `max_request_bytes`.
    RequestTooLarge,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// A rate limit was hit (Plexus's own or the provider's).
    RateLimitExceeded,
    /// A budget is spent.
    BudgetExceeded,
    /// A budget applies but a target's price is unknown, so the cost cannot be bounded.
    PriceUnknown,
    /// The provider says the account has no quota left.
    InsufficientQuota,
    /// Plexus's own provider credential was refused by the provider.
    UpstreamAuthError,
    /// The provider failed (5xx, malformed answer, connection error).
    UpstreamError,
    /// The provider did not answer in time.
    UpstreamTimeout,
    /// The provider rejected the request as invalid (4xx other than auth/rate limit).
    UpstreamInvalidRequest,
    /// Every target is unavailable (circuit open) or the gateway is shutting down.
    ServiceUnavailable,
    /// Too few members of an orchestration answered to reach its quorum.
    QuorumNotMet,
    /// The client sent nothing (headers or body) for longer than the inbound timeout.
    RequestTimeout,
    /// The request's headers are too large or too many.
    HeadersTooLarge,
    /// The gateway is at its inbound connection limit (`inbound.max_connections`).
    TooManyConnections,
    /// The gateway's own configuration cannot serve this (e.g. a credential needs a vault
    /// and none is configured).
    ConfigurationError,
    /// A bug in Plexus.
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedParameter,
        ErrorCode::InvalidApiKey,
        ErrorCode::PermissionDenied,
        ErrorCode::ModelNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::RequestTooLarge,
        ErrorCode::ContextLengthExceeded,
        ErrorCode::RateLimitExceeded,
        ErrorCode::BudgetExceeded,
        ErrorCode::PriceUnknown,
        ErrorCode::InsufficientQuota,
        ErrorCode::UpstreamAuthError,
        ErrorCode::UpstreamError,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamInvalidRequest,
        ErrorCode::ServiceUnavailable,
        ErrorCode::QuorumNotMet,
        ErrorCode::RequestTimeout,
        ErrorCode::HeadersTooLarge,
        ErrorCode::TooManyConnections,
        ErrorCode::ConfigurationError,
        ErrorCode::InternalError,
    ];

    /// The `code` string in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedParameter => "unsupported_parameter",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::ContextLengthExceeded => "context_length_exceeded",
            ErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::PriceUnknown => "price_unknown",
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::UpstreamAuthError => "upstream_auth_error",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamInvalidRequest => "upstream_invalid_request",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::QuorumNotMet => "quorum_not_met",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ConfigurationError => "configuration_error",
            ErrorCode::InternalError => "internal_error",
        }
    }

    /// HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::UnsupportedParameter
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::PriceUnknown
            | ErrorCode::UpstreamInvalidRequest => 400,
            ErrorCode::InvalidApiKey => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::ModelNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::RateLimitExceeded
            | ErrorCode::BudgetExceeded
            | ErrorCode::InsufficientQuota => 429,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::TooManyConnections => 503,
            ErrorCode::InternalError | ErrorCode::ConfigurationError => 500,
            ErrorCode::UpstreamAuthError | ErrorCode::UpstreamError | ErrorCode::QuorumNotMet => {
                502
            }
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::UpstreamTimeout => 504,
        }
    }

    /// OpenAI's error `type`.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::UnsupportedParameter
            | ErrorCode::ModelNotFound
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::RequestTooLarge
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::PriceUnknown
            | ErrorCode::RequestTimeout
            | ErrorCode::HeadersTooLarge
            | ErrorCode::UpstreamInvalidRequest => "invalid_request_error",
            ErrorCode::InvalidApiKey => "authentication_error",
            ErrorCode::PermissionDenied => "permission_error",
            ErrorCode::RateLimitExceeded => "rate_limit_error",
            ErrorCode::BudgetExceeded | ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::UpstreamAuthError
            | ErrorCode::UpstreamError
            | ErrorCode::UpstreamTimeout
            | ErrorCode::QuorumNotMet
            | ErrorCode::ServiceUnavailable => "upstream_error",
            ErrorCode::TooManyConnections => "overloaded_error",
            ErrorCode::InternalError | ErrorCode::ConfigurationError => "server_error",
        }
    }

    /// What the code means, for the published table.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "Malformed JSON or an invalid field; `param` names it.",
            ErrorCode::UnsupportedParameter => {
                "The target provider cannot express this parameter; `param` names it."
            }
            ErrorCode::InvalidApiKey => "Missing or wrong API key.",
            ErrorCode::PermissionDenied => "The key may not perform this action or use this model.",
            ErrorCode::ModelNotFound => "No configured model (or provider/model) by this name.",
            ErrorCode::NotFound => "No such route.",
            ErrorCode::MethodNotAllowed => "The route does not accept this method.",
            ErrorCode::Conflict => {
                "The resource already exists, or its state forbids the change (a revoked key); `param` names the field."
            }
            ErrorCode::RequestTooLarge => "The body is larger than `max_request_bytes`.",
            ErrorCode::ContextLengthExceeded => "The prompt exceeds the model's context window.",
            ErrorCode::RateLimitExceeded => {
                "A rate limit was hit; `Retry-After` says when to retry."
            }
            ErrorCode::BudgetExceeded => "The key's, user's or team's budget is spent.",
            ErrorCode::PriceUnknown => {
                "A budget applies, but a target's price is unknown; declare its `price` in the config."
            }
            ErrorCode::InsufficientQuota => "The provider account has no quota left.",
            ErrorCode::UpstreamAuthError => {
                "The provider refused Plexus's own credential (not the client's key)."
            }
            ErrorCode::UpstreamError => "The provider failed or answered something unreadable.",
            ErrorCode::UpstreamTimeout => "The provider did not answer in time.",
            ErrorCode::UpstreamInvalidRequest => "The provider rejected the request as invalid.",
            ErrorCode::ServiceUnavailable => "No target can serve the request right now.",
            ErrorCode::QuorumNotMet => {
                "Too few members of an orchestration answered to reach its quorum; its graph says which calls failed."
            }
            ErrorCode::RequestTimeout => {
                "The client sent no header or body bytes within the inbound timeout."
            }
            ErrorCode::HeadersTooLarge => "The request's headers are too large or too many.",
            ErrorCode::TooManyConnections => {
                "The gateway is at `inbound.max_connections`; retry shortly."
            }
            ErrorCode::ConfigurationError => {
                "The gateway's configuration cannot serve this request; the message says what to set."
            }
            ErrorCode::InternalError => "An error inside Plexus.",
        }
    }

    /// Status class for metric labels (`4xx`, `5xx`).
    pub fn status_class(self) -> &'static str {
        if self.status() >= 500 {
            "5xx"
        } else {
            "4xx"
        }
    }
}

/// An error as the client will see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub param: Option<Cow<'static, str>>,
    /// Forwarded as `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Overrides the registry status where an upstream status must be kept (e.g. 400 vs 422).
    pub status_override: Option<u16>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            status_override: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>, param: &str) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message).with_param(param.to_owned())
    }

    pub fn unsupported(param: &str, provider_kind: &str) -> Self {
        ApiError::new(
            ErrorCode::UnsupportedParameter,
            format!(
                "`{param}` is not supported by the {provider_kind} provider this model routes to"
            ),
        )
        .with_param(param.to_owned())
    }

    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::InternalError, message)
    }

    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or_else(|| self.code.status())
    }

    /// The OpenAI-shaped body.
    pub fn to_body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                message: self.message.to_string(),
                kind: self.code.error_type().to_owned(),
                param: self.param.as_ref().map(|p| p.to_string()),
                code: Some(self.code.as_str().to_owned()),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// The Markdown table of every code, its status and type (published in `docs/errors.md`).
pub fn error_table_markdown() -> String {
    let mut out = String::from("| code | status | type | meaning |\n|---|---|---|---|\n");
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            code.as_str(),
            code.status(),
            code.error_type(),
            code.description()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_sane() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!((400..600).contains(&code.status()));
        }
        assert_eq!(ErrorCode::InvalidApiKey.status(), 401);
        assert_eq!(ErrorCode::RequestTooLarge.status(), 413);
        assert_eq!(ErrorCode::UpstreamAuthError.status(), 502);
        assert_eq!(ErrorCode::UpstreamTimeout.status(), 504);
    }

    #[test]
    fn published_table_matches_registry() {
        let published = include_str!("../../../docs/errors.md");
        assert!(
            published.contains(&error_table_markdown()),
            "docs/errors.md is stale: regenerate the table with `plexus errors`; expected:\n{}",
            error_table_markdown()
        );
    }

    #[test]
    fn body_is_openai_shaped() {
        let err = ApiError::invalid_request("bad", "messages");
        let v = serde_json::to_value(err.to_body()).unwrap();
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_request");
    }
}
