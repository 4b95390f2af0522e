//! The HTTP side: the router, the request pipeline and the listener loop.

pub mod admin;
pub mod compression;
pub mod conditional;
pub mod connect;
pub mod connection;
pub mod docs;
pub mod envelope;
pub mod framing;
pub mod grpc;
pub mod grpc_web;
pub mod handler;
pub mod layers;
pub mod mcp;
pub mod pipeline;
pub mod reflection;
pub mod reframe;
pub mod reload;
pub mod router;
pub mod stream;
pub mod unary;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use reload::{Draining, Live, Shared};

use connection::{Activity, Counted, Timeouts};

use crate::tls::ClientCert;

/// Serves the live gateway on `listener` until `shutdown` resolves. Then
/// `/readyz` answers 503 at once while the listener goes on accepting and
/// serving for `server.drain_delay`, so load balancers take the gateway
/// out before it refuses connections; then it stops accepting and drains
/// in-flight requests for up to `server.shutdown_grace`; streams still
/// open then are ended. Each of the two is read from the gateway current
/// when its phase starts, so a reload can change them. Each request
/// goes to the gateway current when it arrives, so reloads take effect
/// without dropping connections. HTTP/1.1 (with upgrades, for WebSockets)
/// and HTTP/2 share the port; a client gets `server.header_read_timeout`
/// to finish its TLS handshake and again to start its first request, and a
/// connection without a request in flight for `server.idle_timeout` is
/// closed ([`connection`]). With
/// `server.tls`, connections are HTTPS only (ALPN `h2`, `http/1.1`) and the
/// certificate files are reloaded when they change.
///
/// # Errors
/// The TLS files cannot be loaded or watched. Accept errors are logged and
/// the loop goes on.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gateway = live.gateway();
    let config = gateway.config();
    let header_read_timeout = config.edge.header_read_timeout;
    let timeouts = Timeouts {
        first_request: header_read_timeout,
        idle: config.edge.idle_timeout,
    };
    let tls = match &config.tls {
        Some(options) => {
            let state = crate::tls::ServerTlsState::load(options).map_err(io_error)?;
            let watch = state.watch(config.reload.debounce).map_err(io_error)?;
            tracing::info!(cert = %options.cert.display(), mutual = options.client_ca.is_some(), "serving HTTPS");
            Some((state, watch))
        }
        None => None,
    };
    drop(gateway);
    // The live router is the service itself: another router around it would
    // box and copy every request's future once more.
    let app = live.clone().service();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    // Each connection holds a receiver: `closed()` is the end of the last one.
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    // Armed when `shutdown` resolves: the end of the drain delay.
    let mut drain_ends = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
    let mut draining = false;
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown, if !draining => {
                draining = true;
                live.drain();
                let delay = live.gateway().config().drain_delay;
                if !delay.is_zero() {
                    tracing::info!(delay = ?delay, "shutting down: /readyz answers 503; still serving for the drain delay");
                }
                drain_ends.as_mut().reset(tokio::time::Instant::now() + delay);
                continue;
            }
            () = &mut drain_ends, if draining => break,
        };
        // Responses go out in several writes when large; without TCP_NODELAY,
        // Nagle's algorithm and the peer's delayed ACK add tens of milliseconds.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        // Each request learns the client's address and, over mutual TLS,
        // its verified certificate.
        let peer = connection::Peer::new(remote);
        let service = move |client_cert: Option<ClientCert>, activity: Arc<Activity>| {
            hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                let in_flight = activity.begin();
                request.extensions_mut().insert(peer.clone());
                if let Some(cert) = &client_cert {
                    request.extensions_mut().insert(cert.clone());
                }
                let answer = app.clone().oneshot(request.map(axum::body::Body::new));
                async move {
                    let response = answer.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| Counted::new(body, in_flight)),
                    )
                }
            })
        };
        let stopped = stopped.clone();
        let builder = builder.clone();
        let acceptor = tls.as_ref().map(|(state, _)| state.acceptor());
        let live = live.clone();
        tokio::spawn(async move {
            let ended = match acceptor {
                None => {
                    let activity = Activity::new();
                    let connection = builder.serve_connection_with_upgrades(
                        TokioIo::new(tcp),
                        service(None, activity.clone()),
                    );
                    let graceful = |c: std::pin::Pin<&mut _>| {
                        auto::UpgradeableConnection::graceful_shutdown(c)
                    };
                    connection::drive(connection, graceful, activity, timeouts, stopped).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        failed => {
                            let error = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "timed out".to_owned(),
                            };
                            tracing::debug!(%error, %remote, "TLS handshake failed");
                            live.gateway().metrics().tls_handshake_failed();
                            return;
                        }
                    };
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| ClientCert::from_der(leaf));
                    let activity = Activity::new();
                    let connection = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        service(client_cert, activity.clone()),
                    );
                    let graceful = |c: std::pin::Pin<&mut _>| {
                        auto::UpgradeableConnection::graceful_shutdown(c)
                    };
                    connection::drive(connection, graceful, activity, timeouts, stopped).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = live.gateway().config().shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: draining requests in flight");
    drop(stopped);
    stop.send_replace(true);
    let mut drained = std::pin::pin!(stop.closed());
    tokio::select! {
        () = &mut drained => return Ok(()),
        () = tokio::time::sleep(grace) => {}
    }
    // Streams do not finish by themselves: end them, with an error line
    // that says why, and let their connections close.
    tracing::warn!(grace = ?grace, "grace period over; ending the streams still open");
    live.cut_streams();
    if tokio::time::timeout(CUT_WAIT, drained).await.is_err() {
        tracing::warn!("connections still open after the streams ended; stopping anyway");
    }
    Ok(())
}

fn io_error(e: anyhow::Error) -> std::io::Error {
    std::io::Error::other(format!("{e:#}"))
}

/// How long connections get to close after their streams were ended.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
