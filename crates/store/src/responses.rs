//! Stored Responses API responses and background runs (migration 0012).
//!
//! A row is written when a stored response is answered (off the request path) or, for a
//! background run, before the run is acknowledged: its `status` column is what every instance
//! reports. Status changes are conditional updates, so a cancel and a finishing run cannot
//! both win.

use crate::{on_db, AnyRow, Store, StoreError};
use sqlx::QueryBuilder;

/// The statuses of a run that has not ended.
pub const RUNNING: [&str; 2] = ["queued", "in_progress"];

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub key_id: String,
    pub previous_response_id: Option<String>,
    pub status: String,
    pub background: bool,
    /// This turn's input items (JSON array text).
    pub input_items: String,
    /// The response object (JSON text) as last reported.
    pub response: String,
    /// Why an interruption ended the run (`shutdown`, `instance_lost`).
    pub interrupted: Option<String>,
    pub instance_id: Option<String>,
    pub heartbeat_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl StoredResponse {
    fn from_row(r: &impl AnyRow) -> Result<Self, StoreError> {
        Ok(StoredResponse {
            id: r.text("id")?,
            key_id: r.text("key_id")?,
            previous_response_id: r.opt_text("previous_response_id")?,
            status: r.text("status")?,
            background: r.flag("background")?,
            input_items: r.text("input_items")?,
            response: r.text("response")?,
            interrupted: r.opt_text("interrupted")?,
            instance_id: r.opt_text("instance_id")?,
            heartbeat_ms: r.opt_i64("heartbeat_ms")?,
            created_at_ms: r.i64("created_at_ms")?,
            updated_at_ms: r.i64("updated_at_ms")?,
        })
    }

    /// Whether the run has not ended.
    pub fn is_running(&self) -> bool {
        RUNNING.contains(&self.status.as_str())
    }
}

macro_rules! response_columns {
    () => {
        "id, key_id, previous_response_id, status, background, input_items, response, \
         interrupted, instance_id, heartbeat_ms, created_at_ms, updated_at_ms"
    };
}

/// How many responses a conversation may chain (a cycle cannot form, as ids are new, but a
/// bound keeps one request's reads finite).
pub const MAX_CHAIN: i64 = 1000;

