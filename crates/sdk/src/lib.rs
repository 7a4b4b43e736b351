//! Rust client for Plexus or any OpenAI-compatible endpoint.
//!
//! ```no_run
//! use plexus_sdk::{Client, ChatCompletionRequest, Message, Role};
//! use futures::StreamExt;
//!
//! # async fn demo() -> Result<(), plexus_sdk::Error> {
//! let client = Client::new("http://127.0.0.1:4000/v1", Some("sk-master-key"))?;
//! let request = ChatCompletionRequest {
//!     model: "demo".into(),
//!     messages: vec![Message::text(Role::User, "Hello!")],
//!     ..Default::default()
//! };
//! let answer = client.chat(&request).await?;
//! println!("{:?}", answer.choices[0].message.content);
//!
//! let mut stream = client.chat_stream(&request).await?;
//! while let Some(chunk) = stream.next().await {
//!     for choice in chunk?.choices {
//!         print!("{}", choice.delta.content.unwrap_or_default());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The admin API (keys, teams, users, spend, ...) has its own typed client:
//! [`admin::AdminClient`].
#![forbid(unsafe_code)]

pub mod admin;

pub use plexus_protocol::feedback::{Feedback, FeedbackRequest, Score};
pub use plexus_protocol::openai::*;
pub use plexus_protocol::orchestration::{
    Contributor, EdgeKind, Graph, GraphEdge, GraphNode, NodeKind, OrchestrateFields, Orchestration,
    OrchestrationRequest, PlexusSummary,
};
pub use plexus_protocol::responses::{
    Input as ResponsesInput, ItemList, ItemsQuery, Response as ResponseObject, ResponsesRequest,
};

use futures::{Stream, StreamExt};
use rand::Rng;
use reqwest::StatusCode;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body.
    #[error("{status}: {}", .body.error.message)]
    Api {
        status: u16,
        body: ErrorResponse,
        request_id: Option<String>,
    },
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
    #[error("invalid base URL or key: {0}")]
    Config(String),
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// The stream ended with an error event.
    #[error("stream failed: {}", .0.error.message)]
    Stream(ErrorResponse),
}

impl Error {
    /// The stable error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { body, .. } | Error::Stream(body) => body.error.code.as_deref(),
            _ => None,
        }
    }
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, Error>> + Send>>;

/// A client; cheap to clone (one pooled connection set).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    max_retries: u32,
}

