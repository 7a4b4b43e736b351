//! A semantic cache simulated on labelled question pairs: how often it answers, how often its
//! answer is right, and how fast the lookup is, at a given number of entries.
//!
//! The module is pure: it takes embedded questions (one L2-normalized vector per distinct
//! question) and labelled pairs of them, and knows nothing of the embedder. `plexus cache eval`
//! feeds it the Quora Question Pairs embedded by all-MiniLM-L6-v2 (`docs/cache-eval.md`).
//!
//! # Who asks what ([`plan`])
//!
//! The pairs are shuffled by the seed (SplitMix64, Fisher–Yates), then taken in that order:
//! - **paired queries**: pairs whose first question (q1) is cached and whose second (q2) is
//!   asked, whatever their label;
//! - **unrelated queries**: the q2 of the next pairs, half as many as the paired queries (so a
//!   third of all lookups), whose q1 is *not* cached: a lookup that should miss;
//! - **filler**: both questions of the remaining pairs, cached until the cache holds the
//!   requested number of entries, except questions asked, the unrelated queries' partners and
//!   questions labelled duplicate (in any pair) of an asked one.
//!
//! A question is asked at most once and is never both asked and cached; a question cached by
//! two pairs is one entry. The number of paired queries is the requested number of entries when
//! the data allows (then the filler only makes up for shared q1s), otherwise the largest number
//! that leaves enough filler (found by bisection); at least a tenth of the pairs are queried,
//! and when even that leaves too little filler the cache holds what there is ([`Plan::capped`]).
//!
//! # What counts ([`simulate`])
//!
//! The entries go into one [`VectorIndex`] (one partition, default configuration); the queries
//! are asked in a seeded order, top-1 neighbour. A query is a **hit** at threshold `t` when its
//! neighbour's similarity is at least `t`; a hit is **correct** only when the neighbour is the
//! q1 of the query's own pair and that pair is labelled duplicate. That is conservative: a hit
//! on another entry that happens to ask the same thing as the query counts as wrong (the labels
//! say nothing about it; [`SimRow::wrong_labelled_elsewhere`] counts the wrong hits whose two
//! questions are labelled duplicate by another pair of the data). **Recall** is correct hits
//! over the paired queries labelled duplicate (their partner is always cached).
//!
//! Lookup latency is the time of `search(query, 1)` alone, one thread, measured with
//! [`Instant`] around each call; the build time is that of inserting every entry, one thread.
//!
//! # The adaptive runs
//!
//! The same lookups with the gateway's learned thresholds, online, like
//! `crates/server/src/semantic.rs`: a lookup examines the nearest [`SimConfig::candidates`]
//! entries and serves the first whose similarity reaches both its entry's learned threshold
//! ([`Outcomes`]) and the pooled floor ([`Pool`]), for a bound (`max_false_hit_rate`) given per
//! run in [`SimConfig::bounds`]. The pool starts with no evidence, so nothing is served until
//! the outcomes say it may. The dataset's label is the outcome the judge records at that
//! similarity, for what the gateway's judge sees with `sample_rate: 1` and `explore_rate: 1`:
//! every served hit, and the nearest entry of a refused lookup at or above the global threshold
//! (compared with the answer fetched for that lookup anyway).
//!
//! The labels count an unlabelled paraphrase as wrong, so the pool is stricter here than a
//! judge comparing answers would make it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::index::{IndexConfig, IndexError, VectorIndex};
use crate::threshold::{Outcomes, Pool, POOL_CAPACITY};

/// One labelled pair of questions, by their index in the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelledPair {
    pub q1: usize,
    pub q2: usize,
    /// The two questions ask the same thing.
    pub duplicate: bool,
}

/// What is cached and what is asked: a pure function of the pairs, the size and the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Entries asked for.
    pub requested: usize,
    /// The cached questions: the q1 of the paired queries first, then the filler.
    pub entries: Vec<usize>,
    /// Pairs (indices) whose q1 is cached and whose q2 is asked.
    pub paired: Vec<usize>,
    /// Questions asked whose pair's q1 is not cached.
    pub unrelated: Vec<usize>,
    /// Entries that are no paired query's partner.
    pub filler: usize,
}

