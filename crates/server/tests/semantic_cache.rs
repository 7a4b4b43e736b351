//! The semantic cache with the local all-MiniLM-L6-v2 (`PLEXUS_MINILM_DIR`, set by
//! `scripts/test.sh` from `scripts/fetch-minilm.sh`), and with a provider embeddings model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{redis_url, Gateway};
use serde_json::{json, Value};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn ask(system: &str, text: &str) -> Value {
    json!({"model": "gpt", "temperature": 0, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": text}
    ]})
}

fn minilm_dir() -> Option<String> {
    match std::env::var("PLEXUS_MINILM_DIR") {
        Ok(d) => Some(d),
        Err(_) => {
            eprintln!("PLEXUS_MINILM_DIR is not set (scripts/test.sh sets it): skipped");
            None
        }
    }
}

/// Sends a request that must miss, and waits until its question is indexed (in the
/// background, after the answer): what comes next can then find it.
async fn miss_indexed(gw: &Gateway, body: Value) -> reqwest::Response {
    let resp = gw.chat(body).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    settled(gw).await;
    resp
}

/// Waits until the gateway's background work (indexing, judging) is done.
async fn settled(gw: &Gateway) {
    eventually("background work to finish", || async {
        gw.state.background_idle()
    })
    .await;
}

/// Polls `done` until it holds; fails after 20 s, naming `what` it waited for.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn start(dir: &str) -> Gateway {
    Gateway::start_with(
        "",
        &format!(
            "cache:\n  ttl: 1h\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.85"
        ),
    )
    .await
}

#[tokio::test]
async fn paraphrases_hit_and_unrelated_questions_miss() {
    let Some(dir) = minilm_dir() else { return };
    let gw = start(&dir).await;
    let sys = "You are a support agent.";
    let first = miss_indexed(&gw, ask(sys, "How do I reset my password?")).await;
    let answer: Value = first.json().await.unwrap();

    let para = gw.chat(ask(sys, "How can I reset my password?")).await;
    assert_eq!(header(&para, "x-plexus-cache"), Some("semantic-hit"));
    let similarity: f32 = header(&para, "x-plexus-cache-similarity")
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.85..=1.0).contains(&similarity), "{similarity}");
    assert_eq!(para.json::<Value>().await.unwrap(), answer);

    for unrelated in [
        "What is the capital of France?",
        "How do I delete my account?",
        "Recommend a good book about sailing.",
    ] {
        let resp = gw.chat(ask(sys, unrelated)).await;
        assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"), "{unrelated}");
    }
    // Same question, another system prompt: another partition.
    let resp = gw
        .chat(ask("You are a pirate.", "How can I reset my password?"))
        .await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    gw.shutdown().await;
}

