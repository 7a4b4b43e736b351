//! `/metrics` exports a series only once it has a value. The recorder is process-wide, so this
//! file holds one test: its own process, a fresh recorder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway};

async fn scrape(gw: &Gateway) -> String {
    gw.http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sample lines (not `#` comments) of a scrape.
fn samples(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_appear_only_once_they_have_a_value() {
    let gw = Gateway::start().await;

    // A fresh gateway: every configured model and target, but nothing has happened yet.
    let fresh = scrape(&gw).await;
    let zero: Vec<&str> = samples(&fresh)
        .into_iter()
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .is_some_and(|v| v.parse::<f64>() == Ok(0.0))
        })
        .collect();
    assert!(zero.is_empty(), "pre-registered zero series: {zero:#?}");
    assert!(
        !fresh.contains("plexus_requests_total{"),
        "no request yet: {fresh}"
    );

    // One request: its counter appears, with its labels, and no other status class.
    assert_eq!(gw.chat(user("gpt", "count me")).await.status(), 200);
    let one = scrape(&gw).await;
    let requests: Vec<&str> = samples(&one)
        .into_iter()
        .filter(|l| l.starts_with("plexus_requests_total{"))
        .collect();
    assert_eq!(requests.len(), 1, "{one}");
    for label in [
        r#"endpoint="chat""#,
        r#"model="gpt""#,
        r#"provider="oai""#,
        r#"status_class="2xx""#,
    ] {
        assert!(requests[0].contains(label), "{label} in {}", requests[0]);
    }
    assert!(requests[0].ends_with(" 1"), "{}", requests[0]);
    assert!(
        one.contains("plexus_request_duration_seconds_bucket{"),
        "{one}"
    );
    assert!(
        !one.contains(r#"model="sonnet""#),
        "an unused model has no series: {one}"
    );
    // Every metric present is described.
    for line in one.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            one.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }

    for i in 1..20 {
        let resp = gw.chat(user("gpt", &format!("again {i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    let twenty = scrape(&gw).await;
    let zero: Vec<&str> = samples(&twenty)
        .into_iter()
        .filter(|l| {
            // Histogram buckets below the first observation are legitimately 0.
            !l.contains("_bucket{") && l.rsplit(' ').next().is_some_and(|v| v == "0")
        })
        .collect();
    assert!(zero.is_empty(), "zero series after 20 requests: {zero:#?}");
    println!(
        "/metrics after 20 requests: {} lines",
        twenty.lines().count()
    );
    gw.shutdown().await;
}
