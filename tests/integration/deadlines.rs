//! Deadlines and broken replies against the breaker: a caller's own deadline
//! never counts against a backend, a connection that breaks mid-reply does.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::probe::ProbeStack;
use crate::support::Stack;

/// A breaker that opens on the second failure in a row.
const TOUCHY: &str = "    outlier_detection: { consecutive_failures: 2, ejection_time: 30s }\n";

/// The gateway in front of `backend` with the `TOUCHY` breaker and `extra`
/// at the top level of the config.
async fn touchy_at(backend: SocketAddr, extra: &str) -> ProbeStack {
    let text = format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\n\
         backends:\n  probe:\n    address: http://{backend}\n    services: [probe.v1.Probe]\n{TOUCHY}{extra}",
        crate::support::root()
            .join("tests/fixtures/protos")
            .display()
    );
    let config = protogate::config::parse(&text, std::path::Path::new("touchy.yaml")).unwrap();
    let (addr, stop) = crate::support::serve(config).await;
    ProbeStack(Stack::for_gateway(addr, stop))
}

/// A probe backend behind [`touchy_at`].
async fn touchy(extra: &str) -> ProbeStack {
    let (backend, _) = crate::probe::spawn().await;
    touchy_at(backend, extra).await
}

async fn endpoint_states(stack: &Stack) -> (Vec<String>, String) {
    let (_, _, body) = stack.get_text("/readyz").await;
    let ready: Value = serde_json::from_str(&body).unwrap();
    let states = ready["backends"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect();
    let (_, _, metrics) = stack.get_text("/metrics").await;
    let healthy = metrics
        .lines()
        .find(|l| l.starts_with(r#"protogate_backend_endpoints{backend="probe",state="healthy"}"#))
        .unwrap_or_default()
        .to_owned();
    (states, healthy)
}

async fn assert_healthy(stack: &ProbeStack, after: &str) {
    let (states, metric) = endpoint_states(&stack.0).await;
    assert_eq!(states, ["healthy"], "after {after}");
    assert!(metric.ends_with(" 1"), "after {after}: {metric}");
    let reply = stack.echo(json!({"text": "still here"}), &[]).await;
    assert_eq!(reply.status, 200, "after {after}: {}", reply.json);
}

#[tokio::test]
async fn issue_14_short_client_deadlines_never_eject_the_backend() {
    let stack = Arc::new(touchy("").await);
    // 50 calls, 5 clients at once, 1-10 ms deadlines: half to a backend that
    // sleeps (tonic's server cancels it at the deadline), half to one that
    // sends its headers and a late UNKNOWN.
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..5 {
        let stack = stack.clone();
        clients.spawn(async move {
            let mut answers = Vec::new();
            for i in 0..10 {
                let timeout = format!("{}m", 1 + (client + i) % 10);
                let body = if i % 2 == 0 {
                    json!({"text": "slow", "delayMs": "1000"})
                } else {
                    json!({"text": "late", "fault": "FAULT_LATE_UNKNOWN"})
                };
                let reply = stack.echo(body, &[("grpc-timeout", &timeout)]).await;
                answers.push((timeout, reply.status.as_u16(), reply.json));
            }
            answers
        });
    }
    let mut answered = 0;
    while let Some(answers) = clients.join_next().await {
        for (timeout, status, body) in answers.unwrap() {
            assert_eq!(status, 504, "Grpc-Timeout {timeout}: {body}");
            assert_eq!(body["code"], 4, "Grpc-Timeout {timeout}: {body}");
            answered += 1;
        }
    }
    assert_eq!(answered, 50);
    assert_healthy(&stack, "50 passed deadlines").await;
}

#[tokio::test]
async fn issue_14_uploads_cut_at_max_duration_are_504_and_never_eject() {
    let stack = touchy("streaming:\n  max_duration: 300ms\n  idle_timeout: 60s\n").await;
    for i in 0..10 {
        let reply = endless_upload(&stack.0).await;
        assert_eq!(reply.0, 504, "upload {i}: {}", reply.1);
        assert_eq!(reply.1["code"], 4, "upload {i}: {}", reply.1);
    }
    assert_healthy(&stack, "10 uploads cut at max_duration").await;
}

#[tokio::test]
async fn issue_14_uploads_cut_when_idle_never_eject() {
    let stack = touchy("streaming:\n  max_duration: 60s\n  idle_timeout: 200ms\n").await;
    for i in 0..6 {
        let reply = endless_upload(&stack.0).await;
        assert_eq!(reply.0, 504, "upload {i}: {}", reply.1);
        assert_eq!(reply.1["code"], 4, "upload {i}: {}", reply.1);
        assert!(
            reply.1["message"].as_str().unwrap().contains("idle"),
            "upload {i}: {}",
            reply.1
        );
    }
    assert_healthy(&stack, "6 idle uploads").await;
}

/// A client stream to `Collect` that sends one line and never ends.
async fn endless_upload(stack: &Stack) -> (u16, Value) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tx.send(Ok(Bytes::from_static(b"{\"text\":\"one\"}\n")))
        .await
        .unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let response = stack
        .client()
        .post(stack.url("/v1/collect"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    drop(tx);
    (status, json)
}

#[tokio::test]
async fn issue_14_clients_that_go_away_never_eject() {
    let stack = touchy("").await;
    for _ in 0..6 {
        // The client gives up long before the backend answers.
        let call = stack.echo(json!({"text": "slow", "delayMs": "2000"}), &[]);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), call)
                .await
                .is_err()
        );
    }
    assert_healthy(&stack, "6 abandoned calls").await;
}

/// An HTTP/2 backend that sends response headers and the start of a
/// message, then drops the connection.
async fn spawn_dropping_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let calls = counted.clone();
            tokio::spawn(async move {
                let std_socket = socket.into_std().unwrap();
                let killer = std_socket.try_clone().unwrap();
                let written = Arc::new(AtomicUsize::new(0));
                let socket = Counted {
                    inner: tokio::net::TcpStream::from_std(std_socket).unwrap(),
                    written: written.clone(),
                };
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                if let Some(Ok((_, mut respond))) = conn.accept().await {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let before = written.load(Ordering::SeqCst);
                    let head = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut send = respond.send_response(head, false).unwrap();
                    // A message header announcing 10 bytes, then 2 of them.
                    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]), false)
                        .unwrap();
                    // Drive the connection until both frames (9-byte frame
                    // headers, the header block, 7 data bytes) are written.
                    let until = before + 9 + 1 + 9 + 7;
                    let flushed = async {
                        while written.load(Ordering::SeqCst) < until {
                            tokio::task::yield_now().await;
                        }
                    };
                    tokio::select! {
                        () = flushed => {}
                        _ = conn.accept() => {}
                    }
                    let _ = killer.shutdown(std::net::Shutdown::Both);
                }
            });
        }
    });
    (addr, calls)
}

/// A socket that counts the bytes written to it.
struct Counted {
    inner: tokio::net::TcpStream,
    written: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.written.fetch_add(*n, Ordering::SeqCst);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn issue_14_a_connection_dropped_after_the_headers_is_unavailable_and_counts() {
    let (backend, calls) = spawn_dropping_backend().await;
    let stack = touchy_at(backend, "").await;
    for i in 0..2 {
        let reply = stack.echo(json!({"text": "hi"}), &[]).await;
        assert_eq!(reply.status, 503, "call {i}: {}", reply.json);
        assert_eq!(reply.json["code"], 14, "call {i}: {}", reply.json);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let (states, _) = endpoint_states(&stack.0).await;
    assert_eq!(states, ["ejected"]);
    // Open: failed fast, without a call.
    let reply = stack.echo(json!({"text": "hi"}), &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    assert!(
        reply.json["message"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{}",
        reply.json
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
