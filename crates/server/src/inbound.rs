//! The per-connection half of the inbound limits (`inbound:`): what a connection's driver
//! (`serve.rs`), its IO and its requests share, the IO wrapper, the request body that gives up
//! after `body_idle_timeout` without a byte, the response body that tells the driver when a
//! request is done, and the responses the gateway writes itself, outside the router.
//!
//! Nothing here allocates or copies on a normal request: the shared state is one allocation
//! per connection, the body timer is boxed only once a body read has to wait, and the IO
//! wrapper looks at one byte of each write.

use crate::error::error_body_bytes;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use plexus_core::{ApiError, ErrorCode};
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `now + d`, saturating (a configured duration may be absurdly long).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// What a connection's driver, its IO and its in-flight requests share.
pub(crate) struct Shared {
    pub(crate) accepted: Instant,
    /// Requests whose response is not finished.
    in_flight: AtomicUsize,
    /// When a request last finished, in nanoseconds after `accepted` (at least 1); 0 until the
    /// first one has.
    idle_since: AtomicU64,
    /// Bytes read from the client (written by the IO only).
    bytes_read: AtomicU64,
    /// The connection speaks HTTP/2 (ALPN, or the prior-knowledge preface).
    h2: AtomicBool,
    /// Set by the driver when a request head timed out: the IO answers 408 and fails the read.
    abort: AtomicBool,
    /// Set by the IO once it has answered in hyper's place: the connection is over.
    closing: AtomicBool,
    /// Handler responses shaped like hyper's own error head (see [`hyper_error_status`]) that
    /// are yet to be written: those pass the IO untouched.
    lookalikes: AtomicUsize,
}

/// Where a connection stands, for its driver's timers.
pub(crate) enum Phase {
    /// A request is being served: no inbound timer runs (a body has its own).
    Serving { h2: bool },
    /// No request has been received yet.
    Fresh { h2: bool, got_bytes: bool },
    /// Between requests since `since` (nanoseconds after `accepted`).
    Idle { since: u64, h2: bool },
}

impl Shared {
    pub(crate) fn new(accepted: Instant) -> Arc<Shared> {
        Arc::new(Shared {
            accepted,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            lookalikes: AtomicUsize::new(0),
        })
    }

    pub(crate) fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub(crate) fn phase(&self) -> Phase {
        let h2 = self.is_h2();
        // Acquire pairs with the Release of `InFlight::drop`: `idle_since` is then current.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Phase::Serving { h2 };
        }
        match self.idle_since.load(Ordering::Relaxed) {
            0 => Phase::Fresh {
                h2,
                got_bytes: self.bytes_read() > 0,
            },
            since => Phase::Idle { since, h2 },
        }
    }
}

/// One request being served, from the router's call until hyper drops its response body.
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub(crate) fn start(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &*self.0;
        let since = u64::try_from(s.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        s.idle_since.store(since.max(1), Ordering::Relaxed);
        s.in_flight.fetch_sub(1, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// The router's future for one request: holds the request's [`InFlight`] and hands it to
    /// the response body.
    pub(crate) struct Respond<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Respond<F> {
    pub(crate) fn new(inner: F, in_flight: InFlight) -> Self {
        Respond {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<F> Future for Respond<F>
where
    F: Future<Output = Result<axum::response::Response, Infallible>>,
{
    type Output = Result<http::Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if matches!(response.status().as_u16(), 400 | 414 | 431) && is_lookalike(&response) {
            if let Some(f) = this.in_flight.as_ref() {
                f.0.lookalikes.fetch_add(1, Ordering::Relaxed);
            }
        }
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

/// A handler response hyper would write exactly like its own parse-error head.
#[cold]
fn is_lookalike(response: &axum::response::Response) -> bool {
    use http::header::{CONNECTION, CONTENT_LENGTH, DATE};
    response
        .headers()
        .keys()
        .all(|k| k == CONTENT_LENGTH || k == CONNECTION || k == DATE)
        && response.body().size_hint().exact() == Some(0)
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's [`InFlight`] when hyper drops it.
    pub(crate) struct TrackedBody {
        #[pin]
        inner: axum::body::Body,
        _in_flight: Option<InFlight>,
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with `request_timeout` (an [`ApiError`] the handlers' body
    /// reader passes on) when no byte arrives for `idle` while it is read. The timer is armed
    /// only when a read has to wait, and boxed the first time it is.
    pub(crate) struct TimedBody {
        #[pin]
        inner: Incoming,
        idle: Duration,
        waiting: bool,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, idle: Duration) -> Self {
        TimedBody {
            inner,
            idle,
            waiting: false,
            timer: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !*this.waiting {
            *this.waiting = true;
            let deadline = after(Instant::now(), *this.idle);
            match this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => *this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match this.timer {
            Some(timer) => {
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(body_timeout(*this.idle)))))
            }
            None => Poll::Pending,
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cold]
fn body_timeout(idle: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "No request body bytes arrived for {} ms (`inbound.body_idle_timeout`).",
            idle.as_millis()
        ),
    )
}

// ---- responses written outside the router ----

fn canned(err: &ApiError, extra_headers: &str) -> Vec<u8> {
    let status = err.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = error_body_bytes(err);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

static BAD_REQUEST: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        &ApiError::new(
            ErrorCode::InvalidRequest,
            "The request is not valid HTTP: a malformed request line or header (such as a \
             control character in a header, or an invalid or conflicting Content-Length).",
        ),
        "",
    )
});

static URI_TOO_LONG: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut err = ApiError::new(
        ErrorCode::InvalidRequest,
        "The request target (URI) is too long.",
    );
    err.status_override = Some(414);
    canned(&err, "")
});

static HEADERS_TOO_LARGE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        &ApiError::new(
            ErrorCode::HeadersTooLarge,
            "The request's headers are too large or too many.",
        ),
        "",
    )
});

static REQUEST_TIMEOUT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        &ApiError::new(
            ErrorCode::RequestTimeout,
            "The request head did not arrive within `inbound.header_read_timeout`.",
        ),
        "",
    )
});

