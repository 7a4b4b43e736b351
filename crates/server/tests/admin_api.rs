//! The admin API's wire shapes and semantics, through HTTP: every answer is exactly one of the
//! typed structs of `plexus_protocol::admin` (nothing more, nothing less), `DELETE` on a key
//! revokes it and a later `GET` shows it revoked, what the spec says is refused is refused, and
//! a user's key belongs to the user's team.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use plexus_protocol::admin::*;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

async fn call(gw: &Gateway, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    call_as(gw, MASTER_KEY, method, path, body).await
}

async fn call_as(
    gw: &Gateway,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut rb = gw
        .http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The answer as `T`, checked to be exactly `T`: no field the struct does not know, none it
/// has missing (serializing it back gives the same JSON).
fn exactly<T: Serialize + DeserializeOwned>(what: &str, text: &str) -> T {
    let raw: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let typed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{what}: not the struct ({e}): {text}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        raw,
        "{what}: the answer and the struct differ"
    );
    typed
}

async fn typed<T: Serialize + DeserializeOwned>(
    gw: &Gateway,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> T {
    let (s, text) = call(gw, method.clone(), path, body).await;
    assert_eq!(s, status, "{method} {path}: {text}");
    exactly(&format!("{method} {path}"), &text)
}

/// A 400 `invalid_request` answer's `param`.
async fn refused(gw: &Gateway, method: Method, path: &str, body: Option<Value>) -> String {
    refused_with(gw, 400, "invalid_request", method, path, body).await
}

/// An error answer's `param`, checked to be `status` and `code`.
async fn refused_with(
    gw: &Gateway,
    status: u16,
    code: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> String {
    let (s, text) = call(gw, method.clone(), path, body.clone()).await;
    assert_eq!(s, status, "{method} {path} {body:?}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], code, "{text}");
    v["error"]["param"].as_str().unwrap_or("").to_owned()
}

async fn chat_with(gw: &Gateway, key: &str) -> u16 {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&user("gpt", "hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_answer_is_exactly_its_struct() {
    let gw = Gateway::start().await;
    let org: Org = typed(
        &gw,
        Method::POST,
        "/admin/orgs",
        Some(json!({"id": "acme", "name": "Acme"})),
        201,
    )
    .await;
    assert_eq!((org.object.as_str(), org.teams), ("organization", None));
    let team: Team = typed(
        &gw,
        Method::POST,
        "/admin/teams",
        Some(json!({"id": "red", "org": "acme", "max_budget_usd": 12.5, "budget_period": "30d", "rpm": 600})),
        201,
    )
    .await;
    assert_eq!(
        team.limits.max_budget_usd,
        Some(plexus_protocol::money::Nanos(12_500_000_000))
    );
    let _: Team = typed(&gw, Method::GET, "/admin/teams/red", None, 200).await;
    let _: Team = typed(
        &gw,
        Method::PATCH,
        "/admin/teams/red",
        Some(json!({"tpd": 100000000, "rpm": null})),
        200,
    )
    .await;
    let teams: TeamList = typed(&gw, Method::GET, "/admin/teams", None, 200).await;
    assert_eq!((teams.data.len(), teams.has_more), (1, false));
    let org: Org = typed(&gw, Method::GET, "/admin/orgs/acme", None, 200).await;
    assert_eq!(org.teams, Some(vec!["red".to_owned()]));
    let _: OrgList = typed(&gw, Method::GET, "/admin/orgs", None, 200).await;
    let ada: User = typed(
        &gw,
        Method::POST,
        "/admin/users",
        Some(json!({"id": "ada", "team": "red", "rpm": 100})),
        201,
    )
    .await;
    assert_eq!(ada.limits.rpm, Some(100));
    let _: User = typed(
        &gw,
        Method::PATCH,
        "/admin/users/ada",
        Some(json!({"name": "Ada"})),
        200,
    )
    .await;
    let users: UserList = typed(&gw, Method::GET, "/admin/users?team=red", None, 200).await;
    assert_eq!(users.data[0].name, "Ada");
    let key: Key = typed(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "ci", "user": "ada", "models": ["gpt"], "max_budget_usd": 0.0000621, "metadata": {"env": "ci"}})),
        201,
    )
    .await;
    let secret = key.key.clone().unwrap();
    assert_eq!(
        key.limits.max_budget_usd,
        Some(plexus_protocol::money::Nanos(62_100))
    );
    let got: Key = typed(
        &gw,
        Method::GET,
        &format!("/admin/keys/{}", key.id),
        None,
        200,
    )
    .await;
    assert_eq!((got.key, got.revoked), (None, false));
    let _: Key = typed(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{}", key.id),
        Some(json!({"max_budget_usd": 5})),
        200,
    )
    .await;
    let list: KeyList = typed(&gw, Method::GET, "/admin/keys?limit=1", None, 200).await;
    assert_eq!(list.data.len(), 1);
    let rotated: Key = typed(
        &gw,
        Method::POST,
        &format!("/admin/keys/{}/rotate", key.id),
        Some(json!({"grace_seconds": 60})),
        201,
    )
    .await;
    assert_eq!(rotated.rotated_from.as_deref(), Some(key.id.as_str()));

    // Spend: exact sums, no float noise anywhere in the text.
    for _ in 0..3 {
        let (s, text) = call_as(
            &gw,
            &secret,
            Method::POST,
            "/v1/chat/completions",
            Some(user("gpt", "hi")),
        )
        .await;
        assert_eq!(s, 200, "{text}");
    }
    for group in SpendGroup::ALL {
        let path = format!("/admin/spend?group={group}");
        let (s, text) = call(&gw, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{text}");
        let spend: Spend = exactly(&path, &text);
        assert_eq!(spend.group, group.as_str());
        assert_eq!(
            spend.total_usd,
            spend.data.iter().map(|r| r.cost_usd).sum(),
            "{text}"
        );
        assert!(spend
            .data
            .iter()
            .all(|r| r.name.as_ref().is_some_and(|n| n.group() == group)));
        for number in text
            .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
            .filter(|n| n.contains('.'))
        {
            let decimals = number.split('.').nth(1).unwrap_or("");
            assert!(decimals.len() <= 9, "float noise {number} in {text}");
        }
    }
    let audit: AuditList = typed(&gw, Method::GET, "/admin/audit?limit=1000", None, 200).await;
    assert!(audit.data.iter().any(|e| e.action == "key.rotate"));

    // Deletions.
    let (s, _) = call(
        &gw,
        Method::POST,
        "/admin/teams",
        Some(json!({"id": "gone"})),
    )
    .await;
    assert_eq!(s, 201);
    let deleted: Deleted = typed(&gw, Method::DELETE, "/admin/teams/gone", None, 200).await;
    assert_eq!((deleted.object.as_str(), deleted.deleted), ("team", true));
    let deleted: Deleted = typed(&gw, Method::DELETE, "/admin/users/ada", None, 200).await;
    assert_eq!((deleted.object.as_str(), deleted.deleted), ("user", true));
    gw.shutdown().await;
}

/// `DELETE /admin/keys/{id}` revokes: 200 with `revoked: true`; the key stops authenticating;
/// a later `GET` answers 200 with the revoked key (`revoked: true`, the same `revoked_at`); a
/// second `DELETE` answers the same; the default list leaves it out, `include_revoked` shows
/// it; changing or rotating it is a 409 `conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_key_revokes_it_and_it_stays_readable() {
    let gw = Gateway::start().await;
    let key: Key = typed(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "doomed"})),
        201,
    )
    .await;
    let secret = key.key.unwrap();
    let path = format!("/admin/keys/{}", key.id);
    assert_eq!(chat_with(&gw, &secret).await, 200);

    let revoked: KeyRevoked = typed(&gw, Method::DELETE, &path, None, 200).await;
    assert_eq!(
        (revoked.id.as_str(), revoked.deleted, revoked.revoked),
        (key.id.as_str(), true, true)
    );
    assert!(revoked.revoked_at >= key.created_at);
    assert_eq!(chat_with(&gw, &secret).await, 401);

    let got: Key = typed(&gw, Method::GET, &path, None, 200).await;
    assert!(got.revoked);
    assert_eq!(got.revoked_at, Some(revoked.revoked_at));

    let again: KeyRevoked = typed(&gw, Method::DELETE, &path, None, 200).await;
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "revoking again keeps the time"
    );

    let listed: KeyList = typed(&gw, Method::GET, "/admin/keys", None, 200).await;
    assert!(listed.data.iter().all(|k| k.id != key.id));
    let listed: KeyList = typed(
        &gw,
        Method::GET,
        "/admin/keys?include_revoked=true",
        None,
        200,
    )
    .await;
    assert!(listed.data.iter().any(|k| k.id == key.id && k.revoked));

    let param = refused_with(
        &gw,
        409,
        "conflict",
        Method::PATCH,
        &path,
        Some(json!({"name": "zombie"})),
    )
    .await;
    assert_eq!(param, "id");
    let param = refused_with(
        &gw,
        409,
        "conflict",
        Method::POST,
        &format!("{path}/rotate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(param, "id");

    // Unknown keys are 404 with a JSON error, whatever the method.
    for method in [Method::GET, Method::DELETE] {
        let (s, text) = call(&gw, method, "/admin/keys/key_nope", None).await;
        assert_eq!(s, 404, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }
    gw.shutdown().await;
}

/// What the spec declares invalid is refused with 400 naming the parameter, and what it
/// declares valid is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_enforces_what_the_spec_says() {
    let gw = Gateway::start().await;
    let (s, _) = call(&gw, Method::POST, "/admin/teams", Some(json!({"id": "t"}))).await;
    assert_eq!(s, 201);
    let (s, _) = call(&gw, Method::POST, "/admin/users", Some(json!({"id": "u"}))).await;
    assert_eq!(s, 201);
    let key: Key = typed(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "k"})),
        201,
    )
    .await;
    let key_path = format!("/admin/keys/{}", key.id);

    // A taken id is a 409 `conflict` naming it.
    for (path, body) in [
        ("/admin/teams", json!({"id": "t"})),
        ("/admin/users", json!({"id": "u"})),
    ] {
        let param = refused_with(&gw, 409, "conflict", Method::POST, path, Some(body)).await;
        assert_eq!(param, "id", "{path}");
    }

    // Empty ids and names (minLength 1); names are counted in characters, not bytes.
    for (method, path, body, param) in [
        (Method::POST, "/admin/teams", json!({"id": ""}), "id"),
        (
            Method::POST,
            "/admin/teams",
            json!({"id": "x", "name": ""}),
            "name",
        ),
        (Method::POST, "/admin/users", json!({"id": ""}), "id"),
        (
            Method::POST,
            "/admin/users",
            json!({"id": "x", "name": "é".repeat(257)}),
            "name",
        ),
        (Method::POST, "/admin/orgs", json!({"id": ""}), "id"),
        (
            Method::POST,
            "/admin/orgs",
            json!({"id": "x", "name": ""}),
            "name",
        ),
        (Method::POST, "/admin/keys", json!({"name": ""}), "name"),
        (Method::PATCH, "/admin/teams/t", json!({"name": ""}), "name"),
        (Method::PATCH, "/admin/users/u", json!({"name": ""}), "name"),
        (
            Method::PATCH,
            key_path.as_str(),
            json!({"name": ""}),
            "name",
        ),
    ] {
        let got = refused(&gw, method.clone(), path, Some(body.clone())).await;
        assert_eq!(got, param, "{method} {path} {body}");
    }

    let (s, text) = call(
        &gw,
        Method::POST,
        "/admin/users",
        Some(json!({"id": "wide", "name": "é".repeat(256)})),
    )
    .await;
    assert_eq!(s, 201, "256 two-byte characters: {text}");

    // `limit` is 1 to its maximum; 0 is refused; `include_revoked` is a boolean.
    let param = refused(&gw, Method::GET, "/admin/keys?include_revoked=null", None).await;
    assert_eq!(param, "include_revoked");
    for path in [
        "/admin/keys?limit=0",
        "/admin/audit?limit=0",
        "/admin/keys?limit=1001",
    ] {
        assert_eq!(
            refused(&gw, Method::GET, path, None).await,
            "limit",
            "{path}"
        );
    }
    for path in [
        "/admin/keys?limit=1",
        "/admin/audit?limit=1",
        "/admin/audit?limit=10000",
    ] {
        let (s, text) = call(&gw, Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {text}");
    }

    // Integers: a whole float is the same integer (JSON Schema's `integer`), a fraction or a
    // string is refused naming the field; so are unknown fields.
    let t: Team = typed(
        &gw,
        Method::POST,
        "/admin/teams",
        Some(json!({"id": "whole", "rpm": 5.0, "tpd": 1e3})),
        201,
    )
    .await;
    assert_eq!((t.limits.rpm, t.limits.tpd), (Some(5), Some(1000)));
    for (method, path, body, param) in [
        (
            Method::POST,
            "/admin/teams",
            json!({"id": "f", "rpm": 5.5}),
            "rpm",
        ),
        (
            Method::POST,
            "/admin/keys",
            json!({"name": "f", "tpd": "lots"}),
            "tpd",
        ),
        (
            Method::PATCH,
            "/admin/teams/t",
            json!({"max_parallel": 0.5}),
            "max_parallel",
        ),
        (
            Method::PATCH,
            "/admin/users/u",
            json!({"max_budget_usd": "1"}),
            "max_budget_usd",
        ),
        (
            Method::POST,
            "/admin/keys",
            json!({"name": "f", "expires_at": 1.5}),
            "expires_at",
        ),
        (
            Method::POST,
            "/admin/keys",
            json!({"name": "f", "surprise": 1}),
            "surprise",
        ),
        (
            Method::PATCH,
            "/admin/teams/t",
            json!({"colour": "red"}),
            "colour",
        ),
        (
            Method::POST,
            "/admin/teams",
            json!({"id": "m", "metadata": 5}),
            "metadata",
        ),
        (
            Method::POST,
            "/admin/teams",
            json!({"id": "m", "max_budget_usd": -1e-45}),
            "max_budget_usd",
        ),
        (
            Method::POST,
            "/admin/teams",
            json!({"id": "m", "budget_period": ""}),
            "budget_period",
        ),
        (
            Method::PATCH,
            "/admin/teams/t",
            json!({"budget_period": "1.5d"}),
            "budget_period",
        ),
        (
            Method::POST,
            "/admin/keys",
            json!({"name": "m", "expires_in": "0d"}),
            "expires_in",
        ),
        (
            Method::POST,
            &format!("{key_path}/rotate"),
            json!({"grace_seconds": -1}),
            "grace_seconds",
        ),
    ] {
        let got = refused(&gw, method.clone(), path, Some(body.clone())).await;
        assert_eq!(got, param, "{method} {path} {body}");
    }
    let (s, text) = call(&gw, Method::GET, "/admin/teams/m", None).await;
    assert_eq!(s, 404, "nothing was created: {text}");
    gw.shutdown().await;
}

