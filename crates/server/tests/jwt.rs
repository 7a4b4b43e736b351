//! Bearer tokens from an external identity provider, beside API keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example.com/";

fn signing_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../../auth/tests/fixtures/jwt/rsa1.pem")).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("idp-1".into());
    encode(&header, &claims, &signing_key()).unwrap()
}

fn claims(role: &str) -> Value {
    json!({"iss": ISSUER, "aud": "plexus", "sub": "ada@example.com", "team": "red",
           "role": role, "exp": now() + 600})
}

async fn gateway() -> Gateway {
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap())
            .unwrap();
    jwk["kid"] = json!("idp-1");
    let dir = std::env::temp_dir().join(format!("plexus-jwks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({"keys": [jwk]}).to_string()).unwrap();
    Gateway::start_with(
        "",
        &format!(
            "jwt: {{issuer: '{ISSUER}', audience: plexus, jwks_file: '{}'}}",
            path.display()
        ),
    )
    .await
}

async fn chat(gw: &Gateway, bearer: &str) -> u16 {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(bearer)
        .json(&user("gpt", "hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_map_to_principals() {
    let gw = gateway().await;
    assert_eq!(chat(&gw, &token(claims("member"))).await, 200);

    // Claims carry the role: a member may not create teams, an admin may.
    let create_team = |bearer: String| {
        let http = gw.http.clone();
        let url = format!("{}/admin/teams", gw.url);
        async move {
            http.post(url)
                .bearer_auth(bearer)
                .json(&json!({"id": "from-jwt"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(create_team(token(claims("member"))).await, 403);
    assert_eq!(create_team(token(claims("admin"))).await, 201);

    let mut expired = claims("member");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("member");
    wrong_aud["aud"] = json!("someone-else");
    let mut odd_role = claims("member");
    odd_role["role"] = json!("superuser");
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims("admin"),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let mut tampered = token(claims("member"));
    tampered.insert(tampered.len() / 2, 'x');
    for bad in [
        token(expired),
        token(wrong_aud),
        token(odd_role),
        hs256,
        tampered,
    ] {
        assert_eq!(chat(&gw, &bad).await, 401);
    }
    gw.state.audit().flush().await;
    let failures = gw
        .store
        .list_audit(&plexus_store::AuditQuery {
            action: Some("auth.failure".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failures.len(), 5);
    gw.shutdown().await;
}