/// The answer to a connection past `inbound.max_connections`.
pub(crate) static TOO_MANY_CONNECTIONS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        &ApiError::new(
            ErrorCode::TooManyConnections,
            "The gateway is serving as many connections as `inbound.max_connections` allows; \
             retry shortly.",
        ),
        "retry-after: 1\r\n",
    )
});

/// The status of hyper's own answer to a request it could not parse, if `head` is exactly
/// that: hyper (`proto::h1::role::Server::on_error`) writes a bodiless head — the status line
/// of 400, 414 or 431 and nothing but `content-length: 0`, `date` (and `connection: close`) —
/// and offers no hook for its body.
#[cold]
#[inline(never)]
fn hyper_error_status(head: &[u8]) -> Option<&'static [u8]> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let (canned, mut rest): (&'static [u8], &[u8]) =
        if let Some(r) = rest.strip_prefix(b"400 Bad Request\r\n") {
            (&BAD_REQUEST, r)
        } else if let Some(r) = rest.strip_prefix(b"414 URI Too Long\r\n") {
            (&URI_TOO_LONG, r)
        } else if let Some(r) = rest.strip_prefix(b"431 Request Header Fields Too Large\r\n") {
            (&HEADERS_TOO_LARGE, r)
        } else {
            return None;
        };
    loop {
        if rest == b"\r\n" {
            return Some(canned);
        }
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        let known = line == b"content-length: 0"
            || line == b"connection: close"
            || (line.starts_with(b"date: ") && line.len() == b"date: ".len() + 29);
        if !known {
            return None;
        }
        rest = &rest[end + 2..];
    }
}

/// Read and discarded after a response of our own before closing, at most.
const LINGER_BYTES: usize = 4 << 20;

/// The connection's IO. Counts the bytes read for the driver, spots the HTTP/2 preface, and
/// writes the answers hyper cannot:
///
/// - hyper answers a request it cannot parse (bad or conflicting `Content-Length`, a control
///   byte in a header: 400; headers too large or too many: 431; URI too long: 414) with a
///   bodiless head and no hook for a body. A write that is exactly such a head, made while no
///   request is in flight and not a handler's look-alike (counted by [`Respond`]), is replaced
///   by the same status with a JSON body and `connection: close`. Only a write whose tenth
///   byte is `4` is looked at further, so a normal response costs one comparison.
/// - when the driver gives up on a request head (`abort`), the next read answers 408.
///
/// After either, the connection is over: further writes are swallowed, and flushing writes our
/// answer, sends FIN, then reads until the client closes (at most `LINGER_BYTES`), so unread
/// request bytes do not turn the close into a reset that destroys the answer.
pub(crate) struct InboundIo<T> {
    inner: T,
    shared: Arc<Shared>,
    /// Our own answer, what is left of it to write.
    out: &'static [u8],
    /// We answered (or gave up): the connection is over.
    finished: bool,
    /// FIN sent after our answer.
    shut: bool,
    /// Read and discarded after our answer; `usize::MAX` once the client closed.
    drained: usize,
    /// Bytes of the HTTP/2 preface matched so far; `PROBED` once decided.
    probe: u8,
    /// The last write could not complete (the client is not reading its response).
    write_blocked: bool,
}

