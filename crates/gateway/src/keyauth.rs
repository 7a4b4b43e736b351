//! Virtual-key authentication on the request path: an in-memory cache in front of the store.
//!
//! A hit costs one hash and one constant-time comparison. A miss reads the key once; unknown
//! ids are remembered briefly so a flood of bad keys cannot hammer the database. Revocation
//! and updates invalidate the entry at once on this instance; other instances drop it within
//! the cache's time-to-live.
//!
//! Beside the keys, the cache holds what users and teams are held to (budget and rate limits),
//! so admission reads no database while they are cached.

use plexus_auth::keys;
use plexus_auth::roles::{Principal, Role};
use plexus_limits::rate::{Quota, Subject};
use plexus_limits::{BudgetKey, Limit};
use plexus_store::{KeyRecord, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How long a key stays cached: the longest another instance may honour a revoked key.
pub const KEY_TTL: Duration = Duration::from_secs(1);
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Why a presented credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No key was sent.
    Missing,
    /// Not shaped like a virtual key.
    Malformed,
    Unknown,
    WrongSecret,
    Revoked,
    Expired,
    /// The key store could not be read.
    Unavailable,
    /// A JWT that does not validate.
    JwtInvalid,
    /// A valid JWT whose role is not one of ours.
    JwtRole,
}

impl AuthFailure {
    /// The reason as the audit log records it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::WrongSecret => "wrong_secret",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::Unavailable => "unavailable",
            AuthFailure::JwtInvalid => "jwt_invalid",
            AuthFailure::JwtRole => "jwt_role",
        }
    }

    /// What the caller is told: the same for every wrong key, so a probe learns nothing.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
            AuthFailure::Revoked => "This API key has been revoked.",
            AuthFailure::Expired => "This API key has expired.",
            AuthFailure::Unavailable => "The key store is unavailable; try again.",
            AuthFailure::JwtInvalid => "The bearer token is not valid.",
            AuthFailure::JwtRole => "The token's role is not one of admin, team_admin, member, viewer.",
            AuthFailure::Malformed | AuthFailure::Unknown | AuthFailure::WrongSecret => {
                "Incorrect API key provided."
            }
        }
    }

    pub fn code(self) -> plexus_core::ErrorCode {
        match self {
            AuthFailure::Unavailable => plexus_core::ErrorCode::ServiceUnavailable,
            _ => plexus_core::ErrorCode::InvalidApiKey,
        }
    }
}

#[derive(Clone)]
pub struct KeyAuth {
    store: Store,
    keys: moka::sync::Cache<String, Arc<KeyRecord>>,
    unknown: moka::sync::Cache<String, ()>,
    /// Budgets and rate limits of users and teams, by id, refreshed like keys (one cache per
    /// scope so a lookup borrows the principal's id instead of building a key).
    users: moka::sync::Cache<String, OwnerLimits>,
    teams: moka::sync::Cache<String, OwnerLimits>,
}

