//! The runtime snapshot derived from one [`Config`]: provider handles with prebuilt headers,
//! the model table and the master key hash. Requests load it once; SIGHUP swaps a new one in
//! atomically while in-flight requests finish on the old one.

use crate::error::StartupError;
use crate::metrics::TargetMetrics;
use plexus_auth::jwt::{ClaimNames, JwtConfig, JwtValidator};
use plexus_auth::vault::{self, Kek, SealedSecret};
use plexus_core::catalog::{Catalog, ModelInfo};
use plexus_core::config::{Balance, Config, FailureClass, JwksSource};
use plexus_core::{ApiError, ErrorCode};
use plexus_limits::rate::{Quota, Subject};
use plexus_protocol::money::Nanos;
use plexus_protocol::openai::Usage;
use plexus_providers::client::ProviderHandle;
use plexus_providers::client::UpstreamClient;
use plexus_router::health::{HealthConfig, TargetHealth};
use plexus_select::requirements::Capabilities;
use plexus_store::{CredentialRecord, Store};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub providers: Vec<Arc<ProviderHandle>>,
    models: HashMap<String, ModelRoute>,
    /// The `select` models, by name.
    selectors: HashMap<String, Arc<crate::select::SelectRoute>>,
    /// Orchestration models by name.
    orchestrations: HashMap<String, Arc<OrchestrationRoute>>,
    /// Metric handles for `provider/model` requests, per provider.
    direct: HashMap<String, Arc<TargetMetrics>>,
    /// SHA-256 of the master key, compared in constant time.
    pub master_key_hash: Option<[u8; 32]>,
    /// Validator of identity-provider tokens, when `jwt` is configured.
    pub jwt: Option<Arc<JwtValidator>>,
    /// The config's global limits (scope `global`), if any.
    pub global_limit: Option<Arc<Subject>>,
}

/// Decrypts the active credentials, grouped by provider. Stored credentials without the
/// key-encryption key, or under another one, stop the start-up with a clear error. (Expiring
/// credentials are reported by the housekeeping pass, once.)
fn open_credentials(
    records: &[CredentialRecord],
    vault: Option<&Kek>,
    now_ms: i64,
) -> Result<HashMap<String, Vec<SecretString>>, StartupError> {
    let mut out: HashMap<String, Vec<SecretString>> = HashMap::new();
    for r in records {
        if r.retired_at.is_some() || r.expires_at.is_some_and(|e| e <= now_ms) {
            continue;
        }
        let Some(kek) = vault else {
            return Err(StartupError::Credentials(
                "provider credentials are stored in the database, but no key-encryption key is configured: set PLEXUS_ENCRYPTION_KEY or vault.key_file".into(),
            ));
        };
        let sealed: SealedSecret = serde_json::from_str(&r.sealed)
            .map_err(|_| StartupError::Credentials(format!("credential {} is corrupt", r.id)))?;
        let secret = vault::open(kek, &r.id, &sealed)
            .map_err(|e| StartupError::Credentials(format!("credential {}: {e}", r.id)))?;
        out.entry(r.provider.clone()).or_default().push(secret);
    }
    Ok(out)
}

/// An orchestration model: its settings and the calibration map of its confidence.
#[derive(Debug, Clone)]
pub struct OrchestrationRoute {
    pub config: plexus_core::orchestrate::OrchestrateConfig,
    pub calibrator: Option<plexus_orchestrate::Calibrator>,
}

/// Reads a calibration map (`plexus orchestrate calibrate` writes it).
fn load_calibrator(path: &std::path::Path) -> Result<plexus_orchestrate::Calibrator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a calibration map: {e}", path.display()))
}

/// What a target's tokens cost: the config's `price`, else the catalog's.
#[derive(Debug, Clone, Copy)]
pub enum Pricing {
    Config(plexus_core::config::Price),
    Catalog(&'static ModelInfo),
}

impl Pricing {
    /// What `usage` costs: computed in dollars from per-token prices, then rounded once, to the
    /// nearest nano-dollar (so a 10-token embedding at $0.02 per million tokens is 200 nanos).
    pub fn cost(&self, usage: &Usage) -> Nanos {
        Nanos::from_usd(match self {
            Pricing::Config(p) => p.cost_usd(
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens(),
            ),
            Pricing::Catalog(m) => m.cost_usd(
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens(),
                usage.reasoning_tokens(),
            ),
        })
    }

