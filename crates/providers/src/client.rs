//! The one place where provider adapters do network I/O, over one shared pooled HTTP client.
//!
//! Timeouts are per phase (connect, first byte, idle between chunks), never for the whole
//! request, so long streams live as long as they keep moving. Dropping a returned stream drops
//! the upstream connection, which cancels the upstream call.

use crate::scrub::Scrubber;
use crate::{
    anthropic, gemini, openai, responses_native, ConvertCtx, ProviderError, TimeoutPhase,
    UpstreamErrorBody,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use plexus_core::config::{ProviderConfig, ProviderKind, Timeouts};
use plexus_protocol::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingRequest,
    EmbeddingResponse, Usage,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use secrecy::ExposeSecret;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Error bodies larger than this are cut (a misbehaving upstream must not exhaust memory).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Idle pooled connections kept per upstream host. Steady load reuses connections as soon as
/// they are returned, so the idle set stays small; this bounds what a burst leaves behind.
const MAX_IDLE_PER_HOST: usize = 128;

/// Options of the shared client.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub timeouts: Timeouts,
    /// PEM file with extra CA certificates to trust.
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// The shared upstream client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    http: reqwest::Client,
    timeouts: Timeouts,
}

impl UpstreamClient {
    pub fn new(opts: &ClientOptions) -> Result<Self, ProviderError> {
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(opts.timeouts.connect)
            // A burst opens as many upstream connections as it has requests in flight; past
            // it, at most MAX_IDLE_PER_HOST stay pooled and those close after `pool_idle`.
            .pool_idle_timeout(opts.timeouts.pool_idle)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            // Provider APIs do not redirect; following one would replay the body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            // HTTP/1.1 keep-alive pool: many connections rather than one HTTP/2 connection
            // whose `max_concurrent_streams` would queue requests under load.
            .http1_only()
            .user_agent(concat!("plexus/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &opts.ca_bundle {
            for cert in load_ca_bundle(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Connect(format!("cannot build HTTP client: {e}")))?;
        Ok(UpstreamClient {
            http,
            timeouts: opts.timeouts,
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// A small document over GET (e.g. an identity provider's JWKS), at most 1 MiB.
    pub async fn fetch_text(&self, url: &str) -> Result<String, ProviderError> {
        let response = timeout(self.timeouts.first_byte, self.http.get(url).send())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::FirstByte))?
            .map_err(|e| send_error(e, None))?;
        let status = response.status();
        let body = read_limited(response, self.timeouts.idle, 1 << 20).await?;
        if !status.is_success() {
            return Err(ProviderError::Upstream {
                status: status.as_u16(),
                code: None,
                message: plexus_core::redact::redact(&crate::truncate_text(&body)),
                retry_after: None,
            });
        }
        String::from_utf8(body.to_vec()).map_err(ProviderError::decode)
    }
}

/// The request headers of a provider with one credential.
fn headers_for(config: &ProviderConfig, key: Option<&str>) -> Result<HeaderMap, ProviderError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let bad = |what: &str| ProviderError::InvalidRequest {
        param: format!("providers.{}", config.name),
        message: format!("invalid {what} for provider `{}`", config.name),
    };
    let mut secret = |name: &'static str, value: String| -> Result<(), ProviderError> {
        let mut v = HeaderValue::from_str(&value).map_err(|_| bad("api_key"))?;
        v.set_sensitive(true);
        headers.insert(HeaderName::from_static(name), v);
        Ok(())
    };
    match config.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            if let Some(k) = key {
                secret("authorization", format!("Bearer {k}"))?;
            }
        }
        ProviderKind::Azure => {
            if let Some(k) = key {
                secret("api-key", k.to_owned())?;
            }
        }
        ProviderKind::Anthropic => {
            if let Some(k) = key {
                secret("x-api-key", k.to_owned())?;
            }
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
        ProviderKind::Gemini => {
            if let Some(k) = key {
                secret("x-goog-api-key", k.to_owned())?;
            }
        }
    }
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("header value"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, ProviderError> {
    let pem = std::fs::read(path).map_err(|e| {
        ProviderError::Connect(format!("cannot read CA bundle {}: {e}", path.display()))
    })?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| ProviderError::Connect(format!("invalid CA bundle {}: {e}", path.display())))
}

/// A configured provider with its request headers built once: one header set per credential
/// (the config's `api_key`, or several versions from the vault, used in rotation).
#[derive(Debug)]
pub struct ProviderHandle {
    pub config: ProviderConfig,
    header_sets: Vec<HeaderMap>,
    next: std::sync::atomic::AtomicUsize,
    /// The chat URL when it does not depend on the model (parsed once, cloned per request).
    static_chat_url: Option<reqwest::Url>,
    /// The Responses API URL (`{base_url}/responses`) of an OpenAI or OpenAI-compatible
    /// provider.
    responses_url: Option<reqwest::Url>,
    /// Removes every credential above from upstream error text (built once, used on error
    /// paths only).
    scrubber: Arc<Scrubber>,
}

impl ProviderHandle {
    pub fn new(config: ProviderConfig) -> Result<Arc<Self>, ProviderError> {
        let key = config.api_key.clone();
        ProviderHandle::with_credentials(config, key.into_iter().collect())
    }

