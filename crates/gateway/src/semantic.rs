//! The semantic cache: answers to questions that mean the same.
//!
//! The question (the last user message, or the whole conversation) is embedded and looked up in
//! the vector index of its partition: requests that agree on everything else (tenant, model,
//! route, system prompt, tools, parameters). A neighbour at least as similar as its threshold
//! is served, if its exact entry is still live in the store (expired or purged entries are
//! dropped from the index as they are met).
//!
//! Without a judge, the configured global threshold alone decides. With one, thresholds are
//! learned from verified outcomes, in the spirit of vCache: every outcome (a similarity and
//! whether the cached answer was right for that question) is kept per entry, and an entry
//! serves at the lowest similarity where the upper confidence bound of its error rate stays
//! under `max_false_hit_rate`; a wrong answer at some similarity raises the entry's threshold
//! above it. All outcomes of a model (the name clients ask for) together set a floor
//! (`threshold::Pool`) that every entry of that model serves at or above: the lowest
//! similarity at which the pooled error rate's bound holds. Per model, because how far apart two
//! questions may be and still share an answer depends on what answers them. A pool starts empty,
//! and then its floor is `+inf`: no semantic hit is served before the evidence allows.
//!
//! The outcomes come from the judge, in two ways. It re-asks the model for a sampled share of
//! served hits and compares the answers (`sample_rate`). And it explores at no upstream cost:
//! a lookup that refused a candidate at or above the global threshold goes upstream anyway, so
//! once its fresh answer is in, the candidate's cached answer is compared with it
//! (`explore_rate`). That is how an empty pool learns without serving anything.
//!
//! With a Redis tier, instances share vectors and outcomes (announced on channels; the
//! outcomes also kept in a bounded list), and each loads both before its first lookup.