impl Store {
    /// Writes a response; an existing row with the same id is replaced (a retried write).
    pub async fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        self.put_responses(std::slice::from_ref(r)).await
    }

    /// Writes responses in one transaction (see [`Store::put_response`]).
    pub async fn put_responses<R>(&self, rows: &[R]) -> Result<(), StoreError>
    where
        R: std::borrow::Borrow<StoredResponse> + Sync,
    {
        const SQLITE: &str = concat!(
            "INSERT OR REPLACE INTO responses (",
            response_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        const POSTGRES: &str = concat!(
            "INSERT INTO responses (",
            response_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET \
             status = EXCLUDED.status, response = EXCLUDED.response, \
             input_items = EXCLUDED.input_items, interrupted = EXCLUDED.interrupted, \
             instance_id = EXCLUDED.instance_id, heartbeat_ms = EXCLUDED.heartbeat_ms, \
             updated_at_ms = EXCLUDED.updated_at_ms"
        );
        macro_rules! run {
            ($pool:expr, $q:expr) => {{
                let mut tx = $pool.begin().await?;
                for r in rows.iter().map(std::borrow::Borrow::borrow) {
                    let r: &StoredResponse = r;
                    sqlx::query($q)
                        .bind(r.id.as_str())
                        .bind(r.key_id.as_str())
                        .bind(r.previous_response_id.as_deref())
                        .bind(r.status.as_str())
                        .bind(r.background)
                        .bind(r.input_items.as_str())
                        .bind(r.response.as_str())
                        .bind(r.interrupted.as_deref())
                        .bind(r.instance_id.as_deref())
                        .bind(r.heartbeat_ms)
                        .bind(r.created_at_ms)
                        .bind(r.updated_at_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            crate::Db::Sqlite(p) => run!(p, SQLITE),
            crate::Db::Postgres(p) => run!(p, crate::pg_sql(POSTGRES)),
        }
        Ok(())
    }

    /// One stored response.
    pub async fn response_by_id(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            response_columns!(),
            " FROM responses WHERE id = ?"
        );
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(id).fetch_optional(p).await?;
            row.as_ref().map(StoredResponse::from_row).transpose()
        })
    }

    /// The conversation ending at `id`: that response and the ones it continues, oldest
    /// first (at most [`MAX_CHAIN`]). Empty when `id` is not stored.
    pub async fn response_chain(&self, id: &str) -> Result<Vec<StoredResponse>, StoreError> {
        const SQL: &str = concat!(
            "WITH RECURSIVE chain (cid, depth) AS (SELECT id, 0 FROM responses WHERE id = ? \
             UNION ALL SELECT r.previous_response_id, c.depth + 1 FROM responses r \
             JOIN chain c ON r.id = c.cid WHERE r.previous_response_id IS NOT NULL \
             AND c.depth < ?) SELECT ",
            response_columns!(),
            ", chain.depth FROM responses JOIN chain ON responses.id = chain.cid \
             ORDER BY chain.depth DESC"
        );
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).bind(id).bind(MAX_CHAIN).fetch_all(p).await?;
            rows.iter().map(StoredResponse::from_row).collect()
        })
    }

    /// Ends a run that has not ended yet: sets its status and response. `false` when it had
    /// already ended (cancelled, interrupted) or is gone.
    pub async fn finish_response(
        &self,
        id: &str,
        status: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE responses SET status = ?, response = ?, updated_at_ms = ? \
             WHERE id = ? AND status IN ('queued', 'in_progress')";
        on_db!(&self.db, SQL, |p, q| {
            let done = sqlx::query(q)
                .bind(status)
                .bind(response)
                .bind(now_ms)
                .bind(id)
                .execute(p)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Moves a run from `from` to `to` (e.g. queued → in_progress, running → cancelled);
    /// `interrupted` says why when an interruption ends it. `false` when the run was not in
    /// one of the `from` statuses.
    pub async fn transition_response(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        interrupted: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        macro_rules! run {
            ($db:ty, $pool:expr) => {{
                let mut qb: QueryBuilder<'_, $db> =
                    QueryBuilder::new("UPDATE responses SET status = ");
                qb.push_bind(to)
                    .push(", interrupted = ")
                    .push_bind(interrupted)
                    .push(", updated_at_ms = ")
                    .push_bind(now_ms)
                    .push(" WHERE id = ")
                    .push_bind(id)
                    .push(" AND status IN (");
                let mut list = qb.separated(", ");
                for s in from {
                    list.push_bind(*s);
                }
                qb.push(")");
                Ok(qb.build().execute($pool).await?.rows_affected() > 0)
            }};
        }
        match &self.db {
            crate::Db::Sqlite(p) => run!(sqlx::Sqlite, p),
            crate::Db::Postgres(p) => run!(sqlx::Postgres, p),
        }
    }

    /// Of `ids` (runs this instance drives), the ones still running; their heartbeat is set
    /// to `now_ms` when `beat`. A run missing from the answer was cancelled or deleted.
    pub async fn still_running(
        &self,
        ids: &[String],
        now_ms: i64,
        beat: bool,
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        macro_rules! run {
            ($db:ty, $pool:expr) => {{
                if beat {
                    let mut qb: QueryBuilder<'_, $db> =
                        QueryBuilder::new("UPDATE responses SET heartbeat_ms = ");
                    qb.push_bind(now_ms).push(" WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in ids {
                        list.push_bind(id.as_str());
                    }
                    qb.push(") AND status IN ('queued', 'in_progress')");
                    qb.build().execute($pool).await?;
                }
                let mut qb: QueryBuilder<'_, $db> =
                    QueryBuilder::new("SELECT id FROM responses WHERE id IN (");
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(id.as_str());
                }
                qb.push(") AND status IN ('queued', 'in_progress')");
                let rows = qb.build().fetch_all($pool).await?;
                rows.iter().map(|r| r.text("id")).collect()
            }};
        }
        match &self.db {
            crate::Db::Sqlite(p) => run!(sqlx::Sqlite, p),
            crate::Db::Postgres(p) => run!(sqlx::Postgres, p),
        }
    }

    /// Deletes a response; `false` when there was none.
    pub async fn delete_response(&self, id: &str) -> Result<bool, StoreError> {
        on_db!(&self.db, "DELETE FROM responses WHERE id = ?", |p, q| {
            Ok(sqlx::query(q).bind(id).execute(p).await?.rows_affected() > 0)
        })
    }

    /// Deletes responses created before `before_ms` (retention) that are not running.
    pub async fn delete_responses_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM responses WHERE created_at_ms < ? \
             AND status NOT IN ('queued', 'in_progress')";
        on_db!(&self.db, SQL, |p, q| {
            Ok(sqlx::query(q)
                .bind(before_ms)
                .execute(p)
                .await?
                .rows_affected())
        })
    }

    /// Clears the request and response bodies of records older than `before_ms` (retention);
    /// the records stay. Returns how many were cleared.
    pub async fn clear_bodies_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "UPDATE request_log SET request_body = NULL, response_body = NULL \
             WHERE ts_ms < ? AND (request_body IS NOT NULL OR response_body IS NOT NULL)";
        on_db!(&self.db, SQL, |p, q| {
            Ok(sqlx::query(q)
                .bind(before_ms)
                .execute(p)
                .await?
                .rows_affected())
        })
    }
}
