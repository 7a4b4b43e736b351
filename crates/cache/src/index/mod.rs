//! The in-process vector index of the semantic cache.
//!
//! [`VectorIndex`] maps `u64` entry ids to L2-normalized embeddings and answers "the `k`
//! entries most similar to this query" by cosine similarity (the dot product, since the caller
//! normalizes). It takes inserts, replacements and deletes while it serves searches.
//!
//! EVALUATION_PLACEHOLDER

use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

mod distance;
mod hnsw;
#[cfg(test)]
mod tests;

use hnsw::{Hnsw, Params, Visited};

/// Tuning of a [`VectorIndex`]. The defaults suit 384-dimensional sentence embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexConfig {
    /// Links per node on the upper layers; layer 0 keeps up to `2 * m`. From 2 to 64.
    pub m: usize,
    /// Beam width while inserting: higher builds a better graph, more slowly.
    pub ef_construction: usize,
    /// Beam width while searching (raised to `k` when `k` is larger): higher finds more of the
    /// true nearest neighbours, more slowly.
    pub ef_search: usize,
    /// Below this many live entries a search scans them all (exact); from it on it walks the
    /// graph. The graph is kept up to date either way, so crossing the line costs nothing.
    pub exact_below: usize,
    /// Rebuild the graph once tombstones exceed this fraction of its slots. Tombstones only
    /// accumulate when deletes outnumber inserts, because inserts reuse tombstoned slots.
    pub max_tombstone_ratio: f32,
    /// Whether the `remove` that crosses `max_tombstone_ratio` runs [`VectorIndex::compact`]
    /// itself (on its own thread, outside the lock). Turn off to call `compact` from a
    /// maintenance task instead.
    pub auto_compact: bool,
    /// Seed of the level generator: the same inserts build the same graph.
    pub seed: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 128,
            ef_search: 128,
            exact_below: 2_000,
            max_tombstone_ratio: 0.25,
            auto_compact: true,
            seed: 0x5EED_CAC4E,
        }
    }
}

impl IndexConfig {
    fn validate(&self) -> Result<(), IndexError> {
        if !(2..=64).contains(&self.m) {
            return Err(IndexError::InvalidConfig("m must be between 2 and 64"));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(IndexError::InvalidConfig(
                "ef_construction and ef_search must be positive",
            ));
        }
        if !(self.max_tombstone_ratio > 0.0 && self.max_tombstone_ratio < 1.0) {
            return Err(IndexError::InvalidConfig(
                "max_tombstone_ratio must be between 0 and 1 (exclusive)",
            ));
        }
        Ok(())
    }
}

/// What the index refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("the vector has {actual} dimensions, the index {expected}")]
    DimensionMismatch { expected: usize, actual: usize },
    #[error("the vector has a component that is NaN or infinite")]
    NonFinite,
    #[error("invalid vector index configuration: {0}")]
    InvalidConfig(&'static str),
}

/// A snapshot of the index's size, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Live (searchable) entries.
    pub len: usize,
    /// Graph slots: live entries plus tombstones.
    pub slots: usize,
    /// Deleted entries whose slot awaits reuse or a rebuild.
    pub tombstones: usize,
    /// Layers of the graph (0 when empty).
    pub layers: usize,
    /// Whether a search now scans (below [`IndexConfig::exact_below`]) rather than walks the graph.
    pub exact: bool,
}

/// A change made while a compaction builds its new graph, replayed onto it before the swap.
enum Op {
    Insert(u64, Box<[f32]>),
    Remove(u64),
}

struct State {
    graph: Hnsw,
    /// `Some` while a compaction runs: the changes its new graph has not seen yet.
    pending: Option<Vec<Op>>,
}

/// An HNSW graph with exact search below a measured size, tombstoned deletes, slot reuse and
/// compaction; safe to share between threads (`Arc<VectorIndex>`).
///
/// Searches share a read lock; inserts and removes take the write lock for the time of one
/// graph insertion (well under a millisecond at 100k entries of 384 dimensions, see the
/// module docs). A compaction builds its new graph outside the lock.
pub struct VectorIndex {
    dim: usize,
    config: IndexConfig,
    state: RwLock<State>,
    /// Held by the one compaction that may run at a time.
    compaction: Mutex<()>,
    /// Reusable visited sets for concurrent searches.
    scratch: Mutex<Vec<Visited>>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dim", &self.dim)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl VectorIndex {
    /// An empty index of `dim`-dimensional vectors with the default configuration.
    pub fn new(dim: usize) -> Self {
        Self::build(dim, IndexConfig::default())
    }

    /// An empty index with the given configuration.
    pub fn with_config(dim: usize, config: IndexConfig) -> Result<Self, IndexError> {
        config.validate()?;
        Ok(Self::build(dim, config))
    }

    fn build(dim: usize, config: IndexConfig) -> Self {
        let graph = Hnsw::new(Self::params(dim, &config));
        Self {
            dim,
            config,
            state: RwLock::new(State {
                graph,
                pending: None,
            }),
            compaction: Mutex::new(()),
            scratch: Mutex::new(Vec::new()),
        }
    }