impl Plan {
    /// The data could not fill the requested number of entries.
    pub fn capped(&self) -> bool {
        self.entries.len() < self.requested
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014), as in `plexus_embed::eval`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` > 0), by Lemire's multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Decides which questions are cached and which are asked (see the module docs).
pub fn plan(pairs: &[LabelledPair], entries: usize, seed: u64) -> Plan {
    let empty = Plan {
        requested: entries,
        entries: Vec::new(),
        paired: Vec::new(),
        unrelated: Vec::new(),
        filler: 0,
    };
    if entries == 0 || pairs.is_empty() {
        return empty;
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    SplitMix64(seed).shuffle(&mut order);
    let mut duplicates: HashMap<usize, Vec<usize>> = HashMap::new();
    for p in pairs.iter().filter(|p| p.duplicate) {
        duplicates.entry(p.q1).or_default().push(p.q2);
        duplicates.entry(p.q2).or_default().push(p.q1);
    }
    let build = |paired| build_plan(pairs, &order, &duplicates, paired, entries);

    let most = entries.min(pairs.len());
    let least = (pairs.len() / 10).clamp(1, most);
    let at_least = build(least);
    if at_least.capped() {
        return at_least;
    }
    let at_most = build(most);
    if !at_most.capped() {
        return at_most;
    }
    // build(good) fills the cache, build(bad) does not.
    let (mut good, mut bad) = (least, most);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if build(mid).capped() {
            bad = mid;
        } else {
            good = mid;
        }
    }
    build(good)
}

fn build_plan(
    pairs: &[LabelledPair],
    order: &[usize],
    duplicates: &HashMap<usize, Vec<usize>>,
    paired_target: usize,
    size: usize,
) -> Plan {
    let mut cached: HashSet<usize> = HashSet::new();
    let mut entries = Vec::new();
    let mut asked: HashSet<usize> = HashSet::new();
    let mut paired = Vec::new();
    let mut unrelated = Vec::new();
    let mut next = order.iter().map(|&i| (i, pairs[i]));

    for (i, p) in next.by_ref() {
        if paired.len() == paired_target {
            break;
        }
        let fits = cached.contains(&p.q1) || entries.len() < size;
        if p.q1 == p.q2
            || !fits
            || asked.contains(&p.q1)
            || asked.contains(&p.q2)
            || cached.contains(&p.q2)
        {
            continue;
        }
        if cached.insert(p.q1) {
            entries.push(p.q1);
        }
        asked.insert(p.q2);
        paired.push(i);
    }
    let mut blocked: HashSet<usize> = HashSet::new();
    let unrelated_target = paired.len() / 2;
    for (_, p) in next.by_ref() {
        if unrelated.len() == unrelated_target {
            break;
        }
        if p.q1 == p.q2 || cached.contains(&p.q1) || cached.contains(&p.q2) || asked.contains(&p.q2)
        {
            continue;
        }
        asked.insert(p.q2);
        blocked.insert(p.q1);
        unrelated.push(p.q2);
    }
    for q in &asked {
        blocked.extend(duplicates.get(q).into_iter().flatten());
    }
    let partners = entries.len();
    for (_, p) in next {
        if entries.len() >= size {
            break;
        }
        for q in [p.q1, p.q2] {
            if entries.len() < size
                && !asked.contains(&q)
                && !blocked.contains(&q)
                && cached.insert(q)
            {
                entries.push(q);
            }
        }
    }
    Plan {
        requested: size,
        filler: entries.len() - partners,
        entries,
        paired,
        unrelated,
    }
}

/// What is simulated besides the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Thresholds of the static table.
    pub thresholds: Vec<f32>,
    pub index: IndexConfig,
    /// The adaptive run's global threshold (`cache.semantic.threshold`).
    pub global_threshold: f32,
    /// The adaptive runs' bounds (`cache.semantic.max_false_hit_rate`), one run each.
    pub bounds: Vec<f64>,
    /// Neighbours a lookup of the adaptive run examines (the gateway's 4).
    pub candidates: usize,
    /// Lookups also answered by an exact scan, to check the index's top-1.
    pub exact_check: usize,
    /// Seed of the order of the lookups.
    pub seed: u64,
    /// Wrong hits at or above [`Self::examples_from`] kept as examples (the first in the
    /// lookups' order).
    pub examples: usize,
    pub examples_from: f32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            thresholds: (80..=98).map(|c| c as f32 / 100.0).collect(),
            index: IndexConfig::default(),
            global_threshold: 0.95,
            bounds: vec![0.02, 0.1, 0.2, 0.3, 0.4, 0.5],
            candidates: 4,
            exact_check: 1_000,
            seed: 42,
            examples: 0,
            examples_from: 0.95,
        }
    }
}

/// The static threshold `threshold`, counted over every lookup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimRow {
    pub threshold: f32,
    pub lookups: usize,
    pub hits: usize,
    /// Hits on the query's own partner, labelled duplicate.
    pub correct: usize,
    /// Hits on the query's own partner, labelled not duplicate.
    pub wrong_partner: usize,
    /// Hits of paired queries on another entry.
    pub wrong_other: usize,
    /// Hits of unrelated queries.
    pub wrong_unrelated: usize,
    /// Wrong hits whose query and entry are labelled duplicate by another pair of the data.
    pub wrong_labelled_elsewhere: usize,
    /// Paired queries labelled duplicate (recall's denominator).
    pub answerable: usize,
}

impl SimRow {
    pub fn wrong(&self) -> usize {
        self.hits - self.correct
    }

    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.lookups)
    }

    /// Correct hits over hits; 0 without hits.
    pub fn precision(&self) -> f64 {
        ratio(self.correct, self.hits)
    }

    /// Correct hits over the paired queries labelled duplicate.
    pub fn recall(&self) -> f64 {
        ratio(self.correct, self.answerable)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles.
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = samples.iter().sum();
        Latency {
            samples: n,
            p50: rank(0.50),
            p99: rank(0.99),
            mean: total / n as u32,
            max: samples[n - 1],
        }
    }
}

/// A wrong hit of the static pass, for a reader to judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrongHit {
    /// The question asked.
    pub query: usize,
    /// The cached question that answered it.
    pub entry: usize,
    pub similarity: f32,
    /// What made it wrong: `partner not dup`, `other entry` or `unrelated query`.
    pub kind: &'static str,
}

/// The lookups replayed with learned per-entry thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveRun {
    pub global: f32,
    pub bound: f64,
    /// The counts of the run (its `threshold` is the global one).
    pub row: SimRow,
    /// Outcomes recorded.
    pub outcomes: usize,
    /// Of those, outcomes of lookups that were not served (the exploring judge's).
    pub explored: usize,
    /// Entries with at least one outcome.
    pub entries_judged: usize,
    /// The most outcomes one entry received.
    pub most_outcomes: usize,
    /// Entries whose learned threshold ended above the global one.
    pub raised: usize,
    /// Entries whose learned threshold ended below the global one.
    pub lowered: usize,
    /// Hits served below the global threshold (learning lowered the entry's).
    pub served_below_global: usize,
    /// Lookups whose nearest entry reached the global threshold but not its learned one (or
    /// the pooled floor).
    pub refused: usize,
    /// Lookups before the first served hit (`None`: none served).
    pub first_hit_at: Option<usize>,
    /// The pooled floor at the end of the run (`+inf`: serving nothing).
    pub floor: f32,
}

impl AdaptiveRun {
    /// Wrong hits over hits: what `max_false_hit_rate` bounds per entry.
    pub fn false_hit_rate(&self) -> f64 {
        ratio(self.row.wrong(), self.row.hits)
    }
}

/// The outcome of one simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    pub requested: usize,
    pub entries: usize,
    pub filler: usize,
    pub paired: usize,
    pub unrelated: usize,
    /// Whether the index answered by an exact scan (below its `exact_below`).
    pub exact_scan: bool,
    pub index: IndexConfig,
    /// Inserting every entry, one thread.
    pub build: Duration,
    /// `search(query, 1)`, one thread, every lookup.
    pub latency: Latency,
    /// Lookups whose top-1 was compared with an exact scan, and how many agreed.
    pub exact_checked: usize,
    pub exact_agreed: usize,
    /// The exact scan's latency on those lookups.
    pub exact_latency: Latency,
    pub rows: Vec<SimRow>,
    /// The static threshold at the adaptive runs' global threshold.
    pub baseline: SimRow,
    /// Neighbours a lookup of the adaptive runs examined.
    pub candidates: usize,
    pub adaptive: Vec<AdaptiveRun>,
    /// Wrong hits at or above [`SimConfig::examples_from`].
    pub examples: Vec<WrongHit>,
}

#[derive(Debug, Clone, Copy)]
struct Query {
    question: usize,
    /// The pair whose q2 this is, for a paired query.
    pair: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Correct,
    WrongPartner,
    WrongOther,
    WrongUnrelated,
}

struct Judge<'a> {
    pairs: &'a [LabelledPair],
    /// Duplicate-labelled pairs of questions, smaller index first.
    duplicates: HashSet<(usize, usize)>,
}

impl Judge<'_> {
    fn verdict(&self, q: Query, entry: usize) -> Verdict {
        match q.pair.map(|i| self.pairs[i]) {
            None => Verdict::WrongUnrelated,
            Some(p) if p.q1 == entry && p.duplicate => Verdict::Correct,
            Some(p) if p.q1 == entry => Verdict::WrongPartner,
            Some(_) => Verdict::WrongOther,
        }
    }

    fn labelled_duplicate(&self, a: usize, b: usize) -> bool {
        self.duplicates.contains(&(a.min(b), a.max(b)))
    }

    fn count(&self, row: &mut SimRow, q: Query, entry: usize) {
        row.hits += 1;
        match self.verdict(q, entry) {
            Verdict::Correct => row.correct += 1,
            Verdict::WrongPartner => row.wrong_partner += 1,
            Verdict::WrongOther => row.wrong_other += 1,
            Verdict::WrongUnrelated => row.wrong_unrelated += 1,
        }
        if self.verdict(q, entry) != Verdict::Correct && self.labelled_duplicate(q.question, entry)
        {
            row.wrong_labelled_elsewhere += 1;
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("question {0} has no vector")]
    MissingVector(usize),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Runs the plan: builds the index, asks every query, and scores the static thresholds and
/// the adaptive runs (see the module docs). `vectors[q]` is question `q`'s embedding.
pub fn simulate(
    vectors: &[Vec<f32>],
    pairs: &[LabelledPair],
    plan: &Plan,
    config: &SimConfig,
) -> Result<SimReport, SimError> {
    let vector = |q: usize| {
        vectors
            .get(q)
            .map(Vec::as_slice)
            .ok_or(SimError::MissingVector(q))
    };
    let dim = match plan.entries.first() {
        Some(&q) => vector(q)?.len(),
        None => 0,
    };
    let index = VectorIndex::with_config(dim, config.index)?;
    let started = Instant::now();
    for (id, &q) in plan.entries.iter().enumerate() {
        index.insert(id as u64, vector(q)?)?;
    }
    let build = started.elapsed();

    let mut queries: Vec<Query> = plan
        .paired
        .iter()
        .map(|&i| Query {
            question: pairs[i].q2,
            pair: Some(i),
        })
        .chain(plan.unrelated.iter().map(|&q| Query {
            question: q,
            pair: None,
        }))
        .collect();
    SplitMix64(config.seed).shuffle(&mut queries);
    let judge = Judge {
        pairs,
        duplicates: pairs
            .iter()
            .filter(|p| p.duplicate)
            .map(|p| (p.q1.min(p.q2), p.q1.max(p.q2)))
            .collect(),
    };
    let answerable = plan.paired.iter().filter(|&&i| pairs[i].duplicate).count();
    let empty_row = |threshold| SimRow {
        threshold,
        lookups: queries.len(),
        hits: 0,
        correct: 0,
        wrong_partner: 0,
        wrong_other: 0,
        wrong_unrelated: 0,
        wrong_labelled_elsewhere: 0,
        answerable,
    };

    // The static pass: top-1, timed.
    let mut nearest: Vec<Option<(usize, f32)>> = Vec::with_capacity(queries.len());
    let mut times = Vec::with_capacity(queries.len());
    for q in &queries {
        let v = vector(q.question)?;
        let started = Instant::now();
        let hit = index.search(v, 1)?;
        times.push(started.elapsed());
        nearest.push(hit.first().map(|&(id, s)| (id as usize, s)));
    }
    let latency = Latency::of(times);

    let mut exact_times = Vec::new();
    let mut exact_agreed = 0;
    for (q, found) in queries.iter().zip(&nearest).take(config.exact_check) {
        let v = vector(q.question)?;
        let started = Instant::now();
        let exact = index.search_exact(v, 1)?;
        exact_times.push(started.elapsed());
        let agrees = match (exact.first(), found) {
            (Some(&(id, s)), Some((fid, fs))) => id as usize == *fid || s == *fs,
            (None, None) => true,
            _ => false,
        };
        exact_agreed += usize::from(agrees);
    }

    let row_at = |threshold: f32| {
        let mut row = empty_row(threshold);
        for (q, found) in queries.iter().zip(&nearest) {
            if let Some((id, s)) = *found {
                if s >= threshold {
                    judge.count(&mut row, *q, plan.entries[id]);
                }
            }
        }
        row
    };
    let rows: Vec<SimRow> = config.thresholds.iter().map(|&t| row_at(t)).collect();
    let examples: Vec<WrongHit> = queries
        .iter()
        .zip(&nearest)
        .filter_map(|(q, found)| {
            let (id, similarity) = (*found)?;
            let entry = plan.entries[id];
            let kind = match judge.verdict(*q, entry) {
                Verdict::Correct => return None,
                Verdict::WrongPartner => "partner not dup",
                Verdict::WrongOther => "other entry",
                Verdict::WrongUnrelated => "unrelated query",
            };
            (similarity >= config.examples_from).then_some(WrongHit {
                query: q.question,
                entry,
                similarity,
                kind,
            })
        })
        .take(config.examples)
        .collect();
    let baseline = row_at(config.global_threshold);

    // The adaptive runs examine the same candidates: search once.
    let mut candidates = Vec::with_capacity(queries.len());
    for q in &queries {
        let found = index.search(vector(q.question)?, config.candidates.max(1))?;
        candidates.push(
            found
                .into_iter()
                .map(|(id, s)| (id as usize, s))
                .collect::<Vec<_>>(),
        );
    }
    let adaptive = config
        .bounds
        .iter()
        .map(|&bound| {
            adaptive_run(
                config.global_threshold,
                bound,
                &queries,
                &candidates,
                plan,
                &judge,
                empty_row(config.global_threshold),
            )
        })
        .collect();

    Ok(SimReport {
        requested: plan.requested,
        entries: plan.entries.len(),
        filler: plan.filler,
        paired: plan.paired.len(),
        unrelated: plan.unrelated.len(),
        exact_scan: index.stats().exact,
        index: config.index,
        build,
        latency,
        exact_checked: exact_times.len(),
        exact_agreed,
        exact_latency: Latency::of(exact_times),
        rows,
        baseline,
        candidates: config.candidates.max(1),
        adaptive,
        examples,
    })
}

/// One online run: each lookup serves its first candidate at or above both the entry's learned
/// threshold and the pooled floor, and the judge records the label as the outcome of what
/// the gateway's judge sees.
fn adaptive_run(
    global: f32,
    delta: f64,
    queries: &[Query],
    candidates: &[Vec<(usize, f32)>],
    plan: &Plan,
    judge: &Judge<'_>,
    row: SimRow,
) -> AdaptiveRun {
    let mut learned = vec![Outcomes::default(); plan.entries.len()];
    let mut recorded = vec![0usize; plan.entries.len()];
    let mut run = AdaptiveRun {
        global,
        bound: delta,
        row,
        outcomes: 0,
        explored: 0,
        entries_judged: 0,
        most_outcomes: 0,
        raised: 0,
        lowered: 0,
        served_below_global: 0,
        refused: 0,
        first_hit_at: None,
        floor: f32::INFINITY,
    };
    let mut pool = Pool::new(POOL_CAPACITY, delta);
    for (n, (q, found)) in queries.iter().zip(candidates).enumerate() {
        let floor = pool.floor();
        let served = found
            .iter()
            .copied()
            .find(|&(id, s)| s >= learned[id].threshold(global, delta).max(floor));
        let Some(&(top, top_s)) = found.first() else {
            continue;
        };
        if top_s >= global && served.map(|(id, _)| id) != Some(top) {
            run.refused += 1;
        }
        let judged = match served {
            Some((id, s)) => {
                judge.count(&mut run.row, *q, plan.entries[id]);
                if s < global {
                    run.served_below_global += 1;
                }
                run.first_hit_at.get_or_insert(n);
                Some((id, s))
            }
            None if top_s >= global => {
                run.explored += 1;
                Some((top, top_s))
            }
            None => None,
        };
        if let Some((id, s)) = judged {
            let correct = judge.verdict(*q, plan.entries[id]) == Verdict::Correct;
            learned[id].record(s, correct);
            pool.record(s, correct);
            recorded[id] += 1;
            run.outcomes += 1;
        }
    }
    run.floor = pool.floor();
    for (o, &n) in learned.iter().zip(&recorded) {
        if n == 0 {
            continue;
        }
        run.entries_judged += 1;
        run.most_outcomes = run.most_outcomes.max(n);
        let t = o.threshold(global, delta);
        if t > global {
            run.raised += 1;
        } else if t < global {
            run.lowered += 1;
        }
    }
    run
}

/// A synthetic stream where the truth is known, to check that the pooled floor keeps what it
/// serves under the bound (QQP's labels are too noisy near the top to show it: see the docs).
///
/// Every lookup's nearest entry has a similarity drawn uniformly from `[low, 1]`, and its
/// cached answer is wrong with probability `error_at(s)`, falling from 1/2 well below
/// `midpoint` to 0 well above it (a logistic curve of the given `width`). The gateway's rule is
/// replayed online: serve when the similarity reaches the pool's floor; the judge records
/// every lookup's outcome (`sample_rate` and `explore_rate` 1, global threshold `low`).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub low: f32,
    pub midpoint: f64,
    pub width: f64,
    pub lookups: usize,
    /// Runs per bound, each with its own seed.
    pub runs: u64,
    pub bounds: Vec<f64>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            low: 0.90,
            midpoint: 0.95,
            width: 0.01,
            lookups: 10_000,
            runs: 10,
            bounds: vec![0.02, 0.05, 0.1, 0.2],
        }
    }
}

/// One bound of a [`Calibration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationRow {
    pub bound: f64,
    /// The lowest threshold whose hits' true error rate is under the bound, and its hit rate:
    /// what a cache that knew the curve would do.
    pub oracle_threshold: f32,
    pub oracle_hit_rate: f64,
    /// Over the runs.
    pub hit_rate_mean: f64,
    pub false_hit_mean: f64,
    pub false_hit_max: f64,
    /// Runs whose false-hit rate (wrong / hits) exceeded the bound.
    pub runs_over: usize,
    pub floor_mean: f64,
    /// Lookups before the first hit, mean over the runs.
    pub warmup_mean: f64,
}

impl Calibration {
    /// The probability that a cached answer at similarity `s` is wrong.
    pub fn error_at(&self, s: f64) -> f64 {
        0.5 / (1.0 + ((s - self.midpoint) / self.width).exp())
    }

