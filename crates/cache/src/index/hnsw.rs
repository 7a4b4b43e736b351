//! A compact HNSW graph (Malkov & Yashunin, 2018) with tombstones and slot reuse.
//!
//! Single-writer: every mutation takes `&mut self` ([`super::VectorIndex`] puts the graph
//! behind a lock); searches take `&self` and a caller-owned [`Visited`] scratch set, so any
//! number of them run at once.
//!
//! Storage is by dense slot (`u32`): vectors in one flat `Vec<f32>`, layer-0 links in one flat
//! array of `m0` entries per slot, the few upper-layer lists per node in small `Vec`s.
//!
//! Deletion marks a slot as a tombstone: it leaves the results at once but keeps routing
//! searches, so the graph stays connected. The next insert reuses a tombstoned slot (as
//! hnswlib's `replace_deleted` does): the old node's in-neighbours are first re-linked among
//! their own and the old node's neighbours (heuristic selection), then the slot is linked
//! again like a new point. Under churn the graph thus never grows beyond the peak live count;
//! tombstones only pile up when deletes outnumber inserts, and then the owner rebuilds.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::distance::dot;

/// Highest layer a node can get; with `m = 16` a level above 6 has odds below 1 in 16 million.
const MAX_LEVEL: usize = 16;

/// Graph parameters, validated by [`super::IndexConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub dim: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

/// A candidate: a slot and its distance (negated dot product) to the query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub dist: f32,
    pub slot: u32,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.slot.cmp(&other.slot))
    }
}

/// Distance for the graph: smaller is closer. Negated so the score is recovered exactly.
#[inline]
fn distance(a: &[f32], b: &[f32]) -> f32 {
    -dot(a, b)
}

/// Scratch set of visited slots, cleared in O(1) by bumping an epoch.
#[derive(Debug, Default)]
pub(crate) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn reset(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `slot`; false if it was already marked since the last reset.
    #[inline]
    fn insert(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        if *mark == self.epoch {
            false
        } else {
            *mark = self.epoch;
            true
        }
    }
}

/// SplitMix64: enough randomness for level generation, deterministic from the seed.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
pub(crate) struct Hnsw {
    params: Params,
    /// Link capacity on layers above 0 (`m`) and on layer 0 (`2 * m`).
    m_upper: usize,
    m0: usize,
    level_mult: f64,
    rng: SplitMix64,

    vectors: Vec<f32>,
    ids: Vec<u64>,
    deleted: Vec<bool>,
    levels: Vec<u8>,
    layer0: Vec<u32>,
    layer0_len: Vec<u8>,
    /// `upper[slot][l - 1]`: the links of `slot` on layer `l >= 1`.
    upper: Vec<Vec<Vec<u32>>>,

    entry: Option<u32>,
    max_level: usize,
    slot_of: HashMap<u64, u32>,
    /// Tombstoned slots, reused last-in first-out.
    free: Vec<u32>,
    /// Scratch for construction (searches bring their own).
    visited: Visited,
}

impl Hnsw {
    pub fn new(params: Params) -> Self {
        Self {
            m_upper: params.m,
            m0: params.m * 2,
            level_mult: 1.0 / (params.m as f64).ln(),
            rng: SplitMix64(params.seed),
            params,
            vectors: Vec::new(),
            ids: Vec::new(),
            deleted: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            layer0_len: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            slot_of: HashMap::new(),
            free: Vec::new(),
            visited: Visited::default(),
        }
    }

    /// Live (searchable) entries.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Allocated slots: live entries plus tombstones.
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    pub fn tombstones(&self) -> usize {
        self.free.len()
    }

    pub fn max_level(&self) -> usize {
        self.max_level
    }

    pub fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// The live entries, in slot order (what a rebuild inserts).
    pub fn live_entries(&self) -> Vec<(u64, Vec<f32>)> {
        (0..self.slots())
            .filter(|&slot| !self.deleted[slot])
            .map(|slot| (self.ids[slot], self.vector(slot as u32).to_vec()))
            .collect()
    }

    #[inline]
    fn vector(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.params.dim;
        &self.vectors[start..start + self.params.dim]
    }

