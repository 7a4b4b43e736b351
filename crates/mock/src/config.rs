//! Simulator configuration: defaults for every request plus per-model profiles.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Configuration of the simulator. Every field has a default, so `{}` is a valid file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// When set, every request must carry exactly this key (in the header its API uses).
    /// When unset, any non-empty key is accepted.
    pub require_key: Option<String>,
    /// Delay before the response head of every request, in milliseconds.
    pub latency_ms: u64,
    /// Delay before the first streamed chunk, in milliseconds.
    pub ttft_ms: u64,
    /// Random extra delay, uniform in `0..=latency_jitter_ms`, added to both delays above (drawn
    /// per request), so latency is a distribution rather than a constant.
    pub latency_jitter_ms: u64,
    /// Stream pacing; unset sends every chunk at once.
    pub tokens_per_second: Option<f64>,
    /// Words in a default answer.
    pub tokens: u32,
    /// Dimensions of an embedding when the request does not say.
    pub embedding_dimensions: u32,
    /// Keep the last `record_limit` requests for [`crate::MockServer::requests`]. Off for
    /// load tests that do not need them.
    pub record_requests: bool,
    pub record_limit: usize,
    /// Model ids listed by `GET /v1/models` and `GET /v1beta/models`.
    pub models: Vec<String>,
    /// Per-model settings; the first profile whose pattern matches the model name applies.
    pub profiles: Vec<ModelProfile>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            require_key: None,
            latency_ms: 0,
            ttft_ms: 0,
            latency_jitter_ms: 0,
            tokens_per_second: None,
            tokens: 12,
            embedding_dimensions: 16,
            record_requests: true,
            record_limit: 1000,
            models: [
                "mock-model",
                "echo",
                "tool",
                "tool-parallel",
                "json",
                "think",
                "mock-embedding",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            profiles: Vec::new(),
        }
    }
}

impl MockConfig {
    /// Reads a YAML or JSON file (YAML is a superset of JSON).
    pub fn from_file(path: &Path) -> std::io::Result<MockConfig> {
        let text = std::fs::read_to_string(path)?;
        Self::from_yaml(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    pub fn from_yaml(text: &str) -> Result<MockConfig, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(MockConfig::default());
        }
        serde_yaml::from_str(text)
    }
}

/// Settings applied to the models whose name matches `model`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelProfile {
    /// Glob pattern over the whole model name: `*` matches any run of characters, `?` one.
    pub model: String,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub latency_jitter_ms: Option<u64>,
    pub tokens_per_second: Option<f64>,
    pub tokens: Option<u32>,
    pub cached_tokens: Option<u32>,
    /// A fault in the `x-mock-fault` header syntax: `429;retry-after=2`, `timeout`, `reset`,
    /// `malformed`, `cut-after=3`, `stall-after=2`, `fail-first=2`, `500`.
    pub fault: Option<String>,
}

/// Glob match with `*` and `?`, iterative so that long names cannot blow the stack.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
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
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("gpt-*", "gpt-4o"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*slow*", "very-slow-model"));
        assert!(glob_match("m?del", "model"));
        assert!(!glob_match("gpt-*", "claude"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn parses_yaml_and_json() {
        let cfg = MockConfig::from_yaml(
            "require_key: k\nprofiles:\n  - model: 'slow*'\n    latency_ms: 20\n    fault: '429;retry-after=1'\n",
        )
        .unwrap();
        assert_eq!(cfg.require_key.as_deref(), Some("k"));
        assert_eq!(cfg.tokens, 12);
        assert_eq!(cfg.profiles[0].latency_ms, Some(20));
        let cfg = MockConfig::from_yaml(r#"{"tokens": 3, "profiles": [{"model": "x"}]}"#).unwrap();
        assert_eq!(cfg.tokens, 3);
        assert!(MockConfig::from_yaml("bogus_field: 1").is_err());
        assert_eq!(MockConfig::from_yaml("").unwrap(), MockConfig::default());
    }
}