    /// A provider whose requests rotate over `credentials` (the config's `api_key` is ignored
    /// when any are given).
    pub fn with_credentials(
        config: ProviderConfig,
        credentials: Vec<secrecy::SecretString>,
    ) -> Result<Arc<Self>, ProviderError> {
        let mut header_sets = Vec::with_capacity(credentials.len().max(1));
        if credentials.is_empty() {
            header_sets.push(headers_for(&config, None)?);
        }
        for c in &credentials {
            header_sets.push(headers_for(&config, Some(c.expose_secret()))?);
        }
        let scrubber = Arc::new(Scrubber::new(
            credentials
                .iter()
                .map(|c| c.expose_secret())
                .chain(config.api_key.as_ref().map(|k| k.expose_secret()))
                .chain(secret_header_values(&config.headers)),
        ));
        let static_chat_url = match config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                reqwest::Url::parse(&format!("{}/chat/completions", config.base_url)).ok()
            }
            ProviderKind::Anthropic => {
                reqwest::Url::parse(&format!("{}/v1/messages", config.base_url)).ok()
            }
            ProviderKind::Azure | ProviderKind::Gemini => None,
        };
        let responses_url = match config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                reqwest::Url::parse(&format!("{}/responses", config.base_url)).ok()
            }
            _ => None,
        };
        Ok(Arc::new(ProviderHandle {
            config,
            header_sets,
            next: std::sync::atomic::AtomicUsize::new(0),
            static_chat_url,
            responses_url,
            scrubber,
        }))
    }

    /// `err` with every credential this provider holds, in any form the scrubber knows, and
    /// every secret pattern removed from the text that came from the upstream. Every error
    /// the client returns for this provider has been through it already.
    pub fn scrub_error(&self, err: ProviderError) -> ProviderError {
        self.scrubber.scrub_error(err)
    }

    /// `text` from this provider's upstream with every credential and secret pattern
    /// replaced by `[REDACTED]`.
    pub fn scrub_text(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    /// How many credentials the provider rotates over.
    pub fn credential_count(&self) -> usize {
        self.header_sets.len()
    }

    fn next_headers(&self) -> HeaderMap {
        let i = if self.header_sets.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.header_sets.len()
        };
        self.header_sets.get(i).cloned().unwrap_or_default()
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn chat_url(&self, model: &str, stream: bool) -> Result<reqwest::Url, ProviderError> {
        if let Some(url) = &self.static_chat_url {
            return Ok(url.clone());
        }
        check_path_segment(model)?;
        parse_url(&self.chat_url_text(model, stream))
    }

    fn chat_url_text(&self, model: &str, stream: bool) -> String {
        let base = &self.config.base_url;
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                format!("{base}/chat/completions")
            }
            ProviderKind::Azure => format!(
                "{base}/openai/deployments/{model}/chat/completions?api-version={}",
                self.config.api_version.as_deref().unwrap_or_default()
            ),
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
            ProviderKind::Gemini if stream => {
                format!("{base}/v1beta/models/{model}:streamGenerateContent?alt=sse")
            }
            ProviderKind::Gemini => format!("{base}/v1beta/models/{model}:generateContent"),
        }
    }

    /// Where a passed-through request goes: the chat URL for a Messages request, the
    /// Responses API for a Responses request (OpenAI and OpenAI-compatible providers only).
    fn native_url(&self, api: NativeApi, model: &str) -> Result<reqwest::Url, ProviderError> {
        match api {
            NativeApi::AnthropicMessages => self.chat_url(model, false),
            NativeApi::OpenAiResponses => {
                self.responses_url
                    .clone()
                    .ok_or(ProviderError::Unsupported {
                        param: "responses",
                        provider: self.kind().as_str(),
                    })
            }
        }
    }

    fn embeddings_url(&self, model: &str) -> Option<String> {
        let base = &self.config.base_url;
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                Some(format!("{base}/embeddings"))
            }
            ProviderKind::Azure => Some(format!(
                "{base}/openai/deployments/{model}/embeddings?api-version={}",
                self.config.api_version.as_deref().unwrap_or_default()
            )),
            ProviderKind::Gemini => {
                Some(format!("{base}/v1beta/models/{model}:batchEmbedContents"))
            }
            ProviderKind::Anthropic => None,
        }
    }

    fn openai_options(&self) -> openai::OpenAiOptions {
        openai::OpenAiOptions {
            supports_n: self.config.supports_n,
            stream_usage: self.config.stream_usage,
            provider: self.config.kind.as_str(),
        }
    }

    /// Builds the upstream body for a chat request (pure; exposed for tests and dry runs).
    pub fn chat_body(
        &self,
        req: &ChatCompletionRequest,
        ctx: &ConvertCtx,
    ) -> Result<Vec<u8>, ProviderError> {
        let body = match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
                serde_json::to_vec(&openai::to_request(req, ctx, self.openai_options())?)
            }
            ProviderKind::Anthropic => {
                let mut wire = anthropic::to_request(req, ctx)?;
                wire.stream = req.stream.filter(|s| *s);
                serde_json::to_vec(&wire)
            }
            ProviderKind::Gemini => serde_json::to_vec(&gemini::to_request(req, ctx)?),
        };
        body.map_err(|e| ProviderError::Decode(format!("cannot encode request: {e}")))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorBody {
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
                openai::parse_error(status, body)
            }
            ProviderKind::Anthropic => anthropic::parse_error(status, body),
            ProviderKind::Gemini => gemini::parse_error(status, body),
        }
    }
}

