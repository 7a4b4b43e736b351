//! Teams, users, virtual keys and the audit log.

use crate::{on_db, AnyRow, Store, StoreError};
use plexus_protocol::admin::{Limits, LimitsPatch};
use plexus_protocol::money::Nanos;

/// A virtual key as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The public id (also the lookup prefix inside the key).
    pub id: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    pub name: String,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub role: String,
    /// Allowed model names or patterns (`*` wildcard); empty = every model.
    pub models: Vec<String>,
    pub metadata: serde_json::Value,
    pub expires_at: Option<i64>,
    /// The key's budget and rate limits.
    pub limits: Limits,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub rotated_from: Option<String>,
}

/// What a new key is made of (a `KeyRecord` before it exists).
pub type NewKey = KeyRecord;

/// Changes to a key's attributes (`PATCH`); `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<serde_json::Value>,
    pub expires_at: Option<Option<i64>>,
    pub limits: LimitsPatch,
}

impl KeyUpdate {
    pub fn apply(self, key: &mut KeyRecord) {
        if let Some(v) = self.name {
            key.name = v;
        }
        if let Some(v) = self.models {
            key.models = v;
        }
        if let Some(v) = self.metadata {
            key.metadata = v;
        }
        if let Some(v) = self.expires_at {
            key.expires_at = v;
        }
        self.limits.apply(&mut key.limits);
    }
}

/// Which keys to list: keyset pagination by id (stable under inserts, index-only seeks).
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub include_revoked: bool,
    /// List ids greater than this one.
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    /// The organization the team belongs to.
    pub org_id: Option<String>,
    /// The budget and rate limits, binding every key of the team together.
    pub limits: Limits,
    pub metadata: serde_json::Value,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub team_id: Option<String>,
    pub role: String,
    /// The budget and rate limits, binding every key of the user together.
    pub limits: Limits,
    pub created_at: i64,
}

/// One entry of the hash-chained audit log. `hash` covers every other field and `prev_hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub ts_ms: i64,
    /// Who: `master`, a key id, or `jwt:<subject>`; `anonymous` for failed authentication.
    pub actor: String,
    /// What: `key.create`, `key.revoke`, `auth.failure`, ...
    pub action: String,
    pub target: String,
    /// `ok`, `denied`, `error`.
    pub outcome: String,
    /// From where: the client address.
    pub source: String,
    /// JSON text with action-specific details (never a secret).
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries with `seq` greater than this.
    pub after_seq: Option<i64>,
    pub limit: u32,
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

/// The six limit columns every identity table has.
fn limits_from_row(row: &impl AnyRow) -> Result<Limits, StoreError> {
    Ok(Limits {
        max_budget_usd: row.opt_f64("max_budget_usd")?.map(Nanos::from_usd),
        budget_period: row.opt_text("budget_period")?,
        rpm: row.opt_i64("rpm")?,
        tpm: row.opt_i64("tpm")?,
        tpd: row.opt_i64("tpd")?,
        max_parallel: row.opt_i64("max_parallel")?,
    })
}

/// The budget column's value (REAL dollars).
fn budget(l: &Limits) -> Option<f64> {
    l.max_budget_usd.map(Nanos::usd)
}

fn key_from_row(row: &impl AnyRow) -> Result<KeyRecord, StoreError> {
    let models: Vec<String> = serde_json::from_str(&row.text("models")?)
        .map_err(|_| StoreError::Corrupt("api_keys.models"))?;
    let metadata = serde_json::from_str(&row.text("metadata")?)
        .map_err(|_| StoreError::Corrupt("api_keys.metadata"))?;
    Ok(KeyRecord {
        id: row.text("id")?,
        key_hash: row.text("key_hash")?,
        name: row.text("name")?,
        team_id: row.opt_text("team_id")?,
        user_id: row.opt_text("user_id")?,
        role: row.text("role")?,
        models,
        metadata,
        expires_at: row.opt_i64("expires_at")?,
        limits: limits_from_row(row)?,
        created_at: row.i64("created_at")?,
        revoked_at: row.opt_i64("revoked_at")?,
        rotated_from: row.opt_text("rotated_from")?,
    })
}

/// An organization: the level above teams.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

