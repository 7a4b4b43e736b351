//! The SDK against the simulator (which speaks the OpenAI API like Plexus does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use plexus_mock::{MockConfig, MockServer};
use plexus_sdk::{ChatCompletionRequest, Client, EmbeddingInput, EmbeddingRequest, Message, Role};

fn request(model: &str, text: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.into(),
        messages: vec![Message::text(Role::User, text)],
        ..Default::default()
    }
}

#[tokio::test]
async fn chat_stream_embeddings_and_models() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let client = Client::new(&format!("{}/v1", mock.url()), Some("sk-test")).unwrap();

    let answer = client.chat(&request("echo", "hello sdk")).await.unwrap();
    assert_eq!(
        answer.choices[0].message.content.as_deref(),
        Some("hello sdk")
    );

    let mut stream = client
        .chat_stream(&request("echo", "streamed words"))
        .await
        .unwrap();
    let mut text = String::new();
    let mut usage = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for c in &chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
        }
        usage = chunk.usage.or(usage);
    }
    assert_eq!(text, "streamed words");
    assert!(usage.unwrap().completion_tokens > 0);

    let emb = client
        .embeddings(&EmbeddingRequest {
            model: "text-embedding-3-small".into(),
            input: EmbeddingInput::Many(vec!["a".into(), "b".into()]),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(emb.data.len(), 2);

    let models = client.models().await.unwrap();
    assert!(!models.data.is_empty());
}

#[tokio::test]
async fn errors_carry_the_code_and_retries_recover() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let url = format!("{}/v1", mock.url());

    // Two failures, then success: within the default two retries.
    let client = Client::new(&url, Some("sk-test")).unwrap();
    let ok = client.chat(&request("gpt+fail-first-2", "hi")).await;
    assert!(ok.is_ok(), "{ok:?}");

    let no_retries = Client::new(&url, Some("sk-test"))
        .unwrap()
        .with_max_retries(0);
    let err = no_retries
        .chat(&request("gpt+fault-429+retry-after-1", "hi"))
        .await
        .unwrap_err();
    match &err {
        plexus_sdk::Error::Api { status, .. } => assert_eq!(*status, 429),
        other => panic!("API error expected, got {other:?}"),
    }

    let unauthenticated = Client::new(&url, None).unwrap();
    let err = unauthenticated
        .chat(&request("gpt", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_api_key"));

    // A stream cut mid-way surfaces as an error, never as a silent end.
    let mut stream = client
        .chat_stream(&request("gpt+cut-after-2+tps-200", "hi"))
        .await
        .unwrap();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        if item.is_err() {
            failed = true;
        }
    }
    assert!(failed);
}
