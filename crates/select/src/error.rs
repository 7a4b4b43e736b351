//! Errors of the selection crate's pure logic: parsing training data, training, evaluating and
//! loading a trained router.

/// Why data could not be parsed, a router trained or loaded, or an evaluation run.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A CSV file is malformed (RFC 4180): an unterminated quote, a stray quote, a bad value.
    #[error("CSV line {line}: {message}")]
    Csv { line: usize, message: String },
    /// A column the caller asked for is not in the file.
    #[error("no column {column:?} (the file has: {available})")]
    MissingColumn { column: String, available: String },
    /// A line of the contaminated-prompts JSONL is not a JSON object with a prompt.
    #[error("JSONL line {line}: {message}")]
    Jsonl { line: usize, message: String },
    /// `router.json` is not a valid trained router.
    #[error("invalid router: {0}")]
    InvalidRouter(String),
    /// Training was given nothing it can learn from, or inconsistent inputs.
    #[error("cannot train: {0}")]
    Training(String),
    /// An evaluation cannot be computed (no test prompts, or no quality gap between the models).
    #[error("cannot evaluate: {0}")]
    Eval(String),
}