fn team_from_row(row: &impl AnyRow) -> Result<TeamRecord, StoreError> {
    Ok(TeamRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        org_id: row.opt_text("org_id")?,
        limits: limits_from_row(row)?,
        metadata: serde_json::from_str(&row.text("metadata")?)
            .map_err(|_| StoreError::Corrupt("teams.metadata"))?,
        created_at: row.i64("created_at")?,
    })
}

fn user_from_row(row: &impl AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        team_id: row.opt_text("team_id")?,
        role: row.text("role")?,
        limits: limits_from_row(row)?,
        created_at: row.i64("created_at")?,
    })
}

fn audit_from_row(row: &impl AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.i64("seq")?,
        ts_ms: row.i64("ts_ms")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.text("target")?,
        outcome: row.text("outcome")?,
        source: row.text("source")?,
        details: row.text("details")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

impl Store {
    pub async fn insert_key(&self, k: &NewKey) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO api_keys (id, key_hash, name, team_id, user_id, role, \
             models, metadata, expires_at, max_budget_usd, budget_period, rpm, tpm, tpd, \
             max_parallel, created_at, revoked_at, rotated_from) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let models = serde_json::to_string(&k.models).map_err(|_| StoreError::Corrupt("models"))?;
        on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&k.id)
                .bind(&k.key_hash)
                .bind(&k.name)
                .bind(&k.team_id)
                .bind(&k.user_id)
                .bind(&k.role)
                .bind(&models)
                .bind(json_text(&k.metadata))
                .bind(k.expires_at)
                .bind(budget(&k.limits))
                .bind(&k.limits.budget_period)
                .bind(k.limits.rpm)
                .bind(k.limits.tpm)
                .bind(k.limits.tpd)
                .bind(k.limits.max_parallel)
                .bind(k.created_at)
                .bind(k.revoked_at)
                .bind(&k.rotated_from)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "key"))?;
        });
        Ok(())
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, key_hash, name, team_id, user_id, role, models, metadata, \
             expires_at, max_budget_usd, budget_period, rpm, tpm, tpd, max_parallel, \
             created_at, revoked_at, rotated_from FROM api_keys WHERE id = ?";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(id).fetch_optional(p).await?;
            row.as_ref().map(key_from_row).transpose()
        })
    }

    /// One page of keys ordered by id, and the cursor of the next page.
    pub async fn list_keys(
        &self,
        f: &KeyFilter,
    ) -> Result<(Vec<KeyRecord>, Option<String>), StoreError> {
        // One statement with optional filters: `(? IS NULL OR col = ?)` keeps it a single cached
        // plan while the index on (team_id, id) / (user_id, id) or the primary key serves it.
        const SQL: &str = "SELECT id, key_hash, name, team_id, user_id, role, models, metadata, \
             expires_at, max_budget_usd, budget_period, rpm, tpm, tpd, max_parallel, \
             created_at, revoked_at, rotated_from FROM api_keys \
             WHERE (? IS NULL OR team_id = ?) AND (? IS NULL OR user_id = ?) \
             AND (? OR revoked_at IS NULL) AND id > ? ORDER BY id LIMIT ?";
        let limit = f.limit.clamp(1, 1000);
        let after = f.after.clone().unwrap_or_default();
        let rows: Vec<KeyRecord> = on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(&f.team_id)
                .bind(&f.team_id)
                .bind(&f.user_id)
                .bind(&f.user_id)
                .bind(f.include_revoked)
                .bind(&after)
                .bind(i64::from(limit) + 1)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(key_from_row)
                .collect::<Result<Vec<_>, _>>()?
        });
        let mut rows = rows;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|k| k.id.clone())
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Writes a key's mutable attributes.
    pub async fn update_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE api_keys SET name = ?, models = ?, metadata = ?, \
             expires_at = ?, max_budget_usd = ?, budget_period = ?, rpm = ?, tpm = ?, tpd = ?, \
             max_parallel = ?, revoked_at = ? WHERE id = ?";
        let models = serde_json::to_string(&k.models).map_err(|_| StoreError::Corrupt("models"))?;
        let n = on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&k.name)
                .bind(&models)
                .bind(json_text(&k.metadata))
                .bind(k.expires_at)
                .bind(budget(&k.limits))
                .bind(&k.limits.budget_period)
                .bind(k.limits.rpm)
                .bind(k.limits.tpm)
                .bind(k.limits.tpd)
                .bind(k.limits.max_parallel)
                .bind(k.revoked_at)
                .bind(&k.id)
                .execute(p)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound(format!("key {}", k.id)));
        }
        Ok(())
    }

    pub async fn count_keys(&self) -> Result<u64, StoreError> {
        on_db!(&self.db, "SELECT COUNT(*) FROM api_keys", |p, q| {
            let n: i64 = sqlx::query_scalar(q).fetch_one(p).await?;
            Ok(n.max(0) as u64)
        })
    }

    pub async fn insert_team(&self, t: &TeamRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO teams (id, name, max_budget_usd, budget_period, rpm, tpm, \
             tpd, max_parallel, metadata, created_at, org_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&t.id)
                .bind(&t.name)
                .bind(budget(&t.limits))
                .bind(&t.limits.budget_period)
                .bind(t.limits.rpm)
                .bind(t.limits.tpm)
                .bind(t.limits.tpd)
                .bind(t.limits.max_parallel)
                .bind(json_text(&t.metadata))
                .bind(t.created_at)
                .bind(&t.org_id)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "team"))?;
        });
        Ok(())
    }

    pub async fn get_team(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, max_budget_usd, budget_period, rpm, tpm, tpd, \
             max_parallel, metadata, created_at, org_id FROM teams WHERE id = ?";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(id).fetch_optional(p).await?;
            row.as_ref().map(team_from_row).transpose()
        })
    }

    pub async fn list_teams(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TeamRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, max_budget_usd, budget_period, rpm, tpm, tpd, \
             max_parallel, metadata, created_at, org_id FROM teams WHERE id > ? \
             ORDER BY id LIMIT ?";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(p)
                .await?;
            rows.iter().map(team_from_row).collect()
        })
    }

    pub async fn update_team(&self, t: &TeamRecord) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE teams SET name = ?, max_budget_usd = ?, budget_period = ?, \
             rpm = ?, tpm = ?, tpd = ?, max_parallel = ?, metadata = ?, org_id = ? WHERE id = ?";
        let n = on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&t.name)
                .bind(budget(&t.limits))
                .bind(&t.limits.budget_period)
                .bind(t.limits.rpm)
                .bind(t.limits.tpm)
                .bind(t.limits.tpd)
                .bind(t.limits.max_parallel)
                .bind(json_text(&t.metadata))
                .bind(&t.org_id)
                .bind(&t.id)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "team"))?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound(format!("team {}", t.id)));
        }
        Ok(())
    }

    /// Deletes a team that no user and no active key belongs to.
    pub async fn delete_team(&self, id: &str) -> Result<(), StoreError> {
        const IN_USE: &str = "SELECT (SELECT COUNT(*) FROM users WHERE team_id = ?) + \
             (SELECT COUNT(*) FROM api_keys WHERE team_id = ? AND revoked_at IS NULL)";
        let in_use: i64 = on_db!(&self.db, IN_USE, |p, q| {
            sqlx::query_scalar(q).bind(id).bind(id).fetch_one(p).await?
        });
        if in_use > 0 {
            return Err(StoreError::InUse(format!(
                "team {id} still has users or active keys: move or delete them first"
            )));
        }
        let n = on_db!(&self.db, "DELETE FROM teams WHERE id = ?", |p, q| {
            sqlx::query(q).bind(id).execute(p).await?.rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound(format!("team {id}")));
        }
        Ok(())
    }

    pub async fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE users SET name = ?, team_id = ?, role = ?, max_budget_usd = ?, \
             budget_period = ?, rpm = ?, tpm = ?, tpd = ?, max_parallel = ? WHERE id = ?";
        let n = on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&u.name)
                .bind(&u.team_id)
                .bind(&u.role)
                .bind(budget(&u.limits))
                .bind(&u.limits.budget_period)
                .bind(u.limits.rpm)
                .bind(u.limits.tpm)
                .bind(u.limits.tpd)
                .bind(u.limits.max_parallel)
                .bind(&u.id)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "user"))?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {}", u.id)));
        }
        Ok(())
    }

    pub async fn insert_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO users (id, name, team_id, role, max_budget_usd, \
             budget_period, rpm, tpm, tpd, max_parallel, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&u.id)
                .bind(&u.name)
                .bind(&u.team_id)
                .bind(&u.role)
                .bind(budget(&u.limits))
                .bind(&u.limits.budget_period)
                .bind(u.limits.rpm)
                .bind(u.limits.tpm)
                .bind(u.limits.tpd)
                .bind(u.limits.max_parallel)
                .bind(u.created_at)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "user"))?;
        });
        Ok(())
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, team_id, role, max_budget_usd, budget_period, rpm, \
             tpm, tpd, max_parallel, created_at FROM users WHERE id = ?";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(id).fetch_optional(p).await?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    pub async fn list_users(
        &self,
        team_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, team_id, role, max_budget_usd, budget_period, rpm, \
             tpm, tpd, max_parallel, created_at FROM users \
             WHERE (? IS NULL OR team_id = ?) AND id > ? ORDER BY id LIMIT ?";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(team_id)
                .bind(team_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(p)
                .await?;
            rows.iter().map(user_from_row).collect()
        })
    }

    /// Deletes a user with their keys and their request records.
    pub async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        macro_rules! delete_all {
            ($pool:expr, $fix:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query($fix(
                    "DELETE FROM request_log WHERE key_id IN (SELECT id FROM api_keys WHERE user_id = ?)",
                ))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query($fix("DELETE FROM api_keys WHERE user_id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query($fix("DELETE FROM users WHERE id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                n
            }};
        }
        let n = match &self.db {
            crate::Db::Sqlite(p) => delete_all!(p, |s: &'static str| s),
            crate::Db::Postgres(p) => delete_all!(p, crate::pg_sql),
        };
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    /// The last entry of the audit chain (`seq`, `hash`), if any.
    pub async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError> {
        const SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).fetch_optional(p).await?;
            match row {
                Some(r) => Ok(Some((r.i64("seq")?, r.text("hash")?))),
                None => Ok(None),
            }
        })
    }

    /// Appends entries (already chained by the caller, who is the only writer).
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO audit_log (seq, ts_ms, actor, action, target, outcome, \
             source, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        macro_rules! append {
            ($pool:expr, $q:expr) => {{
                let mut tx = $pool.begin().await?;
                for e in entries {
                    sqlx::query($q)
                        .bind(e.seq)
                        .bind(e.ts_ms)
                        .bind(&e.actor)
                        .bind(&e.action)
                        .bind(&e.target)
                        .bind(&e.outcome)
                        .bind(&e.source)
                        .bind(&e.details)
                        .bind(&e.prev_hash)
                        .bind(&e.hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| StoreError::conflict_or(err, "audit entry"))?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            crate::Db::Sqlite(p) => append!(p, SQL),
            crate::Db::Postgres(p) => append!(p, crate::pg_sql(SQL)),
        }
        Ok(())
    }

    pub async fn list_audit(&self, f: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = "SELECT seq, ts_ms, actor, action, target, outcome, source, details, \
             prev_hash, hash FROM audit_log WHERE (? IS NULL OR actor = ?) \
             AND (? IS NULL OR action = ?) AND seq > ? ORDER BY seq LIMIT ?";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q)
                .bind(&f.actor)
                .bind(&f.actor)
                .bind(&f.action)
                .bind(&f.action)
                .bind(f.after_seq.unwrap_or(0))
                .bind(i64::from(f.limit.clamp(1, 10_000)))
                .fetch_all(p)
                .await?;
            rows.iter().map(audit_from_row).collect()
        })
    }
}

