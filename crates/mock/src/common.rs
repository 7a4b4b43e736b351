//! Pieces every API handler shares: reading and recording the request, ids, provider-shaped
//! errors and headers, latency and fault injection.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode, Uri};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::behavior::{Fault, Knobs};
use crate::server::{ConnCtl, ConnHandle};
use crate::state::MockState;

/// Requests with images can be large; the real APIs take tens of megabytes.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Which API a response imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
}

/// One request, read and recorded.
pub(crate) struct Ctx {
    pub started: Instant,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub conn: Option<Arc<ConnCtl>>,
    pub request_id: String,
    pub flavor: Flavor,
}

impl Ctx {
    pub async fn read(state: &MockState, req: Request, flavor: Flavor) -> Ctx {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => Bytes::new(),
        };
        state.record(&parts.method, &parts.uri, &parts.headers, &body);
        let request_id = match flavor {
            Flavor::OpenAi => format!("req_{}", hex(32)),
            Flavor::Anthropic => format!("req_011C{}", alnum(20)),
            Flavor::Azure => uuid_like(),
            Flavor::Gemini => alnum(22),
        };
        Ctx {
            started,
            uri: parts.uri,
            headers: parts.headers,
            body,
            conn: parts.extensions.get::<ConnHandle>().map(|h| h.0.clone()),
            request_id,
            flavor,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::behavior::header_str(&self.headers, name)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        query_param(self.uri.query()?, name)
    }

