//! OpenAI Chat Completions (also Azure OpenAI and OpenAI-compatible servers).
//!
//! The canonical types are OpenAI's, so conversions here are small: the model is rewritten,
//! streams always ask for the usage chunk, and every field Plexus does not know passes
//! through unchanged.

use crate::{ConvertCtx, ProviderError, UpstreamErrorBody};
use plexus_protocol::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingRequest,
    EmbeddingResponse, StreamOptions, Usage,
};
use serde::Deserialize;

/// Options of the target that change the request.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiOptions {
    /// Whether the server accepts `n > 1`.
    pub supports_n: bool,
    /// Whether the server honours `stream_options.include_usage`.
    pub stream_usage: bool,
    pub provider: &'static str,
}

pub fn to_request(
    req: &ChatCompletionRequest,
    ctx: &ConvertCtx,
    opts: OpenAiOptions,
) -> Result<ChatCompletionRequest, ProviderError> {
    if req.n.unwrap_or(1) > 1 && !opts.supports_n {
        return Err(ProviderError::Unsupported {
            param: "n",
            provider: opts.provider,
        });
    }
    let mut out = req.clone();
    out.model = ctx.upstream_model.to_owned();
    if !opts.stream_usage {
        // Servers marked as not supporting it may reject the field; usage is estimated.
        out.stream_options = None;
    } else if out.is_stream() {
        // Always ask for the usage chunk: the log and cost need it. The server strips it again
        // when the client did not ask.
        let so = out
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        so.include_usage = Some(true);
    }
    Ok(out)
}

pub fn from_response(body: &[u8]) -> Result<ChatCompletion, ProviderError> {
    serde_json::from_slice(body).map_err(ProviderError::decode)
}

/// The usage of a `chat.completion` body without materializing the rest (which must still be
/// valid JSON with a `choices` array). `None` when the upstream reported no usage.
pub fn usage_of(body: &[u8]) -> Result<Option<Usage>, ProviderError> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        usage: Option<Usage>,
        #[allow(dead_code)]
        choices: Vec<serde::de::IgnoredAny>,
    }
    let view: View = serde_json::from_slice(body).map_err(ProviderError::decode)?;
    Ok(view.usage)
}

pub fn to_embed_request(req: &EmbeddingRequest, upstream_model: &str) -> EmbeddingRequest {
    let mut out = req.clone();
    out.model = upstream_model.to_owned();
    out
}

pub fn from_embed_response(body: &[u8]) -> Result<EmbeddingResponse, ProviderError> {
    serde_json::from_slice(body).map_err(ProviderError::decode)
}

/// Decodes `data:` events of a streamed completion.
#[derive(Debug, Default)]
pub struct StreamState {
    done: bool,
}

#[derive(Deserialize)]
struct InStreamError {
    error: ErrorFields,
}

impl StreamState {
    pub fn new() -> Self {
        StreamState::default()
    }

    pub fn on_event(
        &mut self,
        _event: &str,
        data: &str,
    ) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        if data.is_empty() {
            return Ok(None);
        }
        match serde_json::from_str::<ChatCompletionChunk>(data) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(parse_err) => match serde_json::from_str::<InStreamError>(data) {
                Ok(e) => Err(ProviderError::Stream(e.error.message.unwrap_or_default())),
                Err(_) => Err(ProviderError::decode(parse_err)),
            },
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<serde_json::Value>,
}

