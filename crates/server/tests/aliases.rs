//! `aliases:` end to end: the names a client such as Claude Code sends (`claude-sonnet-…`,
//! `claude-haiku-…`) are served by the configured models they stand for, of every kind, and a
//! key's allowed models are checked against those configured models.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use serde_json::{json, Value};

/// A `select` model over `gpt` and `flash`, an orchestration model over quiz members, and the
/// aliases to them (the exact name is listed after the pattern that also matches it).
const MODELS: &str = r#"  - name: auto
    select: {candidates: [gpt, flash]}
  - name: right-a
    targets: [{provider: oai, model: 'quiz-a+acc-1'}]
  - name: right-b
    targets: [{provider: oai, model: 'quiz-b+acc-1'}]
  - name: council
    orchestrate: {strategy: vote, members: [right-a, right-b], answer: number}
  - name: claude-local
    targets: [{provider: gem, model: gemini-2.5-flash}]
"#;

const ALIASES: &str = r#"aliases:
  "claude-haiku-*": flash
  claude-sonnet-4-5-20250929: gpt
  "claude-opus-*": auto
  "quiz-*": council
  "claude-*": sonnet
  text-embedding-ada-002: embed
"#;

async fn start() -> Gateway {
    Gateway::start_with(MODELS, ALIASES).await
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends a chat request for `model` with `key`: the status, `x-plexus-served-by`, the body and
/// the request's record.
async fn ask(
    gw: &Gateway,
    key: &str,
    body: Value,
) -> (u16, Option<String>, Value, plexus_store::LoggedRequest) {
    let tag = uuid::Uuid::new_v4().to_string();
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .header("x-request-id", &tag)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let served_by = header(&resp, "x-plexus-served-by");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let row = gw.logged(&tag).await;
    (status, served_by, body, row)
}

#[tokio::test]
async fn an_alias_is_served_by_the_configured_model_it_names() {
    let gw = start().await;
    // Exact alias, though `claude-*` (listed later) matches it too.
    let (status, served_by, body, row) =
        ask(&gw, MASTER_KEY, user("claude-sonnet-4-5-20250929", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by.as_deref(), Some("oai/gpt-4o-mini"));
    assert_eq!(row.model, "gpt");
    assert_eq!(row.upstream_model, "gpt-4o-mini");
    // A pattern, before the catch-all.
    let (status, served_by, body, row) =
        ask(&gw, MASTER_KEY, user("claude-haiku-4-5-20251001", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by.as_deref(), Some("gem/gemini-2.5-flash"));
    assert_eq!(row.model, "flash");
    // The catch-all pattern.
    let (status, served_by, _, row) = ask(&gw, MASTER_KEY, user("claude-3-7", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(served_by.as_deref(), Some("claude/claude-sonnet-4-5"));
    assert_eq!(row.model, "sonnet");
    // A configured name beats the pattern that matches it.
    let (status, served_by, _, row) = ask(&gw, MASTER_KEY, user("claude-local", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(served_by.as_deref(), Some("gem/gemini-2.5-flash"));
    assert_eq!(row.model, "claude-local");
    // `provider/model` still works where no alias matches.
    let (status, served_by, _, row) = ask(&gw, MASTER_KEY, user("oai/gpt-4.1-nano", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(served_by.as_deref(), Some("oai/gpt-4.1-nano"));
    assert_eq!(row.model, "oai/gpt-4.1-nano");
    // Streamed too.
    let mut body = user("claude-sonnet-4-5-20250929", "hi");
    body["stream"] = json!(true);
    let (status, served_by, _, row) = ask(&gw, MASTER_KEY, body).await;
    assert_eq!(status, 200);
    assert_eq!(served_by.as_deref(), Some("oai/gpt-4o-mini"));
    assert_eq!(row.model, "gpt");

    // Embeddings follow aliases as well.
    let resp = gw
        .post("/v1/embeddings")
        .header("x-request-id", "aliased-embedding")
        .json(&json!({"model": "text-embedding-ada-002", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-plexus-served-by").as_deref(),
        Some("oai/text-embedding-3-small")
    );
    assert_eq!(gw.logged("aliased-embedding").await.model, "embed");

    // `GET /v1/models` lists configured models only.
    let models: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt") && ids.contains(&"council"), "{ids:?}");
    assert!(
        !ids.iter()
            .any(|id| id.contains('*') || id.starts_with("claude-sonnet-4-5")),
        "{ids:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_alias_to_a_select_model_selects() {
    let gw = start().await;
    let (status, served_by, body, row) = ask(&gw, MASTER_KEY, user("claude-opus-4-1", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(row.model, "auto");
    let decision: Value = serde_json::from_str(row.route.as_deref().unwrap()).unwrap();
    let served = decision["served"].as_str().unwrap();
    assert!(["gpt", "flash"].contains(&served), "{decision}");
    let served_by = served_by.unwrap();
    assert!(
        served_by == "oai/gpt-4o-mini" || served_by == "gem/gemini-2.5-flash",
        "{served_by}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_alias_to_an_orchestration_model_orchestrates() {
    let gw = start().await;
    let resp = gw
        .chat(json!({"model": "quiz-anything", "messages": [{"role": "user", "content": "What is 1,234 + 5?"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["plexus"]["final_answer"], "1239", "{body}");
    assert_eq!(body["plexus"]["strategy"], "vote");
    gw.state.writer().flush().await;
    let parent = gw.store.request_by_id(&id).await.unwrap().unwrap();
    assert_eq!(parent.model, "council");
    assert_eq!(gw.store.requests_by_parent(&id).await.unwrap().len(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_may_use_an_alias_to_an_allowed_model_only() {
    let gw = start().await;
    let resp = gw
        .post("/admin/keys")
        .json(&json!({"name": "gpt-only", "models": ["gpt"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    let (status, served_by, body, row) =
        ask(&gw, &key, user("claude-sonnet-4-5-20250929", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by.as_deref(), Some("oai/gpt-4o-mini"));
    assert_eq!(
        (row.model.as_str(), row.key_id.as_str()),
        ("gpt", created["id"].as_str().unwrap())
    );

    // `claude-haiku-*` points at `flash`, which the key may not use.
    let (status, _, body, row) = ask(&gw, &key, user("claude-haiku-4-5", "hi")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("flash"),
        "{body}"
    );
    assert_eq!(row.model, "flash");
    assert_eq!(row.status, 403);
    gw.shutdown().await;
}