/// A non-streamed completion and what the log needs to know about it.
#[derive(Debug)]
pub struct ChatOutcome {
    pub response: ChatBody,
    pub upstream_request_id: Option<String>,
}

/// A non-streamed answer: translated, or (OpenAI-format upstreams that reported usage) the
/// upstream's own bytes, forwarded without a parse and re-encode.
#[derive(Debug)]
pub enum ChatBody {
    Parsed(ChatCompletion),
    Raw {
        bytes: Bytes,
        usage: Usage,
    },
    /// A pass-through's answer in the provider's own format (Anthropic Messages), not OpenAI's.
    Native {
        bytes: Bytes,
        usage: Usage,
    },
}

/// The API a passed-through request speaks, the client's and the provider's alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    /// Anthropic Messages (`/v1/messages`) to an Anthropic provider.
    AnthropicMessages,
    /// OpenAI Responses (`/responses`) to an OpenAI or OpenAI-compatible provider.
    OpenAiResponses,
}

/// A request passed through in the client's own format.
#[derive(Debug, Clone, Copy)]
pub struct NativeRequest<'a> {
    /// The body the client sent.
    pub body: &'a [u8],
    /// The client's headers to forward (`anthropic-beta`).
    pub headers: &'a [(String, String)],
}

/// The raw events of a passed-through stream, in order, for the client (the canonical chunks
/// decoded from them are for accounting).
#[derive(Debug, Clone, Default)]
pub struct Tap(Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl Tap {
    fn push(&self, event: String, data: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push((event, data));
        }
    }

    /// Takes the events pushed so far: (event name, data).
    pub fn drain(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// Forgets what an earlier (failed) attempt pushed.
    pub fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }
}

pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, ProviderError>> + Send + 'static>>;

/// A streamed completion: the upstream answered 2xx; chunks follow.
pub struct ChatStream {
    pub upstream_request_id: Option<String>,
    pub chunks: ChunkStream,
}

#[derive(Debug)]
pub struct EmbeddingOutcome {
    pub response: EmbeddingResponse,
    pub upstream_request_id: Option<String>,
}

/// Model names that go into a URL path (Azure deployments, Gemini models) must not be able to
/// change the URL: no `/`, `?`, `#`, `%`, `:`, `..` or whitespace.
fn check_path_segment(model: &str) -> Result<(), ProviderError> {
    let ok = !model.is_empty()
        && model != "."
        && model != ".."
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProviderError::InvalidRequest {
            param: "model".into(),
            message: format!("`{model}` is not a valid model name for this provider"),
        })
    }
}

fn parse_url(text: &str) -> Result<reqwest::Url, ProviderError> {
    reqwest::Url::parse(text).map_err(|e| {
        // The upstream URL is internal: it goes to the log, not to the client.
        tracing::warn!(url = text, error = %e, "cannot build the upstream URL");
        ProviderError::InvalidRequest {
            param: "model".into(),
            message: format!("cannot build the upstream URL for this model: {e}"),
        }
    })
}

fn upstream_request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-request-id",
        "request-id",
        "apim-request-id",
        "x-goog-request-id",
    ]
    .iter()
    .find_map(|h| headers.get(*h))
    .and_then(|v| v.to_str().ok())
    .map(str::to_owned)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::parse_retry_after)
}

/// Values of configured extra headers that look like credentials (by the header's name),
/// whole and split into their parts (`Bearer <token>`, `a=<token>; b=<token>`).
fn secret_header_values(headers: &[(String, String)]) -> impl Iterator<Item = &str> {
    const SECRET_WORDS: [&str; 9] = [
        "auth",
        "key",
        "token",
        "secret",
        "password",
        "signature",
        "credential",
        "cookie",
        "session",
    ];
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            SECRET_WORDS.iter().any(|w| name.contains(w))
        })
        .flat_map(|(_, value)| {
            let parts = value
                .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
                .flat_map(|part| [part, part.split_once('=').map_or("", |(_, v)| v)]);
            std::iter::once(value.as_str()).chain(parts)
        })
}

