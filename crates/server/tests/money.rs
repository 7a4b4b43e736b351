//! Money is integer nano-dollars end to end: exact sums in `/admin/spend`, small costs that
//! are not rounded away; and requests refused before they named a model are reported apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use plexus_core::log::RequestRecord;
use plexus_protocol::money::Nanos;
use serde_json::{json, Value};

async fn spend(gw: &Gateway, query: &str) -> (String, Value) {
    let text = gw
        .http
        .get(format!("{}/admin/spend?{query}", gw.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json = serde_json::from_str(&text).unwrap();
    (text, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_sums_are_exact_decimal_dollars() {
    let gw = Gateway::start().await;
    for i in 0..3 {
        gw.state
            .writer()
            .record(RequestRecord {
                ts_ms: 1_000 + i,
                request_id: format!("money-{i}"),
                key_id: "k-money".into(),
                endpoint: "chat",
                model: "gpt".into(),
                status: 200,
                cost: Nanos::from_usd(0.0000207),
                ..Default::default()
            })
            .await;
    }
    let (text, body) = spend(&gw, "group=key").await;
    let row = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "k-money")
        .unwrap();
    assert_eq!(row["cost_usd"].as_f64(), Some(0.0000621), "{text}");
    assert_eq!(body["total_usd"].as_f64(), Some(0.0000621), "{text}");
    assert!(text.contains("\"cost_usd\":0.0000621"), "{text}");
    assert!(!text.contains("0.0000621000"), "no float noise: {text}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_embedding_costs_more_than_nothing() {
    // text-embedding-3-small: $0.02 per million tokens, 20 nano-dollars a token.
    let gw = Gateway::start().await;
    let resp = gw
        .post("/v1/embeddings")
        .header("x-request-id", "tiny-embedding")
        .json(&json!({"model": "embed", "input": "a few words"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["x-plexus-cost-usd"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens < 50, "{body}");
    let expected = Nanos(20 * tokens as i64);
    assert_eq!(header, expected.to_string());
    assert!(header.parse::<f64>().unwrap() > 0.0, "{header}");
    let row = gw.logged("tiny-embedding").await;
    assert_eq!(row.cost, expected, "rounded once, to the nano");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_reported_under_the_model_asked_for() {
    let gw = Gateway::start().await;
    let send = |id: &'static str, body: &'static str| {
        gw.post("/v1/chat/completions")
            .header("x-request-id", id)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Valid JSON, invalid request: the model it names is kept.
    let resp = send("bad-shape", r#"{"model": "gpt", "messages": "not a list"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // An unknown model: what was asked is useful.
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "unknown-model")
        .json(&user("no-such-model", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Not JSON at all: no model.
    let resp = send("not-json", r#"{"model": "gp"#).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(gw.chat(user("gpt", "fine")).await.status(), 200);

    assert_eq!(gw.logged("bad-shape").await.model, "gpt");
    assert_eq!(gw.logged("unknown-model").await.model, "no-such-model");
    assert_eq!(gw.logged("not-json").await.model, "");

    let (text, body) = spend(&gw, "group=model").await;
    let rows = body["data"].as_array().unwrap();
    let requests = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .map(|r| r["requests"].as_u64().unwrap())
    };
    assert_eq!(requests("gpt"), Some(2), "{text}");
    assert_eq!(requests("no-such-model"), Some(1), "{text}");
    assert_eq!(requests("(none)"), Some(1), "{text}");
    assert_eq!(requests(""), None, "no empty model group: {text}");
    gw.shutdown().await;
}
