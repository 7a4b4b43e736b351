//! Virtual-key authentication on the request path: an in-memory cache in front of the store.
//!
//! A hit costs one hash and one constant-time comparison. A miss reads the key once; unknown
//! ids are remembered briefly so a flood of bad keys cannot hammer the database. Revocation
//! and updates invalidate the entry at once on this instance; other instances drop it within
//! the cache's time-to-live.

use plexus_auth::keys;
use plexus_auth::roles::{Principal, Role};
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
        }
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
