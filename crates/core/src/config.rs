//! Configuration: parse, don't validate.
//!
//! A YAML file (with `${ENV_VAR}` references) is read into `Raw*` structs that deny unknown
//! keys, then turned into the validated [`Config`], the only type the rest of the code sees.
//! Every error names the offending key. Precedence is CLI > environment > file: the CLI's
//! values arrive as [`Overrides`].

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The wire format family of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    OpenAiCompatible,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "openai" => ProviderKind::OpenAi,
            "azure" => ProviderKind::Azure,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            "openai-compatible" => ProviderKind::OpenAiCompatible,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    /// Whether the upstream speaks the OpenAI wire format (unknown fields pass through).
    pub fn is_openai_format(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi | ProviderKind::Azure | ProviderKind::OpenAiCompatible
        )
    }

    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::Azure | ProviderKind::OpenAiCompatible => None,
        }
    }
}

/// Known OpenAI-compatible servers: base URL, key variable and quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: &'static str,
    pub api_key_env: Option<&'static str>,
    /// Whether the server accepts `n > 1`.
    pub supports_n: bool,
    /// Whether the server honours `stream_options.include_usage`.
    pub stream_usage: bool,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        api_key_env: None,
        supports_n: false,
        stream_usage: true,
    },
    Preset {
        name: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        api_key_env: Some("VLLM_API_KEY"),
        supports_n: true,
        stream_usage: true,
    },
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        api_key_env: Some("GROQ_API_KEY"),
        supports_n: false,
        stream_usage: true,
    },
    Preset {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        api_key_env: Some("MISTRAL_API_KEY"),
        supports_n: true,
        stream_usage: false,
    },
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        api_key_env: Some("DEEPSEEK_API_KEY"),
        supports_n: false,
        stream_usage: true,
    },
    Preset {
        name: "together",
        base_url: "https://api.together.xyz/v1",
        api_key_env: Some("TOGETHER_API_KEY"),
        supports_n: true,
        stream_usage: true,
    },
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        api_key_env: Some("OPENROUTER_API_KEY"),
        supports_n: false,
        stream_usage: true,
    },
    Preset {
        name: "xai",
        base_url: "https://api.x.ai/v1",
        api_key_env: Some("XAI_API_KEY"),
        supports_n: true,
        stream_usage: true,
    },
    Preset {
        name: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        api_key_env: Some("FIREWORKS_API_KEY"),
        supports_n: true,
        stream_usage: true,
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Extra headers sent on every upstream request (e.g. OpenRouter's `HTTP-Referer`).
    pub headers: Vec<(String, String)>,
    pub preset: Option<&'static str>,
    pub supports_n: bool,
    pub stream_usage: bool,
    /// The provider serves the OpenAI Responses API (`responses:`, default true for `kind:
    /// openai`): `/v1/responses` requests reach it as sent, without translation.
    pub responses: bool,
}

/// A target's price in USD per million tokens, overriding the catalog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// The price of prompt tokens read from the provider's prompt cache; `None` bills them
    /// at `input_per_mtok`.
    pub cached_input_per_mtok: Option<f64>,
}

impl Price {
    /// The cost of a call with these token counts (cached prompt tokens at the cached rate
    /// when given, else the input rate; reasoning tokens are part of completion tokens and
    /// not billed twice).
    ///
    /// Follows the OpenAI usage convention, like [`crate::catalog::ModelInfo::cost_usd`]:
    /// `cached_tokens` are part of `prompt_tokens` (clamped to it), so only the uncached
    /// rest is billed at the input rate.
    pub fn cost_usd(&self, prompt_tokens: u64, completion_tokens: u64, cached_tokens: u64) -> f64 {
        let cached = cached_tokens.min(prompt_tokens);
        let uncached = prompt_tokens - cached;
        let cached_rate = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        (uncached as f64 * self.input_per_mtok
            + cached as f64 * cached_rate
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub model: String,
    /// Share of traffic under `balance: weighted` (default 1).
    pub weight: u32,
    /// The provider account's own limits for this target (requests and tokens per minute).
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// The configured price, which overrides the catalog's; `None` leaves it to the catalog.
    pub price: Option<Price>,
    /// What the target can do, overriding the catalog (`capabilities:`), for the selector.
    pub capabilities: plexus_select::requirements::Capabilities,
}

/// A `model: auto` style model (`select:`): which configured model serves each request is
/// decided per request (see `plexus-select` and the gateway's `select` module).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectConfig {
    /// Configured models (with `targets`) it chooses among, in the order ties keep.
    pub candidates: Vec<String>,
    pub objective: plexus_select::choose::Objective,
    /// Predicted quality given up per unit of relative cost (0: quality whatever it costs).
    pub cost_weight: f64,
    /// A trained quality predictor (`plexus route train`).
    pub router: Option<PathBuf>,
    /// Hard filters on a candidate's expected cost and latency.
    pub max_cost_per_request: Option<plexus_protocol::money::Nanos>,
    pub max_latency: Option<Duration>,
    /// Share of requests that try a non-preferred candidate (0..=1).
    pub explore: f64,
    /// A conversation (or `x-plexus-session`) keeps its first choice.
    pub affinity: bool,
    /// The local embedding model's directory (all-MiniLM-L6-v2); `PLEXUS_MINILM_DIR` when
    /// unset. Needed by `router`, and by feedback near a prompt.
    pub embedder: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    /// Empty for a `select` model.
    pub targets: Vec<TargetConfig>,
    /// Set for a `select` model (which has no targets of its own).
    pub select: Option<SelectConfig>,
    /// Set for an orchestration model (which has no targets of its own).
    pub orchestrate: Option<crate::orchestrate::OrchestrateConfig>,
    /// Predicted quality (0..=1) for the selector when no trained router covers the model.
    pub quality: Option<f64>,
    pub balance: Balance,
    /// Other models to try, in order, when every target failed with a class in `fallback_on`.
    pub fallbacks: Vec<String>,
    pub fallback_on: Vec<FailureClass>,
    /// Limits on this model across all callers (on top of the global ones).
    pub limits: RateLimits,
}

impl TargetConfig {
    pub fn new(provider: usize, model: impl Into<String>) -> TargetConfig {
        TargetConfig {
            provider,
            model: model.into(),
            weight: 1,
            rpm: None,
            tpm: None,
            price: None,
            capabilities: Default::default(),
        }
    }
}

impl ModelConfig {
    /// A model with default balancing and no fallbacks or limits.
    pub fn new(name: impl Into<String>, targets: Vec<TargetConfig>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            targets,
            select: None,
            orchestrate: None,
            quality: None,
            balance: Balance::default(),
            fallbacks: Vec::new(),
            fallback_on: FailureClass::ALL.to_vec(),
            limits: RateLimits::default(),
        }
    }
}

/// Request, token and concurrency limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub max_parallel: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        *self == RateLimits::default()
    }
}

/// How a model with several targets spreads its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// In proportion to the targets' `weight` (random, so replicas need no coordination).
    #[default]
    Weighted,
    /// The target with the fewest requests in flight.
    LeastBusy,
    /// Lowest peak-EWMA latency, by power of two choices.
    Latency,
    /// Cheapest first (catalog prices).
    Cost,
}

/// The kind of failure that moves a request to a fallback model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    RateLimited,
    Unavailable,
    Timeout,
    ContextWindow,
    ContentFilter,
}

impl FailureClass {
    pub const ALL: [FailureClass; 5] = [
        FailureClass::RateLimited,
        FailureClass::Unavailable,
        FailureClass::Timeout,
        FailureClass::ContextWindow,
        FailureClass::ContentFilter,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Unavailable => "unavailable",
            FailureClass::Timeout => "timeout",
            FailureClass::ContextWindow => "context_window",
            FailureClass::ContentFilter => "content_filter",
        }
    }
}

/// What the limiter does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Keep serving, enforcing the limits in process (per instance).
    #[default]
    Open,
    /// Refuse with 503 until Redis is back.
    Closed,
}

/// Retries of one request across its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time a request may spend waiting between attempts.
    pub budget: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

/// The circuit breaker kept per target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Whose requests share cache entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Entries are per key.
    Key,
    /// Entries are shared by a team's keys (keys without a team keep their own).
    #[default]
    Team,
    /// One cache for everybody.
    Global,
}

/// Which text of a request the semantic cache embeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticInput {
    #[default]
    LastUser,
    Conversation,
}

/// Where semantic-cache embeddings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedderSettings {
    /// all-MiniLM-L6-v2 (safetensors and tokenizer files) loaded from this directory.
    Local { path: PathBuf },
    /// A configured embeddings model, called through the gateway itself.
    Model { model: String },
}

/// Verified outcomes for the semantic cache's thresholds: a fresh answer is compared with a
/// cached one, and the outcome trains that entry's threshold and the cache's pooled floor.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSettings {
    /// Share of semantic hits re-checked with a fresh upstream answer (0..=1).
    pub sample_rate: f64,
    /// Share of refused candidates (at or above the global threshold, below the learned one)
    /// whose cached answer is compared with the fresh answer the request fetched anyway
    /// (0..=1): two embeddings, no extra upstream call.
    pub explore_rate: f64,
    /// Answers at least this similar (cosine of their embeddings) count as the same.
    pub agreement: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    pub embedder: EmbedderSettings,
    /// Cosine similarity above which a cached answer is served (before per-entry learning).
    pub threshold: f32,
    pub input: SemanticInput,
    /// The false-hit rate that adaptive thresholds keep served hits under (vCache's delta),
    /// enforced when a judge is configured (without one nothing is verified, and the global
    /// threshold alone decides); 1 bounds nothing.
    pub max_false_hit_rate: f64,
    pub judge: Option<JudgeSettings>,
}