/// The whole error chain (reqwest's top-level message alone hides the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The URL of a failed request as logged: without user name and password.
fn loggable_url(err: &reqwest::Error) -> String {
    match err.url() {
        Some(url) => {
            let mut url = url.clone();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        None => "-".to_owned(),
    }
}

/// What kind of failure a request met, in words safe to show the client (no URL, host or
/// address); `fallback` when nothing more precise is known.
fn failure_kind(err: &reqwest::Error, fallback: &'static str) -> &'static str {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return "TLS handshake failed";
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return "TLS handshake failed";
            }
            match io.kind() {
                ErrorKind::ConnectionRefused => return "connection refused",
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => return "connection reset",
                ErrorKind::TimedOut => return "timed out",
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    return "host unreachable"
                }
                ErrorKind::AddrNotAvailable => return "address not available",
                _ => {}
            }
        }
        source = e.source();
    }
    let text = error_chain(err).to_ascii_lowercase();
    if text.contains("dns error") || text.contains("failed to lookup address") {
        "DNS lookup failed"
    } else if text.contains("certificate") || text.contains("tls") || text.contains("ssl") {
        "TLS handshake failed"
    } else if err.is_connect() {
        "connection failed"
    } else if text.contains("connection closed") || text.contains("incomplete message") {
        "connection closed by the provider"
    } else {
        fallback
    }
}

/// A request that got no answer. The client sees only the kind of failure; the URL and the
/// whole error chain go to the log.
fn send_error(err: reqwest::Error, provider: Option<&str>) -> ProviderError {
    if err.is_timeout() {
        tracing::warn!(
            provider = provider.unwrap_or("-"),
            url = %loggable_url(&err),
            error = %error_chain(&err.without_url()),
            "could not reach the provider (connect timeout)"
        );
        return ProviderError::Timeout(TimeoutPhase::Connect);
    }
    let kind = failure_kind(&err, "request failed");
    tracing::warn!(
        provider = provider.unwrap_or("-"),
        url = %loggable_url(&err),
        error = %error_chain(&err.without_url()),
        "could not reach the provider ({kind})"
    );
    ProviderError::Connect(kind.to_owned())
}

/// A failure while reading an answer's body, as words safe to show the client: as in
/// [`send_error`], the URL and the whole chain go to the log only.
fn body_failure(err: reqwest::Error) -> &'static str {
    let kind = failure_kind(&err, "the connection broke");
    tracing::warn!(
        url = %loggable_url(&err),
        error = %error_chain(&err.without_url()),
        "reading the provider's answer failed ({kind})"
    );
    kind
}

