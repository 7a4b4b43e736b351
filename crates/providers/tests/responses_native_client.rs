//! `UpstreamClient::responses_native[_stream]` against the provider simulator and a tiny
//! echoing upstream: the URL, the body as sent (only `model` replaced), the usage, the tapped
//! events, the error mapping and the credential scrubbing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use plexus_core::config::{ProviderConfig, ProviderKind, Timeouts};
use plexus_mock::{MockConfig, MockServer};
use plexus_providers::client::{
    ChatBody, ClientOptions, NativeApi, NativeRequest, ProviderHandle, Tap, UpstreamClient,
};
use plexus_providers::{ConvertCtx, ProviderError};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "plx.Upstream/Key-7Hq2Vw9Zr4Ts8Nd3";

fn config(kind: ProviderKind, base_url: String) -> ProviderConfig {
    ProviderConfig {
        name: "up".into(),
        kind,
        base_url,
        api_key: Some(SecretString::from(KEY.to_owned())),
        api_version: None,
        headers: Vec::new(),
        preset: None,
        supports_n: true,
        stream_usage: true,
        responses: true,
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

fn ctx(model: &str) -> ConvertCtx<'_> {
    ConvertCtx {
        upstream_model: model,
        created: 1,
        default_max_tokens: 4096,
        lenient: true,
    }
}

fn body(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "client-name",
        "input": "Say hello",
        "include": ["reasoning.encrypted_content"],
        "a_future_field": {"x": 1},
        "stream": stream
    }))
    .unwrap()
}

#[tokio::test]
async fn a_plain_answer_comes_back_as_sent_with_its_usage() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let provider =
        ProviderHandle::new(config(ProviderKind::OpenAi, format!("{}/v1", mock.url()))).unwrap();
    let body = body(false);
    let native = NativeRequest {
        body: &body,
        headers: &[],
    };
    let out = client()
        .native(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini"),
        )
        .await
        .unwrap();
    let ChatBody::Native { bytes, usage } = out.response else {
        panic!("not native")
    };
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(r["object"], "response");
    assert_eq!(r["model"], "gpt-4o-mini");
    assert_eq!(
        usage.prompt_tokens,
        r["usage"]["input_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        usage.completion_tokens,
        r["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert!(usage.completion_tokens > 0);

    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/responses");
    assert_eq!(
        sent[0].header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    let mut expected: Value = serde_json::from_slice(&body).unwrap();
    expected["model"] = json!("gpt-4o-mini");
    assert_eq!(sent[0].body, expected);

    // Upstream errors map as on the chat path.
    let err = client()
        .native(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini+fault-429"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Upstream { status: 429, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_stream_is_decoded_for_accounting_and_tapped_for_the_client() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let provider = ProviderHandle::new(config(
        ProviderKind::OpenAiCompatible,
        format!("{}/v1", mock.url()),
    ))
    .unwrap();
    let body = body(true);
    let native = NativeRequest {
        body: &body,
        headers: &[],
    };
    let tap = Tap::default();
    let mut stream = client()
        .native_stream(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini"),
            tap.clone(),
        )
        .await
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = stream.chunks.next().await {
        chunks.push(c.unwrap());
    }
    let events = tap.drain();
    assert_eq!(events[0].0, "response.created");
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    let done: Value = serde_json::from_str(data).unwrap();
    // Every event reached the tap, in order.
    let seq: Vec<u64> = events
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());

    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    let expected = done["response"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .unwrap()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text, expected);
    let usage = chunks.last().unwrap().usage.as_ref().unwrap();
    assert_eq!(
        usage.prompt_tokens,
        done["response"]["usage"]["input_tokens"].as_u64().unwrap()
    );
    let sent = mock.requests();
    assert_eq!(sent[0].path, "/v1/responses");
    assert_eq!(sent[0].body["stream"], true);

    // A stream cut short is an error after what arrived.
    let tap = Tap::default();
    let mut stream = client()
        .native_stream(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini+cut-after-2"),
            tap.clone(),
        )
        .await
        .unwrap();
    let mut last = None;
    while let Some(c) = stream.chunks.next().await {
        last = Some(c);
    }
    assert!(
        matches!(last, Some(Err(ProviderError::Stream(_)))),
        "{last:?}"
    );
    assert!(!tap.drain().is_empty());
}

#[tokio::test]
async fn only_openai_kinds_serve_it_and_errors_are_scrubbed() {
    // An upstream that echoes the credential it was sent in its error body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut head = String::new();
                while !head.contains("\r\n\r\n") {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let sent = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: Bearer "))
                    .unwrap_or("")
                    .to_owned();
                let body =
                    json!({"error": {"message": format!("Incorrect API key provided: {sent}"),
                    "type": "invalid_request_error", "code": "invalid_api_key"}})
                    .to_string();
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    let provider =
        ProviderHandle::new(config(ProviderKind::OpenAi, format!("http://{addr}/v1"))).unwrap();
    let body = body(false);
    let native = NativeRequest {
        body: &body,
        headers: &[],
    };
    let err = client()
        .native(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Upstream { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(KEY), "{err}");
    let err = client()
        .native_stream(
            &provider,
            NativeApi::OpenAiResponses,
            &native,
            &ctx("gpt-4o-mini"),
            Tap::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains(KEY), "{err}");
    assert!(err.to_string().contains("Incorrect API key"), "{err}");

    for kind in [
        ProviderKind::Azure,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ] {
        let provider = ProviderHandle::new(config(kind, format!("http://{addr}"))).unwrap();
        let err = client()
            .native(&provider, NativeApi::OpenAiResponses, &native, &ctx("m"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Unsupported {
                    param: "responses",
                    ..
                }
            ),
            "{kind:?}: {err:?}"
        );
    }
}