    /// Input and output averaged, per million tokens (for `balance: cost`).
    fn per_mtok(&self) -> f64 {
        match self {
            Pricing::Config(p) => (p.input_per_mtok + p.output_per_mtok) * 0.5,
            Pricing::Catalog(m) => (m.input_cost_per_token + m.output_cost_per_token) * 0.5e6,
        }
    }
}

/// One place a model can be served from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The configured model it serves (`provider/model` when addressed directly).
    pub model: Arc<str>,
    pub provider: Arc<ProviderHandle>,
    pub upstream_model: Arc<str>,
    pub metrics: Arc<TargetMetrics>,
    /// In-flight count, latency and circuit breaker; kept across config reloads.
    pub health: Arc<TargetHealth>,
    pub weight: u32,
    /// The provider account's limits on this target (scope `target`), if any.
    pub limit: Option<Arc<Subject>>,
    /// Price per million tokens (input and output averaged), for `balance: cost`.
    pub price_per_mtok: Option<f64>,
    /// What its tokens cost; `None` when neither the config nor the catalog knows.
    pub pricing: Option<Pricing>,
    /// Catalog context window in tokens.
    pub context_window: Option<u32>,
    /// The catalog's entry for the upstream model, if any.
    pub info: Option<&'static ModelInfo>,
    /// What it can do (the catalog's, with the config's `capabilities:` over it), for the
    /// selector.
    pub capabilities: Capabilities,
}

impl Target {
    /// `provider/upstream_model`, as shown in `x-plexus-served-by`.
    pub fn served_by(&self) -> String {
        format!("{}/{}", self.provider.name(), self.upstream_model)
    }

    /// The cost of `usage` on this target; `None` when its price is unknown.
    pub fn cost(&self, usage: &Usage) -> Option<Nanos> {
        self.pricing.map(|p| p.cost(usage))
    }

    /// The catalog's largest output, when it knows the model.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.info.and_then(|m| m.max_output_tokens)
    }

    fn new(
        model: &str,
        provider: Arc<ProviderHandle>,
        upstream_model: &str,
        metrics: Arc<TargetMetrics>,
        health: Arc<TargetHealth>,
        price: Option<plexus_core::config::Price>,
    ) -> Target {
        let info = Catalog::builtin().lookup(provider.kind().as_str(), upstream_model);
        let pricing = price.map(Pricing::Config).or(info.map(Pricing::Catalog));
        Target {
            model: Arc::from(model),
            provider,
            upstream_model: Arc::from(upstream_model),
            metrics,
            health,
            weight: 1,
            limit: None,
            price_per_mtok: pricing.map(|p| p.per_mtok()),
            pricing,
            context_window: info.and_then(|m| m.max_input_tokens),
            info,
            capabilities: info.map_or_else(Capabilities::default, |m| Capabilities {
                tools: Some(m.supports_tools),
                vision: Some(m.supports_vision),
                json_schema: Some(m.supports_response_schema),
                reasoning: Some(m.supports_reasoning),
                context_window: m.max_input_tokens.map(u64::from),
            }),
        }
    }
}

/// A model name and how it is served: its targets, how they share traffic, what it falls
/// back to, and its own limits.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    pub balance: Balance,
    pub fallbacks: Vec<String>,
    pub fallback_on: Vec<FailureClass>,
    /// Limits on the model across callers (scope `model`), if any.
    pub limit: Option<Arc<Subject>>,
    /// How the model is served (its targets' kinds, endpoints and upstream models, in order):
    /// part of every cache key, so a change of target or version invalidates its entries.
    pub fingerprint: Arc<str>,
}

