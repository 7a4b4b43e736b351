//! Start-up and reload errors, kept apart from [`plexus_core::ApiError`], which is for
//! requests only.

use plexus_core::{ApiError, ErrorCode};

/// Why the gateway could not be built from a config, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting names something that cannot be used (a provider, a JWT key set, a model file).
    #[error("{key}: {message}")]
    Setting { key: &'static str, message: String },
    #[error("provider credentials: {0}")]
    Credentials(String),
    #[error("cannot read the database: {0}")]
    Store(#[from] plexus_store::StoreError),
    #[error("{0}")]
    Provider(#[from] plexus_providers::ProviderError),
    /// A reload changed a setting that is built once at start-up.
    #[error("`{0}` changed: it takes effect only after a restart, so the reload was refused (nothing was applied)")]
    NeedsRestart(&'static str),
}

impl StartupError {
    pub fn setting(key: &'static str, message: impl Into<String>) -> StartupError {
        StartupError::Setting {
            key,
            message: message.into(),
        }
    }
}

/// A store failure seen by a request or an admin action: the one place it becomes an API
/// error. What the caller can fix (a missing or duplicate record) says so; anything else is a
/// 503 whose detail stays in the log.
pub fn from_store(e: plexus_store::StoreError) -> ApiError {
    use plexus_store::StoreError;
    match e {
        StoreError::NotFound(what) => {
            ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
        }
        StoreError::Conflict(what) => {
            ApiError::new(ErrorCode::InvalidRequest, format!("{what} already exists"))
                .with_param("name")
        }
        StoreError::InUse(why) => ApiError::new(ErrorCode::InvalidRequest, why).with_param("id"),
        other => {
            tracing::error!(message = "Store operation failed.", error = %other);
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is unavailable; try again.",
            )
            .with_retry_after(Some(std::time::Duration::from_secs(1)))
        }
    }
}
