//! Why an attempt failed, in the terms routing decisions need: retry the same target, fall back
//! to the next one, or answer the client. The server maps its provider errors into these.

use std::fmt;
use std::str::FromStr;

/// The kind of an upstream failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// 429 or a rate-limit error body.
    RateLimited,
    /// 5xx, connection refused or reset, overloaded.
    Unavailable,
    /// No (first) byte in time, or the stream stalled.
    Timeout,
    /// The prompt does not fit the model's context window.
    ContextWindow,
    /// The provider's content filter refused the request or the answer.
    ContentFilter,
    /// Any other client error (400, 404, 422...): the request itself is at fault.
    Client,
}

impl FailureClass {
    /// Every class, `Client` last.
    pub const ALL: [FailureClass; 6] = [
        FailureClass::RateLimited,
        FailureClass::Unavailable,
        FailureClass::Timeout,
        FailureClass::ContextWindow,
        FailureClass::ContentFilter,
        FailureClass::Client,
    ];

    /// The classes a model's `fallback_on` list may name (all but `Client`).
    pub const CONFIGURABLE: [FailureClass; 5] = [
        FailureClass::RateLimited,
        FailureClass::Unavailable,
        FailureClass::Timeout,
        FailureClass::ContextWindow,
        FailureClass::ContentFilter,
    ];

    /// Whether the same target may be tried again: the failure is transient.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FailureClass::RateLimited | FailureClass::Unavailable | FailureClass::Timeout
        )
    }

    /// The configuration name; also a low-cardinality metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Unavailable => "unavailable",
            FailureClass::Timeout => "timeout",
            FailureClass::ContextWindow => "context_window",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::Client => "client",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `fallback_on` entry that names no configurable class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFailureClass(pub String);

impl fmt::Display for UnknownFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown failure class `{}`; expected one of: ", self.0)?;
        for (i, class) in FailureClass::CONFIGURABLE.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(class.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownFailureClass {}

/// Parses a `fallback_on` entry. `client` is not accepted: a bad request fails the same way on
/// every target.
impl FromStr for FailureClass {
    type Err = UnknownFailureClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::CONFIGURABLE
            .into_iter()
            .find(|class| class.as_str() == s)
            .ok_or_else(|| UnknownFailureClass(s.to_owned()))
    }
}

/// The `fallback_on` of a model that does not set one: every class except `Client`.
pub fn default_fallback_on() -> Vec<FailureClass> {
    FailureClass::CONFIGURABLE.to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        let retryable: Vec<_> = FailureClass::ALL
            .into_iter()
            .filter(FailureClass::retryable)
            .collect();
        assert_eq!(
            retryable,
            [
                FailureClass::RateLimited,
                FailureClass::Unavailable,
                FailureClass::Timeout
            ]
        );
    }

    #[test]
    fn parses_configured_names() {
        for class in FailureClass::CONFIGURABLE {
            assert_eq!(class.as_str().parse::<FailureClass>(), Ok(class));
            assert_eq!(class.to_string(), class.as_str());
        }
        assert_eq!(
            "context_window".parse::<FailureClass>(),
            Ok(FailureClass::ContextWindow)
        );
    }

    #[test]
    fn rejects_client_and_unknown_names_listing_the_choices() {
        let expected =
            "expected one of: rate_limited, unavailable, timeout, context_window, content_filter";
        for bad in ["client", "Timeout", "timeouts", "", " timeout"] {
            let err = bad.parse::<FailureClass>().unwrap_err();
            assert_eq!(err, UnknownFailureClass(bad.to_owned()));
            assert_eq!(
                err.to_string(),
                format!("unknown failure class `{bad}`; {expected}")
            );
        }
    }

    #[test]
    fn default_fallback_on_is_everything_but_client() {
        let d = default_fallback_on();
        assert_eq!(d.len(), 5);
        assert!(!d.contains(&FailureClass::Client));
        for class in FailureClass::ALL {
            assert_eq!(d.contains(&class), class != FailureClass::Client);
        }
    }

    #[test]
    fn all_names_are_distinct() {
        let mut names: Vec<_> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureClass::ALL.len());
    }
}
