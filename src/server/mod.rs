//! The HTTP side: the router, the request pipeline and the listener loop.

pub mod docs;
pub mod handler;
pub mod reload;
pub mod router;
pub mod stream;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use reload::Live;

/// Serves the live gateway on `listener` until `shutdown` resolves, then
/// drains in-flight requests. Each request goes to the gateway current when
/// it arrives, so reloads take effect without dropping connections.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback_service(live.service())
        .into_make_service_with_connect_info::<SocketAddr>();
    // Responses go out in several writes when large; without TCP_NODELAY,
    // Nagle's algorithm and the peer's delayed ACK add tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
