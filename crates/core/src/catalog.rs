//! The model catalog: prices, context limits and capabilities of the models Plexus knows.
//!
//! The data lives in `catalog/models.json` at the repository root, generated from litellm's
//! MIT-licensed price file by `catalog/build_catalog.py` (see `catalog/README.md`). It is
//! compiled into the binary and parsed once, on first use, by [`Catalog::builtin`].
//!
//! Prices are US dollars per token. Lookups are tolerant of the usual spellings of a model
//! name (`provider/` prefixes, dated snapshots, `-latest` aliases), see [`Catalog::lookup`].

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The catalog data shipped with Plexus.
const BUILTIN_JSON: &str = include_str!("../../../catalog/models.json");

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelMode {
    /// Chat completions.
    Chat,
    /// Embeddings.
    Embedding,
    /// Any other mode a future catalog may contain.
    #[serde(other)]
    Other,
}

/// One model of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Plexus provider kind: `openai`, `anthropic`, `gemini`, `mistral`, `groq`, `deepseek`,
    /// `xai`, `together`, `fireworks`, `openrouter` or `ollama`.
    pub provider: String,
    /// The model name as sent to the provider's API.
    pub model: String,
    pub mode: ModelMode,
    /// USD per prompt token.
    pub input_cost_per_token: f64,
    /// USD per completion token.
    #[serde(default)]
    pub output_cost_per_token: f64,
    /// USD per prompt token read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_token_cost: Option<f64>,
    /// USD per prompt token written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_token_cost: Option<f64>,
    /// USD per reasoning token, when it differs from the completion price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cost_per_reasoning_token: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub supports_tools: bool,
    #[serde(default)]
    pub supports_vision: bool,
    #[serde(default)]
    pub supports_response_schema: bool,
    #[serde(default)]
    pub supports_reasoning: bool,
    #[serde(default)]
    pub supports_prompt_caching: bool,
}

impl ModelInfo {
    /// The cost in USD of one call.
    ///
    /// Follows the OpenAI usage convention: `cached_prompt_tokens` are part of
    /// `prompt_tokens` and are billed at `cache_read_input_token_cost` when the model has
    /// one; `reasoning_tokens` are part of `completion_tokens` and are billed at
    /// `output_cost_per_reasoning_token` when the model has one. Subsets larger than their
    /// totals are clamped to the totals.
    pub fn cost_usd(
        &self,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_prompt_tokens: u64,
        reasoning_tokens: u64,
    ) -> f64 {
        let cached = cached_prompt_tokens.min(prompt_tokens);
        let uncached = prompt_tokens - cached;
        let cached_rate = self
            .cache_read_input_token_cost
            .unwrap_or(self.input_cost_per_token);
        let reasoning = reasoning_tokens.min(completion_tokens);
        let visible = completion_tokens - reasoning;
        let reasoning_rate = self
            .output_cost_per_reasoning_token
            .unwrap_or(self.output_cost_per_token);
        uncached as f64 * self.input_cost_per_token
            + cached as f64 * cached_rate
            + visible as f64 * self.output_cost_per_token
            + reasoning as f64 * reasoning_rate
    }

    /// The cost in USD of writing `tokens` prompt tokens to the prompt cache (Anthropic
    /// reports these apart from `input_tokens`). Falls back to the input price.
    pub fn cache_creation_cost_usd(&self, tokens: u64) -> f64 {
        tokens as f64
            * self
                .cache_creation_input_token_cost
                .unwrap_or(self.input_cost_per_token)
    }

    /// Whether the prompt and completion prices are both zero (local or free models).
    pub fn is_free(&self) -> bool {
        self.input_cost_per_token == 0.0 && self.output_cost_per_token == 0.0
    }
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid catalog JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid catalog entry {provider}/{model}: {reason}")]
    InvalidEntry {
        provider: String,
        model: String,
        reason: &'static str,
    },
}

#[derive(Deserialize)]
struct RawCatalog {
    #[serde(default)]
    source: String,
    #[serde(default)]
    generated: String,
    models: Vec<ModelInfo>,
}

/// The set of known models, indexed by model name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    source: String,
    generated: String,
    models: Vec<ModelInfo>,
    /// Model name -> indexes into `models` (one per provider offering that name).
    by_name: HashMap<String, Vec<usize>>,
    /// Lower-cased model name -> indexes, the last resort of [`Catalog::lookup`].
    by_lower_name: HashMap<String, Vec<usize>>,
}

