//! The access log (`log.access`): one INFO line per request on the `plexus::access` target,
//! never a credential. The subscriber is process-wide, so every test finds its own lines by
//! the gateway's request id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sse_data, user, Gateway, MASTER_KEY};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Everything the `plexus::access` target logged in this process, as the `fmt` layer writes it.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("plexus::access=info"))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access lines of one request.
fn lines_of(request_id: &str) -> Vec<String> {
    let buf = captured().lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(&format!("request_id={request_id} ")))
        .map(str::to_owned)
        .collect()
}

/// Polls `check` every 10 ms until it holds, for at most 10 s; whether it held.
async fn eventually(check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The one line of a request, once its response is over (it is written when the body ends).
async fn the_line_of(gw: &Gateway, request_id: &str) -> String {
    assert!(
        eventually(|| !lines_of(request_id).is_empty()).await,
        "no access line for {request_id}"
    );
    // Nothing more comes later: a request made after this one ended is logged after anything
    // this one could still write, so its line is the condition to wait for.
    let marker = gw
        .http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    let marker = gateway_id(&marker);
    assert!(eventually(|| !lines_of(&marker).is_empty()).await);
    let lines = lines_of(request_id);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines.into_iter().next().unwrap()
}

fn gateway_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-plexus-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_without_credentials() {
    captured();
    let gw = Gateway::start_with("", "log: {access: true}").await;

    let body = serde_json::to_vec(&user("gpt", "hello there")).unwrap();
    let resp = gw
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", "client-chosen")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = gateway_id(&resp);
    let answer = resp.bytes().await.unwrap();
    let line = the_line_of(&gw, &id).await;
    assert!(line.contains(" INFO plexus::access: "), "{line}");
    for part in [
        "method=POST ".to_owned(),
        "path=/v1/chat/completions ".to_owned(),
        "status=200 ".to_owned(),
        "model=\"gpt\" ".to_owned(),
        "key_id=\"master\" ".to_owned(),
        format!("bytes_in={} ", body.len()),
        format!("bytes_out={}", answer.len()),
    ] {
        assert!(line.contains(&part), "{part} in {line}");
    }
    assert!(line.contains("duration_ms="), "{line}");
    assert!(!line.contains(MASTER_KEY), "{line}");

    // A virtual key is named by its id, never its secret; a stream is logged at its end.
    let created: Value = gw
        .post("/admin/keys")
        .json(&json!({"name": "logged"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key_id, secret) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let mut req = user("gpt", "stream me");
    req["stream"] = json!(true);
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(secret)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = gateway_id(&resp);
    assert!(!sse_data(resp).await.is_empty());
    let line = the_line_of(&gw, &id).await;
    assert!(line.contains(&format!("key_id=\"{key_id}\" ")), "{line}");
    assert!(!line.contains(secret), "{line}");
    assert!(!line.contains("bytes_out=0"), "{line}");

    // Refusals are logged too: a wrong key by its public id, an unknown route without one.
    let resp = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(format!("{secret}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let line = the_line_of(&gw, &gateway_id(&resp)).await;
    assert!(line.contains("status=401 "), "{line}");
    assert!(!line.contains(secret), "{line}");
    let resp = gw
        .http
        .get(format!("{}/nowhere?api_key=sk-secret", gw.url))
        .send()
        .await
        .unwrap();
    let line = the_line_of(&gw, &gateway_id(&resp)).await;
    assert!(line.contains("path=/nowhere status=404 "), "{line}");
    assert!(
        !line.contains("sk-secret"),
        "the query string is not logged: {line}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    captured();
    let gw = Gateway::start().await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "quiet-request")
        .json(&user("gpt", "quiet"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = gateway_id(&resp);
    resp.bytes().await.unwrap();
    // The request is over once its record is written; an access line would have come by then.
    gw.logged("quiet-request").await;
    assert!(lines_of(&id).is_empty());
    gw.shutdown().await;
}