/// A key made for a user of a team belongs to that team: the list shows it, and its spend
/// counts there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_key_belongs_to_the_users_team() {
    let gw = Gateway::start().await;
    for body in [json!({"id": "eng"}), json!({"id": "solo"})] {
        let (s, _) = call(&gw, Method::POST, "/admin/teams", Some(body)).await;
        assert_eq!(s, 201);
    }
    let (s, _) = call(
        &gw,
        Method::POST,
        "/admin/users",
        Some(json!({"id": "alice", "team": "eng"})),
    )
    .await;
    assert_eq!(s, 201);
    let key: Key = typed(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "laptop", "user": "alice"})),
        201,
    )
    .await;
    assert_eq!(key.team.as_deref(), Some("eng"));
    let param = refused(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "x", "user": "alice", "team": "solo"})),
    )
    .await;
    assert_eq!(param, "user", "another team than the user's");
    assert_eq!(chat_with(&gw, key.key.as_deref().unwrap()).await, 200);
    let spend: Spend = typed(&gw, Method::GET, "/admin/spend?group=team", None, 200).await;
    let teams: Vec<Option<String>> = spend
        .data
        .iter()
        .map(|r| r.name.as_ref().and_then(SpendName::text))
        .collect();
    assert_eq!(teams, [Some("eng".to_owned())], "{spend:?}");
    gw.shutdown().await;
}
