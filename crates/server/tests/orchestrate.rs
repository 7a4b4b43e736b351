//! The cross-model orchestrator end to end: orchestration models through
//! `/v1/chat/completions`, `POST /v1/orchestrations` and the stored evidence graph, over the
//! simulator's `quiz` models (they answer arithmetic right with a configured probability).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_data, Gateway, MASTER_KEY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const QUESTION: &str = "What is 1,234 + 5?";

/// Three quiz members (right, right, wrong) priced from cheap to dear, a judge that is always
/// right, and orchestration models of every strategy over them.
fn models() -> String {
    let price = |i: f64, o: f64| format!("price: {{input_per_mtok: {i}, output_per_mtok: {o}}}");
    format!(
        r#"  - name: right-a
    quality: 0.7
    targets: [{{provider: oai, model: 'quiz-a+acc-1', {p1}}}]
  - name: right-b
    quality: 0.7
    targets: [{{provider: oai, model: 'quiz-b+acc-1', {p2}}}]
  - name: wrong
    quality: 0.7
    targets: [{{provider: oai, model: 'quiz-w+acc-0', {p0}}}]
  - name: slow
    quality: 0.7
    targets: [{{provider: oai, model: 'quiz-s+acc-1+latency-5000', {p1}}}]
  - name: broken
    targets: [{{provider: oai, model: 'quiz-x+fault-500', {p1}}}]
  - name: judge
    targets: [{{provider: oai, model: 'quiz-j+acc-1', {p2}}}]
  - name: council
    orchestrate: {{strategy: vote, members: [wrong, right-a, right-b], answer: number}}
  - name: council-faulty
    orchestrate: {{strategy: vote, members: [broken, right-a, right-b], answer: number, quorum: 2}}
  - name: council-failing
    orchestrate: {{strategy: vote, members: [broken, broken, right-a], answer: number, quorum: 2}}
  - name: council-slow
    orchestrate: {{strategy: vote, members: [right-a, slow, wrong], answer: number, quorum: 2, timeout: 1s}}
  - name: cascade
    orchestrate: {{strategy: cascade, members: [right-b, wrong], answer: number, judge: judge, escalate_below: 0.7}}
  - name: mixture
    orchestrate: {{strategy: mixture, members: [wrong, right-a], aggregator: judge, answer: number, rounds: 2}}
  - name: debate
    orchestrate: {{strategy: debate, members: [wrong, right-a, right-b], judge: judge, answer: number, rounds: 2}}
  - name: refine
    orchestrate: {{strategy: refine, members: [right-a, judge], answer: number}}
  - name: best
    orchestrate: {{strategy: best_of_n, members: [wrong, right-a], judge: judge, answer: number}}
  - name: pricey
    orchestrate: {{strategy: vote, members: [right-a, right-b, wrong], answer: number, budget_usd: 0.000001}}
"#,
        p0 = price(0.1, 0.4),
        p1 = price(1.0, 4.0),
        p2 = price(3.0, 15.0),
    )
}

async fn start() -> Gateway {
    Gateway::start_with(&models(), "").await
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": QUESTION}]})
}

