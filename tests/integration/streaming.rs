//! Streaming methods over HTTP against the probe backend: framings, the
//! first message before the backend finishes, errors before and after the
//! first message, cancellation, backpressure, large streams, and
//! bidirectional NDJSON.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use crate::probe::start;
use crate::support::{client, eventually, settled};

/// Reads a streamed response to the end and returns its body.
async fn text(response: reqwest::Response) -> String {
    response.text().await.unwrap()
}

/// Reads chunks until `lines` complete lines arrived; returns them and the
/// response, still open.
async fn read_lines(response: &mut reqwest::Response, lines: usize) -> Vec<String> {
    let mut buffer = String::new();
    while buffer.matches('\n').count() < lines {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a chunk within 10s")
            .unwrap()
            .expect("the stream is still open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    buffer.lines().map(str::to_owned).collect()
}

fn json_lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn first_message_arrives_before_the_backend_finishes() {
    let (stack, probe) = start("").await;
    let mut response = client()
        .get(stack.0.url("/v1/count?n=3&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    // The backend holds the stream after its first reply until released, so
    // this line can only be here if it was sent before the stream finished.
    let first = read_lines(&mut response, 1).await;
    assert_eq!(first, [r#"{"i":"1"}"#]);
    assert_eq!(probe.produced.load(Ordering::SeqCst), 1);
    probe.release.notify_one();
    let rest = text(response).await;
    assert_eq!(
        json_lines(&rest),
        [serde_json::json!({"i": "2"}), serde_json::json!({"i": "3"})]
    );
}

#[tokio::test]
async fn accept_chooses_the_framing() {
    let (stack, _) = start("").await;
    for (accept, content_type, want) in [
        (
            None,
            "application/x-ndjson",
            "{\"i\":\"1\"}\n{\"i\":\"2\"}\n",
        ),
        (
            Some("*/*"),
            "application/x-ndjson",
            "{\"i\":\"1\"}\n{\"i\":\"2\"}\n",
        ),
        (
            Some("application/x-ndjson"),
            "application/x-ndjson",
            "{\"i\":\"1\"}\n{\"i\":\"2\"}\n",
        ),
        (
            Some("text/event-stream"),
            "text/event-stream",
            "id: 1\ndata: {\"i\":\"1\"}\n\nid: 2\ndata: {\"i\":\"2\"}\n\n",
        ),
        (
            Some("application/json"),
            "application/json",
            "[{\"i\":\"1\"},{\"i\":\"2\"}]",
        ),
    ] {
        let mut request = client().get(stack.0.url("/v1/count?n=2"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{accept:?}");
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "{accept:?}"
        );
        assert_eq!(text(response).await, want, "{accept:?}");
    }
    let empty = client()
        .get(stack.0.url("/v1/count?n=0"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(text(empty).await, "[]");
    let refused = stack
        .0
        .call_with("GET", "/v1/count?n=2", None, &[("accept", "text/html")])
        .await;
    assert_eq!(refused.status, 406);
    assert_eq!(refused.json["code"], 3);
}

#[tokio::test]
async fn default_framing_is_configurable() {
    let (stack, _) = start("streaming:\n  default_framing: sse\n").await;
    let response = client()
        .get(stack.0.url("/v1/count?n=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(text(response).await, "id: 1\ndata: {\"i\":\"1\"}\n\n");
}

#[tokio::test]
async fn errors_before_and_after_the_first_message() {
    let (stack, _) = start("").await;
    // Before: an ordinary error response with the code's HTTP status.
    let before = stack.0.get("/v1/count?n=3&failAfter=-1").await;
    assert_eq!(before.status, 400);
    assert_eq!(before.json["code"], 9);
    assert_eq!(before.json["message"], "count failed on purpose");

    // After: 200, then the error as the last line, event or element.
    let error = serde_json::json!({"code": 9, "message": "count failed on purpose", "details": []});
    let ndjson = client()
        .get(stack.0.url("/v1/count?n=5&failAfter=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.status(), 200);
    let lines = json_lines(&text(ndjson).await);
    assert_eq!(
        lines,
        [
            serde_json::json!({"i": "1"}),
            serde_json::json!({"i": "2"}),
            error.clone()
        ]
    );

    let sse = client()
        .get(stack.0.url("/v1/count?n=5&failAfter=1"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let body = text(sse).await;
    assert!(
        body.starts_with("id: 1\ndata: {\"i\":\"1\"}\n\nevent: error\ndata: {"),
        "{body}"
    );
    let data = body.rsplit("data: ").next().unwrap().trim();
    assert_eq!(serde_json::from_str::<Value>(data).unwrap(), error);

    let array = client()
        .get(stack.0.url("/v1/count?n=5&failAfter=1"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let array: Value = serde_json::from_str(&text(array).await).unwrap();
    assert_eq!(array, serde_json::json!([{"i": "1"}, error]));
}

#[tokio::test]
async fn client_that_goes_away_cancels_the_backend_stream() {
    let (stack, probe) = start("").await;
    let mut response = client()
        .get(stack.0.url("/v1/count?n=1000000&padBytes=100"))
        .send()
        .await
        .unwrap();
    read_lines(&mut response, 1).await;
    drop(response);
    eventually(5, "backend stream cancelled", || async {
        probe.streams_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    let produced = probe.produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        probe.produced.load(Ordering::SeqCst),
        produced,
        "the backend stopped"
    );
    assert!(produced < 1_000_000, "{produced}");
}

#[tokio::test]
async fn a_slow_reader_holds_the_backend_back() {
    let (stack, probe) = start("").await;
    let mut response = client()
        .get(stack.0.url("/v1/count?n=1000000&padBytes=1000"))
        .send()
        .await
        .unwrap();
    read_lines(&mut response, 1).await;
    // Not reading: flow control, not a queue, decides how far the backend
    // gets. It fills the windows and socket buffers, a few MB, then stops:
    // far from the 1 GB the stream holds. Stopped means no reply made over
    // ten checks in a row (a second or more), however long filling takes.
    let produced = settled(
        30,
        "replies of 1 kB made for an idle reader",
        10,
        20_000,
        || probe.produced.load(Ordering::SeqCst),
    )
    .await;
    assert!(produced > 1, "the backend went on past the first reply");
}

#[tokio::test]
async fn idle_streams_time_out() {
    let (stack, probe) = start("streaming:\n  idle_timeout: 300ms\n").await;
    let response = client()
        .get(stack.0.url("/v1/count?n=3&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    let lines = json_lines(&text(response).await);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"i": "1"}));
    assert_eq!(lines[1]["code"], 4);
    assert_eq!(lines[1]["message"], "stream idle after 300ms");
    eventually(5, "backend stream cancelled", || async {
        probe.streams_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn bidirectional_ndjson_answers_each_line_as_it_arrives() {
    let (stack, probe) = start("").await;
    let (lines, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = client()
        .post(stack.0.url("/v1/chat"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send_with_first_line(&lines, "{\"text\":\"one\"}\n")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        read_lines(&mut response, 1).await,
        [r#"{"text":"re: one"}"#]
    );
    // The second line is sent only after the first answer came back.
    lines.send(Ok("{\"text\":\"two\"}\n".into())).await.unwrap();
    assert_eq!(
        read_lines(&mut response, 1).await,
        [r#"{"text":"re: two"}"#]
    );
    assert_eq!(probe.chat_received.load(Ordering::SeqCst), 2);
    drop(lines);
    assert_eq!(text(response).await, "");
    assert_eq!(probe.chat_cancelled.load(Ordering::SeqCst), 0, "ended well");

    // A client that leaves mid-stream resets the backend's call.
    let (lines, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = client()
        .post(stack.0.url("/v1/chat"))
        .body(body)
        .send_with_first_line(&lines, "{\"text\":\"one\"}\n")
        .await;
    read_lines(&mut response, 1).await;
    drop(response);
    eventually(5, "backend chat cancelled", || async {
        probe.chat_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(lines);
}

#[tokio::test]
async fn a_bad_line_ends_the_stream_naming_its_number() {
    let (stack, probe) = start("").await;
    // Before any reply: a 400 naming the line (blank lines count).
    let reply = stack
        .0
        .call_with("POST", "/v1/chat", Some("\n{\"text\":5}\n"), &[])
        .await;
    assert_eq!(reply.status, 400);
    let message = reply.json["message"].as_str().unwrap();
    assert!(message.starts_with("line 2: "), "{message}");
    assert_eq!(probe.chat_received.load(Ordering::SeqCst), 0);
    eventually(5, "backend chat cancelled", || async {
        probe.chat_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;

    // After a reply: the error is the last line, and nothing after the bad
    // line reaches the backend.
    let (lines, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = client()
        .post(stack.0.url("/v1/chat"))
        .body(body)
        .send_with_first_line(&lines, "{\"text\":\"one\"}\n")
        .await;
    assert_eq!(
        read_lines(&mut response, 1).await,
        [r#"{"text":"re: one"}"#]
    );
    lines
        .send(Ok(
            "{\"text\":\"two\", \"nope\": 1}\n{\"text\":\"never\"}\n".into(),
        ))
        .await
        .unwrap();
    drop(lines);
    let last = json_lines(&text(response).await);
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["code"], 3);
    let message = last[0]["message"].as_str().unwrap();
    assert!(message.starts_with("line 2: "), "{message}");
    assert_eq!(probe.chat_received.load(Ordering::SeqCst), 1);
    // The backend's call was reset, not half-closed nor left open.
    eventually(5, "backend chat cancelled", || async {
        probe.chat_cancelled.load(Ordering::SeqCst) == 2
    })
    .await;

    // A backend error mid-stream ends it the same way.
    let response = client()
        .post(stack.0.url("/v1/chat"))
        .body("{\"text\":\"one\"}\n{\"text\":\"fail\"}\n")
        .send()
        .await
        .unwrap();
    let lines = json_lines(&text(response).await);
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"code": 3, "message": "chat failed on purpose", "details": []})
    );
}

#[tokio::test]
async fn raw_request_body_reaches_its_field() {
    let (stack, _) = start("").await;
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let reply = client()
        .post(stack.0.url("/v1/store/report.bin"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let reply: Value = serde_json::from_str(&text(reply).await).unwrap();
    assert_eq!(
        reply["text"],
        format!("report.bin application/octet-stream 70000 bytes, byte sum {sum}")
    );
}

#[tokio::test]
async fn streams_end_at_their_maximum_duration() {
    let (stack, probe) = start("streaming:\n  max_duration: 1s\n").await;
    let response = client()
        .get(stack.0.url("/v1/count?n=3&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    let lines = json_lines(&text(response).await);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["code"], 4);
    assert_eq!(lines[1]["message"], "stream too long after 1s");
    eventually(5, "backend stream cancelled", || async {
        probe.streams_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn request_lines_and_reply_messages_are_size_limited() {
    let (stack, _) = start("transcoding:\n  max_body_bytes: 100\n").await;
    let long = format!("{{\"text\":\"{}\"}}\n", "x".repeat(200));
    let reply = stack
        .0
        .call_with("POST", "/v1/chat", Some(&long), &[])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json["message"], "line 1: longer than 100 bytes");

    let (stack, _) =
        crate::probe::start_with("", |c| c.backends[0].max_response_bytes = 1000).await;
    let response = client()
        .get(stack.0.url("/v1/count?n=3&padBytes=2000"))
        .send()
        .await
        .unwrap();
    // The first reply is already too large: the backend's fault, as for unary calls.
    assert_eq!(response.status(), 502, "{:?}", response.headers());
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["code"], 13, "{body}");
}

/// Sends a request whose streamed body starts with `first`.
trait SendWithFirstLine {
    async fn send_with_first_line(
        self,
        lines: &tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
        first: &str,
    ) -> reqwest::Response;
}

impl SendWithFirstLine for reqwest::RequestBuilder {
    async fn send_with_first_line(
        self,
        lines: &tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
        first: &str,
    ) -> reqwest::Response {
        lines.send(Ok(first.to_owned())).await.unwrap();
        self.send().await.unwrap()
    }
}

mod websocket {
    //! Streams over WebSocket against the probe.

    use std::sync::atomic::Ordering;

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use crate::probe::start;

    async fn connect(
        addr: std::net::SocketAddr,
        path: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let (socket, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        socket
    }

    async fn next_text(
        socket: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Message {
        // Generous: a frame is awaited, not timed; the bound only ends a hang.
        tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("a frame within 30s")
            .expect("the socket is open")
            .unwrap()
    }

    #[tokio::test]
    async fn bidi_round_trips_frame_by_frame_and_closes_with_ok() {
        let (stack, probe) = start("").await;
        // /v1/chat is bound to POST; the WebSocket handshake is a GET.
        let mut socket = connect(stack.0.addr(), "/v1/chat").await;
        for word in ["one", "two", "three"] {
            socket
                .send(Message::text(format!("{{\"text\":\"{word}\"}}")))
                .await
                .unwrap();
            assert_eq!(
                next_text(&mut socket).await,
                Message::text(format!("{{\"text\":\"re: {word}\"}}"))
            );
        }
        assert_eq!(probe.chat_received.load(Ordering::SeqCst), 3);
        // An empty frame ends the requests; the call's status closes the socket.
        socket.send(Message::text("")).await.unwrap();
        match next_text(&mut socket).await {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Normal);
                assert_eq!(frame.reason.as_str(), "OK");
            }
            other => panic!("{other:?}"),
        }

        assert_eq!(probe.chat_cancelled.load(Ordering::SeqCst), 0);

        // A client closing the socket cancels the call: the backend sees a
        // reset, not a finished request stream.
        let mut socket = connect(stack.0.addr(), "/v1/chat").await;
        socket.send(Message::text(r#"{"text":"x"}"#)).await.unwrap();
        next_text(&mut socket).await;
        socket.close(None).await.unwrap();
        assert!(matches!(next_text(&mut socket).await, Message::Close(_)));
        crate::support::eventually(5, "backend chat cancelled", || async {
            probe.chat_cancelled.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn pages_of_other_sites_cannot_open_websockets() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let (stack, _) =
            start("streaming:\n  websocket_origins: [\"https://app.example.com\"]\n").await;
        let with_origin = |origin: &str| {
            let mut request = format!("ws://{}/v1/chat", stack.0.addr())
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
            request
        };
        match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("{other:?}"),
        }
        let own = format!("http://{}", stack.0.addr());
        for origin in ["https://app.example.com", own.as_str()] {
            let (mut socket, _) = tokio_tungstenite::connect_async(with_origin(origin))
                .await
                .unwrap();
            socket
                .send(Message::text(r#"{"text":"hi"}"#))
                .await
                .unwrap();
            assert_eq!(
                next_text(&mut socket).await,
                Message::text(r#"{"text":"re: hi"}"#)
            );
        }
    }

    #[tokio::test]
    async fn a_watch_over_websocket_ends_when_the_client_leaves() {
        let (stack, probe) = start("").await;
        let mut socket = connect(stack.0.addr(), "/v1/count?n=1000000").await;
        assert_eq!(next_text(&mut socket).await, Message::text(r#"{"i":"1"}"#));
        drop(socket);
        crate::support::eventually(5, "backend stream cancelled", || async {
            probe.streams_cancelled.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn errors_close_with_the_grpc_code() {
        let (stack, _) = start("").await;
        let mut socket = connect(stack.0.addr(), "/v1/chat").await;
        socket
            .send(Message::text(r#"{"text":"fail"}"#))
            .await
            .unwrap();
        match next_text(&mut socket).await {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4003);
                assert_eq!(frame.reason.as_str(), "chat failed on purpose");
            }
            other => panic!("{other:?}"),
        }

        let mut socket = connect(stack.0.addr(), "/v1/chat").await;
        socket.send(Message::text(r#"{"text":7}"#)).await.unwrap();
        match next_text(&mut socket).await {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4003);
                assert!(
                    frame.reason.as_str().starts_with("line 1: "),
                    "{}",
                    frame.reason
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn server_streams_open_from_the_query() {
        let (stack, _) = start("").await;
        // One request message and no body: the path and query make it.
        let mut socket = connect(stack.0.addr(), "/v1/count?n=2").await;
        assert_eq!(next_text(&mut socket).await, Message::text(r#"{"i":"1"}"#));
        assert_eq!(next_text(&mut socket).await, Message::text(r#"{"i":"2"}"#));
        match next_text(&mut socket).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    }
}

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_stream_in_constant_memory() {
    let (probe_addr, probe) = crate::probe::spawn().await;
    let dir = crate::support::TempDir::new("big-stream");
    let path = dir.write_config(&format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\nbackends:\n  probe:\n    address: http://{probe_addr}\n    services: [probe.v1.Probe]\nreload:\n  watch: false\n",
        crate::support::root().join("tests/fixtures/protos").display()
    ));
    let gateway = crate::support::spawn_gateway(&path).await;
    let url = gateway.url.clone();
    // Warm up, so the baseline includes connections and buffers.
    let warm = client()
        .get(format!("{url}/v1/count?n=1000&padBytes=1000"))
        .send()
        .await
        .unwrap();
    text(warm).await;
    let (_, before) = memory_kib(gateway.process.id());

    // 100,000 replies of 1 kB: about 100 MB through the gateway.
    let mut response = client()
        .get(format!("{url}/v1/count?n=100000&padBytes=1000"))
        .send()
        .await
        .unwrap();
    let (mut lines, mut bytes, mut tail) = (0usize, 0usize, String::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len();
        tail.push_str(std::str::from_utf8(&chunk).unwrap());
        lines += tail.matches('\n').count();
        tail = tail.rsplit('\n').next().unwrap().to_owned();
    }
    assert_eq!(lines, 100_000);
    assert_eq!(probe.produced.load(Ordering::SeqCst), 101_000);
    let (peak, after) = memory_kib(gateway.process.id());
    eprintln!(
        "100k-message stream: {} MB through the gateway; RSS {before} KiB before, {after} KiB after, peak {peak} KiB",
        bytes / 1_000_000
    );
    // Buffering the stream would take well over 100 MB.
    assert!(
        peak < before + 32 * 1024,
        "peak {peak} KiB vs {before} KiB before"
    );
}

mod shop_examples {
    //! The example shop's streaming and raw-body methods through the gateway.

    use futures_util::{SinkExt, StreamExt};
    use sha2::Digest;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::{json_lines, read_lines, text};
    use crate::support::{API_KEY, Stack, client, dev_token, eventually, start};

    fn bearer() -> String {
        format!("Bearer {}", dev_token("orders"))
    }

    async fn get(stack: &Stack, path: &str) -> reqwest::Response {
        client()
            .get(stack.url(path))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn watch_streams_status_changes_as_they_happen() {
        let backends = shop::spawn_ephemeral().await.unwrap();
        let (addr, stop) = crate::support::serve(crate::support::default_config(&backends)).await;
        let stack = Stack::for_gateway(addr, stop).with_credentials();

        let mut watch = get(&stack, "/v1/users/1/orders/1002:watch").await;
        assert_eq!(watch.status(), 200);
        let first = read_lines(&mut watch, 1).await;
        let first: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(first["status"], "ORDER_STATUS_PENDING");
        // The next message exists only once this call changes the order.
        let cancelled = stack
            .call(
                "POST",
                "/v1/users/1/orders/1002:cancel",
                Some(r#"{"reason":"changed my mind"}"#),
            )
            .await;
        assert_eq!(cancelled.status, 200);
        let rest = json_lines(&text(watch).await);
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0]["status"], "ORDER_STATUS_CANCELLED");
        assert_eq!(rest[0]["reason"], "changed my mind");

        // Unknown order: an error before the first message is a plain 404.
        let missing = stack.get("/v1/users/1/orders/9999:watch").await;
        assert_eq!(missing.status, 404);

        // A client that leaves cancels the backend's stream.
        let mut watch = get(&stack, "/v1/users/1/orders/1001:watch").await;
        read_lines(&mut watch, 1).await;
        assert_eq!(backends.active_watches(), 1);
        drop(watch);
        eventually(5, "watch cancelled at the backend", || async {
            backends.cancelled_watches() == 1 && backends.active_watches() == 0
        })
        .await;
    }

    #[tokio::test]
    async fn sync_acknowledges_each_update() {
        let stack = start().await;
        let response = client()
            .post(stack.url("/v1/orders:sync"))
            .header("authorization", bearer())
            .header("content-type", "application/x-ndjson")
            .body(
                "{\"name\":\"users/1/orders/1001\",\"status\":\"ORDER_STATUS_SHIPPED\"}\n\
                 {\"name\":\"users/1/orders/1001\",\"status\":\"ORDER_STATUS_PENDING\"}\n",
            )
            .send()
            .await
            .unwrap();
        let acks = json_lines(&text(response).await);
        assert_eq!(acks[0]["accepted"], true);
        assert_eq!(
            acks[1].get("accepted"),
            None,
            "false is the default, not written"
        );
        assert_eq!(
            acks[1]["reason"],
            "cannot change from ORDER_STATUS_SHIPPED to ORDER_STATUS_PENDING"
        );

        // The same over a WebSocket, with the token in the upgrade request.
        let mut request = format!("ws://{}/v1/orders:sync", stack.addr())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", bearer().parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket
            .send(Message::text(
                r#"{"name":"users/2/orders/1003","status":"ORDER_STATUS_CANCELLED"}"#,
            ))
            .await
            .unwrap();
        let ack = socket.next().await.unwrap().unwrap();
        let ack: serde_json::Value = serde_json::from_str(ack.to_text().unwrap()).unwrap();
        // As the README's websocat example shows: 1003 has shipped.
        assert_eq!(
            ack,
            serde_json::json!({
                "name": "users/2/orders/1003",
                "status": "ORDER_STATUS_SHIPPED",
                "reason": "cannot change from ORDER_STATUS_SHIPPED to ORDER_STATUS_CANCELLED"
            })
        );

        // Without credentials the upgrade is refused like any call.
        let refused =
            tokio_tungstenite::connect_async(format!("ws://{}/v1/orders:sync", stack.addr())).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bulk_reserve_reads_lines_and_names_the_bad_one() {
        let stack = start().await;
        let post = |body: &'static str| {
            client()
                .post(stack.url("/v1/inventory:bulkReserve"))
                .header("x-api-key", API_KEY)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
        };
        let ok = post(
            "{\"sku\":\"sku-espresso\",\"quantity\":1,\"orderName\":\"users/1/orders/1001\"}\n\
             {\"sku\":\"sku-grinder\",\"quantity\":2,\"orderName\":\"users/1/orders/1001\"}\n",
        )
        .await
        .unwrap();
        assert_eq!(ok.status(), 200);
        let ok: serde_json::Value = serde_json::from_str(&text(ok).await).unwrap();
        assert_eq!(ok["count"], 2);
        assert_eq!(ok["reservations"].as_array().unwrap().len(), 2);

        let bad = post("{\"sku\":\"sku-espresso\",\"quantity\":1}\n{\"sku\":\"sku-grinder\",\"quantity\":\"two\"}\n")
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let bad: serde_json::Value = serde_json::from_str(&text(bad).await).unwrap();
        let message = bad["message"].as_str().unwrap();
        assert!(message.starts_with("line 2: "), "{message}");

        let refused = post(
            "{\"sku\":\"sku-espresso\",\"quantity\":1}\n{\"sku\":\"sku-kettle\",\"quantity\":5}\n",
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), 400);
        let refused: serde_json::Value = serde_json::from_str(&text(refused).await).unwrap();
        assert_eq!(refused["code"], 9);
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .starts_with("message 2: "),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn client_stream_lines_reach_the_backend_before_the_body_ends() {
        let stack = start().await;
        let (lines, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
        lines
            .send(Ok("{\"sku\":\"sku-kettle\",\"quantity\":5}\n".into()))
            .await
            .unwrap();
        // The body stays open: the backend can only refuse this line if it
        // got it while the client was still sending.
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client()
                .post(stack.url("/v1/inventory:bulkReserve"))
                .header("x-api-key", API_KEY)
                .body(reqwest::Body::wrap_stream(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                ))
                .send(),
        )
        .await
        .expect("an answer while the body is still open")
        .unwrap();
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert!(
            body["message"].as_str().unwrap().starts_with("message 1: "),
            "{body}"
        );
        drop(lines);
    }

    #[tokio::test]
    async fn raw_bodies_both_ways() {
        let stack = start().await;
        let invoice = get(&stack, "/v1/users/1/orders/1001/invoice").await;
        assert_eq!(invoice.status(), 200);
        assert_eq!(invoice.headers()["content-type"], "text/csv; charset=utf-8");
        assert_eq!(
            text(invoice).await,
            "sku,quantity,unit_price,line_total,currency\nsku-espresso,2,12.50,25.00,USD\nsku-grinder,1,89.99,89.99,USD\ntotal,,,114.99,USD\n"
        );

        let export = get(&stack, "/v1/users/1/orders:export").await;
        assert_eq!(export.headers()["content-type"], "text/csv; charset=utf-8");
        assert!(
            export.headers().get("content-length").is_none(),
            "a chunked download"
        );
        let csv = text(export).await;
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(
            csv.starts_with("name,status,total_units,currency,create_time\nusers/1/orders/1001,")
        );
        // Compressed for a client that asks (as Python's requests always
        // does): the whole download, and the connection lives on.
        for _ in 0..2 {
            let gzipped = client()
                .get(stack.url("/v1/users/1/orders:export"))
                .header("authorization", bearer())
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            assert_eq!(gzipped.status(), 200);
            assert_eq!(gzipped.headers()["content-encoding"], "gzip");
            let packed = gzipped.bytes().await.unwrap();
            let mut csv = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut csv)
                .unwrap();
            assert_eq!(csv.lines().count(), 3, "{csv}");
        }

        // 5 MB of bytes that are not JSON, streamed up in chunks of at most 1 MiB.
        let upload: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let digest = hex(&sha2::Sha256::digest(&upload));
        let stored = client()
            .post(stack.url("/v1/users/1/orders/1001/attachments"))
            .header("authorization", bearer())
            .header("content-type", "application/pdf")
            .body(upload)
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 200);
        let stored: serde_json::Value = serde_json::from_str(&text(stored).await).unwrap();
        assert_eq!(stored["sizeBytes"], "5000000");
        assert_eq!(stored["sha256"], digest);
        assert_eq!(stored["contentType"], "application/pdf");
        assert!(stored["chunks"].as_i64().unwrap() >= 5, "{stored}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[tokio::test]
async fn shutdown_cuts_streams_after_the_grace_period() {
    let (probe_addr, probe) = crate::probe::spawn().await;
    let config = crate::probe::probe_config(probe_addr, "server:\n  shutdown_grace: 300ms\n");
    let (addr, stop) = crate::support::serve(config).await;
    let mut response = client()
        .get(format!("http://{addr}/v1/count?n=3&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    read_lines(&mut response, 1).await;
    let stopping = tokio::time::Instant::now();
    stop.send(()).unwrap();
    // The stream is held open by the backend; the grace period ends it,
    // with a last line that says why.
    let rest = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the stream ends within 30s")
        .unwrap();
    assert!(
        stopping.elapsed() >= Duration::from_millis(250),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(
        json_lines(&rest),
        [serde_json::json!({"code": 14, "message": "the gateway is shutting down", "details": []})]
    );
    eventually(5, "backend stream cancelled", || async {
        probe.streams_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn issue_15_grpc_timeout_bounds_a_server_stream() {
    let (stack, _probe) = start("").await;
    let mut response = client()
        .get(stack.0.url("/v1/count?n=3&holdAfterFirst=true"))
        .header("grpc-timeout", "300m")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = read_lines(&mut response, 2).await;
    assert!(lines[0].contains("\"i\":\"1\""), "{lines:?}");
    let error: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(error["code"], 4, "{error}");
}

/// Issue 16: a stream is a request in flight for its whole life: it holds
/// a `max_concurrent_requests` slot and the in-flight gauge until it ends,
/// and its backend call is counted in the upstream metrics like a unary one.
#[tokio::test]
async fn issue_16_open_streams_hold_a_slot_and_count_as_upstream_calls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (stack, probe) = start("server:\n  max_concurrent_requests: 1\n").await;
    let metric = |name: &'static str| {
        let stack = &stack;
        async move {
            let (_, _, text) = stack.0.get_text("/metrics").await;
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    const IN_FLIGHT: &str = "protogate_http_requests_in_flight ";
    const CALLS_OK: &str = "protogate_upstream_calls_total{backend=\"probe\",code=\"Ok\"}";
    let echo = || stack.echo(serde_json::json!({"text": "hi"}), &[]);

    // An open server stream takes the only slot: a unary call is shed.
    let mut response = client()
        .get(stack.0.url("/v1/count?n=3&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(read_lines(&mut response, 1).await, [r#"{"i":"1"}"#]);
    assert_eq!(metric(IN_FLIGHT).await, 1.0);
    assert_eq!(echo().await.status, 503);
    assert_eq!(metric(CALLS_OK).await, 0.0, "the stream is not over yet");
    // Once it ends, the slot is free and the stream counts as a call.
    probe.release.notify_one();
    assert_eq!(json_lines(&text(response).await).len(), 2);
    eventually(10, "the stream's slot is given back", || async {
        metric(IN_FLIGHT).await == 0.0
    })
    .await;
    assert_eq!(metric(CALLS_OK).await, 1.0);
    assert_eq!(echo().await.status, 200);
    assert_eq!(metric(CALLS_OK).await, 2.0);

    // A WebSocket holds the slot for its session, and counts as a call too.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/chat", stack.0.addr()))
            .await
            .unwrap();
    socket
        .send(Message::text(r#"{"text":"one"}"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .expect("a reply frame")
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text(r#"{"text":"re: one"}"#));
    assert_eq!(echo().await.status, 503);
    socket.send(Message::text("")).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .expect("the close frame")
        .unwrap()
        .unwrap();
    assert!(matches!(closed, Message::Close(Some(_))), "{closed:?}");
    drop(socket);
    eventually(10, "the session's slot is given back", || async {
        metric(IN_FLIGHT).await == 0.0
    })
    .await;
    assert_eq!(metric(CALLS_OK).await, 3.0);
    assert_eq!(echo().await.status, 200);
}