    pub fn run(&self) -> Vec<CalibrationRow> {
        self.bounds.iter().map(|&b| self.row(b)).collect()
    }

    /// The oracle for `bound`: scans thresholds from 1 down on a fine grid, with the mean
    /// error over `[t, 1]` (similarities are uniform).
    fn oracle(&self, bound: f64) -> (f32, f64) {
        const STEPS: usize = 10_000;
        let low = f64::from(self.low);
        let step = (1.0 - low) / STEPS as f64;
        let (mut sum, mut best) = (0.0, None);
        for k in 0..STEPS {
            let t = 1.0 - (k as f64 + 1.0) * step;
            sum += self.error_at(t + step / 2.0);
            if sum / (k + 1) as f64 <= bound {
                best = Some(t);
            }
        }
        match best {
            Some(t) => (t as f32, (1.0 - t) / (1.0 - low)),
            None => (f32::INFINITY, 0.0),
        }
    }

    fn row(&self, bound: f64) -> CalibrationRow {
        let (oracle_threshold, oracle_hit_rate) = self.oracle(bound);
        let low = f64::from(self.low);
        let (mut hit_rates, mut false_hits, mut floors, mut warmups) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut runs_over = 0;
        for seed in 0..self.runs {
            let mut rng = SplitMix64(0x5EED ^ seed.wrapping_mul(0x9E37_79B9));
            let mut pool = Pool::new(POOL_CAPACITY, bound);
            let (mut hits, mut wrong) = (0usize, 0usize);
            let mut first_hit = self.lookups;
            for n in 0..self.lookups {
                let s = low + (1.0 - low) * rng.unit();
                let correct = rng.unit() >= self.error_at(s);
                let s = s as f32;
                if s >= pool.floor() {
                    hits += 1;
                    wrong += usize::from(!correct);
                    first_hit = first_hit.min(n);
                }
                pool.record(s, correct);
            }
            let rate = ratio(wrong, hits);
            runs_over += usize::from(rate > bound);
            hit_rates.push(ratio(hits, self.lookups));
            false_hits.push(rate);
            floors.push(if pool.floor().is_finite() {
                f64::from(pool.floor())
            } else {
                1.0
            });
            warmups.push(first_hit as f64);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        CalibrationRow {
            bound,
            oracle_threshold,
            oracle_hit_rate,
            hit_rate_mean: mean(&hit_rates),
            false_hit_mean: mean(&false_hits),
            false_hit_max: false_hits.iter().copied().fold(0.0, f64::max),
            runs_over,
            floor_mean: mean(&floors),
            warmup_mean: mean(&warmups),
        }
    }

    pub fn to_markdown(&self, rows: &[CalibrationRow]) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "{} lookups per run, {} runs per bound; similarity uniform in [{:.2}, 1]; a cached \
             answer at similarity s is wrong with probability 0.5 / (1 + e^((s − {}) / {})) \
             ({:.2} at {:.2}, {:.3} at {:.2}, {:.4} at {:.2}).\n",
            thousands(self.lookups),
            self.runs,
            self.low,
            self.midpoint,
            self.width,
            self.error_at(self.midpoint),
            self.midpoint,
            self.error_at(self.midpoint + 2.0 * self.width),
            self.midpoint + 2.0 * self.width,
            self.error_at(self.midpoint + 4.0 * self.width),
            self.midpoint + 4.0 * self.width,
        );
        let _ = writeln!(
            md,
            "| bound | oracle threshold | oracle hit rate | hit rate (mean) | false-hit rate \
             (mean) | false-hit rate (worst run) | runs over the bound | floor at the end \
             (mean) | lookups before the first hit (mean) |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} of {} | {:.4} | {:.0} |",
                r.bound,
                r.oracle_threshold,
                r.oracle_hit_rate,
                r.hit_rate_mean,
                r.false_hit_mean,
                r.false_hit_max,
                r.runs_over,
                self.runs,
                r.floor_mean,
                r.warmup_mean
            );
        }
        md
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The 95% Wilson interval of `wrong` out of `n`, or `–` without any.
fn interval(wrong: usize, n: usize) -> String {
    if n == 0 {
        return "–".into();
    }
    let (lo, hi) = crate::threshold::wilson_interval(wrong as u32, n as u32, 1.96);
    format!("{lo:.2}–{hi:.2}")
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.0} µs")
    }
}

