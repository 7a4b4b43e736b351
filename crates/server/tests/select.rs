//! `model: auto`: the model selector end to end, over three simulator models with different
//! prices, latencies and capabilities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use serde_json::{json, Value};

/// mini: cheap, fast, text-only, small window; mid: 10x the price, 60 ms, no tools or JSON
/// schema output; pro: 100x
/// the price, 150 ms, everything. Qualities 0.6 / 0.8 / 0.9.
fn models(select: &str, pro_model: &str) -> String {
    format!(
        r#"  - name: mini
    quality: 0.6
    targets: [{{provider: oai, model: sim-mini, price: {{input_per_mtok: 0.1, output_per_mtok: 0.4}}, capabilities: {{vision: false, tools: true, json_schema: true, context_window: 16000}}}}]
  - name: mid
    quality: 0.8
    targets: [{{provider: oai, model: 'sim-mid+latency-60', price: {{input_per_mtok: 1, output_per_mtok: 4}}, capabilities: {{vision: true, tools: false, json_schema: false, context_window: 128000}}}}]
  - name: pro
    quality: 0.9
    targets: [{{provider: oai, model: '{pro_model}', price: {{input_per_mtok: 10, output_per_mtok: 40}}, capabilities: {{vision: true, tools: true, json_schema: true, context_window: 200000}}}}]
  - name: auto
    select: {{candidates: [mini, mid, pro], {select}}}
"#
    )
}

