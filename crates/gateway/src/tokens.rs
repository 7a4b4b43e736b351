//! Prompt token counts for token limits, computed only when a token limit applies.
//!
//! OpenAI-family models are counted exactly with their BPE (`o200k_base` for the GPT-4o,
//! GPT-4.1, GPT-5 and o-series families, `cl100k_base` for GPT-4 and GPT-3.5), plus the chat
//! format's per-message overhead (3 tokens a message and 3 to prime the reply, as in OpenAI's
//! cookbook). Other providers publish no offline tokenizer: their count is the `o200k_base`
//! count times a calibration factor, and the reservation is reconciled with the usage the
//! provider reports once the call is done, so the estimate only has to be close.

use plexus_core::config::ProviderKind;
use plexus_protocol::openai::{ChatCompletionRequest, MessageContent};
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// Tokens an image part is reserved at (OpenAI's low-detail price; high detail is settled
/// from the reported usage).
const IMAGE_TOKENS: u64 = 85;
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// Anthropic's tokenizer yields more tokens than `o200k_base` for the same text (English prose
/// and code measure about 1.2 to 1.3 times as many); Gemini's is close to it.
fn calibration(kind: ProviderKind) -> f64 {
    match kind {
        ProviderKind::Anthropic => 1.25,
        ProviderKind::Gemini => 1.1,
        _ => 1.0,
    }
}

fn o200k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// Whether an OpenAI model name uses `cl100k_base` (the pre-4o generation).
fn uses_cl100k(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    (m.starts_with("gpt-4") && !m.starts_with("gpt-4o") && !m.starts_with("gpt-4.1"))
        || m.starts_with("gpt-3.5")
        || m.starts_with("text-embedding-")
}

/// Counts the tokens of `text` for a target of `kind` serving `model`.
pub fn count_text(kind: ProviderKind, model: &str, text: &str) -> u64 {
    let bpe = if kind.is_openai_format() && uses_cl100k(model) {
        cl100k()
    } else {
        o200k()
    };
    let raw = match bpe {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    };
    (raw as f64 * calibration(kind)).ceil() as u64
}

/// The prompt tokens of a chat request: message text, tool definitions and the response
/// schema, with the chat format's overhead.
pub fn count_prompt(kind: ProviderKind, model: &str, req: &ChatCompletionRequest) -> u64 {
    let mut text = String::new();
    let mut images = 0u64;
    for m in &req.messages {
        match &m.content {
            Some(MessageContent::Text(t)) => text.push_str(t),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        text.push_str(t);
                    }
                    if p.image_url.is_some() {
                        images += 1;
                    }
                }
            }
            None => {}
        }
        for call in m.tool_calls.iter().flatten() {
            text.push_str(&call.function.name);
            text.push_str(&call.function.arguments);
        }
        text.push('\n');
    }
    if let Some(tools) = &req.tools {
        if let Ok(json) = serde_json::to_string(tools) {
            text.push_str(&json);
        }
    }
    if let Some(format) = &req.response_format {
        if let Ok(json) = serde_json::to_string(format) {
            text.push_str(&json);
        }
    }
    count_text(kind, model, &text)
        + PER_MESSAGE * req.messages.len() as u64
        + REPLY_PRIMING
        + images * IMAGE_TOKENS
}

impl crate::Gateway {
    /// The prompt tokens of `req` as the model that would serve it counts them (Anthropic's
    /// `count_tokens`): a `select` model counts with its first candidate, an orchestration with
    /// its first member. Checks the key may use the model.
    pub fn count_prompt_tokens(
        &self,
        ctx: &crate::CallCtx,
        req: &ChatCompletionRequest,
    ) -> Result<u64, plexus_core::ApiError> {
        let rt = self.runtime();
        let mut model = rt.canonical_model(&req.model).into_owned();
        crate::pipeline::check_model_access(&ctx.principal, &model)?;
        for _ in 0..4 {
            if let Some(s) = rt.selector(&model) {
                match s.config.candidates.first() {
                    Some(c) => model = c.clone(),
                    None => break,
                }
            } else if let Some(o) = rt.orchestration(&model) {
                match o.config.members.first() {
                    Some(m) => model = m.clone(),
                    None => break,
                }
            } else {
                break;
            }
        }
        let route = rt.resolve(&model)?;
        let target = route.targets.first().ok_or_else(|| {
            plexus_core::ApiError::new(
                plexus_core::ErrorCode::ServiceUnavailable,
                "The model has no target.",
            )
        })?;
        Ok(count_prompt(
            target.provider.kind(),
            &target.upstream_model,
            req,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn openai_counts_match_the_reference_tokenizer() {
        // Reference counts from OpenAI's tokenizer (tiktoken) for these strings.
        assert_eq!(count_text(ProviderKind::OpenAi, "gpt-4o", "hello world"), 2);
        assert_eq!(
            count_text(ProviderKind::OpenAi, "gpt-4", "tiktoken is great!"),
            6
        );
        assert_eq!(count_text(ProviderKind::OpenAi, "gpt-4o-mini", ""), 0);
    }

    #[test]
    fn chat_overhead_and_calibration() {
        let req: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        let openai = count_prompt(ProviderKind::OpenAi, "gpt-4o", &req);
        let text = count_text(
            ProviderKind::OpenAi,
            "gpt-4o",
            "You are terse.\nhello world\n",
        );
        assert_eq!(openai, text + 2 * PER_MESSAGE + REPLY_PRIMING);
        let claude = count_prompt(ProviderKind::Anthropic, "claude-sonnet-4", &req);
        assert!(claude > openai, "{claude} vs {openai}");
    }
}
