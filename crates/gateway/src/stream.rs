//! A streamed answer that settles its own accounting: at its end (200), on an upstream
//! failure (the error's status), or when it is dropped unfinished (499, with the completion
//! tokens forwarded so far, estimated). Dropping it drops the upstream connection.
//!
//! The stream always ends with a usage chunk: the provider's, or an estimate when it sent
//! none. Whether the caller passes it on is the caller's (wire format's) business.

use crate::cache::CacheFill;
use crate::pipeline::{Admission, AnswerMeta, Settlement, TargetFate};
use crate::record::{estimate_tokens, keep_body};
use crate::runtime::Target;
use crate::Gateway;
use futures::Stream;
use plexus_core::config::BodyLogging;
use plexus_core::ApiError;
use plexus_protocol::openai::{ChatCompletion, ChatCompletionChunk, Usage};
use plexus_providers::client::ChunkStream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Most characters of a streamed answer kept for the request log.
const MAX_CAPTURE: usize = 256 * 1024;

/// The accounting of a live stream.
pub(crate) struct StreamAccount {
    admission: Admission,
    prompt_estimate: u64,
    /// Characters of content, reasoning and tool arguments forwarded so far.
    forwarded_chars: usize,
    usage: Option<Usage>,
    first_token_at: Option<Instant>,
    /// When the first chunk arrived, on the limiter's clock.
    first_chunk_ns: Option<u64>,
    /// The answer being assembled for the response cache (a miss that will be stored).
    cache_fill: Option<CacheFill>,
    /// The streamed text, kept only when `request_bodies` stores bodies.
    capture: Option<(BodyLogging, String)>,
    /// The id, creation time and model of the answer, for the closing usage chunk.
    last_meta: Option<(String, i64, String)>,
}

impl StreamAccount {
    pub(crate) fn new(
        admission: Admission,
        prompt_estimate: u64,
        bodies: BodyLogging,
        cache_fill: Option<CacheFill>,
    ) -> StreamAccount {
        StreamAccount {
            admission,
            prompt_estimate,
            forwarded_chars: 0,
            usage: None,
            first_token_at: None,
            first_chunk_ns: None,
            cache_fill,
            capture: (bodies != BodyLogging::Off).then(|| (bodies, String::new())),
            last_meta: None,
        }
    }

    fn observe(&mut self, chunk: &ChatCompletionChunk) {
        if let Some(fill) = &mut self.cache_fill {
            fill.observe(chunk);
        }
        if self.first_chunk_ns.is_none() {
            self.first_chunk_ns = Some(self.admission.limiter_now());
        }
        if self.last_meta.is_none() {
            self.last_meta = Some((chunk.id.clone(), chunk.created, chunk.model.clone()));
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let mut chars = 0;
        for c in &chunk.choices {
            let d = &c.delta;
            chars += d.content.as_deref().map_or(0, str::len);
            chars += d.reasoning_content.as_deref().map_or(0, str::len);
            for t in d.tool_calls.iter().flatten() {
                if let Some(f) = &t.function {
                    chars += f.arguments.as_deref().map_or(0, str::len);
                    chars += f.name.as_deref().map_or(0, str::len);
                }
            }
            if let Some((_, text)) = &mut self.capture {
                if text.len() < MAX_CAPTURE {
                    text.push_str(d.content.as_deref().unwrap_or(""));
                    for t in d.tool_calls.iter().flatten() {
                        if let Some(f) = &t.function {
                            text.push_str(f.arguments.as_deref().unwrap_or(""));
                        }
                    }
                }
            }
        }
        if chars > 0 && self.first_token_at.is_none() {
            self.first_token_at = Some(Instant::now());
        }
        self.forwarded_chars += chars;
    }

    /// The usage to report: the provider's, or an estimate (marked as such).
    fn settled_usage(&self) -> (Usage, bool) {
        match &self.usage {
            Some(u) => (u.clone(), false),
            None => (
                Usage::new(self.prompt_estimate, estimate_tokens(self.forwarded_chars)),
                true,
            ),
        }
    }

    fn settle(&mut self, status: u16, error: Option<&ApiError>) {
        let (usage, estimated) = self.settled_usage();
        let started = self.admission.started();
        let ttft = self
            .first_token_at
            .map(|t| t.duration_since(started).as_millis() as u64);
        let capture = self.capture.take();
        if let Some(r) = self.admission.record_mut() {
            r.ttft_ms = ttft;
            if let Some((mode, text)) = capture {
                r.response_body = keep_body(mode, text.as_bytes());
            }
        }
        // A stream the upstream broke counts against the target; one the caller left does not.
        let fate = match status {
            200 | 499 => TargetFate::Answered(
                self.first_chunk_ns
                    .unwrap_or_else(|| self.admission.limiter_now()),
            ),
            _ => TargetFate::Failed,
        };
        // Never wait here: this runs inside a poll (or a `Drop`).
        self.admission.finish_detached(Settlement {
            status,
            error,
            usage: Some((&usage, estimated)),
            fate,
        });
    }
}

impl Drop for StreamAccount {
    fn drop(&mut self) {
        // Reached unsettled only when the caller went away.
        self.settle(499, None);
    }
}

enum State {
    Live {
        chunks: ChunkStream,
        account: Box<StreamAccount>,
        gateway: Gateway,
        /// Fires when shutdown cancels the calls still running.
        stop: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
        /// Counts the stream among the gateway's tasks, so shutdown waits until it settled.
        _tracked: tokio_util::task::task_tracker::TaskTrackerToken,
    },
    /// Chunks that need no accounting (a replayed cache hit, a final error).
    Ready(std::vec::IntoIter<Result<ChatCompletionChunk, ApiError>>),
    Done,
}

/// The chunks of a streamed answer.
pub struct AnswerStream {
    pub meta: AnswerMeta,
    state: State,
}

impl std::fmt::Debug for AnswerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerStream")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl AnswerStream {
    pub(crate) fn live(
        gateway: Gateway,
        meta: AnswerMeta,
        chunks: ChunkStream,
        account: StreamAccount,
    ) -> AnswerStream {
        let stop = Box::pin(gateway.in_flight_stop().clone().cancelled_owned());
        let tracked = gateway.tasks().token();
        AnswerStream {
            meta,
            state: State::Live {
                chunks,
                account: Box::new(account),
                gateway,
                stop,
                _tracked: tracked,
            },
        }
    }

