//! Virtual keys, roles and the audit log through the admin API and the OpenAI API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Backend, Gateway, MASTER_KEY};
use serde_json::{json, Value};
use std::time::Duration;

async fn admin(
    gw: &Gateway,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = gw
        .http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(key);
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

async fn post(gw: &Gateway, key: &str, path: &str, body: Value) -> (u16, Value) {
    admin(gw, key, reqwest::Method::POST, path, Some(body)).await
}

async fn get(gw: &Gateway, key: &str, path: &str) -> (u16, Value) {
    admin(gw, key, reqwest::Method::GET, path, None).await
}

async fn chat_with(gw: &Gateway, key: &str, model: &str) -> u16 {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&user(model, "hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits (with a deadline) until `key` is refused, e.g. once it has expired.
async fn until_refused(gw: &Gateway, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chat_with(gw, key, "gpt").await != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key was never refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Teams red and blue; alice (red team admin), bob (red member), dave (blue member), and a key
/// for each.
async fn org(gw: &Gateway) -> (String, String, String) {
    for team in ["red", "blue"] {
        let (s, _) = post(gw, MASTER_KEY, "/admin/teams", json!({"id": team})).await;
        assert_eq!(s, 201);
    }
    for (id, team, role) in [
        ("alice", "red", "team_admin"),
        ("bob", "red", "member"),
        ("dave", "blue", "member"),
    ] {
        let (s, body) = post(
            gw,
            MASTER_KEY,
            "/admin/users",
            json!({"id": id, "team": team, "role": role}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    let mut keys = Vec::new();
    for (name, team, u, role) in [
        ("a", "red", "alice", "team_admin"),
        ("b", "red", "bob", "member"),
        ("d", "blue", "dave", "member"),
    ] {
        let (s, body) = post(
            gw,
            MASTER_KEY,
            "/admin/keys",
            json!({"name": name, "team": team, "user": u, "role": role}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        keys.push(body["key"].as_str().unwrap().to_owned());
    }
    (keys[0].clone(), keys[1].clone(), keys[2].clone())
}

async fn keys_authenticate_and_carry_their_limits(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (s, created) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "svc", "models": ["gpt", "claude/*"], "rpm": 60, "max_budget_usd": 5, "budget_period": "30d", "metadata": {"env": "ci"}}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-px-"));
    assert_eq!(created["rpm"], 60);
    assert_eq!(created["metadata"]["env"], "ci");
    assert!(created.get("key_hash").is_none());

    // Allowed models work; others are 403 naming the model; the log row carries the key id.
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("x-request-id", "by-virtual-key")
        .json(&user("gpt", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(gw.logged("by-virtual-key").await.key_id, created["id"]);
    assert_eq!(chat_with(&gw, &key, "claude/claude-haiku-4-5").await, 200);
    let denied = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&user("sonnet", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(body["error"]["param"], "model");

    // The stored key is only a hash: the plaintext appears nowhere in the database.
    let stored = gw
        .store
        .get_key(created["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.key_hash, key);
    assert!(!stored.key_hash.contains(&key[20..]));

    // Wrong secret for a real id, malformed keys: 401.
    let mut wrong = key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    for bad in [
        wrong.as_str(),
        "sk-px-short",
        "Bearer-nonsense",
        &"x".repeat(5000),
    ] {
        assert_eq!(chat_with(&gw, bad, "gpt").await, 401, "{bad:.40}");
    }
    gw.shutdown().await;
}

async fn revoked_expired_and_rotated_keys(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (_, k) = post(&gw, MASTER_KEY, "/admin/keys", json!({"name": "to-revoke"})).await;
    let key = k["key"].as_str().unwrap().to_owned();
    let id = k["id"].as_str().unwrap().to_owned();
    assert_eq!(chat_with(&gw, &key, "gpt").await, 200);
    let (s, _) = admin(
        &gw,
        MASTER_KEY,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        chat_with(&gw, &key, "gpt").await,
        401,
        "revocation is immediate on this instance"
    );

    let (_, k) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "short-lived", "expires_in": "1s"}),
    )
    .await;
    let short = k["key"].as_str().unwrap().to_owned();
    assert_eq!(chat_with(&gw, &short, "gpt").await, 200);
    until_refused(&gw, &short).await;
    assert_eq!(chat_with(&gw, &short, "gpt").await, 401, "expired");

    // Rotation with a grace period: both keys work, then only the new one.
    let (_, k) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "rotating", "rpm": 10}),
    )
    .await;
    let old = k["key"].as_str().unwrap().to_owned();
    let old_id = k["id"].as_str().unwrap().to_owned();
    let (s, rotated) = post(
        &gw,
        MASTER_KEY,
        &format!("/admin/keys/{old_id}/rotate"),
        json!({"grace_seconds": 1}),
    )
    .await;
    assert_eq!(s, 201, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["rotated_from"], old_id.as_str());
    assert_eq!(rotated["rpm"], 10, "attributes carry over");
    assert_eq!(
        chat_with(&gw, &old, "gpt").await,
        200,
        "within the grace period"
    );
    assert_eq!(chat_with(&gw, &new, "gpt").await, 200);
    until_refused(&gw, &old).await;
    assert_eq!(
        chat_with(&gw, &old, "gpt").await,
        401,
        "after the grace period"
    );
    assert_eq!(chat_with(&gw, &new, "gpt").await, 200);

    let (_, k) = post(&gw, MASTER_KEY, "/admin/keys", json!({"name": "instant"})).await;
    let (_, r) = post(
        &gw,
        MASTER_KEY,
        &format!("/admin/keys/{}/rotate", k["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(
        chat_with(&gw, k["key"].as_str().unwrap(), "gpt").await,
        401,
        "no grace: revoked at once"
    );
    assert_eq!(chat_with(&gw, r["key"].as_str().unwrap(), "gpt").await, 200);
    gw.shutdown().await;
}

async fn roles_are_enforced_on_every_admin_route(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (alice, bob, dave) = org(&gw).await;

    // The team admin manages its team's keys, not another team's, and cannot escalate.
    let (s, bobs) = post(
        &gw,
        &alice,
        "/admin/keys",
        json!({"name": "for bob", "user": "bob"}),
    )
    .await;
    assert_eq!(s, 201, "{bobs}");
    assert_eq!(bobs["team"], "red");
    let (s, _) = post(
        &gw,
        &alice,
        "/admin/keys",
        json!({"name": "x", "team": "blue", "user": "dave"}),
    )
    .await;
    assert_eq!(s, 403, "another team's user");
    let (s, _) = post(
        &gw,
        &alice,
        "/admin/keys",
        json!({"name": "x", "role": "admin"}),
    )
    .await;
    assert_eq!(s, 403, "role escalation");
    let (s, _) = post(&gw, &alice, "/admin/teams", json!({"id": "green"})).await;
    assert_eq!(s, 403, "team admins do not create teams");
    let (s, _) = post(
        &gw,
        &alice,
        "/admin/users",
        json!({"id": "eve", "team": "blue"}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, created) = post(&gw, &alice, "/admin/users", json!({"id": "erin"})).await;
    assert_eq!(s, 201);
    assert_eq!(created["team"], "red");

    // A member sees and manages only its own keys.
    let (s, own) = post(&gw, &bob, "/admin/keys", json!({"name": "bob's own"})).await;
    assert_eq!(s, 201, "{own}");
    assert_eq!(own["user"], "bob");
    let (s, _) = post(
        &gw,
        &bob,
        "/admin/keys",
        json!({"name": "x", "role": "team_admin"}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = post(
        &gw,
        &bob,
        "/admin/keys",
        json!({"name": "x", "user": "alice"}),
    )
    .await;
    assert_eq!(s, 403, "a member cannot create keys for others");
    let (_, listed) = get(&gw, &bob, "/admin/keys?team=blue").await;
    let owners: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["user"].as_str().unwrap())
        .collect();
    assert!(!owners.is_empty());
    assert!(owners.iter().all(|u| *u == "bob"), "{owners:?}");
    let (_, all) = get(&gw, MASTER_KEY, "/admin/keys?team=red").await;
    let alices = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["user"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = get(&gw, &bob, &format!("/admin/keys/{alices}")).await;
    assert_eq!(s, 404, "other people's keys are invisible");
    let (s, _) = admin(
        &gw,
        &bob,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{alices}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(
        &gw,
        &dave,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{}", bobs["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 404, "another team's member");
    let (s, _) = admin(
        &gw,
        &alice,
        reqwest::Method::PATCH,
        &format!("/admin/keys/{}", bobs["id"].as_str().unwrap()),
        Some(json!({"rpm": 5})),
    )
    .await;
    assert_eq!(s, 200, "the team admin edits its team's keys");

    // Viewers read, never write; nobody but admins reads the audit log.
    let (s, v) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "viewer", "team": "red", "role": "viewer"}),
    )
    .await;
    assert_eq!(s, 201);
    let viewer = v["key"].as_str().unwrap();
    let (s, _) = post(&gw, viewer, "/admin/keys", json!({"name": "x"})).await;
    assert_eq!(s, 403);
    let (s, _) = get(&gw, viewer, "/admin/keys").await;
    assert_eq!(s, 200);
    for key in [alice.as_str(), bob.as_str(), viewer] {
        let (s, _) = get(&gw, key, "/admin/audit").await;
        assert_eq!(s, 403);
    }
    gw.shutdown().await;
}

async fn admin_input_is_validated_and_listing_paginates(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    for (body, param) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "role": "god"}), "role"),
        (json!({"name": "x", "rpm": -1}), "rpm"),
        (
            json!({"name": "x", "budget_period": "whenever"}),
            "budget_period",
        ),
        (json!({"name": "x", "expires_at": 1}), "expires_at"),
        (json!({"name": "x", "expires_at": -5}), "expires_at"),
        (
            json!({"name": "x", "expires_at": 253402300800_i64}),
            "expires_at",
        ),
        (json!({"name": "x", "team": "nope"}), ""),
        (json!({"name": "x", "surprise": 1}), ""),
    ] {
        let (s, e) = post(&gw, MASTER_KEY, "/admin/keys", body.clone()).await;
        assert!(s == 400 || s == 404, "{body}: {s} {e}");
        if !param.is_empty() {
            assert_eq!(e["error"]["param"], param, "{body}");
        }
    }
    let (s, _) = post(&gw, MASTER_KEY, "/admin/teams", json!({"id": "bad id!"})).await;
    assert_eq!(s, 400);
    let (s, _) = post(&gw, MASTER_KEY, "/admin/teams", json!({"id": "dup"})).await;
    assert_eq!(s, 201);
    let (s, _) = post(&gw, MASTER_KEY, "/admin/teams", json!({"id": "dup"})).await;
    assert_eq!(s, 409, "duplicate");

    for i in 0..7 {
        post(
            &gw,
            MASTER_KEY,
            "/admin/keys",
            json!({"name": format!("k{i}")}),
        )
        .await;
    }
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/keys?limit=3&cursor={c}"),
            None => "/admin/keys?limit=3".to_owned(),
        };
        let (s, page) = get(&gw, MASTER_KEY, &path).await;
        assert_eq!(s, 200);
        seen += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 7);
    let (s, _) = get(&gw, MASTER_KEY, "/admin/keys?limit=0").await;
    assert_eq!(s, 400);
    let (s, _) = get(&gw, "sk-px-not-a-key", "/admin/keys").await;
    assert_eq!(s, 401);
    gw.shutdown().await;
}

async fn admin_actions_and_failures_are_audited_in_a_verifiable_chain(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (_, k) = post(&gw, MASTER_KEY, "/admin/keys", json!({"name": "audited"})).await;
    let id = k["id"].as_str().unwrap().to_owned();
    admin(
        &gw,
        MASTER_KEY,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(chat_with(&gw, k["key"].as_str().unwrap(), "gpt").await, 401);
    assert_eq!(chat_with(&gw, "sk-wrong", "gpt").await, 401);
    let (s, log) = get(&gw, MASTER_KEY, "/admin/audit?limit=100").await;
    assert_eq!(s, 200);
    let entries = log["data"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(actions.contains(&("key.create", "ok")), "{actions:?}");
    assert!(actions.contains(&("key.revoke", "ok")));
    let failures: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "auth.failure")
        .collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(
        failures[0]["actor"],
        id.as_str(),
        "the key's public id, never the key"
    );
    assert_eq!(failures[0]["details"]["reason"], "revoked");
    assert_eq!(failures[0]["source"], "127.0.0.1");
    let text = log.to_string();
    assert!(
        !text.contains(k["key"].as_str().unwrap()),
        "no secret in the audit log"
    );
    assert!(!text.contains(MASTER_KEY));

    // The stored chain verifies, and an edit in the database breaks it.
    gw.state.audit().flush().await;
    let stored = gw
        .store
        .list_audit(&plexus_store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut v = plexus_auth::audit::Verifier::default();
    for e in &stored {
        v.check(e).unwrap();
    }
    let mut tampered = stored.clone();
    tampered[0].outcome = "denied".into();
    let mut v = plexus_auth::audit::Verifier::default();
    assert!(v.check(&tampered[0]).is_err());
    gw.shutdown().await;
}

async fn spend_is_reported_within_each_scope(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (alice, bob, dave) = org(&gw).await;
    for _ in 0..3 {
        assert_eq!(chat_with(&gw, &bob, "gpt").await, 200);
    }
    assert_eq!(chat_with(&gw, &dave, "sonnet").await, 200);
    let (s, by_user) = get(&gw, &alice, "/admin/spend?group=user").await;
    assert_eq!(s, 200, "{by_user}");
    let users: Vec<&str> = by_user["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob"], "the team admin sees its team only");
    assert_eq!(by_user["data"][0]["requests"], 3);
    assert!(by_user["total_usd"].as_f64().unwrap() > 0.0);
    let (_, mine) = get(&gw, &dave, "/admin/spend?group=model&team=red").await;
    let models: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        ["sonnet"],
        "a member sees its own spend, whatever it asks"
    );
    let (_, all) = get(&gw, MASTER_KEY, "/admin/spend?group=team").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (_, days) = get(&gw, MASTER_KEY, "/admin/spend?group=day").await;
    assert!(days["data"][0]["day"].as_i64().unwrap() > 1_700_000_000);
    let (s, _) = get(&gw, MASTER_KEY, "/admin/spend?group=planet").await;
    assert_eq!(s, 400);
    gw.shutdown().await;
}

async fn patch(gw: &Gateway, key: &str, path: &str, body: Value) -> (u16, Value) {
    admin(gw, key, reqwest::Method::PATCH, path, Some(body)).await
}

/// The rate limits of a JSON view: `[rpm, tpm, tpd, max_parallel]`.
fn rates(v: &Value) -> [Option<i64>; 4] {
    ["rpm", "tpm", "tpd", "max_parallel"].map(|f| v[f].as_i64())
}

/// Rate limits on teams, users and keys (tokens per day included): set on create, read back,
/// changed and cleared by PATCH, validated with the parameter named, audited, and only an
/// admin sets a team's.
async fn rate_limits_on_keys_users_and_teams(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (s, team) = post(
        &gw,
        MASTER_KEY,
        "/admin/teams",
        json!({"id": "lim", "rpm": 600, "tpm": 100_000, "tpd": 5_000_000_000_i64, "max_parallel": 10}),
    )
    .await;
    assert_eq!(s, 201, "{team}");
    assert_eq!(
        rates(&team),
        [Some(600), Some(100_000), Some(5_000_000_000), Some(10)]
    );
    let (s, u) = post(
        &gw,
        MASTER_KEY,
        "/admin/users",
        json!({"id": "lu", "team": "lim", "rpm": 60, "tpd": 1000}),
    )
    .await;
    assert_eq!(s, 201, "{u}");
    assert_eq!(rates(&u), [Some(60), None, Some(1000), None]);
    let (s, k) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "lk", "team": "lim", "user": "lu", "rpm": 5, "tpd": 777, "max_parallel": 2}),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(rates(&k), [Some(5), None, Some(777), Some(2)]);
    let key_path = format!("/admin/keys/{}", k["id"].as_str().unwrap());

    // Read back, one by one and in lists.
    let (_, t) = get(&gw, MASTER_KEY, "/admin/teams/lim").await;
    assert_eq!(rates(&t), rates(&team));
    let (_, teams) = get(&gw, MASTER_KEY, "/admin/teams").await;
    assert_eq!(rates(&teams["data"][0]), rates(&team));
    let (_, got) = get(&gw, MASTER_KEY, "/admin/users/lu").await;
    assert_eq!(rates(&got), rates(&u));
    let (_, users) = get(&gw, MASTER_KEY, "/admin/users?team=lim").await;
    assert_eq!(rates(&users["data"][0]), rates(&u));
    let (_, got) = get(&gw, MASTER_KEY, &key_path).await;
    assert_eq!(rates(&got), rates(&k));

    // PATCH sets, clears (`null`) and leaves the rest alone.
    let (s, t) = patch(
        &gw,
        MASTER_KEY,
        "/admin/teams/lim",
        json!({"rpm": 700, "tpd": null}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(rates(&t), [Some(700), Some(100_000), None, Some(10)]);
    let (s, got) = patch(
        &gw,
        MASTER_KEY,
        "/admin/users/lu",
        json!({"rpm": null, "max_parallel": 3, "tpm": 2000}),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(rates(&got), [None, Some(2000), Some(1000), Some(3)]);
    let (s, got) = patch(&gw, MASTER_KEY, &key_path, json!({"tpd": 888, "rpm": null})).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(rates(&got), [None, None, Some(888), Some(2)]);
    let (_, t) = get(&gw, MASTER_KEY, "/admin/teams/lim").await;
    assert_eq!(rates(&t), [Some(700), Some(100_000), None, Some(10)]);
    let (_, got) = get(&gw, MASTER_KEY, "/admin/users/lu").await;
    assert_eq!(rates(&got), [None, Some(2000), Some(1000), Some(3)]);
    let (_, got) = get(&gw, MASTER_KEY, &key_path).await;
    assert_eq!(rates(&got), [None, None, Some(888), Some(2)]);

    // Zero, negative and non-integer limits: 400 naming the parameter, nothing changed.
    for (method, path, body, param) in [
        ("POST", "/admin/teams", json!({"id": "z", "rpm": 0}), "rpm"),
        ("POST", "/admin/teams", json!({"id": "z", "tpd": -1}), "tpd"),
        (
            "POST",
            "/admin/users",
            json!({"id": "z", "max_parallel": 0}),
            "max_parallel",
        ),
        (
            "POST",
            "/admin/users",
            json!({"id": "z", "tpm": 1.5}),
            "tpm",
        ),
        ("POST", "/admin/keys", json!({"name": "z", "tpd": 0}), "tpd"),
        (
            "POST",
            "/admin/keys",
            json!({"name": "z", "tpd": "lots"}),
            "tpd",
        ),
        ("PATCH", "/admin/teams/lim", json!({"tpm": 0}), "tpm"),
        (
            "PATCH",
            "/admin/teams/lim",
            json!({"max_parallel": -3}),
            "max_parallel",
        ),
        ("PATCH", "/admin/users/lu", json!({"tpd": 0}), "tpd"),
        ("PATCH", "/admin/users/lu", json!({"rpm": -1}), "rpm"),
        ("PATCH", key_path.as_str(), json!({"tpd": -1}), "tpd"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (s, e) = admin(&gw, MASTER_KEY, method, path, Some(body.clone())).await;
        assert_eq!(s, 400, "{path} {body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["param"], param, "{path} {body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(param),
            "{e}"
        );
    }
    let (s, _) = get(&gw, MASTER_KEY, "/admin/teams/z").await;
    assert_eq!(s, 404, "nothing was created");
    let (_, t) = get(&gw, MASTER_KEY, "/admin/teams/lim").await;
    assert_eq!(rates(&t), [Some(700), Some(100_000), None, Some(10)]);

    // A team admin sets limits where it may set budgets (its team's users and keys), never
    // its team's own.
    post(
        &gw,
        MASTER_KEY,
        "/admin/users",
        json!({"id": "boss", "team": "lim", "role": "team_admin"}),
    )
    .await;
    let (_, bk) = post(
        &gw,
        MASTER_KEY,
        "/admin/keys",
        json!({"name": "boss", "team": "lim", "user": "boss", "role": "team_admin"}),
    )
    .await;
    let boss = bk["key"].as_str().unwrap();
    let (s, _) = patch(&gw, boss, "/admin/teams/lim", json!({"rpm": 1_000_000})).await;
    assert_eq!(s, 403, "team admins do not change their team's limits");
    let (s, got) = patch(&gw, boss, "/admin/users/lu", json!({"tpd": 2000})).await;
    assert_eq!((s, got["tpd"].as_i64()), (200, Some(2000)), "{got}");
    let (s, got) = post(
        &gw,
        boss,
        "/admin/keys",
        json!({"name": "teamkey", "user": "lu", "tpd": 10}),
    )
    .await;
    assert_eq!((s, got["tpd"].as_i64()), (201, Some(10)), "{got}");

    // The changes are audited with the fields they touched.
    let (_, log) = get(&gw, MASTER_KEY, "/admin/audit?limit=1000").await;
    let changed = |action: &str, target: &str| -> Vec<Vec<String>> {
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["target"] == target && e["outcome"] == "ok")
            .map(|e| {
                e["details"]["changed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    };
    assert_eq!(changed("team.update", "lim"), [["rpm", "tpd"]]);
    assert_eq!(
        changed("user.update", "lu"),
        [vec!["rpm", "tpm", "max_parallel"], vec!["tpd"]]
    );
    assert_eq!(
        changed("key.update", k["id"].as_str().unwrap()),
        [["rpm", "tpd"]]
    );
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "team.update" && e["outcome"] == "denied"));
    gw.shutdown().await;
}

/// Every test above, on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),*) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(Backend::Sqlite).await })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(Backend::Postgres).await })*
        }
    };
}

on_both!(
    keys_authenticate_and_carry_their_limits,
    revoked_expired_and_rotated_keys,
    roles_are_enforced_on_every_admin_route,
    admin_input_is_validated_and_listing_paginates,
    admin_actions_and_failures_are_audited_in_a_verifiable_chain,
    spend_is_reported_within_each_scope,
    rate_limits_on_keys_users_and_teams
);

mod budgets {
    use super::*;

    /// Many concurrent requests against a small budget: the reservations bound the spend, the
    /// refused ones never reach the provider, and the budget is persisted in the request log.
    async fn concurrent_requests_cannot_overshoot_a_budget(backend: Backend) {
        let gw = Gateway::start_on(backend, "", "").await;
        // gpt-4o-mini (catalog): worst case per request here ≈ 30 prompt + 100 output tokens.
        let (s, k) = post(
            &gw,
            MASTER_KEY,
            "/admin/keys",
            json!({"name": "tight", "max_budget_usd": 0.0005, "budget_period": "1d"}),
        )
        .await;
        assert_eq!(s, 201, "{k}");
        let key = k["key"].as_str().unwrap().to_owned();
        let body = json!({"model": "gpt", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]});
        let before = gw.mock.request_count();
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let http = gw.http.clone();
            let url = format!("{}/v1/chat/completions", gw.url);
            let key = key.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let json: Value = r.json().await.unwrap();
                (status, json)
            }));
        }
        let mut ok = 0;
        let mut refused = 0;
        for t in tasks {
            let (status, json) = t.await.unwrap();
            match status {
                200 => ok += 1,
                429 => {
                    assert_eq!(json["error"]["code"], "budget_exceeded");
                    assert_eq!(json["error"]["type"], "insufficient_quota");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {json}"),
            }
        }
        assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
        assert_eq!(
            gw.mock.request_count() - before,
            ok,
            "refused requests never reach the provider"
        );
        let (spent, reserved) = gw
            .state
            .budgets()
            .usage(&plexus_limits::BudgetKey {
                scope: "key",
                id: k["id"].as_str().unwrap().into(),
            })
            .unwrap();
        eprintln!("budget: {ok} admitted, {refused} refused, spent ${spent} of $0.0005");
        assert!(
            spent <= plexus_protocol::money::Nanos::from_usd(0.0005),
            "spent {spent}"
        );
        assert_eq!(reserved, plexus_protocol::money::Nanos::ZERO);
        gw.state.writer().flush().await;
        let recorded = gw
            .store
            .spend_since("key", k["id"].as_str().unwrap(), 0)
            .await
            .unwrap();
        assert_eq!(recorded, spent, "the log holds what was spent");
        gw.shutdown().await;
    }

    /// Team budgets bind every key of the team.
    async fn a_team_budget_binds_all_its_keys(backend: Backend) {
        let gw = Gateway::start_on(backend, "", "").await;
        post(
            &gw,
            MASTER_KEY,
            "/admin/teams",
            json!({"id": "frugal", "max_budget_usd": 0.0000001, "budget_period": "30d"}),
        )
        .await;
        let (_, k) = post(
            &gw,
            MASTER_KEY,
            "/admin/keys",
            json!({"name": "t", "team": "frugal"}),
        )
        .await;
        let key = k["key"].as_str().unwrap();
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(key)
            .json(&user("gpt", "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().contains_key("retry-after"));
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team `frugal`"));
        gw.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_concurrent() {
        concurrent_requests_cannot_overshoot_a_budget(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_concurrent() {
        concurrent_requests_cannot_overshoot_a_budget(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_team() {
        a_team_budget_binds_all_its_keys(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_team() {
        a_team_budget_binds_all_its_keys(Backend::Postgres).await
    }
}

mod teams_and_users {
    use super::*;

    async fn update_and_delete(backend: Backend) {
        let gw = Gateway::start_on(backend, "", "").await;
        let (alice, bob, _dave) = org(&gw).await;
        let patch = |key: &str, path: &str, body: Value| {
            let (gw, key, path) = (&gw, key.to_owned(), path.to_owned());
            async move { admin(gw, &key, reqwest::Method::PATCH, &path, Some(body)).await }
        };
        let (s, t) = patch(
            MASTER_KEY,
            "/admin/teams/red",
            json!({"name": "Red Team", "max_budget_usd": 10}),
        )
        .await;
        assert_eq!((s, t["name"].as_str()), (200, Some("Red Team")));
        let (s, _) = patch(&alice, "/admin/teams/red", json!({"name": "Mine"})).await;
        assert_eq!(s, 403, "team admins do not edit teams");
        let (s, u) = patch(&alice, "/admin/users/bob", json!({"role": "viewer"})).await;
        assert_eq!((s, u["role"].as_str()), (200, Some("viewer")));
        let (s, _) = patch(&alice, "/admin/users/bob", json!({"role": "admin"})).await;
        assert_eq!(s, 403, "no escalation");
        let (s, _) = patch(&alice, "/admin/users/bob", json!({"team": "blue"})).await;
        assert_eq!(s, 403, "only admins move users");
        let (s, _) = patch(&bob, "/admin/users/alice", json!({"name": "x"})).await;
        assert_eq!(s, 404);
        let (s, e) = admin(
            &gw,
            MASTER_KEY,
            reqwest::Method::DELETE,
            "/admin/teams/red",
            None,
        )
        .await;
        assert_eq!(s, 400, "in use: {e}");
        post(&gw, MASTER_KEY, "/admin/teams", json!({"id": "empty"})).await;
        let (s, _) = admin(
            &gw,
            MASTER_KEY,
            reqwest::Method::DELETE,
            "/admin/teams/empty",
            None,
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = get(&gw, MASTER_KEY, "/admin/teams/empty").await;
        assert_eq!(s, 404);
        gw.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        update_and_delete(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        update_and_delete(Backend::Postgres).await
    }
}
