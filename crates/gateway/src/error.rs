//! Start-up and reload errors, kept apart from [`plexus_core::ApiError`], which is for
//! requests only.

use plexus_core::{ApiError, ErrorCode};

/// Why the gateway could not be built from a config, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting names something that cannot be used (a provider, a JWT key set, a model file).
    #[error("{key}: {message}")]
    Setting {
        key: std::borrow::Cow<'static, str>,
        message: String,
    },
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
    pub fn setting(
        key: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> StartupError {
        StartupError::Setting {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What an action that needs the credential vault (storing or opening an encrypted provider
/// credential) gets when no key-encryption key is configured: the operator's configuration is
/// missing something, so it is a `configuration_error` (500) that says what to set, not an
/// upstream or availability error.
pub fn vault_not_configured() -> ApiError {
    ApiError::new(
        ErrorCode::ConfigurationError,
        "The credential vault is not configured: set PLEXUS_ENCRYPTION_KEY (base64 of 32 bytes; `plexus vault generate-key` prints one) or `vault.key_file` in the config, then restart the gateway.",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_vault_is_a_configuration_error_that_says_what_to_set() {
        let e = vault_not_configured();
        assert_eq!(e.code, ErrorCode::ConfigurationError);
        assert_eq!(e.status(), 500);
        let body = e.to_body().error;
        assert_eq!(body.code.as_deref(), Some("configuration_error"));
        assert_eq!(body.kind, "server_error");
        assert_ne!(body.kind, "upstream_error");
        assert!(
            body.message.contains("PLEXUS_ENCRYPTION_KEY"),
            "{}",
            body.message
        );
        assert!(body.message.contains("vault.key_file"), "{}", body.message);
    }
}
