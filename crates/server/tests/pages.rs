//! The pages for people (`GET /`, the API docs at `/docs` and their vendored script), and how
//! unknown routes and methods near them are answered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, MASTER_KEY};
use serde_json::Value;

const RAPIDOC: &str = "/docs/assets/rapidoc-9.3.8.min.js";

async fn get(gw: &Gateway, path: &str) -> reqwest::Response {
    gw.http
        .get(format!("{}{path}", gw.url))
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn the_landing_page_names_the_version_and_links_to_routes_that_answer() {
    // With a master key: the pages need no credential.
    let gw = Gateway::start().await;
    let r = get(&gw, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(page.contains("<title>Plexus</title>"));
    for link in [
        "/docs",
        "/openapi.json",
        "/v1/models",
        "/metrics",
        "/health",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert!(
        !page.contains("dashboard"),
        "no promise of pages that do not exist"
    );
    for link in ["/docs", "/openapi.json", "/metrics", "/health"] {
        assert_eq!(get(&gw, link).await.status(), 200, "{link}");
    }
    let models = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_docs_page_renders_the_spec_with_the_vendored_script() {
    let gw = Gateway::start().await;
    let r = get(&gw, "/docs").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!(
            r#"<script type="module" src="{RAPIDOC}"></script>"#
        )),
        "{page}"
    );
    assert!(page.contains(r#"spec-url="/openapi.json""#), "{page}");
    assert!(
        page.contains(r#"load-fonts="false""#),
        "no web fonts from Google"
    );
    assert!(
        !page.contains("https://"),
        "nothing is loaded from elsewhere"
    );

    let r = get(&gw, RAPIDOC).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    let cache = header(&r, "cache-control").to_owned();
    assert!(
        cache.contains("max-age=31536000") && cache.contains("immutable"),
        "{cache}"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let script = r.bytes().await.unwrap();
    assert!(
        (500_000..1_500_000).contains(&script.len()),
        "{} bytes",
        script.len()
    );
    let text = String::from_utf8_lossy(&script);
    assert!(text.contains("RapiDoc 9.3.8"));
    assert!(text.contains("rapi-doc"), "defines the <rapi-doc> element");

    // The spec the page renders, and the pages themselves, are in it.
    let spec: Value = get(&gw, "/openapi.json").await.json().await.unwrap();
    assert!(spec["paths"]["/"]["get"].is_object());
    assert!(spec["paths"]["/docs"]["get"].is_object());
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_near_the_pages() {
    let gw = Gateway::start().await;
    let r = get(&gw, "/doc").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Did you mean `/docs`?"), "{message}");
    assert!(message.contains("/openapi.json"), "{message}");

    for (method, path) in [("POST", "/"), ("DELETE", "/docs"), ("TRACE", "/")] {
        let r = gw
            .http
            .request(method.parse().unwrap(), format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    gw.shutdown().await;
}
