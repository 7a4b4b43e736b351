//! Limits shared through the real local Redis: several gateway instances together admit what
//! a limit allows and no more; an unreachable Redis fails open or closed as configured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{redis_url, user, Gateway};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A model name no other test run uses, so its limit keys in Redis are fresh.
fn unique_model() -> String {
    format!("shared-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn three_instances_share_one_limit() {
    let model = unique_model();
    let models = format!(
        "  - name: {model}\n    limits: {{rpm: 60}}\n    targets: [{{provider: oai, model: gpt-4o-mini}}]"
    );
    let top = format!("redis: {}", redis_url());
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Arc::new(Gateway::start_with(&models, &top).await));
    }
    // A burst of 180 requests (three times the limit) spread over the three instances.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..180 {
        let gw = gateways[i % 3].clone();
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(20), gw.chat(user(&model, "hi")))
                .await
                .expect("no request hangs")
                .status()
                .as_u16()
        }));
    }
    let mut admitted = 0;
    let mut shed = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            429 => shed += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // GCRA at 60/min refills one request a second while the burst runs.
    let refill = elapsed.ceil() as usize;
    assert!(
        admitted >= 57 && admitted <= 60 + refill,
        "admitted {admitted} in {elapsed:.2}s"
    );
    assert_eq!(admitted + shed, 180);
    for gw in gateways {
        Arc::into_inner(gw).unwrap().shutdown().await;
    }
}

#[tokio::test]
async fn unreachable_redis_fails_open_with_local_limits() {
    let gw = Gateway::start_with(
        "  - name: guarded\n    limits: {rpm: 2}\n    targets: [{provider: oai, model: gpt-4o-mini}]",
        "redis: redis://127.0.0.1:1\nlimits: {on_redis_error: open}",
    )
    .await;
    let t0 = Instant::now();
    assert_eq!(gw.chat(user("guarded", "hi")).await.status(), 200);
    assert_eq!(gw.chat(user("guarded", "hi")).await.status(), 200);
    assert_eq!(
        gw.chat(user("guarded", "hi")).await.status(),
        429,
        "the limit still holds, in process"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "no hang");
    gw.shutdown().await;
}

#[tokio::test]
async fn unreachable_redis_fails_closed_when_configured() {
    let gw = Gateway::start_with(
        "  - name: guarded\n    limits: {rpm: 100}\n    targets: [{provider: oai, model: gpt-4o-mini}]",
        "redis: redis://127.0.0.1:1\nlimits: {on_redis_error: closed}",
    )
    .await;
    let t0 = Instant::now();
    let resp = gw.chat(user("guarded", "hi")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(t0.elapsed() < Duration::from_secs(2), "no hang");
    // Requests without any limit do not need Redis at all.
    assert_eq!(gw.chat(user("gpt", "hi")).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn budgets_are_reserved_in_redis() {
    let gw = Gateway::start_with("", &format!("redis: {}", redis_url())).await;
    // A key with a budget smaller than two worst cases of this request.
    let created: serde_json::Value = gw
        .post("/admin/keys")
        .json(&serde_json::json!({"name": "b", "max_budget_usd": 0.0001}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let mut body = user("gpt", "hi");
    body["max_tokens"] = serde_json::json!(100);
    let call = || {
        gw.http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    // gpt-4o-mini: 100 output tokens cost $0.00006 at most; the real answer costs far less.
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..40 {
        match call().await.unwrap().status().as_u16() {
            200 => ok += 1,
            429 => refused += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert!(ok >= 2, "small answers leave room: {ok}");
    assert!(refused >= 1, "the budget ends: {ok} admitted");
    let id = created["id"].as_str().unwrap();
    let limit = plexus_limits::Limit {
        max: plexus_limits::Nanos::from_usd(0.0001),
        period_ms: 0,
    };
    let redis = gw.state.limiter().redis().unwrap();
    let (spent, reserved) = redis
        .budget_usage(
            &plexus_limits::BudgetKey {
                scope: "key",
                id: id.into(),
            },
            &limit,
            0,
        )
        .await
        .unwrap()
        .expect("the budget lives in Redis");
    assert!(
        spent > plexus_limits::Nanos::ZERO && spent <= limit.max,
        "spent {spent}"
    );
    assert_eq!(reserved, plexus_limits::Nanos::ZERO);
    gw.shutdown().await;
}