/// What a user or a team is held to; the default (nothing) also stands for an unknown owner.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnerLimits {
    /// The budget (`None`: none).
    pub budget: Option<Limit>,
    /// The rate limits (empty: none).
    pub quota: Quota,
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
            users: owner_cache(),
            teams: owner_cache(),
        }
    }

    /// A user's (`scope` `user`) or team's (`team`) limits: cached, or read once and cached.
    async fn owner(&self, scope: &'static str, id: &str) -> Result<OwnerLimits, StoreError> {
        let user = scope == "user";
        let cache = if user { &self.users } else { &self.teams };
        if let Some(l) = cache.get(id) {
            return Ok(l);
        }
        let loaded = if user {
            Box::pin(self.store.get_user(id)).await.map(|u| {
                u.map(|u| OwnerLimits {
                    budget: budget_of(&u.limits),
                    quota: limits_quota(&u.limits),
                })
            })
        } else {
            Box::pin(self.store.get_team(id)).await.map(|t| {
                t.map(|t| OwnerLimits {
                    budget: budget_of(&t.limits),
                    quota: limits_quota(&t.limits),
                })
            })
        };
        let l = loaded?.unwrap_or_default();
        cache.insert(id.to_owned(), l);
        Ok(l)
    }

    /// The key's record: cached (by authentication), or read once.
    async fn key_record(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        match self.keys.get(key_id) {
            Some(r) => Ok(Some(r)),
            None => Ok(Box::pin(self.store.get_key(key_id)).await?.map(Arc::new)),
        }
    }

    /// The rate limits that apply to a principal: one subject per scope (`key` with the key's
    /// id, `user`, `team`) that has any. No database access while the key and its owners are
    /// cached, and no allocation when none of them has a limit (the empty `Vec`).
    pub async fn rate_subjects(&self, principal: &Principal) -> Result<Vec<Subject>, StoreError> {
        let mut out = Vec::new();
        if let Some(key_id) = &principal.key_id {
            if let Some(record) = self.key_record(key_id).await? {
                let quota = limits_quota(&record.limits);
                if !quota.is_empty() {
                    out.push(Subject::new("key", key_id.as_str(), quota));
                }
            }
        }
        for (scope, id) in [("user", &principal.user_id), ("team", &principal.team_id)] {
            let Some(id) = id else { continue };
            let quota = self.owner(scope, id).await?.quota;
            if !quota.is_empty() {
                out.push(Subject::new(scope, id.as_str(), quota));
            }
        }
        Ok(out)
    }

    /// The budgets that apply to a principal: its key's, its user's and its team's.
    pub async fn limits_for(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(BudgetKey, Limit)>, StoreError> {
        let mut out = Vec::new();
        if let Some(key_id) = &principal.key_id {
            if let Some(record) = self.key_record(key_id).await? {
                if let Some(limit) = budget_of(&record.limits) {
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
            if let Some(limit) = self.owner(scope, id).await?.budget {
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

    /// Checks a presented virtual key.
    pub async fn authenticate(&self, key: &str, now_ms: i64) -> Result<Principal, AuthFailure> {
        let id = keys::id_of(key).ok_or(AuthFailure::Malformed)?;
        let record = match self.keys.get(id) {
            Some(r) => r,
            None => {
                if self.unknown.contains_key(id) {
                    return Err(AuthFailure::Unknown);
                }
                // Boxed (as every store read here): the miss path's database future would
                // otherwise be carried, and moved, by every request's future.
                match Box::pin(self.store.get_key(id)).await {
                    Ok(Some(r)) => {
                        let r = Arc::new(r);
                        self.keys.insert(id.to_owned(), r.clone());
                        r
                    }
                    Ok(None) => {
                        self.unknown.insert(id.to_owned(), ());
                        return Err(AuthFailure::Unknown);
                    }
                    Err(e) => {
                        tracing::error!(message = "Key lookup failed.", error = %e);
                        return Err(AuthFailure::Unavailable);
                    }
                }
            }
        };
        if !keys::verify(key, &record.key_hash) {
            return Err(AuthFailure::WrongSecret);
        }
        if record.revoked_at.is_some() {
            return Err(AuthFailure::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= now_ms) {
            return Err(AuthFailure::Expired);
        }
        Ok(principal_of(&record))
    }

    /// After a change to the key: this instance sees it at once.
    pub fn invalidate(&self, id: &str) {
        self.keys.invalidate(id);
        self.unknown.invalidate(id);
    }

    /// After a change to a user: this instance applies its new budget and rate limits at once
    /// (other instances within the cache's time-to-live).
    pub fn invalidate_user(&self, id: &str) {
        self.users.invalidate(id);
    }

    /// After a change to a team, like `invalidate_user`.
    pub fn invalidate_team(&self, id: &str) {
        self.teams.invalidate(id);
    }

    /// A just-created key works at once, even if a lookup of its id missed a moment ago.
    pub fn created(&self, record: KeyRecord) {
        self.unknown.invalidate(&record.id);
        self.keys.insert(record.id.clone(), Arc::new(record));
    }
}

fn owner_cache() -> moka::sync::Cache<String, OwnerLimits> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(KEY_TTL)
        .build()
}

/// Rate limits from stored fields; a missing or non-positive value is no limit (the admin API
/// only stores positive ones).
pub fn quota_of(rpm: Option<i64>, tpm: Option<i64>, tpd: Option<i64>, par: Option<i64>) -> Quota {
    let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0);
    Quota {
        rpm: positive(rpm),
        tpm: positive(tpm),
        tpd: positive(tpd),
        max_parallel: positive(par),
    }
}

/// The rate limits of a key's, user's or team's stored limits.
fn limits_quota(l: &plexus_protocol::admin::Limits) -> Quota {
    quota_of(l.rpm, l.tpm, l.tpd, l.max_parallel)
}

/// The budget of a key's, user's or team's stored limits.
fn budget_of(l: &plexus_protocol::admin::Limits) -> Option<Limit> {
    limit_of(
        l.max_budget_usd.map(plexus_protocol::money::Nanos::usd),
        l.budget_period.as_deref(),
    )
}

/// A budget from stored fields; no period means one that never resets.
pub fn limit_of(usd: Option<f64>, period: Option<&str>) -> Option<Limit> {
    let usd = usd?;
    let period_ms = period
        .and_then(plexus_core::config::parse_duration)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Some(Limit {
        max: plexus_protocol::money::Nanos::from_usd(usd),
        period_ms,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use plexus_store::{TeamRecord, UserRecord};
    use secrecy::ExposeSecret;

    fn key(id: &str, hash: &str, team: Option<&str>, user: Option<&str>) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            key_hash: hash.into(),
            name: id.into(),
            team_id: team.map(str::to_owned),
            user_id: user.map(str::to_owned),
            role: "member".into(),
            models: Vec::new(),
            metadata: serde_json::json!({}),
            expires_at: None,
            limits: Default::default(),
            created_at: 1,
            revoked_at: None,
            rotated_from: None,
        }
    }

    #[test]
    fn only_positive_stored_values_are_limits() {
        let q = quota_of(Some(5), Some(0), Some(-3), None);
        assert_eq!(
            q,
            Quota {
                rpm: Some(5),
                ..Quota::default()
            }
        );
        assert!(quota_of(None, Some(0), None, Some(-1)).is_empty());
    }

    /// One subject per scope with a limit, from the caches once they are warm (the database is
    /// closed by then), nothing (and no allocation) for a principal without limits, and an
    /// admin change applied at once after invalidation.
    #[tokio::test]
    async fn rate_subjects_per_scope_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let mut team = TeamRecord {
            id: "red".into(),
            name: "red".into(),
            org_id: None,
            limits: plexus_protocol::admin::Limits {
                max_budget_usd: Some(plexus_protocol::money::Nanos::from_usd(2.0)),
                rpm: Some(100),
                max_parallel: Some(8),
                ..Default::default()
            },
            metadata: serde_json::json!({}),
            created_at: 1,
        };
        store.insert_team(&team).await.unwrap();
        let user = |id: &str, tpm: Option<i64>| UserRecord {
            id: id.into(),
            name: id.into(),
            team_id: None,
            role: "member".into(),
            limits: plexus_protocol::admin::Limits {
                tpm,
                ..Default::default()
            },
            created_at: 1,
        };
        store.insert_user(&user("ada", Some(1000))).await.unwrap();
        store.insert_user(&user("bob", None)).await.unwrap();
        let limited = keys::generate();
        let mut record = key(&limited.id, &limited.hash, Some("red"), Some("ada"));
        record.limits.tpd = Some(50_000);
        store.insert_key(&record).await.unwrap();
        let plain = keys::generate();
        store
            .insert_key(&key(&plain.id, &plain.hash, None, Some("bob")))
            .await
            .unwrap();

        let auth = KeyAuth::new(store.clone());
        let ada = auth
            .authenticate(limited.key.expose_secret(), 2)
            .await
            .unwrap();
        let bob = auth
            .authenticate(plain.key.expose_secret(), 2)
            .await
            .unwrap();
        let expected = vec![
            Subject::new(
                "key",
                limited.id.as_str(),
                Quota {
                    tpd: Some(50_000),
                    ..Quota::default()
                },
            ),
            Subject::new(
                "user",
                "ada",
                Quota {
                    tpm: Some(1000),
                    ..Quota::default()
                },
            ),
            Subject::new(
                "team",
                "red",
                Quota {
                    rpm: Some(100),
                    max_parallel: Some(8),
                    ..Quota::default()
                },
            ),
        ];
        assert_eq!(auth.rate_subjects(&ada).await.unwrap(), expected);
        let none = auth.rate_subjects(&bob).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(none.capacity(), 0, "no limits, no allocation");
        assert!(auth
            .rate_subjects(&Principal::master())
            .await
            .unwrap()
            .is_empty());

        // An admin change reaches this instance at once once the team is invalidated; the
        // budget and the rate limits share the entry.
        team.limits.rpm = Some(7);
        team.limits.max_parallel = None;
        store.update_team(&team).await.unwrap();
        auth.invalidate_team("red");
        let subjects = auth.rate_subjects(&ada).await.unwrap();
        assert_eq!(
            subjects[2].quota,
            Quota {
                rpm: Some(7),
                ..Quota::default()
            }
        );

        // Warm caches answer without the database (refilled just before it closes, well
        // within their time-to-live).
        auth.invalidate(&limited.id);
        auth.invalidate_user("ada");
        let ada = auth
            .authenticate(limited.key.expose_secret(), 2)
            .await
            .unwrap();
        assert_eq!(auth.rate_subjects(&ada).await.unwrap(), subjects);
        auth.invalidate(&plain.id);
        auth.invalidate_user("bob");
        let bob = auth
            .authenticate(plain.key.expose_secret(), 2)
            .await
            .unwrap();
        assert!(auth.rate_subjects(&bob).await.unwrap().is_empty());
        store.close().await;
        assert_eq!(auth.rate_subjects(&ada).await.unwrap(), subjects);
        assert!(auth.rate_subjects(&bob).await.unwrap().is_empty());
        let budgets = auth.limits_for(&ada).await.unwrap();
        assert_eq!(budgets.len(), 1);
        assert_eq!(budgets[0].0.scope, "team");
        auth.invalidate_user("ada");
        assert!(
            auth.rate_subjects(&ada).await.is_err(),
            "an invalidated owner is read again"
        );
    }
}
