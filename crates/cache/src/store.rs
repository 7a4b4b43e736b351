//! The exact cache's tiers: in process (byte-bounded, TinyLFU admission, per-entry expiry)
//! and, optionally, Redis shared by every instance. Entries carry their own expiry, checked on
//! every read against the injected clock, so an entry is never served after its TTL from either
//! tier. Purges reach the other instances through a Redis channel.
//!
//! A cache must never fail a request: a Redis error is logged and counted, and the lookup is a
//! miss (or the write is skipped).

use plexus_core::clock::SharedClock;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// The tenant scope (`team:<id>`, `key:<id>` or `global`).
    pub namespace: String,
    /// The model name the client asked for.
    pub model: String,
    /// From `metadata.cache_tags` on the request that filled the entry.
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// `provider/model` that produced the answer.
    pub served_by: String,
    /// The answer as an OpenAI chat completion (JSON text).
    pub body: String,
}

impl Entry {
    pub fn size(&self) -> u32 {
        let n = self.body.len()
            + self.key.len()
            + self.namespace.len()
            + self.model.len()
            + self.served_by.len()
            + self.tags.iter().map(String::len).sum::<usize>()
            + 64;
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// A semantic-cache vector as shared through Redis, so every instance can index it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    pub partition: String,
    /// The exact key of the entry it leads to.
    pub key: String,
    pub vector: Vec<f32>,
    pub expires_ms: i64,
}

/// A verified outcome of the semantic cache's judge, shared so that every instance's pool
/// (and the entry's learned threshold) learns from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The model clients asked for: each has its own pool.
    pub model: String,
    pub partition: String,
    /// The exact key of the entry that was judged.
    pub key: String,
    pub similarity: f32,
    pub correct: bool,
    /// The instance that recorded it (which skips its own announcement).
    pub origin: String,
}

/// What another instance announced.
#[derive(Debug, Clone, PartialEq)]
pub enum Shared {
    Vector(VectorRecord),
    Outcome(OutcomeRecord),
}

/// What to purge; every field given must match (an empty filter purges everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Purge {
    pub namespace: Option<String>,
    pub model: Option<String>,
    pub tag: Option<String>,
    pub key_prefix: Option<String>,
}

impl Purge {
    pub fn matches(&self, e: &Entry) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && self.model.as_ref().is_none_or(|m| *m == e.model)
            && self.tag.as_ref().is_none_or(|t| e.tags.contains(t))
            && self
                .key_prefix
                .as_ref()
                .is_none_or(|p| e.key.starts_with(p.as_str()))
    }
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(150);

/// The shared tier.
pub struct RedisTier {
    client: redis::Client,
    conn: OnceCell<redis::aio::ConnectionManager>,
    prefix: String,
}

impl RedisTier {
    pub fn new(url: &str, prefix: &str) -> Result<RedisTier, redis::RedisError> {
        Ok(RedisTier {
            client: redis::Client::open(url)?,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
        })
    }

