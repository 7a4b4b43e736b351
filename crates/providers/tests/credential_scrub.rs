//! Upstream error text never carries the gateway's own credentials, nor the upstream's URL,
//! out of the providers crate: an upstream on 127.0.0.1 that echoes the credential it was
//! sent, plainly, base64-encoded or masked, in error bodies and in stream error events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::StreamExt;
use plexus_core::config::{ProviderConfig, ProviderKind, Timeouts};
use plexus_core::ApiError;
use plexus_protocol::openai::ChatCompletionRequest;
use plexus_providers::client::{ClientOptions, ProviderHandle, UpstreamClient};
use plexus_providers::{ConvertCtx, ProviderError};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Not shaped like any known key format, and containing `.` and `/`, so the generic secret
/// patterns alone would keep it: only the held-credential scrubbing removes it.
const CONFIG_KEY: &str = "plx.Upstream/Key-7Hq2Vw9Zr4Ts8Nd3";
const VAULT_KEYS: [&str; 2] = [
    "vault.Cred/One-4Gm8Kp2Xc6Wb1Ry5",
    "vault.Cred/Two-9Lf3Jd7Qs1Hv5Pz8",
];

/// What the upstream answers, given the request head (lower-cased header names).
type Respond = dyn Fn(&Head) -> (u16, &'static str, String) + Send + Sync;
type RespondRaw = dyn Fn(&Head) -> String + Send + Sync;

struct Head {
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The credential as sent, whatever the wire format's header.
    fn credential(&self) -> &str {
        let auth = self.header("authorization");
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return token;
        }
        let key = self.header("x-api-key");
        if !key.is_empty() {
            return key;
        }
        self.header("x-goog-api-key")
    }
}

/// A tiny HTTP/1.1 upstream on 127.0.0.1: one answer per connection, then close.
async fn upstream(respond: Arc<Respond>) -> String {
    upstream_raw(Arc::new(move |head: &Head| {
        let (status, content_type, body) = respond(head);
        format!(
            "HTTP/1.1 {status} Answer\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }))
    .await
}

/// As [`upstream`], with the raw text of the answer given (empty: close without one).
async fn upstream_raw(respond: Arc<RespondRaw>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let respond = Arc::clone(&respond);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let headers: Vec<(String, String)> = text
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let head = Head { headers };
                let length: usize = head.header("content-length").parse().unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let response = respond(&head);
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn config(kind: ProviderKind, base_url: String, api_key: Option<&str>) -> ProviderConfig {
    ProviderConfig {
        name: "echoing".into(),
        kind,
        base_url,
        api_key: api_key.map(|k| SecretString::from(k.to_owned())),
        api_version: None,
        headers: Vec::new(),
        preset: None,
        supports_n: true,
        stream_usage: true,
        responses: kind == ProviderKind::OpenAi,
    }
}

fn client() -> UpstreamClient {
    UpstreamClient::new(&ClientOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(10),
            pool_idle: Duration::from_secs(10),
        },
        ca_bundle: None,
    })
    .unwrap()
}

fn request(stream: bool) -> ChatCompletionRequest {
    serde_json::from_value(serde_json::json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }))
    .unwrap()
}

const CTX: ConvertCtx<'static> = ConvertCtx {
    upstream_model: "m",
    created: 0,
    default_max_tokens: 1024,
    lenient: false,
};

async fn chat_error(client: &UpstreamClient, provider: &ProviderHandle) -> ProviderError {
    client
        .chat(provider, &request(false), &CTX)
        .await
        .expect_err("the upstream refuses")
}

/// Every form of each of `keys` that must not survive, checked in the error's own text and
/// in the message the client is shown.
fn assert_scrubbed(err: ProviderError, keys: &[&str]) -> ApiError {
    let forms: Vec<String> = keys
        .iter()
        .flat_map(|key| {
            [
                (*key).to_owned(),
                STANDARD.encode(key),
                URL_SAFE_NO_PAD.encode(key),
                STANDARD.encode(format!("Bearer {key}")),
                // The middle of the key: no part of it is left either.
                key[4..key.len() - 4].to_owned(),
            ]
        })
        .collect();
    let text = err.to_string();
    let api = ApiError::from(err);
    for shown in [text.as_str(), &api.message] {
        for form in &forms {
            assert!(!shown.contains(form.as_str()), "{form} in: {shown}");
        }
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
    api
}

fn openai_401(message: String) -> (u16, &'static str, String) {
    let body = serde_json::json!({
        "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    });
    (401, "application/json", body.to_string())
}

#[tokio::test]
async fn configured_key_echoed_in_a_401_is_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        openai_401(format!(
            "Incorrect API key provided: {}",
            head.header("authorization")
        ))
    }))
    .await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base,
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    match &err {
        ProviderError::Upstream {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(code.as_deref(), Some("invalid_api_key"));
            assert_eq!(message, "Incorrect API key provided: Bearer [REDACTED]");
        }
        other => panic!("{other:?}"),
    }
    let api = assert_scrubbed(err, &[CONFIG_KEY]);
    assert_eq!(api.code, plexus_core::ErrorCode::UpstreamAuthError);
}