impl UpstreamClient {
    async fn send(
        &self,
        provider: &ProviderHandle,
        url: reqwest::Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ProviderError> {
        self.send_with(provider, url, body, &[]).await
    }

    /// [`Self::send`] with the client's own headers added (a pass-through's `anthropic-beta`).
    async fn send_with(
        &self,
        provider: &ProviderHandle,
        url: reqwest::Url,
        body: Vec<u8>,
        extra_headers: &[(String, String)],
    ) -> Result<reqwest::Response, ProviderError> {
        let mut headers = provider.next_headers();
        for (name, value) in extra_headers {
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let request = self.http.post(url).headers(headers).body(body);
        let response = timeout(self.timeouts.first_byte, request.send())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::FirstByte))?
            .map_err(|e| send_error(e, Some(provider.name())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = read_limited(response, self.timeouts.idle, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let parsed = provider.parse_error(status.as_u16(), &body);
        // Google refuses a wrong key with a 400: it is the gateway's credential that failed.
        let status = match provider.kind() {
            ProviderKind::Gemini => gemini::upstream_status(status.as_u16(), &body),
            _ => status.as_u16(),
        };
        Err(ProviderError::Upstream {
            status,
            code: parsed.code,
            message: parsed.message,
            retry_after,
        })
    }

    /// A non-streamed chat completion.
    pub async fn chat(
        &self,
        provider: &ProviderHandle,
        req: &ChatCompletionRequest,
        ctx: &ConvertCtx<'_>,
    ) -> Result<ChatOutcome, ProviderError> {
        self.chat_unscrubbed(provider, req, ctx)
            .await
            .map_err(|e| provider.scrub_error(e))
    }

    async fn chat_unscrubbed(
        &self,
        provider: &ProviderHandle,
        req: &ChatCompletionRequest,
        ctx: &ConvertCtx<'_>,
    ) -> Result<ChatOutcome, ProviderError> {
        let body = provider.chat_body(req, ctx)?;
        let url = provider.chat_url(ctx.upstream_model, false)?;
        let response = self.send(provider, url, body).await?;
        let upstream_request_id = upstream_request_id(response.headers());
        let bytes = read_limited(response, self.timeouts.first_byte, usize::MAX).await?;
        let response = match provider.kind() {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
                match openai::usage_of(&bytes)? {
                    Some(usage) => ChatBody::Raw { bytes, usage },
                    None => ChatBody::Parsed(openai::from_response(&bytes)?),
                }
            }
            ProviderKind::Anthropic => {
                let wire = serde_json::from_slice(&bytes).map_err(ProviderError::decode)?;
                ChatBody::Parsed(anthropic::from_response(wire, ctx)?)
            }
            ProviderKind::Gemini => {
                let wire = serde_json::from_slice(&bytes).map_err(ProviderError::decode)?;
                ChatBody::Parsed(gemini::from_response(wire, ctx)?)
            }
        };
        Ok(ChatOutcome {
            response,
            upstream_request_id,
        })
    }

    /// A request passed through in the client's own wire format (`api`): the client's body with
    /// only `model` replaced (plus, for Anthropic, its `anthropic-beta` headers); the provider's
    /// answer comes back as it sent it, with the usage read for billing.
    pub async fn native(
        &self,
        provider: &ProviderHandle,
        api: NativeApi,
        native: &NativeRequest<'_>,
        ctx: &ConvertCtx<'_>,
    ) -> Result<ChatOutcome, ProviderError> {
        let run = async {
            let response = self.send_native(provider, api, native, ctx).await?;
            let upstream_request_id = upstream_request_id(response.headers());
            let bytes = read_limited(response, self.timeouts.first_byte, usize::MAX).await?;
            let usage = match api {
                NativeApi::AnthropicMessages => anthropic::usage_of(&bytes)?,
                NativeApi::OpenAiResponses => responses_native::usage_of(&bytes)?,
            };
            Ok(ChatOutcome {
                response: ChatBody::Native { bytes, usage },
                upstream_request_id,
            })
        };
        run.await.map_err(|e| provider.scrub_error(e))
    }

    /// A passed-through request, streamed: decoded for accounting, each raw event into `tap`.
    pub async fn native_stream(
        &self,
        provider: &ProviderHandle,
        api: NativeApi,
        native: &NativeRequest<'_>,
        ctx: &ConvertCtx<'_>,
        tap: Tap,
    ) -> Result<ChatStream, ProviderError> {
        let response = self
            .send_native(provider, api, native, ctx)
            .await
            .map_err(|e| provider.scrub_error(e))?;
        let upstream_request_id = upstream_request_id(response.headers());
        let decoder = match api {
            NativeApi::AnthropicMessages => Decoder::new(provider.kind(), ctx),
            NativeApi::OpenAiResponses => {
                Decoder::Responses(responses_native::StreamState::new(ctx))
            }
        };
        let chunks = decode_stream(
            response,
            decoder,
            self.timeouts,
            Arc::clone(&provider.scrubber),
            Some(tap),
        );
        Ok(ChatStream {
            upstream_request_id,
            chunks,
        })
    }

    /// Sends the client's body with only `model` replaced (errors unscrubbed).
    async fn send_native(
        &self,
        provider: &ProviderHandle,
        api: NativeApi,
        native: &NativeRequest<'_>,
        ctx: &ConvertCtx<'_>,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = crate::native::with_model(native.body, ctx.upstream_model)
            .map_err(ProviderError::decode)?;
        let url = provider.native_url(api, ctx.upstream_model)?;
        self.send_with(provider, url, body, native.headers).await
    }

    /// A streamed chat completion. Errors before the first chunk are returned here (so the
    /// caller can still answer with a proper status); later ones arrive in the stream.
    pub async fn chat_stream(
        &self,
        provider: &ProviderHandle,
        req: &ChatCompletionRequest,
        ctx: &ConvertCtx<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let body = provider.chat_body(req, ctx)?;
        let url = provider.chat_url(ctx.upstream_model, true)?;
        let response = self
            .send(provider, url, body)
            .await
            .map_err(|e| provider.scrub_error(e))?;
        let upstream_request_id = upstream_request_id(response.headers());
        let decoder = Decoder::new(provider.kind(), ctx);
        let chunks = decode_stream(
            response,
            decoder,
            self.timeouts,
            Arc::clone(&provider.scrubber),
            None,
        );
        Ok(ChatStream {
            upstream_request_id,
            chunks,
        })
    }

    /// Embeddings; `None` from [`ProviderHandle::embeddings_url`] means the provider has no
    /// embeddings API.
    pub async fn embeddings(
        &self,
        provider: &ProviderHandle,
        req: &EmbeddingRequest,
        upstream_model: &str,
    ) -> Result<EmbeddingOutcome, ProviderError> {
        self.embeddings_unscrubbed(provider, req, upstream_model)
            .await
            .map_err(|e| provider.scrub_error(e))
    }

    async fn embeddings_unscrubbed(
        &self,
        provider: &ProviderHandle,
        req: &EmbeddingRequest,
        upstream_model: &str,
    ) -> Result<EmbeddingOutcome, ProviderError> {
        if provider.static_chat_url.is_none() {
            check_path_segment(upstream_model)?;
        }
        let url = provider
            .embeddings_url(upstream_model)
            .ok_or(ProviderError::Unsupported {
                param: "model",
                provider: provider.kind().as_str(),
            })?;
        let url = parse_url(&url)?;
        let body = match provider.kind() {
            ProviderKind::Gemini => {
                serde_json::to_vec(&gemini::to_embed_request(req, upstream_model)?)
            }
            _ => serde_json::to_vec(&openai::to_embed_request(req, upstream_model)),
        }
        .map_err(|e| ProviderError::Decode(format!("cannot encode request: {e}")))?;
        let response = self.send(provider, url, body).await?;
        let upstream_request_id = upstream_request_id(response.headers());
        let bytes = read_limited(response, self.timeouts.first_byte, usize::MAX).await?;
        let response = match provider.kind() {
            ProviderKind::Gemini => {
                let wire = serde_json::from_slice(&bytes).map_err(ProviderError::decode)?;
                gemini::from_embed_response(wire, upstream_model)
            }
            _ => openai::from_embed_response(&bytes)?,
        };
        Ok(EmbeddingOutcome {
            response,
            upstream_request_id,
        })
    }

    /// Whether the provider has an embeddings API at all.
    pub fn has_embeddings(provider: &ProviderHandle) -> bool {
        provider.embeddings_url("m").is_some()
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: Duration,
    max: usize,
) -> Result<Bytes, ProviderError> {
    let mut buf = Vec::new();
    loop {
        let next = timeout(limit, response.chunk())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::Idle))?
            .map_err(|e| {
                ProviderError::Stream(format!("reading the answer failed: {}", body_failure(e)))
            })?;
        match next {
            Some(chunk) => {
                let room = max.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() >= max {
                    break;
                }
            }
            None => break,
        }
    }
    Ok(Bytes::from(buf))
}

/// Per-format stream decoding, statically dispatched.
enum Decoder {
    OpenAi(openai::StreamState),
    Anthropic(anthropic::StreamState),
    Gemini(gemini::StreamState),
    /// A passed-through Responses API stream.
    Responses(responses_native::StreamState),
}

impl Decoder {
    fn new(kind: ProviderKind, ctx: &ConvertCtx) -> Self {
        match kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
                Decoder::OpenAi(openai::StreamState::new())
            }
            ProviderKind::Anthropic => Decoder::Anthropic(anthropic::StreamState::new(ctx)),
            ProviderKind::Gemini => Decoder::Gemini(gemini::StreamState::new(ctx)),
        }
    }

    fn on_event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), ProviderError> {
        match self {
            Decoder::OpenAi(s) => out.extend(s.on_event(event, data)?),
            Decoder::Anthropic(s) => out.extend(s.on_event(event, data)?),
            Decoder::Gemini(s) => out.extend(s.on_event(event, data)?),
            Decoder::Responses(s) => out.extend(s.on_event(event, data)?),
        }
        Ok(())
    }

    /// Called when the upstream closed the stream; `Err` if it had not finished.
    fn on_end(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), ProviderError> {
        let done = match self {
            Decoder::OpenAi(s) => s.is_done(),
            Decoder::Anthropic(s) => s.is_done(),
            Decoder::Responses(s) => s.is_done(),
            Decoder::Gemini(s) => {
                let done = s.is_done();
                if done {
                    out.extend(s.finish());
                }
                done
            }
        };
        if done {
            Ok(())
        } else {
            Err(ProviderError::Stream(
                "the provider closed the stream before it finished".into(),
            ))
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Decoder::OpenAi(s) => s.is_done(),
            Decoder::Anthropic(s) => s.is_done(),
            Decoder::Responses(s) => s.is_done(),
            // Gemini signals the end only by closing the stream.
            Decoder::Gemini(_) => false,
        }
    }
}

