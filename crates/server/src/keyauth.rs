//! Virtual-key authentication on the request path: an in-memory cache in front of the store.
//!
//! A hit costs one hash and one constant-time comparison. A miss reads the key once; unknown
//! ids are remembered briefly so a flood of bad keys cannot hammer the database. Revocation
//! and updates invalidate the entry at once on this instance; other instances drop it within
//! the cache's time-to-live.

use plexus_auth::keys;
use plexus_auth::roles::{Principal, Role};
use plexus_limits::{BudgetKey, Limit};
use plexus_store::{KeyRecord, Store};
use std::sync::Arc;
use std::time::Duration;

/// How long a key stays cached: the longest another instance may honour a revoked key.
pub const KEY_TTL: Duration = Duration::from_secs(1);
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct KeyAuth {
    store: Store,
    keys: moka::sync::Cache<String, Arc<KeyRecord>>,
    unknown: moka::sync::Cache<String, ()>,
    /// Budgets of users and teams (`None`: no budget), refreshed like keys.
    owner_limits: moka::sync::Cache<(&'static str, String), Option<Limit>>,
}

impl KeyAuth {
    pub fn new(store: Store) -> KeyAuth {
        KeyAuth {
            store,
            keys: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(KEY_TTL)
                .build(),
            unknown: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            owner_limits: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_TTL)
                .build(),
        }
    }

    /// The budgets that apply to a principal: its key's, its user's and its team's.
    pub async fn limits_for(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(BudgetKey, Limit)>, String> {
        let mut out = Vec::new();
        if let Some(key_id) = &principal.key_id {
            let record = match self.keys.get(key_id) {
                Some(r) => Some(r),
                None => self
                    .store
                    .get_key(key_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Arc::new),
            };
            if let Some(record) = record {
                if let Some(limit) =
                    limit_of(record.max_budget_usd, record.budget_period.as_deref())
                {
                    out.push((
                        BudgetKey {
                            scope: "key",
                            id: key_id.clone(),
                        },
                        limit,
                    ));
                }
            }
        }
        for (scope, id) in [("user", &principal.user_id), ("team", &principal.team_id)] {
            let Some(id) = id else { continue };
            let cache_key = (scope, id.clone());
            let limit = match self.owner_limits.get(&cache_key) {
                Some(l) => l,
                None => {
                    let loaded = if scope == "user" {
                        self.store.get_user(id).await.map(|u| {
                            u.and_then(|u| limit_of(u.max_budget_usd, u.budget_period.as_deref()))
                        })
                    } else {
                        self.store.get_team(id).await.map(|t| {
                            t.and_then(|t| limit_of(t.max_budget_usd, t.budget_period.as_deref()))
                        })
                    };
                    let l = loaded.map_err(|e| e.to_string())?;
                    self.owner_limits.insert(cache_key, l);
                    l
                }
            };
            if let Some(limit) = limit {
                out.push((
                    BudgetKey {
                        scope,
                        id: id.clone(),
                    },
                    limit,
                ));
            }
        }
        Ok(out)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks a presented key; the error is a short reason for the audit log.
    pub async fn authenticate(&self, key: &str, now_ms: i64) -> Result<Principal, &'static str> {
        let id = keys::id_of(key).ok_or("malformed")?;
        let record = match self.keys.get(id) {
            Some(r) => r,
            None => {
                if self.unknown.contains_key(id) {
                    return Err("unknown");
                }
                match self.store.get_key(id).await {
                    Ok(Some(r)) => {
                        let r = Arc::new(r);
                        self.keys.insert(id.to_owned(), r.clone());
                        r
                    }
                    Ok(None) => {
                        self.unknown.insert(id.to_owned(), ());
                        return Err("unknown");
                    }
                    Err(e) => {
                        tracing::error!(message = "Key lookup failed.", error = %e);
                        return Err("unavailable");
                    }
                }
            }
        };
        if !keys::verify(key, &record.key_hash) {
            return Err("wrong_secret");
        }
        if record.revoked_at.is_some() {
            return Err("revoked");
        }
        if record.expires_at.is_some_and(|at| at <= now_ms) {
            return Err("expired");
        }
        Ok(principal_of(&record))
    }

    /// After a change to the key: this instance sees it at once.
    pub fn invalidate(&self, id: &str) {
        self.keys.invalidate(id);
        self.unknown.invalidate(id);
    }

    /// A just-created key works at once, even if a lookup of its id missed a moment ago.
    pub fn created(&self, record: KeyRecord) {
        self.unknown.invalidate(&record.id);
        self.keys.insert(record.id.clone(), Arc::new(record));
    }
}

/// A budget from stored fields; no period means one that never resets.
pub fn limit_of(usd: Option<f64>, period: Option<&str>) -> Option<Limit> {
    let usd = usd?;
    let period_ms = period
        .and_then(plexus_core::config::parse_duration)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Some(Limit { usd, period_ms })
}

pub fn principal_of(record: &KeyRecord) -> Principal {
    Principal {
        id: record.id.clone(),
        key_id: Some(record.id.clone()),
        user_id: record.user_id.clone(),
        team_id: record.team_id.clone(),
        // An unreadable stored role grants the least.
        role: Role::parse(&record.role).unwrap_or(Role::Viewer),
        models: record.models.clone(),
    }
}
