//! Who a call is for and where it comes from: [`CallCtx`].
//!
//! Every call into the pipeline carries one. A client request's context is built by the server
//! from the authenticated principal; an inner call (one step of a composite request) derives
//! its context from its parent's with [`CallCtx::child`], and a call the gateway makes for its
//! own purposes (the semantic cache's judge, a model-based embedding) gets a system context
//! with [`CallCtx::system`], whose parent is the request that caused it.

use crate::composite::Drawdown;
use plexus_auth::roles::{Principal, Role};
use plexus_core::{ApiError, ErrorCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How deep inner calls may nest (a composite whose step is itself composite, and so on).
pub const MAX_DEPTH: u32 = 4;

/// The key id of the gateway's own calls: they are recorded and priced, and their spend
/// belongs to nobody's budget.
pub const SYSTEM_KEY: &str = "system";

/// A new gateway request id: a random per-process prefix plus a counter, unique across
/// instances, with no syscall or RNG per request.
pub fn new_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("req_{prefix}{n:010x}")
}

/// The request an inner or system call was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub request_id: String,
    /// The call's position among its parent's inner calls.
    pub step: u32,
    /// 1 for a direct child of a client request.
    pub depth: u32,
}

/// The cache controls of one call (from `Cache-Control`, `x-plexus-cache*` for HTTP callers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControls {
    /// Skip the lookup, store the fresh answer.
    pub no_cache: bool,
    /// Neither read nor write.
    pub no_store: bool,
    /// The entry's time to live, instead of the configured one.
    pub ttl: Option<Duration>,
    /// Cache even a non-deterministic request.
    pub force: bool,
}

/// Everything the pipeline needs to know about a call besides the request itself.
#[derive(Debug, Clone)]
pub struct CallCtx {
    pub principal: Principal,
    /// Gateway-generated, the key of the call's record.
    pub request_id: String,
    /// The client's own `x-request-id`, kept and echoed, never used as a key.
    pub client_request_id: Option<String>,
    pub parent: Option<Parent>,
    pub cache: CacheControls,
    /// Separates independent samples of one prompt in the cache (and its coalescing), so that
    /// they are not merged into one upstream call.
    pub cache_salt: Option<String>,
    /// The call fails with a timeout past this instant.
    pub deadline: Option<tokio::time::Instant>,
    /// For inner calls: the parent's budget reservation, which they draw from instead of
    /// reserving on the caller's budgets themselves.
    pub budget: Option<Arc<Drawdown>>,
    /// For system calls: the team of the client request that caused them (their spend is
    /// shown as that team's cache overhead).
    pub overhead_team: Option<String>,
    /// Set once the caller has gone away while the call runs on in a tracked task
    /// ([`crate::Gateway::complete_detached`]): the call is then recorded as 499, with its
    /// real usage.
    pub caller_gone: Option<Arc<AtomicBool>>,
    /// When the call arrived (for its latency).
    pub started: Instant,
    /// A client call's note for the server's access log (`None` when that log is off, and on
    /// inner and system calls): the gateway writes the model asked for into it.
    pub access: Option<Arc<AccessNote>>,
    /// What the caller asks of the model selector (`x-plexus-objective`,
    /// `x-plexus-cost-weight`, `x-plexus-session`).
    pub selection: SelectionHints,
}

/// A caller's wishes for a `select` model. Setting the objective or the cost weight makes the
/// decision afresh (no session affinity).
#[derive(Debug, Clone, Default)]
pub struct SelectionHints {
    pub objective: Option<plexus_select::choose::Objective>,
    pub cost_weight: Option<f64>,
    /// An explicit conversation id: requests that share it keep their first choice.
    pub session: Option<Arc<str>>,
}

impl SelectionHints {
    /// Whether the caller overrode the configured policy.
    pub fn overrides(&self) -> bool {
        self.objective.is_some() || self.cost_weight.is_some()
    }
}

/// What the server's access log learns about a request while it is handled: its key id (the
/// server sets it on authentication) and the model it asked for (the gateway sets it with the
/// request's record). Each is set once; the first value stays.
#[derive(Debug, Default)]
pub struct AccessNote {
    pub model: std::sync::OnceLock<String>,
    pub key_id: std::sync::OnceLock<String>,
}

impl CallCtx {
    /// A client request's context, with a new request id.
    pub fn client(principal: Principal, client_request_id: Option<String>) -> CallCtx {
        CallCtx::with_ids(principal, new_request_id(), client_request_id)
    }

    /// A client request's context under the id the gateway gave it on arrival.
    pub fn with_ids(
        principal: Principal,
        request_id: String,
        client_request_id: Option<String>,
    ) -> CallCtx {
        CallCtx {
            principal,
            request_id,
            client_request_id,
            parent: None,
            cache: CacheControls::default(),
            cache_salt: None,
            deadline: None,
            budget: None,
            overhead_team: None,
            caller_gone: None,
            started: Instant::now(),
            access: None,
            selection: SelectionHints::default(),
        }
    }

