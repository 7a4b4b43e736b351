//! Model selection for `model: auto`, free of I/O: every function takes its inputs (embeddings,
//! prices, health, time, a seeded random source) explicitly, so the decision logic is tested on
//! fixed data. The async driver lives in `plexus-gateway`.

pub mod choose;
pub mod error;
pub mod eval;
pub mod feedback;
pub mod predictor;
pub mod requirements;
pub mod routellm;
