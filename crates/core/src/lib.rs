//! The Plexus domain: canonical types and traits every component shares, the error code
//! registry, the validated configuration, the model catalog and the clock.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod clock;
pub mod config;
pub mod error;
pub mod log;
pub mod orchestrate;
pub mod redact;

pub use error::{ApiError, ErrorCode};
