//! The exact response cache through the served gateway: keys, tenants, streams, coalescing,
//! TTL, request controls, purges, and the Redis tier shared by two instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{redis_url, sse_data, Gateway};
use serde_json::{json, Value};
use std::time::Duration;

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A deterministic request (temperature 0).
fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

fn upstream_calls(gw: &Gateway) -> usize {
    gw.mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

async fn key_in_team(gw: &Gateway, team: Option<&str>) -> String {
    let mut body = json!({"name": "k"});
    if let Some(t) = team {
        // Creating the same team twice is a conflict; the first creation is what counts.
        let _ = gw
            .post("/admin/teams")
            .json(&json!({"id": t}))
            .send()
            .await
            .unwrap();
        body["team"] = json!(t);
    }
    let created: Value = gw
        .post("/admin/keys")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["key"].as_str().unwrap().to_owned()
}

async fn chat_as(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn identical_requests_hit_and_every_answer_changing_field_misses() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let first = gw.chat(ask("gpt", "What is Rust?")).await;
    assert_eq!(header(&first, "x-plexus-cache"), Some("miss"));
    let first_body: Value = first.json().await.unwrap();
    let second = gw.chat(ask("gpt", "What is Rust?")).await;
    assert_eq!(header(&second, "x-plexus-cache"), Some("hit"));
    assert_eq!(header(&second, "x-plexus-cost-usd"), Some("0"));
    assert_eq!(
        header(&second, "x-plexus-served-by"),
        Some("oai/gpt-4o-mini")
    );
    assert_eq!(second.json::<Value>().await.unwrap(), first_body);
    assert_eq!(upstream_calls(&gw), 1);

    // Fields that do not change the answer share the entry.
    let mut same = ask("gpt", "What is Rust?");
    same["user"] = json!("someone");
    same["metadata"] = json!({"trace": "x"});
    assert_eq!(header(&gw.chat(same).await, "x-plexus-cache"), Some("hit"));

    let base = ask("gpt", "What is Rust?");
    let variants: Vec<Value> = vec![
        ask("sonnet", "What is Rust?"),
        ask("gpt", "What is Go?"),
        {
            let mut v = base.clone();
            v["max_tokens"] = json!(5);
            v
        },
        {
            let mut v = base.clone();
            v["seed"] = json!(7);
            v
        },
        {
            let mut v = base.clone();
            v["top_p"] = json!(0.5);
            v
        },
        {
            let mut v = base.clone();
            v["messages"] = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Rust?"}]);
            v
        },
        {
            let mut v = base.clone();
            v["response_format"] = json!({"type": "json_object"});
            v
        },
    ];
    for v in variants {
        let resp = gw.chat(v.clone()).await;
        assert_eq!(resp.status(), 200, "{v}");
        assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"), "{v}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn nondeterministic_requests_are_not_cached_unless_asked() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let no_temperature =
        json!({"model": "gpt", "messages": [{"role": "user", "content": "Tell a joke"}]});
    for _ in 0..2 {
        let resp = gw.chat(no_temperature.clone()).await;
        assert_eq!(header(&resp, "x-plexus-cache"), None, "absent counts as 1");
    }
    assert_eq!(upstream_calls(&gw), 2);
    // The request may opt in.
    for expected in ["miss", "hit"] {
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-plexus-cache", "force")
            .json(&no_temperature)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-plexus-cache"), Some(expected));
    }
    gw.shutdown().await;

    // Or the config.
    let gw = Gateway::start_with("", "cache: {ttl: 1h, nondeterministic: true}").await;
    gw.chat(no_temperature.clone()).await;
    let resp = gw.chat(no_temperature).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("hit"));
    gw.shutdown().await;
}

#[tokio::test]
async fn tenants_never_share_entries_across_teams() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let red_a = key_in_team(&gw, Some("red")).await;
    let blue = key_in_team(&gw, Some("blue")).await;
    let body = ask("gpt", "secret plans");
    assert_eq!(
        header(&chat_as(&gw, &red_a, &body).await, "x-plexus-cache"),
        Some("miss")
    );
    assert_eq!(
        header(&chat_as(&gw, &red_a, &body).await, "x-plexus-cache"),
        Some("hit")
    );
    assert_eq!(
        header(&chat_as(&gw, &blue, &body).await, "x-plexus-cache"),
        Some("miss"),
        "another team"
    );
    // A key without a team keeps its own entries.
    let loner = key_in_team(&gw, None).await;
    assert_eq!(
        header(&chat_as(&gw, &loner, &body).await, "x-plexus-cache"),
        Some("miss")
    );
    gw.shutdown().await;

    // scope: key keeps even a team's keys apart; scope: global shares.
    let gw = Gateway::start_with("", "cache: {ttl: 1h, scope: key}").await;
    let team = format!("t{}", uuid::Uuid::new_v4().simple());
    let (a, b) = (
        key_in_team(&gw, Some(&team)).await,
        key_in_team(&gw, Some(&team)).await,
    );
    chat_as(&gw, &a, &body).await;
    assert_eq!(
        header(&chat_as(&gw, &b, &body).await, "x-plexus-cache"),
        Some("miss")
    );
    gw.shutdown().await;
    let gw = Gateway::start_with("", "cache: {ttl: 1h, scope: global}").await;
    let (a, b) = (
        key_in_team(&gw, Some("x")).await,
        key_in_team(&gw, None).await,
    );
    chat_as(&gw, &a, &body).await;
    assert_eq!(
        header(&chat_as(&gw, &b, &body).await, "x-plexus-cache"),
        Some("hit")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn streams_are_cached_and_replayed_as_streams_or_json() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let mut streamed = ask("gpt", "Describe a long river in detail");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let live = gw.chat(streamed.clone()).await;
    assert_eq!(header(&live, "x-plexus-cache"), Some("miss"));
    let live = sse_data(live).await;
    // The entry is stored after the stream ends.
    let mut replayed = None;
    for _ in 0..50 {
        let resp = gw.chat(streamed.clone()).await;
        if header(&resp, "x-plexus-cache") == Some("hit") {
            assert_eq!(header(&resp, "content-type"), Some("text/event-stream"));
            replayed = Some(sse_data(resp).await);
            break;
        }
        let _ = resp.bytes().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replayed = replayed.expect("the stream was cached");
    let text = |events: &[String]| -> String {
        events
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(text(&replayed), text(&live));
    assert!(replayed.len() > 3, "replayed in several chunks");
    assert_eq!(replayed.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&replayed[replayed.len() - 2]).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    // The same entry answers a non-streaming client as one JSON response.
    let resp = gw.chat(ask("gpt", "Describe a long river in detail")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("hit"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], text(&live));
    assert_eq!(upstream_calls(&gw), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_call() {
    let gw = std::sync::Arc::new(
        Gateway::start_with(
            "  - name: slow\n    targets: [{provider: oai, model: 'gpt-4o-mini+latency-300'}]",
            "cache: {ttl: 1h}",
        )
        .await,
    );
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let resp = gw.chat(ask("slow", "same question")).await;
            let kind = header(&resp, "x-plexus-cache").unwrap().to_owned();
            let body: Value = resp.json().await.unwrap();
            (kind, body["choices"][0]["message"]["content"].clone())
        }));
    }
    let mut kinds = Vec::new();
    let mut answers = std::collections::HashSet::new();
    for t in tasks {
        let (kind, answer) = t.await.unwrap();
        kinds.push(kind);
        answers.insert(answer.to_string());
    }
    assert_eq!(upstream_calls(&gw), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "miss").count(), 1);
    assert_eq!(answers.len(), 1);
    std::sync::Arc::into_inner(gw).unwrap().shutdown().await;
}

