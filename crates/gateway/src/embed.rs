//! Embeddings through the pipeline: the same stages as chat without the response cache, and
//! the same dispatch (balancing, provider limits, retries, fallbacks, breakers) over the
//! route's targets that have an embeddings API.

use crate::ctx::{CallCtx, Origin};
use crate::pipeline::{
    check_model_access, require_model, within_deadline, Admission, AnswerMeta, Failure, Settlement,
};
use crate::record::{estimate_tokens, keep_body};
use crate::runtime::Target;
use crate::Gateway;
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::openai::{
    EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingVector, Usage,
};
use plexus_providers::client::UpstreamClient;
use std::borrow::Cow;

/// A successful embeddings call.
#[derive(Debug)]
pub struct EmbedAnswer {
    pub meta: AnswerMeta,
    pub response: EmbeddingResponse,
    pub cost: plexus_protocol::money::Nanos,
}

/// Semantic checks the types cannot express, naming the parameter.
pub fn validate(req: &EmbeddingRequest) -> Result<(), ApiError> {
    require_model(&req.model)?;
    if req.input.is_empty() {
        return Err(ApiError::invalid_request(
            "`input` must not be empty.",
            "input",
        ));
    }
    if req.dimensions == Some(0) {
        return Err(ApiError::invalid_request(
            "`dimensions` must be at least 1.",
            "dimensions",
        ));
    }
    match req.encoding_format.as_deref() {
        None | Some("float") | Some("base64") => Ok(()),
        Some(other) => Err(ApiError::invalid_request(
            format!("`encoding_format` must be `float` or `base64`, not `{other}`."),
            "encoding_format",
        )),
    }
}

fn input_chars(req: &EmbeddingRequest) -> usize {
    req.input
        .texts()
        .map_or(0, |t| t.iter().map(|s| s.len()).sum())
}

