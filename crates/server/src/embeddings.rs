//! `POST /v1/embeddings`.

use crate::chat::{
    admit_budget, base_record, check_model_access, cost_usd, estimate_tokens, finish_error, intake,
    json_response, limits_tokens, rate_subjects,
};
use crate::error::HttpError;
use crate::middleware::{Auth, RequestId};
use crate::{metrics, AppState};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::openai::{EmbeddingRequest, EmbeddingUsage, EmbeddingVector, Usage};
use plexus_providers::client::UpstreamClient;
use std::time::Instant;

fn validate(req: &EmbeddingRequest) -> Result<(), ApiError> {
    if req.model.is_empty() {
        return Err(ApiError::invalid_request(
            "`model` must not be empty.",
            "model",
        ));
    }
    if req.input.is_empty() {
        return Err(ApiError::invalid_request(
            "`input` must not be empty.",
            "input",
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

/// Little-endian f32 bytes in base64, as OpenAI encodes them.
pub fn encode_base64(values: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One text embedded by a configured embeddings model, L2-normalized (the semantic cache's
/// `{kind: model}` embedder). `None` when the model cannot answer; the cache then misses.
pub(crate) async fn embed_via(state: &AppState, model: &str, text: &str) -> Option<Vec<f32>> {
    let rt = state.runtime();
    let route = rt.resolve(model).ok()?;
    let target = route
        .targets
        .iter()
        .find(|t| UpstreamClient::has_embeddings(&t.provider))?;
    let req: EmbeddingRequest = serde_json::from_value(serde_json::json!({
        "model": model,
        "input": text,
    }))
    .ok()?;
    let outcome = state
        .client()
        .embeddings(&target.provider, &req, &target.upstream_model)
        .await
        .map_err(|e| tracing::warn!(message = "Cache embedding failed.", error = %e))
        .ok()?;
    let mut v = match outcome.response.data.into_iter().next()?.embedding {
        EmbeddingVector::Float(v) => v,
        EmbeddingVector::Base64(_) => return None,
    };
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    Some(v)
}

pub async fn embeddings(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    Auth(principal): Auth,
    req: Request,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let (emb, body) =
        intake::<EmbeddingRequest>(&state, req, &request_id, &principal, "embeddings", validate)
            .await?;
    let rt = state.runtime();
    let mut record = base_record(
        &state,
        &request_id,
        &principal,
        "embeddings",
        &emb.model,
        false,
    );
    if let Err(e) = check_model_access(&principal, &emb.model) {
        return Err(finish_error(&state, record, None, started, e).await);
    }
    let route = match rt.resolve(&emb.model) {
        Ok(r) => r,
        Err(e) => return Err(finish_error(&state, record, None, started, e).await),
    };
    let targets = &route.targets;
    let Some(target) = targets
        .iter()
        .find(|t| UpstreamClient::has_embeddings(&t.provider))
    else {
        let kind = targets
            .first()
            .map(|t| t.provider.kind().as_str())
            .unwrap_or("this");
        let err = ApiError::new(
            ErrorCode::UnsupportedParameter,
            format!(
                "The {kind} provider has no embeddings API; route `{}` to an embeddings model.",
                emb.model
            ),
        )
        .with_param("model");
        return Err(finish_error(&state, record, targets.first(), started, err).await);
    };
    record.request_body = crate::chat::keep_body(rt.config.request_bodies, &body);
    record.provider = target.provider.name().to_owned();
    record.upstream_model = target.upstream_model.to_string();
    let input_chars: usize = emb
        .input
        .texts()
        .map_or(0, |t| t.iter().map(|s| s.len()).sum());
    let subjects = match rate_subjects(&state, &rt, &principal, &route).await {
        Ok(s) => s,
        Err(e) => return Err(finish_error(&state, record, Some(target), started, e).await),
    };
    let tokens = if limits_tokens(&subjects, &route) {
        estimate_tokens(input_chars.max(4))
    } else {
        0
    };
    let on_error = rt.config.limits.on_redis_error;
    let (hold, snapshot) = match state.limiter().acquire(&subjects, tokens, on_error).await {
        Ok(ok) => ok,
        Err(e) => return Err(finish_error(&state, record, Some(target), started, e).await),
    };
    let reservation = match admit_budget(
        &state,
        &principal,
        target,
        estimate_tokens(input_chars.max(4)) * 2,
        0,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(finish_error(&state, record, Some(target), started, e).await),
    };
    let outcome = match state
        .client()
        .embeddings(&target.provider, &emb, &target.upstream_model)
        .await
    {
        Ok(o) => o,
        Err(e) => return Err(finish_error(&state, record, Some(target), started, e.into()).await),
    };
    record.upstream_request_id = outcome.upstream_request_id;
    let mut response = outcome.response;
    if emb.encoding_format.as_deref() == Some("base64") {
        for item in &mut response.data {
            let encoded = match &item.embedding {
                EmbeddingVector::Float(values) => Some(encode_base64(values)),
                EmbeddingVector::Base64(_) => None,
            };
            if let Some(encoded) = encoded {
                item.embedding = EmbeddingVector::Base64(encoded);
            }
        }
    }
    let usage = match &response.usage {
        Some(u) if u.prompt_tokens > 0 => u.clone(),
        _ => {
            record.usage_estimated = true;
            let chars: usize = emb
                .input
                .texts()
                .map_or(0, |t| t.iter().map(|s| s.len()).sum());
            let est = estimate_tokens(chars);
            let u = EmbeddingUsage {
                prompt_tokens: est,
                total_tokens: est,
            };
            response.usage = Some(u.clone());
            u
        }
    };
    let cost = cost_usd(target, &Usage::new(usage.prompt_tokens, 0));
    if let Some(r) = reservation {
        r.settle(cost);
    }
    if let Some(h) = hold {
        h.settle(Some(usage.prompt_tokens), state.limiter().now_ns());
    }
    record.status = 200;
    record.prompt_tokens = usage.prompt_tokens;
    record.cost_usd = cost;
    record.latency_ms = started.elapsed().as_millis() as u64;
    metrics::observe(&record, Some(&target.metrics));
    state.writer().record(record).await;
    let body = serde_json::to_vec(&response)
        .map_err(|e| HttpError(ApiError::internal(format!("cannot encode response: {e}"))))?;
    Ok(json_response(Bytes::from(body), cost, target, &snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let enc = encode_base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(enc)
            .unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.5);
    }
}
