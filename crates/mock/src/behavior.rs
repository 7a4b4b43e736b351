//! Per-request knobs: config defaults, then the matching profile, then the model name's
//! directives, then the `x-mock-*` headers, each layer overriding the one before.

use http::HeaderMap;

use crate::config::{glob_match, MockConfig};
use crate::quiz::QuizKnobs;

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer with this status and a provider-shaped error body.
    Status(u16),
    /// Never answer; wait until the client goes away.
    Timeout,
    /// Drop the TCP connection without a response.
    Reset,
    /// 200 with an invalid JSON body, or an invalid `data:` line in a stream.
    Malformed,
    /// Stream this many content chunks, then close the connection mid-body.
    CutAfter(u32),
    /// Stream this many content chunks, then hang.
    StallAfter(u32),
}

/// Most words an answer may have.
pub(crate) const MAX_TOKENS: u32 = 100_000;
const MIN_TPS: f64 = 0.001;
const MAX_TPS: f64 = 1e9;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Knobs {
    pub latency_ms: u64,
    pub ttft_ms: u64,
    /// Upper bound of the uniform extra delay drawn per request (see `sample_jitter`).
    pub jitter_ms: u64,
    pub tokens_per_second: Option<f64>,
    pub tokens: u32,
    pub cached_tokens: u32,
    pub fault: Option<Fault>,
    pub retry_after: Option<u64>,
    pub fail_first: Option<u32>,
    /// The model's context window in tokens: longer prompts get the provider's
    /// context-length error.
    pub context: Option<u32>,
    /// The `quiz` family's `acc-P`, `corr-P` and `wrong-K`.
    pub quiz: QuizKnobs,
    /// The `+agent` directive: the agent behaviour on any model name.
    pub agent: bool,
}

impl Knobs {
    pub fn resolve(config: &MockConfig, model: &str, headers: &HeaderMap) -> Knobs {
        let mut k = Knobs {
            latency_ms: config.latency_ms,
            ttft_ms: config.ttft_ms,
            jitter_ms: config.latency_jitter_ms,
            tokens_per_second: config.tokens_per_second,
            tokens: config.tokens,
            cached_tokens: 0,
            fault: None,
            retry_after: None,
            fail_first: None,
            context: None,
            quiz: QuizKnobs::default(),
            agent: false,
        };
        if let Some(p) = config.profiles.iter().find(|p| glob_match(&p.model, model)) {
            set(&mut k.latency_ms, p.latency_ms);
            set(&mut k.ttft_ms, p.ttft_ms);
            set(&mut k.jitter_ms, p.latency_jitter_ms);
            if p.tokens_per_second.is_some() {
                k.tokens_per_second = p.tokens_per_second;
            }
            set(&mut k.tokens, p.tokens);
            set(&mut k.cached_tokens, p.cached_tokens);
            if let Some(f) = &p.fault {
                k.apply_fault_spec(f);
            }
        }
        for d in model.split('+').skip(1) {
            k.apply_directive(d);
        }
        if !headers.is_empty() {
            k.apply_headers(headers);
        }
        k.sanitize();
        k.sample_jitter();
        k
    }

    /// Turns the jitter bound into this request's extra delay.
    fn sample_jitter(&mut self) {
        if self.jitter_ms > 0 {
            use rand::Rng;
            let mut rng = rand::rng();
            self.latency_ms = self
                .latency_ms
                .saturating_add(rng.random_range(0..=self.jitter_ms));
            self.ttft_ms = self
                .ttft_ms
                .saturating_add(rng.random_range(0..=self.jitter_ms));
        }
    }

    /// Bounds that keep a silly value from allocating gigabytes or overflowing a duration.
    fn sanitize(&mut self) {
        self.tokens = self.tokens.min(MAX_TOKENS);
        self.tokens_per_second = self
            .tokens_per_second
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(|t| t.clamp(MIN_TPS, MAX_TPS));
        self.quiz.sanitize();
    }

    fn apply_headers(&mut self, headers: &HeaderMap) {
        let k = self;
        if let Some(v) = header_num(headers, "x-mock-latency-ms") {
            k.latency_ms = v;
        }
        if let Some(v) = header_num(headers, "x-mock-latency-jitter-ms") {
            k.jitter_ms = v;
        }
        if let Some(v) = header_num(headers, "x-mock-ttft-ms") {
            k.ttft_ms = v;
        }
        if let Some(v) = header_str(headers, "x-mock-tokens-per-second") {
            if let Some(tps) = parse_tps(v) {
                k.tokens_per_second = Some(tps);
            }
        }
        if let Some(v) = header_num(headers, "x-mock-tokens") {
            k.tokens = clamp_u32(v);
        }
        if let Some(v) = header_num(headers, "x-mock-cached-tokens") {
            k.cached_tokens = clamp_u32(v);
        }
        if let Some(v) = header_str(headers, "x-mock-fault") {
            k.apply_fault_spec(v);
        }
    }

