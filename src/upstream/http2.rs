//! The HTTP/2 connection unary calls go over: `h2` driven directly, one
//! connection per endpoint, dialled on first use and again after it breaks,
//! kept alive by pings.
//!
//! A unary call's request is one HEADERS and one DATA frame. Queued by the
//! calling task itself, both leave in the connection's next write, and the
//! call hands nothing to another task on the way: tonic's channel would pass
//! the request to its buffer's worker task, then to hyper's connection task,
//! which spawns one more task per call to send the body, so the two frames
//! left in two writes. Streams, health checks and reflection keep tonic's
//! channel ([`super::connection::channel`]), which connects only once one of
//! them is used.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::BackendConfig;

/// A transport error, classified by the caller from its chain.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Windows as hyper's client has them: the connection may hold 5 MiB of
/// replies in flight, one stream 2 MiB, before the gateway reads them.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Request bytes h2 buffers per stream before the backend's window opens.
const SEND_BUFFER: usize = 1024 * 1024;
/// A ping every so often, also while idle, so a dead peer is noticed
/// before a call waits on it; no pong in time closes the connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection of one endpoint.
pub struct Http2 {
    dial: Dial,
    live: std::sync::Mutex<Option<Live>>,
    /// Held while dialling, so callers arriving meanwhile share one attempt.
    dialing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Http2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2")
            .field("address", &self.dial.address)
            .finish_non_exhaustive()
    }
}

/// Where and how to connect.
struct Dial {
    /// `host:port` to connect to.
    address: String,
    /// `:scheme` and `:authority` of every request (the configured origin).
    scheme: Scheme,
    authority: Authority,
    tls: Tls,
    connect_timeout: Duration,
}

/// How a connection is secured.
enum Tls {
    Plain,
    /// The connector and the name the backend's certificate must carry.
    Secured(TlsConnector, rustls::pki_types::ServerName<'static>),
    /// TLS is configured but could not be set up: nothing is dialled.
    Broken,
}

/// An open connection: its handle and whether its task has ended.
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Http2 {
    /// A connection to `uri` (an address of `origin`), not yet dialled.
    pub fn new(uri: &Uri, origin: &Uri, config: &BackendConfig) -> Self {
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let host = uri.host().unwrap_or("127.0.0.1");
        let tls = match &config.tls {
            None => Tls::Plain,
            Some(tls) => {
                let host = origin.host().unwrap_or_default();
                // The host without IPv6 brackets, as certificates name it.
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match crate::tls::backend_connector(tls, host) {
                    Ok((connector, name)) => Tls::Secured(connector, name),
                    Err(e) => {
                        // Every call then fails as unreachable, with this in the log.
                        tracing::error!(backend = %config.name, error = %format!("{e:#}"), "cannot set up TLS to the backend");
                        Tls::Broken
                    }
                }
            }
        };
        Self {
            dial: Dial {
                address: format!("{host}:{port}"),
                scheme: origin.scheme().cloned().unwrap_or(Scheme::HTTP),
                authority: origin
                    .authority()
                    .cloned()
                    .unwrap_or(Authority::from_static("localhost")),
                tls,
                connect_timeout: config.connect_timeout,
            },
            live: std::sync::Mutex::new(None),
            dialing: tokio::sync::Mutex::new(()),
        }
    }

    /// The URI of a call to `path`: the origin's scheme and authority.
    pub fn uri(&self, path: &PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.dial.scheme.clone());
        parts.authority = Some(self.dial.authority.clone());
        parts.path_and_query = Some(path.clone());
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(path.clone()))
    }

    /// Sends a request whose whole body is `body` and waits for the
    /// response's headers.
    ///
    /// # Errors
    /// The connection could not be made or broke, or the backend reset the
    /// stream. A connection that turns out to be closed before the request
    /// left is dialled again once.
    pub async fn send(&self, request: Request<()>, body: Bytes) -> Result<Response<Reply>, Error> {
        let live = self.connection().await?;
        let mut send = match live.send.clone().ready().await {
            Ok(send) => send,
            // Gone since it was last used: the request has not left yet.
            Err(_) => {
                live.closed.store(true, Ordering::Release);
                let live = self.connection().await?;
                live.send.clone().ready().await?
            }
        };
        let (response, mut stream): (_, SendStream<Bytes>) = send.send_request(request, false)?;
        stream.send_data(body, true)?;
        let response = response.await?;
        Ok(response.map(Reply::new))
    }

    /// The open connection, dialled if there is none.
    async fn connection(&self) -> Result<Live, Error> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _dialing = self.dialing.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        // Boxed: every call's future would otherwise carry the dial's state.
        let live = Box::pin(self.dial.connect()).await?;
        *lock(&self.live) = Some(live.clone());
        Ok(live)
    }

    fn current(&self) -> Option<Live> {
        lock(&self.live)
            .as_ref()
            .filter(|live| !live.closed.load(Ordering::Acquire))
            .cloned()
    }
}

/// Locks a mutex whose holders never panic mid-update, so a poisoned one is usable.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dial {
    async fn connect(&self) -> Result<Live, Error> {
        if matches!(self.tls, Tls::Broken) {
            return Err("TLS to the backend is not set up (see the log at startup)".into());
        }
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        tcp.set_nodelay(true)?;
        let io = match &self.tls {
            Tls::Plain | Tls::Broken => Io::Plain(tcp),
            Tls::Secured(connector, name) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
                Io::Tls(Box::new(tls))
            }
        };
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        let pings = connection.ping_pong();
        let address = self.address.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!(%address, error = %e, "backend connection ended");
                    }
                }
                () = keep_alive(pings) => {
                    tracing::debug!(%address, "no answer to a keep-alive ping; closing the backend connection");
                }
            }
            ended.store(true, Ordering::Release);
        });
        Ok(Live { send, closed })
    }
}

/// Pings the peer every [`KEEP_ALIVE_INTERVAL`]; returns when one is not
/// answered within [`KEEP_ALIVE_TIMEOUT`]. A connection that fails on its
/// own is left to end by itself.
async fn keep_alive(pings: Option<h2::PingPong>) {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// A reply's body: DATA frames (their flow-control window handed back as
/// they are read), then the trailers.
#[derive(Debug)]
pub struct Reply {
    stream: RecvStream,
    data_done: bool,
}

impl Reply {
    fn new(stream: RecvStream) -> Self {
        Self {
            stream,
            data_done: false,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.stream.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    // The window reopens as the gateway reads, not before.
                    let _ = this.stream.flow_control().release_capacity(chunk.len());
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// A plain or TLS connection.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
