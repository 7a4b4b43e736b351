//! `POST /v1/orchestrations` (run a strategy with per-request parameters, or a configured
//! orchestration model, and answer with the trace) and `GET /v1/orchestrations/{id}` (the
//! stored result and evidence graph, readable as the request log is).

use crate::chat::{failure_response, intake};
use crate::error::HttpError;
use crate::middleware::{Auth, Call};
use crate::{headers, AppState};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use plexus_auth::roles::{authorize, Action, Scope};
use plexus_core::orchestrate::OrchestrateConfig;
use plexus_core::{ApiError, ErrorCode};
use plexus_gateway::orchestrate::PER_REQUEST_MODEL;
use plexus_protocol::openai::ChatCompletionRequest;
use plexus_protocol::orchestration::OrchestrateFields;
use serde_json::{Map, Value};

/// Splits a request body into its chat request and its `orchestrate` fields.
fn split(
    mut body: Map<String, Value>,
) -> Result<(Box<ChatCompletionRequest>, Option<OrchestrateFields>), ApiError> {
    let mut fields = Map::new();
    for name in OrchestrateFields::NAMES {
        if let Some(v) = body.remove(name) {
            fields.insert(name.to_owned(), v);
        }
    }
    body.entry("model")
        .or_insert_with(|| Value::String(PER_REQUEST_MODEL.into()));
    let chat: Box<ChatCompletionRequest> =
        crate::chat::parse_json(&serde_json::to_vec(&Value::Object(body)).unwrap_or_default())?;
    if fields.is_empty() {
        return Ok((chat, None));
    }
    let fields: OrchestrateFields = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("Invalid request: {e}")))?;
    Ok((chat, Some(fields)))
}

/// The orchestration a request asks for: a configured orchestration model, or the fields.
fn resolve(
    gateway: &AppState,
    chat: &ChatCompletionRequest,
    fields: Option<OrchestrateFields>,
) -> Result<(String, OrchestrateConfig), ApiError> {
    let configured = gateway.orchestration_config(&chat.model);
    match (configured, fields) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(
            format!(
                "`{}` is a configured orchestration model: give either it or the orchestration fields (`strategy`, `members`, ...), not both.",
                chat.model
            ),
            "model",
        )),
        (Some(spec), None) => Ok((chat.model.clone(), spec)),
        (None, None) if chat.model == PER_REQUEST_MODEL => Err(ApiError::invalid_request(
            "Give the orchestration: `strategy` and `members` (and the other fields), or a configured orchestration model in `model`.",
            "strategy",
        )),
        (None, None) => Err(ApiError::new(
            ErrorCode::ModelNotFound,
            format!("`{}` is not a configured orchestration model.", chat.model),
        )
        .with_param("model")),
        (None, Some(fields)) => {
            let spec = OrchestrateConfig::parse(fields).map_err(|e| {
                ApiError::invalid_request(
                    format!("Invalid request: `{}`: {}", e.field, e.message),
                    &e.field,
                )
            })?;
            gateway.check_orchestration(&spec)?;
            Ok((PER_REQUEST_MODEL.to_owned(), spec))
        }
    }
}

fn with_orchestration_headers(mut resp: Response, id: &str, confidence: Option<f64>) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-plexus-orchestration-id", v);
    }
    if let Some(c) = confidence {
        if let Ok(v) = HeaderValue::from_str(&format!("{c:.4}")) {
            h.insert("x-plexus-confidence", v);
        }
    }
    resp
}

pub async fn create(
    State(gateway): State<AppState>,
    Call(ctx): Call,
    req: Request,
) -> Result<Response, HttpError> {
    let (body, raw) = intake::<Map<String, Value>>(&gateway, &ctx, req, "orchestration").await?;
    let parsed = split(body).and_then(|(chat, fields)| {
        if chat.is_stream() {
            return Err(ApiError::invalid_request(
                "`stream` is not available on /v1/orchestrations (the answer comes with its trace); stream an orchestration model through /v1/chat/completions.",
                "stream",
            ));
        }
        let (model, spec) = resolve(&gateway, &chat, fields)?;
        Ok((chat, model, spec))
    });
    let (chat, model, spec) = match parsed {
        Ok(p) => p,
        Err(e) => {
            gateway
                .record_rejected(&ctx, "orchestration", &raw, &e)
                .await;
            return Err(HttpError(e));
        }
    };
    match gateway
        .orchestrate(ctx, model, spec, chat, "orchestration")
        .await
    {
        Ok(done) => {
            let mut resp = Json(&done.result).into_response();
            headers::apply_meta(resp.headers_mut(), &done.meta);
            headers::apply_cost(resp.headers_mut(), done.result.cost_usd);
            Ok(with_orchestration_headers(
                resp,
                &done.result.id,
                Some(done.result.confidence),
            ))
        }
        Err(failure) => {
            let id = failure
                .meta
                .orchestration
                .as_ref()
                .map(|(id, _)| id.clone());
            let resp = failure_response(failure);
            Ok(match id {
                Some(id) => with_orchestration_headers(resp, &id, None),
                None => resp,
            })
        }
    }
}

/// `GET /v1/orchestrations/{id}`: the key that ran it, its user, their team admin and admins
/// may read it; anyone else gets the same 404 as for an unknown id.
pub async fn get(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let not_found = || {
        HttpError(ApiError::new(
            ErrorCode::NotFound,
            format!("orchestration `{id}` not found"),
        ))
    };
    let store = gateway.store();
    let mut record = store
        .request_by_id(&id)
        .await
        .map_err(|e| HttpError(plexus_gateway::error::from_store(e)))?;
    if record.is_none() {
        // It may still be queued for the log writer.
        gateway.writer().flush().await;
        record = store
            .request_by_id(&id)
            .await
            .map_err(|e| HttpError(plexus_gateway::error::from_store(e)))?;
    }
    let Some(record) = record else {
        return Err(not_found());
    };
    let same_key = principal.key_id.as_deref() == Some(record.key_id.as_str())
        || principal.id == record.key_id;
    let scope = Scope {
        team_id: record.team_id.as_deref(),
        user_id: record.user_id.as_deref(),
    };
    if !same_key && authorize(&principal, Action::SpendRead, scope).is_err() {
        return Err(not_found());
    }
    let json = store
        .orchestration_json(&id)
        .await
        .map_err(|e| HttpError(plexus_gateway::error::from_store(e)))?;
    let Some(json) = json else {
        return Err(not_found());
    };
    // Our own serialization, returned as stored (re-parsing would round its floats).
    let mut resp = json.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}