#[tokio::test]
async fn bare_key_without_bearer_is_scrubbed() {
    // Without `Bearer ` in front, no generic pattern matches this key: only the exact value.
    let base = upstream(Arc::new(|head: &Head| {
        openai_401(format!(
            "Incorrect API key provided: {}. You can find your API key in the dashboard.",
            head.credential()
        ))
    }))
    .await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base,
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    let ProviderError::Upstream { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        message,
        "Incorrect API key provided: [REDACTED]. You can find your API key in the dashboard."
    );
    assert_scrubbed(err, &[CONFIG_KEY]);
}

#[tokio::test]
async fn vault_credentials_are_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        openai_401(format!(
            "Incorrect API key provided: {} (authorization: {})",
            head.credential(),
            head.header("authorization")
        ))
    }))
    .await;
    let provider = ProviderHandle::with_credentials(
        config(ProviderKind::OpenAiCompatible, base, None),
        VAULT_KEYS
            .iter()
            .map(|k| SecretString::from((*k).to_owned()))
            .collect(),
    )
    .unwrap();
    assert_eq!(provider.credential_count(), 2);
    let client = client();
    // The credentials rotate: both are sent, and both are scrubbed.
    for _ in 0..2 {
        let err = chat_error(&client, &provider).await;
        assert_scrubbed(err, &VAULT_KEYS);
    }
}

#[tokio::test]
async fn encoded_and_masked_echoes_are_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        let key = head.credential();
        let message = format!(
            "rejected: b64={} b64url={} basic={} url={} shown={}...{} masked={}****{}",
            STANDARD.encode(key),
            URL_SAFE_NO_PAD.encode(key),
            STANDARD.encode(format!("user:{key}")),
            key.replace('/', "%2F"),
            &key[..6],
            &key[key.len() - 4..],
            &key[..4],
            &key[key.len() - 5..],
        );
        openai_401(message)
    }))
    .await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base,
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    let text = err.to_string();
    for form in [
        STANDARD.encode(CONFIG_KEY),
        URL_SAFE_NO_PAD.encode(CONFIG_KEY),
        STANDARD.encode(format!("user:{CONFIG_KEY}")),
        CONFIG_KEY.replace('/', "%2F"),
        format!("{}...", &CONFIG_KEY[..6]),
        format!("****{}", &CONFIG_KEY[CONFIG_KEY.len() - 5..]),
    ] {
        assert!(!text.contains(&form), "{form} in: {text}");
    }
    assert_eq!(text.matches("[REDACTED]").count(), 6, "{text}");
    assert_scrubbed(err, &[CONFIG_KEY]);
}

#[tokio::test]
async fn anthropic_and_gemini_echoes_are_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        let body = serde_json::json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": format!("invalid x-api-key {}", head.credential())}
        });
        (401, "application/json", body.to_string())
    }))
    .await;
    let provider =
        ProviderHandle::new(config(ProviderKind::Anthropic, base, Some(CONFIG_KEY))).unwrap();
    let err = chat_error(&client(), &provider).await;
    assert!(matches!(err, ProviderError::Upstream { status: 401, .. }));
    assert_scrubbed(err, &[CONFIG_KEY]);

    let base = upstream(Arc::new(|head: &Head| {
        let body = serde_json::json!({
            "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": format!("API key not valid: {}", head.credential())}
        });
        (400, "application/json", body.to_string())
    }))
    .await;
    let provider =
        ProviderHandle::new(config(ProviderKind::Gemini, base, Some(CONFIG_KEY))).unwrap();
    let err = chat_error(&client(), &provider).await;
    assert_scrubbed(err, &[CONFIG_KEY]);
}

#[tokio::test]
async fn non_json_error_body_echo_is_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        (
            403,
            "text/html",
            format!(
                "<html><body>Forbidden: {}</body></html>",
                head.header("authorization")
            ),
        )
    }))
    .await;
    let provider =
        ProviderHandle::new(config(ProviderKind::OpenAi, base, Some(CONFIG_KEY))).unwrap();
    let err = chat_error(&client(), &provider).await;
    assert_scrubbed(err, &[CONFIG_KEY]);
}