impl Client {
    /// `base_url` as for the OpenAI SDKs, e.g. `http://127.0.0.1:4000/v1`.
    pub fn new(base_url: &str, api_key: Option<&str>) -> Result<Client, Error> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Config(format!("`{base_url}` is not an http(s) URL")));
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Client {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.map(str::to_owned),
            max_retries: 2,
        })
    }

    /// Retries on 429, 5xx and connection errors (exponential backoff with full jitter,
    /// honouring `Retry-After`). Default 2.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        rb
    }

    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut attempt = 0;
        loop {
            let result = build().send().await;
            let retry_after = match &result {
                Ok(resp) if resp.status().is_success() => None,
                Ok(resp) if is_retryable(resp.status()) => Some(
                    resp.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64),
                ),
                Ok(_) => None,
                Err(e) if e.is_connect() || e.is_timeout() => Some(None),
                Err(_) => None,
            };
            match retry_after {
                Some(hint) if attempt < self.max_retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, hint)).await;
                }
                _ => {
                    let resp = result?;
                    if resp.status().is_success() {
                        return Ok(resp);
                    }
                    return Err(api_error(resp).await);
                }
            }
        }
    }

    pub async fn chat(&self, req: &ChatCompletionRequest) -> Result<ChatCompletion, Error> {
        let mut req = req.clone();
        req.stream = None;
        let resp = self
            .send(|| {
                self.request(reqwest::Method::POST, "/chat/completions")
                    .json(&req)
            })
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A streamed completion; the final chunk carries usage.
    pub async fn chat_stream(&self, req: &ChatCompletionRequest) -> Result<ChunkStream, Error> {
        let mut req = req.clone();
        req.stream = Some(true);
        req.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            ..Default::default()
        });
        let resp = self
            .send(|| {
                self.request(reqwest::Method::POST, "/chat/completions")
                    .json(&req)
            })
            .await?;
        let mut body = resp.bytes_stream();
        let stream = async_stream_like(move |tx| async move {
            let mut sse = plexus_protocol::sse::SseDecoder::new();
            loop {
                while let Some(ev) = sse.next_event() {
                    if ev.data.trim() == "[DONE]" {
                        return;
                    }
                    let item = match serde_json::from_str::<ChatCompletionChunk>(&ev.data) {
                        Ok(chunk) => Ok(chunk),
                        Err(_) => match serde_json::from_str::<ErrorResponse>(&ev.data) {
                            Ok(err) => Err(Error::Stream(err)),
                            Err(e) => Err(Error::Decode(e.to_string())),
                        },
                    };
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop {
                        return;
                    }
                }
                match body.next().await {
                    Some(Ok(bytes)) => sse.feed(&bytes),
                    Some(Err(e)) => {
                        let _ = tx.send(Err(Error::Http(e))).await;
                        return;
                    }
                    None => break,
                }
            }
            let _ = tx
                .send(Err(Error::Decode("stream ended without [DONE]".into())))
                .await;
        });
        Ok(stream)
    }

    pub async fn embeddings(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        let resp = self
            .send(|| self.request(reqwest::Method::POST, "/embeddings").json(req))
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Scores a request made with this key (`request_id`: the gateway's id, its
    /// `x-plexus-request-id`): from 0 (bad) to 1 (good), `Score::UP` or `Score::DOWN`. A new
    /// score on the same request replaces the old one. Plexus only.
    pub async fn feedback(
        &self,
        request_id: &str,
        score: Score,
        comment: Option<&str>,
    ) -> Result<Feedback, Error> {
        let req = FeedbackRequest {
            request_id: request_id.to_owned(),
            score,
            comment: comment.map(str::to_owned),
        };
        let resp = self
            .send(|| self.request(reqwest::Method::POST, "/feedback").json(&req))
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Runs an orchestration (`POST /v1/orchestrations`, Plexus only): `request.chat.model`
    /// names a configured orchestration model, or is empty and `request.fields` gives the
    /// strategy and members. The answer carries the final answer, the confidence, the
    /// contributors and the evidence graph. `stream` is not available here (it is cleared).
    /// Retried like [`Client::chat`] (429, 5xx, connection errors): a retry runs the whole
    /// orchestration again, so use [`Client::with_max_retries`]`(0)` to avoid paying twice.
    pub async fn orchestrate(
        &self,
        request: &OrchestrationRequest,
    ) -> Result<Orchestration, Error> {
        let mut req = request.clone();
        req.chat.stream = None;
        req.chat.stream_options = None;
        let resp = self
            .send(|| {
                self.request(reqwest::Method::POST, "/orchestrations")
                    .json(&req)
            })
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A stored orchestration and its evidence graph (`GET /v1/orchestrations/{id}`, Plexus
    /// only; `id` as in `x-plexus-orchestration-id`). An unknown id, or one this key may not
    /// read, is an [`Error::Api`] with status 404 and code `not_found`.
    pub async fn orchestration(&self, id: &str) -> Result<Orchestration, Error> {
        let path = format!("/orchestrations/{}", admin::seg(id));
        let resp = self
            .send(|| self.request(reqwest::Method::GET, &path))
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// `POST /v1/responses` (the OpenAI Responses API), not streamed (`stream` is cleared).
    /// With `background: Some(true)` the answer is the `queued` response: poll
    /// [`Client::response`] until its `status` ends. Retried like [`Client::chat`].
    pub async fn create_response(
        &self,
        request: &ResponsesRequest,
    ) -> Result<ResponseObject, Error> {
        let mut req = request.clone();
        req.stream = None;
        let resp = self
            .send(|| self.request(reqwest::Method::POST, "/responses").json(&req))
            .await?;
        decode(resp).await
    }

    /// A stored response (`GET /v1/responses/{id}`): for a background run, its current status.
    /// Only the key that created it may read it; for any other, as for an unknown id, an
    /// [`Error::Api`] with status 404.
    pub async fn response(&self, id: &str) -> Result<ResponseObject, Error> {
        let path = format!("/responses/{}", admin::seg(id));
        let resp = self
            .send(|| self.request(reqwest::Method::GET, &path))
            .await?;
        decode(resp).await
    }

    /// Cancels a background run (`POST /v1/responses/{id}/cancel`), from any instance.
    pub async fn cancel_response(&self, id: &str) -> Result<ResponseObject, Error> {
        let path = format!("/responses/{}/cancel", admin::seg(id));
        let resp = self
            .send(|| self.request(reqwest::Method::POST, &path))
            .await?;
        decode(resp).await
    }

    /// Deletes a stored response (`DELETE /v1/responses/{id}`).
    pub async fn delete_response(&self, id: &str) -> Result<(), Error> {
        let path = format!("/responses/{}", admin::seg(id));
        self.send(|| self.request(reqwest::Method::DELETE, &path))
            .await?;
        Ok(())
    }

    /// A page of the items a response was generated from
    /// (`GET /v1/responses/{id}/input_items`).
    pub async fn response_input_items(
        &self,
        id: &str,
        query: &ItemsQuery,
    ) -> Result<ItemList, Error> {
        let path = format!("/responses/{}/input_items", admin::seg(id));
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        if let Some(order) = &query.order {
            params.push(("order", order.clone()));
        }
        if let Some(after) = &query.after {
            params.push(("after", after.clone()));
        }
        let resp = self
            .send(|| self.request(reqwest::Method::GET, &path).query(&params))
            .await?;
        decode(resp).await
    }

    pub async fn models(&self) -> Result<ModelList, Error> {
        let resp = self
            .send(|| self.request(reqwest::Method::GET, "/models"))
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// A successful answer's JSON body.
async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Error> {
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Full jitter: a random wait up to `base * 2^attempt`, or the server's hint when it gave one.
fn backoff(attempt: u32, hint: Option<Duration>) -> Duration {
    if let Some(h) = hint {
        return h.min(Duration::from_secs(60));
    }
    let cap = Duration::from_millis(250 * (1u64 << attempt.min(6)));
    let millis = rand::rng().random_range(0..=cap.as_millis() as u64);
    Duration::from_millis(millis)
}

async fn api_error(resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice::<ErrorResponse>(&bytes).unwrap_or_else(|_| ErrorResponse {
        error: ErrorObject {
            message: String::from_utf8_lossy(&bytes).into_owned(),
            kind: "unknown".into(),
            param: None,
            code: None,
        },
    });
    Error::Api {
        status,
        body,
        request_id,
    }
}

/// A channel-backed stream: the producer runs as a task that ends when the consumer is dropped.
fn async_stream_like<F, Fut>(produce: F) -> ChunkStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ChatCompletionChunk, Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(produce(tx));
    let stream = futures::stream::unfold((rx, AbortOnDrop(task)), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    });
    Box::pin(stream)
}

/// Stops the producer task when the consumer drops the stream.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_hints() {
        for attempt in 1..10 {
            assert!(backoff(attempt, None) <= Duration::from_millis(250 * 64));
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert!(Client::new("ftp://x", None).is_err());
    }
}