/// An envelope-encrypted provider credential (`sealed` is the vault's JSON, never plaintext).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRecord {
    pub id: String,
    pub provider: String,
    pub version: i64,
    pub kek_id: String,
    pub sealed: String,
    /// What the API shows (`sk-...abcd`).
    pub masked: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub retired_at: Option<i64>,
}

fn credential_from_row(row: &impl AnyRow) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        id: row.text("id")?,
        provider: row.text("provider")?,
        version: row.i64("version")?,
        kek_id: row.text("kek_id")?,
        sealed: row.text("sealed")?,
        masked: row.text("masked")?,
        created_at: row.i64("created_at")?,
        expires_at: row.opt_i64("expires_at")?,
        retired_at: row.opt_i64("retired_at")?,
    })
}

impl Store {
    pub async fn insert_credential(&self, c: &CredentialRecord) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO credentials (id, provider, version, kek_id, sealed, masked, \
             created_at, expires_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
        on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&c.id)
                .bind(&c.provider)
                .bind(c.version)
                .bind(&c.kek_id)
                .bind(&c.sealed)
                .bind(&c.masked)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.retired_at)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "credential"))?;
        });
        Ok(())
    }

    /// Every credential, retired ones included, ordered by id.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        const SQL: &str = "SELECT id, provider, version, kek_id, sealed, masked, created_at, \
             expires_at, retired_at FROM credentials ORDER BY id";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).fetch_all(p).await?;
            rows.iter().map(credential_from_row).collect()
        })
    }

    pub async fn retire_credential(&self, id: &str, at: i64) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE credentials SET retired_at = ? WHERE id = ? AND retired_at IS NULL";
        let n = on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(at)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound(format!("credential {id}")));
        }
        Ok(())
    }

    /// Replaces a record's sealed secret (KEK rotation); `expected_kek` guards against a
    /// concurrent rotation having changed it meanwhile.
    pub async fn rewrap_credential(
        &self,
        id: &str,
        expected_kek: &str,
        kek_id: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE credentials SET kek_id = ?, sealed = ? WHERE id = ? AND kek_id = ?";
        let n = on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(kek_id)
                .bind(sealed)
                .bind(id)
                .bind(expected_kek)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}