use crate::ctx::Origin;
use crate::Gateway;
use plexus_cache::index::VectorIndex;
use plexus_cache::store::{CacheStore, Entry, OutcomeRecord, VectorRecord};
use plexus_cache::threshold::{Outcomes, Pool, POOL_CAPACITY};
use plexus_core::config::{EmbedderSettings, SemanticInput, SemanticSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Neighbours examined per lookup.
const CANDIDATES: usize = 4;

/// Where embeddings come from.
enum Embedding {
    Local(Arc<dyn plexus_embed::Embedder>),
    /// A configured embeddings model, called through the gateway's own client.
    Model(String),
}

struct Member {
    key: String,
    outcomes: Mutex<Outcomes>,
}

#[derive(Default)]
struct Partition {
    /// Shared so that searches, inserts and removals (which may compact the graph) run
    /// outside the partitions' lock.
    index: Option<Arc<VectorIndex>>,
    members: HashMap<u64, Arc<Member>>,
    by_key: HashMap<String, u64>,
}

pub struct SemanticCache {
    settings: SemanticSettings,
    embedding: Embedding,
    store: Arc<CacheStore>,
    partitions: RwLock<HashMap<String, Partition>>,
    next_id: AtomicU64,
    /// The index is rebuilt from the shared tier before the first lookup.
    loaded: tokio::sync::OnceCell<()>,
    /// Every verified outcome, by model: the floors that keep the false-hit rate under the
    /// bound while entries lack evidence of their own (unused without a judge: nothing is
    /// verified, and the global threshold decides).
    pools: RwLock<HashMap<String, Arc<ModelPool>>>,
    /// This instance, in the outcomes it shares through Redis.
    origin: String,
    /// Background embeddings (indexing, judging) running at once: at most half the cores, so
    /// lookups, which a request waits for, keep the rest.
    background_permits: tokio::sync::Semaphore,
    /// Background jobs admitted and not finished; past `MAX_BACKGROUND_QUEUED` new ones are
    /// dropped (a cache is best-effort; memory is not).
    background_queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// Background jobs that may wait for an embedding permit.
const MAX_BACKGROUND_QUEUED: usize = 1024;

/// A background job's place in the queue, given back when it is dropped.
pub struct BackgroundTicket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BackgroundTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pooled outcomes of one model.
struct ModelPool {
    pool: Mutex<Pool>,
    /// The pool's floor (`f32` bits), read on every lookup without the pool's lock.
    floor: AtomicU32,
}

/// A candidate the lookup refused although it reached the global threshold: once the fresh
/// answer is in, the exploring judge compares it with this entry's.
#[derive(Clone)]
pub struct Probe {
    pub model: String,
    pub partition: String,
    pub entry: Arc<Entry>,
    pub similarity: f32,
}

/// What a lookup found.
#[derive(Default)]
pub struct Lookup {
    pub hit: Option<(Arc<Entry>, f32)>,
    pub probe: Option<Probe>,
}

/// The cache-wide state of the learned thresholds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SemanticStats {
    /// Indexed entries over every partition.
    pub entries: usize,
    pub partitions: usize,
    /// Whether served hits are bounded by verified outcomes (a judge is configured).
    pub bounded: bool,
    /// Outcomes over every model's pool, and how many were wrong.
    pub outcomes: usize,
    pub wrong: usize,
    /// Each model's pool.
    pub models: std::collections::BTreeMap<String, PoolStats>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStats {
    pub outcomes: usize,
    pub wrong: usize,
    /// The similarity every hit needs at least (`None`: nothing is served yet, or no bound).
    pub floor: Option<f32>,
    pub serving: bool,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl SemanticCache {
    pub fn new(
        settings: &SemanticSettings,
        store: Arc<CacheStore>,
    ) -> Result<Self, crate::StartupError> {
        let embedding = match &settings.embedder {
            EmbedderSettings::Local { path } => {
                let model = plexus_embed::MiniLm::load(path).map_err(|e| {
                    crate::StartupError::setting(
                        "cache.semantic.embedder",
                        format!("cannot load {}: {e}", path.display()),
                    )
                })?;
                Embedding::Local(Arc::new(model))
            }
            EmbedderSettings::Model { model } => Embedding::Model(model.clone()),
        };
        Ok(SemanticCache {
            settings: settings.clone(),
            embedding,
            store,
            partitions: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            loaded: tokio::sync::OnceCell::new(),
            pools: RwLock::new(HashMap::new()),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            background_permits: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            ),
            background_queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    pub fn input(&self) -> SemanticInput {
        self.settings.input
    }

    /// Embeds one text (off the async threads for the local model).
    /// A model-based embedding is a system call through the pipeline, made for `origin`.
    pub async fn embed(&self, gateway: &Gateway, origin: &Origin, text: &str) -> Option<Vec<f32>> {
        match &self.embedding {
            Embedding::Local(model) => {
                let model = model.clone();
                let text = text.to_owned();
                let out = tokio::task::spawn_blocking(move || model.embed(&[text.as_str()]))
                    .await
                    .ok()?
                    .map_err(|e| tracing::warn!(message = "Embedding failed.", error = %e))
                    .ok()?;
                out.into_iter().next()
            }
            Embedding::Model(name) => gateway.embed_text(origin, name, text).await,
        }
    }

    /// A place for a background job, or `None` when too many wait (the job is skipped).
    pub fn admit_background(&self) -> Option<BackgroundTicket> {
        let queued = &self.background_queued;
        if queued.fetch_add(1, Ordering::Relaxed) >= MAX_BACKGROUND_QUEUED {
            queued.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("plexus_cache_background_dropped_total").increment(1);
            return None;
        }
        Some(BackgroundTicket(queued.clone()))
    }

    /// Embeds for a background job, within the background's share of the cores.
    pub async fn embed_background(
        &self,
        gateway: &Gateway,
        origin: &Origin,
        text: &str,
    ) -> Option<Vec<f32>> {
        let _permit = self.background_permits.acquire().await.ok()?;
        self.embed(gateway, origin, text).await
    }

    fn bounded(&self) -> bool {
        self.settings.judge.is_some() && self.settings.max_false_hit_rate < 1.0
    }

    /// The similarity every hit of `model` needs at least: its pool's floor, `+inf` before it
    /// has one, `-inf` when nothing is bounded.
    fn floor(&self, model: &str) -> f32 {
        if !self.bounded() {
            return f32::NEG_INFINITY;
        }
        match read(&self.pools).get(model) {
            Some(p) => f32::from_bits(p.floor.load(Ordering::Relaxed)),
            None => f32::INFINITY,
        }
    }

    /// The best live neighbour at or above its threshold, with its similarity; else, when the
    /// exploring judge samples this lookup, the best live candidate refused at or above the
    /// global threshold.
    pub async fn lookup(
        &self,
        gateway: &Gateway,
        origin: &Origin,
        model: &str,
        question: &str,
        partition: &str,
    ) -> Lookup {
        self.loaded
            .get_or_init(|| self.load_shared(gateway.clock().now_unix_ms()))
            .await;
        if !read(&self.partitions).contains_key(partition) {
            return Lookup::default();
        }
        let Some(vector) = self.embed(gateway, origin, question).await else {
            return Lookup::default();
        };
        let Some(index) = read(&self.partitions)
            .get(partition)
            .and_then(|p| p.index.clone())
        else {
            return Lookup::default();
        };
        let Ok(hits) = index.search(&vector, CANDIDATES) else {
            return Lookup::default();
        };
        let candidates: Vec<(u64, f32, Arc<Member>)> = {
            let parts = read(&self.partitions);
            let Some(p) = parts.get(partition) else {
                return Lookup::default();
            };
            hits.into_iter()
                .filter_map(|(id, s)| p.members.get(&id).map(|m| (id, s, m.clone())))
                .collect()
        };
        let floor = self.floor(model);
        let global = self.settings.threshold;
        let mut refused = Vec::new();
        for (id, similarity, member) in candidates {
            let threshold = member
                .outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .threshold(global, self.settings.max_false_hit_rate)
                .max(floor);
            if similarity < threshold {
                if similarity >= global {
                    refused.push((id, similarity, member));
                }
                continue;
            }
            match self.store.get(&member.key).await {
                Some(entry) => {
                    return Lookup {
                        hit: Some((entry, similarity)),
                        probe: None,
                    }
                }
                None => self.remove(partition, id),
            }
        }
        let explore_rate = self.settings.judge.as_ref().map_or(0.0, |j| j.explore_rate);
        if refused.is_empty() || rand::random::<f64>() >= explore_rate {
            return Lookup::default();
        }
        for (id, similarity, member) in refused {
            match self.store.get(&member.key).await {
                Some(entry) => {
                    return Lookup {
                        hit: None,
                        probe: Some(Probe {
                            model: model.to_owned(),
                            partition: partition.to_owned(),
                            entry,
                            similarity,
                        }),
                    }
                }
                None => self.remove(partition, id),
            }
        }
        Lookup::default()
    }

    /// Indexes the question of a freshly stored entry, and shares it through Redis.
    pub async fn insert(
        &self,
        gateway: &Gateway,
        origin: &Origin,
        question: &str,
        partition: &str,
        entry: &Entry,
    ) {
        let Some(vector) = self.embed_background(gateway, origin, question).await else {
            return;
        };
        // Shared first: once this instance lists the entry, other instances can find it too.
        if let Some(redis) = self.store.redis() {
            let ttl_ms = entry.expires_ms - entry.created_ms;
            let rec = VectorRecord {
                partition: partition.to_owned(),
                key: entry.key.clone(),
                vector: vector.clone(),
                expires_ms: entry.expires_ms,
            };
            redis
                .put_vector(&rec, std::time::Duration::from_millis(ttl_ms.max(1) as u64))
                .await;
        }
        self.insert_vector(partition, &entry.key, &vector);
    }

    /// Indexes every vector the shared tier holds, then learns from the outcomes it holds
    /// (once, before the first lookup).
    async fn load_shared(&self, now_ms: i64) {
        let Some(redis) = self.store.redis() else {
            return;
        };
        let records = redis.load_vectors().await;
        let n = records.len();
        for rec in records {
            self.accept(rec, now_ms);
        }
        let outcomes = if self.settings.judge.is_some() {
            redis.load_outcomes().await
        } else {
            Vec::new()
        };
        let judged = outcomes.len();
        for rec in outcomes {
            self.apply_outcome(&rec);
        }
        tracing::info!(
            message = "Semantic cache rebuilt from Redis.",
            vectors = n,
            outcomes = judged
        );
    }

    /// Indexes a vector shared by another instance (or loaded at start).
    pub fn accept(&self, rec: VectorRecord, now_ms: i64) {
        if rec.expires_ms > now_ms {
            self.insert_vector(&rec.partition, &rec.key, &rec.vector);
        }
    }

    pub fn insert_vector(&self, partition: &str, key: &str, vector: &[f32]) {
        let (index, id, fresh) = {
            let mut parts = write(&self.partitions);
            let p = parts.entry(partition.to_owned()).or_default();
            let index = p
                .index
                .get_or_insert_with(|| Arc::new(VectorIndex::new(vector.len())))
                .clone();
            let (id, fresh) = match p.by_key.get(key) {
                Some(id) => (*id, false),
                None => (self.next_id.fetch_add(1, Ordering::Relaxed), true),
            };
            p.by_key.insert(key.to_owned(), id);
            p.members.entry(id).or_insert_with(|| {
                Arc::new(Member {
                    key: key.to_owned(),
                    outcomes: Mutex::new(Outcomes::default()),
                })
            });
            (index, id, fresh)
        };
        if index.insert(id, vector).is_err() && fresh {
            self.forget(partition, id);
        }
    }

    /// Drops an entry from its partition; the index removal (which may compact the graph)
    /// runs outside the partitions' lock.
    fn remove(&self, partition: &str, id: u64) {
        if let Some(index) = self.forget(partition, id) {
            index.remove(id);
        }
    }

    fn forget(&self, partition: &str, id: u64) -> Option<Arc<VectorIndex>> {
        let mut parts = write(&self.partitions);
        let p = parts.get_mut(partition)?;
        let index = p.index.clone();
        if let Some(m) = p.members.remove(&id) {
            p.by_key.remove(&m.key);
        }
        if p.members.is_empty() {
            parts.remove(partition);
        }
        index
    }

    /// Records a verified outcome (from the judge), and shares it with the other instances.
    pub async fn record_outcome(&self, rec: OutcomeRecord) {
        metrics::counter!("plexus_cache_judged_total", "outcome" => if rec.correct { "agree" } else { "disagree" }).increment(1);
        self.apply_outcome(&rec);
        if let (Some(redis), Some(_)) = (self.store.redis(), &self.settings.judge) {
            redis.put_outcome(&rec).await;
        }
    }

    /// An outcome of this instance's judge, ready to record and share.
    pub fn outcome(
        &self,
        model: &str,
        partition: &str,
        key: &str,
        similarity: f32,
        correct: bool,
    ) -> OutcomeRecord {
        OutcomeRecord {
            model: model.to_owned(),
            partition: partition.to_owned(),
            key: key.to_owned(),
            similarity,
            correct,
            origin: self.origin.clone(),
        }
    }

    /// Learns from an outcome another instance shared. Until this instance has loaded the
    /// shared outcomes (before its first lookup) the load will bring it, so it is skipped here.
    pub fn accept_outcome(&self, rec: OutcomeRecord) {
        if rec.origin != self.origin && self.loaded.initialized() {
            self.apply_outcome(&rec);
        }
    }

    fn apply_outcome(&self, rec: &OutcomeRecord) {
        if self.settings.judge.is_some() {
            let pool = read(&self.pools).get(&rec.model).cloned();
            let pool = pool.unwrap_or_else(|| {
                write(&self.pools)
                    .entry(rec.model.clone())
                    .or_insert_with(|| {
                        let pool = Pool::new(POOL_CAPACITY, self.settings.max_false_hit_rate);
                        Arc::new(ModelPool {
                            floor: AtomicU32::new(pool.floor().to_bits()),
                            pool: Mutex::new(pool),
                        })
                    })
                    .clone()
            });
            let mut p = pool.pool.lock().unwrap_or_else(|p| p.into_inner());
            p.record(rec.similarity, rec.correct);
            pool.floor.store(p.floor().to_bits(), Ordering::Relaxed);
        }
        let parts = read(&self.partitions);
        let Some(p) = parts.get(&rec.partition) else {
            return;
        };
        let Some(member) = p.by_key.get(&rec.key).and_then(|id| p.members.get(id)) else {
            return;
        };
        member
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(rec.similarity, rec.correct);
    }

    pub fn stats(&self) -> SemanticStats {
        let (entries, partitions) = {
            let parts = read(&self.partitions);
            (parts.values().map(|p| p.members.len()).sum(), parts.len())
        };
        let pools: Vec<(String, Arc<ModelPool>)> = read(&self.pools)
            .iter()
            .map(|(m, p)| (m.clone(), p.clone()))
            .collect();
        let mut models = std::collections::BTreeMap::new();
        for (model, pool) in pools {
            let (outcomes, wrong) = pool.pool.lock().unwrap_or_else(|p| p.into_inner()).counts();
            let floor = self.floor(&model);
            models.insert(
                model,
                PoolStats {
                    outcomes,
                    wrong,
                    floor: floor.is_finite().then_some(floor),
                    serving: floor < f32::INFINITY,
                },
            );
        }
        SemanticStats {
            entries,
            partitions,
            bounded: self.bounded(),
            outcomes: models.values().map(|p| p.outcomes).sum(),
            wrong: models.values().map(|p| p.wrong).sum(),
            models,
        }
    }

    pub fn judge(&self) -> Option<&plexus_core::config::JudgeSettings> {
        self.settings.judge.as_ref()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use plexus_core::clock::SystemClock;

    fn cache(judge: bool) -> SemanticCache {
        let settings = SemanticSettings {
            embedder: EmbedderSettings::Model {
                model: "embed".into(),
            },
            threshold: 0.9,
            input: SemanticInput::LastUser,
            max_false_hit_rate: 0.2,
            judge: judge.then_some(plexus_core::config::JudgeSettings {
                sample_rate: 1.0,
                explore_rate: 1.0,
                agreement: 0.9,
            }),
        };
        let store = Arc::new(CacheStore::new(1 << 20, None, Arc::new(SystemClock)));
        SemanticCache::new(&settings, store).unwrap()
    }

    #[test]
    fn background_work_past_the_queue_bound_is_dropped() {
        let c = cache(true);
        let held: Vec<_> = (0..MAX_BACKGROUND_QUEUED)
            .map(|_| c.admit_background().unwrap())
            .collect();
        assert!(c.admit_background().is_none(), "the queue is full");
        drop(held);
        assert!(c.admit_background().is_some(), "tickets are given back");
    }

    #[test]
    fn each_model_has_its_own_pool_and_none_serves_without_evidence() {
        let c = cache(true);
        assert_eq!(c.floor("a"), f32::INFINITY);
        for _ in 0..40 {
            c.apply_outcome(&c.outcome("a", "p", "k", 0.97, true));
        }
        assert_eq!(c.floor("a"), 0.97);
        assert_eq!(c.floor("b"), f32::INFINITY, "a's evidence is not b's");
        let stats = c.stats();
        assert_eq!((stats.outcomes, stats.models["a"].outcomes), (40, 40));
        assert!(stats.models["a"].serving && stats.bounded);
        // Without a judge nothing is verified: the global threshold alone decides.
        let unjudged = cache(false);
        assert_eq!(unjudged.floor("a"), f32::NEG_INFINITY);
        assert!(!unjudged.stats().bounded);
    }
}