impl Catalog {
    /// The catalog compiled into Plexus, parsed on first use. Should the embedded data
    /// ever fail to parse, this is an empty catalog (a unit test guards against that).
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| Catalog::from_json(BUILTIN_JSON).unwrap_or_default())
    }

    /// Parses a catalog in the `catalog/models.json` format. When the same
    /// (provider, model) pair appears twice, the first entry wins.
    pub fn from_json(json: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(json)?;
        Catalog::from_models(raw.source, raw.generated, raw.models)
    }

    /// Builds a catalog from entries, validating prices.
    pub fn from_models(
        source: String,
        generated: String,
        entries: Vec<ModelInfo>,
    ) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog {
            source,
            generated,
            ..Catalog::default()
        };
        for info in entries {
            validate(&info)?;
            let duplicate = catalog.by_name.get(&info.model).is_some_and(|ids| {
                ids.iter()
                    .any(|&i| catalog.models[i].provider == info.provider)
            });
            if duplicate {
                continue;
            }
            let index = catalog.models.len();
            catalog
                .by_name
                .entry(info.model.clone())
                .or_default()
                .push(index);
            catalog
                .by_lower_name
                .entry(info.model.to_ascii_lowercase())
                .or_default()
                .push(index);
            catalog.models.push(info);
        }
        Ok(catalog)
    }

    /// Where the data comes from (e.g. `litellm 1.110.2 model_prices_and_context_window_backup.json (MIT)`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The date of the source data, `YYYY-MM-DD`.
    pub fn generated(&self) -> &str {
        &self.generated
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// All entries, in file order.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.iter()
    }

    /// Finds the entry for `model` as served by a provider of kind `provider_kind`.
    ///
    /// In order:
    /// 1. the exact (provider, model) pair;
    /// 2. the exact model name under any provider (the provider kind's fallbacks first:
    ///    `azure` and OpenAI-compatible kinds prefer the `openai` entries);
    /// 3. the same two steps for tolerant spellings of the name: without a `provider/`
    ///    prefix (`openai/gpt-4o` -> `gpt-4o`), without a date suffix (`-2024-08-06`,
    ///    `-20241022`), without `-latest`, without an Ollama `:tag`, and finally without a
    ///    4-digit snapshot suffix (`-0613`);
    /// 4. a case-insensitive match of those spellings.
    pub fn lookup(&self, provider_kind: &str, model: &str) -> Option<&ModelInfo> {
        let kinds = preferred_kinds(provider_kind);
        let candidates = candidate_names(model);
        for name in &candidates {
            if let Some(info) = self.pick(self.by_name.get(name.as_str()), &kinds) {
                return Some(info);
            }
        }
        for name in &candidates {
            let lower = name.to_ascii_lowercase();
            if let Some(info) = self.pick(self.by_lower_name.get(&lower), &kinds) {
                return Some(info);
            }
        }
        None
    }

    /// Among the entries sharing a name, the one of the first preferred kind, else the first.
    fn pick(&self, ids: Option<&Vec<usize>>, kinds: &[&str]) -> Option<&ModelInfo> {
        let ids = ids?;
        for kind in kinds {
            if let Some(info) = ids
                .iter()
                .filter_map(|&i| self.models.get(i))
                .find(|info| info.provider == *kind)
            {
                return Some(info);
            }
        }
        ids.first().and_then(|&i| self.models.get(i))
    }
}

fn validate(info: &ModelInfo) -> Result<(), CatalogError> {
    let invalid = |reason| CatalogError::InvalidEntry {
        provider: info.provider.clone(),
        model: info.model.clone(),
        reason,
    };
    if info.provider.is_empty() || info.model.is_empty() {
        return Err(invalid("empty provider or model"));
    }
    let prices = [
        Some(info.input_cost_per_token),
        Some(info.output_cost_per_token),
        info.cache_read_input_token_cost,
        info.cache_creation_input_token_cost,
        info.output_cost_per_reasoning_token,
    ];
    if prices
        .into_iter()
        .flatten()
        .any(|p| !p.is_finite() || p < 0.0)
    {
        return Err(invalid("prices must be finite and non-negative"));
    }
    Ok(())
}

/// The catalog provider kinds to prefer for a configured provider kind, best first.
fn preferred_kinds(provider_kind: &str) -> Vec<&str> {
    let kind = match provider_kind {
        "together_ai" | "togetherai" => "together",
        "fireworks_ai" | "fireworksai" => "fireworks",
        "google" | "google_ai_studio" | "gemini_api" => "gemini",
        "x-ai" | "grok" => "xai",
        "mistralai" => "mistral",
        other => other,
    };
    let mut kinds = vec![kind];
    let openai_compatible = matches!(
        kind,
        "azure"
            | "azure_openai"
            | "azure-openai"
            | "openai_compatible"
            | "openai-compatible"
            | "openai_compat"
            | "vllm"
            | "lmstudio"
            | "llamacpp"
            | "llama_cpp"
            | "litellm"
            | "custom"
    );
    if openai_compatible {
        kinds.push("openai");
    }
    kinds
}

