//! Test harness: a gateway served on 127.0.0.1 in front of the in-process simulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use plexus_core::config::{from_yaml_str, Overrides};
use plexus_mock::{MockConfig, MockServer};
use plexus_providers::client::{ClientOptions, UpstreamClient};
use plexus_server::{AppState, Listener, Runtime, ServeOptions};
use plexus_store::{LogWriter, Store, WriterHandle};
use std::time::Duration;
use tokio::sync::oneshot;

pub const MASTER_KEY: &str = "sk-test-master-key";
/// The test vault's key-encryption key (base64 of 32 bytes).
pub const TEST_KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Which database a test gateway runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> String {
    std::env::var("PLEXUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("PLEXUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A migrated store in a fresh schema of the local PostgreSQL.
pub async fn postgres_store() -> (Store, String) {
    let schema = format!("plexus_t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("PostgreSQL must be reachable for these tests (PLEXUS_TEST_POSTGRES_URL)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let options =
        <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&postgres_url())
            .unwrap()
            .options([("search_path", schema.as_str())]);
    let store = Store::connect_postgres(options).await.unwrap();
    store.migrate().await.unwrap();
    (store, schema)
}

pub struct Gateway {
    pub url: String,
    pub mock: MockServer,
    pub store: Store,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    writer: Option<WriterHandle>,
    audit: Option<plexus_auth::audit::AuditHandle>,
    schema: Option<String>,
    _dir: tempfile::TempDir,
}

/// Providers of all three wire formats pointing at the simulator, plus `extra` YAML appended
/// to the `models:` list.
pub fn config_yaml(mock_url: &str, extra_models: &str, extra_top: &str) -> String {
    format!(
        r#"
master_key: {MASTER_KEY}
{extra_top}
providers:
  - name: oai
    kind: openai
    base_url: {mock_url}/v1
    api_key: sk-upstream
  - name: claude
    kind: anthropic
    base_url: {mock_url}
    api_key: sk-ant-upstream
  - name: gem
    kind: gemini
    base_url: {mock_url}
    api_key: gem-upstream
  - name: compat
    kind: openai-compatible
    base_url: {mock_url}/v1
    api_key: sk-compat
    stream_usage: false
    supports_n: false
  - name: az
    kind: azure
    base_url: {mock_url}
    api_key: az-upstream
    api_version: 2024-10-21
models:
  - name: gpt
    targets: [{{provider: oai, model: gpt-4o-mini}}]
  - name: sonnet
    targets: [{{provider: claude, model: claude-sonnet-4-5}}]
  - name: flash
    targets: [{{provider: gem, model: gemini-2.5-flash}}]
  - name: embed
    targets: [{{provider: oai, model: text-embedding-3-small}}]
{extra_models}
"#
    )
}

impl Gateway {
    pub async fn start() -> Gateway {
        Gateway::start_with("", "").await
    }

    pub async fn start_with(extra_models: &str, extra_top: &str) -> Gateway {
        Gateway::start_on(Backend::Sqlite, extra_models, extra_top).await
    }

    pub async fn start_on(backend: Backend, extra_models: &str, extra_top: &str) -> Gateway {
        Gateway::start_full(backend, None, true, extra_models, extra_top).await
    }

    /// A gateway without a master key (open mode, on loopback).
    pub async fn start_open(extra_models: &str) -> Gateway {
        Gateway::start_full(Backend::Sqlite, None, false, extra_models, "").await
    }

    /// A gateway whose providers point at another gateway's simulator (two instances in front
    /// of one upstream).
    pub async fn start_with_mock_url(
        mock_url: &str,
        extra_models: &str,
        extra_top: &str,
    ) -> Gateway {
        Gateway::start_full(
            Backend::Sqlite,
            Some(mock_url),
            true,
            extra_models,
            extra_top,
        )
        .await
    }

    /// A second instance beside `other`: the same SQLite database and upstream simulator.
    #[allow(dead_code)]
    pub async fn start_beside(other: &Gateway, extra_models: &str, extra_top: &str) -> Gateway {
        let db = other.sqlite_path().expect("beside a SQLite gateway");
        Gateway::start_full_on(
            Backend::Sqlite,
            Some(&other.mock.url()),
            Some(&db),
            true,
            extra_models,
            extra_top,
        )
        .await
    }

    async fn start_full(
        backend: Backend,
        mock_url: Option<&str>,
        master_key: bool,
        extra_models: &str,
        extra_top: &str,
    ) -> Gateway {
        Gateway::start_full_on(backend, mock_url, None, master_key, extra_models, extra_top).await
    }

    async fn start_full_on(
        backend: Backend,
        mock_url: Option<&str>,
        sqlite_file: Option<&std::path::Path>,
        master_key: bool,
        extra_models: &str,
        extra_top: &str,
    ) -> Gateway {
        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = mock_url.map(str::to_owned).unwrap_or_else(|| mock.url());
        let mut yaml = config_yaml(&url, extra_models, extra_top);
        if !master_key {
            yaml = yaml
                .lines()
                .filter(|l| !l.starts_with("master_key:"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let mut cfg = from_yaml_str(&yaml, &Overrides::default(), &|_| None).unwrap();
        let (store, schema) = match backend {
            Backend::Sqlite => {
                let file = sqlite_file
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(|| dir.path().join("plexus.db"));
                cfg.database = format!("sqlite://{}", file.display());
                (Store::connect(&cfg.database).await.unwrap(), None)
            }
            Backend::Postgres => {
                let (store, schema) = postgres_store().await;
                (store, Some(schema))
            }
        };
        let (writer, writer_handle) = LogWriter::spawn(store.clone(), 1024);
        let (audit, audit_handle) = plexus_auth::audit::AuditWriter::spawn(store.clone());
        let client = UpstreamClient::new(&ClientOptions {
            timeouts: cfg.timeouts,
            ca_bundle: None,
        })
        .unwrap();
        let opts = ServeOptions {
            tls: None,
            grace: cfg.shutdown_grace,
            inbound: cfg.inbound,
        };
        let state = AppState::new(
            Runtime::new(cfg).unwrap(),
            client,
            store.clone(),
            writer,
            audit,
            Some(std::sync::Arc::new(
                plexus_auth::vault::Kek::from_base64(TEST_KEK).unwrap(),
            )),
            std::sync::Arc::new(plexus_core::clock::SystemClock),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(plexus_server::serve(
            state.clone(),
            Listener::Tcp(listener),
            opts,
            async move {
                let _ = stopped.await;
            },
        ));
        Gateway {
            url,
            mock,
            store,
            state,
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .unwrap(),
            stop: Some(stop),
            server: Some(server),
            writer: Some(writer_handle),
            audit: Some(audit_handle),
            schema,
            _dir: dir,
        }
    }

    /// The SQLite file, when the gateway runs on SQLite.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let p = self._dir.path().join("plexus.db");
        (self.schema.is_none() && p.exists()).then_some(p)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(MASTER_KEY)
    }

    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the request log holds the row of the client request the test tagged with
    /// `x-request-id: request_id` (written in the background).
    pub async fn logged(&self, request_id: &str) -> plexus_store::LoggedRequest {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.state.writer().flush().await;
            if let Some(row) = self.store.request_by_client_id(request_id).await.unwrap() {
                return row;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log row for {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(w) = self.writer.take() {
            w.shutdown().await;
        }
        if let Some(a) = self.audit.take() {
            a.shutdown().await;
        }
        if let Some(schema) = self.schema.take() {
            self.store.close().await;
            let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

pub fn user(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Reads an SSE body into its `data:` payloads.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// An SSE body as its events: (event name, data parsed as JSON).
pub async fn sse_events(resp: reqwest::Response) -> Vec<(String, serde_json::Value)> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = serde_json::Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}
