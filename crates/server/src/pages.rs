//! The pages for people: `GET /` (what this server is, and where to go next) and `GET /docs`
//! (interactive API docs rendered from `/openapi.json` by RapiDoc).
//!
//! RapiDoc is vendored (`crates/server/assets/rapidoc/`, MIT, npm `rapidoc@9.3.8`) and compiled
//! into the binary: nothing is downloaded at build or run time. The page turns off RapiDoc's
//! web fonts (which it would otherwise fetch from Google) and points "try it" at this server,
//! whatever the spec's example server says.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Where the docs' script is served. The version is part of the path, so the file can be cached
/// for a year: a new version is a new path.
pub const RAPIDOC_PATH: &str = "/docs/assets/rapidoc-9.3.8.min.js";

/// RapiDoc 9.3.8's single-file build (`dist/rapidoc-min.js` of the npm package).
static RAPIDOC_JS: &[u8] = include_bytes!("../assets/rapidoc/rapidoc-min.js");

/// The landing page. Every link is a route of the OpenAPI description (a test checks it).
pub const LANDING_HTML: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Plexus</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; color: #1f2328; }
h1 small { font-weight: normal; color: #59636e; font-size: 0.6em; }
code { background: #f3f4f6; padding: 0 0.25em; border-radius: 3px; }
li { margin: 0.3em 0; }
</style>
</head>
<body>
<h1>Plexus <small>"#,
    env!("CARGO_PKG_VERSION"),
    r#"</small></h1>
<p>One OpenAI-compatible API over many LLM providers. Point an OpenAI SDK at <code>/v1</code> of this server.</p>
<ul>
<li><a href="/docs">/docs</a>: the interactive API documentation</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI description of every route</li>
<li><a href="/v1/models">/v1/models</a>: the models you can call (with a key when the gateway has a master key)</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/health">/health</a>: liveness</li>
</ul>
</body>
</html>
"#
);

/// The docs page: RapiDoc over `/openapi.json`.
pub const DOCS_HTML: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Plexus API</title>
<script type="module" src=""#,
    "/docs/assets/rapidoc-9.3.8.min.js",
    r#""></script>
</head>
<body style="margin: 0">
<rapi-doc id="docs" spec-url="/openapi.json" render-style="read" theme="light"
  show-header="false" allow-spec-url-load="false" allow-spec-file-load="false"
  allow-server-selection="false"
  load-fonts="false"
  regular-font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
  mono-font="ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
  heading-text="Plexus API"></rapi-doc>
<script>
  // "Try it" calls this gateway, not the example server of the spec.
  const docs = document.getElementById("docs");
  docs.setAttribute("server-url", location.origin);
  docs.setAttribute("default-api-server", location.origin);
</script>
</body>
</html>
"#
);

fn html(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub async fn landing() -> Response {
    html(LANDING_HTML)
}

pub async fn docs() -> Response {
    html(DOCS_HTML)
}

pub async fn rapidoc_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        RAPIDOC_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `href`/`src` values of a page.
    fn links(page: &str) -> Vec<&str> {
        ["href=\"", "src=\""]
            .iter()
            .flat_map(|attr| page.split(attr).skip(1))
            .filter_map(|rest| rest.split('"').next())
            // The empty icon (so browsers do not ask for `/favicon.ico`).
            .filter(|link| *link != "data:,")
            .collect()
    }

    #[test]
    fn the_landing_page_links_only_to_documented_routes() {
        let documented = crate::documented_paths();
        let hrefs = links(LANDING_HTML);
        for want in [
            "/docs",
            "/openapi.json",
            "/v1/models",
            "/metrics",
            "/health",
        ] {
            assert!(hrefs.contains(&want), "{want} missing from {hrefs:?}");
        }
        for href in hrefs {
            assert!(
                documented.iter().any(|p| p == href),
                "{href} is not in the OpenAPI description"
            );
        }
        assert!(LANDING_HTML.contains(env!("CARGO_PKG_VERSION")));
        assert!(
            documented.iter().any(|p| p == "/"),
            "`/` is documented, so the 404 hints may name it"
        );
    }

    #[test]
    fn the_docs_page_loads_the_vendored_script_and_the_spec() {
        assert_eq!(links(DOCS_HTML), vec![RAPIDOC_PATH]);
        assert!(DOCS_HTML.contains(r#"spec-url="/openapi.json""#));
        assert!(DOCS_HTML.contains(r#"load-fonts="false""#));
        assert!(!DOCS_HTML.contains("https://"), "nothing from elsewhere");
        assert!(RAPIDOC_JS.len() > 100_000 && RAPIDOC_JS.len() < 1_500_000);
    }
}
