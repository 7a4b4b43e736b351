//! Feedback on a request: a user scores a request it made, the score is stored (every instance
//! loads the others' from the store) and trains the model selector near the request's prompt.

use crate::error::from_store;
use crate::Gateway;
use plexus_auth::roles::{Principal, Role};
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::feedback::{Feedback, FeedbackRequest};
use plexus_store::{FeedbackRow, LoggedRequest};

impl Gateway {
    /// Stores `principal`'s feedback on one of its requests (replacing an earlier one) and lets
    /// the selector learn from it.
    ///
    /// A key scores its own requests; admins (the master key, and open mode) score any. A
    /// request that is unknown or not the caller's is the same 404, so ids cannot be probed.
    /// Only a client request (not a call made for one) that succeeded can be scored (409).
    pub async fn feedback(
        &self,
        principal: &Principal,
        req: FeedbackRequest,
    ) -> Result<Feedback, ApiError> {
        let id = req.request_id.as_str();
        let not_found = || {
            ApiError::new(ErrorCode::NotFound, format!("request `{id}` not found"))
                .with_param("request_id")
        };
        let record = match self.store().request_by_id(id).await.map_err(from_store)? {
            Some(r) => Some(r),
            None => {
                // The row may still be queued: the answer can reach the client before the log
                // writer's next batch.
                self.writer().flush().await;
                self.store().request_by_id(id).await.map_err(from_store)?
            }
        };
        let Some(record) = record else {
            return Err(not_found());
        };
        if !may_score(principal, &record) {
            return Err(not_found());
        }
        if let Some(parent) = &record.parent_request_id {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "request `{id}` is a call made for request `{parent}`: only a client \
                     request can be scored; score `{parent}`"
                ),
            )
            .with_param("request_id"));
        }
        if !(200..300).contains(&record.status) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "request `{id}` did not succeed (status {}): only a successful request can \
                     be scored",
                    record.status
                ),
            )
            .with_param("request_id"));
        }
        let now_ms = self.clock().now_unix_ms();
        let model = served_model(&record);
        let row = FeedbackRow {
            request_id: record.request_id,
            key_id: principal.id.clone(),
            model,
            score: req.score.value(),
            comment: req.comment,
            embedding: record.prompt_embedding,
            created_at_ms: now_ms,
        };
        self.store()
            .upsert_feedback(&row)
            .await
            .map_err(from_store)?;
        self.learn_from_feedback(
            &row.request_id,
            &row.model,
            row.embedding.as_deref(),
            row.score,
        );
        Ok(Feedback {
            object: Feedback::OBJECT.into(),
            request_id: row.request_id,
            model: row.model,
            score: row.score,
            comment: row.comment,
            created_at: now_ms.div_euclid(1000),
            extra: Default::default(),
        })
    }
}

/// A key scores its own requests; admins (the master key, admin keys and tokens, open mode)
/// score any.
fn may_score(principal: &Principal, record: &LoggedRequest) -> bool {
    principal.role == Role::Admin || record.key_id == principal.id
}

/// The configured model that served: the selector's decision's `served` for a selected
/// request, else the model the client named.
fn served_model(record: &LoggedRequest) -> String {
    record
        .route
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| v.get("served").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| record.model.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(key_id: &str, model: &str, route: Option<&str>) -> LoggedRequest {
        LoggedRequest {
            ts_ms: 0,
            request_id: "r".into(),
            upstream_request_id: None,
            key_id: key_id.into(),
            endpoint: "chat".into(),
            model: model.into(),
            provider: String::new(),
            upstream_model: String::new(),
            stream: false,
            status: 200,
            error_code: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            usage_estimated: false,
            cost: Default::default(),
            latency_ms: 0,
            ttft_ms: None,
            request_body: None,
            response_body: None,
            cache_status: None,
            parent_request_id: None,
            step: None,
            client_request_id: None,
            overhead_team_id: None,
            user_id: None,
            team_id: None,
            route: route.map(str::to_owned),
            prompt_embedding: None,
        }
    }

    #[test]
    fn the_served_model_comes_from_the_route() {
        assert_eq!(served_model(&logged("k", "gpt", None)), "gpt");
        assert_eq!(
            served_model(&logged("k", "auto", Some(r#"{"served":"sonnet","x":1}"#))),
            "sonnet"
        );
        assert_eq!(served_model(&logged("k", "auto", Some("not json"))), "auto");
        assert_eq!(
            served_model(&logged("k", "auto", Some(r#"{"served":3}"#))),
            "auto"
        );
    }

    #[test]
    fn keys_score_their_own_and_admins_any() {
        let mut member = Principal::master();
        member.id = "k1".into();
        member.key_id = Some("k1".into());
        member.role = Role::Member;
        assert!(may_score(&member, &logged("k1", "gpt", None)));
        assert!(!may_score(&member, &logged("k2", "gpt", None)));
        assert!(may_score(&Principal::master(), &logged("k2", "gpt", None)));
        assert!(may_score(
            &Principal::anonymous_admin(),
            &logged("k2", "gpt", None)
        ));
    }
}
