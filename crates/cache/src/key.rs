//! Cache keys: a SHA-256 over the canonical form of everything that changes the answer.
//!
//! The request is serialized to JSON (object keys sorted, whitespace gone: `serde_json`'s map
//! is ordered), fields that do not change the answer are removed (`stream`, `stream_options`,
//! `user`, `metadata`), an absent `temperature` is written as OpenAI's default of 1, and the
//! result is hashed together with the tenant scope and the route's fingerprint (its targets'
//! providers, endpoints and upstream model versions), so a change of target or version makes
//! every old entry unreachable.
//!
//! The semantic cache uses the same scheme minus the question: the scope of a semantic entry
//! is the hash of the request with the embedded text taken out, so only requests that agree on
//! everything else (model, system prompt, tools, parameters, tenant) can match.

use plexus_protocol::openai::{ChatCompletionRequest, MessageContent, Role};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields that never change what the model answers.
const IGNORED: [&str; 4] = ["stream", "stream_options", "user", "metadata"];

/// Which part of the conversation carries the question for the semantic cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuestionPart {
    /// The last user message (the default).
    #[default]
    LastUser,
    /// Every message's text.
    Conversation,
}

/// Whether the request's answer is deterministic enough to cache: a temperature of 0 (absent
/// counts as 1, OpenAI's default). `n > 1` with temperature 0 is fine.
pub fn is_deterministic(req: &ChatCompletionRequest) -> bool {
    req.temperature == Some(0.0)
}

fn canonical(req: &ChatCompletionRequest) -> Value {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for f in IGNORED {
            map.remove(f);
        }
        map.entry("temperature").or_insert(Value::from(1.0));
        // `max_tokens` and `max_completion_tokens` mean the same.
        if let Some(m) = map.remove("max_completion_tokens") {
            map.insert("max_tokens".into(), m);
        }
    }
    v
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The exact-cache key: hex SHA-256 of scope, route fingerprint and canonical request.
pub fn exact_key(scope: &str, route: &str, req: &ChatCompletionRequest) -> String {
    let canon = canonical(req).to_string();
    digest(&[
        b"exact",
        scope.as_bytes(),
        route.as_bytes(),
        canon.as_bytes(),
    ])
}

/// The question text for the semantic cache and the key of its partition (the request with
/// that text removed). `None` when there is no text to embed.
pub fn semantic_parts(
    scope: &str,
    route: &str,
    req: &ChatCompletionRequest,
    part: QuestionPart,
) -> Option<(String, String)> {
    let mut stripped = req.clone();
    let question = match part {
        QuestionPart::LastUser => {
            let last = stripped
                .messages
                .iter_mut()
                .rev()
                .find(|m| m.role == Role::User)?;
            let text = last.content.as_ref()?.joined_text();
            last.content = Some(MessageContent::Text(String::new()));
            text
        }
        QuestionPart::Conversation => {
            let mut text = String::new();
            for m in &mut stripped.messages {
                if let Some(c) = m.content.take() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&c.joined_text());
                }
            }
            text
        }
    };
    // Surrounding whitespace says nothing about the question.
    let question = question.trim();
    if question.is_empty() {
        return None;
    }
    let canon = canonical(&stripped).to_string();
    let partition = digest(&[
        b"semantic",
        scope.as_bytes(),
        route.as_bytes(),
        canon.as_bytes(),
    ]);
    Some((question.to_owned(), partition))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn req(json: &str) -> ChatCompletionRequest {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{"model":"m","temperature":0,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is Rust?"}]}"#;

    #[test]
    fn formatting_and_ignored_fields_do_not_change_the_key() {
        let a = exact_key("team:t", "r", &req(BASE));
        let spaced = r#"{ "temperature" : 0, "model":"m",
            "messages":[{"content":"Be brief.","role":"system"},{"role":"user","content":"What is Rust?"}],
            "stream": true, "stream_options": {"include_usage": true}, "user": "u1", "metadata": {"cache_tags": ["x"]}}"#;
        assert_eq!(a, exact_key("team:t", "r", &req(spaced)));
        let renamed = BASE.replace(
            "\"temperature\":0",
            "\"temperature\":0,\"max_completion_tokens\":5",
        );
        let old_name = BASE.replace("\"temperature\":0", "\"temperature\":0,\"max_tokens\":5");
        assert_eq!(
            exact_key("s", "r", &req(&renamed)),
            exact_key("s", "r", &req(&old_name))
        );
    }

    #[test]
    fn everything_that_changes_the_answer_changes_the_key() {
        let a = exact_key("team:t", "r", &req(BASE));
        let variants = [
            BASE.replace("\"model\":\"m\"", "\"model\":\"m2\""),
            BASE.replace("Be brief.", "Be verbose."),
            BASE.replace("What is Rust?", "What is Go?"),
            BASE.replace("\"temperature\":0", "\"temperature\":0.5"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"top_p\":0.5"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"max_tokens\":7"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"seed\":1"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"stop\":[\"x\"]"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"n\":2"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]"),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"reasoning_effort\":\"high\""),
            BASE.replace("\"temperature\":0", "\"temperature\":0,\"unknown_vendor_knob\":3"),
        ];
        for v in &variants {
            assert_ne!(a, exact_key("team:t", "r", &req(v)), "{v}");
        }
        assert_ne!(a, exact_key("team:u", "r", &req(BASE)), "tenant");
        assert_ne!(a, exact_key("team:t", "r2", &req(BASE)), "route version");
    }

    #[test]
    fn absent_temperature_is_one() {
        let no_temp = BASE.replace("\"temperature\":0,", "");
        let one = BASE.replace("\"temperature\":0", "\"temperature\":1");
        assert_eq!(
            exact_key("s", "r", &req(&no_temp)),
            exact_key("s", "r", &req(&one))
        );
        assert!(!is_deterministic(&req(&no_temp)));
        assert!(is_deterministic(&req(BASE)));
    }

    #[test]
    fn semantic_partition_ignores_only_the_question() {
        let (q, p) = semantic_parts("s", "r", &req(BASE), QuestionPart::LastUser).unwrap();
        assert_eq!(q, "What is Rust?");
        let other_question = BASE.replace("What is Rust?", "Tell me about Rust");
        let (q2, p2) =
            semantic_parts("s", "r", &req(&other_question), QuestionPart::LastUser).unwrap();
        assert_eq!(q2, "Tell me about Rust");
        assert_eq!(p, p2, "same partition");
        let other_system = BASE.replace("Be brief.", "Be verbose.");
        let (_, p3) =
            semantic_parts("s", "r", &req(&other_system), QuestionPart::LastUser).unwrap();
        assert_ne!(p, p3, "another system prompt is another partition");
        let (conv, _) = semantic_parts("s", "r", &req(BASE), QuestionPart::Conversation).unwrap();
        assert_eq!(conv, "Be brief.\nWhat is Rust?");
    }
}
