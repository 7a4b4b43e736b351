//! Provider adapters (the integration layer).
//!
//! One module per wire format, each with pure conversions from and to the canonical (OpenAI)
//! types, unit-tested on fixtures copied from the provider's API reference:
//! - `to_request(&ChatCompletionRequest, &ConvertCtx) -> Result<WireRequest, ProviderError>`
//! - `from_response(WireResponse, &ConvertCtx) -> Result<ChatCompletion, ProviderError>`
//! - `StreamState::on_event(event, data) -> Result<Vec<ChatCompletionChunk>, ProviderError>`
//!   (the streaming counterpart of `from_response`, one SSE event at a time)
//! - `parse_error(status, body) -> UpstreamErrorBody`
//!
//! Network I/O lives in one place, [`client`], over one shared pooled HTTP client.
//!
//! **Invariant:** providers never touch storage and never know the inbound HTTP layer.
#![forbid(unsafe_code)]

pub mod anthropic;
pub mod client;
pub mod error;
pub mod gemini;
pub mod native;
pub mod openai;
pub mod responses_native;
pub mod scrub;

pub use error::{parse_retry_after, ProviderError, TimeoutPhase};

/// What a conversion needs besides the request itself.
#[derive(Debug, Clone)]
pub struct ConvertCtx<'a> {
    /// The provider's model name (after alias resolution), e.g. `claude-sonnet-4-5`.
    pub upstream_model: &'a str,
    /// `created` for responses and chunks of providers that do not send one (Unix seconds).
    pub created: i64,
    /// Output cap to send when the client set none and the provider requires one
    /// (Anthropic): the catalog's max output for the model.
    pub default_max_tokens: u32,
    /// The client speaks a format whose clients retry a 400 in a loop (Anthropic Messages):
    /// what this provider cannot express is dropped, as documented, instead of refused.
    pub lenient: bool,
}

/// A provider's error body, reduced to what the error mapping needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamErrorBody {
    /// The provider's error code or type (`rate_limit_error`, `insufficient_quota`, `RESOURCE_EXHAUSTED`).
    pub code: Option<String>,
    pub message: String,
}

/// Reasoning budget in tokens for an OpenAI `reasoning_effort`, used for Anthropic `thinking`
/// and Gemini `thinkingConfig`.
pub fn reasoning_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" => Some(1024),
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// A non-JSON error body as text, cut to a readable length.
pub fn truncate_text(body: &[u8]) -> String {
    const MAX: usize = 500;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