/// The chunks of a streamed answer; every error in it is scrubbed by `scrubber`.
fn decode_stream(
    response: reqwest::Response,
    mut decoder: Decoder,
    timeouts: Timeouts,
    scrubber: Arc<Scrubber>,
    tap: Option<Tap>,
) -> ChunkStream {
    let mut body = response.bytes_stream();
    let mut sse = plexus_protocol::sse::SseDecoder::new();
    let stream = async_stream::stream! {
        let mut out: Vec<ChatCompletionChunk> = Vec::with_capacity(4);
        let mut first = true;
        loop {
            // The events the bytes so far complete, then more bytes.
            while let Some(event) = sse.next_event() {
                let decoded = decoder.on_event(&event.event, &event.data, &mut out);
                // The raw event reaches the tap before its chunks (or its error) go out.
                if let Some(tap) = &tap {
                    tap.push(event.event, event.data);
                }
                if let Err(e) = decoded {
                    yield Err(scrubber.scrub_error(e));
                    return;
                }
                for chunk in out.drain(..) {
                    yield Ok(chunk);
                }
                if decoder.is_done() {
                    return;
                }
            }
            let wait = if first { timeouts.first_byte } else { timeouts.idle };
            let next = match timeout(wait, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    yield Err(ProviderError::Timeout(if first { TimeoutPhase::FirstByte } else { TimeoutPhase::Idle }));
                    return;
                }
            };
            first = false;
            match next {
                Some(Ok(bytes)) => sse.feed(&bytes),
                Some(Err(e)) => {
                    let e = ProviderError::Stream(format!("the stream broke: {}", body_failure(e)));
                    yield Err(scrubber.scrub_error(e));
                    return;
                }
                None => {
                    let end = decoder.on_end(&mut out);
                    for chunk in out.drain(..) {
                        yield Ok(chunk);
                    }
                    if let Err(e) = end {
                        yield Err(scrubber.scrub_error(e));
                    }
                    return;
                }
            }
        }
    };
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_cannot_change_the_url() {
        for bad in [
            "../admin",
            "m?key=x",
            "m#frag",
            "a/b",
            "m%2F",
            "",
            "..",
            "with space",
            "m:countTokens",
        ] {
            assert!(check_path_segment(bad).is_err(), "{bad}");
        }
        for good in [
            "gemini-2.5-flash",
            "my-deployment_1",
            "gpt+fault-429",
            "org@v2",
        ] {
            assert!(check_path_segment(good).is_ok(), "{good}");
        }
    }
}
