//! Headers ⇄ metadata, deadlines and misbehaving backends, against the probe backend.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use protogate::config::{self, Config};
use serde_json::json;

use crate::probe::{self, Probe};
use crate::support::{Reply, Stack, root, serve};

fn probe_config(addr: std::net::SocketAddr, extra: &str) -> Config {
    let text = format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\n\
         backends:\n  probe:\n    address: http://{addr}\n    services: [probe.v1.Probe]\n\
         metadata:\n  forward_request_headers: [x-request-id]\n{extra}",
        root().join("tests/fixtures/protos").display()
    );
    config::parse(&text, Path::new("probe.yaml")).unwrap()
}

async fn start(extra: &str) -> (ProbeStack, Probe) {
    let (backend, probe) = probe::spawn().await;
    let (addr, stop) = serve(probe_config(backend, extra)).await;
    (ProbeStack(Stack::for_gateway(addr, stop)), probe)
}

struct ProbeStack(Stack);

impl ProbeStack {
    async fn echo(&self, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
        self.0
            .call_with("POST", "/v1/echo", Some(&body.to_string()), headers)
            .await
    }
}

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
    assert!(
        md.get("authorization").is_none(),
        "credentials are not forwarded: {md}"
    );
    assert!(md.get("cookie").is_none(), "{md}");
    assert!(md.get("grpc-metadata-tenant").is_none(), "{md}");
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
async fn grpc_timeout_sets_the_deadline_and_cancels_the_backend_call() {
    let (stack, probe) = start("").await;
    let reply = stack
        .echo(json!({"delayMs": "5000"}), &[("grpc-timeout", "200m")])
        .await;
    assert_eq!(reply.status, 504, "{:?}", reply.json);
    assert_eq!(reply.json["code"], 4);
    // The backend sees its call dropped rather than running to the end.
    for _ in 0..50 {
        if probe.cancelled.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(probe.cancelled.load(Ordering::SeqCst), 1);

    let fast = stack.echo(json!({}), &[("grpc-timeout", "3S")]).await;
    let sent = fast.json["metadata"]["grpc-timeout"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = protogate::upstream::metadata::parse_grpc_timeout(&sent).unwrap();
    assert!(
        sent <= Duration::from_secs(3) && sent > Duration::from_secs(2),
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

#[tokio::test]
async fn misbehaving_backends_get_500_without_details_leaking() {
    let (stack, _) = start("").await;
    for fault in ["FAULT_GARBAGE", "FAULT_TWO_MESSAGES"] {
        let reply = stack.echo(json!({"fault": fault}), &[]).await;
        assert_eq!(reply.status, 500, "{fault}: {:?}", reply.json);
        assert_eq!(
            reply.json,
            json!({"code": 13, "message": "internal error", "details": []}),
            "{fault}"
        );
    }
    let failed = stack.echo(json!({"fault": "FAULT_INTERNAL"}), &[]).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json["message"], "probe failed");
    assert_eq!(failed.headers["grpc-metadata-x-probe-trailer"], "done");
}