    /// The body as JSON, or the API's error for an unparsable body.
    pub fn json(&self) -> Result<Value, Response> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let msg = match self.flavor {
                Flavor::OpenAi | Flavor::Azure => "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)".to_owned(),
                Flavor::Anthropic => format!("There was an error parsing the body: {e}"),
                Flavor::Gemini => format!("Invalid JSON payload received. {e}"),
            };
            self.error(StatusCode::BAD_REQUEST, &msg)
        })
    }

    /// Adds the headers the imitated API sends with every response.
    pub fn finish(&self, mut resp: Response) -> Response {
        let elapsed = self.started.elapsed().as_millis();
        let limited = resp.status() == StatusCode::TOO_MANY_REQUESTS;
        let h = resp.headers_mut();
        match self.flavor {
            Flavor::OpenAi => {
                put(h, "x-request-id", &self.request_id);
                put(h, "openai-processing-ms", &elapsed.to_string());
                put_static(h, "openai-version", "2020-10-01");
                put_static(h, "openai-organization", "plexus-mock");
                put_static(h, "x-ratelimit-limit-requests", "10000");
                put_static(h, "x-ratelimit-limit-tokens", "30000000");
                put_static(
                    h,
                    "x-ratelimit-remaining-requests",
                    if limited { "0" } else { "9999" },
                );
                put_static(
                    h,
                    "x-ratelimit-remaining-tokens",
                    if limited { "0" } else { "29999000" },
                );
                put_static(h, "x-ratelimit-reset-requests", "6ms");
                put_static(h, "x-ratelimit-reset-tokens", "0s");
            }
            Flavor::Azure => {
                put(h, "apim-request-id", &self.request_id);
                put(h, "x-request-id", &self.request_id);
                put_static(h, "x-ms-region", "Mock Region");
                put_static(
                    h,
                    "x-ratelimit-remaining-requests",
                    if limited { "0" } else { "9999" },
                );
                put_static(
                    h,
                    "x-ratelimit-remaining-tokens",
                    if limited { "0" } else { "29999000" },
                );
            }
            Flavor::Anthropic => {
                put(h, "request-id", &self.request_id);
                put_static(
                    h,
                    "anthropic-organization-id",
                    "00000000-0000-4000-8000-000000000000",
                );
                put_static(h, "anthropic-ratelimit-requests-limit", "4000");
                put_static(
                    h,
                    "anthropic-ratelimit-requests-remaining",
                    if limited { "0" } else { "3999" },
                );
                put_static(h, "anthropic-ratelimit-tokens-limit", "2000000");
                put_static(
                    h,
                    "anthropic-ratelimit-tokens-remaining",
                    if limited { "0" } else { "1999000" },
                );
            }
            Flavor::Gemini => {
                put(h, "server-timing", &format!("gfet4t7; dur={elapsed}"));
            }
        }
        resp
    }

    /// The imitated API's error body for `status`.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        self.error_full(status, message, None, None)
    }

    pub fn error_full(
        &self,
        status: StatusCode,
        message: &str,
        code: Option<&str>,
        param: Option<&str>,
    ) -> Response {
        self.error_with_details(status, message, code, param, None)
    }

    fn error_with_details(
        &self,
        status: StatusCode,
        message: &str,
        code: Option<&str>,
        param: Option<&str>,
        gemini_details: Option<Value>,
    ) -> Response {
        let body = match self.flavor {
            Flavor::OpenAi => json!({"error": {
                "message": message,
                "type": openai_error_type(status),
                "param": param,
                "code": code,
            }}),
            Flavor::Azure => json!({"error": {
                "code": code.map_or_else(|| status.as_u16().to_string(), str::to_owned),
                "message": message,
            }}),
            Flavor::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_error_type(status), "message": message},
                "request_id": self.request_id,
            }),
            Flavor::Gemini => {
                let mut e = json!({
                    "code": status.as_u16(),
                    "message": message,
                    "status": gemini_status(status),
                });
                if let Some(d) = gemini_details {
                    e["details"] = d;
                }
                json!({ "error": e })
            }
        };
        self.finish(json_response(status, &body))
    }

    /// The error an injected status fault produces, shaped and worded like the real one.
    pub fn fault_error(
        &self,
        status: StatusCode,
        model: &str,
        retry_after: Option<u64>,
    ) -> Response {
        let wait = retry_after.unwrap_or(1);
        let (message, code): (String, Option<&str>) = match (self.flavor, status.as_u16()) {
            (Flavor::OpenAi, 429) => (
                format!("Rate limit reached for requests on model {model}. Limit: 10000 / min. Please try again in {wait}s."),
                Some("rate_limit_exceeded"),
            ),
            (Flavor::Azure, 429) => (
                format!("Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded call rate limit. Please retry after {wait} seconds."),
                None,
            ),
            (Flavor::Anthropic, 429) => (
                "This request would exceed the rate limit for your organization. Please try again later.".to_owned(),
                None,
            ),
            (Flavor::Gemini, 429) => (
                "Resource has been exhausted (e.g. check quota).".to_owned(),
                None,
            ),
            (Flavor::Anthropic, 529) | (Flavor::Anthropic, 503) => ("Overloaded".to_owned(), None),
            (Flavor::Gemini, 503) => (
                "The model is overloaded. Please try again later.".to_owned(),
                None,
            ),
            (Flavor::OpenAi, 503) | (Flavor::Azure, 503) => (
                "The engine is currently overloaded, please try again later".to_owned(),
                None,
            ),
            (Flavor::OpenAi, 401) => (
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.".to_owned(),
                Some("invalid_api_key"),
            ),
            (Flavor::Gemini, 400) => (
                "Request contains an invalid argument.".to_owned(),
                None,
            ),
            (_, 400) => ("Invalid request (mock fault).".to_owned(), None),
            (_, 401) => ("invalid x-api-key".to_owned(), None),
            (Flavor::Gemini, 500) => (
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting".to_owned(),
                None,
            ),
            (_, 500) => (
                "The server had an error while processing your request. Sorry about that!".to_owned(),
                None,
            ),
            (_, code) => (format!("Mock fault: status {code}."), None),
        };
        // Gemini says when to retry in the body, the others in headers.
        let details = match (self.flavor, status.as_u16(), retry_after) {
            (Flavor::Gemini, 429, Some(secs)) => Some(json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{secs}s"),
            }])),
            _ => None,
        };
        let mut resp = self.error_with_details(status, &message, code, None, details);
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            if self.flavor == Flavor::Azure {
                resp.headers_mut().insert(
                    "retry-after-ms",
                    HeaderValue::from(secs.saturating_mul(1000)),
                );
            }
        }
        resp
    }

    /// Latency, then the faults that replace the answer. `None`: go on and answer.
    pub async fn gate(&self, state: &MockState, knobs: &Knobs, model: &str) -> Option<Response> {
        if knobs.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
        }
        if let Some(n) = knobs.fail_first {
            if state.fails_first(model, n) {
                return Some(self.fault_error(StatusCode::INTERNAL_SERVER_ERROR, model, None));
            }
        }
        match knobs.fault {
            Some(Fault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Some(self.fault_error(status, model, knobs.retry_after))
            }
            Some(Fault::Timeout) => {
                // Dropped by hyper when the client goes away.
                std::future::pending::<()>().await;
                None
            }
            Some(Fault::Reset) => Some(self.reset()),
            _ => None,
        }
    }

    /// The provider's context-length error when the prompt exceeds the model's window
    /// (`context-N`), worded as each API words it.
    pub fn context_gate(&self, knobs: &Knobs, prompt_tokens: u32) -> Option<Response> {
        let window = knobs.context?;
        if prompt_tokens <= window {
            return None;
        }
        Some(match self.flavor {
            Flavor::OpenAi | Flavor::Azure => self.error_full(
                StatusCode::BAD_REQUEST,
                &format!("This model's maximum context length is {window} tokens. However, your messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages."),
                Some("context_length_exceeded"),
                Some("messages"),
            ),
            Flavor::Anthropic => self.error(
                StatusCode::BAD_REQUEST,
                &format!("prompt is too long: {prompt_tokens} tokens > {window} maximum"),
            ),
            Flavor::Gemini => self.error(
                StatusCode::BAD_REQUEST,
                &format!("The input token count ({prompt_tokens}) exceeds the maximum number of tokens allowed ({window})."),
            ),
        })
    }

    /// Has the connection closed with RST before any byte of the response is written.
    fn reset(&self) -> Response {
        match &self.conn {
            Some(ctl) => {
                ctl.reset();
                Response::new(Body::empty())
            }
            // Served by a foreign server (plain `router`): the best we can do is abort the body.
            None => Response::new(Body::from_stream(futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("mock fault: reset"))
            }))),
        }
    }

    /// Sleeps as long as generating `tokens` would take: TTFT plus pacing.
    pub async fn generation_delay(&self, knobs: &Knobs, tokens: u32) {
        let mut delay = Duration::from_millis(knobs.ttft_ms);
        if let Some(tps) = knobs.tokens_per_second {
            let pacing = Duration::try_from_secs_f64(f64::from(tokens.saturating_sub(1)) / tps)
                .unwrap_or(Duration::MAX);
            delay = delay.saturating_add(pacing);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn put_static(h: &mut HeaderMap, name: &'static str, value: &'static str) {
    h.insert(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    );
}

pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A 200 whose body claims to be JSON but is cut off mid-object.
pub(crate) fn malformed_response(flavor: Flavor) -> Response {
    let body: &'static [u8] = match flavor {
        Flavor::OpenAi | Flavor::Azure => {
            b"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"trunc"
        }
        Flavor::Anthropic => b"{\"id\":\"msg_mock\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"trunc",
        Flavor::Gemini => b"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"trunc",
    };
    let mut resp = Response::new(Body::from(Bytes::from_static(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn sse_response(body: Body, content_type: &'static str) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

fn openai_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "requests",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

fn gemini_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

pub(crate) fn alnum(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

pub(crate) fn hex(n: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(DIGITS[rng.random_range(0..16)]))
        .collect()
}

fn uuid_like() -> String {
    format!("{}-{}-4{}-a{}-{}", hex(8), hex(4), hex(3), hex(3), hex(12))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A signature-looking string that depends only on `seed`.
pub(crate) fn signature(seed: u64) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(64);
    let mut x = seed;
    for _ in 0..8 {
        x = crate::gen::splitmix(x);
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The key of an `Authorization: Bearer <key>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = crate::behavior::header_str(headers, "authorization")?;
    let (scheme, key) = v.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Whether `given` passes the configured key check.
pub(crate) fn key_ok(state: &MockState, given: Option<&str>) -> Result<(), KeyError> {
    match (given, &state.config().require_key) {
        (None, _) | (Some(""), _) => Err(KeyError::Missing),
        (Some(k), Some(want)) if k != want => Err(KeyError::Wrong),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    Missing,
    Wrong,
}

/// Text of a content value that is a string or a list of `{type:"text",text}` parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                } else if let Some(s) = p.as_str() {
                    out.push_str(s);
                }
            }
            out
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn as_u32(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}
