//! Open mode (no master key, on loopback): a request without a credential is the admin, but a
//! presented Plexus credential (a virtual key, or a JWT when configured) is always checked, and a
//! virtual key keeps its restrictions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway};
use serde_json::{json, Value};

/// Sends `body` to `path`, with `key` as the bearer token when given.
async fn send(gw: &Gateway, key: Option<&str>, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", gw.url);
    let mut rb = match &body {
        Some(_) => gw.http.post(url),
        None => gw.http.get(url),
    };
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn chat(gw: &Gateway, key: Option<&str>, model: &str) -> (u16, Value) {
    send(gw, key, "/v1/chat/completions", Some(user(model, "hi"))).await
}

#[tokio::test]
async fn without_a_master_key_presented_credentials_are_still_checked() {
    let gw = Gateway::start_open("").await;
    assert!(gw.state.runtime().master_key_hash.is_none());

    // No credential: open, as the anonymous admin.
    assert_eq!(chat(&gw, None, "gpt").await.0, 200);

    // An unknown key is refused, and the refusal audited.
    let (s, err) = chat(&gw, Some("sk-px-bogus"), "gpt").await;
    assert_eq!(s, 401, "{err}");
    assert_eq!(err["error"]["code"], "invalid_api_key");

    // Creating a key needs no credential here, and says what open mode means.
    let (s, k) = send(
        &gw,
        None,
        "/admin/keys",
        Some(json!({"name": "gpt-only", "models": ["gpt"]})),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let warning = k["warning"].as_str().expect("a warning in open mode");
    assert!(warning.contains("master key"), "{warning}");

    // The key keeps its restrictions.
    let key = k["key"].as_str().unwrap();
    assert_eq!(chat(&gw, Some(key), "gpt").await.0, 200);
    let (s, err) = chat(&gw, Some(key), "sonnet").await;
    assert_eq!(s, 403, "{err}");

    let (s, log) = send(&gw, None, "/admin/audit?limit=100", None).await;
    assert_eq!(s, 200, "{log}");
    let failures: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.failure")
        .collect();
    assert_eq!(failures.len(), 1, "{log}");
    assert_eq!(failures[0]["outcome"], "denied");
    assert_eq!(failures[0]["target"], "/v1/chat/completions");
    assert!(
        !log.to_string().contains("sk-px-bogus"),
        "no secret in the log"
    );

    // A value that does not claim to be a Plexus key is what SDKs send when they insist on one
    // (the README's `api_key="anything-when-no-master-key"`): open mode stays open to it.
    assert_eq!(
        chat(&gw, Some("anything-when-no-master-key"), "gpt")
            .await
            .0,
        200
    );
    gw.shutdown().await;
}