fn fingerprint(targets: &[Target]) -> Arc<str> {
    let mut s = String::new();
    for t in targets {
        let c = &t.provider.config;
        s.push_str(c.kind.as_str());
        s.push('|');
        s.push_str(&c.base_url);
        s.push('|');
        s.push_str(&t.upstream_model);
        s.push(';');
    }
    Arc::from(s)
}

impl ModelRoute {
    /// The largest context window among the targets (catalog figures).
    pub fn context_window(&self) -> Option<u32> {
        self.targets.iter().filter_map(|t| t.context_window).max()
    }
}

fn quota_of(l: &plexus_core::config::RateLimits) -> Quota {
    Quota {
        rpm: l.rpm,
        tpm: l.tpm,
        tpd: l.tpd,
        max_parallel: l.max_parallel,
    }
}

/// The health settings every target starts with.
pub fn health_config(config: &Config) -> HealthConfig {
    let b = &config.breaker;
    HealthConfig {
        breaker: plexus_router::breaker::BreakerConfig {
            consecutive_failures: b.consecutive_failures,
            failure_rate: b.failure_rate,
            min_requests: b.min_requests,
            window: b.window,
            cooldown: b.cooldown,
            ..Default::default()
        },
        ..HealthConfig::default()
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Runtime {
    /// Builds the snapshot: fetches the identity provider's keys when they come from a URL, and
    /// opens the provider credentials stored in the vault (which needs the key-encryption key).
    pub async fn load(
        config: Config,
        client: &UpstreamClient,
        store: &Store,
        vault: Option<&Kek>,
    ) -> Result<Runtime, StartupError> {
        let jwks = match config.jwt.as_ref().map(|j| &j.jwks) {
            Some(JwksSource::Url(url)) => Some(client.fetch_text(url).await.map_err(|e| {
                StartupError::setting(
                    "jwt.jwks_url",
                    format!("cannot fetch the JWKS from {url}: {e}"),
                )
            })?),
            _ => None,
        };
        let records = store.list_credentials().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let credentials = open_credentials(&records, vault, now)?;
        Runtime::build(config, jwks, credentials)
    }

    /// Builds the snapshot from the config alone (no vault; a JWKS URL is an error).
    pub fn new(config: Config) -> Result<Runtime, StartupError> {
        Runtime::build(config, None, HashMap::new())
    }

    fn build(
        config: Config,
        fetched_jwks: Option<String>,
        mut credentials: HashMap<String, Vec<SecretString>>,
    ) -> Result<Runtime, StartupError> {
        let jwt = match &config.jwt {
            None => None,
            Some(settings) => {
                let jwks = match (&settings.jwks, fetched_jwks) {
                    (_, Some(text)) => text,
                    (JwksSource::File(path), None) => {
                        std::fs::read_to_string(path).map_err(|e| {
                            StartupError::setting(
                                "jwt.jwks_file",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?
                    }
                    (JwksSource::Url(url), None) => {
                        return Err(StartupError::setting(
                            "jwt.jwks_url",
                            format!("the JWKS at {url} must be fetched first (Runtime::load)"),
                        ))
                    }
                };
                let mut cfg = JwtConfig::new(settings.issuer.clone(), settings.audience.clone());
                cfg.claims = ClaimNames {
                    user: settings.user_claim.clone(),
                    team: settings.team_claim.clone(),
                    role: settings.role_claim.clone(),
                };
                cfg.leeway_secs = settings.leeway_secs;
                let validator = JwtValidator::from_jwks_json(&jwks, cfg)
                    .map_err(|e| StartupError::setting("jwt", e.to_string()))?;
                Some(Arc::new(validator))
            }
        };
        // Metric handles are registered below: the recorder must exist first.
        crate::metrics::install();
        let mut providers = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let handle = match credentials.remove(&p.name) {
                Some(secrets) => ProviderHandle::with_credentials(p.clone(), secrets),
                None => ProviderHandle::new(p.clone()),
            }?;
            providers.push(handle);
        }
        for unknown in credentials.keys() {
            tracing::warn!(message = "Stored credentials name a provider that is not configured.", provider = %unknown);
        }
        let health = health_config(&config);
        let mut models = HashMap::with_capacity(config.models.len());
        let mut selectors = HashMap::new();
        let mut orchestrations = HashMap::new();
        for (i, m) in config.models.iter().enumerate() {
            if let Some(o) = &m.orchestrate {
                let calibrator = match &o.calibration {
                    None => None,
                    Some(path) => Some(load_calibrator(path).map_err(|e| {
                        StartupError::setting(format!("models[{i}].orchestrate.calibration"), e)
                    })?),
                };
                orchestrations.insert(
                    m.name.clone(),
                    Arc::new(OrchestrationRoute {
                        config: o.clone(),
                        calibrator,
                    }),
                );
                continue;
            }
            if let Some(select) = &m.select {
                selectors.insert(
                    m.name.clone(),
                    Arc::new(crate::select::SelectRoute::new(i, &m.name, select)?),
                );
                continue;
            }
            let targets: Vec<Target> = m
                .targets
                .iter()
                .filter_map(|t| {
                    providers.get(t.provider).map(|p| {
                        let mut target = Target::new(
                            &m.name,
                            p.clone(),
                            &t.model,
                            Arc::new(TargetMetrics::new(&m.name, p.name())),
                            Arc::new(TargetHealth::new(health)),
                            t.price,
                        );
                        target.weight = t.weight;
                        target.capabilities = target.capabilities.overridden_by(&t.capabilities);
                        let quota = Quota {
                            rpm: t.rpm,
                            tpm: t.tpm,
                            ..Quota::default()
                        };
                        if !quota.is_empty() {
                            target.limit =
                                Some(Arc::new(Subject::new("target", target.served_by(), quota)));
                        }
                        target
                    })
                })
                .collect();
            let quota = quota_of(&m.limits);
            models.insert(
                m.name.clone(),
                ModelRoute {
                    name: Arc::from(m.name.as_str()),
                    fingerprint: fingerprint(&targets),
                    targets,
                    balance: m.balance,
                    fallbacks: m.fallbacks.clone(),
                    fallback_on: m.fallback_on.clone(),
                    limit: (!quota.is_empty())
                        .then(|| Arc::new(Subject::new("model", m.name.clone(), quota))),
                },
            );
        }
        let direct = providers
            .iter()
            .map(|p| {
                let label = format!("{}/*", p.name());
                (
                    p.name().to_owned(),
                    Arc::new(TargetMetrics::new(&label, p.name())),
                )
            })
            .collect();
        let global_quota = quota_of(&config.limits.global);
        let global_limit = (!global_quota.is_empty())
            .then(|| Arc::new(Subject::new("global", "all", global_quota)));
        let master_key_hash = config
            .master_key
            .as_ref()
            .map(|k| hash_key(k.expose_secret()));
        Ok(Runtime {
            config: Arc::new(config),
            providers,
            models,
            selectors,
            orchestrations,
            direct,
            global_limit,
            master_key_hash,
            jwt,
        })
    }

    /// The configured model that `name` stands for: a configured model name is itself; else an
    /// alias (`aliases:`; exact names before patterns, patterns in config order) is its target;
    /// anything else (`provider/model`, unknown names) comes back unchanged. Never allocates;
    /// without aliases there is no lookup at all.
    pub fn canonical_model<'a>(&'a self, name: &'a str) -> Cow<'a, str> {
        if self.config.aliases.is_empty() || self.is_configured(name) {
            return Cow::Borrowed(name);
        }
        Cow::Borrowed(self.config.alias(name).unwrap_or(name))
    }

    /// Whether `name` is a configured model of any kind.
    fn is_configured(&self, name: &str) -> bool {
        self.models.contains_key(name)
            || self.selectors.contains_key(name)
            || self.orchestrations.contains_key(name)
    }

    /// Resolves what the client sent as `model`: a configured model name wins; otherwise
    /// `provider/upstream_model` when the prefix before the first `/` is a configured provider.
    pub fn resolve(&self, model: &str) -> Result<Cow<'_, ModelRoute>, ApiError> {
        if let Some(route) = self.models.get(model) {
            return Ok(Cow::Borrowed(route));
        }
        if let Some((prefix, rest)) = model.split_once('/') {
            if !rest.is_empty() {
                if let Some(p) = self.providers.iter().find(|p| p.name() == prefix) {
                    // Direct addressing: one metric series per provider, whatever names
                    // clients send. No breaker memory: one bad model name must not open the
                    // provider's breaker for every other name, and a record per name sent
                    // would grow without bound.
                    let metrics = self
                        .direct
                        .get(prefix)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(TargetMetrics::new("direct", prefix)));
                    let health = Arc::new(TargetHealth::new(health_config(&self.config)));
                    let targets = vec![Target::new(model, p.clone(), rest, metrics, health, None)];
                    return Ok(Cow::Owned(ModelRoute {
                        name: Arc::from(model),
                        fingerprint: fingerprint(&targets),
                        targets,
                        balance: Balance::default(),
                        fallbacks: Vec::new(),
                        fallback_on: Vec::new(),
                        limit: None,
                    }));
                }
            }
        }
        Err(
            ApiError::new(ErrorCode::ModelNotFound, self.unknown_model_message(model))
                .with_param("model"),
        )
    }

    /// What a client that named an unknown model is told: where the list is, and the closest
    /// configured names (a typo is the usual cause).
    fn unknown_model_message(&self, model: &str) -> String {
        let mut close: Vec<(f64, &str)> = self
            .config
            .models
            .iter()
            .map(|m| (strsim::jaro_winkler(model, &m.name), m.name.as_str()))
            .filter(|(score, _)| *score >= 0.8)
            .collect();
        close.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut text = format!(
            "The model `{model}` does not exist or you do not have access to it; `GET /v1/models` lists the models."
        );
        if !close.is_empty() {
            let names: Vec<String> = close
                .iter()
                .take(3)
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            text.push_str(&format!(" Did you mean {}?", names.join(" or ")));
        }
        text
    }

    /// Keeps the health (breaker state, latency, in-flight counts) of targets that are still
    /// configured the same way, so a reload does not close open breakers or forget latency.
    pub fn inherit_health(&mut self, old: &Runtime) {
        let mut known: HashMap<(String, String), Arc<TargetHealth>> = HashMap::new();
        for route in old.models.values() {
            for t in &route.targets {
                known.insert((route.name.to_string(), t.served_by()), t.health.clone());
            }
        }
        if old.config.breaker != self.config.breaker {
            return;
        }
        for route in self.models.values_mut() {
            for t in &mut route.targets {
                if let Some(h) = known.get(&(route.name.to_string(), t.served_by())) {
                    t.health = h.clone();
                }
            }
        }
    }

    /// The `select` model of that name, if it is one.
    pub fn selector(&self, model: &str) -> Option<&Arc<crate::select::SelectRoute>> {
        if self.selectors.is_empty() {
            return None;
        }
        self.selectors.get(model)
    }

    /// The orchestration model of that name, if it is one.
    pub fn orchestration(&self, model: &str) -> Option<&Arc<OrchestrationRoute>> {
        if self.orchestrations.is_empty() {
            return None;
        }
        self.orchestrations.get(model)
    }

    /// Whether any `select` model is configured.
    pub fn has_selectors(&self) -> bool {
        !self.selectors.is_empty()
    }

    /// Configured model names in config order.
    pub fn model_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.config.models.iter().map(|m| {
            let owner = m
                .targets
                .first()
                .and_then(|t| self.config.providers.get(t.provider))
                .map(|p| p.name.as_str())
                // A `select` model is the gateway's own.
                .unwrap_or("plexus");
            (m.name.as_str(), owner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::config::{from_yaml_str, Overrides};

    fn runtime(yaml: &str) -> Runtime {
        Runtime::new(from_yaml_str(yaml, &Overrides::default(), &|_| None).unwrap()).unwrap()
    }

    #[test]
    fn configured_name_wins_then_provider_prefix() {
        let rt = runtime(
            "providers: [{name: oai, kind: openai, api_key: k}, {name: tg, kind: openai-compatible, preset: together}]\n\
             models: [{name: oai/special, targets: [{provider: tg, model: x}]}]",
        );
        let t = rt.resolve("oai/special").unwrap().targets.clone();
        assert_eq!(t[0].provider.name(), "tg");
        let t = rt.resolve("oai/gpt-4o").unwrap().targets.clone();
        assert_eq!(
            (t[0].provider.name(), &*t[0].upstream_model),
            ("oai", "gpt-4o")
        );
        // Upstream names with slashes are split at the first one only.
        let t = rt
            .resolve("tg/meta-llama/Llama-3-70b")
            .unwrap()
            .targets
            .clone();
        assert_eq!(&*t[0].upstream_model, "meta-llama/Llama-3-70b");
        let err = rt.resolve("nope/x").unwrap_err();
        assert_eq!(err.code, ErrorCode::ModelNotFound);
        assert!(err.message.contains("GET /v1/models"), "{}", err.message);
        let err = rt.resolve("oai-special").unwrap_err();
        assert!(
            err.message.contains("Did you mean `oai/special`?"),
            "{}",
            err.message
        );
        assert_eq!(err.status(), 404);
        assert!(rt.resolve("oai/").is_err());
    }

    #[test]
    fn aliases_come_after_configured_names_and_before_provider_models() {
        let rt = runtime(
            "providers: [{name: oai, kind: openai, api_key: k}]\n\
             models:\n\
             - {name: claude-x, targets: [{provider: oai, model: a}]}\n\
             - {name: local, targets: [{provider: oai, model: b}]}\n\
             - {name: flash, targets: [{provider: oai, model: c}]}\n\
             - {name: auto, select: {candidates: [local, flash]}}\n\
             aliases:\n  \
               \"claude-*\": auto\n  \
               \"claude-haiku-*\": flash\n  \
               claude-haiku-3: local\n  \
               \"oai/gpt-?\": local\n",
        );
        let canon = |name: &str| rt.canonical_model(name).into_owned();
        // A configured name beats any pattern that matches it.
        assert_eq!(canon("claude-x"), "claude-x");
        assert_eq!(canon("local"), "local");
        // An exact alias beats patterns, wherever it is listed.
        assert_eq!(canon("claude-haiku-3"), "local");
        // Patterns apply in config order: `claude-*` is listed first.
        assert_eq!(canon("claude-haiku-4-5"), "auto");
        assert_eq!(canon("claude-sonnet-4-5-20250929"), "auto");
        // An alias beats `provider/model`; without a matching alias it still works.
        assert_eq!(canon("oai/gpt-5"), "local");
        assert_eq!(canon("oai/gpt-4o"), "oai/gpt-4o");
        let t = rt.resolve(&canon("oai/gpt-4o")).unwrap().targets.clone();
        assert_eq!(
            (t[0].provider.name(), &*t[0].upstream_model),
            ("oai", "gpt-4o")
        );
        let t = rt.resolve(&canon("oai/gpt-5")).unwrap().targets.clone();
        assert_eq!(&*t[0].upstream_model, "b");
        // Unknown names are unchanged (and then not found).
        assert_eq!(canon("gemini-pro"), "gemini-pro");
        assert!(rt.resolve(&canon("gemini-pro")).is_err());
        // What a name stands for resolves to that model's route.
        assert_eq!(
            &*rt.resolve(&canon("claude-haiku-3")).unwrap().name,
            "local"
        );
        assert!(rt.selector(&canon("claude-opus-4")).is_some());
    }

    #[test]
    fn without_aliases_names_are_borrowed_unchanged() {
        let rt = runtime(
            "providers: [{name: oai, kind: openai, api_key: k}]\n\
             models: [{name: gpt, targets: [{provider: oai, model: x}]}]",
        );
        for name in ["gpt", "claude-sonnet-4-5-20250929", "oai/gpt-4o"] {
            let c = rt.canonical_model(name);
            assert!(matches!(c, Cow::Borrowed(b) if std::ptr::eq(b, name)));
        }
    }
}
