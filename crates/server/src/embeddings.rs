//! `POST /v1/embeddings`: the OpenAI wire format in and out of [`Gateway::embed`].

use crate::chat::{failure_response, intake, json_response};
use crate::error::HttpError;
use crate::middleware::Call;
use crate::AppState;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use plexus_core::ApiError;
use plexus_protocol::openai::{EmbeddingRequest, EmbeddingVector};

/// Little-endian f32 bytes in base64, as OpenAI encodes them.
pub fn encode_base64(values: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn embeddings(
    State(gateway): State<AppState>,
    Call(ctx): Call,
    req: Request,
) -> Result<Response, HttpError> {
    let (emb, body) = intake::<EmbeddingRequest>(&gateway, &ctx, req, "embeddings").await?;
    let base64 = emb.encoding_format.as_deref() == Some("base64");
    let answer = match gateway.embed(&ctx, emb, &body).await {
        Ok(a) => a,
        Err(failure) => return Ok(failure_response(failure)),
    };
    let mut response = answer.response;
    if base64 {
        for item in &mut response.data {
            if let EmbeddingVector::Float(values) = &item.embedding {
                item.embedding = EmbeddingVector::Base64(encode_base64(values));
            }
        }
    }
    let body = serde_json::to_vec(&response)
        .map_err(|e| HttpError(ApiError::internal(format!("cannot encode response: {e}"))))?;
    Ok(json_response(Bytes::from(body), answer.cost, &answer.meta))
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
