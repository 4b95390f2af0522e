//! The HTTP side: the router, the request pipeline and the listener loop.

pub mod docs;
pub mod handler;
pub mod layers;
pub mod reload;
pub mod router;
pub mod stream;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use reload::{Cut, Live};

/// Serves the live gateway on `listener` until `shutdown` resolves, then
/// stops accepting and drains in-flight requests for up to
/// `server.shutdown_grace`; streams still open then are cut. Each request
/// goes to the gateway current when it arrives, so reloads take effect
/// without dropping connections.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = live.gateway().config().shutdown_grace;
    let draining = Arc::new(tokio::sync::Notify::new());
    let started = draining.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutting down: draining requests in flight");
        started.notify_one();
    };
    let app = axum::Router::new()
        .fallback_service(live.clone().service())
        .into_make_service_with_connect_info::<SocketAddr>();
    // Responses go out in several writes when large; without TCP_NODELAY,
    // Nagle's algorithm and the peer's delayed ACK add tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result,
        () = async {
            draining.notified().await;
            tokio::time::sleep(grace).await;
        } => {}
    }
    // Streams do not finish by themselves: end them, with an error line
    // that says why, and let their connections close.
    tracing::warn!(grace = ?grace, "grace period over; ending the streams still open");
    live.cut_streams();
    match tokio::time::timeout(CUT_WAIT, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("connections still open after the streams ended; stopping anyway");
            Ok(())
        }
    }
}

/// How long connections get to close after their streams were ended.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