    fn capacity(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m_upper
        }
    }

    #[inline]
    fn neighbors(&self, slot: u32, level: usize) -> &[u32] {
        let slot = slot as usize;
        if level == 0 {
            let start = slot * self.m0;
            &self.layer0[start..start + self.layer0_len[slot] as usize]
        } else {
            &self.upper[slot][level - 1]
        }
    }

    fn set_neighbors(&mut self, slot: u32, level: usize, links: &[u32]) {
        let slot = slot as usize;
        if level == 0 {
            let len = links.len().min(self.m0);
            let start = slot * self.m0;
            self.layer0[start..start + len].copy_from_slice(&links[..len]);
            // m0 <= 128 (see IndexConfig::validate), so the length fits.
            self.layer0_len[slot] = len as u8;
        } else {
            let list = &mut self.upper[slot][level - 1];
            list.clear();
            list.extend_from_slice(links);
        }
    }

    fn random_level(&mut self) -> usize {
        let level = (-self.rng.next_unit().ln() * self.level_mult).floor();
        (level as usize).min(MAX_LEVEL)
    }

    /// Inserts `id`, replacing its vector if it is present.
    pub fn insert(&mut self, id: u64, vector: &[f32]) {
        self.remove(id);
        match self.free.pop() {
            Some(slot) => self.reuse_slot(slot, id, vector),
            None => self.insert_new(id, vector),
        }
    }

    /// Tombstones `id`; false if it was absent. Removing the last live entry clears the graph.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        self.deleted[slot as usize] = true;
        self.free.push(slot);
        if self.slot_of.is_empty() {
            self.clear();
        }
        true
    }

    fn clear(&mut self) {
        let visited = std::mem::take(&mut self.visited);
        let rng = self.rng.clone();
        *self = Self::new(self.params);
        self.rng = rng;
        self.visited = visited;
    }

    fn insert_new(&mut self, id: u64, vector: &[f32]) {
        let Ok(slot) = u32::try_from(self.slots()) else {
            // Four billion entries do not fit in memory anyway; refuse rather than wrap.
            return;
        };
        let level = self.random_level();
        self.vectors.extend_from_slice(vector);
        self.ids.push(id);
        self.deleted.push(false);
        self.levels.push(level as u8);
        self.layer0.resize(self.layer0.len() + self.m0, 0);
        self.layer0_len.push(0);
        self.upper.push(vec![Vec::new(); level]);
        self.slot_of.insert(id, slot);
        self.link(slot, level);
    }

    /// Puts a new entry into a tombstoned slot: repairs the links that pointed at the old
    /// vector, then links the slot again at its old level.
    fn reuse_slot(&mut self, slot: u32, id: u64, vector: &[f32]) {
        let level = self.levels[slot as usize] as usize;
        for l in 0..=level {
            let old: Vec<u32> = self.neighbors(slot, l).to_vec();
            for &n in &old {
                if n == slot || !self.neighbors(n, l).contains(&slot) {
                    continue;
                }
                let mut pool: Vec<u32> = self
                    .neighbors(n, l)
                    .iter()
                    .chain(&old)
                    .copied()
                    .filter(|&x| x != n && x != slot)
                    .collect();
                pool.sort_unstable();
                pool.dedup();
                let vn = self.vector(n);
                let mut cands: Vec<Cand> = pool
                    .into_iter()
                    .map(|x| Cand {
                        dist: distance(vn, self.vector(x)),
                        slot: x,
                    })
                    .collect();
                cands.sort_unstable();
                let chosen = self.select_neighbors(&cands, self.capacity(l));
                self.set_neighbors(n, l, &chosen);
            }
        }
        let start = slot as usize * self.params.dim;
        self.vectors[start..start + self.params.dim].copy_from_slice(vector);
        self.ids[slot as usize] = id;
        self.deleted[slot as usize] = false;
        self.slot_of.insert(id, slot);
        self.link(slot, level);
    }

    /// Connects `slot` (whose vector is in place) into the graph on layers `0..=level`.
    fn link(&mut self, slot: u32, level: usize) {
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.max_level = level;
            return;
        };
        if entry == slot && self.len() == 1 {
            return;
        }
        let query = self.vector(slot).to_vec();
        let mut cur = self.greedy(&query, entry, self.max_level, level);
        let mut visited = std::mem::take(&mut self.visited);
        for l in (0..=level.min(self.max_level)).rev() {
            let mut found =
                self.search_layer(&query, cur, self.params.ef_construction, l, &mut visited);
            found.retain(|c| c.slot != slot);
            let Some(first) = found.first() else {
                continue;
            };
            cur = first.slot;
            self.connect(slot, &found, l);
        }
        self.visited = visited;
        // A new top level; or, on the top level, a live node taking over from a tombstone.
        let entry_is_tombstone = self.deleted[entry as usize];
        if level > self.max_level || (level == self.max_level && entry_is_tombstone) {
            self.entry = Some(slot);
            self.max_level = level;
        }
    }

    /// Links `slot` to the heuristic choice among `cands` (sorted, closest first) and back.
    fn connect(&mut self, slot: u32, cands: &[Cand], level: usize) {
        let chosen = self.select_neighbors(cands, self.m_upper);
        self.set_neighbors(slot, level, &chosen);
        let cap = self.capacity(level);
        for &n in &chosen {
            let links = self.neighbors(n, level);
            if links.contains(&slot) {
                continue;
            }
            if links.len() < cap {
                let mut grown = links.to_vec();
                grown.push(slot);
                self.set_neighbors(n, level, &grown);
                continue;
            }
            let vn = self.vector(n);
            let mut pool: Vec<Cand> = links
                .iter()
                .chain(std::iter::once(&slot))
                .map(|&x| Cand {
                    dist: distance(vn, self.vector(x)),
                    slot: x,
                })
                .collect();
            pool.sort_unstable();
            let kept = self.select_neighbors(&pool, cap);
            self.set_neighbors(n, level, &kept);
        }
    }

    /// The neighbour-selection heuristic (algorithm 4 of the paper, as in hnswlib): take
    /// candidates closest first, keeping one only if it is closer to the base than to every
    /// candidate already kept. This keeps links pointing in diverse directions.
    fn select_neighbors(&self, cands: &[Cand], m: usize) -> Vec<u32> {
        if cands.len() <= m {
            return cands.iter().map(|c| c.slot).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in cands {
            if kept.len() >= m {
                break;
            }
            let vc = self.vector(c.slot);
            if kept.iter().all(|&k| distance(vc, self.vector(k)) >= c.dist) {
                kept.push(c.slot);
            }
        }
        kept
    }

    /// Greedy descent from `start` on layers `top` down to `bottom + 1`.
    fn greedy(&self, query: &[f32], start: u32, top: usize, bottom: usize) -> u32 {
        let mut cur = start;
        let mut cur_dist = distance(query, self.vector(cur));
        for l in (bottom + 1..=top).rev() {
            loop {
                let mut moved = false;
                for &n in self.neighbors(cur, l) {
                    let d = distance(query, self.vector(n));
                    if d < cur_dist {
                        cur_dist = d;
                        cur = n;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        cur
    }

    /// Beam search on one layer (algorithm 2): the `ef` closest live nodes found from `entry`,
    /// closest first. Tombstones are expanded (they route) but never returned.
    fn search_layer(
        &self,
        query: &[f32],
        entry: u32,
        ef: usize,
        level: usize,
        visited: &mut Visited,
    ) -> Vec<Cand> {
        visited.reset(self.slots());
        let mut frontier: BinaryHeap<Reverse<Cand>> = BinaryHeap::new();
        let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef.min(self.slots()) + 1);
        let start = Cand {
            dist: distance(query, self.vector(entry)),
            slot: entry,
        };
        visited.insert(entry);
        frontier.push(Reverse(start));
        let mut bound = f32::INFINITY;
        if !self.deleted[entry as usize] {
            best.push(start);
            bound = start.dist;
        }
        while let Some(Reverse(cur)) = frontier.pop() {
            if cur.dist > bound && best.len() >= ef {
                break;
            }
            for &n in self.neighbors(cur.slot, level) {
                if !visited.insert(n) {
                    continue;
                }
                let d = distance(query, self.vector(n));
                if best.len() < ef || d < bound {
                    let cand = Cand { dist: d, slot: n };
                    frontier.push(Reverse(cand));
                    if !self.deleted[n as usize] {
                        best.push(cand);
                        if best.len() > ef {
                            best.pop();
                        }
                        if let Some(worst) = best.peek() {
                            bound = worst.dist;
                        }
                    }
                }
            }
        }
        best.into_sorted_vec()
    }

    /// Approximate k nearest live entries, as `(id, dot product)`, best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        visited: &mut Visited,
    ) -> Vec<(u64, f32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let k = k.min(self.len());
        if k == 0 {
            return Vec::new();
        }
        let cur = self.greedy(query, entry, self.max_level, 0);
        let found = self.search_layer(query, cur, ef.max(k), 0, visited);
        found
            .into_iter()
            .take(k)
            .map(|c| (self.ids[c.slot as usize], -c.dist))
            .collect()
    }

    /// Exact k nearest live entries by a full scan, as `(id, dot product)`, best first.
    pub fn brute_force(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        let k = k.min(self.len());
        if k == 0 {
            return Vec::new();
        }
        let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        for slot in 0..self.slots() {
            if self.deleted[slot] {
                continue;
            }
            let d = distance(query, self.vector(slot as u32));
            if best.len() < k {
                best.push(Cand {
                    dist: d,
                    slot: slot as u32,
                });
            } else if best.peek().is_some_and(|worst| d < worst.dist) {
                best.pop();
                best.push(Cand {
                    dist: d,
                    slot: slot as u32,
                });
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|c| (self.ids[c.slot as usize], -c.dist))
            .collect()
    }

    /// Checks the structural invariants; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        assert_eq!(self.vectors.len(), self.slots() * self.params.dim);
        assert_eq!(self.len() + self.tombstones(), self.slots());
        for (&id, &slot) in &self.slot_of {
            assert_eq!(self.ids[slot as usize], id);
            assert!(!self.deleted[slot as usize]);
        }
        for &slot in &self.free {
            assert!(self.deleted[slot as usize]);
        }
        for slot in 0..self.slots() as u32 {
            let level = self.levels[slot as usize] as usize;
            assert!(level <= self.max_level);
            for l in 0..=level {
                let links = self.neighbors(slot, l);
                assert!(links.len() <= self.capacity(l));
                for &n in links {
                    assert!((n as usize) < self.slots(), "dangling link");
                    assert!(
                        self.levels[n as usize] as usize >= l,
                        "link to a node below the layer"
                    );
                    assert_ne!(n, slot, "self link");
                }
            }
        }
        if let Some(entry) = self.entry {
            assert_eq!(self.levels[entry as usize] as usize, self.max_level);
        } else {
            assert_eq!(self.slots(), 0);
        }
    }
}
