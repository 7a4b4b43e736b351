//! Serving the app: TCP_NODELAY on accepted sockets, optional TLS, graceful shutdown that
//! drains in-flight requests (bounded by a grace period).

use crate::{app, AppState};
use axum::serve::ListenerExt;
use plexus_core::config::TlsConfig;
use std::future::{Future, IntoFuture};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub enum Listener {
    Tcp(tokio::net::TcpListener),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsConfig>,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
pub async fn serve(
    state: AppState,
    listener: Listener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener::Tcp(listener) = listener;
    let router = app(state);
    if let Some(tls) = &opts.tls {
        let config =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key).await?;
        let handle = axum_server::Handle::new();
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let std_listener = listener.into_std()?;
        let server = axum_server::from_tcp(std_listener)
            .acceptor(acceptor)
            .handle(handle.clone())
            .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>());
        let grace = opts.grace;
        tokio::spawn(async move {
            shutdown.await;
            handle.graceful_shutdown(Some(grace));
        });
        return server.await;
    }

    let token = CancellationToken::new();
    let signalled = token.clone();
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(message = "Could not set TCP_NODELAY.", error = %e);
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { signalled.cancelled().await })
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        _ = shutdown => token.cancel(),
    }
    match tokio::time::timeout(opts.grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                message = "Shutdown grace period elapsed; closing the remaining connections.",
                grace_secs = opts.grace.as_secs()
            );
            Ok(())
        }
    }
}
