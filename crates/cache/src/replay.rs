//! Streams and cached answers: a streamed answer is assembled into one chat completion to be
//! stored, and a stored completion is replayed as a stream of chunks to streaming clients.

use plexus_protocol::openai::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionCallDelta, ResponseMessage, ToolCall, ToolCallDelta,
};

/// Builds the chat completion a stream amounts to, chunk by chunk.
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    created: i64,
    model: String,
    system_fingerprint: Option<String>,
    choices: Vec<Choice>,
    usage: Option<plexus_protocol::openai::Usage>,
}

impl Assembler {
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.created = chunk.created;
            self.model.clone_from(&chunk.model);
        }
        if chunk.system_fingerprint.is_some() {
            self.system_fingerprint
                .clone_from(&chunk.system_fingerprint);
        }
        if chunk.usage.is_some() {
            self.usage.clone_from(&chunk.usage);
        }
        for c in &chunk.choices {
            let i = c.index as usize;
            while self.choices.len() <= i {
                self.choices.push(Choice {
                    index: self.choices.len() as u32,
                    message: ResponseMessage {
                        role: "assistant".into(),
                        ..ResponseMessage::default()
                    },
                    finish_reason: None,
                    logprobs: None,
                });
            }
            let choice = &mut self.choices[i];
            let m = &mut choice.message;
            append(&mut m.content, c.delta.content.as_deref());
            append(
                &mut m.reasoning_content,
                c.delta.reasoning_content.as_deref(),
            );
            append(&mut m.refusal, c.delta.refusal.as_deref());
            if let Some(blocks) = &c.delta.thinking_blocks {
                m.thinking_blocks
                    .get_or_insert_with(Vec::new)
                    .extend(blocks.iter().cloned());
            }
            for t in c.delta.tool_calls.iter().flatten() {
                let calls = m.tool_calls.get_or_insert_with(Vec::new);
                let idx = t.index as usize;
                while calls.len() <= idx {
                    calls.push(ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                }
                let call = &mut calls[idx];
                if let Some(id) = &t.id {
                    call.id.clone_from(id);
                }
                if let Some(f) = &t.function {
                    if let Some(n) = &f.name {
                        call.function.name.push_str(n);
                    }
                    if let Some(a) = &f.arguments {
                        call.function.arguments.push_str(a);
                    }
                }
            }
            if c.finish_reason.is_some() {
                choice.finish_reason.clone_from(&c.finish_reason);
            }
        }
    }

    pub fn finish(self) -> ChatCompletion {
        ChatCompletion {
            id: self.id,
            object: "chat.completion".into(),
            created: self.created,
            model: self.model,
            choices: self.choices,
            usage: self.usage,
            system_fingerprint: self.system_fingerprint,
            extra: Default::default(),
        }
    }
}

fn append(to: &mut Option<String>, piece: Option<&str>) {
    if let Some(p) = piece {
        to.get_or_insert_with(String::new).push_str(p);
    }
}

/// Words per replayed content chunk.
const WORDS_PER_CHUNK: usize = 8;

/// The chunks a streaming client receives for a stored completion: per choice, the role, the
/// content in pieces of a few words, the tool calls, and the finish reason; then the usage
/// chunk when the client asked for it.
pub fn replay(c: &ChatCompletion, include_usage: bool) -> Vec<ChatCompletionChunk> {
    let chunk = |choices: Vec<ChunkChoice>| {
        let mut k = ChatCompletionChunk::new(&c.id, c.created, &c.model);
        k.system_fingerprint.clone_from(&c.system_fingerprint);
        k.choices = choices;
        k
    };
    let one = |index: u32, delta: Delta, finish: Option<String>| ChunkChoice {
        index,
        delta,
        finish_reason: finish,
        logprobs: None,
    };
    let mut out = Vec::new();
    for choice in &c.choices {
        let m = &choice.message;
        out.push(chunk(vec![one(
            choice.index,
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                refusal: m.refusal.clone(),
                reasoning_content: m.reasoning_content.clone(),
                thinking_blocks: m.thinking_blocks.clone(),
                ..Delta::default()
            },
            None,
        )]));
        if let Some(text) = &m.content {
            for piece in split_words(text, WORDS_PER_CHUNK) {
                out.push(chunk(vec![one(
                    choice.index,
                    Delta {
                        content: Some(piece.to_owned()),
                        ..Delta::default()
                    },
                    None,
                )]));
            }
        }
        for (i, call) in m.tool_calls.iter().flatten().enumerate() {
            out.push(chunk(vec![one(
                choice.index,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: i as u32,
                        id: Some(call.id.clone()),
                        kind: Some(call.kind.clone()),
                        function: Some(FunctionCallDelta {
                            name: Some(call.function.name.clone()),
                            arguments: Some(call.function.arguments.clone()),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            )]));
        }
        out.push(chunk(vec![one(
            choice.index,
            Delta::default(),
            Some(
                choice
                    .finish_reason
                    .clone()
                    .unwrap_or_else(|| "stop".into()),
            ),
        )]));
    }
    if include_usage {
        let mut u = chunk(Vec::new());
        u.usage.clone_from(&c.usage);
        out.push(u);
    }
    out
}

/// Splits after every `n`-th run of whitespace, keeping the whitespace (the pieces concatenate
/// back to the text).
fn split_words(text: &str, n: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut in_space = false;
    for (i, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if in_space && !space {
            words += 1;
            if words == n {
                pieces.push(&text[start..i]);
                start = i;
                words = 0;
            }
        }
        in_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn completion() -> ChatCompletion {
        serde_json::from_value(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                "role": "assistant",
                "content": "one two three four five six seven eight nine ten eleven",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]
            }}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 11, "total_tokens": 14}
        }))
        .unwrap()
    }

    #[test]
    fn replay_then_assemble_is_the_identity() {
        let c = completion();
        let chunks = replay(&c, true);
        assert!(
            chunks.len() >= 5,
            "role, two content pieces, tool call, finish, usage"
        );
        assert!(chunks.last().unwrap().choices.is_empty());
        let mut a = Assembler::default();
        for k in &chunks {
            a.push(k);
        }
        let mut back = a.finish();
        // The role chunk's empty content is not a difference.
        assert_eq!(
            back.choices[0].message.content,
            c.choices[0].message.content
        );
        back.choices[0].logprobs = None;
        assert_eq!(back, c);
        assert!(replay(&c, false).iter().all(|k| k.usage.is_none()));
    }

    #[test]
    fn words_split_and_rejoin() {
        let text = "a b  c\nd e";
        let pieces = split_words(text, 2);
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces, ["a b  ", "c\nd ", "e"]);
        assert!(split_words("", 3).is_empty());
    }
}