#[tokio::test]
async fn semantic_entries_stay_within_their_tenant_and_settings() {
    let Some(dir) = minilm_dir() else { return };
    let gw = start(&dir).await;
    let sys = "Answer briefly.";
    miss_indexed(&gw, ask(sys, "What time zone is Tokyo in?")).await;
    // Another team's key does not see it.
    let _ = gw
        .post("/admin/teams")
        .json(&json!({"id": "other"}))
        .send()
        .await
        .unwrap();
    let created: Value = gw
        .post("/admin/keys")
        .json(&json!({"name": "o", "team": "other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(created["key"].as_str().unwrap())
        .json(&ask(sys, "Which time zone is Tokyo in?"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    // Other sampling parameters: another partition.
    let mut hot = ask(sys, "Which time zone is Tokyo in?");
    hot["max_tokens"] = json!(9);
    assert_eq!(header(&gw.chat(hot).await, "x-plexus-cache"), Some("miss"));
    // The original tenant and settings hit.
    let resp = gw.chat(ask(sys, "Which time zone is Tokyo in?")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    // A purged entry is never served semantically either.
    let resp = gw
        .http
        .delete(format!("{}/admin/cache?model=gpt", gw.url))
        .bearer_auth(common::MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = gw.chat(ask(sys, "In which time zone is Tokyo?")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_provider_embeddings_model_can_embed_for_the_cache() {
    let gw = Gateway::start_with(
        "",
        "cache:\n  ttl: 1h\n  semantic:\n    embedder: {kind: model, model: embed}\n    threshold: 0.99",
    )
    .await;
    miss_indexed(&gw, ask("sys", "Name three prime numbers.")).await;
    let embed_calls = gw
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .count();
    assert!(
        embed_calls >= 1,
        "the question was embedded through the model"
    );
    // The same question with other whitespace misses the exact key but is the same vector.
    let resp = gw.chat(ask("sys", "Name three prime numbers. ")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    gw.shutdown().await;
}

#[tokio::test]
async fn instances_share_semantic_entries_through_redis() {
    let Some(dir) = minilm_dir() else { return };
    let top = format!(
        "cache:\n  ttl: 1h\n  redis: '{}'\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.85",
        redis_url()
    );
    let a = Gateway::start_with("", &top).await;
    // A question no earlier run asked (the shared tier outlives test runs).
    let topic = uuid::Uuid::new_v4().simple().to_string();
    let sys = format!("Support for product {topic}.");
    // (Indexed here means shared too: the vector goes to Redis first.)
    miss_indexed(&a, ask(&sys, "How do I reset my password?")).await;
    // An instance started afterwards rebuilds its index from Redis.
    let b = Gateway::start_with_mock_url(&a.mock.url(), "", &top).await;
    let resp = b.chat(ask(&sys, "How can I reset my password?")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    // And an entry filled on B reaches A's running index.
    miss_indexed(&b, ask(&sys, "Where can I download my invoices?")).await;
    // (Announced on a Redis channel: A then indexes two questions, its own and B's.)
    eventually("B's entry in A's index", || async {
        cache_stats(&a).await["semantic"]["entries"].as_u64() >= Some(2)
    })
    .await;
    let resp = a.chat(ask(&sys, "Where do I download my invoices?")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn the_judge_raises_the_threshold_of_an_entry_it_finds_wrong() {
    let Some(dir) = minilm_dir() else { return };
    // Every semantic hit is re-checked; answers must agree almost exactly. A bound of 1 leaves
    // the pooled floor out, so this is the entry's own threshold at work.
    let gw = Gateway::start_with(
        "",
        &format!(
            "cache:\n  ttl: 1h\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.6\n    max_false_hit_rate: 1\n    judge: {{sample_rate: 1.0, agreement: 0.999}}"
        ),
    )
    .await;
    let sys = "sys";
    miss_indexed(&gw, ask(sys, "What is the best way to learn French?")).await;
    // A loose threshold lets a different question in once...
    let resp = gw
        .chat(ask(sys, "What is the best way to learn German?"))
        .await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    // ...the judge's fresh answer disagrees, and the entry stops serving at that similarity.
    settled(&gw).await;
    let resp = gw
        .chat(ask(sys, "What is the best way to learn German?"))
        .await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    gw.shutdown().await;
}

/// `GET /admin/cache`.
async fn cache_stats(gw: &Gateway) -> Value {
    let resp = gw
        .http
        .get(format!("{}/admin/cache", gw.url))
        .bearer_auth(common::MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Waits until the judge has recorded `n` outcomes in all (it works in the background).
async fn outcomes_reach(gw: &Gateway, n: u64) -> Value {
    eventually(&format!("outcome {n}"), || async {
        cache_stats(gw).await["semantic"]["outcomes"].as_u64() >= Some(n)
    })
    .await;
    cache_stats(gw).await
}

const TOPICS: [&str; 20] = [
    "reset my password",
    "change my email address",
    "cancel my subscription",
    "update my billing details",
    "export my data",
    "enable two-factor authentication",
    "delete a project",
    "invite a teammate",
    "rename my workspace",
    "download an invoice",
    "change the display language",
    "turn off email notifications",
    "upgrade my plan",
    "contact customer support",
    "recover a deleted file",
    "change my username",
    "add a payment method",
    "leave an organization",
    "connect my calendar",
    "report a bug",
];

async fn judged_gateway(dir: &str, model: &str) -> Gateway {
    Gateway::start_with(
        &format!(
            "  - name: answers\n    targets: [{{provider: oai, model: {model}}}]\n  - name: answers-b\n    targets: [{{provider: oai, model: {model}}}]"
        ),
        &format!(
            "cache:\n  ttl: 1h\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.8\n    max_false_hit_rate: 0.2\n    judge: {{sample_rate: 1.0, agreement: 0.9}}"
        ),
    )
    .await
}

fn ask_model(model: &str, system: &str, text: &str) -> Value {
    let mut body = ask(system, text);
    body["model"] = json!(model);
    body
}

#[tokio::test]
async fn the_exploring_judge_learns_before_anything_is_served() {
    let Some(dir) = minilm_dir() else { return };
    // The simulator's `echo` model repeats the question, so a paraphrase's fresh answer agrees
    // with the cached one: every explored outcome is right.
    let gw = judged_gateway(&dir, "echo").await;
    let stats = cache_stats(&gw).await;
    assert_eq!(stats["semantic"]["bounded"], true);
    assert_eq!(
        stats["semantic"]["models"],
        json!({}),
        "no evidence, no hits"
    );
    let mut first_hit = None;
    for round in 0..40 {
        let topic = TOPICS[round % TOPICS.len()];
        // One partition per round (topics come round again under another system prompt): the
        // only neighbour of the paraphrase is its original.
        let sys = format!("Support desk {round}.");
        let original = miss_indexed(
            &gw,
            ask_model("answers", &sys, &format!("How do I {topic}?")),
        )
        .await;
        let cached: Value = original.json().await.unwrap();
        let before = cache_stats(&gw).await["semantic"]["outcomes"]
            .as_u64()
            .unwrap();
        let para = gw
            .chat(ask_model("answers", &sys, &format!("How can I {topic}?")))
            .await;
        let kind = header(&para, "x-plexus-cache").unwrap().to_owned();
        if kind == "semantic-hit" {
            assert_eq!(para.json::<Value>().await.unwrap(), cached);
            first_hit = Some(round);
            break;
        }
        assert_eq!(kind, "miss");
        // The refused candidate's answer is compared with the fresh one.
        let stats = outcomes_reach(&gw, before + 1).await;
        assert_eq!(stats["semantic"]["wrong"], 0, "{stats}");
    }
    // With no failure the Wilson bound falls under 0.2 after 22 outcomes, and the pool wants
    // 30 before it serves anything.
    assert_eq!(first_hit, Some(30));
    let stats = cache_stats(&gw).await;
    let pool = &stats["semantic"]["models"]["answers"];
    assert_eq!(pool["serving"], true, "{stats}");
    let floor = pool["floor"].as_f64().unwrap();
    assert!((0.8..1.0).contains(&floor), "{stats}");
    // The hit is re-checked too (sample_rate 1), and agrees.
    let stats = outcomes_reach(&gw, 31).await;
    assert_eq!(stats["semantic"]["wrong"], 0, "{stats}");
    // Another model has a pool of its own: what `answers` learned does not open it.
    let sys = "Support desk for the other model.";
    miss_indexed(
        &gw,
        ask_model("answers-b", sys, "How do I reset my password?"),
    )
    .await;
    let para = gw
        .chat(ask_model("answers-b", sys, "How can I reset my password?"))
        .await;
    assert_eq!(header(&para, "x-plexus-cache"), Some("miss"));
    let stats = outcomes_reach(&gw, 32).await;
    assert_eq!(
        stats["semantic"]["models"]["answers-b"]["outcomes"], 1,
        "{stats}"
    );
    assert_eq!(stats["semantic"]["models"]["answers-b"]["serving"], false);
    gw.shutdown().await;
}

#[tokio::test]
async fn answers_that_disagree_keep_semantic_hits_off() {
    let Some(dir) = minilm_dir() else { return };
    // The simulator's default model answers a sentence seeded by the prompt: a paraphrase gets
    // another answer, so every explored outcome is wrong.
    let gw = judged_gateway(&dir, "gpt-4o-mini").await;
    for (round, topic) in TOPICS.iter().enumerate() {
        let sys = format!("Support desk {round}.");
        miss_indexed(
            &gw,
            ask_model("answers", &sys, &format!("How do I {topic}?")),
        )
        .await;
        let para = gw
            .chat(ask_model("answers", &sys, &format!("How can I {topic}?")))
            .await;
        assert_eq!(header(&para, "x-plexus-cache"), Some("miss"), "{topic}");
        outcomes_reach(&gw, round as u64 + 1).await;
    }
    let stats = cache_stats(&gw).await;
    assert_eq!(stats["semantic"]["wrong"], 20, "{stats}");
    let pool = &stats["semantic"]["models"]["answers"];
    assert_eq!(pool["serving"], false, "{stats}");
    assert_eq!(pool["floor"], Value::Null);
    gw.shutdown().await;
}

#[tokio::test]
async fn instances_share_what_the_judge_learned_through_redis() {
    let Some(dir) = minilm_dir() else { return };
    // A prefix of its own: the shared outcomes are cache-wide.
    let prefix = format!("plexus:test:{}:", uuid::Uuid::new_v4().simple());
    let top = format!(
        "cache:\n  ttl: 1h\n  redis: '{}'\n  redis_prefix: '{prefix}'\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.8\n    max_false_hit_rate: 0.2\n    judge: {{sample_rate: 1.0, agreement: 0.9}}",
        redis_url()
    );
    let models = "  - name: answers\n    targets: [{provider: oai, model: echo}]";
    let a = Gateway::start_with(models, &top).await;
    // B is running (and has looked up once) while A learns: outcomes reach it as they come.
    let b = Gateway::start_with_mock_url(&a.mock.url(), models, &top).await;
    b.chat(ask_model("answers", "Warm-up.", "Hello?")).await;
    // Both listen on the outcomes channel before A learns anything.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    eventually("both instances on the outcomes channel", || {
        let mut conn = conn.clone();
        let channel = format!("{prefix}outcomes");
        async move {
            let (_, listeners): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            listeners >= 2
        }
    })
    .await;
    for round in 0..30 {
        let topic = TOPICS[round % TOPICS.len()];
        let sys = format!("Support desk {round}.");
        miss_indexed(
            &a,
            ask_model("answers", &sys, &format!("How do I {topic}?")),
        )
        .await;
        let para = a
            .chat(ask_model("answers", &sys, &format!("How can I {topic}?")))
            .await;
        assert_eq!(header(&para, "x-plexus-cache"), Some("miss"));
        outcomes_reach(&a, round as u64 + 1).await;
    }
    assert_eq!(
        cache_stats(&a).await["semantic"]["models"]["answers"]["serving"],
        true
    );
    let stats = outcomes_reach(&b, 30).await;
    assert_eq!(
        stats["semantic"]["models"]["answers"]["serving"], true,
        "{stats}"
    );
    // C starts afterwards and loads them before its first lookup.
    let c = Gateway::start_with_mock_url(&a.mock.url(), models, &top).await;
    for (gw, sys) in [(&b, "Fresh desk B."), (&c, "Fresh desk C.")] {
        miss_indexed(gw, ask_model("answers", sys, "How do I export my data?")).await;
        let para = gw
            .chat(ask_model("answers", sys, "How can I export my data?"))
            .await;
        assert_eq!(
            header(&para, "x-plexus-cache"),
            Some("semantic-hit"),
            "{sys}"
        );
    }
    let stats = cache_stats(&c).await;
    assert!(
        stats["semantic"]["outcomes"].as_u64().unwrap() >= 30,
        "{stats}"
    );
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
    // The outcomes list has no expiry (it is bounded instead): drop this test's keys.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.contains(&format!("{prefix}outcomes")), "{keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Creates team `red` and a member key in it; the key's secret.
async fn red_key(gw: &Gateway) -> String {
    let admin = |path: &str, body: Value| {
        gw.http
            .post(format!("{}{path}", gw.url))
            .bearer_auth(common::MASTER_KEY)
            .json(&body)
            .send()
    };
    let resp = admin("/admin/teams", json!({"id": "red"})).await.unwrap();
    assert_eq!(resp.status(), 201);
    let resp = admin("/admin/keys", json!({"name": "r", "team": "red"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_owned()
}

async fn chat_as(gw: &Gateway, key: &str, id: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn model_embeddings_are_system_calls_recorded_for_their_request_and_limited() {
    // The cache's embeddings model allows 2 requests a minute across callers.
    let gw = Gateway::start_with(
        "  - name: cache-embed\n    targets: [{provider: oai, model: text-embedding-3-small}]\n    limits: {rpm: 2}",
        "cache:\n  ttl: 1h\n  semantic:\n    embedder: {kind: model, model: cache-embed}\n    threshold: 0.99",
    )
    .await;
    let key = red_key(&gw).await;
    // First: the question is indexed in the background (one embedding).
    let resp = chat_as(&gw, &key, "first", ask("sys", "Name three prime numbers.")).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    settled(&gw).await;
    // Second: the lookup embeds (two); indexing it would be the third, over the limit.
    let resp = chat_as(&gw, &key, "second", ask("sys", "Name four even numbers.")).await;
    assert_eq!(
        resp.status(),
        200,
        "a refused embedding is a miss, never a failure"
    );
    settled(&gw).await;
    let first = gw.logged("first").await;
    let second = gw.logged("second").await;
    let mut calls = Vec::new();
    for parent in [&first, &second] {
        for row in gw
            .store
            .requests_by_parent(&parent.request_id)
            .await
            .unwrap()
        {
            assert_eq!(row.endpoint, "embeddings");
            assert_eq!(row.model, "cache-embed");
            assert_eq!(row.key_id, "system");
            assert_eq!(row.overhead_team_id.as_deref(), Some("red"));
            calls.push((parent.client_request_id.clone(), row.status));
        }
    }
    calls.sort();
    let first_id = Some("first".to_owned());
    let second_id = Some("second".to_owned());
    assert_eq!(
        calls,
        vec![(first_id, 200), (second_id.clone(), 200), (second_id, 429)]
    );
    // Their spend is the team's cache overhead, not the team's own.
    let overhead = gw.store.overhead_by_team(0, Some("red")).await.unwrap();
    assert_eq!(overhead.len(), 1);
    assert_eq!(overhead[0].requests, 3);
    assert_eq!(
        gw.store.spend_since("team", "red", 0).await.unwrap(),
        first.cost + second.cost
    );
    let spend: Value = gw
        .http
        .get(format!("{}/admin/spend?group=team", gw.url))
        .bearer_auth(common::MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let red = spend["cache_overhead"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["team"] == "red")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(red["requests"], 3, "{spend}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_judges_call_is_recorded_for_the_hit_it_checks_and_limited() {
    let Some(dir) = minilm_dir() else { return };
    // The model allows 2 requests a minute: the two client requests take them, so the judge's
    // re-ask of the semantic hit is refused by the model's limit, and recorded as such.
    let gw = Gateway::start_with(
        "  - name: judged\n    targets: [{provider: oai, model: gpt-4o-mini}]\n    limits: {rpm: 2}",
        &format!(
            "cache:\n  ttl: 1h\n  semantic:\n    embedder: {{kind: local, path: '{dir}'}}\n    threshold: 0.6\n    max_false_hit_rate: 1\n    judge: {{sample_rate: 1.0, agreement: 0.999}}"
        ),
    )
    .await;
    let key = red_key(&gw).await;
    let mut first = ask("sys", "What is the best way to learn French?");
    first["model"] = json!("judged");
    let resp = chat_as(&gw, &key, "asked", first).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("miss"));
    settled(&gw).await;
    let mut second = ask("sys", "What is the best way to learn German?");
    second["model"] = json!("judged");
    let resp = chat_as(&gw, &key, "hit", second).await;
    assert_eq!(header(&resp, "x-plexus-cache"), Some("semantic-hit"));
    settled(&gw).await;
    let hit = gw.logged("hit").await;
    let judged = gw.store.requests_by_parent(&hit.request_id).await.unwrap();
    assert_eq!(judged.len(), 1, "{judged:?}");
    let j = &judged[0];
    assert_eq!((j.endpoint.as_str(), j.model.as_str()), ("chat", "judged"));
    assert_eq!(
        (j.key_id.as_str(), j.overhead_team_id.as_deref()),
        ("system", Some("red"))
    );
    assert_eq!(j.status, 429);
    assert_eq!(j.error_code.as_deref(), Some("rate_limit_exceeded"));
    gw.shutdown().await;
}
