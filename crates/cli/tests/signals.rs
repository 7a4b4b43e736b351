//! The binary's lifecycle: SIGHUP reloads the config without disturbing in-flight streams;
//! SIGTERM drains in-flight requests and flushes the request log before exiting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use plexus_mock::{MockConfig, MockServer};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "sk-signals-test-key";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(path: &std::path::Path, mock: &str, db: &str, target: (&str, &str)) {
    let yaml = format!(
        "listen: 127.0.0.1:0\ndatabase: sqlite://{db}\nmaster_key: {KEY}\nproviders:\n  - {{name: oai, kind: openai, base_url: '{mock}/v1', api_key: k}}\n  - {{name: claude, kind: anthropic, base_url: '{mock}', api_key: k}}\nmodels:\n  - {{name: m, targets: [{{provider: {}, model: '{}'}}]}}\n",
        target.0, target.1
    );
    std::fs::write(path, yaml).unwrap();
}

/// Starts `plexus serve` and returns it with its base URL (read from its first stdout line).
fn start(config: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["serve", "--config"])
        .arg(config)
        .env("PLEXUS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("plexus listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (Proc(child), url)
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn slow_stream() -> serde_json::Value {
    serde_json::json!({
        "model": "m", "stream": true,
        "messages": [{"role": "user", "content": "a slow story"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reroutes_new_requests_while_a_stream_completes() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("plexus.yaml");
    let db = dir.path().join("p.db");
    let slow = "gpt-4o-mini+tokens-30+tps-30";
    write_config(&cfg, &mock.url(), db.to_str().unwrap(), ("oai", slow));
    let (proc_, url) = start(&cfg);
    let http = reqwest::Client::new();
    let chat = format!("{url}/v1/chat/completions");

    let resp = http
        .post(&chat)
        .bearer_auth(KEY)
        .json(&slow_stream())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-plexus-served-by"],
        format!("oai/{slow}").as_str()
    );
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    write_config(
        &cfg,
        &mock.url(),
        db.to_str().unwrap(),
        ("claude", "claude-haiku-4-5"),
    );
    signal(&proc_.0, "-HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .post(&chat)
            .bearer_auth(KEY)
            .json(
                &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if r.headers()["x-plexus-served-by"] == "claude/claude-haiku-4-5" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reload never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stream that started before the reload finishes normally.
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_flushes_the_log() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("plexus.yaml");
    let db = dir.path().join("p.db");
    write_config(
        &cfg,
        &mock.url(),
        db.to_str().unwrap(),
        ("oai", "gpt-4o-mini+tokens-30+tps-30"),
    );
    let (mut proc_, url) = start(&cfg);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "drain-me")
        .json(&slow_stream())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let _ = body.next().await.unwrap().unwrap();
    signal(&proc_.0, "-TERM");
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    let status = tokio::task::spawn_blocking(move || proc_.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let store = plexus_store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let row = store
        .request_by_client_id("drain-me")
        .await
        .unwrap()
        .expect("row flushed at shutdown");
    assert_eq!(row.status, 200);
    assert!(row.completion_tokens > 0);
}

/// 20 requests of about 4 s (10 plain, 10 streamed) are in flight at SIGTERM: with a grace
/// period long enough they finish; with a short one what is left is cancelled. Either way every
/// one of them is in the request log once the process has exited.
async fn every_request_in_flight_at_shutdown_is_recorded(grace: &str) -> Vec<u16> {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("plexus.yaml");
    let db = dir.path().join("p.db");
    let yaml = format!(
        "listen: 127.0.0.1:0\ndatabase: sqlite://{}\nmaster_key: {KEY}\nshutdown_grace: {grace}\nproviders:\n  - {{name: oai, kind: openai, base_url: '{}/v1', api_key: k}}\nmodels:\n  - {{name: plain, targets: [{{provider: oai, model: 'gpt-4o-mini+latency-4000'}}]}}\n  - {{name: streamed, targets: [{{provider: oai, model: 'gpt-4o-mini+tokens-40+tps-10'}}]}}\n",
        db.display(),
        mock.url()
    );
    std::fs::write(&cfg, yaml).unwrap();
    let (mut proc_, url) = start(&cfg);
    let http = reqwest::Client::new();
    let mut calls = Vec::new();
    for i in 0..20 {
        let stream = i % 2 == 1;
        let body = serde_json::json!({
            "model": if stream { "streamed" } else { "plain" },
            "stream": stream,
            "messages": [{"role": "user", "content": "take your time"}],
        });
        let req = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", format!("inflight-{i}"))
            .json(&body);
        calls.push(tokio::spawn(async move {
            // Read to the end (or to the connection's end): the outcome does not matter here.
            if let Ok(resp) = req.send().await {
                let _ = resp.bytes().await;
            }
        }));
    }
    // Every request has reached the upstream before the signal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mock.request_count() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&proc_.0, "-TERM");
    let status = tokio::task::spawn_blocking(move || proc_.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    for c in calls {
        let _ = c.await;
    }
    let store = plexus_store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let row = store
            .request_by_client_id(&format!("inflight-{i}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("request inflight-{i} was not recorded"));
        statuses.push(row.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generous_grace_lets_every_request_finish() {
    let statuses = every_request_in_flight_at_shutdown_is_recorded("20s").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_grace_cancels_what_is_left_and_records_it() {
    let statuses = every_request_in_flight_at_shutdown_is_recorded("1s").await;
    assert!(statuses.iter().all(|s| *s == 499), "{statuses:?}");
}
