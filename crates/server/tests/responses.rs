//! The OpenAI Responses API (`POST /v1/responses`) on every provider kind, plain and streamed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_events, Backend, Gateway, MASTER_KEY};
use serde_json::{json, Value};

const MODELS: &str = "  - name: agent-oai\n    targets: [{provider: oai, model: gpt-4o-mini+agent}]\n  - name: agent-claude\n    targets: [{provider: claude, model: claude-sonnet-4-5+agent}]\n  - name: agent-gem\n    targets: [{provider: gem, model: gemini-2.5-flash+agent}]\n";

fn post(gw: &Gateway, body: &Value) -> reqwest::RequestBuilder {
    gw.http
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(body)
}

#[tokio::test]
async fn plain_and_streamed_responses_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    for model in ["gpt", "sonnet", "flash"] {
        let body = json!({"model": model, "instructions": "Be brief.", "input": "Say hello",
            "tools": [{"type": "web_search"}], "max_output_tokens": 64});
        let resp = post(&gw, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["object"], "response", "{r}");
        assert!(r["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], model);
        let text = r["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!text.is_empty());
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let mut b = body.clone();
        b["stream"] = json!(true);
        let resp = post(&gw, &b).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ev = sse_events(resp).await;
        assert_eq!(ev[0].0, "response.created");
        assert_eq!(ev.last().unwrap().0, "response.completed");
        let deltas: String = ev
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, text, "{model}");
        for (i, (n, d)) in ev.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64);
            assert_eq!(d["type"], n.as_str());
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_shell_round_trip_on_every_provider_kind() {
    let gw = Gateway::start_with(MODELS, "").await;
    let tools = json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object",
        "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}, {"type": "namespace", "name": "mcp"}]);
    for model in ["agent-oai", "agent-claude", "agent-gem"] {
        let first = json!({"model": model, "tools": tools, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run `echo hi-7` please."}]}]});
        let r: Value = post(&gw, &first)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let call = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: {r}"))
            .clone();
        assert_eq!(call["name"], "exec_command");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"cmd": "echo hi-7"}));
        let second = json!({"model": model, "tools": tools, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run `echo hi-7` please."}]},
            {"type": "function_call", "call_id": call["call_id"], "name": "exec_command", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "hi-7\n"}]});
        let r: Value = post(&gw, &second)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = r["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("hi-7"), "{model}: {r}");
    }
    for (body, status, param) in [
        (json!({"model": "gpt", "input": []}), 400, "input"),
        (
            json!({"model": "gpt", "input": "x", "previous_response_id": "resp_nope"}),
            404,
            "previous_response_id",
        ),
        (
            json!({"model": "gpt", "input": "x", "background": true, "store": false}),
            400,
            "store",
        ),
        (
            json!({"model": "gpt", "input": "x", "background": true, "stream": true}),
            400,
            "stream",
        ),
    ] {
        let resp = post(&gw, &body).send().await.unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    gw.shutdown().await;
}

const SLOW: &str = "  - name: slow-gpt\n    targets: [{provider: oai, model: gpt-4o-mini+latency-4000}]\n  - name: slow-claude\n    targets: [{provider: claude, model: claude-sonnet-4-5+latency-4000}]\n  - name: quick-claude\n    targets: [{provider: claude, model: claude-sonnet-4-5+latency-300}]\n";

fn get(gw: &Gateway, path: &str, key: &str) -> reqwest::RequestBuilder {
    gw.http.get(format!("{}{path}", gw.url)).bearer_auth(key)
}

async fn json_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn new_key(gw: &Gateway) -> String {
    let (status, key) = json_of(
        gw.http
            .post(format!("{}/admin/keys", gw.url))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"name": "someone-else"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

/// The text of a response's assistant message.
fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "message")
        .flat_map(|o| o["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[tokio::test]
async fn stored_responses_continue_and_belong_to_their_key_on_sqlite() {
    stored_responses_continue_and_belong_to_their_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn stored_responses_continue_and_belong_to_their_key_on_postgres() {
    stored_responses_continue_and_belong_to_their_key(Backend::Postgres).await;
}

async fn stored_responses_continue_and_belong_to_their_key(backend: Backend) {
    let gw = Gateway::start_on(backend, MODELS, "").await;
    let other = new_key(&gw).await;
    for model in ["gpt", "sonnet", "flash"] {
        for stream in [false, true] {
            let marker = format!("zebra-{model}-{stream}");
            let first = json!({"model": model, "input": format!("Remember the word {marker}."),
                "instructions": "Only in turn one."});
            let (status, r1) = json_of(post(&gw, &first)).await;
            assert_eq!(status, 200, "{r1}");
            assert_eq!(r1["store"], true);
            let id1 = r1["id"].as_str().unwrap().to_owned();
            let answer1 = output_text(&r1);
            assert!(!answer1.is_empty());

            // The second turn continues the first: the provider receives turn one's input and
            // answer, not its instructions.
            let before = gw.mock.requests().len();
            let second = json!({"model": model, "input": "Which word?", "previous_response_id": id1,
                "stream": stream});
            let resp = post(&gw, &second).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let r2 = if stream {
                let ev = sse_events(resp).await;
                let (kind, last) = ev.last().unwrap();
                assert_eq!(kind, "response.completed", "{ev:?}");
                last["response"].clone()
            } else {
                resp.json().await.unwrap()
            };
            assert_eq!(r2["previous_response_id"], id1.as_str(), "{r2}");
            let sent = gw.mock.requests()[before..].to_vec();
            assert_eq!(sent.len(), 1, "{model}");
            let upstream = sent[0].body.to_string();
            assert!(upstream.contains(&marker), "{model}: {upstream}");
            let first_words: String = answer1.chars().take(20).collect();
            assert!(upstream.contains(&first_words), "{model}: {upstream}");
            assert!(upstream.contains("Which word?"));
            assert!(
                !upstream.contains("Only in turn one."),
                "{model}: {upstream}"
            );
            assert!(!upstream.contains("previous_response_id"), "{upstream}");
            let id2 = r2["id"].as_str().unwrap().to_owned();

            // Read back, as the client got it (a streamed one is stored once it ends).
            let mut stored = Value::Null;
            for _ in 0..50 {
                let (status, r) =
                    json_of(get(&gw, &format!("/v1/responses/{id2}"), MASTER_KEY)).await;
                if status == 200 {
                    stored = r;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(stored["id"], id2.as_str());
            assert_eq!(stored["status"], "completed");
            assert_eq!(output_text(&stored), output_text(&r2));

            // The items it came from: turn one's input and output, then its own, newest first.
            let (status, items) = json_of(get(
                &gw,
                &format!("/v1/responses/{id2}/input_items"),
                MASTER_KEY,
            ))
            .await;
            assert_eq!(status, 200, "{items}");
            let data = items["data"].as_array().unwrap();
            assert_eq!(data.len(), 3, "{items}");
            assert_eq!(data[0]["content"][0]["text"], "Which word?");
            assert_eq!(data[0]["role"], "user");
            assert_eq!(data[1]["role"], "assistant");
            assert!(data[2]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(&marker));
            assert_eq!(items["has_more"], false);
            let (_, page) = json_of(get(
                &gw,
                &format!("/v1/responses/{id2}/input_items?order=asc&limit=2"),
                MASTER_KEY,
            ))
            .await;
            assert_eq!(page["data"].as_array().unwrap().len(), 2);
            assert_eq!(page["has_more"], true);
            assert_eq!(page["first_id"], data[2]["id"]);
            let after = page["last_id"].as_str().unwrap();
            let (_, rest) = json_of(get(
                &gw,
                &format!("/v1/responses/{id2}/input_items?order=asc&after={after}"),
                MASTER_KEY,
            ))
            .await;
            assert_eq!(rest["data"][0]["id"], data[0]["id"], "{rest}");

            // Another key sees none of it.
            for path in [
                format!("/v1/responses/{id2}"),
                format!("/v1/responses/{id2}/input_items"),
            ] {
                let (status, e) = json_of(get(&gw, &path, &other)).await;
                assert_eq!(status, 404, "{e}");
            }
            let (status, e) = json_of(
                gw.http
                    .post(format!("{}/v1/responses", gw.url))
                    .bearer_auth(&other)
                    .json(&json!({"model": model, "input": "x", "previous_response_id": id2})),
            )
            .await;
            assert_eq!(
                (status, e["error"]["param"].as_str()),
                (404, Some("previous_response_id")),
                "{e}"
            );
            let (status, _) = json_of(
                gw.http
                    .delete(format!("{}/v1/responses/{id2}", gw.url))
                    .bearer_auth(&other),
            )
            .await;
            assert_eq!(status, 404);

            // Deleted, it is gone for its owner too.
            let (status, d) = json_of(
                gw.http
                    .delete(format!("{}/v1/responses/{id2}", gw.url))
                    .bearer_auth(MASTER_KEY),
            )
            .await;
            assert_eq!((status, &d["deleted"]), (200, &json!(true)), "{d}");
            let (status, _) = json_of(get(&gw, &format!("/v1/responses/{id2}"), MASTER_KEY)).await;
            assert_eq!(status, 404);
        }
    }
    // `store: false` keeps nothing.
    let (_, r) = json_of(post(
        &gw,
        &json!({"model": "sonnet", "input": "x", "store": false}),
    ))
    .await;
    assert_eq!(r["store"], false);
    wait_idle(&gw).await;
    let (status, _) = json_of(get(
        &gw,
        &format!("/v1/responses/{}", r["id"].as_str().unwrap()),
        MASTER_KEY,
    ))
    .await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}

/// Waits (at most 10 s) until no background job of the gateway runs: stored responses are
/// written.
async fn wait_idle(gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw.state.background_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "background jobs still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Polls a response until its status is one of `until`.
async fn poll(gw: &Gateway, id: &str, until: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, r) = json_of(get(gw, &format!("/v1/responses/{id}"), MASTER_KEY)).await;
        assert_eq!(status, 200, "{r}");
        if until.contains(&r["status"].as_str().unwrap()) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn background_runs_are_reported_cancelled_and_interrupted_from_any_instance() {
    let a = Gateway::start_with(&format!("{MODELS}{SLOW}"), "").await;
    let b = Gateway::start_beside(&a, &format!("{MODELS}{SLOW}"), "").await;

    // A run finishes; the other instance reports it.
    let (status, queued) = json_of(post(
        &a,
        &json!({"model": "quick-claude", "input": "Hi", "background": true}),
    ))
    .await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["background"], true);
    let id = queued["id"].as_str().unwrap().to_owned();
    let (_, seen) = json_of(get(&b, &format!("/v1/responses/{id}"), MASTER_KEY)).await;
    assert!(
        ["queued", "in_progress"].contains(&seen["status"].as_str().unwrap()),
        "{seen}"
    );
    let done = poll(&b, &id, &["completed"]).await;
    assert!(!output_text(&done).is_empty(), "{done}");
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // A finished run cannot be cancelled; a foreground one never can.
    let cancel = |gw: &Gateway, id: &str| {
        gw.http
            .post(format!("{}/v1/responses/{id}/cancel", gw.url))
            .bearer_auth(MASTER_KEY)
    };
    let (status, _) = json_of(cancel(&a, &id)).await;
    assert_eq!(status, 400);
    let (_, fg) = json_of(post(&a, &json!({"model": "sonnet", "input": "x"}))).await;
    let (status, e) = json_of(cancel(&a, fg["id"].as_str().unwrap())).await;
    assert_eq!(status, 400, "{e}");

    // Cancelled from the other instance: the running one stops the upstream call.
    for model in ["slow-gpt", "slow-claude"] {
        let (_, queued) = json_of(post(
            &a,
            &json!({"model": model, "input": "Hi", "background": true}),
        ))
        .await;
        let id = queued["id"].as_str().unwrap().to_owned();
        poll(&a, &id, &["in_progress"]).await;
        assert_eq!(a.state.background_runs(), 1);
        let (status, c) = json_of(cancel(&b, &id)).await;
        assert_eq!(
            (status, c["status"].as_str()),
            (200, Some("cancelled")),
            "{c}"
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while a.state.background_runs() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run did not stop"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Cancelling again returns it; it stays cancelled.
        let (status, again) = json_of(cancel(&a, &id)).await;
        assert_eq!((status, again["status"].as_str()), (200, Some("cancelled")));
        let (_, r) = json_of(get(&a, &format!("/v1/responses/{id}"), MASTER_KEY)).await;
        assert_eq!(r["status"], "cancelled", "{r}");
        // The call is recorded once, as cancelled by the client.
        a.state.writer().flush().await;
        let rows = a.store.recent_requests(50).await.unwrap();
        let ours: Vec<_> = rows
            .iter()
            .filter(|r| r.request_id == format!("req_{}", id.trim_start_matches("resp_")))
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert_eq!(ours[0].status, 499, "{:?}", ours[0]);
    }

    // Counted: runs by how they ended, and the stored responses written.
    let metrics = a
        .http
        .get(format!("{}/metrics", a.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "plexus_background_runs_total{ended=\"cancelled\"}",
        "plexus_background_runs_total{ended=\"finished\"}",
        "plexus_stored_responses_total{outcome=\"written\"}",
        "plexus_background_runs_active",
    ] {
        assert!(metrics.contains(series), "{series}: {metrics}");
    }

    // A run alive at shutdown ends `incomplete`.
    let (_, queued) = json_of(post(
        &a,
        &json!({"model": "slow-claude", "input": "Hi", "background": true}),
    ))
    .await;
    let id = queued["id"].as_str().unwrap().to_owned();
    poll(&a, &id, &["in_progress"]).await;
    a.state.cancel_in_flight();
    a.state.shutdown().await;
    let r = poll(&b, &id, &["incomplete"]).await;
    assert_eq!(r["incomplete_details"]["reason"], "interrupted", "{r}");
    assert_eq!(r["incomplete_details"]["cause"], "shutdown", "{r}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_stored_responses_and_clears_bodies_but_keeps_records() {
    let gw = Gateway::start_with(
        "",
        "request_bodies: full\nretention: {responses: 1m, bodies: 2m}",
    )
    .await;
    let (_, r) = json_of(post(
        &gw,
        &json!({"model": "sonnet", "input": "keep me a while"}),
    ))
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let request_id = format!("req_{}", id.trim_start_matches("resp_"));
    gw.state.writer().flush().await;
    gw.state.response_written(&id).await;
    let now = gw.state.clock().now_unix_ms();

    // Within every retention: nothing goes.
    plexus_gateway::apply_retention(&gw.state, now).await;
    let (status, _) = json_of(get(&gw, &format!("/v1/responses/{id}"), MASTER_KEY)).await;
    assert_eq!(status, 200);
    let logged = gw.store.request_by_id(&request_id).await.unwrap().unwrap();
    assert!(logged.request_body.is_some());

    // Past the responses' retention, within the bodies'.
    plexus_gateway::apply_retention(&gw.state, now + 90_000).await;
    let (status, _) = json_of(get(&gw, &format!("/v1/responses/{id}"), MASTER_KEY)).await;
    assert_eq!(status, 404);
    let logged = gw.store.request_by_id(&request_id).await.unwrap().unwrap();
    assert!(logged.request_body.is_some() && logged.response_body.is_some());

    // Past the bodies' retention: the record stays (requests are kept by default), bare.
    plexus_gateway::apply_retention(&gw.state, now + 150_000).await;
    let logged = gw.store.request_by_id(&request_id).await.unwrap().unwrap();
    assert_eq!((logged.request_body, logged.response_body), (None, None));
    assert!(logged.completion_tokens > 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_run_whose_instance_died_is_reported_incomplete() {
    let gw = Gateway::start().await;
    let now = gw.state.clock().now_unix_ms();
    let row = |id: &str, heartbeat_ms: i64| plexus_store::StoredResponse {
        id: id.into(),
        key_id: "master".into(),
        previous_response_id: None,
        status: "in_progress".into(),
        background: true,
        input_items: "[]".into(),
        response: json!({"id": id, "object": "response", "status": "queued", "output": []})
            .to_string(),
        interrupted: None,
        instance_id: Some("inst_gone".into()),
        heartbeat_ms: Some(heartbeat_ms),
        created_at_ms: now - 120_000,
        updated_at_ms: now - 120_000,
    };
    gw.store
        .put_response(&row("resp_lost", now - 60_000))
        .await
        .unwrap();
    gw.store
        .put_response(&row("resp_alive", now - 2_000))
        .await
        .unwrap();
    let (_, lost) = json_of(get(&gw, "/v1/responses/resp_lost", MASTER_KEY)).await;
    assert_eq!(lost["status"], "incomplete", "{lost}");
    assert_eq!(lost["incomplete_details"]["cause"], "instance_lost");
    let stored = gw.store.response_by_id("resp_lost").await.unwrap().unwrap();
    assert_eq!(stored.status, "incomplete", "written, for every instance");
    let (_, alive) = json_of(get(&gw, "/v1/responses/resp_alive", MASTER_KEY)).await;
    assert_eq!(alive["status"], "in_progress", "{alive}");
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrent_stored_responses_are_all_written() {
    let gw = Gateway::start().await;
    let ids: Vec<String> = futures::future::join_all((0..120).map(|i| {
        let gw = &gw;
        async move {
            let (status, r) = json_of(post(
                gw,
                &json!({"model": "sonnet", "input": format!("n{i}")}),
            ))
            .await;
            assert_eq!(status, 200, "{r}");
            r["id"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    wait_idle(&gw).await;
    for id in &ids {
        let row = gw.store.response_by_id(id).await.unwrap();
        assert!(row.is_some_and(|r| r.status == "completed"), "{id}");
    }
    // A delete waits for the row's write (else the write would bring the row back): once
    // `response_written` returns, the row is in the database.
    for i in 0..20 {
        let id = format!("resp_direct{i}");
        let row = plexus_store::StoredResponse {
            id: id.clone(),
            key_id: "master".into(),
            previous_response_id: None,
            status: "completed".into(),
            background: false,
            input_items: "[]".into(),
            response: "{}".into(),
            interrupted: None,
            instance_id: None,
            heartbeat_ms: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        };
        gw.state.save_response(row);
        assert!(
            gw.state.stored_response(&id).await.unwrap().is_some(),
            "visible at once"
        );
        gw.state.response_written(&id).await;
        assert!(
            gw.store.response_by_id(&id).await.unwrap().is_some(),
            "{id}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_query_parameters_are_json_errors_naming_them() {
    let gw = Gateway::start().await;
    let (_, r) = json_of(post(&gw, &json!({"model": "sonnet", "input": "x"}))).await;
    let id = r["id"].as_str().unwrap();
    gw.state.response_written(id).await;
    for (query, param) in [
        (format!("/v1/responses/{id}?stream=true"), "stream"),
        (
            format!("/v1/responses/{id}?stream=null&stream=null"),
            "stream",
        ),
        (format!("/v1/responses/{id}/input_items?limit=0"), "limit"),
        (format!("/v1/responses/{id}/input_items?limit=101"), "limit"),
        (
            format!("/v1/responses/{id}/input_items?order=null&order=null"),
            "order",
        ),
        (
            format!("/v1/responses/{id}/input_items?after=msg_nope"),
            "after",
        ),
    ] {
        let (status, e) = json_of(get(&gw, &query, MASTER_KEY)).await;
        assert_eq!(
            (status, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{query}: {e}"
        );
    }
    let (status, _) = json_of(get(
        &gw,
        &format!("/v1/responses/{id}?stream=false"),
        MASTER_KEY,
    ))
    .await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_rust_sdk_speaks_the_responses_api() {
    use plexus_sdk::{Client, Error, ItemsQuery, ResponsesInput, ResponsesRequest};
    let gw = Gateway::start_with(SLOW, "").await;
    let client = Client::new(&format!("{}/v1", gw.url), Some(MASTER_KEY))
        .unwrap()
        .with_max_retries(0);
    let request = |input: &str, previous: Option<String>| ResponsesRequest {
        model: "sonnet".into(),
        input: ResponsesInput::Text(input.into()),
        previous_response_id: previous,
        ..Default::default()
    };
    let r1 = client
        .create_response(&request("Remember kiwi.", None))
        .await
        .unwrap();
    assert_eq!(r1.status, "completed");
    assert!(!r1.output_text().is_empty());
    let r2 = client
        .create_response(&request("Which fruit?", Some(r1.id.clone())))
        .await
        .unwrap();
    assert_eq!(r2.previous_response_id.as_deref(), Some(r1.id.as_str()));
    assert_eq!(
        client.response(&r2.id).await.unwrap().output_text(),
        r2.output_text()
    );
    let page = client
        .response_input_items(
            &r2.id,
            &ItemsQuery {
                limit: Some(2),
                order: Some("asc".into()),
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 2);
    assert!(page.has_more);
    assert_eq!(page.data[0]["content"][0]["text"], "Remember kiwi.");

    // In the background, cancelled.
    let mut slow = request("Take your time.", None);
    slow.model = "slow-claude".into();
    slow.background = Some(true);
    let queued = client.create_response(&slow).await.unwrap();
    assert_eq!(queued.status, "queued");
    let cancelled = client.cancel_response(&queued.id).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");

    client.delete_response(&r2.id).await.unwrap();
    match client.response(&r2.id).await.unwrap_err() {
        Error::Api { status, .. } => assert_eq!(status, 404),
        other => panic!("{other:?}"),
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_background_run_refused_by_a_budget_ends_failed_with_its_code() {
    let gw = Gateway::start().await;
    let (status, key) = json_of(
        gw.http
            .post(format!("{}/admin/keys", gw.url))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"name": "poor", "max_budget_usd": 0.000001})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let (status, queued) = json_of(
        gw.http
            .post(format!("{}/v1/responses", gw.url))
            .bearer_auth(&key)
            .json(
                &json!({"model": "gpt", "input": "x", "max_output_tokens": 4096,
                "background": true}),
            ),
    )
    .await;
    assert_eq!(
        (status, queued["status"].as_str()),
        (200, Some("queued")),
        "{queued}"
    );
    let id = queued["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let failed = loop {
        let (_, r) = json_of(get(&gw, &format!("/v1/responses/{id}"), &key)).await;
        if r["status"] == "failed" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(failed["error"]["code"], "budget_exceeded", "{failed}");
    gw.shutdown().await;
}
