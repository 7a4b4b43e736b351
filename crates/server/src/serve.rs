//! Serving the app: one accept loop of our own over hyper (HTTP/1.1 and h2c in plain text; with
//! TLS, ALPN h2 and http/1.1), TCP_NODELAY on accepted sockets, the inbound limits of
//! `inbound:`, and a graceful shutdown that stops accepting and drains in-flight requests
//! (bounded by a grace period).
//!
//! Each connection runs in a tracked task whose driver polls hyper's connection and, whenever
//! no request is in flight, one timer: a new connection must complete a request head within
//! `header_read_timeout`; a kept-alive one is closed after `keep_alive_timeout` idle, or
//! answered 408 when a request head it started is not complete within `header_read_timeout`.
//! While a request is served no connection timer runs (its body has its own idle timer). The
//! timer is reset lazily: it may fire early, and is then set to the real deadline, so a busy
//! connection costs no timer work per request. Past `max_connections`, a new connection is
//! answered 503 and closed.

use crate::inbound::{
    after, InFlight, InboundIo, Phase, Respond, Shared, TimedBody, TrackedBody,
    TOO_MANY_CONNECTIONS,
};
use crate::{app, AppState};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use plexus_core::config::{InboundSettings, TlsConfig};
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

pub enum Listener {
    Tcp(tokio::net::TcpListener),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsConfig>,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
    /// Limits on inbound connections.
    pub inbound: InboundSettings,
}

/// How long a connection may take to close once it has been answered outside the router (a
/// 408, a parse error, a refusal) or told to go away while idle.
const CLOSE_BOUND: Duration = Duration::from_secs(1);
/// Refusals past `max_connections` being answered at once; beyond, a connection is closed
/// unanswered.
const MAX_REFUSALS: usize = 1024;

struct Server {
    router: Router,
    builder: auto::Builder<TrackedExec>,
    inbound: InboundSettings,
    tls: Option<Tls>,
    /// Cancelled at shutdown: connections finish what they serve, then close.
    stop: CancellationToken,
    /// Connections being served (refusals not counted).
    live: AtomicUsize,
    refusing: AtomicUsize,
}

struct Tls {
    acceptor: TlsAcceptor,
    /// Offers only http/1.1: a refusal is an HTTP/1.1 response.
    refusal: TlsAcceptor,
}

/// Runs hyper's HTTP/2 stream tasks as tracked tasks.
#[derive(Clone)]
struct TrackedExec(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
pub async fn serve(
    state: AppState,
    listener: Listener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener::Tcp(listener) = listener;
    let tls = match &opts.tls {
        Some(t) => Some(load_tls(t).await?),
        None => None,
    };
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TrackedExec(tracker.clone()));
    // Our driver times request heads (hyper's own timer would also close idle kept-alive
    // connections early, and answers nothing).
    builder.http1().header_read_timeout(None);
    let server = Arc::new(Server {
        router: app(state),
        builder,
        inbound: opts.inbound,
        tls,
        stop: CancellationToken::new(),
        live: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
    });

    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, most likely: let some close.
                        tracing::error!(message = "Accept failed.", error = %e);
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(message = "Could not set TCP_NODELAY.", error = %e);
        }
        if server.live.load(Ordering::Relaxed) >= server.inbound.max_connections {
            if server.refusing.fetch_add(1, Ordering::Relaxed) < MAX_REFUSALS {
                tracker.spawn(refuse(server.clone(), tcp));
            } else {
                server.refusing.fetch_sub(1, Ordering::Relaxed);
            }
            continue;
        }
        server.live.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(connection(server.clone(), tcp, addr));
    }

    drop(listener);
    server.stop.cancel();
    tracker.close();
    if tokio::time::timeout(opts.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            message = "Shutdown grace period elapsed; closing the remaining connections.",
            grace_secs = opts.grace.as_secs(),
            connections = server.live.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

async fn load_tls(cfg: &TlsConfig) -> std::io::Result<Tls> {
    use std::io::{Error, ErrorKind};
    let cert = tokio::fs::read(&cfg.cert).await?;
    let key = tokio::fs::read(&cfg.key).await?;
    let certs = rustls_pemfile::certs(&mut cert.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())?.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidData,
            format!("no private key in {}", cfg.key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut refusal = config.clone();
    refusal.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        refusal: TlsAcceptor::from(Arc::new(refusal)),
    })
}

/// One served connection: counted in `live` until it ends.
async fn connection(server: Arc<Server>, tcp: TcpStream, addr: SocketAddr) {
    struct Live(Arc<Server>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let live = Live(server);
    let server = &*live.0;
    let shared = Shared::new(Instant::now());
    match &server.tls {
        None => drive(server, InboundIo::new(tcp, shared.clone()), shared, addr).await,
        Some(tls) => {
            // The handshake is part of the request head's time.
            let handshake =
                tokio::time::timeout(server.inbound.header_read_timeout, tls.acceptor.accept(tcp));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(message = "TLS handshake failed.", error = %e);
                        return;
                    }
                    Err(_) => return,
                },
                _ = server.stop.cancelled() => return,
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                shared.set_h2();
            }
            drive(server, InboundIo::new(stream, shared.clone()), shared, addr).await;
        }
    }
}

