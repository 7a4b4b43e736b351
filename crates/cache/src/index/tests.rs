#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

const DIM: usize = 384;

/// Seeded generator of unit vectors shaped like sentence embeddings: a low intrinsic dimension
/// (a 32-dimensional Gaussian through a fixed random map into `dim` dimensions) plus 5%
/// isotropic noise. Uniform random unit vectors in 384 dimensions are all nearly equidistant,
/// the worst case of any graph index and unlike embeddings (see the module docs for numbers).
struct Vectors {
    state: u64,
    map: Vec<f32>,
}

const LATENT: usize = 32;

impl Vectors {
    fn new(seed: u64) -> Self {
        let mut gen = Self {
            state: seed,
            map: Vec::new(),
        };
        gen.map = (0..1024 * LATENT).map(|_| gen.gaussian()).collect();
        gen
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn vector(&mut self, dim: usize) -> Vec<f32> {
        let z: Vec<f32> = (0..LATENT).map(|_| self.gaussian()).collect();
        let scale = (LATENT as f32).sqrt();
        let mut v: Vec<f32> = Vec::with_capacity(dim);
        for row in self.map.chunks_exact(LATENT).take(dim) {
            let signal = row.iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() / scale;
            v.push(signal);
        }
        for x in &mut v {
            *x += 0.05 * self.gaussian();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn graph_only() -> IndexConfig {
    IndexConfig {
        exact_below: 0,
        ..IndexConfig::default()
    }
}

fn ids(hits: &[(u64, f32)]) -> Vec<u64> {
    hits.iter().map(|(id, _)| *id).collect()
}

/// Mean fraction of the exact top k that the graph search finds.
fn recall_at(index: &VectorIndex, queries: &[Vec<f32>], k: usize) -> f64 {
    let mut found = 0;
    for q in queries {
        let exact: HashSet<u64> = ids(&index.search_exact(q, k).unwrap())
            .into_iter()
            .collect();
        let approx = index.search(q, k).unwrap();
        assert!(approx.len() <= k);
        found += approx.iter().filter(|(id, _)| exact.contains(id)).count();
    }
    found as f64 / (queries.len() * k) as f64
}

#[test]
fn index_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VectorIndex>();
}

#[test]
fn recall_at_10_on_20k_embedding_like_vectors_is_at_least_0_95() {
    let mut gen = Vectors::new(1);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    for id in 0..20_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..200).map(|_| gen.vector(DIM)).collect();
    let recall = recall_at(&index, &queries, 10);
    assert!(recall >= 0.95, "recall@10 = {recall}");
    index.check_invariants();
}

#[test]
fn recall_holds_after_deleting_30_percent_and_inserting_more() {
    let mut gen = Vectors::new(2);
    let config = IndexConfig {
        // Keep the tombstones: this checks the graph with them in, not a rebuilt one.
        auto_compact: false,
        ..graph_only()
    };
    let index = VectorIndex::with_config(DIM, config).unwrap();
    for id in 0..10_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    let deleted: HashSet<u64> = (0..10_000).filter(|id| id % 10 < 3).collect();
    for &id in &deleted {
        assert!(index.remove(id));
    }
    assert_eq!(index.stats().tombstones, 3_000);
    let queries: Vec<Vec<f32>> = (0..200).map(|_| gen.vector(DIM)).collect();
    let after_delete = recall_at(&index, &queries, 10);
    assert!(
        after_delete >= 0.95,
        "recall@10 after deletes = {after_delete}"
    );
    for q in &queries {
        let hits = index.search(q, 10).unwrap();
        assert!(hits.iter().all(|(id, _)| !deleted.contains(id)));
    }

    // 5,000 more: the first 3,000 reuse the tombstoned slots.
    for id in 10_000..15_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    let stats = index.stats();
    assert_eq!(
        (stats.len, stats.tombstones, stats.slots),
        (12_000, 0, 12_000)
    );
    let after_reinsert = recall_at(&index, &queries, 10);
    assert!(
        after_reinsert >= 0.95,
        "recall@10 after reinserts = {after_reinsert}"
    );
    for q in &queries {
        let hits = index.search(q, 10).unwrap();
        assert!(hits.iter().all(|(id, _)| !deleted.contains(id)));
    }
    index.check_invariants();
}

#[test]
fn deleted_entries_are_never_returned_even_for_their_own_vector() {
    let mut gen = Vectors::new(3);
    for config in [graph_only(), IndexConfig::default()] {
        let index = VectorIndex::with_config(DIM, config).unwrap();
        let vectors: Vec<Vec<f32>> = (0..1_000).map(|_| gen.vector(DIM)).collect();
        for (id, v) in vectors.iter().enumerate() {
            index.insert(id as u64, v).unwrap();
        }
        for id in (0..1_000).step_by(7) {
            assert!(index.remove(id as u64));
            assert!(!index.remove(id as u64), "a second remove finds nothing");
            assert!(!index.contains(id as u64));
            let hits = index.search(&vectors[id], 5).unwrap();
            assert!(!ids(&hits).contains(&(id as u64)));
            // Its nearest live neighbour comes first instead.
            assert_eq!(hits[0], index.search_exact(&vectors[id], 1).unwrap()[0]);
        }
        index.check_invariants();
    }
}

#[test]
fn reinserting_an_id_replaces_its_vector() {
    let mut gen = Vectors::new(4);
    for config in [graph_only(), IndexConfig::default()] {
        let index = VectorIndex::with_config(DIM, config).unwrap();
        for id in 0..500 {
            index.insert(id, &gen.vector(DIM)).unwrap();
        }
        let old = gen.vector(DIM);
        let new = gen.vector(DIM);
        index.insert(7, &old).unwrap();
        index.insert(7, &new).unwrap();
        assert_eq!(index.len(), 500);
        let stats = index.stats();
        assert_eq!(
            (stats.slots, stats.tombstones),
            (500, 0),
            "the slot is reused"
        );

        let hits = index.search(&new, 1).unwrap();
        assert_eq!(hits[0].0, 7);
        assert!((hits[0].1 - 1.0).abs() < 1e-5, "score {}", hits[0].1);
        let hits = index.search(&old, 500).unwrap();
        let score_of_7 = hits.iter().find(|(id, _)| *id == 7).map(|(_, s)| *s);
        let expected = distance::dot(&old, &new);
        assert!(score_of_7.is_none_or(|s| (s - expected).abs() < 1e-5));
        assert!(hits.iter().all(|h| h.1 < 0.999), "the old vector is gone");
        index.check_invariants();
    }
}

#[test]
fn empty_index_returns_nothing() {
    let index = VectorIndex::new(DIM);
    let q = Vectors::new(5).vector(DIM);
    assert!(index.is_empty());
    assert!(index.search(&q, 10).unwrap().is_empty());
    assert!(index.search_exact(&q, 10).unwrap().is_empty());
    assert!(!index.remove(1));
    assert!(!index.compact());
    assert_eq!(
        index.stats(),
        IndexStats {
            len: 0,
            slots: 0,
            tombstones: 0,
            layers: 0,
            exact: true
        }
    );
}

#[test]
fn k_larger_than_len_returns_every_entry_best_first() {
    let mut gen = Vectors::new(6);
    for config in [graph_only(), IndexConfig::default()] {
        let index = VectorIndex::with_config(DIM, config).unwrap();
        for id in 0..40 {
            index.insert(id, &gen.vector(DIM)).unwrap();
        }
        index.remove(3);
        let q = gen.vector(DIM);
        let hits = index.search(&q, 100).unwrap();
        assert_eq!(hits, index.search_exact(&q, 100).unwrap());
        assert_eq!(hits.len(), 39);
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "sorted by score");
        assert!(index.search(&q, 0).unwrap().is_empty());
        assert_eq!(index.search(&q, usize::MAX).unwrap(), hits);
        assert_eq!(index.search_with_ef(&q, 5, usize::MAX).unwrap(), hits[..5]);
    }
}

#[test]
fn scores_are_cosine_similarities() {
    let index = VectorIndex::with_config(3, graph_only()).unwrap();
    let s = std::f32::consts::FRAC_1_SQRT_2;
    index.insert(1, &[1.0, 0.0, 0.0]).unwrap();
    index.insert(2, &[s, s, 0.0]).unwrap();
    index.insert(3, &[0.0, 0.0, -1.0]).unwrap();
    let hits = index.search(&[1.0, 0.0, 0.0], 3).unwrap();
    assert_eq!(ids(&hits), vec![1, 2, 3]);
    assert!((hits[0].1 - 1.0).abs() < 1e-6);
    assert!((hits[1].1 - s).abs() < 1e-6);
    assert!(hits[2].1.abs() < 1e-6);
}

#[test]
fn exact_mode_below_the_threshold_is_exact_and_switches_to_the_graph_above() {
    let mut gen = Vectors::new(7);
    let config = IndexConfig {
        exact_below: 300,
        ..IndexConfig::default()
    };
    let index = VectorIndex::with_config(DIM, config).unwrap();
    for id in 0..299 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    assert!(index.stats().exact);
    for _ in 0..20 {
        let q = gen.vector(DIM);
        assert_eq!(
            index.search(&q, 10).unwrap(),
            index.search_exact(&q, 10).unwrap()
        );
    }
    index.insert(299, &gen.vector(DIM)).unwrap();
    assert!(!index.stats().exact);
    let q = gen.vector(DIM);
    assert_eq!(index.search(&q, 10).unwrap().len(), 10);
}

#[test]
fn bad_vectors_are_refused() {
    let index = VectorIndex::new(4);
    assert_eq!(
        index.insert(1, &[1.0, 0.0]),
        Err(IndexError::DimensionMismatch {
            expected: 4,
            actual: 2
        })
    );
    assert_eq!(
        index.insert(1, &[f32::NAN, 0.0, 0.0, 0.0]),
        Err(IndexError::NonFinite)
    );
    assert_eq!(
        index.search(&[0.0, f32::INFINITY, 0.0, 0.0], 1),
        Err(IndexError::NonFinite)
    );
    assert!(matches!(
        index.search(&[1.0; 5], 1),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(index.is_empty());
    for bad in [
        IndexConfig {
            m: 1,
            ..IndexConfig::default()
        },
        IndexConfig {
            ef_search: 0,
            ..IndexConfig::default()
        },
        IndexConfig {
            max_tombstone_ratio: 1.0,
            ..IndexConfig::default()
        },
    ] {
        assert!(matches!(
            VectorIndex::with_config(4, bad),
            Err(IndexError::InvalidConfig(_))
        ));
    }
}

#[test]
fn churn_reuses_slots_instead_of_growing() {
    let mut gen = Vectors::new(8);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    for id in 0..2_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    // A cache at steady state: every new entry evicts the oldest.
    for id in 2_000..6_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
        assert!(index.remove(id - 2_000));
    }
    let stats = index.stats();
    assert_eq!(stats.len, 2_000);
    assert!(stats.slots <= 2_001, "slots {}", stats.slots);
    let queries: Vec<Vec<f32>> = (0..100).map(|_| gen.vector(DIM)).collect();
    let recall = recall_at(&index, &queries, 10);
    assert!(recall >= 0.95, "recall@10 after churn = {recall}");
    index.check_invariants();
}

#[test]
fn deleting_past_the_ratio_compacts_the_graph() {
    let mut gen = Vectors::new(9);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    for id in 0..2_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    for id in 0..500 {
        index.remove(id);
    }
    assert_eq!(index.stats().tombstones, 500, "25% exactly: not yet");
    index.remove(500);
    let stats = index.stats();
    assert_eq!(
        (stats.len, stats.slots, stats.tombstones),
        (1_499, 1_499, 0)
    );
    let queries: Vec<Vec<f32>> = (0..100).map(|_| gen.vector(DIM)).collect();
    assert!(recall_at(&index, &queries, 10) >= 0.95);
    for q in &queries {
        assert!(index.search(q, 10).unwrap().iter().all(|(id, _)| *id > 500));
    }
    index.check_invariants();
}

#[test]
fn removing_every_entry_resets_and_the_index_stays_usable() {
    let mut gen = Vectors::new(10);
    let index = VectorIndex::with_config(DIM, graph_only()).unwrap();
    for id in 0..300 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    for id in 0..300 {
        assert!(index.remove(id));
    }
    assert_eq!(index.stats().slots, 0);
    let v = gen.vector(DIM);
    index.insert(42, &v).unwrap();
    assert_eq!(
        index.search(&v, 3).unwrap(),
        vec![(42, index.search_exact(&v, 1).unwrap()[0].1)]
    );
    index.check_invariants();
}

#[test]
fn compaction_keeps_changes_made_while_it_builds() {
    let mut gen = Vectors::new(11);
    let config = IndexConfig {
        auto_compact: false,
        ..graph_only()
    };
    let index = Arc::new(VectorIndex::with_config(DIM, config).unwrap());
    for id in 0..4_000 {
        index.insert(id, &gen.vector(DIM)).unwrap();
    }
    for id in 0..2_000 {
        index.remove(id);
    }
    let writer_vectors: Vec<Vec<f32>> = (0..400).map(|_| gen.vector(DIM)).collect();
    let compactor = {
        let index = Arc::clone(&index);
        std::thread::spawn(move || index.compact())
    };
    // Changes racing with the rebuild: new entries, removals of old ones, a replacement.
    for (i, v) in writer_vectors.iter().enumerate() {
        index.insert(10_000 + i as u64, v).unwrap();
        index.remove(2_000 + i as u64);
    }
    index.insert(3_999, &writer_vectors[0]).unwrap();
    assert!(compactor.join().unwrap());

    assert_eq!(index.len(), 2_000 - 400 + 400);
    for (i, v) in writer_vectors.iter().enumerate() {
        let hits = index.search(v, 2).unwrap();
        assert!(ids(&hits).contains(&(10_000 + i as u64)));
        assert!(index.contains(10_000 + i as u64));
        assert!(!index.contains(2_000 + i as u64));
    }
    let hits = ids(&index.search(&writer_vectors[0], 2).unwrap());
    assert!(hits.contains(&3_999) && hits.contains(&10_000));
    index.check_invariants();
}

#[test]
fn random_operations_agree_with_a_model() {
    let mut gen = Vectors::new(12);
    let index = VectorIndex::with_config(32, graph_only()).unwrap();
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    for step in 0..6_000 {
        let id = gen.below(800);
        match gen.below(10) {
            0..=5 => {
                let v = gen.vector(32);
                index.insert(id, &v).unwrap();
                model.insert(id, v);
            }
            6..=8 => assert_eq!(index.remove(id), model.remove(&id).is_some()),
            _ => {
                index.compact();
            }
        }
        assert_eq!(index.len(), model.len());
        if step % 100 == 0 {
            index.check_invariants();
            let q = gen.vector(32);
            let exact = index.search_exact(&q, 5).unwrap();
            let mut truth: Vec<(u64, f32)> = model
                .iter()
                .map(|(id, v)| (*id, distance::dot(&q, v)))
                .collect();
            truth.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            truth.truncate(5);
            assert_eq!(ids(&exact).len(), truth.len());
            for ((_, got), (_, want)) in exact.iter().zip(&truth) {
                assert!((got - want).abs() < 1e-6);
            }
            for (id, _) in index.search(&q, 5).unwrap() {
                assert!(model.contains_key(&id), "a removed id came back");
            }
        }
    }
}

#[test]
fn concurrent_readers_and_a_writer() {
    let mut gen = Vectors::new(13);
    let index = Arc::new(VectorIndex::with_config(DIM, graph_only()).unwrap());
    let vectors: Vec<Vec<f32>> = (0..3_000).map(|_| gen.vector(DIM)).collect();
    for (id, v) in vectors.iter().enumerate().take(1_000) {
        index.insert(id as u64, v).unwrap();
    }
    let vectors = Arc::new(vectors);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (index, vectors, done) = (index.clone(), vectors.clone(), done.clone());
            std::thread::spawn(move || {
                let mut searches = 0;
                let mut i = r;
                while !done.load(Ordering::Relaxed) || searches < 50 {
                    let hits = index.search(&vectors[i % 1_000], 10).unwrap();
                    assert!(!hits.is_empty());
                    assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
                    searches += 1;
                    i += 7;
                }
                searches
            })
        })
        .collect();
    let writer = {
        let (index, vectors) = (index.clone(), vectors.clone());
        std::thread::spawn(move || {
            for id in 0..500u64 {
                assert!(index.remove(id));
            }
            for (id, v) in vectors.iter().enumerate().skip(1_000) {
                index.insert(id as u64, v).unwrap();
            }
        })
    };
    writer.join().unwrap();
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() >= 50);
    }
    assert_eq!(index.len(), 2_500);
    for id in 0..500u64 {
        let hits = index.search(&vectors[id as usize], 10).unwrap();
        assert!(!ids(&hits).contains(&id));
    }
    for id in (1_000..3_000u64).step_by(50) {
        assert_eq!(index.search(&vectors[id as usize], 1).unwrap()[0].0, id);
    }
    index.check_invariants();
}