    /// Whether this is an inner or system call (rather than a client's request): it takes no
    /// request-rate or concurrency limit of the caller, which its client request already took.
    pub fn is_inner(&self) -> bool {
        self.parent.is_some()
    }

    /// Whether the gateway makes this call for itself.
    pub fn is_system(&self) -> bool {
        self.principal.id == SYSTEM_KEY
    }

    /// The context of step `step` of a composite request: the same caller, limits and cache
    /// controls, one level deeper, drawing from `budget` when the parent reserved one.
    pub fn child(&self, step: u32, budget: Option<Arc<Drawdown>>) -> Result<CallCtx, ApiError> {
        let depth = self.parent.as_ref().map_or(0, |p| p.depth) + 1;
        if depth > MAX_DEPTH {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "Inner calls nest deeper than {MAX_DEPTH} levels; a composite model may not call itself."
                ),
            ));
        }
        Ok(CallCtx {
            principal: self.principal.clone(),
            request_id: new_request_id(),
            client_request_id: self.client_request_id.clone(),
            parent: Some(Parent {
                request_id: self.request_id.clone(),
                step,
                depth,
            }),
            cache: self.cache,
            cache_salt: self.cache_salt.clone(),
            deadline: self.deadline,
            budget: budget.or_else(|| self.budget.clone()),
            overhead_team: self.overhead_team.clone(),
            caller_gone: self.caller_gone.clone(),
            started: Instant::now(),
            // The access log's line is the client request's.
            access: None,
            selection: SelectionHints::default(),
        })
    }

    /// A call the gateway makes for itself on behalf of `origin` (the semantic cache's judge, a
    /// model-based embedding): the system principal, global and model limits only, recorded
    /// with `origin` as its parent and priced as `origin`'s team's cache overhead.
    pub fn system(origin: &Origin) -> CallCtx {
        CallCtx {
            principal: system_principal(),
            request_id: new_request_id(),
            client_request_id: None,
            parent: Some(Parent {
                request_id: origin.request_id.clone(),
                step: 0,
                depth: origin.depth + 1,
            }),
            // The gateway's own calls never read or fill the response cache.
            cache: CacheControls {
                no_store: true,
                ..CacheControls::default()
            },
            cache_salt: None,
            deadline: None,
            budget: None,
            overhead_team: origin.team_id.clone(),
            caller_gone: None,
            started: Instant::now(),
            access: None,
            selection: SelectionHints::default(),
        }
    }

    /// What a system call made for this one needs to know about it.
    pub fn origin(&self) -> Origin {
        Origin {
            request_id: self.request_id.clone(),
            team_id: if self.is_system() {
                self.overhead_team.clone()
            } else {
                self.principal.team_id.clone()
            },
            depth: self.parent.as_ref().map_or(0, |p| p.depth),
        }
    }
}

/// The request a system call is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub request_id: String,
    pub team_id: Option<String>,
    pub depth: u32,
}

/// The gateway's own identity: every model, no key, user or team.
pub fn system_principal() -> Principal {
    Principal {
        id: SYSTEM_KEY.into(),
        key_id: None,
        user_id: None,
        team_id: None,
        role: Role::Viewer,
        models: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ids_are_unique_and_children_link_to_their_parent() {
        let a = new_request_id();
        assert_ne!(a, new_request_id());
        assert!(a.starts_with("req_"));
        let root = CallCtx::client(Principal::master(), Some("client-1".into()));
        let child = root.child(3, None).unwrap();
        let p = child.parent.as_ref().unwrap();
        assert_eq!(
            (p.request_id.as_str(), p.step, p.depth),
            (root.request_id.as_str(), 3, 1)
        );
        assert_ne!(child.request_id, root.request_id);
        assert_eq!(child.client_request_id.as_deref(), Some("client-1"));
        assert!(child.is_inner() && !root.is_inner());
    }

    #[test]
    fn depth_is_limited() {
        let mut ctx = CallCtx::client(Principal::master(), None);
        for _ in 0..MAX_DEPTH {
            ctx = ctx.child(0, None).unwrap();
        }
        let err = ctx.child(0, None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.message.contains("deeper"));
    }

    #[test]
    fn system_calls_belong_to_the_origin_team() {
        let mut p = Principal::master();
        p.team_id = Some("red".into());
        let root = CallCtx::client(p, None);
        let sys = CallCtx::system(&root.origin());
        assert!(sys.is_system() && sys.is_inner());
        assert_eq!(sys.overhead_team.as_deref(), Some("red"));
        assert_eq!(sys.principal.team_id, None);
        assert!(sys.cache.no_store);
        // A system call's own system calls still belong to the same team.
        assert_eq!(sys.origin().team_id.as_deref(), Some("red"));
    }
}
