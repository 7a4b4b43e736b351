//! Feedback on requests (`POST /v1/feedback`) and the admin read of a request
//! (`GET /admin/requests/{id}`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Backend, Gateway, MASTER_KEY};
use plexus_core::log::RequestRecord;
use serde_json::{json, Value};

async fn call(
    gw: &Gateway,
    key: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = gw.http.request(method, format!("{}{path}", gw.url));
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

async fn feedback(gw: &Gateway, key: Option<&str>, body: Value) -> (u16, Value) {
    call(gw, key, reqwest::Method::POST, "/v1/feedback", Some(body)).await
}

async fn read_request(gw: &Gateway, key: &str, id: &str) -> (u16, Value) {
    call(
        gw,
        Some(key),
        reqwest::Method::GET,
        &format!("/admin/requests/{id}"),
        None,
    )
    .await
}

/// A new virtual key: (id, secret).
async fn new_key(gw: &Gateway, name: &str) -> (String, String) {
    let (status, body) = call(
        gw,
        Some(MASTER_KEY),
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// A chat request with `key`: (status, the gateway's request id).
async fn chat(gw: &Gateway, key: Option<&str>, model: &str) -> (u16, String) {
    let mut rb = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&user(model, "How do I boil an egg?"));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let resp = rb.send().await.unwrap();
    let id = resp.headers()["x-plexus-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await.unwrap();
    (status, id)
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
}

async fn scoring(backend: Backend) {
    let gw = Gateway::start_on(backend, "", "").await;
    let (a_id, a) = new_key(&gw, "a").await;
    let (_, b) = new_key(&gw, "b").await;
    let (status, id) = chat(&gw, Some(&a), "gpt").await;
    assert_eq!(status, 200);

    // The key that made the request scores it.
    let (status, body) = feedback(
        &gw,
        Some(&a),
        json!({"request_id": id, "score": 0.8, "comment": "good"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "feedback");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["model"], "gpt");
    assert_eq!(body["score"], 0.8);
    assert_eq!(body["comment"], "good");
    assert!(body["created_at"].as_i64().unwrap() > 1_700_000_000);
    let (first_id, row) = gw.store.feedback_for(&id).await.unwrap().unwrap();
    assert_eq!(row.key_id, a_id);
    assert_eq!(row.model, "gpt");
    assert_eq!(row.score, 0.8);
    assert_eq!(row.comment.as_deref(), Some("good"));
    assert_eq!(row.embedding, None, "an ordinary request has no embedding");

    // The admin read shows the request.
    let (status, entry) = read_request(&gw, MASTER_KEY, &id).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["object"], "request");
    assert_eq!(entry["request_id"], id.as_str());
    assert_eq!(entry["key_id"], a_id.as_str());
    assert_eq!(entry["model"], "gpt");
    assert_eq!(entry["provider"], "oai");
    assert_eq!(entry["endpoint"], "chat");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["parent_request_id"], Value::Null);
    assert_eq!(entry["route"], Value::Null);
    assert_eq!(entry["children"], json!([]));
    assert!(entry["prompt_tokens"].as_u64().unwrap() > 0, "{entry}");
    assert!(entry["cost_usd"].is_number(), "{entry}");
    for absent in ["prompt_embedding", "request_body", "response_body"] {
        assert!(entry.get(absent).is_none(), "{absent}: {entry}");
    }

    // Another key cannot score it, nor learn that it exists.
    let (status, other) = feedback(&gw, Some(&b), json!({"request_id": id, "score": 1})).await;
    assert_error(status, &other, 404, "not_found");
    let (status, unknown) = feedback(
        &gw,
        Some(&a),
        json!({"request_id": "no-such-request", "score": 1}),
    )
    .await;
    assert_error(status, &unknown, 404, "not_found");
    assert_eq!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&id, "ID"),
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no-such-request", "ID"),
        "the same answer as an unknown id"
    );
    // ... nor read it through the admin API.
    let (status, body) = read_request(&gw, &b, &id).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = read_request(&gw, MASTER_KEY, "no-such-request").await;
    assert_error(status, &body, 404, "not_found");

    // Thumbs, and re-scoring replaces the feedback under a new id.
    for (thumb, value) in [("down", 0.0), ("up", 1.0)] {
        let (status, body) =
            feedback(&gw, Some(&a), json!({"request_id": id, "score": thumb})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["score"], value, "{thumb}");
        assert_eq!(body["comment"], Value::Null);
        let (_, row) = gw.store.feedback_for(&id).await.unwrap().unwrap();
        assert_eq!(row.score, value, "{thumb}");
        assert_eq!(row.comment, None, "replaced, comment too");
    }
    let all = gw.store.feedback_page(0, 100).await.unwrap();
    assert_eq!(all.len(), 1, "one feedback per request: {all:?}");
    assert!(all[0].0 > first_id, "a replaced feedback gets a new id");

    // `/feedback` (without `/v1`) too; the master key scores any request.
    let (status, body) = call(
        &gw,
        Some(MASTER_KEY),
        reqwest::Method::POST,
        "/feedback",
        Some(json!({"request_id": id, "score": 0.25})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, row) = gw.store.feedback_for(&id).await.unwrap().unwrap();
    assert_eq!((row.score, row.key_id.as_str()), (0.25, "master"));

    // Invalid scores name `score`.
    for bad in [
        json!(1.5),
        json!(-0.5),
        json!("meh"),
        json!(null),
        json!(true),
    ] {
        let (status, body) = feedback(&gw, Some(&a), json!({"request_id": id, "score": bad})).await;
        assert_error(status, &body, 400, "invalid_request");
        assert_eq!(body["error"]["param"], "score", "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("score"),
            "{body}"
        );
    }
    let (status, body) = feedback(&gw, Some(&a), json!({"request_id": id})).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["param"], "score", "{body}");
    let (status, body) = feedback(&gw, Some(&a), json!({"request_id": "", "score": 1})).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["param"], "request_id", "{body}");
    let long = "x".repeat(4097);
    let (status, body) = feedback(
        &gw,
        Some(&a),
        json!({"request_id": id, "score": 1, "comment": long}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["param"], "comment", "{body}");
    let (status, body) = feedback(
        &gw,
        Some(&a),
        json!({"request_id": id, "score": 1, "stars": 5}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["param"], "stars", "{body}");
    // Authenticated like chat.
    let (status, body) = feedback(&gw, None, json!({"request_id": id, "score": 1})).await;
    assert_eq!(status, 401, "{body}");
    let (_, row) = gw.store.feedback_for(&id).await.unwrap().unwrap();
    assert_eq!(row.score, 0.25, "nothing refused was stored");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_scores_its_own_requests_on_sqlite() {
    scoring(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_scores_its_own_requests_on_postgres() {
    scoring(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_successful_client_requests_are_scored() {
    let gw = Gateway::start_with(
        "  - name: broken\n    targets: [{provider: oai, model: 'gpt-4o-mini+fault-400'}]",
        "",
    )
    .await;
    let (status, failed) = chat(&gw, Some(MASTER_KEY), "broken").await;
    assert_eq!(status, 400);
    let (status, body) = feedback(
        &gw,
        Some(MASTER_KEY),
        json!({"request_id": failed, "score": "up"}),
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status 400"),
        "{body}"
    );

    // A call made for a request (here written as the gateway would write an inner call) is
    // not scored; the admin read lists it under its parent, in step order.
    let (status, parent) = chat(&gw, Some(MASTER_KEY), "gpt").await;
    assert_eq!(status, 200);
    for (step, id) in [(1, "inner-b"), (0, "inner-a")] {
        gw.state
            .writer()
            .record(RequestRecord {
                ts_ms: 1_700_000_000_000,
                request_id: id.into(),
                parent_request_id: Some(parent.clone()),
                step: Some(step),
                key_id: "master".into(),
                endpoint: "chat",
                model: "sonnet".into(),
                status: 200,
                ..Default::default()
            })
            .await;
    }
    let (status, body) = feedback(
        &gw,
        Some(MASTER_KEY),
        json!({"request_id": "inner-a", "score": 1}),
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&parent),
        "names the request to score: {body}"
    );
    let (status, entry) = read_request(&gw, MASTER_KEY, &parent).await;
    assert_eq!(status, 200, "{entry}");
    let children: Vec<(&str, i64)> = entry["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["request_id"].as_str().unwrap(),
                c["step"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(children, [("inner-a", 0), ("inner-b", 1)]);
    assert_eq!(entry["children"][0]["parent_request_id"], parent.as_str());
    assert_eq!(entry["children"][0]["children"], json!([]));
    gw.shutdown().await;
}

/// A `model: auto` request (its record written here as the selector writes it) is scored on
/// the model that served, and the feedback keeps the prompt's embedding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selected_request_is_scored_on_the_model_that_served() {
    let gw = Gateway::start_with("", "request_bodies: full").await;
    let embedding: std::sync::Arc<[f32]> = vec![0.5, -0.125, 0.75].into();
    gw.state
        .writer()
        .record(RequestRecord {
            ts_ms: 1_700_000_000_000,
            request_id: "auto-1".into(),
            key_id: "master".into(),
            endpoint: "chat",
            model: "auto".into(),
            provider: "claude".into(),
            status: 200,
            route: Some(r#"{"served":"sonnet","candidates":["gpt","sonnet"]}"#.into()),
            prompt_embedding: Some(embedding.clone()),
            request_body: Some(r#"{"model":"auto"}"#.into()),
            response_body: Some("{}".into()),
            ..Default::default()
        })
        .await;
    let (status, body) = feedback(
        &gw,
        Some(MASTER_KEY),
        json!({"request_id": "auto-1", "score": "down", "comment": "too long"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "sonnet");
    let (_, row) = gw.store.feedback_for("auto-1").await.unwrap().unwrap();
    assert_eq!(row.model, "sonnet");
    assert_eq!(row.score, 0.0);
    assert_eq!(row.embedding.as_deref(), Some(&embedding[..]));

    let (status, entry) = read_request(&gw, MASTER_KEY, "auto-1").await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(
        entry["route"],
        json!({"served": "sonnet", "candidates": ["gpt", "sonnet"]})
    );
    assert_eq!(entry["created_at"], 1_700_000_000);
    assert_eq!(entry["request_body"], r#"{"model":"auto"}"#);
    assert_eq!(entry["response_body"], "{}");
    assert!(entry.get("prompt_embedding").is_none(), "{entry}");
    gw.shutdown().await;
}

/// Open mode (no master key): anyone on loopback is the administrator, and scores any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_scores_any_request() {
    let gw = Gateway::start_open("").await;
    let (status, id) = chat(&gw, None, "gpt").await;
    assert_eq!(status, 200);
    let (status, body) = feedback(&gw, None, json!({"request_id": id, "score": 1})).await;
    assert_eq!(status, 200, "{body}");
    let (_, row) = gw.store.feedback_for(&id).await.unwrap().unwrap();
    assert_eq!(row.key_id, "");
    let (status, entry) = call(
        &gw,
        None,
        reqwest::Method::GET,
        &format!("/admin/requests/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    gw.shutdown().await;
}