    /// A cached completion replayed as chunks (with its usage).
    pub(crate) fn replay(meta: AnswerMeta, completion: &ChatCompletion) -> AnswerStream {
        let chunks: Vec<_> = plexus_cache::replay::replay(completion, true)
            .into_iter()
            .map(Ok)
            .collect();
        AnswerStream {
            meta,
            state: State::Ready(chunks.into_iter()),
        }
    }

    /// A finished answer's chunks (an orchestration's synthesis).
    pub(crate) fn ready(meta: AnswerMeta, chunks: Vec<ChatCompletionChunk>) -> AnswerStream {
        AnswerStream {
            meta,
            state: State::Ready(chunks.into_iter().map(Ok).collect::<Vec<_>>().into_iter()),
        }
    }

    /// A stream that fails at once (already recorded).
    pub(crate) fn failed(meta: AnswerMeta, error: ApiError) -> AnswerStream {
        AnswerStream {
            meta,
            state: State::Ready(vec![Err(error)].into_iter()),
        }
    }

    /// The rest of the stream as one completion (for callers that do not forward chunks).
    pub async fn collect_completion(mut self) -> Result<ChatCompletion, ApiError> {
        use futures::StreamExt;
        let mut assembler = plexus_cache::replay::Assembler::default();
        while let Some(item) = self.next().await {
            assembler.push(&item?);
        }
        Ok(assembler.finish())
    }
}

impl Stream for AnswerStream {
    type Item = Result<ChatCompletionChunk, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match &mut this.state {
            State::Done => Poll::Ready(None),
            State::Ready(items) => {
                let next = items.next();
                if next.is_none() {
                    this.state = State::Done;
                }
                Poll::Ready(next)
            }
            State::Live {
                chunks,
                account,
                gateway,
                stop,
                ..
            } => {
                if stop.as_mut().poll(cx).is_ready() {
                    let err = ApiError::new(
                        plexus_core::ErrorCode::ServiceUnavailable,
                        "The gateway is shutting down; the stream was cancelled.",
                    );
                    account.settle(499, Some(&err));
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(err)));
                }
                match chunks.as_mut().poll_next(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        account.observe(&chunk);
                        Poll::Ready(Some(Ok(chunk)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        let err = ApiError::from(e);
                        tracing::warn!(message = "Stream failed after it started.", error = %err);
                        account.settle(err.status(), Some(&err));
                        this.state = State::Done;
                        Poll::Ready(Some(Err(err)))
                    }
                    Poll::Ready(None) => {
                        // The end: close with the usage (estimated if the provider sent none),
                        // settle, and store the answer for the next callers in the background.
                        let closing = (account.usage.is_none()).then(|| {
                            let (usage, _) = account.settled_usage();
                            let (id, created, model) =
                                account.last_meta.clone().unwrap_or_default();
                            let mut chunk = ChatCompletionChunk::new(&id, created, &model);
                            chunk.usage = Some(usage);
                            chunk
                        });
                        let (usage, _) = account.settled_usage();
                        let fill = account.cache_fill.take();
                        let served_by = account.admission.target().map(Target::served_by);
                        account.settle(200, None);
                        if let (Some(fill), Some(served_by)) = (fill, served_by) {
                            let gateway2 = gateway.clone();
                            gateway.tasks().spawn(async move {
                                fill.complete_stream(&gateway2, usage, served_by).await;
                            });
                        }
                        this.state = match closing {
                            Some(chunk) => State::Ready(vec![Ok(chunk)].into_iter()),
                            None => State::Done,
                        };
                        match &mut this.state {
                            State::Ready(items) => Poll::Ready(items.next()),
                            _ => Poll::Ready(None),
                        }
                    }
                }
            }
        }
    }
}