#[tokio::test]
async fn ttl_and_request_controls() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let body = ask("gpt", "short lived");
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-plexus-cache-ttl", "1s")
        .json(&body)
        .send()
        .await
        .unwrap();
    let filled = std::time::Instant::now();
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    assert_eq!(
        header(&gw.chat(body.clone()).await, "x-plexus-cache"),
        Some("hit")
    );
    // A hit does not refill the entry: poll until it expires, and check it lived its TTL.
    let deadline = filled + Duration::from_secs(5);
    while header(&gw.chat(body.clone()).await, "x-plexus-cache") == Some("hit") {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(filled.elapsed() >= Duration::from_secs(1), "expired early");

    // no-cache: skip the lookup, refresh the entry.
    let calls = upstream_calls(&gw);
    let resp = gw
        .post("/v1/chat/completions")
        .header("cache-control", "no-cache")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    assert_eq!(upstream_calls(&gw), calls + 1);
    assert_eq!(
        header(&gw.chat(body.clone()).await, "x-plexus-cache"),
        Some("hit")
    );

    // no-store: neither read nor written.
    let fresh = ask("gpt", "never stored");
    for _ in 0..2 {
        let resp = gw
            .post("/v1/chat/completions")
            .header("cache-control", "no-store")
            .json(&fresh)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-plexus-cache"), None);
    }
    assert_eq!(
        header(&gw.chat(fresh).await, "x-plexus-cache"),
        Some("miss")
    );

    let resp = gw
        .post("/v1/chat/completions")
        .header("x-plexus-cache-ttl", "whenever")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "x-plexus-cache-ttl");
    gw.shutdown().await;
}