/// The spellings of `model` to try, most specific first, without duplicates.
fn candidate_names(model: &str) -> Vec<String> {
    let mut bases: Vec<&str> = vec![model];
    if let Some((_, rest)) = model.split_once('/') {
        bases.push(rest);
    }
    if let Some((_, last)) = model.rsplit_once('/') {
        bases.push(last);
    }

    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    };
    for base in &bases {
        push(base);
    }
    for base in &bases {
        let no_latest = base.strip_suffix("-latest").unwrap_or(base);
        push(no_latest);
        let no_date = strip_date_suffix(no_latest);
        push(no_date);
        let no_tag = no_date.split_once(':').map_or(no_date, |(name, _)| name);
        push(no_tag);
    }
    for base in &bases {
        let no_latest = base.strip_suffix("-latest").unwrap_or(base);
        let no_date = strip_date_suffix(no_latest);
        push(strip_short_snapshot(no_date));
    }
    out
}

/// Strips `-YYYY-MM-DD` or `-YYYYMMDD`.
fn strip_date_suffix(name: &str) -> &str {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // -YYYY-MM-DD
    if bytes.len() > 11 {
        let tail = &bytes[bytes.len() - 11..];
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..11])
        {
            return &name[..name.len() - 11];
        }
    }
    // -YYYYMMDD
    if bytes.len() > 9 {
        let tail = &bytes[bytes.len() - 9..];
        if tail[0] == b'-' && digits(&tail[1..]) && (tail[1] == b'1' || tail[1] == b'2') {
            return &name[..name.len() - 9];
        }
    }
    name
}