    async fn conn(&self) -> Option<redis::aio::ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    REDIS_TIMEOUT * 4,
                    redis::aio::ConnectionManager::new(self.client.clone()),
                )
                .await
                .map_err(|_| ())?
                .map_err(|_| ())
            })
            .await;
        conn.ok().cloned()
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}purge", self.prefix)
    }

    fn vectors_channel(&self) -> String {
        format!("{}vectors", self.prefix)
    }

    fn outcomes_key(&self) -> String {
        format!("{}outcomes", self.prefix)
    }

    /// Shares a judge's outcome: appended to a list that keeps the most recent
    /// [`POOL_CAPACITY`](crate::threshold::POOL_CAPACITY), and announced to the running
    /// instances.
    pub async fn put_outcome(&self, rec: &OutcomeRecord) {
        let Some(mut c) = self.conn().await else {
            return;
        };
        let Ok(text) = serde_json::to_string(rec) else {
            return;
        };
        let keep = crate::threshold::POOL_CAPACITY as isize;
        let list = self.outcomes_key();
        let mut pipe = redis::pipe();
        pipe.rpush(&list, &text)
            .ignore()
            .ltrim(&list, -keep, -1)
            .ignore()
            .publish(self.outcomes_key(), &text)
            .ignore();
        let write = pipe.query_async::<()>(&mut c);
        if !matches!(tokio::time::timeout(REDIS_TIMEOUT, write).await, Ok(Ok(()))) {
            metrics::counter!("plexus_cache_redis_errors_total").increment(1);
        }
    }

    /// The shared outcomes, oldest first (to fill a pool before the first lookup).
    pub async fn load_outcomes(&self) -> Vec<OutcomeRecord> {
        let Some(mut c) = self.conn().await else {
            return Vec::new();
        };
        let read = c.lrange::<_, Vec<String>>(self.outcomes_key(), 0, -1);
        match tokio::time::timeout(REDIS_TIMEOUT * 4, read).await {
            Ok(Ok(texts)) => texts
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect(),
            _ => {
                metrics::counter!("plexus_cache_redis_errors_total").increment(1);
                Vec::new()
            }
        }
    }

    /// Shares a semantic vector: stored until its entry expires, and announced to the running
    /// instances.
    pub async fn put_vector(&self, rec: &VectorRecord, ttl: Duration) {
        let Some(mut c) = self.conn().await else {
            return;
        };
        let Ok(text) = serde_json::to_string(rec) else {
            return;
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = format!("{}v:{}", self.prefix, rec.key);
        let write = async {
            c.pset_ex::<_, _, ()>(key, &text, ms).await?;
            c.publish::<_, _, ()>(self.vectors_channel(), &text).await
        };
        if !matches!(tokio::time::timeout(REDIS_TIMEOUT, write).await, Ok(Ok(()))) {
            metrics::counter!("plexus_cache_redis_errors_total").increment(1);
        }
    }

    /// Every shared vector still live (to rebuild the index at start).
    pub async fn load_vectors(&self) -> Vec<VectorRecord> {
        let Some(mut c) = self.conn().await else {
            return Vec::new();
        };
        let mut keys: Vec<String> = Vec::new();
        {
            let Ok(mut iter) = c
                .scan_match::<_, String>(format!("{}v:*", self.prefix))
                .await
            else {
                return Vec::new();
            };
            while let Some(k) = futures::StreamExt::next(&mut iter).await {
                keys.push(k);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(200) {
            let values: Vec<Option<String>> = c.mget(chunk).await.unwrap_or_default();
            out.extend(
                values
                    .into_iter()
                    .flatten()
                    .filter_map(|t| serde_json::from_str(&t).ok()),
            );
        }
        out
    }

    async fn get(&self, key: &str) -> Option<Entry> {
        let mut c = self.conn().await?;
        let text: Option<String> =
            match tokio::time::timeout(REDIS_TIMEOUT, c.get(self.entry_key(key))).await {
                Ok(Ok(v)) => v,
                _ => {
                    metrics::counter!("plexus_cache_redis_errors_total").increment(1);
                    return None;
                }
            };
        serde_json::from_str(&text?).ok()
    }

    async fn put(&self, entry: &Entry, ttl: Duration) {
        let Some(mut c) = self.conn().await else {
            return;
        };
        let Ok(text) = serde_json::to_string(entry) else {
            return;
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let write = async {
            c.pset_ex::<_, _, ()>(self.entry_key(&entry.key), text, ms)
                .await
        };
        if !matches!(tokio::time::timeout(REDIS_TIMEOUT, write).await, Ok(Ok(()))) {
            metrics::counter!("plexus_cache_redis_errors_total").increment(1);
        }
    }

    /// Deletes the matching entries (a scan over this prefix's entries) and tells the other
    /// instances. Returns how many were deleted here.
    async fn purge(&self, filter: &Purge) -> usize {
        let Some(mut c) = self.conn().await else {
            return 0;
        };
        let pattern = match &filter.key_prefix {
            Some(p) => format!("{}e:{p}*", self.prefix),
            None => format!("{}e:*", self.prefix),
        };
        let mut deleted = 0;
        let mut keys: Vec<String> = Vec::new();
        {
            let Ok(mut iter) = c.scan_match::<_, String>(&pattern).await else {
                return 0;
            };
            while let Some(k) = futures::StreamExt::next(&mut iter).await {
                keys.push(k);
            }
        }
        for chunk in keys.chunks(200) {
            let values: Vec<Option<String>> = match c.mget(chunk).await {
                Ok(v) => v,
                Err(_) => continue,
            };
            let doomed: Vec<&String> = chunk
                .iter()
                .zip(values)
                .filter(|(_, v)| {
                    v.as_deref()
                        .and_then(|t| serde_json::from_str::<Entry>(t).ok())
                        .is_some_and(|e| filter.matches(&e))
                })
                .map(|(k, _)| k)
                .collect();
            if !doomed.is_empty() {
                deleted += c.del::<_, usize>(doomed).await.unwrap_or(0);
            }
        }
        if let Ok(msg) = serde_json::to_string(filter) {
            let _ = c.publish::<_, _, ()>(self.channel(), msg).await;
        }
        deleted
    }
}

/// Both tiers.
pub struct CacheStore {
    local: moka::sync::Cache<String, Arc<Entry>>,
    redis: Option<RedisTier>,
    clock: SharedClock,
}

impl CacheStore {
    pub fn new(max_bytes: u64, redis: Option<RedisTier>, clock: SharedClock) -> CacheStore {
        let local = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &String, e: &Arc<Entry>| e.size())
            .expire_after(EntryExpiry)
            .support_invalidation_closures()
            .build();
        CacheStore {
            local,
            redis,
            clock,
        }
    }

    pub fn redis(&self) -> Option<&RedisTier> {
        self.redis.as_ref()
    }

    fn fresh(&self, e: &Entry) -> bool {
        e.expires_ms > self.clock.now_unix_ms()
    }

    /// The entry under `key`, from this process or else Redis; never an expired one.
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        if let Some(e) = self.local.get(key) {
            if self.fresh(&e) {
                return Some(e);
            }
            self.local.invalidate(key);
        }
        let entry = self.redis.as_ref()?.get(key).await?;
        if !self.fresh(&entry) || entry.key != key {
            return None;
        }
        let entry = Arc::new(entry);
        self.local.insert(key.to_owned(), entry.clone());
        Some(entry)
    }

    pub async fn put(&self, entry: impl Into<Arc<Entry>>) {
        let entry: Arc<Entry> = entry.into();
        let ttl_ms = entry.expires_ms - self.clock.now_unix_ms();
        if ttl_ms <= 0 {
            return;
        }
        if let Some(r) = &self.redis {
            r.put(&entry, Duration::from_millis(ttl_ms as u64)).await;
        }
        self.local.insert(entry.key.clone(), entry);
    }

    /// Purges matching entries from this process only (a message from another instance).
    pub fn purge_local(&self, filter: &Purge) -> usize {
        let before = self.local.iter().filter(|(_, e)| filter.matches(e)).count();
        let f = filter.clone();
        // Cannot fail: invalidation closures are enabled in `new`.
        let _ = self.local.invalidate_entries_if(move |_, e| f.matches(e));
        before
    }

    /// Purges matching entries everywhere: here, in Redis, and (through Redis) on the other
    /// instances. Returns the number of distinct entries removed (the larger tier's count).
    pub async fn purge(&self, filter: &Purge) -> usize {
        let local = self.purge_local(filter);
        let shared = match &self.redis {
            Some(r) => r.purge(filter).await,
            None => 0,
        };
        local.max(shared)
    }

    /// Entries held in this process (for metrics and tests).
    pub fn local_len(&self) -> u64 {
        self.local_size().0
    }

    /// Entries held in this process, and their weight in bytes.
    pub fn local_size(&self) -> (u64, u64) {
        self.local.run_pending_tasks();
        (self.local.entry_count(), self.local.weighted_size())
    }
}

/// Moka expires each entry at its own TTL (wall-clock; reads also check the injected clock).
struct EntryExpiry;

impl moka::Expiry<String, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let ms = value.expires_ms - value.created_ms;
        Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }
}