impl Store {
    /// Inserts synthetic keys `k<from>`..`k<to>` (1,000 teams) in one statement per backend;
    /// for the scale benchmark only.
    pub async fn bulk_fill_keys_for_benchmark(&self, from: u64, to: u64) -> Result<(), StoreError> {
        const SQLITE: &str = "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) \
             INSERT INTO api_keys (id, key_hash, name, team_id, user_id, role, models, metadata, created_at) \
             SELECT printf('k%08d', i), 'x', 'bench', printf('team%04d', i % 1000), NULL, 'member', '[]', '{}', i FROM n";
        const PG: &str = "INSERT INTO api_keys (id, key_hash, name, team_id, user_id, role, models, metadata, created_at) \
             SELECT 'k' || lpad(i::text, 8, '0'), 'x', 'bench', 'team' || lpad((i % 1000)::text, 4, '0'), NULL, 'member', '[]', '{}', i \
             FROM generate_series($1::bigint, $2::bigint - 1) AS i";
        match &self.db {
            crate::Db::Sqlite(p) => {
                sqlx::query(SQLITE)
                    .bind(from as i64)
                    .bind(to as i64)
                    .execute(p)
                    .await?;
            }
            crate::Db::Postgres(p) => {
                sqlx::query(PG)
                    .bind(from as i64)
                    .bind(to as i64)
                    .execute(p)
                    .await?;
                sqlx::query("ANALYZE api_keys").execute(p).await?;
            }
        }
        Ok(())
    }
}