#[tokio::test]
async fn purges_by_model_tag_namespace_and_prefix() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    let tagged = |text: &str, tag: &str| {
        let mut b = ask("gpt", text);
        b["metadata"] = json!({"cache_tags": [tag]});
        b
    };
    gw.chat(tagged("one", "docs-v1")).await;
    gw.chat(tagged("two", "docs-v2")).await;
    gw.chat(ask("flash", "three")).await;
    let purge = |q: &'static str| {
        gw.http
            .delete(format!("{}/admin/cache?{q}", gw.url))
            .bearer_auth(common::MASTER_KEY)
            .send()
    };
    let resp: Value = purge("tag=docs-v1").await.unwrap().json().await.unwrap();
    assert_eq!(resp["deleted"], 1);
    assert_eq!(
        header(&gw.chat(tagged("one", "docs-v1")).await, "x-plexus-cache"),
        Some("miss")
    );
    assert_eq!(
        header(&gw.chat(tagged("two", "docs-v2")).await, "x-plexus-cache"),
        Some("hit")
    );
    let resp: Value = purge("model=flash").await.unwrap().json().await.unwrap();
    assert_eq!(resp["deleted"], 1);
    assert_eq!(
        header(&gw.chat(ask("flash", "three")).await, "x-plexus-cache"),
        Some("miss")
    );
    let resp: Value = purge("namespace=key:master")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["deleted"], 3);
    let resp = purge("colour=red").await.unwrap();
    assert_eq!(resp.status(), 400);
    // Nothing left; a prefix purge of everything still answers.
    let resp: Value = purge("key_prefix=").await.unwrap().json().await.unwrap();
    assert_eq!(resp["deleted"], 0);

    // Only admins (and team admins for their team) may purge.
    let member = key_in_team(&gw, Some("m")).await;
    let resp = gw
        .http
        .delete(format!("{}/admin/cache", gw.url))
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The cache-wide statistics are for admins only.
    let stats = |key: String| {
        gw.http
            .get(format!("{}/admin/cache", gw.url))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(stats(member.clone()).await.unwrap().status(), 403);
    let body: Value = stats(common::MASTER_KEY.to_owned())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "cache.stats");
    assert_eq!(body["local_entries"], 0, "{body}");
    assert_eq!(
        body["semantic"],
        Value::Null,
        "no semantic cache configured"
    );
    // Purges are audited.
    let audit: Value = gw
        .http
        .get(format!("{}/admin/audit?action=cache.purge", gw.url))
        .bearer_auth(common::MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(audit["data"].as_array().unwrap().len() >= 4, "{audit}");
    gw.shutdown().await;
}

#[tokio::test]
async fn changing_a_models_target_invalidates_its_entries() {
    let gw = Gateway::start_with("", "cache: {ttl: 1h}").await;
    gw.chat(ask("gpt", "stable question")).await;
    assert_eq!(
        header(
            &gw.chat(ask("gpt", "stable question")).await,
            "x-plexus-cache"
        ),
        Some("hit")
    );
    // Reload with another upstream version behind `gpt`.
    let mut cfg = (*gw.state.runtime().config).clone();
    let m = cfg.models.iter_mut().find(|m| m.name == "gpt").unwrap();
    m.targets[0].model = "gpt-4o-mini-2024-07-18".into();
    gw.state
        .replace_runtime(plexus_server::Runtime::new(cfg).unwrap());
    let resp = gw.chat(ask("gpt", "stable question")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    gw.shutdown().await;
}

#[tokio::test]
async fn two_instances_share_the_redis_tier_and_its_purges() {
    let top = format!(
        "cache: {{ttl: 1h, scope: global, redis: '{}'}}",
        redis_url()
    );
    let a = Gateway::start_with("", &top).await;
    // The second instance serves the same upstream (same route fingerprint).
    let b = Gateway::start_with_mock_url(&a.mock.url(), "", &top).await;
    let question = ask("gpt", &format!("shared {}", uuid::Uuid::new_v4()));
    assert_eq!(
        header(&a.chat(question.clone()).await, "x-plexus-cache"),
        Some("miss")
    );
    let calls = upstream_calls(&a);
    let resp = b.chat(question.clone()).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("hit"), "from Redis");
    assert_eq!(upstream_calls(&a), calls, "no upstream call");
    // A purge on one instance reaches the other's in-process tier.
    let resp = a
        .http
        .delete(format!("{}/admin/cache?model=gpt", a.url))
        .bearer_auth(common::MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut purged = false;
    for _ in 0..100 {
        if header(&b.chat(question.clone()).await, "x-plexus-cache") == Some("miss") {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(purged, "the purge reached the other instance");
    b.shutdown().await;
    a.shutdown().await;
}
