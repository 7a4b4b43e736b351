//! Provider credentials in the vault: envelope-encrypted at rest, used in rotation, retired
//! without downtime, never shown or stored in plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Backend, Gateway, MASTER_KEY, TEST_KEK};
use plexus_auth::vault::Kek;
use serde_json::{json, Value};

const SECRET_1: &str = "sk-vault-first-0123456789abcdef";
const SECRET_2: &str = "sk-vault-second-fedcba9876543210";

async fn post(gw: &Gateway, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = gw
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn upstream_key_of_next_request(gw: &Gateway) -> String {
    assert_eq!(gw.chat(user("gpt", "hi")).await.status(), 200);
    let last = gw
        .mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    last.headers["authorization"]
        .trim_start_matches("Bearer ")
        .to_owned()
}

async fn credentials_rotate_and_retire(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    assert_eq!(
        upstream_key_of_next_request(&gw).await,
        "sk-upstream",
        "the config's key"
    );

    let (s, c1) = post(
        &gw,
        MASTER_KEY,
        "/admin/credentials",
        json!({"provider": "oai", "secret": SECRET_1}),
    )
    .await;
    assert_eq!(s, 201, "{c1}");
    assert_eq!(c1["secret"], "sk-...cdef", "masked");
    assert_eq!(c1["version"], 1);
    assert_eq!(
        upstream_key_of_next_request(&gw).await,
        SECRET_1,
        "the vault's credential takes over"
    );

    let (_, c2) = post(
        &gw,
        MASTER_KEY,
        "/admin/credentials",
        json!({"provider": "oai", "secret": SECRET_2}),
    )
    .await;
    assert_eq!(c2["version"], 2);
    let a = upstream_key_of_next_request(&gw).await;
    let b = upstream_key_of_next_request(&gw).await;
    assert_ne!(a, b, "several credentials are used in rotation");

    let r = gw
        .http
        .delete(format!(
            "{}/admin/credentials/{}",
            gw.url,
            c1["id"].as_str().unwrap()
        ))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        assert_eq!(
            upstream_key_of_next_request(&gw).await,
            SECRET_2,
            "the retired version is out"
        );
    }

    // Listing shows masks only; nothing the API returns holds a secret.
    let listed: Value = gw
        .http
        .get(format!("{}/admin/credentials", gw.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = listed.to_string();
    assert!(!text.contains(SECRET_1) && !text.contains(SECRET_2));
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    // Only admins manage credentials.
    let (_, k) = post(&gw, MASTER_KEY, "/admin/keys", json!({"name": "m"})).await;
    let (s, _) = post(
        &gw,
        k["key"].as_str().unwrap(),
        "/admin/credentials",
        json!({"provider": "oai", "secret": "x"}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, e) = post(
        &gw,
        MASTER_KEY,
        "/admin/credentials",
        json!({"provider": "nope", "secret": "x"}),
    )
    .await;
    assert_eq!((s, e["error"]["param"].as_str()), (404, Some("provider")));

    // At rest: no plaintext anywhere in what the database holds.
    let mut dump = String::new();
    for c in gw.store.list_credentials().await.unwrap() {
        dump.push_str(&format!("{c:?}"));
    }
    for e in gw
        .store
        .list_audit(&plexus_store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
    {
        dump.push_str(&format!("{e:?}"));
    }
    if let Some(path) = gw.sqlite_path() {
        gw.state.writer().flush().await;
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{}{suffix}", path.display())) {
                dump.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    assert!(dump.contains("cred_"), "the dump holds the records");
    for secret in [SECRET_1, SECRET_2] {
        assert!(!dump.contains(secret), "plaintext secret at rest");
        assert!(
            !dump.contains(&secret[8..20]),
            "a piece of a secret at rest"
        );
    }

    // A wrong or missing key-encryption key is a clear start-up error, never garbage; a
    // rotation re-wraps everything and can run again safely.
    let config = (*gw.state.runtime().config).clone();
    let client = plexus_providers::client::UpstreamClient::new(&Default::default()).unwrap();
    let wrong = Kek::generate().unwrap();
    let err = plexus_server::Runtime::load(config.clone(), &client, &gw.store, Some(&wrong))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("KEK") || message.contains("key"),
        "{message}"
    );
    let err = plexus_server::Runtime::load(config.clone(), &client, &gw.store, None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("PLEXUS_ENCRYPTION_KEY"), "{message}");
    let old = Kek::from_base64(TEST_KEK).unwrap();
    assert_eq!(
        plexus_server::rotate_kek(&gw.store, &old, &wrong)
            .await
            .unwrap(),
        (2, 0)
    );
    assert_eq!(
        plexus_server::rotate_kek(&gw.store, &old, &wrong)
            .await
            .unwrap(),
        (0, 2)
    );
    assert!(
        plexus_server::Runtime::load(config.clone(), &client, &gw.store, Some(&wrong))
            .await
            .is_ok()
    );
    assert!(
        plexus_server::Runtime::load(config, &client, &gw.store, Some(&old))
            .await
            .is_err()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    credentials_rotate_and_retire(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    credentials_rotate_and_retire(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_raise_an_event_and_leave_the_rotation() {
    let gw = Gateway::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (s, _) = post(
        &gw,
        MASTER_KEY,
        "/admin/credentials",
        json!({"provider": "oai", "secret": SECRET_1, "expires_at": now + 2}),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(upstream_key_of_next_request(&gw).await, SECRET_1);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(plexus_server::run_housekeeping(
        gw.state.clone(),
        std::time::Duration::from_millis(200),
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream_key_of_next_request(&gw).await == SECRET_1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired credential stayed in use"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(upstream_key_of_next_request(&gw).await, "sk-upstream");
    stop.cancel();
    task.await.unwrap();
    gw.state.audit().flush().await;
    let warnings = gw
        .store
        .list_audit(&plexus_store::AuditQuery {
            action: Some("credential.expiring".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!warnings.is_empty(), "an event before it expired");
    gw.shutdown().await;
}