/// The response cache (`cache:`); absent means no caching.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub ttl: Duration,
    /// Bytes the in-process tier may hold.
    pub max_bytes: u64,
    pub scope: CacheScope,
    /// Cache requests with a temperature above 0 (or none) too.
    pub nondeterministic: bool,
    /// A shared second tier.
    pub redis: Option<SecretString>,
    /// Prefix of every Redis key and channel of the cache (deployments sharing one Redis keep
    /// apart with their own).
    pub redis_prefix: String,
    pub semantic: Option<SemanticSettings>,
}

/// Global limits and the limiter backend.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitSettings {
    /// Defaults applied to every request (scope `global`).
    pub global: RateLimits,
    pub on_redis_error: OnRedisError,
    /// How long a request may wait for a target's provider limit before it is refused.
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the response head (and for streams, the first event).
    pub first_byte: Duration,
    /// Between two chunks of a stream.
    pub idle: Duration,
    /// How long an unused pooled upstream connection stays open. Short enough that what a
    /// burst opened is closed (and its buffers returned) soon after it ends.
    pub pool_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            pool_idle: Duration::from_secs(30),
        }
    }
}

/// Limits on inbound connections (`inbound:`): slow or idle clients, and how many connections
/// are served at once. Distinct from `timeouts:`, which bound the upstream calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundSettings {
    /// A complete request head must arrive within this, counted from the connection's accept
    /// (TLS handshake included) or, on a kept-alive connection, from the head's first byte.
    pub header_read_timeout: Duration,
    /// Longest wait for the next byte while reading a request body.
    pub body_idle_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests.
    pub keep_alive_timeout: Duration,
    /// Connections served at once; past it a new connection is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the identity provider's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// JWT bearer tokens from an external identity provider, accepted beside API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks: JwksSource,
    /// Claim names (or JSON pointers such as `/realm_access/roles`) for user, team and role.
    pub user_claim: String,
    pub team_claim: String,
    pub role_claim: String,
    pub leeway_secs: u64,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    pub master_key: Option<SecretString>,
    pub max_request_bytes: usize,
    pub timeouts: Timeouts,
    /// Inbound connection limits (`inbound:`).
    pub inbound: InboundSettings,
    pub tls: Option<TlsConfig>,
    /// Extra CA certificates (PEM) trusted for upstream calls.
    pub ca_bundle: Option<PathBuf>,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// `aliases:`, in config order: incoming model names (or glob patterns) that stand for a
    /// configured model. See [`Config::alias`] for the precedence.
    pub aliases: Vec<Alias>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    pub jwt: Option<JwtSettings>,
    /// File holding the vault's key-encryption key (base64 of 32 bytes); the environment
    /// variable `PLEXUS_ENCRYPTION_KEY` takes precedence.
    pub vault_key_file: Option<PathBuf>,
    /// How long request records, stored responses and bodies are kept (`retention:`).
    pub retention: Retention,
    /// Whether request and response bodies are stored in the request log.
    pub request_bodies: BodyLogging,
    /// Process log settings (`log:`).
    pub log: LogSettings,
    /// Shared state for limits and budgets across instances.
    pub redis: Option<SecretString>,
    pub limits: LimitSettings,
    pub retries: RetrySettings,
    pub breaker: BreakerSettings,
    pub cache: Option<CacheSettings>,
}

/// `log:`: what the process log (stderr, filtered by `PLEXUS_LOG`) carries besides events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `log.access`: one INFO line per HTTP request on the `plexus::access` target (default
    /// off; `serve --access-log` turns it on too).
    #[serde(default)]
    pub access: bool,
}

/// `request_bodies: off | full | redacted` (default `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyLogging {
    #[default]
    Off,
    Full,
    Redacted,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_DATABASE: &str = "sqlite://plexus.db";
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

impl Config {
    pub fn provider(&self, name: &str) -> Option<(usize, &ProviderConfig)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The configured model an alias maps `name` to: an exact alias first, then the first
    /// matching pattern in config order. A configured model name takes precedence over any
    /// alias, and `provider/model` comes after both; the caller checks configured names first
    /// (the gateway's `Runtime::canonical_model`).
    pub fn alias(&self, name: &str) -> Option<&str> {
        if self.aliases.is_empty() {
            return None;
        }
        self.aliases
            .iter()
            .find(|a| !a.is_pattern() && a.pattern == name)
            .or_else(|| {
                self.aliases
                    .iter()
                    .find(|a| a.is_pattern() && glob_match(&a.pattern, name))
            })
            .map(|a| a.target.as_str())
    }
}

/// One `aliases:` entry: an incoming model name, or a glob pattern, and the configured model it
/// stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The name, or a pattern where `*` matches any run of characters and `?` one character.
    pub pattern: String,
    /// The configured model (any kind: targets, `select` or `orchestrate`).
    pub target: String,
}

impl Alias {
    /// Whether the key is a glob pattern rather than an exact name.
    pub fn is_pattern(&self) -> bool {
        self.pattern.contains(['*', '?'])
    }
}

/// Glob match with `*` (any run of characters) and `?` (one character), iterative so that long
/// names cannot blow the stack.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Values from the command line, which win over the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub database: Option<String>,
    pub master_key: Option<SecretString>,
}

// ---- raw (file) shape ----

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database: Option<String>,
    master_key: Option<String>,
    max_request_bytes: Option<RawSize>,
    timeouts: Option<RawTimeouts>,
    inbound: Option<RawInbound>,
    tls: Option<RawTls>,
    ca_bundle: Option<PathBuf>,
    shutdown_grace: Option<String>,
    jwt: Option<RawJwt>,
    vault: Option<RawVault>,
    retention: Option<RawRetention>,
    #[serde(default)]
    request_bodies: BodyLogging,
    #[serde(default)]
    log: LogSettings,
    redis: Option<String>,
    limits: Option<RawLimits>,
    retries: Option<RawRetries>,
    circuit_breaker: Option<RawBreaker>,
    cache: Option<RawCache>,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    aliases: RawAliases,
}