/// Strips a 4-digit snapshot suffix such as `-0613` or `-2512`.
fn strip_short_snapshot(name: &str) -> &str {
    let bytes = name.as_bytes();
    if bytes.len() > 5 {
        let tail = &bytes[bytes.len() - 5..];
        if tail[0] == b'-' && tail[1..].iter().all(u8::is_ascii_digit) {
            return &name[..name.len() - 5];
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-9)
    }

    #[test]
    fn builtin_parses_and_is_not_empty() {
        // Parse directly so that a broken file fails with the serde error.
        let parsed = Catalog::from_json(BUILTIN_JSON).unwrap();
        assert!(parsed.len() > 100, "only {} models", parsed.len());
        let catalog = Catalog::builtin();
        assert!(!catalog.is_empty());
        assert_eq!(catalog.len(), parsed.len());
        assert!(catalog.source().contains("litellm"));
        assert!(catalog.source().contains("MIT"));
        assert_eq!(catalog.generated().len(), 10);
        assert_eq!(catalog.models().count(), catalog.len());
    }

    #[test]
    fn builtin_has_each_provider() {
        let catalog = Catalog::builtin();
        for kind in [
            "openai",
            "anthropic",
            "gemini",
            "mistral",
            "groq",
            "deepseek",
            "xai",
            "together",
            "fireworks",
            "ollama",
        ] {
            assert!(
                catalog.models().any(|m| m.provider == kind),
                "no {kind} models"
            );
        }
    }

    #[test]
    fn known_prices() {
        let catalog = Catalog::builtin();

        let m = catalog.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(m.provider, "openai");
        assert_eq!(m.mode, ModelMode::Chat);
        assert!(close(m.input_cost_per_token, 0.15e-6));
        assert!(close(m.output_cost_per_token, 0.6e-6));
        assert_eq!(m.cache_read_input_token_cost, Some(7.5e-8));
        assert_eq!(m.max_input_tokens, Some(128_000));
        assert_eq!(m.max_output_tokens, Some(16_384));
        assert!(m.supports_tools && m.supports_vision && m.supports_response_schema);

        let m = catalog.lookup("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!(m.provider, "anthropic");
        assert!(close(m.input_cost_per_token, 3e-6));
        assert!(close(m.output_cost_per_token, 15e-6));
        assert_eq!(m.cache_read_input_token_cost, Some(3e-7));
        assert_eq!(m.cache_creation_input_token_cost, Some(3.75e-6));
        assert_eq!(m.max_output_tokens, Some(64_000));
        assert!(m.supports_reasoning && m.supports_prompt_caching);

        let m = catalog.lookup("gemini", "gemini-2.5-flash").unwrap();
        assert_eq!(m.provider, "gemini");
        assert!(close(m.input_cost_per_token, 0.3e-6));
        assert!(close(m.output_cost_per_token, 2.5e-6));
        assert_eq!(m.output_cost_per_reasoning_token, Some(2.5e-6));
        assert_eq!(m.max_input_tokens, Some(1_048_576));

        let m = catalog.lookup("gemini", "gemini-2.5-pro").unwrap();
        assert!(close(m.input_cost_per_token, 1.25e-6));
        assert!(close(m.output_cost_per_token, 10e-6));

        let m = catalog.lookup("openai", "text-embedding-3-small").unwrap();
        assert_eq!(m.mode, ModelMode::Embedding);
        assert!(close(m.input_cost_per_token, 0.02e-6));
        assert_eq!(m.output_cost_per_token, 0.0);
        assert_eq!(m.max_input_tokens, Some(8191));

        let m = catalog.lookup("mistral", "mistral-embed").unwrap();
        assert_eq!(m.mode, ModelMode::Embedding);
        assert!(close(m.input_cost_per_token, 0.1e-6));

        let m = catalog.lookup("groq", "openai/gpt-oss-120b").unwrap();
        assert_eq!(m.provider, "groq");
        assert!(close(m.input_cost_per_token, 0.15e-6));
    }

    #[test]
    fn lookup_is_tolerant() {
        let catalog = Catalog::builtin();
        let base = catalog.lookup("openai", "gpt-4o-mini").unwrap();

        // Dated snapshots.
        let dated = catalog.lookup("openai", "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(dated.model, "gpt-4o-mini");
        let claude = catalog
            .lookup("anthropic", "claude-haiku-4-5-20251001")
            .unwrap();
        assert_eq!(claude.model, "claude-haiku-4-5");

        // `-latest`.
        let latest = catalog
            .lookup("anthropic", "claude-sonnet-4-5-latest")
            .unwrap();
        assert_eq!(latest.model, "claude-sonnet-4-5");

        // Provider prefixes (OpenRouter style and litellm style).
        let prefixed = catalog.lookup("openrouter", "openai/gpt-4o-mini").unwrap();
        assert_eq!(prefixed, base);
        let prefixed = catalog
            .lookup("openrouter", "anthropic/claude-sonnet-4-5-20250929")
            .unwrap();
        assert_eq!(prefixed.model, "claude-sonnet-4-5");
        let prefixed = catalog.lookup("gemini", "gemini/gemini-2.5-flash").unwrap();
        assert_eq!(prefixed.model, "gemini-2.5-flash");

        // Azure and OpenAI-compatible kinds fall back to the OpenAI entries.
        let azure = catalog.lookup("azure", "gpt-4o-mini").unwrap();
        assert_eq!(azure, base);
        let azure = catalog.lookup("azure", "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(azure, base);
        let compat = catalog
            .lookup("openai_compatible", "text-embedding-3-large")
            .unwrap();
        assert_eq!(compat.provider, "openai");

        // Case differences.
        let upper = catalog.lookup("openai", "GPT-4o-Mini").unwrap();
        assert_eq!(upper, base);

        // Ollama tags.
        let tagged = catalog.lookup("ollama", "llama3.1:8b").unwrap();
        assert_eq!(tagged.model, "llama3.1");
        assert!(tagged.is_free());

        assert!(catalog.lookup("openai", "no-such-model").is_none());
        assert!(catalog.lookup("openai", "").is_none());
    }

    #[test]
    fn provider_preference_for_shared_names() {
        let json = r#"{"source":"t","generated":"2026-01-01","models":[
            {"provider":"together","model":"openai/gpt-oss-120b","mode":"chat","input_cost_per_token":2e-7,"output_cost_per_token":8e-7},
            {"provider":"groq","model":"openai/gpt-oss-120b","mode":"chat","input_cost_per_token":1.5e-7,"output_cost_per_token":6e-7},
            {"provider":"openai","model":"gpt-x","mode":"chat","input_cost_per_token":1e-6,"output_cost_per_token":2e-6},
            {"provider":"mistral","model":"gpt-x","mode":"chat","input_cost_per_token":5e-6,"output_cost_per_token":6e-6},
            {"provider":"groq","model":"openai/gpt-oss-120b","mode":"chat","input_cost_per_token":9e-7,"output_cost_per_token":9e-7}
        ]}"#;
        let catalog = Catalog::from_json(json).unwrap();
        // The duplicate (groq, openai/gpt-oss-120b) is dropped: first wins.
        assert_eq!(catalog.len(), 4);
        let m = catalog.lookup("groq", "openai/gpt-oss-120b").unwrap();
        assert_eq!(m.provider, "groq");
        assert_eq!(m.input_cost_per_token, 1.5e-7);
        let m = catalog
            .lookup("together_ai", "openai/gpt-oss-120b")
            .unwrap();
        assert_eq!(m.provider, "together");
        // Unknown kind: first entry with that name.
        let m = catalog.lookup("someone", "openai/gpt-oss-120b").unwrap();
        assert_eq!(m.provider, "together");
        // Azure prefers OpenAI over another provider with the same name.
        let m = catalog.lookup("azure", "gpt-x").unwrap();
        assert_eq!(m.provider, "openai");
        let m = catalog.lookup("mistral", "gpt-x").unwrap();
        assert_eq!(m.provider, "mistral");
    }

    #[test]
    fn cost_arithmetic() {
        let info = ModelInfo {
            provider: "openai".into(),
            model: "m".into(),
            mode: ModelMode::Chat,
            input_cost_per_token: 2e-6,
            output_cost_per_token: 8e-6,
            cache_read_input_token_cost: Some(5e-7),
            cache_creation_input_token_cost: Some(2.5e-6),
            output_cost_per_reasoning_token: Some(1e-5),
            max_input_tokens: None,
            max_output_tokens: None,
            supports_tools: false,
            supports_vision: false,
            supports_response_schema: false,
            supports_reasoning: true,
            supports_prompt_caching: true,
        };
        // 1000 prompt tokens of which 400 cached; 500 completion tokens of which 200 reasoning.
        let cost = info.cost_usd(1000, 500, 400, 200);
        let expected = 600.0 * 2e-6 + 400.0 * 5e-7 + 300.0 * 8e-6 + 200.0 * 1e-5;
        assert!(close(cost, expected), "{cost} != {expected}");
        assert!(close(cost, 0.0058));

        // Without cache or reasoning prices, everything is billed at the plain rates.
        let plain = ModelInfo {
            cache_read_input_token_cost: None,
            output_cost_per_reasoning_token: None,
            ..info.clone()
        };
        assert!(close(
            plain.cost_usd(1000, 500, 400, 200),
            1000.0 * 2e-6 + 500.0 * 8e-6
        ));

        // Subsets larger than their totals are clamped.
        assert!(close(
            info.cost_usd(100, 10, 1000, 1000),
            100.0 * 5e-7 + 10.0 * 1e-5
        ));
        assert_eq!(info.cost_usd(0, 0, 0, 0), 0.0);
        assert!(close(info.cache_creation_cost_usd(1000), 1000.0 * 2.5e-6));

        // A real model: gpt-4o-mini, 1M prompt tokens (half cached) and 1M completion tokens.
        let mini = Catalog::builtin().lookup("openai", "gpt-4o-mini").unwrap();
        let cost = mini.cost_usd(1_000_000, 1_000_000, 500_000, 0);
        assert!(close(cost, 0.075 + 0.0375 + 0.6), "{cost}");
    }

    #[test]
    fn invalid_catalogs_are_rejected() {
        assert!(matches!(
            Catalog::from_json("not json"),
            Err(CatalogError::Json(_))
        ));
        let negative = r#"{"models":[{"provider":"openai","model":"m","mode":"chat","input_cost_per_token":-1,"output_cost_per_token":0}]}"#;
        assert!(matches!(
            Catalog::from_json(negative),
            Err(CatalogError::InvalidEntry { .. })
        ));
        let other_mode = r#"{"models":[{"provider":"openai","model":"m","mode":"rerank","input_cost_per_token":1e-6}]}"#;
        let catalog = Catalog::from_json(other_mode).unwrap();
        assert_eq!(
            catalog.lookup("openai", "m").unwrap().mode,
            ModelMode::Other
        );
        assert!(Catalog::default().is_empty());
    }

    #[test]
    fn candidate_spellings() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(
            strip_date_suffix("claude-3-5-sonnet-20241022"),
            "claude-3-5-sonnet"
        );
        assert_eq!(strip_date_suffix("gpt-4o"), "gpt-4o");
        assert_eq!(strip_date_suffix("qwen3-235b-a22b"), "qwen3-235b-a22b");
        assert_eq!(strip_short_snapshot("gpt-4-0613"), "gpt-4");
        assert_eq!(strip_short_snapshot("o3"), "o3");
        let names = candidate_names("openrouter/openai/gpt-4o-2024-08-06");
        assert_eq!(names[0], "openrouter/openai/gpt-4o-2024-08-06");
        assert!(names.contains(&"openai/gpt-4o-2024-08-06".to_string()));
        assert!(names.contains(&"gpt-4o".to_string()));
    }
}
