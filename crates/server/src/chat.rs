//! `POST /v1/chat/completions`: the OpenAI wire format in and out of the gateway
//! ([`Gateway::complete_detached`]: a caller that leaves early is still billed for what ran).

use crate::error::HttpError;
use crate::middleware::Call;
use crate::{headers, sse, AppState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use plexus_core::{ApiError, ErrorCode};
use plexus_gateway::{Answer, AnswerMeta, CallCtx, ChatRequest, Failure, Gateway};
use plexus_protocol::money::Nanos;
use plexus_protocol::openai::ChatCompletionRequest;
use serde::de::DeserializeOwned;

/// Reads the body, refusing more than `limit` bytes with a 413.
pub(crate) async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                // The body's own failure, such as `request_timeout` (`inbound.body_idle_timeout`).
                if let Some(err) = s.downcast_ref::<ApiError>() {
                    return err.clone();
                }
                source = s.source();
            }
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Could not read the request body: {e}"),
            )
        })
}

/// Parses JSON, naming the offending parameter on failure. The fast path is plain serde; only
/// a failed parse is redone with path tracking to find the parameter.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) => Err(describe_json_error::<T>(body)),
    }
}

#[cold]
fn describe_json_error<T: DeserializeOwned>(body: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => return ApiError::new(ErrorCode::InvalidRequest, "Invalid JSON body."),
            Err(e) => {
                return ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("We could not parse the JSON body of your request: {e}"),
                )
            }
        },
        Err(e) => e,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::new(
            ErrorCode::InvalidRequest,
            format!("We could not parse the JSON body of your request: {inner}"),
        );
    }
    let text = inner.to_string();
    let param = match text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(field) if path == "." => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path,
    };
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("Invalid request: `{param}`: {text}"),
    )
    .with_param(param)
}

/// Reads and parses a request body; a failure is recorded like every request, then answered.
pub(crate) async fn intake<T: DeserializeOwned>(
    gateway: &Gateway,
    ctx: &CallCtx,
    req: Request,
    endpoint: &'static str,
) -> Result<(T, Bytes), HttpError> {
    let limit = gateway.runtime().config.max_request_bytes;
    let parsed = match read_body(req, limit).await {
        Ok(body) => match parse_json::<T>(&body) {
            Ok(v) => Ok((v, body)),
            Err(e) => Err((e, body)),
        },
        Err(e) => Err((e, Bytes::new())),
    };
    match parsed {
        Ok(ok) => Ok(ok),
        Err((e, body)) => {
            // The record names the model the body asks for, when it names one.
            gateway.record_rejected(ctx, endpoint, &body, &e).await;
            Err(HttpError(e))
        }
    }
}

/// An error response with the gateway's headers (rate limits, what last failed).
pub(crate) fn failure_response(failure: Failure) -> Response {
    let mut resp = HttpError(failure.error).into_response();
    headers::apply_meta(resp.headers_mut(), &failure.meta);
    resp
}

/// A successful JSON answer with the gateway's headers.
pub(crate) fn json_response(body: Bytes, cost: Nanos, meta: &AnswerMeta) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers::apply_meta(h, meta);
    headers::apply_cost(h, cost);
    resp
}

pub async fn chat_completions(
    State(gateway): State<AppState>,
    Call(ctx): Call,
    req: Request,
) -> Result<Response, HttpError> {
    let (chat, body) = intake::<Box<ChatCompletionRequest>>(&gateway, &ctx, req, "chat").await?;
    let wants_usage = chat.wants_stream_usage();
    match gateway
        .complete_detached(ctx, ChatRequest::openai(chat, body))
        .await
    {
        Ok(Answer::Full(full)) => Ok(json_response(full.body, full.cost, &full.meta)),
        Ok(Answer::Stream(stream)) => Ok(sse::sse_response(stream, wants_usage)),
        Err(failure) => Ok(failure_response(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_param() {
        let e = parse_json::<ChatCompletionRequest>(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse_json::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse_json::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse_json::<ChatCompletionRequest>(b"{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.param.is_none());
        assert!(
            parse_json::<ChatCompletionRequest>(br#"{"model":"m","messages":[]} trailing"#)
                .is_err()
        );
    }
}
