//! Headers ⇄ metadata, deadlines and misbehaving backends, against the probe backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::probe::{start, start_with};

#[tokio::test]
async fn request_headers_become_metadata_by_allowlist_and_prefix() {
    let (stack, _) = start("").await;
    let reply = stack
        .echo(
            json!({"text": "hi"}),
            &[
                ("x-request-id", "req-1"),
                ("grpc-metadata-tenant", "acme"),
                ("authorization", "Bearer secret"),
                ("x-forwarded-for", "203.0.113.9"),
                ("cookie", "session=1"),
                ("grpc-metadata-authorization", "Bearer forged"),
                ("grpc-metadata-x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let md = &reply.json["metadata"];
    assert_eq!(md["x-request-id"], "req-1");
    assert_eq!(md["tenant"], "acme");
    assert_eq!(
        md["x-forwarded-for"], "127.0.0.1",
        "the client's own X-Forwarded-For is not trusted by default"
    );
    assert!(
        md["x-forwarded-host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:")),
        "{md}"
    );
    assert_eq!(
        md["authorization"], "Bearer secret",
        "without auth the client's own Authorization goes on, never a Grpc-Metadata- copy: {md}"
    );
    assert!(md.get("cookie").is_none(), "{md}");
    assert!(md.get("grpc-metadata-tenant").is_none(), "{md}");
}

/// `auth:` with the example API key, read from `x-api-key`.
fn api_key_auth(default: &str, forward: &str) -> String {
    format!(
        "auth:\n  api_keys:\n    from: {{ header: x-api-key }}\n    keys:\n      - name: bot\n        \
         sha256: c8508ef6b8945d666ebda9da5ac196d24548fc98ba6eac51b11805cd15a6d4c8\n  \
         default: {default}\n  forward: {forward}\n"
    )
}

#[tokio::test]
async fn issue_14_authorization_reaches_backends_that_check_it_themselves() {
    // (config, request headers, the authorization the backend gets)
    let key = ("x-api-key", crate::support::API_KEY);
    let bearer = ("authorization", "Bearer client-token");
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        // The gateway does not authenticate: passed on.
        (String::new(), vec![bearer], Some("Bearer client-token")),
        (
            api_key_auth("{ public: true }", "{}"),
            vec![bearer],
            Some("Bearer client-token"),
        ),
        // Unless switched off, or backends take `authorization` as verified.
        (
            "  forward_authorization: false\n".into(),
            vec![bearer],
            None,
        ),
        (
            api_key_auth("{ public: true }", "{ credentials: true }"),
            vec![bearer],
            None,
        ),
        // The gateway authenticates: only the verified credential, only
        // with forward.credentials.
        (
            api_key_auth("{ allow: [api_key] }", "{}"),
            vec![bearer, key],
            None,
        ),
        (
            api_key_auth("{ allow: [api_key] }", "{ credentials: true }"),
            vec![bearer, key],
            None,
        ),
    ];
    for (extra, headers, want) in cases {
        let (stack, _) = start(&extra).await;
        let reply = stack
            .0
            .call_with("POST", "/v1/echo", Some("{}"), &headers)
            .await;
        assert_eq!(reply.status, 200, "{extra}: {}", reply.json);
        let md = &reply.json["metadata"];
        assert_eq!(md["authorization"].as_str(), want, "{extra}: {md}");
        if extra.contains("credentials: true") && extra.contains("allow") {
            assert_eq!(md["x-api-key"], crate::support::API_KEY, "{extra}: {md}");
        }
    }
}

#[tokio::test]
async fn issue_14_binary_metadata_must_be_base64() {
    let (stack, probe) = start("").await;
    for value in ["not base64!", "AAE=x", "%%%"] {
        let reply = stack
            .echo(json!({"text": "hi"}), &[("grpc-metadata-trace-bin", value)])
            .await;
        assert_eq!(reply.status, 400, "{value}: {}", reply.json);
        assert_eq!(reply.json["code"], 3, "{value}");
        assert!(
            reply.json["message"]
                .as_str()
                .unwrap()
                .contains("grpc-metadata-trace-bin"),
            "{value}: {}",
            reply.json
        );
    }
    assert_eq!(probe.echoes.load(Ordering::SeqCst), 0, "never sent on");
    // Padded or not, valid base64 goes through.
    for value in ["AAE=", "AAE"] {
        let reply = stack
            .echo(json!({"text": "hi"}), &[("grpc-metadata-trace-bin", value)])
            .await;
        assert_eq!(reply.status, 200, "{value}: {}", reply.json);
    }
}

#[tokio::test]
async fn forwarded_for_is_appended_behind_a_trusted_proxy() {
    let (stack, _) = start("  trust_forwarded_for: true\n").await;
    let reply = stack
        .echo(json!({}), &[("x-forwarded-for", "203.0.113.9")])
        .await;
    assert_eq!(
        reply.json["metadata"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    // Untrusted, the client's claim is replaced by its address.
    let (stack, _) = start("").await;
    let reply = stack
        .echo(json!({}), &[("x-forwarded-for", "203.0.113.9")])
        .await;
    let metadata = &reply.json["metadata"];
    assert_eq!(metadata["x-forwarded-for"], "127.0.0.1");
    // The gRPC request headers a backend expects, with the gateway's name.
    assert_eq!(metadata["te"], "trailers");
    assert_eq!(metadata["content-type"], "application/grpc");
    assert_eq!(
        metadata["user-agent"],
        concat!("protogate/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn response_metadata_and_trailers_come_back_as_headers() {
    let (stack, _) = start("").await;
    let reply = stack.echo(json!({"text": "hi"}), &[]).await;
    assert_eq!(reply.json["text"], "hi");
    assert_eq!(reply.headers["grpc-metadata-x-probe-header"], "hello");
    assert_eq!(reply.headers["grpc-trailer-x-probe-trailer"], "done");
    assert!(reply.headers.get("grpc-trailer-grpc-status").is_none());
}

#[tokio::test]
async fn issue_14_error_replies_keep_header_metadata_and_trailers() {
    let (stack, _) = start("").await;
    let reply = stack.echo(json!({"fault": "FAULT_INTERNAL"}), &[]).await;
    assert_eq!(reply.status, 500, "{}", reply.json);
    assert_eq!(reply.headers["grpc-metadata-x-probe-header"], "hello");
    assert_eq!(reply.headers["grpc-trailer-x-probe-trailer"], "done");
    assert!(reply.headers.get("grpc-metadata-x-probe-trailer").is_none());

    // A stream that fails before its first message: an ordinary error, with both.
    for accept in ["application/x-ndjson", "text/event-stream"] {
        let reply = stack
            .0
            .call_with(
                "GET",
                "/v1/count?n=3&failAfter=-1",
                None,
                &[("accept", accept)],
            )
            .await;
        assert_eq!(reply.status, 400, "{accept}: {}", reply.json);
        assert_eq!(reply.json["code"], 9, "{accept}");
        assert_eq!(
            reply.headers["grpc-metadata-x-probe-header"], "counting",
            "{accept}"
        );
        assert_eq!(
            reply.headers["grpc-trailer-x-probe-trailer"], "failed",
            "{accept}"
        );
    }
}

#[tokio::test]
async fn issue_15_a_form_body_that_is_not_json_is_415_saying_so() {
    let (stack, _) = start("").await;
    let response = stack
        .0
        .client()
        .post(stack.0.url("/v1/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("send application/json or application/x-protobuf"),
        "{body}"
    );
}

#[tokio::test]
async fn issue_15_an_unknown_json_field_is_a_bad_request_naming_its_path() {
    let (stack, _) = start("").await;
    let reply = stack.echo(json!({"text": "hi", "nope": 1}), &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(
        reply.json["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest",
        "{}",
        reply.json
    );
    assert_eq!(
        reply.json["details"][0]["fieldViolations"][0]["field"], "nope",
        "{}",
        reply.json
    );
}

#[tokio::test]
async fn debug_info_is_dropped_unless_configured() {
    let (stack, _) = start("").await;
    let reply = stack.echo(json!({"fault": "FAULT_DEBUG_INFO"}), &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json["details"],
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TOO_SHORT", "domain": "probe.example"}])
    );
    let (open, _) = start("transcoding:\n  forward_debug_info: true\n").await;
    let reply = open.echo(json!({"fault": "FAULT_DEBUG_INFO"}), &[]).await;
    assert_eq!(reply.json["details"][1]["detail"], "secret internals");
}

#[tokio::test]
async fn retry_info_becomes_retry_after() {
    let (stack, _) = start("").await;
    let reply = stack.echo(json!({"fault": "FAULT_RETRY_INFO"}), &[]).await;
    assert_eq!(reply.status, 429, "{}", reply.json);
    // 2.5 seconds, rounded up to whole seconds.
    assert_eq!(reply.headers["retry-after"], "3");
    assert_eq!(
        reply.json["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    // Without the detail, no header.
    let reply = stack.echo(json!({"fault": "FAULT_INTERNAL"}), &[]).await;
    assert!(reply.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn body_content_type_must_be_json_like() {
    let (stack, _) = start("").await;
    for (content_type, want) in [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/merge-patch+json", 200),
        ("application/x-www-form-urlencoded", 200),
        ("text/plain", 200),
        ("multipart/form-data; boundary=x", 415),
        ("application/xml", 415),
    ] {
        let resp = stack
            .0
            .client()
            .post(stack.0.url("/v1/echo"))
            .header("content-type", content_type)
            .body(r#"{"text": "hi"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{content_type}");
    }
}

#[tokio::test]
async fn a_slow_body_runs_into_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (stack, _) = start("").await;
    let mut stream = tokio::net::TcpStream::connect(stack.0.addr())
        .await
        .unwrap();
    let head = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nGrpc-Timeout: 200m\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut raw))
        .await
        .expect("the gateway answers without waiting for the rest of the body")
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains(r#""code":4"#), "{raw}");
}

#[tokio::test]
async fn grpc_timeout_sets_the_deadline_and_cancels_the_backend_call() {
    let (stack, probe) = start("").await;
    let reply = stack
        .echo(json!({"delayMs": "5000"}), &[("grpc-timeout", "200m")])
        .await;
    assert_eq!(reply.status, 504, "{:?}", reply.json);
    assert_eq!(reply.json["code"], 4);
    // The backend sees its call dropped rather than running to the end.
    crate::support::eventually(30, "backend call cancelled", || async {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;

    // What is left of 30s goes on: at most 30s, and the margin below is for
    // a busy machine, not the gateway's speed.
    let fast = stack.echo(json!({}), &[("grpc-timeout", "30S")]).await;
    let sent = fast.json["metadata"]["grpc-timeout"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = protogate::upstream::metadata::parse_grpc_timeout(&sent).unwrap();
    assert!(
        sent <= Duration::from_secs(30) && sent > Duration::from_secs(20),
        "{sent:?}"
    );
}

#[tokio::test]
async fn per_method_timeout_and_client_cap_apply() {
    let (stack, _) = start(
        "server:\n  max_grpc_timeout: 1s\nmethods:\n  probe.v1.Probe.Echo:\n    timeout: 150ms\n",
    )
    .await;
    let reply = stack.echo(json!({"delayMs": "2000"}), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), &reply.json["code"]),
        (504, &json!(4))
    );
    let capped = stack.echo(json!({}), &[("grpc-timeout", "1H")]).await;
    let sent = capped.json["metadata"]["grpc-timeout"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = protogate::upstream::metadata::parse_grpc_timeout(&sent).unwrap();
    assert!(sent <= Duration::from_secs(1), "{sent:?}");
}

/// A reply larger than the HTTP/2 windows arrives whole: the gateway hands
/// the flow-control window back as it reads, and a second one follows on
/// the same connection.
#[tokio::test]
async fn replies_larger_than_the_http2_windows_arrive_whole() {
    let (stack, _) = start_with("", |c| c.backends[0].max_response_bytes = 8 << 20).await;
    for _ in 0..3 {
        let reply = stack.echo(json!({"fault": "FAULT_HUGE"}), &[]).await;
        assert_eq!(reply.status, 200, "{:?}", reply.json["message"]);
        let padding = reply.json["padding"].as_str().unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(padding)
            .unwrap();
        assert_eq!(bytes.len(), 3 * 1024 * 1024);
    }
}

#[tokio::test]
async fn misbehaving_backends_get_502_without_details_leaking() {
    let (stack, _) = start_with("", |c| c.backends[0].max_response_bytes = 1000).await;
    for fault in ["FAULT_GARBAGE", "FAULT_TWO_MESSAGES", "FAULT_BIG"] {
        let reply = stack.echo(json!({"fault": fault}), &[]).await;
        assert_eq!(reply.status, 502, "{fault}: {:?}", reply.json);
        assert_eq!(
            reply.json,
            json!({"code": 13, "message": "backend probe sent an invalid response", "details": []}),
            "{fault}"
        );
    }
    // No gRPC status: the gRPC spec's HTTP-to-gRPC table (404 -> UNIMPLEMENTED, 503 -> UNAVAILABLE).
    for (fault, http, code) in [("FAULT_HTTP_404", 501, 12), ("FAULT_HTTP_503", 503, 14)] {
        let reply = stack.echo(json!({"fault": fault}), &[]).await;
        assert_eq!(
            (reply.status.as_u16(), &reply.json["code"]),
            (http, &json!(code)),
            "{fault}"
        );
    }
    // Details that are not base64 are dropped, not a crash.
    let bad_details = stack.echo(json!({"fault": "FAULT_BAD_DETAILS"}), &[]).await;
    assert_eq!(
        (bad_details.status.as_u16(), &bad_details.json["details"]),
        (400, &json!([]))
    );
    let failed = stack.echo(json!({"fault": "FAULT_INTERNAL"}), &[]).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json["message"], "probe failed");
    assert_eq!(failed.headers["grpc-trailer-x-probe-trailer"], "done");
}

#[tokio::test]
async fn backend_stream_resets_are_errors_never_answers() {
    let (stack, _) = start("").await;
    // A reset stream has no status: even a complete reply before it is not an answer.
    for fault in ["FAULT_RESET_AFTER_REPLY", "FAULT_RESET"] {
        let reply = stack.echo(json!({"fault": fault, "text": "x"}), &[]).await;
        assert_eq!(reply.status, 502, "{fault}: {}", reply.json);
        assert_eq!(reply.json["code"], 13, "{fault}: {}", reply.json);
        assert_eq!(
            reply.json["message"], "backend probe sent an invalid response",
            "{fault}: nothing of the cause leaks"
        );
    }
    // A server stream reset after two replies: two lines, then an error line.
    let response = stack
        .0
        .client()
        .get(stack.0.url("/v1/count?n=5&resetAfter=2"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["i"], "1", "{text}");
    assert_eq!(lines[1]["i"], "2", "{text}");
    assert_eq!(
        lines[2],
        json!({"code": 13, "message": "backend probe sent an invalid response", "details": []}),
        "{text}"
    );
    // The gateway and the connection to the backend carry on.
    let reply = stack.echo(json!({"text": "after"}), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["text"], "after");
}