/// `{"error":{"message","type","param","code"}}` (Azure sends the same shape).
pub fn parse_error(_status: u16, body: &[u8]) -> UpstreamErrorBody {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => {
            let code = match env.error.code {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => env.error.kind,
            };
            UpstreamErrorBody {
                code,
                message: env.error.message.unwrap_or_default(),
            }
        }
        Err(_) => UpstreamErrorBody {
            code: None,
            message: crate::truncate_text(body),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_protocol::openai::{MessageContent, ToolChoice};

    const OPTS: OpenAiOptions = OpenAiOptions {
        supports_n: true,
        stream_usage: true,
        provider: "openai",
    };

    fn ctx() -> ConvertCtx<'static> {
        ConvertCtx {
            upstream_model: "gpt-4o-mini",
            created: 1,
            default_max_tokens: 4096,
            lenient: false,
        }
    }

    // https://platform.openai.com/docs/api-reference/chat/create (request examples)
    const REQUEST_VISION: &str = include_str!("../tests/fixtures/openai/request_vision.json");
    const REQUEST_TOOLS: &str = include_str!("../tests/fixtures/openai/request_tools.json");
    const RESPONSE_TEXT: &str = include_str!("../tests/fixtures/openai/response_text.json");
    const RESPONSE_TOOLS: &str = include_str!("../tests/fixtures/openai/response_tools.json");
    const STREAM_TEXT: &str = include_str!("../tests/fixtures/openai/stream_text.sse");
    const STREAM_TOOLS: &str = include_str!("../tests/fixtures/openai/stream_tools.sse");
    const ERROR_429: &str = include_str!("../tests/fixtures/openai/error_rate_limit.json");

    #[test]
    fn request_rewrites_model_and_keeps_everything_else() {
        let mut req: ChatCompletionRequest = serde_json::from_str(REQUEST_VISION).unwrap();
        req.extra
            .insert("logit_bias".into(), serde_json::json!({"1": 2}));
        let out = to_request(&req, &ctx(), OPTS).unwrap();
        assert_eq!(out.model, "gpt-4o-mini");
        assert_eq!(out.extra["logit_bias"], serde_json::json!({"1": 2}));
        let MessageContent::Parts(parts) = out.messages[0].content.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(parts[1].kind, "image_url");
        assert!(out.stream_options.is_none());
    }

    #[test]
    fn streams_always_request_usage() {
        let mut req: ChatCompletionRequest = serde_json::from_str(REQUEST_TOOLS).unwrap();
        req.stream = Some(true);
        let out = to_request(&req, &ctx(), OPTS).unwrap();
        assert_eq!(out.stream_options.unwrap().include_usage, Some(true));
        assert!(matches!(out.tool_choice, Some(ToolChoice::Mode(ref m)) if m == "auto"));
        let no_usage = OpenAiOptions {
            stream_usage: false,
            ..OPTS
        };
        assert!(to_request(&req, &ctx(), no_usage)
            .unwrap()
            .stream_options
            .is_none());
        // Even the client's own `stream_options` is not forwarded to such a server.
        req.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            ..Default::default()
        });
        assert!(to_request(&req, &ctx(), no_usage)
            .unwrap()
            .stream_options
            .is_none());
    }

    #[test]
    fn n_rejected_where_unsupported() {
        let mut req: ChatCompletionRequest = serde_json::from_str(REQUEST_TOOLS).unwrap();
        req.n = Some(2);
        let opts = OpenAiOptions {
            supports_n: false,
            ..OPTS
        };
        assert!(matches!(
            to_request(&req, &ctx(), opts),
            Err(ProviderError::Unsupported { param: "n", .. })
        ));
        assert!(to_request(&req, &ctx(), OPTS).is_ok());
    }

    #[test]
    fn responses_parse_with_usage_details() {
        let r = from_response(RESPONSE_TEXT.as_bytes()).unwrap();
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        let u = r.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (14, 37));
        assert_eq!(u.cached_tokens(), 0);
        assert_eq!(u.reasoning_tokens(), 0);
        let t = from_response(RESPONSE_TOOLS.as_bytes()).unwrap();
        assert_eq!(t.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let calls = t.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2, "parallel tool calls");
        assert_eq!(calls[1].function.name, "get_stock_price");
    }

    fn run_stream(sse: &str) -> (Vec<ChatCompletionChunk>, bool) {
        let mut st = StreamState::new();
        let mut out = Vec::new();
        for line in sse.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if let Some(c) = st.on_event("", data).unwrap() {
                    out.push(c);
                }
            }
        }
        (out, st.is_done())
    }

    #[test]
    fn cached_and_reasoning_usage_details() {
        #[derive(Deserialize)]
        struct Wrap {
            usage: Usage,
        }
        let r: Wrap = serde_json::from_str(include_str!(
            "../tests/fixtures/openai/usage_reasoning.json"
        ))
        .unwrap();
        assert_eq!(r.usage.reasoning_tokens(), 1024);
        assert_eq!(r.usage.cached_tokens(), 0);
        let c: Wrap =
            serde_json::from_str(include_str!("../tests/fixtures/openai/usage_cached.json"))
                .unwrap();
        assert_eq!(c.usage.cached_tokens(), 1920);
        assert_eq!(c.usage.prompt_tokens, 2006);
        // What the gateway forwards keeps every detail field.
        let back = serde_json::to_value(&r.usage).unwrap();
        assert_eq!(
            back["completion_tokens_details"]["accepted_prediction_tokens"],
            0
        );
    }

    #[test]
    fn usage_without_a_full_parse() {
        let u = usage_of(RESPONSE_TOOLS.as_bytes()).unwrap().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (149, 60));
        assert_eq!(usage_of(br#"{"choices":[]}"#).unwrap(), None);
        assert!(usage_of(b"{\"choices\": [").is_err());
        assert!(
            usage_of(br#"{"usage":null}"#).is_err(),
            "choices is required"
        );
    }

    #[test]
    fn stream_text_and_usage_chunk() {
        let (chunks, done) = run_stream(STREAM_TEXT);
        assert!(done);
        let text: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Hello! How can I assist you today?");
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.as_ref().unwrap().total_tokens, 27);
    }

    #[test]
    fn stream_tool_call_deltas() {
        let (chunks, _) = run_stream(STREAM_TOOLS);
        let mut args = String::new();
        let mut name = None;
        for c in &chunks {
            for ch in &c.choices {
                for tc in ch.delta.tool_calls.iter().flatten() {
                    if let Some(f) = &tc.function {
                        if f.name.is_some() {
                            name = f.name.clone();
                        }
                        args.push_str(f.arguments.as_deref().unwrap_or(""));
                    }
                }
            }
        }
        assert_eq!(name.as_deref(), Some("get_current_weather"));
        let v: serde_json::Value = serde_json::from_str(&args).unwrap();
        assert_eq!(v["location"], "Boston, MA");
        let finish = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .find_map(|c| c.finish_reason.clone());
        assert_eq!(finish.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn stream_error_event_and_garbage() {
        let mut st = StreamState::new();
        let err = st
            .on_event(
                "",
                r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            )
            .unwrap_err();
        assert!(matches!(err, ProviderError::Stream(ref m) if m == "overloaded"));
        assert!(matches!(
            st.on_event("", "{not json"),
            Err(ProviderError::Decode(_))
        ));
    }

    #[test]
    fn error_body() {
        let e = parse_error(429, ERROR_429.as_bytes());
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(e.message.starts_with("Rate limit reached"));
        let raw = parse_error(502, b"<html>bad gateway</html>");
        assert_eq!(raw.message, "<html>bad gateway</html>");
    }
}
