//! `POST /v1/feedback`: a user scores a request it made ([`Gateway::feedback`]), which trains
//! the model selector near the request's prompt.
//!
//! [`Gateway::feedback`]: plexus_gateway::Gateway::feedback

use crate::error::HttpError;
use crate::middleware::Auth;
use crate::AppState;
use axum::extract::{Request, State};
use axum::Json;
use plexus_protocol::feedback::{Feedback, FeedbackRequest};

pub async fn feedback(
    State(gateway): State<AppState>,
    Auth(principal): Auth,
    req: Request,
) -> Result<Json<Feedback>, HttpError> {
    let body: FeedbackRequest = crate::admin::body(&gateway, req).await?;
    Ok(Json(gateway.feedback(&principal, body).await?))
}
