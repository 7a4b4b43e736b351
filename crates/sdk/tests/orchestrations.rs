//! `Client::orchestrate` and `Client::orchestration` against the simulator, which has no
//! orchestrations: what is sent (the path, the escaped id) and how errors come back. The CLI's
//! `orchestrations` test runs both against a served gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_mock::{MockConfig, MockServer};
use plexus_sdk::{
    ChatCompletionRequest, Client, Error, Message, OrchestrateFields, OrchestrationRequest, Role,
};

#[tokio::test]
async fn errors_are_api_errors_and_ids_are_escaped() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let client = Client::new(&format!("{}/v1", mock.url()), Some("sk-test"))
        .unwrap()
        .with_max_retries(0);

    let err = client.orchestration("req/1 x").await.unwrap_err();
    match &err {
        Error::Api { status, body, .. } => {
            assert_eq!(*status, 404);
            assert!(
                body.error
                    .message
                    .contains("GET /v1/orchestrations/req%2F1%20x"),
                "{}",
                body.error.message
            );
        }
        other => panic!("API error expected, got {other:?}"),
    }

    let request = OrchestrationRequest {
        chat: ChatCompletionRequest {
            messages: vec![Message::text(Role::User, "What is 2 + 2?")],
            stream: Some(true),
            ..Default::default()
        },
        fields: OrchestrateFields {
            strategy: Some("vote".into()),
            members: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        },
    };
    let err = client.orchestrate(&request).await.unwrap_err();
    match &err {
        Error::Api { status, body, .. } => {
            assert_eq!(*status, 404);
            assert!(
                body.error.message.contains("POST /v1/orchestrations"),
                "{}",
                body.error.message
            );
        }
        other => panic!("API error expected, got {other:?}"),
    }

    // Nothing listens there: a connection error, not a panic or a decode error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = Client::new(&format!("http://127.0.0.1:{port}/v1"), None)
        .unwrap()
        .with_max_retries(0);
    assert!(matches!(
        closed.orchestration("x").await.unwrap_err(),
        Error::Http(_)
    ));
}