#[tokio::test]
async fn stream_error_event_echo_is_scrubbed() {
    let base = upstream(Arc::new(|head: &Head| {
        let event = serde_json::json!({
            "error": {"message": format!("key {} was revoked mid-stream", head.credential()), "type": "server_error"}
        });
        (200, "text/event-stream", format!("data: {event}\n\n"))
    }))
    .await;
    let provider = ProviderHandle::with_credentials(
        config(ProviderKind::OpenAiCompatible, base, None),
        vec![SecretString::from(VAULT_KEYS[0].to_owned())],
    )
    .unwrap();
    let stream = client()
        .chat_stream(&provider, &request(true), &CTX)
        .await
        .unwrap();
    let items: Vec<_> = stream.chunks.collect().await;
    let err = items
        .into_iter()
        .find_map(Result::err)
        .expect("an error event");
    assert!(matches!(err, ProviderError::Stream(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "provider stream error: key [REDACTED] was revoked mid-stream"
    );
    assert_scrubbed(err, &[VAULT_KEYS[0]]);
}

#[tokio::test]
async fn extra_secret_headers_are_scrubbed() {
    const HEADER_TOKEN: &str = "hdr.Token/3Kc9Wq5Zp1Vn7Bx2";
    let base = upstream(Arc::new(|head: &Head| {
        openai_401(format!(
            "proxy refused token {}",
            head.header("x-proxy-token")
        ))
    }))
    .await;
    let mut cfg = config(ProviderKind::OpenAiCompatible, base, Some(CONFIG_KEY));
    cfg.headers = vec![
        ("x-proxy-token".into(), HEADER_TOKEN.into()),
        ("http-referer".into(), "https://example.com/app".into()),
    ];
    let provider = ProviderHandle::new(cfg).unwrap();
    let err = chat_error(&client(), &provider).await;
    let text = err.to_string();
    assert!(!text.contains(HEADER_TOKEN), "{text}");
    assert!(text.contains("proxy refused token [REDACTED]"), "{text}");
}

#[tokio::test]
async fn connection_errors_do_not_show_the_upstream_url() {
    // A port that was just free: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = format!("http://{addr}/v1");
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base.clone(),
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    let api = ApiError::from(err);
    for shown in [text.as_str(), &api.message] {
        for leak in [
            base.as_str(),
            "http://",
            "127.0.0.1",
            &addr.to_string(),
            &format!(":{}", addr.port()),
            "/chat/completions",
        ] {
            assert!(!shown.contains(leak), "{leak} in: {shown}");
        }
        assert!(shown.starts_with("could not reach the provider"), "{shown}");
        assert!(shown.contains("connection refused"), "{shown}");
    }
    assert_eq!(api.code, plexus_core::ErrorCode::UpstreamError);

    // The same for embeddings and streams.
    let client = client();
    let req = serde_json::from_value(serde_json::json!({"model": "m", "input": "hi"})).unwrap();
    let err = client.embeddings(&provider, &req, "m").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not reach the provider: connection refused"
    );
    let Err(err) = client.chat_stream(&provider, &request(true), &CTX).await else {
        panic!("the stream cannot start")
    };
    assert_eq!(
        err.to_string(),
        "could not reach the provider: connection refused"
    );
}

/// No URL, host or port in what the client is shown.
fn assert_no_url(err: ProviderError, base: &str) {
    let text = err.to_string();
    let api = ApiError::from(err);
    let host = base.trim_start_matches("http://");
    for shown in [text.as_str(), &api.message] {
        for leak in [base, "http://", "127.0.0.1", host, "/chat/completions"] {
            assert!(!shown.contains(leak), "{leak} in: {shown}");
        }
    }
}

#[tokio::test]
async fn broken_connections_do_not_show_the_upstream_url() {
    // Closed right after the request: no answer at all.
    let base = upstream_raw(Arc::new(|_: &Head| String::new())).await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base.clone(),
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert_no_url(err, &base);

    // An answer cut short: the body promised more than it sent.
    let base = upstream_raw(Arc::new(|_: &Head| {
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n{\"id\":".to_owned()
    }))
    .await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base.clone(),
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let err = chat_error(&client(), &provider).await;
    assert!(
        err.to_string().contains("reading the answer failed"),
        "{err}"
    );
    assert_no_url(err, &base);

    // A stream cut short.
    let base = upstream_raw(Arc::new(|_: &Head| {
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 1000\r\nconnection: close\r\n\r\ndata: {\"id\":".to_owned()
    }))
    .await;
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        base.clone(),
        Some(CONFIG_KEY),
    ))
    .unwrap();
    let stream = client()
        .chat_stream(&provider, &request(true), &CTX)
        .await
        .unwrap();
    let items: Vec<_> = stream.chunks.collect().await;
    let err = items
        .into_iter()
        .find_map(Result::err)
        .expect("a broken stream");
    assert!(err.to_string().contains("the stream broke"), "{err}");
    assert_no_url(err, &base);
}
