//! Persistence. Today: the request log on SQLite (the embedded default), written by a
//! background batch writer so the request path never waits on the database.
//!
//! **Invariant:** nothing on the request path awaits a query; it only queues records.
#![forbid(unsafe_code)]

mod writer;

pub use writer::{LogWriter, WriterHandle};

use plexus_core::log::RequestRecord;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}` (this build supports sqlite://)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database behind Plexus.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // One writer connection is what SQLite allows anyway; readers share the pool.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        SQLITE_MIGRATIONS.run(&self.pool).await?;
        Ok(())
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts a batch of request records in one transaction.
    pub async fn insert_requests(&self, rows: &[RequestRecord]) -> Result<(), StoreError> {
        // Statements are cached by their text, so a fixed chunk size keeps the number of
        // distinct prepared statements small (one per remainder size at most).
        const ROWS_PER_STATEMENT: usize = 64;
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO request_log (ts_ms, request_id, upstream_request_id, key_id, endpoint, \
                 model, provider, upstream_model, stream, status, error_code, prompt_tokens, \
                 completion_tokens, cached_tokens, reasoning_tokens, usage_estimated, cost_usd, \
                 latency_ms, ttft_ms) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.ts_ms)
                    .push_bind(&r.request_id)
                    .push_bind(&r.upstream_request_id)
                    .push_bind(&r.key_id)
                    .push_bind(r.endpoint)
                    .push_bind(&r.model)
                    .push_bind(&r.provider)
                    .push_bind(&r.upstream_model)
                    .push_bind(r.stream)
                    .push_bind(i64::from(r.status))
                    .push_bind(r.error_code)
                    .push_bind(clamp_i64(r.prompt_tokens))
                    .push_bind(clamp_i64(r.completion_tokens))
                    .push_bind(clamp_i64(r.cached_tokens))
                    .push_bind(clamp_i64(r.reasoning_tokens))
                    .push_bind(r.usage_estimated)
                    .push_bind(r.cost_usd)
                    .push_bind(clamp_i64(r.latency_ms))
                    .push_bind(r.ttft_ms.map(clamp_i64));
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The most recent request records, newest first.
    pub async fn recent_requests(&self, limit: u32) -> Result<Vec<LoggedRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts_ms, request_id, upstream_request_id, key_id, endpoint, model, provider, \
             upstream_model, stream, status, error_code, prompt_tokens, completion_tokens, \
             cached_tokens, reasoning_tokens, usage_estimated, cost_usd, latency_ms, ttft_ms \
             FROM request_log ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(LoggedRequest::from_row).collect()
    }

    /// The record of one request id, if it was written.
    pub async fn request_by_id(
        &self,
        request_id: &str,
    ) -> Result<Option<LoggedRequest>, StoreError> {
        let row = sqlx::query(
            "SELECT ts_ms, request_id, upstream_request_id, key_id, endpoint, model, provider, \
             upstream_model, stream, status, error_code, prompt_tokens, completion_tokens, \
             cached_tokens, reasoning_tokens, usage_estimated, cost_usd, latency_ms, ttft_ms \
             FROM request_log WHERE request_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(LoggedRequest::from_row).transpose()
    }

    pub async fn count_requests(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A request record as read back from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub ts_ms: i64,
    pub request_id: String,
    pub upstream_request_id: Option<String>,
    pub key_id: String,
    pub endpoint: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    pub status: u16,
    pub error_code: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
}

impl LoggedRequest {
    fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Self, StoreError> {
        let u = |name: &str| -> Result<u64, StoreError> {
            Ok(row.try_get::<i64, _>(name)?.max(0) as u64)
        };
        Ok(LoggedRequest {
            ts_ms: row.try_get("ts_ms")?,
            request_id: row.try_get("request_id")?,
            upstream_request_id: row.try_get("upstream_request_id")?,
            key_id: row.try_get("key_id")?,
            endpoint: row.try_get("endpoint")?,
            model: row.try_get("model")?,
            provider: row.try_get("provider")?,
            upstream_model: row.try_get("upstream_model")?,
            stream: row.try_get("stream")?,
            status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
            error_code: row.try_get("error_code")?,
            prompt_tokens: u("prompt_tokens")?,
            completion_tokens: u("completion_tokens")?,
            cached_tokens: u("cached_tokens")?,
            reasoning_tokens: u("reasoning_tokens")?,
            usage_estimated: row.try_get("usage_estimated")?,
            cost_usd: row.try_get("cost_usd")?,
            latency_ms: u("latency_ms")?,
            ttft_ms: row
                .try_get::<Option<i64>, _>("ttft_ms")?
                .map(|v| v.max(0) as u64),
        })
    }
}
