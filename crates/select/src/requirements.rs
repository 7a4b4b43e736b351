//! Step 1 of a decision: what the request needs, against what each candidate can do.

use serde::{Deserialize, Serialize};

/// What a request needs from the model that serves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Needs {
    /// It offers tools.
    pub tools: bool,
    /// It contains image parts.
    pub vision: bool,
    /// It asks for `response_format: json_schema`.
    pub json_schema: bool,
    /// It sets a reasoning effort.
    pub reasoning: bool,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The output it may ask for (`max_tokens`, or the candidate's default when unset: 0).
    pub max_output_tokens: u64,
}

/// What a candidate can do: from the catalog, overridden per target by `capabilities:`.
/// `None` means unknown, which does not filter (the decision record says so).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub tools: Option<bool>,
    pub vision: Option<bool>,
    pub json_schema: Option<bool>,
    pub reasoning: Option<bool>,
    /// Prompt plus output tokens it accepts.
    pub context_window: Option<u64>,
}

impl Capabilities {
    /// `self`, with every field `over` sets replacing it.
    pub fn overridden_by(self, over: &Capabilities) -> Capabilities {
        Capabilities {
            tools: over.tools.or(self.tools),
            vision: over.vision.or(self.vision),
            json_schema: over.json_schema.or(self.json_schema),
            reasoning: over.reasoning.or(self.reasoning),
            context_window: over.context_window.or(self.context_window),
        }
    }

    /// What a model with several targets can do for sure: every target can (a fallback
    /// between its targets must not land on one that cannot).
    pub fn all_of(targets: &[Capabilities]) -> Capabilities {
        fn all(values: impl Iterator<Item = Option<bool>>) -> Option<bool> {
            let mut out = None;
            for v in values {
                match v {
                    Some(false) => return Some(false),
                    Some(true) => out = Some(out.unwrap_or(true)),
                    None => {}
                }
            }
            out
        }
        Capabilities {
            tools: all(targets.iter().map(|c| c.tools)),
            vision: all(targets.iter().map(|c| c.vision)),
            json_schema: all(targets.iter().map(|c| c.json_schema)),
            reasoning: all(targets.iter().map(|c| c.reasoning)),
            context_window: targets.iter().filter_map(|c| c.context_window).min(),
        }
    }
}

impl Needs {
    /// The needs `caps` cannot meet, each said in a few words; empty when it can serve.
    pub fn unmet(&self, caps: &Capabilities) -> Vec<String> {
        let mut out = Vec::new();
        for (needed, can, what) in [
            (self.tools, caps.tools, "tools"),
            (self.vision, caps.vision, "image input"),
            (self.json_schema, caps.json_schema, "JSON schema output"),
            (self.reasoning, caps.reasoning, "reasoning effort"),
        ] {
            if needed && can == Some(false) {
                out.push(what.to_owned());
            }
        }
        if let Some(window) = caps.context_window {
            let total = self.prompt_tokens + self.max_output_tokens;
            if total > window {
                out.push(format!(
                    "a context window of {total} tokens (it has {window})"
                ));
            }
        }
        out
    }

    /// The needs in a few words, for an error when no candidate meets them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (needed, what) in [
            (self.tools, "tools"),
            (self.vision, "image input"),
            (self.json_schema, "JSON schema output"),
            (self.reasoning, "reasoning effort"),
        ] {
            if needed {
                parts.push(what.to_owned());
            }
        }
        parts.push(format!(
            "{} tokens of context",
            self.prompt_tokens + self.max_output_tokens
        ));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn caps(tools: bool, vision: bool, window: u64) -> Capabilities {
        Capabilities {
            tools: Some(tools),
            vision: Some(vision),
            json_schema: Some(true),
            reasoning: None,
            context_window: Some(window),
        }
    }

    #[test]
    fn a_vision_request_is_not_met_by_a_text_only_model() {
        let needs = Needs {
            vision: true,
            prompt_tokens: 100,
            ..Needs::default()
        };
        assert_eq!(needs.unmet(&caps(true, false, 8000)), ["image input"]);
        assert!(needs.unmet(&caps(true, true, 8000)).is_empty());
    }

    #[test]
    fn the_context_window_counts_prompt_and_output() {
        let needs = Needs {
            prompt_tokens: 150_000,
            max_output_tokens: 1000,
            ..Needs::default()
        };
        assert_eq!(
            needs.unmet(&caps(true, true, 128_000)),
            ["a context window of 151000 tokens (it has 128000)"]
        );
        assert!(needs.unmet(&caps(true, true, 200_000)).is_empty());
    }

    #[test]
    fn unknown_capabilities_do_not_filter() {
        let needs = Needs {
            tools: true,
            vision: true,
            json_schema: true,
            reasoning: true,
            prompt_tokens: 10_000_000,
            max_output_tokens: 0,
        };
        assert!(needs.unmet(&Capabilities::default()).is_empty());
        let known = Capabilities {
            reasoning: Some(false),
            ..Capabilities::default()
        };
        assert_eq!(needs.unmet(&known), ["reasoning effort"]);
    }

    #[test]
    fn overrides_and_the_targets_of_one_model() {
        let catalog = caps(true, false, 128_000);
        let over = Capabilities {
            vision: Some(true),
            context_window: Some(32_000),
            ..Capabilities::default()
        };
        let c = catalog.overridden_by(&over);
        assert_eq!(
            (c.tools, c.vision, c.context_window),
            (Some(true), Some(true), Some(32_000))
        );
        let both = Capabilities::all_of(&[c, catalog]);
        assert_eq!(both.vision, Some(false));
        assert_eq!(both.context_window, Some(32_000));
        assert_eq!(Capabilities::all_of(&[]).tools, None);
    }
}