const PROBED: u8 = u8::MAX;
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

impl<T> InboundIo<T> {
    pub(crate) fn new(inner: T, shared: Arc<Shared>) -> Self {
        InboundIo {
            inner,
            shared,
            out: &[],
            finished: false,
            shut: false,
            drained: 0,
            probe: 0,
            write_blocked: false,
        }
    }

    #[cold]
    fn probe_h2(&mut self, got: &[u8]) {
        for &b in got {
            if b != H2_PREFACE_START[usize::from(self.probe)] {
                self.probe = PROBED;
                return;
            }
            self.probe += 1;
            if usize::from(self.probe) == H2_PREFACE_START.len() {
                self.probe = PROBED;
                self.shared.set_h2();
                return;
            }
        }
    }

    /// Whether `head` is hyper's own error head, to be replaced by our JSON answer.
    #[cold]
    fn substitute(&mut self, head: &[u8]) -> bool {
        let Some(canned) = hyper_error_status(head) else {
            return false;
        };
        if self.shared.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let handlers =
            self.shared
                .lookalikes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if handlers.is_ok() {
            return false;
        }
        self.out = canned;
        self.finished = true;
        self.shared.closing.store(true, Ordering::Relaxed);
        true
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> InboundIo<T> {
    /// Writes our answer, sends FIN, then drains the client until it closes.
    #[cold]
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out = &self.out[n..];
        }
        if !self.shut {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            // A client that already left: nothing more to do.
            let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
            self.shut = true;
        }
        let mut scratch = [0u8; 2048];
        while self.drained < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => self.drained += buf.filled().len(),
                _ => self.drained = usize::MAX,
            }
        }
        Poll::Ready(Ok(()))
    }

    #[cold]
    fn poll_abort(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.finished {
            self.finished = true;
            // Unless a response is stuck half-written (its client stopped reading it).
            if !self.write_blocked {
                self.out = &REQUEST_TIMEOUT;
            }
        }
        ready!(self.poll_finish(cx))?;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request head did not arrive in time",
        )))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InboundIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.abort.load(Ordering::Relaxed) {
            return this.poll_abort(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            if this.probe != PROBED {
                this.probe_h2(got);
            }
            // Only this IO writes the count.
            let total = this.shared.bytes_read.load(Ordering::Relaxed) + got.len() as u64;
            this.shared.bytes_read.store(total, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for InboundIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.finished || (buf.get(9) == Some(&b'4') && this.substitute(buf)) {
            ready!(this.poll_finish(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_blocked = result.is_pending();
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let lone_head = match bufs {
            [head, rest @ ..] => head.get(9) == Some(&b'4') && rest.iter().all(|b| b.is_empty()),
            [] => false,
        };
        if this.finished || (lone_head && this.substitute(&bufs[0])) {
            ready!(this.poll_finish(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_blocked = result.is_pending();
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.finished {
            return this.poll_finish(cx);
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.finished {
            return this.poll_finish(cx);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hyper_s_own_error_head() {
        let date = "date: Thu, 01 Jan 2026 00:00:00 GMT\r\n";
        let head = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n");
        assert!(hyper_error_status(head.as_bytes()).is_some());
        let head = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}\r\n"
        );
        assert_eq!(
            hyper_error_status(head.as_bytes()),
            Some(HEADERS_TOO_LARGE.as_slice())
        );
        for other in [
            // A handler's: other headers, or a body.
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n{date}\r\n"
            ),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n{date}\r\n{{}}"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\nx"),
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{date}\r\n"),
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n".to_owned(),
        ] {
            assert!(hyper_error_status(other.as_bytes()).is_none(), "{other}");
        }
    }

    #[test]
    fn canned_answers_are_openai_shaped() {
        let text = String::from_utf8(TOO_MANY_CONNECTIONS.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
        assert_eq!(v["error"]["type"], "overloaded_error");
        let text = String::from_utf8(URI_TOO_LONG.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
    }
}