/// The final number of a chat completion's text.
fn content(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn get_json(gw: &Gateway, key: &str, path: &str) -> (u16, Value) {
    let resp = gw
        .http
        .get(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn new_key(gw: &Gateway, body: Value) -> String {
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_owned()
}

/// The inner calls' rows of `parent`, and the parent's own row.
async fn rows(
    gw: &Gateway,
    parent: &str,
) -> (
    plexus_store::LoggedRequest,
    Vec<plexus_store::LoggedRequest>,
) {
    gw.state.writer().flush().await;
    let parent_row = gw.store.request_by_id(parent).await.unwrap().unwrap();
    let children = gw.store.requests_by_parent(parent).await.unwrap();
    (parent_row, children)
}

#[tokio::test]
async fn a_vote_through_chat_completions_with_provenance_and_spend_on_inner_calls_only() {
    let gw = start().await;
    let resp = gw.chat(ask("council")).await;
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    let confidence: f64 = header(&resp, "x-plexus-confidence")
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(
        content(&body).contains("1,239") || content(&body).contains("1239"),
        "{body}"
    );
    assert_eq!(body["model"], "council");
    assert_eq!(body["object"], "chat.completion");
    let plexus = &body["plexus"];
    assert_eq!(plexus["orchestration_id"], id.as_str());
    assert_eq!(plexus["final_answer"], "1239");
    assert_eq!(plexus["strategy"], "vote");
    assert!((plexus["confidence"].as_f64().unwrap() - confidence).abs() < 1e-3);
    // Two of three agree: confident, not certain.
    assert!(confidence > 0.8 && confidence < 1.0, "{confidence}");
    let contributors = plexus["contributors"].as_array().unwrap();
    assert_eq!(contributors.len(), 3);
    let wrong = contributors.iter().find(|c| c["model"] == "wrong").unwrap();
    assert_eq!(wrong["agrees"], false);
    assert_ne!(wrong["answer"], "1239");

    // The graph: three calls, their answers, two votes for the final answer.
    let (status, stored) = get_json(&gw, MASTER_KEY, &format!("/v1/orchestrations/{id}")).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["answer"]["plexus"]["final_answer"], "1239");
    let nodes = stored["graph"]["nodes"].as_array().unwrap();
    let edges = stored["graph"]["edges"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["kind"] == "call").count(), 3);
    assert_eq!(nodes.iter().filter(|n| n["kind"] == "answer").count(), 3);
    assert_eq!(nodes.iter().filter(|n| n["kind"] == "final").count(), 1);
    assert_eq!(edges.iter().filter(|e| e["kind"] == "voted_for").count(), 2);
    assert_eq!(edges.iter().filter(|e| e["kind"] == "selected").count(), 1);

    // Recorded: the parent (no cost of its own) and three children with parent and step.
    let (parent, children) = rows(&gw, &id).await;
    assert_eq!(parent.model, "council");
    assert_eq!(parent.status, 200);
    assert_eq!(parent.cost, plexus_protocol::money::Nanos::ZERO);
    assert_eq!(children.len(), 3);
    let mut steps: Vec<u32> = children.iter().map(|c| c.step.unwrap()).collect();
    steps.sort_unstable();
    assert_eq!(steps, vec![0, 1, 2]);
    let spent: plexus_protocol::money::Nanos = children.iter().map(|c| c.cost).sum();
    assert!(spent > plexus_protocol::money::Nanos::ZERO);
    assert_eq!(stored["cost_usd"].as_f64().unwrap(), spent.usd());
    // Distinct seeds per independent sample reach the provider (each member got its own).
    let seeds: std::collections::HashSet<i64> = nodes
        .iter()
        .filter(|n| n["kind"] == "call")
        .map(|n| n["sample"].as_i64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 1, "one sample per member");
    gw.shutdown().await;
}

#[tokio::test]
async fn every_strategy_answers_through_the_orchestrations_endpoint() {
    let gw = start().await;
    for (model, calls, roles) in [
        // Cheapest first: `wrong` is scored low, so the cascade escalates to `right-b`.
        ("cascade", 4, vec!["answer", "score"]),
        ("mixture", 5, vec!["answer", "revise", "aggregate"]),
        ("debate", 7, vec!["answer", "revise", "judge"]),
        ("refine", 3, vec!["draft", "critique", "revise"]),
        ("best", 3, vec!["answer", "judge"]),
    ] {
        let resp = gw
            .post("/v1/orchestrations")
            .json(&ask(model))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let id = header(&resp, "x-plexus-orchestration-id").unwrap();
        let o: Value = resp.json().await.unwrap();
        assert_eq!(o["id"], id.as_str());
        assert_eq!(o["final_answer"], "1239", "{model}: {o:#}");
        let nodes = o["graph"]["nodes"].as_array().unwrap();
        let call_roles: Vec<&str> = nodes
            .iter()
            .filter(|n| n["kind"] == "call")
            .map(|n| n["role"].as_str().unwrap())
            .collect();
        assert_eq!(call_roles.len(), calls, "{model}: {call_roles:?}");
        for r in roles {
            assert!(call_roles.contains(&r), "{model}: {call_roles:?}");
        }
        assert!(
            o["confidence"].as_f64().unwrap() > 0.5,
            "{model}: {}",
            o["confidence"]
        );
        assert_eq!(o["answer"]["model"], model);
        let total = o["usage"]["total_tokens"].as_u64().unwrap();
        let per_call: u64 = nodes
            .iter()
            .filter(|n| n["kind"] == "call")
            .map(|n| {
                n["prompt_tokens"].as_u64().unwrap_or(0)
                    + n["completion_tokens"].as_u64().unwrap_or(0)
            })
            .sum();
        assert_eq!(total, per_call, "{model}");
        let (_, children) = rows(&gw, &id).await;
        assert_eq!(children.len(), calls, "{model}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn per_request_parameters_and_their_errors() {
    let gw = start().await;
    let mut body = ask("ignored");
    body.as_object_mut().unwrap().remove("model");
    body["strategy"] = json!("vote");
    body["members"] = json!(["right-a", "right-a", "wrong"]);
    body["samples"] = json!(2);
    body["answer"] = json!("number");
    let resp = gw
        .post("/v1/orchestrations")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let o: Value = resp.json().await.unwrap();
    assert_eq!(o["model"], "orchestration");
    assert_eq!(o["final_answer"], "1239");
    let calls: Vec<&Value> = o["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "call")
        .collect();
    // Four right answers out of six decide before the last ones may land; at least 4 ran.
    assert!(calls.len() == 6, "{}", calls.len());

    for (patch, param, text) in [
        (json!({"strategy": "chorus"}), "strategy", "chorus"),
        (
            json!({"members": ["right-a", "nope"]}),
            "members[1]",
            "not a configured model",
        ),
        (
            json!({"members": ["council"]}),
            "members[0]",
            "orchestration model",
        ),
        (json!({"quorum": 9}), "quorum", "more answers"),
        (json!({"samples": 17}), "samples", "between 1 and 16"),
        (json!({"strategy": "best_of_n"}), "judge", "judge"),
        (json!({"stream": true}), "stream", "not available"),
    ] {
        let mut b = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let resp = gw.post("/v1/orchestrations").json(&b).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{patch}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{patch}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(text),
            "{patch}: {e}"
        );
    }
    let mut b = ask("council");
    b["strategy"] = json!("vote");
    let resp = gw.post("/v1/orchestrations").json(&b).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = gw
        .post("/v1/orchestrations")
        .json(&ask("gpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    gw.shutdown().await;
}

#[tokio::test]
async fn quorum_under_faults_and_a_timeout_cancels_the_stragglers() {
    let gw = start().await;
    // One member fails: the two others still make the quorum.
    let resp = gw.chat(ask("council-faulty")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["plexus"]["final_answer"], "1239");
    let broken = body["plexus"]["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(
        broken["failed_calls"].as_u64().unwrap() + broken["cancelled_calls"].as_u64().unwrap(),
        1,
        "{broken}"
    );

    // Two members fail: the quorum is missed, in the caller's shape, with the graph stored.
    let resp = gw.chat(ask("council-failing")).await;
    assert_eq!(resp.status(), 502);
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    assert!(
        header(&resp, "x-plexus-confidence").is_none(),
        "no answer, no confidence"
    );
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "quorum_not_met", "{e}");
    let (status, stored) = get_json(&gw, MASTER_KEY, &format!("/v1/orchestrations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["error"]["code"], "quorum_not_met");

    // A 5 s straggler under a 1 s timeout: cancelled, the two others decide.
    let started = Instant::now();
    let resp = gw.chat(ask("council-slow")).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert!(took < Duration::from_secs(3), "{took:?}");
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    let body: Value = resp.json().await.unwrap();
    let slow = body["plexus"]["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "slow")
        .unwrap()
        .clone();
    assert_eq!(
        slow["failed_calls"].as_u64().unwrap() + slow["cancelled_calls"].as_u64().unwrap(),
        1,
        "{slow}"
    );
    let (_, children) = rows(&gw, &id).await;
    let straggler = children.iter().find(|c| c.model == "slow").unwrap();
    assert!(
        straggler.status == 499 || straggler.status == 504,
        "{}",
        straggler.status
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_budget_too_small_is_refused_up_front_and_the_stream_carries_the_synthesis() {
    let gw = start().await;
    let resp = gw.chat(ask("pricey")).await;
    assert_eq!(resp.status(), 429);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "budget_exceeded", "{e}");
    assert_eq!(e["error"]["param"], "budget_usd");

    let mut body = ask("council");
    body["stream"] = json!(true);
    let resp = gw.chat(body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-plexus-orchestration-id").is_some());
    assert!(header(&resp, "x-plexus-confidence").is_some());
    let data = sse_data(resp).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("1,239") || text.contains("1239"), "{text}");
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["plexus"]["final_answer"], "1239");
    assert_eq!(finish["model"], "council");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_graph_is_readable_only_by_its_owner_and_members_follow_the_key() {
    let gw = start().await;
    let alice = new_key(&gw, json!({"name": "alice"})).await;
    let bob = new_key(&gw, json!({"name": "bob"})).await;
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&alice)
        .json(&ask("council"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    let path = format!("/v1/orchestrations/{id}");
    assert_eq!(get_json(&gw, &alice, &path).await.0, 200);
    assert_eq!(get_json(&gw, MASTER_KEY, &path).await.0, 200);
    let (status, e) = get_json(&gw, &bob, &path).await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(
        get_json(&gw, &alice, "/v1/orchestrations/req_nope").await.0,
        404
    );

    // A key limited to some models: the orchestration model itself, and each member, apply.
    let limited = new_key(
        &gw,
        json!({"name": "limited", "models": ["council", "right-a", "right-b"]}),
    )
    .await;
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&limited)
        .json(&ask("council"))
        .send()
        .await
        .unwrap();
    // `wrong` is not allowed: its call is refused, the two allowed members still decide.
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let wrong = body["plexus"]["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "wrong")
        .unwrap()
        .clone();
    assert_eq!(wrong["failed_calls"], 1);
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&limited)
        .json(&ask("debate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    gw.shutdown().await;
}

/// The upstream bodies the simulator received for `model` (its upstream name's prefix).
fn upstream_bodies(gw: &Gateway, prefix: &str) -> Vec<Value> {
    gw.mock
        .requests()
        .into_iter()
        .filter(|r| {
            r.body["model"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn independent_samples_get_distinct_seeds_and_never_collapse_in_the_cache() {
    let extra = format!(
        "{}  - name: sc\n    orchestrate: {{strategy: vote, members: [right-a], samples: 3, answer: number}}\n",
        models()
    );
    let gw = Gateway::start_with(&extra, "cache: {ttl: 1h, nondeterministic: true}").await;
    let resp = gw.chat(ask("sc")).await;
    assert_eq!(resp.status(), 200);
    let bodies = upstream_bodies(&gw, "quiz-a");
    assert_eq!(bodies.len(), 3, "three samples, three upstream calls");
    let seeds: std::collections::HashSet<i64> =
        bodies.iter().map(|b| b["seed"].as_i64().unwrap()).collect();
    assert_eq!(seeds.len(), 3, "{bodies:?}");
    // The request set no temperature: independent samples use 0.7.
    assert!(bodies.iter().all(|b| b["temperature"] == 0.7), "{bodies:?}");
    // The same orchestration again: each sample is served from its own cache entry.
    let resp = gw.chat(ask("sc")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream_bodies(&gw, "quiz-a").len(), 3);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["plexus"]["final_answer"], "1239");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_budget_clamps_inner_output_and_bounds_the_spend() {
    // 3 calls at $1/$4 per Mtok on a ~20-token prompt: $0.0005 leaves room for ~40 output
    // tokens a call, well below the 1000 asked for.
    let extra = format!(
        "{}  - name: thrifty\n    orchestrate: {{strategy: vote, members: [right-a, slow, right-a], answer: number, budget_usd: 0.0005, timeout: 2s}}\n",
        models()
    );
    let gw = Gateway::start_with(&extra, "").await;
    let mut body = ask("thrifty");
    body["max_tokens"] = json!(1000);
    let resp = gw.chat(body).await;
    let status = resp.status();
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Vec<u64> = upstream_bodies(&gw, "quiz-")
        .iter()
        .map(|b| b["max_tokens"].as_u64().unwrap())
        .collect();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|&m| (16..1000).contains(&m)), "{sent:?}");
    let (_, children) = rows(&gw, &id).await;
    let spent: plexus_protocol::money::Nanos = children.iter().map(|c| c.cost).sum();
    assert!(
        spent <= plexus_protocol::money::Nanos::from_usd(0.0005),
        "{spent}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_orchestration_takes_the_callers_rate_and_concurrency_once() {
    let gw = start().await;
    // Three concurrent inner calls under `max_parallel: 1`, and two orchestrations under
    // `rpm: 2`, whose six inner calls do not count against it.
    let key = new_key(&gw, json!({"name": "tight", "rpm": 2, "max_parallel": 1})).await;
    let send = || {
        gw.http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&ask("council"))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(send().await.unwrap().status(), 200);
    let third = send().await.unwrap();
    assert_eq!(third.status(), 429);
    gw.shutdown().await;
}

#[tokio::test]
async fn task_analysis_sends_an_easy_request_to_one_model() {
    // `easy` is predicted (its quality) at 0.95: above the bar of 0.9, so one call answers;
    // with the bar at 0.99 nothing is good enough alone and the vote runs.
    let extra = format!(
        "{}  - name: easy\n    quality: 0.95\n    targets: [{{provider: oai, model: 'quiz-e+acc-1', price: {{input_per_mtok: 0.1, output_per_mtok: 0.4}}}}]\n  - name: triage\n    orchestrate: {{strategy: vote, members: [easy, right-a, right-b], answer: number, skip_if_easy: true, escalate_below: 0.9}}\n  - name: triage-strict\n    orchestrate: {{strategy: vote, members: [easy, right-a, right-b], answer: number, skip_if_easy: true, escalate_below: 0.99}}\n",
        models()
    );
    let gw = Gateway::start_with(&extra, "").await;
    let resp = gw.chat(ask("triage")).await;
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-plexus-orchestration-id").unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["plexus"]["skipped_to"], "easy", "{body}");
    assert_eq!(body["plexus"]["final_answer"], "1239");
    assert!((body["plexus"]["confidence"].as_f64().unwrap() - 0.95).abs() < 1e-9);
    let (_, children) = rows(&gw, &id).await;
    assert_eq!(children.len(), 1);

    let resp = gw.chat(ask("triage-strict")).await;
    let body: Value = resp.json().await.unwrap();
    assert!(body["plexus"].get("skipped_to").is_none(), "{body}");
    assert_eq!(body["plexus"]["contributors"].as_array().unwrap().len(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_configured_calibration_map_recalibrates_the_confidence() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("council.json");
    std::fs::write(&map, r#"{"method": "platt", "a": 1.0, "b": -1.0}"#).unwrap();
    let extra = format!(
        "{}  - name: calibrated\n    orchestrate: {{strategy: vote, members: [wrong, right-a, right-b], answer: number, calibration: '{}'}}\n",
        models(),
        map.display()
    );
    let gw = Gateway::start_with(&extra, "").await;
    let resp = gw
        .post("/v1/orchestrations")
        .json(&ask("calibrated"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header_confidence: f64 = header(&resp, "x-plexus-confidence")
        .unwrap()
        .parse()
        .unwrap();
    let o: Value = resp.json().await.unwrap();
    let raw = o["raw_confidence"].as_f64().unwrap();
    let logit = (raw / (1.0 - raw)).ln();
    let expected = 1.0 / (1.0 + (-(logit - 1.0)).exp());
    assert!(
        (o["confidence"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{o}"
    );
    assert!((header_confidence - expected).abs() < 1e-4);
    assert!(expected < raw);

    // A request cannot name a file on the gateway.
    let mut body = ask("orchestration");
    body["strategy"] = json!("vote");
    body["members"] = json!(["right-a"]);
    body["answer"] = json!("number");
    body["calibration"] = json!("/etc/passwd");
    let resp = gw
        .post("/v1/orchestrations")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "calibration");
    gw.shutdown().await;

    // An unreadable map is a start-up error naming the key.
    let yaml = common::config_yaml(
        "http://127.0.0.1:9",
        &format!(
            "{}  - name: calibrated\n    orchestrate: {{strategy: vote, members: [right-a], answer: number, calibration: '{}'}}\n",
            models(),
            dir.path().join("missing.json").display()
        ),
        "",
    );
    let cfg = plexus_core::config::from_yaml_str(&yaml, &Default::default(), &|_| None).unwrap();
    let err = plexus_server::Runtime::new(cfg).unwrap_err().to_string();
    assert!(
        err.contains("orchestrate.calibration") && err.contains("missing.json"),
        "{err}"
    );
}
