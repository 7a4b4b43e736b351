//! The pure core of the cross-model orchestrator (issue 13), free of I/O.
//!
//! The async strategies (vote, cascade, mixture, debate, refine, best-of-n) live in
//! `plexus-gateway`: they fan out inner calls through `Gateway::complete`, so every inner call is
//! limited, billed and recorded exactly once. Everything they decide over the answers they get
//! back lives here, as functions of explicit inputs tested on fixed data:
//!
//! - [`mod@extract`]: the final answer of a free-text model output per [`AnswerKind`] (`number`,
//!   `choice`, `json`, `text`), as a canonical key so that equal answers compare equal
//!   (`1,000` = `1000` = `1000.0` = `$1,000`; `\boxed{3/4}` = `0.75`).
//! - [`mod@vote`]: the plurality vote over extracted answers, with abstentions, agreement, quorum and
//!   the tie rules (best recorded quality, then the first listed member).
//! - [`confidence`]: the vote's confidence (a weighted naive-Bayes posterior over the ballots with
//!   members' accuracies shrunk toward a prior), and its calibration: a reliability table, the
//!   expected calibration error, and serializable Platt and isotonic recalibration maps.

pub mod confidence;
pub mod extract;
pub mod prompts;
pub mod vote;

pub use confidence::{
    answer_confidence, expected_calibration_error, reliability_table, vote_confidence, Bucket,
    Calibrator, ConfidenceParams,
};
pub use extract::{extract, AnswerKind};
pub use vote::{plurality, Ballot, Member, TieBreak, VoteOutcome};

/// Why a calibration map could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrchestrateError {
    /// No (confidence, correct) pairs were given.
    #[error("cannot fit a calibration map on no data")]
    EmptyCalibrationSet,
    /// A confidence is not a finite number in [0, 1].
    #[error("confidence {0} is not a finite number in [0, 1]")]
    InvalidConfidence(f64),
}
