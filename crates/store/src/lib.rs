//! Persistence on SQLite (the embedded default) and PostgreSQL, behind one `Store`.
//!
//! Queries are written once with `?` placeholders; the PostgreSQL arm rewrites them to `$n`
//! (once per statement text). Each backend has its own versioned migrations
//! (`migrations/sqlite`, `migrations/postgres`), applied at start-up and by `plexus migrate`.
//!
//! **Invariant:** nothing on the request path awaits a query; it only queues records (see
//! [`LogWriter`]) or reads caches filled off the request path.
#![forbid(unsafe_code)]

mod identities;
mod responses;
mod writer;

pub use identities::{
    AuditEntry, AuditQuery, CredentialRecord, KeyFilter, KeyRecord, KeyUpdate, NewKey, OrgRecord,
    TeamRecord, UserRecord,
};
pub use responses::{StoredResponse, MAX_CHAIN, RUNNING};
pub use writer::{LogWriter, WriterHandle};

use plexus_core::log::RequestRecord;
use plexus_protocol::money::Nanos;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}` (expected sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    InUse(String),
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    /// Maps unique-constraint violations to `Conflict`.
    fn conflict_or(e: sqlx::Error, what: &str) -> StoreError {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(what.to_owned());
            }
        }
        StoreError::Database(e)
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same query code against whichever pool the store has. `$sql` is written with `?`
/// placeholders; the PostgreSQL arm gets it rewritten to `$1, $2, ...`.
macro_rules! on_db {
    ($db:expr, $sql:expr, |$pool:ident, $q:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => {
                let $q: &'static str = $sql;
                $body
            }
            $crate::Db::Postgres($pool) => {
                let $q: &'static str = $crate::pg_sql($sql);
                $body
            }
        }
    };
}
pub(crate) use on_db;

/// `?` placeholders → `$n`, memoized per statement (the set of statements is fixed).
pub(crate) fn pg_sql(sql: &'static str) -> &'static str {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = match cache.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(done) = guard.get(sql) {
        return done;
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    let leaked: &'static str = Box::leak(out.into_boxed_str());
    guard.insert(sql, leaked);
    leaked
}

/// The columns [`LoggedRequest::from_row`] reads, as a literal for `concat!`.
macro_rules! request_columns {
    () => {
        "ts_ms, request_id, upstream_request_id, key_id, endpoint, model, provider, \
         upstream_model, stream, status, error_code, prompt_tokens, completion_tokens, \
         cached_tokens, reasoning_tokens, usage_estimated, cost_nanos, latency_ms, ttft_ms, \
         request_body, response_body, cache_status, parent_request_id, step, \
         client_request_id, overhead_team_id, user_id, team_id, route, prompt_embedding"
    };
}

/// The database behind Plexus.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: Db,
}

impl Store {
    /// Opens (creating the SQLite file if needed) the database and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect_without_migrating(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect_without_migrating(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            Ok(Store {
                db: Db::Sqlite(pool),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            Store::connect_postgres(options).await
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// PostgreSQL with explicit options (tests use them to pin a schema).
    pub async fn connect_postgres(options: PgConnectOptions) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Store {
            db: Db::Postgres(pool),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(&self.db, "SELECT 1", |p, q| {
            sqlx::query(q).execute(p).await?;
        });
        Ok(())
    }

    /// Inserts a batch of request records in one transaction. The cost goes to `cost_nanos`
    /// (what every read uses) and, as a display value, to the older `cost_usd` (see migration
    /// 0009).
    pub async fn insert_requests(&self, rows: &[RequestRecord]) -> Result<(), StoreError> {
        // Statements are cached by their text, so a fixed chunk size keeps the number of
        // distinct prepared statements small (one per remainder size at most).
        const ROWS_PER_STATEMENT: usize = 64;
        const INSERT: &str = "INSERT INTO request_log (ts_ms, request_id, upstream_request_id, \
             key_id, endpoint, model, provider, upstream_model, stream, status, error_code, \
             prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, usage_estimated, \
             cost_usd, cost_nanos, latency_ms, ttft_ms, user_id, team_id, request_body, \
             response_body, cache_status, parent_request_id, step, client_request_id, \
             overhead_team_id, route, prompt_embedding, orchestration) ";
        macro_rules! insert_all {
            ($pool:expr, $db:ty) => {{
                let mut tx = $pool.begin().await?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = QueryBuilder::<$db>::new(INSERT);
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.ts_ms)
                            .push_bind(r.request_id.as_str())
                            .push_bind(r.upstream_request_id.as_deref())
                            .push_bind(r.key_id.as_str())
                            .push_bind(r.endpoint)
                            .push_bind(r.model.as_str())
                            .push_bind(r.provider.as_str())
                            .push_bind(r.upstream_model.as_str())
                            .push_bind(r.stream)
                            .push_bind(i64::from(r.status))
                            .push_bind(r.error_code)
                            .push_bind(clamp_i64(r.prompt_tokens))
                            .push_bind(clamp_i64(r.completion_tokens))
                            .push_bind(clamp_i64(r.cached_tokens))
                            .push_bind(clamp_i64(r.reasoning_tokens))
                            .push_bind(r.usage_estimated)
                            .push_bind(r.cost.usd())
                            .push_bind(r.cost.0)
                            .push_bind(clamp_i64(r.latency_ms))
                            .push_bind(r.ttft_ms.map(clamp_i64))
                            .push_bind(r.user_id.as_deref())
                            .push_bind(r.team_id.as_deref())
                            .push_bind(r.request_body.as_deref())
                            .push_bind(r.response_body.as_deref())
                            .push_bind(r.cache)
                            .push_bind(r.parent_request_id.as_deref())
                            .push_bind(r.step.map(i64::from))
                            .push_bind(r.client_request_id.as_deref())
                            .push_bind(r.overhead_team_id.as_deref())
                            .push_bind(r.route.as_deref())
                            .push_bind(r.prompt_embedding.as_deref().map(f32_bytes))
                            .push_bind(r.orchestration.as_deref());
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            Db::Sqlite(p) => insert_all!(p, sqlx::Sqlite),
            Db::Postgres(p) => insert_all!(p, sqlx::Postgres),
        }
        Ok(())
    }

    /// The most recent request records, newest first.
    pub async fn recent_requests(&self, limit: u32) -> Result<Vec<LoggedRequest>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            request_columns!(),
            " FROM request_log ORDER BY id DESC LIMIT ?"
        );
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).bind(i64::from(limit)).fetch_all(p).await?;
            rows.iter().map(LoggedRequest::from_row).collect()
        })
    }

    /// Spend since `since_ms` of a key, user or team (`scope` is `key`, `user` or `team`); seeds
    /// the budgets. Every row counts: inner calls carry the caller's key, user and team and their
    /// own cost, a composite parent row carries none. Rows of the `system` key have no user or
    /// team, so they never count against a caller.
    pub async fn spend_since(
        &self,
        scope: &str,
        id: &str,
        since_ms: i64,
    ) -> Result<Nanos, StoreError> {
        // PostgreSQL sums BIGINT into NUMERIC: cast back.
        macro_rules! spend {
            ($col:literal) => {
                concat!(
                    "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM request_log WHERE ",
                    $col,
                    " = ? AND ts_ms >= ?"
                )
            };
        }
        const BY_KEY: &str = spend!("key_id");
        const BY_USER: &str = spend!("user_id");
        const BY_TEAM: &str = spend!("team_id");
        let sql = match scope {
            "user" => BY_USER,
            "team" => BY_TEAM,
            _ => BY_KEY,
        };
        on_db!(&self.db, sql, |p, q| {
            let v: i64 = sqlx::query_scalar(q)
                .bind(id)
                .bind(since_ms)
                .fetch_one(p)
                .await?;
            Ok(Nanos(v))
        })
    }

    /// Spend grouped by `group` (`key`, `user`, `team`, `model` or `day`) since `since_ms`,
    /// optionally within one team or user.
    ///
    /// `requests` counts client rows only (no `parent_request_id`); tokens and cost sum over
    /// every row. A composite request's parent row carries no cost of its own and its inner
    /// calls carry theirs, so nothing is counted twice. Rows of the `system` key are never
    /// attributed to a team or user (they appear under the `system` key, and under the empty
    /// team or user); [`Store::overhead_by_team`] reports them per originating team. Requests
    /// refused before they named a model are grouped by model under `None`.
    pub async fn spend_report(
        &self,
        group: &str,
        since_ms: i64,
        team_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Vec<SpendRow>, StoreError> {
        macro_rules! report {
            ($col:literal) => {
                concat!(
                    "SELECT ", $col, " AS grp, \
                     COUNT(CASE WHEN parent_request_id IS NULL THEN 1 END) AS requests, \
                     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
                     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
                     CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos \
                     FROM request_log WHERE ts_ms >= ? \
                     AND (? IS NULL OR (team_id = ? AND key_id <> 'system')) \
                     AND (? IS NULL OR (user_id = ? AND key_id <> 'system')) \
                     GROUP BY grp ORDER BY cost_nanos DESC LIMIT 1000"
                )
            };
        }
        let sql: &'static str = match group {
            "user" => report!("CASE WHEN key_id = 'system' THEN '' ELSE COALESCE(user_id, '') END"),
            "team" => report!("CASE WHEN key_id = 'system' THEN '' ELSE COALESCE(team_id, '') END"),
            "model" => report!("NULLIF(model, '')"),
            "day" => report!("CAST(ts_ms / 86400000 AS BIGINT)"),
            _ => report!("key_id"),
        };
        let numeric_group = group == "day";
        on_db!(&self.db, sql, |p, q| {
            let rows = sqlx::query(q)
                .bind(since_ms)
                .bind(team_id)
                .bind(team_id)
                .bind(user_id)
                .bind(user_id)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| SpendRow::from_row(r, numeric_group))
                .collect()
        })
    }

    /// Cache overhead since `since_ms`: the rows of the `system` key (the semantic cache's
    /// judge, model-based embeddings) grouped by the team of the client request that caused
    /// them (`overhead_team_id`; the empty group when there was none), optionally for one team.
    /// `requests` counts those rows. This spend never counts against a caller's budget.
    pub async fn overhead_by_team(
        &self,
        since_ms: i64,
        team_id: Option<&str>,
    ) -> Result<Vec<SpendRow>, StoreError> {
        const SQL: &str = "SELECT COALESCE(overhead_team_id, '') AS grp, COUNT(*) AS requests, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos FROM request_log \
             WHERE key_id = 'system' AND ts_ms >= ? AND (? IS NULL OR overhead_team_id = ?) \
             GROUP BY grp ORDER BY cost_nanos DESC LIMIT 1000";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(since_ms)
                .bind(team_id)
                .bind(team_id)
                .fetch_all(p)
                .await?;
            rows.iter().map(|r| SpendRow::from_row(r, false)).collect()
        })
    }

    /// The record of one request id, if it was written.
    pub async fn request_by_id(
        &self,
        request_id: &str,
    ) -> Result<Option<LoggedRequest>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            request_columns!(),
            " FROM request_log WHERE request_id = ? ORDER BY id DESC LIMIT 1"
        );
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(request_id).fetch_optional(p).await?;
            row.as_ref().map(LoggedRequest::from_row).transpose()
        })
    }

    /// An orchestration's stored result and evidence graph (JSON text), from its parent
    /// request's row; `None` when the row does not exist or is not an orchestration.
    pub async fn orchestration_json(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT orchestration FROM request_log WHERE request_id = ? \
             AND orchestration IS NOT NULL ORDER BY id DESC LIMIT 1";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(request_id).fetch_optional(p).await?;
            row.as_ref()
                .map(|r| r.opt_text("orchestration"))
                .transpose()
                .map(Option::flatten)
        })
    }

    /// The latest client request (not an inner or system call) the client tagged with its own
    /// `x-request-id`: how an operator finds a request from the client's side.
    pub async fn request_by_client_id(
        &self,
        client_request_id: &str,
    ) -> Result<Option<LoggedRequest>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            request_columns!(),
            " FROM request_log WHERE client_request_id = ? AND parent_request_id IS NULL \
             ORDER BY id DESC LIMIT 1"
        );
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q)
                .bind(client_request_id)
                .fetch_optional(p)
                .await?;
            row.as_ref().map(LoggedRequest::from_row).transpose()
        })
    }

    /// The records of the calls made for `parent_request_id` (the inner calls of a composite
    /// request, and system calls such as the cache's judge), in step order; calls without a
    /// step come last, each group in the order they were written.
    pub async fn requests_by_parent(
        &self,
        parent_request_id: &str,
    ) -> Result<Vec<LoggedRequest>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            request_columns!(),
            " FROM request_log WHERE parent_request_id = ? \
             ORDER BY CASE WHEN step IS NULL THEN 1 ELSE 0 END, step, id"
        );
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).bind(parent_request_id).fetch_all(p).await?;
            rows.iter().map(LoggedRequest::from_row).collect()
        })
    }

    /// Deletes request records older than `before_ms` (retention); returns how many.
    pub async fn delete_requests_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        on_db!(
            &self.db,
            "DELETE FROM request_log WHERE ts_ms < ?",
            |p, q| {
                Ok(sqlx::query(q)
                    .bind(before_ms)
                    .execute(p)
                    .await?
                    .rows_affected())
            }
        )
    }

    /// Stores a user's feedback on a request; a new feedback on the same request replaces the
    /// old one and takes a new id, so [`Store::feedback_page`] readers see it again.
    pub async fn upsert_feedback(&self, row: &FeedbackRow) -> Result<(), StoreError> {
        // SQLite: `REPLACE` deletes the row it conflicts with and inserts a new one, which
        // AUTOINCREMENT numbers past every id ever used. PostgreSQL: one statement that moves
        // the existing row to the next id of the sequence (no delete-then-insert race between
        // two concurrent scorings of the same request).
        const SQLITE: &str = "REPLACE INTO feedback (request_id, key_id, model, score, comment, \
             embedding, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)";
        const POSTGRES: &str = "INSERT INTO feedback (request_id, key_id, model, score, comment, \
             embedding, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (request_id) DO UPDATE SET id = nextval('feedback_id_seq'), \
             key_id = EXCLUDED.key_id, model = EXCLUDED.model, score = EXCLUDED.score, \
             comment = EXCLUDED.comment, embedding = EXCLUDED.embedding, \
             created_at_ms = EXCLUDED.created_at_ms";
        let embedding = row.embedding.as_deref().map(f32_bytes);
        macro_rules! run {
            ($pool:expr, $q:expr) => {{
                sqlx::query($q)
                    .bind(row.request_id.as_str())
                    .bind(row.key_id.as_str())
                    .bind(row.model.as_str())
                    .bind(row.score)
                    .bind(row.comment.as_deref())
                    .bind(embedding.as_deref())
                    .bind(row.created_at_ms)
                    .execute($pool)
                    .await?;
            }};
        }
        match &self.db {
            Db::Sqlite(p) => run!(p, SQLITE),
            Db::Postgres(p) => run!(p, pg_sql(POSTGRES)),
        }
        Ok(())
    }

    /// Feedback rows with an id past `after_id`, in id order, at most `limit` (each instance
    /// loads them at start-up, then pages on from the last id it saw). A replaced feedback
    /// comes back under its new id.
    ///
    /// On PostgreSQL, ids are taken when a statement runs and seen when it commits, so a slow
    /// writer can commit an id below one a reader has already passed; each upsert is one
    /// short statement, which keeps that window small.
    pub async fn feedback_page(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FeedbackRow)>, StoreError> {
        const SQL: &str = "SELECT id, request_id, key_id, model, score, comment, embedding, \
             created_at_ms FROM feedback WHERE id > ? ORDER BY id LIMIT ?";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?;
            rows.iter().map(FeedbackRow::from_row).collect()
        })
    }

    /// The feedback stored on one request, with its id.
    pub async fn feedback_for(
        &self,
        request_id: &str,
    ) -> Result<Option<(i64, FeedbackRow)>, StoreError> {
        const SQL: &str = "SELECT id, request_id, key_id, model, score, comment, embedding, \
             created_at_ms FROM feedback WHERE request_id = ?";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(request_id).fetch_optional(p).await?;
            row.as_ref().map(FeedbackRow::from_row).transpose()
        })
    }

    pub async fn count_requests(&self) -> Result<u64, StoreError> {
        on_db!(&self.db, "SELECT COUNT(*) FROM request_log", |p, q| {
            let n: i64 = sqlx::query_scalar(q).fetch_one(p).await?;
            Ok(n.max(0) as u64)
        })
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

pub(crate) fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One line of a spend report.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    /// The key id, user, team, model, or day (days since the Unix epoch); `None` for the
    /// requests that had none to group by (by model: those refused before they named one).
    pub group: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Exact: a sum of integer nano-dollars.
    pub cost: Nanos,
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
    pub cost: Nanos,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub cache_status: Option<String>,
    /// See [`RequestRecord::parent_request_id`].
    pub parent_request_id: Option<String>,
    /// See [`RequestRecord::step`].
    pub step: Option<u32>,
    /// See [`RequestRecord::client_request_id`].
    pub client_request_id: Option<String>,
    /// See [`RequestRecord::overhead_team_id`].
    pub overhead_team_id: Option<String>,
    /// The key's (or token's) user and team.
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// See [`RequestRecord::route`].
    pub route: Option<String>,
    /// See [`RequestRecord::prompt_embedding`].
    pub prompt_embedding: Option<Vec<f32>>,
}

/// A user's feedback on one request: how well the model that served it did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    pub request_id: String,
    /// Who scored it (the principal's id).
    pub key_id: String,
    /// The configured model name that served the request.
    pub model: String,
    /// 0 (bad) to 1 (good).
    pub score: f64,
    pub comment: Option<String>,
    /// The prompt's embedding, copied from the request's row.
    pub embedding: Option<Vec<f32>>,
    pub created_at_ms: i64,
}

impl FeedbackRow {
    fn from_row(row: &impl AnyRow) -> Result<(i64, Self), StoreError> {
        Ok((
            row.i64("id")?,
            FeedbackRow {
                request_id: row.text("request_id")?,
                key_id: row.text("key_id")?,
                model: row.text("model")?,
                score: row
                    .opt_f64("score")?
                    .ok_or(StoreError::Corrupt("feedback.score"))?,
                comment: row.opt_text("comment")?,
                embedding: row
                    .opt_bytes("embedding")?
                    .map(|b| f32s(&b, "feedback.embedding"))
                    .transpose()?,
                created_at_ms: row.i64("created_at_ms")?,
            },
        ))
    }
}

/// An embedding as stored: little-endian f32 bytes.
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Stored little-endian f32 bytes back as values; a length that is not a multiple of 4 is
/// corrupt.
pub(crate) fn f32s(bytes: &[u8], what: &'static str) -> Result<Vec<f32>, StoreError> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Err(StoreError::Corrupt(what));
    }
    Ok(chunks
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Column access shared by both backends' rows.
pub(crate) trait AnyRow {
    fn i64(&self, name: &str) -> Result<i64, StoreError>;
    fn opt_i64(&self, name: &str) -> Result<Option<i64>, StoreError>;
    fn opt_f64(&self, name: &str) -> Result<Option<f64>, StoreError>;
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn flag(&self, name: &str) -> Result<bool, StoreError>;
    fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

macro_rules! any_row {
    ($row:ty) => {
        impl AnyRow for $row {
            fn i64(&self, name: &str) -> Result<i64, StoreError> {
                Ok(self.try_get::<i64, _>(name)?)
            }
            fn opt_i64(&self, name: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get::<Option<i64>, _>(name)?)
            }
            fn opt_f64(&self, name: &str) -> Result<Option<f64>, StoreError> {
                Ok(self.try_get::<Option<f64>, _>(name)?)
            }
            fn text(&self, name: &str) -> Result<String, StoreError> {
                Ok(self.try_get::<String, _>(name)?)
            }
            fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get::<Option<String>, _>(name)?)
            }
            fn flag(&self, name: &str) -> Result<bool, StoreError> {
                Ok(self.try_get::<bool, _>(name)?)
            }
            fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
                Ok(self.try_get::<Option<Vec<u8>>, _>(name)?)
            }
        }
    };
}
any_row!(sqlx::sqlite::SqliteRow);
any_row!(sqlx::postgres::PgRow);

impl SpendRow {
    /// `numeric_group`: the group column is a number (days), not text.
    fn from_row(r: &impl AnyRow, numeric_group: bool) -> Result<Self, StoreError> {
        let group = if numeric_group {
            r.opt_i64("grp")?.map(|d| d.to_string())
        } else {
            r.opt_text("grp")?
        };
        Ok(SpendRow {
            group,
            requests: r.i64("requests")?.max(0) as u64,
            prompt_tokens: r.i64("prompt_tokens")?.max(0) as u64,
            completion_tokens: r.i64("completion_tokens")?.max(0) as u64,
            cost: Nanos(r.i64("cost_nanos")?),
        })
    }
}

impl LoggedRequest {
    fn from_row(row: &impl AnyRow) -> Result<Self, StoreError> {
        let u = |name: &str| -> Result<u64, StoreError> { Ok(row.i64(name)?.max(0) as u64) };
        Ok(LoggedRequest {
            ts_ms: row.i64("ts_ms")?,
            request_id: row.text("request_id")?,
            upstream_request_id: row.opt_text("upstream_request_id")?,
            key_id: row.text("key_id")?,
            endpoint: row.text("endpoint")?,
            model: row.text("model")?,
            provider: row.text("provider")?,
            upstream_model: row.text("upstream_model")?,
            stream: row.flag("stream")?,
            status: u16::try_from(row.i64("status")?).unwrap_or(0),
            error_code: row.opt_text("error_code")?,
            prompt_tokens: u("prompt_tokens")?,
            completion_tokens: u("completion_tokens")?,
            cached_tokens: u("cached_tokens")?,
            reasoning_tokens: u("reasoning_tokens")?,
            usage_estimated: row.flag("usage_estimated")?,
            cost: Nanos(row.i64("cost_nanos")?),
            latency_ms: u("latency_ms")?,
            ttft_ms: row.opt_i64("ttft_ms")?.map(|v| v.max(0) as u64),
            request_body: row.opt_text("request_body")?,
            response_body: row.opt_text("response_body")?,
            cache_status: row.opt_text("cache_status")?,
            parent_request_id: row.opt_text("parent_request_id")?,
            step: row
                .opt_i64("step")?
                .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("request_log.step")))
                .transpose()?,
            client_request_id: row.opt_text("client_request_id")?,
            overhead_team_id: row.opt_text("overhead_team_id")?,
            user_id: row.opt_text("user_id")?,
            team_id: row.opt_text("team_id")?,
            route: row.opt_text("route")?,
            prompt_embedding: row
                .opt_bytes("prompt_embedding")?
                .map(|b| f32s(&b, "request_log.prompt_embedding"))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ? AND c = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        // Memoized: the same pointer comes back.
        let a = pg_sql("SELECT ?");
        let b = pg_sql("SELECT ?");
        assert!(std::ptr::eq(a, b));
    }

    /// A database at migration 0008 (copies of those files: the same checksums), with rows.
    async fn before_0009(store: &Store, dir: &std::path::Path) {
        let backend = store.backend();
        let old = dir.join(format!("old-{backend}"));
        std::fs::create_dir(&old).unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        for e in std::fs::read_dir(src).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.as_str() < "0009" {
                std::fs::copy(&path, old.join(name)).unwrap();
            }
        }
        let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
        const ROW: &str = "INSERT INTO request_log (ts_ms, request_id, key_id, endpoint, model, \
             provider, upstream_model, stream, status, prompt_tokens, completion_tokens, \
             cached_tokens, reasoning_tokens, usage_estimated, cost_usd, latency_ms) \
             VALUES (1, ?, 'k', 'chat', 'm', 'p', 'u', false, 200, 0, 0, 0, 0, false, ?, 0)";
        let rows = [
            ("a", 0.0000207),
            ("b", 0.0000207),
            ("c", 0.0000207),
            ("tiny", 2e-7),
            ("none", 0.0),
            ("absurd", 1e300),
        ];
        match &store.db {
            Db::Sqlite(p) => {
                migrator.run(p).await.unwrap();
                for (id, usd) in rows {
                    sqlx::query(ROW)
                        .bind(id)
                        .bind(usd)
                        .execute(p)
                        .await
                        .unwrap();
                }
            }
            Db::Postgres(p) => {
                migrator.run(p).await.unwrap();
                for (id, usd) in rows {
                    let q = pg_sql(ROW);
                    sqlx::query(q).bind(id).bind(usd).execute(p).await.unwrap();
                }
            }
        }
    }

    async fn backfills_nanos(store: &Store) {
        let dir = tempfile::tempdir().unwrap();
        before_0009(store, dir.path()).await;
        store.migrate().await.unwrap();
        let cost =
            |id: &'static str| async move { store.request_by_id(id).await.unwrap().unwrap().cost };
        assert_eq!(cost("a").await, Nanos(20_700));
        assert_eq!(cost("tiny").await, Nanos(200));
        assert_eq!(cost("none").await, Nanos::ZERO);
        assert_eq!(
            cost("absurd").await,
            Nanos::ZERO,
            "out of range counts as 0"
        );
        // 3 × 20_700 + 200, exact.
        assert_eq!(
            store.spend_since("key", "k", 0).await.unwrap(),
            Nanos(62_300)
        );
    }

    #[tokio::test]
    async fn migration_0009_backfills_nanos_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = Store::connect_without_migrating(&url).await.unwrap();
        backfills_nanos(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn migration_0009_backfills_nanos_on_postgres() {
        let url = std::env::var("PLEXUS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("plexus_m_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = Store::connect_postgres(options).await.unwrap();
        backfills_nanos(&store).await;
        store.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
}
