//! The request log record. The store crate's background writer persists it; the hot path only
//! queues it.

/// One row of the request log: written for every request that reached the pipeline,
/// including failed ones and streams the client abandoned (status 499).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecord {
    /// Unix milliseconds when the request arrived.
    pub ts_ms: i64,
    pub request_id: String,
    /// The upstream's own request id (`x-request-id`, `request-id`, ...), when it sent one.
    pub upstream_request_id: Option<String>,
    /// Virtual key id (`master` for the master key, empty when auth is off).
    pub key_id: String,
    /// The key's (or token's) user and team, for spend and budgets.
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// `chat` or `embeddings`.
    pub endpoint: &'static str,
    /// The model name the client sent.
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    pub status: u16,
    /// Error code from the registry, if the request failed.
    pub error_code: Option<&'static str>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Token counts were estimated (upstream sent no usage, or the client abandoned the stream).
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub latency_ms: u64,
    /// Time to first token for streams.
    pub ttft_ms: Option<u64>,
    /// `hit`, `semantic-hit` or `miss` when the response cache was consulted.
    pub cache: Option<&'static str>,
    /// The bodies, only when `request_bodies` is `full` or `redacted`.
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}
