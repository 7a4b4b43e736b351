//! Our own accept loop: it sets TCP_NODELAY and gives handlers a way to reset the connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::MockConfig;
use crate::state::{MockState, RecordedRequest};

/// How long in-flight responses may run on after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Per-connection switch a handler flips to have the socket closed with a TCP RST.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    reset: AtomicBool,
}

impl ConnCtl {
    pub fn reset(&self) {
        self.reset.store(true, Ordering::Release);
    }

    fn is_reset(&self) -> bool {
        self.reset.load(Ordering::Acquire)
    }
}

/// Request extension carrying the connection's [`ConnCtl`].
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle(pub Arc<ConnCtl>);

/// The socket, failing every operation once a reset was asked for. Dropping it then closes
/// with SO_LINGER 0, which makes the kernel send RST instead of FIN.
struct ResetIo {
    stream: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl ResetIo {
    fn check(&self) -> io::Result<()> {
        if self.ctl.is_reset() {
            let _ = self.stream.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "mock fault: reset",
            ));
        }
        Ok(())
    }
}

impl Drop for ResetIo {
    fn drop(&mut self) {
        if self.ctl.is_reset() {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The router, with the connection's handle added to every request.
#[derive(Clone)]
struct ConnService {
    router: Router,
    ctl: Arc<ConnCtl>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnHandle(self.ctl.clone()));
        let mut router = self.router.clone();
        let req: Request = req.map(axum::body::Body::new);
        tower::Service::call(&mut router, req)
    }
}

/// Serves `config` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_state(listener, MockState::new(config), shutdown).await
}

/// Like [`serve`], with a state the caller keeps a handle on (for its counters and records).
pub async fn serve_state(
    listener: TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router = crate::router(state);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning or dying.
                tracing::warn!(error = %e, "mock: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctl = Arc::new(ConnCtl::default());
        let service = ConnService {
            router: router.clone(),
            ctl: ctl.clone(),
        };
        let io = TokioIo::new(ResetIo { stream, ctl });
        let builder = builder.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, tracker.wait()).await;
    Ok(())
}

/// Binds `listen`, prints `plexus mock listening on http://ADDR` on stdout (flushed, so that
/// a parent process can read the port) and serves until SIGINT or SIGTERM. What `plexus mock`
/// runs.
pub async fn run(listen: SocketAddr, config: MockConfig) -> io::Result<()> {
    use std::io::Write;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "plexus mock listening on http://{addr}")?;
        out.flush()?;
    }
    serve(listener, config, stop_signal()).await
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A simulator running in this process, for tests. Dropping it stops the server.
pub struct MockServer {
    addr: SocketAddr,
    state: MockState,
    stop: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Starts on `127.0.0.1` with a free port.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(config);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_state(
            listener,
            state.clone(),
            stop.clone().cancelled_owned(),
        ));
        Ok(MockServer {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &MockState {
        &self.state
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    pub fn request_count(&self) -> usize {
        self.state.request_count()
    }

    pub fn active_streams(&self) -> usize {
        self.state.active_streams()
    }

    pub fn cancelled_streams(&self) -> usize {
        self.state.cancelled_streams()
    }

    pub fn clear(&self) {
        self.state.clear()
    }

    /// Stops accepting, lets in-flight responses finish briefly, then returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