/// Why the driver stopped polling hyper's connection before it ended.
enum Stop {
    /// A request head is late: the IO answers 408.
    Head,
    /// Idle too long (or never spoke): close.
    Idle,
    /// The IO answered a request hyper could not parse: let it finish closing.
    Closing,
}

async fn drive<T>(server: &Server, io: InboundIo<T>, shared: Arc<Shared>, addr: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService {
        router: server.router.clone(),
        addr,
        shared: shared.clone(),
        body_idle: server.inbound.body_idle_timeout,
    };
    let limits = &server.inbound;
    let mut conn = pin!(server.builder.serve_connection(TokioIo::new(io), service));
    let mut stopping = pin!(server.stop.cancelled());
    let mut timer = pin!(tokio::time::sleep_until(after(
        shared.accepted,
        limits.header_read_timeout
    )));
    let mut watchdog = Watchdog::default();
    let mut draining = false;
    let stop = poll_fn(|cx| {
        if !draining && stopping.as_mut().poll(cx).is_ready() {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(message = "Connection ended with an error.", error = %e);
            }
            return Poll::Ready(None);
        }
        if shared.is_closing() {
            return Poll::Ready(Some(Stop::Closing));
        }
        if draining && !shared.is_h2() && !matches!(shared.phase(), Phase::Serving { .. }) {
            // Shutting down, and nothing in flight on this HTTP/1 connection.
            return Poll::Ready(None);
        }
        watchdog.poll(cx, timer.as_mut(), &shared, limits).map(Some)
    })
    .await;
    match stop {
        Some(Stop::Head) => {
            shared.abort();
            let _ = tokio::time::timeout(CLOSE_BOUND, conn).await;
        }
        Some(Stop::Closing) => {
            let _ = tokio::time::timeout(CLOSE_BOUND, conn).await;
        }
        Some(Stop::Idle) if shared.is_h2() => {
            // GOAWAY, so the client knows nothing it sent was dropped unseen.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_BOUND, conn).await;
        }
        // An idle HTTP/1 connection just closes.
        None | Some(Stop::Idle) => {}
    }
}

#[derive(Default)]
struct Watchdog {
    /// The idle period being watched (its `since`), and the bytes read when it was first seen:
    /// the response's end and what hyper read in the same poll (the rest of an unread request
    /// body) are behind it, so more means a new request head has begun.
    period: u64,
    period_bytes: u64,
    /// When that head's first byte was seen.
    head: Option<Instant>,
}

impl Watchdog {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Sleep>,
        shared: &Shared,
        limits: &InboundSettings,
    ) -> Poll<Stop> {
        loop {
            let (deadline, stop) = match shared.phase() {
                Phase::Serving { h2: false } => return Poll::Pending,
                Phase::Serving { h2: true } => {
                    // An HTTP/2 stream may end on another task without waking this one:
                    // look again later.
                    if timer.is_elapsed() {
                        let at = after(Instant::now(), limits.keep_alive_timeout);
                        timer.as_mut().reset(at);
                    }
                    let _ = timer.as_mut().poll(cx);
                    return Poll::Pending;
                }
                Phase::Fresh { h2: true, .. } => (
                    after(shared.accepted, limits.keep_alive_timeout),
                    Stop::Idle,
                ),
                Phase::Fresh {
                    h2: false,
                    got_bytes,
                } => (
                    after(shared.accepted, limits.header_read_timeout),
                    if got_bytes { Stop::Head } else { Stop::Idle },
                ),
                Phase::Idle { since, h2 } => {
                    if since != self.period {
                        self.period = since;
                        self.period_bytes = shared.bytes_read();
                        self.head = None;
                    }
                    if self.head.is_none() && !h2 && shared.bytes_read() > self.period_bytes {
                        self.head = Some(Instant::now());
                    }
                    match self.head {
                        Some(started) => (after(started, limits.header_read_timeout), Stop::Head),
                        None => {
                            let idle = after(shared.accepted, Duration::from_nanos(since));
                            (after(idle, limits.keep_alive_timeout), Stop::Idle)
                        }
                    }
                }
            };
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(stop);
            }
            timer.as_mut().reset(deadline);
        }
    }
}

/// The router for one connection's requests: the peer's address as `ConnectInfo`, the body's
/// idle timer, and the request counted in flight until its response body is dropped.
struct ConnService {
    router: Router,
    addr: SocketAddr,
    shared: Arc<Shared>,
    body_idle: Duration,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Respond<axum::routing::future::RouteFuture<Infallible>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.shared);
        let mut req = req.map(|body| TimedBody::new(body, self.body_idle));
        req.extensions_mut().insert(ConnectInfo(self.addr));
        Respond::new(self.router.clone().call(req), in_flight)
    }
}

/// Answers a connection past `max_connections` with a 503 and closes it.
async fn refuse(server: Arc<Server>, tcp: TcpStream) {
    let answer = async {
        match &server.tls {
            None => answer_and_close(tcp).await,
            Some(tls) => {
                if let Ok(stream) = tls.refusal.accept(tcp).await {
                    answer_and_close(stream).await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_BOUND, answer).await;
    server.refusing.fetch_sub(1, Ordering::Relaxed);
}

/// Writes the 503, sends FIN, and reads until the client closes, so request bytes left unread
/// do not turn the close into a reset that destroys the answer.
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    if stream.write_all(&TOO_MANY_CONNECTIONS).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 2048];
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match stream.read(&mut scratch).await {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}