impl Gateway {
    /// Runs an embeddings request through the pipeline. `body` is what arrived on the wire
    /// (for the stored body), empty for the gateway's own calls.
    pub async fn embed(
        &self,
        ctx: &CallCtx,
        mut req: EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbedAnswer, Failure> {
        {
            // An alias (`aliases:`) becomes the configured model it stands for.
            let rt = self.inner.runtime.load();
            let canonical = rt.canonical_model(&req.model);
            if canonical != req.model.as_str() {
                let canonical = canonical.into_owned();
                req.model = canonical;
            }
        }
        let mut admission = Admission::new(self, ctx, "embeddings", &req.model, false);
        let mut meta = AnswerMeta::default();
        // Boxed, as `complete`'s: moving a large state machine costs more than allocating it.
        let run = Box::pin(self.run_embed(ctx, req, body, &mut admission, &mut meta));
        match within_deadline(ctx, run).await {
            Ok(answer) => Ok(answer),
            // Boxed: the failure path's state would otherwise grow every call's future.
            Err(error) => Err(Box::pin(admission.fail(error, meta)).await),
        }
    }

    async fn run_embed(
        &self,
        ctx: &CallCtx,
        req: EmbeddingRequest,
        body: &[u8],
        admission: &mut Admission,
        meta: &mut AnswerMeta,
    ) -> Result<EmbedAnswer, ApiError> {
        let rt = self.runtime();
        validate(&req)?;
        if let Some(r) = admission.record_mut() {
            r.request_body = keep_body(rt.config.request_bodies, body);
        }
        check_model_access(&ctx.principal, &req.model)?;
        let resolved = rt.resolve(&req.model)?;
        // Only the targets that can embed take part.
        let targets: Vec<Target> = resolved
            .targets
            .iter()
            .filter(|t| UpstreamClient::has_embeddings(&t.provider))
            .cloned()
            .collect();
        if targets.is_empty() {
            let kind = resolved
                .targets
                .first()
                .map(|t| t.provider.kind().as_str())
                .unwrap_or("this");
            return Err(ApiError::new(
                ErrorCode::UnsupportedParameter,
                format!(
                    "The {kind} provider has no embeddings API; route `{}` to an embeddings model.",
                    req.model
                ),
            )
            .with_param("model"));
        }
        let route = match resolved {
            Cow::Borrowed(r) if r.targets.len() == targets.len() => Cow::Borrowed(r),
            other => {
                let mut r = other.into_owned();
                r.targets = targets;
                Cow::Owned(r)
            }
        };
        let estimate = estimate_tokens(input_chars(&req).max(4));
        let subjects = self.rate_subjects(ctx, &rt, &route).await?;
        let tokens = if subjects.iter().any(|s| s.quota.limits_tokens())
            || route
                .targets
                .iter()
                .any(|t| t.limit.as_ref().is_some_and(|l| l.quota.limits_tokens()))
        {
            estimate
        } else {
            0
        };
        let on_error = rt.config.limits.on_redis_error;
        let (hold, snapshot) = self.limiter().acquire(&subjects, tokens, on_error).await?;
        admission.holds.extend(hold);
        meta.limits = snapshot;
        // Input tokens only; twice the estimate covers tokenizers that split finer.
        let budget = self
            .reserve_budget(ctx, &rt, &route, estimate * 2, |_| 0)
            .await?;
        admission.budget = budget;

        let client = self.client();
        let req = &req;
        let outcome = self
            .dispatch(&rt, &route, ctx, tokens, |target: Target| async move {
                client
                    .embeddings(&target.provider, req, &target.upstream_model)
                    .await
            })
            .await;
        let served = self.served_or_failed(outcome, admission, meta)?;
        let first_byte_ns = admission.limiter_now();
        let outcome = admission.serving(served);
        let mut response = outcome.response;
        let (usage, estimated) = match &response.usage {
            Some(u) if u.prompt_tokens > 0 => (u.clone(), false),
            _ => {
                let est = estimate_tokens(input_chars(req));
                let u = EmbeddingUsage {
                    prompt_tokens: est,
                    total_tokens: est,
                };
                response.usage = Some(u.clone());
                (u, true)
            }
        };
        if let Some(r) = admission.record_mut() {
            r.upstream_request_id = outcome.upstream_request_id;
        }
        let usage = Usage::new(usage.prompt_tokens, 0);
        let cost = admission
            .take()
            .finish(Settlement::answered(&usage, estimated, first_byte_ns))
            .await;
        Ok(EmbedAnswer {
            meta: std::mem::take(meta),
            response,
            cost,
        })
    }

    /// One text embedded by a configured embeddings model, L2-normalized: the semantic cache's
    /// `{kind: model}` embedder, as a system call made for `origin`. `None` when the model
    /// cannot answer (the cache then misses).
    pub(crate) async fn embed_text(
        &self,
        origin: &Origin,
        model: &str,
        text: &str,
    ) -> Option<Vec<f32>> {
        let req: EmbeddingRequest = serde_json::from_value(serde_json::json!({
            "model": model,
            "input": text,
        }))
        .ok()?;
        let ctx = CallCtx::system(origin);
        let answer = match self.embed(&ctx, req, &[]).await {
            Ok(a) => a,
            Err(f) => {
                tracing::warn!(message = "Cache embedding failed.", error = %f.error);
                return None;
            }
        };
        let mut v = match answer.response.data.into_iter().next()?.embedding {
            EmbeddingVector::Float(v) => v,
            EmbeddingVector::Base64(_) => return None,
        };
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(body: &str) -> EmbeddingRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn validation_names_the_param() {
        let base = parse(r#"{"model":"m","input":"hi"}"#);
        assert!(validate(&base).is_ok());
        let mut r = base.clone();
        r.dimensions = Some(1);
        assert!(validate(&r).is_ok());
        type Mutation = fn(&mut EmbeddingRequest);
        let cases: [(&str, Mutation); 3] = [
            ("model", |r| r.model.clear()),
            ("dimensions", |r| r.dimensions = Some(0)),
            ("encoding_format", |r| {
                r.encoding_format = Some("int8".into())
            }),
        ];
        for (param, mutate) in cases {
            let mut r = base.clone();
            mutate(&mut r);
            let e = validate(&r).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert_eq!(e.param.as_deref(), Some(param));
        }
        let e = validate(&parse(r#"{"model":"m","input":"hi","dimensions":0}"#)).unwrap_err();
        assert_eq!(e.message, "`dimensions` must be at least 1.");
    }
}