    /// The header syntax: `429;retry-after=2`, `cut-after=3`, `timeout`, `500`.
    pub fn apply_fault_spec(&mut self, spec: &str) {
        for item in spec.split([';', ',']) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if item.bytes().all(|b| b.is_ascii_digit()) {
                self.apply_directive(&format!("fault-{item}"));
            } else if let Some((key, value)) = item.split_once('=') {
                self.apply_directive(&format!("{}-{}", key.trim(), value.trim()));
            } else {
                self.apply_directive(item);
            }
        }
    }

    /// One `+`-separated directive of a model name. Unknown ones are ignored so that any
    /// model name works.
    pub fn apply_directive(&mut self, d: &str) {
        let d = d.trim().to_ascii_lowercase();
        match d.as_str() {
            "timeout" => self.fault = Some(Fault::Timeout),
            "reset" => self.fault = Some(Fault::Reset),
            "malformed" => self.fault = Some(Fault::Malformed),
            "agent" => self.agent = true,
            _ => {}
        }
        let Some((key, value)) = split_numeric_suffix(&d) else {
            return;
        };
        match key {
            "latency" => set_num(&mut self.latency_ms, value),
            "ttft" => set_num(&mut self.ttft_ms, value),
            "jitter" => set_num(&mut self.jitter_ms, value),
            "tps" => {
                if let Some(t) = parse_tps(value) {
                    self.tokens_per_second = Some(t);
                }
            }
            "tokens" => set_u32(&mut self.tokens, value),
            "cached" => set_u32(&mut self.cached_tokens, value),
            "retry-after" => self.retry_after = value.parse().ok().or(self.retry_after),
            "fail-first" => self.fail_first = value.parse().ok().or(self.fail_first),
            "context" => self.context = value.parse().ok().or(self.context),
            "acc" => set_f64(&mut self.quiz.acc, value),
            "corr" => set_f64(&mut self.quiz.corr, value),
            "wrong" => self.quiz.wrong = value.parse().ok().or(self.quiz.wrong),
            "cut-after" => {
                if let Ok(n) = value.parse() {
                    self.fault = Some(Fault::CutAfter(n));
                }
            }
            "stall-after" => {
                if let Ok(n) = value.parse() {
                    self.fault = Some(Fault::StallAfter(n));
                }
            }
            "fault" => match value.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => self.fault = Some(Fault::Status(code)),
                _ => {}
            },
            _ => {}
        }
    }
}

/// `latency-100` → (`latency`, `100`); the value is what follows the last `-`.
fn split_numeric_suffix(d: &str) -> Option<(&str, &str)> {
    let (key, value) = d.rsplit_once('-')?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((key, value))
}