async fn start(select: &str) -> Gateway {
    Gateway::start_with(&models(select, "sim-pro+latency-150"), "").await
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends `body` to `auto` with `headers`; the status, `x-plexus-route`, and the decision
/// from the request's record.
async fn ask(
    gw: &Gateway,
    key: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let tag = uuid::Uuid::new_v4().to_string();
    let mut req = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .header("x-request-id", &tag)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let route = header(&resp, "x-plexus-route").unwrap_or_default();
    let served_by = header(&resp, "x-plexus-served-by");
    let text = resp.text().await.unwrap();
    let row = gw.logged(&tag).await;
    let decision: Value = row
        .route
        .as_deref()
        .map(|r| serde_json::from_str(r).unwrap())
        .unwrap_or(Value::Null);
    if status == 200 {
        let served = decision["served"].as_str().unwrap();
        if ["mini", "mid", "pro"].contains(&served) {
            assert!(
                served_by
                    .as_deref()
                    .unwrap()
                    .contains(&format!("sim-{served}")),
                "{served_by:?} vs {decision}"
            );
        }
        assert_eq!(row.model, "auto");
    } else {
        assert!(text.contains("error"), "{text}");
    }
    (status, route, decision)
}

fn prompt(text: &str) -> Value {
    user("auto", text)
}

#[tokio::test]
async fn each_objective_and_the_cost_weight_extremes() {
    let gw = start("objective: balanced, cost_weight: 0.5, explore: 0, affinity: false").await;
    // Balanced at 0.5: mid (0.8 - 0.05) beats mini (0.6 - 0.005) and pro (0.9 - 0.5).
    let (status, route, d) = ask(&gw, MASTER_KEY, prompt("What is a monad?"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(d["chosen"], "mid", "{d:#}");
    assert!(route.starts_with("mid; best quality for cost"), "{route}");
    assert_eq!(d["objective"], "balanced");
    assert_eq!(d["candidates"].as_array().unwrap().len(), 3);
    assert_eq!(d["candidates"][0]["quality_source"], "config");
    assert!(d["candidates"][2]["expected_cost_usd"].as_f64().unwrap() > 0.0);

    for (headers, expected) in [
        (vec![("x-plexus-objective", "quality")], "pro"),
        (vec![("x-plexus-objective", "cost")], "mini"),
        (vec![("x-plexus-cost-weight", "0")], "pro"),
        (vec![("x-plexus-cost-weight", "100")], "mini"),
        // 2: mid 0.8 - 0.2 still beats mini 0.6 - 0.02; 3: mini 0.57 beats mid 0.5.
        (vec![("x-plexus-cost-weight", "2")], "mid"),
        (vec![("x-plexus-cost-weight", "3")], "mini"),
    ] {
        let (status, route, d) = ask(&gw, MASTER_KEY, prompt("What is a monad?"), &headers).await;
        assert_eq!(status, 200);
        assert_eq!(d["chosen"], expected, "{headers:?}: {d:#}");
        assert!(route.starts_with(expected), "{route}");
    }

    // Latency: once every candidate has served, the fastest (mini) wins.
    for model in ["mini", "mid", "pro"] {
        for _ in 0..3 {
            assert_eq!(gw.chat(user(model, "warm up")).await.status(), 200);
        }
    }
    let (_, route, d) = ask(
        &gw,
        MASTER_KEY,
        prompt("hi"),
        &[("x-plexus-objective", "latency")],
    )
    .await;
    assert_eq!(d["chosen"], "mini", "{d:#}");
    assert!(route.contains("lowest expected latency"), "{route}");
    let latency = |name: &str| {
        d["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["expected_latency_ms"]
            .as_f64()
            .unwrap()
    };
    assert!(
        latency("mini") < latency("mid") && latency("mid") < latency("pro"),
        "{d:#}"
    );

    // Bad overrides are refused, naming the header.
    for (name, value) in [
        ("x-plexus-objective", "fastest"),
        ("x-plexus-cost-weight", "-1"),
    ] {
        let resp = gw
            .post("/v1/chat/completions")
            .header(name, value)
            .json(&prompt("hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["param"], name, "{e}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn capabilities_filter_the_candidates() {
    let gw = start("cost_weight: 0.5, explore: 0, affinity: false").await;
    // Vision: mini is text-only, so mid.
    let image = json!({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let (status, _, d) = ask(&gw, MASTER_KEY, image, &[("x-plexus-objective", "cost")]).await;
    assert_eq!(status, 200);
    assert_eq!(d["chosen"], "mid", "{d:#}");
    assert!(d["needs"]["vision"].as_bool().unwrap());
    let mini = &d["candidates"][0];
    assert_eq!(mini["name"], "mini");
    assert!(
        mini["excluded"].as_str().unwrap().contains("image input"),
        "{mini}"
    );

    // Tools: mid cannot, so balanced falls to mini.
    let mut tools = prompt("Weather in Paris?");
    tools["tools"] = json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]);
    let (_, _, d) = ask(&gw, MASTER_KEY, tools.clone(), &[]).await;
    assert_eq!(d["chosen"], "mini", "{d:#}");
    assert!(d["candidates"][1]["excluded"]
        .as_str()
        .unwrap()
        .contains("tools"));

    // Vision and tools: only pro, even for the cost objective.
    let mut both = tools;
    both["messages"] = json!([{"role": "user", "content": [
        {"type": "text", "text": "Which city is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]);
    let (_, _, d) = ask(
        &gw,
        MASTER_KEY,
        both.clone(),
        &[("x-plexus-objective", "cost")],
    )
    .await;
    assert_eq!(d["chosen"], "pro", "{d:#}");

    // JSON schema output: mid cannot, so balanced falls to mini.
    let mut schema = prompt("Give me a user as JSON");
    schema["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "u", "schema": {"type": "object"}}});
    let (_, _, d) = ask(&gw, MASTER_KEY, schema, &[]).await;
    assert_eq!(d["chosen"], "mini", "{d:#}");
    assert!(d["candidates"][1]["excluded"]
        .as_str()
        .unwrap()
        .contains("JSON schema output"));

    // A long prompt: mini's 16k window is too small (about 25k tokens here).
    let long = "lorem ipsum dolor sit amet ".repeat(4000);
    let (_, _, d) = ask(
        &gw,
        MASTER_KEY,
        prompt(&long),
        &[("x-plexus-objective", "cost")],
    )
    .await;
    assert_eq!(d["chosen"], "mid", "{d:#}");
    assert!(d["candidates"][0]["excluded"]
        .as_str()
        .unwrap()
        .contains("context window"));

    // Nothing fits: the error says what was needed and why each candidate is out.
    let mut huge = both;
    huge["max_tokens"] = json!(250000);
    let (status, _, _) = ask(&gw, MASTER_KEY, huge, &[]).await;
    assert_eq!(status, 400);
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": "auto", "max_tokens": 250000, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("No candidate of `auto`"), "{msg}");
    assert!(
        msg.contains("250") && msg.contains("tokens of context"),
        "{msg}"
    );
    assert!(
        msg.contains("pro: cannot serve: needs a context window"),
        "{msg}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_budget_near_its_limit_downgrades() {
    let gw = start("cost_weight: 0.5, explore: 0, affinity: false").await;
    let create = |budget: f64| {
        let gw = &gw;
        async move {
            let resp = gw
                .post("/admin/keys")
                .json(&json!({"name": format!("b{budget}"), "max_budget_usd": budget}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            resp.json::<Value>().await.unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // $0.20: the worst case of one request (up to 4096 tokens at pro's price, $0.164) leaves
    // under a fifth of it, so the next decision weighs cost about five times as much.
    let tight = create(0.2).await;
    let (status, _, d) = ask(&gw, &tight, prompt("Explain TCP slow start."), &[]).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["chosen"], "mid", "{d:#}");
    assert!(d.get("budget_remaining_share").is_none(), "{d:#}");
    let (_, _, d) = ask(
        &gw,
        &tight,
        prompt("Explain TCP congestion avoidance."),
        &[],
    )
    .await;
    assert_eq!(d["chosen"], "mini", "{d:#}");
    let share = d["budget_remaining_share"].as_f64().unwrap();
    assert!(share < 0.2, "{d:#}");
    assert!(d["effective_cost_weight"].as_f64().unwrap() > 2.0, "{d:#}");
    // A generous budget keeps the balanced choice.
    let rich = create(100.0).await;
    for text in [
        "Explain TCP slow start.",
        "Explain TCP congestion avoidance.",
    ] {
        let (_, _, d) = ask(&gw, &rich, prompt(text), &[]).await;
        assert_eq!(d["chosen"], "mid", "{d:#}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn exploration_stays_within_its_share_under_concurrent_load() {
    let gw = start("cost_weight: 0.5, explore: 0.1, affinity: false").await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _, d) = ask(&gw, MASTER_KEY, prompt(&format!("question {i}")), &[]).await;
            assert_eq!(status, 200);
            d
        }));
    }
    let mut explored = 0;
    for t in tasks {
        let d = t.await.unwrap();
        if d["exploration"].as_bool().unwrap() {
            explored += 1;
            assert_ne!(
                d["chosen"], "mid",
                "an exploration tries another candidate: {d:#}"
            );
            assert!(d["reason"].as_str().unwrap().starts_with("exploration"));
        } else {
            assert_eq!(d["chosen"], "mid", "{d:#}");
        }
    }
    assert_eq!(explored, 6, "10% of 60");
    match std::sync::Arc::try_unwrap(gw) {
        Ok(gw) => gw.shutdown().await,
        Err(_) => panic!("still shared"),
    }
}

#[tokio::test]
async fn an_open_breaker_is_never_chosen_and_a_failure_moves_to_the_next_ranked() {
    let gw = Gateway::start_with(
        &models("explore: 0, affinity: false", "sim-pro+fault-500"),
        "retries: {attempts: 1}\ncircuit_breaker: {consecutive_failures: 3, cooldown: 60s}",
    )
    .await;
    // pro fails: the next-ranked candidate (mid) serves, and the record says so.
    let quality = [("x-plexus-objective", "quality")];
    let (status, route, d) = ask(&gw, MASTER_KEY, prompt("hard question"), &quality).await;
    assert_eq!(status, 200, "{d:#}");
    assert_eq!(d["chosen"], "pro");
    assert_eq!(d["served"], "mid", "{d:#}");
    assert!(route.starts_with("pro;"), "{route}");
    // Its error rate now discounts it: the next decision prefers mid without trying pro.
    let (_, _, d) = ask(&gw, MASTER_KEY, prompt("hard question"), &quality).await;
    assert_eq!(
        (d["chosen"].as_str(), d["served"].as_str()),
        (Some("mid"), Some("mid"))
    );
    assert_eq!(d["candidates"][2]["error_rate"], 1.0, "{d:#}");
    // Direct calls open pro's breaker; from then on pro is excluded.
    for _ in 0..3 {
        // 502 while it fails, 503 once the breaker is open.
        let status = gw.chat(user("pro", "hi")).await.status().as_u16();
        assert!(status == 502 || status == 503, "{status}");
    }
    let (status, _, d) = ask(&gw, MASTER_KEY, prompt("hard question"), &quality).await;
    assert_eq!(status, 200);
    assert_eq!(d["chosen"], "mid", "{d:#}");
    assert!(
        d["candidates"][2]["excluded"]
            .as_str()
            .unwrap_or_default()
            .contains("circuit breaker open"),
        "{d:#}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_restricted_to_some_models_only_gets_those() {
    let gw = start("explore: 0.5, affinity: false").await;
    let resp = gw
        .post("/admin/keys")
        .json(&json!({"name": "narrow", "models": ["auto", "mini"]}))
        .send()
        .await
        .unwrap();
    let key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, objective) in ["quality", "balanced", "latency", "quality"]
        .iter()
        .enumerate()
    {
        let (status, _, d) = ask(
            &gw,
            &key,
            prompt(&format!("q{i}")),
            &[("x-plexus-objective", objective)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(d["chosen"], "mini", "{d:#}");
        assert_eq!(d["served"], "mini");
        assert_eq!(d["candidates"][2]["excluded"], "this key may not use it");
    }
    // A key without `auto` may not use it at all.
    let resp = gw
        .post("/admin/keys")
        .json(&json!({"name": "no-auto", "models": ["mini"]}))
        .send()
        .await
        .unwrap();
    let key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&prompt("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_conversation_stays_on_its_first_choice() {
    let gw = start("cost_weight: 0.5, explore: 0").await;
    let opening = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Plan a trip to Kyoto."}]);
    let first = json!({"model": "auto", "messages": opening});
    let (_, _, d) = ask(&gw, MASTER_KEY, first, &[]).await;
    assert_eq!(
        (d["chosen"].as_str(), d["affinity"].as_bool()),
        (Some("mid"), Some(false))
    );
    let mut later = opening.as_array().unwrap().clone();
    later.push(json!({"role": "assistant", "content": "Sure."}));
    later.push(json!({"role": "user", "content": "And a cheap hotel?"}));
    let next = json!({"model": "auto", "messages": later});
    let (_, route, d) = ask(&gw, MASTER_KEY, next.clone(), &[]).await;
    assert_eq!(d["chosen"], "mid");
    assert_eq!(d["affinity"], true, "{d:#}");
    assert_eq!(route, "mid; session affinity");
    // An override decides afresh.
    let (_, _, d) = ask(&gw, MASTER_KEY, next, &[("x-plexus-objective", "cost")]).await;
    assert_eq!(
        (d["chosen"].as_str(), d["affinity"].as_bool()),
        (Some("mini"), Some(false))
    );
    // An explicit session id ties unrelated prompts together.
    let s = [("x-plexus-session", "agent-7")];
    let (_, _, a) = ask(&gw, MASTER_KEY, prompt("first task"), &s).await;
    let (_, _, b) = ask(&gw, MASTER_KEY, prompt("a different task"), &s).await;
    assert_eq!(a["affinity"], false);
    assert_eq!(b["affinity"], true);
    assert_eq!(a["chosen"], b["chosen"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn without_quality_the_price_order_is_used_and_said() {
    let gw = Gateway::start_with(
        "  - name: cheap\n    targets: [{provider: oai, model: sim-a, price: {input_per_mtok: 0.1, output_per_mtok: 0.1}}]\n  - name: dear\n    targets: [{provider: oai, model: sim-b, price: {input_per_mtok: 5, output_per_mtok: 5}}]\n  - name: auto\n    select: {candidates: [cheap, dear], objective: quality, explore: 0}\n",
        "",
    )
    .await;
    let (status, _, d) = ask(&gw, MASTER_KEY, prompt("hello"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(d["chosen"], "dear", "{d:#}");
    assert_eq!(d["candidates"][0]["quality_source"], "price_order");
    assert!(
        d["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("price order")),
        "{d:#}"
    );
    gw.shutdown().await;
}

/// The local embedder, when the test environment has it (scripts/test.sh sets it).
fn embedder_available() -> bool {
    match std::env::var("PLEXUS_MINILM_DIR") {
        Ok(dir) if !dir.is_empty() => true,
        _ if std::env::var_os("CI").is_some() => panic!("PLEXUS_MINILM_DIR must be set in CI"),
        _ => {
            eprintln!("PLEXUS_MINILM_DIR is not set (scripts/test.sh sets it): skipped");
            false
        }
    }
}

#[tokio::test]
async fn feedback_moves_the_estimate_near_that_prompt_and_survives_a_restart() {
    if !embedder_available() {
        return;
    }
    let yaml_models = models(
        "cost_weight: 0.5, explore: 0, affinity: false",
        "sim-pro+latency-150",
    );
    let gw = Gateway::start_with(&yaml_models, "").await;
    let near = "What is the capital city of France?";
    let nearby = "Which city is the capital of France?";
    let elsewhere = "Write a haiku about autumn leaves falling.";
    let before = gw
        .state
        .predicted_quality("auto", "mid", near)
        .await
        .unwrap();
    assert_eq!(before, 0.8);
    // Five answers about France's capital, all served by mid, all judged bad.
    for text in [
        near,
        "What's the capital of France?",
        "Name the capital of France.",
        "Tell me France's capital city.",
        "The capital of France is which city?",
    ] {
        let tag = uuid::Uuid::new_v4().to_string();
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-request-id", &tag)
            .json(&prompt(text))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = header(&resp, "x-plexus-request-id").unwrap();
        let row = gw.logged(&tag).await;
        assert_eq!(row.prompt_embedding.as_ref().map(Vec::len), Some(384));
        let resp = gw
            .post("/v1/feedback")
            .json(&json!({"request_id": id, "score": "down"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let at = gw
        .state
        .predicted_quality("auto", "mid", near)
        .await
        .unwrap();
    let close = gw
        .state
        .predicted_quality("auto", "mid", nearby)
        .await
        .unwrap();
    let far = gw
        .state
        .predicted_quality("auto", "mid", elsewhere)
        .await
        .unwrap();
    assert!(at < 0.5, "{at}");
    assert!(close < 0.6, "{close}");
    assert_eq!(far, 0.8, "feedback about France says nothing about haiku");
    // Other models are untouched.
    assert_eq!(
        gw.state
            .predicted_quality("auto", "pro", near)
            .await
            .unwrap(),
        0.9
    );
    // Near that prompt the selector now prefers another candidate; elsewhere it keeps mid.
    let (_, _, d) = ask(&gw, MASTER_KEY, prompt(nearby), &[]).await;
    assert_ne!(d["chosen"], "mid", "{d:#}");
    assert!(
        d["candidates"][1]["feedback_weight"].as_f64().unwrap() > 0.5,
        "{d:#}"
    );
    let (_, _, d) = ask(&gw, MASTER_KEY, prompt(elsewhere), &[]).await;
    assert_eq!(d["chosen"], "mid", "{d:#}");

    // A restart (a new gateway on the same database) learns it back from the store.
    let cfg = plexus_core::config::from_yaml_str(
        &common::config_yaml(&gw.mock.url(), &yaml_models, ""),
        &plexus_core::config::Overrides::default(),
        &|_| None,
    )
    .unwrap();
    let (writer, writer_handle) = plexus_store::LogWriter::spawn(gw.store.clone(), 16);
    let (audit, audit_handle) = plexus_auth::audit::AuditWriter::spawn(gw.store.clone());
    let client = plexus_providers::client::UpstreamClient::new(&Default::default()).unwrap();
    let again = plexus_server::AppState::new(
        plexus_server::Runtime::new(cfg).unwrap(),
        client,
        gw.store.clone(),
        writer,
        audit,
        None,
        std::sync::Arc::new(plexus_core::clock::SystemClock),
    )
    .unwrap();
    assert_eq!(again.sync_feedback().await.unwrap(), 5);
    let after_restart = again.predicted_quality("auto", "mid", near).await.unwrap();
    assert!((after_restart - at).abs() < 1e-9, "{after_restart} vs {at}");
    again.shutdown().await;
    writer_handle.shutdown().await;
    audit_handle.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_trained_router_predicts_quality_per_prompt() {
    if !embedder_available() {
        return;
    }
    use plexus_embed::Embedder;
    let embedder = plexus_embed::MiniLm::load(std::path::Path::new(
        &std::env::var("PLEXUS_MINILM_DIR").unwrap(),
    ))
    .unwrap();
    // mini gets arithmetic wrong and geography right; pro gets both right.
    let arithmetic = [
        "What is 17 times 23?",
        "Compute 144 divided by 12.",
        "What is the square root of 169?",
        "Add 348 and 279.",
        "What is 15 percent of 80?",
        "Multiply 36 by 14.",
        "What is 2 to the power of 10?",
        "Subtract 589 from 1000.",
    ];
    let geography = [
        "What is the capital of Italy?",
        "Which river flows through Cairo?",
        "What is the largest country in South America?",
        "Which ocean lies west of Portugal?",
        "What is the capital of Japan?",
        "Which mountain range separates France and Spain?",
        "What is the longest river in Europe?",
        "Which desert covers much of northern Africa?",
    ];
    let texts: Vec<&str> = arithmetic.iter().chain(&geography).copied().collect();
    let vectors = embedder.embed(&texts).unwrap();
    let examples: Vec<plexus_select::predictor::TrainingExample> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, embedding)| plexus_select::predictor::TrainingExample {
            embedding,
            correct: vec![Some(i >= arithmetic.len()), Some(true)],
        })
        .collect();
    let params = plexus_select::predictor::TrainParams {
        cluster_counts: vec![2],
        restarts: 1,
        ..Default::default()
    };
    let router =
        plexus_select::predictor::train(&examples, &["mini".into(), "pro".into()], &params)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.json");
    std::fs::write(&path, router.to_json()).unwrap();

    let gw = Gateway::start_with(
        &models(
            &format!("router: '{}', explore: 0, affinity: false", path.display()),
            "sim-pro",
        )
        .replace("[mini, mid, pro]", "[mini, pro]"),
        "",
    )
    .await;
    let (_, _, d) = ask(&gw, MASTER_KEY, prompt("What is 27 times 31?"), &[]).await;
    assert_eq!(d["chosen"], "pro", "{d:#}");
    assert_eq!(d["candidates"][0]["quality_source"], "router");
    let (mini_math, pro_math) = (
        d["candidates"][0]["quality"].as_f64().unwrap(),
        d["candidates"][1]["quality"].as_f64().unwrap(),
    );
    assert!(mini_math < pro_math, "{d:#}");
    let (_, _, d) = ask(
        &gw,
        MASTER_KEY,
        prompt("What is the capital of Germany?"),
        &[],
    )
    .await;
    assert_eq!(d["chosen"], "mini", "{d:#}");
    assert!(
        d["candidates"][0]["quality"].as_f64().unwrap() > mini_math,
        "{d:#}"
    );
    assert!(d["embed_us"].as_u64().unwrap() > 0);
    gw.shutdown().await;
}
