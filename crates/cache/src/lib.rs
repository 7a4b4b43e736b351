//! The response cache of Plexus.
//!
//! For now this crate holds the in-process vector index of the semantic cache ([`index`]):
//! approximate nearest neighbours by cosine similarity over L2-normalized embeddings, with
//! inserts, replacements and deletes while it serves lookups.

//!
//! The exact cache:
//! - [`key`]: the exact key (a hash of the canonical request, the tenant scope and the route's
//!   fingerprint) and the semantic partition (the same without the question).
//! - [`store`]: the tiers: in process (byte-bounded) and Redis (shared), with per-entry expiry
//!   checked against the injected clock on every read, and purges that reach every instance.
//! - [`coalesce`]: concurrent identical misses make one upstream call.
//! - [`replay`]: streams assembled into one stored completion, and replayed as chunks.
//! - [`threshold`]: per-entry similarity thresholds learned from verified outcomes.
//! - [`sim`]: the semantic cache simulated on labelled question pairs (hit rate, precision of
//!   hits, recall, lookup latency), for `plexus cache eval`.
//!
//! **Invariants:** an entry is never served after its expiry, from either tier; a key never
//! matches across tenants, models, routes or parameters that change the answer; a cache
//! failure (Redis down) is a miss, never a failed request.

pub mod coalesce;
pub mod index;
pub mod key;
pub mod replay;
pub mod sim;
pub mod store;
pub mod threshold;