    fn params(dim: usize, config: &IndexConfig) -> Params {
        Params {
            dim,
            m: config.m,
            ef_construction: config.ef_construction,
            seed: config.seed,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.read().graph.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: u64) -> bool {
        self.read().graph.contains(id)
    }

    pub fn stats(&self) -> IndexStats {
        let state = self.read();
        let graph = &state.graph;
        IndexStats {
            len: graph.len(),
            slots: graph.slots(),
            tombstones: graph.tombstones(),
            layers: if graph.slots() == 0 {
                0
            } else {
                graph.max_level() + 1
            },
            exact: graph.len() < self.config.exact_below,
        }
    }

    /// Adds `vector` under `id`, replacing the vector `id` had. The caller L2-normalizes it.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        self.check(vector)?;
        let mut state = self.write();
        state.graph.insert(id, vector);
        if let Some(pending) = &mut state.pending {
            pending.push(Op::Insert(id, vector.into()));
        }
        Ok(())
    }

    /// Removes `id`; false if it was absent. From this call on no search returns it.
    ///
    /// With [`IndexConfig::auto_compact`], the call that pushes the tombstones over
    /// [`IndexConfig::max_tombstone_ratio`] also rebuilds the graph (see [`Self::compact`]),
    /// which takes about as long as inserting the live entries afresh: from async code call
    /// it on a blocking thread, or turn `auto_compact` off and compact from a maintenance task.
    pub fn remove(&self, id: u64) -> bool {
        let (removed, compact) = {
            let mut state = self.write();
            let removed = state.graph.remove(id);
            if removed {
                if let Some(pending) = &mut state.pending {
                    pending.push(Op::Remove(id));
                }
            }
            let graph = &state.graph;
            let compact = removed
                && self.config.auto_compact
                && state.pending.is_none()
                && graph.tombstones() as f64
                    > f64::from(self.config.max_tombstone_ratio) * graph.slots() as f64;
            (removed, compact)
        };
        if compact {
            self.compact();
        }
        removed
    }

    /// The `k` live entries most similar to `query`, as `(id, cosine similarity)`, best first.
    /// Fewer than `k` when the index holds fewer.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, IndexError> {
        self.search_with_ef(query, k, self.config.ef_search)
    }

    /// [`Self::search`] with another beam width for the graph walk.
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<(u64, f32)>, IndexError> {
        self.check(query)?;
        let state = self.read();
        let graph = &state.graph;
        if k == 0 || graph.len() == 0 {
            return Ok(Vec::new());
        }
        if graph.len() < self.config.exact_below {
            return Ok(graph.brute_force(query, k));
        }
        let mut visited = self
            .scratch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        let hits = graph.search(query, k, ef.max(1), &mut visited);
        drop(state);
        self.scratch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(visited);
        Ok(hits)
    }

    /// The exact `k` nearest live entries by a full scan, whatever the size: the ground truth
    /// for [`Self::search`].
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, IndexError> {
        self.check(query)?;
        Ok(self.read().graph.brute_force(query, k))
    }

    /// Rebuilds the graph from the live entries, dropping every tombstone; false if there was
    /// nothing to drop or another compaction is running.
    ///
    /// The new graph is built without holding the lock: searches, inserts and removes go on
    /// meanwhile, and the changes made in the meantime are replayed onto the new graph before
    /// it replaces the old one. The calling thread does the work (about the time of inserting
    /// the live entries afresh, see the module docs).
    pub fn compact(&self) -> bool {
        let _running = match self.compaction.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        let entries = {
            let mut state = self.write();
            if state.graph.tombstones() == 0 {
                return false;
            }
            state.pending = Some(Vec::new());
            state.graph.live_entries()
        };
        // Stops recording changes however this function ends.
        let _recording = StopRecording(&self.state);

        let mut fresh = Hnsw::new(Self::params(self.dim, &self.config));
        for (id, vector) in &entries {
            fresh.insert(*id, vector);
        }
        drop(entries);
        // Catch up off the lock, then apply the last few changes under it and swap.
        let caught_up = self.write().pending.replace(Vec::new()).unwrap_or_default();
        replay(&mut fresh, caught_up);
        let mut state = self.write();
        let last = state.pending.take().unwrap_or_default();
        replay(&mut fresh, last);
        state.graph = fresh;
        drop(state);
        true
    }

    fn check(&self, vector: &[f32]) -> Result<(), IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                actual: vector.len(),
            });
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        Ok(())
    }

    // A panic while holding the lock cannot leave the graph unsafe to read (no `unsafe`,
    // every index is bounds-checked), so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        self.read().graph.check_invariants();
    }
}

fn replay(graph: &mut Hnsw, ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Insert(id, vector) => graph.insert(id, &vector),
            Op::Remove(id) => {
                graph.remove(id);
            }
        }
    }
}

/// Turns the change log off when a compaction ends, even by a panic.
struct StopRecording<'a>(&'a RwLock<State>);

impl Drop for StopRecording<'_> {
    fn drop(&mut self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .pending = None;
    }
}