/// Receives what other instances publish until `stop`: purges are applied to this process's
/// tier, shared vectors and outcomes are handed to `on_shared`. Reconnects after failures.
pub async fn listen(
    store: Arc<CacheStore>,
    on_shared: Arc<dyn Fn(Shared) + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(redis) = store.redis() else {
        return;
    };
    let (purges, vectors, outcomes) = (
        redis.channel(),
        redis.vectors_channel(),
        redis.outcomes_key(),
    );
    while !stop.is_cancelled() {
        let subscribed = async {
            let mut pubsub = redis.client.get_async_pubsub().await?;
            pubsub.subscribe(&purges).await?;
            pubsub.subscribe(&vectors).await?;
            pubsub.subscribe(&outcomes).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(2), subscribed) => r,
        };
        let mut pubsub = match pubsub {
            Ok(Ok(p)) => p,
            _ => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = futures::StreamExt::next(&mut messages) => m,
            };
            let Some(msg) = msg else { break };
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            let channel = msg.get_channel_name();
            if channel == purges {
                if let Ok(filter) = serde_json::from_str::<Purge>(&text) {
                    store.purge_local(&filter);
                }
            } else if channel == outcomes {
                if let Ok(rec) = serde_json::from_str::<OutcomeRecord>(&text) {
                    on_shared(Shared::Outcome(rec));
                }
            } else if let Ok(rec) = serde_json::from_str::<VectorRecord>(&text) {
                on_shared(Shared::Vector(rec));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use plexus_core::clock::ManualClock;

    fn entry(key: &str, model: &str, tags: &[&str], now: i64, ttl_ms: i64) -> Entry {
        Entry {
            key: key.into(),
            namespace: "team:red".into(),
            model: model.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created_ms: now,
            expires_ms: now + ttl_ms,
            served_by: "oai/gpt-4o-mini".into(),
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn entries_expire_on_the_injected_clock() {
        let clock = ManualClock::new(1_000_000);
        let store = CacheStore::new(1 << 20, None, Arc::new(clock.clone()));
        store.put(entry("k", "m", &[], 1_000_000, 5_000)).await;
        assert!(store.get("k").await.is_some());
        clock.advance_ms(4_999);
        assert!(store.get("k").await.is_some());
        clock.advance_ms(1);
        assert!(store.get("k").await.is_none(), "expired at its TTL");
        // An entry already expired is not stored at all.
        store.put(entry("old", "m", &[], 0, 10)).await;
        assert!(store.get("old").await.is_none());
    }

    #[tokio::test]
    async fn purge_filters_combine() {
        let store = CacheStore::new(1 << 20, None, Arc::new(ManualClock::new(0)));
        store.put(entry("a1", "gpt", &["v1"], 0, 60_000)).await;
        store.put(entry("a2", "gpt", &["v2"], 0, 60_000)).await;
        store.put(entry("b1", "claude", &["v1"], 0, 60_000)).await;
        let only = |tag: &str, model: &str| Purge {
            tag: Some(tag.into()),
            model: Some(model.into()),
            ..Purge::default()
        };
        assert_eq!(store.purge(&only("v1", "gpt")).await, 1);
        assert!(store.get("a1").await.is_none());
        assert!(store.get("b1").await.is_some());
        let prefix = Purge {
            key_prefix: Some("b".into()),
            ..Purge::default()
        };
        assert_eq!(store.purge(&prefix).await, 1);
        assert_eq!(
            store.purge(&Purge::default()).await,
            1,
            "a2 is all that is left"
        );
        assert_eq!(store.local_len(), 0);
    }

    #[tokio::test]
    async fn the_local_tier_is_bounded_in_bytes() {
        let store = CacheStore::new(10_000, None, Arc::new(ManualClock::new(0)));
        for i in 0..100 {
            let mut e = entry(&format!("k{i}"), "m", &[], 0, 60_000);
            e.body = "x".repeat(1_000);
            store.put(e).await;
        }
        store.local.run_pending_tasks();
        assert!(store.local.weighted_size() <= 10_000);
        assert!(store.local_len() < 100);
    }
}
