//! The published spec of the OpenAI-compatible operations says what the server enforces: every
//! bound in `docs/openapi.json` is checked against the server on both sides, and the requests
//! Schemathesis found to be schema-valid yet refused (issue 11, finding 6) are now either
//! invalid in the spec or served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway};
use serde_json::{json, Value};

fn spec() -> Value {
    serde_json::from_str(plexus_server::OPENAPI).unwrap()
}

/// A request schema's property.
fn property(schema: &str, name: &str) -> Value {
    spec()["components"]["schemas"][schema]["properties"][name].clone()
}

async fn send(gw: &Gateway, path: &str, body: &Value) -> (u16, Value) {
    let r = gw.post(path).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `base` with `field` set to `value`, sent to `path`.
async fn with(gw: &Gateway, path: &str, base: &Value, field: &str, value: Value) -> (u16, Value) {
    let mut body = base.clone();
    body[field] = value;
    send(gw, path, &body).await
}

#[tokio::test]
async fn every_bound_in_the_spec_is_the_servers() {
    let gw = Gateway::start().await;
    let chat = user("gpt", "hi");
    let embed = json!({"model": "embed", "input": "hi"});
    let cases = [
        ("/v1/chat/completions", &chat, "ChatCompletionRequest", "n"),
        (
            "/v1/chat/completions",
            &chat,
            "ChatCompletionRequest",
            "temperature",
        ),
        (
            "/v1/chat/completions",
            &chat,
            "ChatCompletionRequest",
            "top_p",
        ),
        (
            "/v1/chat/completions",
            &chat,
            "ChatCompletionRequest",
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            &chat,
            "ChatCompletionRequest",
            "max_completion_tokens",
        ),
        ("/v1/embeddings", &embed, "EmbeddingRequest", "dimensions"),
    ];
    for (path, base, schema, field) in cases {
        let p = property(schema, field);
        let integer = p["type"][0] == "integer";
        let step = if integer { json!(1) } else { json!(0.01) };
        let min = p["minimum"].as_f64().expect("a minimum");
        let below = if integer {
            json!(min as i64 - 1)
        } else {
            json!(min - step.as_f64().unwrap())
        };
        let at_min = if integer {
            json!(min as i64)
        } else {
            json!(min)
        };
        let (s, b) = with(&gw, path, base, field, at_min.clone()).await;
        assert_eq!(s, 200, "{field} = {at_min}: {b}");
        let (s, b) = with(&gw, path, base, field, below.clone()).await;
        assert_eq!(s, 400, "{field} = {below}: {b}");
        assert_eq!(b["error"]["param"], field, "{b}");
        if let Some(max) = p["maximum"].as_f64() {
            let above = if integer {
                json!(max as u64 + 1)
            } else {
                json!(max + step.as_f64().unwrap())
            };
            let (s, b) = with(&gw, path, base, field, above.clone()).await;
            assert_eq!(s, 400, "{field} = {above}: {b}");
            assert_eq!(b["error"]["param"], field, "{b}");
            if max <= 128.0 {
                let at_max = if integer {
                    json!(max as u64)
                } else {
                    json!(max)
                };
                let (s, b) = with(&gw, path, base, field, at_max.clone()).await;
                assert_eq!(s, 200, "{field} = {at_max}: {b}");
            }
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn what_schemathesis_found_is_invalid_in_the_spec_or_served() {
    let gw = Gateway::start().await;
    let chat = user("gpt", "hi");

    // `response_format: {}`: the spec requires `type`, and the server says so.
    let format = &spec()["components"]["schemas"]["ResponseFormat"]["oneOf"];
    for variant in format.as_array().unwrap() {
        assert!(variant["required"]
            .as_array()
            .unwrap()
            .contains(&json!("type")));
    }
    let (s, b) = with(
        &gw,
        "/v1/chat/completions",
        &chat,
        "response_format",
        json!({}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["param"], "response_format.type");
    for kind in ["text", "json_object"] {
        let (s, b) = with(
            &gw,
            "/v1/chat/completions",
            &chat,
            "response_format",
            json!({"type": kind}),
        )
        .await;
        assert_eq!(s, 200, "{kind}: {b}");
    }

    // `input: null`: not one of the spec's shapes, and refused.
    let input = property("EmbeddingRequest", "input");
    assert!(!input.to_string().contains("null"), "{input}");
    let (s, b) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "embed", "input": null}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["param"], "input");

    // A whole number written as a float is an integer to JSON Schema, and to the server.
    let mut body = chat.clone();
    body["n"] = json!(2.0);
    body["max_tokens"] = json!(16.0);
    body["seed"] = json!(-7.0);
    let (s, b) = send(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["choices"].as_array().unwrap().len(), 2, "{b}");
    let (s, b) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "embed", "input": [[1.0, 2], [3.0]], "dimensions": 8.0}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"][0]["embedding"].as_array().unwrap().len(), 8);
    // A fraction is not.
    let (s, b) = with(&gw, "/v1/chat/completions", &chat, "n", json!(1.5)).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["param"], "n");
    gw.shutdown().await;
}