impl SimReport {
    /// The report as Markdown: the setup, the static table and the adaptive runs.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let n = thousands;
        let search = if self.exact_scan {
            format!(
                "exact scan (fewer than `exact_below` = {} entries)",
                n(self.index.exact_below)
            )
        } else {
            format!(
                "HNSW (m {}, ef_construction {}, ef_search {})",
                self.index.m, self.index.ef_construction, self.index.ef_search
            )
        };
        let capped = if self.entries < self.requested {
            format!(" (requested {}: capped by the data)", n(self.requested))
        } else {
            String::new()
        };
        let answerable = self.baseline.answerable;
        let _ = writeln!(
            md,
            "- Cache: {} entries{capped} in one partition: the q1 of the {} paired queries \
             ({} distinct) and {} filler questions; search: {search}",
            n(self.entries),
            n(self.paired),
            n(self.entries - self.filler),
            n(self.filler),
        );
        let _ = writeln!(
            md,
            "- Lookups: {} in a seeded order: {} paired (q2 of a cached q1; {} labelled \
             duplicate, {} not) and {} unrelated (q2 whose q1 is not cached); top-1 neighbour",
            n(self.baseline.lookups),
            n(self.paired),
            n(answerable),
            n(self.paired - answerable),
            n(self.unrelated),
        );
        let per_insert = if self.entries > 0 {
            self.build / self.entries as u32
        } else {
            Duration::ZERO
        };
        let _ = writeln!(
            md,
            "- Build: {:.2} s ({} per insert), one thread",
            self.build.as_secs_f64(),
            micros(per_insert)
        );
        let _ = writeln!(
            md,
            "- Lookup latency (index search only, top 1, one thread, {} lookups): p50 {}, \
             p99 {}, mean {}, max {}",
            n(self.latency.samples),
            micros(self.latency.p50),
            micros(self.latency.p99),
            micros(self.latency.mean),
            micros(self.latency.max)
        );
        if self.exact_checked > 0 {
            let _ = writeln!(
                md,
                "- Index vs exact scan on the first {} lookups: same top-1 for {} ({:.2}%); \
                 the exact scan's p50 {}, p99 {}",
                n(self.exact_checked),
                n(self.exact_agreed),
                100.0 * ratio(self.exact_agreed, self.exact_checked),
                micros(self.exact_latency.p50),
                micros(self.exact_latency.p99)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| threshold | hit rate | precision | recall | hits | correct | wrong: partner \
             not dup | wrong: other entry | wrong: unrelated query |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {:.2} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} | {} |",
                r.threshold,
                r.hit_rate(),
                r.precision(),
                r.recall(),
                r.hits,
                r.correct,
                r.wrong_partner,
                r.wrong_other,
                r.wrong_unrelated
            );
        }
        let elsewhere: usize = self.rows.iter().map(|r| r.wrong_labelled_elsewhere).sum();
        if let Some(first) = self.rows.first() {
            let _ = writeln!(
                md,
                "\nWrong hits whose two questions another pair labels duplicate: {} at {:.2}{}.",
                first.wrong_labelled_elsewhere,
                first.threshold,
                if elsewhere == 0 {
                    " (none at any threshold)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Adaptive thresholds (global {:.2}, {} candidates per lookup, outcomes from the \
             labels, online; the pool starts empty and serves nothing without evidence):",
            self.baseline.threshold, self.candidates
        );
        let _ = writeln!(md);
        let mut header = format!("| | static {:.2} |", self.baseline.threshold);
        let mut rule = "|---|---:|".to_owned();
        for a in &self.adaptive {
            let _ = write!(header, " bound {} |", a.bound);
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        let b = &self.baseline;
        let line =
            |md: &mut String, name: &str, base: String, f: &dyn Fn(&AdaptiveRun) -> String| {
                let mut l = format!("| {name} | {base} |");
                for a in &self.adaptive {
                    let _ = write!(l, " {} |", f(a));
                }
                let _ = writeln!(md, "{l}");
            };
        line(&mut md, "hits", b.hits.to_string(), &|a| {
            a.row.hits.to_string()
        });
        line(&mut md, "wrong hits", b.wrong().to_string(), &|a| {
            a.row.wrong().to_string()
        });
        line(
            &mut md,
            "false-hit rate (wrong / hits)",
            format!("{:.4}", ratio(b.wrong(), b.hits)),
            &|a| format!("{:.4}", a.false_hit_rate()),
        );
        line(
            &mut md,
            "its 95% interval",
            interval(b.wrong(), b.hits),
            &|a| interval(a.row.wrong(), a.row.hits),
        );
        line(
            &mut md,
            "wrong hits per lookup",
            format!("{:.4}", ratio(b.wrong(), b.lookups)),
            &|a| format!("{:.4}", ratio(a.row.wrong(), a.row.lookups)),
        );
        line(&mut md, "hit rate", format!("{:.4}", b.hit_rate()), &|a| {
            format!("{:.4}", a.row.hit_rate())
        });
        line(&mut md, "recall", format!("{:.4}", b.recall()), &|a| {
            format!("{:.4}", a.row.recall())
        });
        line(&mut md, "pooled floor at the end", "–".into(), &|a| {
            if a.floor.is_finite() {
                format!("{:.3}", a.floor)
            } else if a.floor > 0.0 {
                "none (serves nothing)".into()
            } else {
                "unbounded".into()
            }
        });
        line(
            &mut md,
            "lookups before the first hit",
            "–".into(),
            &|a| {
                a.first_hit_at
                    .map_or_else(|| "no hit".into(), |n| n.to_string())
            },
        );
        line(&mut md, "outcomes recorded", "–".into(), &|a| {
            a.outcomes.to_string()
        });
        line(
            &mut md,
            "of which explored (not served)",
            "–".into(),
            &|a| a.explored.to_string(),
        );
        line(&mut md, "entries with outcomes", "–".into(), &|a| {
            a.entries_judged.to_string()
        });
        line(&mut md, "most outcomes on one entry", "–".into(), &|a| {
            a.most_outcomes.to_string()
        });
        line(
            &mut md,
            "entries raised / lowered at the end",
            "–".into(),
            &|a| format!("{} / {}", a.raised, a.lowered),
        );
        line(
            &mut md,
            "hits served below the global",
            "–".into(),
            &|a| a.served_below_global.to_string(),
        );
        line(
            &mut md,
            "lookups refused at or above the global",
            "–".into(),
            &|a| a.refused.to_string(),
        );
        md
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const DIM: usize = 64;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        v[i] = 1.0;
        v
    }

    /// `parts` weights on axes, the rest of the unit norm on axis `free`.
    fn mix(parts: &[(usize, f32)], free: usize) -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        let mut norm = 0.0;
        for &(i, w) in parts {
            v[i] = w;
            norm += w * w;
        }
        v[free] = (1.0 - norm).max(0.0).sqrt();
        v
    }

    fn pair(q1: usize, q2: usize, duplicate: bool) -> LabelledPair {
        LabelledPair { q1, q2, duplicate }
    }

    fn config(thresholds: &[f32]) -> SimConfig {
        SimConfig {
            thresholds: thresholds.to_vec(),
            global_threshold: 0.9,
            ..SimConfig::default()
        }
    }

    /// Questions 0..4 are cached (axes 0..4); queries 10..15 have known neighbours.
    fn known_neighbours() -> (Vec<Vec<f32>>, Vec<LabelledPair>, Plan) {
        let mut vectors = vec![vec![0.0; DIM]; 16];
        for (q, v) in vectors.iter_mut().enumerate().take(4) {
            *v = unit(q);
        }
        // Pair 0: duplicate, 0.95 to its own q1.
        vectors[10] = mix(&[(0, 0.95)], 40);
        // Pair 1: duplicate, 0.85 to its own q1.
        vectors[11] = mix(&[(1, 0.85)], 41);
        // Pair 2: not duplicate, 0.92 to its own q1.
        vectors[12] = mix(&[(2, 0.92)], 42);
        // Pair 3: duplicate, but nearest to question 0 (0.905), its own q1 at 0.3.
        vectors[13] = mix(&[(0, 0.905), (3, 0.3)], 43);
        // Unrelated: 0.88 to question 1; and one far from everything.
        vectors[14] = mix(&[(1, 0.88)], 44);
        vectors[15] = unit(45);
        let pairs = vec![
            pair(0, 10, true),
            pair(1, 11, true),
            pair(2, 12, false),
            pair(3, 13, true),
            pair(5, 14, true),
            pair(6, 15, false),
        ];
        let plan = Plan {
            requested: 4,
            entries: vec![0, 1, 2, 3],
            paired: vec![0, 1, 2, 3],
            unrelated: vec![14, 15],
            filler: 0,
        };
        (vectors, pairs, plan)
    }

    #[test]
    fn static_thresholds_count_hits_by_their_neighbour_and_label() {
        let (vectors, pairs, plan) = known_neighbours();
        let thresholds = [0.80, 0.87, 0.89, 0.91, 0.93, 0.96];
        let r = simulate(&vectors, &pairs, &plan, &config(&thresholds)).unwrap();
        let counts: Vec<_> = r
            .rows
            .iter()
            .map(|r| {
                (
                    r.hits,
                    r.correct,
                    r.wrong_partner,
                    r.wrong_other,
                    r.wrong_unrelated,
                )
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                (5, 2, 1, 1, 1),
                (4, 1, 1, 1, 1),
                (3, 1, 1, 1, 0),
                (2, 1, 1, 0, 0),
                (1, 1, 0, 0, 0),
                (0, 0, 0, 0, 0),
            ]
        );
        let at80 = r.rows[0];
        assert_eq!((at80.lookups, at80.answerable), (6, 3));
        assert!((at80.hit_rate() - 5.0 / 6.0).abs() < 1e-12);
        assert!((at80.precision() - 0.4).abs() < 1e-12);
        assert!((at80.recall() - 2.0 / 3.0).abs() < 1e-12);
        let at93 = r.rows[4];
        assert_eq!((at93.precision(), at93.recall()), (1.0, 1.0 / 3.0));
        assert_eq!(r.rows[5].precision(), 0.0);
        assert_eq!(r.baseline.hits, 3, "0.95, 0.92 and 0.905 reach 0.90");
        assert_eq!(r.entries, 4);
        assert!(r.exact_scan);
        assert_eq!(r.latency.samples, 6);
        assert!(r.latency.p50 <= r.latency.p99 && r.latency.p99 <= r.latency.max);
        assert_eq!((r.exact_checked, r.exact_agreed), (6, 6));
        assert!(r.examples.is_empty(), "none asked for");
        let mut cfg = config(&thresholds);
        cfg.examples = 5;
        cfg.examples_from = 0.9;
        let mut ex = simulate(&vectors, &pairs, &plan, &cfg).unwrap().examples;
        ex.sort_by_key(|e| e.query);
        let ex: Vec<_> = ex.iter().map(|e| (e.query, e.entry, e.kind)).collect();
        assert_eq!(ex, vec![(12, 2, "partner not dup"), (13, 0, "other entry")]);
        let md = r.to_markdown();
        assert!(
            md.contains("| 0.80 | 0.8333 | 0.4000 | 0.6667 | 5 | 2 | 1 | 1 | 1 |"),
            "{md}"
        );
    }

    #[test]
    fn wrong_hits_on_a_labelled_duplicate_elsewhere_are_counted() {
        let (vectors, mut pairs, plan) = known_neighbours();
        // Another pair says 13 and 0 are duplicates: pair 3's hit on 0 is still counted wrong,
        // and flagged.
        pairs.push(pair(13, 0, true));
        let r = simulate(&vectors, &pairs, &plan, &config(&[0.80])).unwrap();
        assert_eq!(
            (r.rows[0].wrong_other, r.rows[0].wrong_labelled_elsewhere),
            (1, 1)
        );
    }

    #[test]
    fn the_index_answers_like_an_exact_scan_past_exact_below() {
        let (vectors, pairs, plan) = known_neighbours();
        let mut cfg = config(&[0.80, 0.87, 0.89, 0.91, 0.93, 0.96]);
        let exact = simulate(&vectors, &pairs, &plan, &cfg).unwrap();
        cfg.index.exact_below = 0;
        let graph = simulate(&vectors, &pairs, &plan, &cfg).unwrap();
        assert!(!graph.exact_scan);
        assert_eq!(graph.rows, exact.rows);
    }

    fn run(r: &SimReport, bound: f64) -> AdaptiveRun {
        *r.adaptive.iter().find(|a| a.bound == bound).unwrap()
    }

    #[test]
    fn nothing_is_served_without_evidence_and_wrong_evidence_keeps_it_so() {
        // 50 unrelated questions, each 0.93 to entry 0.
        let mut vectors = vec![unit(0)];
        let mut pairs = vec![];
        for _ in 0..50 {
            vectors.push(mix(&[(0, 0.93)], 1));
            vectors.push(unit(2));
            pairs.push(pair(vectors.len() - 1, vectors.len() - 2, false));
        }
        let plan = Plan {
            requested: 1,
            entries: vec![0],
            paired: vec![],
            unrelated: (0..50).map(|k| 1 + 2 * k).collect(),
            filler: 1,
        };
        let r = simulate(&vectors, &pairs, &plan, &config(&[0.9])).unwrap();
        assert_eq!(r.baseline.hits, 50);
        assert_eq!(r.baseline.wrong_unrelated, 50);
        for a in &r.adaptive {
            assert_eq!(a.row.hits, 0, "{a:?}");
            assert_eq!(a.first_hit_at, None);
            assert_eq!((a.refused, a.explored, a.outcomes), (50, 50, 50));
            assert_eq!((a.raised, a.lowered), (1, 0));
            assert_eq!(a.floor, f32::INFINITY);
        }
        assert!(r.to_markdown().contains("none (serves nothing)"));
    }

    #[test]
    fn clean_evidence_opens_the_pool_after_the_wilson_bound_allows() {
        // 400 pairs share their q1 (entry 0): duplicates, all 0.95 to it.
        let mut vectors = vec![unit(0)];
        let mut pairs = vec![];
        for _ in 0..400 {
            vectors.push(mix(&[(0, 0.95)], 1));
            pairs.push(pair(0, vectors.len() - 1, true));
        }
        let plan = Plan {
            requested: 1,
            entries: vec![0],
            paired: (0..400).collect(),
            unrelated: vec![],
            filler: 0,
        };
        let r = simulate(&vectors, &pairs, &plan, &config(&[0.9])).unwrap();
        assert_eq!(r.baseline.hits, 400);
        // With no failure the Wilson bound (99%) falls under 0.02 after 266 outcomes; under
        // 0.2 after 22, but the pool wants 30: those lookups go upstream and teach the pool,
        // the rest are served.
        let strict = run(&r, 0.02);
        assert_eq!(strict.first_hit_at, Some(266));
        assert_eq!((strict.row.hits, strict.row.wrong()), (134, 0));
        assert_eq!((strict.explored, strict.outcomes), (266, 400));
        assert_eq!(strict.floor, 0.95);
        let loose = run(&r, 0.2);
        assert_eq!(loose.first_hit_at, Some(30));
        assert_eq!(loose.row.hits, 370);
    }

    #[test]
    fn nothing_below_the_global_threshold_is_explored() {
        // 200 duplicates at 0.85 to entry 0, under the global 0.9: never served, never judged.
        let mut vectors = vec![unit(0)];
        let mut pairs = vec![];
        for _ in 0..200 {
            vectors.push(mix(&[(0, 0.85)], 1));
            pairs.push(pair(0, vectors.len() - 1, true));
        }
        let plan = Plan {
            requested: 1,
            entries: vec![0],
            paired: (0..200).collect(),
            unrelated: vec![],
            filler: 0,
        };
        let r = simulate(&vectors, &pairs, &plan, &config(&[0.9])).unwrap();
        assert_eq!(r.baseline.hits, 0);
        for a in &r.adaptive {
            assert_eq!((a.row.hits, a.outcomes, a.refused), (0, 0, 0), "{a:?}");
        }
    }

    #[test]
    fn the_pooled_floor_keeps_served_hits_under_the_bound() {
        // 600 entries, each asked once, at similarities 0.90..0.99; a pair is a duplicate
        // exactly from 0.95 up. The static 0.90 is wrong on half its hits.
        const D: usize = 1300;
        let axis = |i: usize| {
            let mut v = vec![0.0f32; D];
            v[i] = 1.0;
            v
        };
        let n = 600;
        let mut vectors: Vec<Vec<f32>> = (0..n).map(axis).collect();
        let mut pairs = Vec::new();
        for i in 0..n {
            let s = 0.90 + (i % 10) as f32 * 0.01;
            let mut v = vec![0.0f32; D];
            v[i] = s;
            v[n + i] = (1.0 - s * s).sqrt();
            vectors.push(v);
            pairs.push(pair(i, n + i, s >= 0.95));
        }
        let plan = Plan {
            requested: n,
            entries: (0..n).collect(),
            paired: (0..n).collect(),
            unrelated: vec![],
            filler: 0,
        };
        let mut cfg = config(&[0.9]);
        cfg.bounds = vec![0.05, 0.2];
        let r = simulate(&vectors, &pairs, &plan, &cfg).unwrap();
        assert!((0.45..0.55).contains(&r.baseline.precision()));
        for a in &r.adaptive {
            assert!(a.row.hits > 100, "{a:?}");
            assert!(a.false_hit_rate() <= a.bound, "{a:?}");
            assert!(a.floor > 0.93 && a.floor <= 0.96, "{a:?}");
        }
    }

    #[test]
    fn on_a_known_curve_the_floor_keeps_the_bound_and_approaches_the_oracle() {
        let cal = Calibration {
            runs: 4,
            ..Calibration::default()
        };
        let rows = cal.run();
        for r in &rows {
            assert_eq!(r.runs_over, 0, "{r:?}");
            assert!(r.false_hit_max <= r.bound, "{r:?}");
            assert!(r.oracle_threshold.is_finite() && r.oracle_hit_rate > 0.0);
            // It serves, and no more than the oracle would (with margin for chance).
            assert!(r.hit_rate_mean > 0.3 * r.oracle_hit_rate, "{r:?}");
            assert!(r.hit_rate_mean < r.oracle_hit_rate * 1.05, "{r:?}");
        }
        // Looser bounds serve more.
        assert!(rows
            .windows(2)
            .all(|w| w[1].hit_rate_mean > w[0].hit_rate_mean));
        let md = cal.to_markdown(&rows);
        assert!(md.contains("| 0.02 |"), "{md}");
    }

    fn qqp_like(n: usize) -> Vec<LabelledPair> {
        // Pair i asks questions 2i and 2i+1; every seventh pair reuses an earlier q1.
        (0..n)
            .map(|i| {
                let q1 = if i % 7 == 6 { 2 * (i - 3) } else { 2 * i };
                pair(q1, 2 * i + 1, i % 3 == 0)
            })
            .collect()
    }

    fn check_plan(pairs: &[LabelledPair], p: &Plan) {
        let cached: HashSet<usize> = p.entries.iter().copied().collect();
        assert_eq!(cached.len(), p.entries.len(), "entries are distinct");
        let mut asked = HashSet::new();
        for &i in &p.paired {
            assert!(cached.contains(&pairs[i].q1));
            assert!(asked.insert(pairs[i].q2), "asked once");
        }
        for &q in &p.unrelated {
            assert!(asked.insert(q), "asked once");
            let partners = pairs.iter().filter(|x| x.q2 == q || x.q1 == q);
            for x in partners {
                let other = if x.q1 == q { x.q2 } else { x.q1 };
                assert!(
                    !cached.contains(&other),
                    "an unrelated query's partner is cached"
                );
            }
        }
        assert!(asked.iter().all(|q| !cached.contains(q)));
        let partners: HashSet<usize> = p.paired.iter().map(|&i| pairs[i].q1).collect();
        assert_eq!(p.filler, p.entries.len() - partners.len());
        assert!(p.entries.len() <= p.requested);
    }

    #[test]
    fn the_plan_fills_the_cache_from_paired_queries_first() {
        let pairs = qqp_like(3_000);
        let p = plan(&pairs, 1_000, 7);
        check_plan(&pairs, &p);
        assert_eq!(p, plan(&pairs, 1_000, 7), "deterministic");
        assert_ne!(p.paired, plan(&pairs, 1_000, 8).paired);
        assert_eq!(p.entries.len(), 1_000);
        assert_eq!(p.paired.len(), 1_000);
        assert_eq!(p.unrelated.len(), 500);
        // Shared q1s leave room that the filler takes.
        assert!(p.filler > 0 && p.filler < 200, "{}", p.filler);
    }

    #[test]
    fn a_cache_larger_than_the_pairs_takes_filler_and_fewer_queries() {
        let pairs = qqp_like(3_000);
        // 3,000 pairs, 5,571 distinct questions: 4,000 entries leave fewer paired queries.
        let p = plan(&pairs, 4_000, 7);
        check_plan(&pairs, &p);
        assert_eq!(p.entries.len(), 4_000);
        assert!(
            p.paired.len() >= 300 && p.paired.len() < 1_500,
            "{}",
            p.paired.len()
        );
        assert!(p.filler > 2_000);
        // One more paired query would not leave enough filler.
        assert!(!p.capped());
        // Beyond the data: capped, a tenth of the pairs queried.
        let big = plan(&pairs, 100_000, 7);
        check_plan(&pairs, &big);
        assert!(big.capped());
        assert_eq!(big.paired.len(), 300);
        assert!(big.entries.len() > 4_000);
        assert_eq!(plan(&pairs, 0, 7).entries.len(), 0);
        assert_eq!(plan(&[], 10, 7).entries.len(), 0);
    }

    #[test]
    fn filler_excludes_labelled_duplicates_of_asked_questions() {
        // Pairs (2i, 2i+1); pair 0 also has duplicate (1, 9) elsewhere: whatever the seed,
        // if 1 is asked, 9 is never cached.
        let mut pairs: Vec<LabelledPair> = (0..40).map(|i| pair(2 * i, 2 * i + 1, true)).collect();
        pairs.push(pair(1, 9, true));
        pairs.push(pair(100, 101, false));
        for seed in 0..20 {
            let p = plan(&pairs, 30, seed);
            check_plan(&pairs, &p);
            let asked: HashSet<usize> = p
                .paired
                .iter()
                .map(|&i| pairs[i].q2)
                .chain(p.unrelated.iter().copied())
                .collect();
            for q in &p.entries[p.entries.len() - p.filler..] {
                for x in pairs.iter().filter(|x| x.duplicate) {
                    if x.q1 == *q {
                        assert!(!asked.contains(&x.q2));
                    }
                    if x.q2 == *q {
                        assert!(!asked.contains(&x.q1));
                    }
                }
            }
        }
    }

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).map(Duration::from_micros).collect());
        assert_eq!(l.p50, Duration::from_micros(50));
        assert_eq!(l.p99, Duration::from_micros(99));
        assert_eq!(l.max, Duration::from_micros(100));
        assert_eq!(Latency::of(vec![]).samples, 0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
