//! The edge layers: request ids, size limits, CORS, compression both ways,
//! load shedding.

use std::io::{Read, Write};

use crate::probe::{start, start_with};
use crate::support::{client, eventually};

#[tokio::test]
async fn request_ids_are_kept_or_made_and_reach_the_backend() {
    let (stack, _) = start("").await;
    let made = stack.echo(serde_json::json!({"text": "a"}), &[]).await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(made.json["metadata"]["x-request-id"], id.as_str());

    let kept = stack
        .echo(
            serde_json::json!({"text": "a"}),
            &[("x-request-id", "trace-42")],
        )
        .await;
    assert_eq!(kept.headers["x-request-id"], "trace-42");
    assert_eq!(kept.json["metadata"]["x-request-id"], "trace-42");
    // Errors carry it too.
    let missing = stack.0.get("/nowhere").await;
    assert_eq!(missing.status, 404);
    assert!(missing.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn request_ids_and_forwarding_headers_can_be_switched_off() {
    let (stack, _) = start_with("server:\n  request_id: false\n", |c| {
        c.metadata.forwarded = false;
    })
    .await;
    let reply = stack.echo(serde_json::json!({"text": "a"}), &[]).await;
    assert!(
        !reply.headers.contains_key("x-request-id"),
        "{:?}",
        reply.headers
    );
    let seen = reply.json["metadata"].as_object().unwrap();
    for absent in ["x-request-id", "x-forwarded-for", "x-forwarded-host"] {
        assert!(!seen.contains_key(absent), "{absent} in {seen:?}");
    }
}

#[tokio::test]
async fn oversized_targets_and_headers_are_refused() {
    let (stack, _) = start("server:\n  max_uri_bytes: 100\n  max_header_bytes: 400\n").await;
    let long = format!("/v1/echo?x={}", "a".repeat(200));
    let reply = stack.0.call("POST", &long, Some("{}")).await;
    assert_eq!(reply.status, 414);
    assert_eq!(
        reply.json["message"],
        "request target exceeds the limit of 100 bytes"
    );
    let big = "b".repeat(500);
    let reply = stack
        .0
        .call_with("POST", "/v1/echo", Some("{}"), &[("x-big", &big)])
        .await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json["code"], 3);
    assert_eq!(
        stack.0.call("POST", "/v1/echo", Some("{}")).await.status,
        200
    );
}

#[tokio::test]
async fn cors_answers_preflights_for_listed_origins_only() {
    let (stack, _) = start(
        "cors:\n  allowed_origins: [\"https://app.example.com\"]\n  allowed_headers: [authorization, content-type, x-api-key]\n  max_age: 10m\n",
    )
    .await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, stack.0.url("/v1/echo"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.status(), 200);
    let headers = ok.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-api-key")
    );
    assert_eq!(headers["access-control-max-age"], "600");

    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let call = client()
        .post(stack.0.url("/v1/echo"))
        .header("origin", "https://app.example.com")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = call.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn responses_are_compressed_but_streams_are_not() {
    let (stack, _) = start("").await;
    let big = client()
        .post(stack.0.url("/v1/echo"))
        .header("accept-encoding", "gzip")
        .header("content-type", "application/json")
        .body(format!("{{\"text\":\"{}\"}}", "z".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.headers()["content-encoding"], "gzip");
    let compressed = big.bytes().await.unwrap();
    assert!(compressed.len() < 1000, "{} bytes", compressed.len());
    let mut json = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut json)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["text"].as_str().unwrap().len(), 5000);

    let stream = client()
        .get(stack.0.url("/v1/count?n=50&padBytes=100"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(stream.headers().get("content-encoding").is_none());
    assert_eq!(stream.text().await.unwrap().lines().count(), 50);

    // Accepting no coding the gateway compresses with: sent as it is, and
    // still varying on the header.
    for refusing in ["identity", "gzip;q=0, br;q=0", "deflate"] {
        let reply = stack
            .0
            .call_with(
                "POST",
                "/v1/echo",
                Some(&format!("{{\"text\":\"{}\"}}", "z".repeat(5000))),
                &[("accept-encoding", refusing)],
            )
            .await;
        assert!(
            reply.headers.get("content-encoding").is_none(),
            "{refusing}"
        );
        assert_eq!(reply.headers["vary"], "accept-encoding", "{refusing}");
        assert_eq!(
            reply.json["text"].as_str().map(str::len),
            Some(5000),
            "{refusing}"
        );
    }

    let (plain, _) = start("server:\n  compression: false\n").await;
    let reply = plain
        .0
        .call_with(
            "POST",
            "/v1/echo",
            Some(&format!("{{\"text\":\"{}\"}}", "z".repeat(5000))),
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert!(reply.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn gzip_request_bodies_are_read() {
    let (stack, _) = start("").await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(br#"{"text":"squeezed"}"#).unwrap();
    let body = encoder.finish().unwrap();
    let reply = client()
        .post(stack.0.url("/v1/echo"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let json: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(json["text"], "squeezed");
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_at_once() {
    let (stack, probe) = start_with("server:\n  max_concurrent_requests: 1\n", |_| {}).await;
    let slow = {
        let url = stack.0.url("/v1/echo");
        tokio::spawn(async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(r#"{"text":"slow","delayMs":"3000"}"#)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    eventually(30, "the slow call reaches the backend", || async {
        probe.echoes.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let shed = stack
        .0
        .call("POST", "/v1/echo", Some(r#"{"text":"fast"}"#))
        .await;
    // Answered while the slow call still holds the only slot: not queued behind it.
    assert!(!slow.is_finished(), "not queued");
    assert_eq!(shed.status, 503);
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(shed.json["code"], 14);
    // Health checks are not counted.
    assert_eq!(stack.0.get_text("/healthz").await.0, 200);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        stack
            .0
            .call("POST", "/v1/echo", Some(r#"{"text":"again"}"#))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn metrics_count_requests_upstream_calls_and_endpoints() {
    let (stack, _) = start("").await;
    for _ in 0..3 {
        stack.echo(serde_json::json!({"text": "a"}), &[]).await;
    }
    stack
        .echo(serde_json::json!({"fault": "FAULT_INTERNAL"}), &[])
        .await;
    stack.0.get("/nowhere/at/all").await;
    let (status, headers, text) = stack.0.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    for line in [
        r#"protogate_http_requests_total{route="/v1/echo",method="POST",status="200"} 3"#,
        r#"protogate_http_requests_total{route="/v1/echo",method="POST",status="500"} 1"#,
        r#"protogate_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"protogate_upstream_calls_total{backend="probe",code="Ok"} 3"#,
        r#"protogate_upstream_calls_total{backend="probe",code="Internal"} 1"#,
        r#"protogate_http_request_duration_seconds_count{route="/v1/echo",method="POST"} 4"#,
        r#"protogate_backend_endpoints{backend="probe",state="healthy"} 1"#,
        // Issue 16: every state the README lists has its sample.
        r#"protogate_backend_endpoints{backend="probe",state="half_open"} 0"#,
        // API requests only: this scrape is not one.
        "protogate_http_requests_in_flight 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // Raw paths never become labels.
    assert!(!text.contains("nowhere"), "{text}");
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let (stack, _) = start("rate_limit:\n  by_address: { requests: 5, per: 1m, burst: 5 }\n").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(stack.echo(serde_json::json!({"text": "x"}), &[]).await);
    }
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5, "the burst passes, the rest is refused");
    // Issue 16: answers within the limit carry the budget too.
    let budget = |i: usize| {
        let h = &statuses[i].headers;
        [
            &h["ratelimit-limit"],
            &h["ratelimit-remaining"],
            &h["ratelimit-reset"],
        ]
        .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(budget(0), ["5", "4", "12"], "one token per 12s");
    assert_eq!(budget(4), ["5", "0", "60"]);
    let refused = statuses.last().unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json["code"], 8);
    assert_eq!(refused.headers["ratelimit-limit"], "5");
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "one token per 12s: {retry}");
    let (_, _, metrics) = stack.0.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "protogate_rate_limited_requests_total 3"),
        "{metrics}"
    );
    // Refused calls never reach the backend.
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"protogate_upstream_calls_total{backend="probe",code="Ok"} 5"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn idempotent_methods_are_retried_within_the_budget() {
    use std::sync::atomic::Ordering;
    let idempotent = "methods:\n  probe.v1.Probe.Echo:\n    idempotent: true\n";
    let (stack, probe) = start_with(idempotent, |c| {
        c.backends[0].retry.attempts = 3;
        c.backends[0].retry.backoff = std::time::Duration::from_millis(5);
    })
    .await;
    // Two UNAVAILABLE answers, then success: the third attempt answers.
    probe.flaky.store(2, Ordering::SeqCst);
    let reply = stack.echo(serde_json::json!({"text": "again"}), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 3);
    // Three failures: out of attempts, the last error is the answer.
    probe.flaky.store(3, Ordering::SeqCst);
    let reply = stack.echo(serde_json::json!({"text": "again"}), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["message"], "flaky on purpose");
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 6);
    probe.flaky.store(0, Ordering::SeqCst);
    let (_, _, metrics) = stack.0.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"protogate_upstream_retries{backend="probe"} 4"#),
        "{metrics}"
    );

    // Without `idempotent`, a method is never retried.
    let (stack, probe) = start_with("", |c| {
        c.backends[0].retry.attempts = 3;
    })
    .await;
    probe.flaky.store(1, Ordering::SeqCst);
    let reply = stack.echo(serde_json::json!({"text": "once"}), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 1);
}

/// A method whose proto says `idempotency_level = IDEMPOTENT` is retried
/// without config; `methods.<name>.idempotent: false` still says no.
#[tokio::test]
async fn methods_the_proto_calls_idempotent_are_retried() {
    use std::sync::atomic::Ordering;
    async fn replay(stack: &crate::probe::ProbeStack) -> crate::support::Reply {
        let body = serde_json::json!({"text": "again"}).to_string();
        stack
            .0
            .call_with("POST", "/v1/replay", Some(&body), &[])
            .await
    }
    let retrying = |c: &mut protogate::config::Config| {
        c.backends[0].retry.attempts = 3;
        c.backends[0].retry.backoff = std::time::Duration::from_millis(5);
    };
    let (stack, probe) = start_with("", retrying).await;
    probe.flaky.store(2, Ordering::SeqCst);
    let reply = replay(&stack).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["text"], "again");
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 3);

    let overridden = "methods:\n  probe.v1.Probe.Replay:\n    idempotent: false\n";
    let (stack, probe) = start_with(overridden, retrying).await;
    probe.flaky.store(1, Ordering::SeqCst);
    let reply = replay(&stack).await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn trace_context_reaches_the_backend() {
    let (stack, _) = start("").await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = stack
        .echo(
            serde_json::json!({"text": "t"}),
            &[("traceparent", parent), ("tracestate", "vendor=1")],
        )
        .await;
    assert_eq!(reply.json["metadata"]["traceparent"], parent);
    assert_eq!(reply.json["metadata"]["tracestate"], "vendor=1");
}

/// Writes `sent` on a raw connection, waits `pause`, and returns whatever
/// the server answered before closing (bounded by 5s).
async fn raw(addr: std::net::SocketAddr, sent: &[u8], pause: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(sent).await.unwrap();
    tokio::time::sleep(pause).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    // Generous for a busy machine: the point is that it is closed, not held open.
    assert!(read.is_ok(), "the server closed the connection within 20s");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_and_malformed_clients_are_cut_off() {
    let (stack, _) = start("server:\n  header_read_timeout: 300ms\n").await;
    let addr = stack.0.addr();
    // Slowloris: headers that never end. The connection is closed once the
    // header read timeout passes; it is not held open.
    let answer = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n",
        std::time::Duration::ZERO,
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Garbage is a 400 and a closed connection.
    let answer = raw(addr, b"BLAH BLAH\r\n\r\n", std::time::Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Meanwhile the gateway serves everyone else.
    assert_eq!(stack.0.get_text("/healthz").await.0, 200);
}

/// Reads until the server closes the connection (EOF or a reset), within 10s.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server closed the connection");
    answer
}

#[tokio::test]
async fn issue_14_silent_and_half_preface_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let (stack, _) = start("server:\n  header_read_timeout: 300ms\n").await;
    let addr = stack.0.addr();
    // Nothing at all, a single byte of the HTTP/2 preface, most of it.
    for sent in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n\r\nSM"] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let answer = closed_by_server(&mut stream).await;
        assert!(answer.is_empty(), "{sent:?}: {answer:?}");
    }
    assert_eq!(stack.0.get_text("/healthz").await.0, 200);
}

#[tokio::test]
async fn issue_14_http2_connections_without_streams_are_closed() {
    let (stack, _) = start("server:\n  header_read_timeout: 300ms\n").await;
    let tcp = tokio::net::TcpStream::connect(stack.0.addr())
        .await
        .unwrap();
    let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
    // The handshake done, no stream ever opened: the server ends the connection.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "the server closed the connection");
}

#[tokio::test]
async fn issue_14_idle_keep_alive_connections_are_closed_busy_ones_are_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (stack, probe) = start("server:\n  idle_timeout: 300ms\n").await;
    let addr = stack.0.addr();

    // HTTP/2: one request, then idle: GOAWAY and the connection ends.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}/healthz"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection is closed");

    // HTTP/1.1 keep-alive: the same.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    closed_by_server(&mut stream).await;

    // A stream that outlasts the idle timeout is a request in flight: it
    // is not cut, and finishes once the backend goes on.
    let mut response = stack
        .0
        .client()
        .get(stack.0.url("/v1/count?n=2&holdAfterFirst=true"))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{\"i\":\"1\""), "{first:?}");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    probe.release.notify_one();
    let rest = response.chunk().await.unwrap().unwrap();
    assert!(rest.starts_with(b"{\"i\":\"2\""), "{rest:?}");
}
