//! gRPC-Web through the gateway: Connect-ES's gRPC-Web transport from Node
//! (HTTP/1.1 and HTTP/2), `application/grpc-web-text` over plain HTTP, and
//! the CORS answers browsers need.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::support::{API_KEY, TempDir, dev_token, start, start_with};

/// Runs `tests/clients/node/connect_scenario.mjs` over `transport`.
pub async fn connect_scenario(addr: std::net::SocketAddr, transport: &str) -> serde_json::Value {
    let dir = TempDir::new("connect-scenario");
    let set = dir.0.join("shop.binpb");
    std::fs::write(&set, shop::FILE_DESCRIPTOR_SET).unwrap();
    let args = [
        transport.to_owned(),
        format!("http://{addr}"),
        set.display().to_string(),
        dev_token("orders"),
        API_KEY.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::node::run("connect_scenario.mjs", &args)
    })
    .await
    .unwrap();
    drop(dir);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{transport}: {e}: {out}"))
}

/// What every transport's scenario must have printed.
pub fn check_common(transport: &str, out: &serde_json::Value) {
    assert_eq!(out["get_user"]["id"], "1", "{transport}: {out}");
    assert_eq!(out["get_order_anonymous"]["code"], 16, "{transport}: {out}");
    assert!(
        out["get_order_anonymous"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("missing credentials")),
        "{transport}: {out}"
    );
    assert_eq!(
        out["get_order"], "users/1/orders/1001",
        "{transport}: {out}"
    );
    assert_eq!(out["invalid_order"]["code"], 3, "{transport}: {out}");
    assert_eq!(
        out["invalid_order"]["details"][0], "google.rpc.BadRequest",
        "{transport}: {out}"
    );
    assert_eq!(
        out["watch_first"]["status"], "ORDER_STATUS_SHIPPED",
        "{transport}: {out}"
    );
}

#[tokio::test]
async fn connect_es_grpc_web_transport_calls_through_the_gateway() {
    let stack = start().await;
    for transport in ["grpc-web", "grpc-web-h2"] {
        let out = connect_scenario(stack.addr(), transport).await;
        check_common(transport, &out);
        if transport == "grpc-web-h2" {
            // Client and bidirectional streams, sent whole as gRPC-Web does.
            assert_eq!(out["bulk_count"], 2, "{out}");
            assert_eq!(out["sync"][0]["accepted"], true, "{out}");
        }
    }
}

fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "trailing bytes: {body:?}");
    out
}

#[tokio::test]
async fn grpc_web_text_over_http1_carries_the_status_in_the_body() {
    let stack = start().await;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let call = |path: &str| {
        client
            .post(stack.url(path))
            .header("content-type", "application/grpc-web-text")
            .header("x-grpc-web", "1")
            // GetUserRequest { id: 1 } / GetOrderRequest { name: "\x01" }, framed.
            .body(STANDARD.encode([0, 0, 0, 0, 2, 8, 1]))
            .send()
    };
    let reply = call("/shop.user.v1.UserService/GetUser").await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/grpc-web-text");
    let text = reply.text().await.unwrap();
    let body = STANDARD.decode(text.trim()).unwrap();
    let frames = frames(&body);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let user = <shop::pb::shop::user::v1::User as prost::Message>::decode(&*frames[0].1).unwrap();
    assert_eq!(user.id, 1);
    assert_eq!(frames[1].0, 0x80);
    let trailers = String::from_utf8(frames[1].1.clone()).unwrap();
    assert!(trailers.contains("grpc-status: 0\r\n"), "{trailers:?}");

    // A refusal of the gateway: the status in headers, no body.
    let reply = call("/shop.order.v1.OrderService/GetOrder").await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["grpc-status"], "16");
    assert_eq!(reply.headers()["content-type"], "application/grpc-web-text");
    assert!(reply.bytes().await.unwrap().is_empty());

    // A body that is not base64.
    let reply = client
        .post(stack.url("/shop.user.v1.UserService/GetUser"))
        .header("content-type", "application/grpc-web-text")
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["grpc-status"], "3");
}

#[tokio::test]
async fn browsers_may_call_grpc_web_across_origins() {
    let stack = start_with(|c| {
        let text = "cors:\n  allowed_origins: [https://shop.example]\n";
        let parsed = protogate::config::parse(
            &format!(
                "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [x]\n{text}"
            ),
            std::path::Path::new("cors.yaml"),
        )
        .unwrap();
        c.cors = parsed.cors;
    })
    .await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            stack.url("/shop.user.v1.UserService/GetUser"),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,grpc-timeout",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["x-grpc-web", "x-user-agent", "grpc-timeout"] {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    let reply = client
        .post(stack.url("/shop.order.v1.OrderService/GetOrder"))
        .header("origin", "https://shop.example")
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["grpc-status"], "16");
    let exposed = reply.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["grpc-status", "grpc-message"] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
}

#[tokio::test]
async fn a_browser_page_calls_grpc_web_across_origins() {
    let stack = start_with(|c| {
        let parsed = protogate::config::parse(
            "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [x]\ncors:\n  allowed_origins: [\"*\"]\n",
            std::path::Path::new("cors.yaml"),
        )
        .unwrap();
        c.cors = parsed.cors;
    })
    .await;
    let dir = TempDir::new("browser-grpc-web");
    let set = dir.0.join("shop.binpb");
    std::fs::write(&set, shop::FILE_DESCRIPTOR_SET).unwrap();
    let args = [
        format!("http://{}", stack.addr()),
        set.display().to_string(),
        dev_token("orders"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::node::run("browser_grpc_web.mjs", &args)
    })
    .await
    .unwrap();
    let out: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_ne!(
        out["origin"],
        format!("http://{}", stack.addr()),
        "a page of another origin"
    );
    assert_eq!(out["get_user"]["displayName"], "Ada Lovelace", "{out}");
    assert_eq!(out["anonymous"]["code"], 16, "{out}");
    assert_eq!(
        out["watch_first"]["status"], "ORDER_STATUS_SHIPPED",
        "{out}"
    );
}
