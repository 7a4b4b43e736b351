//! The pipeline's guarantees through a served gateway: budgets bounded by the priciest target
//! that may serve, unpriced targets refused under a budget, fallbacks held to the key's models
//! and their own limits, embeddings through dispatch, composite requests that count once, and
//! reloads that never silently ignore a setting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use plexus_gateway::{Answer, CallCtx, ChatRequest};
use plexus_protocol::money::Nanos;
use serde_json::{json, Value};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Creates a virtual key through the admin API: (id, secret).
async fn new_key(gw: &Gateway, body: Value) -> (String, String) {
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "key creation");
    let v: Value = resp.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn chat_as(gw: &Gateway, key: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn error_code(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_owned(),
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn budgets_reserve_the_priciest_target_that_may_serve() {
    // The cheap target is tried first and always fails, so the 20x pricier one serves: a
    // reservation priced on the first target would let concurrent requests overshoot.
    let gw = Gateway::start_with(
        "  - name: two\n    balance: cost\n    targets:\n      - {provider: oai, model: cheap+fault-503, price: {input_per_mtok: 50, output_per_mtok: 50}}\n      - {provider: compat, model: pricey, price: {input_per_mtok: 1000, output_per_mtok: 1000}}",
        "retries: {attempts: 2, base_delay: 1ms, max_delay: 2ms, budget: 1s}",
    )
    .await;
    let budget = 0.5;
    let (id, key) = new_key(&gw, json!({"name": "small", "max_budget_usd": budget})).await;
    let body = json!({"model": "two", "max_tokens": 40, "messages": [{"role": "user", "content": "Tell me a story."}]});
    let requests = (0..40).map(|_| chat_as(&gw, &key, body.clone()));
    let responses = futures::future::join_all(requests).await;
    let mut served = 0;
    let mut refused = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => {
                assert_eq!(header(&resp, "x-plexus-served-by"), Some("compat/pricey"));
                served += 1;
            }
            429 => {
                let (_, code, _) = error_code(resp).await;
                assert_eq!(code, "budget_exceeded");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
    gw.state.writer().flush().await;
    let spent = gw.store.spend_since("key", &id, 0).await.unwrap();
    assert!(spent > Nanos::ZERO);
    assert!(
        spent <= Nanos::from_usd(budget),
        "spent ${spent} of a ${budget} budget"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unpriced_target_under_a_budget_is_refused_clearly() {
    let gw = Gateway::start_with(
        "  - name: house\n    targets: [{provider: oai, model: house-model-7b}]\n  - name: house-free\n    targets: [{provider: oai, model: house-model-7b, price: {input_per_mtok: 0, output_per_mtok: 0}}]",
        "",
    )
    .await;
    let (_, budgeted) = new_key(&gw, json!({"name": "b", "max_budget_usd": 1})).await;
    let (_, unbudgeted) = new_key(&gw, json!({"name": "u"})).await;
    let (status, code, message) =
        error_code(chat_as(&gw, &budgeted, user("house", "hi")).await).await;
    assert_eq!((status, code.as_str()), (400, "price_unknown"));
    assert!(
        message.contains("oai/house-model-7b") && message.contains("`price`"),
        "{message}"
    );
    // Without a budget there is nothing to bound; a declared price of 0 is free, not unknown.
    assert_eq!(
        chat_as(&gw, &unbudgeted, user("house", "hi"))
            .await
            .status(),
        200
    );
    let resp = chat_as(&gw, &budgeted, user("house-free", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-plexus-cost-usd"), Some("0"));
    gw.shutdown().await;
}

#[tokio::test]
async fn fallbacks_need_the_keys_permission_and_their_own_limits() {
    let gw = Gateway::start_with(
        "  - name: primary\n    targets: [{provider: oai, model: gpt-4o-mini+fault-503}]\n    fallbacks: [backup]\n  - name: backup\n    targets: [{provider: compat, model: gpt-4o-mini}]\n    limits: {rpm: 1}",
        "retries: {attempts: 1, base_delay: 1ms, max_delay: 2ms, budget: 1s}",
    )
    .await;
    let (_, narrow) = new_key(&gw, json!({"name": "narrow", "models": ["primary"]})).await;
    let (_, wide) = new_key(
        &gw,
        json!({"name": "wide", "models": ["primary", "backup"]}),
    )
    .await;
    // A key that may not use the fallback model never reaches it.
    let resp = chat_as(&gw, &narrow, user("primary", "hi")).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert_eq!(
        header(&resp, "x-plexus-served-by"),
        Some("oai/gpt-4o-mini+fault-503")
    );
    let compat_calls = || {
        gw.mock
            .requests()
            .iter()
            .filter(|r| r.body["model"] == "gpt-4o-mini")
            .count()
    };
    assert_eq!(compat_calls(), 0);
    // A key that may is served by it, within the fallback's own limit (1 request a minute).
    let resp = chat_as(&gw, &wide, user("primary", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-plexus-served-by"),
        Some("compat/gpt-4o-mini")
    );
    let resp = chat_as(&gw, &wide, user("primary", "hi")).await;
    assert!(
        resp.status().is_server_error(),
        "the fallback is at its limit: {}",
        resp.status()
    );
    assert_eq!(compat_calls(), 1);
    gw.shutdown().await;
}

async fn embed(gw: &Gateway, model: &str) -> reqwest::Response {
    gw.post("/v1/embeddings")
        .json(&json!({"model": model, "input": "hello"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_retry_fail_over_and_open_the_breaker() {
    let gw = Gateway::start_with(
        "  - name: flaky-embed\n    targets: [{provider: oai, model: text-embedding-3-small+fail-first-1}]\n  - name: two-embed\n    balance: cost\n    targets:\n      - {provider: oai, model: text-embedding-3-small+fault-503, price: {input_per_mtok: 0.01, output_per_mtok: 0}}\n      - {provider: compat, model: text-embedding-3-small, price: {input_per_mtok: 1, output_per_mtok: 0}}",
        "retries: {attempts: 3, base_delay: 1ms, max_delay: 2ms, budget: 1s}\ncircuit_breaker: {consecutive_failures: 2, cooldown: 60s}",
    )
    .await;
    // Retries: the first call fails, the second answers.
    let resp = embed(&gw, "flaky-embed").await;
    assert_eq!(resp.status(), 200);
    let failing = |model: &str| {
        gw.mock
            .requests()
            .iter()
            .filter(|r| r.body["model"] == model)
            .count()
    };
    assert_eq!(failing("text-embedding-3-small+fail-first-1"), 2);
    // Fail-over: the cheaper target fails, the other answers.
    for _ in 0..6 {
        let resp = embed(&gw, "two-embed").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-plexus-served-by"),
            Some("compat/text-embedding-3-small")
        );
    }
    // The breaker: after two failures the failing target is no longer tried.
    assert_eq!(failing("text-embedding-3-small+fault-503"), 2);
    gw.state.writer().flush().await;
    let row = gw.store.recent_requests(1).await.unwrap();
    assert_eq!(row[0].endpoint, "embeddings");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_composite_request_counts_once_and_its_steps_draw_from_its_reservation() {
    let gw = Gateway::start_with(
        "  - name: priced\n    targets: [{provider: oai, model: gpt-4o-mini, price: {input_per_mtok: 100, output_per_mtok: 100}}]",
        "",
    )
    .await;
    let (id, key) = new_key(
        &gw,
        json!({"name": "one-at-a-time", "max_parallel": 1, "max_budget_usd": 20}),
    )
    .await;
    let now = gw.state.clock().now_unix_ms();
    let principal = gw.state.auth().authenticate(&key, now).await.unwrap();
    let ctx = CallCtx::client(principal, Some("composite-1".into()));
    let composite = gw
        .state
        .begin_composite(&ctx, "chat", "priced", false, Nanos::from_usd(10.0), None)
        .await
        .unwrap();
    // The composite holds the key's one slot: another client request waits its turn...
    let resp = chat_as(&gw, &key, user("priced", "hi")).await;
    assert_eq!(resp.status(), 429);
    // ...but the composite's own five steps run at once, without deadlocking on it.
    let steps = (0..5).map(|i| {
        let child = composite.child().unwrap();
        let gw = gw.state.clone();
        async move {
            let chat: plexus_protocol::openai::ChatCompletionRequest =
                serde_json::from_value(user("priced", &format!("step {i}"))).unwrap();
            match gw.complete(&child, ChatRequest::internal(chat)).await {
                Ok(Answer::Full(full)) => full.cost,
                Ok(Answer::Stream(_)) => panic!("asked for a full answer"),
                Err(f) => panic!("step failed: {}", f.error),
            }
        }
    });
    let costs = futures::future::join_all(steps).await;
    let total: Nanos = costs.iter().copied().sum();
    assert!(total > Nanos::ZERO);
    assert_eq!(composite.spent(), total, "exact");
    // A step that could cost more than what is left of the reservation is refused.
    let greedy = composite.child().unwrap();
    let mut chat: plexus_protocol::openai::ChatCompletionRequest =
        serde_json::from_value(user("priced", "long")).unwrap();
    chat.max_tokens = Some(100_000);
    let refused = gw
        .state
        .complete(&greedy, ChatRequest::internal(chat))
        .await;
    assert_eq!(
        refused.err().map(|f| f.error.code.as_str()),
        Some("budget_exceeded")
    );
    let parent_id = composite.request_id().to_owned();
    composite.finish(200, None, "oai/gpt-4o-mini").await;
    gw.state.writer().flush().await;

    let parent = gw
        .store
        .request_by_client_id("composite-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parent.request_id, parent_id);
    assert_eq!(
        parent.cost,
        Nanos::ZERO,
        "the parent carries no cost of its own"
    );
    let children = gw.store.requests_by_parent(&parent_id).await.unwrap();
    assert_eq!(children.len(), 6);
    let steps: Vec<_> = children.iter().map(|c| c.step).collect();
    assert_eq!(steps, (0..6).map(Some).collect::<Vec<_>>());
    assert!(children[..5].iter().all(|c| c.status == 200));
    assert_eq!(children[5].status, 429);
    let children_cost: Nanos = children.iter().map(|c| c.cost).sum();
    assert_eq!(children_cost, total);
    // Spend is the leaves' and counts the composite once; the 429 above is one more request.
    let spent = gw.store.spend_since("key", &id, 0).await.unwrap();
    assert_eq!(spent, total);
    let report = gw.store.spend_report("key", 0, None, None).await.unwrap();
    let row = report
        .iter()
        .find(|r| r.group.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(row.requests, 2);
    // The slot is free again.
    assert_eq!(chat_as(&gw, &key, user("priced", "hi")).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_dropped_composite_is_recorded_as_cancelled_and_frees_its_slot() {
    let gw = Gateway::start().await;
    let (_, key) = new_key(&gw, json!({"name": "p1", "max_parallel": 1})).await;
    let now = gw.state.clock().now_unix_ms();
    let principal = gw.state.auth().authenticate(&key, now).await.unwrap();
    let ctx = CallCtx::client(principal, Some("dropped-composite".into()));
    let composite = gw
        .state
        .begin_composite(&ctx, "chat", "gpt", true, Nanos::ZERO, None)
        .await
        .unwrap();
    assert_eq!(chat_as(&gw, &key, user("gpt", "hi")).await.status(), 429);
    drop(composite);
    let row = gw.logged("dropped-composite").await;
    assert_eq!(row.status, 499);
    assert_eq!(chat_as(&gw, &key, user("gpt", "hi")).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_request_ids_are_kept_apart_from_the_gateways() {
    let gw = Gateway::start().await;
    let send = || {
        gw.post("/v1/chat/completions")
            .header("x-request-id", "reused-id")
            .json(&user("gpt", "hi"))
            .send()
    };
    let a = send().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!(header(&a, "x-request-id"), Some("reused-id"), "echoed");
    let (ida, idb) = (
        header(&a, "x-plexus-request-id").unwrap().to_owned(),
        header(&b, "x-plexus-request-id").unwrap().to_owned(),
    );
    assert_ne!(ida, idb, "a reused client id never merges two records");
    gw.state.writer().flush().await;
    for id in [&ida, &idb] {
        let row = gw.store.request_by_id(id).await.unwrap().unwrap();
        assert_eq!(row.client_request_id.as_deref(), Some("reused-id"));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_reload_that_changes_the_cache_is_refused_loudly() {
    let gw = Gateway::start_with("", "cache:\n  ttl: 1h").await;
    let mut config = (*gw.state.runtime().config).clone();
    // The same settings reload fine.
    gw.state.reload(config.clone()).await.unwrap();
    if let Some(cache) = &mut config.cache {
        cache.ttl = std::time::Duration::from_secs(60);
    }
    let err = gw.state.reload(config.clone()).await.unwrap_err();
    assert!(err.to_string().contains("`cache`"), "{err}");
    config.cache = None;
    config.redis = Some("redis://127.0.0.1:6379".to_owned().into());
    let err = gw.state.reload(config).await.unwrap_err().to_string();
    assert!(err.contains("`redis`") || err.contains("`cache`"), "{err}");
    // Nothing was applied: the cache still answers.
    let body = json!({"model": "gpt", "temperature": 0, "messages": [{"role": "user", "content": "cached?"}]});
    assert_eq!(
        header(&gw.chat(body.clone()).await, "x-plexus-cache"),
        Some("miss")
    );
    assert_eq!(header(&gw.chat(body).await, "x-plexus-cache"), Some("hit"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_dropped_mid_way_settles_its_slot_and_its_record() {
    let gw = Gateway::start_with(
        "  - name: slow\n    targets: [{provider: oai, model: gpt-4o-mini+tps-20+tokens-200}]",
        "",
    )
    .await;
    let (_, key) = new_key(&gw, json!({"name": "s1", "max_parallel": 1})).await;
    let mut body = user("slow", "a long answer please");
    body["stream"] = json!(true);
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("x-request-id", "dropped-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut chunks = resp.bytes_stream();
    use futures::StreamExt;
    let _ = chunks.next().await.unwrap().unwrap();
    drop(chunks);
    let row = gw.logged("dropped-stream").await;
    assert_eq!(row.status, 499);
    assert!(row.usage_estimated);
    // The concurrency slot went back with it.
    assert_eq!(chat_as(&gw, &key, user("gpt", "hi")).await.status(), 200);
    gw.shutdown().await;
}

/// Every layer of awaits above the pipeline moves its future: a large one is copied several
/// times a request (measured with callgrind: at 6.6 KB the copies cost more than the rest of the
/// gateway's added work). Its large parts are boxed; this keeps it that way.
#[tokio::test]
async fn the_pipeline_future_stays_small() {
    let gw = Gateway::start().await;
    let ctx = CallCtx::client(plexus_auth::roles::Principal::master(), None);
    let chat: plexus_protocol::openai::ChatCompletionRequest =
        serde_json::from_value(user("gpt", "hi")).unwrap();
    let call = gw.state.complete(&ctx, ChatRequest::internal(chat));
    let size = std::mem::size_of_val(&call);
    assert!(size <= 1536, "Gateway::complete's future is {size} bytes");
    drop(call);
    gw.shutdown().await;
}

#[tokio::test]
async fn callers_that_leave_early_are_recorded_and_billed_for_what_ran() {
    // The upstream takes 600 ms; every caller gives up after 100 ms, before the response head.
    let gw = Gateway::start_with(
        "  - name: slow\n    targets: [{provider: oai, model: gpt-4o-mini+latency-600, price: {input_per_mtok: 100, output_per_mtok: 100}}]",
        "",
    )
    .await;
    let (id, key) = new_key(&gw, json!({"name": "impatient", "max_budget_usd": 100})).await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let calls = (0..40).map(|i| {
        impatient
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&user("slow", &format!("question {i}")))
            .send()
    });
    for result in futures::future::join_all(calls).await {
        assert!(result.unwrap_err().is_timeout());
    }
    // Every call ran to its end in the background and was recorded once, as 499, with the
    // usage the provider reported.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let rows = loop {
        gw.state.writer().flush().await;
        let rows: Vec<_> = gw
            .store
            .recent_requests(200)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.key_id == id)
            .collect();
        if rows.len() >= 40 || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 40);
    for r in &rows {
        assert_eq!(r.status, 499);
        assert!(
            !r.usage_estimated && r.completion_tokens > 0 && r.cost > Nanos::ZERO,
            "{r:?}"
        );
    }
    let billed: Nanos = rows.iter().map(|r| r.cost).sum();
    let (spent, reserved) = gw
        .state
        .budgets()
        .usage(&plexus_limits::BudgetKey {
            scope: "key",
            id: id.clone(),
        })
        .unwrap();
    assert_eq!(spent, billed, "budget {spent} vs records {billed}");
    assert_eq!(reserved, Nanos::ZERO);
    gw.shutdown().await;
}