impl Store {
    pub async fn insert_org(&self, o: &OrgRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)";
        on_db!(&self.db, SQL, |p, q| {
            sqlx::query(q)
                .bind(&o.id)
                .bind(&o.name)
                .bind(o.created_at)
                .execute(p)
                .await
                .map_err(|e| StoreError::conflict_or(e, "organization"))?;
        });
        Ok(())
    }

    pub async fn get_org(&self, id: &str) -> Result<Option<OrgRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, created_at FROM orgs WHERE id = ?";
        on_db!(&self.db, SQL, |p, q| {
            let row = sqlx::query(q).bind(id).fetch_optional(p).await?;
            match row {
                Some(r) => Ok(Some(OrgRecord {
                    id: r.text("id")?,
                    name: r.text("name")?,
                    created_at: r.i64("created_at")?,
                })),
                None => Ok(None),
            }
        })
    }

    /// The teams of an organization, ordered by id.
    pub async fn teams_of_org(&self, org_id: &str) -> Result<Vec<TeamRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, max_budget_usd, budget_period, rpm, tpm, tpd, \
             max_parallel, metadata, created_at, org_id FROM teams WHERE org_id = ? \
             ORDER BY id LIMIT 10000";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).bind(org_id).fetch_all(p).await?;
            rows.iter().map(team_from_row).collect()
        })
    }

    pub async fn list_orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, created_at FROM orgs ORDER BY id LIMIT 10000";
        on_db!(&self.db, SQL, |p, q| {
            let rows = sqlx::query(q).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(OrgRecord {
                        id: r.text("id")?,
                        name: r.text("name")?,
                        created_at: r.i64("created_at")?,
                    })
                })
                .collect()
        })
    }
}