/// `aliases:`: a map kept in file order (patterns apply in that order).
#[derive(Debug, Default)]
struct RawAliases(Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawAliases {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawAliases;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from model names or patterns to configured models")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawAliases, E> {
                Ok(RawAliases::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawAliases, A::Error> {
                let mut out = Vec::new();
                while let Some((key, target)) = map.next_entry::<String, String>()? {
                    out.push((key, target));
                }
                Ok(RawAliases(out))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    /// How long request records are kept, e.g. `30d`, or `forever`.
    requests: Option<String>,
    /// How long stored Responses API responses are kept.
    responses: Option<String>,
    /// How long request and response bodies stay in the request log.
    bodies: Option<String>,
}

/// How long stored data is kept (`retention:`); `None` keeps it (`forever`). A housekeeping
/// pass on every instance deletes what is older.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Request records (`retention.requests`, default `forever`: spend reports and budgets
    /// read them).
    pub requests: Option<Duration>,
    /// Stored Responses API responses, with their input items (`retention.responses`,
    /// default `30d`, as at OpenAI).
    pub responses: Option<Duration>,
    /// Request and response bodies in the request log (`retention.bodies`, default `30d`);
    /// the records themselves stay.
    pub bodies: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: u64 = 86_400;
        Retention {
            requests: None,
            responses: Some(Duration::from_secs(30 * DAY)),
            bodies: Some(Duration::from_secs(30 * DAY)),
        }
    }
}

impl RawRetention {
    fn parse(self) -> Result<Retention, ConfigError> {
        fn one(
            text: Option<String>,
            key: &str,
            default: Option<Duration>,
        ) -> Result<Option<Duration>, ConfigError> {
            let Some(text) = text else {
                return Ok(default);
            };
            if text.trim() == "forever" {
                return Ok(None);
            }
            match parse_duration(&text) {
                Some(d) if d >= Duration::from_secs(60) => Ok(Some(d)),
                _ => Err(invalid(
                    key,
                    format!(
                        "`{text}` is not a duration of at least a minute (e.g. 30d) or `forever`"
                    ),
                )),
            }
        }
        let default = Retention::default();
        Ok(Retention {
            requests: one(self.requests, "retention.requests", default.requests)?,
            responses: one(self.responses, "retention.responses", default.responses)?,
            bodies: one(self.bodies, "retention.bodies", default.bodies)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    audience: String,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    #[serde(default)]
    claims: RawJwtClaims,
    leeway_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwtClaims {
    user: Option<String>,
    team: Option<String>,
    role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<String>,
    first_byte: Option<String>,
    idle: Option<String>,
    pool_idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    header_read_timeout: Option<String>,
    body_idle_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    max_connections: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: String,
    base_url: Option<String>,
    api_key: Option<String>,
    api_version: Option<String>,
    preset: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    supports_n: Option<bool>,
    stream_usage: Option<bool>,
    responses: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    /// Exactly one of `targets`, `select` and `orchestrate` (checked in [`validate`]).
    #[serde(default, deserialize_with = "present")]
    targets: Option<Vec<RawTarget>>,
    #[serde(default, deserialize_with = "present")]
    select: Option<Option<RawSelect>>,
    quality: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    orchestrate: Option<Option<plexus_protocol::orchestration::OrchestrateFields>>,
    #[serde(default)]
    balance: Balance,
    #[serde(default)]
    fallbacks: Vec<String>,
    fallback_on: Option<Vec<FailureClass>>,
    #[serde(default)]
    limits: RateLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    #[serde(default)]
    candidates: Vec<String>,
    objective: Option<String>,
    cost_weight: Option<f64>,
    router: Option<PathBuf>,
    max_cost_per_request_usd: Option<f64>,
    max_latency_ms: Option<u64>,
    explore: Option<f64>,
    affinity: Option<bool>,
    embedder: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    model: String,
    weight: Option<u32>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    price: Option<RawPrice>,
    capabilities: Option<RawCapabilities>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    tools: Option<bool>,
    vision: Option<bool>,
    json_schema: Option<bool>,
    reasoning: Option<bool>,
    context_window: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input_per_mtok: f64,
    output_per_mtok: f64,
    cached_input_per_mtok: Option<f64>,
}

fn validate_select(raw: Option<RawSelect>, i: usize) -> Result<SelectConfig, ConfigError> {
    let key = |field: &str| format!("models[{i}].select.{field}");
    let Some(raw) = raw else {
        return Err(invalid(
            format!("models[{i}].select"),
            "needs `candidates`: the configured models it chooses among",
        ));
    };
    if raw.candidates.is_empty() {
        return Err(invalid(
            key("candidates"),
            "needs at least one configured model",
        ));
    }
    let objective = match raw.objective.as_deref() {
        None => plexus_select::choose::Objective::Balanced,
        Some(o) => plexus_select::choose::Objective::parse(o).ok_or_else(|| {
            invalid(
                key("objective"),
                format!("`{o}` is not one of quality, cost, latency, balanced"),
            )
        })?,
    };
    let cost_weight = raw.cost_weight.unwrap_or(0.5);
    if !(cost_weight.is_finite() && cost_weight >= 0.0) {
        return Err(invalid(key("cost_weight"), "must be a number at least 0"));
    }
    let explore = raw.explore.unwrap_or(0.02);
    if !(0.0..=1.0).contains(&explore) {
        return Err(invalid(key("explore"), "must be between 0 and 1"));
    }
    let max_cost_per_request = match raw.max_cost_per_request_usd {
        None => None,
        Some(v) if v.is_finite() && v > 0.0 => Some(plexus_protocol::money::Nanos::from_usd(v)),
        Some(_) => {
            return Err(invalid(
                key("max_cost_per_request_usd"),
                "must be a positive amount of USD",
            ))
        }
    };
    let max_latency = match raw.max_latency_ms {
        Some(0) => return Err(invalid(key("max_latency_ms"), "must be at least 1")),
        v => v.map(Duration::from_millis),
    };
    Ok(SelectConfig {
        candidates: raw.candidates,
        objective,
        cost_weight,
        router: raw.router,
        max_cost_per_request,
        max_latency,
        explore,
        affinity: raw.affinity.unwrap_or(true),
        embedder: raw.embedder,
    })
}

/// What `name` refers to among the configured models and providers (`provider/model` names a
/// provider's model directly).
pub fn model_kind(
    models: &[ModelConfig],
    providers: &[ProviderConfig],
    name: &str,
) -> crate::orchestrate::ModelKind {
    use crate::orchestrate::ModelKind;
    match models.iter().find(|m| m.name == name) {
        Some(m) if m.select.is_some() => ModelKind::Select,
        Some(m) if m.orchestrate.is_some() => ModelKind::Orchestration,
        Some(_) => ModelKind::Plain,
        None => match name.split_once('/') {
            Some((p, rest)) if !rest.is_empty() && providers.iter().any(|c| c.name == p) => {
                ModelKind::Plain
            }
            _ => ModelKind::Unknown,
        },
    }
}

/// A key that is present (even as `null`) becomes `Some`; with `#[serde(default)]` an absent
/// one stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    rpm: Option<u64>,
    tpm: Option<u64>,
    tpd: Option<u64>,
    max_parallel: Option<u64>,
    #[serde(default)]
    on_redis_error: OnRedisError,
    queue_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: Option<String>,
    max_bytes: Option<RawSize>,
    #[serde(default)]
    scope: CacheScope,
    #[serde(default)]
    nondeterministic: bool,
    redis: Option<String>,
    redis_prefix: Option<String>,
    semantic: Option<RawSemantic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    embedder: RawEmbedder,
    threshold: Option<f32>,
    #[serde(default)]
    input: SemanticInput,
    max_false_hit_rate: Option<f64>,
    judge: Option<RawJudge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum RawEmbedder {
    Local { path: PathBuf },
    Model { model: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    sample_rate: f64,
    explore_rate: Option<f64>,
    agreement: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetries {
    attempts: Option<u32>,
    base_delay: Option<String>,
    max_delay: Option<String>,
    budget: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    consecutive_failures: Option<u32>,
    failure_rate: Option<f64>,
    min_requests: Option<u32>,
    window: Option<String>,
    cooldown: Option<String>,
}

/// Reads and validates a config file.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_yaml_str(&text, overrides, &|name| std::env::var(name).ok())
}

/// Parses and validates YAML text; `env` resolves `${VAR}` references.
pub fn from_yaml_str(
    text: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    if value.is_null() {
        value = serde_yaml::Value::Mapping(Default::default());
    }
    expand_env(&mut value, "", env)?;
    let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        invalid(path, e.into_inner().to_string())
    })?;
    validate(raw, overrides, env)
}

/// The configuration used without a file: embedded SQLite and providers found in the usual
/// environment variables.
pub fn embedded_default(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut raw = RawConfig::default();
    let detected: [(&str, &str, Option<&str>, &[&str]); 3] = [
        ("openai", "openai", None, &["OPENAI_API_KEY"]),
        ("anthropic", "anthropic", None, &["ANTHROPIC_API_KEY"]),
        (
            "gemini",
            "gemini",
            None,
            &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        ),
    ];
    for (name, kind, preset_name, vars) in detected {
        if let Some(key) = vars.iter().find_map(|v| env(v)) {
            raw.providers.push(RawProvider {
                name: name.into(),
                kind: kind.into(),
                base_url: None,
                api_key: Some(key),
                api_version: None,
                preset: preset_name.map(str::to_owned),
                headers: BTreeMap::new(),
                supports_n: None,
                stream_usage: None,
                responses: None,
            });
        }
    }
    for p in PRESETS {
        if let Some(key) = p.api_key_env.and_then(env) {
            raw.providers.push(RawProvider {
                name: p.name.into(),
                kind: "openai-compatible".into(),
                base_url: None,
                api_key: Some(key),
                api_version: None,
                preset: Some(p.name.into()),
                headers: BTreeMap::new(),
                supports_n: None,
                stream_usage: None,
                responses: None,
            });
        }
    }
    raw.master_key = env("PLEXUS_MASTER_KEY");
    validate(raw, overrides, env)
}

fn expand_env(
    value: &mut serde_yaml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, path, env)?;
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), env)?;
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let child = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                expand_env(v, &child, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(
    s: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid(path, "unterminated `${` reference"))?;
        let name = &after[..end];
        if name.is_empty() {
            return Err(invalid(path, "empty `${}` reference"));
        }
        let value = env(name)
            .ok_or_else(|| invalid(path, format!("environment variable `{name}` is not set")))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `10s`, `500ms`, `2m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    // Not `from_secs_f64`, which panics on a value too large for a `Duration`.
    Duration::try_from_secs_f64(secs).ok()
}

/// `32MiB`, `1MB`, `512KiB`, `1024`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn duration_key(
    value: Option<&str>,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse_duration(v).ok_or_else(|| {
            invalid(
                key,
                format!("`{v}` is not a duration (e.g. 10s, 500ms, 2m)"),
            )
        }),
    }
}

fn validate(
    raw: RawConfig,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let listen = match overrides.listen {
        Some(addr) => addr,
        None => {
            let text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
            text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "listen",
                    format!("`{text}` is not an address such as 127.0.0.1:4000"),
                )
            })?
        }
    };
    let database = overrides
        .database
        .clone()
        .or(raw.database)
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    if !(database.starts_with("sqlite:")
        || database.starts_with("postgres://")
        || database.starts_with("postgresql://"))
    {
        return Err(invalid(
            "database",
            "must be a sqlite:// or postgres:// URL",
        ));
    }
    let master_key = match &overrides.master_key {
        Some(k) => Some(k.clone()),
        None => raw
            .master_key
            .filter(|k| !k.is_empty())
            .map(SecretString::from),
    };
    if let Some(k) = &master_key {
        if k.expose_secret().len() < 8 {
            return Err(invalid("master_key", "must be at least 8 characters"));
        }
    }
    if !listen.ip().is_loopback() && master_key.is_none() {
        return Err(invalid(
            "master_key",
            format!("refusing to listen on non-loopback address {listen} without a master_key"),
        ));
    }
    let max_request_bytes = match raw.max_request_bytes {
        None => DEFAULT_MAX_REQUEST_BYTES,
        Some(RawSize::Bytes(n)) => n as usize,
        Some(RawSize::Text(t)) => parse_size(&t).ok_or_else(|| {
            invalid(
                "max_request_bytes",
                format!("`{t}` is not a size (e.g. 32MiB)"),
            )
        })? as usize,
    };
    if max_request_bytes == 0 {
        return Err(invalid("max_request_bytes", "must be positive"));
    }
    let defaults = Timeouts::default();
    let timeouts = match raw.timeouts {
        None => defaults,
        Some(t) => Timeouts {
            connect: duration_key(t.connect.as_deref(), "timeouts.connect", defaults.connect)?,
            first_byte: duration_key(
                t.first_byte.as_deref(),
                "timeouts.first_byte",
                defaults.first_byte,
            )?,
            idle: duration_key(t.idle.as_deref(), "timeouts.idle", defaults.idle)?,
            pool_idle: duration_key(
                t.pool_idle.as_deref(),
                "timeouts.pool_idle",
                defaults.pool_idle,
            )?,
        },
    };
    let inbound = match raw.inbound {
        None => InboundSettings::default(),
        Some(i) => validate_inbound(i)?,
    };
    let shutdown_grace = duration_key(
        raw.shutdown_grace.as_deref(),
        "shutdown_grace",
        Duration::from_secs(30),
    )?;

    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let key = |field: &str| format!("providers[{i}].{field}");
        if p.name.is_empty() || p.name.contains('/') {
            return Err(invalid(key("name"), "must be non-empty and contain no `/`"));
        }
        if !names.insert(p.name.clone()) {
            return Err(invalid(
                key("name"),
                format!("duplicate provider `{}`", p.name),
            ));
        }
        let kind = ProviderKind::parse(&p.kind).ok_or_else(|| {
            invalid(
                key("kind"),
                format!(
                    "unknown kind `{}` (expected openai, azure, anthropic, gemini or openai-compatible)",
                    p.kind
                ),
            )
        })?;
        let preset = match &p.preset {
            None => None,
            Some(name) => {
                if kind != ProviderKind::OpenAiCompatible {
                    return Err(invalid(
                        key("preset"),
                        "presets apply to kind openai-compatible",
                    ));
                }
                let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                Some(preset(name).ok_or_else(|| {
                    invalid(
                        key("preset"),
                        format!("unknown preset `{name}` (known: {})", known.join(", ")),
                    )
                })?)
            }
        };
        let base_url = p
            .base_url
            .or_else(|| kind.default_base_url().map(str::to_owned))
            .or_else(|| preset.map(|pr| pr.base_url.to_owned()))
            .ok_or_else(|| invalid(key("base_url"), "required for this kind"))?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid(
                key("base_url"),
                "must start with http:// or https://",
            ));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();
        let api_key = p
            .api_key
            .filter(|k| !k.is_empty())
            .or_else(|| preset.and_then(|pr| pr.api_key_env).and_then(env))
            .map(SecretString::from);
        if kind == ProviderKind::Azure && p.api_version.is_none() {
            return Err(invalid(
                key("api_version"),
                "required for azure (e.g. 2024-10-21)",
            ));
        }
        let mut headers = Vec::with_capacity(p.headers.len());
        for (name, value) in p.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&value).is_err()
            {
                return Err(invalid(key("headers"), format!("invalid header `{name}`")));
            }
            headers.push((name.to_ascii_lowercase(), value));
        }
        providers.push(ProviderConfig {
            name: p.name,
            kind,
            base_url,
            api_key,
            api_version: p.api_version,
            headers,
            preset: preset.map(|pr| pr.name),
            supports_n: p
                .supports_n
                .unwrap_or(preset.map(|pr| pr.supports_n).unwrap_or(true)),
            stream_usage: p
                .stream_usage
                .unwrap_or(preset.map(|pr| pr.stream_usage).unwrap_or(true)),
            responses: p.responses.unwrap_or(kind == ProviderKind::OpenAi),
        });
    }

    let mut models = Vec::with_capacity(raw.models.len());
    let mut model_names = HashSet::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        if m.name.is_empty() {
            return Err(invalid(format!("models[{i}].name"), "must be non-empty"));
        }
        if !model_names.insert(m.name.clone()) {
            return Err(invalid(
                format!("models[{i}].name"),
                format!("duplicate model `{}`", m.name),
            ));
        }
        let kinds: Vec<&str> = [
            ("targets", m.targets.is_some()),
            ("select", m.select.is_some()),
            ("orchestrate", m.orchestrate.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, given)| given.then_some(kind))
        .collect();
        if let Some(q) = m.quality {
            if !(0.0..=1.0).contains(&q) {
                return Err(invalid(
                    format!("models[{i}].quality"),
                    "must be between 0 and 1",
                ));
            }
        }
        let raw_targets = match (kinds.as_slice(), m.targets, m.select) {
            ([_], Some(targets), _) => targets,
            ([_], None, Some(select)) => {
                check_limits(&m.limits, &format!("models[{i}].limits"))?;
                models.push(ModelConfig {
                    name: m.name,
                    targets: Vec::new(),
                    select: Some(validate_select(select, i)?),
                    orchestrate: None,
                    quality: m.quality,
                    balance: m.balance,
                    fallbacks: m.fallbacks,
                    fallback_on: m.fallback_on.unwrap_or_else(|| FailureClass::ALL.to_vec()),
                    limits: m.limits,
                });
                continue;
            }
            ([_], None, None) => {
                let key = format!("models[{i}].orchestrate");
                let fields = m
                    .orchestrate
                    .flatten()
                    .ok_or_else(|| invalid(&key, "needs `strategy` and `members`"))?;
                let orchestrate = crate::orchestrate::OrchestrateConfig::parse(fields)
                    .map_err(|e| invalid(format!("{key}.{}", e.field), e.message))?;
                check_limits(&m.limits, &format!("models[{i}].limits"))?;
                models.push(ModelConfig {
                    name: m.name,
                    targets: Vec::new(),
                    select: None,
                    orchestrate: Some(orchestrate),
                    quality: m.quality,
                    balance: m.balance,
                    fallbacks: m.fallbacks,
                    fallback_on: m.fallback_on.unwrap_or_else(|| FailureClass::ALL.to_vec()),
                    limits: m.limits,
                });
                continue;
            }
            ([], _, _) => {
                return Err(invalid(
                    format!("models[{i}]"),
                    "a model needs exactly one of `targets`, `select` or `orchestrate`",
                ))
            }
            (given, _, _) => {
                let given: Vec<String> = given.iter().map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    format!("models[{i}]"),
                    format!(
                        "a model needs exactly one of `targets`, `select` or `orchestrate`, not {}",
                        given.join(" and ")
                    ),
                ));
            }
        };
        if raw_targets.is_empty() {
            return Err(invalid(
                format!("models[{i}].targets"),
                "needs at least one target",
            ));
        }
        let mut targets = Vec::with_capacity(raw_targets.len());
        for (j, t) in raw_targets.into_iter().enumerate() {
            let idx = providers
                .iter()
                .position(|p| p.name == t.provider)
                .ok_or_else(|| {
                    invalid(
                        format!("models[{i}].targets[{j}].provider"),
                        format!("no provider named `{}`", t.provider),
                    )
                })?;
            if t.model.is_empty() {
                return Err(invalid(
                    format!("models[{i}].targets[{j}].model"),
                    "must be non-empty",
                ));
            }
            for (field, value) in [("rpm", t.rpm), ("tpm", t.tpm)] {
                if value == Some(0) {
                    return Err(invalid(
                        format!("models[{i}].targets[{j}].{field}"),
                        "must be at least 1 (leave it out for no limit)",
                    ));
                }
            }
            let price = match t.price {
                None => None,
                Some(p) => Some(validate_price(
                    p,
                    &format!("models[{i}].targets[{j}].price"),
                )?),
            };
            let capabilities = match t.capabilities {
                None => Default::default(),
                Some(c) => {
                    if c.context_window == Some(0) {
                        return Err(invalid(
                            format!("models[{i}].targets[{j}].capabilities.context_window"),
                            "must be at least 1",
                        ));
                    }
                    plexus_select::requirements::Capabilities {
                        tools: c.tools,
                        vision: c.vision,
                        json_schema: c.json_schema,
                        reasoning: c.reasoning,
                        context_window: c.context_window,
                    }
                }
            };
            targets.push(TargetConfig {
                provider: idx,
                model: t.model,
                weight: t.weight.unwrap_or(1),
                rpm: t.rpm,
                tpm: t.tpm,
                price,
                capabilities,
            });
        }
        check_limits(&m.limits, &format!("models[{i}].limits"))?;
        models.push(ModelConfig {
            name: m.name,
            targets,
            select: None,
            orchestrate: None,
            quality: m.quality,
            balance: m.balance,
            fallbacks: m.fallbacks,
            fallback_on: m.fallback_on.unwrap_or_else(|| FailureClass::ALL.to_vec()),
            limits: m.limits,
        });
    }
    for (i, m) in models.iter().enumerate() {
        if let Some(select) = &m.select {
            for (j, c) in select.candidates.iter().enumerate() {
                let key = format!("models[{i}].select.candidates[{j}]");
                match models.iter().find(|other| &other.name == c) {
                    None => {
                        return Err(invalid(
                            key,
                            format!("`{c}` is not a configured model"),
                        ))
                    }
                    Some(other) if other.orchestrate.is_some() => {
                        return Err(invalid(
                            key,
                            format!("`{c}` is an orchestration model; candidates are models with `targets`"),
                        ))
                    }
                    Some(other) if other.select.is_some() => {
                        return Err(invalid(
                            key,
                            format!("`{c}` is itself a `select` model; candidates are models with `targets`"),
                        ))
                    }
                    Some(_) => {}
                }
                if select.candidates[..j].contains(c) {
                    return Err(invalid(key, format!("`{c}` is listed twice")));
                }
            }
        }
        if let Some(o) = &m.orchestrate {
            o.check_models(Some(&m.name), |name| model_kind(&models, &providers, name))
                .map_err(|e| invalid(format!("models[{i}].orchestrate.{}", e.field), e.message))?;
        }
        for (j, f) in m.fallbacks.iter().enumerate() {
            if f == &m.name || !model_names.contains(f) {
                return Err(invalid(
                    format!("models[{i}].fallbacks[{j}]"),
                    format!("`{f}` is not another configured model"),
                ));
            }
        }
    }

    let aliases = validate_aliases(raw.aliases, &models)?;

    let raw_limits = raw.limits.unwrap_or_default();
    let global = RateLimits {
        rpm: raw_limits.rpm,
        tpm: raw_limits.tpm,
        tpd: raw_limits.tpd,
        max_parallel: raw_limits.max_parallel,
    };
    check_limits(&global, "limits")?;
    let limits = LimitSettings {
        global,
        on_redis_error: raw_limits.on_redis_error,
        queue_timeout: duration_key(
            raw_limits.queue_timeout.as_deref(),
            "limits.queue_timeout",
            Duration::from_secs(5),
        )?,
    };
    let redis = match raw.redis {
        None => None,
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Some(SecretString::from(url))
        }
        Some(_) => return Err(invalid("redis", "must be a redis:// URL")),
    };
    let retry_defaults = RetrySettings::default();
    let retries = match raw.retries {
        None => retry_defaults,
        Some(r) => RetrySettings {
            attempts: match r.attempts {
                Some(0) => return Err(invalid("retries.attempts", "must be at least 1")),
                Some(n) => n,
                None => retry_defaults.attempts,
            },
            base_delay: duration_key(
                r.base_delay.as_deref(),
                "retries.base_delay",
                retry_defaults.base_delay,
            )?,
            max_delay: duration_key(
                r.max_delay.as_deref(),
                "retries.max_delay",
                retry_defaults.max_delay,
            )?,
            budget: duration_key(r.budget.as_deref(), "retries.budget", retry_defaults.budget)?,
        },
    };
    let cache = match raw.cache {
        None => None,
        Some(c) => Some(validate_cache(c, &models)?),
    };
    let breaker_defaults = BreakerSettings::default();
    let breaker = match raw.circuit_breaker {
        None => breaker_defaults,
        Some(b) => {
            let failure_rate = b.failure_rate.unwrap_or(breaker_defaults.failure_rate);
            if !(failure_rate > 0.0 && failure_rate <= 1.0) {
                return Err(invalid("circuit_breaker.failure_rate", "must be in (0, 1]"));
            }
            BreakerSettings {
                consecutive_failures: b
                    .consecutive_failures
                    .unwrap_or(breaker_defaults.consecutive_failures)
                    .max(1),
                failure_rate,
                min_requests: b.min_requests.unwrap_or(breaker_defaults.min_requests),
                window: duration_key(
                    b.window.as_deref(),
                    "circuit_breaker.window",
                    breaker_defaults.window,
                )?,
                cooldown: duration_key(
                    b.cooldown.as_deref(),
                    "circuit_breaker.cooldown",
                    breaker_defaults.cooldown,
                )?,
            }
        }
    };

    let jwt = match raw.jwt {
        None => None,
        Some(j) => {
            if j.issuer.is_empty() {
                return Err(invalid("jwt.issuer", "must be non-empty"));
            }
            if j.audience.is_empty() {
                return Err(invalid("jwt.audience", "must be non-empty"));
            }
            let jwks = match (j.jwks_file, j.jwks_url) {
                (Some(f), None) => JwksSource::File(f),
                (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
                    JwksSource::Url(u)
                }
                (None, Some(_)) => return Err(invalid("jwt.jwks_url", "must be an http(s) URL")),
                _ => {
                    return Err(invalid(
                        "jwt",
                        "give exactly one of `jwks_file` and `jwks_url`",
                    ))
                }
            };
            let leeway_secs = j.leeway_secs.unwrap_or(30);
            if leeway_secs > 3600 {
                return Err(invalid("jwt.leeway_secs", "must be at most 3600"));
            }
            Some(JwtSettings {
                issuer: j.issuer,
                audience: j.audience,
                jwks,
                user_claim: j.claims.user.unwrap_or_else(|| "sub".into()),
                team_claim: j.claims.team.unwrap_or_else(|| "team".into()),
                role_claim: j.claims.role.unwrap_or_else(|| "role".into()),
                leeway_secs,
            })
        }
    };

    let retention = match raw.retention {
        None => Retention::default(),
        Some(r) => r.parse()?,
    };

    let tls = raw.tls.map(|t| TlsConfig {
        cert: t.cert,
        key: t.key,
    });

    Ok(Config {
        listen,
        database,
        master_key,
        max_request_bytes,
        timeouts,
        inbound,
        tls,
        ca_bundle: raw.ca_bundle,
        providers,
        models,
        aliases,
        shutdown_grace,
        jwt,
        vault_key_file: raw.vault.and_then(|v| v.key_file),
        retention,
        request_bodies: raw.request_bodies,
        log: raw.log,
        redis,
        limits,
        retries,
        breaker,
        cache,
    })
}

/// `aliases:`: every key non-empty, unique and not a configured model name (it would never
/// apply); every target a configured model.
fn validate_aliases(raw: RawAliases, models: &[ModelConfig]) -> Result<Vec<Alias>, ConfigError> {
    let mut aliases: Vec<Alias> = Vec::with_capacity(raw.0.len());
    for (pattern, target) in raw.0 {
        let key = format!("aliases[{pattern:?}]");
        if pattern.trim().is_empty() {
            return Err(invalid(
                key,
                "an alias needs a non-empty model name or pattern",
            ));
        }
        if aliases.iter().any(|a| a.pattern == pattern) {
            return Err(invalid(key, "listed twice"));
        }
        if models.iter().any(|m| m.name == pattern) {
            return Err(invalid(
                key,
                format!("`{pattern}` is a configured model name, which takes precedence over aliases: this alias would never apply"),
            ));
        }
        if !models.iter().any(|m| m.name == target) {
            return Err(invalid(
                key,
                format!("`{target}` is not a configured model; an alias must point to one"),
            ));
        }
        aliases.push(Alias { pattern, target });
    }
    Ok(aliases)
}

fn validate_inbound(i: RawInbound) -> Result<InboundSettings, ConfigError> {
    let defaults = InboundSettings::default();
    let positive = |value: Option<&str>, key: &str, default: Duration| {
        let d = duration_key(value, key, default)?;
        if d.is_zero() {
            return Err(invalid(key, "must be positive"));
        }
        Ok(d)
    };
    let max_connections = match i.max_connections {
        None => defaults.max_connections,
        Some(0) => return Err(invalid("inbound.max_connections", "must be positive")),
        Some(n) => usize::try_from(n)
            .map_err(|_| invalid("inbound.max_connections", format!("`{n}` is too large")))?,
    };
    Ok(InboundSettings {
        header_read_timeout: positive(
            i.header_read_timeout.as_deref(),
            "inbound.header_read_timeout",
            defaults.header_read_timeout,
        )?,
        body_idle_timeout: positive(
            i.body_idle_timeout.as_deref(),
            "inbound.body_idle_timeout",
            defaults.body_idle_timeout,
        )?,
        keep_alive_timeout: positive(
            i.keep_alive_timeout.as_deref(),
            "inbound.keep_alive_timeout",
            defaults.keep_alive_timeout,
        )?,
        max_connections,
    })
}

fn validate_cache(c: RawCache, models: &[ModelConfig]) -> Result<CacheSettings, ConfigError> {
    let ttl = duration_key(c.ttl.as_deref(), "cache.ttl", Duration::from_secs(3600))?;
    if ttl.is_zero() {
        return Err(invalid("cache.ttl", "must be positive"));
    }
    let max_bytes = match c.max_bytes {
        None => 256 * 1024 * 1024,
        Some(RawSize::Bytes(n)) => n,
        Some(RawSize::Text(t)) => parse_size(&t)
            .ok_or_else(|| invalid("cache.max_bytes", format!("`{t}` is not a size")))?,
    };
    let redis = match c.redis {
        None => None,
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Some(SecretString::from(url))
        }
        Some(_) => return Err(invalid("cache.redis", "must be a redis:// URL")),
    };
    let redis_prefix = c.redis_prefix.unwrap_or_else(|| "plexus:cache:".to_owned());
    if redis_prefix.is_empty() || redis_prefix.contains(['*', '?', '[', ' ']) {
        return Err(invalid(
            "cache.redis_prefix",
            "must be non-empty, without spaces or glob characters",
        ));
    }
    let semantic = match c.semantic {
        None => None,
        Some(s) => {
            let embedder = match s.embedder {
                RawEmbedder::Local { path } => EmbedderSettings::Local { path },
                RawEmbedder::Model { model } => {
                    if !models.iter().any(|m| m.name == model) {
                        return Err(invalid(
                            "cache.semantic.embedder.model",
                            format!("`{model}` is not a configured model"),
                        ));
                    }
                    EmbedderSettings::Model { model }
                }
            };
            let threshold = s.threshold.unwrap_or(0.95);
            if !(0.0..=1.0).contains(&threshold) {
                return Err(invalid("cache.semantic.threshold", "must be in [0, 1]"));
            }
            let max_false_hit_rate = s.max_false_hit_rate.unwrap_or(0.02);
            if !(max_false_hit_rate > 0.0 && max_false_hit_rate <= 1.0) {
                return Err(invalid(
                    "cache.semantic.max_false_hit_rate",
                    "must be in (0, 1]",
                ));
            }
            let judge = match s.judge {
                None => None,
                Some(j) => {
                    if !(0.0..=1.0).contains(&j.sample_rate) {
                        return Err(invalid(
                            "cache.semantic.judge.sample_rate",
                            "must be in [0, 1]",
                        ));
                    }
                    let explore_rate = j.explore_rate.unwrap_or(1.0);
                    if !(0.0..=1.0).contains(&explore_rate) {
                        return Err(invalid(
                            "cache.semantic.judge.explore_rate",
                            "must be in [0, 1]",
                        ));
                    }
                    let agreement = j.agreement.unwrap_or(0.9);
                    if !(-1.0..=1.0).contains(&agreement) {
                        return Err(invalid(
                            "cache.semantic.judge.agreement",
                            "must be in [-1, 1]",
                        ));
                    }
                    Some(JudgeSettings {
                        sample_rate: j.sample_rate,
                        explore_rate,
                        agreement,
                    })
                }
            };
            Some(SemanticSettings {
                embedder,
                threshold,
                input: s.input,
                max_false_hit_rate,
                judge,
            })
        }
    };
    Ok(CacheSettings {
        ttl,
        max_bytes,
        scope: c.scope,
        nondeterministic: c.nondeterministic,
        redis,
        redis_prefix,
        semantic,
    })
}

fn validate_price(p: RawPrice, path: &str) -> Result<Price, ConfigError> {
    for (field, value) in [
        ("input_per_mtok", Some(p.input_per_mtok)),
        ("output_per_mtok", Some(p.output_per_mtok)),
        ("cached_input_per_mtok", p.cached_input_per_mtok),
    ] {
        if let Some(v) = value {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(
                    format!("{path}.{field}"),
                    format!("`{v}` is not a price (USD per million tokens, at least 0)"),
                ));
            }
        }
    }
    Ok(Price {
        input_per_mtok: p.input_per_mtok,
        output_per_mtok: p.output_per_mtok,
        cached_input_per_mtok: p.cached_input_per_mtok,
    })
}

fn check_limits(limits: &RateLimits, path: &str) -> Result<(), ConfigError> {
    for (field, value) in [
        ("rpm", limits.rpm),
        ("tpm", limits.tpm),
        ("tpd", limits.tpd),
        ("max_parallel", limits.max_parallel),
    ] {
        if value == Some(0) {
            return Err(invalid(
                format!("{path}.{field}"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const CONTRACT: &str = r#"
listen: 127.0.0.1:4000
database: sqlite://plexus.db
master_key: ${PLEXUS_MASTER_KEY}
providers:
  - name: oai
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
models:
  - name: gpt
    targets: [{provider: oai, model: gpt-4o-mini}]
"#;

    #[test]
    fn the_documented_shape_parses() {
        let env = env_of(&[
            ("PLEXUS_MASTER_KEY", "sk-master-123"),
            ("OPENAI_API_KEY", "sk-x"),
        ]);
        let cfg = from_yaml_str(CONTRACT, &Overrides::default(), &env).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(cfg.master_key.unwrap().expose_secret(), "sk-master-123");
        assert_eq!(cfg.providers[0].kind, ProviderKind::OpenAi);
        assert_eq!(
            cfg.providers[0].api_key.as_ref().unwrap().expose_secret(),
            "sk-x"
        );
        assert_eq!(cfg.models[0].targets[0].model, "gpt-4o-mini");
        assert_eq!(cfg.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn the_access_log_is_off_unless_asked_for() {
        let parse =
            |extra: &str| from_yaml_str(&format!("{extra}\n"), &Overrides::default(), &|_| None);
        assert!(!parse("").unwrap().log.access);
        assert!(!parse("log: {}").unwrap().log.access);
        assert!(parse("log: {access: true}").unwrap().log.access);
        let typo = parse("log: {acess: true}").unwrap_err().to_string();
        assert!(typo.contains("log") && typo.contains("acess"), "{typo}");
        let wrong = parse("log: {access: loud}").unwrap_err().to_string();
        assert!(wrong.contains("log.access"), "{wrong}");
    }

    #[test]
    fn limits_balancing_and_fallbacks() {
        let yaml = r#"
redis: redis://127.0.0.1:6379
limits: {rpm: 600, tpm: 100000, max_parallel: 50, on_redis_error: closed, queue_timeout: 2s}
retries: {attempts: 4, base_delay: 100ms, max_delay: 2s, budget: 10s}
circuit_breaker: {consecutive_failures: 3, failure_rate: 0.25, min_requests: 4, window: 10s, cooldown: 5s}
providers:
  - {name: a, kind: openai, base_url: 'http://127.0.0.1:1/v1'}
  - {name: b, kind: openai, base_url: 'http://127.0.0.1:2/v1'}
models:
  - name: big
    targets: [{provider: b, model: x}]
  - name: m
    balance: least_busy
    fallbacks: [big]
    fallback_on: [rate_limited, context_window]
    limits: {rpm: 10, tpd: 5000}
    targets:
      - {provider: a, model: x, weight: 3, rpm: 100, tpm: 20000}
      - {provider: b, model: y}
"#;
        let cfg = from_yaml_str(yaml, &Overrides::default(), &|_| None).unwrap();
        assert!(cfg.redis.is_some());
        assert_eq!(cfg.limits.global.rpm, Some(600));
        assert_eq!(cfg.limits.on_redis_error, OnRedisError::Closed);
        assert_eq!(cfg.limits.queue_timeout, Duration::from_secs(2));
        assert_eq!(cfg.retries.attempts, 4);
        assert_eq!(cfg.breaker.consecutive_failures, 3);
        let m = cfg.model("m").unwrap();
        assert_eq!(m.balance, Balance::LeastBusy);
        assert_eq!(m.fallbacks, ["big"]);
        assert_eq!(
            m.fallback_on,
            [FailureClass::RateLimited, FailureClass::ContextWindow]
        );
        assert_eq!(m.limits.tpd, Some(5000));
        assert_eq!(m.targets[0].weight, 3);
        assert_eq!(m.targets[0].rpm, Some(100));
        assert_eq!(m.targets[1].weight, 1);
        assert_eq!(cfg.model("big").unwrap().fallback_on.len(), 5);

        let head = "    balance: least_busy\n";
        for (from, to, key) in [
            (
                "fallbacks: [big]",
                "fallbacks: [nope]",
                "models[1].fallbacks[0]",
            ),
            (
                "fallbacks: [big]",
                "fallbacks: [m]",
                "models[1].fallbacks[0]",
            ),
            (head, "    balance: random\n", "models[1].balance"),
            ("{rpm: 10,", "{rpm: 0,", "models[1].limits.rpm"),
            ("[rate_limited,", "[weather,", "models[1].fallback_on"),
        ] {
            let text = yaml.replace(from, to);
            let err = from_yaml_str(&text, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
        let err = from_yaml_str("redis: localhost", &Overrides::default(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis"), "{err}");
    }

    /// The README's configuration example is a valid config.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
        let yaml = &section[start..start + section[start..].find("```").unwrap()];
        let cfg = from_yaml_str(yaml, &Overrides::default(), &|_| {
            Some("sk-0123456789".into())
        })
        .unwrap();
        assert_eq!(cfg.model("smart").unwrap().balance, Balance::Latency);
        assert!(cfg.redis.is_some());
        assert_eq!(cfg.limits.global.max_parallel, Some(512));
        let llama = cfg.model("llama").unwrap();
        assert_eq!(llama.targets[0].price.unwrap().cost_usd(1000, 1000, 0), 0.0);
        assert_eq!(llama.targets[1].price.unwrap().output_per_mtok, 0.79);
    }

    #[test]
    fn cache_settings() {
        let yaml = "cache:\n  ttl: 1h\n  redis: redis://127.0.0.1:6379\n  semantic:\n    embedder: {kind: local, path: /models/minilm}\n    threshold: 0.9\n";
        let cfg = from_yaml_str(yaml, &Overrides::default(), &|_| None).unwrap();
        let c = cfg.cache.unwrap();
        assert_eq!(c.ttl, Duration::from_secs(3600));
        assert_eq!(c.scope, CacheScope::Team);
        assert_eq!(c.redis_prefix, "plexus:cache:");
        assert!(!c.nondeterministic);
        let s = c.semantic.unwrap();
        assert_eq!(
            s.embedder,
            EmbedderSettings::Local {
                path: "/models/minilm".into()
            }
        );
        assert_eq!(s.input, SemanticInput::LastUser);
        for (bad, key) in [
            ("cache: {ttl: 0s}", "cache.ttl"),
            ("cache: {scope: planet}", "cache.scope"),
            ("cache: {redis_prefix: 'a*'}", "cache.redis_prefix"),
            (
                "cache: {semantic: {embedder: {kind: model, model: nope}}}",
                "cache.semantic.embedder.model",
            ),
            (
                "cache: {semantic: {embedder: {kind: local, path: x}, threshold: 2}}",
                "cache.semantic.threshold",
            ),
            (
                "cache: {semantic: {embedder: {kind: local, path: x}, max_false_hit_rate: 0}}",
                "cache.semantic.max_false_hit_rate",
            ),
            (
                "cache: {semantic: {embedder: {kind: local, path: x}, judge: {sample_rate: 0.1, explore_rate: 2}}}",
                "cache.semantic.judge.explore_rate",
            ),
            (
                "cache: {semantic: {embedder: {kind: local, path: x}, judge: {sample_rate: 0.1, agreement: 1.5}}}",
                "cache.semantic.judge.agreement",
            ),
        ] {
            let err = from_yaml_str(bad, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    /// The README's cache example is a valid config too.
    #[test]
    fn the_readme_cache_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Response cache").unwrap()..];
        let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
        let yaml = &section[start..start + section[start..].find("```").unwrap()];
        let cfg = from_yaml_str(yaml, &Overrides::default(), &|_| None).unwrap();
        let c = cfg.cache.unwrap();
        assert_eq!(c.max_bytes, 256 * 1024 * 1024);
        let s = c.semantic.unwrap();
        assert_eq!(s.max_false_hit_rate, 0.02);
        let judge = s.judge.unwrap();
        assert_eq!((judge.sample_rate, judge.explore_rate), (0.02, 1.0));
        // A bound of 1 (no bound) is accepted.
        let loose = from_yaml_str(
            "cache: {semantic: {embedder: {kind: local, path: x}, max_false_hit_rate: 1}}",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            loose.cache.unwrap().semantic.unwrap().max_false_hit_rate,
            1.0
        );
    }

    #[test]
    fn unset_env_var_names_the_key() {
        let env = env_of(&[("PLEXUS_MASTER_KEY", "sk-master-123")]);
        let err = from_yaml_str(CONTRACT, &Overrides::default(), &env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("providers[0].api_key"), "{msg}");
        assert!(msg.contains("OPENAI_API_KEY"), "{msg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = from_yaml_str(
            "providers:\n  - name: a\n    kind: openai\n    api_kye: x\n",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers[0]"), "{err}");
        assert!(err.contains("api_kye"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("listen: nowhere", "listen"),
            ("providers: [{name: a, kind: bogus}]", "providers[0].kind"),
            (
                "providers: [{name: a, kind: azure, base_url: 'https://x'}]",
                "providers[0].api_version",
            ),
            (
                "providers: [{name: a, kind: openai-compatible}]",
                "providers[0].base_url",
            ),
            (
                "models: [{name: m, targets: [{provider: nope, model: x}]}]",
                "models[0].targets[0].provider",
            ),
            ("timeouts: {connect: forever}", "timeouts.connect"),
            ("max_request_bytes: lots", "max_request_bytes"),
            (
                "providers: [{name: a, kind: openai}, {name: a, kind: openai}]",
                "providers[1].name",
            ),
        ];
        for (yaml, key) in cases {
            let err = from_yaml_str(yaml, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn inbound_settings() {
        let cfg = from_yaml_str("", &Overrides::default(), &|_| None).unwrap();
        assert_eq!(cfg.inbound, InboundSettings::default());
        assert_eq!(
            (
                cfg.inbound.header_read_timeout,
                cfg.inbound.body_idle_timeout,
                cfg.inbound.keep_alive_timeout,
                cfg.inbound.max_connections
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(60),
                10_000
            )
        );
        let cfg = from_yaml_str(
            "inbound: {header_read_timeout: 500ms, keep_alive_timeout: 2m, max_connections: 64}",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.inbound.header_read_timeout, Duration::from_millis(500));
        assert_eq!(cfg.inbound.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(cfg.inbound.keep_alive_timeout, Duration::from_secs(120));
        assert_eq!(cfg.inbound.max_connections, 64);
        // The upstream's `timeouts:` are untouched by `inbound:`.
        assert_eq!(cfg.timeouts, Timeouts::default());
        for (bad, key) in [
            (
                "inbound: {header_read_timeout: soon}",
                "inbound.header_read_timeout",
            ),
            (
                "inbound: {body_idle_timeout: 0s}",
                "inbound.body_idle_timeout",
            ),
            (
                "inbound: {keep_alive_timeout: forever}",
                "inbound.keep_alive_timeout",
            ),
            ("inbound: {max_connections: 0}", "inbound.max_connections"),
            (
                "inbound: {max_connections: lots}",
                "inbound.max_connections",
            ),
            ("inbound: {max_conections: 5}", "max_conections"),
        ] {
            let err = from_yaml_str(bad, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn non_loopback_requires_master_key() {
        let err = from_yaml_str("listen: 0.0.0.0:4000", &Overrides::default(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("master_key"), "{err}");
        let ok = from_yaml_str(
            "listen: 0.0.0.0:4000\nmaster_key: sk-long-enough",
            &Overrides::default(),
            &|_| None,
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn cli_overrides_win() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..Default::default()
        };
        let cfg = from_yaml_str("listen: 127.0.0.1:1234", &overrides, &|_| None).unwrap();
        assert_eq!(cfg.listen.port(), 9999);
    }

    #[test]
    fn presets_fill_base_url_and_quirks() {
        let cfg = from_yaml_str(
            "providers: [{name: g, kind: openai-compatible, preset: groq}]",
            &Overrides::default(),
            &env_of(&[("GROQ_API_KEY", "gk")]),
        )
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.base_url, "https://api.groq.com/openai/v1");
        assert!(!p.supports_n);
        assert_eq!(p.api_key.as_ref().unwrap().expose_secret(), "gk");
    }

    #[test]
    fn embedded_default_detects_env_providers() {
        let cfg = embedded_default(
            &Overrides::default(),
            &env_of(&[("ANTHROPIC_API_KEY", "a"), ("GEMINI_API_KEY", "g")]),
        )
        .unwrap();
        let names: Vec<_> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["anthropic", "gemini"]);
        assert_eq!(cfg.database, DEFAULT_DATABASE);
        assert!(cfg.listen.ip().is_loopback());
    }

    #[test]
    fn jwt_settings() {
        let cfg = from_yaml_str(
            "jwt: {issuer: 'https://idp', audience: plexus, jwks_file: /tmp/jwks.json, claims: {team: org}}",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        let jwt = cfg.jwt.unwrap();
        assert_eq!(jwt.jwks, JwksSource::File("/tmp/jwks.json".into()));
        assert_eq!(
            (jwt.user_claim.as_str(), jwt.team_claim.as_str()),
            ("sub", "org")
        );
        for (yaml, key) in [
            ("jwt: {issuer: a, audience: b}", "jwt"),
            (
                "jwt: {issuer: a, audience: b, jwks_file: x, jwks_url: 'https://y'}",
                "jwt",
            ),
            ("jwt: {issuer: '', audience: b, jwks_file: x}", "jwt.issuer"),
            (
                "jwt: {issuer: a, audience: b, jwks_url: 'ftp://x'}",
                "jwt.jwks_url",
            ),
        ] {
            let err = from_yaml_str(yaml, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn retention_and_vault() {
        let cfg = from_yaml_str(
            "retention: {requests: 30d}\nvault: {key_file: /etc/plexus/kek}",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            cfg.retention,
            Retention {
                requests: Some(Duration::from_secs(30 * 86400)),
                ..Retention::default()
            }
        );
        let defaults = from_yaml_str("{}", &Overrides::default(), &|_| None).unwrap();
        assert_eq!(defaults.retention.requests, None);
        assert_eq!(
            defaults.retention.responses,
            Some(Duration::from_secs(30 * 86400))
        );
        let forever = from_yaml_str(
            "retention: {responses: forever, bodies: 2h}",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(forever.retention.responses, None);
        assert_eq!(forever.retention.bodies, Some(Duration::from_secs(7200)));
        for (yaml, key) in [
            ("retention: {responses: never}", "retention.responses"),
            ("retention: {bodies: 10s}", "retention.bodies"),
        ] {
            let err = from_yaml_str(yaml, &Overrides::default(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
        assert_eq!(cfg.vault_key_file, Some(PathBuf::from("/etc/plexus/kek")));
        let err = from_yaml_str("retention: {requests: 5s}", &Overrides::default(), &|_| {
            None
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("retention.requests"), "{err}");
    }

    const PRICED: &str = r#"
providers:
  - {name: p, kind: openai-compatible, base_url: 'http://127.0.0.1:1/v1'}
models:
  - name: m
    targets:
      - {provider: p, model: a, weight: 2, rpm: 10}
      - {provider: p, model: b, weight: 3, rpm: 20, tpm: 300, price: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3}}
  - name: free
    targets: [{provider: p, model: llama, price: {input_per_mtok: 0, output_per_mtok: 0}}]
"#;

    fn config_err(yaml: &str) -> String {
        from_yaml_str(yaml, &Overrides::default(), &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn target_price_parses_and_overrides_nothing_else() {
        let cfg = from_yaml_str(PRICED, &Overrides::default(), &|_| None).unwrap();
        let m = cfg.model("m").unwrap();
        assert_eq!(m.targets[0].price, None);
        assert_eq!(
            m.targets[1].price,
            Some(Price {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
                cached_input_per_mtok: Some(0.3),
            })
        );
        // The other keys of the priced target are as without a price.
        let t = &m.targets[1];
        assert_eq!(
            (t.provider, t.model.as_str(), t.weight, t.rpm, t.tpm),
            (0, "b", 3, Some(20), Some(300))
        );
        let unpriced = PRICED.replace(
            ", price: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3}",
            "",
        );
        let plain = from_yaml_str(&unpriced, &Overrides::default(), &|_| None).unwrap();
        let mut expected = m.clone();
        expected.targets[1].price = None;
        assert_eq!(plain.model("m").unwrap(), &expected);
        assert_eq!(TargetConfig::new(0, "x").price, None);
    }

    #[test]
    fn a_free_price_costs_nothing() {
        let cfg = from_yaml_str(PRICED, &Overrides::default(), &|_| None).unwrap();
        let price = cfg.model("free").unwrap().targets[0].price.unwrap();
        assert_eq!(price.cached_input_per_mtok, None);
        assert_eq!(price.cost_usd(1_000_000, 1_000_000, 500_000), 0.0);
    }

    #[test]
    fn price_cost_arithmetic() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12;
        let price = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cached_input_per_mtok: Some(0.3),
        };
        assert_eq!(price.cost_usd(0, 0, 0), 0.0);
        assert!(close(price.cost_usd(1_000_000, 0, 0), 3.0));
        assert!(close(price.cost_usd(0, 1_000_000, 0), 15.0));
        // 1000 prompt tokens of which 400 cached, 500 completion tokens.
        let expected = (600.0 * 3.0 + 400.0 * 0.3 + 500.0 * 15.0) / 1e6;
        assert!(close(price.cost_usd(1000, 500, 400), expected));
        // Cached tokens beyond the prompt are clamped to it.
        assert!(close(price.cost_usd(100, 0, 1000), 100.0 * 0.3 / 1e6));
        // Without a cached rate, cached tokens are billed at the input rate.
        let flat = Price {
            cached_input_per_mtok: None,
            ..price
        };
        assert!(close(
            flat.cost_usd(1000, 500, 400),
            (1000.0 * 3.0 + 500.0 * 15.0) / 1e6
        ));
        // The same as the catalog's arithmetic for the same per-token prices.
        let info = crate::catalog::ModelInfo {
            provider: "openai".into(),
            model: "m".into(),
            mode: crate::catalog::ModelMode::Chat,
            input_cost_per_token: 3e-6,
            output_cost_per_token: 15e-6,
            cache_read_input_token_cost: Some(0.3e-6),
            cache_creation_input_token_cost: None,
            output_cost_per_reasoning_token: None,
            max_input_tokens: None,
            max_output_tokens: None,
            supports_tools: false,
            supports_vision: false,
            supports_response_schema: false,
            supports_reasoning: false,
            supports_prompt_caching: true,
        };
        for (p, c, cached) in [(1000, 500, 400), (100, 7, 1000), (12345, 678, 0)] {
            assert!(close(
                price.cost_usd(p, c, cached),
                info.cost_usd(p, c, cached, c / 2)
            ));
        }
    }

    #[test]
    fn bad_prices_are_named() {
        let price = "price: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3}";
        for (to, key) in [
            (
                "price: {input_per_mtok: 3, output_per_mtok: -15}",
                "models[0].targets[1].price.output_per_mtok",
            ),
            (
                "price: {input_per_mtok: -1, output_per_mtok: 15}",
                "models[0].targets[1].price.input_per_mtok",
            ),
            (
                "price: {input_per_mtok: .nan, output_per_mtok: 15}",
                "models[0].targets[1].price.input_per_mtok",
            ),
            (
                "price: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: .inf}",
                "models[0].targets[1].price.cached_input_per_mtok",
            ),
            (
                "price: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: -0.3}",
                "models[0].targets[1].price.cached_input_per_mtok",
            ),
            ("price: {input_per_mtok: 3}", "models[0].targets[1].price"),
            ("price: {output_per_mtok: 3}", "models[0].targets[1].price"),
            (
                "price: {input_per_mtok: 3, output_per_mtok: 15, currency: eur}",
                "models[0].targets[1].price",
            ),
            (
                "price: {input_per_mtok: three, output_per_mtok: 15}",
                "models[0].targets[1].price.input_per_mtok",
            ),
        ] {
            let err = config_err(&PRICED.replace(price, to));
            assert!(err.contains(key), "{to}: {err}");
        }
        let err = config_err(&PRICED.replace(price, "price: {input_per_mtok: 3}"));
        assert!(err.contains("output_per_mtok"), "{err}");
        let err = config_err(&PRICED.replace(price, "price: {output_per_mtok: 3}"));
        assert!(err.contains("input_per_mtok"), "{err}");
    }

    #[test]
    fn a_model_has_exactly_one_kind() {
        let head = "providers: [{name: p, kind: openai}]\nmodels:\n  - name: ok\n    targets: [{provider: p, model: x}]\n";
        let one_of = "a model needs exactly one of `targets`, `select` or `orchestrate`";
        let cases = [
            ("  - name: m\n", "models[1]", one_of),
            ("  - {name: m, balance: cost}\n", "models[1]", one_of),
            (
                "  - name: m\n    targets: [{provider: p, model: x}]\n    select: {}\n",
                "models[1]",
                "not `targets` and `select`",
            ),
            (
                "  - name: m\n    select: {}\n    orchestrate: {}\n",
                "models[1]",
                "not `select` and `orchestrate`",
            ),
            (
                "  - name: m\n    targets: []\n    select: ~\n    orchestrate: ~\n",
                "models[1]",
                "not `targets` and `select` and `orchestrate`",
            ),
            (
                "  - name: m\n    select: {from: [ok]}\n",
                "models[1].select.from",
                "unknown field `from`, expected one of `candidates`, `objective`, `cost_weight`, `router`, `max_cost_per_request_usd`, `max_latency_ms`, `explore`, `affinity`, `embedder`",
            ),
            (
                "  - name: m\n    select: ~\n",
                "models[1].select",
                "needs `candidates`: the configured models it chooses among",
            ),
            (
                "  - name: m\n    select: {candidates: []}\n",
                "models[1].select.candidates",
                "needs at least one configured model",
            ),
            (
                "  - name: m\n    select: {candidates: [ok, nope]}\n",
                "models[1].select.candidates[1]",
                "`nope` is not a configured model",
            ),
            (
                "  - name: m\n    select: {candidates: [ok, ok]}\n",
                "models[1].select.candidates[1]",
                "`ok` is listed twice",
            ),
            (
                "  - name: m\n    select: {candidates: [m]}\n",
                "models[1].select.candidates[0]",
                "`m` is itself a `select` model; candidates are models with `targets`",
            ),
            (
                "  - name: m\n    select: {candidates: [ok], objective: fast}\n",
                "models[1].select.objective",
                "`fast` is not one of quality, cost, latency, balanced",
            ),
            (
                "  - name: m\n    select: {candidates: [ok], cost_weight: -1}\n",
                "models[1].select.cost_weight",
                "must be a number at least 0",
            ),
            (
                "  - name: m\n    select: {candidates: [ok], explore: 1.5}\n",
                "models[1].select.explore",
                "must be between 0 and 1",
            ),
            (
                "  - name: m\n    select: {candidates: [ok], max_cost_per_request_usd: 0}\n",
                "models[1].select.max_cost_per_request_usd",
                "must be a positive amount of USD",
            ),
            (
                "  - name: m\n    quality: 2\n    select: {candidates: [ok]}\n",
                "models[1].quality",
                "must be between 0 and 1",
            ),
            (
                "  - name: m\n    orchestrate: ~\n",
                "models[1].orchestrate",
                "needs `strategy` and `members`",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: vote, members: [ok, nope], answer: number}\n",
                "models[1].orchestrate.members[1]",
                "`nope` is not a configured model",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: vote, members: [ok, m], answer: number}\n",
                "models[1].orchestrate.members[1]",
                "`m` is this orchestration model itself",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: best_of_n, members: [ok, ok]}\n",
                "models[1].orchestrate.judge",
                "best_of_n needs a `judge` to pick the best candidate",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: vote, members: [ok, ok], quorum: 3, answer: number}\n",
                "models[1].orchestrate.quorum",
                "3 is more answers than the members give (2 members x 1 samples = 2)",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: vote, members: [ok], samples: 17, answer: number}\n",
                "models[1].orchestrate.samples",
                "must be between 1 and 16",
            ),
            (
                "  - name: m\n    orchestrate: {strategy: debate, members: [ok], rounds: 6}\n",
                "models[1].orchestrate.rounds",
                "must be between 1 and 5",
            ),
            (
                "  - name: m\n    targets: []\n",
                "models[1].targets",
                "needs at least one target",
            ),
        ];
        for (model, key, message) in cases {
            let err = config_err(&format!("{head}{model}"));
            assert!(err.contains(&format!("`{key}`")), "{model}: {err}");
            // The whole message: exactly the kinds given are named.
            assert!(err.ends_with(message), "{model}: {err}");
        }
        let cfg = from_yaml_str(head, &Overrides::default(), &|_| None).unwrap();
        assert_eq!(cfg.models[0].targets.len(), 1);
        let cfg = from_yaml_str(
            &format!("{head}  - name: auto\n    select: {{candidates: [ok], objective: cost, max_latency_ms: 900}}\n"),
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        let select = cfg.models[1].select.as_ref().unwrap();
        assert_eq!(select.candidates, ["ok"]);
        assert_eq!(select.objective, plexus_select::choose::Objective::Cost);
        assert_eq!(
            (select.cost_weight, select.explore, select.affinity),
            (0.5, 0.02, true)
        );
        assert_eq!(select.max_latency, Some(Duration::from_millis(900)));
        assert!(cfg.models[1].targets.is_empty());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("32MiB"), Some(32 * 1024 * 1024));
        assert_eq!(parse_size("1KB"), Some(1000));
        assert_eq!(parse_size("many"), None);
    }

    const ALIASED: &str = "providers: [{name: p, kind: openai}]\nmodels:\n  - name: gpt\n    targets: [{provider: p, model: x}]\n  - name: auto\n    select: {candidates: [gpt]}\n  - name: quiz\n    orchestrate: {strategy: vote, members: [gpt, gpt], answer: number}\n";

    #[test]
    fn aliases_parse_in_order_to_any_kind_of_model() {
        let cfg = from_yaml_str(
            &format!("{ALIASED}aliases:\n  claude-sonnet-4-5-20250929: gpt\n  \"claude-haiku-*\": quiz\n  \"claude-*\": auto\n  \"gpt-?\": gpt\n"),
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        let got: Vec<(&str, &str, bool)> = cfg
            .aliases
            .iter()
            .map(|a| (a.pattern.as_str(), a.target.as_str(), a.is_pattern()))
            .collect();
        assert_eq!(
            got,
            [
                ("claude-sonnet-4-5-20250929", "gpt", false),
                ("claude-haiku-*", "quiz", true),
                ("claude-*", "auto", true),
                ("gpt-?", "gpt", true),
            ]
        );
        assert_eq!(cfg.alias("claude-sonnet-4-5-20250929"), Some("gpt"));
        assert_eq!(cfg.alias("claude-haiku-4-5"), Some("quiz"));
        assert_eq!(cfg.alias("claude-opus-4"), Some("auto"));
        assert_eq!(cfg.alias("gpt-5"), Some("gpt"));
        assert_eq!(cfg.alias("gpt-55"), None);
        assert_eq!(cfg.alias("p/x"), None);
        // No `aliases:`, or an empty one, is no aliases.
        let cfg = from_yaml_str(ALIASED, &Overrides::default(), &|_| None).unwrap();
        assert!(cfg.aliases.is_empty());
        let cfg = from_yaml_str(
            &format!("{ALIASED}aliases: ~\n"),
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert!(cfg.aliases.is_empty());
        // Pattern order decides, exact names go first wherever they are listed.
        let cfg = from_yaml_str(
            &format!("{ALIASED}aliases:\n  \"claude-*\": auto\n  \"claude-haiku-*\": quiz\n  claude-haiku-3: gpt\n"),
            &Overrides::default(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.alias("claude-haiku-4"), Some("auto"));
        assert_eq!(cfg.alias("claude-haiku-3"), Some("gpt"));
    }

    #[test]
    fn alias_errors_name_the_key() {
        for (aliases, key, message) in [
            (
                "aliases:\n  \"claude-*\": nope\n",
                "aliases[\"claude-*\"]",
                "`nope` is not a configured model",
            ),
            (
                "aliases:\n  claude: p/x\n",
                "aliases[\"claude\"]",
                "`p/x` is not a configured model",
            ),
            (
                "aliases:\n  gpt: auto\n",
                "aliases[\"gpt\"]",
                "would never apply",
            ),
            ("aliases:\n  \"\": gpt\n", "aliases[\"\"]", "non-empty"),
            ("aliases:\n  claude: [gpt]\n", "aliases", "invalid type"),
            ("aliases: [gpt]\n", "aliases", "invalid type"),
        ] {
            let err = config_err(&format!("{ALIASED}{aliases}"));
            assert!(err.contains(&format!("`{key}")), "{aliases}: {err}");
            assert!(err.contains(message), "{aliases}: {err}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("claude-*", "claude-sonnet-4-5"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*sonnet*", "claude-sonnet-4-5"));
        assert!(glob_match("m?del", "model"));
        assert!(glob_match("m?del", "mödel"));
        assert!(!glob_match("claude-*", "gpt-4o"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("claude", "claude-x"));
    }
}