fn parse_tps(v: &str) -> Option<f64> {
    let t: f64 = v.trim().parse().ok()?;
    (t.is_finite() && t > 0.0).then_some(t)
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn set_num(slot: &mut u64, v: &str) {
    if let Ok(n) = v.parse() {
        *slot = n;
    }
}

fn set_f64(slot: &mut f64, v: &str) {
    if let Ok(n) = v.parse::<f64>() {
        if n.is_finite() {
            *slot = n;
        }
    }
}

fn set_u32(slot: &mut u32, v: &str) {
    if let Ok(n) = v.parse() {
        *slot = n;
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_num(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

/// What the base of the model name (before the first `+`) asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Base {
    pub echo: bool,
    pub tool: bool,
    pub parallel: bool,
    pub json: bool,
    pub think: bool,
    /// Answers arithmetic questions, right with probability `acc` (see `quiz`).
    pub quiz: bool,
    /// Drives an agent client's shell tool (see `agent`).
    pub agent: bool,
}

impl Base {
    pub fn of(model: &str) -> Base {
        let base = model
            .split('+')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        Base {
            echo: base.contains("echo"),
            tool: base.contains("tool"),
            parallel: model.to_ascii_lowercase().contains("parallel"),
            json: base.contains("json"),
            think: base.contains("think") || base.contains("reason"),
            quiz: base.contains("quiz"),
            agent: base.contains("agent"),
        }
    }
}

#[cfg(test)]
mod jitter_tests {
    use super::*;

    #[test]
    fn jitter_draws_a_delay_within_its_bound() {
        let cfg = MockConfig::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let k = Knobs::resolve(&cfg, "m+latency-100+jitter-50", &HeaderMap::new());
            assert!((100..=150).contains(&k.latency_ms), "{}", k.latency_ms);
            assert!(k.ttft_ms <= 50);
            seen.insert(k.latency_ms);
        }
        assert!(seen.len() > 10, "latency is a distribution, not a constant");
        let k = Knobs::resolve(&cfg, "m+latency-100", &HeaderMap::new());
        assert_eq!(k.latency_ms, 100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelProfile;
    use http::HeaderValue;

    #[test]
    fn directives_and_headers_layer() {
        let mut cfg = MockConfig::default();
        cfg.profiles.push(ModelProfile {
            model: "slow*".into(),
            latency_ms: Some(100),
            fault: Some("503".into()),
            ..Default::default()
        });
        let k = Knobs::resolve(&cfg, "slow+tokens-3+ttft-20", &HeaderMap::new());
        assert_eq!(k.latency_ms, 100);
        assert_eq!(k.tokens, 3);
        assert_eq!(k.ttft_ms, 20);
        assert_eq!(k.fault, Some(Fault::Status(503)));

        let mut h = HeaderMap::new();
        h.insert(
            "x-mock-fault",
            HeaderValue::from_static("429;retry-after=2"),
        );
        h.insert("x-mock-latency-ms", HeaderValue::from_static("7"));
        h.insert("x-mock-tokens-per-second", HeaderValue::from_static("12.5"));
        let k = Knobs::resolve(&cfg, "slow", &h);
        assert_eq!(k.fault, Some(Fault::Status(429)));
        assert_eq!(k.retry_after, Some(2));
        assert_eq!(k.latency_ms, 7);
        assert_eq!(k.tokens_per_second, Some(12.5));

        let k = Knobs::resolve(
            &cfg,
            "m+cut-after-3+fail-first-2+cached-9",
            &HeaderMap::new(),
        );
        assert_eq!(k.fault, Some(Fault::CutAfter(3)));
        assert_eq!(k.fail_first, Some(2));
        assert_eq!(k.cached_tokens, 9);
        let k = Knobs::resolve(&cfg, "m+fault-429+retry-after-5", &HeaderMap::new());
        assert_eq!(k.fault, Some(Fault::Status(429)));
        assert_eq!(k.retry_after, Some(5));
        for (spec, fault) in [
            ("timeout", Fault::Timeout),
            ("reset", Fault::Reset),
            ("malformed", Fault::Malformed),
            ("stall-after=2", Fault::StallAfter(2)),
            ("cut-after=0", Fault::CutAfter(0)),
        ] {
            let mut k = Knobs::resolve(&cfg, "m", &HeaderMap::new());
            k.apply_fault_spec(spec);
            assert_eq!(k.fault, Some(fault), "{spec}");
        }
    }

    #[test]
    fn silly_values_are_bounded() {
        let mut cfg = MockConfig::default();
        cfg.profiles.push(ModelProfile {
            model: "*".into(),
            tokens_per_second: Some(0.0),
            ..Default::default()
        });
        let k = Knobs::resolve(&cfg, "m+tokens-4000000000+fault-101", &HeaderMap::new());
        assert_eq!(k.tokens_per_second, None);
        assert_eq!(k.tokens, MAX_TOKENS);
        assert_eq!(k.fault, None);
        let k = Knobs::resolve(&cfg, "m+tps-0.0000001", &HeaderMap::new());
        assert_eq!(k.tokens_per_second, Some(MIN_TPS));
    }

    #[test]
    fn base_keywords() {
        let b = Base::of("gpt-tool-parallel+latency-5");
        assert!(b.tool && b.parallel && !b.echo);
        assert!(Base::of("o3-reasoning").think);
        assert!(!Base::of("plain+echo").echo);
        assert!(Base::of("my-quiz-a+acc-0.9").quiz);
        assert!(!Base::of("m+quiz").quiz);
        assert!(Base::of("claude-agent").agent && Base::of("agent+tokens-3").agent);
        assert!(!Base::of("claude-sonnet-4-5+agent").agent);
    }

    #[test]
    fn agent_directive() {
        let cfg = MockConfig::default();
        assert!(!Knobs::resolve(&cfg, "claude-sonnet-4-5", &HeaderMap::new()).agent);
        assert!(Knobs::resolve(&cfg, "claude-sonnet-4-5+agent", &HeaderMap::new()).agent);
        assert!(Knobs::resolve(&cfg, "m+latency-5+Agent", &HeaderMap::new()).agent);
    }

    #[test]
    fn quiz_directives() {
        let cfg = MockConfig::default();
        let k = Knobs::resolve(&cfg, "quiz", &HeaderMap::new());
        assert_eq!(k.quiz, QuizKnobs::default());
        let k = Knobs::resolve(&cfg, "quiz+acc-0.9+corr-0.5+wrong-3", &HeaderMap::new());
        assert_eq!((k.quiz.acc, k.quiz.corr, k.quiz.wrong), (0.9, 0.5, Some(3)));
        let k = Knobs::resolve(&cfg, "quiz+acc-1+corr-2+wrong-0", &HeaderMap::new());
        assert_eq!((k.quiz.acc, k.quiz.corr, k.quiz.wrong), (1.0, 1.0, None));
        let k = Knobs::resolve(&cfg, "quiz+acc-0", &HeaderMap::new());
        assert_eq!(k.quiz.acc, 0.0);
    }
}
