//! A gateway without a credential vault (no `PLEXUS_ENCRYPTION_KEY`, no `vault.key_file`):
//! what needs the vault is refused with a configuration error that says what to set, not with
//! an upstream or availability error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::MASTER_KEY;
use plexus_core::config::{from_yaml_str, Overrides};
use plexus_providers::client::{ClientOptions, UpstreamClient};
use plexus_server::{AppState, Runtime};
use plexus_store::{LogWriter, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A gateway built without a key-encryption key (no `PLEXUS_ENCRYPTION_KEY`, no
/// `vault.key_file`), on SQLite in `dir`.
async fn gateway_without_a_vault(dir: &std::path::Path) -> AppState {
    let yaml = common::config_yaml("http://127.0.0.1:9", "", "");
    let mut cfg = from_yaml_str(&yaml, &Overrides::default(), &|_| None).unwrap();
    cfg.database = format!("sqlite://{}", dir.join("plexus.db").display());
    let store = Store::connect(&cfg.database).await.unwrap();
    let (writer, _) = LogWriter::spawn(store.clone(), 16);
    let (audit, _) = plexus_auth::audit::AuditWriter::spawn(store.clone());
    let client = UpstreamClient::new(&ClientOptions {
        timeouts: cfg.timeouts,
        ca_bundle: None,
    })
    .unwrap();
    AppState::new(
        Runtime::new(cfg).unwrap(),
        client,
        store,
        writer,
        audit,
        None,
        std::sync::Arc::new(plexus_core::clock::SystemClock),
    )
    .unwrap()
}

#[tokio::test]
async fn without_a_vault_the_gateway_names_the_missing_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let state = gateway_without_a_vault(dir.path()).await;
    let Err(e) = state.require_vault() else {
        panic!("no vault is configured")
    };
    assert_eq!(e.code, plexus_core::ErrorCode::ConfigurationError);
    assert_eq!(e.status(), 500);
    assert!(e.message.contains("PLEXUS_ENCRYPTION_KEY"), "{}", e.message);
    assert!(e.message.contains("vault.key_file"), "{}", e.message);
}

/// Storing a provider credential needs the vault; without one the answer is the configuration
/// error, not an upstream or availability error.
#[tokio::test]
async fn storing_a_credential_without_a_vault_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = gateway_without_a_vault(dir.path()).await;
    let mut req = Request::post("/admin/credentials")
        .header("authorization", format!("Bearer {MASTER_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"provider": "oai", "secret": "sk-upstream-new-0123456789"}).to_string(),
        ))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = plexus_server::app(state).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "configuration_error", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("PLEXUS_ENCRYPTION_KEY"), "{message}");
}
